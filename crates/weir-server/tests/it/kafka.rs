//! A broker's Kafka listeners, spoken to over TCP with kafka-protocol's client side:
//! OffsetForLeaderEpoch as Kafka clients ask it after a failover, the leader epoch a
//! Fetch names, ListOffsets' special
//! timestamps no pinned client sends, and the addresses each listener (the Kafka one and
//! the external one) tells its clients for brokers and group coordinators.

use crate::common;

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::*;
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    RequestHeader, ResponseHeader, TopicName,
    fetch_request::{FetchPartition, FetchTopic},
    fetch_response::PartitionData,
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic},
    offset_for_leader_epoch_response::EpochEndOffset,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Channel;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::producer_client::ProducerClient;
use weir_proto::v1::*;

/// One request over a fresh connection, and its answer.
async fn call<R: Request>(kafka: SocketAddr, version: i16, request: &R) -> R::Response
where
    R::Response: Decodable,
{
    let mut payload = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("weir-test")))
        .encode(&mut payload, R::header_version(version))
        .unwrap();
    request.encode(&mut payload, version).unwrap();
    let mut stream = TcpStream::connect(kafka).await.unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(payload.len() as i32);
    frame.put_slice(&payload);
    stream.write_all(&frame).await.unwrap();
    let len = stream.read_i32().await.unwrap();
    let mut answer = vec![0; len as usize];
    stream.read_exact(&mut answer).await.unwrap();
    let mut answer = Bytes::from(answer);
    let api_key = ApiKey::try_from(R::KEY).unwrap();
    let header =
        ResponseHeader::decode(&mut answer, api_key.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    let response = R::Response::decode(&mut answer, version).unwrap();
    assert!(!answer.has_remaining(), "{} bytes left over", answer.len());
    response
}

/// Partition 0 of `topic`: `(partition, current leader epoch, leader epoch)` each.
async fn epoch_ends(
    kafka: SocketAddr,
    version: i16,
    topic: &str,
    asked: &[(i32, i32, i32)],
) -> Vec<EpochEndOffset> {
    let request = OffsetForLeaderEpochRequest::default().with_topics(vec![
        OffsetForLeaderTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(
                asked
                    .iter()
                    .map(|&(partition, current, epoch)| {
                        OffsetForLeaderPartition::default()
                            .with_partition(partition)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(epoch)
                    })
                    .collect(),
            ),
    ]);
    let response: OffsetForLeaderEpochResponse = call(kafka, version, &request).await;
    assert_eq!(response.topics.len(), 1);
    response.topics.into_iter().next().unwrap().partitions
}

async fn leader_epoch(mut admin: AdminClient<Channel>, topic: &str) -> i32 {
    admin
        .describe_topic(DescribeTopicRequest {
            name: topic.into(),
            allow_auto_create: false,
        })
        .await
        .unwrap()
        .into_inner()
        .topic
        .unwrap()
        .partitions[0]
        .leader_epoch as i32
}

/// Produces `values` to partition 0 of `topic`, acks=all; whether they were appended.
async fn produce(mut producer: ProducerClient<Channel>, topic: &str, values: &[&str]) -> bool {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    let response = producer
        .produce(request(
            topic,
            vec![plain(0, &values, Compression::None)],
            Acks::All,
        ))
        .await
        .expect("produce")
        .into_inner();
    response.results.iter().all(|r| r.error.is_none())
}

