//! [`Admin`]: one method per RPC of the `Admin` service, plus [`Admin::list_offsets`]
//! from the `Consumer` service and [`Admin::describe_share_group`] and
//! [`Admin::configure_share_group`] from the `Queues` service, with plain Rust types in
//! and out (users' and ACLs' in [`crate::security`]).
//!
//! Admin requests go to the bootstrap broker (the first of the list that answered);
//! group requests to the group's coordinator (a share group's for share groups); offset
//! lookups go to each partition's leader.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::connection::BrokerChannel as Channel;
use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::consumer_client::ConsumerClient;
use weir_proto::v1::groups_client::GroupsClient;
use weir_proto::v1::queues_client::QueuesClient;

use crate::cluster::Cluster;
use crate::connection::{ConnectOptions, MAX_MESSAGE_BYTES, Timeouts};
use crate::consumer::reconnect_backoff;
use crate::error::ClientError;
use crate::group::TopicPartition;
use crate::security::{AclBinding, AclFilter, QuotaEntity, ScramMechanism, UserInfo};
use crate::share::filter::HeaderCondition;

/// Items asked for per page of `ListTopics`, `ListGroups` and `DescribeGroup`'s
/// members: the broker's largest page (it clamps larger sizes), so that listing
/// everything takes as few round trips as the broker allows.
pub const LISTING_PAGE_SIZE: u32 = 1000;
/// Longest a group call (describe, delete, reset) keeps looking for the group's
/// coordinator while it moves.
pub const GROUP_ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait before such a call is tried again.
const GROUP_ADMIN_BACKOFF: Duration = Duration::from_millis(100);

fn admin_client(channel: Channel) -> AdminClient<Channel> {
    AdminClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn queues_client(channel: Channel) -> QueuesClient<Channel> {
    QueuesClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A `DescribeShareGroup` (or `ConfigureShareGroup`) answer.
fn share_group_info(d: pb::DescribeShareGroupResponse) -> ShareGroupInfo {
    ShareGroupInfo {
        group_id: d.group_id,
        lock_duration: Duration::from_millis(d.lock_duration_ms),
        delivery_count_limit: d.delivery_count_limit,
        dead_letter_topic: (!d.dead_letter_topic.is_empty()).then_some(d.dead_letter_topic),
        filter: crate::share::filter::from_proto(d.filter),
        start: d.start.and_then(crate::share::ShareStart::from_proto),
        partitions: d
            .partitions
            .into_iter()
            .map(|p| SharePartitionInfo {
                topic: p.topic,
                partition: p.partition,
                start_offset: p.start_offset,
                end_offset: p.end_offset,
                high_watermark: p.high_watermark,
                available: p.available,
                delayed: p.delayed,
                acquired: p.acquired,
                archived_pending: p.archived_pending,
                filtered_out: p.filtered_out,
                oldest_unfinished_offset: p.oldest_unfinished_offset,
                // A timestamp in the future (clock skew) is no age.
                oldest_unfinished_age: p
                    .oldest_unfinished_age_ms
                    .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            })
            .collect(),
    }
}

/// One partition's state, as `DescribeTopic` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: u32,
    /// Broker id of the leader; -1 if there is none.
    pub leader: i32,
    /// Leader epoch, bumped on every leadership change.
    pub leader_epoch: i32,
    /// Broker ids holding a copy.
    pub replicas: Vec<i32>,
    /// Broker ids in sync with the leader.
    pub isr: Vec<i32>,
    /// First offset still in the log.
    pub log_start_offset: i64,
    /// Offsets below this are visible to consumers.
    pub high_watermark: i64,
    /// Offset the next record will get.
    pub log_end_offset: i64,
    /// While a reassignment moves the partition: replicas it adds (`replicas` lists the
    /// target first, then `removing_replicas`). Empty otherwise.
    pub adding_replicas: Vec<i32>,
    /// While a reassignment moves the partition: replicas it drops once the target is
    /// in sync. Empty otherwise.
    pub removing_replicas: Vec<i32>,
    /// The moving replicas' fetch throttle in bytes per second, if one was set.
    pub reassignment_throttle_bytes_per_sec: Option<u64>,
}

impl PartitionInfo {
    /// Whether a reassignment is moving this partition.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas the partition has, or will have once its reassignment completes.
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|b| !self.removing_replicas.contains(b))
            .collect()
    }
}

/// Where one partition's replicas are to move (`Admin::reassign_partitions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMove {
    /// Partition index.
    pub partition: u32,
    /// The replicas it is to have, the preferred leader first; `None` cancels the move
    /// in progress.
    pub replicas: Option<Vec<i32>>,
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Unique id, new for each creation of a name.
    pub topic_id: String,
    /// Partitions in index order.
    pub partitions: Vec<PartitionInfo>,
    /// True for the broker's own topics.
    pub internal: bool,
}

/// One topic in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Copies of each partition.
    pub replication_factor: u32,
    /// True for the broker's own topics.
    pub internal: bool,
}

/// One configuration key of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Key, for example `retention.ms`.
    pub name: String,
    /// Value in effect.
    pub value: String,
    /// True if the value is the default (not set on the topic).
    pub is_default: bool,
    /// What the key does.
    pub documentation: String,
}

/// One broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Broker id.
    pub broker_id: i32,
    /// Host clients connect to (the address the broker advertises).
    pub host: String,
    /// gRPC port.
    pub port: u32,
    /// The broker's rack, if it was given one.
    pub rack: Option<String>,
    /// Registered but not allowed to lead or be in an ISR (it missed its session, or is
    /// catching up after a start).
    pub fenced: bool,
    /// A controller voter; false for an observer broker.
    pub voter: bool,
}

/// The cluster as `DescribeCluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Cluster id.
    pub cluster_id: String,
    /// Broker id of the active controller; -1 while none is elected.
    pub controller_id: i32,
    /// Every registered broker, fenced ones included.
    pub brokers: Vec<BrokerInfo>,
}

