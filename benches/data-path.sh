#!/usr/bin/env bash
# Weir's data path beside the machine's own limits: the four single-partition workloads
# (produce 100 B and 1 KiB with acks leader, produce 1 KiB durable, consume 1 KiB) run
# against a local broker, and `weir-limits` (loopback TCP, write + fdatasync, page cache
# writes, memcpy) measures what this machine can do at all, in alternating rounds of the
# same run. Prints the medians, each figure as a share of its limit, and the CPU seconds
# the bench process and the broker used (on 2 cores, where the CPU goes matters).
#
# With WEIR_BIN_B, a second build runs the same workloads in the same rounds (each on a
# broker of its own), printed side by side with B/A of the medians.
#
# Every round starts each binary's `weir serve` on a fresh data directory under the work
# directory and a loopback port of its own, and stops it at the end of the round. Only
# what this script starts is stopped, by the pid it recorded (a trap stops it however the
# script ends; a rerun first stops what a killed earlier run left, by its pid files).
#
# Usage: benches/data-path.sh [--quick] [--rounds N] [--help]    (environment below)

set -euo pipefail
# Brokers started here serve no Kafka clients (not on port 9092, which may be taken).
export WEIR_KAFKA_LISTEN=none
# Nor AMQP clients (not on port 5672, where a RabbitMQ may listen).
export WEIR_AMQP_LISTEN=none

usage() {
    cat <<'EOF'
Usage: benches/data-path.sh [--quick] [--rounds N] [--help]

Builds weir-limits (and weir, unless WEIR_BIN is given) with `nice -n 10 cargo build
--release`, then for ROUNDS rounds runs, in an order that alternates between rounds
(odd: limits, A, B; even: B, A, limits):

  limits  weir-limits --format json: loopback_tcp (1 process), loopback_tcp_2proc
          (writer and reader in 2 processes), write_fdatasync (1 MiB appends, fdatasync
          after each), write_only (page cache), memcpy (1 thread); each stops after
          LIMIT_MAX_SECS at most
  A (B)   a fresh `weir serve` on 127.0.0.1 and its own data directory, then, each on a
          topic of 1 partition, with one `weir bench` process (--report-schema peer):
            1. produce SMALL_RECORDS x 100 B, --acks leader           limit: loopback TCP,
                                                                      and write_only
            2. produce LARGE_RECORDS x 1 KiB, --acks leader           limit: loopback TCP,
                                                                      and write_only
            3. produce DURABLE_RECORDS x 1 KiB, --acks all on a topic created with
               --topic-config flush.policy=group-commit (the ack waits for the
               fdatasync; checked: fsync_before_ack must be true)     limit: write_fdatasync
            4. consume the LARGE_RECORDS records of row 2             limit: loopback TCP,
                                                                      and memcpy (reference)
          then the broker is stopped, its data directory removed, and the script waits
          FREED_MEMORY_SETTLE_SECS (5) so the memory it freed goes back to the host on a
          VM that reports free pages, as weir-limits waits after each file: every part
          then starts from memory in the same state (benches/src/bin/weir-limits/main.rs).

The loopback limit is loopback_tcp_2proc (producer and broker are two processes; set
LOOPBACK_LIMIT=loopback_tcp for the one-process figure). Row 1 is records/s; its share
of the limit is records/s x 100 B against loopback bytes/s, its bytes figure is printed
too. Rows 2-4 are MB/s (10^6 bytes of record values per second, as weir bench counts).
A share is the median over rounds of (figure / the limit measured in the same round).
CPU: the bench process's user+sys seconds (its whole run, set-up included) and the
broker's user+sys seconds during that run (from /proc/<pid>/stat).
A last table reads the broker's CPU per GB of record values against the kernel's floor
for the same kind of bytes, measured by weir-limits in the same round (recv_append for
produce rows; for durable ones the cheaper of recv_append_fdatasync and
recv_append_sync_thread; sendfile_send for consume rows): the least a program doing only
the kernel's part spends. Rows 2-3 and 9-10 follow the bytes the rows before them wrote on
the same broker, and on a VM the page cache costs more per new page once it holds a few
GB; so their floors are also measured in that state (weir-limits --resident-bytes: the
record values of the rows before, written first and kept while the floor runs), and the
table reads each row against both: the floor in the same state, and a fresh one.

Producer settings are weir bench's defaults (idempotent, the client's batch size and
window); WEIR_BENCH_ARGS changes them for every row alike, e.g.
  WEIR_BENCH_ARGS="--max-in-flight 8 --idempotence false"

Time: a full default run takes about 4-5 minutes with one binary and 7-8 with two on a
2-core machine (rows 1-4 take about 45 s a binary a round, the limits about 75 s, at
most 5 x LIMIT_MAX_SECS); --quick takes about 1 minute (2 with two binaries).

Options:
  --quick     a smoke run: 10x fewer records, limits of 1 GiB / 256 MiB / 2 GiB at most
              3 s each
  --rounds N  rounds [3]
  --help      this text

