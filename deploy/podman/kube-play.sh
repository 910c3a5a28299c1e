#!/usr/bin/env bash
# Runs the sidecar pod of deploy/kubernetes under podman: the kustomization of FORM (`classic`
# by default) rendered with `kubectl kustomize`, then `podman kube play` of the result. The
# manifests are the committed ones; a throw-away overlay (in a temp directory) changes only:
# - the three Secret volumes become host directories made by make-secrets.sh (podman 4.3,
#   Debian 12's, mounts a Secret's `data` undecoded and ignores `stringData`:
#   containers/podman#16625, fixed in 4.4), still read-only, root-owned, group 65532, 0440;
# - with NAME_PREFIX, every name gets that prefix (the pod is then NAME_PREFIXescrow-demo-pod-0;
#   the emptyDir volumes, which podman makes named volumes, too), and with IMAGE_TAG the images are localhost/escrow-proxy{,-demo-app}:IMAGE_TAG (default
#   dev): several pods side by side on one machine, as the tests run them.
# The native-sidecar form does not run under podman 4.3 (see ../kubernetes/README.md); FORM
# exists to show it.
# Usage: bash deploy/podman/kube-play.sh up|down|render SECRETS_DIR [podman kube play options...]
#   e.g. `up DIR --network none`: the pod gets only its loopback, all a sidecar pod needs.
# PODMAN overrides the podman command (e.g. PODMAN="podman --runtime runc").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
action="${1:?usage: kube-play.sh up|down|render SECRETS_DIR}"
secrets="$(cd "${2:?usage: kube-play.sh up|down|render SECRETS_DIR}" && pwd)"
shift 2
podman=(${PODMAN:-podman})
form="${FORM:-classic}"
k8s="$(cd "$here/../kubernetes" && pwd)"
[[ -f "$k8s/$form/kustomization.yaml" ]] || { echo "kube-play: no kustomization $k8s/$form" >&2; exit 1; }
command -v kubectl >/dev/null || { echo "kube-play: needs kubectl (for kubectl kustomize)" >&2; exit 1; }

overlay="$(mktemp -d)"
trap 'rm -rf "$overlay"' EXIT
host_dir() { # volume name, Secret name
    cat <<EOF
          - name: $1
            secret: null
            hostPath: {path: $secrets/$2, type: Directory}
EOF
}
{
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    # kustomize takes relative paths only.
    echo "resources: [\"$(realpath --relative-to="$overlay" "$k8s/$form")\"]"
    [[ -z "${NAME_PREFIX:-}" ]] || echo "namePrefix: ${NAME_PREFIX}"
    echo "images:"
    echo "  - {name: localhost/escrow-proxy, newTag: \"${IMAGE_TAG:-dev}\"}"
    echo "  - {name: localhost/escrow-proxy-demo-app, newTag: \"${IMAGE_TAG:-dev}\"}"
    echo "patches:"
    echo "  - patch: |-"
    echo "      apiVersion: apps/v1"
    echo "      kind: Deployment"
    echo "      metadata: {name: escrow-demo}"
    echo "      spec:"
    echo "        template:"
    echo "          spec:"
    echo "            volumes:"
    host_dir escrow-secrets escrow-proxy-secrets | sed 's/^/    /'
    host_dir escrow-tls escrow-proxy-tls | sed 's/^/    /'
    host_dir app-credentials escrow-proxy-app-credentials | sed 's/^/    /'
} >"$overlay/kustomization.yaml"

rendered="$overlay/pod.yaml"
# podman makes each emptyDir a named volume of the volume's name: prefixed too.
empty_dirs=(escrow-data app-tmp)
kubectl kustomize "$overlay" \
    | sed -E "s/^( *(- )?name: )(escrow-data|app-tmp)\$/\1${NAME_PREFIX:-}\3/" >"$rendered"
if grep -qE 'secretName:|containerPort:' "$rendered"; then
    echo "kube-play: a Secret volume or a port is left in the rendered manifests" >&2
    exit 1
fi

case "$action" in
    up) "${podman[@]}" kube play "$@" "$rendered" ;;
    down)
        "${podman[@]}" kube play --down "$rendered"
        # An emptyDir ends with its pod (podman 4.3 keeps the named volumes), and so does the
        # volume podman made of the ConfigMap.
        for v in "${empty_dirs[@]}" escrow-proxy-config; do
            "${podman[@]}" volume rm --force "${NAME_PREFIX:-}$v" >/dev/null 2>&1 || true
        done
        ;;
    render) cat "$rendered" ;;
    *) echo "kube-play: up, down or render, not $action" >&2; exit 1 ;;
esac
