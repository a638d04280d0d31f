"""Kafka admin clients against a Weir broker's Kafka listener: kafka-python's
KafkaAdminClient and confluent-kafka's AdminClient, as their users write them.

Usage: kafka_admin.py BOOTSTRAP TOPIC

With kafka-python, on TOPIC (created here, one partition): its configs (retention.ms at
its default, then set), an incremental alter (SET; APPEND and SUBTRACT on the list key
cleanup.policy; APPEND on a key that is not a list is refused), a full alter (the other
keys set stay), a reset, the broker's configs, create_partitions (up to 3; fewer is
refused), partition reassignments (listed, moved in place, refused per partition),
delete_records (a consumer then starts at the new log start), describe_log_dirs, the
active idempotent producer of a partition, describe_metadata_quorum and describe_cluster. With confluent-kafka, on
TOPIC-ck: describe_configs, incremental_alter_configs, create_partitions, delete_records
(a consumer then starts at the new log start) and describe_cluster. Prints one JSON line
with what the caller checks through Weir's own CLI. Exits non-zero on any failure.
"""

import json
import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import (
    InvalidPartitionsError,
    InvalidReplicationAssignmentError,
    NoReassignmentInProgressError,
    UnknownTopicOrPartitionError,
)

import confluent_kafka
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource as CkConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic as CkNewTopic,
)

bootstrap, topic = sys.argv[1], sys.argv[2]
host, port = bootstrap.rsplit(":", 1)
WEEK_MS = "604800000"
HOUR_MS = "3600000"


def log(*args):
    print("kafka_admin.py:", *args, file=sys.stderr)


# --- kafka-python ------------------------------------------------------------------------
admin = KafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=10000)
admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])


def topic_configs(config_filter="all"):
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter=config_filter
    )
    return described["topic"][topic]


configs = topic_configs()
retention = configs["retention.ms"]
assert retention["value"] == WEEK_MS, retention
assert retention["config_source"] == "DEFAULT_CONFIG", retention
assert retention["read_only"] is False and retention["is_sensitive"] is False, retention
assert configs["cleanup.policy"]["value"] == "delete", configs["cleanup.policy"]
# The default filter shows what was changed: nothing yet.
assert topic_configs("modified") == {}, topic_configs("modified")

# Incremental (kafka-python picks IncrementalAlterConfigs when the broker serves it).
result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": HOUR_MS})])
assert result == {"topic": {topic: "OK"}}, result
retention = topic_configs()["retention.ms"]
assert retention["value"] == HOUR_MS, retention
assert retention["config_source"] == "DYNAMIC_TOPIC_CONFIG", retention
assert set(topic_configs("modified")) == {"retention.ms"}

# APPEND and SUBTRACT change a list key item by item; on other keys they are refused.
result = admin.alter_configs([ConfigResource(
    ConfigResourceType.TOPIC, topic, {"cleanup.policy": (AlterConfigOp.APPEND, "compact")})])
assert result == {"topic": {topic: "OK"}}, result
assert topic_configs()["cleanup.policy"]["value"] == "delete,compact"
result = admin.alter_configs([ConfigResource(
    ConfigResourceType.TOPIC, topic, {"cleanup.policy": (AlterConfigOp.SUBTRACT, "compact")})])
assert result == {"topic": {topic: "OK"}}, result
cleanup = topic_configs()["cleanup.policy"]
assert cleanup["value"] == "delete" and cleanup["config_source"] == "DYNAMIC_TOPIC_CONFIG", cleanup
result = admin.alter_configs([ConfigResource(
    ConfigResourceType.TOPIC, topic, {"retention.ms": (AlterConfigOp.APPEND, "1")})])
assert "InvalidRequest" in result["topic"][topic] and "not a list" in result["topic"][topic], result
assert topic_configs()["retention.ms"]["value"] == HOUR_MS