Environment (defaults in brackets):
  WEIR_BIN        the weir binary (A) [<cargo target dir>/release/weir]
  WEIR_BIN_B      a second weir binary (B), run in the same rounds [none]
  WEIR_LIMITS_BIN the weir-limits binary [<cargo target dir>/release/weir-limits]
  KAFKA           1: also part K in every round: a fresh broker of binary A with its Kafka
                  listener, and rows 1-4 again through the Kafka protocol as rows 8-11,
                  driven by librdkafka (weir-peer-bench --peer kafka, built with its
                  `kafka` feature: librdkafka from source, cmake apt-got if missing);
                  with WEIR_BIN_B, part KB too: the same rows on a broker of binary B,
                  printed beside K with KB/K of the medians [0].
                  Rows 5-7 were the binary TCP prototype's (WIRE=1), retired after
                  commit 980d4cf: BENCHMARKS.md § Data path says how to rerun them there.
  TOPIC_CONFIG    topic configs every row's topic is created with, as key=value words,
                  e.g. "write.direct=true" (past the page cache) [none]
  TOPIC_CONFIG_B  the same for parts B and KB [TOPIC_CONFIG]; with WEIR_BIN_B set to
                  WEIR_BIN, an A/B of two configs of one build in the same rounds
  KAFKA_BENCH_ARGS  extra weir-peer-bench arguments for rows 8-11
                  ["--batch-records 10000 --in-flight 16": 160,000 records unacknowledged
                  at most, librdkafka batching them itself]
  WEIR_PEER_BIN   the weir-peer-bench binary [<cargo target dir>/release/weir-peer-bench]
  PORT_K [17696]  KAFKA_PORT_K [17697]  part K's gRPC and Kafka ports on 127.0.0.1
  PORT_KB [17698]  KAFKA_PORT_KB [17699]  part KB's
  WEIR_DATA_PATH_BUILD  1: build first; 0: use what is built [1]
  WORK            work directory: data, logs, pid files, results
                  [${TMPDIR:-/tmp}/weir-data-path]
  ROUNDS [3]  SMALL_RECORDS [20000000]  LARGE_RECORDS [2000000]  DURABLE_RECORDS [500000]
  LIMIT_TCP_BYTES [8GiB]  LIMIT_DISK_BYTES [2GiB]  LIMIT_MEMCPY_BYTES [16GiB]
  LIMIT_MAX_SECS  most seconds per limit measurement [10]
  LIMIT_DIR       where write_fdatasync and write_only write [$WORK: the disk the broker
                  writes to]
  LOOPBACK_LIMIT  the loopback limit of rows 1, 2 and 4 [loopback_tcp_2proc]
  PORT_A [17692]  PORT_B [17693]   the brokers' ports on 127.0.0.1
  WEIR_BENCH_ARGS extra arguments for every `weir bench` (e.g. "--batch-bytes 512KiB")
  BENCH_TIMEOUT_SECS  most seconds one row may take [600]
  READY_TIMEOUT_SECS  most seconds a broker may take to answer [60]

Examples:
  benches/data-path.sh
  benches/data-path.sh --quick
  # Before/after: an older build (B) against this one (A), 5 rounds:
  WEIR_BIN_B=/work/target-old/release/weir benches/data-path.sh --rounds 5
  # Binaries built elsewhere, nothing built:
  WEIR_DATA_PATH_BUILD=0 WEIR_BIN=/path/weir WEIR_LIMITS_BIN=/path/weir-limits benches/data-path.sh
EOF
}

QUICK=0
ROUNDS="${ROUNDS:-3}"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds)
            [ "$#" -ge 2 ] || { echo "data-path.sh: --rounds needs a number (see --help)" >&2; exit 2; }
            ROUNDS="$2"
            shift
            ;;
        -h|--help) usage; exit 0 ;;
        *) echo "data-path.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "${WIRE:-}" ] && [ "$WIRE" != 0 ]; then
    echo "data-path.sh: WIRE=$WIRE: the binary TCP prototype (rows 5-7) was retired after commit 980d4cf; check that commit out to rerun it (BENCHMARKS.md § Data path)" >&2
    exit 2
fi
if ! [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
    echo "data-path.sh: ROUNDS must be a whole number above 0, not '$ROUNDS'" >&2
    exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${WORK:-${TMPDIR:-/tmp}/weir-data-path}"
if [ "$QUICK" = 1 ]; then
    SMALL_RECORDS="${SMALL_RECORDS:-2000000}"
    LARGE_RECORDS="${LARGE_RECORDS:-200000}"
    DURABLE_RECORDS="${DURABLE_RECORDS:-50000}"
    LIMIT_TCP_BYTES="${LIMIT_TCP_BYTES:-1GiB}"
    LIMIT_DISK_BYTES="${LIMIT_DISK_BYTES:-256MiB}"
    LIMIT_MEMCPY_BYTES="${LIMIT_MEMCPY_BYTES:-2GiB}"
    LIMIT_MAX_SECS="${LIMIT_MAX_SECS:-3}"
fi
SMALL_RECORDS="${SMALL_RECORDS:-20000000}"
LARGE_RECORDS="${LARGE_RECORDS:-2000000}"
DURABLE_RECORDS="${DURABLE_RECORDS:-500000}"
LIMIT_TCP_BYTES="${LIMIT_TCP_BYTES:-8GiB}"
LIMIT_DISK_BYTES="${LIMIT_DISK_BYTES:-2GiB}"
LIMIT_MEMCPY_BYTES="${LIMIT_MEMCPY_BYTES:-16GiB}"
LIMIT_MAX_SECS="${LIMIT_MAX_SECS:-10}"
LIMIT_DIR="${LIMIT_DIR:-$WORK}"
LOOPBACK_LIMIT="${LOOPBACK_LIMIT:-loopback_tcp_2proc}"
PORT_A="${PORT_A:-17692}"
PORT_B="${PORT_B:-17693}"
KAFKA="${KAFKA:-0}"
PORT_K="${PORT_K:-17696}"
KAFKA_PORT_K="${KAFKA_PORT_K:-17697}"
PORT_KB="${PORT_KB:-17698}"
KAFKA_PORT_KB="${KAFKA_PORT_KB:-17699}"
KAFKA_BENCH_ARGS="${KAFKA_BENCH_ARGS:---batch-records 10000 --in-flight 16}"
# topic_args LABEL: the --topic-config arguments of part LABEL's rows, one per line.
topic_args() {
    local configs="${TOPIC_CONFIG:-}"
    case "$1" in
        B | KB) configs="${TOPIC_CONFIG_B-$configs}" ;;
    esac
    for config in $configs; do
        printf -- '--topic-config\n%s\n' "$config"
    done
}
BENCH_TIMEOUT_SECS="${BENCH_TIMEOUT_SECS:-600}"
READY_TIMEOUT_SECS="${READY_TIMEOUT_SECS:-60}"
# Record sizes of the rows, in bytes (row 1; rows 2-4).
SMALL_RECORD_BYTES=100
LARGE_RECORD_BYTES=1024
# What the page cache holds of a broker's rows when rows 2 and 9 start (row 1's or 8's
# record values) and when rows 3 and 10 start (those and row 2's or 9's): the state their
# produce floors are measured in too.
ROW2_RESIDENT_BYTES=$((SMALL_RECORDS * SMALL_RECORD_BYTES))
ROW3_RESIDENT_BYTES=$((ROW2_RESIDENT_BYTES + LARGE_RECORDS * LARGE_RECORD_BYTES))
# Every limit weir-limits measures (13), at most LIMIT_MAX_SECS each (+5 s grace), and
# the syncs between them.
LIMITS_TIMEOUT_SECS=$((13 * (LIMIT_MAX_SECS + 5) + 60))
# Seconds a stopped broker gets to exit before it is killed.
STOP_GRACE_SECS=10
# Seconds to wait after deleting a broker's data: on a VM that reports free pages to its
# host (this one does), freed memory goes back to the host within a few seconds, and a
# page-cache page taken from it again costs a host fault. Without the wait, the next
# broker's appends would land in the pages the last one freed (4.2 GB/s here) and the
# one after in returned memory (1.0-1.4 GB/s): the order of the parts would be measured.
FREED_MEMORY_SETTLE_SECS=5
# CPU use by others (percent) above which a round's part is flagged as noisy.
BUSY_WARN_PERCENT=10

