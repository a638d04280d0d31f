//! The brokers' internal gRPC services over real tonic servers on 127.0.0.1:0: fetch
//! sessions (partitions never wait for each other, batches arrive byte-identical, the
//! session's bounds and ends), controller calls and metadata fetches, and the metadata
//! quorum's RPCs electing a leader and committing across three voters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tonic::Code;
use tonic::transport::server::{Router, TcpIncoming};
use weir_cluster::BrokerId;
use weir_cluster::controller::{
    ControllerError, ControllerReply, ControllerRequest, Endpoints, MetadataImage, MetadataRecord,
};
use weir_cluster::quorum::{
    MetadataDelta, Quorum, QuorumConfig, QuorumTransport, RpcKind, TransportError,
};
use weir_cluster::replication::{
    BoxFuture, FetchAnswer, FetchRequest, FetchServer, FetchSessions, MAX_FETCHES_PER_MESSAGE,
    PartitionAnswer, PartitionFetch, Session,
};
use weir_cluster::{ConfigError, TopicNameError};
use weir_grpc::internal::{
    self, ControllerClientError, ControllerHandler, ControllerHandlerError, GrpcControllerClient,
    GrpcFetchSessions, GrpcQuorumTransport, MAX_OUTSTANDING_FETCHES_PER_SESSION,
    SESSION_MESSAGE_TARGET_BYTES,
};
use weir_proto::internal::v1 as wire;

/// How long any one condition may take to hold.
const DEADLINE: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}

/// Serves `router` on `listener` until `stopping` turns true (a dropped sender stops
/// nothing: the server then lives as long as the runtime).
fn serve_on(listener: TcpListener, router: Router, mut stopping: watch::Receiver<bool>) {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async move {
                if stopping.wait_for(|s| *s).await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await
            .expect("internal server runs");
    });
}

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

// --- fetch sessions ---

/// A leader for tests: answers every fetch with data carrying `batches`, except that a
/// partition with a hold waits until the hold is released (or dropped).
struct TestLeader {
    batches: Bytes,
    holds: Mutex<HashMap<u32, oneshot::Receiver<()>>>,
    /// Fetches received so far.
    fetched: watch::Sender<usize>,
}

impl TestLeader {
    fn with_batches(batches: Bytes) -> Arc<TestLeader> {
        Arc::new(TestLeader {
            batches,
            holds: Mutex::default(),
            fetched: watch::Sender::new(0),
        })
    }

    fn fetches(&self) -> usize {
        *self.fetched.borrow()
    }

    /// Holds `partition`'s next fetch until the returned sender fires.
    fn hold(&self, partition: u32) -> oneshot::Sender<()> {
        let (release, held) = oneshot::channel();
        self.holds.lock().unwrap().insert(partition, held);
        release
    }
}

fn data(fetch: &PartitionFetch, batches: Bytes) -> PartitionAnswer {
    PartitionAnswer {
        topic_id: fetch.topic_id.clone(),
        partition: fetch.partition,
        answer: FetchAnswer::Data {
            fetch_id: fetch.request.fetch_id,
            leader_epoch: fetch.request.leader_epoch,
            from_offset: fetch.request.fetch_offset,
            high_watermark: Some(fetch.request.fetch_offset),
            log_start_offset: 0,
        },
        batches,
    }
}

impl FetchServer for TestLeader {
    fn fetch(&self, _from: BrokerId, fetch: PartitionFetch) -> BoxFuture<'_, PartitionAnswer> {
        self.fetched.send_modify(|n| *n += 1);
        let held = self.holds.lock().unwrap().remove(&fetch.partition);
        Box::pin(async move {
            if let Some(held) = held {
                let _ = held.await;
            }
            data(&fetch, self.batches.clone())
        })
    }
}

fn fetch(partition: u32, fetch_id: u64) -> PartitionFetch {
    PartitionFetch {
        topic_id: "topic-a".into(),
        partition,
        request: FetchRequest {
            fetch_id,
            replica: 2,
            broker_epoch: 5,
            leader_epoch: 3,
            fetch_offset: 40 + fetch_id as i64,
            flushed_offset: 40 + fetch_id as i64,
            last_fetched_epoch: 3,
        },
        max_bytes: 1 << 20,
    }
}

