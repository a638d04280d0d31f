"""A checker of committed offsets across coordinator failovers, with confluent-kafka, run
by tests/tests/it/coordinator_kills.rs while it SIGKILLs the group's coordinator again and
again (issue 42: "a committed offset that a new coordinator does not see yet must never be
answered as 'no committed offset'").

Usage: coordinator_kill_checker.py BOOTSTRAP TOPIC GROUP SECONDS

One process, four threads: an idempotent producer (acks=all) writing keyed records
"v-<i>" at a steady rate for SECONDS, and a classic-protocol group of MEMBERS consumers,
each committing synchronously after every batch it reads. Checked as it runs:
- no member starts a partition (its first record after an assignment) below the highest
  offset the group has successfully committed for it (a coordinator that answered "no
  committed offset" would restart it at 0: `auto.offset.reset=earliest`);
- no member's offsets go backwards within one assignment;
- how long the whole group went without reading a record while records were being
  produced (the longest stall, counted from its first read: joining takes a while);
- how long an acknowledged record waited to be read (from its delivery report to its
  first read): unlike the stall, not lengthened by the producer's own waits (under the
  soak's faults a producer can go seconds without an acknowledgement, and the group then
  has nothing to read).
After the producer stops, the members read until every acknowledged record has been
read (or DRAIN_SECONDS pass). Prints one JSON line:
{"acked", "failed", "consumed", "missing" (up to 20 acknowledged values never read),
 "unproduced" (values read that were never sent), "violations" (up to 20),
 "longest_stall_s", "longest_stall_ended" (Unix time), "longest_unread_s", "commits",
 "commit_failures", "assignments"}.
WEIR_CKC_DEBUG=CONTEXTS (say "cgrp,consumer") turns on librdkafka's debug log of the
members; WEIR_CKC_STDERR=FILE sends stderr to FILE (the log of a soak is large). With the
stall's end time, the log shows what the members did during the longest stall.
"""

import json
import os
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer

bootstrap, topic, group, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
MEMBERS = 3
RECORDS_PER_SECOND = 100
# How long the members may take, after the producer stops, to read what it wrote.
DRAIN_SECONDS = 90
DEBUG = {"debug": os.environ["WEIR_CKC_DEBUG"]} if os.environ.get("WEIR_CKC_DEBUG") else {}
if os.environ.get("WEIR_CKC_STDERR"):
    os.dup2(os.open(os.environ["WEIR_CKC_STDERR"], os.O_WRONLY | os.O_CREAT | os.O_APPEND), 2)

lock = threading.Lock()
acked, failed = set(), set()
consumed = set()
acked_at = {}  # value -> when its delivery report came (monotonic), until it is read
committed = {}  # partition -> the highest offset the group committed successfully
violations = []
stats = {"commits": 0, "commit_failures": 0, "assignments": 0}
last_read = [None]  # when the group last read a record (None: never yet)
longest_stall = [0.0]
longest_stall_ended = [None]  # Unix time the longest stall ended
longest_unread = [0.0]
producing = threading.Event()
producing.set()
done = threading.Event()


def note_stall(seconds):
    """A stall of `seconds` ending now; the caller holds `lock`."""
    if seconds > longest_stall[0]:
        longest_stall[0] = seconds
        longest_stall_ended[0] = round(time.time(), 3)


def note_violation(text):
    with lock:
        if len(violations) < 20:
            violations.append(text)


def report(err, msg):
    value = msg.value().decode()
    with lock:
        if err is not None:
            failed.add(value)
            return
        acked.add(value)
        if value not in consumed:
            acked_at[value] = time.monotonic()


def produce():
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 120000,
        }
    )
    start = time.monotonic()
    total = int(seconds * RECORDS_PER_SECOND)
    for i in range(total):
        delay = start + i / RECORDS_PER_SECOND - time.monotonic()
        if delay > 0:
            producer.poll(delay)
        value = "v-%d" % i
        producer.produce(topic, key=value, value=value, on_delivery=report)
        producer.poll(0)
    # A stall still under way when the last record is sent counts too.
    with lock:
        if last_read[0] is not None:
            note_stall(time.monotonic() - last_read[0])
    producer.flush(120)
    producing.clear()


def member(index):
    # Per partition: the next offset this member expects after what it has read in its
    # current assignment (None: nothing read yet since it was assigned).
    position = {}

    def on_assign(consumer, partitions):
        with lock:
            stats["assignments"] += 1
        for tp in partitions:
            position[tp.partition] = None

    def on_revoke(consumer, partitions):
        for tp in partitions:
            position.pop(tp.partition, None)

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
            "client.id": "checker-%d" % index,
            **DEBUG,
        }
    )
    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    try:
        while not done.is_set():
            batch = consumer.consume(num_messages=200, timeout=0.5)
            read = [m for m in batch if m.error() is None]
            if not read:
                continue
            now = time.monotonic()
            with lock:
                if producing.is_set() and last_read[0] is not None:
                    note_stall(now - last_read[0])
                last_read[0] = now
            for m in read:
                p, o = m.partition(), m.offset()
                expected = position.get(p)
                with lock:
                    floor = committed.get(p, 0)
                if expected is None and o < floor:
                    note_violation(
                        "member %d started partition %d at offset %d, below the committed %d"
                        % (index, p, o, floor)
                    )
                if expected is not None and o < expected:
                    note_violation(
                        "member %d read partition %d at offset %d after %d"
                        % (index, p, o, expected - 1)
                    )
                position[p] = o + 1
                value = m.value().decode()
                with lock:
                    consumed.add(value)
                    at = acked_at.pop(value, None)
                    if at is not None:
                        longest_unread[0] = max(longest_unread[0], now - at)
            try:
                offsets = consumer.commit(asynchronous=False)
            except KafkaException:
                with lock:
                    stats["commit_failures"] += 1
                continue
            with lock:
                stats["commits"] += 1
                for tp in offsets or []:
                    if tp.error is None and tp.offset >= 0:
                        committed[tp.partition] = max(committed.get(tp.partition, 0), tp.offset)
    finally:
        consumer.close()


threads = [threading.Thread(target=member, args=(i,), daemon=True) for i in range(MEMBERS)]
for t in threads:
    t.start()
produce()
deadline = time.monotonic() + DRAIN_SECONDS
while time.monotonic() < deadline:
    with lock:
        if acked <= consumed:
            break
    time.sleep(0.5)
done.set()
for t in threads:
    t.join(30)
with lock:
    sent = {"v-%d" % i for i in range(int(seconds * RECORDS_PER_SECOND))}
    print(
        json.dumps(
            {
                "acked": len(acked),
                "failed": len(failed),
                "consumed": len(consumed),
                "missing": sorted(acked - consumed)[:20],
                "unproduced": sorted(consumed - sent)[:20],
                "violations": violations,
                "longest_stall_s": round(longest_stall[0], 2),
                "longest_stall_ended": longest_stall_ended[0],
                "longest_unread_s": round(longest_unread[0], 2),
                **stats,
            }
        ),
        flush=True,
    )
