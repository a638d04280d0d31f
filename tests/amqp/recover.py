"""`basic.recover` against Weir's AMQP listener, as a pika user calls it:

- `basic_get` without acks, then `basic_recover(requeue=True)`: every message the channel
  held is delivered again, `redelivered` set, in publish order, none lost or doubled; a
  message published after is not marked redelivered;
- a consumer with `prefetch_count=2` that has not acked what it holds: after the
  recover it gets those two again (`redelivered`), then the rest;
- `requeue=False`, which RabbitMQ does not implement: the connection is closed with 540.

Bounded loops: every wait has a deadline.

    python recover.py PORT

Prints one JSON line.
"""
import json
import sys
import time

import pika

port = int(sys.argv[1])
params = pika.ConnectionParameters(host="localhost", port=port)
DEADLINE_S = 20

connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.confirm_delivery()


def get(queue):
    """One basic_get (bounded retries): (body, redelivered), or None."""
    for _ in range(100):
        method, _, body = channel.basic_get(queue=queue)
        if method is not None:
            return method, body.decode()
        connection.sleep(0.05)
    return None


# basic_get, nothing acked, recover: all three again, redelivered, in order.
channel.queue_declare(queue="recover")
for i in range(3):
    channel.basic_publish(exchange="", routing_key="recover", body=f"p{i}")
first = []
for _ in range(3):
    method, body = get("recover")
    first.append({"body": body, "redelivered": method.redelivered})
channel.basic_recover(requeue=True)
channel.basic_publish(exchange="", routing_key="recover", body="p3")
again = []
while len(again) < 5:
    got = get("recover")
    if got is None:
        break
    method, body = got
    again.append({"body": body, "redelivered": method.redelivered})
    channel.basic_ack(method.delivery_tag)
    if body == "p3":
        break
left = channel.queue_declare(queue="recover", passive=True).method.message_count

# A consumer holding two (its prefetch) recovers them, then gets the third.
channel.queue_declare(queue="recover2")
for i in range(3):
    channel.basic_publish(exchange="", routing_key="recover2", body=f"c{i}")
consumer = connection.channel()
consumer.basic_qos(prefetch_count=2)
deliveries = []
held = []


def on_message(ch, method, properties, body):
    deliveries.append({"body": body.decode(), "redelivered": method.redelivered})
    held.append(method.delivery_tag)


consumer.basic_consume(queue="recover2", on_message_callback=on_message)
deadline = time.monotonic() + DEADLINE_S
while len(deliveries) < 2 and time.monotonic() < deadline:
    connection.process_data_events(time_limit=0.05)
# Nothing more comes while the prefetch is full.
connection.process_data_events(time_limit=0.3)
before_recover = len(deliveries)
held.clear()
consumer.basic_recover(requeue=True)
deadline = time.monotonic() + DEADLINE_S
while len(deliveries) < 4 and time.monotonic() < deadline:
    connection.process_data_events(time_limit=0.05)
for tag in held:
    consumer.basic_ack(tag)
held.clear()
deadline = time.monotonic() + DEADLINE_S
while len(deliveries) < 5 and time.monotonic() < deadline:
    connection.process_data_events(time_limit=0.05)
for tag in held:
    consumer.basic_ack(tag)
connection.process_data_events(time_limit=0.3)
consumer.close()

# requeue=False: RabbitMQ's 540, a connection error.
refused = None
try:
    channel.basic_recover(requeue=False)
except pika.exceptions.ConnectionClosedByBroker as e:
    refused = {"code": e.reply_code, "text": e.reply_text}

print(
    json.dumps(
        {
            "first": first,
            "again": again,
            "left": left,
            "before_recover": before_recover,
            "deliveries": deliveries,
            "refused": refused,
        }
    )
)