#[tokio::test]
async fn offset_for_leader_epoch_answers_where_a_past_epoch_ended() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let kafka_config = || weir_server::ServerConfig {
            kafka_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..config(dir.path())
        };
        // Three records under the first leadership.
        let server = weir_server::start(kafka_config()).await.unwrap();
        let mut clients = connect(server.addr).await;
        clients.create("t", 1, &[]).await;
        assert!(produce(clients.producer.clone(), "t", &["a", "b", "c"]).await);
        let first = leader_epoch(clients.admin.clone(), "t").await;
        server.shutdown().await.unwrap();

        // A restart is a new leadership of the partition: two more records under it.
        let server = weir_server::start(kafka_config()).await.unwrap();
        let kafka = server.kafka_addr.expect("a Kafka listener");
        let clients = connect(server.addr).await;
        wait_until("the partition is led again", || {
            let admin = clients.admin.clone();
            async move { leader_epoch(admin, "t").await > first }
        })
        .await;
        // As soon as the new leadership takes appends (wait_until stops at the first
        // that succeeds).
        wait_until("two records appended", || {
            let producer = clients.producer.clone();
            async move { produce(producer, "t", &["d", "e"]).await }
        })
        .await;
        let second = leader_epoch(clients.admin.clone(), "t").await;

        for version in [2, 4] {
            let ends = epoch_ends(
                kafka,
                version,
                "t",
                &[
                    // The first epoch ended where the second began.
                    (0, second, first),
                    // The current epoch ends at the log end.
                    (0, second, second),
                    // No check of the client's epoch (-1), and an epoch between the two
                    // that wrote nothing: the one before it, as Kafka answers.
                    (0, -1, second - 1),
                    // Stale metadata, and metadata this broker has not seen yet.
                    (0, first, second),
                    (0, second + 1, second),
                    (3, second, second),
                ],
            )
            .await;
            let got: Vec<(i32, i16, i32, i64)> = ends
                .iter()
                .map(|e| (e.partition, e.error_code, e.leader_epoch, e.end_offset))
                .collect();
            assert_eq!(
                got,
                [
                    (0, 0, first, 3),
                    (0, 0, second, 5),
                    (0, 0, first, 3),
                    (0, 74, -1, -1), // FENCED_LEADER_EPOCH
                    (0, 75, -1, -1), // UNKNOWN_LEADER_EPOCH
                    (3, 3, -1, -1),  // UNKNOWN_TOPIC_OR_PARTITION
                ],
                "v{version}"
            );
        }
        // A topic that does not exist.
        let ends = epoch_ends(kafka, 4, "nope", &[(0, -1, 0)]).await;
        assert_eq!(ends[0].error_code, 3);

        // A Fetch checks the client's epoch the same way, before it reads (KIP-320): a
        // leader whose metadata lags must not judge a position by its own log.
        for (current, code) in [(second, 0), (-1, 0), (first, 74), (second + 1, 75)] {
            let answer = fetch_at(kafka, "t", current, 3).await;
            assert_eq!(answer.error_code, code, "current leader epoch {current}");
            match code {
                0 => assert!(!answer.records.unwrap_or_default().is_empty()),
                _ => assert!(answer.records.unwrap_or_default().is_empty()),
            }
        }
        server.shutdown().await.unwrap();
    })
    .await;
}

/// A Fetch (v12) of partition 0 of `topic` from `offset`, naming `current_leader_epoch`.
async fn fetch_at(
    kafka: SocketAddr,
    topic: &str,
    current_leader_epoch: i32,
    offset: i64,
) -> PartitionData {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(current_leader_epoch)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let response: FetchResponse = call(kafka, 12, &request).await;
    assert_eq!(response.error_code, 0);
    response.responses[0].partitions[0].clone()
}

/// ListOffsets of partition 0 of `topic` at v9 for each timestamp asked: `(error code,
/// offset, timestamp, leader epoch)` each.
async fn list_offsets(kafka: SocketAddr, topic: &str, asked: &[i64]) -> Vec<(i16, i64, i64, i32)> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(
                    asked
                        .iter()
                        .map(|&timestamp| {
                            ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                ),
        ]);
    let response: ListOffsetsResponse = call(kafka, 9, &request).await;
    response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.offset, p.timestamp, p.leader_epoch))
        .collect()
}

