//! The active controller: runs on every voter and acts while its quorum leads. It takes
//! one request at a time: the controller's pure logic turns it into records, the quorum
//! commits them, and only once they are applied does the caller get its answer
//! (`controller/active.rs` states that contract). A timer expires broker sessions.

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

/// Hands `request` to the local active controller and waits for its answer.
pub(super) async fn call(
    calls: &mpsc::Sender<ActiveCall>,
    request: ControllerRequest,
) -> Result<ControllerReply, CallError> {
    let (reply, answer) = oneshot::channel();
    calls
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
    mut calls: mpsc::Receiver<ActiveCall>,
) {
    let start = Instant::now();
    let mut controller = Controller::new(config, RandomTopicIds);
    let mut active = false;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            call = calls.recv() => {
                let Some(call) = call else { return };
                if !quorum.is_leader() {
                    active = false;
                    let _ = call.reply.send(Err(CallError::NotController { leader: quorum.leader() }));
                    continue;
                }
                if !active {
                    active = activate(&quorum, &mut controller, &cluster_id, start).await;
                }
                let answer = handle(&quorum, &mut controller, call.request, start).await;
                let _ = call.reply.send(answer);
            }
            _ = tick.tick() => {
                if !quorum.is_leader() {
                    active = false;
                    continue;
                }
                if !active {
                    active = activate(&quorum, &mut controller, &cluster_id, start).await;
                }
                let image = quorum.image();
                let records = controller.tick(&image, now_ms(start));
                if !records.is_empty()
                    && let Err(e) = commit(&quorum, records).await
                {
                    tracing::warn!(error = %e, "committing expired broker sessions failed");
                }
            }
        }
    }
}

/// This voter just became the active controller: every unfenced broker gets a fresh
/// session, and a new cluster gets its id. Returns whether it is active now.
async fn activate(
    quorum: &Quorum,
    controller: &mut Controller,
    cluster_id: &Option<String>,
    start: Instant,
) -> bool {
    let image = quorum.image();
    controller.activate(&image, now_ms(start));
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
