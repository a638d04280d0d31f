#!/usr/bin/env bash
# Builds the Weir container image: a statically linked `weir` (glibc, crt-static) in an
# image FROM scratch, tagged weir:<version> and weir:latest. No registry is needed: the
# only base is `scratch`.
#
# Usage: deploy/docker/build-image.sh            (environment below)
#   IMAGE      image name [weir]
#   PROFILE    cargo profile [image: release with LTO, stripped; see Cargo.toml]
#   CARGO_TARGET_DIR  as for cargo [target]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

IMAGE="${IMAGE:-weir}"
PROFILE="${PROFILE:-image}"
TARGET=x86_64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-$root/target}"
# The uid and gid the broker runs as (not root; matched by the volume's /data owner).
WEIR_UID=10001

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
[ -n "$version" ] || { echo "build-image.sh: no version in Cargo.toml" >&2; exit 1; }

# --target is required with crt-static: without it RUSTFLAGS reach proc-macro crates too,
# which cannot be linked statically.
echo "== building a static weir ($PROFILE, $TARGET)" >&2
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --locked --profile "$PROFILE" --target "$TARGET" -p weir-cli
binary="$target_dir/$TARGET/$PROFILE/weir"
if ! ldd "$binary" 2>&1 | grep -qE 'statically linked|not a dynamic executable'; then
    echo "build-image.sh: $binary is dynamically linked; the image has no libc" >&2
    exit 1
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs/etc" "$context/rootfs/data"
cp "$root/deploy/docker/Dockerfile" "$context/Dockerfile"
cp "$binary" "$context/weir"
printf 'root:x:0:0:root:/:/sbin/nologin\nweir:x:%d:%d:weir:/data:/sbin/nologin\n' \
    "$WEIR_UID" "$WEIR_UID" >"$context/rootfs/etc/passwd"
printf 'root:x:0:\nweir:x:%d:\n' "$WEIR_UID" >"$context/rootfs/etc/group"
# A static glibc resolves names through these sources without loading NSS modules.
printf 'hosts: files dns\n' >"$context/rootfs/etc/nsswitch.conf"
echo "== docker build $IMAGE:$version, $IMAGE:latest" >&2
docker build --quiet -t "$IMAGE:$version" -t "$IMAGE:latest" "$context" >/dev/null
size="$(docker image inspect --format '{{.Size}}' "$IMAGE:latest")"
echo "built $IMAGE:$version and $IMAGE:latest, $((size / 1024 / 1024)) MiB ($size bytes)"
