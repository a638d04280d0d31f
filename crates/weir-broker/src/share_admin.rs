//! The administration of share groups as every protocol asks for it (Kafka's ListGroups,
//! ShareGroupDescribe, DescribeShareGroupOffsets, AlterShareGroupOffsets,
//! DeleteShareGroupOffsets and DeleteGroups; gRPC's ListShareGroups, ResetShareGroup and
//! DeleteShareGroup; `weir queue list|reset|delete`).
//!
//! A share group has two homes: its membership (Kafka's ShareGroupHeartbeat) at its
//! group coordinator, the broker FindCoordinator names, and its state at its share
//! coordinator, the leader of its `__share_group_state` partition. Kafka's admin client
//! sends these requests to the group coordinator, which answers membership itself and
//! reaches the state where it lives (here, or through the [`ShareForwarder`]), as Kafka's
//! group coordinator reaches its share coordinator through the persister.
//!
//! The rules, as Kafka 4.2 keeps them: a share group is `Empty` without members and
//! `Stable` with; a change of its offsets, or its deletion, is refused (GROUP_NOT_EMPTY)
//! while it has members, and here also while any record is held under a lock that has not
//! expired (gRPC members do not heartbeat: their locks are how the coordinator knows they
//! work); a group id with neither members nor state is GROUP_ID_NOT_FOUND, "not a share
//! group" where it names a consumer group.
//!
//! [`ShareForwarder`]: crate::shares::ShareForwarder

use std::collections::BTreeMap;
use std::time::Instant;
use weir_cluster::security::Operation;

use weir_cluster::group::validate_group_id;
pub use weir_cluster::share::{StartReset, StartTarget};

use crate::share_members::{ShareMemberView, check_coordinator};
use crate::shares;
use crate::{Broker, BrokerError, Reason, RequestContext};

/// The name of the only assignor (every member is assigned every partition).
pub const SHARE_ASSIGNOR: &str = "simple";

/// A share group's state as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareGroupState {
    Empty,
    Stable,
}

impl ShareGroupState {
    pub fn name(self) -> &'static str {
        match self {
            ShareGroupState::Empty => "Empty",
            ShareGroupState::Stable => "Stable",
        }
    }

    /// Stable with members, Empty without.
    pub fn of(members: usize) -> ShareGroupState {
        if members == 0 {
            ShareGroupState::Empty
        } else {
            ShareGroupState::Stable
        }
    }
}

/// One share group as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupListing {
    pub group_id: String,
    pub state: ShareGroupState,
    /// Live members this broker knows.
    pub members: usize,
    /// Whether this broker holds the group's state.
    pub has_state: bool,
}

/// A share group described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupDescription {
    pub group_id: String,
    pub state: ShareGroupState,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: &'static str,
    pub members: Vec<ShareMemberView>,
}

/// One share-partition's start, as DescribeShareGroupOffsets answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartitionStart {
    pub topic: String,
    pub partition: u32,
    /// `Ok(None)`: the group has no state for this partition.
    pub start: Result<Option<i64>, BrokerError>,
}

/// The share groups this broker knows: with state in the `__share_group_state`
/// partitions it leads, or with members in its membership table. By id.
pub fn list_groups(
    broker: &Broker,
    ctx: &RequestContext,
) -> Result<Vec<ShareGroupListing>, BrokerError> {
    let now = Instant::now();
    let mut out: BTreeMap<String, ShareGroupListing> = BTreeMap::new();
    for (group_id, members) in broker.share_members().groups(now) {
        out.insert(
            group_id.clone(),
            ShareGroupListing {
                group_id,
                state: ShareGroupState::of(members),
                members,
                has_state: false,
            },
        );
    }
    // A broker still joining its cluster has no share coordinator yet: it holds no state.
    if let Ok(coordinator) = broker.shares() {
        for group_id in coordinator.group_ids() {
            out.entry(group_id.clone())
                .or_insert_with(|| ShareGroupListing {
                    group_id,
                    state: ShareGroupState::Empty,
                    members: 0,
                    has_state: false,
                })
                .has_state = true;
        }
    }
    // As for consumer groups: the groups the principal may describe.
    let visible = crate::groups::listed_group_filter(broker, ctx);
    Ok(out.into_values().filter(|g| visible(&g.group_id)).collect())
}

