"""RabbitMQ's tutorial 2 (work queues) against Weir's AMQP listener: a durable queue,
persistent messages (with publisher confirms), a worker with basic_qos(prefetch_count=1)
and manual basic_ack that nacks one task with requeue=True the first time it sees it,
then a worker that dies holding a task unacknowledged and one that gets it after.
Bounded loops throughout.

    python work_queues.py PORT QUEUE COUNT

Prints one JSON line with what each worker saw.
"""
import json
import sys

import pika

port, queue, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
params = pika.ConnectionParameters(host="localhost", port=port, heartbeat=10)
persistent = pika.DeliveryMode.Persistent


def seen(method, properties, body):
    return {
        "body": body.decode(),
        "redelivered": method.redelivered,
        "delivery_mode": properties.delivery_mode,
        "content_type": properties.content_type,
        "correlation_id": properties.correlation_id,
        "headers": properties.headers,
    }


# new_task.py, with confirms: basic_publish raises if the broker nacks.
connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.queue_declare(queue=queue, durable=True)
channel.confirm_delivery()
for i in range(count):
    channel.basic_publish(
        exchange="",
        routing_key=queue,
        body=f"task {i}",
        properties=pika.BasicProperties(
            delivery_mode=persistent,
            content_type="text/plain",
            correlation_id=f"c{i}",
            headers={"attempt": "first"},
        ),
        mandatory=True,
    )
ready = channel.queue_declare(queue=queue, durable=True, passive=True).method.message_count
# A redeclare that says otherwise is refused (406), closing only this channel.
try:
    channel.queue_declare(queue=queue, durable=False)
    redeclare = "accepted"
except pika.exceptions.ChannelClosedByBroker as e:
    redeclare = e.reply_code
connection.close()

# worker.py
connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.queue_declare(queue=queue, durable=True)
channel.basic_qos(prefetch_count=1)
deliveries, done, nacked = [], [], set()


def callback(ch, method, properties, body):
    deliveries.append(seen(method, properties, body))
    text = body.decode()
    if text == "task 2" and text not in nacked:
        nacked.add(text)
        ch.basic_nack(delivery_tag=method.delivery_tag, requeue=True)
        return
    ch.basic_ack(delivery_tag=method.delivery_tag)
    done.append(text)
    if len(done) == count:
        ch.stop_consuming()


channel.basic_consume(queue=queue, on_message_callback=callback)
connection.call_later(45, channel.stop_consuming)
channel.start_consuming()
connection.close()

# A worker that dies holding a task: its connection closes with the task unacknowledged.
connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.confirm_delivery()
channel.basic_publish(
    exchange="",
    routing_key=queue,
    body="held task",
    properties=pika.BasicProperties(delivery_mode=persistent),
)
channel.basic_qos(prefetch_count=1)
held = []


def hold(ch, method, properties, body):
    held.append(seen(method, properties, body))
    ch.stop_consuming()


channel.basic_consume(queue=queue, on_message_callback=hold)
connection.call_later(20, channel.stop_consuming)
channel.start_consuming()
connection.close()

# The next worker gets it again, redelivered.
connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.basic_qos(prefetch_count=1)
again = []


def take(ch, method, properties, body):
    again.append(seen(method, properties, body))
    ch.basic_ack(delivery_tag=method.delivery_tag)
    ch.stop_consuming()


channel.basic_consume(queue=queue, on_message_callback=take)
connection.call_later(20, channel.stop_consuming)
channel.start_consuming()
# Nothing is left: every task was acknowledged once.
empty = channel.basic_get(queue=queue, auto_ack=False)[0] is None
connection.close()

# A publish to a queue that does not exist comes back (mandatory). On a connection of its
# own: pika (1.3.2) does not dispatch a return on a channel that consumed before.
connection = pika.BlockingConnection(params)
channel = connection.channel()
returned = []
channel.add_on_return_callback(lambda ch, method, props, body: returned.append(body.decode()))
channel.basic_publish(exchange="", routing_key=queue + "-missing", body="lost", mandatory=True)
connection.process_data_events(time_limit=1)
connection.close()

print(
    json.dumps(
        {
            "ready_after_publish": ready,
            "redeclare": redeclare,
            "deliveries": deliveries,
            "held": held,
            "again": again,
            "empty_after": empty,
            "returned": returned,
        }
    )
)
