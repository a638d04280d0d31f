//! Leader following, against one real broker dressed up as a cluster: a fake broker (the
//! bootstrap) describes a cluster of itself and two others and refuses every produce,
//! read and offset lookup as NOT_LEADER, the way a broker that lost a partition does;
//! the two others are TCP proxies to the real broker, standing for the brokers a
//! partition's leadership moves between, and one can be cut to stand for a leader that
//! died. Everything the clients write lands in, and is read from, the real broker's log,
//! so the tests can check exactly what a user would: every record there once, in order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use weir_client::{
    Admin, Consumer, ConsumerConfig, ConsumerRecord, OffsetQuery, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, SeekTo,
};
use weir_proto::v1 as pb;
use weir_proto::v1::admin_server::{Admin as AdminService, AdminServer};
use weir_proto::v1::consumer_server::{Consumer as ConsumerService, ConsumerServer};
use weir_proto::v1::producer_server::{Producer as ProducerService, ProducerServer};

/// Longest any test waits for records it expects.
const WAIT: Duration = Duration::from_secs(30);
/// The fake broker's id; the proxies are 2 and 3.
const FAKE: i32 = 1;
const PROXY_A: i32 = 2;
const PROXY_B: i32 = 3;
/// A broker that takes connections and never answers.
const FROZEN: i32 = 4;

/// What the fake broker says about the cluster, changed by the tests.
struct FakeState {
    /// Broker id and advertised address of every broker, the fake's own included.
    brokers: Mutex<Vec<(i32, SocketAddr)>>,
    /// The leader and leader epoch `DescribeTopic` reports for every partition.
    leader: Mutex<(i32, i32)>,
    /// The leader a refusal names; at the first refusal `DescribeTopic` starts reporting
    /// it too, one epoch later (as the controller would have moved it).
    moved_to: i32,
    /// Refusals per RPC: produce, consume, list offsets.
    refused_produce: AtomicUsize,
    refused_consume: AtomicUsize,
    refused_offsets: AtomicUsize,
    /// Partitions `DescribeTopic` reports another leader for than `leader`'s.
    partition_leaders: Mutex<HashMap<u32, i32>>,
    /// Partition counts of the topics it describes.
    topics: Mutex<HashMap<String, u32>>,
}

impl FakeState {
    fn refused(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut leader = self.leader.lock().unwrap();
        if leader.0 == FAKE {
            *leader = (self.moved_to, leader.1 + 1);
        }
    }

    /// The broker's wording of NOT_LEADER, as per-partition errors carry it.
    fn not_leader_message(&self, topic: &str, partition: u32) -> String {
        format!(
            "this broker does not lead {topic}/{partition}; broker {} does",
            self.moved_to
        )
    }
}

#[derive(Clone)]
struct Fake(Arc<FakeState>);

