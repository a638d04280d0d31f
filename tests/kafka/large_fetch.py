"""Fetches of a megabyte and more, which a Weir broker sends from its segment files
(sendfile), read back by confluent-kafka (librdkafka, with `check.crcs` on) and by
kafka-python (which checks CRCs by default).

Usage: large_fetch.py BOOTSTRAP TOPIC

Creates TOPIC with 2 partitions, produces 20,000 records of 1 KiB with confluent-kafka
(acks=all; record i to partition i % 2, its value made of its index so every record
differs), then reads both partitions from offset 0: every record with confluent-kafka,
the first 2,000 of each partition with kafka-python. Each reader checks that every
record comes exactly once, in offset order, with its value. Prints one JSON line of
counts; exits non-zero on failure.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaPythonPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
RECORDS = 20_000
PARTITIONS = 2
KAFKA_PYTHON_PER_PARTITION = 2_000


def value(i):
    return b"%08d" % i * 128  # 1 KiB


admin = AdminClient({"bootstrap.servers": bootstrap})
for f in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]).values():
    f.result(timeout=20)

producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
errors = []
for i in range(RECORDS):
    while True:
        try:
            producer.produce(
                topic,
                partition=i % PARTITIONS,
                value=value(i),
                on_delivery=lambda err, _msg: err is not None and errors.append(err),
            )
            break
        except BufferError:
            producer.poll(0.1)
    producer.poll(0)
assert producer.flush(60) == 0, "records left unsent"
assert not errors, errors


def expect(partition, offset, got):
    """Record `offset` of `partition` is record i = offset * PARTITIONS + partition."""
    i = offset * PARTITIONS + partition
    assert got == value(i), f"partition {partition} offset {offset}: wrong value {got[:16]!r}"


# confluent-kafka: default fetch sizes (1 MiB a partition), CRCs checked by librdkafka.
consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": "unused",
        "enable.auto.commit": False,
        "check.crcs": True,
    }
)
consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
next_offset = [0] * PARTITIONS
deadline = time.time() + 60
while sum(next_offset) < RECORDS and time.time() < deadline:
    m = consumer.poll(1.0)
    if m is None:
        continue
    if m.error():
        raise KafkaException(m.error())
    p = m.partition()
    assert m.offset() == next_offset[p], f"partition {p}: offset {m.offset()}, expected {next_offset[p]}"
    expect(p, m.offset(), m.value())
    next_offset[p] += 1
consumer.close()
assert sum(next_offset) == RECORDS, f"confluent-kafka read {next_offset} of {RECORDS}"
confluent_read = sum(next_offset)

# kafka-python: its own fetch sizes (1 MiB a partition), CRCs checked (check_crcs=True).
reader = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, check_crcs=True)
partitions = [KafkaPythonPartition(topic, p) for p in range(PARTITIONS)]
reader.assign(partitions)
reader.seek_to_beginning(*partitions)
next_offset = [0] * PARTITIONS
deadline = time.time() + 60
while min(next_offset) < KAFKA_PYTHON_PER_PARTITION and time.time() < deadline:
    for tp, records in reader.poll(timeout_ms=1000).items():
        for r in records:
            if r.offset >= KAFKA_PYTHON_PER_PARTITION:
                continue
            assert r.offset == next_offset[tp.partition], (tp.partition, r.offset)
            expect(tp.partition, r.offset, r.value)
            next_offset[tp.partition] += 1
reader.close()
assert min(next_offset) == KAFKA_PYTHON_PER_PARTITION, f"kafka-python read {next_offset}"

for f in admin.delete_topics([topic]).values():
    f.result(timeout=20)
print(json.dumps({"confluent_kafka": confluent_read, "kafka_python": sum(next_offset)}))
