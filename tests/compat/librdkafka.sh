#!/usr/bin/env bash
# librdkafka's own test suite against one Weir broker: a compatibility check the project
# runs by hand (it takes tens of minutes, so it is not part of `cargo test`).
#
# Fetches librdkafka 2.10.0's source as the rdkafka-sys 4.9.0+2.10.0 crate that Cargo.lock
# pins (static.crates.io, checked against the lock's sha256), builds librdkafka and its
# tests/test-runner in a cache directory (apt-getting only the -dev packages missing),
# starts one `weir serve` on free loopback ports with a fresh data directory, and runs
# every test of the suite that applies to a single plaintext broker, one test-runner
# process a test, each bounded by TEST_TIMEOUT_SECS. What is not run, and why, is in
# tests/compat/librdkafka-skips.tsv and in the runner's own reasons (summary below).
#
# Lives under tests/ rather than benches/: it checks behaviour (pass or fail), it measures
# nothing.
#
# Usage: tests/compat/librdkafka.sh [--help] [TEST_NUMBER...]    (environment below)

set -euo pipefail

usage() {
    cat <<'EOF'
Usage: tests/compat/librdkafka.sh [--help] [TEST_NUMBER...]

Runs librdkafka 2.10.0's test suite (tests/test-runner) against one Weir broker.
With TEST_NUMBERs (e.g. 0001 0081), runs only those; else every applicable test.

Four passes, as librdkafka's scenarios expect (tests/scenarios/*.json):
  default       a broker with --auto-create-topics true --num-partitions 4: every test
                of the default scenario that one broker can serve
  noautocreate  a fresh broker with --auto-create-topics false --num-partitions 4: the
                tests of the noautocreate scenario (0045's topic-removal sub-tests)
  cluster       three fresh brokers (one cluster, each a controller voter, racks r1 to
                r3), topics created on use: the tests that need three brokers
                (CLUSTER_TESTS: replication factor 3)
  cluster-noautocreate  three fresh brokers without topic creation on use: the
                noautocreate scenario's three-broker tests (CLUSTER_NOAUTOCREATE_TESTS)
Each test runs as `test-runner -L -V $TEST_KAFKA_VERSION [-Q] NUMBER` (-L: no broker-less
or mock-cluster tests), in its own process, killed after TEST_TIMEOUT_SECS.

Not run (reasons in the summary): tests in tests/compat/librdkafka-skips.tsv (manual,
mock-cluster, Kafka's own tools), the runner's local-only tests (TEST_F_LOCAL) and known
issues (TEST_F_KNOWN_ISSUE), and tests that skip themselves on a plaintext broker
without SASL (the runner gives their reason).

Writes, in $WORK: summary.txt (passed / failed / skipped, each with its name and, for a
failure or skip, the reason), results.tsv (test, state, seconds, reason, pass) and
logs/<pass>-<number>.log (each test's full output). Prints summary.txt at the end.
Exits 0 when no test failed, 1 when one did, 2 on a set-up error.

Time: building librdkafka and the runner takes about 10 minutes the first time on 2
cores (cached after). A run of every applicable test took 702 s with JOBS=3 on a 2-core
machine against a debug build, with 0113 cut at TEST_TIMEOUT_SECS=300 (alone, it passed
in 637 s); JOBS=1 takes longer.

Environment (defaults in brackets):
  WEIR_BIN            the weir binary [built: cargo build --release -p weir-cli]
  WORK                work directory [<repo>/target/compat/run]
  CACHE               librdkafka's source and build [<repo>/target/compat]
  TEST_KAFKA_VERSION  the broker version the runner assumes (-V) [4.0.0]
  QUICK               1: the runner's quick mode (-Q, as librdkafka's CI runs it): fewer
                      messages, and sub-tests not marked quick are left out while the
                      test still reports PASSED; 0: every sub-test, full sizes [0]
  TEST_TIMEOUT_SECS   most seconds one test may take before it is killed (failed): 0113,
                      the longest, ran its 36 sub-tests for 637 s alone [1200]
  TEST_TIMEOUT_MULTIPLIER  librdkafka's test.timeout.multiplier (its own per-step
                      timeouts) [1]
  JOBS                tests run at once, each its own process (librdkafka's CI runs 3) [3]
EOF
}

NUMBERS=()
for arg in "$@"; do
    case "$arg" in
        --help|-h) usage; exit 0 ;;
        [0-9][0-9][0-9][0-9]) NUMBERS+=("$arg") ;;
        *) echo "librdkafka.sh: unknown argument '$arg' (a test number is 4 digits; see --help)" >&2; exit 2 ;;
    esac
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${CACHE:-$ROOT/target/compat}"
WORK="${WORK:-$CACHE/run}"
TEST_KAFKA_VERSION="${TEST_KAFKA_VERSION:-4.0.0}"
QUICK="${QUICK:-0}"
TEST_TIMEOUT_SECS="${TEST_TIMEOUT_SECS:-1200}"
TEST_TIMEOUT_MULTIPLIER="${TEST_TIMEOUT_MULTIPLIER:-1}"
JOBS="${JOBS:-3}"
SKIPS_FILE="$HERE/librdkafka-skips.tsv"

