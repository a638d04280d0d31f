"""kafka-python and confluent-kafka (librdkafka) over TLS to a Weir broker's Kafka listener.

Usage: tls_clients.py BOOTSTRAP CERTS_DIR TOPIC

CERTS_DIR is what `weir dev certs` writes. Each client connects with
security.protocol=SSL, trusting only ca.pem and checking the broker's host name, and
presenting a client certificate (mutual TLS): confluent-kafka client.pem, kafka-python
admin.pem. Each produces 50 records with acks=all and reads them back, each once, in
order. A client that does not trust the broker's CA must fail to connect. Exits
non-zero on any failure; prints one line per client on success.
"""

import os
import time

START = time.monotonic()
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import KafkaError

bootstrap, certs, topic = sys.argv[1], sys.argv[2], sys.argv[3]
RECORDS = 50


def pem(name):
    return os.path.join(certs, name)


# confluent-kafka, with the client certificate.
ssl = {
    "bootstrap.servers": bootstrap,
    "security.protocol": "SSL",
    "ssl.ca.location": pem("ca.pem"),
    "ssl.certificate.location": pem("client.pem"),
    "ssl.key.location": pem("client-key.pem"),
}
producer = Producer({**ssl, "acks": "all", "enable.idempotence": True})
errors = []
for i in range(RECORDS):
    producer.produce(
        topic,
        value=b"ck-%d" % i,
        partition=0,
        on_delivery=lambda err, msg: err and errors.append(err),
    )
assert producer.flush(30) == 0, "unsent records"
assert not errors, errors
consumer = Consumer({**ssl, "group.id": "tls-check", "enable.auto.commit": False})
consumer.assign([TopicPartition(topic, 0, 0)])
values = []
while len(values) < RECORDS:
    msg = consumer.poll(10)
    assert msg is not None, f"nothing more after {len(values)} records"
    if msg.error():
        raise KafkaException(msg.error())
    values.append(msg.value())
consumer.close()
assert values == [b"ck-%d" % i for i in range(RECORDS)], values
print("confluent-kafka over TLS: %d records written and read back (%.1f s)" % (RECORDS, time.monotonic() - START))

# kafka-python, with the admin certificate, after the records above.
ssl = dict(
    bootstrap_servers=[bootstrap],
    security_protocol="SSL",
    ssl_cafile=pem("ca.pem"),
    ssl_certfile=pem("admin.pem"),
    ssl_keyfile=pem("admin-key.pem"),
)
producer = KafkaProducer(acks="all", **ssl)
for i in range(RECORDS):
    producer.send(topic, value=b"kp-%d" % i, partition=0)
producer.flush(timeout=30)
producer.close()
consumer = KafkaConsumer(enable_auto_commit=False, **ssl)
consumer.assign([KpTopicPartition(topic, 0)])
consumer.seek(KpTopicPartition(topic, 0), RECORDS)
values = []
for _ in range(40):
    for records in consumer.poll(timeout_ms=500).values():
        values.extend(r.value for r in records)
    if len(values) >= RECORDS:
        break
consumer.close()
assert values == [b"kp-%d" % i for i in range(RECORDS)], values
print("kafka-python over TLS: %d records written and read back (%.1f s)" % (RECORDS, time.monotonic() - START))

# A client that trusts another CA (here: the system's) is refused by its own check: it
# cannot bootstrap.
try:
    KafkaProducer(
        bootstrap_servers=[bootstrap],
        security_protocol="SSL",
        request_timeout_ms=3000,
        bootstrap_timeout_ms=3000,
    )
except KafkaError as e:
    print(
        "an untrusted broker certificate: no connection (%s, %.1f s)"
        % (type(e).__name__, time.monotonic() - START)
    )
else:
    raise AssertionError("a client connected without trusting the broker's CA")
