//! The member's background heartbeat task and the state it shares with the
//! [`GroupConsumer`](super::GroupConsumer): membership (id, epoch, incarnation), the
//! assignment the broker last sent, and the partitions the consumer still holds.
//!
//! The task only talks to the broker and records what it heard. It never commits and
//! never calls the application's listener: revocations are finished by the consumer, on
//! the application's task (see the module docs of [`group`](super)). What the task does
//! on its own:
//!
//! - sends a heartbeat every `heartbeat_interval_ms` of the last answer, or at once when
//!   the consumer released or took partitions, changed its subscription, or is leaving;
//! - on `FAILED_PRECONDITION` (unknown or fenced member) forgets the membership and every
//!   owned partition (bumping the incarnation, so the consumer drops them as lost and no
//!   commit of the old membership goes out) and joins again with epoch 0;
//! - retries `UNAVAILABLE` and other retriable failures with a doubling backoff;
//! - stops on any other error, which the next `poll` reports.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::link::{CoordinatorLink, MAX_COORDINATOR_RETRY_BACKOFF};
use tokio::sync::{Notify, watch};
use weir_proto::v1 as pb;

use super::TopicPartition;
use crate::consumer::reconnect_backoff as backoff;
use crate::error::ClientError;

/// Longest wait for a heartbeat answer before the attempt counts as failed (and is
/// retried). Beyond the session timeout the broker has removed the member anyway.
pub(super) const HEARTBEAT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat interval used until the broker names one, and if it answers 0.
pub(super) const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// Shortest heartbeat interval honoured, whatever the broker says.
pub(super) const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(10);
/// How many times a leave heartbeat is tried before the member gives up and lets the
/// session timeout remove it.
const LEAVE_ATTEMPTS: u32 = 3;

/// What the member subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Subscription {
    Topics(Vec<String>),
    Regex(String),
}

/// Who the member is in the group. `incarnation` counts joins: it changes when the
/// broker forgot or fenced the member, so anything read under an older incarnation
/// (positions, partitions) must not be committed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Membership {
    pub member_id: String,
    pub member_epoch: i32,
    pub incarnation: u64,
}

/// Everything the task and the consumer share, behind one mutex that is never held
/// across an await.
#[derive(Debug)]
pub(super) struct MemberState {
    pub membership: Membership,
    pub subscription: Option<Subscription>,
    /// Bumped by every `subscribe`; the heartbeat carries the subscription until the
    /// broker acknowledged this version.
    pub subscription_version: u64,
    pub sent_subscription_version: u64,
    /// The partitions of the broker's last answer (this incarnation).
    pub target: HashSet<TopicPartition>,
    /// Bumped when `target` changes.
    pub target_version: u64,
    /// The heartbeat's `owned_partitions`: every partition of an answer until the
    /// consumer released it (or never took it, and it was revoked again).
    pub owned: BTreeSet<TopicPartition>,
    pub heartbeat_interval: Duration,
    pub session_timeout: Duration,
    pub group_epoch: i32,
    /// Whether an answer arrived in this incarnation.
    pub joined: bool,
    /// Why the task stopped for good; every later poll fails with it.
    pub fatal: Option<ClientError>,
    /// Set by `close`: the task sends a leave heartbeat and ends.
    pub leaving: bool,
}

/// The state plus the wake-ups between the task, the consumer and the committer.
#[derive(Debug)]
pub(super) struct Shared {
    pub group_id: String,
    pub client_id: String,
    pub assignor: String,
    pub session_timeout_ms: u32,
    state: Mutex<MemberState>,
    /// Consumer or committer -> task: heartbeat now (partitions released or taken, a new
    /// subscription, leaving, a commit refused for a stale epoch).
    pub heartbeat_now: Notify,
    /// Task -> consumer: the assignment or the membership changed, or the task failed.
    pub changed: Notify,
    /// The membership as the committer reads it; changes wake commits waiting for a new
    /// epoch.
    pub membership: watch::Sender<Membership>,
}

