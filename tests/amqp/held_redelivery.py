"""The three parts of tests/tests/it/amqp_failover.rs's killed-consumer test, with pika:

    held_redelivery.py publish PORT QUEUE COUNT
        Publishes "m-0" .. "m-<COUNT-1>" persistent, with publisher confirms, through the
        default exchange to QUEUE (declared durable); prints {"confirmed": COUNT}.

    held_redelivery.py hold PORT QUEUE HOLD ACK
        Consumes QUEUE with prefetch HOLD and manual acknowledgement until it holds HOLD
        messages, acknowledges the first ACK of them one by one, then sends basic.qos again:
        its qos-ok comes after the broker handled the acks sent before it (AMQP handles a
        channel's methods in order), so the acks are the broker's. Prints {"acked": [...],
        "held": [...], "redelivered": N} and sleeps until it is killed, holding the rest
        unacknowledged (what arrived in the room the acks made is held too).

    held_redelivery.py drain PORT QUEUE EXPECTED
        Consumes QUEUE (prefetch 100, one basic.ack per message) until EXPECTED messages
        arrived or DRAIN_SECONDS passed; prints {"deliveries": [[body, redelivered], ...]}.

Every wait is bounded; a part that cannot do its work exits non-zero with the reason.
"""

import json
import sys
import time

import pika

# Longest a part waits for messages before it gives up.
DRAIN_SECONDS = 60
HOLD_SECONDS = 30
# Longest the holder sleeps once it has reported (the test kills it long before).
HELD_FOREVER_SECONDS = 300


def channel_on(port, queue):
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(host="127.0.0.1", port=port, heartbeat=30, socket_timeout=10)
    )
    channel = connection.channel()
    channel.queue_declare(queue=queue, durable=True)
    return connection, channel


def publish(port, queue, count):
    connection, channel = channel_on(port, queue)
    channel.confirm_delivery()
    for i in range(count):
        # Raises on a nack or a return: the test fails with it.
        channel.basic_publish(
            exchange="",
            routing_key=queue,
            body="m-%d" % i,
            properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
            mandatory=True,
        )
    connection.close()
    print(json.dumps({"confirmed": count}), flush=True)


def hold(port, queue, held_count, ack_count):
    connection, channel = channel_on(port, queue)
    channel.basic_qos(prefetch_count=held_count)
    deliveries = []
    deadline = time.monotonic() + HOLD_SECONDS
    for method, properties, body in channel.consume(queue, inactivity_timeout=0.5):
        if method is not None:
            deliveries.append((method, body.decode()))
        if len(deliveries) >= held_count:
            break
        if time.monotonic() > deadline:
            sys.exit("held %d of %d messages after %d s" % (len(deliveries), held_count, HOLD_SECONDS))
    for method, _ in deliveries[:ack_count]:
        channel.basic_ack(method.delivery_tag)
    # The barrier: qos-ok follows the acks above.
    channel.basic_qos(prefetch_count=held_count)
    # The acks made room: what the broker sent into it is held too.
    for method, properties, body in channel.consume(queue, inactivity_timeout=2):
        if method is None:
            break
        deliveries.append((method, body.decode()))
    report = {
        "acked": [body for _, body in deliveries[:ack_count]],
        "held": [body for _, body in deliveries[ack_count:]],
        "redelivered": sum(1 for method, _ in deliveries if method.redelivered),
    }
    print(json.dumps(report), flush=True)
    # Holding the rest until the test kills this process; heartbeats keep the connection.
    connection.sleep(HELD_FOREVER_SECONDS)
    sys.exit("the holder was not killed")


def drain(port, queue, expected):
    connection, channel = channel_on(port, queue)
    channel.basic_qos(prefetch_count=100)
    deliveries = []
    deadline = time.monotonic() + DRAIN_SECONDS
    for method, properties, body in channel.consume(queue, inactivity_timeout=0.5):
        if method is not None:
            deliveries.append([body.decode(), bool(method.redelivered)])
            channel.basic_ack(method.delivery_tag)
        if len(deliveries) >= expected or time.monotonic() > deadline:
            break
    # A last look for anything delivered beyond what was expected (a double delivery).
    extra_until = time.monotonic() + 2
    for method, properties, body in channel.consume(queue, inactivity_timeout=0.5):
        if method is not None:
            deliveries.append([body.decode(), bool(method.redelivered)])
            channel.basic_ack(method.delivery_tag)
        if time.monotonic() > extra_until:
            break
    channel.cancel()
    connection.close()
    print(json.dumps({"deliveries": deliveries}), flush=True)


part, port, queue = sys.argv[1], int(sys.argv[2]), sys.argv[3]
numbers = [int(n) for n in sys.argv[4:]]
if part == "publish":
    publish(port, queue, *numbers)
elif part == "hold":
    hold(port, queue, *numbers)
elif part == "drain":
    drain(port, queue, *numbers)
else:
    sys.exit("unknown part %r: publish, hold or drain" % part)
