#!/usr/bin/env bash
# The project's test command: `bash scripts/test.sh`.
# Installs the test programs (real S3 clients, cargo-nextest), then runs the same gates as CI:
# format, lints, all tests (unit, integration, interop with real clients), doc tests.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-test-deps.sh

echo "==> cargo fmt --all --check"
cargo fmt --all --check

echo "==> cargo clippy --all-targets --locked -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

echo "==> cargo test --doc --locked"
cargo test --doc --locked

# Last, so the run closes on the test runner's real summary.
echo "==> cargo nextest run --locked --no-fail-fast"
cargo nextest run --locked --no-fail-fast
