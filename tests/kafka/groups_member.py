"""One kafka-python member of a consumer group, run as its own process by a test that
kills it: prints, one JSON line each, the partitions it is assigned at every rebalance
({"assigned": [p, ...]}) and every record it reads ({"p": p, "o": offset, "v": value}),
and commits after every poll that returned records (a commit refused by a rebalance is
printed as {"commit_failed": "..."} and the records are read again by whoever gets the
partition). Runs until killed.

Usage: groups_member.py BOOTSTRAP TOPIC GROUP    (BOOTSTRAP: host:port[,host:port...])
"""

import json
import sys

from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.errors import CommitFailedError, KafkaError

bootstrap, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]


def say(event):
    print(json.dumps(event), flush=True)


class Listener(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked):
        say({"revoked": sorted(tp.partition for tp in revoked)})

    def on_partitions_assigned(self, assigned):
        say({"assigned": sorted(tp.partition for tp in assigned)})


consumer = KafkaConsumer(
    bootstrap_servers=bootstrap.split(","),
    group_id=group,
    auto_offset_reset="earliest",
    enable_auto_commit=False,
    session_timeout_ms=6000,
    heartbeat_interval_ms=500,
    request_timeout_ms=20000,
)
consumer.subscribe([topic], listener=Listener())
while True:
    batch = consumer.poll(timeout_ms=200, max_records=20)
    for records in batch.values():
        for r in records:
            say({"p": r.partition, "o": r.offset, "v": r.value.decode()})
    if batch:
        try:
            consumer.commit()
        except (CommitFailedError, KafkaError) as e:
            say({"commit_failed": repr(e)})
