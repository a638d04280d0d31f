"""Dead-letter exchanges and TTLs against Weir's AMQP listener, as the articles teach
them with RabbitMQ:

- the delay queue: `delay` is declared with `x-message-ttl` 1000 and
  `x-dead-letter-exchange` `dlx` (`x-dead-letter-routing-key` `work`) and nobody reads
  it; five messages published into it reach a consumer on `work` (and the queue `audit`,
  bound to `dlx` with the same key) once their TTL passed, none before, each with
  `x-death`;
- a per-message `expiration` in a queue whose dead-letter exchange is the default one;
- `basic_reject(requeue=False)` and the delivery limit (`x-delivery-limit`) dead-lettering
  to `dlx` with reason `rejected` and `delivery_limit`;
- the arguments and expirations RabbitMQ refuses, refused alike (406).

Bounded loops: every wait has a deadline.

    python dead_letters.py PORT

Prints one JSON line.
"""
import json
import sys
import time

import pika

from drain import drain

port = int(sys.argv[1])
params = pika.ConnectionParameters(host="localhost", port=port)
DEADLINE_S = 20

connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.exchange_declare(exchange="dlx", exchange_type="direct")
channel.queue_declare(queue="work")
channel.queue_declare(queue="audit")
channel.queue_bind(exchange="dlx", queue="work", routing_key="work")
channel.queue_bind(exchange="dlx", queue="audit", routing_key="work")
channel.queue_declare(
    queue="delay",
    durable=True,
    arguments={
        "x-message-ttl": 1000,
        "x-dead-letter-exchange": "dlx",
        "x-dead-letter-routing-key": "work",
    },
)
# A redeclare with the same arguments is fine.
channel.queue_declare(
    queue="delay",
    durable=True,
    arguments={
        "x-message-ttl": 1000,
        "x-dead-letter-exchange": "dlx",
        "x-dead-letter-routing-key": "work",
    },
)


