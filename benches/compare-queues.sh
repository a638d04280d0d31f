#!/usr/bin/env bash
# Work queues side by side: Weir's share groups (`weir bench queue`), the same queues through
# Weir's AMQP listener and RabbitMQ's classic queues (both by `weir-peer-bench queue`, AMQP
# 0-9-1 through lapin), the same record count and sizes, the same consumer counts, the same
# durability; and what a share group costs against a plain consumer group reading the same
# records. One server runs at a time (started, measured, stopped), so the one measured has
# the machine to itself.
#
# Every server this script starts is recorded in a pid file and stopped on exit, however
# the script ends; a rerun first stops what a killed earlier run left behind (its own pid
# files only) and starts from empty data directories. Nothing else is stopped.
#
# Usage: benches/compare-queues.sh [--quick] [--help]    (environment variables below)

set -euo pipefail
# Brokers started here serve no Kafka clients (not on port 9092, which may be taken).
export WEIR_KAFKA_LISTEN=none
# Nor AMQP clients on port 5672, where a RabbitMQ may listen (the AMQP leg's broker listens
# on WEIR_AMQP_PORT).
export WEIR_AMQP_LISTEN=none

usage() {
    cat <<'EOF'
Usage: benches/compare-queues.sh [--quick] [--help]

Builds `weir` and `weir-peer-bench --features rabbitmq-amqp` (release, `nice -n 10 cargo
build`, one package at a time), installs rabbitmq-server (apt-get) if it is missing, then:

For each size of RECORD_SIZES, three legs, each on a fresh server:

Weir (`weir serve`, one node, data under WORK; durable = acks all on a
flush.policy=group-commit topic of 1 partition):
  1. produce  QUEUE_RECORDS records of the size with `weir bench produce`, acks all,
              batches of 500 records, 8 in flight (a window of 4,000 records)
  2. queue    `weir bench queue` on those records, for each of QUEUE_CONSUMERS: a fresh
              share group takes every record with that many consumers, each record
              ACCEPTed on its own; the clock stops when every ACCEPT is durable
  3. group    `weir bench group-consume` on the same records: a plain consumer group of
              1 member, then of PLAIN_MEMBERS (offsets, no per-record acknowledgement)
  The broker's CPU time (/proc) is read around each step: CPU per record.
Weir's AMQP listener (`weir serve` with `--amqp-listen` on WEIR_AMQP_PORT; a queue is a
1-partition topic under the default flush.policy=group-commit and its share group), and
RabbitMQ (Debian's rabbitmq-server, one node on loopback ports of its own, data under
WORK), each by `weir-peer-bench queue` (lapin), for each of QUEUE_CONSUMERS:
  1. produce  the durable classic queue is declared empty; RABBITMQ_PRODUCERS producers
              publish QUEUE_RECORDS persistent messages (delivery mode 2) of the size
              with publisher confirms, 4,000 unconfirmed each at most (a confirm of a
              persistent message comes once it is on disk)
  2. queue    that many consumers, basic.qos prefetch PREFETCH, one manual basic.ack per
              message; the clock stops when every message is acknowledged and every
              consumer's channel closed; the queue must then be empty
  The server's CPU time (/proc) is read around all of it.
Prints one table (`weir-peer-bench report`: systems `weir`, `weir-amqp`, `rabbitmq`), then
per size the ratios: Weir's AMQP listener over RabbitMQ (the same client, lapin) on
publishing and per consumer count, Weir's AMQP path against its own share-group path on
the same records, Weir's share group over RabbitMQ, the share group against the plain
consumer group, and each server's CPU per record (what the machine's other load does not
change much).

Results are JSON lines in the weir-peer-bench/1 schema ($WORK/results.jsonl; Weir's queue
and group runs converted to it), the table in $WORK/results.txt. A full run takes about
10-15 minutes once built (two sizes); every workload is bounded by WORKLOAD_TIMEOUT_SECS.

Options:
  --quick   a smoke run: 100,000 records instead of 1,000,000
  --help    this text

