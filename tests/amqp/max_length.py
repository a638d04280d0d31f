"""Queue length limits (`x-max-length`, `x-overflow`) against Weir's AMQP listener, as
RabbitMQ's "Queue Length Limit" guide describes them:

- `drop-head` (the default) with a dead-letter exchange: ten confirmed publishes into a
  queue bounded to 3 leave the newest 3, in order; the oldest 7 reach the dead-letter
  queue in order, each with `x-death` reason `maxlen`. A `basic_get` right after the
  confirms already sees only the newest (the bound holds when a consumer fetches, not
  only when the broker sweeps);
- only ready messages count: a message a consumer holds unacknowledged is neither
  counted nor dropped;
- `reject-publish`: publishes into the full queue are nacked under confirms (pika's
  `NackError`), dropped without; once a message is taken, there is room again;
- the arguments RabbitMQ refuses, refused alike (406), and what Weir does not serve
  (`reject-publish-dlx`, `x-max-length-bytes`) refused by name; nothing is declared.

Bounded loops: every wait has a deadline.

    python max_length.py PORT

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
channel.confirm_delivery()


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


def message_count(queue):
    return channel.queue_declare(queue=queue, passive=True).method.message_count


# drop-head, dead-lettered through `dlx` to `overflowed`.
channel.exchange_declare(exchange="dlx", exchange_type="direct")
channel.queue_declare(queue="overflowed")
channel.queue_bind(exchange="dlx", queue="overflowed", routing_key="capped")
channel.queue_declare(
    queue="capped",
    arguments={"x-max-length": 3, "x-dead-letter-exchange": "dlx"},
)
for i in range(10):
    channel.basic_publish(exchange="", routing_key="capped", body=f"m{i}")
method, _, body = channel.basic_get(queue="capped")
first_get = body.decode() if method else None
if method:
    channel.basic_nack(method.delivery_tag, requeue=True)
capped = [body for _, body in drain(connection, channel, "capped", 3)]
dead = []
deadline = time.monotonic() + DEADLINE_S
while len(dead) < 7 and time.monotonic() < deadline:
    method, properties, body = channel.basic_get(queue="overflowed", auto_ack=True)
    if method is None:
        connection.sleep(0.05)
        continue
    headers = properties.headers or {}
    dead.append(
        {
            "body": body.decode(),
            "routing_key": method.routing_key,
            "x_death": plain(headers.get("x-death")),
            "x_first_death_queue": plain(headers.get("x-first-death-queue")),
            "x_first_death_reason": plain(headers.get("x-first-death-reason")),
            "x_first_death_exchange": plain(headers.get("x-first-death-exchange")),
        }
    )

# Only ready messages count: one held unacknowledged stays, and is not counted.
channel.queue_declare(queue="window", arguments={"x-max-length": 2})
channel.basic_publish(exchange="", routing_key="window", body="a0")
channel.basic_publish(exchange="", routing_key="window", body="a1")
held, _, held_body = channel.basic_get(queue="window")
for body in ("a2", "a3"):
    channel.basic_publish(exchange="", routing_key="window", body=body)
# The broker's sweep (every 200 ms) drops a1 while a0 is held: 3 ready over the bound
# of 2. Were the held one counted, a2 would go too.
connection.sleep(0.6)
channel.basic_ack(held.delivery_tag)
window = [held_body.decode()] + [body for _, body in drain(connection, channel, "window", 2)]

# reject-publish: nacked when full, dropped without confirms, room again once taken.
channel.queue_declare(
    queue="bounded", arguments={"x-max-length": 2, "x-overflow": "reject-publish"}
)
outcomes = {}
for i in range(5):
    try:
        channel.basic_publish(exchange="", routing_key="bounded", body=f"r{i}")
        outcomes[f"r{i}"] = "ack"
    except pika.exceptions.NackError:
        outcomes[f"r{i}"] = "nack"
unconfirmed = connection.channel()
unconfirmed.basic_publish(exchange="", routing_key="bounded", body="unconfirmed")
unconfirmed.close()
bounded_count = message_count("bounded")
taken, _, taken_body = channel.basic_get(queue="bounded")
# One held unacknowledged is not counted: room for one more.
try:
    channel.basic_publish(exchange="", routing_key="bounded", body="r5")
    outcomes["r5"] = "ack"
except pika.exceptions.NackError:
    outcomes["r5"] = "nack"
channel.basic_ack(taken.delivery_tag)
bounded = [taken_body.decode()] + [body for _, body in drain(connection, channel, "bounded", 2)]


def refused(action):
    ch = connection.channel()
    try:
        action(ch)
        ch.close()
        return {"code": "accepted"}
    except pika.exceptions.ChannelClosedByBroker as e:
        return {"code": e.reply_code, "text": e.reply_text}


def declared(queue):
    """Whether `queue` exists (a passive declare on a channel of its own)."""
    ch = connection.channel()
    try:
        ch.queue_declare(queue=queue, passive=True)
        ch.close()
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False


cases = {
    "length_as_string": {"x-max-length": "3"},
    "length_negative": {"x-max-length": -1},
    "overflow_unknown": {"x-max-length": 3, "x-overflow": "sideways"},
    "overflow_as_number": {"x-overflow": 1},
    "reject_publish_dlx": {"x-max-length": 3, "x-overflow": "reject-publish-dlx"},
    "length_bytes": {"x-max-length-bytes": 1024},
}
refusals = {}
for i, (case, arguments) in enumerate(cases.items()):
    queue = f"bad{i}"
    refusals[case] = refused(
        lambda ch, q=queue, a=arguments: ch.queue_declare(queue=q, arguments=a)
    )
    refusals[case]["declared"] = declared(queue)
connection.close()

print(
    json.dumps(
        {
            "first_get": first_get,
            "capped": capped,
            "dead": dead,
            "window": window,
            "outcomes": outcomes,
            "bounded_count": bounded_count,
            "bounded": bounded,
            "refusals": refusals,
        }
    )
)
