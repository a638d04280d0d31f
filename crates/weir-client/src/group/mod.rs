//! [`GroupConsumer`]: a member of a consumer group. The broker assigns it partitions of
//! the topics it subscribes to, it reads them, and it commits how far it got, so that
//! whoever reads a partition next continues from there.
//!
//! # How it works
//!
//! The broker computes every assignment (`weir.v1.Groups`, the protocol described in
//! `proto/weir/v1/groups.proto`, Kafka's KIP-848). A member:
//!
//! - joins with its subscription (`subscribe` or `subscribe_regex`; a regex also picks up
//!   topics created later) and then heartbeats from a background task, every
//!   `heartbeat_interval_ms` the broker asks for, reporting the partitions it holds;
//! - reads its partitions with a [`Consumer`] (one `Consume` stream per partition,
//!   prefetched); [`GroupConsumer::poll`] returns records of held, non-paused
//!   partitions only;
//! - commits positions (the offset after the last record `poll` returned) with its member
//!   id and epoch, from one committer task that keeps commits in order.
//!
//! The heartbeat task has its own connection: the consume streams may fill their
//! connection's HTTP/2 window while the application is busy, and a heartbeat stuck
//! behind them would let the session time out.
//!
//! # Rebalances
//!
//! When a heartbeat answer no longer lists a partition the member holds, its revocation
//! **starts at once**: from that moment `poll` returns no record of it, not even a poll
//! already waiting. It **finishes in `poll`** (at once if a poll is waiting, otherwise
//! in the next one, as in Kafka's consumer), on the application's task: the listener's
//! [`on_revoked`](RebalanceListener::on_revoked) runs, the partition's position is
//! committed if auto commit is on, its stream stops, and a heartbeat without it
//! releases it to the next owner. So call `poll` regularly: a revoked partition is held
//! until then, and its next owner waits. New partitions are positioned at the group's
//! committed offset, or per [`GroupConsumerConfig::auto_offset_reset`] where there is
//! none, before [`on_assigned`](RebalanceListener::on_assigned) runs and before any of
//! their records is returned.
//!
//! If the broker answers `FAILED_PRECONDITION` (the member was removed after a session
//! timeout, or its epoch is fenced), every partition is **lost**: dropped without
//! committing anything ([`on_lost`](RebalanceListener::on_lost)), because others may
//! already read them, and the member joins again as a new one. Unreachable brokers are
//! retried with backoff.
//!
//! Callbacks are a [`RebalanceListener`], called from `poll` and `close` on the
//! application's task, never concurrently with them; they cannot use the consumer (use
//! [`GroupConsumer::unpositioned`] and [`GroupConsumer::seek`] after `poll` to position
//! partitions yourself).
//!
//! # Delivery: at least once
//!
//! Calling `poll` again says the records the previous polls returned are processed. A
//! position is committed only then: by auto commit (every
//! [`auto_commit_interval`](GroupConsumerConfig::auto_commit_interval), 5 s by default,
//! at the start of a `poll`), when a revoked partition is released, by `close`, or when
//! the application calls [`commit_sync`](GroupConsumer::commit_sync) /
//! [`commit_async`](GroupConsumer::commit_async) (which commit everything returned so
//! far: call them after processing). So a committed offset never passes a record the
//! application has not processed, and after a crash the next owner of a partition
//! starts at its last committed offset: records processed after that commit are
//! delivered again, none is skipped. Within a partition records come in offset order.
//! Commit after processing (and make processing idempotent) to narrow the repeats.
//!
//! # Limits
//!
//! Memory is bounded: the record prefetch of the inner [`Consumer`]
//! (`prefetch_messages`), at most [`COMMIT_QUEUE_DEPTH`] queued commits (`commit_async`
//! waits for room), one heartbeat in flight.
//!
//! `poll` may be cancelled (dropped in a `select!`) without losing records: a record
//! counts as returned, and moves the position, only when `poll` returns it. A rebalance
//! step it was in the middle of is finished by the next `poll` or `close`.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use weir_client::{GroupConsumer, GroupConsumerConfig};
//!
//! # async fn example() -> Result<(), weir_client::ClientError> {
//! let mut consumer = GroupConsumer::connect(GroupConsumerConfig {
//!     group_id: "billing".to_owned(),
//!     ..GroupConsumerConfig::default()
//! })
//! .await?;
//! consumer.subscribe(["orders", "refunds"])?;
//! for _ in 0..100 {
//!     for record in consumer.poll(500, Duration::from_millis(200)).await? {
//!         println!("{}/{} @ {}", record.topic, record.partition, record.offset);
//!     }
//!     // Auto commit covers what the previous polls returned; commit_sync() here would
//!     // commit this batch now.
//! }
//! consumer.close().await?; // commits, and leaves the group at once
//! # Ok(())
//! # }
//! ```

