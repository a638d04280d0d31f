"""confluent-kafka's consume-transform-produce loop against a Weir broker, with the input
offsets committed in the transaction (send_offsets_to_transaction: AddOffsetsToTxn and
TxnOffsetCommit).

Usage: txn_offsets_confluent.py BOOTSTRAP IN_TOPIC OUT_TOPIC

1. Six input records i-0..i-5 are produced (plainly) to partition 0 of IN_TOPIC.
2. A consumer of group txn-ctp (read_committed, no auto commit) reads three, and a
   transactional producer writes o-i-0..o-i-2 to OUT_TOPIC and sends the consumer's
   position with the transaction, which commits.
3. It reads the other three, writes their outputs, sends the offsets, and aborts.
4. A new consumer of the group resumes where the last committed transaction left it,
   transforms what it reads in a third transaction, which commits.
5. A read_committed consumer reads OUT_TOPIC from the beginning.

Prints one JSON line per step: {"step": "committed", "after": NAME, "offset": N} (the
group's committed offset of IN_TOPIC/0 as the coordinator answers it),
{"step": "resumed", "values": [...]} (what the new consumer read), {"step": "output",
"values": [...]}. Exits non-zero on any other failure. Every call is bounded in time.
"""

import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

bootstrap, in_topic, out_topic = sys.argv[1], sys.argv[2], sys.argv[3]
GROUP = "txn-ctp"
TIMEOUT = 30


def emit(**line):
    print(json.dumps(line), flush=True)


def consumer():
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([in_topic])
    return c


def read(c, count):
    """`count` input records, within TIMEOUT seconds."""
    values = []
    deadline = time.monotonic() + TIMEOUT
    while len(values) < count and time.monotonic() < deadline:
        for m in c.consume(count - len(values), 1.0):
            if m.error():
                raise SystemExit(f"consume: {m.error()}")
            values.append(m.value().decode())
    if len(values) < count:
        raise SystemExit(f"read {values}, wanted {count} records")
    return values


def committed(after):
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    [tp] = probe.committed([TopicPartition(in_topic, 0)], timeout=TIMEOUT)
    probe.close()
    emit(step="committed", after=after, offset=tp.offset)


def transaction(p, c, values, commit):
    p.begin_transaction()
    for v in values:
        p.produce(out_topic, value=("o-" + v).encode(), partition=0)
    p.send_offsets_to_transaction(
        c.position(c.assignment()), c.consumer_group_metadata(), TIMEOUT
    )
    if commit:
        p.commit_transaction(TIMEOUT)
    else:
        p.abort_transaction(TIMEOUT)


plain = Producer({"bootstrap.servers": bootstrap})
for i in range(6):
    plain.produce(in_topic, value=f"i-{i}".encode(), partition=0)
if plain.flush(TIMEOUT) != 0:
    raise SystemExit("the input records were not all delivered")

p = Producer(
    {
        "bootstrap.servers": bootstrap,
        "transactional.id": "weir-ctp",
        "transaction.timeout.ms": 60000,
    }
)
p.init_transactions(TIMEOUT)

c = consumer()
transaction(p, c, read(c, 3), commit=True)
committed("commit")
transaction(p, c, read(c, 3), commit=False)
committed("abort")
c.close()

c = consumer()
resumed = read(c, 3)
emit(step="resumed", values=resumed)
transaction(p, c, resumed, commit=True)
committed("resumed")
c.close()

out = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": "txn-ctp-out",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
    }
)
out.assign([TopicPartition(out_topic, 0, OFFSET_BEGINNING)])
values = []
deadline = time.monotonic() + TIMEOUT
while len(values) < 6 and time.monotonic() < deadline:
    for m in out.consume(10, 1.0):
        if not m.error():
            values.append(m.value().decode())
# Anything extra (an aborted output, a duplicate) shows within 2 s more.
end = time.monotonic() + 2
while time.monotonic() < end:
    for m in out.consume(10, 0.5):
        if not m.error():
            values.append(m.value().decode())
out.close()
emit(step="output", values=values)
