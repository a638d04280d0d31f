//! The active controller: runs on every voter and acts while its quorum leads. It takes
//! one request at a time: the controller's pure logic turns it into records, the quorum
//! commits them, and only once they are applied does the caller get its answer
//! (`controller/active.rs` states that contract). A timer expires broker sessions.
//!
//! Broker heartbeats have a queue of their own, served before the timer and before
//! every other request. With one queue, a heartbeat waited behind whatever was queued
//! before it; after a broker restart thousands of ISR changes (one per partition) are
//! queued, each waiting for its commit, and with 3,000 partitions that took longer than
//! the session timeout: healthy brokers were fenced for heartbeats they had sent in
//! time, which moved thousands of leaderships, which queued thousands more changes, and
//! the cluster never settled (found measuring 3,000 partitions at RF=3; BENCHMARKS.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::CallError;
use crate::controller::{
    Controller, ControllerConfig, ControllerReply, ControllerRequest, MetadataRecord,
    RandomTopicIds,
};
use crate::quorum::{Quorum, QuorumError};

/// Calls waiting for the active controller.
pub(super) const QUEUE_DEPTH: usize = 1024;
/// Most AlterPartition calls committed as one quorum entry (a few hundred bytes each).
const MAX_ALTER_PARTITION_BATCH: usize = 512;
/// How often broker sessions are checked.
const TICK: Duration = Duration::from_millis(100);
/// Longest a proposal may wait to commit (without a quorum it never would: the caller
/// gets a retriable answer instead of waiting, and the controller takes the next
/// request).
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a commit may take to show in the applied image.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A request for the active controller and where its answer goes.
#[derive(Debug)]
pub struct ActiveCall {
    request: ControllerRequest,
    reply: oneshot::Sender<Result<ControllerReply, CallError>>,
}

/// The two queues of calls to the active controller: heartbeats, and the rest.
#[derive(Debug)]
pub(super) struct CallQueues {
    heartbeats: mpsc::Sender<ActiveCall>,
    others: mpsc::Sender<ActiveCall>,
}

/// The receiving ends of [`CallQueues`].
#[derive(Debug)]
pub(super) struct CallReceivers {
    heartbeats: mpsc::Receiver<ActiveCall>,
    others: mpsc::Receiver<ActiveCall>,
}

pub(super) fn call_queues() -> (CallQueues, CallReceivers) {
    // A broker has at most one heartbeat in flight: the voters' count bounds the queue.
    let (heartbeats, heartbeat_calls) = mpsc::channel(QUEUE_DEPTH);
    let (others, other_calls) = mpsc::channel(QUEUE_DEPTH);
    (
        CallQueues { heartbeats, others },
        CallReceivers {
            heartbeats: heartbeat_calls,
            others: other_calls,
        },
    )
}

/// Hands `request` to the local active controller and waits for its answer.
pub(super) async fn call(
    calls: &CallQueues,
    request: ControllerRequest,
) -> Result<ControllerReply, CallError> {
    let (reply, answer) = oneshot::channel();
    let queue = match request {
        ControllerRequest::BrokerHeartbeat { .. } => &calls.heartbeats,
        _ => &calls.others,
    };
    queue
        .send(ActiveCall { request, reply })
        .await
        .map_err(|_| CallError::Unreachable("the controller task stopped".into()))?;
    answer
        .await
        .map_err(|_| CallError::Unreachable("the controller task stopped".into()))?
}