Environment (defaults in brackets):
  WORK                  work directory: data, logs, pid files, results
                        [${TMPDIR:-/tmp}/weir-queues]
  QUEUE_RECORDS         records per run [1000000; --quick: 100000]
  RECORD_SIZES          bytes of each record's value, one pass per size, comma-separated
                        [100,1024]
  QUEUE_CONSUMERS       consumer counts, comma-separated [4,16]
  PLAIN_MEMBERS         members of the plain consumer group's second run [4]
  PREFETCH              the AMQP legs' basic.qos prefetch per consumer [100]
  RABBITMQ_PRODUCERS    the AMQP legs' producers (each its own connection) [1]
  WEIR_PEER_INSTALL     1: apt-get rabbitmq-server if missing; 0: never [1]
  WEIR_PEER_BUILD       1: build first; 0: use the binaries already built [1]
  WEIR_PORT [17592]  WEIR_AMQP_PORT [17582]  RABBITMQ_AMQP_PORT [17572]  RABBITMQ_STREAM_PORT [17552]
  RABBITMQ_DIST_PORT [17573]  RABBITMQ_EPMD_PORT [17569]
                        (not run-peers.sh's ports: the two can run at once)
  READY_TIMEOUT_SECS    how long a server may take to start [120]
  WORKLOAD_TIMEOUT_SECS how long one workload may take [600]

Example:
  benches/compare-queues.sh --quick
  QUEUE_RECORDS=2000000 RECORD_SIZES=1024 benches/compare-queues.sh
EOF
}

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare-queues.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${WORK:-${TMPDIR:-/tmp}/weir-queues}"
RESULTS="$WORK/results.jsonl"
INSTALL="${WEIR_PEER_INSTALL:-1}"
if [ "$QUICK" = 1 ]; then
    QUEUE_RECORDS="${QUEUE_RECORDS:-100000}"
fi
QUEUE_RECORDS="${QUEUE_RECORDS:-1000000}"
RECORD_SIZES="${RECORD_SIZES:-100,1024}"
QUEUE_CONSUMERS="${QUEUE_CONSUMERS:-4,16}"
PLAIN_MEMBERS="${PLAIN_MEMBERS:-4}"
PREFETCH="${PREFETCH:-100}"
RABBITMQ_PRODUCERS="${RABBITMQ_PRODUCERS:-1}"
WEIR_PORT="${WEIR_PORT:-17592}"
WEIR_AMQP_PORT="${WEIR_AMQP_PORT:-17582}"
RABBITMQ_AMQP_PORT="${RABBITMQ_AMQP_PORT:-17572}"
RABBITMQ_STREAM_PORT="${RABBITMQ_STREAM_PORT:-17552}"
RABBITMQ_DIST_PORT="${RABBITMQ_DIST_PORT:-17573}"
RABBITMQ_EPMD_PORT="${RABBITMQ_EPMD_PORT:-17569}"
READY_TIMEOUT_SECS="${READY_TIMEOUT_SECS:-120}"
WORKLOAD_TIMEOUT_SECS="${WORKLOAD_TIMEOUT_SECS:-600}"
# Weir's producer window, the same as RabbitMQ's: batches of this many records, this many
# batches in flight (4,000 records unacknowledged).
WEIR_BATCH_RECORDS=500
WEIR_IN_FLIGHT=8
RABBITMQ_IN_FLIGHT=$((WEIR_BATCH_RECORDS * WEIR_IN_FLIGHT))
# Seconds a stopped server gets to exit before it is killed.
STOP_GRACE_SECS=20
# Seconds past a workload's own deadline before `timeout` ends it.
BACKSTOP_MARGIN_SECS=30
# The RabbitMQ node this script runs (not run-peers.sh's); `localhost` keeps Erlang
# distribution on loopback.
RABBITMQ_NODE="weir-queues@localhost"
RABBITMQ_BIN=/usr/lib/rabbitmq/bin
# The topic Weir's runs share (produced once, read by every run).
TOPIC=weir-queue

PIDS="$WORK/pids"
# Every log, under a directory per size and leg (LOGS: the one in use).
LOGS_ROOT="$WORK/logs"
LOGS="$LOGS_ROOT"
DATA="$WORK/data"
FAILED=()

say() { printf '[compare-queues %4ss] %s\n' "$SECONDS" "$*" >&2; }

# Stopping, waiting, installing, starting Weir and RabbitMQ: shared with run-peers.sh.
# shellcheck source=benches/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/servers.sh"

