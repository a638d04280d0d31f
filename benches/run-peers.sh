#!/usr/bin/env bash
# Weir and its peers side by side: builds Weir, installs what is missing (NATS JetStream,
# Redis Streams and, if it installs, RabbitMQ streams, all from Debian; Tansu, a Kafka-wire
# broker in Rust, from crates.io with `cargo install`), starts each server
# on loopback on a port of its own with its data under one work directory, runs every
# workload against it (Weir with `weir bench --report-schema peer`, the peers with
# weir-peer-bench), stops it, and prints one table. Results are JSON lines in one schema.
#
# One server runs at a time (started, measured, stopped), so an idle peer takes no CPU
# from the one being measured on this 2-core machine. Every server this script starts is
# recorded in a pid file and stopped on exit, however the script ends; a rerun first
# stops what a killed earlier run left behind (its own pid files only) and starts from
# empty data directories. Nothing else is stopped.
#
# Usage: benches/run-peers.sh [--quick] [--help]    (environment variables below)

set -euo pipefail
# Brokers started here serve no Kafka clients (not on port 9092, which may be taken).
export WEIR_KAFKA_LISTEN=none
# Nor AMQP clients (not on port 5672, where a RabbitMQ may listen).
export WEIR_AMQP_LISTEN=none

usage() {
    cat <<'EOF'
Usage: benches/run-peers.sh [--quick] [--help]

Builds Weir and weir-peer-bench (release, `nice -n 10 cargo build`; the binaries are
taken from cargo's target directory, CARGO_TARGET_DIR included), installs (apt-get) NATS
JetStream, Redis Streams and RabbitMQ streams, then starts on 127.0.0.1, measures and
stops each, one server at a time: Weir with `weir bench --report-schema peer`, the peers
with weir-peer-bench. Prints one table.

Kafka-wire systems, each driven by weir-peer-bench --peer kafka (librdkafka through the
rdkafka crate, built from source with cmake: the `kafka` feature; cmake is apt-got):
  weir-kafka  Weir's own Kafka listener (`weir serve --kafka-listen`), same broker as
              `weir`, so the two columns are the gRPC and Kafka paths of one build
  tansu       Tansu 0.6.0 (crates.io; `cargo install --locked tansu@0.6.0 --features
              libsql` into benches/.tools/tansu, once), its embedded SQLite storage
              (WAL, synchronous=normal: an ack does not wait for an fsync, so its
              durable column is acks=all without one)

Workloads, per system (Weir: durable = acks all + flush.policy=group-commit):
  1. produce  PRODUCE_SMALL_RECORDS records of SMALL_RECORD_BYTES, acks leader
  2. produce  PRODUCE_LARGE_RECORDS records of LARGE_RECORD_BYTES, acks durable
  3. consume  those PRODUCE_LARGE_RECORDS records back
  4. latency  LARGE_RECORD_BYTES records, acks durable, every system at ONE common
              rate, LATENCY_RATE records/s, for LATENCY_SECS (+ LATENCY_WARMUP_SECS):
              p50 / p99 / p99.9 (and max, ack p99, generator lag) side by side
  5. ceiling  the highest rate each system holds with p99 <= SEARCH_P99_MS (same
              records, acks durable), a row of its own in the table: probes of
              SEARCH_SECS (+ 1 s warm-up) from LATENCY_RATE, doubling while a probe holds
              (up to SEARCH_MAX_RATE), or halving until one holds (down to
              SEARCH_MIN_RATE), then SEARCH_BISECT_STEPS bisections of the gap between
              the highest rate held and the lowest not held. A probe holds when
                - its end-to-end p99 is at most SEARCH_P99_MS,
                - the rate it achieved is within SEARCH_RATE_TOLERANCE_PCT of the rate
                  asked (records sent over the time to the last ack / arrival),
                - the load generator kept to its schedule (lag p99 <= SEARCH_P99_MS),
                - and every record arrived exactly once.
              A probe that fails, or runs past SEARCH_PROBE_TIMEOUT_SECS (it is then
              stopped), did not hold. Time bound: each system's search stops starting
              probes once fewer than SEARCH_PROBE_TIMEOUT_SECS are left of
              SEARCH_BUDGET_SECS, so it takes at most SEARCH_BUDGET_SECS (+ 10 s to stop
              a probe), whatever the system does; with the defaults, a search of at most
              10 probes of 6 s (+ ~2 s set-up each; a probe above the system's capacity
              takes longer) ends in about 1.5-2 min a system. Probe lines go to
              $WEIR_PEER_DIR/probes.jsonl, one `latency-ceiling` line per system to the
              results.

A full default run takes about 10-15 minutes once built (4 systems; apt and build extra).

Apache Iggy (a Rust streaming server with its own binary protocol) is measured beside
Weir's own client by benches/compare-iggy.sh instead: its server is on no registry this
script can install from, so that script builds it from a source checkout you give it,
and drives it with Iggy's own benchmark tool.

Options:
  --quick   a smoke run: 10x fewer records, 5 s of latency, 2 s probes, 1 bisection,
            a search budget of 120 s a system
  --help    this text

Environment (defaults in brackets):
  WEIR_PEERS              systems to run, in column order
                          ["weir weir-kafka tansu nats redis rabbitmq"]
  WEIR_PEER_DIR           work directory: data, logs, pid files [${TMPDIR:-/tmp}/weir-peers]
  WEIR_PEER_RESULTS       JSON lines of results [$WEIR_PEER_DIR/results.jsonl]
  WEIR_PEER_INSTALL       1: apt-get what is missing; 0: never [1]
  WEIR_PEER_BUILD         1: build first; 0: use the binaries already built in the
                          target directory (e.g. one build measured twice) [1]
  PRODUCE_SMALL_RECORDS [2000000]  SMALL_RECORD_BYTES [100]
  PRODUCE_LARGE_RECORDS [500000]   LARGE_RECORD_BYTES [1KiB]
  LATENCY_SECS [20]  LATENCY_WARMUP_SECS [2]  LATENCY_RATE [20000]
  SEARCH                  1: run the ceiling search; 0: skip it [1]
  SEARCH_P99_MS [10]  SEARCH_RATE_TOLERANCE_PCT [5]  SEARCH_SECS [5]
  SEARCH_MAX_RATE [1280000]  SEARCH_MIN_RATE [1000]  SEARCH_BISECT_STEPS [3]
  SEARCH_BUDGET_SECS      most seconds one system's search may take [300]
  SEARCH_PROBE_TIMEOUT_SECS  most seconds one probe may take
                          [3 x (SEARCH_SECS + 1) + 40]
  WEIR_PORT [17492]  WEIR_KAFKA_PORT [17409]  TANSU_PORT [17410]
  NATS_PORT [17422]  REDIS_PORT [17479]
  RABBITMQ_STREAM_PORT [17452]  RABBITMQ_AMQP_PORT [17472]
  RABBITMQ_DIST_PORT [17473]    RABBITMQ_EPMD_PORT [17469]
  READY_TIMEOUT_SECS      how long a server may take to start [120]
  WORKLOAD_TIMEOUT_SECS   how long one workload may take [600]
  QUIET_WAIT_SECS         how long to wait, before each peer, for other work to stop
                          using the CPU (it is checked and reported either way) [0]
  WEIR_PEER_BENCH_ARGS    extra arguments for every peer workload (e.g. "--in-flight 16")
  WEIR_PARTITIONS         partitions of Weir's topics (the peers write one stream) [1]
  WEIR_BATCH_RECORDS      Weir's producer batch, in records of the workload's size, and
  WEIR_IN_FLIGHT          its batches in flight per partition: the peers' window [500, 8]
                          (with idempotence off: the peers do not deduplicate, and 8 is
                          above idempotence's limit of 5)
  WEIR_BENCH_ARGS         extra arguments for every `weir bench` (e.g. "--linger-ms 0")

Examples:
  benches/run-peers.sh
  WEIR_PEERS="weir redis" benches/run-peers.sh --quick
  # Weir's two protocols and Tansu, through the same Kafka client:
  WEIR_PEERS="weir weir-kafka tansu" benches/run-peers.sh
  # Add a row, then report everything together:
  weir bench ... --report-schema peer >> /tmp/weir-peers/results.jsonl
  ${CARGO_TARGET_DIR:-target}/release/weir-peer-bench report /tmp/weir-peers/results.jsonl
EOF
}

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run-peers.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="${WEIR_PEERS:-weir weir-kafka tansu nats redis rabbitmq}"
WORK="${WEIR_PEER_DIR:-${TMPDIR:-/tmp}/weir-peers}"
RESULTS="${WEIR_PEER_RESULTS:-$WORK/results.jsonl}"
INSTALL="${WEIR_PEER_INSTALL:-1}"
if [ "$QUICK" = 1 ]; then
    PRODUCE_SMALL_RECORDS="${PRODUCE_SMALL_RECORDS:-200000}"
    PRODUCE_LARGE_RECORDS="${PRODUCE_LARGE_RECORDS:-50000}"
    LATENCY_SECS="${LATENCY_SECS:-5}"
    LATENCY_WARMUP_SECS="${LATENCY_WARMUP_SECS:-1}"
    SEARCH_SECS="${SEARCH_SECS:-2}"
    SEARCH_BISECT_STEPS="${SEARCH_BISECT_STEPS:-1}"
    SEARCH_BUDGET_SECS="${SEARCH_BUDGET_SECS:-120}"
fi
PRODUCE_SMALL_RECORDS="${PRODUCE_SMALL_RECORDS:-2000000}"
SMALL_RECORD_BYTES="${SMALL_RECORD_BYTES:-100}"
PRODUCE_LARGE_RECORDS="${PRODUCE_LARGE_RECORDS:-500000}"
LARGE_RECORD_BYTES="${LARGE_RECORD_BYTES:-1KiB}"
LATENCY_SECS="${LATENCY_SECS:-20}"
LATENCY_WARMUP_SECS="${LATENCY_WARMUP_SECS:-2}"
LATENCY_RATE="${LATENCY_RATE:-20000}"
SEARCH="${SEARCH:-1}"
SEARCH_P99_MS="${SEARCH_P99_MS:-10}"
SEARCH_SECS="${SEARCH_SECS:-5}"
SEARCH_MAX_RATE="${SEARCH_MAX_RATE:-1280000}"
SEARCH_MIN_RATE="${SEARCH_MIN_RATE:-1000}"
SEARCH_BISECT_STEPS="${SEARCH_BISECT_STEPS:-3}"
SEARCH_RATE_TOLERANCE_PCT="${SEARCH_RATE_TOLERANCE_PCT:-5}"
SEARCH_BUDGET_SECS="${SEARCH_BUDGET_SECS:-300}"
# Warm-up of each probe, seconds (sent, not measured).
PROBE_WARMUP_SECS=1
SEARCH_PROBE_TIMEOUT_SECS="${SEARCH_PROBE_TIMEOUT_SECS:-$((3 * (SEARCH_SECS + PROBE_WARMUP_SECS) + 40))}"
WEIR_PORT="${WEIR_PORT:-17492}"
WEIR_PARTITIONS="${WEIR_PARTITIONS:-1}"
WEIR_BATCH_RECORDS="${WEIR_BATCH_RECORDS:-500}"
WEIR_IN_FLIGHT="${WEIR_IN_FLIGHT:-8}"
WEIR_KAFKA_PORT="${WEIR_KAFKA_PORT:-17409}"
TANSU_PORT="${TANSU_PORT:-17410}"
# Tansu, installed once by `cargo install` (its own target directory, removed after).
TANSU_VERSION=0.6.0
TANSU_ROOT="$ROOT/benches/.tools/tansu"
TANSU_BIN="$TANSU_ROOT/bin/tansu"
NATS_PORT="${NATS_PORT:-17422}"
REDIS_PORT="${REDIS_PORT:-17479}"
RABBITMQ_STREAM_PORT="${RABBITMQ_STREAM_PORT:-17452}"
RABBITMQ_AMQP_PORT="${RABBITMQ_AMQP_PORT:-17472}"
RABBITMQ_DIST_PORT="${RABBITMQ_DIST_PORT:-17473}"
RABBITMQ_EPMD_PORT="${RABBITMQ_EPMD_PORT:-17469}"
READY_TIMEOUT_SECS="${READY_TIMEOUT_SECS:-120}"
WORKLOAD_TIMEOUT_SECS="${WORKLOAD_TIMEOUT_SECS:-600}"
QUIET_WAIT_SECS="${QUIET_WAIT_SECS:-0}"
# Seconds past a workload's own deadline before `timeout` ends it.
BACKSTOP_MARGIN_SECS=30
# Seconds a stopped server gets to exit before it is killed.
STOP_GRACE_SECS=20
# The RabbitMQ node this script runs; `localhost` keeps Erlang distribution on loopback.
RABBITMQ_NODE="weir-bench@localhost"
# Debian's RabbitMQ scripts (the /usr/sbin wrappers switch to the rabbitmq user and its
# home; these run as the caller with everything under $WORK).
RABBITMQ_BIN=/usr/lib/rabbitmq/bin

# A probe's peer bench refuses a deadline shorter than its run + 10 s of draining + 20 s
# of set-up; 5 s more for it to fail on its own before `timeout` stops it.
if [ "$SEARCH_PROBE_TIMEOUT_SECS" -lt $((SEARCH_SECS + PROBE_WARMUP_SECS + 35)) ] ||
    [ "$SEARCH_BUDGET_SECS" -lt "$SEARCH_PROBE_TIMEOUT_SECS" ]; then
    echo "run-peers.sh: SEARCH_PROBE_TIMEOUT_SECS must be at least SEARCH_SECS + 36 and" \
        "at most SEARCH_BUDGET_SECS (see --help)" >&2
    exit 2
fi

PIDS="$WORK/pids"
LOGS="$WORK/logs"
DATA="$WORK/data"
FAILED=()
NOISY=()
# CPU use by others (percent) above which a peer's figures are flagged as noisy.
BUSY_WARN_PERCENT=10

say() { printf '[run-peers %4ss] %s\n' "$SECONDS" "$*" >&2; }

# Stopping, waiting, installing, starting Weir and RabbitMQ: shared with compare-queues.sh.
# shellcheck source=benches/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/servers.sh"

stop_all() {
    stop_recorded weir
    stop_recorded weir-kafka
    stop_recorded tansu
    stop_recorded nats
    stop_recorded redis
    stop_rabbitmq
}

# Tansu from crates.io, once: its locked dependencies, the SQLite (libsql) storage.
install_tansu() {
    [ -x "$TANSU_BIN" ] && return 0
    if [ "$INSTALL" != 1 ]; then
        say "not installing tansu (WEIR_PEER_INSTALL=$INSTALL)"
        return 1
    fi
    say "cargo install tansu@$TANSU_VERSION --features libsql (once; about 15-25 min on 2 cores)"
    CARGO_TARGET_DIR="$TANSU_ROOT/target" nice -n 10 cargo install --locked --quiet \
        --root "$TANSU_ROOT" "tansu@$TANSU_VERSION" --features libsql >>"$LOGS/tansu-install.log" 2>&1 ||
        return 1
    rm -rf "$TANSU_ROOT/target"
}

# cmake for librdkafka's C build (weir-peer-bench's `kafka` feature).
install_cmake() {
    command -v cmake >/dev/null || apt_install cmake
}

# Installs the peers' servers where missing; drops (and reports) a peer that won't install.
install_peers() {
    local wanted=() peer
    if [[ " $PEERS " == *" weir-kafka "* ]] || [[ " $PEERS " == *" tansu "* ]]; then
        install_cmake || say "installing cmake failed: see $LOGS/apt.log"
    fi
    for peer in $PEERS; do
        case "$peer" in
            weir|weir-kafka) ;; # built below
            tansu) install_tansu || say "installing tansu failed: see $LOGS/tansu-install.log" ;;
            nats) command -v nats-server >/dev/null || wanted+=(nats-server) ;;
            redis) command -v redis-server >/dev/null || wanted+=(redis-server) ;;
            rabbitmq) ;;
            *) say "unknown peer '$peer' in WEIR_PEERS (weir, weir-kafka, tansu, nats, redis, rabbitmq)"; exit 2 ;;
        esac
    done
    if [ "${#wanted[@]}" -gt 0 ]; then
        apt_install "${wanted[@]}" || say "installing ${wanted[*]} failed: see $LOGS/apt.log"
    fi
    if [[ " $PEERS " == *" rabbitmq "* ]] && ! [ -x "$RABBITMQ_BIN/rabbitmq-server" ]; then
        apt_install rabbitmq-server || say "installing rabbitmq-server failed: see $LOGS/apt.log"
    fi
    local kept=()
    for peer in $PEERS; do
        case "$peer" in
            weir) kept+=(weir) ;;
            weir-kafka) command -v cmake >/dev/null && kept+=(weir-kafka) || FAILED+=("weir-kafka: cmake is not installed (librdkafka cannot be built)") ;;
            tansu) command -v cmake >/dev/null && [ -x "$TANSU_BIN" ] && kept+=(tansu) || FAILED+=("tansu: not installed, or no cmake for librdkafka (skipped)") ;;
            nats) command -v nats-server >/dev/null && kept+=(nats) || FAILED+=("nats: nats-server is not installed") ;;
            redis) command -v redis-server >/dev/null && kept+=(redis) || FAILED+=("redis: redis-server is not installed") ;;
            rabbitmq) [ -x "$RABBITMQ_BIN/rabbitmq-server" ] && kept+=(rabbitmq) || FAILED+=("rabbitmq: rabbitmq-server is not installed (skipped)") ;;
        esac
    done
    PEERS="${kept[*]:-}"
}