/// What to look up with [`Admin::list_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    /// The log start offset.
    Earliest,
    /// The high watermark (the offset the next visible record will get).
    Latest,
    /// The first offset whose record timestamp is at or after this (ms since epoch); the
    /// high watermark if every record is older.
    Timestamp(i64),
}

/// One partition's answer to [`Admin::list_offsets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedOffset {
    /// Partition index.
    pub partition: u32,
    /// The offset found.
    pub offset: i64,
    /// For timestamp lookups, the found record's timestamp; else -1.
    pub timestamp_ms: i64,
}

/// A consumer group's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may remain).
    Empty,
    /// Members are moving partitions between them.
    Assigning,
    /// Every member has its target assignment.
    Stable,
    /// Being deleted.
    Dead,
    /// A state this client does not know (a newer broker's), by its number in the
    /// API's `GroupState` enum, or the broker left it unspecified (0).
    Other(i32),
}

impl GroupState {
    fn from_proto(value: i32) -> GroupState {
        match pb::GroupState::try_from(value) {
            Ok(pb::GroupState::Empty) => GroupState::Empty,
            Ok(pb::GroupState::Assigning) => GroupState::Assigning,
            Ok(pb::GroupState::Stable) => GroupState::Stable,
            Ok(pb::GroupState::Dead) => GroupState::Dead,
            Ok(pb::GroupState::Unspecified) | Err(_) => GroupState::Other(value),
        }
    }

    /// A readable name: `empty`, `assigning`, `stable`, `dead`, or `unknown` for
    /// [`GroupState::Other`].
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupState::Empty => "empty",
            GroupState::Assigning => "assigning",
            GroupState::Stable => "stable",
            GroupState::Dead => "dead",
            GroupState::Other(_) => "unknown",
        }
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupState::Other(value) => write!(f, "unknown ({value})"),
            known => f.write_str(known.as_str()),
        }
    }
}

/// One group in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Its state.
    pub state: GroupState,
    /// Number of members.
    pub members: u32,
}

/// One share group in a listing ([`Admin::list_share_groups`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupListing {
    /// Group id.
    pub group_id: String,
    /// Kafka share consumers in it (ShareGroupHeartbeat members; gRPC members do not join
    /// and are not counted).
    pub members: u32,
}

/// Where [`Admin::reset_share_group`] moves a share group's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareResetTo {
    /// This offset (below the log start: the log start; past the high watermark:
    /// refused for that partition).
    Offset(i64),
    /// Each partition's log start.
    Earliest,
    /// Each partition's high watermark.
    Latest,
}

/// One share-partition's answer to [`Admin::reset_share_group`].
#[derive(Debug, Clone)]
pub struct ShareStartReset {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// The new start, or why this partition was refused.
    pub result: Result<i64, ClientError>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberInfo {
    /// Member id.
    pub member_id: String,
    /// The client's chosen name.
    pub client_id: String,
    /// The member's address as the broker saw it.
    pub client_host: String,
    /// The member's epoch.
    pub member_epoch: i32,
    /// Topics subscribed by name.
    pub subscribed_topics: Vec<String>,
    /// Or the subscribed regex.
    pub subscribed_topic_regex: Option<String>,
    /// Partitions the member owns now, sorted.
    pub assignment: Vec<TopicPartition>,
    /// Partitions the assignor intends for it (equal to `assignment` once stable).
    pub target_assignment: Vec<TopicPartition>,
    /// Since the coordinator last heard from the member (its last heartbeat, or the
    /// coordinator loading the group, whichever was later).
    pub since_heartbeat: Duration,
    /// The member is removed once `since_heartbeat` reaches this.
    pub session_timeout: Duration,
    /// The heartbeat interval the member was last told; zero from brokers that do not
    /// say.
    pub heartbeat_interval: Duration,
}

impl GroupMemberInfo {
    /// Whether the member missed heartbeats: silent for longer than two heartbeat
    /// intervals and a second (a live member heartbeats every interval; the second
    /// absorbs a slow round trip or a busy client). A member that crashed without
    /// leaving keeps its partitions until its session timeout; until then it looks like
    /// this.
    pub fn is_silent(&self) -> bool {
        self.since_heartbeat > self.heartbeat_interval * 2 + SILENT_GRACE
    }

    /// How long until the broker removes the member if it stays silent.
    pub fn session_left(&self) -> Duration {
        self.session_timeout.saturating_sub(self.since_heartbeat)
    }
}

/// See [`GroupMemberInfo::is_silent`].
const SILENT_GRACE: Duration = Duration::from_secs(1);

/// One partition's progress in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitionLag {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// The committed offset; `None` if the group has none.
    pub committed_offset: Option<i64>,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// Records between the committed offset (or the log start) and the high watermark.
    pub lag: i64,
    /// The member that owns the partition now, if any.
    pub member_id: Option<String>,
}

/// A group's state, members and offsets, as `DescribeGroup` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Group id.
    pub group_id: String,
    /// Its state.
    pub state: GroupState,
    /// The group epoch, bumped on every change of members, subscriptions or partitions.
    pub group_epoch: i32,
    /// The assignor in use.
    pub assignor: String,
    /// Members, by id.
    pub members: Vec<GroupMemberInfo>,
    /// Every partition the group subscribes to or has an offset for, by topic then
    /// partition.
    pub offsets: Vec<GroupPartitionLag>,
    /// The `__consumer_offsets` partition whose leader coordinates the group.
    pub coordinator_partition: u32,
}

/// A share group (a queue) as `Queues.DescribeShareGroup` reports it: the coordinator's
/// settings for the group and each share-partition's in-flight window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupInfo {
    /// Group id.
    pub group_id: String,
    /// How long a member holds a record it acquired before it goes to another member
    /// (`share.record.lock.duration.ms`).
    pub lock_duration: Duration,
    /// Deliveries after which a record is archived (dead-lettered) instead of delivered
    /// again (`share.delivery.count.limit`).
    pub delivery_count_limit: u32,
    /// Where archived records are copied (with `weir-dlq-*` headers); `None`: nowhere,
    /// they are dropped.
    pub dead_letter_topic: Option<String>,
    /// The group's header filter: conditions on record headers that must all hold for a
    /// record to be delivered. Empty: no filter.
    pub filter: Vec<HeaderCondition>,
    /// Where the group starts on a partition it has no state for, when it sets it.
    pub start: Option<crate::share::ShareStart>,
    /// By topic, then partition.
    pub partitions: Vec<SharePartitionInfo>,
}