stop_all() {
    stop_recorded weir
    stop_rabbitmq
}

# CPU seconds (user + system) the process $1 has used so far.
cpu_secs() {
    local ticks
    ticks="$(awk '{print $14 + $15}' "/proc/$1/stat")"
    python3 -c "import sys; print(int(sys.argv[1]) / $(getconf CLK_TCK))" "$ticks"
}

# Runs one workload, its stdout appended to $2, its stderr to $LOGS/$1.log; a failure is
# noted and the run goes on. `timeout` bounds it.
run_workload() {
    local name="$1" out="$2"
    shift 2
    say "$name: $*"
    if ! run_child timeout --kill-after=10 "$((WORKLOAD_TIMEOUT_SECS + BACKSTOP_MARGIN_SECS))" "$@" \
        >>"$out" 2>>"$LOGS/$name.log"; then
        FAILED+=("$name (see $LOGS/$name.log)")
        tail -n 3 "$LOGS/$name.log" >&2 || true
        return 1
    fi
}

# Weir: produce, the share group's runs, the plain group's runs, each with the broker's CPU
# time around it (in $SIZE_WORK/weir-cpu.tsv).
measure_weir() {
    local pid brokers="127.0.0.1:$WEIR_PORT" before
    pid="$(cat "$PIDS/weir.pid")"
    : >"$SIZE_WORK/weir-cpu.tsv"
    before="$(cpu_secs "$pid")"
    run_workload weir-produce "$RESULTS" "$WEIR_BIN" bench produce --brokers "$brokers" \
        --topic "$TOPIC" --partitions 1 --topic-config flush.policy=group-commit \
        --record-size "$RECORD_BYTES" --count "$QUEUE_RECORDS" --acks all \
        --batch-bytes "$((WEIR_BATCH_RECORDS * RECORD_BYTES))" --max-in-flight "$WEIR_IN_FLIGHT" \
        --idempotence false --report-schema peer || return 1
    echo "produce $before $(cpu_secs "$pid")" >>"$SIZE_WORK/weir-cpu.tsv"
    # The topic holds exactly the records just produced: both benches read them all.
    before="$(cpu_secs "$pid")"
    run_workload weir-queue "$SIZE_WORK/weir-queue.json" "$WEIR_BIN" bench queue --brokers "$brokers" \
        --topic "$TOPIC" --count "$QUEUE_RECORDS" --consumers "$QUEUE_CONSUMERS" --format json || true
    echo "queue $before $(cpu_secs "$pid")" >>"$SIZE_WORK/weir-cpu.tsv"
    before="$(cpu_secs "$pid")"
    run_workload weir-group "$SIZE_WORK/weir-group.json" "$WEIR_BIN" bench group-consume --brokers "$brokers" \
        --topic "$TOPIC" --count "$QUEUE_RECORDS" --members "$PLAIN_MEMBERS" --format json || true
    echo "group $before $(cpu_secs "$pid")" >>"$SIZE_WORK/weir-cpu.tsv"
}

# Weir's AMQP listener, by the client RabbitMQ is measured with: every consumer count's
# fill and consumption, with the broker's CPU time around them all (in
# $SIZE_WORK/weir-amqp-cpu.tsv).
measure_weir_amqp() {
    local pid before
    pid="$(cat "$PIDS/weir.pid")"
    before="$(cpu_secs "$pid")"
    run_workload weir-amqp-queue "$RESULTS" "$PEER_BIN" queue --broker weir --port "$WEIR_AMQP_PORT" \
        --records "$QUEUE_RECORDS" --record-bytes "$RECORD_BYTES" --consumers "$QUEUE_CONSUMERS" \
        --prefetch "$PREFETCH" --producers "$RABBITMQ_PRODUCERS" --in-flight "$RABBITMQ_IN_FLIGHT" \
        --server "$("$WEIR_BIN" --version)" --timeout-secs "$WORKLOAD_TIMEOUT_SECS" --format json || true
    echo "all $before $(cpu_secs "$pid")" >"$SIZE_WORK/weir-amqp-cpu.tsv"
}

