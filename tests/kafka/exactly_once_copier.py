"""Exactly once through faults: a confluent-kafka consume-transform-produce loop.

Usage: exactly_once_copier.py BOOTSTRAP IN OUT COUNT LIMIT_SECONDS [RATE]

1. An idempotent producer writes COUNT keyed records to IN (keys k0..k29; the value of
   the n-th record of key k is "k:n"): {"step": "produced", "count": COUNT}. With RATE
   (records a second; the soak's form), it writes them at that pace on a thread of its
   own while the copy runs, and the copy goes on until it has copied them all.
2. A consumer of group "eo-copier" (read_committed, no auto commit) and a transactional
   producer ("eo-copier") copy IN to OUT, each record to the same partition number, in
   transactions of at most BATCH records whose input offsets go with them
   (send_offsets_to_transaction), pacing themselves so the copy takes a while (the test
   kills and pauses brokers meanwhile). Errors are handled as librdkafka's transaction
   API documents: a retriable one (a timeout) means the same call again, which resumes
   it; one that requires an abort aborts the transaction; any other (fenced, fatal)
   makes a new producer, and so does a send_offsets_to_transaction that has not returned
   STUCK_MARGIN seconds past its timeout (a librdkafka bug: see `watched`). After an
   abort or a new producer the consumer rewinds to the group's committed offsets, the
   standard recovery: what was copied in an aborted transaction is invisible to
   read_committed readers and is copied again.
   Ends when the committed offsets reach the end of IN or LIMIT_SECONDS pass.
3. A read_committed consumer (a group of its own) reads OUT from the beginning until it
   has COUNT records and nothing more comes for 3 s, or 60 s pass.

Prints {"step": "done", "commits", "aborts", "new_producers", "stuck_producers" (new
producers made because a call was stuck), "errors" (the first 30), "redelivered" (records
the consumer handed over again without the copier moving it back: [partition, offset,
the offset read before]),
"finished" (the copy reached the end), "longest_stall_s" (the longest time without a
committed transaction while input was waiting to be copied, from the first commit),
"read": {partition: [values in order]}, "doubles": for each value read twice (at most
10), its copies in the input and the output around each of its copies (`explain_doubles`)}.
Every call is bounded in time; a copier still running 90 s past LIMIT_SECONDS (a call
that did not return) prints every thread's stack on stderr and exits 1.
WEIR_EO_DEBUG=CONTEXTS (say "eos,cgrp,fetch") turns on librdkafka's debug log of the
input's producer and the copier's producer and consumer on stderr; WEIR_EO_STDERR=FILE
sends stderr to FILE (the debug log of a long run is large).
"""

import faulthandler
import json
import os
import sys
import threading
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)

bootstrap, source, target = sys.argv[1], sys.argv[2], sys.argv[3]
count, limit = int(sys.argv[4]), float(sys.argv[5])
rate = float(sys.argv[6]) if len(sys.argv) > 6 else None
KEYS = 30
BATCH = 25
# A call to the transaction API may take this long (a coordinator failover inside it).
CALL_TIMEOUT = 30
# How long past its timeout a call is given before the copier takes it as stuck.
STUCK_MARGIN = 15
GROUP = "eo-copier"
TRANSACTIONAL_ID = "eo-copier"
DEBUG = {"debug": os.environ["WEIR_EO_DEBUG"]} if os.environ.get("WEIR_EO_DEBUG") else {}
if os.environ.get("WEIR_EO_STDERR"):
    os.dup2(os.open(os.environ["WEIR_EO_STDERR"], os.O_WRONLY | os.O_CREAT | os.O_APPEND), 2)


def emit(**line):
    print(json.dumps(line), flush=True)


def produce_input():
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 5, **DEBUG})
    failed = []
    seq = [0] * KEYS

    def report(err, _msg):
        if err is not None:
            failed.append(str(err))

    start = time.monotonic()
    for i in range(count):
        if rate is not None:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        key = i % KEYS
        value = f"k{key}:{seq[key]}"
        seq[key] += 1
        producer.produce(source, key=f"k{key}", value=value, on_delivery=report)
        producer.poll(0)
    # Through the soak's faults too: librdkafka retries until message.timeout.ms (300 s).
    left = producer.flush(360)
    if failed or left:
        raise SystemExit(f"the input was not all written: {left} left, errors {failed[:5]}")
    emit(step="produced", count=count)


class Input:
    """The input: written before the copy starts, or (with RATE) beside it. `ends()` is
    None until it is all written, then each partition's end offset."""

    def __init__(self):
        self.written = threading.Event()
        self.failure = None
        self._ends = None
        if rate is None:
            produce_input()
            self._ends = input_ends()
            self.written.set()
        else:
            threading.Thread(target=self._write_beside, daemon=True).start()

    def _write_beside(self):
        try:
            produce_input()
            self._ends = input_ends()
        except BaseException as e:  # noqa: BLE001 (reported by the copy loop)
            self.failure = e
        self.written.set()

    def ends(self):
        if self.failure is not None:
            raise SystemExit(f"writing the input failed: {self.failure}")
        return self._ends if self.written.is_set() else None


