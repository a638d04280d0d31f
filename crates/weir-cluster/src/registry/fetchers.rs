//! Replication traffic between brokers: one fetch session per leader carrying every
//! partition this broker follows from it (`docs/replication.md` § 2), ISR proposals to
//! the controller, and the leader's side of other brokers' sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::TopicRegistry;
use crate::controller::records::BrokerEpoch;
use crate::controller::{ControllerReply, ControllerRequest};
use crate::node::ClusterNode;
use crate::partition::{BrokerId, Partition, ReplicationLinks};
use crate::replication::{
    AlterIsrAnswer, AlterIsrRequest, BoxFuture, FetchAnswer, FetchError, FetchRequest, FetchServer,
    FetchSessions, MAX_FETCHES_PER_MESSAGE, PartitionAnswer, PartitionFetch,
};

/// Most batch bytes one partition's fetch answer carries (`replica.fetch.max.bytes`).
pub const REPLICA_FETCH_MAX_BYTES: u32 = 8 * 1024 * 1024;
/// Longest a leader holds a fetch with nothing to send (`replica.fetch.wait.max.ms`).
pub const REPLICA_FETCH_WAIT: Duration = Duration::from_millis(500);
/// Pause before opening a session again after it failed.
const SESSION_RETRY: Duration = Duration::from_millis(100);
/// Least a throttled fetch asks for, however many share the throttle.
const MIN_THROTTLED_FETCH_BYTES: u32 = 16 * 1024;

/// Hosted partitions by topic id and index.
pub(super) type Hosted = Arc<RwLock<HashMap<(String, u32), Arc<Partition>>>>;

/// The follower side: sessions to leaders, and ISR proposals.
#[derive(Debug)]
pub(super) struct Replication {
    node: ClusterNode,
    sessions: Arc<dyn FetchSessions>,
    hosted: Hosted,
    /// The fetch queue of each leader's session pump.
    fetchers: Mutex<HashMap<BrokerId, mpsc::UnboundedSender<PartitionFetch>>>,
    throttle: Arc<Throttle>,
}

/// The pace of this broker's fetches for replicas a throttled reassignment is adding
/// (`docs/replication.md` § Reassignment, 7): one token bucket, in debt form. Each
/// answer's bytes push `free_at` on by bytes / rate, and the next throttled fetch waits
/// for `free_at`. So the rate holds to within one answer, and each answer is kept to a
/// quarter second's worth, shared among the throttled fetches in flight, so none waits
/// near its follower's fetch timeout.
#[derive(Debug, Default)]
struct Throttle {
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    free_at: Option<Instant>,
    /// Throttled fetches sent and not answered, with their rate (bytes/s).
    in_flight: HashMap<(String, u32), u64>,
}

impl Throttle {
    /// Registers a throttled fetch of `key` at `rate`: when it may be sent, and how many
    /// bytes it may ask for.
    fn begin(&self, key: (String, u32), rate: u64, now: Instant) -> (Instant, u32) {
        let mut s = self.state.lock().expect("throttle lock");
        s.in_flight.insert(key, rate);
        let sharing = s.in_flight.len() as u64;
        let rate = s.in_flight.values().copied().min().unwrap_or(rate);
        let max_bytes = (rate / 4 / sharing).clamp(
            u64::from(MIN_THROTTLED_FETCH_BYTES),
            u64::from(REPLICA_FETCH_MAX_BYTES),
        ) as u32;
        (s.free_at.map_or(now, |f| f.max(now)), max_bytes)
    }

    /// The answer to a fetch of `key` carried `bytes`: if that fetch was throttled, the
    /// next throttled fetch waits for them to be paid for.
    fn answered(&self, key: &(String, u32), bytes: usize, now: Instant) {
        let mut s = self.state.lock().expect("throttle lock");
        let Some(rate) = s.in_flight.remove(key) else {
            return;
        };
        let rate = s.in_flight.values().copied().fold(rate, u64::min);
        let pay = Duration::from_secs_f64(bytes as f64 / rate as f64);
        s.free_at = Some(s.free_at.map_or(now, |f| f.max(now)) + pay);
    }
}

impl std::fmt::Debug for dyn FetchSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FetchSessions")
    }
}

impl Replication {
    pub(super) fn new(
        node: ClusterNode,
        sessions: Arc<dyn FetchSessions>,
        hosted: Hosted,
    ) -> Replication {
        Replication {
            node,
            sessions,
            hosted,
            fetchers: Mutex::new(HashMap::new()),
            throttle: Arc::default(),
        }
    }

    /// The throttle (bytes/s) of a fetch for `partition`, if this broker is a replica a
    /// throttled reassignment is adding and not yet in the ISR.
    fn throttle_rate(&self, topic_id: &str, partition: u32) -> Option<u64> {
        let me = self.node.node();
        let image = self.node.image();
        let reg = image.partition(topic_id, partition)?;
        let rate = reg.reassignment.as_ref()?.throttle_bytes_per_sec?;
        (reg.is_adding(me) && !reg.in_isr(me)).then_some(rate)
    }

