#!/usr/bin/env bash
# Weir beside Apache Iggy, a Rust streaming server with its own binary protocol over TCP,
# each driven by its own client (issue 45 § 2): Weir by `weir bench` (weir-client over
# gRPC), Iggy by `iggy-bench` (Iggy's own benchmark tool, on its SDK). One server at a
# time, a fresh one with empty data for every part, page cache dropped before each part
# (when run as root), the two systems alternating which goes first, ROUNDS rounds.
#
# Rows (GB gigabytes of record values each: GB x 10^9 / size records, 1 partition):
#   1. produce 100 B      Weir: --acks leader (in the page cache before the ack; on its
#                         default flush.policy=group-commit the records become readable
#                         once an fdatasync covers them, so the leader syncs all along;
#                         WEIR_FLUSH_POLICY=none makes rows 1-3 like Iggy's, never synced);
#                         Iggy: its defaults (acknowledged from its in-memory journal, which
#                         it writes out, in the request's path, every 1,024 messages or
#                         1 MiB)
#   2. consume 100 B      row 1's records read back from the first
#   3. produce 1 KiB      as row 1
#   4. produce 1 KiB, fsync before the ack: a server of its own. Weir: --acks all on a
#                         topic with flush.policy=group-commit; Iggy:
#                         system.partition.enforce_fsync=true and messages_required_to_save=1
#                         (every batch written and fsynced before its answer)
# Both clients send about 1,000 records a request: iggy-bench's default batch of 1,000
# messages, and Weir's producer given batches of 1,000 x size bytes (--batch-bytes; its
# default is 256 KiB, a quarter of that at 1 KiB, and a measured 17% slower there). Each
# keeps its own defaults otherwise (Weir: 5 batches in flight per partition, idempotent;
# Iggy: one batch at a time), as a user of each would run it.
#
# Printed per row: each system's records/s and MB/s (10^6 bytes of values) as its tool
# reports them, the server's CPU seconds per GB (/proc around the row), the client's
# (user+sys of the bench process), and Weir / Iggy (paired per round: median, min-max).
# Each round also measures the machine's ceiling for a produce row, with weir-limits
# (built here): `recv_append`, a program that only receives bytes from a second process
# over loopback TCP and appends them to a file (the produce floor of data-path.sh), and
# `loopback_tcp_2proc`, the same bytes received and dropped. No broker on one connection
# that writes through the page cache can take large records faster than `recv_append`;
# row 3 is printed against it. `recv_append_direct` writes the same bytes with O_DIRECT,
# past the page cache: what a log with its own cache of recent batches would pay.
#
# Iggy's server is on no package registry this machine reaches (crates.io carries its SDK
# only, and no image can be pulled), so it is built here from a source checkout given as
# IGGY_SRC: a clone of https://github.com/apache/iggy at tag server-0.8.0, the newest
# release whose toolchain (Rust 1.94) this machine's Rust builds (later tags ask for
# 1.97). The build (server and iggy-bench, release, without the web UI) goes to
# $IGGY_SRC/target with the toolchain Weir builds with, once (about 10 minutes here).
#
# Usage: IGGY_SRC=/path/to/iggy benches/compare-iggy.sh [WEIR_BINARY]
#        (default target/release/weir, built if missing)
# Environment: ROUNDS [3], GB [1], WEIR_PORT [17492], IGGY_PORT [17490],
#              WORK [${TMPDIR:-/tmp}/weir-iggy],
#              WEIR_LIMITS_BIN [weir-limits beside WEIR_BINARY, built if missing],
#              WEIR_FLUSH_POLICY [empty: the topic default] for rows 1-3's topic,
#              WEIR_TOPIC_CONFIG [empty] more key=value topic configs, space-separated,
#              for every topic Weir's rows create (e.g. write.direct=true)
set -euo pipefail
# Brokers started here serve no Kafka or AMQP clients (their usual ports may be taken).
export WEIR_KAFKA_LISTEN=none WEIR_AMQP_LISTEN=none
cd "$(dirname "$0")/.."
ROOT="$PWD"
W="${1:-target/release/weir}"
ROUNDS="${ROUNDS:-3}"
GB="${GB:-1}"
WEIR_FLUSH_POLICY="${WEIR_FLUSH_POLICY:-}"
WEIR_TOPIC_CONFIG="${WEIR_TOPIC_CONFIG:-}"
WEIR_PORT="${WEIR_PORT:-17492}"
IGGY_PORT="${IGGY_PORT:-17490}"
WORK="${WORK:-${TMPDIR:-/tmp}/weir-iggy}"
IGGY_TAG=server-0.8.0
# Seconds a stopped server gets to exit before it is killed; most seconds one row may take.
STOP_GRACE_SECS=20
ROW_TIMEOUT_SECS=$((600 * GB))

