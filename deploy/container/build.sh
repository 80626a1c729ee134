#!/usr/bin/env bash
# Builds the flinkscale container image from a flinkscale binary:
#
#   deploy/container/build.sh [BINARY] [TAG]
#
# BINARY defaults to target/release/flinkscale (`cargo build --release`),
# TAG to flinkscale:latest. The image is FROM scratch: this script copies
# the binary, the shared libraries and loader `ldd` says it needs (none for
# a static musl build), the CA bundle and a passwd entry for the
# unprivileged user 65532 into a root file system, then runs `podman build`
# (or $CONTAINER_CLI, e.g. docker). No registry is contacted, and no root
# is needed (rootless podman, a docker group member).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${1:-target/release/flinkscale}"
tag="${2:-flinkscale:latest}"
cli="${CONTAINER_CLI:-podman}"
if [ ! -x "$bin" ]; then
    echo "error: $bin is not an executable; build it first (cargo build --release)" >&2
    exit 1
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc/flinkscale" "$root/etc/ssl/certs" "$root/tmp" \
    "$root/var/lib" "$ctx/state/flinkscale"
install -m 0755 "$bin" "$root/usr/local/bin/flinkscale"

# The dynamic loader and libraries, at the paths the binary looks for them.
# `ldd` prints nothing usable for a static binary, which needs none.
libs="$(ldd "$bin" 2>/dev/null | grep -o '/[^ )]*' || true)"
for lib in $libs; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done

# The AWS endpoints' certificates are checked against the system roots:
# the build host's bundle ($CA_BUNDLE, else where Debian, Alpine, Amazon
# Linux, Fedora, RHEL or SUSE keep it), copied to the path the agent reads.
bundle="${CA_BUNDLE:-}"
if [ -z "$bundle" ]; then
    for candidate in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt \
        /etc/ssl/ca-bundle.pem /etc/ssl/cert.pem; do
        if [ -f "$candidate" ]; then
            bundle="$candidate"
            break
        fi
    done
fi
if [ -z "$bundle" ] || [ ! -f "$bundle" ]; then
    echo "error: no CA bundle found; set CA_BUNDLE to the host's PEM bundle" >&2
    exit 1
fi
cp -L "$bundle" "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0::/:/nonexistent\nflinkscale:x:65532:65532::/var/lib/flinkscale:/nonexistent\n' \
    > "$root/etc/passwd"
printf 'root:x:0:\nflinkscale:x:65532:\n' > "$root/etc/group"
# The state directory is copied apart (Containerfile): COPY makes what it
# copies root's unless told otherwise, and a chown here would need root.
chmod 0700 "$ctx/state/flinkscale"
chmod 1777 "$root/tmp"

cp deploy/container/Containerfile "$ctx/Containerfile"
"$cli" build --quiet --file "$ctx/Containerfile" --tag "$tag" "$ctx"
echo "built image $tag from $bin"