mod assignment;
pub(crate) mod commit;
pub(crate) mod heartbeat;
pub(crate) mod link;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weir_proto::v1 as pb;

use self::assignment::{Event, attached, fetch_offsets};
use self::commit::CommitJob;
pub use self::commit::{COMMIT_QUEUE_DEPTH, COMMIT_TIMEOUT};
use self::heartbeat::{Membership, Shared, Subscription};
pub(crate) use self::link::CoordinatorLink;
pub(crate) use self::link::MAX_COORDINATOR_RETRY_BACKOFF;
use crate::admin::OffsetQuery;
use crate::connection::{ClientTls, ConnectOptions, DEFAULT_BROKER, Timeouts};
use crate::consumer::reconnect_backoff as backoff;
use crate::consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, DEFAULT_MAX_BYTES_PER_MESSAGE,
    DEFAULT_PREFETCH_MESSAGES, DEFAULT_RECONNECT_BACKOFF, IsolationLevel, OffsetReset, SeekTo,
};
use crate::error::ClientError;

/// Default interval of auto commits (Kafka's `auto.commit.interval.ms`).
pub const DEFAULT_AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// Default client id, shown by `DescribeGroup`.
pub const DEFAULT_CLIENT_ID: &str = "weir-client";
/// Longest `close` waits for the broker to acknowledge that the member left; after it,
/// the session timeout removes the member.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest group id the broker accepts, in bytes.
pub const MAX_GROUP_ID_LEN: usize = 249;

/// A topic's partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: u32,
}

impl TopicPartition {
    /// `topic`'s partition `partition`.
    pub fn new(topic: impl Into<Arc<str>>, partition: u32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// Who consumed the offsets a [`TransactionalProducer`](crate::TransactionalProducer)
/// commits (Kafka's `ConsumerGroupMetadata`), from [`GroupConsumer::group_metadata`]: the
/// group's coordinator refuses offsets from a member that is no longer current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The member's id (empty: not checked, as for a consumer outside the group).
    pub member_id: String,
    /// The member's epoch.
    pub member_epoch: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Group consumer settings.
#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    /// Bootstrap broker addresses, `host:port` or `http://host:port` (an entry may be a
    /// comma-separated list); the first reachable is used, and records are read from
    /// each partition's leader.
    pub brokers: Vec<String>,
    /// The group: any non-empty string of at most 249 bytes.
    pub group_id: String,
    /// A name for this client, shown by `DescribeGroup` (`weir group describe`).
    pub client_id: String,
    /// Where a partition the group has no committed offset for starts: the log start
    /// (the default), the high watermark, or nowhere ([`OffsetReset::None`]: `poll`
    /// fails naming the partition until it is [`seek`](GroupConsumer::seek)ed). Also what
    /// a committed offset that fell out of the log (retention) does.
    pub auto_offset_reset: OffsetReset,
    /// Commit positions automatically: every `auto_commit_interval` (at the start of a
    /// `poll`, for records earlier polls returned), when a partition is revoked, and on
    /// `close`. On by default.
    pub auto_commit: bool,
    /// See `auto_commit`.
    pub auto_commit_interval: Duration,
    /// Session timeout to ask the broker for (clamped to its limits); `None` takes the
    /// broker's default. A member silent this long is removed and its partitions move.
    pub session_timeout: Option<Duration>,
    /// Assignor to ask for: `uniform` (the broker's default), `range` or `round-robin`.
    pub assignor: Option<String>,
    /// Most bytes per message on a partition's stream (0: the broker's default).
    pub max_bytes_per_message: u32,
    /// Messages decoded ahead of `poll`, over all partitions.
    pub prefetch_messages: usize,
    /// First wait before a retry (streams, heartbeats, commits); doubles per failure up
    /// to 5 s.
    pub reconnect_backoff: Duration,
    /// How long connecting to a broker and each request may take.
    pub timeouts: Timeouts,
    /// TLS to the brokers (`None`: plaintext); see [`crate::connection`].
    pub tls: Option<ClientTls>,
    /// Which records are read (see [`IsolationLevel`]). A group that commits offsets of
    /// a read committed consumer never commits past an open transaction.
    pub isolation: IsolationLevel,
}

impl Default for GroupConsumerConfig {
    fn default() -> GroupConsumerConfig {
        GroupConsumerConfig {
            brokers: vec![DEFAULT_BROKER.to_owned()],
            group_id: String::new(),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            auto_offset_reset: OffsetReset::Earliest,
            auto_commit: true,
            auto_commit_interval: DEFAULT_AUTO_COMMIT_INTERVAL,
            session_timeout: None,
            assignor: None,
            max_bytes_per_message: DEFAULT_MAX_BYTES_PER_MESSAGE,
            prefetch_messages: DEFAULT_PREFETCH_MESSAGES,
            reconnect_backoff: DEFAULT_RECONNECT_BACKOFF,
            timeouts: Timeouts::default(),
            tls: None,
            isolation: IsolationLevel::ReadUncommitted,
        }
    }
}

/// What a [`RebalanceListener`] is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebalance {
    /// The member's id (for a loss: the id it had).
    pub member_id: String,
    /// The member's epoch when the change was handled (for a loss: the epoch it had).
    pub member_epoch: i32,
    /// The partitions concerned, sorted.
    pub partitions: Vec<TopicPartition>,
}

