"""RabbitMQ's tutorial 4 (routing) against Weir's AMQP listener: a direct exchange
`direct_logs`, queue `errors` bound with `error`, queue `all` bound with `info`,
`warning` and `error` (one queue, several keys); a message with an unbound key reaches
nobody. Then the refusals RabbitMQ answers for exchanges, each closing its channel.
Bounded loops.

    python routing.py PORT

Prints one JSON line.
"""
import json
import sys

import pika

from drain import drain as take

port = int(sys.argv[1])
params = pika.ConnectionParameters(host="localhost", port=port)

connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.exchange_declare(exchange="direct_logs", exchange_type="direct")
channel.queue_declare(queue="errors")
channel.queue_declare(queue="all")
channel.queue_bind(exchange="direct_logs", queue="errors", routing_key="error")
for severity in ["info", "warning", "error"]:
    channel.queue_bind(exchange="direct_logs", queue="all", routing_key=severity)
# Bound twice is bound once: `all` gets each error once.
channel.queue_bind(exchange="direct_logs", queue="all", routing_key="error")

# emit_log_direct.py, with confirms.
channel.confirm_delivery()
sent = [
    ("info", "i1"),
    ("warning", "w1"),
    ("error", "e1"),
    ("debug", "nobody"),
    ("info", "i2"),
    ("error", "e2"),
]
for severity, body in sent:
    channel.basic_publish(exchange="direct_logs", routing_key=severity, body=body)


def drain(channel, queue, expected):
    return [
        {"body": body, "key": method.routing_key, "exchange": method.exchange}
        for method, body in take(connection, channel, queue, expected)
    ]


errors = drain(channel, "errors", 2)
everything = drain(channel, "all", 5)

# Unbound: after queue_unbind, warnings no longer reach `all`.
channel.queue_unbind(exchange="direct_logs", queue="all", routing_key="warning")
channel.basic_publish(exchange="direct_logs", routing_key="warning", body="w2")
channel.basic_publish(exchange="direct_logs", routing_key="info", body="i3")
after_unbind = drain(channel, "all", 1)


def refused(action):
    ch = connection.channel()
    try:
        action(ch)
        return "accepted"
    except pika.exceptions.ChannelClosedByBroker as e:
        return e.reply_code


codes = {
    "redeclare_other_type": refused(
        lambda ch: ch.exchange_declare(exchange="direct_logs", exchange_type="fanout")
    ),
    "passive_missing": refused(
        lambda ch: ch.exchange_declare(exchange="no_such", exchange_type="direct", passive=True)
    ),
    "bind_missing_exchange": refused(
        lambda ch: ch.queue_bind(exchange="no_such", queue="all", routing_key="x")
    ),
    "bind_missing_queue": refused(
        lambda ch: ch.queue_bind(exchange="direct_logs", queue="no_such", routing_key="x")
    ),
    "delete_predeclared": refused(lambda ch: ch.exchange_delete(exchange="amq.direct")),
    "reserved_name": refused(
        lambda ch: ch.exchange_declare(exchange="amq.mine", exchange_type="direct")
    ),
    "delete_in_use": refused(lambda ch: ch.exchange_delete(exchange="direct_logs", if_unused=True)),
    "redeclare_same": refused(
        lambda ch: ch.exchange_declare(exchange="direct_logs", exchange_type="direct")
    ),
    "predeclared_same": refused(
        lambda ch: ch.exchange_declare(exchange="amq.topic", exchange_type="topic", durable=True)
    ),
}


def publish_to_missing(ch):
    ch.basic_publish(exchange="no_such", routing_key="x", body="lost")
    # The close comes after the publish: a round trip to see it.
    ch.queue_declare(queue="all", passive=True)


codes["publish_missing_exchange"] = refused(publish_to_missing)

# Deleting the exchange deletes its bindings: a new one of the same name routes nowhere.
ch = connection.channel()
ch.exchange_delete(exchange="direct_logs")
ch.exchange_declare(exchange="direct_logs", exchange_type="direct")
ch.basic_publish(exchange="direct_logs", routing_key="error", body="after delete")
left = ch.queue_declare(queue="errors", passive=True).method.message_count
connection.close()

print(
    json.dumps(
        {
            "errors": errors,
            "all": everything,
            "after_unbind": after_unbind,
            "codes": codes,
            "errors_after_delete": left,
        }
    )
)
