"""RabbitMQ's tutorial 5 (topics) against Weir's AMQP listener: a topic exchange
`topic_logs`, queue `q1` bound with `*.orange.*`, queue `q2` with `*.*.rabbit` and
`lazy.#`, the tutorial's keys published; then a headers exchange with `x-match` all and
any bindings. Bounded loops.

    python topics.py PORT

Prints one JSON line: the keys each queue received, in order.
"""
import json
import sys

import pika

from drain import drain as take

port = int(sys.argv[1])
params = pika.ConnectionParameters(host="localhost", port=port)
connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.exchange_declare(exchange="topic_logs", exchange_type="topic")
for queue in ["q1", "q2", "h_all", "h_any"]:
    channel.queue_declare(queue=queue)
channel.queue_bind(exchange="topic_logs", queue="q1", routing_key="*.orange.*")
channel.queue_bind(exchange="topic_logs", queue="q2", routing_key="*.*.rabbit")
channel.queue_bind(exchange="topic_logs", queue="q2", routing_key="lazy.#")

keys = [
    "quick.orange.rabbit",
    "lazy.orange.elephant",
    "quick.orange.fox",
    "lazy.brown.fox",
    "lazy.pink.rabbit",
    "quick.brown.fox",
    "orange",
    "quick.orange.new.rabbit",
    "lazy.orange.new.rabbit",
]
channel.confirm_delivery()
for key in keys:
    channel.basic_publish(exchange="topic_logs", routing_key=key, body=key)

channel.exchange_declare(exchange="hdrs", exchange_type="headers")
channel.queue_bind(
    exchange="hdrs", queue="h_all", arguments={"x-match": "all", "format": "pdf", "type": "report"}
)
channel.queue_bind(
    exchange="hdrs", queue="h_any", arguments={"x-match": "any", "format": "pdf", "type": "report"}
)
for name, headers in [
    ("pdf report", {"format": "pdf", "type": "report"}),
    ("pdf log", {"format": "pdf", "type": "log"}),
    ("zip log", {"format": "zip", "type": "log"}),
]:
    channel.basic_publish(
        exchange="hdrs",
        routing_key="",
        body=name,
        properties=pika.BasicProperties(headers=headers),
    )


def drain(queue, expected):
    return [body for _, body in take(connection, channel, queue, expected)]


result = {
    "q1": drain("q1", 3),
    "q2": drain("q2", 5),
    "h_all": drain("h_all", 1),
    "h_any": drain("h_any", 2),
}
connection.close()
print(json.dumps(result))
