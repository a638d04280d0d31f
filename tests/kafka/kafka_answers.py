"""Answers Weir used to give where Kafka gives another (issue 41), checked through the
clients that met them: confluent-kafka (librdkafka) and kafka-python.

Usage: kafka_answers.py CHECK BOOTSTRAP TOPIC

CHECK is one of:
  fetch-max-bytes  ~1 MB records over 4 partitions read by confluent-kafka with
                   fetch.max.bytes 1 MiB and receive.message.max.bytes at the least
                   librdkafka allows (fetch.max.bytes + 512): every record comes back,
                   in order, and the client never drops the connection over an answer
                   larger than it asked for.
  list-offsets     ListOffsets by timestamp on an empty partition (-1, as Kafka; kafka-python
                   says None) and past the newest record, and by max-timestamp (-3): the
                   first record holding the newest timestamp.
  group-ids        consumer groups named `roundrobin,range` and `a/b ü 日本`: each reads
                   the topic in a group, commits, and a second consumer of the group
                   resumes from the commit; the admin client lists both.
  topic-configs    topic configs Kafka 4 defines that Weir does not act on
                   (compression.type, flush.ms, max.compaction.lag.ms) accepted at
                   CreateTopics, AlterConfigs and IncrementalAlterConfigs and described
                   back; the others described with Kafka's defaults; a bad value refused
                   with INVALID_CONFIG naming the key.
  compact-keys     records without keys refused with INVALID_RECORD on a topic created
                   with cleanup.policy=compact and on one altered to it with
                   IncrementalAlterConfigs APPEND; nothing of the batch appended; keyed
                   records accepted.
  commit-order     a consumer's committed() right after each asynchronous commit sees
                   that commit (requests of one connection take effect in order).
  replica-assignments
                   CreateTopics and CreatePartitions with manual replica assignments
                   (confluent-kafka, as librdkafka's test 0081; kafka-python's
                   NewPartitions): created as assigned; an unregistered broker, a broker
                   listed twice, replica counts that differ, or too few assignments are
                   INVALID_REPLICA_ASSIGNMENT, and nothing is created.
  admin-apis       kafka-python's KafkaAdminClient calls its own integration tests make:
                   DescribeTopicPartitions page by page with a cursor, ElectLeaders
                   (preferred and unclean: ELECTION_NOT_NEEDED while the leader leads),
                   AlterReplicaLogDirs to the broker's log directory (NONE) and to
                   another (LOG_DIR_NOT_FOUND), DescribeConfigs of the broker
                   (advertised.listeners, listeners, log.dirs read-only with their values);
                   confluent-kafka's IncrementalAlterConfigs of a broker key refused with
                   INVALID_CONFIG naming the key.
  group-configs    a consumer group's own consumer.session.timeout.ms and
                   consumer.heartbeat.interval.ms (KIP-848 group configs): confluent-kafka's
                   IncrementalAlterConfigs (SET, DELETE) and AlterConfigs on a GROUP
                   resource, DescribeConfigs with sources GROUP_CONFIG and DEFAULT_CONFIG,
                   values Kafka refuses (out of the broker's bounds, a heartbeat interval
                   not below the session timeout, an unknown key) refused with
                   INVALID_CONFIG naming the key; a consumer with group.protocol=consumer
                   is told the group's heartbeat interval and session timeout and
                   heartbeats at that interval, and a session timeout changed while it
                   runs reaches it. Reads the group through `weir group describe` (the
                   WEIR_BIN binary, at WEIR_BROKERS), as an operator would.

Prints one JSON line of what it saw; exits non-zero on failure.
"""

import json
import os
import subprocess
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

check, bootstrap, topic = sys.argv[1], sys.argv[2], sys.argv[3]
admin = AdminClient({"bootstrap.servers": bootstrap})


def create(name, partitions, config=None):
    new = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
    for f in admin.create_topics([new]).values():
        f.result(timeout=20)


