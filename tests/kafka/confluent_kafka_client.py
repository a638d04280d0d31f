"""confluent-kafka (librdkafka) against a Weir broker's Kafka listener.

Usage: confluent_kafka_client.py BOOTSTRAP TOPIC

Creates TOPIC with 4 partitions through the AdminClient, produces 1,000 keyed records
with an idempotent acks=all producer, reads them back with a consumer (assign, seek to
the beginning) and checks each comes back once with its key, value, headers and the
partition and offset its delivery report gave; prints one JSON line per record (key,
partition, offset) for the caller to check the partitioning. Exits non-zero on failure.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic = sys.argv[1], sys.argv[2]
RECORDS = 1000

admin = AdminClient({"bootstrap.servers": bootstrap})
for f in admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)]).values():
    f.result(timeout=20)

# librdkafka's default partitioner hashes keys with CRC32 ("consistent_random");
# murmur2_random is the Java client's (and kafka-python's, and Weir's) partitioning.
producer = Producer(
    {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "partitioner": "murmur2_random",
    }
)
delivered = {}
errors = []


def report(err, msg):
    if err is not None:
        errors.append(err)
    else:
        # A delivery report carries no headers: the value says which record it was.
        delivered[int(msg.value().split(b"-")[1])] = (msg.partition(), msg.offset())


for i in range(RECORDS):
    producer.produce(
        topic,
        key=b"key-%d" % (i % 17),
        value=b"value-%d" % i,
        headers={"n": str(i)},
        on_delivery=report,
    )
    producer.poll(0)
assert producer.flush(30) == 0, "records left unsent"
assert not errors, errors
assert len(delivered) == RECORDS

consumer = Consumer(
    {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
)
consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
seen = {}
deadline = time.time() + 30
while len(seen) < RECORDS and time.time() < deadline:
    m = consumer.poll(1.0)
    if m is None:
        continue
    if m.error():
        raise KafkaException(m.error())
    i = int(dict(m.headers())["n"])
    assert m.value() == b"value-%d" % i
    assert i not in seen, f"record {i} read twice"
    assert m.key() == b"key-%d" % (i % 17) and m.value() == b"value-%d" % i
    assert (m.partition(), m.offset()) == delivered[i], (i, m.partition(), m.offset())
    seen[i] = m
    print(json.dumps({"key": m.key().decode(), "partition": m.partition(), "offset": m.offset()}))
consumer.close()
assert len(seen) == RECORDS, f"read {len(seen)} of {RECORDS}"

for f in admin.delete_topics([topic]).values():
    f.result(timeout=20)
print("confluent-kafka: ok", file=sys.stderr)
