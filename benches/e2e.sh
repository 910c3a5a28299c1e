#!/usr/bin/env bash
# End-to-end benchmark of escrow-proxy (issue #4). One command:
#
#     bash benches/e2e.sh    (CARGO_TARGET_DIR is honoured; ~14 min on 2 cores from a fresh
#                            clone, 9 of them the release build; ~5 min once built)
#
# Installs what is missing (nginx-light, rclone and curl from Debian, s3s-fs 0.14.1 from
# crates.io; each only when absent), builds escrow-proxy and the load generator
# (benches/load/) in release mode, then starts on 127.0.0.1 only:
#   s3s-fs (the store), a second s3s-fs (the mirror store), nginx as a bare TLS reverse-proxy hop
#   in front of the store (no buffering, keepalive upstream), escrow-proxy over TLS in front of
#   the store, and escrow-proxy with [mirror] in front of both stores;
# and runs the load generator against (a) the store directly, (b) nginx, (c) escrow-proxy,
# (d) escrow-proxy with mirror, interleaved, then rclone crypt against rclone through the proxy.
# It prints Markdown tables with the ratios and the issue's goals, and keeps the whole output in
# benches/results/<date>.txt. Every process it starts is stopped by pid when it exits.
#
# Knobs (environment): E2E_ROUNDS (default 2), E2E_QUICK=1 (small sizes: a smoke run, not a
# measurement), E2E_OUT (output file), E2E_STORE=nodelay (serve both stores with the same
# s3s-fs code but TCP_NODELAY set, from the load binary: see benches/load/store.rs for why the
# s3s-fs binary distorts small-object numbers), E2E_LINK=RATE (e.g. 1gbit: each store in its
# own network namespace behind its own veth link shaped to RATE each way, as stores across a
# network are; needs root and iproute2; section 2b), TMPDIR (where the stores keep their files:
# /dev/shm takes the disk's writeback out of the figures), E2E_ARGS (more load-generator
# options, e.g. "--only put-large-8,get-large-8 --targets c --no-rclone --profile get-large-8
# --profile-dir /tmp/prof": perf-record the hops during one phase; needs linux-perf, and perf
# slows what it watches, so not for published numbers);
# `cargo bench --bench load -- --help` lists them all.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${E2E_ROUNDS:-2}
OUT=${E2E_OUT:-benches/results/$(date +%F).txt}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
S3S_FS_VERSION=0.14.1
READY_TRIES=400          # readiness polls, 50 ms apart: 20 s at most
STOP_TRIES=200           # stop polls per process after SIGTERM, 50 ms apart: 10 s, then SIGKILL

log() { echo "e2e: $*" >&2; }

as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# --- 1. programs (idempotent) ----------------------------------------------------------------
if [[ -z ${E2E_LINK_INNER:-} ]]; then # (skipped inside the E2E_LINK namespace: done outside)
export PATH="$PATH:/usr/sbin:$HOME/.cargo/bin"
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v rclone >/dev/null || missing+=(rclone)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]} > 0)); then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! s3s-fs --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
    log "installing s3s-fs $S3S_FS_VERSION"
    cargo install s3s-fs --version "$S3S_FS_VERSION" --locked --features binary
fi

# --- 2. build ----------------------------------------------------------------------------------
log "building escrow-proxy and the load generator (release)"
build_json=$(cargo build --release --locked --bin escrow-proxy --bench load --message-format=json-render-diagnostics)
PROXY_BIN="$TARGET_DIR/release/escrow-proxy"
LOAD_BIN=$(grep -o '"executable":"[^"]*/load-[0-9a-f]*"' <<<"$build_json" | tail -n1 | cut -d'"' -f4)
[[ -x "$PROXY_BIN" && -x "$LOAD_BIN" ]] || { log "build produced no binaries"; exit 1; }

