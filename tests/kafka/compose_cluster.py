"""Kafka clients on the host against the compose cluster (deploy/compose), through each
node's external Kafka listener, as a user on the host runs them with kafka-python.

Usage: compose_cluster.py ADDRESSES_JSON

ADDRESSES_JSON maps each node id to the host address of its external Kafka listener,
e.g. {"1": "127.0.0.1:19092", "2": "127.0.0.1:29092", "3": "127.0.0.1:39092"}. Checks:
bootstrapped from any node, a client is told every broker at its host address (so it
reaches every leader); a topic that does not exist is not created by a producer
(WEIR_AUTO_CREATE_TOPICS=false); a topic created with replication factor 3 takes 60
records from an idempotent acks=all producer, spread over every broker's partitions, and
a consumer reads them all back, assigned and then in a group (whose coordinator is named
at its host address too). Exits non-zero on any failure.
"""

import json
import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError

addresses = {int(k): v for k, v in json.loads(sys.argv[1]).items()}
expected = sorted((node, *addr.rsplit(":", 1)) for node, addr in addresses.items())
expected = [(node, host, int(port)) for node, host, port in expected]
TOPIC = "kafka-from-host"
RECORDS = 60

for node, bootstrap in sorted(addresses.items()):
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=10000)
    cluster = admin.describe_cluster()
    told = sorted((b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"])
    assert told == expected, f"bootstrapped from node {node}: told {told}, not {expected}"
    admin.close()

bootstrap = list(addresses.values())
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                         max_block_ms=3000)
try:
    producer.send("kafka-no-such-topic", b"x").get(timeout=5)
    raise AssertionError("a produce to a topic that does not exist created it")
except KafkaTimeoutError:
    pass
admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
assert "kafka-no-such-topic" not in admin.list_topics()

admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=3)])
leaders = {p["leader_id"] for p in admin.describe_topics([TOPIC])[0]["partitions"]}
admin.close()
sent = set()
for i in range(RECORDS):
    md = producer.send(TOPIC, value=b"host-%d" % i, partition=i % 3).get(timeout=30)
    sent.add((md.partition, md.offset))
producer.close()
assert len(sent) == RECORDS

consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
partitions = [TopicPartition(TOPIC, p) for p in range(3)]
consumer.assign(partitions)
consumer.seek_to_beginning()
read = set()
for _ in range(60):
    for records in consumer.poll(timeout_ms=500).values():
        read.update((r.partition, r.offset) for r in records)
    if len(read) >= RECORDS:
        break
consumer.close()
assert read == sent, f"read {len(read)} of {RECORDS} records"

# A consumer in a group: its coordinator too is named at its host address.
consumer = KafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id="from-host",
                         auto_offset_reset="earliest", enable_auto_commit=False)
in_group = set()
for _ in range(120):
    for records in consumer.poll(timeout_ms=500).values():
        in_group.update((r.partition, r.offset) for r in records)
    if len(in_group) >= RECORDS:
        break
consumer.commit()
consumer.close()
assert in_group == sent, f"the group read {len(in_group)} of {RECORDS} records"
print(json.dumps({"leaders": sorted(leaders), "records": RECORDS, "group": "from-host"}))
