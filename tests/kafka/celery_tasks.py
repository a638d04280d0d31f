"""A Celery app on a Weir broker through kombu's Kafka transport, as a Celery user
configures it for Kafka: `broker_url = "confluentkafka://HOST:PORT"`.

Environment: CELERY_BROKER_URL (the broker URL), CELERY_OUT (a file each task appends
its argument to, so the caller can see which tasks ran).

Used by the Celery test: `celery_tasks.py send N` queues tasks 0..N-1 from a client,
and `celery -A celery_tasks worker` runs them.
"""

import os
import sys

from celery import Celery

app = Celery("weir_tasks", broker=os.environ["CELERY_BROKER_URL"])
app.conf.update(
    # kombu's Kafka transport has no fanout exchanges, so no remote control (pidbox),
    # as its documentation says for Kafka.
    worker_enable_remote_control=False,
    broker_transport_options={"wait_time_seconds": 1, "connection_wait_time_seconds": 10},
    task_default_queue="weir-tasks",
)


@app.task(name="record")
def record(n):
    with open(os.environ["CELERY_OUT"], "a") as out:
        out.write(f"{n}\n")


if __name__ == "__main__" and sys.argv[1:2] == ["send"]:
    for i in range(int(sys.argv[2])):
        record.delay(i)
    print("sent", file=sys.stderr)
