#!/usr/bin/env bash
# What idempotence costs the producer: `weir bench produce` with --idempotence true and
# false, alternating which goes first, ROUNDS rounds of 100 B (3 M records) and 1 KiB
# (300 k records), acks=leader, 1 partition, a fresh topic per run (deleted after it) on
# one broker this script starts and stops. Prints each run and the median of the paired
# on/off ratios per size.
#
# Usage: benches/compare-idempotence.sh [WEIR_BINARY]     (default target/release/weir)
# Environment: ROUNDS [8], PORT [17600], WORK [${TMPDIR:-/tmp}/weir-idempotence]
set -euo pipefail
# Brokers started here serve no Kafka clients (not on port 9092, which may be taken).
export WEIR_KAFKA_LISTEN=none
# Nor AMQP clients (not on port 5672, where a RabbitMQ may listen).
export WEIR_AMQP_LISTEN=none
cd "$(dirname "$0")/.."
W="${1:-target/release/weir}"
ROUNDS="${ROUNDS:-8}"
PORT="${PORT:-17600}"
WORK="${WORK:-${TMPDIR:-/tmp}/weir-idempotence}"
B="127.0.0.1:$PORT"
# shellcheck source=benches/one-broker.sh
. benches/one-broker.sh
rm -rf "$WORK" && mkdir -p "$WORK"
BROKER=
trap 'kill "$BROKER" 2>/dev/null; wait "$BROKER" 2>/dev/null || true' EXIT
start_broker "$W" "$WORK/data" "$B" "$WORK/broker.log"
: >"$WORK/results.txt"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="true false"; else order="false true"; fi
    for size in 100 1024; do
        for idem in $order; do
            if [ "$size" = 100 ]; then n=3000000; else n=300000; fi
            t="idem-$round-$size-$idem"
            line=$(timeout 300 "$W" bench produce --brokers "$B" --topic "$t" --partitions 1 \
                --record-size "$size" --count "$n" --acks leader --idempotence "$idem" \
                --format json 2>>"$WORK/bench.log" | tail -1)
            "$W" topic delete "$t" --brokers "$B" >/dev/null 2>&1
            echo "$round $idem $size $line" | tee -a "$WORK/results.txt"
        done
    done
done
python3 - "$WORK/results.txt" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    round_, idem, size, report = line.split(" ", 3)
    runs[(round_, size, idem)] = json.loads(report)["records_per_sec"]
for size in ("100", "1024"):
    rounds = sorted({r for r, s, _ in runs if s == size}, key=int)
    ratios = [runs[(r, size, "true")] / runs[(r, size, "false")] for r in rounds]
    on = statistics.median(runs[(r, size, "true")] for r in rounds)
    off = statistics.median(runs[(r, size, "false")] for r in rounds)
    print(f"{size} B: on {on:,.0f} rec/s, off {off:,.0f} rec/s (medians); "
          f"paired on/off median {statistics.median(ratios):.3f} over {len(ratios)} rounds")
PY