# --- Starting ----------------------------------------------------------------------------

# The same broker as `weir`, with its Kafka listener on WEIR_KAFKA_PORT.
start_weir-kafka() {
    port_free "$WEIR_PORT" WEIR_PORT || return 1
    port_free "$WEIR_KAFKA_PORT" WEIR_KAFKA_PORT || return 1
    mkdir -p "$DATA/weir-kafka"
    "$WEIR_BIN" serve --data-dir "$DATA/weir-kafka" --listen "127.0.0.1:$WEIR_PORT" \
        --kafka-listen "127.0.0.1:$WEIR_KAFKA_PORT" --admin-listen off \
        >"$LOGS/weir-kafka.log" 2>&1 &
    echo $! >"$PIDS/weir-kafka.pid"
    wait_until "weir serve on port $WEIR_PORT" weir_ready &&
        wait_until "weir's Kafka listener on port $WEIR_KAFKA_PORT" port_open "$WEIR_KAFKA_PORT"
}

# Tansu with its SQLite storage, the database file under $DATA/tansu (a path relative to
# the working directory).
start_tansu() {
    port_free "$TANSU_PORT" TANSU_PORT || return 1
    mkdir -p "$DATA/tansu"
    (
        cd "$DATA/tansu"
        exec "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" \
            --storage-engine "sqlite://tansu.db" >"$LOGS/tansu.log" 2>&1
    ) &
    echo $! >"$PIDS/tansu.pid"
    wait_until "tansu on port $TANSU_PORT" port_open "$TANSU_PORT"
}