/// Told when partitions come and go. Every method runs inside `poll` or `close`, on the
/// application's task; keep them short.
pub trait RebalanceListener: Send + Sync {
    /// The partitions are the member's now, positioned, and no record of them has been
    /// returned yet.
    fn on_assigned(&self, rebalance: &Rebalance) {
        let _ = rebalance;
    }

    /// The partitions are being taken away (or the member is closing): no record of them
    /// is returned any more. Runs before their positions are committed (with auto
    /// commit) and before they are released.
    fn on_revoked(&self, rebalance: &Rebalance) {
        let _ = rebalance;
    }

    /// The member lost the partitions (removed from the group, or fenced): others may
    /// already read them, and nothing was committed. By default, as in Kafka, this calls
    /// [`on_revoked`](Self::on_revoked).
    fn on_lost(&self, rebalance: &Rebalance) {
        self.on_revoked(rebalance);
    }
}

/// A partition's committed offset in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The partition.
    pub partition: TopicPartition,
    /// The committed offset (the next record to read); `None` if the group has none.
    pub offset: Option<i64>,
    /// Metadata given with the commit.
    pub metadata: String,
    /// When it was committed, ms since the Unix epoch; `None` if never.
    pub commit_timestamp_ms: Option<i64>,
}

/// The outcome of [`GroupConsumer::commit_async`]: a future of the commit's result.
/// Dropping it does not cancel the commit.
#[derive(Debug)]
pub struct CommitHandle {
    done: oneshot::Receiver<Result<(), ClientError>>,
}

impl CommitHandle {
    fn ready(result: Result<(), ClientError>) -> CommitHandle {
        let (tx, done) = oneshot::channel();
        let _ = tx.send(result);
        CommitHandle { done }
    }
}

impl Future for CommitHandle {
    type Output = Result<(), ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.done)
            .poll(cx)
            .map(|result| result.unwrap_or(Err(ClientError::Closed)))
    }
}

/// A partition the member holds.
#[derive(Debug)]
struct Held {
    /// The offset after the last record `poll` returned (or where reading starts);
    /// `None`: no committed offset and [`OffsetReset::None`], until `seek`.
    position: Option<i64>,
    paused: bool,
    /// `on_revoked` already ran for it (a cancelled poll did not finish the revocation).
    revoke_notified: bool,
}