/// The special timestamps as Kafka 4 answers them without tiered storage, on an empty
/// partition and on one with records: by timestamp with no record at or after it, and
/// max-timestamp on an empty partition, are -1 and -1; earliest-local is the log start;
/// latest-tiered is -1 with leader epoch -1.
#[tokio::test]
async fn list_offsets_special_timestamps_answer_as_kafka_does() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = weir_server::start(weir_server::ServerConfig {
            kafka_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..config(dir.path())
        })
        .await
        .unwrap();
        let kafka = server.kafka_addr.expect("a Kafka listener");
        let mut clients = connect(server.addr).await;
        clients.create("lo", 1, &[]).await;
        const MAX_TIMESTAMP: i64 = -3;
        const EARLIEST_LOCAL: i64 = -4;
        const LATEST_TIERED: i64 = -5;
        let epoch = leader_epoch(clients.admin.clone(), "lo").await;

        let empty = list_offsets(
            kafka,
            "lo",
            &[0, MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED],
        )
        .await;
        assert_eq!(
            empty,
            [
                (0, -1, -1, -1),
                (0, -1, -1, -1),
                (0, 0, -1, epoch),
                (0, -1, -1, -1)
            ]
        );

        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(produce(clients.producer.clone(), "lo", &["a", "b", "c"]).await);
        let got = list_offsets(
            kafka,
            "lo",
            &[
                0,
                i64::MAX / 2,
                MAX_TIMESTAMP,
                EARLIEST_LOCAL,
                LATEST_TIERED,
            ],
        )
        .await;
        assert_eq!(got[0].1, 0, "every record is at or after 0: {got:?}");
        assert!(got[0].2 >= before, "the record's own timestamp: {got:?}");
        assert_eq!(got[1], (0, -1, -1, -1), "no record that new");
        // One of the three, with the newest timestamp (the exact record is checked
        // through confluent-kafka with timestamps of its own: tests/kafka/kafka_answers.py).
        assert!((0..3).contains(&got[2].1), "{got:?}");
        assert!(got[2].2 >= got[0].2, "{got:?}");
        assert_eq!(got[3], (0, 0, -1, epoch));
        assert_eq!(got[4], (0, -1, -1, -1));
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn each_kafka_listener_names_the_addresses_its_clients_reach() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = weir_server::start(weir_server::ServerConfig {
            kafka_listen: Some("127.0.0.1:0".parse().unwrap()),
            kafka_advertise: Some("weir-1:9092".into()),
            kafka_external_listen: Some("127.0.0.1:0".parse().unwrap()),
            kafka_external_advertise: Some("127.0.0.1:19092".into()),
            ..config(dir.path())
        })
        .await
        .unwrap();
        let internal = server.kafka_addr.expect("a Kafka listener");
        let external = server
            .kafka_external_addr
            .expect("an external Kafka listener");
        let brokers = |kafka| async move {
            let metadata: MetadataResponse = call(
                kafka,
                12,
                &MetadataRequest::default().with_topics(Some(vec![])),
            )
            .await;
            let described: DescribeClusterResponse = call(
                kafka,
                1,
                &DescribeClusterRequest::default().with_endpoint_type(1),
            )
            .await;
            assert_eq!(described.error_code, 0);
            (
                metadata
                    .brokers
                    .iter()
                    .map(|b| (b.node_id.0, b.host.to_string(), b.port))
                    .collect::<Vec<_>>(),
                described
                    .brokers
                    .iter()
                    .map(|b| (b.broker_id.0, b.host.to_string(), b.port))
                    .collect::<Vec<_>>(),
            )
        };
        let inside = vec![(0, "weir-1".to_owned(), 9092)];
        let outside = vec![(0, "127.0.0.1".to_owned(), 19092)];
        wait_until("the broker is registered", || async {
            brokers(internal).await == (inside.clone(), inside.clone())
        })
        .await;
        assert_eq!(brokers(external).await, (outside.clone(), outside));
        // A group's coordinator too, once the coordinator is up.
        let coordinator = |kafka| async move {
            let found: FindCoordinatorResponse = call(
                kafka,
                3,
                &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
            )
            .await;
            (found.error_code == 0).then(|| (found.host.to_string(), found.port))
        };
        wait_until("the group coordinator is up", || async {
            coordinator(internal).await.is_some()
        })
        .await;
        assert_eq!(
            coordinator(internal).await,
            Some(("weir-1".to_owned(), 9092))
        );
        assert_eq!(
            coordinator(external).await,
            Some(("127.0.0.1".to_owned(), 19092))
        );
        server.shutdown().await.unwrap();
    })
    .await;
}

