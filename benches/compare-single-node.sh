#!/usr/bin/env bash
# One broker, two builds, side by side: the single-node rows of the peer table (BENCHMARKS.md
# § Broker and peers) run against an OLD and a NEW `weir` binary in alternating rounds, on
# the same machine in one run, so a regression shows as a ratio rather than as a drift of
# the machine between two sessions.
#
# Every round starts each binary's `weir serve` on a fresh data directory, runs the rows
# with that binary's own `weir bench` (the flags both builds understand; acks always
# explicit, since the default changed from leader to all), and stops the broker. Only
# the brokers this script starts are stopped (a trap stops them however it ends).
#
# Usage: benches/compare-single-node.sh OLD_WEIR NEW_WEIR     (environment below)

set -euo pipefail

usage() {
    cat <<'EOF'
Usage: benches/compare-single-node.sh OLD_WEIR NEW_WEIR

Runs, for ROUNDS alternating rounds (old, new, old, new, ...), on one broker each:
  1. produce  SMALL_RECORDS records of 100 B, acks leader
  2. produce  LARGE_RECORDS records of 1 KiB, acks all on a flush.policy=group-commit
              topic (the ack waits for the fsync)
  3. consume  those LARGE_RECORDS records back
one partition, a window of 500 records x 8 in flight (as the peer table), and prints each
round's figures, the median per binary and NEW/OLD.

Environment (defaults in brackets):
  ROUNDS [3]  SMALL_RECORDS [2000000]  LARGE_RECORDS [500000]
  WORK   work directory: data, logs, results [${TMPDIR:-/tmp}/weir-compare]
  PORT   the brokers' port on 127.0.0.1 [17592]

Example (the binary before replication against this one):
  git worktree add /tmp/prerep a96e812
  (cd /tmp/prerep && CARGO_TARGET_DIR=/tmp/target-prerep cargo build --release -p weir-cli)
  cargo build --release -p weir-cli
  benches/compare-single-node.sh /tmp/target-prerep/release/weir target/release/weir
EOF
}

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
esac
if [ "$#" -ne 2 ] || [ ! -x "$1" ] || [ ! -x "$2" ]; then
    usage >&2
    exit 2
fi
OLD="$(realpath "$1")"
NEW="$(realpath "$2")"
ROUNDS="${ROUNDS:-3}"
SMALL_RECORDS="${SMALL_RECORDS:-2000000}"
LARGE_RECORDS="${LARGE_RECORDS:-500000}"
WORK="${WORK:-${TMPDIR:-/tmp}/weir-compare}"
PORT="${PORT:-17592}"
RESULTS="$WORK/results.tsv"
BROKER_PID=""

stop_broker() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID"
        for _ in $(seq 100); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    BROKER_PID=""
}
trap stop_broker EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "== $*" >&2; }

# The figure of one `weir bench --report-schema peer` line: records/s, and MB/s.
figures() {
    sed -E 's/.*"records_per_sec":([0-9.eE+-]+).*"mb_per_sec":([0-9.eE+-]+).*/\1\t\2/'
}

# bench BIN LABEL ROUND ROW SCENARIO ARGS...: one row; appends "label round row rec/s MB/s".
bench() {
    local bin="$1" label="$2" round="$3" row="$4" scenario="$5"
    shift 5
    local line
    if ! line="$(timeout --kill-after=10 600 "$bin" bench "$scenario" \
        --brokers "127.0.0.1:$PORT" --partitions 1 --max-in-flight 8 \
        --report-schema peer "$@" 2>>"$WORK/bench-$label.log" | tail -n1)"; then
        say "$label round $round: $row failed (see $WORK/bench-$label.log)"
        return 1
    fi
    printf '%s\t%s\t%s\t%s\n' "$label" "$round" "$row" "$(figures <<<"$line")" >>"$RESULTS"
}

round() {
    local bin="$1" label="$2" round="$3"
    local data="$WORK/data-$label-$round"
    rm -rf "$data"
    "$bin" serve --data-dir "$data" --listen "127.0.0.1:$PORT" --admin-listen off \
        >"$WORK/serve-$label-$round.log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 100); do
        "$bin" topic list --brokers "127.0.0.1:$PORT" >/dev/null 2>&1 && break
        sleep 0.1
    done
    say "$label round $round"
    bench "$bin" "$label" "$round" "produce 100 B, acks leader, rec/s" produce \
        --topic small --record-size 100 --count "$SMALL_RECORDS" --acks leader \
        --batch-bytes $((500 * 100)) || true
    if bench "$bin" "$label" "$round" "produce 1 KiB, durable, MB/s" produce \
        --topic large --record-size 1KiB --count "$LARGE_RECORDS" --acks all \
        --topic-config flush.policy=group-commit --batch-bytes $((500 * 1024)); then
        bench "$bin" "$label" "$round" "consume 1 KiB, MB/s" consume \
            --topic large --record-size 1KiB --count "$LARGE_RECORDS" \
            --batch-bytes $((500 * 1024)) || true
    fi
    stop_broker
    rm -rf "$data"
}

mkdir -p "$WORK"
: >"$RESULTS"
say "old: $OLD ($("$OLD" --version)); new: $NEW ($("$NEW" --version))"
say "machine: $(nproc) cores; data in $WORK ($(df -h --output=source,fstype "$WORK" | tail -n1 | tr -s ' '))"
for r in $(seq "$ROUNDS"); do
    round "$OLD" old "$r"
    round "$NEW" new "$r"
done

# Per row: every round's figure, the medians and NEW/OLD (rec/s for the 100 B row, MB/s
# for the others).
awk -F'\t' '
    function median(list,    n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        v = ($3 ~ /rec\/s/) ? $4 : $5
        key = $3 SUBSEP $1
        vals[key] = vals[key] (vals[key] == "" ? "" : " ") sprintf("%.1f", v)
        rows[$3] = 1
    }
    END {
        printf "%-36s %-32s %-32s %10s %10s %8s\n", "row", "old rounds", "new rounds", "old med", "new med", "new/old"
        for (row in rows) {
            o = median(vals[row SUBSEP "old"]); n = median(vals[row SUBSEP "new"])
            printf "%-36s %-32s %-32s %10.1f %10.1f %8.3f\n", row, vals[row SUBSEP "old"], vals[row SUBSEP "new"], o, n, (o > 0 ? n / o : 0)
        }
    }' "$RESULTS"
