"""confluent-kafka (librdkafka) static group members (KIP-345, group.instance.id) against
a Weir broker's Kafka listener, as librdkafka's test 0102 uses them.

Usage: groups_static_confluent.py BOOTSTRAP TOPIC GROUP

TOPIC has 3 partitions. Two consumers with instance ids "static-a" and "static-b" share
them. b is closed (a static member sends no LeaveGroup) and started again with the same
instance id: it must get its old partitions back well within its session timeout (the
broker answers its JoinGroup at once), while a sees no rebalance at all (no revoke, no
new assignment). Then a third consumer starts with b's instance id: the running b is
fenced (a fatal FENCED_INSTANCE_ID), and a still sees no rebalance. Prints one JSON line
with what it measured; exits non-zero (an assertion) if any of this does not hold.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaError

bootstrap, topic, group = sys.argv[1:4]
PARTITIONS = 3
SESSION_TIMEOUT_MS = 10000


class Member:
    def __init__(self, instance):
        self.events = []
        self.assignment = []
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "group.instance.id": instance,
                "group.protocol": "classic",
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe([topic], on_assign=self.on_assign, on_revoke=self.on_revoke)

    def on_assign(self, consumer, partitions):
        self.assignment = sorted(tp.partition for tp in partitions)
        self.events.append(("assign", self.assignment))

    def on_revoke(self, consumer, partitions):
        self.events.append(("revoke", sorted(tp.partition for tp in partitions)))
        self.assignment = []

    def poll(self):
        """Polls once; returns the error of a message that carries one."""
        for m in self.consumer.consume(num_messages=100, timeout=0.1):
            if m.error() is not None and m.error().code() != KafkaError._PARTITION_EOF:
                return m.error()
        return None


def until(what, members, done, limit=30):
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for m in members:
            error = m.poll()
            assert error is None, f"{what}: {error}"


a, b = Member("static-a"), Member("static-b")
until(
    "both members assigned",
    [a, b],
    lambda: a.assignment and b.assignment and len(a.assignment) + len(b.assignment) == PARTITIONS,
    limit=60,
)
# Settle: no rebalance is pending (both have polled through their assignment).
for _ in range(10):
    a.poll()
    b.poll()
a_events, b_assignment = len(a.events), b.assignment

b.consumer.close()
started = time.monotonic()
b = Member("static-b")
until("the restarted member assigned", [a, b], lambda: b.assignment)
restart_s = time.monotonic() - started
assert b.assignment == b_assignment, f"restarted with {b.assignment}, had {b_assignment}"
assert restart_s < SESSION_TIMEOUT_MS / 1000 / 2, f"the restart took {restart_s:.1f} s"
for _ in range(10):
    a.poll()
    b.poll()
assert a.events[a_events:] == [], f"the other member saw a rebalance: {a.events[a_events:]}"

# A second consumer with b's instance id fences the running one.
c = Member("static-b")
fenced = None
deadline = time.monotonic() + 30
while fenced is None:
    assert time.monotonic() < deadline, "the older consumer with instance id static-b was not fenced"
    c.poll()
    a.poll()
    fenced = b.poll()
# librdkafka raises FENCED_INSTANCE_ID as a fatal error (_FATAL, naming the cause).
assert fenced.code() == KafkaError._FATAL or fenced.fatal(), f"not fatal: {fenced}"
assert "fenced" in str(fenced).lower(), str(fenced)
until("the newest consumer assigned", [a, c], lambda: c.assignment)
for _ in range(10):
    a.poll()
    c.poll()
assert a.events[a_events:] == [], f"the other member saw a rebalance: {a.events[a_events:]}"

print(
    json.dumps(
        {
            "restart_s": round(restart_s, 3),
            "assignment": b_assignment,
            "fenced": str(fenced),
            "other_member_events": a.events[a_events:],
        }
    ),
    flush=True,
)
for m in (a, c):
    m.consumer.close()
