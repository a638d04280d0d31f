"""A broker whose data directory's device fills up, as a Kafka client sees it (issue 42):
produces are refused with KAFKA_STORAGE_ERROR and nothing of them is written, every
acknowledged record reads back, and writing resumes by itself once space is freed.

Usage: disk_full.py PHASE BOOTSTRAP TOPIC

PHASE is one of:
  fill    creates TOPIC (1 partition) and produces 1 KiB records with acks=all and no
          retries, 100 at a time, until KAFKA_STORAGE_ERROR refuses every record of 3
          rounds in a row (at most 64 MiB sent);
          then reads the partition: exactly the acknowledged records, in order.
  resume  (after space is freed) produces 100 more records, every one acknowledged,
          and reads the whole partition: the records of both phases, in order, none
          lost, none doubled.

Prints one JSON line of what it saw; exits non-zero on failure.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

phase, bootstrap, topic = sys.argv[1], sys.argv[2], sys.argv[3]

RECORD_BYTES = 1024
MAX_SENT_BYTES = 64 * 1024 * 1024
ROUND = 100
REFUSED_ROUNDS = 3


def producer():
    # No retries: a refused record is reported at once with the broker's error, and a
    # record is either acknowledged or not written (no retry could write it later).
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "retries": 0,
            "linger.ms": 0,
            "message.timeout.ms": 20000,
        }
    )


def send(p, first, count):
    """Sends records first..first+count and waits for them; (acked values, error names)."""
    acked, errors = [], []

    def report(err, msg):
        if err is None:
            acked.append(msg.value())
        else:
            errors.append(err.name())

    for i in range(first, first + count):
        value = b"r%08d-" % i + b"x" * (RECORD_BYTES - 10)
        p.produce(topic, value, partition=0, on_delivery=report)
    assert p.flush(30) == 0, "records still unanswered"
    return acked, errors


def read_all():
    """Every record of partition 0 from offset 0 to the high watermark, in order."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": topic + "-reader", "enable.auto.commit": False}
    )
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=20)
    consumer.assign([TopicPartition(topic, 0, 0)])
    values, deadline = [], time.time() + 60
    while len(values) < high and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is None:
            continue
        assert not m.error(), m.error()
        values.append(m.value())
    consumer.close()
    assert len(values) == high, f"read {len(values)} of {high}"
    return values


if phase == "fill":
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        f.result(timeout=20)
    p = producer()
    acked, refused, in_a_row, sent = [], [], 0, 0
    while in_a_row < REFUSED_ROUNDS and sent < MAX_SENT_BYTES:
        ok, errors = send(p, len(acked) + len(refused), ROUND)
        sent += ROUND * RECORD_BYTES
        acked += ok
        refused += errors
        in_a_row = in_a_row + 1 if not ok else 0
    assert in_a_row == REFUSED_ROUNDS, f"never refused: {len(acked)} acknowledged"
    assert set(refused) == {"KAFKA_STORAGE_ERROR"}, f"refused with {set(refused)}"
    values = read_all()
    assert values == acked, (
        f"read {len(values)} records, {len(acked)} acknowledged; first difference at "
        f"{next((i for i, (a, b) in enumerate(zip(values, acked)) if a != b), None)}"
    )
    print(json.dumps({"acknowledged": len(acked), "refused": len(refused)}))
elif phase == "resume":
    before = read_all()
    p = producer()
    acked, errors = send(p, len(before), 100)
    assert not errors and len(acked) == 100, f"after space was freed: {errors[:5]}"
    values = read_all()
    assert values == before + acked, f"read {len(values)}, wanted {len(before) + len(acked)}"
    print(json.dumps({"before": len(before), "after": len(values)}))
else:
    sys.exit(f"unknown phase {phase}")