/// A leader broker serving fetch sessions from `server`.
struct Leader {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

async fn start_leader(server: Arc<dyn FetchServer>) -> Leader {
    let (listener, addr) = bind().await;
    let (stop, stopping) = watch::channel(false);
    let router = internal::server_builder()
        .add_service(internal::replication_service(server, stopping.clone()));
    serve_on(listener, router, stopping);
    Leader { addr, stop }
}

async fn open(sessions: &GrpcFetchSessions, leader: &Leader) -> Session {
    within(
        "opening a session",
        sessions.open(1, leader.addr.to_string()),
    )
    .await
    .expect("the session opens")
}

async fn next_answers(session: &mut Session) -> Vec<PartitionAnswer> {
    within("an answer", session.answers.recv())
        .await
        .expect("the session is open")
}

/// Bytes that differ at every position, so a shifted or re-encoded copy shows.
fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_partition_does_not_hold_back_the_others_and_batches_arrive_intact() {
    let batches = pattern(3 * 1024 * 1024 + 17);
    let leader = TestLeader::with_batches(batches.clone());
    let release = leader.hold(0);
    let broker = start_leader(leader.clone()).await;
    let sessions = GrpcFetchSessions::new();
    let mut session = open(&sessions, &broker).await;

    session
        .fetches
        .send(vec![fetch(0, 1), fetch(1, 2)])
        .await
        .unwrap();
    // Partition 1 is answered while partition 0 is still held.
    let first = next_answers(&mut session).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0], data(&fetch(1, 2), batches.clone()));
    assert_eq!(first[0].batches, batches, "batches arrive byte-identical");

    release.send(()).unwrap();
    let second = next_answers(&mut session).await;
    assert_eq!(second, vec![data(&fetch(0, 1), batches.clone())]);

    // Answers ready together travel together, a message's worth at a time.
    let all: Vec<PartitionFetch> = (0..100).map(|p| fetch(p, 100 + p as u64)).collect();
    session.fetches.send(all).await.unwrap();
    let mut answered = HashSet::new();
    let mut messages = 0;
    while answered.len() < 100 {
        let message = next_answers(&mut session).await;
        messages += 1;
        let bytes: usize = message.iter().map(|a| a.batches.len()).sum();
        assert!(
            bytes < SESSION_MESSAGE_TARGET_BYTES + batches.len(),
            "{bytes}"
        );
        for answer in message {
            assert_eq!(answer.batches, batches);
            assert!(answered.insert(answer.partition));
        }
    }
    // 3 MiB answers, 16 MiB messages: 6 answers in each but the last.
    let per_message = SESSION_MESSAGE_TARGET_BYTES.div_ceil(batches.len());
    assert_eq!(messages, 100usize.div_ceil(per_message));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_carries_many_messages() {
    let leader = TestLeader::with_batches(Bytes::from_static(b"one batch"));
    let broker = start_leader(leader.clone()).await;
    let sessions = GrpcFetchSessions::new();
    let mut session = open(&sessions, &broker).await;
    for fetch_id in 0..2000u64 {
        let partition = (fetch_id % 7) as u32;
        session
            .fetches
            .send(vec![fetch(partition, fetch_id)])
            .await
            .unwrap();
        let answers = next_answers(&mut session).await;
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].answer.fetch_id(), fetch_id);
        assert_eq!(answers[0].partition, partition);
    }
    // Small answers ready together travel in one message.
    let all: Vec<PartitionFetch> = (0..100).map(|p| fetch(p, 1)).collect();
    session.fetches.send(all).await.unwrap();
    assert_eq!(next_answers(&mut session).await.len(), 100);

    // More fetches than one message may carry are split by the client.
    let many: Vec<PartitionFetch> = (0..MAX_FETCHES_PER_MESSAGE as u32 + 5)
        .map(|p| fetch(p, 1))
        .collect();
    session.fetches.send(many).await.unwrap();
    let mut answered = 0;
    while answered < MAX_FETCHES_PER_MESSAGE + 5 {
        answered += next_answers(&mut session).await.len();
    }
    assert_eq!(answered, MAX_FETCHES_PER_MESSAGE + 5);
    assert_eq!(leader.fetches(), 2000 + 100 + MAX_FETCHES_PER_MESSAGE + 5);
}

