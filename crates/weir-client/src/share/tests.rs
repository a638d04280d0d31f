//! Unit tests of the share consumer: settings, the records of an answer, and whole calls
//! against two fake coordinators in this process (`Groups.FindCoordinator` and `Queues`
//! only, answering `NOT_COORDINATOR` when they are not the coordinator), so the retry and
//! acknowledgement paths run through the real client without a broker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use weir_proto::v1::groups_server::{Groups, GroupsServer};
use weir_proto::v1::queues_server::{Queues, QueuesServer};

use super::*;

fn config() -> ShareConsumerConfig {
    ShareConsumerConfig::new("jobs", ["b", "a", "b"])
}

#[test]
fn settings_the_broker_would_refuse_are_refused_first() {
    let mut ok = config();
    ok.check().unwrap();
    assert_eq!(ok.topics, ["a", "b"]);
    let bad: [fn(&mut ShareConsumerConfig); 7] = [
        |c| c.group_id = String::new(),
        |c| c.topics.clear(),
        |c| c.topics = (0..=MAX_TOPICS).map(|i| format!("t{i}")).collect(),
        |c| c.topics.push(String::new()),
        |c| c.member_id = Some(String::new()),
        |c| c.member_id = Some("m".repeat(MAX_MEMBER_ID_LEN + 1)),
        |c| c.max_records = MAX_RECORDS_PER_POLL + 1,
    ];
    for (i, change) in bad.iter().enumerate() {
        let mut c = config();
        change(&mut c);
        assert!(matches!(c.check(), Err(ClientError::Config(_))), "case {i}");
    }
    let mut zero = config();
    zero.max_records = 0;
    assert!(zero.check().is_err());
}

#[test]
fn each_consumer_gets_its_own_member_id_unless_given_one() {
    // Cloning a config does not make two consumers one member.
    let a = config();
    let b = a.clone();
    assert_eq!(a.member_id, None);
    assert_eq!(b.member_id, None);
    let id = uuid::Uuid::new_v4().to_string();
    assert!(id.chars().count() <= MAX_MEMBER_ID_LEN);
}

#[test]
fn a_fetch_waits_at_most_half_the_request_timeout() {
    let consumer = |request: Duration| ShareConsumer {
        config: ShareConsumerConfig {
            timeouts: Timeouts {
                request,
                ..Timeouts::default()
            },
            ..config()
        },
        member_id: "m".to_owned(),
        coordinator: CoordinatorLink::new(
            "jobs",
            pb::CoordinatorType::Share,
            &[],
            Timeouts::default().into(),
        ),
        ledger: Ledger::default(),
        outcomes: VecDeque::new(),
        fetched: false,
    };
    assert_eq!(
        consumer(Duration::from_secs(30)).fetch_wait_cap(),
        Duration::from_secs(15)
    );
    assert_eq!(
        consumer(Duration::from_secs(120)).fetch_wait_cap(),
        MAX_FETCH_WAIT
    );
}

#[test]
fn fetched_records_wait_for_acknowledgement_and_outcomes_are_bounded() {
    let mut consumer = ShareConsumer {
        config: config(),
        member_id: "m".to_owned(),
        coordinator: CoordinatorLink::new(
            "jobs",
            pb::CoordinatorType::Share,
            &[],
            Timeouts::default().into(),
        ),
        ledger: Ledger::default(),
        outcomes: VecDeque::new(),
        fetched: false,
    };
    let shared = |topic: &str, offset: i64| pb::SharedRecord {
        topic: topic.to_owned(),
        partition: 0,
        record: Some(pb::ConsumedRecord {
            offset,
            timestamp_ms: 1_000 + offset,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![pb::RecordHeader {
                key: "h".to_owned(),
                value: None,
            }],
        }),
        delivery_count: 2,
        lock_deadline_ms: 99,
    };
    let mut malformed = shared("a", 9);
    malformed.record = None;
    let records = consumer.take_delivered(vec![
        shared("a", 1),
        shared("a", 2),
        malformed,
        shared("b", 0),
    ]);
    assert_eq!(records.len(), 3);
    assert_eq!(&*records[0].topic, "a");
    assert!(Arc::ptr_eq(&records[0].topic, &records[1].topic));
    assert_eq!(records[2].topic_partition(), TopicPartition::new("b", 0));
    assert_eq!(records[1].timestamp, 1_002);
    assert_eq!(records[1].delivery_count, 2);
    assert_eq!(records[1].lock_deadline_ms, 99);
    assert_eq!(records[1].headers[0].key, "h");
    assert_eq!(consumer.unacknowledged(), 3);
    consumer.acknowledge(&records[0], AckKind::Reject).unwrap();
    assert_eq!(consumer.unacknowledged(), 2);
    assert_eq!(consumer.pending_acknowledgements(), 1);
    let plain = ConsumerRecord::from(records[1].clone());
    assert_eq!(
        (plain.offset, plain.value),
        (2, Some(Bytes::from_static(b"v")))
    );

    let range = AckRange {
        topic: Arc::from("a"),
        partition: 0,
        first_offset: 0,
        last_offset: 0,
        ack: acks::Ack::new(AckKind::Accept).unwrap(),
    };
    let many = vec![range; MAX_KEPT_ACK_OUTCOMES + 5];
    consumer.keep_outcomes(acks::unknown(&many, &ClientError::Closed));
    assert_eq!(consumer.take_ack_outcomes().len(), MAX_KEPT_ACK_OUTCOMES);
    assert!(consumer.take_ack_outcomes().is_empty());
}

