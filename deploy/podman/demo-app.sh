#!/bin/sh
# The demo app of deploy/kubernetes: a real S3 client (curl's SigV4) beside the proxy. It reads
# its credentials from the AWS shared credentials file the pod mounts, waits (bounded) for the
# sidecar, then creates a bucket, writes a small and an 8 MiB object, lists, reads both back
# and compares, deletes them and checks they are gone. It prints "demo-app: OK" or
# "demo-app: FAILED: <why>" and then waits for SIGTERM (a Deployment restarts exited apps).
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
s3() {
    curl -sS -K /tmp/curl.conf --aws-sigv4 "aws:amz:$region:s3" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

# A classic sidecar may start after the app: retry refused connections, at most 60 s.
curl -sS -o /dev/null --retry 60 --retry-connrefused --retry-delay 1 --retry-max-time 60 "$endpoint/" \
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

echo "demo-app: OK (bucket $bucket: 2 objects written, listed, read back identical, deleted)"
trap 'exit 0' TERM INT
sleep 2147483647 &
wait $!