start_nats() {
    port_free "$NATS_PORT" NATS_PORT || return 1
    mkdir -p "$DATA/nats"
    # JetStream with file storage under $DATA; no monitoring port, no cluster.
    nats-server -js -sd "$DATA/nats" -a 127.0.0.1 -p "$NATS_PORT" \
        >"$LOGS/nats.log" 2>&1 &
    echo $! >"$PIDS/nats.pid"
    wait_until "nats-server on port $NATS_PORT" port_open "$NATS_PORT"
}

redis_ping() {
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
}

start_redis() {
    port_free "$REDIS_PORT" REDIS_PORT || return 1
    mkdir -p "$DATA/redis"
    # AOF on (the bench sets appendfsync per workload), no RDB snapshots, no automatic
    # AOF rewrite mid-measurement (see peer/redis_streams.rs).
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DATA/redis" \
        --appendonly yes --appendfsync everysec --save '' --auto-aof-rewrite-percentage 0 \
        --daemonize no --logfile "$LOGS/redis.log" >/dev/null 2>&1 &
    echo $! >"$PIDS/redis.pid"
    if command -v redis-cli >/dev/null; then
        wait_until "redis-server on port $REDIS_PORT" redis_ping
    else
        wait_until "redis-server on port $REDIS_PORT" port_open "$REDIS_PORT"
    fi
}

