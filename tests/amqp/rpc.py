"""RabbitMQ's tutorial 6 (RPC) against Weir's AMQP listener: a server consuming
`rpc_queue` (prefetch 1) answering each request to its `reply_to` with the request's
`correlation_id`, and a client with an exclusive server-named reply queue. The server
runs on its own connection in a thread (a pika connection is not shared between
threads). Bounded loops.

    python rpc.py PORT COUNT

Prints one JSON line: each call's argument, answer and whether its correlation id came
back.
"""
import json
import sys
import threading
import uuid

import pika

port, count = int(sys.argv[1]), int(sys.argv[2])
params = pika.ConnectionParameters(host="localhost", port=port)


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


ready = threading.Event()


def server():
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.queue_declare(queue="rpc_queue")
    served = []

    def on_request(ch, method, props, body):
        n = int(body)
        ch.basic_publish(
            exchange="",
            routing_key=props.reply_to,
            properties=pika.BasicProperties(correlation_id=props.correlation_id),
            body=str(fib(n)),
        )
        ch.basic_ack(delivery_tag=method.delivery_tag)
        served.append(n)
        if len(served) == count:
            ch.stop_consuming()

    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue="rpc_queue", on_message_callback=on_request)
    connection.call_later(60, channel.stop_consuming)
    ready.set()
    channel.start_consuming()
    connection.close()


thread = threading.Thread(target=server)
thread.start()
ready.wait(30)


class FibonacciRpcClient:
    def __init__(self):
        self.connection = pika.BlockingConnection(params)
        self.channel = self.connection.channel()
        result = self.channel.queue_declare(queue="", exclusive=True)
        self.callback_queue = result.method.queue
        self.channel.basic_consume(
            queue=self.callback_queue, on_message_callback=self.on_response, auto_ack=True
        )
        self.response = None
        self.corr_id = None
        self.stray = 0

    def on_response(self, ch, method, props, body):
        if self.corr_id == props.correlation_id:
            self.response = body
        else:
            self.stray += 1

    def call(self, n):
        self.response = None
        self.corr_id = str(uuid.uuid4())
        self.channel.basic_publish(
            exchange="",
            routing_key="rpc_queue",
            properties=pika.BasicProperties(reply_to=self.callback_queue, correlation_id=self.corr_id),
            body=str(n),
        )
        # Bounded: 30 s per call.
        for _ in range(300):
            if self.response is not None:
                break
            self.connection.process_data_events(time_limit=0.1)
        return None if self.response is None else int(self.response)


client = FibonacciRpcClient()
calls = [{"n": n, "answer": client.call(n)} for n in range(count)]
stray = client.stray
client.connection.close()
thread.join(90)
print(json.dumps({"calls": calls, "stray": stray}))