/// What the fake brokers share: who coordinates, and what they were asked.
#[derive(Debug, Default)]
struct State {
    /// Index into `addresses` of the coordinator.
    coordinator: usize,
    /// The broker FindCoordinator names, if not the coordinator (a stale answer).
    named: Option<usize>,
    addresses: Vec<SocketAddr>,
    /// The coordinator types FindCoordinator was asked for.
    find_types: Vec<i32>,
    /// Acknowledgements received (by ShareFetch or ShareAcknowledge), by broker index.
    acks: Vec<(usize, pb::ShareAck)>,
    /// ShareFetch calls the coordinator answered.
    fetches: usize,
    /// Records the next fetches hand out, one batch per fetch.
    batches: VecDeque<Vec<pb::SharedRecord>>,
    /// Offsets every acknowledgement reports as not held.
    not_held: Vec<i64>,
}

#[derive(Clone)]
struct FakeBroker {
    index: usize,
    state: Arc<Mutex<State>>,
}

impl FakeBroker {
    /// NOT_COORDINATOR unless this broker coordinates.
    fn check_coordinator(&self) -> Result<(), Status> {
        let state = self.state.lock().unwrap();
        if state.coordinator == self.index {
            return Ok(());
        }
        Err(Status::with_error_details(
            tonic::Code::Unavailable,
            "this broker does not coordinate share group jobs",
            ErrorDetails::with_error_info(
                "NOT_COORDINATOR",
                crate::ERROR_DOMAIN,
                HashMap::from([("coordinator_id".to_owned(), state.coordinator.to_string())]),
            ),
        ))
    }

    fn results(&self, acks: &[pb::ShareAck]) -> Vec<pb::ShareAckResult> {
        let mut state = self.state.lock().unwrap();
        let not_held = state.not_held.clone();
        acks.iter()
            .map(|a| {
                state.acks.push((self.index, a.clone()));
                pb::ShareAckResult {
                    topic: a.topic.clone(),
                    partition: a.partition,
                    first_offset: a.first_offset,
                    last_offset: a.last_offset,
                    error: None,
                    not_held: not_held
                        .iter()
                        .copied()
                        .filter(|o| (a.first_offset..=a.last_offset).contains(o))
                        .collect(),
                }
            })
            .collect()
    }
}