# RabbitMQ: every consumer count's fill and consumption, with the server's CPU time around
# them all (in $SIZE_WORK/rabbitmq-cpu.tsv).
measure_rabbitmq() {
    local version pid before
    version="$(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo unknown)"
    pid="$(cat "$PIDS/rabbitmq.pid")"
    before="$(cpu_secs "$pid")"
    run_workload rabbitmq-queue "$RESULTS" "$PEER_BIN" queue --port "$RABBITMQ_AMQP_PORT" \
        --records "$QUEUE_RECORDS" --record-bytes "$RECORD_BYTES" --consumers "$QUEUE_CONSUMERS" \
        --prefetch "$PREFETCH" --producers "$RABBITMQ_PRODUCERS" --in-flight "$RABBITMQ_IN_FLIGHT" \
        --server "rabbitmq-server $version" --timeout-secs "$WORKLOAD_TIMEOUT_SECS" --format json || true
    echo "all $before $(cpu_secs "$pid")" >"$SIZE_WORK/rabbitmq-cpu.tsv"
}

# Weir's queue and group reports as weir-peer-bench/1 lines (their server and client as the
# produce line names them), each with the broker's CPU per record of its step.
convert_weir() {
    python3 - "$RESULTS" "$SIZE_WORK/weir-queue.json" "$SIZE_WORK/weir-group.json" "$SIZE_WORK/weir-cpu.tsv" \
        "$RECORD_BYTES" >>"$RESULTS" <<'PY'
import json, sys
results, queue_file, group_file, cpu_file, record_bytes = sys.argv[1:]
produce = [json.loads(l) for l in open(results)
           if '"system":"weir"' in l and f'"record_bytes":{record_bytes},' in l]
if not produce:
    sys.exit(0)
base = produce[-1]
cpu = {}
for line in open(cpu_file):
    step, before, after = line.split()
    cpu[step] = float(after) - float(before)
print(f"[compare-queues] Weir broker CPU: " + ", ".join(f"{k} {v:.2f} s" for k, v in cpu.items()),
      file=sys.stderr)
def last_json(path):
    try:
        lines = [l for l in open(path) if l.startswith("{")]
    except FileNotFoundError:
        return None
    return json.loads(lines[-1]) if lines else None
def line(workload, run, consumers, acks, extra, cpu_step):
    total = sum(r["records"] + r.get("duplicates", 0) for r in all_runs[cpu_step])
    out = {
        "schema": "weir-peer-bench/1", "system": "weir", "server": base["server"],
        "client": base["client"], "workload": workload, "record_bytes": int(record_bytes),
        "records": run["records"], "acks": acks, "seconds": run["elapsed_secs"],
        "records_per_sec": run["records_per_sec"], "mb_per_sec": run["mb_per_sec"],
        "settings": dict(consumers=consumers, duplicates=run.get("duplicates", 0), **extra),
    }
    if cpu_step in cpu and total:
        # The step's broker CPU over every record its runs took (each run reads them all).
        out["settings"]["broker_cpu_us_per_record_step_mean"] = 1e6 * cpu[cpu_step] / total
    print(json.dumps(out, separators=(",", ":")))
queue, group = last_json(queue_file), last_json(group_file)
all_runs = {"queue": queue["runs"] if queue else [], "group": group["runs"] if group else []}
for run in all_runs["queue"]:
    line("queue", run, run["consumers"], {
        "durability": "durable", "fsync_before_ack": True,
        "meaning": "share group, explicit mode, one ACCEPT per record; the clock stops when "
                   "every ACCEPT is durable in __share_group_state (acks=all, fsynced)"},
        {"ack": "ACCEPT per record", "group_id": run["group_id"],
         "records_per_consumer": run["records_per_consumer"]}, "queue")
for run in all_runs["group"]:
    line("consume", run, run["members"], None,
         {"group": "plain consumer group (offsets, no per-record acknowledgement)",
          "group_id": run["group_id"]}, "group")
PY
}

# The ratios under the table, for one size: Weir's AMQP listener over RabbitMQ (the same
# client), Weir's AMQP path against its share-group path, the share group over RabbitMQ and
# against the plain group, and each server's CPU per record.
ratios() {
    python3 - "$RESULTS" "$SIZE_WORK" "$QUEUE_RECORDS" "$RECORD_BYTES" <<'PY'
import json, sys
results, size_work, records, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(l) for l in open(results) if l.startswith("{")]
rows = [r for r in rows if r["record_bytes"] == size]
def cpu(name):
    try:
        return {s: float(b) - float(a) for s, a, b in
                (l.split() for l in open(f"{size_work}/{name}-cpu.tsv"))}
    except FileNotFoundError:
        return {}
