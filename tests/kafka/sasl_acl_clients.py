"""SASL_SSL (SCRAM-SHA-512, PLAIN) and ACLs on a Weir broker, with kafka-python and
confluent-kafka (librdkafka) as Weir's users run them.

Usage: sasl_acl_clients.py BOOTSTRAP CERTS_DIR ADMIN_USER ADMIN_PASSWORD

The broker runs with TLS on its Kafka listener (CERTS_DIR is what `weir dev certs`
writes), authentication required, authorization on, and ADMIN_USER as its bootstrap
admin. As the admin, the script creates users and topics and grants ACLs through
Kafka's admin apis (AlterUserScramCredentials, CreateAcls); then checks, as those
users, what each may and may not do: records written and read back in order where
allowed, TOPIC_AUTHORIZATION_FAILED where not, a topic the user may not describe left
out of its metadata, the operations DescribeTopics and DescribeCluster say each user
may do, a DENY winning over an ALLOW, prefixed ACLs, a wrong password and an unknown
user refused alike. Exits non-zero on any failure; prints one line per
check.
"""

import os
import sys
import time

START = time.monotonic()

from confluent_kafka import Consumer, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import KafkaError, TopicAuthorizationFailedError

bootstrap, certs, admin_user, admin_password = sys.argv[1:5]
RECORDS = 20


def say(what):
    print("%s (%.1f s)" % (what, time.monotonic() - START), flush=True)


def confluent(user, password, mechanism="SCRAM-SHA-512"):
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": os.path.join(certs, "ca.pem"),
    }


def kafka_python(user, password, mechanism="SCRAM-SHA-512"):
    return dict(
        bootstrap_servers=[bootstrap],
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_plain_username=user,
        sasl_plain_password=password,
        ssl_cafile=os.path.join(certs, "ca.pem"),
    )


def wait_all(futures, what):
    for key, future in futures.items():
        try:
            future.result(timeout=20)
        except Exception as e:  # noqa: BLE001 - report which one
            raise AssertionError(f"{what} {key}: {e}") from e


# The admin exists once the broker has written its credentials: retry until it answers.
admin = AdminClient(confluent(admin_user, admin_password))
deadline = time.monotonic() + 20
while True:
    try:
        admin.list_topics(timeout=5)
        break
    except KafkaException:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
say("the bootstrap admin authenticates with SCRAM-SHA-512")

# Users, as kafka-configs --alter --add-config 'SCRAM-SHA-512=[password=...]' makes them.
upserts = [
    UserScramCredentialUpsertion(name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode())
    for name, password in [("alice", "alice-secret"), ("bob", "bob-secret")]
]
wait_all(admin.alter_user_scram_credentials(upserts), "user")
described = admin.describe_user_scram_credentials(["alice", "bob"])
for name, future in described.items():
    infos = future.result(timeout=10).scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in infos] == [(ScramMechanism.SCRAM_SHA_512, 8192)], infos
say("users alice and bob created with AlterUserScramCredentials, described back")

topics = ["orders", "secret", "pay.eu", "pay.us"]
wait_all(admin.create_topics([NewTopic(t, 1, 1) for t in topics]), "topic")
acls = [
    AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.WRITE, AclPermissionType.ALLOW),
    AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW),
    AclBinding(ResourceType.GROUP, "alice-", ResourcePatternType.PREFIXED, "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW),
    AclBinding(ResourceType.TOPIC, "pay.", ResourcePatternType.PREFIXED, "User:alice", "*", AclOperation.ALL, AclPermissionType.ALLOW),
    AclBinding(ResourceType.TOPIC, "pay.us", ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.READ, AclPermissionType.DENY),
]
wait_all(admin.create_acls(acls), "ACL")
listed = admin.describe_acls(
    AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice", None, AclOperation.ANY, AclPermissionType.ANY)
).result(timeout=10)
assert sorted(map(str, listed)) == sorted(map(str, acls)), (listed, acls)
say("5 ACLs created with CreateAcls and listed back with DescribeAcls")