fn now_ms(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

pub(super) async fn run(
    quorum: Arc<Quorum>,
    config: ControllerConfig,
    cluster_id: Option<String>,
    mut calls: CallReceivers,
) {
    let start = Instant::now();
    let mut controller = Controller::new(config, RandomTopicIds);
    let mut active = false;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // In this order: a heartbeat that arrived is counted before sessions are checked.
        let call = tokio::select! {
            biased;
            call = calls.heartbeats.recv() => call,
            _ = tick.tick() => {
                if !quorum.is_leader() {
                    active = false;
                    continue;
                }
                if !active {
                    active = activate(&quorum, &mut controller, &cluster_id, start).await;
                    if !active {
                        continue;
                    }
                }
                let image = quorum.image();
                let now = now_ms(start);
                controller.renew_own_session(quorum.node(), now);
                let records = controller.tick(&image, now);
                if !records.is_empty()
                    && let Err(e) = commit(&quorum, records).await
                {
                    tracing::warn!(error = %e, "committing expired broker sessions failed");
                }
                continue;
            }
            call = calls.others.recv() => call,
        };
        let Some(call) = call else { return };
        if !quorum.is_leader() {
            active = false;
            let _ = call.reply.send(Err(CallError::NotController {
                leader: quorum.leader(),
            }));
            continue;
        }
        if !active {
            active = activate(&quorum, &mut controller, &cluster_id, start).await;
            if !active {
                // Not caught up yet: the caller retries (it may be elsewhere by then).
                let _ = call.reply.send(Err(CallError::Unreachable(
                    "the new active controller is still applying the metadata log".into(),
                )));
                continue;
            }
        }
        if matches!(call.request, ControllerRequest::AlterPartition { .. }) {
            let mut batch = vec![call];
            while batch.len() < MAX_ALTER_PARTITION_BATCH {
                match calls.others.try_recv() {
                    Ok(next)
                        if matches!(next.request, ControllerRequest::AlterPartition { .. }) =>
                    {
                        batch.push(next);
                    }
                    Ok(other) => {
                        // Not batched: answered after the batch, in arrival order.
                        handle_alter_partitions(&quorum, &mut controller, batch, start).await;
                        batch = Vec::new();
                        let answer = handle(&quorum, &mut controller, other.request, start).await;
                        let _ = other.reply.send(answer);
                        break;
                    }
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                handle_alter_partitions(&quorum, &mut controller, batch, start).await;
            }
            continue;
        }
        let answer = handle(&quorum, &mut controller, call.request, start).await;
        let _ = call.reply.send(answer);
    }
}

/// Handles queued AlterPartition calls as one commit: each is decided against the image
/// as the ones before it in the batch leave it, their records go to the quorum in one
/// entry, and every caller is answered once it is applied (or with its error). One
/// commit per ISR change took 3,000 partitions about 40 s to settle after a broker came
/// back (tens of commits a second, each a quorum round trip and fsync); Kafka batches
/// AlterPartition the same way, per request.
async fn handle_alter_partitions(
    quorum: &Quorum,
    controller: &mut Controller,
    batch: Vec<ActiveCall>,
    start: Instant,
) {
    let mut scratch = (*quorum.image()).clone();
    let mut records = Vec::new();
    let mut replies = Vec::with_capacity(batch.len());
    for call in batch {
        let (mut these, reply) = controller.handle(&scratch, now_ms(start), call.request);
        // `handle` decided against `scratch`, so its records apply to it; one that does
        // not is a bug in the controller, and this call alone is refused for it. A
        // record that does not apply changes nothing, so only outcomes of several
        // records need a copy to fall back on (an ISR change is one record).
        let fallback = (these.len() > 1).then(|| scratch.clone());
        if let Err(e) = these.iter().try_for_each(|r| scratch.apply(r)) {
            if let Some(previous) = fallback {
                scratch = previous;
            }
            these.clear();
            let _ = call.reply.send(Err(CallError::Unreachable(format!(
                "the controller could not apply its own ISR change: {e}"
            ))));
            continue;
        }
        records.append(&mut these);
        replies.push((call.reply, reply));
    }
    let committed = if records.is_empty() {
        Ok(())
    } else {
        commit(quorum, records).await.map_err(|e| match e {
            QuorumError::NotLeader { leader } => CallError::NotController { leader },
            other => CallError::Unreachable(other.to_string()),
        })
    };
    for (sender, reply) in replies {
        let _ = sender.send(committed.clone().map(|()| reply));
    }
}

/// This voter just became the active controller: it first applies every entry its log
/// holds (entries of earlier terms that its leadership commits), so that it decides on
/// the whole committed metadata; broker sessions start from when this voter last heard
/// from each node (see [`Controller::activate`]), and a new cluster gets its id. Returns
/// whether it is active now.
///
/// Found by the random fault run (docs/replication.md § Found): deciding at once, on an
/// image that had not yet applied the previous controller's last ISR change, a new
/// controller wrote a second change with the same partition epoch; the record did not
/// apply, and every voter's metadata stopped there.
async fn activate(
    quorum: &Quorum,
    controller: &mut Controller,
    cluster_id: &Option<String>,
    start: Instant,
) -> bool {
    let target = quorum.status().last_log_index;
    if let Err(e) = quorum
        .wait_until(APPLY_TIMEOUT, |s| s.applied_index >= target || !s.is_leader)
        .await
    {
        tracing::warn!(error = %e, "the new active controller could not apply its log; not active yet");
        return false;
    }
    if !quorum.is_leader() {
        return false;
    }
    let image = quorum.image();
    let now = now_ms(start);
    // In the controller's clock; a request heard before `start` counts as at 0.
    let last_heard = quorum
        .last_heard()
        .into_iter()
        .map(|(node, at)| {
            let at = at.saturating_duration_since(start).as_millis() as u64;
            (node, at.min(now))
        })
        .collect();
    controller.activate(&image, now, &last_heard);
    tracing::info!(node = quorum.node(), "this node is the active controller");
    if image.cluster_id().is_none() {
        // This node's stamped id, or (a new directory) a new one for a new cluster.
        let cluster_id = cluster_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let request = ControllerRequest::CreateCluster { cluster_id };
        if let Err(e) = handle(quorum, controller, request, start).await {
            tracing::warn!(error = %e, "creating the cluster failed");
            return false;
        }
    }
    true
}

async fn handle(
    quorum: &Quorum,
    controller: &mut Controller,
    request: ControllerRequest,
    start: Instant,
) -> Result<ControllerReply, CallError> {
    let image = quorum.image();
    let (records, reply) = controller.handle(&image, now_ms(start), request);
    if !records.is_empty() {
        commit(quorum, records).await.map_err(|e| match e {
            QuorumError::NotLeader { leader } => CallError::NotController { leader },
            other => CallError::Unreachable(other.to_string()),
        })?;
    }
    Ok(reply)
}

/// Commits `records` and waits until the local image holds them.
async fn commit(quorum: &Quorum, records: Vec<MetadataRecord>) -> Result<(), QuorumError> {
    let count = records.len() as i64;
    let first = match tokio::time::timeout(PROPOSE_TIMEOUT, quorum.propose(records)).await {
        Ok(proposed) => proposed?,
        Err(_) => {
            return Err(QuorumError::NoLeader {
                waited_ms: PROPOSE_TIMEOUT.as_millis() as u64,
            });
        }
    };
    quorum
        .wait_until(APPLY_TIMEOUT, |s| s.metadata_offset >= first + count)
        .await?;
    Ok(())
}
