"""What Kafka transactions cost, measured with confluent-kafka (librdkafka), the client
stream processors use. Run by benches/compare-transactions.sh, one leg per call:

  transactions.py produce BOOTSTRAP TOPIC idempotent|transactional RECORDS SIZE TXN_RECORDS
  transactions.py consume BOOTSTRAP TOPIC read_committed|read_uncommitted RECORDS

produce: RECORDS records of SIZE bytes to partition 0 of TOPIC, acks=all, with an
idempotent producer, or with a transactional one that commits every TXN_RECORDS
records (begin, produce, commit_transaction: the commit waits for the batches and then
for the coordinator's answer, as a stream processor's does). The clock runs from the
first record to the last acknowledgement (the last commit).

consume: reads partition 0 of TOPIC from the beginning with the isolation level given
until RECORDS records came back; the clock runs from the first record to the last.

Prints one JSON line: {"records", "seconds", "records_per_sec", "mb_per_sec"}. Exits
non-zero when a leg fails or does not finish within its bound.
"""

import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

# A leg that takes longer than this has failed (the script's legs take seconds).
LEG_LIMIT_S = 300
CALL_TIMEOUT_S = 60


def report(records, seconds, size):
    print(
        json.dumps(
            {
                "records": records,
                "seconds": round(seconds, 4),
                "records_per_sec": records / seconds,
                "mb_per_sec": records * size / seconds / 1e6,
            }
        ),
        flush=True,
    )


def produce(bootstrap, topic, mode, records, size, txn_records):
    config = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
    }
    transactional = mode == "transactional"
    if transactional:
        config["transactional.id"] = f"bench-{topic}"
    p = Producer(config)
    if transactional:
        p.init_transactions(CALL_TIMEOUT_S)
    value = b"x" * size
    failed = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(err)

    deadline = time.monotonic() + LEG_LIMIT_S
    started = time.perf_counter()
    sent = 0
    while sent < records:
        if time.monotonic() > deadline:
            sys.exit(f"produce: {sent} of {records} sent in {LEG_LIMIT_S} s")
        batch = min(txn_records, records - sent) if transactional else records - sent
        if transactional:
            p.begin_transaction()
        for _ in range(batch):
            while True:
                try:
                    p.produce(topic, value=value, partition=0, on_delivery=delivered)
                    break
                except BufferError:
                    p.poll(0.001)
            p.poll(0)
        sent += batch
        if transactional:
            p.commit_transaction(CALL_TIMEOUT_S)
    left = p.flush(CALL_TIMEOUT_S)
    seconds = time.perf_counter() - started
    if left or failed:
        sys.exit(f"produce: {left} undelivered, {len(failed)} failed: {failed[:3]}")
    report(records, seconds, size)


def consume(bootstrap, topic, isolation, records):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{topic}-{isolation}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
        }
    )
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = 0
    size = 0
    started = None
    deadline = time.monotonic() + LEG_LIMIT_S
    while got < records:
        if time.monotonic() > deadline:
            sys.exit(f"consume: {got} of {records} in {LEG_LIMIT_S} s")
        for m in c.consume(10_000, 1.0):
            if m.error():
                raise KafkaException(m.error())
            if started is None:
                started = time.perf_counter()
            got += 1
            size = len(m.value())
    seconds = time.perf_counter() - started
    c.close()
    if got != records:
        sys.exit(f"consume: {got} records where {records} were committed")
    report(got, seconds, size)


def main():
    leg, bootstrap, topic = sys.argv[1:4]
    if leg == "produce":
        mode, records, size, txn_records = sys.argv[4:8]
        produce(bootstrap, topic, mode, int(records), int(size), int(txn_records))
    elif leg == "consume":
        isolation, records = sys.argv[4:6]
        consume(bootstrap, topic, isolation, int(records))
    else:
        sys.exit(f"unknown leg {leg!r}: produce or consume")


if __name__ == "__main__":
    main()