PIDS="$WORK/pids"
LOGS="$WORK/logs"
DATA="$WORK/data"
RESULTS="$WORK/results.tsv"
BENCH_LINES="$WORK/bench.jsonl"
LIMIT_LINES="$WORK/limits.jsonl"
CLK_TCK="$(getconf CLK_TCK)"
FAILED=()
NOISY=()

say() { printf '[data-path %4ss] %s\n' "$SECONDS" "$*" >&2; }

case "$LOOPBACK_LIMIT" in
    loopback_tcp|loopback_tcp_2proc) ;;
    *) echo "data-path.sh: LOOPBACK_LIMIT must be loopback_tcp or loopback_tcp_2proc" >&2; exit 2 ;;
esac
if [ -n "${WEIR_BIN_B:-}" ] && [ "$PORT_A" = "$PORT_B" ]; then
    echo "data-path.sh: PORT_A and PORT_B must differ" >&2
    exit 2
fi

# --- Stopping: only what this script started, by the pids it recorded ---------------------

# Whether pid $1 is alive (not a zombie) and still runs the program named $2 (a recycled
# pid is left alone): its command name, which the kernel cuts to 15 characters.
pid_is() {
    local state comm
    read -r state comm < <(ps -o stat=,comm= -p "$1" 2>/dev/null || true)
    [ -n "${state:-}" ] && [[ "$state" != Z* ]] && [ "${comm:-}" = "${2:0:15}" ]
}

# Stops the broker recorded in $PIDS/$1.pid ("pid program-name"): TERM, then KILL after
# STOP_GRACE_SECS, and reaps it.
stop_broker() {
    local file="$PIDS/$1.pid" pid name deadline
    [ -f "$file" ] || return 0
    read -r pid name <"$file" || true
    if [ -n "$pid" ] && [ -n "$name" ] && pid_is "$pid" "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + STOP_GRACE_SECS))
        while pid_is "$pid" "$name" && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.1
        done
        if pid_is "$pid" "$name"; then
            say "broker $1 (pid $pid) did not stop in ${STOP_GRACE_SECS}s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        # Reaps it if it is our child (an earlier run's is not: status 127, ignored).
        wait "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

# The bench or weir-limits running when a signal came (a subshell that passes TERM on).
CHILD_PID=""

on_exit() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$CHILD_PID" ]; then
        kill -TERM "$CHILD_PID" 2>/dev/null || true
        wait "$CHILD_PID" 2>/dev/null || true
    fi
    stop_broker A
    stop_broker B
    stop_broker K
    stop_broker KB
    rm -rf "${DATA:?}"
    exit "$status"
}

# measured CPU_FILE CMD...: runs CMD in the background and waits for it (so a signal to
# this script is acted on at once); writes the user+sys CPU seconds of CMD and all it ran
# to CPU_FILE (the subshell's reaped children, from /proc); returns CMD's status.
measured() {
    local cpu_file="$1" status=0
    shift
    (
        child=""
        trap 'if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; fi; exit 143' TERM INT
        "$@" &
        child=$!
        code=0
        wait "$child" || code=$?
        # Fields 16 and 17 of /proc/<pid>/stat: cutime, cstime of the waited-for children.
        read -r -a stat <"/proc/$BASHPID/stat"
        echo "$(((stat[15] + stat[16])))" >"$cpu_file"
        exit "$code"
    ) &
    CHILD_PID=$!
    wait "$CHILD_PID" || status=$?
    CHILD_PID=""
    return "$status"
}

# CPU ticks (user+sys, all threads) a live process has used so far.
cpu_ticks() {
    local stat
    read -r -a stat <"/proc/$1/stat" || { echo 0; return; }
    echo "$((stat[13] + stat[14]))"
}