# --- 2b. links (E2E_LINK only) -----------------------------------------------------------------
# Each store in its own network namespace, reached over its own veth link shaped to E2E_LINK in
# each direction (tbf), as stores across a network are; the proxies, nginx and the load generator
# in a third namespace, where this script runs again. The stores then no longer answer over
# loopback, but they still share this machine's cores with everything else.
if [[ -n ${E2E_LINK:-} ]]; then
    command -v tc >/dev/null || { log "installing iproute2"; as_root apt-get install -y -qq iproute2 >/dev/null; }
    NS=escrow-e2e-$$
    links_down() {
        local status=$?
        for ns in "$NS" "$NS-store" "$NS-mirror"; do as_root ip netns delete "$ns" 2>/dev/null || true; done
        exit "$status"
    }
    trap links_down EXIT
    trap 'exit 130' INT TERM
    as_root ip netns add "$NS"
    as_root ip -n "$NS" link set lo up
    n=0
    for side in store mirror; do
        n=$((n + 1))
        as_root ip netns add "$NS-$side"
        as_root ip -n "$NS-$side" link set lo up
        as_root ip -n "$NS" link add "to-$side" type veth peer name uplink netns "$NS-$side"
        as_root ip -n "$NS" addr add "10.231.$n.1/30" dev "to-$side"
        as_root ip -n "$NS-$side" addr add "10.231.$n.2/30" dev uplink
        as_root ip -n "$NS" link set "to-$side" up
        as_root ip -n "$NS-$side" link set uplink up
        as_root tc -n "$NS" qdisc add dev "to-$side" root tbf rate "$E2E_LINK" burst 256kb latency 50ms
        as_root tc -n "$NS-$side" qdisc add dev uplink root tbf rate "$E2E_LINK" burst 256kb latency 50ms
    done
    log "stores behind $E2E_LINK links (namespaces $NS-store, $NS-mirror)"
    status=0
    as_root env E2E_LINK_INNER="$NS" PROXY_BIN="$PROXY_BIN" LOAD_BIN="$LOAD_BIN" ip netns exec "$NS" bash "${BASH_SOURCE[0]}" || status=$?
    exit "$status"
fi
fi