impl Shared {
    pub(super) fn new(
        group_id: String,
        client_id: String,
        assignor: String,
        session_timeout_ms: u32,
    ) -> Shared {
        Shared {
            group_id,
            client_id,
            assignor,
            session_timeout_ms,
            state: Mutex::new(MemberState {
                membership: Membership::default(),
                subscription: None,
                subscription_version: 0,
                sent_subscription_version: 0,
                target: HashSet::new(),
                target_version: 0,
                owned: BTreeSet::new(),
                heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
                session_timeout: Duration::ZERO,
                group_epoch: 0,
                joined: false,
                fatal: None,
                leaving: false,
            }),
            heartbeat_now: Notify::new(),
            changed: Notify::new(),
            membership: watch::Sender::new(Membership::default()),
        }
    }

    /// The state, also after a panic elsewhere (every update leaves it consistent).
    pub(super) fn state(&self) -> MutexGuard<'_, MemberState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next heartbeat, or `None` when leaving a group the member never joined.
    fn next_request(&self) -> Option<(pb::HeartbeatRequest, bool, u64)> {
        let state = self.state();
        let membership = &state.membership;
        if state.leaving {
            if membership.member_id.is_empty() {
                return None;
            }
            return Some((
                pb::HeartbeatRequest {
                    group_id: self.group_id.clone(),
                    member_id: membership.member_id.clone(),
                    member_epoch: -1,
                    client_id: self.client_id.clone(),
                    ..Default::default()
                },
                true,
                state.sent_subscription_version,
            ));
        }
        let send_subscription = membership.member_epoch == 0
            || state.sent_subscription_version != state.subscription_version;
        let (topics, topic_regex) = match (&state.subscription, send_subscription) {
            (Some(Subscription::Topics(topics)), true) => (topics.clone(), String::new()),
            (Some(Subscription::Regex(regex)), true) => (Vec::new(), regex.clone()),
            _ => (Vec::new(), String::new()),
        };
        Some((
            pb::HeartbeatRequest {
                group_id: self.group_id.clone(),
                member_id: membership.member_id.clone(),
                member_epoch: membership.member_epoch,
                client_id: self.client_id.clone(),
                topics,
                topic_regex,
                assignor: self.assignor.clone(),
                owned_partitions: topic_partitions(&state.owned),
                session_timeout_ms: self.session_timeout_ms,
            },
            false,
            state.subscription_version,
        ))
    }

    /// Records an answer; returns when to heartbeat next.
    fn apply(&self, response: pb::HeartbeatResponse, sent_subscription_version: u64) -> Duration {
        let mut state = self.state();
        state.membership.member_id = response.member_id;
        state.membership.member_epoch = response.member_epoch;
        state.sent_subscription_version = state
            .sent_subscription_version
            .max(sent_subscription_version);
        state.heartbeat_interval = match response.heartbeat_interval_ms {
            0 => DEFAULT_HEARTBEAT_INTERVAL,
            ms => Duration::from_millis(ms.into()).max(MIN_HEARTBEAT_INTERVAL),
        };
        state.session_timeout = Duration::from_millis(response.session_timeout_ms.into());
        state.group_epoch = response.group_epoch;
        let target: HashSet<TopicPartition> = response
            .assignment
            .into_iter()
            .flat_map(|t| {
                let topic: Arc<str> = Arc::from(t.topic);
                t.partitions
                    .into_iter()
                    .map(move |partition| TopicPartition {
                        topic: topic.clone(),
                        partition,
                    })
            })
            .collect();
        // A partition is the member's from the answer that gives it until a heartbeat
        // omits it (the broker releases it then): report it as owned at once, even
        // while the consumer is still positioning it, so it is never released early.
        state.owned.extend(target.iter().cloned());
        let first_answer = !state.joined;
        state.joined = true;
        if target != state.target || first_answer {
            state.target = target;
            state.target_version += 1;
            self.changed.notify_one();
        }
        let membership = state.membership.clone();
        let interval = state.heartbeat_interval;
        drop(state);
        self.membership.send_if_modified(|m| {
            let modified = *m != membership;
            *m = membership;
            modified
        });
        interval
    }