mod share_admin {
    //! The share-group admin APIs (KIP-932) over the Kafka listener, as an operator uses
    //! them on a group whose member joined with ShareGroupHeartbeat and took records with
    //! share fetches: listed, described, its offsets described, altered and deleted, the
    //! group deleted; kafka-python's `KafkaAdminClient` lists and deletes it too.

    use std::path::PathBuf;
    use std::process::Command;

    use kafka_protocol::messages::alter_share_group_offsets_request::{
        AlterShareGroupOffsetsRequestPartition, AlterShareGroupOffsetsRequestTopic,
    };
    use kafka_protocol::messages::delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic;
    use kafka_protocol::messages::describe_share_group_offsets_request::{
        DescribeShareGroupOffsetsRequestGroup, DescribeShareGroupOffsetsRequestTopic,
    };
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::share_group_describe_response::DescribedGroup;
    use kafka_protocol::messages::{
        AlterShareGroupOffsetsRequest, DeleteGroupsRequest, DeleteShareGroupOffsetsRequest,
        DescribeShareGroupOffsetsRequest, GroupId, ListGroupsRequest, OffsetCommitRequest,
        ShareGroupDescribeRequest, ShareGroupHeartbeatRequest,
    };
    use weir_proto::v1::queues_client::QueuesClient;

    use super::*;

