#!/usr/bin/env bash
# Runs the sidecar pod of deploy/kubernetes under podman: `kube play` of the proxy's ConfigMap
# and the classic-sidecar Deployment, as committed except for two rewrites:
# - the two Secret volumes become host directories made by make-secrets.sh (podman 4.3,
#   Debian 12's, mounts a Secret's `data` undecoded and ignores `stringData`:
#   containers/podman#16625, fixed in 4.4);
# - container ports, if an overlay adds any, are dropped: podman 4.3 publishes each on the host
#   (and refuses them with --network none); the sidecar needs none.
# The native-sidecar form cannot run here: podman runs init containers to completion.
# Usage: bash deploy/podman/kube-play.sh up|down SECRETS_DIR [podman kube play options...]
#   e.g. `up DIR --network none`: the pod gets only its loopback, all a sidecar pod needs.
# PODMAN overrides the podman command (e.g. PODMAN="podman --runtime runc").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
action="${1:?usage: kube-play.sh up|down SECRETS_DIR}"
secrets="$(cd "${2:?usage: kube-play.sh up|down SECRETS_DIR}" && pwd)"
shift 2
podman=(${PODMAN:-podman})
k8s="$here/../kubernetes"

rendered="$(mktemp --suffix=.yaml)"
trap 'rm -f "$rendered"' EXIT
{
    cat "$k8s/base/configmap.yaml"
    echo "---"
    sed -E -e "s#secret: \{secretName: ([a-z0-9-]+), defaultMode: 0400, optional: false\}#hostPath: {path: $secrets/\1, type: Directory}#" \
        -e '/^ *ports:$/,/containerPort:/d' \
        "$k8s/classic/deployment.yaml"
} >"$rendered"
if grep -qE 'secretName:|containerPort:' "$rendered"; then
    echo "kube-play: a Secret volume or port is not in the form this script rewrites" >&2
    exit 1
fi

case "$action" in
    up) "${podman[@]}" kube play "$@" "$rendered" ;;
    down) "${podman[@]}" kube play --down "$rendered" ;;
    *) echo "kube-play: up or down, not $action" >&2; exit 1 ;;
esac