/// What a share group sets for itself ([`Admin::configure_share_group`]). Every setting
/// is replaced: `None` takes the broker's default (for the dead-letter topic: none);
/// except the filter, where `None` keeps the group's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareGroupSettings {
    /// How long a member holds a record it acquired (1 ms to 7 days).
    pub lock_duration: Option<Duration>,
    /// Deliveries after which a record is archived (1 to 10,000).
    pub delivery_count_limit: Option<u32>,
    /// An existing topic archived records are copied to.
    pub dead_letter_topic: Option<String>,
    /// The group's header filter (docs/queues.md § Filters): records that do not match
    /// every condition are never delivered, and finished. `None` keeps the filter the
    /// group has; `Some` replaces it, and `Some(vec![])` removes it. At most 16
    /// conditions, 32 values in an any-of; [`ClientError::InvalidArgument`] beyond.
    pub filter: Option<Vec<HeaderCondition>>,
    /// Where the group starts on a partition it has no state for (Kafka's
    /// `share.auto.offset.reset`): set, it wins over each consumer's
    /// [`ShareConsumerConfig::start`](crate::ShareConsumerConfig); `None`, each consumer's
    /// own decides.
    pub start: Option<crate::share::ShareStart>,
}

/// One share-partition's in-flight window: the offsets `start_offset..end_offset` the
/// group is working on, counted by state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartitionInfo {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// Every offset below is finished (accepted or archived).
    pub start_offset: i64,
    /// No offset at or above has been taken into the window yet.
    pub end_offset: i64,
    /// The partition's high watermark: `end_offset` up to here waits to enter the window.
    pub high_watermark: i64,
    /// Records that may be delivered now.
    pub available: u64,
    /// Records released with a delay (or produced with `weir-deliver-at`), not due yet.
    pub delayed: u64,
    /// Records a member holds under a lock.
    pub acquired: u64,
    /// Archived records waiting for their dead-letter copy.
    pub archived_pending: u64,
    /// Records the group's filter skipped (finished without delivery), since the
    /// coordinator took the window: a failover or restart counts from 0 again.
    pub filtered_out: u64,
    /// The oldest record of the window that is not finished; `None` when every record
    /// in it is.
    pub oldest_unfinished_offset: Option<i64>,
    /// How old that record is (since its timestamp; zero for a timestamp in the future).
    pub oldest_unfinished_age: Option<Duration>,
}

/// Where [`Admin::reset_offsets`] moves a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetOffsetsTo {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// This offset, clamped to the partition's valid range.
    Offset(i64),
    /// The first offset with a timestamp at or after this (ms since the Unix epoch); the
    /// high watermark if there is none.
    Timestamp(i64),
    /// The committed offset moved by this many (negative: back), clamped to the valid
    /// range; from the log start where nothing is committed.
    ShiftBy(i64),
}

/// One partition's reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsetReset {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// The committed offset before; `None` if there was none.
    pub previous_offset: Option<i64>,
    /// The new offset.
    pub new_offset: i64,
}

/// The outcome of [`Admin::reset_offsets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetResetPlan {
    /// Every partition reset, by topic then partition.
    pub partitions: Vec<PartitionOffsetReset>,
    /// Whether the offsets were committed (false for a dry run).
    pub applied: bool,
}

/// A client for topic and group management and cluster description.
///
/// Cheap to clone: clones share the connections.
#[derive(Debug, Clone)]
pub struct Admin {
    pub(crate) admin: AdminClient<Channel>,
    cluster: Cluster,
}

impl Admin {
    /// Connects to the first reachable broker of `brokers` (`host:port` or
    /// `http://host:port`, entries may be comma-separated lists; empty means
    /// [`crate::connection::DEFAULT_BROKER`]).
    pub async fn connect(brokers: &[String]) -> Result<Admin, ClientError> {
        Admin::connect_with_timeouts(brokers, Timeouts::default()).await
    }

    /// [`Admin::connect`] with other [`Timeouts`] than the defaults.
    pub async fn connect_with_timeouts(
        brokers: &[String],
        timeouts: Timeouts,
    ) -> Result<Admin, ClientError> {
        Admin::connect_with(brokers, timeouts.into()).await
    }

    /// [`Admin::connect`] with other [`ConnectOptions`] (timeouts, TLS) than the
    /// defaults.
    pub async fn connect_with(
        brokers: &[String],
        options: ConnectOptions,
    ) -> Result<Admin, ClientError> {
        Ok(Admin::with_cluster(
            Cluster::connect(brokers, options).await?,
        ))
    }

    /// An admin client over an existing channel (offset lookups route to leaders from
    /// there).
    pub fn from_channel(channel: Channel) -> Admin {
        Admin::with_cluster(Cluster::from_channel(channel))
    }

    /// Runs `call` against the Admin service of the broker coordinating `group_id`
    /// (found with FindCoordinator on the bootstrap broker), finding it again and
    /// retrying while it moves or is elected, for at most [`GROUP_ADMIN_TIMEOUT`].
    async fn on_coordinator<T, F, Fut>(&self, group_id: &str, call: F) -> Result<T, ClientError>
    where
        F: Fn(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        self.on_coordinator_of(group_id, pb::CoordinatorType::Group, |channel| {
            call(admin_client(channel))
        })
        .await
    }

