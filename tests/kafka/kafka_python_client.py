"""kafka-python against a Weir broker's Kafka listener, as a user of kafka-python writes it.

Usage: kafka_python_client.py BOOTSTRAP TOPIC

Produces 200 keyed records (acks=all, retries, idempotence) into TOPIC (created here
with 3 partitions), reads them back with a consumer (assign, seek, poll with
max_records) and checks every record comes back once, in order per partition, with its
key, value and headers; prints one JSON line per record for the caller to check the
partitioning; then exercises the admin client: a replication factor larger than the
cluster is refused, and a topic is created and deleted. Exits non-zero on any failure.
"""

import json
import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import InvalidReplicationFactorError, UnknownTopicOrPartitionError

bootstrap, topic = sys.argv[1], sys.argv[2]
RECORDS = 200

admin = KafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=10000)
admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])

producer = KafkaProducer(
    bootstrap_servers=[bootstrap],
    acks="all",
    retries=5,
    enable_idempotence=True,
    linger_ms=5,
)
futures = []
for i in range(RECORDS):
    key = b"key-%d" % (i % 13)
    futures.append(
        producer.send(topic, key=key, value=b"value-%d" % i, headers=[("n", str(i).encode())])
    )
producer.flush(timeout=30)
sent = {}
for i, f in enumerate(futures):
    md = f.get(timeout=10)
    sent[i] = (md.partition, md.offset)
producer.close()

consumer = KafkaConsumer(
    bootstrap_servers=[bootstrap],
    enable_auto_commit=False,
    auto_offset_reset="earliest",
)
partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
assert len(partitions) == 3, partitions
consumer.assign(partitions)
consumer.seek_to_beginning()
seen = []
for _ in range(100):
    batch = consumer.poll(timeout_ms=500, max_records=50)
    for records in batch.values():
        assert len(records) <= 50
        seen.extend(records)
    if len(seen) >= RECORDS:
        break
assert len(seen) == RECORDS, f"read {len(seen)} of {RECORDS} records"
by_index = {}
for r in seen:
    i = int(dict(r.headers)["n"])
    assert i not in by_index, f"record {i} read twice"
    by_index[i] = r
    assert r.key == b"key-%d" % (i % 13) and r.value == b"value-%d" % i, r
    assert (r.partition, r.offset) == sent[i], (i, r.partition, r.offset, sent[i])
    print(json.dumps({"key": r.key.decode(), "partition": r.partition, "offset": r.offset}))
# In order per partition: offsets rise with the send order of each partition.
for p in range(3):
    order = [i for i in range(RECORDS) if sent[i][0] == p]
    assert [sent[i][1] for i in order] == sorted(sent[i][1] for i in order)

# Seek: back to an offset, and the same record again.
first = partitions[0]
consumer.seek(first, 1)
again = consumer.poll(timeout_ms=5000, max_records=1)
assert again[first][0].offset == 1, again
consumer.close()

try:
    admin.create_topics([NewTopic(topic + "-rf", num_partitions=1, replication_factor=3)])
    raise AssertionError("replication factor 3 on one broker was accepted")
except InvalidReplicationFactorError as e:
    assert "1 broker" in str(e), str(e)

admin.create_topics([NewTopic(topic + "-tmp", num_partitions=2, replication_factor=1)])
assert topic + "-tmp" in admin.list_topics()
admin.delete_topics([topic + "-tmp"])
try:
    admin.delete_topics([topic + "-tmp"])
    raise AssertionError("deleting a deleted topic succeeded")
except UnknownTopicOrPartitionError:
    pass
admin.close()
print("kafka-python: ok", file=sys.stderr)
