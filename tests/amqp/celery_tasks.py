"""A Celery app on Weir's AMQP listener, configured as a Celery user configures it for
RabbitMQ: `broker_url = "pyamqp://guest@HOST:PORT//"` (Celery's default transport,
py-amqp through kombu).

Environment: CELERY_BROKER_URL (the broker URL), CELERY_OUT (a file each task run
appends a line to, so the caller can see which ran, when, and on which attempt).

    celery_tasks.py send N    queues `record` 0..N-1, `flaky` once and `later` with an
                              eta 2 s ahead, from a client
    celery_tasks.py result    `add(2, 3)`, and prints the result the worker sends back
                              through the rpc:// backend (a reply queue with x-expires)
    celery -A celery_tasks worker ...   runs them
"""

import datetime
import os
import sys
import time

from celery import Celery

app = Celery("weir_tasks", broker=os.environ["CELERY_BROKER_URL"], backend="rpc://")
app.conf.update(
    # Remote control (the pidbox) declares `celery@HOST.celery.pidbox`, which is not a
    # Weir queue name yet (docs/amqp.md § Not served yet).
    worker_enable_remote_control=False,
    task_default_queue="weir-tasks",
    broker_connection_retry_on_startup=True,
)


def note(line):
    with open(os.environ["CELERY_OUT"], "a") as out:
        out.write(f"{line} {time.time():.3f}\n")


@app.task(name="record")
def record(n):
    note(f"record {n}")


@app.task(name="flaky", bind=True, max_retries=3)
def flaky(self):
    note(f"flaky {self.request.retries}")
    if self.request.retries < 2:
        raise self.retry(countdown=1)


@app.task(name="add")
def add(a, b):
    return a + b


@app.task(name="later")
def later(sent_at):
    note(f"later {sent_at:.3f}")


if __name__ == "__main__" and sys.argv[1:2] == ["send"]:
    for i in range(int(sys.argv[2])):
        record.delay(i)
    flaky.delay()
    now = time.time()
    later.apply_async(
        (now,), eta=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    )
    print("sent", file=sys.stderr)

if __name__ == "__main__" and sys.argv[1:2] == ["result"]:
    print(add.delay(2, 3).get(timeout=30))