    /// Runs `call` on the connection to the broker coordinating `group_id` as a group of
    /// `kind` (a consumer group's coordinator or a share group's), finding it again and
    /// retrying while it moves or is elected, for at most [`GROUP_ADMIN_TIMEOUT`].
    async fn on_coordinator_of<T, F, Fut>(
        &self,
        group_id: &str,
        kind: pb::CoordinatorType,
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + GROUP_ADMIN_TIMEOUT;
        let mut failures = 0;
        loop {
            let attempt = async {
                let found = GroupsClient::new(self.cluster.bootstrap())
                    .find_coordinator(pb::FindCoordinatorRequest {
                        group_id: group_id.to_owned(),
                        r#type: kind.into(),
                    })
                    .await?
                    .into_inner();
                let channel = match self.cluster.channel(found.broker_id) {
                    Ok(channel) => channel,
                    // A broker this client has not heard of yet.
                    Err(_) => {
                        self.cluster.refresh(&[]).await?;
                        self.cluster.channel(found.broker_id)?
                    }
                };
                call(channel).await.map_err(ClientError::from)
            }
            .await;
            match attempt {
                Err(error) if error.is_retriable() && tokio::time::Instant::now() < deadline => {
                    failures += 1;
                    tokio::time::sleep(
                        reconnect_backoff(GROUP_ADMIN_BACKOFF, failures)
                            .min(crate::group::MAX_COORDINATOR_RETRY_BACKOFF),
                    )
                    .await;
                }
                other => return other,
            }
        }
    }

    pub(crate) fn with_cluster(cluster: Cluster) -> Admin {
        Admin {
            admin: AdminClient::new(cluster.bootstrap())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            cluster,
        }
    }

