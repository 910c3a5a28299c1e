#!/bin/sh
# The demo app of deploy/kubernetes: a real S3 client (curl's SigV4) beside the proxy, over TLS
# to the sidecar (the CA in AWS_CA_BUNDLE). It reads its credentials from the AWS shared
# credentials file the pod mounts, waits (bounded) for the sidecar, then creates a bucket,
# writes a small and an 8 MiB object, lists, reads both back and compares, deletes them and
# checks they are gone. It prints "demo-app: OK" or "demo-app: FAILED: <why>" and then waits
# for SIGTERM (a Deployment restarts exited apps). On SIGTERM it lets an upload in progress
# (see below) finish before it exits, as an app that stops gracefully does.
#
# `demo-app upload NAME MIB RATE` (run in the app container with `podman exec` or
# `kubectl exec`): uploads MIB MiB of random bytes as NAME at RATE (curl's --limit-rate, e.g.
# 2M), then a small object over the same connection, and prints one line per request:
# "upload: NAME.bin HTTP <code> connects <n> etag <ok|mismatch>" (connects 0: the connection
# was reused), then "upload: done". While it runs, /tmp/upload.running exists.
set -eu

endpoint=${AWS_ENDPOINT_URL:?AWS_ENDPOINT_URL is not set}
region=${AWS_REGION:-us-east-1}
bucket=${DEMO_BUCKET:-demo}

fail() {
    echo "demo-app: FAILED: $*"
    exit 1
}

id='' secret=''
while IFS=' =' read -r name value; do
    case $name in
        aws_access_key_id) id=$value ;;
        aws_secret_access_key) secret=$value ;;
    esac
done <"${AWS_SHARED_CREDENTIALS_FILE:?AWS_SHARED_CREDENTIALS_FILE is not set}"
[ -n "$id" ] && [ -n "$secret" ] || fail "no credentials in $AWS_SHARED_CREDENTIALS_FILE"

# curl takes the key pair from a config file, not from its command line (visible in /proc).
umask 077
printf 'user = "%s:%s"\n' "$id" "$secret" >/tmp/curl.conf
if [ -n "${AWS_CA_BUNDLE:-}" ]; then
    printf 'cacert = "%s"\n' "$AWS_CA_BUNDLE" >>/tmp/curl.conf
fi
s3() {
    curl -sS -K /tmp/curl.conf --aws-sigv4 "aws:amz:$region:s3" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

if [ "${1:-}" = upload ]; then
    name=${2:?upload NAME MIB RATE} mib=${3:?upload NAME MIB RATE} rate=${4:?upload NAME MIB RATE}
    : >/tmp/upload.running
    head -c $((mib * 1048576)) /dev/urandom >"/tmp/$name"
    set -- $(md5sum "/tmp/$name")
    want=$1
    printf 'small\n' >/tmp/upload-small
    echo "upload: started $name.bin ($mib MiB at $rate/s)"
    # One curl, two requests: the second reuses the first one's connection (connects 0).
    out=$(s3 -o /dev/null -D /tmp/upload.head -w '%{http_code} %{num_connects}\n' --limit-rate "$rate" \
        -T "/tmp/$name" "$endpoint/$bucket/$name.bin" \
        --next -K /tmp/curl.conf --aws-sigv4 "aws:amz:$region:s3" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
        -o /dev/null -w '%{http_code} %{num_connects}\n' -T /tmp/upload-small "$endpoint/$bucket/$name-after.bin") || true
    etag=mismatch
    while IFS= read -r line; do
        case $line in
            [Ee][Tt][Aa][Gg]:*"\"$want\""*) etag=ok ;;
        esac
    done </tmp/upload.head
    set -- $out
    echo "upload: $name.bin HTTP ${1:-none} connects ${2:-none} etag $etag"
    echo "upload: $name-after.bin HTTP ${3:-none} connects ${4:-none}"
    echo "upload: done"
    : >"/tmp/$name"
    rm -f /tmp/upload.running
    exit 0
fi

# A classic sidecar may start after the app: retry refused connections, at most 60 s.
s3 -o /dev/null --retry 60 --retry-connrefused --retry-delay 1 --retry-max-time 60 "$endpoint/" \
    || fail "the sidecar at $endpoint never answered"

code=$(s3 -o /dev/null -w '%{http_code}' -X PUT "$endpoint/$bucket") || fail "create bucket: curl failed"
case $code in
    200 | 409) ;; # 409: ours already, from a previous run of this pod
    *) fail "create bucket: HTTP $code" ;;
esac

printf 'hello through the sidecar\n' >/tmp/small
head -c 8388608 /dev/urandom >/tmp/big
for name in small big; do
    code=$(s3 -o /dev/null -w '%{http_code}' -T "/tmp/$name" "$endpoint/$bucket/$name.bin") || fail "put $name: curl failed"
    [ "$code" = 200 ] || fail "put $name: HTTP $code"
done

list=$(s3 --fail-with-body "$endpoint/$bucket?list-type=2") || fail "list: $list"
for name in small big; do
    case $list in
        *"<Key>$name.bin</Key>"*) ;;
        *) fail "list: $name.bin missing" ;;
    esac
done

for name in small big; do
    code=$(s3 -o "/tmp/$name.back" -w '%{http_code}' "$endpoint/$bucket/$name.bin") || fail "get $name: curl failed"
    [ "$code" = 200 ] || fail "get $name: HTTP $code"
    cmp -s "/tmp/$name" "/tmp/$name.back" || fail "get $name: the bytes read back differ"
done

for name in small big; do
    code=$(s3 -o /dev/null -w '%{http_code}' -X DELETE "$endpoint/$bucket/$name.bin") || fail "delete $name: curl failed"
    [ "$code" = 204 ] || fail "delete $name: HTTP $code"
    code=$(s3 -o /dev/null -w '%{http_code}' "$endpoint/$bucket/$name.bin") || fail "get deleted $name: curl failed"
    [ "$code" = 404 ] || fail "get deleted $name: HTTP $code, not 404"
done
: >/tmp/big
: >/tmp/big.back

echo "demo-app: OK (bucket $bucket: 2 objects written, listed, read back identical, deleted)"
# Stopping: an upload in progress (from `demo-app upload`) finishes first, for at most 60 s.
stop() {
    if [ -e /tmp/upload.running ]; then
        echo "demo-app: SIGTERM during an upload; letting it finish"
        waited=0
        while [ -e /tmp/upload.running ] && [ "$waited" -lt 600 ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        [ -e /tmp/upload.running ] && echo "demo-app: the upload did not finish within 60 s"
    fi
    echo "demo-app: stopped"
    exit 0
}
trap stop TERM INT
sleep 2147483647 &
wait $!