def input_ends():
    """Each input partition's end offset, asked again for up to 120 s (a fault of the
    soak may be under way)."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "eo-probe"})
    deadline = time.monotonic() + 120
    while True:
        try:
            metadata = probe.list_topics(source, timeout=CALL_TIMEOUT)
            ends = {}
            for p in metadata.topics[source].partitions:
                _low, high = probe.get_watermark_offsets(TopicPartition(source, p),
                                                         timeout=CALL_TIMEOUT)
                ends[p] = high
            probe.close()
            return ends
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def new_producer():
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": TRANSACTIONAL_ID,
                         "transaction.timeout.ms": 60000, "linger.ms": 5, **DEBUG})
    producer.init_transactions(CALL_TIMEOUT)
    return producer


def note(errors, error):
    # Also as it happens, with the time: a run the test has to kill shows what failed.
    print(f"{time.time():.3f} copier error: {error}", file=sys.stderr, flush=True)
    if len(errors) < 30:
        errors.append(error)


def retried(call, what, deadline, errors):
    """`call()`, made again while it fails retriably and `deadline` has not passed."""
    while True:
        try:
            return call()
        except KafkaException as e:
            error = e.args[0]
            if not error.retriable() or time.monotonic() >= deadline:
                raise
            note(errors, f"{what}, retried: {error}")


class Stuck(Exception):
    """A transaction API call that did not return long after its own timeout."""


def watched(call, what, timeout):
    """`call()` on a thread of its own, raising `Stuck` if it has not returned `timeout`
    seconds later (its own timeout plus a margin).

    librdkafka's send_offsets_to_transaction can block past its timeout, for good, when
    the group coordinator it remembers is down and was dropped from the metadata (open
    librdkafka issues 5456 and 5511; seen here as a copier blocked for 5 minutes after
    the group coordinator's broker was paused). An application has no way out but a
    watchdog and a new producer, which is what the copier does; confluent-kafka lets go
    of the GIL inside the call, so the wait here is not held up by it."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as e:  # noqa: BLE001 (handed to the caller as it came)
            outcome["error"] = e

    thread = threading.Thread(target=run, name=what, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise Stuck(f"{what} has not returned {timeout} s after it was called")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def fresh_producer(deadline, errors):
    """A new transactional producer, retried until `deadline`; None if none could start."""
    while time.monotonic() < deadline:
        try:
            return new_producer()
        except KafkaException as e:
            note(errors, f"init_transactions: {e.args[0]}")
            time.sleep(1)
    return None


def rewind(consumer, committed, deadline, errors):
    """Seeks every assigned partition back to the group's committed offset, and notes
    those offsets in `committed` (a commit whose answer was lost may have happened)."""
    while time.monotonic() < deadline:
        assigned = consumer.assignment()
        if not assigned:
            return
        try:
            for tp in consumer.committed(assigned, timeout=CALL_TIMEOUT):
                offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
                if tp.offset >= 0:
                    committed[tp.partition] = tp.offset
            return
        except KafkaException as e:
            note(errors, f"rewind: {e.args[0]}")
            time.sleep(1)


def copy(source_input):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", **DEBUG})
    # Each partition's last record handed to the copy; forgotten at an assignment and at
    # a rewind, the copier's own moves. A record at or below it otherwise was handed over
    # again by the client itself (an offset reset, a truncation it detected): noted, as
    # what would copy a record twice.
    last_read = {}
    redelivered = []
    consumer.subscribe([source], on_assign=lambda _c, _parts: last_read.clear())
    producer = new_producer()
    commits = aborts = new_producers = 0
    errors = []
    stuck = []  # producers blocked in a call for good (see `watched`)
    committed = {}  # partition -> the group's committed offset, as far as the copier knows
    deadline = time.monotonic() + limit
    last_commit = None
    longest_stall = 0.0

    def copied_all():
        ends = source_input.ends()
        return ends is not None and all(committed.get(p, 0) >= ends[p] for p in ends)

    while time.monotonic() < deadline and not copied_all():
        records = [m for m in consumer.consume(BATCH, timeout=1.0) if m.error() is None]
        if not records:
            continue
        for m in records:
            before = last_read.get(m.partition())
            if before is not None and m.offset() <= before and len(redelivered) < 30:
                redelivered.append([m.partition(), m.offset(), before])
                note(errors, f"partition {m.partition()}: offset {m.offset()} handed over "
                             f"again after {before}")
            last_read[m.partition()] = m.offset()
        try:
            producer.begin_transaction()
            for m in records:
                producer.produce(target, key=m.key(), value=m.value(), partition=m.partition())
            positions = consumer.position(consumer.assignment())
            group = consumer.consumer_group_metadata()
            retried(lambda: watched(
                lambda: producer.send_offsets_to_transaction(positions, group, CALL_TIMEOUT),
                "send_offsets_to_transaction", CALL_TIMEOUT + STUCK_MARGIN),
                    "send_offsets_to_transaction", deadline, errors)
            retried(lambda: producer.commit_transaction(CALL_TIMEOUT), "commit_transaction",
                    deadline, errors)
            commits += 1
            now = time.monotonic()
            if last_commit is not None:
                longest_stall = max(longest_stall, now - last_commit)
            last_commit = now
            if commits % 20 == 0:
                # Progress, so a run the test has to kill shows how far it came.
                emit(step="copying", commits=commits, aborts=aborts,
                     committed={str(p): o for p, o in committed.items()})
            for tp in positions:
                if tp.offset >= 0:
                    committed[tp.partition] = tp.offset
        except (Stuck, KafkaException) as e:
            error = e.args[0] if isinstance(e, KafkaException) else None
            note(errors, str(e if error is None else error))
            aborted = False
            if error is not None and not error.fatal() and error.txn_requires_abort():
                try:
                    retried(lambda: producer.abort_transaction(CALL_TIMEOUT),
                            "abort_transaction", deadline, errors)
                    aborts += 1
                    aborted = True
                except KafkaException as again:
                    note(errors, f"abort: {again.args[0]}")
            if not aborted:
                # Fenced, failed fatally, stuck, or the abort failed: a new producer, whose
                # InitProducerId fences the old one and aborts whatever it left open. The
                # old one is destroyed first (a destroy that hangs shows in the stack
                # dump), unless it is stuck in a call: destroying it would block as well.
                if error is None:
                    stuck.append(producer)
                producer = None
                producer = fresh_producer(deadline, errors)
                if producer is None:
                    break
                new_producers += 1
            rewind(consumer, committed, deadline, errors)
            last_read.clear()
        # Paced: the copy must last through the test's faults.
        time.sleep(0.1)
    emit(step="copy-ended", commits=commits, aborts=aborts, new_producers=new_producers,
         stuck_producers=len(stuck), errors=errors[-5:])
    consumer.close()
    emit(step="consumer-closed")
    return dict(commits=commits, aborts=aborts, new_producers=new_producers,
                stuck_producers=len(stuck), errors=errors, redelivered=redelivered,
                finished=copied_all(), longest_stall_s=round(longest_stall, 2),
                committed={str(p): o for p, o in committed.items()})


def read_all(topic, partitions, isolation, group, expected):
    """Every record of `topic`'s `partitions` as an `isolation` ("read_committed" or
    "read_uncommitted") consumer of its own group reads it from the beginning:
    {partition: [(offset, value)]}, once it has `expected` records and nothing more comes
    for 3 s, or 60 s pass."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "isolation.level": isolation})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    read = {str(p): [] for p in partitions}
    total = 0
    deadline = time.monotonic() + 60
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        batch = consumer.consume(500, timeout=0.5)
        got = [m for m in batch if m.error() is None]
        for m in got:
            read[str(m.partition())].append((m.offset(), m.value().decode()))
        total += len(got)
        if got:
            quiet_since = time.monotonic()
        elif total >= expected and time.monotonic() - quiet_since > 3:
            break
    consumer.close()
    return read


def places(read):
    """{value: [[partition, offset], ...]}: where `read` holds each value."""
    where = {}
    for p, records in read.items():
        for offset, value in records:
            where.setdefault(value, []).append([int(p), offset])
    return where


def explain_doubles(output, partitions):
    """Where a value read twice from the output came from, to tell a broker's fault from
    another: whether the input holds it twice too (its idempotent producer wrote it
    twice), and the output around each copy as a read_uncommitted reader sees it (a copy
    that read_committed should have dropped sits in an aborted transaction; offsets
    missing from both reads are control batches)."""
    twice = {v: where for v, where in places(output).items() if len(where) > 1}
    if not twice:
        return {}
    in_input = places(read_all(source, partitions, "read_uncommitted", "eo-input-reader",
                               count))
    uncommitted = read_all(target, partitions, "read_uncommitted", "eo-raw-reader", count)
    committed_at = {(int(p), o) for p, records in output.items() for o, _ in records}
    explained = {}
    for value, copies in list(twice.items())[:10]:
        around = []
        for p, offset in copies:
            records = uncommitted[str(p)]
            near = [[o, v, (p, o) in committed_at] for o, v in records if abs(o - offset) <= 4]
            around.append({"partition": p, "offset": offset,
                           "near (offset, value, read_committed reads it)": near})
        explained[value] = {"input_copies": in_input.get(value, []),
                            "output_copies": around}
    return explained


def read_output(partitions):
    """The output as a read_committed reader sees it ({partition: [values]}), and an
    account of any value in it twice (`explain_doubles`)."""
    # The reads' own bound (each at most 60 s), in place of the copy's.
    faulthandler.dump_traceback_later(240, exit=True)
    output = read_all(target, partitions, "read_committed", "eo-reader", count)
    values = {p: [v for _, v in records] for p, records in output.items()}
    return values, explain_doubles(output, partitions)


faulthandler.dump_traceback_later(limit + 90, exit=True)
source_input = Input()
outcome = copy(source_input)
read, doubles = read_output(sorted(source_input.ends() or []))
emit(step="done", read=read, doubles=doubles, **outcome)
