"""A work-queue worker on Weir's share groups, over gRPC (what Celery or a RabbitMQ
consumer does): take tasks from a topic with any number of workers, acknowledge each
one, retry a failed one later with exponential backoff, and let Weir dead-letter one that
keeps failing. Stubs are generated from proto/ at start.

    python queue_worker.py --address 127.0.0.1:9292 --topic tasks --group workers
"""

MAX_TRIES = 3  # Celery's max_retries + 1: then the task is rejected (dead-lettered)

import argparse
import atexit
import importlib
import pathlib
import shutil
import sys
import tempfile
import uuid

import grpc
from grpc_tools import protoc


def load_stubs(proto_dir):
    out = tempfile.mkdtemp(prefix="weir-stubs-")
    # Imported modules stay loaded; the generated files go when the script ends.
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    protos = [str(p) for p in pathlib.Path(proto_dir).glob("weir/v1/*.proto")]
    include = str(pathlib.Path(protoc.__file__).parent / "_proto")
    if protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}",
                    f"--python_out={out}", f"--grpc_python_out={out}"] + protos):
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    return {n: importlib.import_module(f"weir.v1.{n}") for n in
            ["groups_pb2", "groups_pb2_grpc", "queues_pb2", "queues_pb2_grpc"]}


def handle(record, delivery_count):
    """The task. True: done. False: try again later. Here a task whose value starts with
    "flaky" fails on its first delivery, one starting with "poison" always fails."""
    value = record.value.decode()
    print(f"task {value} (delivery {delivery_count})", flush=True)
    if value.startswith("poison"):
        return False
    return not (value.startswith("flaky") and delivery_count == 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", default="127.0.0.1:9292")
    ap.add_argument("--proto-dir", default="proto")
    ap.add_argument("--topic", default="tasks")
    ap.add_argument("--group", default="workers")
    ap.add_argument("--count", type=int, help="stop after this many tasks are done or given up")
    args = ap.parse_args()
    s = load_stubs(args.proto_dir)
    pb = s["queues_pb2"]

    # The group's coordinator takes its fetches and acknowledgements.
    found = s["groups_pb2_grpc"].GroupsStub(grpc.insecure_channel(args.address)).FindCoordinator(
        s["groups_pb2"].FindCoordinatorRequest(
            group_id=args.group, type=s["groups_pb2"].COORDINATOR_TYPE_SHARE))
    queue = s["queues_pb2_grpc"].QueuesStub(grpc.insecure_channel(f"{found.host}:{found.port}"))
    member = str(uuid.uuid4())
    acks, finished = [], 0
    while args.count is None or finished < args.count:
        # Acknowledge the last batch and take the next one in one call (waits up to 5 s).
        answer = queue.ShareFetch(pb.ShareFetchRequest(
            group_id=args.group, member_id=member, topics=[args.topic], max_records=100,
            max_wait_ms=5000, start=pb.SHARE_START_EARLIEST, acknowledgements=acks))
        acks = []
        for r in answer.records:
            offset = r.record.offset
            ack = pb.ShareAck(topic=r.topic, partition=r.partition,
                              first_offset=offset, last_offset=offset)
            if handle(r.record, r.delivery_count):
                ack.type = pb.ACK_TYPE_ACCEPT
                finished += 1
            elif r.delivery_count >= MAX_TRIES:
                # Given up: Weir archives it and copies it to the group's dead-letter
                # topic, if it names one (and does so by itself after the group's delivery
                # limit, for a worker that crashed on it).
                ack.type = pb.ACK_TYPE_REJECT
                finished += 1
            else:
                # Back off 100 ms, 200 ms, 400 ms...
                ack.type = pb.ACK_TYPE_RELEASE
                ack.delay_ms = 100 * 2 ** (r.delivery_count - 1)
            acks.append(ack)
    if acks:
        queue.ShareAcknowledge(pb.ShareAcknowledgeRequest(
            group_id=args.group, member_id=member, acknowledgements=acks))
    print(f"finished {finished} tasks", flush=True)


if __name__ == "__main__":
    main()