#[tonic::async_trait]
impl AdminService for Fake {
    #[allow(
        clippy::needless_update,
        reason = "BrokerDescription grows fields (fenced, rack) the fake leaves at their defaults"
    )]
    async fn describe_cluster(
        &self,
        _: Request<pb::DescribeClusterRequest>,
    ) -> Result<Response<pb::DescribeClusterResponse>, Status> {
        let brokers = self.0.brokers.lock().unwrap().clone();
        Ok(Response::new(pb::DescribeClusterResponse {
            cluster_id: "fake".to_owned(),
            controller_id: FAKE,
            brokers: brokers
                .into_iter()
                .map(|(id, addr)| pb::BrokerDescription {
                    broker_id: id,
                    host: addr.ip().to_string(),
                    port: addr.port().into(),
                    ..Default::default()
                })
                .collect(),
        }))
    }

    async fn describe_topic(
        &self,
        request: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::DescribeTopicResponse>, Status> {
        let name = request.into_inner().name;
        let Some(&count) = self.0.topics.lock().unwrap().get(&name) else {
            return Err(Status::not_found(format!("topic {name} does not exist")));
        };
        let (leader, leader_epoch) = *self.0.leader.lock().unwrap();
        let partition_leaders = self.0.partition_leaders.lock().unwrap().clone();
        let ids = vec![FAKE, PROXY_A, PROXY_B];
        Ok(Response::new(pb::DescribeTopicResponse {
            topic: Some(pb::TopicDescription {
                name,
                topic_id: "fake-topic-id".to_owned(),
                partitions: (0..count)
                    .map(|partition| pb::PartitionDescription {
                        partition,
                        leader: partition_leaders.get(&partition).copied().unwrap_or(leader),
                        leader_epoch,
                        replicas: ids.clone(),
                        isr: ids.clone(),
                        ..Default::default()
                    })
                    .collect(),
                internal: false,
            }),
        }))
    }

    async fn create_topic(
        &self,
        _: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_topic(
        &self,
        _: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_topics(
        &self,
        _: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn create_partitions(
        &self,
        _: Request<pb::CreatePartitionsRequest>,
    ) -> Result<Response<pb::CreatePartitionsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn describe_topic_config(
        &self,
        _: Request<pb::DescribeTopicConfigRequest>,
    ) -> Result<Response<pb::DescribeTopicConfigResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn alter_topic_config(
        &self,
        _: Request<pb::AlterTopicConfigRequest>,
    ) -> Result<Response<pb::AlterTopicConfigResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_records(
        &self,
        _: Request<pb::DeleteRecordsRequest>,
    ) -> Result<Response<pb::DeleteRecordsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_groups(
        &self,
        _: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn describe_group(
        &self,
        _: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::DescribeGroupResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_group(
        &self,
        _: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn reset_offsets(
        &self,
        _: Request<pb::ResetOffsetsRequest>,
    ) -> Result<Response<pb::ResetOffsetsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn alter_partition_reassignments(
        &self,
        _: Request<pb::AlterPartitionReassignmentsRequest>,
    ) -> Result<Response<pb::AlterPartitionReassignmentsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn upsert_user(
        &self,
        _: Request<pb::UpsertUserRequest>,
    ) -> Result<Response<pb::UpsertUserResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_user(
        &self,
        _: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_users(
        &self,
        _: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn create_acls(
        &self,
        _: Request<pb::CreateAclsRequest>,
    ) -> Result<Response<pb::CreateAclsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_acls(
        &self,
        _: Request<pb::ListAclsRequest>,
    ) -> Result<Response<pb::ListAclsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_acls(
        &self,
        _: Request<pb::DeleteAclsRequest>,
    ) -> Result<Response<pb::DeleteAclsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn alter_quotas(
        &self,
        _: Request<pb::AlterQuotasRequest>,
    ) -> Result<Response<pb::AlterQuotasResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_quotas(
        &self,
        _: Request<pb::ListQuotasRequest>,
    ) -> Result<Response<pb::ListQuotasResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn create_token(
        &self,
        _: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_tokens(
        &self,
        _: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn revoke_token(
        &self,
        _: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ProducerService for Fake {
    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        Ok(Response::new(self.refuse_produce(request.into_inner())))
    }

    async fn init_producer_id(
        &self,
        _request: Request<pb::InitProducerIdRequest>,
    ) -> Result<Response<pb::InitProducerIdResponse>, Status> {
        Ok(Response::new(pb::InitProducerIdResponse {
            producer_id: 1,
            producer_epoch: 0,
        }))
    }

    type ProduceStreamStream = BoxStream<pb::ProduceStreamResponse>;

    async fn produce_stream(
        &self,
        request: Request<tonic::Streaming<pb::ProduceStreamRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some(Ok(request)) = inbound.next().await {
                let response = pb::ProduceStreamResponse {
                    sequence: request.sequence,
                    response: Some(fake.refuse_produce(request.request.unwrap_or_default())),
                };
                if tx.send(Ok(response)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

impl Fake {
    /// Every partition refused with NOT_LEADER, as a per-partition error: a code and
    /// the broker's wording, no details.
    fn refuse_produce(&self, request: pb::ProduceRequest) -> pb::ProduceResponse {
        self.0.refused(&self.0.refused_produce);
        pb::ProduceResponse {
            results: request
                .partitions
                .iter()
                .map(|p| pb::PartitionProduceResult {
                    partition: p.partition,
                    base_offset: -1,
                    last_offset: -1,
                    log_append_time_ms: -1,
                    error: Some(pb::PartitionError {
                        code: tonic::Code::FailedPrecondition as i32,
                        message: self.0.not_leader_message(&request.topic, p.partition),
                        reason: String::new(),
                        metadata: Default::default(),
                    }),
                })
                .collect(),
        }
    }
}

#[tonic::async_trait]
impl ConsumerService for Fake {
    async fn fetch(
        &self,
        _: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type ConsumeStream = BoxStream<pb::ConsumeResponse>;

    /// Refused as a whole-call status with the `ErrorInfo` detail, as the broker's
    /// status.rs builds it.
    async fn consume(
        &self,
        request: Request<pb::ConsumeRequest>,
    ) -> Result<Response<Self::ConsumeStream>, Status> {
        let request = request.into_inner();
        self.0.refused(&self.0.refused_consume);
        let metadata = HashMap::from([
            ("topic".to_owned(), request.topic.clone()),
            ("partition".to_owned(), request.partition.to_string()),
            ("leader_id".to_owned(), self.0.moved_to.to_string()),
        ]);
        Err(Status::with_error_details(
            tonic::Code::FailedPrecondition,
            "refused (the client must act on the details, not this text)",
            ErrorDetails::with_error_info("NOT_LEADER", "weir.dev", metadata),
        ))
    }

    async fn list_offsets(
        &self,
        request: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        let request = request.into_inner();
        self.0.refused(&self.0.refused_offsets);
        Ok(Response::new(pb::ListOffsetsResponse {
            results: request
                .partitions
                .iter()
                .map(|p| pb::PartitionOffsetResult {
                    partition: p.partition,
                    offset: -1,
                    timestamp_ms: -1,
                    error: Some(pb::PartitionError {
                        code: tonic::Code::FailedPrecondition as i32,
                        message: self.0.not_leader_message(&request.topic, p.partition),
                        reason: String::new(),
                        metadata: Default::default(),
                    }),
                })
                .collect(),
        }))
    }
}

/// A TCP proxy to the real broker, standing for another broker.
struct Proxy {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tracked = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let connection = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().unwrap().push(connection);
            }
        });
        Ok(Proxy {
            addr,
            accept,
            connections,
        })
    }

    /// The broker dies: its port refuses and its connections drop.
    async fn cut(self) {
        self.accept.abort();
        let _ = self.accept.await;
        let connections = std::mem::take(&mut *self.connections.lock().unwrap());
        for connection in connections {
            connection.abort();
            let _ = connection.await;
        }
    }
}

/// A broker frozen in place (a paused process or container): its port takes connections
/// (the kernel does that), and nothing is ever read from or written to them.
struct Frozen {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl Frozen {
    async fn start() -> Result<Frozen> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(connection);
            }
        });
        Ok(Frozen {
            addr,
            accepted,
            accept,
        })
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The real broker, the fake bootstrap broker and two proxies.
struct Cluster {
    real: Option<weir_server::RunningServer>,
    real_admin: Admin,
    fake: Arc<FakeState>,
    fake_addr: SocketAddr,
    fake_server: JoinHandle<()>,
    proxy_a: Option<Proxy>,
    /// Runs until the end (dropping it stops accepting).
    _proxy_b: Proxy,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// The fake reports itself as leader at epoch 0, and names proxy A when refusing.
    async fn start() -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let real = weir_server::start(weir_server::ServerConfig {
            kafka_listen: None,
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse()?,
            admin_listen: None,
            ..Default::default()
        })
        .await?;
        let real_admin = Admin::connect(&[real.addr.to_string()]).await?;
        let proxy_a = Proxy::start(real.addr).await?;
        let proxy_b = Proxy::start(real.addr).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let fake_addr = listener.local_addr()?;
        let fake = Arc::new(FakeState {
            brokers: Mutex::new(vec![
                (FAKE, fake_addr),
                (PROXY_A, proxy_a.addr),
                (PROXY_B, proxy_b.addr),
            ]),
            leader: Mutex::new((FAKE, 0)),
            moved_to: PROXY_A,
            refused_produce: AtomicUsize::new(0),
            refused_consume: AtomicUsize::new(0),
            refused_offsets: AtomicUsize::new(0),
            partition_leaders: Mutex::new(HashMap::new()),
            topics: Mutex::new(HashMap::new()),
        });
        let service = Fake(fake.clone());
        let fake_server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(AdminServer::new(service.clone()))
                .add_service(ProducerServer::new(service.clone()))
                .add_service(ConsumerServer::new(service))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Ok(Cluster {
            real: Some(real),
            real_admin,
            fake,
            fake_addr,
            fake_server,
            proxy_a: Some(proxy_a),
            _proxy_b: proxy_b,
            _dir: dir,
        })
    }

    /// Creates `topic` on the real broker and lets the fake describe it.
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        self.real_admin
            .create_topic(topic, partitions, 0, HashMap::new())
            .await?;
        self.fake
            .topics
            .lock()
            .unwrap()
            .insert(topic.to_owned(), partitions);
        Ok(())
    }

    /// Bootstrap list: the fake only.
    fn bootstrap(&self) -> Vec<String> {
        vec![self.fake_addr.to_string()]
    }

    /// Proxy A dies and leadership moves to proxy B (a new epoch).
    async fn kill_a_and_elect_b(&mut self) {
        self.proxy_a.take().expect("proxy A runs").cut().await;
        let mut leader = self.fake.leader.lock().unwrap();
        *leader = (PROXY_B, leader.1 + 1);
    }

    /// Every record of a partition, read from the real broker directly.
    async fn log(&self, topic: &str, partition: u32, count: usize) -> Result<Vec<String>> {
        let mut consumer = Consumer::connect(ConsumerConfig {
            brokers: vec![self.real.as_ref().expect("running").addr.to_string()],
            ..ConsumerConfig::default()
        })
        .await?;
        consumer.assign(&[(topic, partition)]);
        let records = consume(&mut consumer, count).await?;
        let extra = consumer.poll(10, Duration::from_millis(200)).await?;
        anyhow::ensure!(extra.is_empty(), "more than {count} records: {extra:?}");
        Ok(records.iter().map(text).collect())
    }

    async fn stop(mut self) -> Result<()> {
        self.fake_server.abort();
        if let Some(proxy) = self.proxy_a.take() {
            proxy.cut().await;
        }
        self.real.take().expect("running").shutdown().await
    }
}

/// Polls until `count` records arrived (or fails after [`WAIT`]).
async fn consume(consumer: &mut Consumer, count: usize) -> Result<Vec<ConsumerRecord>> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {count} records arrived",
            out.len()
        );
        out.extend(
            consumer
                .poll(count - out.len(), Duration::from_millis(200))
                .await?,
        );
    }
    Ok(out)
}

fn text(record: &ConsumerRecord) -> String {
    String::from_utf8(record.value.as_deref().unwrap_or_default().to_vec()).unwrap()
}

/// Sends `range` of records, `i % partitions` to partition `i % partitions`, flushes,
/// and checks each partition's offsets continue from `first_offset` in send order.
async fn produce(
    producer: &Producer,
    topic: &str,
    partitions: u32,
    range: std::ops::Range<u32>,
    first_offset: i64,
) -> Result<()> {
    let mut deliveries = Vec::new();
    for i in range {
        let record = ProducerRecord::new(topic, format!("r{i}")).partition(i % partitions);
        deliveries.push((i, producer.send(record).await?));
    }
    producer.flush().await;
    let mut next: HashMap<u32, i64> = HashMap::new();
    for (i, delivery) in deliveries {
        let metadata = delivery.await?;
        let expected = next.entry(i % partitions).or_insert(first_offset);
        assert_eq!(
            (metadata.partition, metadata.offset),
            (i % partitions, *expected),
            "record r{i}"
        );
        *expected += 1;
    }
    Ok(())
}

#[tokio::test]
async fn the_producer_goes_where_a_refusal_points_and_to_the_new_leader_after_one_dies()
-> Result<()> {
    let mut cluster = Cluster::start().await?;
    cluster.create_topic("moving", 2).await?;
    let producer = Producer::connect(ProducerConfig {
        brokers: cluster.bootstrap(),
        ..ProducerConfig::default()
    })
    .await?;

    // The metadata says the bootstrap broker leads; it refuses, naming proxy A.
    produce(&producer, "moving", 2, 0..20, 0).await?;
    assert!(cluster.fake.refused_produce.load(Ordering::SeqCst) > 0);

    // Proxy A dies; the controller moves leadership to proxy B.
    cluster.kill_a_and_elect_b().await;
    produce(&producer, "moving", 2, 20..40, 10).await?;
    producer.close().await;

    // Every record once, in send order, in the real log.
    for partition in 0..2 {
        let expected: Vec<String> = (0..40)
            .filter(|i| i % 2 == partition)
            .map(|i| format!("r{i}"))
            .collect();
        assert_eq!(
            cluster.log("moving", partition, 20).await?,
            expected,
            "partition {partition}"
        );
    }
    cluster.stop().await
}

/// One partition's leader is frozen (it takes the connection and never answers, as a
/// paused process does); the other's answers. Writes to the other partition are
/// acknowledged at once: the producer waits for the frozen broker only with the writes
/// it leads (which fail at their request timeout), not with every broker's.
#[tokio::test]
async fn a_frozen_leader_holds_up_only_its_own_partitions() -> Result<()> {
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    let cluster = Cluster::start().await?;
    cluster.create_topic("frozen", 2).await?;
    let frozen = Frozen::start().await?;
    cluster
        .fake
        .brokers
        .lock()
        .unwrap()
        .push((FROZEN, frozen.addr));
    *cluster.fake.leader.lock().unwrap() = (PROXY_A, 0);
    cluster
        .fake
        .partition_leaders
        .lock()
        .unwrap()
        .insert(0, FROZEN);
    let producer = Producer::connect(ProducerConfig {
        brokers: cluster.bootstrap(),
        request_timeout: REQUEST_TIMEOUT,
        retries: 0,
        ..ProducerConfig::default()
    })
    .await?;

    let stuck = producer
        .send(ProducerRecord::new("frozen", "to the frozen broker").partition(0))
        .await?;
    let deadline = Instant::now() + WAIT;
    while frozen.accepted.load(Ordering::SeqCst) == 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the producer never connected to the frozen broker"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let record = ProducerRecord::new("frozen", format!("r{i}")).partition(1);
        deliveries.push(producer.send(record).await?);
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let metadata = tokio::time::timeout(WAIT, delivery).await??;
        assert_eq!((metadata.partition, metadata.offset), (1, i as i64));
    }
    let waited = started.elapsed();
    assert!(
        waited < REQUEST_TIMEOUT / 2,
        "writes to partition 1 waited {waited:?} for the frozen leader of partition 0"
    );
    // The write to the frozen broker fails at its request timeout.
    assert!(tokio::time::timeout(WAIT, stuck).await?.is_err());
    producer.close().await;
    cluster.stop().await
}

#[tokio::test]
async fn the_consumer_follows_the_leader_and_resumes_from_its_position() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    cluster.create_topic("followed", 1).await?;
    let direct = Producer::connect(ProducerConfig {
        brokers: vec![cluster.real.as_ref().expect("running").addr.to_string()],
        ..ProducerConfig::default()
    })
    .await?;
    produce(&direct, "followed", 1, 0..30, 0).await?;

    let mut consumer = Consumer::connect(ConsumerConfig {
        brokers: cluster.bootstrap(),
        auto_offset_reset: OffsetReset::None,
        ..ConsumerConfig::default()
    })
    .await?;
    consumer.assign(&[("followed", 0)]);
    // No lookup: the stream itself is refused (NOT_LEADER in the status's ErrorInfo).
    consumer.seek("followed", 0, SeekTo::Offset(0)).await?;
    let first: Vec<String> = consume(&mut consumer, 30).await?.iter().map(text).collect();
    assert_eq!(first, (0..30).map(|i| format!("r{i}")).collect::<Vec<_>>());
    assert!(cluster.fake.refused_consume.load(Ordering::SeqCst) > 0);
    assert_eq!(consumer.position("followed", 0), Some(30));

    // The leader dies mid-stream and another is elected; more records arrive there.
    cluster.kill_a_and_elect_b().await;
    produce(&direct, "followed", 1, 30..60, 30).await?;
    let second: Vec<String> = consume(&mut consumer, 30).await?.iter().map(text).collect();
    assert_eq!(
        second,
        (30..60).map(|i| format!("r{i}")).collect::<Vec<_>>(),
        "nothing skipped, nothing read twice"
    );
    assert!(
        consumer
            .poll(10, Duration::from_millis(300))
            .await?
            .is_empty()
    );
    direct.close().await;
    cluster.stop().await
}

#[tokio::test]
async fn offset_lookups_are_asked_of_the_leader() -> Result<()> {
    let cluster = Cluster::start().await?;
    cluster.create_topic("looked-up", 2).await?;
    let direct = Producer::connect(ProducerConfig {
        brokers: vec![cluster.real.as_ref().expect("running").addr.to_string()],
        ..ProducerConfig::default()
    })
    .await?;
    produce(&direct, "looked-up", 2, 0..10, 0).await?;

    // The admin client talks to the bootstrap (fake) broker; offsets come from the
    // leader it is sent to after the refusal (the real broker behind proxy A).
    let admin = Admin::connect(&cluster.bootstrap()).await?;
    let latest = admin
        .list_offsets(
            "looked-up",
            &[(0, OffsetQuery::Latest), (1, OffsetQuery::Latest)],
        )
        .await?;
    assert_eq!(
        latest
            .iter()
            .map(|o| (o.partition, o.offset))
            .collect::<Vec<_>>(),
        [(0, 5), (1, 5)]
    );
    assert!(cluster.fake.refused_offsets.load(Ordering::SeqCst) > 0);

    // A consumer's starting position is looked up there too.
    let mut consumer = Consumer::connect(ConsumerConfig {
        brokers: cluster.bootstrap(),
        auto_offset_reset: OffsetReset::Latest,
        ..ConsumerConfig::default()
    })
    .await?;
    consumer.assign(&[("looked-up", 1)]);
    consumer.seek("looked-up", 1, SeekTo::End).await?;
    assert_eq!(consumer.position("looked-up", 1), Some(5));
    direct.close().await;
    cluster.stop().await
}