# AlterConfigs (not incremental): kafka-python sends every key set, since the request
# replaces them all. A bad value changes nothing.
result = admin.alter_configs(
    [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": "2000000"})],
    incremental=False,
)
assert result == {"topic": {topic: "OK"}}, result
modified = topic_configs("modified")
assert {k: v["value"] for k, v in modified.items()} == {
    "retention.ms": HOUR_MS, "max.message.bytes": "2000000", "cleanup.policy": "delete"}, modified
result = admin.alter_configs(
    [ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": "zero"})],
    incremental=False,
)
assert "InvalidConfiguration" in result["topic"][topic], result
assert set(topic_configs("modified")) == {"retention.ms", "max.message.bytes", "cleanup.policy"}
result = admin.reset_configs([ConfigResource(
    ConfigResourceType.TOPIC, topic, ["max.message.bytes", "cleanup.policy"])])
assert result == {"topic": {topic: "OK"}}, result
assert set(topic_configs("modified")) == {"retention.ms"}

# The broker's settings: read-only, static.
broker_configs = admin.describe_configs(
    [ConfigResource(ConfigResourceType.BROKER, "0")], config_filter="all")["broker"]["0"]
assert broker_configs["num.partitions"]["value"] == "1", broker_configs["num.partitions"]
assert broker_configs["num.partitions"]["read_only"] is True
assert broker_configs["log.retention.ms"]["value"] == WEEK_MS
assert broker_configs["auto.create.topics.enable"]["config_source"] == "STATIC_BROKER_CONFIG"

# Partitions grow, never shrink.
admin.create_partitions({topic: 3})
assert len(admin.describe_topics([topic])[0]["partitions"]) == 3
try:
    admin.create_partitions({topic: 2})
    raise AssertionError("shrinking to 2 partitions was accepted")
except InvalidPartitionsError:
    pass

# Reassignments (one broker: nothing can move). None in progress; a partition moved to
# the replicas it has is done at once; one moved to a broker that does not exist is
# INVALID_REPLICA_ASSIGNMENT, a cancel with nothing moving NO_REASSIGNMENT_IN_PROGRESS,
# a topic that does not exist UNKNOWN_TOPIC_OR_PARTITION; each partition answered alone.
assert admin.list_partition_reassignments() == {}, admin.list_partition_reassignments()
moved = admin.alter_partition_reassignments({
    TopicPartition(topic, 0): [0],
    TopicPartition(topic, 1): [7],
    TopicPartition(topic, 2): None,
    TopicPartition(topic + "-none", 0): [0],
})
assert moved == {
    TopicPartition(topic, 0): None,
    TopicPartition(topic, 1): InvalidReplicationAssignmentError,
    TopicPartition(topic, 2): NoReassignmentInProgressError,
    TopicPartition(topic + "-none", 0): UnknownTopicOrPartitionError,
}, moved
assert admin.list_partition_reassignments({topic: [0, 1, 2]}) == {}
assert [p["replica_nodes"] for p in admin.describe_topics([topic])[0]["partitions"]] == [[0]] * 3

# An idempotent producer writes 10 records to partition 0; the first 4 are deleted.
producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", enable_idempotence=True)
for i in range(10):
    producer.send(topic, value=b"kp-%d" % i, partition=0)
producer.flush(timeout=30)
producer.close()
tp = TopicPartition(topic, 0)
deleted = admin.delete_records({tp: 4})
assert deleted[tp]["low_watermark"] == 4, deleted
consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False)
consumer.assign([tp])
consumer.seek_to_beginning(tp)
first = None
for _ in range(40):
    records = consumer.poll(timeout_ms=500).get(tp, [])
    if records:
        first = records[0]
        break
assert first is not None and first.offset == 4 and first.value == b"kp-4", first
consumer.close()

# The broker's log directory: partition 0 holds the 10 records' batches (the 4 deleted
# ones' still on disk until their segment goes), 1 and 2 nothing.
[described] = admin.describe_log_dirs({topic: [0, 1, 2]})
assert described["broker"] == 0, described
[log_dir] = described["log_dirs"]
assert log_dir["error_code"] == 0 and log_dir["log_dir"], log_dir
[(name, partitions)] = [(t["name"], t["partitions"]) for t in log_dir["topics"]]
sizes = {p["partition_index"]: p["partition_size"] for p in partitions}
assert name == topic and sizes[0] > 0 and sizes[1] == sizes[2] == 0, log_dir
assert all(p["offset_lag"] == 0 and not p["is_future_key"] for p in partitions), partitions

producers = admin.describe_producers([tp])[tp].active_producers
assert len(producers) == 1, producers
assert producers[0].last_sequence == 9, producers

# The metadata quorum: this one broker is its only voter and leader, caught up.
quorum = admin.describe_metadata_quorum()
[quorum_topic] = quorum["topics"]
assert quorum_topic["topic_name"] == "__cluster_metadata", quorum
[state] = quorum_topic["partitions"]
assert state["partition_index"] == 0 and state.get("error") is None, state
assert state["leader_id"] == 0 and state["leader_epoch"] >= 1, state
[voter] = state["current_voters"]
assert voter["replica_id"] == 0, voter
assert 0 < state["high_watermark"] <= voter["log_end_offset"], state
assert voter["last_fetch_timestamp"] > 0, voter
assert state["observers"] == [], state

cluster = admin.describe_cluster()
assert cluster["controller_id"] == 0, cluster
assert cluster["cluster_id"], cluster
assert [(b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"]] == [(0, host, int(port))], cluster
admin.close()
log("kafka-python: ok")

# --- confluent-kafka ---------------------------------------------------------------------
ck_topic = topic + "-ck"
ck = AdminClient({"bootstrap.servers": bootstrap})


def wait(futures):
    return {key: f.result(timeout=30) for key, f in futures.items()}


wait(ck.create_topics([CkNewTopic(ck_topic, num_partitions=1, replication_factor=1)]))
resource = CkConfigResource(confluent_kafka.admin.ResourceType.TOPIC, ck_topic)
entries = list(wait(ck.describe_configs([resource])).values())[0]
assert entries["retention.ms"].value == WEEK_MS, entries["retention.ms"]
assert entries["retention.ms"].is_default, entries["retention.ms"]
assert entries["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value, entries["retention.ms"]

resource = CkConfigResource(
    confluent_kafka.admin.ResourceType.TOPIC,
    ck_topic,
    incremental_configs=[
        ConfigEntry("retention.ms", HOUR_MS, incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("segment.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
    ],
)
wait(ck.incremental_alter_configs([resource]))
entries = list(wait(ck.describe_configs(
    [CkConfigResource(confluent_kafka.admin.ResourceType.TOPIC, ck_topic)])).values())[0]
assert entries["retention.ms"].value == HOUR_MS and not entries["retention.ms"].is_default
assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
assert entries["segment.ms"].value == "7200000"

wait(ck.create_partitions([NewPartitions(ck_topic, 2)]))
assert len(ck.list_topics(ck_topic, timeout=10).topics[ck_topic].partitions) == 2

producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
for i in range(10):
    producer.produce(ck_topic, value=b"ck-%d" % i, partition=1)
assert producer.flush(30) == 0
deleted = wait(ck.delete_records([confluent_kafka.TopicPartition(ck_topic, 1, 6)]))
assert list(deleted.values())[0].low_watermark == 6, deleted
consumer = confluent_kafka.Consumer({
    "bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
consumer.assign([confluent_kafka.TopicPartition(ck_topic, 1, confluent_kafka.OFFSET_BEGINNING)])
message = None
for _ in range(40):
    message = consumer.poll(0.5)
    if message is not None and not message.error():
        break
assert message is not None and not message.error(), message and message.error()
assert message.offset() == 6 and message.value() == b"ck-6", (message.offset(), message.value())
consumer.close()

cluster = ck.describe_cluster().result(timeout=30)
assert cluster.cluster_id, cluster
assert cluster.controller.id == 0, cluster.controller
assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(0, host, int(port))], cluster.nodes
log("confluent-kafka: ok")

print(json.dumps({"topic": topic, "ck_topic": ck_topic}))
