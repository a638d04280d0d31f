"""kafka-python in a consumer group against a Weir broker's Kafka listener, as a user writes it.

Usage: groups_kafka_python.py BOOTSTRAP TOPIC GROUP

TOPIC has 3 partitions, each holding 10 records valued "p:i" (i = 0..9, at offset i).
1. A KafkaConsumer in GROUP (auto_offset_reset='earliest', enable_auto_commit=False)
   polls with max_records=4 until it has read 15 records, commits, and leaves.
2. A second one in GROUP reads exactly the other 15 (it resumes from the commit) and
   commits: every partition at 10.
3. It seeks partition 0 back to offset 0 and reads "0:0" again, then commits offsets it
   chooses (partition 0 at 7 with metadata), and leaves.
4. A consumer that assigns itself partition 1 (no group membership: generation -1, no
   member id) commits offset 9 for it, accepted because the group has no members.
5. The admin client lists the group, describes it (Empty, protocol type "consumer"),
   fetches its offsets, and deletes another group that only has offsets.
Prints the group's committed offsets as one JSON line: {"committed": {"0": 7, ...}}.
Exits non-zero on any failure.
"""

import json
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

bootstrap, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
PER_PARTITION, PARTITIONS = 10, 3
TOTAL = PER_PARTITION * PARTITIONS


def member():
    return KafkaConsumer(
        topic,
        bootstrap_servers=[bootstrap],
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        request_timeout_ms=20000,
    )


def read(consumer, want, max_records):
    """Polls until `want` records arrived (60 s at most); each poll at most max_records."""
    got = []
    deadline = time.monotonic() + 60
    while len(got) < want:
        assert time.monotonic() < deadline, f"only {len(got)} of {want} records in 60 s"
        batch = consumer.poll(timeout_ms=200, max_records=max_records)
        n = sum(len(records) for records in batch.values())
        assert n <= max_records, f"a poll returned {n} records, max_records={max_records}"
        for records in batch.values():
            got.extend(records)
    return got


first = member()
a = read(first, 15, 4)
first.commit()
positions = {tp: first.position(tp) for tp in first.assignment()}
assert len(positions) == PARTITIONS, f"one member holds every partition: {positions}"
for tp, position in positions.items():
    committed = first.committed(tp)
    assert committed == position, f"{tp}: committed {committed}, position {position}"
first.close()

second = member()
b = read(second, TOTAL - len(a), 50)
values_a = {r.value.decode() for r in a}
values_b = {r.value.decode() for r in b}
assert not values_a & values_b, f"read twice across the commit: {sorted(values_a & values_b)}"
expected = {f"{p}:{i}" for p in range(PARTITIONS) for i in range(PER_PARTITION)}
assert values_a | values_b == expected, f"missing {sorted(expected - (values_a | values_b))}"
for r in a + b:
    p, i = r.value.decode().split(":")
    assert (r.partition, r.offset) == (int(p), int(i)), r

second.commit()
for p in range(PARTITIONS):
    tp = TopicPartition(topic, p)
    assert second.committed(tp) == PER_PARTITION, (tp, second.committed(tp))

# Seek back: the same records again.
p0 = TopicPartition(topic, 0)
second.seek(p0, 0)
again = [r for r in read(second, 1, 1) if r.partition == 0]
assert again and again[0].offset == 0 and again[0].value == b"0:0", again
second.commit({p0: OffsetAndMetadata(7, "checkpoint", -1)})
assert second.committed(p0) == 7, second.committed(p0)
second.close()

# Outside the group: no membership, generation -1.
p1 = TopicPartition(topic, 1)
loner = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=group, enable_auto_commit=False)
loner.assign([p1])
loner.commit({p1: OffsetAndMetadata(9, "", -1)})
committed = {
    str(p): loner.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)
}
loner.close()
assert committed["0"] == 7 and committed["1"] == 9, committed

# The admin client: ListGroups, DescribeGroups, OffsetFetch, DeleteGroups.
scratch = group + "-scratch"
other = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=scratch, enable_auto_commit=False)
other.assign([p1])
other.commit({p1: OffsetAndMetadata(1, "", -1)})
other.close()
admin = KafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=20000)
listed = {g["group_id"]: g for g in admin.list_groups()}
assert group in listed and scratch in listed, listed
described = admin.describe_groups([group])[group]
assert described["error"] is None, described
assert described["group_state"] == "Empty", described
assert described["protocol_type"] == "consumer", described
assert described["members"] == [], described
fetched = admin.list_group_offsets({group: None})[group]
assert {tp.partition: om.offset for tp, om in fetched.items()} == {
    int(p): o for p, o in committed.items()
}, fetched
assert admin.delete_groups([scratch]) == {scratch: "OK"}
assert scratch not in {g["group_id"] for g in admin.list_groups()}
# Deleted, it is not found again.
assert admin.delete_groups([scratch]) == {scratch: "GroupIdNotFoundError"}
admin.close()
print(json.dumps({"committed": committed}))