# alice writes and reads orders, in a group she may read.
producer = Producer({**confluent("alice", "alice-secret"), "acks": "all", "enable.idempotence": True})
errors = []
for i in range(RECORDS):
    producer.produce("orders", value=b"order-%d" % i, partition=0, on_delivery=lambda err, msg: err and errors.append(err))
assert producer.flush(30) == 0 and not errors, errors
consumer = Consumer({**confluent("alice", "alice-secret"), "group.id": "alice-app", "auto.offset.reset": "earliest", "enable.auto.commit": False})
consumer.subscribe(["orders"])
values = []
while len(values) < RECORDS:
    msg = consumer.poll(10)
    assert msg is not None, f"nothing more after {len(values)} records"
    if msg.error():
        raise KafkaException(msg.error())
    values.append(msg.value())
consumer.commit(asynchronous=False)
consumer.close()
assert values == [b"order-%d" % i for i in range(RECORDS)], values
say("alice (confluent-kafka, SCRAM-SHA-512): %d records written to orders and read back in group alice-app" % RECORDS)

# What alice may not describe is not in her metadata; what she may, is.
visible = set(AdminClient(confluent("alice", "alice-secret")).list_topics(timeout=10).topics)
assert visible == {"orders", "pay.eu", "pay.us"}, visible
say("alice's metadata lists orders, pay.eu and pay.us, not secret")

# The operations each principal may do, as DescribeTopics and DescribeCluster answer
# them: alice's from her ACLs (READ and WRITE imply DESCRIBE; the DENY takes READ off
# pay.us), the admin's (a super user) every one.
alice_admin = AdminClient(confluent("alice", "alice-secret"))


def operations(client, topic):
    described = client.describe_topics(TopicCollection([topic]), include_authorized_operations=True)
    return sorted(op.name for op in described[topic].result(timeout=10).authorized_operations)


