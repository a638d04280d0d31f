#!/usr/bin/env bash
# The same bytes produced to one partition and spread over many (issue 45 § Scale: across
# 1,000 partitions at least 0.8 of one partition's throughput). One broker this script
# starts on a fresh data directory; ROUNDS rounds, alternating which topic goes first, a
# fresh topic per leg (deleted after it). Each leg is `weir bench produce` of RECORDS
# records of SIZE bytes with ACKS; printed per leg: records/s, MB/s and the broker's CPU
# seconds per GB (from /proc), then the median of the paired ratios spread / one.
#
# Usage: benches/partition-spread.sh [WEIR_BINARY]    (default target/release/weir,
#        built if missing)
# Environment: ROUNDS [3], RECORDS [1000000], WARM [RECORDS / 10: records produced to
#              each fresh topic before its leg, not counted], SIZE [1KiB], PARTITIONS [1000],
#              ACKS [all], PORT [18000], WORK [${TMPDIR:-/tmp}/weir-partition-spread],
#              TOPIC_CONFIG [empty] key=value topic configs, space-separated, for both
#              legs' topics (e.g. write.direct=true)
set -euo pipefail
# Brokers started here serve no Kafka or AMQP clients (their usual ports may be taken).
export WEIR_KAFKA_LISTEN=none WEIR_AMQP_LISTEN=none
cd "$(dirname "$0")/.."
W="${1:-target/release/weir}"
ROUNDS="${ROUNDS:-3}"
RECORDS="${RECORDS:-1000000}"
WARM="${WARM:-$((RECORDS / 10))}"
SIZE="${SIZE:-1KiB}"
PARTITIONS="${PARTITIONS:-1000}"
ACKS="${ACKS:-all}"
TOPIC_CONFIG="${TOPIC_CONFIG:-}"
CONFIGS=()
for config in $TOPIC_CONFIG; do CONFIGS+=(--config "$config"); done
PORT="${PORT:-18000}"
WORK="${WORK:-${TMPDIR:-/tmp}/weir-partition-spread}"
B="127.0.0.1:$PORT"
export WEIR_TIMEOUT="${WEIR_TIMEOUT:-300s}"
if [ ! -x "$W" ]; then
    cargo build --release --locked -p weir-cli
fi
# shellcheck source=benches/one-broker.sh
. benches/one-broker.sh
rm -rf "$WORK" && mkdir -p "$WORK"
BROKER=
trap 'kill "$BROKER" 2>/dev/null; wait "$BROKER" 2>/dev/null || true' EXIT
start_broker "$W" "$WORK/data" "$B" "$WORK/broker.log" --admin-listen off
: >"$WORK/results.txt"
# leg ROUND PARTITIONS: one bench run on a fresh topic; appends "ROUND N JSON CPU_TICKS".
leg() {
    local round="$1" n="$2" t="spread-$1-$2" before after line
    "$W" topic create "$t" --partitions "$n" "${CONFIGS[@]}" --brokers "$B" >/dev/null
    # Warm-up, not counted: the first records into a new partition create its segment
    # files (a log has none until then), which on a file system just churned by the last
    # leg's deletion cost ext4 about 1 ms per file; the leg measures writing into
    # partitions that exist, as a broker does all day.
    if [ "$WARM" -gt 0 ]; then
        "$W" bench produce --brokers "$B" -t "$t" -p "$n" -s "$SIZE" -n "$WARM" \
            --acks "$ACKS" --format json >/dev/null 2>>"$WORK/bench.log"
    fi
    sleep 1
    before="$(broker_ticks)"
    line="$("$W" bench produce --brokers "$B" -t "$t" -p "$n" -s "$SIZE" -n "$RECORDS" \
        --acks "$ACKS" --format json 2>>"$WORK/bench.log" | tail -1)"
    after="$(broker_ticks)"
    "$W" topic delete "$t" --brokers "$B" >/dev/null
    echo "$round $n $line $((after - before))" | tee -a "$WORK/results.txt"
}
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="1 $PARTITIONS"; else order="$PARTITIONS 1"; fi
    for n in $order; do
        leg "$round" "$n"
    done
done
python3 - "$WORK/results.txt" "$TICK" <<'PY'
import json, statistics, sys
rows = {}
tick = int(sys.argv[2])
for line in open(sys.argv[1]):
    round_, n, rest = line.split(" ", 2)
    report, ticks = rest.rsplit(" ", 1)
    r = json.loads(report)
    rows.setdefault(int(round_), {})[int(n)] = (r, int(ticks))
ratios = []
for round_, legs in sorted(rows.items()):
    (one, one_ticks), (spread, spread_ticks) = legs[1], legs[max(legs)]
    for n, (r, ticks) in sorted(legs.items()):
        gb = r["bytes"] / 1e9
        print(f"round {round_}: {n:>5} partitions  {r['records_per_sec']:>12,.0f} records/s"
              f"  {r['mb_per_sec']:>8.1f} MB/s  broker {ticks / tick / gb:.3f} CPU s/GB")
    ratios.append(spread["records_per_sec"] / one["records_per_sec"])
print(f"spread / one: median {statistics.median(ratios):.2f} "
      f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
PY