peer_port() {
    case "$1" in
        weir) echo "$WEIR_PORT" ;;
        weir-kafka) echo "$WEIR_KAFKA_PORT" ;;
        tansu) echo "$TANSU_PORT" ;;
        nats) echo "$NATS_PORT" ;;
        redis) echo "$REDIS_PORT" ;;
        rabbitmq) echo "$RABBITMQ_STREAM_PORT" ;;
    esac
}

# weir-peer-bench's options naming the system: the Kafka-wire ones are one peer kind.
peer_flags() {
    case "$1" in
        weir-kafka) echo "--peer kafka --system weir-kafka --fsync-before-ack" ;;
        tansu) echo "--peer kafka --system tansu" ;;
        *) echo "--peer $1" ;;
    esac
}

# --- Measuring ---------------------------------------------------------------------------

# cpu_busy_percent
# shellcheck source=benches/cpu.sh
source "$(dirname "${BASH_SOURCE[0]}")/cpu.sh"

# Warns when other work is running: on 2 cores it skews every figure. With
# QUIET_WAIT_SECS, first waits up to that long for it to stop.
check_quiet() {
    local busy deadline=$((SECONDS + QUIET_WAIT_SECS))
    busy="$(cpu_busy_percent)"
    while [ "$busy" -gt "$BUSY_WARN_PERCENT" ] && [ "$SECONDS" -lt "$deadline" ]; do
        say "waiting for the CPU to be quiet before $1 starts (${busy}% busy with other work)"
        sleep 5
        busy="$(cpu_busy_percent)"
    done
    if [ "$busy" -gt "$BUSY_WARN_PERCENT" ]; then
        say "warning: ${busy}% of the CPU is busy with other work before $1 starts: its figures will be noisy"
        NOISY+=("$1: ${busy}% CPU busy with other work at start")
    fi
}