# The pinned source: the crate Cargo.lock names, with the lock's own checksum.
CRATE_VERSION="4.9.0+2.10.0"
CRATE_SHA256="5230dca48bc354d718269f3e4353280e188b610f7af7e2fcf54b7a79d5802872"
CRATE_URL="https://static.crates.io/crates/rdkafka-sys/rdkafka-sys-$CRATE_VERSION.crate"
SRC="$CACHE/rdkafka-sys-$CRATE_VERSION/librdkafka"
# Debian packages librdkafka's configure finds its codecs and TLS in (lz4 and snappy are
# built in); gssapi and curl (OIDC) are configured out, as no test here uses them.
DEV_PACKAGES=(build-essential pkg-config libssl-dev zlib1g-dev libzstd-dev)
READY_TIMEOUT_SECS=60
STOP_GRACE_SECS=10
# The tests that need three brokers, by scenario: replication factor 3 (0103's
# transactions, 0107's topic deletion, 0111's delayed creation).
CLUSTER_TESTS=(0103)
CLUSTER_NOAUTOCREATE_TESTS=(0107 0111)

case "$QUICK" in 0|1) ;; *) echo "librdkafka.sh: QUICK must be 0 or 1" >&2; exit 2 ;; esac
for n in TEST_TIMEOUT_SECS JOBS; do
    if ! [[ "${!n}" =~ ^[1-9][0-9]*$ ]]; then
        echo "librdkafka.sh: $n must be a positive whole number, not '${!n}'" >&2
        exit 2
    fi
done

say() { printf '[librdkafka %4ss] %s\n' "$SECONDS" "$*" >&2; }

LOGS="$WORK/logs"
DATA="$WORK/data"
PIDS="$WORK/pids"
RESULTS="$WORK/results.tsv"
SUMMARY="$WORK/summary.txt"

# --- Stopping: only what this script started, by the pids it recorded ---------------------

# Whether pid $1 is alive (not a zombie) and still runs the program named $2.
pid_is() {
    local state comm
    read -r state comm < <(ps -o stat=,comm= -p "$1" 2>/dev/null || true)
    [ -n "${state:-}" ] && [[ "$state" != Z* ]] && [ "${comm:-}" = "${2:0:15}" ]
}

# Stops what $PIDS/$1.pid ("pid program-name") records: TERM, KILL after STOP_GRACE_SECS.
stop_recorded() {
    local file="$PIDS/$1.pid" pid name deadline
    [ -f "$file" ] || return 0
    read -r pid name <"$file" || true
    if [ -n "${pid:-}" ] && [ -n "${name:-}" ] && pid_is "$pid" "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + STOP_GRACE_SECS))
        while pid_is "$pid" "$name" && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.1
        done
        if pid_is "$pid" "$name"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

stop_tests() {
    local f
    for f in "$PIDS"/test-*.pid; do
        [ -e "$f" ] || continue
        f="${f##*/}"
        stop_recorded "${f%.pid}"
    done
}

on_exit() {
    local status=$?
    trap - EXIT INT TERM
    stop_tests
    stop_brokers
    rm -rf "${DATA:?}"
    exit "$status"
}

# Stops every broker this script recorded.
stop_brokers() {
    local f
    for f in "$PIDS"/broker*.pid; do
        [ -e "$f" ] || continue
        f="${f##*/}"
        stop_recorded "${f%.pid}"
    done
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A loopback port nothing listens on (checked, not reserved: the broker binds it at once).
free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 40000))
        if ! port_open "$port" && [ "$port" != "${GRPC_PORT:-}" ]; then
            echo "$port"
            return 0
        fi
    done
    say "no free loopback port found"
    exit 2
}