    fn broker_epoch(&self) -> BrokerEpoch {
        self.node.broker_state().borrow().broker_epoch.unwrap_or(0)
    }
}

impl ReplicationLinks for Replication {
    fn send_fetch(&self, topic_id: &str, partition: u32, leader: BrokerId, request: FetchRequest) {
        let mut fetch = PartitionFetch {
            topic_id: topic_id.to_string(),
            partition,
            request,
            max_bytes: REPLICA_FETCH_MAX_BYTES,
        };
        let queue = {
            let mut fetchers = self.fetchers.lock().expect("fetchers lock");
            fetchers
                .entry(leader)
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(run_session_pump(
                        leader,
                        rx,
                        self.node.clone(),
                        self.sessions.clone(),
                        self.hosted.clone(),
                        self.throttle.clone(),
                    ));
                    tx
                })
                .clone()
        };
        // The pump lives as long as the registry; a fetch lost here is re-sent by the
        // follower's fetch timeout.
        match self.throttle_rate(topic_id, partition) {
            None => {
                let _ = queue.send(fetch);
            }
            Some(rate) => {
                let key = (topic_id.to_string(), partition);
                let (send_at, max_bytes) = self.throttle.begin(key, rate, Instant::now());
                fetch.max_bytes = max_bytes;
                tokio::spawn(async move {
                    tokio::time::sleep_until(send_at).await;
                    let _ = queue.send(fetch);
                });
            }
        }
    }

    fn propose_isr(&self, topic_id: &str, partition: u32, request: AlterIsrRequest) {
        let node = self.node.clone();
        let key = (topic_id.to_string(), partition);
        let hosted = self.hosted.clone();
        let broker_epoch = self.broker_epoch();
        tokio::spawn(async move {
            // KIP-841: a member this change adds that the image shows fenced, shutting
            // down or registered anew would only be refused by the controller (the same
            // check as `controller/alter_partition.rs`); ask again later (the partition
            // retries a refused change shortly) instead of adding a call to its queue.
            // The image may be behind the controller's: the retry covers that.
            let image = node.image();
            let current = image.partition(&key.0, partition).map(|r| r.isr.clone());
            let ineligible = request.new_isr.iter().find(|(member, epoch)| {
                let added = current.as_ref().is_none_or(|isr| !isr.contains(member));
                added
                    && !image
                        .broker(*member)
                        .is_some_and(|b| b.broker_epoch == *epoch && b.is_eligible())
            });
            if let Some((member, _)) = ineligible {
                tracing::debug!(
                    topic_id = key.0,
                    partition,
                    member,
                    "ISR change held: a member is not eligible in the image"
                );
                let p = hosted.read().expect("hosted lock").get(&key).cloned();
                if let Some(p) = p {
                    p.alter_isr_answered(AlterIsrAnswer::Refused);
                }
                return;
            }
            let call = ControllerRequest::AlterPartition {
                node: node.node(),
                broker_epoch,
                topic_id: key.0.clone(),
                partition,
                leader_epoch: request.leader_epoch,
                partition_epoch: request.partition_epoch,
                new_isr: request.new_isr.clone(),
            };
            let answer = match node.call(call).await {
                Ok(ControllerReply::PartitionAltered(registration)) => {
                    AlterIsrAnswer::Accepted(registration)
                }
                Ok(ControllerReply::Refused(e)) => {
                    tracing::info!(topic_id = key.0, partition, error = %e, "ISR change refused");
                    AlterIsrAnswer::Refused
                }
                Ok(other) => {
                    tracing::warn!(
                        topic_id = key.0,
                        partition,
                        ?other,
                        "unexpected answer to an ISR change"
                    );
                    AlterIsrAnswer::Unknown
                }
                Err(e) => {
                    tracing::warn!(topic_id = key.0, partition, error = %e, "ISR change not answered");
                    AlterIsrAnswer::Unknown
                }
            };
            let p = hosted.read().expect("hosted lock").get(&key).cloned();
            if let Some(p) = p {
                p.alter_isr_answered(answer);
            }
        });
    }

    fn resign_leadership(&self, topic_id: &str, partition: u32, leader_epoch: i32) {
        let node = self.node.clone();
        let call = ControllerRequest::ResignLeadership {
            node: node.node(),
            broker_epoch: self.broker_epoch(),
            topic_id: topic_id.to_string(),
            partition,
            leader_epoch,
        };
        let topic_id = topic_id.to_string();
        // The answer that matters comes through the metadata (a registration past the
        // resigned epoch); the partition asks again if it does not come in time.
        tokio::spawn(async move {
            match node.call(call).await {
                Ok(ControllerReply::PartitionAltered(r)) => {
                    tracing::info!(
                        topic_id,
                        partition,
                        leader = r.leader,
                        leader_epoch = r.leader_epoch,
                        "leadership resigned after a log failure"
                    )
                }
                Ok(other) => {
                    tracing::warn!(topic_id, partition, ?other, "resignation not accepted")
                }
                Err(e) => {
                    tracing::warn!(topic_id, partition, error = %e, "resignation not answered")
                }
            }
        });
    }
}

