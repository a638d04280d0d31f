"""confluent-kafka (librdkafka) in a consumer group against a Weir broker's Kafka listener.

Usage: groups_confluent.py BOOTSTRAP TOPIC GROUP PROTOCOL

PROTOCOL is librdkafka's group.protocol: "classic" (JoinGroup/SyncGroup, the client
assigns) or "consumer" (KIP-848's ConsumerGroupHeartbeat, the broker assigns). TOPIC has
3 partitions, each holding 10 records valued "p:i". A consumer in GROUP reads all 30,
commits synchronously and closes (leaving the group); then 3 more records are produced
and a second consumer in GROUP reads exactly those 3: it resumed from the commit.
Prints {"committed": {"0": n, ...}} with the group's offsets at the end.
"""

import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, topic, group, protocol = sys.argv[1:5]
PARTITIONS, PER_PARTITION = 3, 10


def member():
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": protocol,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if protocol == "classic":
        # KIP-848's session timeout is the broker's; the classic one is the client's.
        config["session.timeout.ms"] = 6000
    consumer = Consumer(config)
    consumer.subscribe([topic])
    return consumer


def read(consumer, want):
    got = []
    deadline = time.monotonic() + 60
    while len(got) < want:
        assert time.monotonic() < deadline, f"only {len(got)} of {want} records in 60 s"
        for m in consumer.consume(num_messages=50, timeout=0.5):
            assert m.error() is None, m.error()
            got.append(m)
    return got


first = member()
records = read(first, PARTITIONS * PER_PARTITION)
values = sorted(m.value().decode() for m in records)
expected = sorted(f"{p}:{i}" for p in range(PARTITIONS) for i in range(PER_PARTITION))
assert values == expected, f"read {values}"
for m in records:
    p, i = m.value().decode().split(":")
    assert (m.partition(), m.offset()) == (int(p), int(i)), (m.partition(), m.offset())
first.commit(asynchronous=False)
committed = first.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
assert all(tp.offset == PER_PARTITION for tp in committed), committed
first.close()

producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
for p in range(PARTITIONS):
    producer.produce(topic, value=f"{p}:{PER_PARTITION}".encode(), partition=p)
assert producer.flush(30) == 0

second = member()
more = read(second, PARTITIONS)
assert sorted(m.value().decode() for m in more) == [
    f"{p}:{PER_PARTITION}" for p in range(PARTITIONS)
], [m.value() for m in more]
second.commit(asynchronous=False)
committed = second.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
second.close()
print(json.dumps({"committed": {str(tp.partition): tp.offset for tp in committed}}))