weir_cpu, amqp_cpu, rabbit_cpu = cpu("weir"), cpu("weir-amqp"), cpu("rabbitmq")
def get(system, workload, consumers=None):
    for r in reversed(rows):
        if r["system"] == system and r["workload"] == workload and (
                consumers is None or r["settings"].get("consumers") == consumers):
            return r
    return None
def rate(r):
    return f"{r['records_per_sec']:,.0f}" if r else "-"
def over(a, b):
    return a["records_per_sec"] / b["records_per_sec"]
out = [f"--- {size} B records"]
p_a, p_w, p_r = get("weir-amqp", "produce"), get("weir", "produce"), get("rabbitmq", "produce")
if p_a and p_r:
    out.append(f"publish, confirms (lapin): weir-amqp {rate(p_a)} / rabbitmq {rate(p_r)} rec/s = "
               f"{over(p_a, p_r):.2f}x (goal 5x)")
if p_w and p_r:
    out.append(f"produce, acks durable: weir {rate(p_w)} (weir bench) / rabbitmq {rate(p_r)} "
               f"rec/s = {over(p_w, p_r):.2f}x")
consumer_counts = sorted({r["settings"]["consumers"] for r in rows if r["workload"] == "queue"})
for c in consumer_counts:
    a, w, q = get("weir-amqp", "queue", c), get("weir", "queue", c), get("rabbitmq", "queue", c)
    if a and q:
        out.append(f"queue, {c} consumers, one basic.ack each (lapin): weir-amqp {rate(a)} / "
                   f"rabbitmq {rate(q)} rec/s = {over(a, q):.2f}x (goal 5x)")
    if a and w:
        out.append(f"queue, {c} consumers: weir-amqp {rate(a)} / share group {rate(w)} (weir "
                   f"bench) rec/s = {over(a, w):.2f} of the share-group path (goal 0.8)")
    if w and q:
        out.append(f"queue, {c} consumers, one ack per record: weir share group {rate(w)} / "
                   f"rabbitmq {rate(q)} rec/s = {over(w, q):.2f}x")
# The share group against the plain group of as many members (the table has the others).
for c in sorted({r["settings"]["consumers"] for r in rows if r["workload"] == "consume"}):
    plain, share = get("weir", "consume", c), get("weir", "queue", c)
    if plain and share:
        line = (f"weir, {c} consumers: plain consumer group {rate(plain)} / share group "
                f"{rate(share)} rec/s, the share group {over(plain, share):.1f}x slower")
        cpu_p = plain["settings"].get("broker_cpu_us_per_record_step_mean")
        cpu_s = share["settings"].get("broker_cpu_us_per_record_step_mean")
        if cpu_p and cpu_s:
            line += (f"; broker CPU per record (mean of each bench's runs) {cpu_s:.2f} us "
                     f"(share) vs {cpu_p:.2f} us (plain) = {cpu_s / cpu_p:.1f}x")
        out.append(line)
# The server's CPU per record produced once and taken once through the queue: Weir's
# produce, plus its queue runs' share; the AMQP legs fill the queue again for each run.
runs = {sys_: sum(1 for r in rows if r["system"] == sys_ and r["workload"] == "queue")
        for sys_ in ("weir", "weir-amqp", "rabbitmq")}
per_record = {}
if {"produce", "queue"} <= weir_cpu.keys() and runs["weir"]:
    per_record["weir"] = 1e6 * (weir_cpu["produce"] / records
                                + weir_cpu["queue"] / (records * runs["weir"]))
for name, table in (("weir-amqp", amqp_cpu), ("rabbitmq", rabbit_cpu)):
    if "all" in table and runs[name]:
        per_record[name] = 1e6 * table["all"] / (records * runs[name])
if per_record:
    line = ("server CPU per record, published and taken through the queue once: " +
            ", ".join(f"{k} {v:.1f} us" for k, v in per_record.items()))
    if "rabbitmq" in per_record and "weir-amqp" in per_record:
        line += (f" (a BEAM scheduler may spin before it sleeps: counted here); rabbitmq / "
                 f"weir-amqp = {per_record['rabbitmq'] / per_record['weir-amqp']:.1f}x")
    out.append(line)
