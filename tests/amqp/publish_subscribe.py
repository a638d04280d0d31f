"""RabbitMQ's tutorial 3 (publish/subscribe) against Weir's AMQP listener: a fanout
exchange `logs`, two subscribers each with an exclusive server-named queue bound to it,
and an emitter. Each subscriber must get every message once, in order. Bounded loops.

    python publish_subscribe.py PORT COUNT

Prints one JSON line: what each subscriber received, the exchange and routing key of a
delivery, and whether a subscriber's queue was gone once its connection closed.
"""
import json
import sys

import pika

port, count = int(sys.argv[1]), int(sys.argv[2])
params = pika.ConnectionParameters(host="localhost", port=port)


def subscriber():
    """receive_logs.py up to the bind: its connection, channel and queue."""
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.exchange_declare(exchange="logs", exchange_type="fanout")
    result = channel.queue_declare(queue="", exclusive=True)
    queue_name = result.method.queue
    channel.queue_bind(exchange="logs", queue=queue_name)
    return connection, channel, queue_name


# emit_log.py, before anyone listens: a fanout exchange with no binding drops it.
connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.exchange_declare(exchange="logs", exchange_type="fanout")
channel.basic_publish(exchange="logs", routing_key="", body="nobody hears this")
connection.close()

subscribers = [subscriber(), subscriber()]

# emit_log.py
connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.exchange_declare(exchange="logs", exchange_type="fanout")
channel.confirm_delivery()
for i in range(count):
    channel.basic_publish(exchange="logs", routing_key="", body=f"log {i}")
connection.close()

received = []
first = None
for sub_connection, sub_channel, queue_name in subscribers:
    bodies = []

    def callback(ch, method, properties, body, bodies=bodies):
        global first
        if first is None:
            first = {"exchange": method.exchange, "routing_key": method.routing_key}
        bodies.append(body.decode())
        if len(bodies) == count:
            ch.stop_consuming()

    sub_channel.basic_consume(queue=queue_name, on_message_callback=callback, auto_ack=True)
    # Bounded: the test fails on what was received by then rather than hanging.
    sub_connection.call_later(30, sub_channel.stop_consuming)
    sub_channel.start_consuming()
    received.append(bodies)

# The exclusive queues go with their connections.
names = [queue_name for _, _, queue_name in subscribers]
for sub_connection, _, _ in subscribers:
    sub_connection.close()
connection = pika.BlockingConnection(params)
gone = []
for name in names:
    channel = connection.channel()
    try:
        channel.queue_declare(queue=name, passive=True)
        gone.append(False)
    except pika.exceptions.ChannelClosedByBroker as e:
        gone.append(e.reply_code == 404)
connection.close()

print(json.dumps({"received": received, "first": first, "gone": gone, "queues": names}))