def plain(value):
    """A header value as JSON can carry it."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if hasattr(value, "timestamp"):
        return int(value.timestamp())
    return value


def message(method, properties, body, t0):
    headers = properties.headers or {}
    return {
        "body": body.decode(),
        "after_s": time.monotonic() - t0,
        "exchange": method.exchange,
        "routing_key": method.routing_key,
        "expiration": properties.expiration,
        "x_death": plain(headers.get("x-death")),
        "x_first_death_queue": plain(headers.get("x-first-death-queue")),
        "x_first_death_reason": plain(headers.get("x-first-death-reason")),
        "x_first_death_exchange": plain(headers.get("x-first-death-exchange")),
        "headers": sorted(headers.keys()),
    }


def consume(queue, expected, t0):
    """A consumer on `queue` until `expected` messages came (or the deadline)."""
    got = []
    ch = connection.channel()

    def on_message(ch, method, properties, body):
        got.append(message(method, properties, body, t0))
        ch.basic_ack(method.delivery_tag)

    ch.basic_consume(queue=queue, on_message_callback=on_message)
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < expected and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.05)
    ch.close()
    return got


# The delay queue: confirmed publishes, then a consumer on `work` from the start.
channel.confirm_delivery()
t0 = time.monotonic()
for i in range(5):
    channel.basic_publish(exchange="", routing_key="delay", body=f"delayed {i}")
delayed = consume("work", 5, t0)
audited = [
    {"body": body}
    for _, body in drain(connection, channel, "audit", 5)
]
delay_left = channel.queue_declare(queue="delay", passive=True).method.message_count

# A per-message expiration, dead-lettered through the default exchange to `work2`.
channel.queue_declare(queue="work2")
channel.queue_declare(
    queue="delay2",
    arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "work2"},
)
t0 = time.monotonic()
channel.basic_publish(
    exchange="",
    routing_key="delay2",
    body="expires",
    properties=pika.BasicProperties(expiration="500"),
)
expired = consume("work2", 1, t0)

# Rejected and over the delivery limit: to `dlx` with their own routing keys.
channel.queue_declare(queue="failed")
channel.queue_bind(exchange="dlx", queue="failed", routing_key="jobs")
channel.queue_bind(exchange="dlx", queue="failed", routing_key="flaky")
channel.queue_declare(queue="jobs", arguments={"x-dead-letter-exchange": "dlx"})
channel.queue_declare(
    queue="flaky",
    arguments={"x-dead-letter-exchange": "dlx", "x-delivery-limit": 1},
)
channel.basic_publish(exchange="", routing_key="jobs", body="bad job")
channel.basic_publish(exchange="", routing_key="flaky", body="flaky job")

deadline = time.monotonic() + DEADLINE_S
rejected_first = None
while rejected_first is None and time.monotonic() < deadline:
    method, _, body = channel.basic_get(queue="jobs")
    if method is None:
        connection.sleep(0.05)
        continue
    rejected_first = body.decode()
    channel.basic_reject(method.delivery_tag, requeue=False)

flaky_deliveries = 0
deadline = time.monotonic() + DEADLINE_S
while time.monotonic() < deadline:
    method, _, _ = channel.basic_get(queue="flaky")
    if method is None:
        if flaky_deliveries >= 2:
            break
        connection.sleep(0.05)
        continue
    flaky_deliveries += 1
    channel.basic_nack(method.delivery_tag, requeue=True)

t0 = time.monotonic()
failed = []
deadline = time.monotonic() + DEADLINE_S
while len(failed) < 2 and time.monotonic() < deadline:
    method, properties, body = channel.basic_get(queue="failed", auto_ack=True)
    if method is None:
        connection.sleep(0.05)
        continue
    failed.append(message(method, properties, body, t0))


def refused(action):
    ch = connection.channel()
    try:
        action(ch)
        return {"code": "accepted"}
    except pika.exceptions.ChannelClosedByBroker as e:
        return {"code": e.reply_code, "text": e.reply_text}


refusals = {
    "ttl_as_string": refused(
        lambda ch: ch.queue_declare(queue="bad1", arguments={"x-message-ttl": "1000"})
    ),
    "ttl_negative": refused(
        lambda ch: ch.queue_declare(queue="bad2", arguments={"x-message-ttl": -1})
    ),
    "routing_key_without_dlx": refused(
        lambda ch: ch.queue_declare(
            queue="bad3", arguments={"x-dead-letter-routing-key": "k"}
        )
    ),
    "redeclare_other_ttl": refused(
        lambda ch: ch.queue_declare(
            queue="delay",
            durable=True,
            arguments={
                "x-message-ttl": 2000,
                "x-dead-letter-exchange": "dlx",
                "x-dead-letter-routing-key": "work",
            },
        )
    ),
    "expires_zero": refused(
        lambda ch: ch.queue_declare(queue="bad4", arguments={"x-expires": 0})
    ),
    "expiration_not_a_number": refused(
        lambda ch: (
            ch.confirm_delivery(),
            ch.basic_publish(
                exchange="",
                routing_key="work",
                body="x",
                properties=pika.BasicProperties(expiration="soon"),
            ),
        )
    ),
}

# x-expires: a queue nobody uses for 500 ms is deleted (Celery's reply and pidbox
# queues); one read by a consumer is not.
channel.queue_declare(queue="ephemeral", arguments={"x-expires": 500})
channel.queue_declare(queue="kept", arguments={"x-expires": 500})
keeper = connection.channel()
keeper.basic_consume(queue="kept", on_message_callback=lambda *a: None)
t0 = time.monotonic()
ephemeral_gone_after_s = None
while ephemeral_gone_after_s is None and time.monotonic() - t0 < DEADLINE_S:
    ch = connection.channel()
    try:
        ch.queue_declare(queue="ephemeral", passive=True)
        ch.close()
        connection.sleep(0.1)
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 404:
            ephemeral_gone_after_s = time.monotonic() - t0
connection.sleep(1.0)
kept_exists = channel.queue_declare(queue="kept", passive=True).method.queue == "kept"
keeper.close()
connection.close()

print(
    json.dumps(
        {
            "delayed": delayed,
            "audited": audited,
            "delay_left": delay_left,
            "expired": expired,
            "rejected_first": rejected_first,
            "flaky_deliveries": flaky_deliveries,
            "failed": failed,
            "refusals": refusals,
            "ephemeral_gone_after_s": ephemeral_gone_after_s,
            "kept_exists": kept_exists,
        }
    )
)
