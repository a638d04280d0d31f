#!/usr/bin/env bash
# Partition scale on one broker: for each partition count, start `weir serve` on a fresh
# data directory, time `weir topic create big --partitions N`, stop the broker with
# SIGTERM (timed to its exit: it closes every partition), start it again and time from
# the start until `weir topic describe big` answers (the broker serves once every
# partition is open). Prints one line per count: create, stop and restart in seconds, and
# after the create the broker's open descriptors, memory mappings, resident memory and
# CPU while idle (per cent of one core over IDLE_S seconds). A count above 10,000 (a
# topic's limit) is created as topics of 10,000 (`big0`, `big1`, ...), one after another.
#
# Usage: benches/partition-scale.sh [WEIR_BINARY] [COUNTS...]
#        (default target/release/weir; 500 1000 2000 5000 10000)
# Environment: PORT [19999], WORK [${TMPDIR:-/tmp}/weir-partition-scale], IDLE_S [10],
#              FRESH_FS [0]: 1 puts each count on a fresh ext4 file system of its own (an
#              8 GiB sparse image under WORK, loop-mounted; needs root and mkfs.ext4)
set -euo pipefail
# Brokers started here serve no Kafka clients (not on port 9092, which may be taken).
export WEIR_KAFKA_LISTEN=none
# Nor AMQP clients (not on port 5672, where a RabbitMQ may listen).
export WEIR_AMQP_LISTEN=none
cd "$(dirname "$0")/.."
W="${1:-target/release/weir}"
shift || true
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(500 1000 2000 5000 10000)
PORT="${PORT:-19999}"
WORK="${WORK:-${TMPDIR:-/tmp}/weir-partition-scale}"
B="127.0.0.1:$PORT"
IDLE_S="${IDLE_S:-10}"
PER_TOPIC=10000
export WEIR_TIMEOUT="${WEIR_TIMEOUT:-600s}"
BROKER=
# Each count gets a directory of its own, removed only at the end: ext4 allocates new
# inodes slowly for a while after many were deleted (`recently_deleted` in the kernel's
# profile), and removing one count's 10,000 partition directories just before the next
# count's create made that create several times slower.
# On a host file system that earlier runs churned (hundreds of thousands of directories
# created and removed) the same create took 3-5 times as long as on a fresh one: FRESH_FS
# measures the broker, not that history.
RUN="$WORK/run-$$"
FRESH_FS="${FRESH_FS:-0}"
MOUNTS=()
cleanup() {
    [ -n "$BROKER" ] && kill "$BROKER" 2>/dev/null
    wait 2>/dev/null || true
    for m in "${MOUNTS[@]}"; do umount "$m" || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT
# Sets `dir` to the data directory for count $1: on a fresh file system of its own with
# FRESH_FS=1.
count_dir() {
    local base="$RUN/p$1"
    mkdir -p "$base"
    if [ "$FRESH_FS" = 1 ]; then
        truncate -s 8G "$base.img"
        mkfs.ext4 -q -F "$base.img"
        mount -o loop "$base.img" "$base"
        MOUNTS+=("$base")
    fi
    dir="$base/data"
}
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
serve() {
    "$W" serve --data-dir "$1" --listen "$B" --admin-listen off >>"$1.log" 2>&1 &
    BROKER=$!
}
stop() { kill -TERM "$BROKER"; wait "$BROKER" || true; BROKER=; }
ticks() { awk '{print $14 + $15}' "/proc/$BROKER/stat"; }
TCK=$(getconf CLK_TCK)
printf '%-10s %10s %10s %10s %8s %8s %8s %8s\n' \
    partitions create_s stop_s restart_s fds maps rss_mb idle_cpu
# The topics holding N partitions: "name count" lines.
topics() {
    local left=$1 i=0
    while [ "$left" -gt 0 ]; do
        local k=$((left < PER_TOPIC ? left : PER_TOPIC))
        echo "big$i $k"
        left=$((left - k)) i=$((i + 1))
    done
}
for n in "${COUNTS[@]}"; do
    count_dir "$n"
    serve "$dir"
    until "$W" topic list --brokers "$B" >/dev/null 2>&1; do sleep 0.05; done
    sleep 1
    t=$(now)
    while read -r name k; do
        "$W" topic create "$name" --partitions "$k" --brokers "$B" >/dev/null
        last=$name
    done < <(topics "$n")
    create=$(since "$t")
    fds=$(ls "/proc/$BROKER/fd" | wc -l)
    maps=$(wc -l <"/proc/$BROKER/maps")
    rss=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$BROKER/status")
    sleep 2
    c0=$(ticks)
    sleep "$IDLE_S"
    idle=$(echo "($(ticks) - $c0) * 100 / $TCK / $IDLE_S" | bc)
    t=$(now)
    stop
    stopped=$(since "$t")
    sync
    t=$(now)
    serve "$dir"
    until "$W" topic describe "$last" --brokers "$B" >/dev/null 2>&1; do sleep 0.02; done
    restart=$(since "$t")
    stop
    printf '%-10s %10.2f %10.2f %10.2f %8s %8s %8s %7s%%\n' \
        "$n" "$create" "$stopped" "$restart" "$fds" "$maps" "$rss" "$idle"
done
