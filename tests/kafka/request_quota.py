"""A busy Kafka client: as USER (SCRAM-SHA-256 over SASL_PLAINTEXT), asks for the
cluster's metadata again and again for SECONDS with confluent-kafka (librdkafka), each a
cheap Metadata request, and reports what the broker's throttle_time_ms told it.

Usage: request_quota.py BOOTSTRAP USER PASSWORD SECONDS

Prints one JSON line: {"user", "requests" (answered), "seconds", "throttled" (answers
with throttle_time_ms > 0, from librdkafka's throttle_cb), "max_throttle_ms"}. Exits
non-zero if the script itself breaks.
"""

import json
import sys
import time

from confluent_kafka.admin import AdminClient

bootstrap, user, password, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

throttles = []


def on_throttle(event):
    # librdkafka reports every answer with a throttle time, and one 0 after the last.
    if event.throttle_time > 0:
        throttles.append(event.throttle_time)


admin = AdminClient(
    {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": password,
        "throttle_cb": on_throttle,
    }
)
started = time.monotonic()
requests = 0
while time.monotonic() - started < seconds:
    # A held-back request waits at most 5 s at the broker: well within the timeout.
    admin.list_topics(timeout=15)
    requests += 1
    admin.poll(0)
elapsed = time.monotonic() - started
admin.poll(0.5)
print(
    json.dumps(
        {
            "user": user,
            "requests": requests,
            "seconds": elapsed,
            "throttled": len(throttles),
            "max_throttle_ms": int(max(throttles, default=0) * 1000),
        }
    ),
    flush=True,
)