# A workload that failed: noted (and the run goes on), unless it was a probe of the
# search, for which failing is one way of not holding.
bench_failed() {
    if [ -n "${PROBE_TIMEOUT:-}" ]; then
        say "$1: this probe failed, so it did not hold (see $2)"
    else
        FAILED+=("$1 (see $2)")
    fi
    tail -n 3 "$2" >&2 || true
}

# Runs one workload; its JSON line goes to $RESULTS (or $OUT), a failure is noted and the
# run goes on. With PROBE_TIMEOUT set (a probe), that is its deadline.
bench() {
    local peer="$1" workload="$2" deadline backstop
    shift 2
    deadline="$WORKLOAD_TIMEOUT_SECS" backstop="$((WORKLOAD_TIMEOUT_SECS + BACKSTOP_MARGIN_SECS))"
    if [ -n "${PROBE_TIMEOUT:-}" ]; then
        deadline="$((PROBE_TIMEOUT - 5))" backstop="$PROBE_TIMEOUT"
    fi
    say "$peer: $workload $*"
    # The bench stops itself at --timeout-secs; `timeout` is the backstop should it hang.
    # shellcheck disable=SC2086,SC2046 # WEIR_PEER_BENCH_ARGS and peer_flags are lists of words.
    if ! run_child timeout --kill-after=10 "$backstop" "$BIN" "$workload" $(peer_flags "$peer") --port "$(peer_port "$peer")" \
        --timeout-secs "$deadline" --format json "$@" ${WEIR_PEER_BENCH_ARGS:-} \
        >>"${OUT:-$RESULTS}" 2>>"$LOGS/bench-$peer.log"; then
        bench_failed "$peer: $workload $*" "$LOGS/bench-$peer.log"
        return 1
    fi
}

# Bytes in a size as `weir bench --record-size` takes it: 100, 1KiB, 1MiB, 1kB, 1MB.
size_bytes() {
    case "$1" in
        *KiB) echo $((${1%KiB} * 1024)) ;;
        *MiB) echo $((${1%MiB} * 1024 * 1024)) ;;
        *kB) echo $((${1%kB} * 1000)) ;;
        *MB) echo $((${1%MB} * 1000000)) ;;
        *B) echo $((${1%B})) ;;
        *) echo $(($1)) ;;
    esac
}

