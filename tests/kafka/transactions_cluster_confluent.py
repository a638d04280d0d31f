"""confluent-kafka (librdkafka) transactions across the brokers of a cluster.

Usage: transactions_cluster_confluent.py BOOTSTRAP TOPIC

TOPIC's partitions are led by several brokers, so the transaction coordinator of the
transactional id leads some of them at most: the markers of the others are written by
their leaders at the coordinator's request.

1. The topic's metadata: each partition's leader ({"step": "leaders", "leaders":
   {partition: broker}}).
2. One transactional producer writes three transactions, each with records on every
   partition: the first committed (c-P-0, c-P-1), the second aborted (a-P-0, a-P-1), the
   third committed (d-P-0). Each end is timed ({"step": "end", "name": ..., "ms": ...}).
   A transaction can only begin once the previous one's markers are all written (the
   coordinator answers CONCURRENT_TRANSACTIONS until then), so a marker that is never
   written makes the next step fail after TIMEOUT.
3. A read_committed consumer reads every partition from the beginning until it has the
   committed records or 20 s pass, then polls 2 s more to catch anything extra
   ({"step": "read", "values": {partition: [...]}}).

Exits non-zero on any other failure. Every call is bounded in time.
"""

import json
import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)

bootstrap, topic = sys.argv[1], sys.argv[2]
TIMEOUT = 30


def emit(line):
    print(json.dumps(line), flush=True)


producer = Producer(
    {
        "bootstrap.servers": bootstrap,
        "transactional.id": "weir-txn-cluster",
        "transaction.timeout.ms": 60000,
    }
)
metadata = producer.list_topics(topic, timeout=TIMEOUT).topics[topic]
if metadata.error is not None:
    raise KafkaException(metadata.error)
leaders = {p: m.leader for p, m in sorted(metadata.partitions.items())}
emit({"step": "leaders", "leaders": leaders})
partitions = sorted(leaders)


def transaction(name, values_per_partition, commit):
    producer.begin_transaction()
    for p in partitions:
        for i in range(values_per_partition):
            producer.produce(topic, value=f"{name}-{p}-{i}".encode(), partition=p)
    # Sent before the end: librdkafka's abort drops records still queued.
    if producer.flush(TIMEOUT) != 0:
        raise RuntimeError(f"transaction {name}: records still queued after {TIMEOUT} s")
    started = time.monotonic()
    if commit:
        producer.commit_transaction(TIMEOUT)
    else:
        producer.abort_transaction(TIMEOUT)
    ms = (time.monotonic() - started) * 1000
    emit({"step": "end", "name": name, "commit": commit, "ms": round(ms)})


producer.init_transactions(TIMEOUT)
transaction("c", 2, commit=True)
transaction("a", 2, commit=False)
transaction("d", 1, commit=True)

want = len(partitions) * 3
consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": "txn-cluster-read",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
    }
)
consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
values = {p: [] for p in partitions}
deadline = time.monotonic() + 20
grace = None
while True:
    now = time.monotonic()
    have = sum(len(v) for v in values.values())
    if grace is None and (have >= want or now >= deadline):
        grace = now + 2
    if grace is not None and now >= grace:
        break
    msg = consumer.poll(0.2)
    if msg is None:
        continue
    if msg.error():
        raise KafkaException(msg.error())
    values[msg.partition()].append(msg.value().decode())
consumer.close()
emit({"step": "read", "values": values})
