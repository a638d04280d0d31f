"""pika against a three-broker Weir cluster, as a client behind a load balancer meets it:
each queue declared through one broker, published to through every broker with publisher
confirms (so most publishes reach a broker that does not lead the queue's partition), and
read back through yet another broker. Bounded loops throughout.

    python cluster_queues.py PORT1,PORT2,PORT3 COUNT

Prints one JSON line: per queue, the bodies read back in order, and what was nacked.
"""
import json
import sys
import time

import pika

ports = [int(p) for p in sys.argv[1].split(",")]
count = int(sys.argv[2])


def connect(port):
    return pika.BlockingConnection(pika.ConnectionParameters(host="localhost", port=port))


result = {}
for q, declare_port in enumerate(ports):
    queue = f"cluster-q{q}"
    connection = connect(declare_port)
    channel = connection.channel()
    channel.queue_declare(queue=queue, durable=True)
    connection.close()
    nacked = []
    for b, port in enumerate(ports):
        connection = connect(port)
        channel = connection.channel()
        channel.confirm_delivery()
        for i in range(count):
            body = f"b{b}-{i}"
            try:
                channel.basic_publish(
                    exchange="",
                    routing_key=queue,
                    body=body,
                    properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
                )
            except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
                nacked.append(body)
        connection.close()
    # Read back through the broker after the declaring one.
    connection = connect(ports[(q + 1) % len(ports)])
    channel = connection.channel()
    read = []
    deadline = time.monotonic() + 30
    while len(read) < count * len(ports) and time.monotonic() < deadline:
        method, _properties, body = channel.basic_get(queue=queue, auto_ack=False)
        if method is None:
            time.sleep(0.05)
            continue
        read.append(body.decode())
        channel.basic_ack(method.delivery_tag)
    connection.close()
    result[queue] = {"read": read, "nacked": nacked}
print(json.dumps(result))