#[tonic::async_trait]
impl Groups for FakeBroker {
    async fn heartbeat(
        &self,
        _: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn commit_offsets(
        &self,
        _: Request<pb::CommitOffsetsRequest>,
    ) -> Result<Response<pb::CommitOffsetsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn fetch_offsets(
        &self,
        _: Request<pb::FetchOffsetsRequest>,
    ) -> Result<Response<pb::FetchOffsetsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn find_coordinator(
        &self,
        request: Request<pb::FindCoordinatorRequest>,
    ) -> Result<Response<pb::FindCoordinatorResponse>, Status> {
        let mut state = self.state.lock().unwrap();
        state.find_types.push(request.get_ref().r#type);
        let named = state.named.unwrap_or(state.coordinator);
        let address = state.addresses[named];
        Ok(Response::new(pb::FindCoordinatorResponse {
            broker_id: named as i32,
            host: address.ip().to_string(),
            port: address.port().into(),
            partition: 0,
        }))
    }
}

#[tonic::async_trait]
impl Queues for FakeBroker {
    async fn share_fetch(
        &self,
        request: Request<pb::ShareFetchRequest>,
    ) -> Result<Response<pb::ShareFetchResponse>, Status> {
        self.check_coordinator()?;
        let request = request.into_inner();
        let ack_results = self.results(&request.acknowledgements);
        let mut state = self.state.lock().unwrap();
        state.fetches += 1;
        let records = state.batches.pop_front().unwrap_or_default();
        Ok(Response::new(pb::ShareFetchResponse {
            ack_results,
            records,
            lock_duration_ms: 30_000,
        }))
    }

    async fn share_acknowledge(
        &self,
        request: Request<pb::ShareAcknowledgeRequest>,
    ) -> Result<Response<pb::ShareAcknowledgeResponse>, Status> {
        self.check_coordinator()?;
        let results = self.results(&request.into_inner().acknowledgements);
        Ok(Response::new(pb::ShareAcknowledgeResponse { results }))
    }

    async fn describe_share_group(
        &self,
        _: Request<pb::DescribeShareGroupRequest>,
    ) -> Result<Response<pb::DescribeShareGroupResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn configure_share_group(
        &self,
        _: Request<pb::ConfigureShareGroupRequest>,
    ) -> Result<Response<pb::DescribeShareGroupResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_share_groups(
        &self,
        _: Request<pb::ListShareGroupsRequest>,
    ) -> Result<Response<pb::ListShareGroupsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn reset_share_group(
        &self,
        _: Request<pb::ResetShareGroupRequest>,
    ) -> Result<Response<pb::ResetShareGroupResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn delete_share_group(
        &self,
        _: Request<pb::DeleteShareGroupRequest>,
    ) -> Result<Response<pb::DeleteShareGroupResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// Two fake brokers on 127.0.0.1:0; the first coordinates.
async fn fake_cluster() -> (Arc<Mutex<State>>, Vec<String>) {
    let state = Arc::new(Mutex::new(State::default()));
    let mut listeners = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        state
            .lock()
            .unwrap()
            .addresses
            .push(listener.local_addr().unwrap());
        listeners.push(listener);
    }
    for (index, listener) in listeners.into_iter().enumerate() {
        let broker = FakeBroker {
            index,
            state: state.clone(),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(GroupsServer::new(broker.clone()))
                .add_service(QueuesServer::new(broker))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
    }
    let brokers = state
        .lock()
        .unwrap()
        .addresses
        .iter()
        .map(ToString::to_string)
        .collect();
    (state, brokers)
}

fn shared(offset: i64) -> pb::SharedRecord {
    pb::SharedRecord {
        topic: "t".to_owned(),
        partition: 0,
        record: Some(pb::ConsumedRecord {
            offset,
            timestamp_ms: 0,
            key: None,
            value: Some(Bytes::from(format!("job {offset}"))),
            headers: vec![],
        }),
        delivery_count: 1,
        lock_deadline_ms: 30_000,
    }
}

/// `(broker, first, last, type, delay_ms)` of each acknowledgement received.
fn received(state: &Mutex<State>) -> Vec<(usize, i64, i64, pb::AckType, u64)> {
    state
        .lock()
        .unwrap()
        .acks
        .iter()
        .map(|(broker, a)| {
            (
                *broker,
                a.first_offset,
                a.last_offset,
                pb::AckType::try_from(a.r#type).unwrap(),
                a.delay_ms,
            )
        })
        .collect()
}

fn fake_config(brokers: Vec<String>, mode: AckMode) -> ShareConsumerConfig {
    ShareConsumerConfig {
        brokers,
        ack_mode: mode,
        retry_backoff: Duration::from_millis(10),
        ..ShareConsumerConfig::new("jobs", ["t"])
    }
}

#[tokio::test]
async fn implicit_acknowledgements_ride_on_the_next_fetch_and_follow_a_moved_coordinator() {
    let (state, brokers) = fake_cluster().await;
    state.lock().unwrap().batches.extend([
        vec![shared(0), shared(1), shared(2), shared(3)],
        vec![shared(4)],
    ]);
    let mut consumer = ShareConsumer::connect(fake_config(brokers, AckMode::Implicit))
        .await
        .unwrap();
    let records = consumer.poll(Duration::ZERO).await.unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(records[2].value.as_deref(), Some(&b"job 2"[..]));
    consumer
        .acknowledge(&records[1], AckKind::ReleaseAfter(Duration::from_secs(5)))
        .unwrap();

    // The coordinator moves: the next fetch is refused with NOT_COORDINATOR, the client
    // finds the new one and sends the same acknowledgements there.
    state.lock().unwrap().coordinator = 1;
    state.lock().unwrap().not_held = vec![3];
    let records = consumer.poll(Duration::ZERO).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        received(&state),
        [
            (1, 0, 0, pb::AckType::Accept, 0),
            (1, 1, 1, pb::AckType::Release, 5_000),
            (1, 2, 3, pb::AckType::Accept, 0),
        ]
    );
    let types = state.lock().unwrap().find_types.clone();
    assert!(types.len() >= 2, "{types:?}");
    assert!(
        types
            .iter()
            .all(|t| *t == pb::CoordinatorType::Share as i32)
    );

    let outcomes = consumer.take_ack_outcomes();
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes[0].is_applied() && outcomes[1].is_applied());
    assert_eq!(
        outcomes[1].kind,
        AckKind::ReleaseAfter(Duration::from_secs(5))
    );
    // The answer is a retry's: the refused try may have applied offset 3 (a coordinator
    // refuses after writing when it loses the partition meanwhile), so its "not held"
    // says so.
    assert!(matches!(
        &outcomes[2].status,
        AckStatus::Applied { not_held, retried: true } if not_held == &[3]
    ));

    // Close accepts what the last poll returned, answered at the first try.
    let closed = consumer.close().await.unwrap();
    assert_eq!(closed.len(), 1);
    assert!(matches!(
        &closed[0].status,
        AckStatus::Applied { retried: false, .. }
    ));
    assert_eq!(received(&state)[3], (1, 4, 4, pb::AckType::Accept, 0));
}

#[tokio::test]
async fn explicit_mode_needs_every_record_acknowledged_and_commit_sends_at_once() {
    let (state, brokers) = fake_cluster().await;
    state
        .lock()
        .unwrap()
        .batches
        .push_back(vec![shared(10), shared(11), shared(12)]);
    let mut consumer = ShareConsumer::connect(fake_config(brokers, AckMode::Explicit))
        .await
        .unwrap();
    let records = consumer.poll(Duration::ZERO).await.unwrap();
    consumer.acknowledge(&records[0], AckKind::Accept).unwrap();
    consumer.acknowledge(&records[1], AckKind::Renew).unwrap();
    let fetches = state.lock().unwrap().fetches;
    let refused = consumer.poll(Duration::ZERO).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Unacknowledged { count: 2, first } if first == "t/0@11"),
        "{refused:?}"
    );
    assert_eq!(state.lock().unwrap().fetches, fetches, "nothing was sent");

