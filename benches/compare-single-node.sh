#!/usr/bin/env bash
# One broker, two builds, side by side: the single-node rows of the peer table (BENCHMARKS.md
# § Broker and peers) run against an OLD and a NEW `weir` binary in alternating rounds, on
# the same machine in one run, so a regression shows as a ratio rather than as a drift of
# the machine between two sessions.
#
# Every round starts each binary's `weir serve` on a fresh data directory and a port of its
# own, runs the rows with that binary's own `weir bench` (only flags both builds have;
# acks always explicit, since the CLI's default changed from leader to all), and stops
# the broker. Only the brokers this script starts are stopped, by the pid it recorded (a
# trap stops them however it ends).
#
# Usage: benches/compare-single-node.sh OLD_WEIR NEW_WEIR     (environment below)

set -euo pipefail
# Brokers started here serve no Kafka clients (not on port 9092, which may be taken).
export WEIR_KAFKA_LISTEN=none
# Nor AMQP clients (not on port 5672, where a RabbitMQ may listen).
export WEIR_AMQP_LISTEN=none

usage() {
    cat <<'EOF'
Usage: benches/compare-single-node.sh OLD_WEIR NEW_WEIR

Runs, for ROUNDS rounds, each binary's broker (`weir serve`, one node, fresh data
directory) and against it, with that binary's `weir bench --report-schema peer`:
  1. produce  SMALL_RECORDS records of 100 B, --acks leader
  2. produce  LARGE_RECORDS records of 1 KiB, --acks all on a topic created with
              --topic-config flush.policy=group-commit (the ack waits for the fsync;
              checked in the result line: fsync_before_ack must be true)
  3. consume  those LARGE_RECORDS records back
each on a topic of 1 partition, with a window of 500 records x 8 batches in flight
(--batch-bytes 500 x record size, --max-in-flight 8), as the peer table in BENCHMARKS.md.
Rounds alternate which binary goes first (old-new, new-old, ...), so neither always
gets the warmer or the colder machine. Prints every round's figure, the median per
binary and NEW/OLD of the medians (records/s for row 1, MB/s for rows 2 and 3).

Flags used, present in both builds (a96e812 and after): `weir serve --data-dir --listen
--admin-listen off`; `weir bench produce|consume --brokers --topic --partitions
--record-size --count --acks --topic-config --batch-bytes --max-in-flight
--report-schema peer`; `weir topic list --brokers` (readiness).

Environment (defaults in brackets):
  ROUNDS [3]  SMALL_RECORDS [2000000]  LARGE_RECORDS [500000]
  WORK        work directory: data, logs, results [${TMPDIR:-/tmp}/weir-compare]
  OLD_PORT    the old broker's port on 127.0.0.1 [17592]
  NEW_PORT    the new broker's port on 127.0.0.1 [17593]
  BENCH_TIMEOUT_SECS  most seconds one row may take [600]
  READY_TIMEOUT_SECS  most seconds a broker may take to answer [60]

Time: with the default counts about 10-15 s per binary per round (3 rows of 1-3 s, plus
a broker start and stop), so about 1 minute for 3 rounds; rows that short are noisy. For
a verdict on the 5% line use longer rows and more rounds, e.g.
  ROUNDS=5 SMALL_RECORDS=8000000 LARGE_RECORDS=1500000   (about 3-4 minutes)

Example (the binary before replication against this one):
  git worktree add /work/prerep a96e812
  (cd /work/prerep && CARGO_TARGET_DIR=/work/target-prerep cargo build --release -p weir-cli)
  CARGO_TARGET_DIR=/work/target-release cargo build --release -p weir-cli
  benches/compare-single-node.sh /work/target-prerep/release/weir /work/target-release/release/weir
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
OLD_PORT="${OLD_PORT:-17592}"
NEW_PORT="${NEW_PORT:-17593}"
BENCH_TIMEOUT_SECS="${BENCH_TIMEOUT_SECS:-600}"
READY_TIMEOUT_SECS="${READY_TIMEOUT_SECS:-60}"
RESULTS="$WORK/results.tsv"
# The producer window of the peer table: 500 records a batch, 8 batches in flight.
WINDOW_RECORDS=500
IN_FLIGHT=8
# CPU use by others (percent) above which a round is flagged as noisy.
BUSY_WARN_PERCENT=10
BROKER_PID=""
BENCH_PID=""
FAILED=0