/// Keeps one fetch session open to `leader` and moves fetches out and answers in. When
/// the session breaks it opens another; fetches in flight on the broken one are re-sent
/// by their followers' timeouts.
async fn run_session_pump(
    leader: BrokerId,
    mut fetches: mpsc::UnboundedReceiver<PartitionFetch>,
    node: ClusterNode,
    sessions: Arc<dyn FetchSessions>,
    hosted: Hosted,
    throttle: Arc<Throttle>,
) {
    // Opening is retried every SESSION_RETRY while the leader cannot be reached.
    let failures = crate::peer_log::PeerLog::new("replication fetch sessions");
    loop {
        let Some(address) = node
            .image()
            .broker(leader)
            .map(|b| b.endpoints.internal().to_owned())
        else {
            tokio::time::sleep(SESSION_RETRY).await;
            continue;
        };
        let mut session = match sessions.open(leader, address).await {
            Ok(s) => {
                failures.answered(leader);
                s
            }
            Err(e) => {
                failures.failed(leader, &e);
                tokio::time::sleep(SESSION_RETRY).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                fetch = fetches.recv() => {
                    let Some(first) = fetch else { return };
                    let mut batch = vec![first];
                    while batch.len() < MAX_FETCHES_PER_MESSAGE {
                        match fetches.try_recv() {
                            Ok(f) => batch.push(f),
                            Err(_) => break,
                        }
                    }
                    if session.fetches.send(batch).await.is_err() {
                        break;
                    }
                }
                answers = session.answers.recv() => {
                    let Some(answers) = answers else { break };
                    for a in answers {
                        let key = (a.topic_id.clone(), a.partition);
                        throttle.answered(&key, a.batches.len(), Instant::now());
                        let p = hosted.read().expect("hosted lock").get(&key).cloned();
                        if let Some(p) = p {
                            p.fetch_answered(a.answer, a.batches);
                        }
                    }
                }
            }
        }
        tracing::info!(leader, "fetch session closed; opening another");
        tokio::time::sleep(SESSION_RETRY).await;
    }
}

impl FetchServer for TopicRegistry {
    /// The leader's side of one partition fetch of a session.
    fn fetch(&self, _from: BrokerId, fetch: PartitionFetch) -> BoxFuture<'_, PartitionAnswer> {
        Box::pin(async move {
            let PartitionFetch {
                topic_id,
                partition,
                request,
                max_bytes,
            } = fetch;
            let (answer, batches) = match self.hosted(&topic_id, partition) {
                Some(p) => {
                    let max = (max_bytes as usize).min(REPLICA_FETCH_MAX_BYTES as usize);
                    p.answer_fetch(request, max, REPLICA_FETCH_WAIT).await
                }
                None => (
                    FetchAnswer::Error {
                        fetch_id: request.fetch_id,
                        error: FetchError::NotLeader,
                    },
                    bytes::Bytes::new(),
                ),
            };
            PartitionAnswer {
                topic_id,
                partition,
                answer,
                batches,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: u32) -> (String, u32) {
        ("t".to_string(), p)
    }

    #[test]
    fn throttled_fetches_wait_for_the_bytes_before_them_to_be_paid() {
        let throttle = Throttle::default();
        let start = Instant::now();
        // 4 MB/s: a fetch asks for a quarter second's worth, and may go at once.
        let (at, max) = throttle.begin(key(0), 4_000_000, start);
        assert_eq!((at, max), (start, 1_000_000));
        throttle.answered(&key(0), 1_000_000, start);
        // The next waits out the quarter second those bytes cost.
        let (at, _) = throttle.begin(key(0), 4_000_000, start);
        assert_eq!(at, start + Duration::from_millis(250));
        // Two in flight share the quarter second; the lower rate sets the pace.
        let (_, max) = throttle.begin(key(1), 2_000_000, start);
        assert_eq!(max, 250_000);
        throttle.answered(&key(0), 0, start);
        throttle.answered(&key(1), 500_000, start);
        let (at, _) = throttle.begin(key(1), 2_000_000, start);
        assert_eq!(at, start + Duration::from_millis(500));
        // Answers to fetches that were not throttled cost nothing.
        throttle.answered(&key(9), 10_000_000, start);
        let (at, max) = throttle.begin(key(2), 1, start);
        assert_eq!(at, start + Duration::from_millis(500));
        assert_eq!(max, MIN_THROTTLED_FETCH_BYTES, "never below the floor");
    }
}