    let committed = consumer.commit().await.unwrap();
    assert_eq!(committed.len(), 2);
    assert_eq!(
        received(&state),
        [
            (0, 10, 10, pb::AckType::Accept, 0),
            (0, 11, 11, pb::AckType::Renew, 0),
        ]
    );
    consumer.acknowledge(&records[1], AckKind::Reject).unwrap();
    // Close releases the record left unacknowledged.
    let closed = consumer.close().await.unwrap();
    assert_eq!(closed.len(), 2);
    assert_eq!(
        received(&state)[2..],
        [
            (0, 11, 11, pb::AckType::Reject, 0),
            (0, 12, 12, pb::AckType::Release, 0),
        ]
    );
}

#[tokio::test]
async fn a_call_that_never_finds_its_coordinator_gives_up_after_the_request_timeout() {
    let (state, brokers) = fake_cluster().await;
    state.lock().unwrap().batches.push_back(vec![shared(0)]);
    let mut config = fake_config(brokers, AckMode::Implicit);
    config.timeouts.request = Duration::from_millis(500);
    let mut consumer = ShareConsumer::connect(config).await.unwrap();
    consumer.poll(Duration::ZERO).await.unwrap();
    // FindCoordinator keeps naming a broker that says it is not the coordinator.
    state.lock().unwrap().coordinator = 1;
    state.lock().unwrap().named = Some(0);
    let started = std::time::Instant::now();
    let error = consumer.commit().await.unwrap_err();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        matches!(&error, ClientError::DeadlineExceeded(m) if m.contains("does not coordinate")),
        "{error:?}"
    );
    assert!(error.is_retriable());
    // The acknowledgement's fate is unknown, and the application is told.
    let outcomes = consumer.take_ack_outcomes();
    assert_eq!(outcomes.len(), 1);
    assert!(matches!(outcomes[0].status, AckStatus::Unknown(_)));
    assert_eq!(consumer.pending_acknowledgements(), 0);
}