    /// Creates a topic. `replication_factor` 0 means the broker's default. Fails with
    /// [`ClientError::AlreadyExists`] if it exists, [`ClientError::InvalidArgument`] for
    /// a bad name, count or configuration.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: HashMap<String, String>,
    ) -> Result<TopicInfo, ClientError> {
        let response = self
            .admin
            .clone()
            .create_topic(pb::CreateTopicRequest {
                name: name.to_owned(),
                partitions,
                replication_factor,
                configs,
            })
            .await?
            .into_inner();
        topic_info(response.topic)
    }

    /// Deletes a topic and all its records ([`ClientError::NotFound`] if there is none).
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        self.admin
            .clone()
            .delete_topic(pb::DeleteTopicRequest {
                name: name.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Every topic, sorted by name; internal topics only if `include_internal`. The
    /// broker answers a page at a time; this follows the pages to the last.
    pub async fn list_topics(
        &self,
        include_internal: bool,
    ) -> Result<Vec<TopicListing>, ClientError> {
        let mut topics = Vec::new();
        let mut page_token = String::new();
        loop {
            let response = self
                .admin
                .clone()
                .list_topics(pb::ListTopicsRequest {
                    include_internal,
                    page_size: LISTING_PAGE_SIZE,
                    page_token: std::mem::take(&mut page_token),
                })
                .await?
                .into_inner();
            topics.extend(response.topics.into_iter().map(|t| TopicListing {
                name: t.name,
                partitions: t.partitions,
                replication_factor: t.replication_factor,
                internal: t.internal,
            }));
            if response.next_page_token.is_empty() {
                return Ok(topics);
            }
            page_token = response.next_page_token;
        }
    }

    /// A topic's partitions with their leaders, replicas and offsets.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        let response = self
            .admin
            .clone()
            .describe_topic(pb::DescribeTopicRequest {
                name: name.to_owned(),
                allow_auto_create: false,
            })
            .await?
            .into_inner();
        topic_info(response.topic)
    }

    /// Grows a topic to `total_partitions` (never fewer). Keyed records may map to other
    /// partitions afterwards, as in Kafka.
    pub async fn create_partitions(
        &self,
        name: &str,
        total_partitions: u32,
    ) -> Result<TopicInfo, ClientError> {
        let response = self
            .admin
            .clone()
            .create_partitions(pb::CreatePartitionsRequest {
                name: name.to_owned(),
                total_partitions,
            })
            .await?
            .into_inner();
        topic_info(response.topic)
    }

    /// Moves replicas of `topic`'s partitions to other brokers: added replicas copy the
    /// partition (at most `throttle_bytes_per_sec` per broker, if given), join the
    /// in-sync replicas, then the removed ones are dropped. All the moves start or none
    /// does; returns once they started, with the topic as it then stands
    /// (`PartitionInfo::is_reassigning` tells which are still moving).
    pub async fn reassign_partitions(
        &self,
        topic: &str,
        moves: &[PartitionMove],
        throttle_bytes_per_sec: Option<u64>,
    ) -> Result<TopicInfo, ClientError> {
        let partitions = moves
            .iter()
            .map(|m| pb::PartitionReassignment {
                partition: m.partition,
                replicas: m.replicas.clone().unwrap_or_default(),
                cancel: m.replicas.is_none(),
            })
            .collect();
        let response = self
            .admin
            .clone()
            .alter_partition_reassignments(pb::AlterPartitionReassignmentsRequest {
                topic: topic.to_owned(),
                partitions,
                throttle_bytes_per_sec: throttle_bytes_per_sec.unwrap_or(0),
            })
            .await?
            .into_inner();
        topic_info(response.topic)
    }

    /// Every configuration key of a topic, sorted by name.
    pub async fn describe_topic_config(&self, name: &str) -> Result<Vec<ConfigEntry>, ClientError> {
        let response = self
            .admin
            .clone()
            .describe_topic_config(pb::DescribeTopicConfigRequest {
                name: name.to_owned(),
            })
            .await?
            .into_inner();
        Ok(config_entries(response.entries))
    }

    /// Sets the keys in `set` and resets the keys in `reset` to their defaults, all or
    /// nothing. Returns every key after the change.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: HashMap<String, String>,
        reset: Vec<String>,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        let response = self
            .admin
            .clone()
            .alter_topic_config(pb::AlterTopicConfigRequest {
                name: name.to_owned(),
                set,
                reset,
            })
            .await?
            .into_inner();
        Ok(config_entries(response.entries))
    }

    /// Removes every record below the given offset of each `(partition, before_offset)`
    /// (-1: the high watermark, everything). Returns the new log start offset of each
    /// partition, in request order; the first partition that failed fails the call.
    pub async fn delete_records(
        &self,
        topic: &str,
        partitions: &[(u32, i64)],
    ) -> Result<Vec<(u32, i64)>, ClientError> {
        let response = self
            .admin
            .clone()
            .delete_records(pb::DeleteRecordsRequest {
                topic: topic.to_owned(),
                partitions: partitions
                    .iter()
                    .map(|&(partition, before_offset)| pb::PartitionDeleteRecords {
                        partition,
                        before_offset,
                    })
                    .collect(),
            })
            .await?
            .into_inner();
        response
            .results
            .into_iter()
            .map(|r| match &r.error {
                Some(error) => Err(ClientError::from_partition_error(error)),
                None => Ok((r.partition, r.log_start_offset)),
            })
            .collect()
    }

    /// The brokers of the cluster and its controller.
    pub async fn describe_cluster(&self) -> Result<ClusterInfo, ClientError> {
        let response = self
            .admin
            .clone()
            .describe_cluster(pb::DescribeClusterRequest {})
            .await?
            .into_inner();
        Ok(ClusterInfo {
            cluster_id: response.cluster_id,
            controller_id: response.controller_id,
            brokers: response
                .brokers
                .into_iter()
                .map(|b| BrokerInfo {
                    broker_id: b.broker_id,
                    host: b.host,
                    port: b.port,
                    rack: (!b.rack.is_empty()).then_some(b.rack),
                    fenced: b.fenced,
                    voter: b.voter,
                })
                .collect(),
        })
    }

    /// Every consumer group, by id, with its state and member count. Each broker lists
    /// the groups it coordinates: every broker of the cluster is asked (following its
    /// pages to the last); a broker that cannot be reached is skipped with a warning
    /// (its groups move to other brokers).
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        self.cluster.refresh(&[]).await?;
        let brokers: Vec<i32> = self.cluster.table().brokers().map(|(id, _)| id).collect();
        let mut groups: BTreeMap<String, GroupListing> = BTreeMap::new();
        let mut asked = 0;
        let mut last_error = None;
        for broker in brokers {
            let listed = async {
                let mut admin = admin_client(self.cluster.channel(broker)?);
                let mut page_token = String::new();
                let mut found = Vec::new();
                loop {
                    let response = admin
                        .list_groups(pb::ListGroupsRequest {
                            page_size: LISTING_PAGE_SIZE,
                            page_token: std::mem::take(&mut page_token),
                        })
                        .await?
                        .into_inner();
                    found.extend(response.groups);
                    if response.next_page_token.is_empty() {
                        return Ok::<_, ClientError>(found);
                    }
                    page_token = response.next_page_token;
                }
            }
            .await;
            match listed {
                Ok(found) => {
                    asked += 1;
                    for g in found {
                        groups.insert(
                            g.group_id.clone(),
                            GroupListing {
                                group_id: g.group_id,
                                state: GroupState::from_proto(g.state),
                                members: g.members,
                            },
                        );
                    }
                }
                Err(error) if error.is_retriable() => {
                    tracing::warn!(broker, %error, "a broker did not list its groups; skipped");
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        match (asked, last_error) {
            (0, Some(error)) => Err(error),
            _ => Ok(groups.into_values().collect()),
        }
    }

    /// A group's members, assignments, committed offsets and lag
    /// ([`ClientError::NotFound`] for an unknown group). The broker gives the members a
    /// page at a time; this follows the pages and returns the state, epoch and offsets
    /// of the last one, read after every member was.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupInfo, ClientError> {
        let mut members = Vec::new();
        let mut page_token = String::new();
        let d = loop {
            let token = std::mem::take(&mut page_token);
            let mut d = self
                .on_coordinator(group_id, |mut admin| {
                    let request = pb::DescribeGroupRequest {
                        group_id: group_id.to_owned(),
                        page_size: LISTING_PAGE_SIZE,
                        page_token: token.clone(),
                    };
                    async move { admin.describe_group(request).await }
                })
                .await?
                .into_inner();
            members.append(&mut d.members);
            if d.next_page_token.is_empty() {
                break d;
            }
            page_token = std::mem::take(&mut d.next_page_token);
        };
        Ok(GroupInfo {
            group_id: d.group_id,
            state: GroupState::from_proto(d.state),
            group_epoch: d.group_epoch,
            assignor: d.assignor,
            members: members
                .into_iter()
                .map(|m| GroupMemberInfo {
                    member_id: m.member_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    member_epoch: m.member_epoch,
                    subscribed_topics: m.subscribed_topics,
                    subscribed_topic_regex: (!m.subscribed_topic_regex.is_empty())
                        .then_some(m.subscribed_topic_regex),
                    assignment: partitions_of(m.assignment),
                    target_assignment: partitions_of(m.target_assignment),
                    since_heartbeat: Duration::from_millis(m.ms_since_heartbeat),
                    session_timeout: Duration::from_millis(m.session_timeout_ms.into()),
                    heartbeat_interval: Duration::from_millis(m.heartbeat_interval_ms.into()),
                })
                .collect(),
            offsets: d
                .offsets
                .into_iter()
                .map(|o| GroupPartitionLag {
                    topic: o.topic,
                    partition: o.partition,
                    committed_offset: (o.committed_offset >= 0).then_some(o.committed_offset),
                    high_watermark: o.high_watermark,
                    lag: o.lag,
                    member_id: (!o.member_id.is_empty()).then_some(o.member_id),
                })
                .collect(),
            coordinator_partition: d.coordinator_partition,
        })
    }

    /// A share group's settings and each share-partition's window, from the group's
    /// share coordinator (`Queues.DescribeShareGroup`, found again while it moves, for
    /// at most [`GROUP_ADMIN_TIMEOUT`]). [`ClientError::NotFound`] for a group without
    /// state (no member has fetched from it, and it was never configured).
    pub async fn describe_share_group(
        &self,
        group_id: &str,
    ) -> Result<ShareGroupInfo, ClientError> {
        let d = self
            .on_coordinator_of(group_id, pb::CoordinatorType::Share, |channel| {
                let request = pb::DescribeShareGroupRequest {
                    group_id: group_id.to_owned(),
                };
                async move { queues_client(channel).describe_share_group(request).await }
            })
            .await?
            .into_inner();
        Ok(share_group_info(d))
    }

    /// Every share group, by id, with its Kafka member count: every broker is asked
    /// (`Queues.ListShareGroups`: each lists the groups whose state or membership it
    /// holds); a broker that cannot be reached is skipped with a warning.
    pub async fn list_share_groups(&self) -> Result<Vec<ShareGroupListing>, ClientError> {
        self.cluster.refresh(&[]).await?;
        let brokers: Vec<i32> = self.cluster.table().brokers().map(|(id, _)| id).collect();
        let mut groups: BTreeMap<String, ShareGroupListing> = BTreeMap::new();
        let mut asked = 0;
        let mut last_error = None;
        for broker in brokers {
            let listed = async {
                let channel = self.cluster.channel(broker)?;
                Ok::<_, ClientError>(
                    queues_client(channel)
                        .list_share_groups(pb::ListShareGroupsRequest {})
                        .await?
                        .into_inner()
                        .groups,
                )
            }
            .await;
            match listed {
                Ok(found) => {
                    asked += 1;
                    for g in found {
                        let entry =
                            groups
                                .entry(g.group_id.clone())
                                .or_insert_with(|| ShareGroupListing {
                                    group_id: g.group_id,
                                    members: 0,
                                });
                        // Membership lives on one broker; the others say 0.
                        entry.members = entry.members.max(g.members);
                    }
                }
                Err(error) if error.is_retriable() => {
                    tracing::warn!(broker, %error, "a broker did not list its share groups; skipped");
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        match (asked, last_error) {
            (0, Some(error)) => Err(error),
            _ => Ok(groups.into_values().collect()),
        }
    }

    /// Moves an idle share group's start on `partitions` of `topic` (none: all of them)
    /// to `to` (`Queues.ResetShareGroup`, at its share coordinator): each
    /// share-partition's in-flight window is discarded and its records from the new start
    /// on are delivered again, from a delivery count of 0. A group without state is made.
    /// [`ClientError::FailedPrecondition`] while a member holds a record under a lock or
    /// the group has Kafka members; [`ClientError::NotFound`] for an unknown topic.
    pub async fn reset_share_group(
        &self,
        group_id: &str,
        topic: &str,
        partitions: &[u32],
        to: ShareResetTo,
    ) -> Result<Vec<ShareStartReset>, ClientError> {
        use pb::share_start_reset::To;
        let partitions: Vec<u32> = if partitions.is_empty() {
            (0..self.describe_topic(topic).await?.partitions.len() as u32).collect()
        } else {
            partitions.to_vec()
        };
        let to = match to {
            ShareResetTo::Offset(n) => To::Offset(n),
            ShareResetTo::Earliest => To::Earliest(true),
            ShareResetTo::Latest => To::Latest(true),
        };
        let request = pb::ResetShareGroupRequest {
            group_id: group_id.to_owned(),
            partitions: partitions
                .iter()
                .map(|&partition| pb::ShareStartReset {
                    topic: topic.to_owned(),
                    partition,
                    to: Some(to),
                })
                .collect(),
        };
        let answer = self
            .on_coordinator_of(group_id, pb::CoordinatorType::Share, |channel| {
                let request = request.clone();
                async move { queues_client(channel).reset_share_group(request).await }
            })
            .await?
            .into_inner();
        Ok(answer
            .results
            .into_iter()
            .map(|r| ShareStartReset {
                topic: r.topic,
                partition: r.partition,
                result: match &r.error {
                    Some(e) => Err(ClientError::from_partition_error(e)),
                    None => Ok(r.start_offset),
                },
            })
            .collect())
    }

    /// Sets `user`'s SCRAM credential for `mechanism` to `password`, creating the user
    /// (`UpsertUser`). The salted password is derived here with a new random salt and
    /// `iterations` (4096 to 16384; `weir_security::scram::DEFAULT_ITERATIONS` is a
    /// good choice), so the password itself never leaves this process; the salted
    /// password does, so use TLS. [`ClientError::Config`] for an empty or too long
    /// password or iterations out of range (nothing sent); the broker's
    /// [`ClientError::InvalidArgument`] for a bad user name; `PERMISSION_DENIED` without
    /// ALTER on the cluster.
    pub async fn upsert_user(
        &self,
        user: &str,
        password: &str,
        mechanism: ScramMechanism,
        iterations: u32,
    ) -> Result<(), ClientError> {
        let salted = weir_security::scram::SaltedPassword::new(mechanism, password, iterations)
            .map_err(|e| ClientError::Config(e.to_string()))?;
        self.admin
            .clone()
            .upsert_user(pb::UpsertUserRequest {
                user: user.to_owned(),
                mechanism: mechanism.name().to_owned(),
                iterations,
                salt: salted.salt.into(),
                salted_password: salted.salted_password.into(),
            })
            .await?;
        Ok(())
    }

    /// Removes `user`'s credential for `mechanism`, or for `None` every credential and
    /// so the user (`DeleteUser`); the mechanisms removed. [`ClientError::NotFound`] if
    /// there is no such user or credential.
    pub async fn delete_user(
        &self,
        user: &str,
        mechanism: Option<ScramMechanism>,
    ) -> Result<Vec<String>, ClientError> {
        Ok(self
            .admin
            .clone()
            .delete_user(pb::DeleteUserRequest {
                user: user.to_owned(),
                mechanism: mechanism.map(|m| m.name().to_owned()),
            })
            .await?
            .into_inner()
            .mechanisms)
    }

    /// The users named, in that order (each with its own result: a user that does not
    /// exist is [`ClientError::NotFound`] in its place), or for an empty `users` every
    /// user, sorted by name (`ListUsers`).
    pub async fn list_users(&self, users: &[String]) -> Result<Vec<UserInfo>, ClientError> {
        Ok(self
            .admin
            .clone()
            .list_users(pb::ListUsersRequest {
                users: users.to_vec(),
            })
            .await?
            .into_inner()
            .users
            .into_iter()
            .map(UserInfo::from_proto)
            .collect())
    }

    /// Adds ACL bindings, all or none (`CreateAcls`); bindings that exist already are
    /// left as they are. [`ClientError::InvalidArgument`] naming a bad binding.
    pub async fn create_acls(&self, acls: &[AclBinding]) -> Result<(), ClientError> {
        self.admin
            .clone()
            .create_acls(pb::CreateAclsRequest {
                acls: acls.iter().map(AclBinding::to_proto).collect(),
            })
            .await?;
        Ok(())
    }

    /// The ACL bindings `filter` selects, sorted (`ListAcls`).
    pub async fn list_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, ClientError> {
        self.admin
            .clone()
            .list_acls(pb::ListAclsRequest {
                filter: Some(filter.to_proto()),
            })
            .await?
            .into_inner()
            .acls
            .into_iter()
            .map(AclBinding::from_proto)
            .collect()
    }

    /// Removes the ACL bindings each filter selects (`DeleteAcls`); per filter, in
    /// order, the bindings it removed (a binding two filters select is reported under
    /// the first). The default filter selects every binding.
    pub async fn delete_acls(
        &self,
        filters: &[AclFilter],
    ) -> Result<Vec<Vec<AclBinding>>, ClientError> {
        self.admin
            .clone()
            .delete_acls(pb::DeleteAclsRequest {
                filters: filters.iter().map(AclFilter::to_proto).collect(),
            })
            .await?
            .into_inner()
            .results
            .into_iter()
            .map(|r| r.removed.into_iter().map(AclBinding::from_proto).collect())
            .collect()
    }

    /// Sets (`Some`) or removes (`None`) client quota keys (`producer_byte_rate`,
    /// `consumer_byte_rate`, in bytes per second), all or none (`AlterQuotas`).
    pub async fn alter_quotas(
        &self,
        alterations: &[(QuotaEntity, &str, Option<u64>)],
    ) -> Result<(), ClientError> {
        self.admin
            .clone()
            .alter_quotas(pb::AlterQuotasRequest {
                alterations: alterations
                    .iter()
                    .map(|(entity, key, value)| pb::QuotaAlteration {
                        entity: Some(entity.to_proto()),
                        key: (*key).to_owned(),
                        value: *value,
                    })
                    .collect(),
            })
            .await?;
        Ok(())
    }

    /// Every entity with a quota, with its keys and bytes per second, sorted.
    pub async fn list_quotas(&self) -> Result<Vec<(QuotaEntity, Vec<(String, u64)>)>, ClientError> {
        let mut entries: Vec<(QuotaEntity, Vec<(String, u64)>)> = self
            .admin
            .clone()
            .list_quotas(pb::ListQuotasRequest {})
            .await?
            .into_inner()
            .entries
            .into_iter()
            .map(|e| {
                let mut values: Vec<(String, u64)> = e.values.into_iter().collect();
                values.sort();
                (
                    QuotaEntity::from_proto(e.entity.unwrap_or_default()),
                    values,
                )
            })
            .collect();
        entries.sort();
        Ok(entries)
    }

    /// Deletes an idle share group (`topics` empty: its whole state and settings) or its
    /// state of `topics` (`Queues.DeleteShareGroup`, at its share coordinator); one
    /// answer per topic. [`ClientError::NotFound`] for a group without state,
    /// [`ClientError::FailedPrecondition`] while it is in use.
    pub async fn delete_share_group(
        &self,
        group_id: &str,
        topics: &[&str],
    ) -> Result<Vec<(String, Result<(), ClientError>)>, ClientError> {
        let request = pb::DeleteShareGroupRequest {
            group_id: group_id.to_owned(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
        };
        let answer = self
            .on_coordinator_of(group_id, pb::CoordinatorType::Share, |channel| {
                let request = request.clone();
                async move { queues_client(channel).delete_share_group(request).await }
            })
            .await?
            .into_inner();
        Ok(answer
            .results
            .into_iter()
            .map(|r| {
                let result = match &r.error {
                    Some(e) => Err(ClientError::from_partition_error(e)),
                    None => Ok(()),
                };
                (r.topic, result)
            })
            .collect())
    }

    /// Replaces what a share group sets for itself (`Queues.ConfigureShareGroup`; a
    /// setting left `None` goes back to the broker's default, but a `None` filter keeps
    /// the group's), making the group if it
    /// has no state yet, and returns the group as it now runs once the settings are
    /// durable. [`ClientError::NotFound`] for a dead-letter topic that does not exist,
    /// [`ClientError::InvalidArgument`] for values out of bounds.
    pub async fn configure_share_group(
        &self,
        group_id: &str,
        settings: &ShareGroupSettings,
    ) -> Result<ShareGroupInfo, ClientError> {
        let request = pb::ConfigureShareGroupRequest {
            group_id: group_id.to_owned(),
            lock_duration_ms: settings
                .lock_duration
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            delivery_count_limit: settings.delivery_count_limit,
            dead_letter_topic: settings.dead_letter_topic.clone(),
            filter: settings
                .filter
                .as_deref()
                .map(crate::share::filter::to_proto),
            start: settings.start.map(|s| s.to_proto() as i32),
        };
        let d = self
            .on_coordinator_of(group_id, pb::CoordinatorType::Share, |channel| {
                let request = request.clone();
                async move { queues_client(channel).configure_share_group(request).await }
            })
            .await?
            .into_inner();
        Ok(share_group_info(d))
    }

    /// Deletes a group and its committed offsets. [`ClientError::NotFound`] for an
    /// unknown group, [`ClientError::FailedPrecondition`] while it has members.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ClientError> {
        self.on_coordinator(group_id, |mut admin| {
            let request = pb::DeleteGroupRequest {
                group_id: group_id.to_owned(),
            };
            async move { admin.delete_group(request).await }
        })
        .await?;
        Ok(())
    }

    /// Moves a group's committed offsets for `targets`, each a topic and its partitions
    /// (none listed: all of them), or with `dry_run` only says where they would go.
    /// Only while the group has no members ([`ClientError::FailedPrecondition`]
    /// otherwise); [`ClientError::NotFound`] for an unknown topic. A real run creates
    /// the group if it does not exist.
    pub async fn reset_offsets(
        &self,
        group_id: &str,
        targets: &[(&str, &[u32])],
        to: ResetOffsetsTo,
        dry_run: bool,
    ) -> Result<OffsetResetPlan, ClientError> {
        use pb::offset_reset_spec::To;
        let to = match to {
            ResetOffsetsTo::Earliest => To::Position(pb::OffsetPosition::Earliest.into()),
            ResetOffsetsTo::Latest => To::Position(pb::OffsetPosition::Latest.into()),
            ResetOffsetsTo::Offset(offset) => To::Offset(offset),
            ResetOffsetsTo::Timestamp(ms) => To::TimestampMs(ms),
            ResetOffsetsTo::ShiftBy(n) => To::ShiftBy(n),
        };
        let request = pb::ResetOffsetsRequest {
            group_id: group_id.to_owned(),
            topics: targets
                .iter()
                .map(|&(topic, partitions)| pb::TopicPartitions {
                    topic: topic.to_owned(),
                    partitions: partitions.to_vec(),
                })
                .collect(),
            spec: Some(pb::OffsetResetSpec { to: Some(to) }),
            dry_run,
        };
        let response = self
            .on_coordinator(group_id, |mut admin| {
                let request = request.clone();
                async move { admin.reset_offsets(request).await }
            })
            .await?
            .into_inner();
        Ok(OffsetResetPlan {
            partitions: response
                .partitions
                .into_iter()
                .map(|p| PartitionOffsetReset {
                    topic: p.topic,
                    partition: p.partition,
                    previous_offset: (p.previous_offset >= 0).then_some(p.previous_offset),
                    new_offset: p.new_offset,
                })
                .collect(),
            applied: response.applied,
        })
    }

    /// Looks up offsets of a topic's partitions: earliest, latest or by timestamp, each
    /// asked of the partition's leader (retried on a moved leader). Results are in
    /// request order; the first partition that failed fails the call.
    pub async fn list_offsets(
        &self,
        topic: &str,
        queries: &[(u32, OffsetQuery)],
    ) -> Result<Vec<ListedOffset>, ClientError> {
        self.cluster.list_offsets(topic, queries).await
    }
}

/// `ListOffsets` over one connection; [`Cluster::list_offsets`] routes it.
pub(crate) async fn list_offsets(
    client: &mut ConsumerClient<Channel>,
    topic: &str,
    queries: &[(u32, OffsetQuery)],
) -> Result<Vec<ListedOffset>, ClientError> {
    use pb::offset_spec::Spec;
    let request = pb::ListOffsetsRequest {
        topic: topic.to_owned(),
        partitions: queries
            .iter()
            .map(|&(partition, query)| pb::PartitionOffsetQuery {
                partition,
                spec: Some(pb::OffsetSpec {
                    spec: Some(match query {
                        OffsetQuery::Earliest => {
                            Spec::Position(pb::OffsetPosition::Earliest.into())
                        }
                        OffsetQuery::Latest => Spec::Position(pb::OffsetPosition::Latest.into()),
                        OffsetQuery::Timestamp(ms) => Spec::TimestampMs(ms),
                    }),
                }),
            })
            .collect(),
    };
    let response = client.list_offsets(request).await?.into_inner();
    response
        .results
        .into_iter()
        .map(|r| match &r.error {
            Some(error) => Err(ClientError::from_partition_error(error)),
            None => Ok(ListedOffset {
                partition: r.partition,
                offset: r.offset,
                timestamp_ms: r.timestamp_ms,
            }),
        })
        .collect()
}

fn topic_info(topic: Option<pb::TopicDescription>) -> Result<TopicInfo, ClientError> {
    let topic = topic.ok_or_else(|| ClientError::Rpc {
        code: tonic::Code::Internal,
        message: "the broker's answer has no topic description".to_owned(),
    })?;
    Ok(TopicInfo {
        name: topic.name,
        topic_id: topic.topic_id,
        internal: topic.internal,
        partitions: topic
            .partitions
            .into_iter()
            .map(|p| PartitionInfo {
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas,
                isr: p.isr,
                log_start_offset: p.log_start_offset,
                high_watermark: p.high_watermark,
                log_end_offset: p.log_end_offset,
                adding_replicas: p.adding_replicas,
                removing_replicas: p.removing_replicas,
                reassignment_throttle_bytes_per_sec: (p.reassignment_throttle_bytes_per_sec > 0)
                    .then_some(p.reassignment_throttle_bytes_per_sec),
            })
            .collect(),
    })
}

/// Partitions listed by topic, flattened and sorted.
fn partitions_of(list: Vec<pb::TopicPartitions>) -> Vec<TopicPartition> {
    let mut out: Vec<TopicPartition> = list
        .into_iter()
        .flat_map(|t| {
            let topic: Arc<str> = Arc::from(t.topic);
            t.partitions
                .into_iter()
                .map(move |partition| TopicPartition::new(topic.clone(), partition))
        })
        .collect();
    out.sort();
    out
}

fn config_entries(entries: Vec<pb::ConfigEntry>) -> Vec<ConfigEntry> {
    entries
        .into_iter()
        .map(|e| ConfigEntry {
            name: e.name,
            value: e.value,
            is_default: e.is_default,
            documentation: e.documentation,
        })
        .collect()
}
