"""Consumer-group administration through Kafka's admin clients against a Weir broker's
Kafka listener: what librdkafka's and kafka-python's admin calls read back, as their
users check it.

Usage: groups_admin.py BOOTSTRAP TOPIC

1. Describe: a classic group (confluent-kafka, `group.instance.id` and `client.id` set,
   as librdkafka's own admin test does) and a KIP-848 group (`group.protocol=consumer`),
   each with one live member, described with confluent-kafka's
   describe_consumer_groups (through DescribeGroups and ConsumerGroupDescribe: type,
   state, assignor, coordinator, the member's ids, host, assignment and, for the KIP-848
   group, target assignment) and kafka-python's describe_groups (the member's subscription and
   assignment decoded from the consumer protocol bytes); a group that does not exist
   is Dead, without an error.
2. Offsets: alter_consumer_group_offsets with metadata and leader epochs, read back by
   list_consumer_group_offsets; kafka-python's commit with metadata and leader epoch,
   read back by committed(metadata=True).
3. OffsetDelete (kafka-python's delete_group_offsets): refused for the topic the live
   member subscribes to (GROUP_SUBSCRIBED_TO_TOPIC), done for another topic's offset,
   UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist, GROUP_ID_NOT_FOUND for a
   group that does not exist; in a group without members every offset is deletable.
4. Authorized operations, with authorization off: every operation Kafka defines for a
   topic (describe_topics), the cluster (describe_cluster) and a group
   (describe_consumer_groups, kafka-python's describe_groups).
Prints one JSON line with the groups it made. Exits non-zero on any failure.
"""

import json
import sys
import time

import confluent_kafka
from confluent_kafka import ConsumerGroupTopicPartitions, TopicCollection, TopicPartition as CkTp
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import (
    GroupIdNotFoundError,
    GroupSubscribedToTopicError,
    NoError,
    UnknownTopicOrPartitionError,
)
from kafka.structs import OffsetAndMetadata

bootstrap, topic = sys.argv[1], sys.argv[2]
host, port = bootstrap.rsplit(":", 1)
other = topic + "-other"
PARTITIONS = 3


def log(*args):
    print("groups_admin.py:", *args, file=sys.stderr)


ck = AdminClient({"bootstrap.servers": bootstrap})
for name, count in ((topic, PARTITIONS), (other, 1)):
    ck.create_topics([NewTopic(name, count, 1)])[name].result(30)


def live_member(group, protocol, **extra):
    """A consumer of `topic` in `group` that holds every partition."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": protocol,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    config.update(extra)
    consumer = confluent_kafka.Consumer(config)
    consumer.subscribe([topic])
    deadline = time.monotonic() + 60
    while len(consumer.assignment()) < PARTITIONS:
        assert time.monotonic() < deadline, f"{group}: assigned {consumer.assignment()}"
        consumer.poll(0.2)
    return consumer


def describe(group, **options):
    return ck.describe_consumer_groups([group], **options)[group].result(30)


def describe_until_stable(group):
    """The group once its member has its assignment in the coordinator's view too."""
    deadline = time.monotonic() + 30
    while True:
        described = describe(group)
        if described.state == confluent_kafka.ConsumerGroupState.STABLE:
            return described
        assert time.monotonic() < deadline, f"{group} is {described.state}"
        time.sleep(0.1)


# --- 1. DescribeConsumerGroups ------------------------------------------------------------
classic_group, consumer_group = topic + "-classic", topic + "-consumer"
classic = live_member(
    classic_group, "classic",
    **{"client.id": "client-a", "group.instance.id": "instance-a", "session.timeout.ms": 6000})
described = describe_until_stable(classic_group)
assert described.group_id == classic_group
# ConsumerGroupDescribe answered GROUP_ID_NOT_FOUND; librdkafka fell back to DescribeGroups.
assert described.type == confluent_kafka.ConsumerGroupType.CLASSIC, described.type
assert not described.is_simple_consumer_group
assert described.partition_assignor == "range", described.partition_assignor
assert (described.coordinator.id, described.coordinator.host, described.coordinator.port) == (
    0, host, int(port)), described.coordinator
assert len(described.members) == 1, described.members
m = described.members[0]
assert m.client_id == "client-a", m.client_id
assert m.group_instance_id == "instance-a", m.group_instance_id
assert m.member_id.startswith("client-a"), m.member_id
assert m.host == host, m.host
assert sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions) == [
    (topic, p) for p in range(PARTITIONS)], m.assignment.topic_partitions

missing = describe(topic + "-missing")
assert missing.state == confluent_kafka.ConsumerGroupState.DEAD, missing.state
assert missing.members == [], missing.members

kp_admin = KafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=10000)
kp = kp_admin.describe_groups([classic_group])[classic_group]
assert kp["error"] is None and kp["group_state"] == "Stable", kp
assert kp["protocol_type"] == "consumer" and kp["protocol_data"] == "range", kp
[kp_member] = kp["members"]
assert kp_member["group_instance_id"] == "instance-a", kp_member
assert list(kp_member["member_metadata"]["topics"]) == [topic], kp_member
assert [(t["topic"], sorted(t["partitions"])) for t in kp_member["member_assignment"][
    "assigned_partitions"]] == [(topic, list(range(PARTITIONS)))], kp_member

