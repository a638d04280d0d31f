//! A broker's Kafka listeners, spoken to over TCP with kafka-protocol's client side:
//! OffsetForLeaderEpoch as Kafka clients ask it after a failover, and the addresses each
//! listener (the Kafka one and the external one) tells its clients for brokers and group
//! coordinators.

mod common;

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::*;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, MetadataRequest, MetadataResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, RequestHeader, ResponseHeader, TopicName,
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