# --- 3. servers --------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/escrow-e2e.XXXXXX")
chmod 711 "$WORK" # nginx workers (nobody) may traverse to their temp dirs; nothing else is readable
PIDS=()
cleanup() {
    local status=$? pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq "$STOP_TRIES"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_ready NAME PID COMMAND…: polls COMMAND until it succeeds, while PID lives.
wait_ready() {
    local name=$1 pid=$2
    shift 2
    for _ in $(seq "$READY_TRIES"); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || { log "$name exited during start-up; its log:"; cat "$WORK/$name".log >&2 || true; exit 1; }
        sleep 0.05
    done
    log "$name not ready after $((READY_TRIES / 20)) s"
    exit 1
}

read -r P_STORE P_MIRROR P_NGINX < <("$LOAD_BIN" --free-ports 3)
# Where the stores listen: loopback, or each in its own namespace behind its link (E2E_LINK).
if [[ -n ${E2E_LINK_INNER:-} ]]; then
    H_STORE=10.231.1.2 H_MIRROR=10.231.2.2
else
    H_STORE=127.0.0.1 H_MIRROR=127.0.0.1
fi
AK="bench$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
SK=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
umask 077
mkdir -p "$WORK/store" "$WORK/mirror" "$WORK/certs"

# The two S3 stores. (s3s-fs only takes its key on the command line: a throwaway per-run key.)
start_store() { # name, host, port; sets STARTED
    local in=()
    [[ -n ${E2E_LINK_INNER:-} ]] && in=(ip netns exec "$E2E_LINK_INNER-$1")
    if [[ ${E2E_STORE:-} == nodelay ]]; then
        BENCH_ACCESS_KEY=$AK BENCH_SECRET_KEY=$SK "${in[@]}" "$LOAD_BIN" --serve-store "$WORK/$1" --host "$2" --port "$3" >"$WORK/$1.log" 2>&1 &
    else
        "${in[@]}" s3s-fs --host "$2" --port "$3" --access-key "$AK" --secret-key "$SK" "$WORK/$1" >"$WORK/$1.log" 2>&1 &
    fi
    STARTED=$!
    PIDS+=("$STARTED")
}
start_store store "$H_STORE" "$P_STORE"
STORE_PID=$STARTED
start_store mirror "$H_MIRROR" "$P_MIRROR"
MIRROR_STORE_PID=$STARTED
wait_ready store "$STORE_PID" curl -s -o /dev/null "http://$H_STORE:$P_STORE/"
wait_ready mirror "$MIRROR_STORE_PID" curl -s -o /dev/null "http://$H_MIRROR:$P_MIRROR/"

"$PROXY_BIN" certs generate --out "$WORK/certs" >/dev/null
CA="$WORK/certs/ca.pem"

# (b) nginx: a bare TLS hop, configured like a streaming S3 front: no request or response
# buffering, HTTP/1.1 keepalive to the store, Host passed through (presigned URLs sign it).
mkdir -m 755 "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<NGINX
daemon off;
master_process on;
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    scgi_temp_path $WORK/nginx/scgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    upstream store {
        server $H_STORE:$P_STORE;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$P_NGINX ssl;
        ssl_certificate $WORK/certs/server.pem;
        ssl_certificate_key $WORK/certs/server-key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size 0;
        location / {
            proxy_pass http://store;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }
    }
}
NGINX
nginx -e "$WORK/nginx.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!) NGINX_PID=$!
wait_ready nginx "$NGINX_PID" curl -s -o /dev/null --cacert "$CA" "https://127.0.0.1:$P_NGINX/"

# (c) and (d): escrow-proxy without and with a mirror, each with its own keys.
proxy_config() { # name, extra TOML
    cat <<TOML
[server]
listen = "127.0.0.1:0"
tls_cert = "$WORK/certs/server.pem"
tls_key = "$WORK/certs/server-key.pem"
[[clients]]
access_key = "$AK"
secret_key = "$SK"
[primary]
type = "s3"
endpoint = "http://$H_STORE:$P_STORE"
access_key = "$AK"
secret_key = "$SK"
[keys]
keyring = "$WORK/$1.keyring"
root_key_file = "$WORK/$1.root.key"
$2
TOML
}
start_proxy() { # name, extra TOML; sets PROXY_PID and PROXY_URL
    proxy_config "$1" "$2" >"$WORK/$1.toml"
    "$PROXY_BIN" serve --config "$WORK/$1.toml" >"$WORK/$1.out" 2>"$WORK/$1.log" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_ready "$1" "$PROXY_PID" grep -q '^endpoint:' "$WORK/$1.out"
    PROXY_URL=$(sed -n 's/^endpoint: //p' "$WORK/$1.out")
}
start_proxy escrow ""
ESCROW_PID=$PROXY_PID ESCROW_URL=$PROXY_URL
start_proxy escrow-mirror "[mirror]
type = \"s3\"
endpoint = \"http://$H_MIRROR:$P_MIRROR\"
access_key = \"$AK\"
secret_key = \"$SK\"
write = \"sync\"
read = \"primary\""
MIRROR_PID=$PROXY_PID MIRROR_URL=$PROXY_URL

# rclone: plain (store), crypt (rclone encrypts, over plain), escrow (the proxy encrypts).
cat >"$WORK/rclone.conf" <<RCLONE
[plain]
type = s3
provider = Other
endpoint = http://$H_STORE:$P_STORE
access_key_id = $AK
secret_access_key = $SK
region = us-east-1
force_path_style = true

[crypt]
type = crypt
remote = plain:b-rclone-crypt
password = $(rclone obscure "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')")

[escrow]
type = s3
provider = Other
endpoint = $ESCROW_URL
access_key_id = $AK
secret_access_key = $SK
region = us-east-1
force_path_style = true
RCLONE

# --- 4. load ---------------------------------------------------------------------------------
umask 022
mkdir -p "$(dirname "$OUT")"
MACHINE="$(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, Linux $(uname -r)"
ARGS=(--direct "http://$H_STORE:$P_STORE" --nginx "https://127.0.0.1:$P_NGINX" --nginx-pid "$NGINX_PID"
    --escrow "$ESCROW_URL" --escrow-pid "$ESCROW_PID" --mirror "$MIRROR_URL" --mirror-pid "$MIRROR_PID"
    --store-pid "$STORE_PID" --store-pid "$MIRROR_STORE_PID" --ca "$CA" --rounds "$ROUNDS"
    --rclone-config "$WORK/rclone.conf" --work "$WORK" --clk-tck "$(getconf CLK_TCK)" --machine "$MACHINE"
    --store-label "$([[ ${E2E_STORE:-} == nodelay ]] && echo "s3s-fs $S3S_FS_VERSION (library, TCP_NODELAY)" || echo "s3s-fs $S3S_FS_VERSION (binary)")${E2E_LINK_INNER:+, each behind its own $E2E_LINK link}")
[[ -n ${E2E_QUICK:-} ]] && ARGS+=(--quick)
read -r -a EXTRA <<<"${E2E_ARGS:-}"
ARGS+=("${EXTRA[@]}")
log "running (${ROUNDS} rounds); output also goes to $OUT"
{
    echo "command: bash benches/e2e.sh (${TMPDIR:+TMPDIR=$TMPDIR }E2E_ROUNDS=$ROUNDS${E2E_STORE:+ E2E_STORE=$E2E_STORE}${E2E_LINK:+ E2E_LINK=$E2E_LINK}${E2E_QUICK:+ E2E_QUICK=1}${E2E_ARGS:+ E2E_ARGS=\"$E2E_ARGS\"})"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "versions: $(s3s-fs --version), $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(rclone version | head -n1)"
    BENCH_ACCESS_KEY=$AK BENCH_SECRET_KEY=$SK "$LOAD_BIN" "${ARGS[@]}"
} | tee "$OUT"
