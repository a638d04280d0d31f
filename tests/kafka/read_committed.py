"""confluent-kafka (librdkafka) consumers at both isolation levels against a Weir broker.

Usage: read_committed.py BOOTSTRAP TOPIC COMMITTED_COUNT ALL_COUNT

Partition 0 of TOPIC holds transactions the test wrote through the broker's core: one
committed, one aborted, one still open. A consumer with isolation.level=read_committed
and one with read_uncommitted each read partition 0 from the beginning until they have
their expected count (COMMITTED_COUNT, ALL_COUNT) or 20 s pass, then go on polling for
2 s to catch anything extra; each then asks for the partition's watermarks (ListOffsets
at its isolation level). Prints one JSON line per consumer: isolation, values in the
order read, offsets, and the high watermark offset it was told. Exits non-zero on a
consumer error.
"""

import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
expected = {"read_committed": int(sys.argv[3]), "read_uncommitted": int(sys.argv[4])}

for isolation, want in expected.items():
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "txn-test-" + isolation,
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values, offsets = [], []
    deadline = time.monotonic() + 20
    grace = None
    while True:
        now = time.monotonic()
        if grace is None and (len(values) >= want or now >= deadline):
            grace = now + 2
        if grace is not None and now >= grace:
            break
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        values.append(msg.value().decode())
        offsets.append(msg.offset())
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.close()
    print(
        json.dumps(
            {"isolation": isolation, "values": values, "offsets": offsets, "high": high}
        ),
        flush=True,
    )
