"""aiokafka against a Weir broker's Kafka listener.

Usage: aiokafka_client.py BOOTSTRAP TOPIC

Sends 100 keyed records with acks=all (the topic is created on first use), reads them
back with getmany(max_records=...) from an assigned partition after a seek, and checks
each comes back once, in order, with its key and value. Exits non-zero on failure.
"""

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
RECORDS = 100


async def main():
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(RECORDS):
            await producer.send_and_wait(topic, key=b"k", value=b"v-%d" % i, partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        values = []
        for _ in range(60):
            batches = await consumer.getmany(tp, timeout_ms=500, max_records=30)
            for records in batches.values():
                assert len(records) <= 30
                values.extend((r.offset, r.value) for r in records)
            if len(values) >= RECORDS:
                break
        assert values == [(i, b"v-%d" % i) for i in range(RECORDS)], values[:5]
    finally:
        await consumer.stop()
    print("aiokafka: ok", file=sys.stderr)


asyncio.run(main())
