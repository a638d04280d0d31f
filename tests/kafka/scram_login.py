"""Logs in to a Weir broker's Kafka listener over SASL_PLAINTEXT with SCRAM, as
kafka-python does, and lists its topics: checks that a user made with `weir user create`
authenticates with its password, and not with another.

Usage: scram_login.py BOOTSTRAP USER PASSWORD MECHANISM

Prints "authenticated as USER (N topics)" or "refused: WHY" (kafka-python retries a
refused login until its bootstrap timeout, only logging why: the first failure it
logged); exits 0 either way (the caller decides which it expected), non-zero only if
the script itself breaks.
"""

import logging
import sys

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

bootstrap, user, password, mechanism = sys.argv[1:5]


class Failures(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen = []

    def emit(self, record):
        message = record.getMessage()
        # kafka-python warns of SASL over plaintext on every connection: not a failure.
        if "in the clear" not in message:
            self.seen.append(message)


failures = Failures()
logging.getLogger("kafka").addHandler(failures)
logging.getLogger("kafka").propagate = False
try:
    admin = KafkaAdminClient(
        bootstrap_servers=[bootstrap],
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_plain_username=user,
        sasl_plain_password=password,
        request_timeout_ms=10000,
        # A refused login is retried until then: a broker that answers at all answers
        # well within it.
        bootstrap_timeout_ms=3000,
    )
    topics = admin.list_topics()
    admin.close()
    print("authenticated as %s (%d topics)" % (user, len(topics)), flush=True)
except KafkaError as e:
    # The broker's refusal, if one was logged, else the first failure.
    refusals = [m for m in failures.seen if "SaslAuthenticationFailed" in m]
    why = (refusals or failures.seen or ["%s: %s" % (type(e).__name__, e)])[0]
    print("refused: %s" % why, flush=True)