# Runs one `weir bench` scenario against the broker on WEIR_PORT; its weir-peer-bench/1
# line goes to $RESULTS (or $OUT), a failure is noted and the run goes on. weir bench
# fails by itself when records stop arriving; `timeout` bounds the whole workload (a
# probe: PROBE_TIMEOUT).
bench_weir() {
    local scenario="$1" size="$2"
    shift 2
    say "weir: $scenario --record-size $size $*"
    # shellcheck disable=SC2086 # WEIR_BENCH_ARGS is a list of words.
    if ! run_child timeout --kill-after=10 "${PROBE_TIMEOUT:-$WORKLOAD_TIMEOUT_SECS}" "$WEIR_BIN" bench "$scenario" \
        --brokers "127.0.0.1:$WEIR_PORT" --partitions "$WEIR_PARTITIONS" --record-size "$size" \
        --batch-bytes "$((WEIR_BATCH_RECORDS * $(size_bytes "$size")))" --max-in-flight "$WEIR_IN_FLIGHT" \
        --idempotence false --report-schema peer "$@" ${WEIR_BENCH_ARGS:-} \
        >>"${OUT:-$RESULTS}" 2>>"$LOGS/bench-weir.log"; then
        bench_failed "weir: $scenario $size $*" "$LOGS/bench-weir.log"
        return 1
    fi
}

# The same four workloads as the peers: durable is acks=all on a flush.policy=group-commit
# topic (the ack waits for the fsync covering the records); each workload has its topic.
measure_weir() {
    local durable=(--acks all --topic-config flush.policy=group-commit)
    bench_weir produce "$SMALL_RECORD_BYTES" --topic peer-produce-leader \
        --count "$PRODUCE_SMALL_RECORDS" --acks leader || true
    if bench_weir produce "$LARGE_RECORD_BYTES" --topic peer-produce-durable \
        --count "$PRODUCE_LARGE_RECORDS" "${durable[@]}"; then
        # Reads back the records just produced (the topic holds exactly those).
        bench_weir consume "$LARGE_RECORD_BYTES" --topic peer-produce-durable \
            --count "$PRODUCE_LARGE_RECORDS" || true
    fi
    # Every system at the same rate, whatever its produce rows gave.
    bench_weir e2e "$LARGE_RECORD_BYTES" --topic peer-latency "${durable[@]}" \
        --rate "$LATENCY_RATE" --duration "${LATENCY_SECS}s" \
        --warmup "${LATENCY_WARMUP_SECS}s" || true
}

# One latency probe of PEER at RATE, ended after PROBE_TIMEOUT seconds; its line goes to
# $PROBES. Weir's probes each get a topic of their own, so none reads another's records.
probe() {
    local peer="$1" rate="$2"
    if [ "$peer" = weir ]; then
        OUT="$PROBES" bench_weir e2e "$LARGE_RECORD_BYTES" --topic "peer-probe-$rate" \
            --acks all --topic-config flush.policy=group-commit --rate "$rate" \
            --duration "${SEARCH_SECS}s" --warmup "${PROBE_WARMUP_SECS}s"
    else
        OUT="$PROBES" bench "$peer" latency --record-bytes "$LARGE_RECORD_BYTES" \
            --durability durable --rate "$rate" --duration-secs "$SEARCH_SECS" \
            --warmup-secs "$PROBE_WARMUP_SECS"
    fi
}

# Whether a probe's line ($1) held: prints why or why not; the status says.
line_held() {
    python3 - "$1" "$SEARCH_P99_MS" "$SEARCH_RATE_TOLERANCE_PCT" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
l = r["latency"]
bound, tolerance = float(sys.argv[2]), float(sys.argv[3])
lag = l.get("send_lag_p99_ms") or 0.0
achieved = r["records_per_sec"] / l["rate_per_sec"] if l["rate_per_sec"] else 0.0
def ms(x):
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"
misses = []
if l["p99_ms"] > bound:
    misses.append(f"p99 {ms(l['p99_ms'])} ms > {bound:g}")
if achieved < 1 - tolerance / 100:
    misses.append(f"achieved {100 * achieved:.1f}% of the rate < {100 - tolerance:g}%")
if lag > bound:
    misses.append(f"generator lag p99 {ms(lag)} ms > {bound:g}")
if l["received"] < l["sent"] or l.get("duplicates", 0) > 0:
    misses.append(f"{l['sent'] - l['received']} lost, {l.get('duplicates', 0)} duplicated")
verdict = "did not hold: " + ", ".join(misses) if misses else "held"
print(f"p50 {ms(l['p50_ms'])} / p99 {ms(l['p99_ms'])} / p99.9 {ms(l['p999_ms'])} ms, "
      f"achieved {100 * achieved:.1f}%, lag p99 {ms(lag)} ms: {verdict}")
sys.exit(1 if misses else 0)
PY
}

# Probes PEER at RATE unless the search's budget is too short for another probe.
# Status 0: it held (its line in HELD_LINE); 1: it did not; 2: no probe, budget spent.
try_rate() {
    local peer="$1" rate="$2" before line verdict status=0
    if [ $((SEARCH_DEADLINE - SECONDS)) -lt "$SEARCH_PROBE_TIMEOUT_SECS" ]; then
        say "$peer: the search's budget (SEARCH_BUDGET_SECS=$SEARCH_BUDGET_SECS) is spent"
        return 2
    fi
    PROBES_RUN=$((PROBES_RUN + 1))
    before="$(wc -l <"$PROBES")"
    PROBE_TIMEOUT="$SEARCH_PROBE_TIMEOUT_SECS" probe "$peer" "$rate" || status=1
    # Only this probe's own line counts (a probe stopped by its deadline writes none).
    if [ "$(wc -l <"$PROBES")" -gt "$before" ]; then
        line="$(tail -n1 "$PROBES")"
    else
        line=""
    fi
    if [ -z "$line" ]; then
        say "$peer: probe at $rate records/s: no result, did not hold"
        return 1
    fi
    verdict="$(line_held "$line")" || status=1
    say "$peer: probe at $rate records/s: $verdict"
    [ "$status" = 0 ] && HELD_LINE="$line"
    return "$status"
}

