#!/usr/bin/env bash
# Makes the demo's secrets as files, one directory per Kubernetes Secret the manifests mount:
#   DIR/escrow-proxy-secrets/        root.key, keyring (escrow-proxy keys init), client-app
#                                    (the app's secret key), admin-token
#   DIR/escrow-proxy-tls/            tls.crt, tls.key, ca.crt: a development CA and a server
#                                    certificate for localhost (escrow-proxy certs generate)
#   DIR/escrow-proxy-app-credentials/credentials   (AWS shared credentials file for the app)
#                                    and ca.crt (the CA the app trusts for the sidecar)
# owned by root, group 65532 (the containers' group), files 0440. On a cluster, make the
# Secrets from them:
#   kubectl create secret generic escrow-proxy-secrets --from-file=DIR/escrow-proxy-secrets/
#   kubectl create secret generic escrow-proxy-tls --from-file=DIR/escrow-proxy-tls/
#   kubectl create secret generic escrow-proxy-app-credentials --from-file=DIR/escrow-proxy-app-credentials/
# (with cert-manager, its Certificate makes escrow-proxy-tls instead; certs/README.md)
# Usage: bash deploy/podman/make-secrets.sh DIR [path/to/escrow-proxy]   (refuses an existing DIR)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:?usage: make-secrets.sh DIR [escrow-proxy binary]}"
binary="${2:-$here/../../target/release/escrow-proxy}"
[[ ! -e "$dir" ]] || { echo "make-secrets: $dir exists; never overwriting keys" >&2; exit 1; }

proxy="$dir/escrow-proxy-secrets"
tls="$dir/escrow-proxy-tls"
app="$dir/escrow-proxy-app-credentials"
umask 077
mkdir -p "$proxy" "$tls" "$app"
"$binary" certs generate --out "$tls/generated" >/dev/null
mv "$tls/generated/server.pem" "$tls/tls.crt"
mv "$tls/generated/server-key.pem" "$tls/tls.key"
mv "$tls/generated/ca.pem" "$tls/ca.crt"
rmdir "$tls/generated"
cp "$tls/ca.crt" "$app/ca.crt"
"$binary" keys init --keyring "$proxy/keyring" --root-key "$proxy/root.key" >/dev/null
# 40 characters from [A-Za-z0-9]: a secret key SigV4 clients accept anywhere.
random() { head -c 96 /dev/urandom | base64 -w0 | LC_ALL=C tr -dc 'A-Za-z0-9' | cut -c "1-$1"; }
secret="$(random 40)"
printf '%s\n' "$secret" >"$proxy/client-app"
random 48 >"$proxy/admin-token"
printf '[default]\naws_access_key_id = app\naws_secret_access_key = %s\n' "$secret" >"$app/credentials"
# As the kubelet mounts a Secret under `fsGroup: 65532`: owned by root, group 65532, read-only
# for the group (0440), nothing for others.
chmod 0440 "$proxy"/* "$tls"/* "$app"/*
chmod 0550 "$proxy" "$tls" "$app"
if [[ $EUID -eq 0 ]]; then
    chown -R 0:65532 "$proxy" "$tls" "$app"
fi
echo "secrets in $dir"
