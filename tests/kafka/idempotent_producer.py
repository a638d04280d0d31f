"""An idempotent confluent-kafka producer (acks=all) writing through a failover.

Usage: idempotent_producer.py BOOTSTRAP TOPIC RECORDS SECONDS

Sends RECORDS records with values "r-<i>" to partition 0 of TOPIC, spread evenly over
SECONDS, while the caller kills the partition's leader; flushes; prints one JSON line
{"acked": [...], "failed": [...], "unsent": N, "errors": {...}, "epoch_bumps": N} with
the indexes whose delivery reports said written or failed, how many failed with each
error, and how many times librdkafka bumped the producer's epoch (its `eos` debug log's
"bumped epoch" lines): each bump renumbers every message it holds unacknowledged, on
every partition, so one that may have been written is then written again (librdkafka
issue 4953). librdkafka retries through the failover (NOT_LEADER_OR_FOLLOWER, broken
connections) under idempotence, so a retried batch is stored once.
"""

import json
import logging
import sys
import time

from confluent_kafka import Producer

bootstrap, topic, records, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
class BumpCounter(logging.Handler):
    """Counts librdkafka's "bumped epoch" debug lines."""

    def __init__(self):
        super().__init__()
        self.bumps = 0

    def emit(self, record):
        if "bumped epoch" in record.getMessage():
            self.bumps += 1


bumps = BumpCounter()
librdkafka_log = logging.getLogger("librdkafka")
librdkafka_log.propagate = False
librdkafka_log.addHandler(bumps)
librdkafka_log.setLevel(logging.DEBUG)

producer = Producer(
    {
        "debug": "eos",
        "logger": librdkafka_log,
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
report = {
    "acked": sorted(acked),
    "failed": sorted(failed),
    "unsent": left,
    "errors": errors,
    "epoch_bumps": bumps.bumps,
}
print(json.dumps(report))
