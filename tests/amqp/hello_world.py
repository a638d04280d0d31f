"""RabbitMQ's tutorial 1 ("Hello World!") against Weir's AMQP listener, as the tutorial
writes it (send.py, then receive.py), with bounded loops.

    python hello_world.py PORT QUEUE COUNT

Prints one JSON line: the bodies received, in order.
"""
import json
import sys

import pika

port, queue, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
params = pika.ConnectionParameters(host="localhost", port=port)

# send.py
connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.queue_declare(queue=queue)
for i in range(count):
    channel.basic_publish(exchange="", routing_key=queue, body=f"Hello World! {i}")
connection.close()

# receive.py
connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.queue_declare(queue=queue)
received = []


def callback(ch, method, properties, body):
    received.append(body.decode())
    if len(received) == count:
        ch.stop_consuming()


channel.basic_consume(queue=queue, on_message_callback=callback, auto_ack=True)
# Bounded: the test fails on what was received by then rather than hanging.
connection.call_later(30, channel.stop_consuming)
channel.start_consuming()
connection.close()
print(json.dumps({"received": received}))
