"""pika over TLS against Weir's amqps listener: a message published (confirmed) and got
back over a connection that verifies the broker's certificate against the cluster's CA
and presents a client certificate; and a plaintext connection to the same port, which
must fail.

    python tls.py PORT CA CERT KEY

Prints one JSON line.
"""
import json
import ssl
import sys

import pika

port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=ca)
context.load_cert_chain(cert, key)
params = pika.ConnectionParameters(
    host="localhost",
    port=port,
    ssl_options=pika.SSLOptions(context, server_hostname="localhost"),
)
connection = pika.BlockingConnection(params)
channel = connection.channel()
channel.queue_declare(queue="secret")
channel.confirm_delivery()
channel.basic_publish(exchange="", routing_key="secret", body="over tls")
method, _, body = channel.basic_get(queue="secret", auto_ack=True)
connection.close()

try:
    plain = pika.BlockingConnection(
        pika.ConnectionParameters(host="localhost", port=port, socket_timeout=5,
                                  connection_attempts=1)
    )
    plain.close()
    plaintext = "connected"
except pika.exceptions.AMQPError as e:
    plaintext = type(e).__name__

print(json.dumps({"got": body.decode() if body else None, "plaintext": plaintext}))
