"""RabbitMQ's flow control as pika sees it against Weir's AMQP listener: a publish made
while the broker has no room for requests in flight is held (the connection is not
read), pika is told `connection.blocked` and then `connection.unblocked`, and the
publish is confirmed and stored once room returns. The test holds the broker's room
from outside while this runs. Bounded: pika's own blocked-connection timeout (30 s).

    python blocked.py PORT QUEUE

Prints one JSON line: the notifications in order, how long the publish took, and what
the queue then holds.
"""
import json
import sys
import time

import pika

port, queue = int(sys.argv[1]), sys.argv[2]
params = pika.ConnectionParameters(host="localhost", port=port, blocked_connection_timeout=30)
connection = pika.BlockingConnection(params)
events = []
connection.add_on_connection_blocked_callback(
    lambda _conn, frame: events.append(["blocked", frame.method.reason])
)
connection.add_on_connection_unblocked_callback(lambda _conn, _frame: events.append(["unblocked"]))
channel = connection.channel()
channel.queue_declare(queue=queue)
channel.confirm_delivery()
started = time.monotonic()
channel.basic_publish(exchange="", routing_key=queue, body="held")
took = time.monotonic() - started
connection.process_data_events(time_limit=0)
method, _, body = channel.basic_get(queue=queue, auto_ack=True)
connection.close()
print(json.dumps({
    "events": events,
    "publish_seconds": took,
    "stored": body.decode() if body is not None else None,
}))
