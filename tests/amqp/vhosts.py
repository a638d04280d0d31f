"""Virtual hosts against Weir's AMQP listener, as pika opens them (`virtual_host=`).

    python vhosts.py PORT isolation
        Vhosts `sales`, `hr` and `/` each declare a queue `orders`, bind it to their own
        `amq.topic`, publish through their default exchange and `amq.topic`, and dead-letter
        through their default exchange (a TTL delay queue): each reads only its own
        messages, with its own names. A vhost name that cannot be one is refused at
        `connection.open`.
    python vhosts.py PORT acl
        Against a broker with ACLs on, where anonymous clients were given the topics and
        groups prefixed `sales.`: `sales` opens and works whole, `hr` is refused at
        `connection.open`, and `/` refuses a queue outside the prefix.

Prints one JSON line. Bounded loops.
"""
import json
import sys

import pika

from drain import drain

port, mode = int(sys.argv[1]), sys.argv[2]


def connect(vhost):
    return pika.BlockingConnection(
        pika.ConnectionParameters(host="localhost", port=port, virtual_host=vhost)
    )


def refused_at_open(vhost):
    """The reply code and text of a refused `connection.open`, or None if it opened."""
    try:
        connect(vhost).close()
        return None
    except pika.exceptions.ProbableAccessDeniedError as e:
        return {"code": 530, "text": str(e)}
    except pika.exceptions.ConnectionClosedByBroker as e:
        return {"code": e.reply_code, "text": e.reply_text}


def isolation():
    out = {}
    for vhost in ["sales", "hr", "/"]:
        connection = connect(vhost)
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue="orders", durable=True)
        channel.queue_bind(exchange="amq.topic", queue="orders", routing_key="order.*")
        # A delay queue dead-lettering through the vhost's own default exchange.
        channel.queue_declare(
            queue="delay",
            durable=True,
            arguments={
                "x-message-ttl": 100,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "orders",
            },
        )
        channel.basic_publish(exchange="", routing_key="orders", body=f"{vhost} direct")
        channel.basic_publish(
            exchange="amq.topic", routing_key="order.new", body=f"{vhost} topic"
        )
        channel.basic_publish(exchange="", routing_key="delay", body=f"{vhost} delayed")
        got = drain(connection, channel, "orders", 3)
        out[vhost] = [
            {
                "body": body,
                "exchange": method.exchange,
                "key": method.routing_key,
            }
            for method, body in got
        ]
        connection.close()
    # The delayed message's x-death names the vhost's own queue and exchange.
    connection = connect("sales")
    channel = connection.channel()
    channel.basic_publish(exchange="", routing_key="delay", body="with death")
    death = None
    for _ in range(200):
        method, properties, body = channel.basic_get(queue="orders", auto_ack=True)
        if method is not None:
            headers = properties.headers or {}
            first = (headers.get("x-death") or [{}])[0]
            death = {
                "queue": first.get("queue"),
                "reason": first.get("reason"),
                "first_queue": headers.get("x-first-death-queue"),
            }
            break
        connection.sleep(0.05)
    ok = channel.queue_declare(queue="orders", passive=True)
    connection.close()
    out["death"] = death
    out["sales_orders_left"] = ok.method.message_count
    out["bad_name"] = refused_at_open("a.b")
    return out


def acl():
    out = {"hr": refused_at_open("hr")}
    connection = connect("sales")
    channel = connection.channel()
    channel.confirm_delivery()
    channel.exchange_declare(exchange="logs", exchange_type="fanout")
    channel.queue_declare(queue="q")
    channel.queue_bind(exchange="logs", queue="q")
    channel.basic_publish(exchange="logs", routing_key="", body="granted")
    out["sales"] = [body for _, body in drain(connection, channel, "q", 1)]
    connection.close()
    connection = connect("/")
    channel = connection.channel()
    try:
        channel.queue_declare(queue="payroll")
        out["root"] = None
    except pika.exceptions.ChannelClosedByBroker as e:
        out["root"] = {"code": e.reply_code, "text": e.reply_text}
    connection.close()
    return out


print(json.dumps(isolation() if mode == "isolation" else acl()))
