"""The AMQP half of the cross-protocol test: pika publishes messages with properties and
headers that a Kafka client reads as records, or gets messages a Kafka client produced.

    python bridge.py publish PORT QUEUE   # declares QUEUE, publishes 2 messages (confirmed)
    python bridge.py get PORT QUEUE N     # gets N messages (acknowledged), bounded in time

`publish` prints nothing; `get` prints one JSON line per message: body, content type,
correlation id, headers (as pika decodes them, bytes as text).
"""
import json
import sys
import time

import pika

mode, port, queue = sys.argv[1], int(sys.argv[2]), sys.argv[3]
connection = pika.BlockingConnection(pika.ConnectionParameters(host="localhost", port=port))
channel = connection.channel()
channel.queue_declare(queue=queue, durable=True)


def text(value):
    return value.decode() if isinstance(value, bytes) else value


if mode == "publish":
    channel.confirm_delivery()
    for i in range(2):
        channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=f"from pika {i}",
            properties=pika.BasicProperties(
                content_type="application/json",
                correlation_id=f"corr-{i}",
                headers={"trace": f"t{i}", "attempt": i},
            ),
        )
elif mode == "get":
    want = int(sys.argv[4])
    deadline = time.monotonic() + 30
    got = 0
    while got < want and time.monotonic() < deadline:
        method, properties, body = channel.basic_get(queue=queue, auto_ack=True)
        if method is None:
            connection.sleep(0.05)
            continue
        got += 1
        headers = {k: text(v) for k, v in (properties.headers or {}).items()}
        print(json.dumps({
            "body": body.decode(),
            "content_type": properties.content_type,
            "correlation_id": properties.correlation_id,
            "headers": headers,
        }))
else:
    sys.exit(f"unknown mode {mode}")
connection.close()
