//! Integration tests: real brokers on 127.0.0.1:0, spoken to with the generated tonic
//! clients, checking what a user would check.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use tokio_stream::StreamExt;
use tonic::Code;
use weir_proto::v1::*;

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test]
async fn plain_and_packed_records_round_trip_over_many_partitions_with_every_codec() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        const PARTITIONS: u32 = 6;
        c.create("rt", PARTITIONS, &[]).await;
        let codecs = [
            (Compression::None, weir_log::Compression::None),
            (Compression::Gzip, weir_log::Compression::Gzip),
            (Compression::Snappy, weir_log::Compression::Snappy),
            (Compression::Lz4, weir_log::Compression::Lz4),
            (Compression::Zstd, weir_log::Compression::Zstd),
        ];
        let mut expected: Vec<Vec<String>> = vec![Vec::new(); PARTITIONS as usize];
        for (round, (proto_codec, log_codec)) in codecs.iter().enumerate() {
            let mut parts = Vec::new();
            for p in 0..PARTITIONS {
                let vs = values(&format!("plain-{round}-{p}"), 40);
                expected[p as usize].extend(vs.clone());
                parts.push(plain(p, &vs, *proto_codec));
            }
            let resp = c.produce(request("rt", parts, Acks::Leader)).await;
            assert_eq!(resp.results.len(), PARTITIONS as usize);
            for (p, r) in resp.results.iter().enumerate() {
                assert_eq!(r.error, None);
                assert_eq!(r.partition, p as u32);
                assert_eq!(r.last_offset - r.base_offset, 39);
            }
            let mut parts = Vec::new();
            for p in 0..PARTITIONS {
                let (a, b) = (
                    values(&format!("packed-{round}-{p}-a"), 25),
                    values(&format!("packed-{round}-{p}-b"), 5),
                );
                expected[p as usize].extend(a.clone());
                expected[p as usize].extend(b.clone());
                // Two concatenated batches in one partition's data.
                let mut bytes = batch(&a, *log_codec, 1_000).to_vec();
                bytes.extend_from_slice(&batch(&b, *log_codec, 2_000));
                parts.push(packed(p, bytes.into()));
            }
            let resp = c.produce(request("rt", parts, Acks::All)).await;
            assert!(
                resp.results
                    .iter()
                    .all(|r| r.error.is_none() && r.last_offset - r.base_offset == 29)
            );
        }
        for p in 0..PARTITIONS {
            let records = c.fetch_all("rt", p, 0).await;
            let got: Vec<String> = records
                .iter()
                .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
                .collect();
            assert_eq!(got, expected[p as usize], "partition {p}");
            for (i, r) in records.iter().enumerate() {
                assert_eq!(r.offset, i as i64);
                assert_eq!(r.key.as_deref(), Some(format!("k-{}", got[i]).as_bytes()));
            }
            let first = &records[0];
            assert_eq!(
                first.headers,
                vec![RecordHeader {
                    key: "h".into(),
                    value: value("hv")
                }]
            );
            assert!(
                first.timestamp_ms > 1_600_000_000_000,
                "broker time for absent timestamps"
            );
            // Raw batches decode to the same records, and a mid-batch offset is honoured
            // by the decoded format.
            let raw = c
                .consumer
                .fetch(FetchRequest {
                    topic: "rt".into(),
                    partitions: vec![PartitionFetch {
                        partition: p,
                        offset: 0,
                        max_bytes: 0,
                    }],
                    max_wait_ms: 0,
                    min_bytes: 0,
                    max_bytes: 0,
                    format: RecordFormat::Batches as i32,
                    isolation: 0,
                })
                .await
                .unwrap()
                .into_inner()
                .results
                .remove(0);
            assert!(raw.records.is_empty());
            let mut rest = raw.batches.clone();
            let mut decoded = 0;
            while !rest.is_empty() {
                let len = weir_log::BatchHeader::parse(&rest).total_bytes();
                decoded += weir_log::decode_records(&rest.split_to(len)).unwrap().len();
            }
            assert_eq!(decoded as i64, raw.next_offset);
            let mid = c.fetch("rt", p, 5).await;
            assert_eq!(mid.records[0].offset, 5);
        }
        drop(c);
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn acks_none_leader_and_all() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("gc", 1, &[("flush.policy", "group-commit")]).await;
        c.create("ea", 1, &[("flush.policy", "every-append")]).await;
        // Written past the page cache: the same answers and records.
        c.create("gd", 1, &[("write.direct", "true")]).await;
        for topic in ["gc", "ea", "gd"] {
            let none = c
                .produce(request(
                    topic,
                    vec![plain(0, &values("n", 3), Compression::None)],
                    Acks::None,
                ))
                .await;
            assert_eq!(
                (none.results[0].base_offset, none.results[0].error.clone()),
                (-1, None)
            );
            let leader = c
                .produce(request(
                    topic,
                    vec![plain(0, &values("l", 3), Compression::None)],
                    Acks::Leader,
                ))
                .await;
            // Appends of one partition are ordered, so the fire-and-forget one came first.
            assert_eq!(
                (leader.results[0].base_offset, leader.results[0].last_offset),
                (3, 5)
            );
            let all = c
                .produce(request(
                    topic,
                    vec![plain(0, &values("a", 3), Compression::None)],
                    Acks::All,
                ))
                .await;
            assert_eq!(
                (all.results[0].base_offset, all.results[0].last_offset),
                (6, 8)
            );
            assert_eq!(c.latest(topic, 0).await, 9);
            let got: Vec<_> = c
                .fetch_all(topic, 0, 0)
                .await
                .into_iter()
                .map(|r| r.offset)
                .collect();
            assert_eq!(got, (0..9).collect::<Vec<_>>());
        }
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn restart_keeps_every_topic_config_and_record() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (topic_id, cluster_id);
        {
            let server = start(dir.path()).await;
            let mut c = connect(server.addr).await;
            c.create("keep", 3, &[("retention.ms", "-1")]).await;
            c.create("other", 1, &[]).await;
            for p in 0..3 {
                c.produce(request(
                    "keep",
                    vec![plain(p, &values(&format!("v{p}"), 100), Compression::Lz4)],
                    Acks::Leader,
                ))
                .await;
            }
            topic_id = c
                .admin
                .describe_topic(DescribeTopicRequest {
                    name: "keep".into(),
                    allow_auto_create: false,
                })
                .await
                .unwrap()
                .into_inner()
                .topic
                .unwrap()
                .topic_id;
            cluster_id = c
                .admin
                .describe_cluster(DescribeClusterRequest {})
                .await
                .unwrap()
                .into_inner()
                .cluster_id;
            drop(c);
            server.shutdown().await.unwrap();
        }
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        let topics = c
            .admin
            .list_topics(ListTopicsRequest {
                include_internal: false,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .topics;
        let names: Vec<_> = topics
            .iter()
            .map(|t| (t.name.as_str(), t.partitions))
            .collect();
        assert_eq!(names, [("keep", 3), ("other", 1)]);
        let desc = c
            .admin
            .describe_topic(DescribeTopicRequest {
                name: "keep".into(),
                allow_auto_create: false,
            })
            .await
            .unwrap()
            .into_inner()
            .topic
            .unwrap();
        assert_eq!(desc.topic_id, topic_id);
        assert_eq!(
            c.admin
                .describe_cluster(DescribeClusterRequest {})
                .await
                .unwrap()
                .into_inner()
                .cluster_id,
            cluster_id
        );
        let config = c
            .admin
            .describe_topic_config(DescribeTopicConfigRequest {
                name: "keep".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let retention = config
            .entries
            .iter()
            .find(|e| e.name == "retention.ms")
            .unwrap();
        assert_eq!(
            (retention.value.as_str(), retention.is_default),
            ("-1", false)
        );
        for p in 0..3 {
            let records = c.fetch_all("keep", p, 0).await;
            assert_eq!(records.len(), 100);
            assert_eq!(records[99].value, value(&format!("v{p}-99")));
            assert_eq!(desc.partitions[p as usize].high_watermark, 100);
        }
        // Appends continue where the log ended.
        let r = c
            .produce(request(
                "keep",
                vec![plain(0, &values("after", 1), Compression::None)],
                Acks::All,
            ))
            .await;
        assert_eq!(r.results[0].base_offset, 100);
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn long_poll_fetch_wakes_when_a_record_arrives() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("lp", 2, &[]).await;
        let mut consumer = c.consumer.clone();
        let started = Instant::now();
        let fetch = tokio::spawn(async move {
            consumer
                .fetch(FetchRequest {
                    topic: "lp".into(),
                    partitions: vec![
                        PartitionFetch {
                            partition: 0,
                            offset: 0,
                            max_bytes: 0,
                        },
                        PartitionFetch {
                            partition: 1,
                            offset: 0,
                            max_bytes: 0,
                        },
                    ],
                    max_wait_ms: 30_000,
                    min_bytes: 1,
                    max_bytes: 0,
                    format: RecordFormat::Records as i32,
                    isolation: 0,
                })
                .await
                .unwrap()
                .into_inner()
        });
        // Produce only once the fetch is waiting on the broker.
        let admin = server.admin_addr.unwrap();
        wait_until("the fetch to be in flight", || async move {
            http_get(admin, "/metrics")
                .await
                .1
                .contains("weir_rpc_in_flight{rpc=\"Fetch\"} 1")
        })
        .await;
        c.produce(request(
            "lp",
            vec![plain(1, &values("wake", 1), Compression::None)],
            Acks::Leader,
        ))
        .await;
        let resp = fetch.await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "woke by the append, not the 30 s timeout"
        );
        assert!(resp.results[0].records.is_empty());
        assert_eq!(resp.results[1].records.len(), 1);
        assert_eq!(resp.results[1].records[0].value, value("wake-0"));
        assert_eq!(resp.results[1].next_offset, 1);
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn consume_stream_follows_appends() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("follow", 1, &[]).await;
        c.produce(request(
            "follow",
            vec![plain(0, &values("before", 5), Compression::None)],
            Acks::All,
        ))
        .await;
        let mut stream = c
            .consumer
            .consume(ConsumeRequest {
                topic: "follow".into(),
                partition: 0,
                offset: 2,
                format: RecordFormat::Records as i32,
                isolation: 0,
                max_bytes: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        let mut round = 0;
        while got.len() < 3 + 3 * 4 {
            let msg = stream.next().await.unwrap().unwrap();
            assert_eq!(msg.next_offset, msg.records.last().unwrap().offset + 1);
            got.extend(msg.records.into_iter().map(|r| r.offset));
            // After each message, append more: the stream must follow.
            if round < 3 {
                c.produce(request(
                    "follow",
                    vec![plain(
                        0,
                        &values(&format!("r{round}"), 4),
                        Compression::Gzip,
                    )],
                    Acks::Leader,
                ))
                .await;
                round += 1;
            }
        }
        assert_eq!(got, (2..17).collect::<Vec<_>>());
        // Starting past the high watermark is refused with the valid range.
        let err = c
            .consumer
            .consume(ConsumeRequest {
                topic: "follow".into(),
                partition: 0,
                offset: 99,
                format: 0,
                isolation: 0,
                max_bytes: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange);
        assert!(err.message().contains("0..=17"), "{}", err.message());
        drop(stream);
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn list_offsets_and_delete_records() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("lo", 1, &[]).await;
        for (i, ts) in [1_000, 2_000, 3_000].into_iter().enumerate() {
            let part = packed(
                0,
                batch(
                    &values(&format!("t{i}"), 1),
                    weir_log::Compression::None,
                    ts,
                ),
            );
            c.produce(request("lo", vec![part], Acks::All)).await;
        }
        use offset_spec::Spec;
        assert_eq!(
            c.list_offset("lo", 0, position(OffsetPosition::Earliest))
                .await
                .offset,
            0
        );
        assert_eq!(
            c.list_offset("lo", 0, position(OffsetPosition::Latest))
                .await
                .offset,
            3
        );
        // An unset position selects nothing (unlike the old `earliest: false`), and a
        // number the broker does not know is no better.
        for unset in [OffsetPosition::Unspecified as i32, 7] {
            let refused = c.list_offset("lo", 0, Spec::Position(unset)).await;
            let error = refused.error.expect("an unspecified position is refused");
            assert_eq!(
                error.code,
                Code::InvalidArgument as i32,
                "{}",
                error.message
            );
            assert!(
                error.message.contains("OFFSET_POSITION_EARLIEST"),
                "{}",
                error.message
            );
        }
        let at = c.list_offset("lo", 0, Spec::TimestampMs(1_500)).await;
        assert_eq!((at.offset, at.timestamp_ms), (1, 2_000));
        let late = c.list_offset("lo", 0, Spec::TimestampMs(9_999)).await;
        assert_eq!((late.offset, late.timestamp_ms), (3, -1));

        let del = c
            .admin
            .delete_records(DeleteRecordsRequest {
                topic: "lo".into(),
                partitions: vec![
                    PartitionDeleteRecords {
                        partition: 0,
                        before_offset: 2,
                    },
                    PartitionDeleteRecords {
                        partition: 0,
                        before_offset: 50,
                    },
                ],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                del.results[0].log_start_offset,
                del.results[0].error.clone()
            ),
            (2, None)
        );
        assert_eq!(
            del.results[1].error.as_ref().unwrap().code,
            Code::OutOfRange as i32
        );
        assert_eq!(
            c.list_offset("lo", 0, position(OffsetPosition::Earliest))
                .await
                .offset,
            2
        );
        let gone = c.fetch("lo", 0, 0).await;
        let err = gone.error.unwrap();
        assert_eq!(err.code, Code::OutOfRange as i32);
        assert!(err.message.contains("2..=3"), "{}", err.message);
        assert_eq!((gone.log_start_offset, gone.high_watermark), (2, 3));
        assert_eq!(c.fetch("lo", 0, 2).await.records[0].value, value("t2-0"));
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn bad_input_gets_the_right_code_and_appends_nothing() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.max_request_bytes = 256 * 1024;
        // Unknown topics stay unknown (no creation on first use) for this test.
        cfg.auto_create_topics = false;
        let server = weir_server::start(cfg).await.unwrap();
        let mut c = connect(server.addr).await;
        c.create("bad", 2, &[("max.message.bytes", "4096")]).await;
        c.create("lat", 1, &[("message.timestamp.type", "LogAppendTime")])
            .await;

        // Unknown topic: NOT_FOUND everywhere.
        let err = c
            .producer
            .produce(request(
                "nope",
                vec![plain(0, &values("x", 1), Compression::None)],
                Acks::Leader,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert!(err.message().contains("nope"));
        let err = c
            .consumer
            .fetch(FetchRequest {
                topic: "nope".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = c
            .admin
            .describe_topic(DescribeTopicRequest {
                name: "nope".into(),
                allow_auto_create: false,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = c
            .admin
            .delete_topic(DeleteTopicRequest {
                name: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);

        // Topic names and existing topics.
        for name in ["", ".", "..", "a/b", &"x".repeat(250)] {
            let err = c
                .admin
                .create_topic(CreateTopicRequest {
                    name: name.into(),
                    partitions: 1,
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{name:?}");
            assert!(err.message().contains("topic name"), "{}", err.message());
        }
        let err = c
            .admin
            .create_topic(CreateTopicRequest {
                name: "bad".into(),
                partitions: 1,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists);
        let err = c
            .admin
            .create_topic(CreateTopicRequest {
                name: "cfg".into(),
                partitions: 1,
                configs: [("retention.ms".to_string(), "soon".to_string())].into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("retention.ms"));

        // Per-partition bad input: the right code, naming the problem.
        let good = batch(&values("ok", 2), weir_log::Compression::None, 5);
        let mut crc_broken = good.to_vec();
        let last = crc_broken.len() - 1;
        crc_broken[last] ^= 0xff;
        let mut garbage = vec![0u8; 100];
        garbage[11] = 50;
        let cases: Vec<(PartitionRecords, &str)> = vec![
            (
                plain(7, &values("x", 1), Compression::None),
                "no partition 7",
            ),
            (
                plain(0, &["y".repeat(5000)], Compression::None),
                "max.message.bytes",
            ),
            (packed(0, garbage.into()), "invalid"),
            (packed(1, crc_broken.into()), "CRC"),
            (
                PartitionRecords {
                    partition: 1,
                    data: None,
                    ..Default::default()
                },
                "no records",
            ),
        ];
        for (part, needle) in cases {
            let resp = c.produce(request("bad", vec![part], Acks::All)).await;
            let err = resp.results[0].error.clone().expect("refused");
            assert_eq!(
                err.code,
                Code::InvalidArgument as i32,
                "{needle}: {}",
                err.message
            );
            assert!(
                err.message.contains(needle),
                "wanted {needle:?} in {:?}",
                err.message
            );
            assert_eq!(resp.results[0].base_offset, -1);
        }
        // Packed batches on a LogAppendTime topic are refused, saying why.
        let resp = c
            .produce(request("lat", vec![packed(0, good.clone())], Acks::All))
            .await;
        assert!(
            resp.results[0]
                .error
                .as_ref()
                .unwrap()
                .message
                .contains("LogAppendTime")
        );
        // Duplicate partition in one request: the first is appended, the second refused.
        let resp = c
            .produce(request(
                "bad",
                vec![packed(1, good.clone()), packed(1, good.clone())],
                Acks::All,
            ))
            .await;
        assert_eq!(resp.results[0].error, None);
        assert_eq!(
            resp.results[1].error.as_ref().unwrap().code,
            Code::InvalidArgument as i32
        );
        assert_eq!(
            (
                c.latest("bad", 0).await,
                c.latest("bad", 1).await,
                c.latest("lat", 0).await
            ),
            (0, 2, 0)
        );

        // A compacted topic refuses records without keys, plain or packed (compressed
        // too), as INVALID_RECORD naming the first; nothing of the partition's data is
        // appended. Keyed records go in.
        c.create("cmp", 1, &[("cleanup.policy", "compact")]).await;
        let mut keyless = plain(0, &values("p", 3), Compression::None);
        if let Some(partition_records::Data::Records(list)) = &mut keyless.data {
            list.records[1].key = None;
        }
        let mut b = weir_log::RecordBatchBuilder::new(weir_log::Compression::Zstd);
        for (i, key) in [Some("k"), None].into_iter().enumerate() {
            b.push(&weir_log::Record {
                key: key.and_then(value),
                value: value(&format!("z{i}")),
                headers: vec![],
                timestamp: 5,
            });
        }
        let packed_keyless = packed(0, b.build().unwrap().freeze());
        for (part, first) in [(keyless, "index 1"), (packed_keyless, "index 1")] {
            let resp = c.produce(request("cmp", vec![part], Acks::All)).await;
            let err = resp.results[0].error.clone().expect("refused");
            assert_eq!(err.code, Code::InvalidArgument as i32, "{}", err.message);
            assert_eq!(err.reason, "INVALID_RECORD", "{}", err.message);
            assert!(
                err.message.contains("without a key") && err.message.contains(first),
                "{}",
                err.message
            );
        }
        assert_eq!(c.latest("cmp", 0).await, 0);
        let resp = c
            .produce(request(
                "cmp",
                vec![plain(0, &values("k", 2), Compression::None)],
                Acks::All,
            ))
            .await;
        assert_eq!(resp.results[0].error, None);
        assert_eq!(c.latest("cmp", 0).await, 2);

        // Offsets out of range name the valid range.
        let r = c.fetch("bad", 1, 3).await;
        let err = r.error.unwrap();
        assert_eq!(err.code, Code::OutOfRange as i32);
        assert!(err.message.contains("0..=2"), "{}", err.message);

        // Requests over the size limit are refused before they are buffered, as
        // RESOURCE_EXHAUSTED naming the limit (tonic's own answer is OUT_OF_RANGE).
        let big = plain(0, &["z".repeat(300 * 1024)], Compression::None);
        let err = c
            .producer
            .produce(request("bad", vec![big], Acks::All))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
        assert!(
            err.message().contains("max_request_bytes"),
            "{}",
            err.message()
        );
        assert_eq!(c.latest("bad", 0).await, 0);

        // Grow only.
        let err = c
            .admin
            .create_partitions(CreatePartitionsRequest {
                name: "bad".into(),
                total_partitions: 2,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn admin_describes_alters_grows_and_deletes() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("adm", 2, &[]).await;
        c.produce(request(
            "adm",
            vec![plain(1, &values("x", 3), Compression::None)],
            Acks::All,
        ))
        .await;
        let desc = c
            .admin
            .describe_topic(DescribeTopicRequest {
                name: "adm".into(),
                allow_auto_create: false,
            })
            .await
            .unwrap()
            .into_inner()
            .topic
            .unwrap();
        let p1 = &desc.partitions[1];
        assert_eq!(
            (
                p1.leader,
                p1.leader_epoch,
                p1.replicas.clone(),
                p1.isr.clone()
            ),
            (0, 0, vec![0], vec![0])
        );
        assert_eq!(
            (p1.log_start_offset, p1.high_watermark, p1.log_end_offset),
            (0, 3, 3)
        );

        let entries = c
            .admin
            .describe_topic_config(DescribeTopicConfigRequest { name: "adm".into() })
            .await
            .unwrap()
            .into_inner()
            .entries;
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        for key in [
            "flush.policy",
            "max.message.bytes",
            "message.timestamp.type",
            "retention.bytes",
            "retention.ms",
            "segment.bytes",
            "segment.ms",
        ] {
            assert!(names.contains(&key), "{key}");
        }
        assert!(
            entries
                .iter()
                .all(|e| e.is_default && !e.documentation.is_empty())
        );

        // Alter applies to the open partitions at once.
        let altered = c
            .admin
            .alter_topic_config(AlterTopicConfigRequest {
                name: "adm".into(),
                set: [("max.message.bytes".to_string(), "2048".to_string())].into(),
                reset: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            altered
                .entries
                .iter()
                .any(|e| e.name == "max.message.bytes" && e.value == "2048" && !e.is_default)
        );
        let resp = c
            .produce(request(
                "adm",
                vec![plain(1, &["q".repeat(3000)], Compression::None)],
                Acks::Leader,
            ))
            .await;
        assert_eq!(
            resp.results[0].error.as_ref().unwrap().code,
            Code::InvalidArgument as i32
        );
        let err = c
            .admin
            .alter_topic_config(AlterTopicConfigRequest {
                name: "adm".into(),
                set: [("flush.policy".to_string(), "bogus".to_string())].into(),
                reset: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        c.admin
            .alter_topic_config(AlterTopicConfigRequest {
                name: "adm".into(),
                set: Default::default(),
                reset: vec!["max.message.bytes".into()],
            })
            .await
            .unwrap();
        let resp = c
            .produce(request(
                "adm",
                vec![plain(1, &["q".repeat(3000)], Compression::None)],
                Acks::Leader,
            ))
            .await;
        assert_eq!(
            (resp.results[0].error.clone(), resp.results[0].base_offset),
            (None, 3)
        );

        let grown = c
            .admin
            .create_partitions(CreatePartitionsRequest {
                name: "adm".into(),
                total_partitions: 4,
            })
            .await
            .unwrap()
            .into_inner()
            .topic
            .unwrap();
        assert_eq!(grown.partitions.len(), 4);
        let r = c
            .produce(request(
                "adm",
                vec![plain(3, &values("new", 1), Compression::None)],
                Acks::Leader,
            ))
            .await;
        assert_eq!(r.results[0].base_offset, 0);

        let cluster = c
            .admin
            .describe_cluster(DescribeClusterRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!((cluster.controller_id, cluster.brokers.len()), (0, 1));
        assert_eq!(cluster.brokers[0].port, u32::from(server.addr.port()));
        assert!(!cluster.cluster_id.is_empty());

        c.admin
            .delete_topic(DeleteTopicRequest { name: "adm".into() })
            .await
            .unwrap();
        let err = c
            .admin
            .describe_topic(DescribeTopicRequest {
                name: "adm".into(),
                allow_auto_create: false,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        c.create("adm", 1, &[]).await;
        assert_eq!(
            c.latest("adm", 0).await,
            0,
            "a re-created topic starts empty"
        );
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn produce_stream_pipelines_and_answers_in_order() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.auto_create_topics = false;
        let server = weir_server::start(cfg).await.unwrap();
        let mut c = connect(server.addr).await;
        c.create("ps", 2, &[]).await;
        const REQUESTS: u64 = 300;
        let requests = tokio_stream::iter((0..REQUESTS).map(|seq| ProduceStreamRequest {
            sequence: seq,
            request: Some(request(
                "ps",
                vec![plain(
                    (seq % 2) as u32,
                    &values(&format!("s{seq}"), 2),
                    Compression::None,
                )],
                if seq % 3 == 0 {
                    Acks::All
                } else {
                    Acks::Leader
                },
            )),
        }));
        let mut responses = c
            .producer
            .produce_stream(requests)
            .await
            .unwrap()
            .into_inner();
        let mut next_offset = [0i64; 2];
        let mut seq = 0;
        while let Some(resp) = responses.next().await {
            let resp = resp.unwrap();
            assert_eq!(resp.sequence, seq);
            let r = &resp.response.unwrap().results[0];
            assert_eq!(r.error, None);
            let p = (seq % 2) as usize;
            assert_eq!(
                r.base_offset, next_offset[p],
                "partition {p} offsets are contiguous and in request order"
            );
            next_offset[p] = r.last_offset + 1;
            seq += 1;
        }
        assert_eq!(seq, REQUESTS);
        assert_eq!(next_offset, [REQUESTS as i64, REQUESTS as i64]);
        // A request for an unknown topic ends the stream with NOT_FOUND.
        let bad = tokio_stream::iter([ProduceStreamRequest {
            sequence: 0,
            request: Some(request("nope", vec![], Acks::Leader)),
        }]);
        let mut responses = c.producer.produce_stream(bad).await.unwrap().into_inner();
        assert_eq!(
            responses.next().await.unwrap().unwrap_err().code(),
            Code::NotFound
        );
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn health_is_serving_and_reflection_lists_the_services() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let c = connect(server.addr).await;
        let mut health = tonic_health::pb::health_client::HealthClient::new(c.channel.clone());
        for service in ["", "weir.v1.Producer", "weir.v1.Consumer", "weir.v1.Admin"] {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            assert_eq!(
                status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
                "{service:?}"
            );
        }
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut reflection = ServerReflectionClient::new(c.channel.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = reflection
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            stream.next().await.unwrap().unwrap().message_response
        else {
            panic!("expected a service list");
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        for service in [
            "weir.v1.Producer",
            "weir.v1.Consumer",
            "weir.v1.Admin",
            "weir.v1.Transactions",
            "grpc.health.v1.Health",
        ] {
            assert!(names.iter().any(|n| n == service), "{service} in {names:?}");
        }
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn metrics_and_health_over_http() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let admin = server.admin_addr.unwrap();
        let (status, body) = http_get(admin, "/health").await;
        assert!(status.contains("200"), "{status}");
        assert_eq!(body.trim(), "ok");
        let mut c = connect(server.addr).await;
        c.create("m", 2, &[]).await;
        c.produce(request(
            "m",
            vec![plain(1, &values("x", 7), Compression::None)],
            Acks::All,
        ))
        .await;
        assert_eq!(c.fetch_all("m", 1, 0).await.len(), 7);
        let (status, body) = http_get(admin, "/metrics").await;
        assert!(status.contains("200"), "{status}");
        for line in [
            "weir_records_in_total{topic=\"m\"} 7",
            "weir_records_out_total{topic=\"m\"} 7",
            "weir_log_end_offset{topic=\"m\",partition=\"1\"} 7",
            "weir_log_end_offset{topic=\"m\",partition=\"0\"} 0",
            "weir_rpc_duration_seconds_count{rpc=\"Produce\"} 1",
            "# TYPE weir_rpc_duration_seconds histogram",
            "weir_under_replicated_partitions 0",
            "weir_offline_partitions 0",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "missing {line:?} in:\n{body}"
            );
        }
        assert!(body.contains("weir_bytes_in_total{topic=\"m\"}"));
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_completes_an_in_flight_long_poll() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("sd", 1, &[]).await;
        c.produce(request(
            "sd",
            vec![plain(0, &values("kept", 3), Compression::None)],
            Acks::All,
        ))
        .await;
        let mut consumer = c.consumer.clone();
        let fetch = tokio::spawn(async move {
            consumer
                .fetch(FetchRequest {
                    topic: "sd".into(),
                    partitions: vec![PartitionFetch {
                        partition: 0,
                        offset: 3,
                        max_bytes: 0,
                    }],
                    max_wait_ms: 50_000,
                    min_bytes: 1,
                    max_bytes: 0,
                    format: 0,
                    isolation: 0,
                })
                .await
        });
        let admin = server.admin_addr.unwrap();
        wait_until("the fetch to be in flight", || async move {
            http_get(admin, "/metrics")
                .await
                .1
                .contains("weir_rpc_in_flight{rpc=\"Fetch\"} 1")
        })
        .await;
        let started = Instant::now();
        server.shutdown().await.unwrap();
        let resp = fetch
            .await
            .unwrap()
            .expect("the in-flight fetch is answered, not cut off")
            .into_inner();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "shutdown did not wait for max_wait"
        );
        assert_eq!(
            (resp.results[0].error.clone(), resp.results[0].next_offset),
            (None, 3)
        );
        assert!(resp.results[0].records.is_empty());
        // Everything was flushed: a new broker on the directory has the records.
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        assert_eq!(c.fetch_all("sd", 0, 0).await.len(), 3);
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_external_listener_serves_clients_and_hands_out_external_addresses() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = weir_server::start(weir_server::ServerConfig {
            kafka_listen: None,
            external_listen: Some("127.0.0.1:0".parse().unwrap()),
            external_advertise: Some("weir.example.com:19292".into()),
            ..config(dir.path())
        })
        .await
        .unwrap();
        let external = server.external_addr.expect("an external listener is bound");
        assert_ne!(external, server.addr);
        let describe = |addr| async move {
            let cluster = connect(addr)
                .await
                .admin
                .describe_cluster(DescribeClusterRequest {})
                .await
                .unwrap()
                .into_inner();
            assert_eq!(cluster.brokers.len(), 1);
            let b = &cluster.brokers[0];
            (b.host.clone(), b.port)
        };
        // Each listener tells its clients the address they can reach.
        assert_eq!(
            describe(server.addr).await,
            ("127.0.0.1".to_string(), u32::from(server.addr.port()))
        );
        assert_eq!(
            describe(external).await,
            ("weir.example.com".to_string(), 19292)
        );
        // Both serve the client API: written on one, read on the other.
        let mut outside = connect(external).await;
        outside.create("ext", 1, &[]).await;
        let r = outside
            .produce(request(
                "ext",
                vec![plain(0, &values("e", 3), Compression::None)],
                Acks::All,
            ))
            .await;
        assert_eq!(r.results[0].error, None);
        let mut inside = connect(server.addr).await;
        let got: Vec<_> = inside
            .fetch_all("ext", 0, 0)
            .await
            .into_iter()
            .map(|r| r.value)
            .collect();
        let want: Vec<_> = values("e", 3).iter().map(|v| value(v)).collect();
        assert_eq!(got, want);
        server.shutdown().await.unwrap();
    })
    .await;
}

/// A client with gRPC's default 4 MiB receive limit (grpc-python, grpc-go) fetching 10
/// partitions with the defaults gets answers that fit, even for zstd batches whose
/// decoded records take many times the room of the stored bytes, and reads every record
/// once, in order, by following `next_offset`.
#[tokio::test]
async fn default_fetches_fit_a_4_mib_receive_limit_even_decoded() {
    const LIMIT: usize = 4 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = connect(server.addr).await;
    c.create("wide", 10, &[]).await;
    // Per partition: 4 zstd batches of 2,000 records of 1 KiB of one repeated byte
    // (2 MB decoded each, a few KB stored).
    let value = "x".repeat(1024);
    for p in 0..10 {
        for b in 0..4 {
            let values: Vec<String> = (0..2_000).map(|i| format!("{p}-{b}-{i}-{value}")).collect();
            let bytes = batch(&values, weir_log::Compression::Zstd, 1_000);
            let resp = c
                .produce(request("wide", vec![packed(p, bytes)], Acks::Leader))
                .await;
            assert_eq!(resp.results[0].error, None);
        }
    }
    let mut consumer =
        consumer_client::ConsumerClient::new(c.channel.clone()).max_decoding_message_size(LIMIT);
    let mut offsets = vec![0i64; 10];
    let mut fetches = 0;
    while offsets.iter().any(|o| *o < 8_000) {
        fetches += 1;
        assert!(fetches < 1_000, "no progress: {offsets:?}");
        let resp = consumer
            .fetch(FetchRequest {
                topic: "wide".into(),
                partitions: (0..10)
                    .map(|p| PartitionFetch {
                        partition: p,
                        offset: offsets[p as usize],
                        max_bytes: 0,
                    })
                    .collect(),
                ..Default::default()
            })
            .await
            .expect("the answer fits the client's limit")
            .into_inner();
        assert!(prost::Message::encoded_len(&resp) <= LIMIT);
        for r in resp.results {
            assert_eq!(r.error, None);
            let p = r.partition as usize;
            for (i, record) in r.records.iter().enumerate() {
                assert_eq!(
                    record.offset,
                    offsets[p] + i as i64,
                    "in order, none skipped"
                );
            }
            offsets[p] = r.next_offset;
        }
    }
    assert!(
        fetches > 10,
        "the data does not fit a few answers: {fetches}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_topics_pages_cover_every_topic_once() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        let mut names: Vec<String> = (0..8).map(|i| format!("topic-{}", 7 - i)).collect();
        for name in &names {
            c.create(name, 1, &[]).await;
        }
        names.sort();

        let mut listed = Vec::new();
        let mut page_sizes = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = c
                .admin
                .list_topics(ListTopicsRequest {
                    include_internal: false,
                    page_size: 3,
                    page_token,
                })
                .await
                .unwrap()
                .into_inner();
            page_sizes.push(page.topics.len());
            listed.extend(page.topics.into_iter().map(|t| t.name));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
            // A topic deleted after it was listed, and one created before the token,
            // move nothing else in or out of the later pages.
            if listed.len() == 3 {
                c.admin
                    .delete_topic(DeleteTopicRequest {
                        name: "topic-0".into(),
                    })
                    .await
                    .unwrap();
                c.create("topic-00", 1, &[]).await;
            }
        }
        assert_eq!(page_sizes, [3, 3, 2]);
        assert_eq!(listed, names);

        // One page holds everything at the default size; internal topics only on request.
        let all = c
            .admin
            .list_topics(ListTopicsRequest {
                include_internal: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(all.next_page_token.is_empty());
        assert!(all.topics.iter().any(|t| t.internal));

        for page_token in ["topic-3", "topics:not hex", "groups:61"] {
            let refused = c
                .admin
                .list_topics(ListTopicsRequest {
                    include_internal: false,
                    page_size: 3,
                    page_token: page_token.into(),
                })
                .await
                .unwrap_err();
            assert_eq!(refused.code(), Code::InvalidArgument, "{page_token}");
            assert!(refused.message().contains("page_token"), "{refused:?}");
        }
        server.shutdown().await.unwrap();
    })
    .await;
}

/// A gRPC listener counts its connections as the listener kit's listeners do: accepted,
/// open now, and turned away at `max_connections` (`weir_listener_connections_*` with
/// `listener="client"`, the gRPC client listener's name).
#[tokio::test]
async fn grpc_connections_are_counted_per_listener() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = weir_server::start(weir_server::ServerConfig {
            max_connections: 1,
            ..config(dir.path())
        })
        .await
        .expect("server starts");
        let admin = server.admin_addr.unwrap();
        let mut c = connect(server.addr).await;
        c.create("counted", 1, &[]).await;
        // A second connection finds the one slot taken: accepted by the kernel, closed
        // at once by the listener.
        let mut refused = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read(&mut refused, &mut byte),
        )
        .await
        .expect("the refused connection is closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let (_, body) = http_get(admin, "/metrics").await;
        for line in [
            "weir_listener_connections_accepted_total{listener=\"client\"} 1",
            "weir_listener_connections_open{listener=\"client\"} 1",
            "weir_listener_connections_refused_total{listener=\"client\",reason=\"max_connections\"} 1",
        ] {
            assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
        }
        drop(c);
        wait_until("the closed connection to be counted closed", || async {
            let (_, body) = http_get(admin, "/metrics").await;
            body.lines()
                .any(|l| l == "weir_listener_connections_open{listener=\"client\"} 0")
        })
        .await;
        server.shutdown().await.unwrap();
    })
    .await;
}

/// The Grafana dashboard in deploy/grafana queries only series a broker exports: every
/// `weir_*` name in it (a histogram's `_bucket` by its family) has a `# TYPE` line in
/// `/metrics`.
#[tokio::test]
async fn the_grafana_dashboard_names_only_metrics_the_broker_exports() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let (_, body) = http_get(server.admin_addr.unwrap(), "/metrics").await;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/grafana/weir-dashboard.json"
        );
        let dashboard = std::fs::read_to_string(path).unwrap();
        let mut names: Vec<&str> = dashboard
            .match_indices("weir_")
            .map(|(at, _)| {
                let rest = &dashboard[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(names.len() >= 10, "{names:?}");
        for name in names {
            let family = name.strip_suffix("_bucket").unwrap_or(name);
            assert!(
                body.contains(&format!("# TYPE {family} ")),
                "the dashboard queries {name}, which /metrics does not export"
            );
        }
    })
    .await;
}

/// Kafka's `auto.create.topics.enable`, on by default: a produce to a topic nobody
/// created creates it with the broker's defaults and appends; off, it is NOT_FOUND.
#[tokio::test]
async fn a_produce_to_a_topic_nobody_created_creates_it_with_the_defaults() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.num_partitions = 3;
        let server = weir_server::start(cfg).await.unwrap();
        let mut c = connect(server.addr).await;
        let resp = c
            .producer
            .produce(request(
                "first-use",
                vec![plain(2, &values("x", 2), Compression::None)],
                Acks::All,
            ))
            .await
            .expect("the topic is created on first use")
            .into_inner();
        assert_eq!(resp.results[0].error, None);
        assert_eq!(
            (resp.results[0].base_offset, resp.results[0].last_offset),
            (0, 1)
        );
        let described = c
            .admin
            .describe_topic(DescribeTopicRequest {
                name: "first-use".into(),
                allow_auto_create: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(described.topic.unwrap().partitions.len(), 3);
        server.shutdown().await.unwrap();
    })
    .await;
}