# --- Fetch and build ---------------------------------------------------------------------

fetch_source() {
    local crate="$CACHE/rdkafka-sys-$CRATE_VERSION.crate"
    mkdir -p "$CACHE"
    if [ ! -f "$SRC/tests/test.c" ]; then
        if [ ! -f "$crate" ] || ! echo "$CRATE_SHA256  $crate" | sha256sum -c --status; then
            say "fetching $CRATE_URL"
            curl -sSfL --retry 3 -o "$crate.part" "$CRATE_URL"
            mv "$crate.part" "$crate"
        fi
        if ! echo "$CRATE_SHA256  $crate" | sha256sum -c --status; then
            say "checksum mismatch for $crate (want $CRATE_SHA256, as Cargo.lock): removed"
            rm -f "$crate"
            exit 2
        fi
        tar -xzf "$crate" -C "$CACHE" "rdkafka-sys-$CRATE_VERSION/librdkafka"
    fi
}

install_missing_packages() {
    local missing=() p
    for p in "${DEV_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "apt-get install ${missing[*]} (librdkafka's build)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" \
            >>"$LOGS/apt.log" 2>&1 || { say "apt-get failed: see $LOGS/apt.log"; exit 2; }
    fi
}

build_runner() {
    if [ ! -f "$SRC/Makefile.config" ]; then
        say "configuring librdkafka"
        (cd "$SRC" && ./configure --disable-gssapi --disable-curl --disable-lz4-ext) \
            >"$LOGS/configure.log" 2>&1 || { say "configure failed: see $LOGS/configure.log"; exit 2; }
    fi
    say "building librdkafka and tests/test-runner (nice -n 10; minutes the first time)"
    (cd "$SRC" && nice -n 10 make -j"$(nproc)" libs && nice -n 10 make -C tests -j"$(nproc)" test-runner) \
        >"$LOGS/build.log" 2>&1 || { say "build failed: see $LOGS/build.log"; exit 2; }
}

# --- The broker ---------------------------------------------------------------------------

# start_brokers AUTO_CREATE NODES: NODES fresh `weir serve` processes on free ports (with
# more than one, a cluster whose nodes are all controller voters, node N in rack rN);
# sets BOOTSTRAP to their Kafka listeners.
start_brokers() {
    local auto_create="$1" nodes="$2" n pid deadline voters=() kafka=() grpc=() extra
    rm -rf "$DATA"
    GRPC_PORT=""
    for n in $(seq 1 "$nodes"); do
        GRPC_PORT="$(free_port)"
        grpc+=("$GRPC_PORT")
        kafka+=("$(free_port)")
        voters+=("$n@127.0.0.1:$GRPC_PORT")
    done
    for n in $(seq 1 "$nodes"); do
        extra=()
        if [ "$nodes" -gt 1 ]; then
            extra=(--node-id "$n" --controller-voters "$(IFS=,; echo "${voters[*]}")" --rack "r$n")
        fi
        mkdir -p "$DATA/node-$n"
        "$WEIR_BIN" serve --data-dir "$DATA/node-$n" --listen "127.0.0.1:${grpc[n-1]}" \
            --admin-listen off --kafka-listen "127.0.0.1:${kafka[n-1]}" --amqp-listen none \
            --num-partitions 4 --auto-create-topics "$auto_create" "${extra[@]}" \
            >>"$LOGS/serve-$PASS-$n.log" 2>&1 &
        pid=$!
        echo "$pid $(basename "$WEIR_BIN")" >"$PIDS/broker-$n.pid"
    done
    deadline=$((SECONDS + READY_TIMEOUT_SECS))
    # Ready when every Kafka port answers and every broker is unfenced (topics can be
    # placed on all of them).
    until all_ports_open "${kafka[@]}" &&
        [ "$("$WEIR_BIN" cluster describe --brokers "127.0.0.1:${grpc[0]}" --format json 2>/dev/null |
            grep -o '"fenced":false' | wc -l)" -ge "$nodes" ]; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "the brokers did not start (see $LOGS/serve-$PASS-*.log)"
            tail -n 5 "$LOGS/serve-$PASS-1.log" >&2 || true
            exit 2
        fi
        for n in $(seq 1 "$nodes"); do
            read -r pid _ <"$PIDS/broker-$n.pid"
            if ! kill -0 "$pid" 2>/dev/null; then
                say "broker $n exited at start (see $LOGS/serve-$PASS-$n.log)"
                tail -n 5 "$LOGS/serve-$PASS-$n.log" >&2 || true
                exit 2
            fi
        done
        sleep 0.2
    done
    BOOTSTRAP="$(printf '127.0.0.1:%s,' "${kafka[@]}")"
    BOOTSTRAP="${BOOTSTRAP%,}"
    say "pass $PASS: $nodes weir serve on $BOOTSTRAP (Kafka), --auto-create-topics $auto_create"
}

all_ports_open() {
    local port
    for port in "$@"; do
        port_open "$port" || return 1
    done
}

# --- Running tests -----------------------------------------------------------------------

# The row of one test of the runner's summary, without colours:
# "| 0001_multiobj | PASSED | 1.234s | reason".
summary_rows() {
    sed 's/\x1b\[[0-9;]*m//g' "$1" | awk -F'|' '
        /^\| *[0-9][0-9][0-9][0-9]_[^ ]* *\| *(PASSED|FAILED|SKIPPED|RUNNING|DNS) *\|/ {
            name = $2; state = $3; secs = $4; reason = $5
            for (i = 6; i <= NF; i++) reason = reason "|" $i
            gsub(/^ +| +$/, "", name); gsub(/^ +| +$/, "", state)
            gsub(/^ +|s? +$/, "", secs); gsub(/^ +| +$/, "", reason)
            gsub(/\t/, " ", reason)
            print name "\t" state "\t" secs "\t" reason
        }'
}

# run_one NUMBER: one test-runner process for test NUMBER; appends its rows to RESULTS.
run_one() {
    local number="$1" log="$LOGS/$PASS-$1.log" status=0 rows
    local args=(-L -V "$TEST_KAFKA_VERSION" -s "$SCENARIO")
    [ "$QUICK" = 1 ] && args+=(-Q)
    (
        cd "$SRC/tests"
        exec timeout -k 10 "$TEST_TIMEOUT_SECS" ./test-runner "${args[@]}" "$number"
    ) >"$log" 2>&1 &
    local pid=$!
    echo "$pid timeout" >"$PIDS/test-$number.pid"
    wait "$pid" || status=$?
    rm -f "$PIDS/test-$number.pid"
    rows="$(summary_rows "$log")"
    if [ "$status" = 124 ]; then
        # Killed by timeout(1): its summary was never printed; the test failed by timing out.
        # (Status 137 is the runner's own timeout: it SIGKILLs itself after logging which.)
        rows="$(printf '%s\tFAILED\t%s\tkilled after TEST_TIMEOUT_SECS=%s (see %s)' \
            "$number" "$TEST_TIMEOUT_SECS" "$TEST_TIMEOUT_SECS" "${log#"$WORK"/}")"
    elif [ -z "$rows" ]; then
        # The runner aborts (status 134) when a failed test leaves client threads behind,
        # before its summary: the failure is the first "### Test ... failed" of the log.
        rows="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | awk -v n="$number" -v st="$status" -v logf="${log#"$WORK"/}" '
            /^### Test "/ && !/"<MAIN>"/ && !found {
                split($0, q, "\""); name = q[2]; sub(/ .*/, "", name)
                getline why; gsub(/\t/, " ", why); found = 1
            }
            END {
                if (found) printf "%s\tFAILED\t-\t%s\n", name, why
                else printf "%s\tFAILED\t-\ttest-runner exited with status %s and no summary (see %s)\n", n, st, logf
            }')"
    fi
    # A test that failed part way shows "NAME (SUBTEST)" in its row: the test's name.
    rows="$(printf '%s\n' "$rows" | awk -F'\t' -v OFS='\t' '{ sub(/ .*/, "", $1); print }')"
    # One append of whole lines: tests running at once do not interleave their rows.
    printf '%s\n' "$rows" | awk -v pass="$PASS" '{ print $0 "\t" pass }' >>"$RESULTS"
    local name state reason line
    while IFS=$'\t' read -r name state _ reason; do
        [ "$state" = SKIPPED ] && [ -z "$reason" ] && continue
        line="$PASS $name: $state"
        [ -n "$reason" ] && [ "$state" != PASSED ] && line="$line (${reason:0:160})"
        say "$line"
    done <<<"$rows"
}

# run_pass NUMBER...: runs the tests, JOBS at a time. Waits on the tests' own pids only:
# the broker is a child of this shell too, and a bare `wait` would wait for it.
run_pass() {
    local number pid alive
    local running=()
    for number in "$@"; do
        while [ "${#running[@]}" -ge "$JOBS" ]; do
            wait -n "${running[@]}" || true
            alive=()
            for pid in "${running[@]}"; do
                kill -0 "$pid" 2>/dev/null && alive+=("$pid")
            done
            running=("${alive[@]}")
        done
        run_one "$number" &
        running+=($!)
    done
    for pid in "${running[@]}"; do
        wait "$pid" || true
    done
}

# The test numbers of the suite (test.c's table), in order, without duplicates.
all_numbers() {
    sed -n '/^struct test tests\[\] = {/,/^};/p' "$SRC/tests/test.c" |
        grep -o '_TEST([0-9][0-9][0-9][0-9]_' | grep -o '[0-9][0-9][0-9][0-9]' | awk '!seen[$0]++'
}

# Test numbers of the noautocreate scenario.
noautocreate_numbers() {
    sed -n '/^struct test tests\[\] = {/,/^};/p' "$SRC/tests/test.c" | tr '\n' ' ' |
        sed 's/_TEST(/\n/g' | grep '\.scenario *= *"[^"]*noautocreate' |
        grep -o '^[0-9][0-9][0-9][0-9]' | awk '!seen[$0]++'
}

skip_reason() {
    awk -F'\t' -v n="$1" '$1 == n { print $2; exit }' "$SKIPS_FILE"
}

# One row a test name over both passes: a test the default pass passed over silently (it
# belongs to the other scenario) takes its row from the pass that ran it.
merge_results() {
    awk -F'\t' '
        {
            rank = ($2 == "SKIPPED" && $4 == "") ? 0 : ($2 == "SKIPPED" ? 1 : 2)
            if (!($1 in best) || rank > best[$1]) { best[$1] = rank; row[$1] = $0 }
        }
        END { for (n in row) print row[n] }' "$RESULTS" | sort
}

write_summary() {
    local merged passed failed skipped
    merged="$(merge_results)"
    passed="$(printf '%s\n' "$merged" | awk -F'\t' '$2 == "PASSED"' | grep -c . || true)"
    failed="$(printf '%s\n' "$merged" | awk -F'\t' '$2 != "PASSED" && $2 != "SKIPPED"' | grep -c . || true)"
    skipped="$(printf '%s\n' "$merged" | awk -F'\t' '$2 == "SKIPPED"' | grep -c . || true)"
    {
        echo "librdkafka $CRATE_VERSION test suite against $WEIR_BIN"
        echo "runner: test-runner -L -V $TEST_KAFKA_VERSION$([ "$QUICK" = 1 ] && echo ' -Q'), TEST_TIMEOUT_SECS=$TEST_TIMEOUT_SECS, JOBS=$JOBS; $(date -u '+%Y-%m-%d %H:%M UTC'); ${SECONDS}s"
        echo "passed $passed, failed $failed, skipped $skipped"
        echo
        echo "FAILED:"
        printf '%s\n' "$merged" | awk -F'\t' '$2 != "PASSED" && $2 != "SKIPPED" { printf "  %s [%s, %ss]: %s\n", $1, $5, $3, $4 }'
        echo "SKIPPED:"
        printf '%s\n' "$merged" | awk -F'\t' '$2 == "SKIPPED" { r = $4; if (r == "") r = "(not in this scenario)"; printf "  %s: %s\n", $1, r }'
        echo "PASSED:"
        printf '%s\n' "$merged" | awk -F'\t' '$2 == "PASSED" { printf "  %s [%s, %ss]\n", $1, $5, $3 }'
    } >"$SUMMARY"
    cat "$SUMMARY"
    [ "$failed" = 0 ]
}

# --- Main --------------------------------------------------------------------------------

mkdir -p "$WORK" "$PIDS"
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# What a killed earlier run left running (its own pid files only).
stop_tests
stop_brokers
rm -rf "$LOGS" "$DATA"
mkdir -p "$LOGS"
: >"$RESULTS"

fetch_source
install_missing_packages
build_runner

if [ -z "${WEIR_BIN:-}" ]; then
    say "building weir (release, nice -n 10)"
    (cd "$ROOT" && nice -n 10 cargo build --release -p weir-cli --bin weir)
    target_dir="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    WEIR_BIN="$target_dir/release/weir"
fi
[ -x "$WEIR_BIN" ] || { say "no weir binary at $WEIR_BIN"; exit 2; }

if [ "${#NUMBERS[@]}" -eq 0 ]; then
    mapfile -t NUMBERS < <(all_numbers)
fi
mapfile -t NOAUTO < <(noautocreate_numbers)

RUN=()
for n in "${NUMBERS[@]}"; do
    reason="$(skip_reason "$n")"
    if [ -n "$reason" ]; then
        printf '%s\tSKIPPED\t0\t%s (tests/compat/librdkafka-skips.tsv)\t-\n' "$n" "$reason" >>"$RESULTS"
    else
        RUN+=("$n")
    fi
done

# Whether test $1 is among the rest of the arguments.
among() {
    local n="$1"
    shift
    [[ " $* " == *" $n "* ]]
}

for PASS in default noautocreate cluster cluster-noautocreate; do
    pass_numbers=()
    for n in "${RUN[@]}"; do
        case "$PASS" in
            default) among "$n" "${CLUSTER_TESTS[@]}" "${CLUSTER_NOAUTOCREATE_TESTS[@]}" && continue ;;
            noautocreate) among "$n" "${NOAUTO[@]}" && ! among "$n" "${CLUSTER_NOAUTOCREATE_TESTS[@]}" || continue ;;
            cluster) among "$n" "${CLUSTER_TESTS[@]}" || continue ;;
            cluster-noautocreate) among "$n" "${CLUSTER_NOAUTOCREATE_TESTS[@]}" || continue ;;
        esac
        # A test left out of this pass only (NUMBER@PASS in the skip table).
        reason="$(skip_reason "$n@$PASS")"
        if [ -n "$reason" ]; then
            printf '%s\tSKIPPED\t0\t%s (tests/compat/librdkafka-skips.tsv)\t%s\n' \
                "$n" "$reason" "$PASS" >>"$RESULTS"
            continue
        fi
        pass_numbers+=("$n")
    done
    [ "${#pass_numbers[@]}" -gt 0 ] || continue
    # The runner's scenario (-s): the tests it runs and the topic defaults they expect.
    SCENARIO=default auto_create=true
    [[ "$PASS" == *noautocreate ]] && SCENARIO=noautocreate auto_create=false
    nodes=1
    [[ "$PASS" == cluster* ]] && nodes=3
    start_brokers "$auto_create" "$nodes"
    # librdkafka's test configuration: the brokers, and its per-step timeout multiplier.
    printf 'bootstrap.servers=%s\ntest.timeout.multiplier=%s\n' \
        "$BOOTSTRAP" "$TEST_TIMEOUT_MULTIPLIER" >"$WORK/test.conf"
    export RDKAFKA_TEST_CONF="$WORK/test.conf"
    export LD_LIBRARY_PATH="$SRC/src:$SRC/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    run_pass "${pass_numbers[@]}"
    stop_brokers
done

write_summary
