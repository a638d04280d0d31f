"""confluent-kafka (librdkafka) transactional producers against a Weir broker.

Usage: transactions_confluent.py BOOTSTRAP TOPIC

1. A producer with transactional.id commits one transaction (c-0..c-2), aborts one
   (a-0..a-2) and commits another (c-3), all on partition 0 of TOPIC.
2. A read_committed and a read_uncommitted consumer each read partition 0 from the
   beginning until they have their expected count or 20 s pass, then poll 2 s more to
   catch anything extra.
3. A second producer with the same transactional.id initialises (fencing the first);
   the first one's next transaction must fail with a fencing error.

4. kafka-python's admin client describes the transactional id (DescribeTransactions at
   its coordinator, waiting up to 10 s for the last commit's markers) and lists the
   transactions (ListTransactions).

Prints one JSON line per step: {"step": "read", "isolation": ..., "values": [...]},
{"step": "fence", "error": NAME, "fatal": bool}, {"step": "second", "ok": true},
{"step": "describe", ...}, {"step": "list", "ids": [...]}. Exits non-zero on any other
failure. Every call is bounded in time.
"""

import json
import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

bootstrap, topic = sys.argv[1], sys.argv[2]
TIMEOUT = 30


def producer():
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": "weir-txn-test",
            "transaction.timeout.ms": 60000,
        }
    )


def transaction(p, values, commit):
    p.begin_transaction()
    for v in values:
        p.produce(topic, value=v.encode(), partition=0)
    # Sent before the end: librdkafka's abort drops records still queued, and the
    # aborted records must reach the log for read_uncommitted to see them.
    p.flush(TIMEOUT)
    if commit:
        p.commit_transaction(TIMEOUT)
    else:
        p.abort_transaction(TIMEOUT)


first = producer()
first.init_transactions(TIMEOUT)
transaction(first, ["c-0", "c-1", "c-2"], commit=True)
transaction(first, ["a-0", "a-1", "a-2"], commit=False)
transaction(first, ["c-3"], commit=True)

expected = {"read_committed": 4, "read_uncommitted": 7}
for isolation, want in expected.items():
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "txn-read-" + isolation,
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values = []
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
    consumer.close()
    print(json.dumps({"step": "read", "isolation": isolation, "values": values}), flush=True)

second = producer()
second.init_transactions(TIMEOUT)
error = None
try:
    transaction(first, ["zombie"], commit=True)
except KafkaException as e:
    err = e.args[0]
    error = {"step": "fence", "error": err.name(), "fatal": err.fatal()}
if error is None:
    print(json.dumps({"step": "fence", "error": None, "fatal": False}), flush=True)
    sys.exit(1)
print(json.dumps(error), flush=True)
# The new instance works.
transaction(second, ["c-4"], commit=True)
print(json.dumps({"step": "second", "ok": True}), flush=True)
second.flush(TIMEOUT)

from kafka.admin import KafkaAdminClient  # noqa: E402

admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
deadline = time.monotonic() + 10
while True:
    d = admin.describe_transactions(["weir-txn-test"])["weir-txn-test"]
    if d.state.value == "CompleteCommit" or time.monotonic() >= deadline:
        break
    time.sleep(0.1)
print(
    json.dumps(
        {
            "step": "describe",
            "state": d.state.value,
            "producer_epoch": d.producer_epoch,
            "timeout_ms": d.transaction_timeout_ms,
        }
    ),
    flush=True,
)
# One list per broker id.
listed = [t for rows in admin.list_transactions().values() for t in rows]
print(json.dumps({"step": "list", "ids": sorted(t.transactional_id for t in listed)}), flush=True)
admin.close()