print("\n".join(out))
PY
}

# --- Main --------------------------------------------------------------------------------

mkdir -p "$WORK" "$PIDS"
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# What an earlier run that was killed may have left running.
stop_all
rm -rf "$DATA" "$LOGS_ROOT" "$WORK"/bytes-*
mkdir -p "$DATA" "$LOGS"
: >"$RESULTS"

if ! [ -x "$RABBITMQ_BIN/rabbitmq-server" ]; then
    apt_install rabbitmq-server || say "installing rabbitmq-server failed: see $LOGS/apt.log"
fi
if [ "${WEIR_PEER_BUILD:-1}" = 1 ]; then
    # One package per build: each keeps its own feature set, so a rerun rebuilds nothing.
    say "building weir and weir-peer-bench --features rabbitmq-amqp (release, nice -n 10)"
    (cd "$ROOT" && CARGO_INCREMENTAL=0 nice -n 10 cargo build --release -p weir-cli &&
        CARGO_INCREMENTAL=0 nice -n 10 cargo build --release -p weir-peer-bench --features rabbitmq-amqp)
fi
# Run the built binaries, not `cargo run`: from cargo's target directory as it resolves it.
TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
PEER_BIN="$TARGET_DIR/release/weir-peer-bench"
WEIR_BIN="$TARGET_DIR/release/weir"
for b in "$PEER_BIN" "$WEIR_BIN"; do
    [ -x "$b" ] || { say "$b is missing (not built?)"; exit 1; }
done

say "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg); data in $DATA"
# One size's three legs, one server at a time, each from empty data; its per-step files in
# $SIZE_WORK, its logs in $LOGS_ROOT/<size>B-<leg>.
measure_size() {
    SIZE_WORK="$WORK/bytes-$RECORD_BYTES"
    mkdir -p "$SIZE_WORK"
    say "$QUEUE_RECORDS records of $RECORD_BYTES B, consumers $QUEUE_CONSUMERS"

    LOGS="$LOGS_ROOT/${RECORD_BYTES}B-weir"
    mkdir -p "$LOGS"
    if start_weir; then
        measure_weir || true
    else
        FAILED+=("weir: the broker did not start (see $LOGS/weir.log)")
    fi
    stop_weir weir
    convert_weir || FAILED+=("weir: its reports could not be converted")
    rm -rf "${DATA:?}/weir"

    LOGS="$LOGS_ROOT/${RECORD_BYTES}B-weir-amqp"
    mkdir -p "$LOGS"
    if WEIR_AMQP_LISTEN="127.0.0.1:$WEIR_AMQP_PORT" start_weir; then
        measure_weir_amqp
    else
        FAILED+=("weir-amqp: the broker did not start (see $LOGS/weir.log)")
    fi
    stop_weir weir
    rm -rf "${DATA:?}/weir"

    LOGS="$LOGS_ROOT/${RECORD_BYTES}B-rabbitmq"
    mkdir -p "$LOGS"
    if [ -x "$RABBITMQ_BIN/rabbitmq-server" ] && start_rabbitmq; then
        measure_rabbitmq
    else
        FAILED+=("rabbitmq: not installed, or the server did not start (see $LOGS)")
    fi
    stop_rabbitmq
    rm -rf "${DATA:?}/rabbitmq"
}

IFS=',' read -r -a SIZES <<<"$RECORD_SIZES"
for RECORD_BYTES in "${SIZES[@]}"; do
    measure_size
done

echo
{
    "$PEER_BIN" report "$RESULTS"
    for RECORD_BYTES in "${SIZES[@]}"; do
        echo
        SIZE_WORK="$WORK/bytes-$RECORD_BYTES"
        ratios
    done
} | tee "$WORK/results.txt"
echo
say "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
say "results: $RESULTS (JSON lines), $WORK/results.txt (table); logs: $LOGS_ROOT"
if [ "${#FAILED[@]}" -gt 0 ]; then
    say "did not work:"
    for f in "${FAILED[@]}"; do say "  $f"; done
    exit 1
fi
