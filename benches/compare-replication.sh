#!/usr/bin/env bash
# Replicated throughput of two builds side by side: for ROUNDS rounds, each binary's
# `weir dev cluster` (3 brokers on this machine, fresh data directory), a topic of one
# partition at RF=3 (min.insync.replicas=2) and one at RF=1, and against each
# `weir bench produce` of RECORDS 1 KiB records with acks=all (group commit, the
# defaults). Rounds alternate which binary goes first. Only the clusters this script
# starts are stopped, by the pid it recorded (a trap stops them however it ends).
#
# Usage: benches/compare-replication.sh A_WEIR B_WEIR      (the same binary twice is fine)
# Environment: ROUNDS [2], RECORDS [1000000], BASE_PORT [29292: 29292, 29392, 29492],
#              WORK [${TMPDIR:-/tmp}/weir-compare-replication]
set -euo pipefail

if [ "$#" -ne 2 ] || [ ! -x "$1" ] || [ ! -x "$2" ]; then
    sed -n '2,12p' "$0" >&2
    exit 2
fi
ROUNDS="${ROUNDS:-2}"
RECORDS="${RECORDS:-1000000}"
BASE_PORT="${BASE_PORT:-29292}"
WORK="${WORK:-${TMPDIR:-/tmp}/weir-compare-replication}"
export WEIR_BROKERS="127.0.0.1:$BASE_PORT,127.0.0.1:$((BASE_PORT + 100)),127.0.0.1:$((BASE_PORT + 200))"
mkdir -p "$WORK"

cluster=""
stop_cluster() {
    if [ -n "$cluster" ]; then
        kill -INT "$cluster" 2>/dev/null || true
        wait "$cluster" 2>/dev/null || true
        cluster=""
    fi
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

mb_per_s() { grep -oE '[0-9.]+ MB/s' | head -n 1; }

for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order=("$1" "$2"); else order=("$2" "$1"); fi
    for bin in "${order[@]}"; do
        rm -rf "$WORK/data"
        "$bin" dev cluster --data-dir "$WORK/data" --base-port "$BASE_PORT" >"$WORK/cluster.log" 2>&1 &
        cluster=$!
        for _ in $(seq 1 120); do
            "$bin" topic list >/dev/null 2>&1 && break
            sleep 0.5
        done
        "$bin" topic create rf3 --partitions 1 --replication-factor 3 \
            --config min.insync.replicas=2 >/dev/null
        "$bin" topic create rf1 --partitions 1 --replication-factor 1 >/dev/null
        rf3=$("$bin" bench produce -t rf3 -p 1 -s 1KiB -n "$RECORDS" --acks all 2>&1 | mb_per_s)
        rf1=$("$bin" bench produce -t rf1 -p 1 -s 1KiB -n "$RECORDS" --acks all 2>&1 | mb_per_s)
        echo "round $round  $bin  RF=3 ${rf3:-failed}  RF=1 ${rf1:-failed}"
        stop_cluster
    done
done
