"""Weir through grpcio, as a Python user reaches it: stubs generated from proto/ at run
time, a broker at --address. Checks, each fatal (exit 1 with what differed):

1. Errors a program switches on: a whole-call error carries a google.rpc.ErrorInfo that
   grpc_status.rpc_status.from_call reads (domain weir.dev, reason UNKNOWN_TOPIC), and a
   per-partition error its reason in PartitionError.reason (OUT_OF_ORDER_SEQUENCE).
2. The idempotent producer with plain records: InitProducerId, producer fields on
   PartitionRecords, a retry answered with the original offsets and stored once.
3. Fetch defaults fit grpcio's default 4 MiB receive limit: 10 partitions of zstd-packed
   records whose decoded form is many times that, fetched with max_bytes 0 until every
   record has come back once, in order.
4. ListOffsets by OffsetPosition enum: EARLIEST and LATEST answer, UNSPECIFIED is refused
   with INVALID_ARGUMENT.
5. ListTopics pagination: following next_page_token lists every topic once, and a
   made-up page_token is refused with INVALID_ARGUMENT.

Run by crates/weir-server/tests/it/python.rs; by hand:
    python="$(tests/python/setup.sh)"
    "$python" tests/python/interop.py --address 127.0.0.1:9292 --proto-dir proto
"""

import argparse
import atexit
import importlib
import pathlib
import shutil
import sys
import tempfile

import grpc
from grpc_status import rpc_status
from grpc_tools import protoc
from google.rpc import error_details_pb2

PARTITIONS = 10
RECORDS_PER_PARTITION = 6_000
VALUE = b"y" * 1024
GRPC_DEFAULT_RECEIVE_LIMIT = 4 * 1024 * 1024


def fail(what):
    print(f"interop.py: FAIL: {what}", file=sys.stderr)
    sys.exit(1)


def check(condition, what):
    if not condition:
        fail(what)


