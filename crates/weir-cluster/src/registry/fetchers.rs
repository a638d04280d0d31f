//! Replication traffic between brokers: one fetch session per leader carrying every
//! partition this broker follows from it (`docs/replication.md` § 2), ISR proposals to
//! the controller, and the leader's side of other brokers' sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

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
        }
    }

    fn broker_epoch(&self) -> BrokerEpoch {
        self.node.broker_state().borrow().broker_epoch.unwrap_or(0)
    }
}

impl ReplicationLinks for Replication {
    fn send_fetch(&self, topic_id: &str, partition: u32, leader: BrokerId, request: FetchRequest) {
        let fetch = PartitionFetch {
            topic_id: topic_id.to_string(),
            partition,
            request,
            max_bytes: REPLICA_FETCH_MAX_BYTES,
        };
        let mut fetchers = self.fetchers.lock().expect("fetchers lock");
        let queue = fetchers.entry(leader).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run_session_pump(
                leader,
                rx,
                self.node.clone(),
                self.sessions.clone(),
                self.hosted.clone(),
            ));
            tx
        });
        // The pump lives as long as the registry; a fetch lost here is re-sent by the
        // follower's fetch timeout.
        let _ = queue.send(fetch);
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
                    p.alter_isr_answered(AlterIsrAnswer::Refused).await;
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
                p.alter_isr_answered(answer).await;
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
) {
    loop {
        let Some(address) = node
            .image()
            .broker(leader)
            .map(|b| b.endpoints.internal.clone())
        else {
            tokio::time::sleep(SESSION_RETRY).await;
            continue;
        };
        let mut session = match sessions.open(leader, address).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(leader, error = %e, "fetch session not opened; retrying");
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
                        let p = hosted.read().expect("hosted lock").get(&(a.topic_id.clone(), a.partition)).cloned();
                        if let Some(p) = p {
                            p.fetch_answered(a.answer, a.batches).await;
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