say() { echo "compare-iggy: $*" >&2; }

if [ -z "${IGGY_SRC:-}" ] || [ ! -f "$IGGY_SRC/core/server/Cargo.toml" ]; then
    say "IGGY_SRC must name a checkout of https://github.com/apache/iggy at tag $IGGY_TAG" \
        "(git clone https://github.com/apache/iggy && git -C iggy checkout $IGGY_TAG)"
    exit 2
fi
IGGY_SRC="$(cd "$IGGY_SRC" && pwd)"
if ! git -C "$IGGY_SRC" tag --points-at HEAD 2>/dev/null | grep -qx "$IGGY_TAG"; then
    say "warning: $IGGY_SRC is not at tag $IGGY_TAG; measuring what it holds"
fi
IGGY_SERVER="$IGGY_SRC/target/release/iggy-server"
IGGY_BENCH="$IGGY_SRC/target/release/iggy-bench"
if [ ! -x "$IGGY_SERVER" ] || [ ! -x "$IGGY_BENCH" ]; then
    # The server pins threads with hwloc (hwlocality-sys links Debian's libhwloc, and
    # through it libudev).
    if ! pkg-config --exists hwloc libudev 2>/dev/null; then
        say "installing libhwloc-dev, libudev-dev and pkg-config (apt-get), which Iggy's server links"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q libhwloc-dev libudev-dev pkg-config >&2
    fi
    # The checkout's rust-toolchain.toml names a toolchain rustup cannot fetch here: build
    # with the one this repository builds with.
    toolchain="$(rustup show active-toolchain | awk '{ print $1 }')"
    say "building Iggy's server and iggy-bench in $IGGY_SRC with $toolchain"
    (cd "$IGGY_SRC" && RUSTUP_TOOLCHAIN="$toolchain" nice -n 10 cargo build --release --locked \
        -p server --no-default-features --features mimalloc -p iggy-bench)
fi
if [ ! -x "$W" ]; then
    cargo build --release --locked -p weir-cli
fi
W="$(cd "$(dirname "$W")" && pwd)/$(basename "$W")"
LIMITS="${WEIR_LIMITS_BIN:-$(dirname "$W")/weir-limits}"
if [ ! -x "$LIMITS" ]; then
    cargo build --release --locked -p weir-benches --bin weir-limits
    LIMITS="$ROOT/target/release/weir-limits"
fi

TICK="$(getconf CLK_TCK)"
rm -rf "$WORK" && mkdir -p "$WORK"
SERVER=
stop_server() {
    [ -n "$SERVER" ] || return 0
    kill -TERM "$SERVER" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_GRACE_SECS))
    while kill -0 "$SERVER" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    kill -KILL "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=
}
trap stop_server EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$WEIR_PORT" "$IGGY_PORT"; do
    if port_open "$port"; then
        say "port $port is in use by a process this script did not start"
        exit 1
    fi
done

drop_caches() {
    sync
    if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        say "cannot drop the page cache (not root): rows start from whatever it holds"
    fi
}

# start SYSTEM PART: a fresh server of SYSTEM (weir or iggy) for PART (fast or fsync).
start() {
    local system="$1" part="$2" data="$WORK/data/$1-$2"
    rm -rf "$WORK/data" && mkdir -p "$data"
    drop_caches
    if [ "$system" = weir ]; then
        "$W" serve --data-dir "$data" --listen "127.0.0.1:$WEIR_PORT" --admin-listen off \
            >"$WORK/server-$system-$part.log" 2>&1 &
    else
        local fsync=()
        if [ "$part" = fsync ]; then
            fsync=(IGGY_SYSTEM_PARTITION_ENFORCE_FSYNC=true
                IGGY_SYSTEM_PARTITION_MESSAGES_REQUIRED_TO_SAVE=1)
        fi
        (cd "$data" && exec env IGGY_CONFIG_PATH="$IGGY_SRC/core/server/config.toml" \
            IGGY_SYSTEM_PATH="$data/local_data" IGGY_TCP_ADDRESS="127.0.0.1:$IGGY_PORT" \
            IGGY_HTTP_ENABLED=false IGGY_QUIC_ENABLED=false IGGY_WEBSOCKET_ENABLED=false \
            IGGY_ROOT_USERNAME=iggy \
            IGGY_ROOT_PASSWORD=iggy "${fsync[@]}" "$IGGY_SERVER") \
            >"$WORK/server-$system-$part.log" 2>&1 &
    fi
    SERVER=$!
    local port="$WEIR_PORT"
    [ "$system" = iggy ] && port="$IGGY_PORT"
    for _ in $(seq 1 300); do
        if [ "$system" = weir ]; then
            "$W" healthcheck --address "127.0.0.1:$port" >/dev/null 2>&1 && return 0
        else
            port_open "$port" && return 0
        fi
        kill -0 "$SERVER" 2>/dev/null || break
        sleep 0.1
    done
    say "$system did not start; $WORK/server-$system-$part.log ends:"
    tail -n 5 "$WORK/server-$system-$part.log" >&2
    exit 1
}

