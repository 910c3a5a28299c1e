#!/usr/bin/env bash
# Bounded memory, measured: a multipart upload and download of a large object (default 2 GiB)
# with boto3 at concurrency 10 (8 MiB parts) through escrow-proxy (release build, TLS) in front
# of a real S3 server (s3s-fs); reports the proxy's peak RSS (VmHWM), its CPU time, the wall
# times, and checks the round trip is byte-exact.
# Usage: bash benches/multipart-memory.sh [SIZE_MIB]. Needs: s3s-fs (cargo install s3s-fs
# --version 0.14.1 --locked --features binary), python3 with boto3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZE_MIB=${1:-2048}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ -n ${KEEP:-} ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
# PROXY_BIN: an already built binary to measure instead of a fresh release build.
if [[ -z ${PROXY_BIN:-} ]]; then
    cargo build --release --bin escrow-proxy >/dev/null 2>&1 || cargo build --release --bin escrow-proxy
fi
BIN=${PROXY_BIN:-${CARGO_TARGET_DIR:-target}/release/escrow-proxy}

AK=benchkey SK=benchsecret
mkdir -p "$WORK/s3" "$WORK/certs"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
s3s-fs --host 127.0.0.1 --port "$PORT" --access-key $AK --secret-key $SK "$WORK/s3" >"$WORK/s3s.log" 2>&1 &
PIDS+=($!)
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
PIDS+=("$PROXY_PID")
for _ in $(seq 100); do grep -q "^endpoint:" "$WORK/proxy.out" && break; sleep 0.1; done
PROXY=$(sed -n 's/^endpoint: //p' "$WORK/proxy.out")
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/obj"
CPU0=$(awk '{print $14 + $15}' /proc/$PROXY_PID/stat)

python3 - "$PROXY" "$WORK/certs/ca.pem" "$WORK/obj" "$WORK/back" <<'PY'
import sys, time, boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
ep, ca, src, dst = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=ep, verify=ca, aws_access_key_id="benchkey",
                  aws_secret_access_key="benchsecret", region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, max_pool_connections=20))
cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=10)
s3.create_bucket(Bucket="bench")
t = time.monotonic(); s3.upload_file(src, "bench", "big", Config=cfg); up = time.monotonic() - t
t = time.monotonic(); s3.download_file("bench", "big", dst, Config=cfg); down = time.monotonic() - t
print(f"upload_s={up:.1f} download_s={down:.1f} etag={s3.head_object(Bucket='bench', Key='big')['ETag']}")
PY
cmp "$WORK/obj" "$WORK/back" && echo "round trip: byte-exact"
CPU1=$(awk '{print $14 + $15}' /proc/$PROXY_PID/stat)
echo "size_mib=$SIZE_MIB concurrency=10 part_mib=8"
echo "proxy_cpu_s=$(echo "scale=1; ($CPU1 - $CPU0) / $(getconf CLK_TCK)" | bc)"
echo "proxy_peak_rss_mib=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' /proc/$PROXY_PID/status)"