/// A member of a consumer group. See the [module docs](self).
pub struct GroupConsumer {
    config: GroupConsumerConfig,
    inner: Consumer,
    coordinator: Arc<CoordinatorLink>,
    shared: Arc<Shared>,
    heartbeat: Option<JoinHandle<()>>,
    commits: Option<mpsc::Sender<CommitJob>>,
    committer: Option<JoinHandle<()>>,
    listener: Option<Arc<dyn RebalanceListener>>,
    held: BTreeMap<TopicPartition, Held>,
    /// The membership the held partitions belong to.
    member: Membership,
    /// The assignment version last reconciled (whether or not it all worked).
    attempted_version: Option<u64>,
    /// When to try again to take partitions whose positions could not be looked up.
    retry_at: Option<Instant>,
    retry_failures: u32,
    last_auto_commit: Instant,
    last_auto_committed: Vec<(TopicPartition, i64)>,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("config", &self.config)
            .field("member", &self.member)
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl Drop for GroupConsumer {
    /// Without `close`, the member just stops, as if the process crashed: no commit, no
    /// leave; the broker removes it after its session timeout.
    fn drop(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        if let Some(task) = self.committer.take() {
            task.abort();
        }
    }
}

/// Checks a group id against the broker's rule (any non-empty string of at most
/// [`MAX_GROUP_ID_LEN`] bytes, as Kafka takes any string), so a bad one fails before
/// connecting.
pub fn check_group_id(group_id: &str) -> Result<(), ClientError> {
    if group_id.is_empty() || group_id.len() > MAX_GROUP_ID_LEN {
        return Err(ClientError::Config(format!(
            "a group id has 1 to {MAX_GROUP_ID_LEN} bytes, not {}",
            group_id.len()
        )));
    }
    Ok(())
}

impl GroupConsumer {
    /// Checks `config` and connects to the first reachable broker (twice: the records'
    /// connection and the heartbeat's). Nothing is joined until `subscribe`.
    pub async fn connect(config: GroupConsumerConfig) -> Result<GroupConsumer, ClientError> {
        check_group_id(&config.group_id)?;
        let session_timeout_ms = match config.session_timeout {
            None => 0,
            Some(timeout) => match u32::try_from(timeout.as_millis()) {
                Ok(ms) if ms > 0 => ms,
                _ => {
                    return Err(ClientError::Config(format!(
                        "session_timeout must be 1 ms to {} ms, not {timeout:?}",
                        u32::MAX
                    )));
                }
            },
        };
        let inner = Consumer::connect(ConsumerConfig {
            brokers: config.brokers.clone(),
            max_bytes_per_message: config.max_bytes_per_message,
            prefetch_messages: config.prefetch_messages,
            auto_offset_reset: config.auto_offset_reset,
            reconnect_backoff: config.reconnect_backoff,
            timeouts: config.timeouts,
            tls: config.tls.clone(),
            isolation: config.isolation,
        })
        .await?;
        let coordinator = Arc::new(CoordinatorLink::new(
            &config.group_id,
            pb::CoordinatorType::Group,
            &config.brokers,
            ConnectOptions {
                timeouts: config.timeouts,
                tls: config.tls.clone(),
            },
        ));
        // Found now if it can be: no reachable broker, or a refusal for good (a bad group
        // id), fails here; a coordinator not available yet (a cluster still forming, an
        // election) is looked up again by the heartbeat task.
        match coordinator.client().await {
            Err(error @ ClientError::Connect { .. }) => return Err(error),
            Err(error) if !error.is_retriable() => return Err(error),
            _ => {}
        }
        let shared = Arc::new(Shared::new(
            config.group_id.clone(),
            config.client_id.clone(),
            config.assignor.clone().unwrap_or_default(),
            session_timeout_ms,
        ));
        let (commits, jobs) = mpsc::channel(COMMIT_QUEUE_DEPTH);
        let committer = tokio::spawn(commit::run(
            jobs,
            coordinator.clone(),
            shared.clone(),
            config.reconnect_backoff,
        ));
        Ok(GroupConsumer {
            config,
            inner,
            coordinator,
            shared,
            heartbeat: None,
            commits: Some(commits),
            committer: Some(committer),
            listener: None,
            held: BTreeMap::new(),
            member: Membership::default(),
            attempted_version: None,
            retry_at: None,
            retry_failures: 0,
            last_auto_commit: Instant::now(),
            last_auto_committed: Vec::new(),
        })
    }

