"""aiokafka in a consumer group against a Weir broker's Kafka listener (it speaks the
oldest versions of the group apis the tested clients send: FindCoordinator v1,
JoinGroup v5, SyncGroup v3, Heartbeat v1, OffsetCommit v3, OffsetFetch v3, LeaveGroup
v1).

Usage: groups_aiokafka.py BOOTSTRAP TOPIC GROUP

TOPIC has 3 partitions, each holding 10 records valued "p:i". A consumer in GROUP reads
all 30, commits and stops (leaving the group); 3 more records are produced and a second
consumer in GROUP reads exactly those 3. Prints {"committed": {"0": n, ...}} at the end.
"""

import asyncio
import json
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

bootstrap, topic, group = sys.argv[1:4]
PARTITIONS, PER_PARTITION = 3, 10


def member():
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )


async def read(consumer, want):
    got = []
    async with asyncio.timeout(60):
        while len(got) < want:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend(records)
    return got


async def main():
    first = member()
    await first.start()
    records = await read(first, PARTITIONS * PER_PARTITION)
    values = sorted(r.value.decode() for r in records)
    assert values == sorted(
        f"{p}:{i}" for p in range(PARTITIONS) for i in range(PER_PARTITION)
    ), values
    await first.commit()
    await first.stop()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    for p in range(PARTITIONS):
        await producer.send_and_wait(topic, f"{p}:{PER_PARTITION}".encode(), partition=p)
    await producer.stop()

    second = member()
    await second.start()
    more = await read(second, PARTITIONS)
    assert sorted(r.value.decode() for r in more) == [
        f"{p}:{PER_PARTITION}" for p in range(PARTITIONS)
    ], more
    await second.commit()
    committed = {
        str(p): await second.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)
    }
    await second.stop()
    print(json.dumps({"committed": committed}))


asyncio.run(main())