    const GROUP: &str = "workers";
    const TOPIC: &str = "jobs";
    const NO_ERROR: i16 = 0;
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    const NON_EMPTY_GROUP: i16 = 68;
    const GROUP_ID_NOT_FOUND: i16 = 69;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_owned())
    }

    fn group(v: &str) -> GroupId {
        GroupId(s(v))
    }

    async fn heartbeat(kafka: SocketAddr, epoch: i32) -> (i16, i32) {
        let hb = ShareGroupHeartbeatRequest::default()
            .with_group_id(group(GROUP))
            .with_member_id(s("m1"))
            .with_member_epoch(epoch)
            .with_rack_id(Some(s("rack-a")))
            .with_subscribed_topic_names((epoch == 0).then(|| vec![TopicName(s(TOPIC))]));
        let r = call(kafka, 1, &hb).await;
        (r.error_code, r.member_epoch)
    }

    async fn describe(kafka: SocketAddr, ids: &[&str]) -> Vec<DescribedGroup> {
        let req = ShareGroupDescribeRequest::default()
            .with_group_ids(ids.iter().map(|g| group(g)).collect());
        call(kafka, 1, &req).await.groups
    }

    /// `(topic, partition, start, error)` of every partition answered.
    async fn offsets(
        kafka: SocketAddr,
        topics: Option<Vec<(&str, Vec<i32>)>>,
    ) -> (i16, Vec<(String, i32, i64, i16)>) {
        let g = DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(group(GROUP))
            .with_topics(topics.map(|ts| {
                ts.into_iter()
                    .map(|(t, ps)| {
                        DescribeShareGroupOffsetsRequestTopic::default()
                            .with_topic_name(TopicName(s(t)))
                            .with_partitions(ps)
                    })
                    .collect()
            }));
        let r = call(
            kafka,
            0,
            &DescribeShareGroupOffsetsRequest::default().with_groups(vec![g]),
        )
        .await;
        assert_eq!(r.groups.len(), 1);
        let g = &r.groups[0];
        let mut out = Vec::new();
        for t in &g.topics {
            for p in &t.partitions {
                assert_eq!(p.leader_epoch, -1);
                out.push((
                    t.topic_name.to_string(),
                    p.partition_index,
                    p.start_offset,
                    p.error_code,
                ));
            }
        }
        (g.error_code, out)
    }

    /// The top-level error and each partition's.
    async fn alter(kafka: SocketAddr, starts: &[(i32, i64)]) -> (i16, Vec<i16>) {
        let req = AlterShareGroupOffsetsRequest::default()
            .with_group_id(group(GROUP))
            .with_topics(vec![
                AlterShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s(TOPIC)))
                    .with_partitions(
                        starts
                            .iter()
                            .map(|&(p, o)| {
                                AlterShareGroupOffsetsRequestPartition::default()
                                    .with_partition_index(p)
                                    .with_start_offset(o)
                            })
                            .collect(),
                    ),
            ]);
        let r = call(kafka, 0, &req).await;
        let codes = r.responses[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        (r.error_code, codes)
    }

    async fn delete_groups(kafka: SocketAddr, ids: &[&str]) -> Vec<i16> {
        let req = DeleteGroupsRequest::default()
            .with_groups_names(ids.iter().map(|g| group(g)).collect());
        call(kafka, 2, &req)
            .await
            .results
            .iter()
            .map(|r| r.error_code)
            .collect()
    }

    /// `(group, state, type, protocol type)` of the groups ListGroups v5 lists.
    async fn listed(kafka: SocketAddr, states: &[&str], types: &[&str]) -> Vec<[String; 4]> {
        let req = ListGroupsRequest::default()
            .with_states_filter(states.iter().map(|v| s(v)).collect())
            .with_types_filter(types.iter().map(|v| s(v)).collect());
        let r = call(kafka, 5, &req).await;
        assert_eq!(r.error_code, 0);
        r.groups
            .iter()
            .map(|g| {
                [
                    g.group_id.to_string(),
                    g.group_state.to_string(),
                    g.group_type.to_string(),
                    g.protocol_type.to_string(),
                ]
            })
            .collect()
    }

    /// Acquires up to `max` records of `partition` for `member` over gRPC; their offsets
    /// and delivery counts.
    async fn take(
        q: &mut QueuesClient<Channel>,
        member: &str,
        partition: u32,
        max: u32,
    ) -> Vec<(i64, u32)> {
        let answer = q
            .share_fetch(ShareFetchRequest {
                group_id: GROUP.into(),
                member_id: member.into(),
                topics: vec![TOPIC.into()],
                max_records: max,
                max_wait_ms: 2_000,
                start: ShareStart::Earliest as i32,
                acknowledgements: vec![],
                partitions: vec![SharePartitions {
                    topic: TOPIC.into(),
                    partitions: vec![partition],
                }],
            })
            .await
            .expect("share fetch")
            .into_inner();
        answer
            .records
            .iter()
            .map(|r| (r.record.as_ref().unwrap().offset, r.delivery_count))
            .collect()
    }

    /// Acknowledges `first..=last` of `partition` for `member` over gRPC.
    async fn ack(
        q: &mut QueuesClient<Channel>,
        member: &str,
        partition: u32,
        (first, last): (i64, i64),
        kind: AckType,
    ) {
        let answer = q
            .share_acknowledge(ShareAcknowledgeRequest {
                group_id: GROUP.into(),
                member_id: member.into(),
                acknowledgements: vec![ShareAck {
                    topic: TOPIC.into(),
                    partition,
                    first_offset: first,
                    last_offset: last,
                    r#type: kind as i32,
                    delay_ms: 0,
                }],
                leaving: false,
            })
            .await
            .expect("share acknowledge")
            .into_inner();
        assert!(
            answer
                .results
                .iter()
                .all(|r| r.error.is_none() && r.not_held.is_empty())
        );
    }

    async fn python() -> String {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let setup = root.join("tests/python/setup.sh");
        let out = tokio::task::spawn_blocking(move || Command::new("bash").arg(setup).output())
            .await
            .unwrap()
            .expect("runs tests/python/setup.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    async fn kafka_python_lists_and_deletes(kafka: SocketAddr) -> serde_json::Value {
        let python = python().await;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/kafka/share_admin_kafka_python.py");
        let out = tokio::task::spawn_blocking(move || {
            Command::new("timeout")
                .args(["--kill-after=10", "120", &python])
                .arg(script)
                .args([&kafka.to_string(), GROUP])
                .output()
        })
        .await
        .unwrap()
        .expect("runs share_admin_kafka_python.py");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.lines().last().expect("a line")).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_operator_lists_describes_moves_and_deletes_a_share_group() {
        bounded(async {
            let dir = tempfile::tempdir().unwrap();
            let server = weir_server::start(weir_server::ServerConfig {
                kafka_listen: Some("127.0.0.1:0".parse().unwrap()),
                ..config(dir.path())
            })
            .await
            .unwrap();
            let kafka = server.kafka_addr.expect("a Kafka listener");
            let mut c = connect(server.addr).await;
            c.create(TOPIC, 2, &[]).await;
            let values: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
            for p in 0..2 {
                let r = c
                    .produce(request(
                        TOPIC,
                        vec![plain(p, &values, Compression::None)],
                        Acks::All,
                    ))
                    .await;
                assert!(r.results.iter().all(|r| r.error.is_none()));
            }
            let mut q = QueuesClient::new(c.channel.clone());
            wait_until("the share coordinator is up", || {
                let mut q = q.clone();
                async move {
                    let asked = q
                        .describe_share_group(DescribeShareGroupRequest {
                            group_id: GROUP.into(),
                        })
                        .await;
                    matches!(asked, Err(s) if s.code() == tonic::Code::NotFound)
                }
            })
            .await;
            wait_until("the group coordinator is up", || async {
                heartbeat(kafka, 0).await.0 == NO_ERROR
            })
            .await;
            // A consumer group beside it, for the wrong-type answers.
            let commit = OffsetCommitRequest::default()
                .with_group_id(group("classic-readers"))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(TOPIC)))
                        .with_partitions(vec![
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                        ]),
                ]);
            let committed = call(kafka, 8, &commit).await;
            assert_eq!(committed.topics[0].partitions[0].error_code, 0);

            // The member (m1, joined above) takes 3 records of partition 0 and accepts
            // them: the group's start there is 3; partition 1 starts at its log start.
            let got = take(&mut q, "m1", 0, 3).await;
            assert_eq!(got, vec![(0, 1), (1, 1), (2, 1)]);
            ack(&mut q, "m1", 0, (0, 2), AckType::Accept).await;
            assert_eq!(take(&mut q, "m1", 1, 1).await, vec![(0, 1)]);
            ack(&mut q, "m1", 1, (0, 0), AckType::Release).await;
            let (_, m_epoch) = heartbeat(kafka, 1).await;
            assert_eq!(m_epoch, 1);

            // Listed as a share group, Stable while it has a member.
            let row = |state: &str| [GROUP, state, "share", "share"].map(str::to_owned);
            assert_eq!(listed(kafka, &[], &["share"]).await, vec![row("Stable")]);
            assert!(listed(kafka, &["Empty"], &["share"]).await.is_empty());
            assert!(
                !listed(kafka, &[], &["consumer", "classic"])
                    .await
                    .iter()
                    .any(|g| g[0] == GROUP)
            );
            assert!(listed(kafka, &[], &[]).await.contains(&row("Stable")));

            // Described: state, epochs, the simple assignor, the member and its
            // assignment by topic id; an unknown id and a consumer group's are not found.
            let described = describe(kafka, &[GROUP, "nobody", "classic-readers"]).await;
            let d = &described[0];
            assert_eq!(d.error_code, 0, "{d:?}");
            assert_eq!(
                (d.group_state.as_str(), d.assignor_name.as_str()),
                ("Stable", "simple")
            );
            assert!(
                d.group_epoch >= 1 && d.assignment_epoch == d.group_epoch,
                "{d:?}"
            );
            assert_eq!(d.members.len(), 1);
            let m = &d.members[0];
            assert_eq!(
                (m.member_id.as_str(), m.member_epoch, m.rack_id.as_deref()),
                ("m1", 1, Some("rack-a"))
            );
            assert_eq!(
                (m.client_id.as_str(), m.client_host.as_str()),
                ("weir-test", "127.0.0.1")
            );
            assert_eq!(m.subscribed_topic_names, vec![TopicName(s(TOPIC))]);
            let assigned = &m.assignment.topic_partitions;
            assert_eq!(assigned.len(), 1);
            assert_eq!(
                (
                    assigned[0].topic_name.as_str(),
                    assigned[0].partitions.clone()
                ),
                (TOPIC, vec![0, 1])
            );
            assert!(!assigned[0].topic_id.is_nil());
            assert_eq!(
                (
                    described[1].error_code,
                    described[1].error_message.as_deref()
                ),
                (GROUP_ID_NOT_FOUND, Some("Group nobody not found."))
            );
            assert_eq!(
                (
                    described[2].error_code,
                    described[2].error_message.as_deref()
                ),
                (
                    GROUP_ID_NOT_FOUND,
                    Some("Group classic-readers is not a share group.")
                )
            );

            // Offsets: the group's start on every partition it has state for; asked by
            // name, unknown partitions and topics are answered as such.
            let all = vec![(TOPIC.to_owned(), 0, 3, 0), (TOPIC.to_owned(), 1, 0, 0)];
            assert_eq!(offsets(kafka, None).await, (0, all.clone()));
            let asked = offsets(
                kafka,
                Some(vec![(TOPIC, vec![0, 1, 5]), ("missing", vec![0])]),
            )
            .await;
            assert_eq!(
                asked,
                (
                    0,
                    vec![
                        (TOPIC.to_owned(), 0, 3, 0),
                        (TOPIC.to_owned(), 1, 0, 0),
                        (TOPIC.to_owned(), 5, -1, UNKNOWN_TOPIC_OR_PARTITION),
                        ("missing".to_owned(), 0, -1, UNKNOWN_TOPIC_OR_PARTITION),
                    ]
                )
            );

            // A group with a member is not altered, its offsets not deleted, and it is
            // not deleted.
            assert_eq!(
                alter(kafka, &[(0, 7)]).await,
                (NON_EMPTY_GROUP, vec![NON_EMPTY_GROUP])
            );
            let deleted_offsets = call(
                kafka,
                0,
                &DeleteShareGroupOffsetsRequest::default()
                    .with_group_id(group(GROUP))
                    .with_topics(vec![
                        DeleteShareGroupOffsetsRequestTopic::default()
                            .with_topic_name(TopicName(s(TOPIC))),
                    ]),
            )
            .await;
            assert_eq!(deleted_offsets.error_code, NON_EMPTY_GROUP);
            assert_eq!(delete_groups(kafka, &[GROUP]).await, vec![NON_EMPTY_GROUP]);

            // The member leaves: the group is Empty. A record still held under a lock
            // (a gRPC member, which has no heartbeat) keeps it from being altered.
            assert_eq!(heartbeat(kafka, -1).await, (0, -1));
            assert_eq!(
                listed(kafka, &["Empty"], &["share"]).await,
                vec![row("Empty")]
            );
            assert_eq!(
                describe(kafka, &[GROUP]).await[0].group_state.as_str(),
                "Empty"
            );
            assert_eq!(take(&mut q, "grpc-worker", 0, 1).await, vec![(3, 1)]);
            assert_eq!(
                alter(kafka, &[(0, 7)]).await,
                (NON_EMPTY_GROUP, vec![NON_EMPTY_GROUP])
            );
            ack(&mut q, "grpc-worker", 0, (3, 3), AckType::Release).await;

            // Now the start moves; the in-flight window goes with it, and the next fetch
            // hands out records from the new start, delivered for the first time again.
            // A start past the high watermark is refused for its partition alone.
            assert_eq!(alter(kafka, &[(0, 7), (1, 11)]).await, (0, vec![0, 42]));
            assert_eq!(
                offsets(kafka, None).await,
                (
                    0,
                    vec![(TOPIC.to_owned(), 0, 7, 0), (TOPIC.to_owned(), 1, 0, 0)]
                )
            );
            assert_eq!(
                take(&mut q, "grpc-worker", 0, 2).await,
                vec![(7, 1), (8, 1)]
            );
            ack(&mut q, "grpc-worker", 0, (7, 8), AckType::Accept).await;
            assert_eq!(
                offsets(kafka, Some(vec![(TOPIC, vec![0])])).await,
                (0, vec![(TOPIC.to_owned(), 0, 9, 0)])
            );

            // Deleting the topic's offsets forgets its state: asked again, no start.
            let deleted_offsets = call(
                kafka,
                0,
                &DeleteShareGroupOffsetsRequest::default()
                    .with_group_id(group(GROUP))
                    .with_topics(vec![
                        DeleteShareGroupOffsetsRequestTopic::default()
                            .with_topic_name(TopicName(s(TOPIC))),
                        DeleteShareGroupOffsetsRequestTopic::default()
                            .with_topic_name(TopicName(s("missing"))),
                    ]),
            )
            .await;
            assert_eq!(deleted_offsets.error_code, 0);
            let codes: Vec<i16> = deleted_offsets
                .responses
                .iter()
                .map(|t| t.error_code)
                .collect();
            assert_eq!(codes, vec![0, UNKNOWN_TOPIC_OR_PARTITION]);
            assert_eq!(offsets(kafka, None).await, (0, vec![]));
            assert_eq!(
                offsets(kafka, Some(vec![(TOPIC, vec![0])])).await,
                (0, vec![(TOPIC.to_owned(), 0, -1, 0)])
            );

            // kafka-python lists it (as Empty, a share group) and deletes it; afterwards
            // it is not found anywhere.
            let py = kafka_python_lists_and_deletes(kafka).await;
            let row_json = serde_json::json!([[GROUP, "Empty", "share", "share"]]);
            assert_eq!(py["share"], row_json, "{py}");
            assert_eq!(py["share_empty"], row_json, "{py}");
            assert_eq!(py["share_stable"], serde_json::json!([]), "{py}");
            assert!(
                !py["consumer"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|g| g[0] == GROUP),
                "{py}"
            );
            assert_eq!(py["deleted"], serde_json::json!({ GROUP: "OK" }), "{py}");
            assert_eq!(py["share_after"], serde_json::json!([]), "{py}");
            assert_eq!(
                py["deleted_again"],
                serde_json::json!({ GROUP: "GroupIdNotFoundError" }),
                "{py}"
            );
            let gone = describe(kafka, &[GROUP]).await;
            assert_eq!(gone[0].error_code, GROUP_ID_NOT_FOUND);
            assert_eq!(offsets(kafka, None).await.0, GROUP_ID_NOT_FOUND);
            assert_eq!(
                delete_groups(kafka, &[GROUP]).await,
                vec![GROUP_ID_NOT_FOUND]
            );
            // The consumer group was left alone.
            assert_eq!(delete_groups(kafka, &["classic-readers"]).await, vec![0]);
            server.shutdown().await.unwrap();
        })
        .await;
    }
}
