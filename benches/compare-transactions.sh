#!/usr/bin/env bash
# What Kafka transactions cost, with confluent-kafka (benches/transactions.py) on one
# broker this script starts and stops:
#   produce  RECORDS records of SIZE bytes, acks=all, 1 partition, by an idempotent
#            producer and by a transactional one committing every TXN_RECORDS records;
#   consume  the transactional topic read back whole with isolation.level
#            read_committed and read_uncommitted.
# ROUNDS rounds, alternating which mode goes first, a fresh topic per round (deleted
# after it). Prints each leg (records/s, MB/s, the broker's CPU seconds per GB from
# /proc) and the medians of the paired ratios: transactional / idempotent produce, and
# read_committed / read_uncommitted consume.
#
# With CLIENT=weir the produce legs are Weir's own client over gRPC instead (`weir bench
# produce --format json`, idempotent, and with --transactional-id committing every
# TXN_RECORDS records); the consume legs stay confluent-kafka's.
#
# Usage: benches/compare-transactions.sh [WEIR_BINARY]    (default target/release/weir,
#        built if missing)
# Environment: ROUNDS [5], RECORDS [300000], SIZE [1024], TXN_RECORDS [1000],
#              CLIENT [kafka; or weir], PORT [17800],
#              WORK [${TMPDIR:-/tmp}/weir-transactions]
# Needs the Python venv of tests/python/setup.sh (made here if missing).
set -euo pipefail
# Not on Kafka's and AMQP's usual ports, which may be taken.
export WEIR_AMQP_LISTEN=none
cd "$(dirname "$0")/.."
W="${1:-target/release/weir}"
ROUNDS="${ROUNDS:-5}"
RECORDS="${RECORDS:-300000}"
SIZE="${SIZE:-1024}"
TXN_RECORDS="${TXN_RECORDS:-1000}"
CLIENT="${CLIENT:-kafka}"
PORT="${PORT:-17800}"
WORK="${WORK:-${TMPDIR:-/tmp}/weir-transactions}"
B="127.0.0.1:$PORT"
K="127.0.0.1:$((PORT + 2))"
if [ ! -x "$W" ]; then
    cargo build --release --locked -p weir-cli
fi
PY="$(tests/python/setup.sh)"
# shellcheck source=benches/one-broker.sh
. benches/one-broker.sh
rm -rf "$WORK" && mkdir -p "$WORK"
BROKER=
trap 'kill "$BROKER" 2>/dev/null; wait "$BROKER" 2>/dev/null || true' EXIT
start_broker "$W" "$WORK/data" "$B" "$WORK/broker.log" --admin-listen off --kafka-listen "$K"
# leg NAME ARGS...: runs one transactions.py leg (or, for `weir NAME TOPIC MODE`, one of
# Weir's client); appends "ROUND NAME JSON CPU_S_PER_GB".
leg() {
    local name="$1" before after line
    shift
    before="$(broker_ticks)"
    if [ "$1" = weir ]; then
        local txn=()
        [ "$3" = transactional ] && txn=(--transactional-id "bench-$2" --transaction-records "$TXN_RECORDS")
        line="$(timeout 360 "$W" bench produce --brokers "$B" --topic "$2" --partitions 1 \
            --count "$RECORDS" --record-size "$SIZE" --acks all --format json "${txn[@]}" \
            2>>"$WORK/bench.log" | tail -1)"
    else
        line="$(timeout 360 "$PY" benches/transactions.py "$@" 2>>"$WORK/bench.log" | tail -1)"
    fi
    after="$(broker_ticks)"
    [ -n "$line" ] || { echo "leg $name failed; see $WORK/bench.log" >&2; exit 1; }
    local per_gb
    per_gb="$(python3 - "$line" "$before" "$after" "$TICK" "$SIZE" <<'PY'
import json, sys
report = json.loads(sys.argv[1])
before, after, tick, size = (int(a) for a in sys.argv[2:6])
print(f"{(after - before) / tick / (report['records'] * size / 1e9):.3f}")
PY
)"
    echo "$round $name $line $per_gb" | tee -a "$WORK/results.txt"
}
: >"$WORK/results.txt"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then
        produce="idempotent transactional" consume="read_committed read_uncommitted"
    else
        produce="transactional idempotent" consume="read_uncommitted read_committed"
    fi
    for mode in $produce; do
        t="txn-$round-$mode"
        "$W" topic create "$t" --partitions 1 --brokers "$B" >/dev/null
        if [ "$CLIENT" = weir ]; then
            leg "$mode" weir "$t" "$mode"
        else
            leg "$mode" produce "$K" "$t" "$mode" "$RECORDS" "$SIZE" "$TXN_RECORDS"
        fi
    done
    for isolation in $consume; do
        leg "$isolation" consume "$K" "txn-$round-transactional" "$isolation" "$RECORDS"
    done
    for mode in idempotent transactional; do
        "$W" topic delete "txn-$round-$mode" --brokers "$B" >/dev/null 2>&1
    done
done
python3 - "$WORK/results.txt" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    round_, name, rest = line.split(" ", 2)
    report, cpu = rest.rsplit(" ", 1)
    runs[(round_, name)] = (json.loads(report), float(cpu))
rounds = sorted({r for r, _ in runs}, key=int)
for a, b in (("transactional", "idempotent"), ("read_committed", "read_uncommitted")):
    ratios = [runs[(r, a)][0]["records_per_sec"] / runs[(r, b)][0]["records_per_sec"]
              for r in rounds]
    for name in (a, b):
        rate = statistics.median(runs[(r, name)][0]["records_per_sec"] for r in rounds)
        mb = statistics.median(runs[(r, name)][0]["mb_per_sec"] for r in rounds)
        cpu = statistics.median(runs[(r, name)][1] for r in rounds)
        print(f"{name}: {rate:,.0f} rec/s, {mb:,.1f} MB/s, broker {cpu:.2f} CPU s/GB (medians)")
    print(f"{a} / {b}: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}) over {len(ratios)} rounds")
PY
