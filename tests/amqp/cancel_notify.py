"""Consumer cancel notifications as RabbitMQ sends them: a pika consumer (pika announces
`consumer_cancel_notify` in its client capabilities) reads a queue that a second
connection then deletes; the broker sends `basic.cancel` to the consumer, and pika calls
its cancel callback. Bounded: a broker that never tells the consumer leaves the wait
after 30 seconds with `cancelled` false.

    python cancel_notify.py PORT QUEUE

Prints one JSON line: whether the broker offered the capability, whether the consumer
was cancelled by the broker and with which tag, and whether the channel stayed open.
"""
import json
import sys

import pika

port, queue = int(sys.argv[1]), sys.argv[2]
params = pika.ConnectionParameters(host="localhost", port=port)

consumer_conn = pika.BlockingConnection(params)
channel = consumer_conn.channel()
channel.queue_declare(queue=queue)
offered = bool(
    consumer_conn._impl.server_capabilities.get("consumer_cancel_notify", False)
)
cancelled = []
channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
tag = channel.basic_consume(
    queue=queue, on_message_callback=lambda *args: None, auto_ack=True
)

# Another connection deletes the queue while the consumer reads it.
other = pika.BlockingConnection(params)
other.channel().queue_delete(queue=queue)
other.close()

waited = 0.0
while not cancelled and waited < 30:
    consumer_conn.process_data_events(time_limit=0.2)
    waited += 0.2

open_after = channel.is_open
consumer_conn.close()
print(
    json.dumps(
        {
            "offered": offered,
            "cancelled": cancelled == [tag],
            "tags": cancelled,
            "channel_open": open_after,
        }
    )
)