# The highest rate PEER holds with p99 <= SEARCH_P99_MS: a `latency-ceiling` line in
# $RESULTS, built from the probe that held at it (see --help for the search).
search() {
    local peer="$1" good=0 bad=0 rate="$LATENCY_RATE" status spent=0 started="$SECONDS"
    SEARCH_DEADLINE=$((SECONDS + SEARCH_BUDGET_SECS)) PROBES_RUN=0 HELD_LINE=""
    say "$peer: searching the highest rate with p99 <= ${SEARCH_P99_MS} ms (at most ${SEARCH_BUDGET_SECS}s)"
    # Up: double while probes hold.
    while [ "$rate" -le "$SEARCH_MAX_RATE" ]; do
        status=0
        try_rate "$peer" "$rate" || status=$?
        case "$status" in
            0) good="$rate" rate=$((rate * 2)) ;;
            1) bad="$rate"; break ;;
            *) spent=1; break ;;
        esac
    done
    # Down: not even the start held; halve until one holds.
    rate=$((bad / 2))
    while [ "$good" -eq 0 ] && [ "$spent" = 0 ] && [ "$rate" -ge "$SEARCH_MIN_RATE" ]; do
        status=0
        try_rate "$peer" "$rate" || status=$?
        case "$status" in
            0) good="$rate" ;;
            1) bad="$rate" rate=$((rate / 2)) ;;
            *) spent=1 ;;
        esac
    done
    # Between the highest rate held and the lowest not held.
    local step
    for step in $(seq "$SEARCH_BISECT_STEPS"); do
        [ "$good" -gt 0 ] && [ "$bad" -gt 0 ] && [ "$spent" = 0 ] || break
        rate=$(((good + bad) / 2))
        [ "$rate" -gt "$good" ] || break
        status=0
        try_rate "$peer" "$rate" || status=$?
        case "$status" in
            0) good="$rate" ;;
            1) bad="$rate" ;;
            *) spent=1 ;;
        esac
    done
    local summary="$peer: $good records/s held"
    if [ "$good" -eq 0 ]; then
        summary="$peer: no probe held (lowest tried: ${bad:-none} records/s)"
    elif [ "$bad" -eq 0 ]; then
        summary+=" (every probe held, up to SEARCH_MAX_RATE)"
    else
        summary+=", $bad did not"
    fi
    summary+="; $PROBES_RUN probes in $((SECONDS - started)) s"
    [ "$spent" = 0 ] || summary+=", budget spent"
    echo "$summary" >>"$SEARCHED"
    say "$summary"
    # Who the system is (server, client, acks), if no probe held: its latency line.
    local template="$HELD_LINE"
    if [ -z "$template" ]; then
        template="$(grep -hF "\"system\":\"$peer\"" "$PROBES" "$RESULTS" |
            grep -F '"workload":"latency"' | tail -n1 || true)"
    fi
    if [ "$PROBES_RUN" -eq 0 ] || [ -z "$template" ]; then
        FAILED+=("$peer: the search has no result (no probe line)")
        return 1
    fi
    python3 - "$template" "$([ -n "$HELD_LINE" ] && echo 1 || echo 0)" "$good" "$bad" \
        "$SEARCH_P99_MS" "$SEARCH_RATE_TOLERANCE_PCT" "$SEARCH_SECS" "$PROBE_WARMUP_SECS" \
        "$PROBES_RUN" "$((SECONDS - started))" "$spent" "$LATENCY_RATE" "$SEARCH_MAX_RATE" \
        "$SEARCH_MIN_RATE" "$SEARCH_BISECT_STEPS" "$SEARCH_BUDGET_SECS" >>"$RESULTS" <<'PY'
import json, sys
a = sys.argv[1:]
line, held = json.loads(a[0]), a[1] == "1"
good, bad = int(a[2]), int(a[3])
settings = {
    "p99_bound_ms": float(a[4]),
    "rate_tolerance_pct": float(a[5]),
    "probe_secs": float(a[6]),
    "probe_warmup_secs": float(a[7]),
    "probes": int(a[8]),
    "search_elapsed_secs": int(a[9]),
    "budget_spent": a[10] == "1",
    "search_start_rate": int(a[11]),
    "search_max_rate": int(a[12]),
    "search_min_rate": int(a[13]),
    "bisect_steps": int(a[14]),
    "search_budget_secs": int(a[15]),
}
if held:
    settings["probe_settings"] = line.get("settings", {})
if bad > 0:
    settings["lowest_rate_not_held"] = bad
