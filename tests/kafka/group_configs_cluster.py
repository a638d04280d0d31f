"""Consumer group configs answered by every broker of a three-broker cluster (issue 41):
Kafka 4 keeps a group's configs in its metadata log, so Java's admin client sends them to
the least-loaded broker and librdkafka to any broker; a broker that does not coordinate
the group must answer them too, not NOT_COORDINATOR.

Usage: group_configs_cluster.py KAFKA_BROKERS TOPIC

KAFKA_BROKERS is every broker's Kafka listener, comma-separated. With kafka-python's
admin client, each request is sent to a chosen broker (its connection to that node):
IncrementalAlterConfigs of consumer.session.timeout.ms and
consumer.heartbeat.interval.ms at a broker that is not the group's coordinator, then
DescribeConfigs of the group at each of the brokers (the same values, source
GROUP_CONFIG (8; kafka-python names it DYNAMIC_GROUP_CONFIG), no error), and a value
out of the broker's bounds refused there with
INVALID_CONFIG. Then a confluent-kafka consumer with group.protocol=consumer (KIP-848)
of that group is told the heartbeat interval set, read through `weir group describe`
(the WEIR_BIN binary, at WEIR_BROKERS).

Prints one JSON line of what it saw; exits non-zero on failure.
"""

import json
import os
import subprocess
import sys
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.admin._configs import AlterConfigOp

brokers, topic = sys.argv[1], sys.argv[2]
group = "cfg-" + topic
SESSION, HEARTBEAT = "consumer.session.timeout.ms", "consumer.heartbeat.interval.ms"
# Kafka's error codes.
NONE, INVALID_CONFIG = 0, 40


def until(what, done, timeout_s=60, pause_s=0.2):
    """what() until done(its answer), or an AssertionError naming the last answer."""
    deadline = time.time() + timeout_s
    while True:
        try:
            got = what()
        except Exception as e:  # a cluster still settling: elections, registrations
            got = e
        if not isinstance(got, Exception) and done(got):
            return got
        if time.time() >= deadline:
            raise AssertionError(f"gave up waiting: {got!r}")
        time.sleep(pause_s)


admin = until(lambda: KafkaAdminClient(bootstrap_servers=brokers.split(",")), lambda a: True)
nodes = until(
    lambda: sorted(b["broker_id"] for b in admin.describe_cluster()["brokers"]),
    lambda ids: len(ids) == 3,
)
# A client made now learns all three from its bootstrap metadata: the first one may have
# bootstrapped before every broker registered, and kafka-python refreshes its broker list
# only every 5 minutes (requests to a broker it does not know fail UnknownBrokerIdError).
admin.close()
admin = until(lambda: KafkaAdminClient(bootstrap_servers=brokers.split(",")), lambda a: True)


def send(node, request):
    """The answer of broker `node` to `request`."""

    async def go():
        return await admin._manager.send(request, node_id=node)

    return admin._manager.run(go)


def describe_at(node):
    """(error code, {key: [value, source]}) of the group's consumer keys at `node`."""
    resource = ConfigResource(ConfigResourceType.GROUP, group)
    response = send(node, admin._describe_configs_request([resource]))
    result = response.results[0]
    configs = {}
    for entry in result.configs:
        e = entry.to_dict()
        if e["name"] in (SESSION, HEARTBEAT):
            source = admin._get_config_source(e, ConfigResourceType.GROUP).name
            configs[e["name"]] = [e["value"], source]
    return result.error_code, configs


def alter_at(node, configs):
    """(error code, message) of IncrementalAlterConfigs SET of `configs` at `node`."""
    resource = ConfigResource(
        ConfigResourceType.GROUP, group, {k: (AlterConfigOp.SET, v) for k, v in configs.items()}
    )
    response = send(node, admin._alter_configs_request([resource], incremental=True))
    r = response.responses[0]
    return r.error_code, r.error_message


# Every broker answers, once the cluster has settled.
before = {n: until(lambda: describe_at(n), lambda r: r[0] == NONE)[1] for n in nodes}
coordinator = until(lambda: admin._manager.run(admin._find_coordinator_id, group), lambda c: c in nodes)
setter = next(n for n in nodes if n != coordinator)
set_answer = list(alter_at(setter, {SESSION: "50000", HEARTBEAT: "1000"}))
assert set_answer[0] == NONE, set_answer
# kafka-python names source 8 (GROUP_CONFIG) DYNAMIC_GROUP_CONFIG.
want = {HEARTBEAT: ["1000", "DYNAMIC_GROUP_CONFIG"], SESSION: ["50000", "DYNAMIC_GROUP_CONFIG"]}
# Each broker's metadata has the change within a metadata propagation.
after = {}
for n in nodes:
    code, configs = until(lambda: describe_at(n), lambda r: r[0] != NONE or r[1] == want, timeout_s=20)
    after[n] = {"error": code, "configs": configs}
refused = list(alter_at(setter, {SESSION: "70000"}))
assert all(describe_at(n)[1] == want for n in nodes), "a refused change changed something"

# A KIP-848 consumer of the group is told the interval set.
confluent = AdminClient({"bootstrap.servers": brokers})
for f in confluent.create_topics([NewTopic(topic, 2, 3)]).values():
    f.result(timeout=30)
producer = Producer({"bootstrap.servers": brokers, "acks": "all"})
for i in range(6):
    until(lambda: producer.produce(topic, b"r%d" % i, partition=i % 2) or True, lambda ok: ok)
assert producer.flush(30) == 0, "records left unsent"
c = Consumer(
    {
        "bootstrap.servers": brokers,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
    }
)
c.subscribe([topic])


def member():
    out = subprocess.run(
        [os.environ["WEIR_BIN"], "group", "describe", group, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    members = json.loads(out.stdout)["members"]
    return members[0] if members else None


read = 0
deadline = time.time() + 60
while read < 6 and time.time() < deadline:
    m = c.poll(0.5)
    if m is not None and not m.error():
        read += 1
assert read == 6, f"read {read}"


def polled_member():
    c.poll(0.2)
    return member()


told = until(polled_member, lambda m: m is not None and m["heartbeat_interval_ms"] == 1000)
c.close()
print(
    json.dumps(
        {
            "nodes": nodes,
            "coordinator": coordinator,
            "set_at": setter,
            "set": set_answer,
            "before": {str(n): v for n, v in before.items()},
            "after": {str(n): v for n, v in after.items()},
            "refused": refused,
            "told": [told["heartbeat_interval_ms"], told["session_timeout_ms"]],
        }
    )
)