say() { printf '[compare %4ss] %s\n' "$SECONDS" "$*" >&2; }

# Stops the broker this script started (by its pid): TERM, then KILL after 10 s.
stop_broker() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$BROKER_PID" 2>/dev/null; then
            say "broker (pid $BROKER_PID) did not stop in 10 s: killing it"
            kill -KILL "$BROKER_PID" 2>/dev/null || true
        fi
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    BROKER_PID=""
}
on_exit() {
    # A bench still running (the script was stopped): its `timeout`, which passes the
    # signal on to it.
    if [ -n "$BENCH_PID" ]; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
    fi
    stop_broker
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# cpu_busy_percent
# shellcheck source=benches/cpu.sh
source "$(dirname "${BASH_SOURCE[0]}")/cpu.sh"

# records/s, MB/s and fsync_before_ack of one weir-peer-bench/1 line (stdin), tab-separated.
figures() {
    python3 -c '
import json, sys
r = json.loads(sys.stdin.read().strip().splitlines()[-1])
assert r.get("schema") == "weir-peer-bench/1", "not a weir-peer-bench/1 line"
fsync = (r.get("acks") or {}).get("fsync_before_ack")
print("%s\t%s\t%s" % (r["records_per_sec"], r["mb_per_sec"], "-" if fsync is None else str(fsync).lower()))
'
}

# bench BIN LABEL PORT ROUND ROW SCENARIO ARGS...: one row; appends
# "label round row records/s MB/s" to $RESULTS.
bench() {
    local bin="$1" label="$2" port="$3" round="$4" row="$5" scenario="$6"
    shift 6
    local line figs status=0 extra=()
    # A window of 8 is above idempotence's 5: builds that have idempotence (on by
    # default) run without it, so both builds do the same work.
    if "$bin" bench produce --help | grep -q -- '--idempotence'; then
        extra=(--idempotence false)
    fi
    # In the background, waited for: a signal to this script is acted on at once.
    timeout --kill-after=10 "$BENCH_TIMEOUT_SECS" "$bin" bench "$scenario" \
        --brokers "127.0.0.1:$port" --partitions 1 --max-in-flight "$IN_FLIGHT" \
        "${extra[@]}" --report-schema peer "$@" >"$WORK/line.json" 2>>"$WORK/bench-$label.log" &
    BENCH_PID=$!
    wait "$BENCH_PID" || status=$?
    BENCH_PID=""
    if [ "$status" != 0 ]; then
        say "$label round $round: row $row failed, status $status (see $WORK/bench-$label.log)"
        FAILED=1
        return 1
    fi
    line="$(tail -n1 "$WORK/line.json")"
    if ! figs="$(figures <<<"$line")"; then
        say "$label round $round: row $row printed no result line: $line"
        FAILED=1
        return 1
    fi
    # Row 2 must really have waited for the fsync (flush.policy applied at create).
    if [ "$row" = 2 ] && [ "$(cut -f3 <<<"$figs")" != true ]; then
        say "$label round $round: row 2's acks did not wait for an fsync: $line"
        FAILED=1
        return 1
    fi
    say "$label round $round: row $row: $(awk -F'\t' '{ printf "%.0f records/s, %.1f MB/s", $1, $2 }' <<<"$figs")"
    printf '%s\t%s\t%s\t%s\n' "$label" "$round" "$row" "$(cut -f1,2 <<<"$figs")" >>"$RESULTS"
}

# round BIN LABEL PORT ROUND: a fresh broker of BIN, the three rows, the broker stopped.
round() {
    local bin="$1" label="$2" port="$3" round="$4" busy deadline
    local data="$WORK/data-$label-$round"
    busy="$(cpu_busy_percent)"
    if [ "$busy" -gt "$BUSY_WARN_PERCENT" ]; then
        say "warning: ${busy}% of the CPU is busy with other work before $label round $round: its figures are noise"
        echo "$label round $round: ${busy}% CPU busy with other work at start" >>"$WORK/noisy.txt"
    fi
    if port_open "$port"; then
        say "port $port is already in use by a process this script did not start: set ${label^^}_PORT"
        exit 1
    fi
    rm -rf "$data"
    "$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" --admin-listen off \
        >"$WORK/serve-$label-$round.log" 2>&1 &
    BROKER_PID=$!
    deadline=$((SECONDS + READY_TIMEOUT_SECS))
    until "$bin" topic list --brokers "127.0.0.1:$port" >/dev/null 2>&1; do
        if ! kill -0 "$BROKER_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            say "$label round $round: the broker did not start (see $WORK/serve-$label-$round.log)"
            tail -n 5 "$WORK/serve-$label-$round.log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    say "$label round $round: $bin serve on 127.0.0.1:$port (pid $BROKER_PID)"
    bench "$bin" "$label" "$port" "$round" 1 produce \
        --topic small --record-size 100 --count "$SMALL_RECORDS" --acks leader \
        --batch-bytes $((WINDOW_RECORDS * 100)) || true
    if bench "$bin" "$label" "$port" "$round" 2 produce \
        --topic large --record-size 1KiB --count "$LARGE_RECORDS" --acks all \
        --topic-config flush.policy=group-commit --batch-bytes $((WINDOW_RECORDS * 1024)); then
        # Reads back exactly the records row 2 wrote.
        bench "$bin" "$label" "$port" "$round" 3 consume \
            --topic large --record-size 1KiB --count "$LARGE_RECORDS" \
            --batch-bytes $((WINDOW_RECORDS * 1024)) || true
    fi
    stop_broker
    rm -rf "$data"
}

if [ "$OLD_PORT" = "$NEW_PORT" ]; then
    echo "compare-single-node.sh: OLD_PORT and NEW_PORT must differ" >&2
    exit 2
fi
mkdir -p "$WORK"
: >"$RESULTS"
rm -f "$WORK/noisy.txt"
[ "$OLD" != "$NEW" ] && ! cmp -s "$OLD" "$NEW" || say "warning: OLD and NEW are the same binary"
say "old: $OLD ($("$OLD" --version)); new: $NEW ($("$NEW" --version))"
say "machine: $(nproc) cores, $(uname -r); data in $WORK ($(df -h --output=source,fstype "$WORK" | tail -n1 | tr -s ' '))"
say "$ROUNDS rounds; rows: $SMALL_RECORDS x 100 B acks leader, $LARGE_RECORDS x 1 KiB durable, consume those"
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        round "$OLD" old "$OLD_PORT" "$r"
        round "$NEW" new "$NEW_PORT" "$r"
    else
        round "$NEW" new "$NEW_PORT" "$r"
        round "$OLD" old "$OLD_PORT" "$r"
    fi
done

# Per row: every round's figure (in round order), the medians and NEW/OLD of the medians.
echo
echo "One node, OLD = $OLD"
echo "          NEW = $NEW"
echo "$ROUNDS rounds (odd rounds old first, even rounds new first)"
echo
awk -F'\t' '
    function median(list,    n, a, i, j, t) {
        n = split(list, a, " ")
        if (n == 0) return 0
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    BEGIN {
        name[1] = "1. produce 100 B, acks leader, rec/s"
        name[2] = "2. produce 1 KiB, durable, MB/s"
        name[3] = "3. consume 1 KiB, MB/s"
    }
    {
        v = ($3 == 1) ? sprintf("%.0f", $4) : sprintf("%.1f", $5)
        key = $3 SUBSEP $1
        vals[key] = vals[key] (vals[key] == "" ? "" : " ") v
    }
    END {
        printf "%-38s %-34s %-34s %10s %10s %8s\n", "row", "old, per round", "new, per round", "old med", "new med", "new/old"
        for (row = 1; row <= 3; row++) {
            o = median(vals[row SUBSEP "old"]); n = median(vals[row SUBSEP "new"])
            fmt = (row == 1) ? "%10.0f %10.0f" : "%10.1f %10.1f"
            printf "%-38s %-34s %-34s " fmt " %8s\n", name[row], vals[row SUBSEP "old"], vals[row SUBSEP "new"], o, n, (o > 0 && n > 0 ? sprintf("%.3f", n / o) : "-")
        }
    }' "$RESULTS" | tee "$WORK/results.txt"
echo
say "per-round figures: $RESULTS; table: $WORK/results.txt; logs: $WORK/*.log"
if [ -s "$WORK/noisy.txt" ]; then
    say "noisy rounds (other work was using the CPU):"
    sed 's/^/  /' "$WORK/noisy.txt" >&2
fi
if [ "$FAILED" != 0 ]; then
    say "some rows failed (see above)"
    exit 1
fi
