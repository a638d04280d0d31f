"""The console's queue and exchange pages over what pika declared, published and holds.

Usage: console_queues.py PORT ADMIN

Declares a topic exchange `shop`, a fanout `shop-dead`, a durable queue `orders` with a
TTL and a dead-letter exchange, bound to `shop` under `order.*`, and a queue `audit`
bound to `shop` under `#`; publishes 5 messages to `shop` with confirms (each goes to
both queues); takes 2 of `orders` unacknowledged and holds them; then reads the console
(ADMIN: host:port of the admin listener). Prints one JSON line: each page's status and
HTML by name (`list`, `orders`, `shop`, `default`, `missing_queue`, `missing_exchange`).
"""

import json
import sys
import time
import urllib.error
import urllib.request

import pika

port, admin = int(sys.argv[1]), sys.argv[2]
# How long the holder waits for its two deliveries.
DELIVERY_SECONDS = 20


def page(path):
    try:
        with urllib.request.urlopen("http://%s%s" % (admin, path), timeout=10) as answer:
            return {"status": answer.status, "html": answer.read().decode()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "html": e.read().decode()}


connection = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=port))
channel = connection.channel()
channel.exchange_declare("shop", exchange_type="topic", durable=True)
channel.exchange_declare("shop-dead", exchange_type="fanout", durable=True)
channel.queue_declare(
    "orders",
    durable=True,
    arguments={"x-message-ttl": 600000, "x-dead-letter-exchange": "shop-dead"},
)
channel.queue_declare("audit", durable=True)
channel.queue_bind("orders", "shop", routing_key="order.*")
channel.queue_bind("audit", "shop", routing_key="#")
channel.confirm_delivery()
for i in range(5):
    channel.basic_publish("shop", "order.new", "order %d" % i, mandatory=True)

holder = connection.channel()
holder.basic_qos(prefetch_count=2)
held = []
deadline = time.monotonic() + DELIVERY_SECONDS
for method, _, body in holder.consume("orders", inactivity_timeout=0.5):
    if method is not None:
        held.append(body.decode())
    if len(held) == 2 or time.monotonic() > deadline:
        break

pages = {
    "held": held,
    "list": page("/console/queues"),
    "orders": page("/console/queues/orders"),
    "shop": page("/console/exchanges/shop"),
    "default": page("/console/exchanges/amq.default"),
    "missing_queue": page("/console/queues/nope"),
    "missing_exchange": page("/console/exchanges/nope"),
}
connection.close()
print(json.dumps(pages), flush=True)
