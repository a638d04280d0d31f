//! Consumer groups: listed (every broker asked), described (members, assignments,
//! offsets and lag), deleted, and their committed offsets reset, each at the group's
//! coordinator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use weir_proto::v1 as pb;

use super::{Admin, LISTING_PAGE_SIZE, admin_client};
use crate::error::ClientError;
use crate::group::TopicPartition;

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

impl Admin {
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
        Ok(group_info(d, members))
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
        let request = pb::ResetOffsetsRequest {
            group_id: group_id.to_owned(),
            topics: targets
                .iter()
                .map(|&(topic, partitions)| pb::TopicPartitions {
                    topic: topic.to_owned(),
                    partitions: partitions.to_vec(),
                })
                .collect(),
            spec: Some(reset_spec(to)),
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

/// A `DescribeGroup` answer (its last page) with the members of every page: what the
/// API writes as -1 or empty (no committed offset, no owner, no regex) is `None`.
fn group_info(d: pb::DescribeGroupResponse, members: Vec<pb::GroupMemberDescription>) -> GroupInfo {
    GroupInfo {
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
    }
}

fn reset_spec(to: ResetOffsetsTo) -> pb::OffsetResetSpec {
    use pb::offset_reset_spec::To;
    let to = match to {
        ResetOffsetsTo::Earliest => To::Position(pb::OffsetPosition::Earliest.into()),
        ResetOffsetsTo::Latest => To::Position(pb::OffsetPosition::Latest.into()),
        ResetOffsetsTo::Offset(offset) => To::Offset(offset),
        ResetOffsetsTo::Timestamp(ms) => To::TimestampMs(ms),
        ResetOffsetsTo::ShiftBy(n) => To::ShiftBy(n),
    };
    pb::OffsetResetSpec { to: Some(to) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, partitions: &[u32]) -> pb::TopicPartitions {
        pb::TopicPartitions {
            topic: name.to_owned(),
            partitions: partitions.to_vec(),
        }
    }

    #[test]
    fn a_described_group_reads_back_with_absent_values_as_none() {
        let answer = pb::DescribeGroupResponse {
            group_id: "billing".to_owned(),
            state: pb::GroupState::Stable.into(),
            group_epoch: 7,
            assignor: "uniform".to_owned(),
            offsets: vec![
                pb::GroupPartitionOffset {
                    topic: "events".to_owned(),
                    partition: 0,
                    committed_offset: 40,
                    high_watermark: 50,
                    lag: 10,
                    member_id: "m-1".to_owned(),
                },
                pb::GroupPartitionOffset {
                    topic: "events".to_owned(),
                    partition: 1,
                    committed_offset: -1,
                    high_watermark: 8,
                    lag: 8,
                    member_id: String::new(),
                },
            ],
            coordinator_partition: 12,
            ..Default::default()
        };
        // The members of every page, given apart from the last page's answer.
        let members = vec![pb::GroupMemberDescription {
            member_id: "m-1".to_owned(),
            client_id: "worker".to_owned(),
            member_epoch: 7,
            subscribed_topics: vec!["events".to_owned()],
            // Listed out of order and split by topic, as the broker may.
            assignment: vec![topic("orders", &[2]), topic("events", &[1, 0])],
            ms_since_heartbeat: 1_500,
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            ..Default::default()
        }];
        let group = group_info(answer, members);
        assert_eq!(group.group_id, "billing");
        assert_eq!(group.state, GroupState::Stable);
        assert_eq!((group.group_epoch, group.assignor.as_str()), (7, "uniform"));
        assert_eq!(group.coordinator_partition, 12);

        let [member] = &group.members[..] else {
            panic!("one member: {:?}", group.members);
        };
        assert_eq!(member.subscribed_topic_regex, None);
        assert_eq!(
            member.assignment,
            [
                TopicPartition::new(Arc::from("events"), 0),
                TopicPartition::new(Arc::from("events"), 1),
                TopicPartition::new(Arc::from("orders"), 2),
            ]
        );
        assert!(member.target_assignment.is_empty());
        assert_eq!(member.since_heartbeat, Duration::from_millis(1_500));
        assert_eq!(member.session_left(), Duration::from_millis(43_500));
        assert!(!member.is_silent());

        let [owned, unowned] = &group.offsets[..] else {
            panic!("two partitions: {:?}", group.offsets);
        };
        assert_eq!(
            (
                owned.committed_offset,
                owned.lag,
                owned.member_id.as_deref()
            ),
            (Some(40), 10, Some("m-1"))
        );
        assert_eq!(
            (
                unowned.committed_offset,
                unowned.lag,
                unowned.member_id.as_deref()
            ),
            (None, 8, None)
        );
    }

    #[test]
    fn a_member_is_silent_after_two_intervals_and_a_second() {
        let member = |since_ms: u64| GroupMemberInfo {
            member_id: "m-1".to_owned(),
            client_id: String::new(),
            client_host: String::new(),
            member_epoch: 1,
            subscribed_topics: Vec::new(),
            subscribed_topic_regex: Some("events-.*".to_owned()),
            assignment: Vec::new(),
            target_assignment: Vec::new(),
            since_heartbeat: Duration::from_millis(since_ms),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
        };
        assert!(!member(7_000).is_silent());
        assert!(member(7_001).is_silent());
        // Past its session it has nothing left, not a negative duration.
        assert_eq!(member(12_000).session_left(), Duration::ZERO);
    }

    #[test]
    fn group_states_the_client_does_not_know_keep_their_number() {
        assert_eq!(
            GroupState::from_proto(pb::GroupState::Empty.into()),
            GroupState::Empty
        );
        assert_eq!(
            GroupState::from_proto(pb::GroupState::Dead.into()),
            GroupState::Dead
        );
        assert_eq!(GroupState::from_proto(0), GroupState::Other(0));
        assert_eq!(GroupState::from_proto(99), GroupState::Other(99));
        assert_eq!(GroupState::Assigning.to_string(), "assigning");
        assert_eq!(GroupState::Other(99).as_str(), "unknown");
        assert_eq!(GroupState::Other(99).to_string(), "unknown (99)");
    }

    #[test]
    fn each_reset_target_becomes_its_spec() {
        use pb::offset_reset_spec::To;
        let to = |target| reset_spec(target).to.expect("a target");
        assert_eq!(
            to(ResetOffsetsTo::Earliest),
            To::Position(pb::OffsetPosition::Earliest.into())
        );
        assert_eq!(
            to(ResetOffsetsTo::Latest),
            To::Position(pb::OffsetPosition::Latest.into())
        );
        assert_eq!(to(ResetOffsetsTo::Offset(42)), To::Offset(42));
        assert_eq!(
            to(ResetOffsetsTo::Timestamp(1_700_000_000_000)),
            To::TimestampMs(1_700_000_000_000)
        );
        assert_eq!(to(ResetOffsetsTo::ShiftBy(-5)), To::ShiftBy(-5));
    }
}