ticks_to_secs() {
    awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# cpu_busy_percent
# shellcheck source=benches/cpu.sh
source "$(dirname "${BASH_SOURCE[0]}")/cpu.sh"

check_quiet() {
    local busy
    busy="$(cpu_busy_percent)"
    if [ "$busy" -gt "$BUSY_WARN_PERCENT" ]; then
        say "warning: ${busy}% of the CPU is busy with other work before $1: its figures are noise"
        NOISY+=("$1: ${busy}% CPU busy with other work at start")
    fi
}

# --- Limits ------------------------------------------------------------------------------

run_limits() {
    local round="$1"
    check_quiet "limits round $round"
    say "limits round $round: weir-limits ($LIMIT_TCP_BYTES TCP, $LIMIT_DISK_BYTES file, $LIMIT_MEMCPY_BYTES memcpy, at most ${LIMIT_MAX_SECS}s each)"
    weir_limits "$round" "every limit" --bytes "$LIMIT_TCP_BYTES" \
        --memcpy-bytes "$LIMIT_MEMCPY_BYTES" || return 1
    say "limits round $round: $(python3 -c '
import json, sys
print(", ".join("%s %.3g %s" % (r["limit"], r["value"], r["unit"]) for r in map(json.loads, open(sys.argv[1]))))
' "$WORK/limits.out")"
    # The produce floors again in the state the rows after the first meet.
    local row2="$ROW2_RESIDENT_BYTES" row3="$ROW3_RESIDENT_BYTES"
    say "limits round $round: the produce floors with $row2 and $row3 bytes in the page cache first"
    weir_limits "$round" "recv_append after $row2 bytes" --only recv_append --resident-bytes "$row2" &&
        weir_limits "$round" "durable floors after $row3 bytes" \
            --only recv_append_fdatasync,recv_append_sync_thread --resident-bytes "$row3"
}

# weir_limits ROUND WHAT ARGS...: one run of weir-limits (JSON lines, the round's file
# size, time bound and directory, and ARGS), its lines kept and recorded in $RESULTS, a
# floor measured with --resident-bytes N as LIMIT@N.
weir_limits() {
    local round="$1" what="$2" status=0
    shift 2
    measured "$WORK/cpu.ticks" timeout --kill-after=10 "$LIMITS_TIMEOUT_SECS" "$LIMITS_BIN" \
        --format json --disk-bytes "$LIMIT_DISK_BYTES" --max-secs "$LIMIT_MAX_SECS" \
        --dir "$LIMIT_DIR" "$@" >"$WORK/limits.out" 2>>"$LOGS/limits.log" || status=$?
    if [ "$status" != 0 ]; then
        say "limits round $round ($what) failed, status $status (see $LOGS/limits.log)"
        tail -n 3 "$LOGS/limits.log" >&2 || true
        FAILED+=("limits round $round, $what (see $LOGS/limits.log)")
        return 1
    fi
    cat "$WORK/limits.out" >>"$LIMIT_LINES"
    python3 - "$round" "$WORK/limits.out" >>"$RESULTS" <<'PY'
import json, sys
round_, path = sys.argv[1], sys.argv[2]
for line in open(path):
    r = json.loads(line)
    assert r.get("schema") == "weir-limits/1", "not a weir-limits/1 line"
    name = r["limit"] + ("@%d" % r["resident_bytes"] if r.get("resident_bytes") else "")
    cpu = r.get("cpu_seconds_per_gb")
    print("L\t-\t%s\t%s\t%r\t%s\t%s" % (round_, name, r["bytes_per_sec"], str(r["stopped_by_time"]).lower(), "-" if cpu is None else repr(cpu)))
PY
}

# --- Weir --------------------------------------------------------------------------------

# records/s, MB/s, seconds and fsync_before_ack of one weir-peer-bench/1 line (stdin).
figures() {
    python3 -c '
import json, sys
r = json.loads(sys.stdin.read().strip().splitlines()[-1])
assert r.get("schema") == "weir-peer-bench/1", "not a weir-peer-bench/1 line"
fsync = (r.get("acks") or {}).get("fsync_before_ack")
print("%r\t%r\t%r\t%s" % (r["records_per_sec"], r["mb_per_sec"], r["seconds"], "-" if fsync is None else str(fsync).lower()))
'
}

# bench LABEL ROUND ROW SCENARIO ARGS...: one row of `weir bench` against broker LABEL.
bench() {
    local label="$1" round="$2" row="$3" scenario="$4"
    shift 4
    local topic=()
    mapfile -t topic < <(topic_args "$label")
    # shellcheck disable=SC2086 # WEIR_BENCH_ARGS is a list of words.
    run_row "$label" "$round" "$row" "${BIN[$label]}" bench "$scenario" \
        --brokers "127.0.0.1:${PORT[$label]}" --partitions 1 --report-schema peer "$@" \
        "${topic[@]}" ${WEIR_BENCH_ARGS:-}
}

# kafka_bench LABEL ROUND ROW WORKLOAD ARGS...: one row of weir-peer-bench --peer kafka
# against part LABEL's (K or KB) broker's Kafka listener (KAFKA=1); produce rows
# recreate their topic.
kafka_bench() {
    local label="$1" round="$2" row="$3" workload="$4"
    shift 4
    local fsync=() topic=()
    [ "$row" = 10 ] && fsync=(--fsync-before-ack)
    mapfile -t topic < <(topic_args "$label")
    # shellcheck disable=SC2086 # KAFKA_BENCH_ARGS is a list of words.
    run_row "$label" "$round" "$row" "$PEER_BIN" "$workload" --peer kafka --system weir-kafka \
        --port "${KAFKA_PORT[$label]}" --timeout-secs "$BENCH_TIMEOUT_SECS" --format json \
        "${fsync[@]}" "${topic[@]}" "$@" $KAFKA_BENCH_ARGS
}

# run_row LABEL ROUND ROW CMD...: runs CMD (which prints a weir-peer-bench/1 line) while
# broker LABEL serves; appends its figures and CPU seconds to $RESULTS.
run_row() {
    local label="$1" round="$2" row="$3"
    shift 3
    local broker_pid="${BROKER[$label]}"
    local line figs status=0 broker_before broker_after bench_cpu broker_cpu
    broker_before="$(cpu_ticks "$broker_pid")"
    measured "$WORK/cpu.ticks" timeout --kill-after=10 "$BENCH_TIMEOUT_SECS" "$@" \
        >"$WORK/line.json" 2>>"$LOGS/bench-$label.log" || status=$?
    broker_after="$(cpu_ticks "$broker_pid")"
    if [ "$status" != 0 ]; then
        say "$label round $round: row $row failed, status $status (see $LOGS/bench-$label.log)"
        tail -n 3 "$LOGS/bench-$label.log" >&2 || true
        FAILED+=("$label round $round row $row (see $LOGS/bench-$label.log)")
        return 1
    fi
    line="$(tail -n1 "$WORK/line.json")"
    if ! figs="$(figures <<<"$line")"; then
        say "$label round $round: row $row printed no result line: $line"
        FAILED+=("$label round $round row $row: no result line")
        return 1
    fi
    echo "$line" >>"$BENCH_LINES"
    # Rows 3 and 10 must really have waited for the fdatasync (flush.policy applied at
    # create; on the Kafka path, the broker's default group-commit).
    if { [ "$row" = 3 ] || [ "$row" = 10 ]; } && [ "$(cut -f4 <<<"$figs")" != true ]; then
        say "$label round $round: row $row's acks did not wait for an fsync: $line"
        FAILED+=("$label round $round row $row: acks did not wait for an fsync")
        return 1
    fi
    bench_cpu="$(ticks_to_secs "$(cat "$WORK/cpu.ticks")")"
    broker_cpu="$(ticks_to_secs "$((broker_after - broker_before))")"
    say "$label round $round: row $row: $(awk -F'\t' '{ printf "%.0f records/s, %.1f MB/s in %.1f s", $1, $2, $3 }' <<<"$figs"); CPU: bench ${bench_cpu}s, broker ${broker_cpu}s"
    printf 'W\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$round" "$row" "$(cut -f1-3 <<<"$figs")" \
        "$bench_cpu" "$broker_cpu" >>"$RESULTS"
}

# Whether broker LABEL can take topics: it is registered and unfenced (`weir cluster
# describe`; a topic created before that fails with "0 brokers can take a replica"), or,
# for a build without that command, it answers `weir topic list`.
weir_ready() {
    local bin="${BIN[$1]}" addr="127.0.0.1:${PORT[$1]}"
    if [ "${DESCRIBES[$1]}" = 1 ]; then
        "$bin" cluster describe --brokers "$addr" --format json 2>/dev/null |
            grep -q '"fenced":false'
    else
        "$bin" topic list --brokers "$addr" >/dev/null 2>&1
    fi
}

# run_weir LABEL ROUND: a fresh broker of binary LABEL, rows 1-4 (K and KB: rows 8-11
# over its Kafka listener), the broker stopped and its data removed.
run_weir() {
    local label="$1" round="$2" deadline pid
    local bin="${BIN[$label]}" port="${PORT[$label]}" data="$DATA/$label"
    check_quiet "$label round $round"
    if port_open "$port"; then
        say "port $port is already in use by a process this script did not start: set PORT_$label"
        exit 1
    fi
    rm -rf "$data"
    mkdir -p "$data"
    local kafka=()
    if [ -n "${KAFKA_PORT[$label]:-}" ]; then
        kafka=(--kafka-listen "127.0.0.1:${KAFKA_PORT[$label]}")
    fi
    "$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" --admin-listen off "${kafka[@]}" \
        >"$LOGS/serve-$label-$round.log" 2>&1 &
    pid=$!
    echo "$pid $(basename "$bin")" >"$PIDS/$label.pid"
    BROKER[$label]="$pid"
    deadline=$((SECONDS + READY_TIMEOUT_SECS))
    until weir_ready "$label"; do
        if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            say "$label round $round: the broker did not start (see $LOGS/serve-$label-$round.log)"
            tail -n 5 "$LOGS/serve-$label-$round.log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    say "$label round $round: $bin serve on 127.0.0.1:$port (pid $pid)"
    if [ -n "${KAFKA_PORT[$label]:-}" ]; then
        run_kafka_rows "$label" "$round"
    else
        run_grpc_rows "$label" "$round"
    fi
    stop_broker "$label"
    BROKER[$label]=""
    rm -rf "$data"
    # Gives the memory the deleted data held back to the host before the next part, as
    # weir-limits does after each file (see FREED_MEMORY_SETTLE_SECS).
    sleep "$FREED_MEMORY_SETTLE_SECS"
}

# run_grpc_rows LABEL ROUND: rows 1-4 through gRPC with `weir bench`.
run_grpc_rows() {
    local label="$1" round="$2"
    bench "$label" "$round" 1 produce --topic small --record-size "$SMALL_RECORD_BYTES" \
        --count "$SMALL_RECORDS" --acks leader || true
    local large_ok=0
    bench "$label" "$round" 2 produce --topic large --record-size "$LARGE_RECORD_BYTES" \
        --count "$LARGE_RECORDS" --acks leader && large_ok=1
    bench "$label" "$round" 3 produce --topic durable --record-size "$LARGE_RECORD_BYTES" \
        --count "$DURABLE_RECORDS" --acks all --topic-config flush.policy=group-commit || true
    if [ "$large_ok" = 1 ]; then
        # Reads back exactly the records row 2 wrote (nothing to fill first).
        bench "$label" "$round" 4 consume --topic large --record-size "$LARGE_RECORD_BYTES" \
            --count "$LARGE_RECORDS" || true
    fi
}

# run_kafka_rows LABEL ROUND: rows 1-4 again, as rows 8-11, through the Kafka protocol
# (part K, a broker of binary A with its Kafka listener, or KB, of binary B; each of its
# own so that these rows find the page cache as rows 1-4 find it):
# librdkafka producing (acks=1; row 10: acks=all, idempotent, on the broker's default
# flush.policy=group-commit) and consuming partition 0 from its first offset.
run_kafka_rows() {
    local label="$1" round="$2"
    kafka_bench "$label" "$round" 8 produce --stream small --record-bytes "$SMALL_RECORD_BYTES" \
        --records "$SMALL_RECORDS" --durability leader || true
    local large_ok=0
    kafka_bench "$label" "$round" 9 produce --stream large --record-bytes "$LARGE_RECORD_BYTES" \
        --records "$LARGE_RECORDS" --durability leader && large_ok=1
    kafka_bench "$label" "$round" 10 produce --stream durable --record-bytes "$LARGE_RECORD_BYTES" \
        --records "$DURABLE_RECORDS" --durability durable || true
    if [ "$large_ok" = 1 ]; then
        kafka_bench "$label" "$round" 11 consume --stream large --record-bytes "$LARGE_RECORD_BYTES" \
            --records "$LARGE_RECORDS" || true
    fi
}

# --- Main --------------------------------------------------------------------------------

mkdir -p "$WORK" "$PIDS"
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# What a killed earlier run may have left running (its own pid files only).
stop_broker A
stop_broker B
stop_broker K
stop_broker KB
rm -rf "$DATA" "$LOGS"
mkdir -p "$DATA" "$LOGS" "$LIMIT_DIR"
: >"$RESULTS"
rm -f "$WORK/results.txt"
: >"$BENCH_LINES"
: >"$LIMIT_LINES"

if [ "${WEIR_DATA_PATH_BUILD:-1}" = 1 ]; then
    say "building weir-limits (release, nice -n 10)"
    (cd "$ROOT" && nice -n 10 cargo build --release -p weir-benches --bin weir-limits)
    if [ "$KAFKA" = 1 ] && [ -z "${WEIR_PEER_BIN:-}" ]; then
        if ! command -v cmake >/dev/null; then
            say "apt-get install cmake (librdkafka's build)"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >>"$LOGS/apt.log" 2>&1 ||
                { say "installing cmake failed: see $LOGS/apt.log"; exit 1; }
        fi
        say "building weir-peer-bench with librdkafka (release, nice -n 10; minutes the first time)"
        (cd "$ROOT" && nice -n 10 cargo build --release -p weir-peer-bench --features kafka)
    fi
    if [ -z "${WEIR_BIN:-}" ]; then
        say "building weir (release, nice -n 10)"
        (cd "$ROOT" && nice -n 10 cargo build --release -p weir-cli --bin weir)
    fi
else
    say "not building (WEIR_DATA_PATH_BUILD=${WEIR_DATA_PATH_BUILD})"
fi
# Run the built binaries, not `cargo run`: a build lock held by another cargo would stall a
# measurement half way. Where cargo put them: its target directory as cargo resolves it.
if [ -z "${WEIR_BIN:-}" ] || [ -z "${WEIR_LIMITS_BIN:-}" ] ||
    { [ "$KAFKA" = 1 ] && [ -z "${WEIR_PEER_BIN:-}" ]; }; then
    TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
fi
LIMITS_BIN="${WEIR_LIMITS_BIN:-$TARGET_DIR/release/weir-limits}"
declare -A BIN PORT BROKER KAFKA_PORT
BIN[A]="${WEIR_BIN:-$TARGET_DIR/release/weir}"
PORT[A]="$PORT_A"
BROKER[A]=""
LABELS=(A)
if [ -n "${WEIR_BIN_B:-}" ]; then
    BIN[B]="$WEIR_BIN_B"
    PORT[B]="$PORT_B"
    BROKER[B]=""
    LABELS=(A B)
fi
CLIENT_BINS=()
if [ "$KAFKA" = 1 ]; then
    PEER_BIN="${WEIR_PEER_BIN:-$TARGET_DIR/release/weir-peer-bench}"
    CLIENT_BINS+=("$PEER_BIN")
    BIN[K]="${BIN[A]}"
    PORT[K]="$PORT_K"
    KAFKA_PORT[K]="$KAFKA_PORT_K"
    BROKER[K]=""
    LABELS+=(K)
    if [ -n "${BIN[B]:-}" ]; then
        BIN[KB]="${BIN[B]}"
        PORT[KB]="$PORT_KB"
        KAFKA_PORT[KB]="$KAFKA_PORT_KB"
        BROKER[KB]=""
        LABELS+=(KB)
    fi
fi
for b in "$LIMITS_BIN" "${BIN[@]}" "${CLIENT_BINS[@]}"; do
    [ -x "$b" ] || { say "$b is missing or not executable (not built?)"; exit 1; }
done
declare -A DESCRIBES
for label in "${LABELS[@]}"; do
    BIN[$label]="$(realpath "${BIN[$label]}")"
    DESCRIBES[$label]=0
    if "${BIN[$label]}" cluster describe --help 2>/dev/null | grep -q -- '--format'; then
        DESCRIBES[$label]=1
    fi
    say "$label: ${BIN[$label]} ($("${BIN[$label]}" --version))"
done
if [ -n "${BIN[B]:-}" ] && cmp -s "${BIN[A]}" "${BIN[B]}"; then
    say "warning: A and B are the same binary"
fi
say "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -r); data in $WORK ($(df -h --output=source,fstype "$WORK" | tail -n1 | tr -s ' '))"
say "$ROUNDS rounds; rows: $SMALL_RECORDS x 100 B acks leader, $LARGE_RECORDS x 1 KiB acks leader, $DURABLE_RECORDS x 1 KiB durable, consume $LARGE_RECORDS x 1 KiB"

for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        order=(limits "${LABELS[@]}")
    else
        order=()
        for ((i = ${#LABELS[@]} - 1; i >= 0; i--)); do order+=("${LABELS[$i]}"); done
        order+=(limits)
    fi
    for part in "${order[@]}"; do
        if [ "$part" = limits ]; then
            run_limits "$r" || true
        else
            run_weir "$part" "$r"
        fi
    done
done

# --- Report ------------------------------------------------------------------------------

describe() {
    local label="$1"
    printf '%s = %s (%s)' "$label" "${BIN[$label]}" "$("${BIN[$label]}" --version)"
}
{
    echo
    echo "Weir's data path beside this machine's limits: $ROUNDS rounds, medians"
    for label in "${LABELS[@]}"; do echo "  $(describe "$label")"; done
    echo "  machine: $(nproc) cores, $(uname -r); data and limit files in $WORK"
    echo
} | tee "$WORK/results.txt"
python3 - "$RESULTS" "$LOOPBACK_LIMIT" "$SMALL_RECORD_BYTES" "$ROW2_RESIDENT_BYTES" \
    "$ROW3_RESIDENT_BYTES" "${LABELS[@]}" <<'PY' | tee -a "$WORK/results.txt"
import statistics, sys

path, loopback, labels = sys.argv[1], sys.argv[2], sys.argv[6:]
small_bytes, ROW2_RESIDENT, ROW3_RESIDENT = map(int, sys.argv[3:6])
limits = {}    # limit -> round -> bytes/s
floors = {}    # limit -> round -> CPU s per GB (the kernel's floor: weir-limits' floor.rs)
capped = set()  # limits a round stopped by time
rows = {}      # (label, row) -> round -> (rps, mbps, secs, bench_cpu, broker_cpu)
for line in open(path):
    f = line.rstrip("\n").split("\t")
    if f[0] == "L":
        limits.setdefault(f[3], {})[int(f[2])] = float(f[4])
        if f[5] == "true":
            capped.add(f[3])
        if len(f) > 6 and f[6] != "-":
            floors.setdefault(f[3], {})[int(f[2])] = float(f[6])
    elif f[0] == "W":
        rows.setdefault((f[1], int(f[3])), {})[int(f[2])] = tuple(map(float, f[4:9]))

def med(xs):
    return statistics.median(xs) if xs else None

def fmt(x, spec):
    return "-" if x is None else format(x, spec)

def table(header, body, left):
    widths = [max(len(r[c]) for r in [header] + body) for c in range(len(header))]
    for r in [header] + body:
        print("  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())

# Limits.
unit = {"write_fdatasync": ("MB/s", 1e6), "write_only": ("MB/s", 1e6),
        "recv_append_fdatasync": ("MB/s", 1e6), "recv_append_sync_thread": ("MB/s", 1e6),
        "recv_append_direct": ("MB/s", 1e6)}
body = []
for name in ["loopback_tcp", "loopback_tcp_2proc", "write_fdatasync", "write_only",
             "recv_append", "recv_append_fdatasync", "recv_append_sync_thread",
             "recv_append_direct", "sendfile_send",
             "memcpy"]:
    per = limits.get(name, {})
    u, scale = unit.get(name, ("GB/s", 1e9))
    vals = [per[r] / scale for r in sorted(per)]
    spec = ".1f" if scale == 1e6 else ".3f"
    body.append([name + (" *" if name in capped else ""), u, fmt(med(vals), spec),
                 " ".join(format(v, spec) for v in vals)])
print("Limits (weir-limits; 1 GB = 10^9 bytes, 1 MB = 10^6 bytes):")
table(["limit", "unit", "median", "per round"], body, 2)
if capped:
    print("  *: some rounds stopped by the time bound before all their bytes (still a rate)")
print()

# Rows: (row, name, unit, limit). A name indented by spaces is the row above against a
# second limit (no CPU columns): produce must both cross loopback and fill page-cache
# pages with new data, and on a VM the second can be the lower.
ROWS = [
    (1, "1. produce 100 B, acks leader", "rec/s", loopback),
    (1, "   (vs page-cache appends)", "rec/s", "write_only"),
    (2, "2. produce 1 KiB, acks leader", "MB/s", loopback),
    (2, "   (vs page-cache appends)", "MB/s", "write_only"),
    (3, "3. produce 1 KiB, durable", "MB/s", "write_fdatasync"),
    (4, "4. consume 1 KiB", "MB/s", loopback),
    (4, "   (consume vs memcpy)", "MB/s", "memcpy"),
    # Rows 5-7 were the retired binary TCP prototype's (BENCHMARKS.md § Data path).
    # KAFKA=1: rows 1-4 through the Kafka protocol, librdkafka as the client (brokers
    # K and KB, of binaries A and B).
    (8, "8. kafka: produce 100 B, acks=1", "rec/s", loopback),
    (8, "   (vs page-cache appends)", "rec/s", "write_only"),
    (9, "9. kafka: produce 1 KiB, acks=1", "MB/s", loopback),
    (9, "   (vs page-cache appends)", "MB/s", "write_only"),
    (10, "10. kafka: produce 1 KiB, durable", "MB/s", "write_fdatasync"),
    (11, "11. kafka: consume 1 KiB", "MB/s", loopback),
    (11, "   (consume vs memcpy)", "MB/s", "memcpy"),
]
ROWS = [r for r in ROWS if r[0] <= 4 or any(l == r[0] for (_, l) in rows)]
# Parts K and KB have rows 8-11 only; A and B rows 1-4 only.
def has_row(label, row):
    return row >= 8 if label in ("K", "KB") else row <= 4
SMALL_ROWS = (1, 8)
def figure(row, v):
    return v[0] if row in SMALL_ROWS else v[1]
def bytes_per_sec(row, v):
    return v[0] * small_bytes if row in SMALL_ROWS else v[1] * 1e6

header = ["workload", "bin", "median", "unit", "MB/s", "per round", "limit", "limit MB/s",
          "of limit", "bench CPU s", "broker CPU s", "run s"]
body = []
medians = {}
for row, name, u, limit in ROWS:
    for label in labels:
        if not has_row(label, row):
            continue
        per = rows.get((label, row), {})
        rounds = sorted(per)
        figs = [figure(row, per[r]) for r in rounds]
        spec = ",.0f" if row in SMALL_ROWS else ".1f"
        ratios = [bytes_per_sec(row, per[r]) / limits[limit][r]
                  for r in rounds if limits.get(limit, {}).get(r)]
        lim = med(list(limits.get(limit, {}).values()))
        m = med(figs)
        medians[(row, name, label)] = m
        second_limit = name.startswith(" ")
        body.append([
            name, label, fmt(m, spec), u,
            fmt(med([bytes_per_sec(row, per[r]) / 1e6 for r in rounds]), ".1f"),
            " ".join(format(f, spec) for f in figs) or "-",
            limit, fmt(lim and lim / 1e6, ",.0f"),
            fmt(med(ratios) and 100 * med(ratios), ".1f") + "%" if ratios else "-",
            "" if second_limit else fmt(med([per[r][3] for r in rounds]), ".2f"),
            "" if second_limit else fmt(med([per[r][4] for r in rounds]), ".2f"),
            "" if second_limit else fmt(med([per[r][2] for r in rounds]), ".2f"),
        ])
print("Workloads (1 partition, 1 producer or consumer process, loopback):")
table(header, body, 2)
print("""
  of limit: median over rounds of figure / the limit measured in the same round (row 1:
  records/s x %d B against loopback bytes/s). MB/s: 10^6 bytes of record values a second.
  bench CPU s: user+sys of the weir bench process (its whole run, set-up included);
  broker CPU s: the broker's user+sys during that run; run s: the measured seconds.""" % small_bytes)
if "B" in labels:
    print()
    print("B/A of the medians (rows 8-11: KB/K):")
    body = []
    for row, name, u, limit in ROWS:
        if name.startswith(" "):
            continue
        if row >= 5 and "KB" not in labels:
            continue
        a_label, b_label = ("A", "B") if row <= 4 else ("K", "KB")
        a, b = medians.get((row, name, a_label)), medians.get((row, name, b_label))
        spec = ",.0f" if row in SMALL_ROWS else ".1f"
        body.append([name, u, fmt(a, spec), fmt(b, spec), fmt(a and b and b / a, ".3f")])
    table(["workload", "unit", "A", "B", "B/A"], body, 2)

# The broker's CPU per GB against the kernel's floor for the same bytes, per round.
# A durable row has two ways to its floor, syncing each 1 MiB in turn or syncing from a
# second thread beside the appends (as the broker's group commit does); the floor is the
# cheaper of the two in each round (on a VM whose syncs are dear, the second: fewer,
# larger syncs).
DURABLE = ("recv_append_fdatasync", "recv_append_sync_thread")
FLOOR_OF = {1: ("recv_append",), 2: ("recv_append",), 3: DURABLE, 4: ("sendfile_send",),
            8: ("recv_append",), 9: ("recv_append",), 10: DURABLE, 11: ("sendfile_send",)}
# The same floors measured with the page cache holding what the rows before wrote
# (weir-limits --resident-bytes), recorded as LIMIT@BYTES: the row's own state.
def resident(names, n):
    return tuple("%s@%d" % (name, n) for name in names)
SAME_STATE_FLOOR_OF = {2: resident(FLOOR_OF[2], ROW2_RESIDENT), 3: resident(DURABLE, ROW3_RESIDENT),
                       9: resident(FLOOR_OF[9], ROW2_RESIDENT), 10: resident(DURABLE, ROW3_RESIDENT)}

def floor_in(names, round_):
    """The cheapest of `names` measured in `round_`: (CPU s per GB, name), or None."""
    found = [(floors[n][round_], n) for n in names if floors.get(n, {}).get(round_)]
    return min(found) if found else None

body = []
for row, name, u, limit in ROWS:
    if name.startswith(" ") or row not in FLOOR_OF:
        continue
    # The floor in the row's own state first (where measured), then a fresh one.
    against = [(name, SAME_STATE_FLOOR_OF[row])] if row in SAME_STATE_FLOOR_OF else []
    against.append(("   (vs a fresh floor)" if against else name, FLOOR_OF[row]))
    for line_name, names in against:
        floor_rounds = {r: floor_in(names, r) for r in {r for n in names for r in floors.get(n, {})}}
        floor_rounds = {r: f for r, f in floor_rounds.items() if f}
        floor = " / ".join(sorted({n for _, n in floor_rounds.values()})) or names[0]
        for label in labels:
            if not has_row(label, row):
                continue
            per = rows.get((label, row), {})
            rounds = sorted(per)
            # v: (rps, mbps, secs, bench_cpu, broker_cpu); bytes are record values moved.
            broker = [per[r][4] / (bytes_per_sec(row, per[r]) * per[r][2] / 1e9)
                      for r in rounds if bytes_per_sec(row, per[r]) * per[r][2] > 0]
            ratios = [per[r][4] / (bytes_per_sec(row, per[r]) * per[r][2] / 1e9) / floor_rounds[r][0]
                      for r in rounds
                      if bytes_per_sec(row, per[r]) * per[r][2] > 0 and r in floor_rounds]
            body.append([line_name, label, fmt(med(broker), ".3f"), floor,
                         fmt(med([f for f, _ in floor_rounds.values()]), ".3f"),
                         fmt(med(ratios), ".2f") + "x" if ratios else "-",
                         " ".join(format(x, ".2f") for x in ratios) or "-"])
if body and floors:
    print()
    print("Broker CPU per GB against the kernel's floor (user+sys s per 10^9 bytes of record values):")
    table(["workload", "bin", "broker", "floor", "floor s/GB", "x floor", "per round"], body, 2)
    print("""
  broker: the broker's user+sys seconds during the row / GB of record values moved;
  floor: what weir-limits' floor.rs spends doing only the kernel's part for the same
  kind of bytes in the same round (recv_append: receive from loopback and append;
  recv_append_fdatasync: the same, fdatasync each 1 MiB; recv_append_sync_thread: the
  same, the syncs from a second thread beside the appends, a durable row taking the
  cheaper of these two in each round; sendfile_send: sendfile from a cached file);
  LIMIT@BYTES: that floor with BYTES already in the page cache (the record values the
  rows before wrote on the same broker), the row's own state; "vs a fresh floor": the
  same row against the floor with nothing in the page cache first;
  x floor: median over rounds of broker / floor, each round against its own.""")
PY
echo
say "results: $RESULTS (per round), $BENCH_LINES (weir bench lines), $LIMIT_LINES (weir-limits lines), $WORK/results.txt (table); logs: $LOGS"
for n in "${NOISY[@]}"; do say "noisy: $n"; done
if [ "${#FAILED[@]}" -gt 0 ]; then
    say "did not work:"
    for f in "${FAILED[@]}"; do say "  $f"; done
    exit 1
fi
