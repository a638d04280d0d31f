//! The committer: one task that sends a member's offset commits one at a time, in the
//! order they were made, so an older commit never lands after a newer one and moves a
//! partition's committed offset back.
//!
//! Commits carry the member id and the current member epoch. A commit refused with
//! `FAILED_PRECONDITION` because the epoch moved on (a heartbeat answer with a newer one
//! is on its way) is retried once the new epoch is known; a commit made under an older
//! incarnation (the member was fenced and joined again since) is never sent: its
//! partitions were lost. Retriable failures are retried with backoff up to
//! [`COMMIT_TIMEOUT`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::link::{CoordinatorLink, MAX_COORDINATOR_RETRY_BACKOFF};
use tokio::sync::{mpsc, oneshot};
use weir_proto::v1 as pb;

use super::TopicPartition;
use super::heartbeat::Shared;
use crate::consumer::reconnect_backoff as backoff;
use crate::error::ClientError;

/// Commits queued behind the one being sent; `commit_async` waits for room beyond it.
pub const COMMIT_QUEUE_DEPTH: usize = 16;
/// Longest one commit is retried (over retriable failures and epoch changes).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a commit refused for a stale epoch waits for a heartbeat answer with the new
/// one before it fails.
const EPOCH_WAIT: Duration = Duration::from_secs(5);

/// One commit: offsets read under `incarnation`.
pub(super) struct CommitJob {
    pub offsets: Vec<(TopicPartition, i64)>,
    pub incarnation: u64,
    /// Where the outcome goes; `None` for auto commits (failures are logged).
    pub done: Option<oneshot::Sender<Result<(), ClientError>>>,
}

/// Runs until every sender is gone.
pub(super) async fn run(
    mut jobs: mpsc::Receiver<CommitJob>,
    coordinator: Arc<CoordinatorLink>,
    shared: Arc<Shared>,
    initial_backoff: Duration,
) {
    while let Some(job) = jobs.recv().await {
        let result = commit(&coordinator, &shared, &job, initial_backoff).await;
        match job.done {
            Some(done) => {
                let _ = done.send(result);
            }
            None => {
                if let Err(error) = result {
                    tracing::warn!(group = %shared.group_id, %error, "auto commit failed");
                }
            }
        }
    }
}

async fn commit(
    coordinator: &CoordinatorLink,
    shared: &Shared,
    job: &CommitJob,
    initial_backoff: Duration,
) -> Result<(), ClientError> {
    let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
    let mut membership = shared.membership.subscribe();
    let mut failures: u32 = 0;
    loop {
        let member = membership.borrow_and_update().clone();
        if member.incarnation != job.incarnation || member.member_id.is_empty() {
            return Err(ClientError::FailedPrecondition(format!(
                "not committed: this member of group {} was removed from the group (or is \
                 joining again) since the offsets were read, and its partitions went to \
                 others",
                shared.group_id
            )));
        }
        let request = pb::CommitOffsetsRequest {
            group_id: shared.group_id.clone(),
            member_id: member.member_id.clone(),
            member_epoch: member.member_epoch,
            topics: offset_commits(&job.offsets),
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let call = async {
            let mut client = coordinator.client().await?;
            client
                .commit_offsets(request)
                .await
                .map(|_| ())
                .map_err(ClientError::from)
        };
        let result = match tokio::time::timeout(remaining, call).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::DeadlineExceeded(format!(
                "no commit answer within {COMMIT_TIMEOUT:?}"
            ))),
        };
        let error = match result {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        coordinator.failed(&error);
        if tokio::time::Instant::now() >= deadline {
            return Err(error);
        }
        match &error {
            ClientError::FailedPrecondition(_) => {
                // Likely a stale epoch: ask for a heartbeat and retry with what it brings.
                shared.heartbeat_now.notify_one();
                let wait =
                    EPOCH_WAIT.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                match tokio::time::timeout(wait, membership.changed()).await {
                    Ok(Ok(())) => continue,
                    _ => return Err(error),
                }
            }
            error if error.is_retriable() => {
                failures = failures.saturating_add(1);
                let wait = backoff(initial_backoff, failures)
                    .min(MAX_COORDINATOR_RETRY_BACKOFF)
                    .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                tracing::debug!(group = %shared.group_id, %error, ?wait, "commit failed; retrying");
                tokio::time::sleep(wait).await;
            }
            _ => return Err(error),
        }
    }
}

/// Offsets as the API lists them: by topic, partitions ascending.
pub(crate) fn offset_commits(offsets: &[(TopicPartition, i64)]) -> Vec<pb::TopicOffsetCommit> {
    let mut by_topic: BTreeMap<&str, BTreeMap<u32, i64>> = BTreeMap::new();
    for (tp, offset) in offsets {
        by_topic
            .entry(&tp.topic)
            .or_default()
            .insert(tp.partition, *offset);
    }
    by_topic
        .into_iter()
        .map(|(topic, partitions)| pb::TopicOffsetCommit {
            topic: topic.to_owned(),
            partitions: partitions
                .into_iter()
                .map(|(partition, offset)| pb::PartitionOffsetCommit {
                    partition,
                    offset,
                    metadata: String::new(),
                })
                .collect(),
        })
        .collect()
}
