#!/usr/bin/env bash
# What authorisation costs produce when the cluster has many ACLs: `weir bench produce`
# (1 KiB records, acks=leader, 1 partition) as an ordinary user whose own ACLs allow it,
# on a broker with TLS, authentication required and authorization on, first with only
# those ACLs, then after 10,000 more bindings (literal and prefixed, on other topics and
# users) are added, alternating ROUNDS times; each run on a fresh topic. Prints each run
# and the median of the paired with/without ratios.
#
# Usage: benches/compare-acls.sh [WEIR_BINARY]     (default target/release/weir)
# Environment: ROUNDS [4], COUNT [300000], PORT [17700],
#              WORK [${TMPDIR:-/tmp}/weir-acls]
# Needs the Python venv of tests/python/setup.sh (confluent-kafka, for CreateAcls and
# DeleteAcls over the Kafka listener in one request each).
set -euo pipefail
cd "$(dirname "$0")/.."
W="${1:-target/release/weir}"
ROUNDS="${ROUNDS:-4}"
COUNT="${COUNT:-300000}"
PORT="${PORT:-17700}"
WORK="${WORK:-${TMPDIR:-/tmp}/weir-acls}"
PY="${WEIR_PY_VENV:-tests/python/.venv}/bin/python"
B="127.0.0.1:$PORT"
K="127.0.0.1:$((PORT + 2))"
rm -rf "$WORK" && mkdir -p "$WORK"
"$W" dev certs --out "$WORK/certs" >/dev/null
WEIR_ADMIN_USER=admin WEIR_ADMIN_PASSWORD=admin-secret "$W" serve --data-dir "$WORK/data" \
    --listen "$B" --admin-listen none --kafka-listen "$K" \
    --tls-cert "$WORK/certs/node.pem" --tls-key "$WORK/certs/node-key.pem" \
    --tls-client-ca "$WORK/certs/ca.pem" --authentication required --authorization on \
    >"$WORK/broker.log" 2>&1 &
BROKER=$!
trap 'kill "$BROKER" 2>/dev/null; wait "$BROKER" 2>/dev/null || true' EXIT
export WEIR_TLS_CA="$WORK/certs/ca.pem" WEIR_BROKERS="$B"
as_admin() { WEIR_USER=admin WEIR_PASSWORD=admin-secret "$W" "$@"; }
for _ in $(seq 1 100); do
    as_admin topic list >/dev/null 2>&1 && break
    sleep 0.1
done
echo bench-secret | as_admin user create bench >/dev/null
as_admin acl add --principal User:bench --operation all --topic acl- --prefixed >/dev/null
as_admin acl add --principal User:bench --operation idempotent-write,create --cluster >/dev/null
acls() { # add | remove: the 10,000 other bindings
    "$PY" - "$1" "$K" "$WORK/certs/ca.pem" <<'PY'
import sys
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
    AclPermissionType, AdminClient, ResourcePatternType, ResourceType)
what, bootstrap, ca = sys.argv[1:4]
admin = AdminClient({"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "admin",
    "sasl.password": "admin-secret", "ssl.ca.location": ca})
if what == "add":
    bindings = [AclBinding(ResourceType.TOPIC,
        f"team-{i % 100}-topic-{i}" if i % 2 else f"team-{i % 100}-{'x' * (i % 40)}",
        ResourcePatternType.LITERAL if i % 2 else ResourcePatternType.PREFIXED,
        f"User:user-{i}", "*", AclOperation.WRITE if i % 3 else AclOperation.READ,
        AclPermissionType.ALLOW if i % 5 else AclPermissionType.DENY) for i in range(10_000)]
    for f in admin.create_acls(bindings).values():
        f.result(timeout=60)
else:
    flt = AclBindingFilter(ResourceType.TOPIC, None, ResourcePatternType.ANY, None, None,
        AclOperation.ANY, AclPermissionType.ANY)
    for f in admin.delete_acls([flt]).values():
        f.result(timeout=60)
PY
}
: >"$WORK/results.txt"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="0 10000"; else order="10000 0"; fi
    for extra in $order; do
        if [ "$extra" = 10000 ]; then acls add; else acls remove; fi
        # The bench user's own prefixed binding is not a topic binding removed above.
        as_admin acl add --principal User:bench --operation all --topic acl- --prefixed >/dev/null
        t="acl-$round-$extra"
        line=$(WEIR_USER=bench WEIR_PASSWORD=bench-secret timeout 300 "$W" bench produce \
            --topic "$t" --partitions 1 --record-size 1KiB --count "$COUNT" --acks leader \
            --format json 2>>"$WORK/bench.log" | tail -1)
        as_admin topic delete "$t" >/dev/null 2>&1
        echo "$round $extra $line" | tee -a "$WORK/results.txt"
    done
done
python3 - "$WORK/results.txt" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    round_, extra, report = line.split(" ", 2)
    runs[(round_, extra)] = json.loads(report)["records_per_sec"]
rounds = sorted({r for r, _ in runs}, key=int)
ratios = [runs[(r, "10000")] / runs[(r, "0")] for r in rounds]
print(f"1 KiB: with 10,000 ACLs {statistics.median(runs[(r, '10000')] for r in rounds):,.0f} rec/s, "
      f"without {statistics.median(runs[(r, '0')] for r in rounds):,.0f} rec/s (medians); "
      f"paired with/without median {statistics.median(ratios):.3f} over {len(ratios)} rounds")
PY