/// The share group's state, epochs and members, at its group coordinator (NOT_COORDINATOR
/// elsewhere); GROUP_ID_NOT_FOUND for a group with neither members nor state.
pub async fn describe_group(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<ShareGroupDescription, BrokerError> {
    validate_group_id(group_id)?;
    check_coordinator(broker, ctx, group_id)?;
    let membership = broker.share_members().group(group_id, Instant::now());
    let known = match &membership {
        Some(_) => true,
        None => shares::starts_anywhere(broker, ctx, group_id)
            .await?
            .is_some(),
    };
    if !known {
        return Err(not_found(broker, group_id).await);
    }
    let membership = membership.unwrap_or_default();
    Ok(ShareGroupDescription {
        group_id: group_id.to_string(),
        state: ShareGroupState::of(membership.members.len()),
        epoch: membership.epoch,
        assignment_epoch: membership.epoch,
        assignor: SHARE_ASSIGNOR,
        members: membership.members,
    })
}

/// The group's start offset on each partition named (`None`: every partition it has state
/// for), at its group coordinator. Partitions of a topic that does not exist are
/// UNKNOWN_TOPIC; a partition without state has no start.
pub async fn describe_offsets(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    topics: Option<Vec<(String, Vec<u32>)>>,
) -> Result<Vec<SharePartitionStart>, BrokerError> {
    validate_group_id(group_id)?;
    if let Some(topics) = &topics {
        check_count(topics.iter().map(|(_, p)| p.len()).sum())?;
    }
    check_coordinator(broker, ctx, group_id)?;
    let starts = shares::starts_anywhere(broker, ctx, group_id).await?;
    let members = broker.share_members().group(group_id, Instant::now());
    let Some(starts) = starts.or_else(|| members.map(|_| Vec::new())) else {
        return Err(not_found(broker, group_id).await);
    };
    let Some(topics) = topics else {
        return Ok(starts
            .into_iter()
            .map(|(topic, partition, start)| SharePartitionStart {
                topic,
                partition,
                start: Ok(Some(start)),
            })
            .collect());
    };
    let by_partition: BTreeMap<(String, u32), i64> = starts
        .into_iter()
        .map(|(topic, partition, start)| ((topic, partition), start))
        .collect();
    let mut out = Vec::new();
    for (topic, partitions) in topics {
        let known = broker.topic_for(ctx, Operation::Describe, &topic);
        for partition in partitions {
            let start = match &known {
                Err(e) => Err(e.clone().at(&topic, partition)),
                Ok(t) if partition >= t.partition_count() => Err(BrokerError::new(
                    Reason::UnknownPartition,
                    format!("topic {topic:?} has no partition {partition}"),
                )
                .at(&topic, partition)),
                Ok(_) => Ok(by_partition.get(&(topic.clone(), partition)).copied()),
            };
            out.push(SharePartitionStart {
                topic: topic.clone(),
                partition,
                start,
            });
        }
    }
    Ok(out)
}

/// Moves the group's start on each partition named, at its group coordinator, when the
/// group is empty; one answer (the new start) per entry, in order.
pub async fn alter_offsets(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    resets: Vec<StartReset>,
) -> Result<Vec<Result<i64, BrokerError>>, BrokerError> {
    validate_group_id(group_id)?;
    check_count(resets.len())?;
    check_coordinator(broker, ctx, group_id)?;
    check_share_type(broker, ctx, group_id).await?;
    broker
        .share_members()
        .check_empty(group_id, Instant::now())?;
    shares::reset_anywhere(broker, ctx, group_id, resets).await
}

/// Forgets the group's state of each topic named, at its group coordinator, when the group
/// is empty; one answer per topic, in order.
pub async fn delete_offsets(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    topics: Vec<String>,
) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
    validate_group_id(group_id)?;
    check_count(topics.len())?;
    check_coordinator(broker, ctx, group_id)?;
    broker
        .share_members()
        .check_empty(group_id, Instant::now())?;
    match shares::delete_anywhere(broker, ctx, group_id, Some(topics)).await {
        Err(e) if e.reason == Reason::UnknownGroup => Err(not_found(broker, group_id).await),
        other => other,
    }
}

/// Deletes an empty share group at its group coordinator: its state and settings (at its
/// share coordinator) and its entry in the membership table. GROUP_ID_NOT_FOUND where it
/// has neither.
pub async fn delete_group(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<(), BrokerError> {
    validate_group_id(group_id)?;
    check_coordinator(broker, ctx, group_id)?;
    let now = Instant::now();
    broker.share_members().check_empty(group_id, now)?;
    let had_members = broker.share_members().group(group_id, now).is_some();
    let deleted = shares::delete_anywhere(broker, ctx, group_id, None).await;
    broker.share_members().remove_if_empty(group_id, now)?;
    match deleted {
        Ok(_) => Ok(()),
        // A group that only ever had members: nothing was stored for it.
        Err(e) if e.reason == Reason::UnknownGroup && had_members => Ok(()),
        Err(e) if e.reason == Reason::UnknownGroup => Err(not_found(broker, group_id).await),
        Err(e) => Err(e),
    }
}

/// Refuses a group id that names a consumer group and no share group (Kafka: a group has
/// one type).
async fn check_share_type(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<(), BrokerError> {
    if broker
        .share_members()
        .group(group_id, Instant::now())
        .is_some()
        || shares::starts_anywhere(broker, ctx, group_id)
            .await?
            .is_some()
    {
        return Ok(());
    }
    match is_consumer_group(broker, group_id).await {
        true => Err(not_found(broker, group_id).await),
        false => Ok(()),
    }
}

async fn is_consumer_group(broker: &Broker, group_id: &str) -> bool {
    match broker.groups() {
        Ok(groups) => groups.describe_group(group_id).await.is_ok(),
        Err(_) => false,
    }
}

/// GROUP_ID_NOT_FOUND, in Kafka's words: "not a share group" for a consumer group's id.
async fn not_found(broker: &Broker, group_id: &str) -> BrokerError {
    let message = if is_consumer_group(broker, group_id).await {
        format!("Group {group_id} is not a share group.")
    } else {
        format!("Group {group_id} not found.")
    };
    BrokerError::new(Reason::UnknownGroup, message)
}

fn check_count(n: usize) -> Result<(), BrokerError> {
    use weir_cluster::share::MAX_SHARE_ADMIN_PARTITIONS;
    if n > MAX_SHARE_ADMIN_PARTITIONS {
        return Err(BrokerError::invalid(format!(
            "a share-group admin request names {n} partitions or topics; at most {MAX_SHARE_ADMIN_PARTITIONS} are accepted"
        )));
    }
    Ok(())
}
