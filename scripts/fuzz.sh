#!/usr/bin/env bash
# The long fuzz run: every target of tests/fuzz.rs with many cases, one target at a time, the
# whole run bounded in wall time, then a summary (cases run per target, failures).
#
#   bash scripts/fuzz.sh [MINUTES]        # default 10
#
# Environment: PURE_CASES (default 20000) caps each pure target (parsers, crypto, config);
# HTTP_CASES (default 3000) caps each aws-chunked target (an HTTP round trip per case).
# Each target gets an equal share of the time still left, so targets that reach their case
# count early leave time to the others; a target never starts a batch after its share is spent.
#
# Debug build on purpose: it reuses the test build CI already made, and keeps overflow checks
# and debug assertions on, so an arithmetic overflow on hostile input is a failure (a release
# build would wrap silently). The dependencies build at opt-level 1 (Cargo.toml), so the crypto
# is not the bottleneck.
#
# A failure prints proptest's minimal input and `FUZZ_SEED=…` to reproduce it:
#   FUZZ_SEED=<seed> PROPTEST_CASES=<n> cargo test --test fuzz -- --exact <target> --nocapture
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

minutes="${1:-10}"
pure_cases="${PURE_CASES:-20000}"
http_cases="${HTTP_CASES:-3000}"
logs="${CARGO_TARGET_DIR:-target}/fuzz-logs/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$logs"

echo "==> building tests/fuzz.rs (debug)"
cargo test --locked --test fuzz --no-run 2>&1 | tail -1
# Ignored tests (recorded findings) are skipped. The HTTP targets run last: they can use
# whatever time the faster targets leave.
list() { cargo test --locked --test fuzz -- --list --format terse "$@" 2>/dev/null | sed -n 's/: test$//p'; }
mapfile -t targets < <(list | grep -vxF -f <(list --ignored; echo '#none#') |
  awk '/^chunked::/ { http[++n] = $0; next } { print } END { for (i = 1; i <= n; i++) print http[i] }')

deadline=$(( $(date +%s) + minutes * 60 ))
failed=0
summary=()
for i in "${!targets[@]}"; do
  target="${targets[$i]}"
  left=$(( deadline - $(date +%s) ))
  remaining=$(( ${#targets[@]} - i ))
  share=$(( left / remaining ))
  if (( share < 1 )); then share=1; fi
  log="$logs/${target//::/-}.log"
  echo "==> $target (up to ${share}s)"
  # The hard bound: the share, plus time for the batch in flight and shrinking a failure.
  if FUZZ_SECONDS="$share" PROPTEST_CASES="$pure_cases" FUZZ_HTTP_CASES="$http_cases" \
       timeout --kill-after=10 $(( share + 120 )) \
       cargo test --locked --test fuzz -- --exact "$target" --nocapture >"$log" 2>&1; then
    result="ok"
  else
    result="FAILED"
    failed=$(( failed + 1 ))
    grep -E "failed after|minimal failing input" -A3 "$log" | head -20 || true
  fi
  cases=$(sed -n 's/^fuzz-summary: .*: \([0-9]*\) cases in \([0-9.]*\) s.*/\1 cases in \2 s/p' "$log" | paste -sd ';' -)
  summary+=("$(printf '%-8s %-72s %s' "$result" "$target" "${cases:-no generated cases (a fixed regression test)}")")
  grep -h "answers" "$log" | sed 's/^fuzz-summary: /    /' || true
done

echo
echo "==> summary (logs in $logs)"
printf '%s\n' "${summary[@]}"
echo "$(( ${#targets[@]} - failed )) of ${#targets[@]} targets passed, $failed failed"
(( failed == 0 ))
