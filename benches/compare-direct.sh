#!/usr/bin/env bash
# Direct writes against the page cache (a topic's `write.direct`, docs/storage-format.md
# § Direct writes): `weir bench produce` of GB gigabytes of 1 KiB records in batches of
# 1,000, at acks=leader (row 3) and acks=all (row 4), onto a group-commit topic with
# write.direct false ("page") and true ("direct"), and with CONSUME=1 also 100 B records
# produced (row 1) and then consumed from the start (row 2, a consumer a gigabyte
# behind). A fresh broker and data directory per row set, the page cache dropped
# before each (where the script may), the order alternating by round. Each line: round,
# mode, row, record size, records/s, the broker's CPU seconds per GB, the bench client's
# CPU seconds; then the medians and paired direct/page ratios.
#
# WARM_GB=N first writes N GB of 100 B records to another topic of the same broker (the
# same write.direct) before each produce row, so that the row meets a broker that has
# been writing rather than one started on a page cache just emptied, the page cache's
# best case: with WARM_GB=4 its copy cost four times as much per byte on the VM of
# BENCHMARKS.md § Direct writes against the page cache.
#
# E2E=1 adds row 5, a consumer tailing the producer: `weir bench e2e` of E2E_RATE 1 KiB
# records a second for E2E_SECONDS at acks=all (after the warm-up, if any), each record
# read moments after it was written, as most of a log's readers read. Its line adds the
# p50 and p99 latency (send to arrival at the consumer, ms), and its CPU is per GB
# produced (and consumed once).
#
# Row 6 consumes from the start the 1 GB of 1 KiB records row 3 just wrote (after the
# warm-up, if any). ROWS="..." runs those rows only (rows 2 and 6 need rows 1 and 3
# just before them).
#
# Usage: benches/compare-direct.sh [WEIR_BINARY]     (default target/release/weir)
# Environment: ROUNDS [3], GB [1], CONSUME [unset], WARM_GB [0], E2E [unset], ROWS,
#              E2E_RATE [200000], E2E_SECONDS [10], PORT [17610],
#              WORK [${TMPDIR:-/tmp}/weir-direct] (the disk under test)
set -euo pipefail
export WEIR_KAFKA_LISTEN=none WEIR_AMQP_LISTEN=none
cd "$(dirname "$0")/.."
W="${1:-target/release/weir}"
ROUNDS="${ROUNDS:-3}"
GB="${GB:-1}"
WARM_GB="${WARM_GB:-0}"
E2E_RATE="${E2E_RATE:-200000}"
ROWS="${ROWS:-${CONSUME:+1 2 }3 4${E2E:+ 5}}"
E2E_SECONDS="${E2E_SECONDS:-10}"
PORT="${PORT:-17610}"
WORK="${WORK:-${TMPDIR:-/tmp}/weir-direct}"
B="127.0.0.1:$PORT"
# shellcheck source=benches/one-broker.sh
. benches/one-broker.sh
rm -rf "$WORK" && mkdir -p "$WORK"
BROKER=
trap stop_broker EXIT

fresh_broker() {
    stop_broker
    rm -rf "$WORK/data"
    sync
    { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null ||
        echo "cannot drop the page cache (not root): rows start from whatever it holds" >&2
    start_broker "$W" "$WORK/data" "$B" "$WORK/broker.log" --admin-listen off
}

# direct_config MODE: the topic config of a row in MODE ("page" or "direct").
direct_config() { echo "write.direct=$([ "$1" = direct ] && echo true || echo false)"; }

# warm MODE: WARM_GB of 100 B records onto topic "warm" (nothing measured).
warm() {
    [ "$WARM_GB" = 0 ] && return 0
    timeout 600 "$W" bench produce --brokers "$B" --topic warm --partitions 1 \
        --record-size 100 --count $((WARM_GB * 10000000)) --acks leader --batch-bytes 100000 \
        --topic-config "$(direct_config "$1")" --format json >/dev/null 2>>"$WORK/bench.log"
}

# row ROUND MODE ROW SIZE
row() {
    local round="$1" mode="$2" row="$3" size="$4" what=produce topic="r$3" extra
    local records=$((GB * 1000000000 / size)) before after cpu
    extra=(--acks leader --batch-bytes $((1000 * size)) --topic-config "$(direct_config "$mode")")
    case "$row" in
        2) what=consume topic=r1 extra=() ;;
        6) what=consume topic=r3 extra=() ;;
        4) extra[1]=all ;;
        5) what=e2e records=$((E2E_RATE * E2E_SECONDS))
           extra=(--acks all --topic-config "$(direct_config "$mode")" --rate "$E2E_RATE") ;;
    esac
    before="$(broker_ticks)"
    /usr/bin/time -f "%U %S" -o "$WORK/client.cpu" timeout 600 "$W" bench "$what" --brokers "$B" \
        --topic "$topic" --partitions 1 --record-size "$size" --count "$records" "${extra[@]}" \
        --format json >"$WORK/bench.out" 2>>"$WORK/bench.log"
    after="$(broker_ticks)"
    cpu="$(python3 -c "print(round(($after - $before) / $TICK / ($records * $size / 1e9), 3))")"
    tail -1 "$WORK/bench.out" | python3 -c '
import json, sys
round_, mode, row, size, cpu, client = sys.argv[1:]
r = json.load(sys.stdin)
latency = [r[k] for k in ("latency_p50_ms", "latency_p99_ms")] if row == "5" else []
print(round_, mode, row, size, r["records_per_sec"], cpu, client, *latency)
' "$round" "$mode" "$row" "$size" "$cpu" "$(awk '{ print $1 + $2 }' "$WORK/client.cpu")" | tee -a "$WORK/results.txt"
}

: >"$WORK/results.txt"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="page direct"; else order="direct page"; fi
    for mode in $order; do
        for r in $ROWS; do
            case "$r" in
                1) fresh_broker && row "$round" "$mode" 1 100 ;;
                2) row "$round" "$mode" 2 100 ;;
                6) row "$round" "$mode" 6 1024 ;;
                *) fresh_broker && warm "$mode" && row "$round" "$mode" "$r" 1024 ;;
            esac
        done
    done
done
python3 - "$WORK/results.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    round_, mode, row, size, rate, cpu, _client, *latency = line.split()
    runs[(round_, mode, row)] = (float(rate), float(cpu), *map(float, latency))
for row in sorted({r for _, _, r in runs}):
    rounds = sorted({r for r, _, w in runs if w == row}, key=int)
    med = lambda mode, i: statistics.median(runs[(r, mode, row)][i] for r in rounds)
    ratios = [runs[(r, "direct", row)][0] / runs[(r, "page", row)][0] for r in rounds]
    print(f"row {row}: page {med('page', 0):,.0f} rec/s at {med('page', 1):.2f} CPU s/GB, "
          f"direct {med('direct', 0):,.0f} at {med('direct', 1):.2f}; direct/page "
          f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
    if len(runs[(rounds[0], "page", row)]) == 4:
        print(f"row {row} latency p50/p99 ms: page {med('page', 2):.2f}/{med('page', 3):.2f}, "
              f"direct {med('direct', 2):.2f}/{med('direct', 3):.2f}")
PY