    /// Sets who is told of assignments, revocations and losses (replacing any before).
    pub fn set_rebalance_listener(&mut self, listener: Arc<dyn RebalanceListener>) {
        self.listener = Some(listener);
    }

    /// Subscribes to topics by name (they need not exist yet), replacing the previous
    /// subscription. The first call joins the group.
    pub fn subscribe<I, S>(&mut self, topics: I) -> Result<(), ClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        topics.sort();
        topics.dedup();
        if topics.is_empty() || topics.iter().any(String::is_empty) {
            return Err(ClientError::Config(
                "subscribe to at least one topic, by a non-empty name".to_owned(),
            ));
        }
        self.set_subscription(Subscription::Topics(topics));
        Ok(())
    }

    /// Subscribes to every topic whose whole name matches `pattern` (Rust regex syntax,
    /// checked by the broker: a bad one makes `poll` fail with
    /// [`ClientError::InvalidArgument`]), including topics created later. Replaces the
    /// previous subscription; the first call joins the group.
    pub fn subscribe_regex(&mut self, pattern: &str) -> Result<(), ClientError> {
        if pattern.is_empty() {
            return Err(ClientError::Config("the topic regex is empty".to_owned()));
        }
        self.set_subscription(Subscription::Regex(pattern.to_owned()));
        Ok(())
    }

    fn set_subscription(&mut self, subscription: Subscription) {
        {
            let mut state = self.shared.state();
            state.subscription = Some(subscription);
            state.subscription_version += 1;
        }
        if self.heartbeat.is_none() {
            self.heartbeat = Some(tokio::spawn(heartbeat::run(
                self.shared.clone(),
                self.coordinator.clone(),
                self.config.reconnect_backoff,
            )));
        } else {
            self.shared.heartbeat_now.notify_one();
        }
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.config.group_id
    }

    /// The member id the broker gave (empty until joined).
    pub fn member_id(&self) -> String {
        self.shared.membership.borrow().member_id.clone()
    }

    /// The member's epoch (0 until joined).
    pub fn member_epoch(&self) -> i32 {
        self.shared.membership.borrow().member_epoch
    }

    /// The group, member id and epoch, for offsets committed in a transaction
    /// ([`TransactionalProducer::send_offsets_to_transaction`](crate::TransactionalProducer::send_offsets_to_transaction)).
    pub fn group_metadata(&self) -> GroupMetadata {
        let membership = self.shared.membership.borrow();
        GroupMetadata {
            group_id: self.config.group_id.clone(),
            member_id: membership.member_id.clone(),
            member_epoch: membership.member_epoch,
        }
    }

    /// The heartbeat interval of the broker's last answer (shorter than the group's
    /// usual one while a partition is being handed over; a default until joined).
    pub fn heartbeat_interval(&self) -> Duration {
        self.shared.state().heartbeat_interval
    }

    /// The session timeout in force for this member (zero until joined): the broker
    /// removes the member after this long without a heartbeat.
    pub fn session_timeout(&self) -> Duration {
        self.shared.state().session_timeout
    }

