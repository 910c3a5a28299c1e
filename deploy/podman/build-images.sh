#!/usr/bin/env bash
# Builds the two local images the sidecar manifests name, without a registry:
#   localhost/escrow-proxy:TAG           the escrow-proxy binary given (default: the release
#                                        build), stripped, with the shared libraries it links
#                                        (ldd), as user 65532; nothing else (no shell)
#   localhost/escrow-proxy-demo-app:TAG  deploy/podman/demo-app.sh with dash, curl, head, cmp,
#                                        md5sum, rm and sleep and their shared libraries, as
#                                        user 65532
# TAG is IMAGE_TAG, default dev (the tag the manifests name).
# Usage: bash deploy/podman/build-images.sh [path/to/escrow-proxy]
# Needs buildah (root, or a user with subuids). Registry builds use deploy/container/Containerfile.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
binary="${1:-$here/../../target/release/escrow-proxy}"
[[ -x "$binary" ]] || { echo "build-images: no executable at $binary (cargo build --release)" >&2; exit 1; }

# Copies each program and every shared library it links (as ldd resolves them here) into $1.
copy_programs() {
    local root="$1" prog lib
    shift
    for prog in "$@"; do
        install -D -m 0755 "$prog" "$root$prog"
        for lib in $(ldd "$prog" | grep -o '/[^ ]*'); do
            [[ -e "$root$lib" ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
        done
    done
}

# A root filesystem with a non-root user 65532 (named escrow) and a writable /tmp.
base_files() {
    local root="$1"
    install -d -m 0755 "$root/etc" "$root/var/lib/escrow"
    install -d -m 1777 "$root/tmp"
    printf 'root:x:0:0:root:/:/sbin/nologin\nescrow:x:65532:65532:escrow:/var/lib/escrow:/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\nescrow:x:65532:\n' >"$root/etc/group"
    chown 65532:65532 "$root/var/lib/escrow"
}

# build NAME populate-function [buildah config options...]
build() {
    local name="$1" populate="$2" ctr mnt old
    shift 2
    ctr="$(buildah from scratch)"
    mnt="$(buildah mount "$ctr")"
    base_files "$mnt"
    "$populate" "$mnt"
    buildah umount "$ctr" >/dev/null
    buildah config --user 65532:65532 --workingdir /var/lib/escrow "$@" "$ctr"
    old="$(buildah images --quiet "$name" 2>/dev/null || true)"
    buildah commit --quiet --rm "$ctr" "$name" >/dev/null
    # The previous build of this name, now untagged, goes (no pile of dangling images).
    if [[ -n "$old" && "$old" != "$(buildah images --quiet "$name")" ]]; then
        buildah rmi "$old" >/dev/null 2>&1 || true
    fi
    echo "built $name"
}

proxy_files() {
    local root="$1" tmp
    tmp="$(mktemp -d)"
    # Debug info is not needed at run time (a debug build is ~10 times larger with it).
    strip --strip-debug -o "$tmp/escrow-proxy" "$binary"
    install -D -m 0755 "$tmp/escrow-proxy" "$root/usr/local/bin/escrow-proxy"
    for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
        [[ -e "$root$lib" ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done
    rm -rf "$tmp"
}

app_files() {
    local root="$1"
    copy_programs "$root" "$(command -v dash)" "$(command -v curl)" "$(command -v head)" \
        "$(command -v cmp)" "$(command -v sleep)" "$(command -v md5sum)" "$(command -v rm)"
    install -d "$root/bin"
    ln -sf "$(command -v dash)" "$root/bin/sh"
    install -D -m 0755 "$here/demo-app.sh" "$root/usr/local/bin/demo-app"
}

tag="${IMAGE_TAG:-dev}"
build "localhost/escrow-proxy:$tag" proxy_files \
    --entrypoint '["/usr/local/bin/escrow-proxy"]' \
    --cmd '["serve", "--config", "/etc/escrow/escrow.toml"]' \
    --port 8080
build "localhost/escrow-proxy-demo-app:$tag" app_files \
    --env PATH=/usr/local/bin:/usr/bin:/bin \
    --entrypoint '["/bin/sh", "/usr/local/bin/demo-app"]'
