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
# (or $CONTAINER_CLI, e.g. docker). No registry is contacted.
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
mkdir -p "$root/usr/local/bin" "$root/etc/flinkscale" "$root/var/lib/flinkscale" \
    "$root/etc/ssl/certs" "$root/tmp"
install -m 0755 "$bin" "$root/usr/local/bin/flinkscale"

# The dynamic loader and libraries, at the paths the binary looks for them.
# `ldd` prints nothing usable for a static binary, which needs none.
libs="$(ldd "$bin" 2>/dev/null | grep -o '/[^ )]*' || true)"
for lib in $libs; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done

# The AWS endpoints' certificates are checked against the system roots.
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0::/:/nonexistent\nflinkscale:x:65532:65532::/var/lib/flinkscale:/nonexistent\n' \
    > "$root/etc/passwd"
printf 'root:x:0:\nflinkscale:x:65532:\n' > "$root/etc/group"
chown -R 65532:65532 "$root/var/lib/flinkscale"
chmod 0700 "$root/var/lib/flinkscale"
chmod 1777 "$root/tmp"

cp deploy/container/Containerfile "$ctx/Containerfile"
"$cli" build --quiet --file "$ctx/Containerfile" --tag "$tag" "$ctx"
echo "built image $tag from $bin"
