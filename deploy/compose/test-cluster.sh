#!/usr/bin/env bash
# The compose cluster as a user meets it: up and healthy, every broker reachable from the
# host through its external listener, a replicated topic written with acks=all, a node
# stopped and the writes going on, the node back in every ISR, and every record read
# back once. Prints how long the cluster took to become healthy.
#
# Usage: deploy/compose/test-cluster.sh      (SKIP_BUILD=1 to use the weir:latest built)
# Uses the compose file's fixed container names (weir-1..3) and host ports
# (127.0.0.1:19292, 29292, 39292): refuses to start if a container of that name exists.
# Tears down its containers, network and volumes however it ends.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
compose=(docker-compose -p weir-compose-test -f "$root/deploy/compose/docker-compose.yml")
HEALTHY_TIMEOUT_SECS=60
RECORDS=2000

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    "$root/deploy/docker/build-image.sh"
fi
weir="${CARGO_TARGET_DIR:-$root/target}/x86_64-unknown-linux-gnu/${PROFILE:-image}/weir"
[ -x "$weir" ] || { echo "test-cluster.sh: no $weir; run deploy/docker/build-image.sh" >&2; exit 1; }
for n in 1 2 3; do
    if docker inspect "weir-$n" >/dev/null 2>&1; then
        echo "test-cluster.sh: a container named weir-$n exists; not touching it" >&2
        exit 1
    fi
done

work="$(mktemp -d)"
cleanup() {
    "${compose[@]}" down -v --timeout 15 >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    "${compose[@]}" logs --tail 20 >&2 || true
    exit 1
}
healthy() { [ "$(docker inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null)" = healthy ]; }
wait_healthy() {
    local started=$SECONDS
    for n in "$@"; do
        until healthy "weir-$n"; do
            [ $((SECONDS - started)) -lt "$HEALTHY_TIMEOUT_SECS" ] ||
                fail "weir-$n not healthy after $HEALTHY_TIMEOUT_SECS s"
            sleep 0.2
        done
    done
}

up_started=$(date +%s%N)
"${compose[@]}" up -d >/dev/null 2>&1 || fail "docker-compose up failed"
wait_healthy 1 2 3
echo "ok: 3 nodes healthy $((($(date +%s%N) - up_started) / 1000000)) ms after 'up -d'"

brokers=127.0.0.1:19292
# Every broker registered and unfenced, advertised to the host as 127.0.0.1:N9292.
deadline=$((SECONDS + HEALTHY_TIMEOUT_SECS))
until "$weir" cluster describe --brokers "$brokers" --format json >"$work/cluster.json" 2>/dev/null &&
    python3 - "$work/cluster.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
got = sorted((b["broker_id"], b["address"], b["fenced"]) for b in c["brokers"])
want = [(n, f"127.0.0.1:{n}9292", False) for n in (1, 2, 3)]
sys.exit(0 if got == want and c["controller_id"] in (1, 2, 3) else 1)
PY
do
    [ $SECONDS -lt $deadline ] || fail "cluster describe: $(cat "$work/cluster.json")"
    sleep 0.5
done
echo "ok: 3 brokers unfenced, each advertised to the host at 127.0.0.1:N9292"

"$weir" topic create compose-test --partitions 3 --replication-factor 3 \
    --config min.insync.replicas=2 --brokers "$brokers" >/dev/null
seq 1 "$RECORDS" | sed 's/^/before-/' >"$work/sent"
"$weir" produce compose-test --acks all --brokers "$brokers" --file "$work/sent"

# One node down: acks=all goes on with 2 in sync (min.insync.replicas=2).
"${compose[@]}" stop -t 15 weir-2 >/dev/null 2>&1
seq 1 "$RECORDS" | sed 's/^/during-/' >"$work/during"
"$weir" produce compose-test --acks all --brokers "$brokers" --file "$work/during"
cat "$work/during" >>"$work/sent"
"${compose[@]}" start weir-2 >/dev/null 2>&1
wait_healthy 2

"$weir" consume compose-test --brokers "$brokers" --from beginning \
    --count $((2 * RECORDS)) >"$work/got"
sort "$work/sent" >"$work/sent.sorted"
sort "$work/got" >"$work/got.sorted"
cmp -s "$work/sent.sorted" "$work/got.sorted" ||
    fail "consumed $(wc -l <"$work/got") records, not the $((2 * RECORDS)) produced"
echo "ok: $((2 * RECORDS)) acks=all records read back once each, across a stopped node"

# The returned node catches up and rejoins every ISR.
deadline=$((SECONDS + HEALTHY_TIMEOUT_SECS))
until "$weir" topic describe compose-test --brokers "$brokers" --format json >"$work/topic.json" &&
    python3 - "$work/topic.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
sys.exit(0 if all(sorted(p["isr"]) == [1, 2, 3] for p in t["partitions"]) else 1)
PY
do
    [ $SECONDS -lt $deadline ] || fail "weir-2 did not rejoin the ISRs: $(cat "$work/topic.json")"
    sleep 0.5
done
echo "ok: weir-2 back in every ISR"
echo "PASS"
