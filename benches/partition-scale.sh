#!/usr/bin/env bash
# Partition scale on one broker: for each partition count, start `weir serve` on a fresh
# data directory, time `weir topic create big --partitions N`, stop the broker with
# SIGTERM (timed to its exit: it closes every partition), start it again and time from
# the start until `weir topic describe big` answers (the broker serves once every
# partition is open). Prints one line per count: create, stop and restart in seconds.
#
# Usage: benches/partition-scale.sh [WEIR_BINARY] [COUNTS...]
#        (default target/release/weir; 500 1000 2000 5000 10000)
# Environment: PORT [19999], WORK [${TMPDIR:-/tmp}/weir-partition-scale]
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
export WEIR_TIMEOUT="${WEIR_TIMEOUT:-600s}"
BROKER=
trap '[ -n "$BROKER" ] && kill "$BROKER" 2>/dev/null; wait 2>/dev/null || true' EXIT
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
serve() {
    "$W" serve --data-dir "$1" --listen "$B" --admin-listen off >>"$1.log" 2>&1 &
    BROKER=$!
}
stop() { kill -TERM "$BROKER"; wait "$BROKER" || true; BROKER=; }
printf '%-10s %10s %10s %10s\n' partitions create_s stop_s restart_s
for n in "${COUNTS[@]}"; do
    dir="$WORK/p$n"
    rm -rf "$dir" "$dir.log" && mkdir -p "$WORK"
    serve "$dir"
    until "$W" topic list --brokers "$B" >/dev/null 2>&1; do sleep 0.05; done
    sleep 1
    t=$(now)
    "$W" topic create big --partitions "$n" --brokers "$B" >/dev/null
    create=$(since "$t")
    t=$(now)
    stop
    stopped=$(since "$t")
    sync
    t=$(now)
    serve "$dir"
    until "$W" topic describe big --brokers "$B" >/dev/null 2>&1; do sleep 0.02; done
    restart=$(since "$t")
    stop
    printf '%-10s %10.2f %10.2f %10.2f\n' "$n" "$create" "$stopped" "$restart"
done
