"""confluent-kafka's ShareConsumer (KIP-932 queues) against a Weir broker's Kafka listener.

Usage: shares_confluent.py BOOTSTRAP TOPIC GROUP

TOPIC has 3 partitions, each holding 10 records valued "p:i" (record i of partition p at
offset i). The share groups start at the earliest offset: the script sets
share.auto.offset.reset=earliest on each group with IncrementalAlterConfigs, as a Kafka
user would.

1. Explicit acknowledgement, one consumer in GROUP: record i is RELEASEd on its first
   delivery when i % 4 == 0 (and must come back with delivery_count() == 2), REJECTed
   when i % 4 == 1, ACCEPTed otherwise. Each record must end accepted or rejected exactly
   once, and no record may come back that was not released.
2. Implicit acknowledgement, two consumers in GROUP + "-implicit" on the same topic,
   polled in turn: together they get each of the 30 records exactly once, each on its
   first delivery.

Prints one JSON line with what it saw.
"""

import json
import sys
import time

from confluent_kafka import AcknowledgeType, KafkaError, KafkaException, ShareConsumer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

bootstrap, topic, group = sys.argv[1:4]
PARTITIONS, PER_PARTITION = 3, 10
ALL = {f"{p}:{i}" for p in range(PARTITIONS) for i in range(PER_PARTITION)}
DEADLINE_S = 90


def start_at_earliest(group_id):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(
        ResourceType.GROUP,
        group_id,
        incremental_configs=[
            ConfigEntry(
                "share.auto.offset.reset",
                "earliest",
                incremental_operation=AlterConfigOpType.SET,
            )
        ],
    )
    # Right after a cluster starts, the group's coordinator may still be loading its
    # state (a retriable error, which the admin client hands back rather than retries).
    deadline = time.monotonic() + 30
    while True:
        try:
            for future in admin.incremental_alter_configs([resource]).values():
                future.result(timeout=30)
            return
        except KafkaException as e:
            loading = e.args[0].code() in (
                KafkaError.COORDINATOR_NOT_AVAILABLE,
                KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                KafkaError.NOT_COORDINATOR,
            )
            if not (loading or e.args[0].retriable()) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def consumer(group_id, mode):
    c = ShareConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "share.acknowledgement.mode": mode,
        }
    )
    c.subscribe([topic])
    return c


def check_position(m):
    p, i = m.value().decode().split(":")
    assert (m.partition(), m.offset()) == (int(p), int(i)), (m.partition(), m.offset(), p, i)
    return int(i)


# 1. Explicit acknowledgement.
start_at_earliest(group)
explicit = consumer(group, "explicit")
accepted, rejected, released, deliveries = set(), set(), set(), []
deadline = time.monotonic() + DEADLINE_S
while len(accepted) + len(rejected) < len(ALL):
    assert time.monotonic() < deadline, f"finished {len(accepted) + len(rejected)} of {len(ALL)}"
    for m in explicit.poll(1.0):
        assert m.error() is None, m.error()
        value, count = m.value().decode(), m.delivery_count()
        i = check_position(m)
        deliveries.append((value, count))
        assert value not in accepted | rejected, f"{value} delivered again after it finished"
        if count > 1:
            assert value in released and count == 2, f"{value} delivered {count} times"
        if i % 4 == 0 and count == 1:
            released.add(value)
            explicit.acknowledge(m, AcknowledgeType.RELEASE)
        elif i % 4 == 1:
            rejected.add(value)
            explicit.acknowledge(m, AcknowledgeType.REJECT)
        else:
            accepted.add(value)
            explicit.acknowledge(m, AcknowledgeType.ACCEPT)
    explicit.commit_sync()
explicit.close()
assert accepted | rejected == ALL
assert not accepted & rejected
assert released == {v for v in ALL if int(v.split(":")[1]) % 4 == 0}
assert sorted(v for v, c in deliveries if c == 2) == sorted(released)

# 2. Implicit acknowledgement, two members sharing the partitions.
implicit_group = group + "-implicit"
start_at_earliest(implicit_group)
members = [consumer(implicit_group, "implicit") for _ in range(2)]
got = [[], []]
deadline = time.monotonic() + DEADLINE_S
while sum(len(g) for g in got) < len(ALL):
    assert time.monotonic() < deadline, f"got {sum(len(g) for g in got)} of {len(ALL)}"
    for n, c in enumerate(members):
        for m in c.poll(0.5):
            assert m.error() is None, m.error()
            check_position(m)
            assert m.delivery_count() == 1, (m.value(), m.delivery_count())
            got[n].append(m.value().decode())
# Implicit mode accepts a poll's records on the next poll or commit; close() alone
# (librdkafka 2.16) sends no acknowledgement for the last poll's records.
for c in members:
    c.commit_sync()
    c.close()
everything = got[0] + got[1]
assert len(everything) == len(set(everything)) and set(everything) == ALL, got

print(
    json.dumps(
        {
            "accepted": len(accepted),
            "rejected": len(rejected),
            "released": len(released),
            "implicit": [len(g) for g in got],
        }
    )
)