def load_stubs(proto_dir):
    """Generates the weir.v1 Python stubs into a temporary directory and imports them."""
    out = tempfile.mkdtemp(prefix="weir-py-stubs-")
    # Imported modules stay loaded; the generated files go when the script ends.
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    protos = sorted(str(p) for p in pathlib.Path(proto_dir).glob("weir/v1/*.proto"))
    include = str(pathlib.Path(protoc.__file__).parent / "_proto")
    code = protoc.main(
        ["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
        + protos
    )
    check(code == 0, f"protoc failed on {protos}")
    sys.path.insert(0, out)
    names = ["admin", "produce", "consume", "records"]
    return {n: importlib.import_module(f"weir.v1.{n}_pb2") for n in names} | {
        f"{n}_grpc": importlib.import_module(f"weir.v1.{n}_pb2_grpc") for n in ["admin", "produce", "consume"]
    }


def error_info(error):
    """The ErrorInfo detail of a failed call, via grpc_status."""
    status = rpc_status.from_call(error)
    check(status is not None, f"no grpc-status-details-bin on {error.code()}: {error.details()}")
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    fail(f"no ErrorInfo among the details of {error.code()}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--proto-dir", required=True)
    args = parser.parse_args()
    pb = load_stubs(args.proto_dir)
    admin_pb, produce_pb, consume_pb, records_pb = pb["admin"], pb["produce"], pb["consume"], pb["records"]
    # grpcio's defaults: a 4 MiB receive limit.
    channel = grpc.insecure_channel(args.address)
    admin = pb["admin_grpc"].AdminStub(channel)
    producer = pb["produce_grpc"].ProducerStub(channel)
    consumer = pb["consume_grpc"].ConsumerStub(channel)

    # 1. A whole-call error's reason.
    try:
        admin.DescribeTopic(admin_pb.DescribeTopicRequest(name="no-such-topic"), timeout=10)
        fail("DescribeTopic of a missing topic succeeded")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, f"code {e.code()}")
        info = error_info(e)
        check(info.domain == "weir.dev", f"domain {info.domain!r}")
        check(info.reason == "UNKNOWN_TOPIC", f"reason {info.reason!r}")
    print("ErrorInfo via grpc_status: NOT_FOUND, reason UNKNOWN_TOPIC")

    admin.CreateTopic(admin_pb.CreateTopicRequest(name="py", partitions=PARTITIONS), timeout=30)

    # 2. The idempotent producer.
    ident = producer.InitProducerId(produce_pb.InitProducerIdRequest(), timeout=30)

    def numbered(values, sequence):
        return produce_pb.ProduceRequest(
            topic="py",
            acks=produce_pb.ACKS_ALL,
            partitions=[
                produce_pb.PartitionRecords(
                    partition=0,
                    records=records_pb.RecordList(records=[records_pb.Record(value=v) for v in values]),
                    producer_id=ident.producer_id,
                    producer_epoch=ident.producer_epoch,
                    base_sequence=sequence,
                )
            ],
        )

    first = producer.Produce(numbered([b"a", b"b"], 0), timeout=30).results[0]
    check(not first.HasField("error"), f"first produce: {first.error}")
    retry = producer.Produce(numbered([b"a", b"b"], 0), timeout=30).results[0]
    check(
        (retry.base_offset, retry.last_offset) == (first.base_offset, first.last_offset),
        f"retry answered {retry.base_offset}..{retry.last_offset}, not {first.base_offset}..{first.last_offset}",
    )
    gap = producer.Produce(numbered([b"z"], 7), timeout=30).results[0]
    check(gap.HasField("error"), "a gap in the sequence was accepted")
    check(gap.error.reason == "OUT_OF_ORDER_SEQUENCE", f"gap reason {gap.error.reason!r}")
    check(gap.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0], f"gap code {gap.error.code}")
    print("idempotent producer: retry stored once; gap refused with OUT_OF_ORDER_SEQUENCE")

    # 3. Fill every partition: zstd-packed by the broker, small on disk, ~6 MB decoded.
    for p in range(PARTITIONS):
        for start in range(0, RECORDS_PER_PARTITION, 2_000):
            records = [records_pb.Record(value=b"%d-%d-" % (p, start + i) + VALUE) for i in range(2_000)]
            result = producer.Produce(
                produce_pb.ProduceRequest(
                    topic="py",
                    acks=produce_pb.ACKS_LEADER,
                    partitions=[
                        produce_pb.PartitionRecords(
                            partition=p,
                            records=records_pb.RecordList(records=records),
                            compression=records_pb.COMPRESSION_ZSTD,
                        )
                    ],
                ),
                timeout=60,
            ).results[0]
            check(not result.HasField("error"), f"produce to {p}: {result.error}")

    # Partition 0 holds the 2 idempotent records first.
    offsets = [0] * PARTITIONS
    expected_end = [RECORDS_PER_PARTITION + (2 if p == 0 else 0) for p in range(PARTITIONS)]
    fetches = 0
    while offsets != expected_end:
        fetches += 1
        check(fetches < 2_000, f"no progress at {offsets}")
        try:
            response = consumer.Fetch(
                consume_pb.FetchRequest(
                    topic="py",
                    partitions=[consume_pb.PartitionFetch(partition=p, offset=offsets[p]) for p in range(PARTITIONS)],
                ),
                timeout=30,
            )
        except grpc.RpcError as e:
            fail(f"a default fetch did not fit grpcio's limit: {e.code()} {e.details()}")
        check(response.ByteSize() <= GRPC_DEFAULT_RECEIVE_LIMIT, f"answer of {response.ByteSize()} bytes")
        for r in response.results:
            check(not r.HasField("error"), f"fetch of {r.partition}: {r.error}")
            for i, record in enumerate(r.records):
                check(record.offset == offsets[r.partition] + i, f"partition {r.partition}: offset {record.offset}")
            offsets[r.partition] = r.next_offset
    check(fetches > PARTITIONS, f"only {fetches} fetches: the data was meant not to fit a few")
    print(f"fetch: {sum(expected_end)} records from {PARTITIONS} partitions in {fetches} default fetches, each under 4 MiB")

    # The Consume stream, which the broker writes by hand (a gRPC head, then the batch
    # bytes as read): grpcio must read it like any other stream, in both formats, and a
    # refused start as a status.
    for fmt in (records_pb.RECORD_FORMAT_RECORDS, records_pb.RECORD_FORMAT_BATCHES):
        stream = consumer.Consume(
            consume_pb.ConsumeRequest(topic="py", partition=1, offset=0, format=fmt), timeout=30
        )
        seen = 0
        for message in stream:
            if fmt == records_pb.RECORD_FORMAT_RECORDS:
                for record in message.records:
                    check(record.offset == seen, f"consume: offset {record.offset}, wanted {seen}")
                    seen += 1
            else:
                check(len(message.batches) > 0, "consume: a message without batches")
                seen = message.next_offset
            check(message.next_offset == seen, f"consume: next_offset {message.next_offset}, wanted {seen}")
            if seen == expected_end[1]:
                stream.cancel()
                break
        check(seen == expected_end[1], f"consume: {seen} of {expected_end[1]} records")
    try:
        for _ in consumer.Consume(consume_pb.ConsumeRequest(topic="py", partition=1, offset=10**9), timeout=10):
            fail("consume past the log end answered")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.OUT_OF_RANGE, f"consume past the end: {e.code()} {e.details()}")
    print(f"consume: {expected_end[1]} records of partition 1 in both formats; a bad start is OUT_OF_RANGE")

    # 4. Offset positions are an enum: EARLIEST and LATEST look up, UNSPECIFIED is refused.
    def list_offset(position):
        return consumer.ListOffsets(
            consume_pb.ListOffsetsRequest(
                topic="py",
                partitions=[
                    consume_pb.PartitionOffsetQuery(partition=0, spec=consume_pb.OffsetSpec(position=position))
                ],
            ),
            timeout=10,
        ).results[0]

    earliest = list_offset(records_pb.OFFSET_POSITION_EARLIEST)
    latest = list_offset(records_pb.OFFSET_POSITION_LATEST)
    check((earliest.offset, latest.offset) == (0, expected_end[0]), f"earliest/latest {earliest} {latest}")
    unspecified = list_offset(records_pb.OFFSET_POSITION_UNSPECIFIED)
    check(unspecified.HasField("error"), "OFFSET_POSITION_UNSPECIFIED was answered")
    check(
        unspecified.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0],
        f"OFFSET_POSITION_UNSPECIFIED: code {unspecified.error.code}",
    )
    print("ListOffsets: OFFSET_POSITION_EARLIEST/LATEST answered, UNSPECIFIED refused with INVALID_ARGUMENT")

    # 5. ListTopics a page at a time: following next_page_token lists every topic once.
    names = ["py-page-%d" % i for i in range(5)]
    for name in names:
        admin.CreateTopic(admin_pb.CreateTopicRequest(name=name, partitions=1), timeout=30)
    listed, token, pages = [], "", 0
    while True:
        page = admin.ListTopics(admin_pb.ListTopicsRequest(page_size=2, page_token=token), timeout=10)
        check(len(page.topics) <= 2, f"a page of {len(page.topics)} topics for page_size 2")
        listed += [t.name for t in page.topics]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    check(listed == sorted(["py"] + names), f"pages listed {listed}")
    check(pages == 3, f"{pages} pages of 2 for 6 topics")
    try:
        admin.ListTopics(admin_pb.ListTopicsRequest(page_token="not-a-token"), timeout=10)
        fail("ListTopics took a made-up page_token")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"bad page_token: code {e.code()}")
    print(f"ListTopics: {len(listed)} topics in {pages} pages of 2; a made-up page_token refused")


if __name__ == "__main__":
    main()