    /// The broker no longer knows this member (or fenced its epoch): every partition is
    /// lost, and the member joins again as new.
    fn fence(&self) {
        let mut state = self.state();
        state.membership.member_id.clear();
        state.membership.member_epoch = 0;
        state.membership.incarnation += 1;
        state.target.clear();
        state.target_version += 1;
        state.owned.clear();
        state.joined = false;
        let membership = state.membership.clone();
        drop(state);
        self.membership.send_replace(membership);
        self.changed.notify_one();
    }

    fn fail(&self, error: ClientError) {
        self.state().fatal = Some(error);
        self.changed.notify_one();
    }

    fn request_timeout(&self) -> Duration {
        let session = self.state().session_timeout;
        if session.is_zero() {
            HEARTBEAT_REQUEST_TIMEOUT
        } else {
            session.min(HEARTBEAT_REQUEST_TIMEOUT)
        }
    }
}

/// `owned` as the API lists partitions: by topic, ascending.
pub(crate) fn topic_partitions(partitions: &BTreeSet<TopicPartition>) -> Vec<pb::TopicPartitions> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    by_topic
        .into_iter()
        .map(|(topic, partitions)| pb::TopicPartitions {
            topic: topic.to_owned(),
            partitions,
        })
        .collect()
}

/// Runs until the member left (after `close`), or failed for good.
pub(super) async fn run(
    shared: Arc<Shared>,
    coordinator: Arc<CoordinatorLink>,
    initial_backoff: Duration,
) {
    let mut failures: u32 = 0;
    loop {
        let Some((request, leaving, subscription_version)) = shared.next_request() else {
            return;
        };
        let timeout = shared.request_timeout();
        let mut request = tonic::Request::new(request);
        request.set_timeout(timeout);
        let call = async {
            let mut client = coordinator.client().await?;
            client
                .heartbeat(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(ClientError::from)
        };
        let result = match tokio::time::timeout(timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::DeadlineExceeded(format!(
                "no heartbeat answer within {timeout:?}"
            ))),
        };
        if let Err(error) = &result {
            // The coordinator moved or is gone: find it again before the next try.
            coordinator.failed(error);
        }
        let wait = match result {
            Ok(response) => {
                failures = 0;
                if leaving {
                    tracing::debug!(group = %shared.group_id, "left the group");
                    return;
                }
                shared.apply(response, subscription_version)
            }
            Err(ClientError::FailedPrecondition(message)) => {
                if leaving {
                    return; // already gone
                }
                tracing::warn!(group = %shared.group_id, %message, "the broker fenced this member or no longer knows it; its partitions are lost, joining again");
                shared.fence();
                // A broker that keeps refusing fresh joins is not hammered.
                failures = failures.saturating_add(1);
                if failures == 1 {
                    continue;
                }
                backoff(initial_backoff, failures - 1)
            }
            Err(error) if error.is_retriable() => {
                failures = failures.saturating_add(1);
                if leaving && failures >= LEAVE_ATTEMPTS {
                    tracing::warn!(group = %shared.group_id, %error, "could not leave the group; the broker removes the member after its session timeout");
                    return;
                }
                let wait = backoff(initial_backoff, failures).min(MAX_COORDINATOR_RETRY_BACKOFF);
                tracing::debug!(group = %shared.group_id, %error, ?wait, "heartbeat failed; retrying");
                wait
            }
            Err(error) => {
                if leaving {
                    return;
                }
                tracing::error!(group = %shared.group_id, %error, "heartbeat refused; the member stops");
                shared.fail(error);
                return;
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.heartbeat_now.notified() => {}
        }
    }
}