# A KIP-848 group, which librdkafka describes with ConsumerGroupDescribe.
kip848 = live_member(consumer_group, "consumer", **{"client.id": "client-b"})
described = describe_until_stable(consumer_group)
assert described.type == confluent_kafka.ConsumerGroupType.CONSUMER, described.type
assert described.partition_assignor == "uniform", described.partition_assignor
[m] = described.members
assert m.client_id == "client-b", m.client_id
assert m.host == host, m.host
everything = [(topic, p) for p in range(PARTITIONS)]
assert sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions) == everything, \
    m.assignment.topic_partitions
assert sorted((tp.topic, tp.partition) for tp in m.target_assignment.topic_partitions) == everything, \
    m.target_assignment.topic_partitions
kip848.close()
log("describe: ok")

# --- 2. Offsets with metadata and leader epochs -------------------------------------------
offsets_group = topic + "-offsets"
written = [
    CkTp(topic, 0, 5, metadata="checkpoint-5", leader_epoch=0),
    CkTp(topic, 1, 7, leader_epoch=2),
    CkTp(topic, 2, 9, metadata="no epoch"),
]
altered = ck.alter_consumer_group_offsets(
    [ConsumerGroupTopicPartitions(offsets_group, written)])[offsets_group].result(30)
assert all(tp.error is None for tp in altered.topic_partitions), altered.topic_partitions


def listed(group, partitions=None):
    request = ConsumerGroupTopicPartitions(group, partitions)
    result = ck.list_consumer_group_offsets([request])[group].result(30)
    return sorted(
        (tp.topic, tp.partition, tp.offset, tp.leader_epoch, tp.metadata)
        for tp in result.topic_partitions)


# librdkafka reads an empty metadata string as None.
expected = [(topic, 0, 5, 0, "checkpoint-5"), (topic, 1, 7, 2, None), (topic, 2, 9, None, "no epoch")]
assert listed(offsets_group) == expected, listed(offsets_group)
assert listed(offsets_group, [CkTp(topic, p) for p in range(PARTITIONS)]) == expected

kp_group = topic + "-kp"
kp_consumer = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=kp_group, enable_auto_commit=False)
tp0 = TopicPartition(topic, 0)
kp_consumer.commit({tp0: OffsetAndMetadata(12, "kafka-python was here", 3)})
committed = kp_consumer.committed(tp0, metadata=True)
assert (committed.offset, committed.metadata, committed.leader_epoch) == (
    12, "kafka-python was here", 3), committed
kp_consumer.close()
log("offsets: ok")

# --- 3. OffsetDelete ----------------------------------------------------------------------
# The live classic member commits to its own topic and to another one.
classic.commit(offsets=[CkTp(topic, 0, 1), CkTp(other, 0, 4)], asynchronous=False)
tp_other = TopicPartition(other, 0)
tp_gone = TopicPartition(topic + "-gone", 0)
deleted = kp_admin.delete_group_offsets(classic_group, [tp0, tp_other, tp_gone])
assert deleted == {
    tp0: GroupSubscribedToTopicError,
    tp_other: NoError,
    tp_gone: UnknownTopicOrPartitionError,
}, deleted
assert listed(classic_group) == [(topic, 0, 1, None, None)], listed(classic_group)
try:
    kp_admin.delete_group_offsets(topic + "-missing", [tp0])
    raise AssertionError("deleting offsets of a group that does not exist was accepted")
except GroupIdNotFoundError:
    pass
classic.close()

# Without members nothing is subscribed: the offsets group's go.
deleted = kp_admin.delete_group_offsets(offsets_group, [TopicPartition(topic, 0), TopicPartition(topic, 1)])
assert deleted == {TopicPartition(topic, 0): NoError, TopicPartition(topic, 1): NoError}, deleted
assert listed(offsets_group) == [(topic, 2, 9, None, "no epoch")], listed(offsets_group)
log("offset delete: ok")

# --- 4. Authorized operations -------------------------------------------------------------
def names(operations):
    return sorted(op.name for op in operations)


described = ck.describe_topics(TopicCollection([topic]), include_authorized_operations=True)[topic].result(30)
assert names(described.authorized_operations) == [
    "ALTER", "ALTER_CONFIGS", "CREATE", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS", "READ", "WRITE",
], described.authorized_operations
# Not asked for: none.
described = ck.describe_topics(TopicCollection([topic]))[topic].result(30)
assert described.authorized_operations is None, described.authorized_operations
cluster = ck.describe_cluster(include_authorized_operations=True).result(30)
assert names(cluster.authorized_operations) == [
    "ALTER", "ALTER_CONFIGS", "CLUSTER_ACTION", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS",
    "IDEMPOTENT_WRITE",
], cluster.authorized_operations
group = describe(offsets_group, include_authorized_operations=True)
assert names(group.authorized_operations) == ["DELETE", "DESCRIBE", "READ"], group.authorized_operations
kp = kp_admin.describe_groups([offsets_group])[offsets_group]
assert sorted(kp["authorized_operations"]) == ["DELETE", "DESCRIBE", "READ"], kp
kp_admin.close()
log("authorized operations: ok")

print(json.dumps({"classic": classic_group, "offsets": offsets_group}))