server_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER/stat"; }

# row ROUND SYSTEM ROW SIZE: one row; appends "ROUND SYSTEM ROW RECORDS RECORDS_PER_SEC
# SERVER_CPU_S CLIENT_CPU_S" to the results.
row() {
    local round="$1" system="$2" row="$3" size="$4" records before after rate out
    records=$((GB * 1000000000 / size))
    out="$WORK/bench-$round-$system-$row.log"
    before="$(server_ticks)"
    local cmd
    if [ "$system" = weir ]; then
        local topic="r$row" what=produce extra=(--acks leader)
        [ -n "$WEIR_FLUSH_POLICY" ] && extra+=(--topic-config "flush.policy=$WEIR_FLUSH_POLICY")
        case "$row" in
            2) topic=r1 what=consume extra=() ;;
            4) extra=(--acks all --topic-config flush.policy=group-commit) ;;
        esac
        if [ "$what" = produce ]; then
            extra+=(--batch-bytes $((1000 * size)))
            for config in $WEIR_TOPIC_CONFIG; do extra+=(--topic-config "$config"); done
        fi
        cmd=("$W" bench "$what" --brokers "127.0.0.1:$WEIR_PORT" --topic "$topic"
            --partitions 1 --record-size "$size" --count "$records" "${extra[@]}" --format json)
    else
        local kind=pinned-producer actors=(--producers 1)
        [ "$row" = 2 ] && kind=pinned-consumer actors=(--consumers 1)
        # 1,000 messages a batch (its default), as many batches as make the records.
        cmd=("$IGGY_BENCH" --message-size "$size" --messages-per-batch 1000
            --message-batches $(((records + 999) / 1000)) "$kind" --streams 1 "${actors[@]}"
            tcp --server-address "127.0.0.1:$IGGY_PORT")
        records=$(((records + 999) / 1000 * 1000))
    fi
    (cd "$WORK" && /usr/bin/time -f "%U %S" -o "$out.cpu" timeout "$ROW_TIMEOUT_SECS" \
        "${cmd[@]}") >"$out" 2>&1 || { say "$system row $row failed; see $out"; tail -n 5 "$out" >&2; exit 1; }
    after="$(server_ticks)"
    if [ "$system" = weir ]; then
        rate="$(tail -1 "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["records_per_sec"])')"
    else
        # "...: Total throughput: 123.45 MB/s, 123456 messages/s, ..." for all producers
        # (or consumers) together: the last such line.
        rate="$(grep -a 'Total throughput' "$out" | tail -1 | sed -E 's/\x1b\[[0-9;]*m//g' |
            grep -oE '[0-9.]+ messages/s' | awk '{ print $1 }')"
        [ -n "$rate" ] || { say "iggy row $row: no throughput line in $out"; exit 1; }
    fi
    local client
    client="$(awk 'END { print $1 + $2 }' "$out.cpu")"
    echo "$round $system $row $size $records $rate $(((after - before)))/$TICK $client" |
        tee -a "$WORK/results.txt" >&2
}

