#!/usr/bin/env bash
# Proves the image as a user would use it: `docker run` of weir:latest is a working
# single broker that the host produces to and consumes from through a published port;
# it runs as a non-root user, reports healthy, and stops cleanly (exit 0, controlled
# shutdown) on `docker stop` well within Docker's 10 s.
#
# Usage: deploy/docker/test-image.sh       (SKIP_BUILD=1 to test the image already built)
# Starts one container of its own (named weir-image-test-<pid>; not --rm, so its exit code
# can be read) and removes it however the script ends. Traffic goes only to 127.0.0.1 (the published port).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
IMAGE="${IMAGE:-weir}"
RECORDS=1000
MAX_IMAGE_BYTES=$((15 * 1024 * 1024))
HEALTHY_TIMEOUT_SECS=30

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    "$root/deploy/docker/build-image.sh"
fi
# The host side uses the same static binary as the image.
weir="${CARGO_TARGET_DIR:-$root/target}/x86_64-unknown-linux-gnu/${PROFILE:-image}/weir"
[ -x "$weir" ] || { echo "test-image.sh: no $weir; run build-image.sh" >&2; exit 1; }

name="weir-image-test-$$"
work="$(mktemp -d)"
cleanup() {
    docker rm -f -v "$name" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    docker logs "$name" 2>&1 | tail -n 30 >&2 || true
    exit 1
}

size="$(docker image inspect --format '{{.Size}}' "$IMAGE:latest")"
[ "$size" -le "$MAX_IMAGE_BYTES" ] || fail "image is $size bytes, over $MAX_IMAGE_BYTES"
user="$(docker image inspect --format '{{.Config.User}}' "$IMAGE:latest")"
case "$user" in "" | 0 | 0:* | root | root:*) fail "image runs as root ($user)" ;; esac
echo "ok: image $((size / 1024 / 1024)) MiB, user $user"

# A free port on the host's loopback, advertised to clients as the broker's address.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
docker run -d --name "$name" -p "127.0.0.1:$port:9292" \
    -e "WEIR_ADVERTISE=127.0.0.1:$port" "$IMAGE:latest" >/dev/null
brokers="127.0.0.1:$port"

started=$(date +%s)
until [ "$(docker inspect --format '{{.State.Health.Status}}' "$name")" = healthy ]; do
    [ $(($(date +%s) - started)) -lt "$HEALTHY_TIMEOUT_SECS" ] ||
        fail "not healthy after $HEALTHY_TIMEOUT_SECS s"
    sleep 0.5
done
echo "ok: healthy after $(($(date +%s) - started)) s"

"$weir" topic create image-test --partitions 3 --brokers "$brokers" >/dev/null
seq 1 "$RECORDS" | sed 's/^/record-/' >"$work/sent"
"$weir" produce image-test --brokers "$brokers" --file "$work/sent"
"$weir" consume image-test --brokers "$brokers" --from beginning --count "$RECORDS" >"$work/got"
sort "$work/sent" >"$work/sent.sorted"
sort "$work/got" >"$work/got.sorted"
cmp -s "$work/sent.sorted" "$work/got.sorted" ||
    fail "consumed $(wc -l <"$work/got") records, not the $RECORDS produced"
echo "ok: $RECORDS records produced and consumed from the host"

stop_started=$(date +%s%N)
docker stop --time 10 "$name" >/dev/null
stop_ms=$((($(date +%s%N) - stop_started) / 1000000))
[ "$stop_ms" -lt 10000 ] || fail "docker stop took $stop_ms ms (SIGKILL at 10 s)"
code="$(docker inspect --format '{{.State.ExitCode}}' "$name")"
[ "$code" = 0 ] || fail "the broker exited with $code on SIGTERM"
docker logs "$name" 2>&1 | grep -q "shutdown complete" || fail "no 'shutdown complete' in the log"
echo "ok: stopped by SIGTERM in $stop_ms ms"
echo "PASS"
