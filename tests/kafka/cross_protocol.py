"""The Kafka half of the cross-protocol test: kafka-python writes or reads records that
Weir's own CLI reads or wrote, and prints what it saw as JSON lines.

Usage:
  cross_protocol.py produce BOOTSTRAP TOPIC   # 20 records with keys, headers, timestamps
  cross_protocol.py consume BOOTSTRAP TOPIC N # prints the first N records of partition 0

Each JSON line: offset, timestamp, key, value, headers (text).
"""

import json
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

mode, bootstrap, topic = sys.argv[1], sys.argv[2], sys.argv[3]


def line(offset, timestamp, key, value, headers):
    return json.dumps(
        {
            "offset": offset,
            "timestamp": timestamp,
            "key": None if key is None else key.decode(),
            "value": value.decode(),
            "headers": [[k, v.decode()] for k, v in headers],
        }
    )


if mode == "produce":
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all")
    for i in range(20):
        md = producer.send(
            topic,
            key=b"user-%d" % (i % 3),
            value=b"event %d" % i,
            headers=[("source", b"kafka-python"), ("n", str(i).encode())],
            timestamp_ms=1_700_000_000_000 + i,
            partition=0,
        ).get(timeout=10)
        print(line(md.offset, md.timestamp, b"user-%d" % (i % 3), b"event %d" % i,
                   [("source", b"kafka-python"), ("n", str(i).encode())]))
    producer.close()
elif mode == "consume":
    want = int(sys.argv[4])
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    got = []
    for _ in range(60):
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
        if len(got) >= want:
            break
    for r in got[:want]:
        print(line(r.offset, r.timestamp, r.key, r.value, r.headers))
    consumer.close()
else:
    sys.exit(f"unknown mode {mode}")