/// A leader that holds every fetch until the gate opens, counting how many it holds.
struct GatedLeader {
    gate: watch::Receiver<bool>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    in_flight_changed: watch::Sender<usize>,
}

impl FetchServer for GatedLeader {
    fn fetch(&self, _from: BrokerId, fetch: PartitionFetch) -> BoxFuture<'_, PartitionAnswer> {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            self.in_flight_changed.send_replace(now);
            let mut gate = self.gate.clone();
            let _ = gate.wait_for(|open| *open).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            data(&fetch, Bytes::new())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_works_on_a_bounded_number_of_fetches() {
    let (open_gate, gate) = watch::channel(false);
    let (in_flight_changed, mut in_flight) = watch::channel(0);
    let leader = Arc::new(GatedLeader {
        gate,
        in_flight: AtomicUsize::new(0),
        most_in_flight: AtomicUsize::new(0),
        in_flight_changed,
    });
    let broker = start_leader(leader.clone()).await;
    let sessions = GrpcFetchSessions::new();
    let mut session = open(&sessions, &broker).await;

    let total = MAX_OUTSTANDING_FETCHES_PER_SESSION + MAX_FETCHES_PER_MESSAGE;
    for chunk in (0..total as u32)
        .collect::<Vec<_>>()
        .chunks(MAX_FETCHES_PER_MESSAGE)
    {
        let fetches = chunk.iter().map(|p| fetch(*p, 1)).collect();
        session.fetches.send(fetches).await.unwrap();
    }
    // The leader takes fetches up to the bound and no more while they are held.
    within(
        "the leader holding a full session",
        in_flight.wait_for(|n| *n == MAX_OUTSTANDING_FETCHES_PER_SESSION),
    )
    .await
    .unwrap();
    open_gate.send_replace(true);

    let mut answered = HashSet::new();
    while answered.len() < total {
        for answer in next_answers(&mut session).await {
            assert!(answered.insert(answer.partition), "answered twice");
        }
    }
    assert_eq!(
        leader.most_in_flight.load(Ordering::SeqCst),
        MAX_OUTSTANDING_FETCHES_PER_SESSION
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_cleanly_when_the_follower_closes_it() {
    let leader = TestLeader::with_batches(Bytes::from_static(b"batch"));
    let release = leader.hold(0);
    let broker = start_leader(leader.clone()).await;
    let sessions = GrpcFetchSessions::new();
    let Session {
        fetches,
        mut answers,
    } = open(&sessions, &broker).await;
    fetches.send(vec![fetch(0, 9)]).await.unwrap();
    // The follower closes its side: what it asked for is still answered, then the
    // session ends.
    drop(fetches);
    release.send(()).unwrap();
    let last = within("the held answer", answers.recv()).await.unwrap();
    assert_eq!(last[0].answer.fetch_id(), 9);
    assert!(within("the end", answers.recv()).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_sees_its_session_end_when_the_leader_goes_away() {
    // A leader in its own runtime, so dropping the runtime drops its connections as a
    // killed process would.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let leader = TestLeader::with_batches(Bytes::from_static(b"batch"));
    let _held = leader.hold(0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (_stop, stopping) = watch::channel(false);
    let server: Arc<dyn FetchServer> = leader.clone();
    runtime.spawn(async move {
        let listener = TcpListener::from_std(std_listener).unwrap();
        let router = internal::server_builder()
            .add_service(internal::replication_service(server, stopping.clone()));
        serve_on(listener, router, stopping);
    });

    let sessions = GrpcFetchSessions::new();
    let mut session = within("opening", sessions.open(1, addr.to_string()))
        .await
        .unwrap();
    session
        .fetches
        .send(vec![fetch(0, 1), fetch(1, 2)])
        .await
        .unwrap();
    assert_eq!(next_answers(&mut session).await[0].partition, 1);
    runtime.shutdown_background();
    // Partition 0 was still held: the session ends instead of answering it.
    assert!(within("the end", session.answers.recv()).await.is_none());
    // The leader is gone: opening again fails (the caller retries later).
    let reopened = within("re-opening", sessions.open(1, addr.to_string())).await;
    let err = reopened.expect_err("nobody listens any more");
    assert_eq!(err.leader, 1);
    assert_eq!(err.address, addr.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_the_leader_shuts_down_gracefully() {
    let leader = TestLeader::with_batches(Bytes::from_static(b"batch"));
    let _held = leader.hold(0);
    let broker = start_leader(leader.clone()).await;
    let sessions = GrpcFetchSessions::new();
    let mut session = open(&sessions, &broker).await;
    session.fetches.send(vec![fetch(0, 1)]).await.unwrap();
    within(
        "the fetch reaching the leader",
        leader.fetched.subscribe().wait_for(|n| *n == 1),
    )
    .await
    .unwrap();
    broker.stop.send_replace(true);
    assert!(within("the end", session.answers.recv()).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_was_down_is_reached_again_by_the_same_client() {
    // A port nobody listens on yet.
    let (listener, addr) = bind().await;
    drop(listener);
    let sessions = GrpcFetchSessions::new();
    let refused = within("opening", sessions.open(1, addr.to_string())).await;
    assert!(refused.is_err());
    let unresolvable = within(
        "opening",
        sessions.open(2, "no-such-broker.invalid:9093".into()),
    )
    .await;
    let err = unresolvable.expect_err("the name does not resolve");
    assert_eq!(err.leader, 2);

    // The leader comes up at that address: the same client reaches it.
    let listener = TcpListener::bind(addr).await.unwrap();
    let (_stop, stopping) = watch::channel(false);
    let leader = TestLeader::with_batches(Bytes::from_static(b"batch"));
    let router = internal::server_builder()
        .add_service(internal::replication_service(leader, stopping.clone()));
    serve_on(listener, router, stopping);
    let mut session = within("opening", sessions.open(1, addr.to_string()))
        .await
        .unwrap();
    session.fetches.send(vec![fetch(3, 4)]).await.unwrap();
    assert_eq!(next_answers(&mut session).await[0].partition, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_with_too_many_fetches_is_refused() {
    let leader = TestLeader::with_batches(Bytes::new());
    let broker = start_leader(leader.clone()).await;
    let mut client =
        wire::replication_client::ReplicationClient::connect(format!("http://{}", broker.addr))
            .await
            .unwrap();
    let one = wire::PartitionFetch {
        topic_id: "t".into(),
        ..Default::default()
    };
    let message = wire::FetchSessionRequest {
        fetches: vec![one; MAX_FETCHES_PER_MESSAGE + 1],
    };
    let mut inbound = client
        .fetch_session(tokio_stream::iter(vec![message]))
        .await
        .unwrap()
        .into_inner();
    let status = within("the refusal", inbound.message())
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("10000"), "{}", status.message());
    assert_eq!(leader.fetches(), 0, "nothing was fetched");
}

// --- controller ---

/// The active controller for tests: registers brokers at epoch 7, refuses topics, and
/// keeps records from offset 2 on (older asks get the image).
struct ActiveController {
    image: Arc<MetadataImage>,
    records: Vec<MetadataRecord>,
}

/// A broker that is not the controller.
struct Standby {
    leader: Option<(BrokerId, String)>,
}

impl ControllerHandler for ActiveController {
    fn call(
        &self,
        request: ControllerRequest,
    ) -> BoxFuture<'_, Result<ControllerReply, ControllerHandlerError>> {
        Box::pin(async move {
            match request {
                ControllerRequest::RegisterBroker { .. } => {
                    Ok(ControllerReply::Registered { broker_epoch: 7 })
                }
                ControllerRequest::CreateTopic { name, .. } if name == "bad/name" => {
                    Ok(ControllerReply::Refused(ControllerError::InvalidTopicName(
                        TopicNameError::BadCharacter { name, ch: '/' },
                    )))
                }
                ControllerRequest::CreateTopic { .. } => Ok(ControllerReply::Refused(
                    ControllerError::InvalidConfig(ConfigError::BadValue {
                        key: "retention.ms".into(),
                        value: "soon".into(),
                        expected: "an integer, or -1 for no limit",
                    }),
                )),
                ControllerRequest::DeleteTopic { .. } => Err(ControllerHandlerError::Unavailable {
                    reason: "the quorum lost its leader mid-request".into(),
                }),
                other => panic!("unexpected {other:?}"),
            }
        })
    }

    fn fetch_metadata(
        &self,
        from_offset: i64,
        max_records: usize,
        _wait: Duration,
    ) -> BoxFuture<'_, Result<MetadataDelta, ControllerHandlerError>> {
        Box::pin(async move {
            if from_offset < 2 {
                return Ok(MetadataDelta::Image(self.image.clone()));
            }
            let skip = (from_offset - 2) as usize;
            Ok(MetadataDelta::Records {
                first_offset: from_offset,
                records: self
                    .records
                    .iter()
                    .skip(skip)
                    .take(max_records)
                    .cloned()
                    .collect(),
            })
        })
    }
}

impl ControllerHandler for Standby {
    fn call(
        &self,
        _request: ControllerRequest,
    ) -> BoxFuture<'_, Result<ControllerReply, ControllerHandlerError>> {
        Box::pin(async move {
            Err(ControllerHandlerError::NotController {
                leader: self.leader.clone(),
            })
        })
    }

    fn fetch_metadata(
        &self,
        _from_offset: i64,
        _max_records: usize,
        _wait: Duration,
    ) -> BoxFuture<'_, Result<MetadataDelta, ControllerHandlerError>> {
        Box::pin(async move {
            Err(ControllerHandlerError::NotController {
                leader: self.leader.clone(),
            })
        })
    }
}

async fn start_controller(handler: Arc<dyn ControllerHandler>) -> SocketAddr {
    let (listener, addr) = bind().await;
    let (_, stopping) = watch::channel(false);
    let router = internal::server_builder().add_service(internal::controller_service(handler));
    serve_on(listener, router, stopping);
    addr
}

fn image_with(records: &[MetadataRecord]) -> MetadataImage {
    let mut image = MetadataImage::new();
    for record in records {
        image.apply(record).unwrap();
    }
    image
}

fn registered(node: BrokerId, epoch: i64) -> MetadataRecord {
    MetadataRecord::BrokerRegistered {
        node,
        incarnation: format!("incarnation-{node}"),
        broker_epoch: epoch,
        endpoints: Endpoints::new(format!("broker-{node}:9092"), format!("broker-{node}:9093")),
        rack: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_calls_round_trip_and_follow_the_active_controller() {
    let history = [
        MetadataRecord::ClusterCreated {
            cluster_id: "c-1".into(),
        },
        registered(1, 1),
        registered(2, 2),
        MetadataRecord::TopicCreated {
            name: "orders".into(),
            topic_id: "id-orders".into(),
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        },
    ];
    let active = start_controller(Arc::new(ActiveController {
        image: Arc::new(image_with(&history[..2])),
        records: history[2..].to_vec(),
    }))
    .await;
    let standby = start_controller(Arc::new(Standby {
        leader: Some((1, active.to_string())),
    }))
    .await;
    let electing = start_controller(Arc::new(Standby { leader: None })).await;
    let client = GrpcControllerClient::default();

    let register = ControllerRequest::RegisterBroker {
        node: 2,
        incarnation: "i-2".into(),
        endpoints: Endpoints::new("b2:9092", "b2:9093"),
        rack: Some("r1".into()),
        cluster_id: "c-1".into(),
        metadata_level: weir_cluster::controller::records::METADATA_LEVEL,
    };
    // A standby names the active controller; the caller retries there.
    let err = client
        .call(&standby.to_string(), &register)
        .await
        .expect_err("not the controller");
    let ControllerClientError::NotController { leader, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(leader, &Some((1, active.to_string())));
    assert!(err.is_retriable());
    let (_, at) = leader.clone().unwrap();
    assert_eq!(
        client.call(&at, &register).await.unwrap(),
        ControllerReply::Registered { broker_epoch: 7 }
    );
    let err = client
        .call(&electing.to_string(), &register)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ControllerClientError::NotController { leader: None, .. }
        ),
        "{err}"
    );

    // Refusals arrive whole, reasons included.
    let create = |name: &str| ControllerRequest::CreateTopic {
        name: name.into(),
        partitions: 1,
        replication_factor: 0,
        configs: BTreeMap::new(),
    };
    assert_eq!(
        client.call(&at, &create("events")).await.unwrap(),
        ControllerReply::Refused(ControllerError::InvalidConfig(ConfigError::BadValue {
            key: "retention.ms".into(),
            value: "soon".into(),
            expected: "an integer, or -1 for no limit",
        }))
    );
    assert_eq!(
        client.call(&at, &create("bad/name")).await.unwrap(),
        ControllerReply::Refused(ControllerError::InvalidTopicName(
            TopicNameError::BadCharacter {
                name: "bad/name".into(),
                ch: '/'
            }
        ))
    );
    // A controller that cannot answer now: retriable.
    let err = client
        .call(
            &at,
            &ControllerRequest::DeleteTopic {
                name: "orders".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ControllerClientError::Unavailable { .. }) && err.is_retriable(),
        "{err}"
    );
    assert!(err.to_string().contains("lost its leader"), "{err}");

    // Metadata: records from a kept offset, the image from an older one.
    assert_eq!(
        client
            .fetch_metadata(&at, 2, 0, Duration::ZERO)
            .await
            .unwrap(),
        MetadataDelta::Records {
            first_offset: 2,
            records: history[2..].to_vec(),
        }
    );
    assert_eq!(
        client
            .fetch_metadata(&at, 3, 1, Duration::ZERO)
            .await
            .unwrap(),
        MetadataDelta::Records {
            first_offset: 3,
            records: history[3..4].to_vec(),
        }
    );
    match client
        .fetch_metadata(&at, 0, 0, Duration::ZERO)
        .await
        .unwrap()
    {
        MetadataDelta::Image(image) => {
            assert_eq!(*image, image_with(&history[..2]));
            assert_eq!(image.next_offset(), 2);
            assert_eq!(image.cluster_id(), Some("c-1"));
        }
        other => panic!("{other:?}"),
    }
    let err = client
        .fetch_metadata(&standby.to_string(), 0, 0, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ControllerClientError::NotController { .. }),
        "{err}"
    );
    let err = client
        .fetch_metadata(&at, -1, 0, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ControllerClientError::Refused { status, .. } if status.code() == Code::InvalidArgument),
        "{err}"
    );
    assert!(!err.is_retriable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_wire_version_is_refused_clearly() {
    let addr = start_controller(Arc::new(Standby { leader: None })).await;
    let mut raw = wire::controller_client::ControllerClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let status = raw
        .call(wire::ControllerCall {
            wire_version: 2,
            request: Bytes::from_static(b"{}"),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("version 2") && status.message().contains("same build"),
        "{}",
        status.message()
    );
    let status = raw
        .call(wire::ControllerCall {
            wire_version: internal::CONTROLLER_WIRE_VERSION,
            request: Bytes::from_static(b"not json"),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("malformed controller request"));

    // A controller that cannot be reached is unavailable, not refused.
    let (listener, nobody) = bind().await;
    drop(listener);
    let client = GrpcControllerClient::new(Duration::from_secs(5));
    let err = client
        .call(
            &nobody.to_string(),
            &ControllerRequest::DeleteTopic { name: "t".into() },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ControllerClientError::Unavailable { .. }),
        "{err}"
    );
}

// --- the metadata quorum ---

struct Voter {
    quorum: Quorum,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_a_leader_and_commit_over_grpc() {
    let mut listeners = BTreeMap::new();
    for id in 1..=3 {
        listeners.insert(id, bind().await);
    }
    let voters: Vec<(BrokerId, String)> = listeners
        .iter()
        .map(|(id, (_, addr))| (*id, addr.to_string()))
        .collect();
    let mut nodes = BTreeMap::new();
    for (id, (listener, _)) in listeners {
        let dir = tempfile::tempdir().unwrap();
        let quorum = Quorum::start(
            id,
            voters.clone(),
            dir.path().join("metadata"),
            Arc::new(GrpcQuorumTransport::new()),
            QuorumConfig::default(),
        )
        .await
        .unwrap();
        let (stop, stopping) = watch::channel(false);
        let router =
            internal::server_builder().add_service(internal::quorum_service(quorum.clone()));
        serve_on(listener, router, stopping);
        nodes.insert(
            id,
            Voter {
                quorum,
                _dir: dir,
                _stop: stop,
            },
        );
    }

    // Leadership may still move right after the first election (2 busy cores): propose
    // on whoever leads until a proposal commits.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let first = loop {
        let leader = nodes[&1]
            .quorum
            .wait_for_leader(DEADLINE)
            .await
            .expect("a leader is elected");
        let records = vec![
            MetadataRecord::ClusterCreated {
                cluster_id: "over-grpc".into(),
            },
            registered(1, 1),
        ];
        match within("the proposal", nodes[&leader].quorum.propose(records)).await {
            Ok(first) => break first,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("proposal not committed yet ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("committed: {e:?}"),
        }
    };
    assert_eq!(first, 0);
    for voter in nodes.values() {
        voter
            .quorum
            .wait_until(DEADLINE, |s| s.metadata_offset == 2)
            .await
            .unwrap();
        let image = voter.quorum.image();
        assert_eq!(image.cluster_id(), Some("over-grpc"));
        assert_eq!(image.next_offset(), 2);
    }
    for voter in nodes.values() {
        voter.quorum.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quorum_transport_reports_unreachable_voters_and_misrouted_rpcs() {
    let transport = GrpcQuorumTransport::new();
    let (listener, nobody) = bind().await;
    drop(listener);
    let nobody = nobody.to_string();
    let err = transport
        .send(2, &nobody, RpcKind::Vote, b"WQRQ".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::Unreachable { target: 2, .. }),
        "{err}"
    );

    // A voter refuses an RPC meant for another node id, and says why.
    let (listener, addr) = bind().await;
    let dir = tempfile::tempdir().unwrap();
    let quorum = Quorum::start(
        1,
        vec![(1, addr.to_string())],
        dir.path().join("metadata"),
        Arc::new(GrpcQuorumTransport::new()),
        QuorumConfig::default(),
    )
    .await
    .unwrap();
    let (_stop, stopping) = watch::channel(false);
    serve_on(
        listener,
        internal::server_builder().add_service(internal::quorum_service(quorum.clone())),
        stopping,
    );
    let addr = addr.to_string();
    let err = transport
        .send(3, &addr, RpcKind::Vote, b"WQRQ".to_vec())
        .await
        .unwrap_err();
    let TransportError::Unreachable { source, .. } = &err else {
        panic!("{err}");
    };
    assert!(source.to_string().contains("not voter 3"), "{source}");
    // Garbage for the right voter is refused as malformed, and backed off from.
    let err = transport
        .send(1, &addr, RpcKind::Vote, b"garbage".to_vec())
        .await
        .unwrap_err();
    let TransportError::Unreachable { source, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        source.to_string().contains("malformed quorum RPC"),
        "{source}"
    );
    quorum.shutdown().await.unwrap();
}
