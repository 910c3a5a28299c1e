#!/usr/bin/env bash
# Quick end-to-end measurement: a large object PUT and GET with curl (presigned URLs), directly
# against a real S3 server (s3s-fs) and through escrow-proxy (release build, TLS) in front of
# the same server; reports MB/s, the proxy's CPU seconds per GiB moved and its peak RSS.
# Usage: bash benches/quick.sh [SIZE_MIB]   (default 1024). Needs: s3s-fs (cargo install s3s-fs
# --version 0.14.1 --locked --features binary), curl, python3 with boto3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZE_MIB=${1:-1024}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cargo build --release --bin escrow-proxy >/dev/null 2>&1 || cargo build --release --bin escrow-proxy
BIN=${CARGO_TARGET_DIR:-target}/release/escrow-proxy

AK=benchkey SK=benchsecret
mkdir -p "$WORK/s3" "$WORK/certs"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
s3s-fs --host 127.0.0.1 --port "$PORT" --access-key $AK --secret-key $SK "$WORK/s3" >"$WORK/s3s.log" 2>&1 &
STORE=http://127.0.0.1:$PORT
for _ in $(seq 100); do curl -s -o /dev/null "$STORE" && break; sleep 0.1; done
"$BIN" certs generate --out "$WORK/certs" >/dev/null
cat >"$WORK/proxy.toml" <<TOML
[server]
listen = "127.0.0.1:0"
tls_cert = "$WORK/certs/server.pem"
tls_key = "$WORK/certs/server-key.pem"
[[clients]]
access_key = "$AK"
secret_key = "$SK"
[primary]
type = "s3"
endpoint = "$STORE"
access_key = "$AK"
secret_key = "$SK"
[keys]
keyring = "$WORK/keyring"
root_key_file = "$WORK/root.key"
TOML
"$BIN" serve --config "$WORK/proxy.toml" >"$WORK/proxy.out" 2>"$WORK/proxy.err" &
PROXY_PID=$!
for _ in $(seq 100); do grep -q "^endpoint:" "$WORK/proxy.out" && break; sleep 0.1; done
PROXY=$(sed -n 's/^endpoint: //p' "$WORK/proxy.out")

head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/obj"
presign() { # endpoint method bucket key
    python3 - "$@" <<'PY'
import sys, boto3
from botocore.config import Config
ep, method, bucket, key = sys.argv[1:]
c = boto3.client("s3", endpoint_url=ep, aws_access_key_id="benchkey", aws_secret_access_key="benchsecret",
                 region_name="us-east-1", verify=False, config=Config(s3={"addressing_style": "path"}))
print(c.generate_presigned_url(method, Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600))
PY
}
cpu() { awk '{print $14 + $15}' /proc/$PROXY_PID/stat; }
TICKS=$(getconf CLK_TCK)
python3 - "$STORE" <<'PY'
import sys, boto3
from botocore.config import Config
c = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="benchkey", aws_secret_access_key="benchsecret",
                 region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
for b in ("direct", "proxied"):
    try: c.create_bucket(Bucket=b)
    except Exception: pass
PY
run() { # label endpoint bucket cacert
    local put get t0 t1 t2
    put=$(presign "$2" put_object "$3" obj); get=$(presign "$2" get_object "$3" obj)
    t0=$(date +%s.%N)
    curl -sf --cacert "$4" -T "$WORK/obj" "$put" -o /dev/null
    t1=$(date +%s.%N)
    curl -sf --cacert "$4" "$get" -o "$WORK/back"
    t2=$(date +%s.%N)
    cmp -s "$WORK/obj" "$WORK/back" || { echo "$1: round trip differs" >&2; exit 1; }
    python3 -c "import sys; s=$SIZE_MIB*1048576/1e6; print(f'$1: PUT {s/($t1-$t0):7.1f} MB/s  GET {s/($t2-$t1):7.1f} MB/s')"
}
run "direct to s3s-fs       " "$STORE" direct "$WORK/certs/ca.pem"
c0=$(cpu)
if [[ -n "${PERF_OUT:-}" ]]; then
    perf record -e cpu-clock -F 1999 -g -p "$PROXY_PID" -o "$PERF_OUT" >/dev/null 2>&1 &
    PERF_PID=$!
fi
run "through escrow-proxy   " "$PROXY" proxied "$WORK/certs/ca.pem"
c1=$(cpu)
if [[ -n "${PERF_OUT:-}" ]]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; fi
python3 -c "print(f'proxy CPU: {($c1-$c0)/$TICKS/(2*$SIZE_MIB/1024):.2f} s per GiB moved (PUT+GET)')"
echo "proxy peak RSS: $(awk '/VmHWM/{print $2/1024 " MiB"}' /proc/$PROXY_PID/status)"
echo "store holds ciphertext only: $(python3 -c "
import os,sys
probe=open('$WORK/obj','rb').read(4096)[:64]
hits=[p for d,_,fs in os.walk('$WORK/s3/proxied') for p in [os.path.join(d,f) for f in fs] if probe in open(p,'rb').read()]
print('no' if hits else 'yes')")"