assert operations(alice_admin, "orders") == ["DESCRIBE", "READ", "WRITE"], operations(alice_admin, "orders")
assert operations(alice_admin, "pay.us") == [
    "ALTER", "ALTER_CONFIGS", "CREATE", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS", "WRITE"], operations(alice_admin, "pay.us")
assert len(operations(admin, "secret")) == 8, operations(admin, "secret")
cluster = alice_admin.describe_cluster(include_authorized_operations=True).result(timeout=10)
assert not cluster.authorized_operations, cluster.authorized_operations
cluster = admin.describe_cluster(include_authorized_operations=True).result(timeout=10)
assert len(cluster.authorized_operations) == 7, cluster.authorized_operations
say("alice's authorized operations: DESCRIBE, READ, WRITE on orders, all but READ on pay.us, none on the cluster")

# Writing to secret: TOPIC_AUTHORIZATION_FAILED.
denied = KafkaProducer(acks="all", retries=0, **kafka_python("alice", "alice-secret"))
try:
    denied.send("secret", b"nope").get(timeout=15)
except TopicAuthorizationFailedError:
    say("alice (kafka-python) writing to secret: TopicAuthorizationFailedError")
else:
    raise AssertionError("alice wrote to secret")
finally:
    denied.close()

# Prefixed ALLOW ALL on pay.*, with a DENY READ on pay.us that wins over it.
producer = KafkaProducer(acks="all", **kafka_python("alice", "alice-secret"))
for topic in ["pay.eu", "pay.us"]:
    for i in range(RECORDS):
        producer.send(topic, value=b"%s-%d" % (topic.encode(), i), partition=0).get(timeout=15)
producer.close()
consumer = KafkaConsumer(enable_auto_commit=False, **kafka_python("alice", "alice-secret"))
consumer.assign([KpTopicPartition("pay.eu", 0)])
consumer.seek_to_beginning()
values = []
for _ in range(40):
    for records in consumer.poll(timeout_ms=500).values():
        values.extend(r.value for r in records)
    if len(values) >= RECORDS:
        break
assert values == [b"pay.eu-%d" % i for i in range(RECORDS)], values
consumer.assign([KpTopicPartition("pay.us", 0)])
consumer.seek_to_beginning()
try:
    for _ in range(20):
        consumer.poll(timeout_ms=500)
except TopicAuthorizationFailedError:
    say("alice writes pay.eu and pay.us (prefixed ALLOW), reads pay.eu back, and is refused pay.us (DENY READ wins)")
else:
    raise AssertionError("alice read pay.us through a DENY")
finally:
    consumer.close()

# bob has no ACL: he sees no topic and writes none.
visible = AdminClient(confluent("bob", "bob-secret")).list_topics(timeout=10).topics
assert not visible, visible
producer = Producer({**confluent("bob", "bob-secret"), "message.timeout.ms": 5000})
errors = []
producer.produce("orders", value=b"bob", on_delivery=lambda err, msg: err and errors.append(err))
producer.flush(10)
assert errors and "AUTHORIZATION" in errors[0].name(), errors
say("bob (no ACL) sees no topic and is refused writing to orders (%s)" % errors[0].name())

# CreateTopics with validate_only tells bob nothing of which topics exist: an existing
# and a missing name get the same refusal, as Kafka answers.
bob_admin = AdminClient(confluent("bob", "bob-secret"))
for name in ["orders", "no-such-topic"]:
    future = bob_admin.create_topics([NewTopic(name, 1, 1)], validate_only=True)[name]
    try:
        future.result(timeout=20)
    except KafkaException as e:
        code = e.args[0].name()
        assert code == "TOPIC_AUTHORIZATION_FAILED", (name, code)
    else:
        raise AssertionError(f"bob validated creating {name}")
say("bob's validate_only CreateTopics: TOPIC_AUTHORIZATION_FAILED for an existing and a missing topic alike")
# With Create, validate_only runs the controller's checks and creates nothing.
checks = admin.create_topics(
    [NewTopic("orders", 1, 1), NewTopic("fresh", 2, 1), NewTopic("too-many-copies", 1, 9)],
    validate_only=True,
)
for name, want in [("orders", "TOPIC_ALREADY_EXISTS"), ("fresh", None), ("too-many-copies", "INVALID_REPLICATION_FACTOR")]:
    try:
        checks[name].result(timeout=20)
        got = None
    except KafkaException as e:
        got = e.args[0].name()
    assert got == want, (name, got, want)
assert "fresh" not in admin.list_topics(timeout=10).topics
say("the admin's validate_only CreateTopics: the controller's own refusals, nothing created")

# PLAIN over TLS, with kafka-python.
consumer = KafkaConsumer(enable_auto_commit=False, **kafka_python("alice", "alice-secret", "PLAIN"))
consumer.assign([KpTopicPartition("orders", 0)])
consumer.seek_to_beginning()
count = 0
for _ in range(40):
    count += sum(len(r) for r in consumer.poll(timeout_ms=500).values())
    if count >= RECORDS:
        break
consumer.close()
assert count == RECORDS, count
say("alice (kafka-python, PLAIN over TLS) reads orders")

# A wrong password and an unknown user are refused alike.
for user, password in [("alice", "wrong"), ("mallory", "alice-secret")]:
    try:
        KafkaProducer(request_timeout_ms=2000, bootstrap_timeout_ms=2000, **kafka_python(user, password))
    except KafkaError as e:
        say("%s with a %s password: refused (%s)" % (user, "wrong" if user == "alice" else "made-up", type(e).__name__))
    else:
        raise AssertionError(f"{user} authenticated with a bad password")

# Removing alice's ACLs with DeleteAcls takes orders away from her.
deleted = admin.delete_acls(
    [AclBindingFilter(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", None, AclOperation.ANY, AclPermissionType.ANY)]
)
for future in deleted.values():
    assert len(future.result(timeout=10)) == 2
visible = set(AdminClient(confluent("alice", "alice-secret")).list_topics(timeout=10).topics)
assert visible == {"pay.eu", "pay.us"}, visible
say("DeleteAcls removed alice's 2 ACLs on orders: it left her metadata")
