#!/usr/bin/env bash
# What idle Kafka connections cost one broker (issue 45 § Scale): starts `weir serve`
# with a Kafka listener, then
#   1. an active producer's latency (benches/idle_connections.py latency: confluent-kafka,
#      acks=all, one 1 KiB record at a time) with no other connection;
#   2. COUNT idle connections opened (each through one ApiVersions request, then silent);
#      the broker's resident memory (VmRSS) and descriptors before and after, and the
#      memory per connection (socket buffers are the kernel's and are not in it);
#   3. the active producer's latency again, with the idle connections held;
#   4. the idle connections closed: the broker's memory and descriptors once more.
# Prints one line per step.
#
# Usage: benches/idle-connections.sh [WEIR_BINARY]    (default target/release/weir,
#        built if missing)
# Environment: COUNT [10000], RECORDS [2000], PORT [17900],
#              WORK [${TMPDIR:-/tmp}/weir-idle-connections]
# Needs the Python venv of tests/python/setup.sh (made here if missing) and a descriptor
# limit above COUNT (the script raises its soft limit to the hard one).
set -euo pipefail
# Not on AMQP's usual port, which may be taken.
export WEIR_AMQP_LISTEN=none
cd "$(dirname "$0")/.."
W="${1:-target/release/weir}"
COUNT="${COUNT:-10000}"
RECORDS="${RECORDS:-2000}"
PORT="${PORT:-17900}"
WORK="${WORK:-${TMPDIR:-/tmp}/weir-idle-connections}"
B="127.0.0.1:$PORT"
K="127.0.0.1:$((PORT + 2))"
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((COUNT + 100)) ] || {
    echo "the descriptor limit $(ulimit -n) is too low for $COUNT connections" >&2
    exit 1
}
if [ ! -x "$W" ]; then
    cargo build --release --locked -p weir-cli
fi
PY="$(tests/python/setup.sh)"
# shellcheck source=benches/one-broker.sh
. benches/one-broker.sh
rm -rf "$WORK" && mkdir -p "$WORK"
BROKER= HOLDER=
cleanup() {
    if [ -n "$HOLDER" ]; then kill "$HOLDER" 2>/dev/null || true; fi
    if [ -n "$BROKER" ]; then kill "$BROKER" 2>/dev/null || true; fi
    wait 2>/dev/null || true
}
trap cleanup EXIT
# The broker's connection limit (512 by default) raised to let the idle ones in.
start_broker "$W" "$WORK/data" "$B" "$WORK/broker.log" --admin-listen off --kafka-listen "$K" \
    --max-connections $((COUNT + 100))
"$W" topic create active --partitions 1 --brokers "$B" >/dev/null
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$BROKER/status"; }
fds() { ls "/proc/$BROKER/fd" | wc -l; }
latency() { timeout 300 "$PY" benches/idle_connections.py latency "$K" active "$RECORDS"; }
# A first run warms the broker and the client up; not reported.
RECORDS=200 latency >/dev/null
echo "without idle connections: $(latency)"
sleep 1
before_rss="$(rss_kib)" before_fds="$(fds)"
echo "broker before: VmRSS ${before_rss} KiB, ${before_fds} descriptors"
coproc HOLD { timeout 900 "$PY" benches/idle_connections.py hold "$K" "$COUNT" 2>>"$WORK/hold.log"; }
HOLDER=$HOLD_PID
read -r ready _ <&"${HOLD[0]}"
[ "$ready" = ready ] || { echo "the idle connections failed; see $WORK/hold.log" >&2; exit 1; }
sleep 2
held_rss="$(rss_kib)" held_fds="$(fds)"
echo "broker with $COUNT idle connections: VmRSS ${held_rss} KiB, ${held_fds} descriptors," \
    "$(( (held_rss - before_rss) * 1024 / COUNT )) bytes per connection"
echo "with $COUNT idle connections: $(latency)"
eval "exec ${HOLD[1]}>&-"
wait "$HOLDER" || true
HOLDER=
sleep 2
echo "broker after they closed: VmRSS $(rss_kib) KiB, $(fds) descriptors"
