"""Exchange-to-exchange bindings and alternate exchanges against Weir's AMQP listener,
as RabbitMQ's "Exchange to Exchange Bindings" and "Alternate Exchanges" guides use them:

- a chain: `ingress` (topic) bound on to `orders` (direct) with `order.*` and to
  `audit-all` (fanout) with `#`; a message reaches the queues at the end of each path;
- a cycle (`ring-a` and `ring-b` bound to each other) and a diamond (`split` to `left`
  and `right`, both to one queue): each queue gets a publish once;
- `exchange.unbind`, and `exchange.delete` taking the bindings with it (`if_unused`
  refused while the exchange is a source);
- `alternate-exchange`: a message its exchange routes nowhere goes there, and a
  `mandatory` publish is then routed (no `basic.return`); one whose alternate does not
  exist is returned;
- refusals: the default exchange in an exchange binding (403), an exchange that does not
  exist (404).

Bounded loops: every wait has a deadline.

    python exchange_bindings.py PORT

Prints one JSON line.
"""
import json
import sys

import pika

from drain import drain

port = int(sys.argv[1])
params = pika.ConnectionParameters(host="localhost", port=port)

connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.confirm_delivery()


def bodies(queue, expected):
    return [body for _, body in drain(connection, channel, queue, expected)]


def publish(exchange, routing_key, body, mandatory=False):
    """A confirmed publish: "ok", or "returned" for a mandatory one routed nowhere."""
    try:
        channel.basic_publish(
            exchange=exchange, routing_key=routing_key, body=body, mandatory=mandatory
        )
        return "ok"
    except pika.exceptions.UnroutableError:
        return "returned"


# A chain.
channel.exchange_declare(exchange="ingress", exchange_type="topic")
channel.exchange_declare(exchange="orders", exchange_type="direct")
channel.exchange_declare(exchange="audit-all", exchange_type="fanout")
channel.exchange_bind(destination="orders", source="ingress", routing_key="order.*")
channel.exchange_bind(destination="audit-all", source="ingress", routing_key="#")
# Twice is once.
channel.exchange_bind(destination="orders", source="ingress", routing_key="order.*")
channel.queue_declare(queue="orders.eu")
channel.queue_bind(queue="orders.eu", exchange="orders", routing_key="order.eu")
channel.queue_declare(queue="audit")
channel.queue_bind(queue="audit", exchange="audit-all")
publish("ingress", "order.eu", "eu 1")
publish("ingress", "order.us", "us 1")
publish("ingress", "invoice.eu", "invoice 1")
chain = {"orders.eu": bodies("orders.eu", 1), "audit": bodies("audit", 3)}

# Unbound: orders gets nothing more, audit still everything.
channel.exchange_unbind(destination="orders", source="ingress", routing_key="order.*")
publish("ingress", "order.eu", "eu 2")
unbound = {"orders.eu": bodies("orders.eu", 0), "audit": bodies("audit", 1)}

# A cycle and a diamond: each queue once per publish.
for name in ("ring-a", "ring-b", "split", "left", "right"):
    channel.exchange_declare(exchange=name, exchange_type="fanout")
channel.exchange_bind(destination="ring-b", source="ring-a")
channel.exchange_bind(destination="ring-a", source="ring-b")
channel.queue_declare(queue="ring")
channel.queue_bind(queue="ring", exchange="ring-a")
channel.queue_bind(queue="ring", exchange="ring-b")
channel.exchange_bind(destination="left", source="split")
channel.exchange_bind(destination="right", source="split")
channel.queue_declare(queue="joined")
channel.queue_bind(queue="joined", exchange="left")
channel.queue_bind(queue="joined", exchange="right")
cycle_outcome = publish("ring-a", "", "round", mandatory=True)
publish("split", "", "diamond")
once = {"ring": bodies("ring", 1), "joined": bodies("joined", 1)}


def refused(action):
    ch = connection.channel()
    try:
        action(ch)
        ch.close()
        return {"code": "accepted"}
    except pika.exceptions.ChannelClosedByBroker as e:
        return {"code": e.reply_code, "text": e.reply_text}


# A source in use is not deleted if_unused; deleted, its bindings go with it.
in_use = refused(lambda ch: ch.exchange_delete(exchange="ring-b", if_unused=True))
channel.exchange_delete(exchange="ring-b")
publish("ring-a", "", "after delete")
after_delete = bodies("ring", 1)

# Alternate exchanges.
channel.exchange_declare(exchange="unrouted", exchange_type="fanout")
channel.queue_declare(queue="lost")
channel.queue_bind(queue="lost", exchange="unrouted")
channel.exchange_declare(
    exchange="main", exchange_type="direct", arguments={"alternate-exchange": "unrouted"}
)
channel.queue_declare(queue="known")
channel.queue_bind(queue="known", exchange="main", routing_key="k")
alternate_outcomes = {
    "known": publish("main", "k", "known 1", mandatory=True),
    "unknown": publish("main", "x", "lost 1", mandatory=True),
}
alternate = {"known": bodies("known", 1), "lost": bodies("lost", 1)}
channel.exchange_declare(
    exchange="main2", exchange_type="direct", arguments={"alternate-exchange": "nowhere"}
)
alternate_outcomes["missing_alternate"] = publish("main2", "x", "returned", mandatory=True)

refusals = {
    "default_source": refused(
        lambda ch: ch.exchange_bind(destination="orders", source="", routing_key="k")
    ),
    "default_destination": refused(
        lambda ch: ch.exchange_bind(destination="", source="ingress", routing_key="k")
    ),
    "missing_source": refused(
        lambda ch: ch.exchange_bind(destination="orders", source="nope", routing_key="k")
    ),
    "missing_destination": refused(
        lambda ch: ch.exchange_bind(destination="nope", source="ingress", routing_key="k")
    ),
    "alternate_not_a_name": refused(
        lambda ch: ch.exchange_declare(
            exchange="bad-ae", exchange_type="direct", arguments={"alternate-exchange": 1}
        )
    ),
}
connection.close()

print(
    json.dumps(
        {
            "chain": chain,
            "unbound": unbound,
            "cycle_outcome": cycle_outcome,
            "once": once,
            "in_use": in_use,
            "after_delete": after_delete,
            "alternate_outcomes": alternate_outcomes,
            "alternate": alternate,
            "refusals": refusals,
        }
    )
)