line.update(
    workload="latency-ceiling",
    records=line["records"] if held else 0,
    seconds=float(a[9]),
    records_per_sec=float(good),
    mb_per_sec=good * line["record_bytes"] / 1e6,
    latency=line["latency"] if held else None,
    settings=settings,
)
print(json.dumps(line, separators=(",", ":")))
PY
}

measure() {
    local peer="$1"
    if [ "$peer" = weir ]; then
        measure_weir
        return
    fi
    bench "$peer" produce --records "$PRODUCE_SMALL_RECORDS" --record-bytes "$SMALL_RECORD_BYTES" \
        --durability leader || true
    if bench "$peer" produce --records "$PRODUCE_LARGE_RECORDS" --record-bytes "$LARGE_RECORD_BYTES" \
        --durability durable; then
        bench "$peer" consume --records "$PRODUCE_LARGE_RECORDS" --record-bytes "$LARGE_RECORD_BYTES" || true
    fi
    # Every system at the same rate, whatever its produce rows gave.
    bench "$peer" latency --record-bytes "$LARGE_RECORD_BYTES" --durability durable \
        --rate "$LATENCY_RATE" \
        --duration-secs "$LATENCY_SECS" --warmup-secs "$LATENCY_WARMUP_SECS" || true
}

# --- Main --------------------------------------------------------------------------------

mkdir -p "$WORK" "$PIDS"
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# What an earlier run that was killed may have left running.
stop_all
rm -rf "$DATA" "$LOGS"
mkdir -p "$DATA" "$LOGS"
: >"$RESULTS"
PROBES="$WORK/probes.jsonl"
SEARCHED="$WORK/searched.tsv"
: >"$PROBES"
: >"$SEARCHED"

install_peers
if [ -z "$PEERS" ]; then
    say "no peer to measure"
    exit 1
fi

PACKAGES=(-p weir-peer-bench)
if [[ " $PEERS " == *" weir "* ]] || [[ " $PEERS " == *" weir-kafka "* ]]; then
    PACKAGES+=(-p weir-cli)
fi
if [[ " $PEERS " == *" weir-kafka "* ]] || [[ " $PEERS " == *" tansu "* ]]; then
    PACKAGES+=(--features weir-peer-bench/kafka)
fi
if [[ " $PEERS " == *" rabbitmq "* ]]; then
    PACKAGES+=(--features weir-peer-bench/rabbitmq)
fi
if [ "${WEIR_PEER_BUILD:-1}" = 1 ]; then
    say "building ${PACKAGES[*]} (release, nice -n 10)"
    (cd "$ROOT" && nice -n 10 cargo build --release "${PACKAGES[@]}")
else
    say "not building (WEIR_PEER_BUILD=${WEIR_PEER_BUILD})"
fi
# Run the built binaries, not `cargo run`: a build lock held by another cargo would stall a
# measurement half way. Where cargo put them: its target directory as cargo itself
# resolves it (CARGO_TARGET_DIR, relative or not, or a config's build.target-dir).
TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release/weir-peer-bench"
WEIR_BIN="$TARGET_DIR/release/weir"
for b in "$BIN" "$WEIR_BIN"; do
    if [ "$b" = "$WEIR_BIN" ] && [[ " $PEERS " != *" weir "* ]] && [[ " $PEERS " != *" weir-kafka "* ]]; then continue; fi
    [ -x "$b" ] || { say "$b is missing (not built?)"; exit 1; }
done
say "binaries: $BIN, $WEIR_BIN"

say "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -r); data in $DATA ($(df -h --output=source,fstype "$WORK" | tail -n1 | tr -s ' '))"
for peer in $PEERS; do
    check_quiet "$peer"
    if "start_$peer"; then
        measure "$peer"
        if [ "$SEARCH" = 1 ]; then
            search "$peer" || true
        fi
    else
        FAILED+=("$peer: the server did not start (see $LOGS)")
    fi
    case "$peer" in
        weir|weir-kafka) stop_weir "$peer" ;;
        rabbitmq) stop_rabbitmq ;;
        *) stop_recorded "$peer" ;;
    esac
    # Gigabytes of records nobody will read again; logs and results stay.
    rm -rf "${DATA:?}/$peer"
done

echo
"$BIN" report "$RESULTS" | tee "$WORK/results.txt"
if [ -s "$SEARCHED" ]; then
    {
        echo
        printf 'Ceiling search (p99 <= %s ms, achieved rate within %s%%, %s s + %s s probes, from %s records/s):\n' \
            "$SEARCH_P99_MS" "$SEARCH_RATE_TOLERANCE_PCT" "$SEARCH_SECS" "$PROBE_WARMUP_SECS" "$LATENCY_RATE"
        sed 's/^/  /' "$SEARCHED"
    } | tee -a "$WORK/results.txt"
fi
echo
say "results: $RESULTS (JSON lines), $WORK/results.txt (table), $PROBES (the search's probes); logs: $LOGS"
for n in "${NOISY[@]}"; do say "noisy: $n"; done
if [ "${#FAILED[@]}" -gt 0 ]; then
    say "did not work:"
    for f in "${FAILED[@]}"; do say "  $f"; done
    exit 1
fi
