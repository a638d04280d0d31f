"""An idempotent confluent-kafka producer (acks=all) writing through a failover.

Usage: idempotent_producer.py BOOTSTRAP TOPIC RECORDS SECONDS

Sends RECORDS records with values "r-<i>" to partition 0 of TOPIC, spread evenly over
SECONDS, while the caller kills the partition's leader; flushes; prints one JSON line
{"acked": [...], "failed": [...], "unsent": N, "errors": {...}} with the indexes whose
delivery reports said written or failed, and how many failed with each error. librdkafka retries through the failover (NOT_LEADER_OR_FOLLOWER, broken
connections) under idempotence, so a retried batch is stored once.
"""

import json
import sys
import time

from confluent_kafka import Producer

bootstrap, topic, records, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
producer = Producer(
    {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 60000,
    }
)
acked, failed, errors = [], [], {}


def report(err, msg):
    i = int(msg.value().split(b"-")[1])
    (failed if err is not None else acked).append(i)
    if err is not None:
        errors[str(err)] = errors.get(str(err), 0) + 1


start = time.time()
for i in range(records):
    # Keep to the schedule: record i goes out at start + i * seconds / records.
    delay = start + i * seconds / records - time.time()
    if delay > 0:
        producer.poll(delay)
    producer.produce(topic, value=b"r-%d" % i, partition=0, on_delivery=report)
    producer.poll(0)
left = producer.flush(90)
print(json.dumps({"acked": sorted(acked), "failed": sorted(failed), "unsent": left, "errors": errors}))