# floor ROUND: the machine's ceilings for a produce row, GB gigabytes each, on the disk
# the servers write to; appends "ROUND floor LIMIT BYTES_PER_SEC CPU_S_PER_GB" (the
# receiving process's user+sys per 10^9 bytes, or - where weir-limits measures none) to
# the results.
floor() {
    local round="$1"
    drop_caches
    mkdir -p "$WORK/limits"
    # 954 MiB is 10^9 bytes give or take 0.03% (weir-limits takes binary units).
    local bytes="$((GB * 954))MiB"
    "$LIMITS" --only recv_append,recv_append_direct,loopback_tcp_2proc --bytes "$bytes" \
        --disk-bytes "$bytes" --max-secs 60 --dir "$WORK/limits" --format json \
        2>"$WORK/limits-$round.log" |
        python3 -c '
import json, sys
for r in map(json.loads, sys.stdin):
    assert r.get("schema") == "weir-limits/1", "not a weir-limits/1 line"
    cpu = r.get("cpu_seconds_per_gb")
    print(sys.argv[1], "floor", r["limit"], r["bytes_per_sec"], "-" if cpu is None else cpu)
' "$round" | tee -a "$WORK/results.txt" >&2
}

: >"$WORK/results.txt"
say "$ROUNDS rounds of $GB GB a row; Weir $("$W" --version) (rows 1-3: flush.policy" \
    "${WEIR_FLUSH_POLICY:-default}${WEIR_TOPIC_CONFIG:+; every topic: $WEIR_TOPIC_CONFIG});" \
    "Iggy $IGGY_TAG from $IGGY_SRC"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="weir iggy"; else order="iggy weir"; fi
    for system in $order; do
        start "$system" fast
        row "$round" "$system" 1 100
        row "$round" "$system" 2 100
        row "$round" "$system" 3 1024
        stop_server
        start "$system" fsync
        row "$round" "$system" 4 1024
        stop_server
    done
    floor "$round"
done
python3 - "$WORK/results.txt" "$GB" <<'PY'
import statistics, sys
from fractions import Fraction
rows = {}
floors = {}
for line in open(sys.argv[1]):
    if line.split()[1] == "floor":
        rnd, _, limit, rate, cpu = line.split()
        floors.setdefault(limit, []).append((float(rate) / 1e6, None if cpu == "-" else float(cpu)))
        continue
    rnd, system, row, size, records, rate, server, client = line.split()
    gb = int(records) * int(size) / 1e9
    rows.setdefault(int(row), {}).setdefault(system, {})[rnd] = (
        float(rate), float(rate) * int(size) / 1e6, float(Fraction(server)) / gb, float(client) / gb)
names = {1: "produce 100 B", 2: "consume 100 B", 3: "produce 1 KiB", 4: "produce 1 KiB, fsync before ack"}
print(f"{sys.argv[2]} GB a row; medians over rounds (CPU: seconds per GB of record values)")
print(f"{'row':<34} {'Weir rec/s':>11} {'MB/s':>7} {'srv':>5} {'cli':>5}  "
      f"{'Iggy rec/s':>11} {'MB/s':>7} {'srv':>5} {'cli':>5}  Weir/Iggy (min-max)")
for row in sorted(rows):
    w, i = rows[row].get("weir", {}), rows[row].get("iggy", {})
    med = lambda runs, k: statistics.median(v[k] for v in runs.values())
    ratios = [w[r][0] / i[r][0] for r in w if r in i]
    print(f"{row}. {names[row]:<31} {med(w, 0):>11,.0f} {med(w, 1):>7,.0f} {med(w, 2):>5.2f} "
          f"{med(w, 3):>5.2f}  {med(i, 0):>11,.0f} {med(i, 1):>7,.0f} {med(i, 2):>5.2f} "
          f"{med(i, 3):>5.2f}  {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
for limit, runs in sorted(floors.items()):
    rates = [rate for rate, _ in runs]
    cpus = [cpu for _, cpu in runs if cpu is not None]
    cpu = f", receiver {statistics.median(cpus):.2f} CPU s per GB" if cpus else ""
    print(f"ceiling {limit}: {statistics.median(rates):,.0f} MB/s (median; "
          f"{min(rates):,.0f}-{max(rates):,.0f}){cpu}")
if "recv_append" in floors and 3 in rows:
    ceiling = statistics.median(rate for rate, _ in floors["recv_append"])
    floor_cpu = statistics.median(cpu for _, cpu in floors["recv_append"])
    for name, system in (("Weir", "weir"), ("Iggy", "iggy")):
        runs = rows[3].get(system, {})
        if runs:
            mb = statistics.median(v[1] for v in runs.values())
            cpu = statistics.median(v[2] for v in runs.values())
            print(f"row 3 against recv_append: {name} at {mb / ceiling:.2f} of its MB/s, "
                  f"its server at {cpu / floor_cpu:.2f}x its CPU per GB")
PY
