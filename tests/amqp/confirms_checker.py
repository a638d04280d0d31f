"""A checker of AMQP publisher confirms under faults, with pika, run by
tests/tests/it/soak.rs while it kills, pauses and cuts off the cluster's nodes.

Usage: confirms_checker.py PORTS QUEUE SECONDS

PORTS: the nodes' AMQP ports, comma-separated. One process, two threads:
- a publisher with confirms on a durable queue, persistent messages "m-<i>" at a steady
  rate for SECONDS. A publish that is confirmed (basic.ack) is owed to the consumer; one
  nacked, returned, or whose connection broke before its confirm is not (it may or may not
  be stored: it is never claimed lost). On any failure it moves to the next port (a queue's
  publishes are taken by the broker that leads its partition: docs/amqp.md § One broker).
- a consumer (prefetch 100, manual basic.ack after each message) that reconnects to the
  next port whenever its connection or channel fails.
After the publisher stops, the consumer reads until every confirmed message has been
delivered (or DRAIN_SECONDS pass). Prints one JSON line:
{"confirmed", "nacked", "unconfirmed", "delivered", "redelivered", "missing" (every
confirmed body never delivered: the soak looks each up in the queue's topic), "unpublished" (bodies delivered that were never sent),
"longest_confirm_stall_s", "longest_delivery_stall_s", "publisher_reconnects",
"consumer_reconnects"}.
"""

import json
import sys
import threading
import time

import pika

ports = [int(p) for p in sys.argv[1].split(",")]
queue, seconds = sys.argv[2], float(sys.argv[3])
MESSAGES_PER_SECOND = 50
# How long the consumer may take, after the publisher stops, to get what was confirmed.
DRAIN_SECONDS = 90
# Between attempts at a broker that failed.
BACKOFF_SECONDS = 0.2
persistent = pika.DeliveryMode.Persistent

lock = threading.Lock()
confirmed, nacked, unconfirmed = set(), set(), set()
delivered = set()
sent = set()
stats = {"redelivered": 0, "publisher_reconnects": 0, "consumer_reconnects": 0}
longest = {"confirm": 0.0, "delivery": 0.0}
publishing = threading.Event()
publishing.set()
done = threading.Event()


def params(index):
    return pika.ConnectionParameters(
        host="127.0.0.1",
        port=ports[index % len(ports)],
        heartbeat=10,
        blocked_connection_timeout=10,
        socket_timeout=5,
        connection_attempts=1,
    )


def open_channel(index):
    connection = pika.BlockingConnection(params(index))
    channel = connection.channel()
    channel.queue_declare(queue=queue, durable=True)
    return connection, channel


def close(connection):
    try:
        if connection is not None and connection.is_open:
            connection.close()
    except Exception:  # a broken connection may fail to close: it is dropped anyway
        pass


def publish():
    index, connection, channel = 0, None, None
    start = time.monotonic()
    last_confirm = start
    total = int(seconds * MESSAGES_PER_SECOND)
    i = 0
    # Publishing ends at its deadline even if brokers were unreachable for a while (what
    # was not sent by then is not sent).
    while i < total and time.monotonic() < start + seconds:
        delay = start + i / MESSAGES_PER_SECOND - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if channel is None:
            try:
                connection, channel = open_channel(index)
                channel.confirm_delivery()
            except Exception:
                close(connection)
                connection, channel = None, None
                index += 1
                with lock:
                    stats["publisher_reconnects"] += 1
                time.sleep(BACKOFF_SECONDS)
                continue
        body = "m-%d" % i
        with lock:
            sent.add(body)
        try:
            channel.basic_publish(
                exchange="",
                routing_key=queue,
                body=body,
                properties=pika.BasicProperties(delivery_mode=persistent),
                mandatory=True,
            )
            now = time.monotonic()
            with lock:
                confirmed.add(body)
                longest["confirm"] = max(longest["confirm"], now - last_confirm)
            last_confirm = now
        except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
            with lock:
                nacked.add(body)
            # Another broker may lead the queue's partition now.
            close(connection)
            connection, channel = None, None
            index += 1
        except Exception:
            with lock:
                unconfirmed.add(body)
            close(connection)
            connection, channel = None, None
            index += 1
            with lock:
                stats["publisher_reconnects"] += 1
            time.sleep(BACKOFF_SECONDS)
        i += 1
    with lock:
        longest["confirm"] = max(longest["confirm"], time.monotonic() - last_confirm)
    close(connection)
    publishing.clear()


def consume():
    index = 0
    last_delivery = None
    while not done.is_set():
        connection = None
        try:
            connection, channel = open_channel(index)
            channel.basic_qos(prefetch_count=100)
            for method, properties, body in channel.consume(queue, inactivity_timeout=0.5):
                if done.is_set():
                    break
                if method is None:
                    continue
                now = time.monotonic()
                with lock:
                    if publishing.is_set() and last_delivery is not None:
                        longest["delivery"] = max(longest["delivery"], now - last_delivery)
                    delivered.add(body.decode())
                    if method.redelivered:
                        stats["redelivered"] += 1
                last_delivery = now
                channel.basic_ack(method.delivery_tag)
        except Exception:
            index += 1
            with lock:
                stats["consumer_reconnects"] += 1
            time.sleep(BACKOFF_SECONDS)
        finally:
            close(connection)


consumer = threading.Thread(target=consume, daemon=True)
consumer.start()
publish()
deadline = time.monotonic() + DRAIN_SECONDS
while time.monotonic() < deadline:
    with lock:
        if confirmed <= delivered:
            break
    time.sleep(0.5)
done.set()
consumer.join(30)
with lock:
    print(
        json.dumps(
            {
                "confirmed": len(confirmed),
                "nacked": len(nacked),
                "unconfirmed": len(unconfirmed),
                "delivered": len(delivered),
                "missing": sorted(confirmed - delivered),
                "missing_count": len(confirmed - delivered),
                "unpublished": sorted(delivered - sent)[:20],
                "longest_confirm_stall_s": round(longest["confirm"], 2),
                "longest_delivery_stall_s": round(longest["delivery"], 2),
                **stats,
            }
        ),
        flush=True,
    )