    /// The partitions the member holds now, sorted (including paused ones and ones
    /// whose revocation has started and will finish in the next `poll`).
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.held.keys().cloned().collect()
    }

    /// The held partitions that are paused, sorted.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.held
            .iter()
            .filter(|(_, h)| h.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Held partitions without a position: the group has no committed offset for them
    /// and `auto_offset_reset` is [`OffsetReset::None`]. `poll` fails until each is
    /// [`seek`](Self::seek)ed.
    pub fn unpositioned(&self) -> Vec<TopicPartition> {
        self.held
            .iter()
            .filter(|(_, h)| h.position.is_none())
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Every held partition's position, sorted: what a commit would commit (and what a
    /// consume-transform-produce loop sends to its transaction).
    pub fn positions(&self) -> Vec<(TopicPartition, i64)> {
        self.positions_of(|_| true)
    }

    /// The offset of the next record `poll` returns from a held partition (what a
    /// commit would commit); `None` if it is not held or has no position.
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.held
            .get(&TopicPartition::new(topic, partition))
            .and_then(|h| h.position)
    }

    /// Moves a held partition's position; the next `poll` returns records from there and
    /// the next commit commits it. [`ClientError::InvalidArgument`] if the partition is
    /// not held.
    pub async fn seek(
        &mut self,
        topic: &str,
        partition: u32,
        to: SeekTo,
    ) -> Result<(), ClientError> {
        let tp = TopicPartition::new(topic, partition);
        if !self.held.contains_key(&tp) {
            return Err(not_held(&[tp]));
        }
        let offset = match to {
            SeekTo::Offset(offset) => offset,
            SeekTo::Beginning => self.lookup(&tp, OffsetQuery::Earliest).await?,
            SeekTo::End => self.lookup(&tp, OffsetQuery::Latest).await?,
            SeekTo::Timestamp(ms) => self.lookup(&tp, OffsetQuery::Timestamp(ms)).await?,
        };
        if let Some(held) = self.held.get_mut(&tp) {
            held.position = Some(offset);
        }
        Ok(())
    }

    /// Stops returning records of these held partitions (their positions stay, their
    /// streams stop) until [`resume`](Self::resume). The member keeps them.
    pub fn pause(&mut self, partitions: &[(&str, u32)]) -> Result<(), ClientError> {
        self.set_paused(partitions, true)
    }

    /// Returns records of these paused partitions again, from their positions.
    pub fn resume(&mut self, partitions: &[(&str, u32)]) -> Result<(), ClientError> {
        self.set_paused(partitions, false)
    }

    fn set_paused(&mut self, partitions: &[(&str, u32)], paused: bool) -> Result<(), ClientError> {
        let partitions: Vec<TopicPartition> = partitions
            .iter()
            .map(|&(topic, partition)| TopicPartition::new(topic, partition))
            .collect();
        let missing: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| !self.held.contains_key(*tp))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(not_held(&missing));
        }
        for tp in &partitions {
            if let Some(held) = self.held.get_mut(tp) {
                held.paused = paused;
            }
        }
        // Stop the streams of paused partitions now rather than at the next poll.
        if paused {
            self.inner.assign(&attached(&self.held));
        }
        Ok(())
    }

    /// The group's committed offsets of these partitions (held or not), in the order
    /// asked.
    pub async fn committed(
        &self,
        partitions: &[(&str, u32)],
    ) -> Result<Vec<CommittedOffset>, ClientError> {
        let wanted: Vec<TopicPartition> = partitions
            .iter()
            .map(|&(topic, partition)| TopicPartition::new(topic, partition))
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let found = fetch_offsets(
            &self.coordinator,
            &self.config.group_id,
            &wanted.iter().cloned().collect(),
        )
        .await?;
        let mut by_partition: HashMap<TopicPartition, pb::CommittedOffset> = found
            .into_iter()
            .map(|c| (TopicPartition::new(c.topic.as_str(), c.partition), c))
            .collect();
        Ok(wanted
            .into_iter()
            .map(|tp| match by_partition.remove(&tp) {
                Some(c) => CommittedOffset {
                    partition: tp,
                    offset: (c.offset >= 0).then_some(c.offset),
                    metadata: c.metadata,
                    commit_timestamp_ms: (c.commit_timestamp_ms >= 0)
                        .then_some(c.commit_timestamp_ms),
                },
                None => CommittedOffset {
                    partition: tp,
                    offset: None,
                    metadata: String::new(),
                    commit_timestamp_ms: None,
                },
            })
            .collect())
    }

    /// Returns up to `max_records` records of held, non-paused partitions, waiting up to
    /// `timeout` for the first one; an empty vector means nothing arrived in time.
    /// Records of one partition come in offset order, and positions move past every
    /// record returned. Also finishes rebalances, and auto-commits what earlier polls
    /// returned (see the [module docs](self)).
    ///
    /// Fails with [`ClientError::Config`] before `subscribe`; with the broker's error if
    /// it refused the member for good (a bad group id or regex), if a committed-offset
    /// lookup or a partition's stream failed for good; with
    /// [`ClientError::InvalidArgument`] naming the partitions that have no position
    /// ([`OffsetReset::None`]; see [`unpositioned`](Self::unpositioned)).
    pub async fn poll(
        &mut self,
        max_records: usize,
        timeout: Duration,
    ) -> Result<Vec<ConsumerRecord>, ClientError> {
        if self.heartbeat.is_none() {
            return Err(ClientError::Config(
                "subscribe to topics before polling".to_owned(),
            ));
        }
        let deadline = Instant::now() + timeout;
        let shared = self.shared.clone();
        loop {
            self.reconcile().await?;
            self.maybe_auto_commit();
            let unpositioned = self.unpositioned();
            if !unpositioned.is_empty() {
                return Err(ClientError::InvalidArgument(format!(
                    "group {} has no committed offset for {} and auto_offset_reset is none: \
                     seek these partitions, or reset the group's offsets",
                    self.config.group_id,
                    list(&unpositioned)
                )));
            }
            self.attach().await?;
            if max_records == 0 {
                return Ok(Vec::new());
            }
            let now = Instant::now();
            // Wake in time to retry partitions that could not be taken yet.
            let until = self.retry_at.map_or(deadline, |at| at.min(deadline));
            let changed = shared.changed.notified();
            let records = tokio::select! {
                biased;
                () = changed => None,
                records = self.inner.poll(max_records, until.saturating_duration_since(now)) => Some(records?),
            };
            let records = match records {
                Some(records) => self.keep_held(records),
                None => Vec::new(), // the assignment changed: reconcile first
            };
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Commits the positions of every held partition (everything `poll` returned so
    /// far) and waits for the broker to make them durable.
    pub async fn commit_sync(&mut self) -> Result<(), ClientError> {
        self.commit_async().await.await
    }

    /// Queues a commit of the positions of every held partition and returns a handle to
    /// its outcome. Commits are sent one at a time, in order; this waits only while
    /// [`COMMIT_QUEUE_DEPTH`] commits are already queued.
    pub async fn commit_async(&mut self) -> CommitHandle {
        let offsets = self.positions_of(|_| true);
        if offsets.is_empty() {
            return CommitHandle::ready(Ok(()));
        }
        let (tx, done) = oneshot::channel();
        let job = CommitJob {
            offsets,
            incarnation: self.member.incarnation,
            done: Some(tx),
        };
        match &self.commits {
            Some(commits) if commits.send(job).await.is_ok() => CommitHandle { done },
            _ => CommitHandle::ready(Err(ClientError::Closed)),
        }
    }

    /// Commits (with auto commit), releases every partition and leaves the group at
    /// once, so its partitions move to the other members without waiting for the
    /// session timeout. Returns the commit's failure, if any, after leaving anyway.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let mut result = Ok(());
        if let Some(mut heartbeat) = self.heartbeat.take() {
            let held: Vec<TopicPartition> = self.held.keys().cloned().collect();
            let current = self.shared.state().membership.incarnation == self.member.incarnation;
            if current {
                let unnotified: Vec<TopicPartition> = self
                    .held
                    .iter()
                    .filter(|(_, h)| !h.revoke_notified)
                    .map(|(tp, _)| tp.clone())
                    .collect();
                self.tell(Event::Revoked, unnotified);
                if self.config.auto_commit {
                    result = self.commit_wait(self.positions_of(|_| true)).await;
                }
            } else {
                self.tell(Event::Lost, held);
            }
            self.held.clear();
            self.inner.assign(&[]);
            {
                let mut state = self.shared.state();
                state.owned.clear();
                state.leaving = true;
            }
            self.shared.heartbeat_now.notify_one();
            if tokio::time::timeout(LEAVE_TIMEOUT, &mut heartbeat)
                .await
                .is_err()
            {
                heartbeat.abort();
            }
        }
        self.commits = None; // the committer ends after what is queued
        if let Some(mut committer) = self.committer.take()
            && tokio::time::timeout(COMMIT_TIMEOUT, &mut committer)
                .await
                .is_err()
        {
            committer.abort();
        }
        result
    }

    /// Queues an auto commit when one is due and positions moved since the last.
    fn maybe_auto_commit(&mut self) {
        if !self.config.auto_commit
            || self.last_auto_commit.elapsed() < self.config.auto_commit_interval
        {
            return;
        }
        self.last_auto_commit = Instant::now();
        let offsets = self.positions_of(|_| true);
        if offsets.is_empty() || offsets == self.last_auto_committed {
            return;
        }
        let job = CommitJob {
            offsets: offsets.clone(),
            incarnation: self.member.incarnation,
            done: None,
        };
        // A full queue means commits are slow already; the next poll tries again.
        if let Some(commits) = &self.commits
            && commits.try_send(job).is_ok()
        {
            self.last_auto_committed = offsets;
        }
    }

    /// Commits `offsets` through the committer and waits for the outcome.
    async fn commit_wait(&self, offsets: Vec<(TopicPartition, i64)>) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let (tx, done) = oneshot::channel();
        let job = CommitJob {
            offsets,
            incarnation: self.member.incarnation,
            done: Some(tx),
        };
        let commits = self.commits.as_ref().ok_or(ClientError::Closed)?;
        commits.send(job).await.map_err(|_| ClientError::Closed)?;
        done.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Positions of held partitions chosen by `wanted`, sorted.
    fn positions_of(&self, wanted: impl Fn(&TopicPartition) -> bool) -> Vec<(TopicPartition, i64)> {
        self.held
            .iter()
            .filter(|(tp, _)| wanted(tp))
            .filter_map(|(tp, h)| Some((tp.clone(), h.position?)))
            .collect()
    }

    async fn lookup(
        &mut self,
        tp: &TopicPartition,
        query: OffsetQuery,
    ) -> Result<i64, ClientError> {
        let found = self
            .inner
            .cluster()
            .list_offsets(&tp.topic, &[(tp.partition, query)], self.config.isolation)
            .await?;
        found
            .first()
            .map(|o| o.offset)
            .ok_or_else(|| ClientError::Rpc {
                code: tonic::Code::Internal,
                message: format!("the broker's answer has no offset for {tp}"),
            })
    }
}

fn not_held(partitions: &[TopicPartition]) -> ClientError {
    ClientError::InvalidArgument(format!(
        "{} not assigned to this member",
        if partitions.len() == 1 {
            format!("{} is", partitions[0])
        } else {
            format!("{} are", list(partitions))
        }
    ))
}

/// `t/0, t/1`.
fn list(partitions: &[TopicPartition]) -> String {
    partitions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::heartbeat::topic_partitions;
    use super::*;

    #[test]
    fn group_ids_follow_the_brokers_rule_any_non_empty_string() {
        for good in [
            "g",
            "billing.v2",
            "roundrobin,range",
            "has space",
            "slash/",
            "é",
            &"x".repeat(249),
        ] {
            assert!(check_group_id(good).is_ok(), "{good}");
        }
        for bad in ["", &"x".repeat(250), &"é".repeat(125)] {
            assert!(
                matches!(check_group_id(bad), Err(ClientError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn owned_partitions_are_listed_by_topic_in_order() {
        let set: BTreeSet<TopicPartition> = [("b", 1), ("a", 2), ("b", 0), ("a", 0)]
            .into_iter()
            .map(|(t, p)| TopicPartition::new(t, p))
            .collect();
        let listed = topic_partitions(&set);
        assert_eq!(listed.len(), 2);
        assert_eq!(
            (listed[0].topic.as_str(), &listed[0].partitions[..]),
            ("a", &[0, 2][..])
        );
        assert_eq!(
            (listed[1].topic.as_str(), &listed[1].partitions[..]),
            ("b", &[0, 1][..])
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let initial = Duration::from_millis(100);
        assert_eq!(backoff(initial, 1), initial);
        assert_eq!(backoff(initial, 3), Duration::from_millis(400));
        assert_eq!(backoff(initial, 40), crate::consumer::MAX_RECONNECT_BACKOFF);
    }

    #[tokio::test]
    async fn a_commit_handle_reports_its_outcome() {
        assert!(CommitHandle::ready(Ok(())).await.is_ok());
        let (tx, done) = oneshot::channel::<Result<(), ClientError>>();
        drop(tx);
        assert!(matches!(
            CommitHandle { done }.await,
            Err(ClientError::Closed)
        ));
    }
}