def produce_all(producer, records):
    """records: (partition, value, timestamp or None); waits for every acknowledgement."""
    errors = []
    for partition, value, timestamp in records:
        kwargs = {"timestamp": timestamp} if timestamp is not None else {}
        while True:
            try:
                producer.produce(
                    topic,
                    partition=partition,
                    value=value,
                    on_delivery=lambda err, _msg: err is not None and errors.append(err),
                    **kwargs,
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0, "records left unsent"
    assert not errors, errors


def polled(consumer, done, deadline, timeout=0.5):
    """The consumer's records, polled until done() or the deadline; a record carrying an
    error raises it."""
    while not done() and time.time() < deadline:
        m = consumer.poll(timeout)
        if m is None:
            continue
        if m.error():
            raise KafkaException(m.error())
        yield m


def fetch_max_bytes():
    partitions, per_partition, size = 4, 6, 950_000
    create(topic, partitions)

    def value(i):
        return (b"%08d" % i) * (size // 8)

    # One record a batch (two do not fit librdkafka's 1,000,000-byte message.max.bytes).
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    produce_all(producer, [(i % partitions, value(i), None) for i in range(partitions * per_partition)])

    fetch_max = 1 << 20
    errors = []
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "fetch.max.bytes": fetch_max,
            "max.partition.fetch.bytes": fetch_max,
            # The least librdkafka accepts: an answer longer than this is a protocol
            # error to it, and it drops the connection.
            "receive.message.max.bytes": fetch_max + 512,
            "error_cb": lambda err: errors.append(str(err)),
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    next_offset = [0] * partitions
    deadline = time.time() + 60
    for m in polled(consumer, lambda: sum(next_offset) == partitions * per_partition, deadline):
        p = m.partition()
        assert m.offset() == next_offset[p], f"partition {p}: offset {m.offset()}, expected {next_offset[p]}"
        i = m.offset() * partitions + p
        assert m.value() == value(i), f"partition {p} offset {m.offset()}: wrong value"
        next_offset[p] += 1
    consumer.close()
    assert sum(next_offset) == partitions * per_partition, f"read {next_offset}; client errors: {errors}"
    assert not errors, f"client errors: {errors}"
    return {"read": sum(next_offset), "per_partition": next_offset}


def list_offsets():
    create(topic, 2)
    now = int(time.time() * 1000)
    # Partition 1: the newest timestamp twice (offsets 1 and 3), and older ones after it.
    stamps = [now - 5000, now - 1000, now - 3000, now - 1000, now - 4000]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    produce_all(producer, [(1, b"v%d" % i, ts) for i, ts in enumerate(stamps)])

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    # One question per partition and call (librdkafka matches answers by partition).
    asked = [
        (0, now - 10_000),  # empty partition
        (1, now - 10_000),  # before every record: the first
        (1, now - 2000),  # the first at or after it: offset 1
        (1, now),  # past the newest record
    ]
    by_time = [
        consumer.offsets_for_times([TopicPartition(topic, p, ts)], timeout=20)[0].offset for p, ts in asked
    ]
    consumer.close()
    assert by_time == [-1, 0, 1, -1], by_time

    specs = {TopicPartition(topic, 0): OffsetSpec.max_timestamp(), TopicPartition(topic, 1): OffsetSpec.max_timestamp()}
    found = {tp.partition: f.result(timeout=20) for tp, f in admin.list_offsets(specs).items()}
    newest = (found[1].offset, found[1].timestamp)
    assert newest == (1, now - 1000), newest
    empty = (found[0].offset, found[0].timestamp)
    assert empty == (-1, -1), empty

    # kafka-python says None where Kafka answers -1.
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KafkaPythonPartition

    reader = KafkaConsumer(bootstrap_servers=bootstrap)
    answers = reader.offsets_for_times(
        {KafkaPythonPartition(topic, 0): now - 10_000, KafkaPythonPartition(topic, 1): now}
    )
    reader.close()
    assert all(v is None for v in answers.values()), answers
    return {"by_time": by_time, "max_timestamp": list(newest), "max_timestamp_empty": list(empty)}


def group_ids():
    create(topic, 2)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    produce_all(producer, [(i % 2, b"r%d" % i, None) for i in range(20)])
    groups = ["roundrobin,range", "a/b \u00fc \u65e5\u672c"]
    seen = {}
    for group in groups:
        def consumer():
            c = Consumer(
                {
                    "bootstrap.servers": bootstrap,
                    "group.id": group,
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                }
            )
            c.subscribe([topic])
            return c

        first = consumer()
        values, deadline = [], time.time() + 60
        while len(values) < 12 and time.time() < deadline:
            m = first.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            values.append(m.value())
            first.commit(message=m, asynchronous=False)
        assert len(values) == 12, f"{group!r}: read {len(values)}"
        committed = sum(tp.offset for tp in first.committed([TopicPartition(topic, p) for p in range(2)], timeout=20) if tp.offset >= 0)
        first.close()
        assert committed == 12, f"{group!r}: committed {committed}"
        second = consumer()
        rest, deadline = [], time.time() + 60
        while len(rest) < 8 and time.time() < deadline:
            m = second.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            rest.append(m.value())
        second.close()
        assert sorted(values + rest) == sorted(b"r%d" % i for i in range(20)), f"{group!r}: {values} then {rest}"
        seen[group] = len(values) + len(rest)
    listed = {g.group_id for g in admin.list_consumer_groups().result(timeout=20).valid}
    assert set(groups) <= listed, listed
    return {"read": seen}


def described(name):
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    configs = admin.describe_configs([resource])[resource].result(timeout=20)
    return {k: (v.value, v.source) for k, v in configs.items()}


def alter(name, entries):
    resource = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=entries)
    admin.incremental_alter_configs([resource])[resource].result(timeout=20)


def topic_configs():
    set_at_create = {"compression.type": "lz4", "flush.ms": "1000", "max.compaction.lag.ms": "86400000"}
    create(topic, 1, set_at_create)
    seen = described(topic)
    dynamic = ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    default = ConfigSource.DEFAULT_CONFIG.value
    for key, value in set_at_create.items():
        assert seen[key] == (value, dynamic), (key, seen[key])
    # Keys nobody set: Kafka's defaults.
    for key, value in {
        "preallocate": "false",
        "segment.jitter.ms": "0",
        "min.cleanable.dirty.ratio": "0.5",
        "flush.messages": "9223372036854775807",
        "message.timestamp.after.max.ms": "3600000",
        "remote.storage.enable": "false",
    }.items():
        assert seen[key] == (value, default), (key, seen[key])

    # IncrementalAlterConfigs: SET an accepted key, DELETE one back to its default.
    alter(
        topic,
        [
            ConfigEntry("min.compaction.lag.ms", "1000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("flush.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    seen = described(topic)
    assert seen["min.compaction.lag.ms"] == ("1000", dynamic), seen["min.compaction.lag.ms"]
    assert seen["flush.ms"] == ("9223372036854775807", default), seen["flush.ms"]

    # A value Kafka refuses is refused, naming the key; nothing changes.
    refused = {}
    for key, value in {"compression.type": "brotli", "min.cleanable.dirty.ratio": "2", "remote.storage.enable": "true"}.items():
        try:
            alter(topic, [ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
            raise AssertionError(f"{key}={value} accepted")
        except KafkaException as e:
            err = e.args[0]
            assert err.code() == KafkaError.INVALID_CONFIG, (key, err)
            assert key in err.str(), (key, err.str())
            refused[key] = err.name()
    assert described(topic)["compression.type"] == ("lz4", dynamic)

    # kafka-python (IncrementalAlterConfigs) sets an accepted key.
    from kafka.admin import ConfigResource as KpResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    kp = KafkaAdminClient(bootstrap_servers=bootstrap)
    result = kp.alter_configs([KpResource(ConfigResourceType.TOPIC, topic, {"flush.messages": "10"})])
    kp.close()
    assert result == {"topic": {topic: "OK"}}, result
    assert described(topic)["flush.messages"] == ("10", dynamic)

    # AlterConfigs (the whole set): accepted keys among honoured ones, and what it leaves
    # out goes back to the default.
    resource = ConfigResource(
        ConfigResource.Type.TOPIC, topic, set_config={"preallocate": "true", "retention.ms": "3600000"}
    )
    admin.alter_configs([resource])[resource].result(timeout=20)
    seen = described(topic)
    assert seen["preallocate"] == ("true", dynamic), seen["preallocate"]
    assert seen["retention.ms"] == ("3600000", dynamic), seen["retention.ms"]
    for key in ["compression.type", "flush.messages", "min.compaction.lag.ms"]:
        assert seen[key][1] == default, (key, seen[key])
    assert seen["compression.type"][0] == "producer"
    return {"refused": refused, "keys": len(seen)}


def compact_keys():
    compacted, altered = topic, topic + "-altered"
    create(compacted, 1, {"cleanup.policy": "compact"})
    create(altered, 1)
    # A long linger keeps each call's records in one batch even on a loaded machine (100
    # ms let the first record go alone once); flush() sends at once regardless.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2000})

    def send(name, keys):
        """Sends one record per key (None: no key) in one batch; each record's error."""
        outcomes = {}
        for i, key in enumerate(keys):
            producer.produce(
                name,
                partition=0,
                key=key,
                value=b"v%d" % i,
                on_delivery=lambda err, msg, i=i: outcomes.__setitem__(i, err),
            )
        assert producer.flush(30) == 0
        return [outcomes[i] for i in range(len(keys))]

    def high(name):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
        _, hi = c.get_watermark_offsets(TopicPartition(name, 0), timeout=20)
        c.close()
        return hi

    def check(name):
        errs = send(name, [b"k0", None, b"k2"])
        assert errs[1] is not None and errs[1].code() == KafkaError.INVALID_RECORD, errs
        # Records that share the keyless record's batch are refused with it (Kafka
        # refuses the whole batch). How librdkafka batches them is its own choice: on a
        # loaded machine it has sent the first record alone, or each alone. Whatever the
        # split, a record is either appended (no error) or refused with INVALID_RECORD,
        # and the partition holds exactly the appended ones.
        for e in errs:
            assert e is None or e.code() == KafkaError.INVALID_RECORD, errs
        appended = sum(e is None for e in errs)
        assert high(name) == appended, "nothing of a refused batch appended"
        assert send(name, [b"k3", b"k4"]) == [None, None]
        assert high(name) == appended + 2
        return [e.name() if e is not None else "NONE" for e in errs]

    # Keyless records are fine before the policy changes.
    assert send(altered, [None]) == [None]
    alter(altered, [ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)])
    assert described(altered)["cleanup.policy"][0] == "delete,compact"
    # One record already there: the refused batch adds nothing after it.
    errs = send(altered, [None])
    assert errs[0] is not None and errs[0].code() == KafkaError.INVALID_RECORD, errs
    assert high(altered) == 1
    errors = check(compacted)
    for f in admin.delete_topics([altered]).values():
        f.result(timeout=20)
    return {"errors": errors}


def commit_order():
    create(topic, 1)
    count = 200
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    produce_all(producer, [(0, b"c%d" % i, None) for i in range(count)])
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": topic + "-group",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    # librdkafka holds an asynchronous commit back until it knows the group's
    # coordinator, while committed() may go out ahead of it: against Kafka too, the
    # first pair can cross. One synchronous commit first finds the coordinator, so
    # every pair below goes out on its connection in order, which is what is checked.
    consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    stale, read, deadline = [], 0, time.time() + 60
    for m in polled(consumer, lambda: read == count, deadline):
        read += 1
        consumer.commit(message=m, asynchronous=True)
        seen = consumer.committed([TopicPartition(topic, 0)], timeout=20)[0].offset
        if seen != m.offset() + 1:
            stale.append((m.offset() + 1, seen))
    consumer.close()
    assert read == count, f"read {read} of {count}"
    assert not stale, f"committed() missed the commit before it (wanted, seen): {stale[:10]} of {len(stale)}"
    return {"commits": read}


def refused_code(futures):
    """The error name each future of an admin call failed with (None if it succeeded)."""
    codes = {}
    for name, f in futures.items():
        try:
            f.result(timeout=20)
            codes[name] = None
        except KafkaException as e:
            codes[name] = e.args[0].name()
    return codes


def assigned(name, assignment):
    """A new topic placed by `assignment` (confluent-kafka takes its partition count too;
    librdkafka sends -1 for both counts, as Kafka requires)."""
    return NewTopic(name, num_partitions=len(assignment), replica_assignment=assignment)


def replica_assignments():
    broker = next(iter(admin.list_topics(timeout=20).brokers))
    # Created as assigned: three partitions, each on the one broker.
    new = assigned(topic, [[broker], [broker], [broker]])
    assert refused_code(admin.create_topics([new])) == {topic: None}
    described = admin.list_topics(topic, timeout=20).topics[topic]
    assert described.error is None, described.error
    replicas = {p: m.replicas for p, m in described.partitions.items()}
    assert replicas == {0: [broker], 1: [broker], 2: [broker]}, replicas

    refused = {}
    bad = {
        "unregistered": [[broker + 7]],
        "twice": [[broker, broker]],
        "uneven": [[broker], [broker, broker + 7]],
    }
    for case, assignment in bad.items():
        name = f"{topic}-{case}"
        refused[case] = refused_code(admin.create_topics([assigned(name, assignment)]))[name]
        assert name not in admin.list_topics(timeout=20).topics, name
    # validate_only: checked the same, nothing created either way.
    name = f"{topic}-validated"
    refused["validated"] = refused_code(
        admin.create_topics([assigned(name, [[broker + 7]])], validate_only=True)
    )[name]
    ok = refused_code(admin.create_topics([assigned(name, [[broker]])], validate_only=True))
    assert ok == {name: None}, ok
    assert name not in admin.list_topics(timeout=20).topics, name

    # CreatePartitions: one assignment per new partition, on registered brokers.
    refused["grow_unregistered"] = refused_code(
        admin.create_partitions([NewPartitions(topic, 5, replica_assignment=[[broker], [broker + 7]])])
    )[topic]
    assert len(admin.list_topics(topic, timeout=20).topics[topic].partitions) == 3
    grown = refused_code(admin.create_partitions([NewPartitions(topic, 5, replica_assignment=[[broker], [broker]])]))
    assert grown == {topic: None}, grown
    # kafka-python's NewPartitions with assignments (its own integration test's call).
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewPartitions as KpPartitions

    kp = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        kp_result = kp.create_partitions({topic: KpPartitions(7, [[broker], [broker]])})
        kp_errors = [r[1] for r in kp_result.results]
        try:
            kp.create_partitions({topic: KpPartitions(9, [[broker]])})
            short = None
        except Exception as e:  # kafka-python raises the broker's error as an exception
            short = type(e).__name__
    finally:
        kp.close()
    assert kp_errors == [0], kp_errors
    partitions = admin.list_topics(topic, timeout=20).topics[topic].partitions
    assert sorted(partitions) == list(range(7)), sorted(partitions)
    assert all(m.replicas == [broker] for m in partitions.values()), partitions
    return {"refused": refused, "partitions": len(partitions), "kafka_python_short": short}


def admin_apis():
    from kafka.admin import ConfigResource as KpResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient
    from kafka.structs import TopicPartitionReplica

    create(topic, 4)
    kp = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        # DescribeTopicPartitions, one partition a page, following the cursor.
        seen, cursor, pages = [], None, 0
        while pages < 10:
            page = kp.describe_topic_partitions([topic], response_partition_limit=1, cursor=cursor)
            pages += 1
            [t] = page["topics"]
            assert t["name"] == topic and t["error_code"] == 0, t
            seen.extend(p["partition_index"] for p in t["partitions"])
            assert all(p["leader_id"] >= 0 and p["replica_nodes"] for p in t["partitions"]), t
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert cursor["topic_name"] == topic, cursor
        whole = kp.describe_topic_partitions([topic, "no-such-topic"])
        codes = {t["name"]: t["error_code"] for t in whole["topics"]}
        assert whole["next_cursor"] is None, whole

        # ElectLeaders: the one broker leads every partition already.
        preferred = kp.elect_leaders(0, {topic: [0, 1, 2, 3]}, raise_errors=False)
        unclean = kp.elect_leaders(1, {topic: [0]}, raise_errors=False)
        unknown = kp.elect_leaders(0, {topic: [9]}, raise_errors=False)
        elections = {
            "preferred": sorted({p[1] for r in preferred.replica_election_results for p in r[1]}),
            "unclean": [p[1] for r in unclean.replica_election_results for p in r[1]],
            "unknown": [p[1] for r in unknown.replica_election_results for p in r[1]],
        }

        # AlterReplicaLogDirs: to the one log directory, and to one the broker lacks.
        dirs = kp.describe_log_dirs()
        broker = dirs[0]["broker"]
        log_dir = dirs[0]["log_dirs"][0]["log_dir"]
        here = TopicPartitionReplica(topic, 0, broker)
        moves = {
            "same": kp.alter_replica_log_dirs({here: log_dir})[here].__name__,
            "other": kp.alter_replica_log_dirs({here: "/nowhere/weir-logs"})[here].__name__,
        }

        described = kp.describe_configs([KpResource(ConfigResourceType.BROKER, broker)], config_filter="all")
        configs = described["broker"][str(broker)]
        wanted = ["advertised.listeners", "listeners", "log.dirs", "broker.id", "num.partitions"]
        broker_configs = {k: configs[k]["value"] for k in wanted}
        for k in wanted:
            assert configs[k]["read_only"] is True, (k, configs[k])
            assert configs[k]["config_source"] == "STATIC_BROKER_CONFIG", (k, configs[k])
        assert broker_configs["log.dirs"] == log_dir, (broker_configs, log_dir)
    finally:
        kp.close()

    # A broker key set at run time: refused, naming the key.
    resource = ConfigResource(
        ConfigResource.Type.BROKER,
        str(broker),
        incremental_configs=[ConfigEntry("log.retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)],
    )
    try:
        admin.incremental_alter_configs([resource])[resource].result(timeout=20)
        alter = "accepted"
    except KafkaException as e:
        err = e.args[0]
        assert "log.retention.ms" in err.str(), err.str()
        alter = err.name()

    # Kafka's dynamic keys Weir accepts (librdkafka's 0081 sets the first): set on this
    # broker, reported with their source, then removed. (The cluster's default, an empty
    # broker name, is one neither Python client can name: weir-cluster's tests cover it.)
    def alter_broker(name, key, value, op):
        res = ConfigResource(
            ConfigResource.Type.BROKER,
            name,
            incremental_configs=[ConfigEntry(key, value, incremental_operation=op)],
        )
        admin.incremental_alter_configs([res])[res].result(timeout=20)

    def dynamic(keys):
        kp = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            got = kp.describe_configs([KpResource(ConfigResourceType.BROKER, broker)], config_filter="all")
            configs = got["broker"][str(broker)]
            return {k: [configs[k]["value"], configs[k]["config_source"], configs[k]["read_only"]] for k in keys}
        finally:
            kp.close()

    relogin, threads = "sasl.kerberos.min.time.before.relogin", "num.io.threads"
    alter_broker(str(broker), relogin, "58000", AlterConfigOpType.SET)
    alter_broker(str(broker), threads, "16", AlterConfigOpType.SET)
    dynamic_set = dynamic([relogin, threads])
    alter_broker(str(broker), relogin, None, AlterConfigOpType.DELETE)
    alter_broker(str(broker), threads, None, AlterConfigOpType.DELETE)
    dynamic_removed = dynamic([relogin, threads])
    try:
        alter_broker(str(broker), threads, "0", AlterConfigOpType.SET)
        bad_value = "accepted"
    except KafkaException as e:
        bad_value = e.args[0].name()
    return {
        "pages": pages,
        "partitions": seen,
        "codes": codes,
        "elections": elections,
        "moves": moves,
        "broker_configs": broker_configs,
        "bootstrap": bootstrap,
        "alter": alter,
        "dynamic_set": dynamic_set,
        "dynamic_removed": dynamic_removed,
        "bad_value": bad_value,
    }


def group_configs():
    group = "cfg-" + topic
    resource = lambda **kw: ConfigResource(ConfigResource.Type.GROUP, group, **kw)  # noqa: E731
    consumer_keys = ["consumer.heartbeat.interval.ms", "consumer.session.timeout.ms"]

    def configs():
        got = admin.describe_configs([resource()])
        entries = list(got.values())[0].result(timeout=20)
        return {k: [entries[k].value, ConfigSource(entries[k].source).name] for k in consumer_keys}

    def incremental(*entries):
        r = resource(incremental_configs=list(entries))
        for f in admin.incremental_alter_configs([r]).values():
            f.result(timeout=20)

    def refused(*entries):
        try:
            incremental(*entries)
        except KafkaException as e:
            err = e.args[0]
            return [err.name(), err.str()]
        raise AssertionError(f"{entries} accepted")

    SET, DELETE = AlterConfigOpType.SET, AlterConfigOpType.DELETE
    before = configs()
    # As librdkafka's test 0081 does, on a group that does not exist yet.
    incremental(
        ConfigEntry("consumer.session.timeout.ms", "50000", incremental_operation=SET),
        ConfigEntry("consumer.heartbeat.interval.ms", "1000", incremental_operation=SET),
    )
    after_set = configs()
    bad = {
        "above_max": refused(ConfigEntry("consumer.session.timeout.ms", "70000", incremental_operation=SET)),
        "heartbeat_not_below_session": refused(
            ConfigEntry("consumer.session.timeout.ms", "4000", incremental_operation=SET),
            ConfigEntry("consumer.heartbeat.interval.ms", "5000", incremental_operation=SET),
        ),
        "not_a_number": refused(ConfigEntry("consumer.heartbeat.interval.ms", "soon", incremental_operation=SET)),
        "unknown": refused(ConfigEntry("consumer.max.poll.interval.ms", "1000", incremental_operation=SET)),
    }
    assert configs() == after_set, "a refused change changed something"

    # A KIP-848 consumer of the group is told the group's settings, and heartbeats at
    # its interval (the broker's default is 3 s).
    create(topic, 2)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    produce_all(producer, [(i % 2, b"r%d" % i, None) for i in range(10)])
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])

    def describe_group():
        out = subprocess.run(
            [os.environ["WEIR_BIN"], "group", "describe", group, "--format", "json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def poll_until(what, done, timeout_s=60):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            c.poll(0.2)
            got = what()
            if done(got):
                return got
        raise AssertionError(f"gave up waiting: {got}")

    def member():
        members = describe_group()["members"]
        return members[0] if members else None

    read = 0
    deadline = time.time() + 60
    while read < 10 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            read += 1
    assert read == 10, f"read {read}"
    # Settled (past the join window): told the group's interval.
    told = poll_until(member, lambda m: m is not None and m["heartbeat_interval_ms"] == 1000)
    # It follows it: over 4 s of polling, the coordinator never waits much longer than
    # that for its next heartbeat.
    longest = 0
    until = time.time() + 4
    while time.time() < until:
        c.poll(0.2)
        longest = max(longest, member()["ms_since_heartbeat"])
    # Changed while it runs: its next heartbeat gets the new session timeout.
    incremental(ConfigEntry("consumer.session.timeout.ms", "20000", incremental_operation=SET))
    changed = poll_until(member, lambda m: m["session_timeout_ms"] == 20000)
    c.close()

    # AlterConfigs replaces: what it leaves out goes back to the default.
    r = resource(set_config={"consumer.heartbeat.interval.ms": "2000"})
    for f in admin.alter_configs([r]).values():
        f.result(timeout=20)
    after_replace = configs()
    incremental(ConfigEntry("consumer.heartbeat.interval.ms", None, incremental_operation=DELETE))
    after_delete = configs()
    return {
        "before": before,
        "after_set": after_set,
        "refused": bad,
        "told": [told["heartbeat_interval_ms"], told["session_timeout_ms"]],
        "longest_ms_since_heartbeat": longest,
        "changed_session_timeout_ms": changed["session_timeout_ms"],
        "after_replace": after_replace,
        "after_delete": after_delete,
    }


def direct_reads():
    """A write.direct topic of 6 MiB segments (each wraps a 4 MiB window), read by a
    consumer tailing the producer (the newest records, from each segment's window in
    memory) and then by one from the start (the rest from the disk past the page cache,
    across rolls): every record, in order, none doubled, to both."""
    count, size, chunk = 12_000, 1024, 500
    create(topic, 1, {"write.direct": "true", "segment.bytes": str(6 << 20)})

    def value(i):
        return (b"%08d" % i) * (size // 8)

    def consumer(group):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        c.assign([TopicPartition(topic, 0, 0)])
        return c

    def read(c, n, deadline):
        got = []
        for m in polled(c, lambda: len(got) == n, deadline, 0.2):
            assert m.value() == value(m.offset()), f"offset {m.offset()}: wrong value"
            got.append(m.offset())
        return got

    deadline = time.time() + 90
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    tail = consumer("tail")
    tailed = []
    for start in range(0, count, chunk):
        produce_all(producer, [(0, value(i), None) for i in range(start, start + chunk)])
        tailed += read(tail, start + chunk - len(tailed), deadline)
    tail.close()
    behind = consumer("behind")
    from_start = read(behind, count, deadline)
    behind.close()
    for name, got in (("tailing", tailed), ("from the start", from_start)):
        wrong = next((i for i, offset in enumerate(got) if offset != i), len(got))
        assert got == list(range(count)), f"{name}: {len(got)} records, in order up to {wrong}"
    return {"tailed": len(tailed), "from_start": len(from_start)}


checks = {
    "fetch-max-bytes": fetch_max_bytes,
    "direct-reads": direct_reads,
    "list-offsets": list_offsets,
    "group-ids": group_ids,
    "topic-configs": topic_configs,
    "compact-keys": compact_keys,
    "commit-order": commit_order,
    "replica-assignments": replica_assignments,
    "admin-apis": admin_apis,
    "group-configs": group_configs,
}
result = checks[check]()
for f in admin.delete_topics([topic]).values():
    f.result(timeout=20)
print(json.dumps(result))
