"""Mandatory publishes returned with NO_ROUTE under publisher confirms, and bindings
that survive a broker restart, against Weir's AMQP listener. Two phases, run against
the broker before and after its restart:

    python mandatory_restart.py PORT declare
    python mandatory_restart.py PORT publish

`declare` declares the durable direct exchange `orders_x`, the durable queue `orders`
bound with `new`, and checks returns: a mandatory publish with no route comes back (pika
raises UnroutableError once its confirm arrives) while a routed one is confirmed.
`declare` also binds the topic exchange `orders_in` on to `orders_x` (`#`, an
exchange-to-exchange binding). `publish` publishes again (mandatory, confirmed), directly
and through `orders_in`, and reads the queue. Bounded loops.
Prints one JSON line.
"""
import json
import sys

import pika

port, phase = int(sys.argv[1]), sys.argv[2]
params = pika.ConnectionParameters(host="localhost", port=port)
connection = pika.BlockingConnection(params)
channel = connection.channel()
result = {}

returned = []
channel.add_on_return_callback(
    lambda ch, method, props, body: returned.append(
        {"code": method.reply_code, "text": method.reply_text, "body": body.decode()}
    )
)

if phase == "declare":
    channel.exchange_declare(exchange="orders_x", exchange_type="direct", durable=True)
    channel.queue_declare(queue="orders", durable=True)
    channel.queue_bind(exchange="orders_x", queue="orders", routing_key="new")
    channel.exchange_declare(exchange="orders_in", exchange_type="topic", durable=True)
    channel.exchange_bind(destination="orders_x", source="orders_in", routing_key="#")
    channel.confirm_delivery()
    try:
        channel.basic_publish(exchange="orders_x", routing_key="old", body="nowhere", mandatory=True)
        result["unroutable"] = "confirmed without a return"
    except pika.exceptions.UnroutableError as e:
        result["unroutable"] = [m.body.decode() for m in e.messages]
    channel.basic_publish(exchange="orders_x", routing_key="new", body="order 1", mandatory=True)
    # Not mandatory and unroutable: dropped, and confirmed.
    channel.basic_publish(exchange="orders_x", routing_key="old", body="dropped")
    result["returned"] = returned
else:
    # The declaration survived the restart: a redeclare that says otherwise is refused.
    other = connection.channel()
    try:
        other.queue_declare(queue="orders", durable=False)
        result["redeclare_after_restart"] = "accepted"
    except pika.exceptions.ChannelClosedByBroker as e:
        result["redeclare_after_restart"] = e.reply_code
    channel.queue_declare(queue="orders", durable=True)
    channel.confirm_delivery()
    try:
        channel.basic_publish(exchange="orders_x", routing_key="new", body="order 2", mandatory=True)
        result["routed"] = True
    except pika.exceptions.UnroutableError:
        result["routed"] = False
    # Through the exchange-to-exchange binding made before the restart.
    try:
        channel.basic_publish(exchange="orders_in", routing_key="new", body="order 3", mandatory=True)
        result["routed_through_binding"] = True
    except pika.exceptions.UnroutableError:
        result["routed_through_binding"] = False

bodies = []
for _ in range(200):
    method, _, body = channel.basic_get(queue="orders", auto_ack=False)
    if method is None:
        if bodies:
            break
        connection.sleep(0.05)
        continue
    bodies.append(body.decode())
    channel.basic_ack(delivery_tag=method.delivery_tag)
result["received"] = bodies
connection.close()
print(json.dumps(result))
