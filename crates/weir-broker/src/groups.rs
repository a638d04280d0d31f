//! Consumer groups as every protocol's clients ask for them: finding a group's
//! coordinator, membership (KIP-848 heartbeats; the classic protocol's JoinGroup,
//! SyncGroup, Heartbeat and LeaveGroup), committing and fetching offsets, and the
//! administration of groups (list, describe, delete, reset). Each adapter decodes its
//! request into these domain requests, calls them, and encodes the answer; the rules
//! (and the request limits) live here and in `weir_cluster::group`, never in an adapter.
//!
//! Errors are [`BrokerError`]s: a whole-request one where the protocol answers the
//! request as a whole (the member is unknown, this broker is not the coordinator), and
//! one per partition where the protocols have them (a commit naming an unknown
//! partition).

use std::collections::HashSet;
use weir_cluster::security::{CLUSTER_RESOURCE_NAME, Operation, ResourceType};

use weir_cluster::controller::records::Endpoints;
use weir_cluster::group::{self, MAX_COMMIT_METADATA_BYTES, OFFSETS_TOPIC};
pub use weir_cluster::group::{
    ClassicDescription, ClassicMemberDescription, ClassicState, CommittedOffset, GroupDescription,
    GroupProtocol, GroupState, GroupSummary, Heartbeat, HeartbeatOutcome, JoinAnswer, JoinGroup,
    JoinOutcome, OffsetCommit, OffsetReset, PartitionProgress, ResetSpec, SyncAnswer, SyncGroup,
    TopicPartitions,
};

use crate::limits::{MAX_GROUPS_PER_REQUEST, MAX_PARTITIONS_PER_REQUEST};
use crate::{Broker, BrokerError, Reason, RequestContext};

/// A group's coordinator: the broker leading the group's `__consumer_offsets` partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    pub node_id: i32,
    /// The `__consumer_offsets` partition holding the group's records.
    pub partition: u32,
    /// The coordinator broker's advertised endpoints; the adapter picks the one its
    /// clients use.
    pub endpoints: Endpoints,
}

/// The coordinator of `group_id` as this broker's metadata says:
/// COORDINATOR_NOT_AVAILABLE while its `__consumer_offsets` partition has no leader (or
/// the topic is not created yet, or the leader is not a registered broker).
pub fn find_coordinator(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<Coordinator, BrokerError> {
    broker.authorize_group(ctx, Operation::Describe, group_id)?;
    let found = group::find_coordinator(broker.registry(), group_id);
    coordinator_at(broker, "group", group_id, OFFSETS_TOPIC, found)
}

/// The coordinator a lookup `found` (the internal topic's partition of the group and its
/// leader) names, with its endpoints; COORDINATOR_NOT_AVAILABLE while `topic` is not
/// created yet or the partition has no leader this broker knows of. For consumer groups
/// and share groups alike (`kind` names which, in the message).
pub(crate) fn coordinator_at<E: Into<BrokerError>>(
    broker: &Broker,
    kind: &str,
    group_id: &str,
    topic: &str,
    found: Result<(u32, i32), E>,
) -> Result<Coordinator, BrokerError> {
    let no_coordinator = |why: String| {
        BrokerError::new(
            Reason::CoordinatorNotAvailable,
            format!("{kind} {group_id:?} has no coordinator right now ({why}); retry shortly"),
        )
    };
    let (partition, leader) = match found.map_err(Into::into) {
        Ok(found) => found,
        // Not created yet: the first broker to open its coordinator creates it.
        Err(e) if e.reason == Reason::UnknownTopic => {
            return Err(no_coordinator(format!("{topic} is not created yet")));
        }
        Err(e) => return Err(e),
    };
    let image = broker.registry().cluster().image();
    let endpoints = (leader >= 0)
        .then(|| image.broker(leader))
        .flatten()
        .map(|b| b.endpoints.clone())
        .ok_or_else(|| {
            no_coordinator(format!(
                "partition {partition} of {topic} has no leader this broker knows of"
            ))
        })?;
    Ok(Coordinator {
        node_id: leader,
        partition,
        endpoints,
    })
}

/// A KIP-848 membership heartbeat (join with epoch 0, leave with -1). An empty
/// `client_id` or `client_host` is filled from the request's context.
pub async fn heartbeat(
    broker: &Broker,
    ctx: &RequestContext,
    mut req: Heartbeat,
) -> Result<HeartbeatOutcome, BrokerError> {
    broker.authorize_group(ctx, Operation::Read, &req.group_id)?;
    fill_client(ctx, &mut req.client_id, &mut req.client_host);
    Ok(broker.groups()?.heartbeat(req).await?)
}

/// The member's client id and host from the request's context where the request did
/// not say.
pub(crate) fn fill_client(ctx: &RequestContext, client_id: &mut String, client_host: &mut String) {
    if client_id.is_empty()
        && let Some(id) = &ctx.client_id
    {
        client_id.clone_from(id);
    }
    if client_host.is_empty()
        && let Some(peer) = ctx.peer
    {
        *client_host = peer.ip().to_string();
    }
}

/// A classic JoinGroup: answered when the group's join phase ends (every member
/// joined, or the rebalance timeout), or at once with MEMBER_ID_REQUIRED for a new
/// member of JoinGroup v4+. An empty `client_id` or `client_host` is filled from the
/// request's context.
pub async fn join_group(
    broker: &Broker,
    ctx: &RequestContext,
    mut req: JoinGroup,
) -> Result<JoinOutcome, BrokerError> {
    broker.authorize_group(ctx, Operation::Read, &req.group_id)?;
    fill_client(ctx, &mut req.client_id, &mut req.client_host);
    Ok(broker.groups()?.join_group(req).await?)
}

/// A classic SyncGroup: the member's assignment, once the leader has sent the
/// group's.
pub async fn sync_group(
    broker: &Broker,
    ctx: &RequestContext,
    req: SyncGroup,
) -> Result<SyncAnswer, BrokerError> {
    broker.authorize_group(ctx, Operation::Read, &req.group_id)?;
    Ok(broker.groups()?.sync_group(req).await?)
}

/// A classic Heartbeat: REBALANCE_IN_PROGRESS tells the member to join again.
/// A static member (`instance_id`) whose instance id another member id took is told
/// FENCED_INSTANCE_ID.
pub fn classic_heartbeat(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> Result<(), BrokerError> {
    broker.authorize_group(ctx, Operation::Read, group_id)?;
    Ok(broker
        .groups()?
        .classic_heartbeat(group_id, member_id, instance_id, generation)?)
}

/// A classic LeaveGroup of one or more members, each a member id and (LeaveGroup v3+)
/// its `group.instance.id`: one answer each, in order.
pub async fn leave_group(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    members: &[(String, Option<String>)],
) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
    broker.authorize_group(ctx, Operation::Read, group_id)?;
    if members.len() > MAX_GROUPS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "a leave names {} members; at most {MAX_GROUPS_PER_REQUEST} are accepted",
            members.len()
        )));
    }
    Ok(broker
        .groups()?
        .leave_group(group_id, members)
        .await?
        .into_iter()
        .map(|r| r.map_err(BrokerError::from))
        .collect())
}

/// An offset commit.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    /// The committing member's id and epoch (KIP-848) or generation (classic); `None`
    /// (or an empty id, or a negative epoch or generation, as Kafka's clients send
    /// without group membership) commits from outside the group (an admin tool, a
    /// consumer that assigns itself partitions), allowed only while the group has no
    /// members.
    pub member: Option<(String, i32)>,
    pub offsets: Vec<OffsetCommit>,
    /// All or none: a partition that cannot be committed fails the whole request
    /// (Weir's gRPC API). Otherwise (Kafka's OffsetCommit) such partitions are answered
    /// with their errors and the others are committed, together.
    pub atomic: bool,
}

/// One partition's answer to a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCommitted {
    pub topic: String,
    pub partition: u32,
    pub result: Result<(), BrokerError>,
}

/// Commits offsets, durably: the partitions that can be committed are written in one
/// batch, all or none. A group-wide refusal (unknown member, stale epoch or generation,
/// a rebalance in progress, not the coordinator) is the error; a partition's own
/// problem (unknown topic or partition, metadata over [`MAX_COMMIT_METADATA_BYTES`], a
/// negative offset) is its answer, or the error if `atomic`.
pub async fn commit_offsets(
    broker: &Broker,
    ctx: &RequestContext,
    req: CommitRequest,
) -> Result<Vec<PartitionCommitted>, BrokerError> {
    if req.offsets.len() > MAX_PARTITIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "a commit names {} partitions; at most {MAX_PARTITIONS_PER_REQUEST} are accepted",
            req.offsets.len()
        )));
    }
    group::validate_group_id(&req.group_id)?;
    broker.authorize_group(ctx, Operation::Read, &req.group_id)?;
    let coordinator = broker.groups()?;
    let mut answers = Vec::with_capacity(req.offsets.len());
    let mut valid = Vec::with_capacity(req.offsets.len());
    for o in req.offsets {
        match check_commit(broker, ctx, &o) {
            Ok(()) => {
                answers.push((o.topic.clone(), o.partition, None));
                valid.push(o);
            }
            Err(e) if req.atomic => return Err(e),
            Err(e) => answers.push((o.topic, o.partition, Some(e))),
        }
    }
    let count = valid.len() as u64;
    let member = req
        .member
        .as_ref()
        .filter(|(id, epoch)| !id.is_empty() && *epoch >= 0)
        .map(|(id, epoch)| (id.as_str(), *epoch));
    coordinator
        .commit_offsets(&req.group_id, member, valid)
        .await?;
    broker.metrics().count_commits(count);
    Ok(answers
        .into_iter()
        .map(|(topic, partition, error)| PartitionCommitted {
            topic,
            partition,
            result: error.map_or(Ok(()), Err),
        })
        .collect())
}

/// One partition of a commit, checked as the coordinator would refuse it (so that a
/// non-atomic commit can answer it alone).
pub(crate) fn check_commit(
    broker: &Broker,
    ctx: &RequestContext,
    o: &OffsetCommit,
) -> Result<(), BrokerError> {
    let at = |e: BrokerError| e.at(&o.topic, o.partition);
    broker
        .authorize_topic(ctx, Operation::Read, &o.topic)
        .map_err(at)?;
    if o.offset < 0 {
        return Err(at(BrokerError::invalid(format!(
            "offset {} for {}/{} is negative; commit the next offset to consume",
            o.offset, o.topic, o.partition
        ))));
    }
    if o.metadata.len() > MAX_COMMIT_METADATA_BYTES {
        return Err(at(BrokerError::new(
            Reason::MetadataTooLarge,
            format!(
                "metadata for {}/{} is {} bytes; the limit is {MAX_COMMIT_METADATA_BYTES}",
                o.topic,
                o.partition,
                o.metadata.len()
            ),
        )));
    }
    let topic = broker
        .registry()
        .topic(&o.topic)
        .map_err(|e| at(e.into()))?;
    // The partition exists: this broker need not host it (a coordinator holds offsets
    // of partitions led anywhere, as Kafka's).
    let count = topic.partition_count();
    if o.partition >= count {
        return Err(at(weir_cluster::ClusterError::UnknownPartition {
            topic: o.topic.clone(),
            partition: o.partition,
            count,
        }
        .into()));
    }
    Ok(())
}

/// The committed offsets of `group_id`: of the partitions named (an offset of `None`
/// where there is none), or every partition the group has an offset for. A group that
/// does not exist has no offsets.
pub async fn fetch_offsets(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    partitions: Option<Vec<(String, u32)>>,
) -> Result<Vec<CommittedOffset>, BrokerError> {
    broker.authorize_group(ctx, Operation::Describe, group_id)?;
    if let Some(list) = &partitions
        && list.len() > MAX_PARTITIONS_PER_REQUEST
    {
        return Err(BrokerError::invalid(format!(
            "an offset fetch names {} partitions; at most {MAX_PARTITIONS_PER_REQUEST} are accepted",
            list.len()
        )));
    }
    // As in Kafka, offsets of topics the principal may not describe are left out.
    let mut offsets = broker.groups()?.fetch_offsets(group_id, partitions).await?;
    offsets.retain(|o| broker.may(ctx, Operation::Describe, ResourceType::Topic, &o.topic));
    Ok(offsets)
}

/// Checks the number of groups one request names.
pub fn check_group_count(count: usize, what: &str) -> Result<(), BrokerError> {
    if count > MAX_GROUPS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "{what} names {count} groups; at most {MAX_GROUPS_PER_REQUEST} are accepted"
        )));
    }
    Ok(())
}

/// Every group this broker coordinates, by id.
pub fn list_groups(
    broker: &Broker,
    ctx: &RequestContext,
) -> Result<Vec<GroupSummary>, BrokerError> {
    let mut groups = broker.groups()?.list_groups();
    let visible = listed_group_filter(broker, ctx);
    groups.retain(|g| visible(&g.group_id));
    Ok(groups)
}

/// Which groups a listing shows `ctx`'s principal, consumer and share groups alike: every
/// group with Describe on the cluster, otherwise the groups it may describe, as in Kafka.
pub(crate) fn listed_group_filter<'a>(
    broker: &'a Broker,
    ctx: &'a RequestContext,
) -> impl Fn(&str) -> bool + 'a {
    let everything = broker.may(
        ctx,
        Operation::Describe,
        ResourceType::Cluster,
        CLUSTER_RESOURCE_NAME,
    );
    move |group_id| {
        everything || broker.may(ctx, Operation::Describe, ResourceType::Group, group_id)
    }
}

/// A group's state, members and the progress of its partitions; UNKNOWN_GROUP if it
/// does not exist.
pub async fn describe_group(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<GroupDescription, BrokerError> {
    broker.authorize_group(ctx, Operation::Describe, group_id)?;
    let mut description = broker.groups()?.describe_group(group_id).await?;
    crate::cluster_reports::fill_remote_lag(broker, std::slice::from_mut(&mut description)).await;
    Ok(description)
}

/// [`describe_group`] of each of `group_ids` this broker coordinates and the caller may
/// describe (the others are left out), with the partitions' leaders asked once for them
/// all: a page or a sampler describing many groups makes one call per leader, not one
/// per group.
pub async fn describe_groups(
    broker: &Broker,
    ctx: &RequestContext,
    group_ids: &[String],
) -> Vec<GroupDescription> {
    let Ok(coordinator) = broker.groups() else {
        return Vec::new();
    };
    let mut described = Vec::new();
    for id in group_ids {
        if broker.authorize_group(ctx, Operation::Describe, id).is_ok()
            && let Ok(d) = coordinator.describe_group(id).await
        {
            described.push(d);
        }
    }
    crate::cluster_reports::fill_remote_lag(broker, &mut described).await;
    described
}

/// Deletes a group without members and its committed offsets.
pub async fn delete_group(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<(), BrokerError> {
    broker.authorize_group(ctx, Operation::Delete, group_id)?;
    Ok(broker.groups()?.delete_group(group_id).await?)
}

/// Deletes each group named (a group named twice is deleted once and answered
/// twice); each answer in request order. A group id the consumer group coordinator does
/// not know is deleted as a share group (`share_admin::delete_group`).
pub async fn delete_groups(
    broker: &Broker,
    ctx: &RequestContext,
    group_ids: &[String],
) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
    check_group_count(group_ids.len(), "a group deletion")?;
    let mut done: HashSet<&str> = HashSet::with_capacity(group_ids.len());
    let mut answers = Vec::with_capacity(group_ids.len());
    for id in group_ids {
        answers.push(if done.insert(id) {
            match delete_group(broker, ctx, id).await {
                Err(e) if e.reason == Reason::UnknownGroup => {
                    crate::share_admin::delete_group(broker, ctx, id).await
                }
                other => other,
            }
        } else {
            Ok(())
        });
    }
    Ok(answers)
}

/// Deletes the committed offsets of `partitions` of `group_id` (Kafka's OffsetDelete),
/// authorised as Kafka does: DELETE on the group (the request's error), READ on each
/// topic (the partition's). One answer per partition, in order: a topic that does not
/// exist is UNKNOWN_TOPIC, one the group's members subscribe to
/// GROUP_SUBSCRIBED_TO_TOPIC (see `GroupCoordinator::delete_offsets`).
pub async fn delete_offsets(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    partitions: Vec<(String, u32)>,
) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
    if partitions.len() > MAX_PARTITIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "an offset deletion names {} partitions; at most {MAX_PARTITIONS_PER_REQUEST} are \
             accepted",
            partitions.len()
        )));
    }
    group::validate_group_id(group_id)?;
    broker.authorize_group(ctx, Operation::Delete, group_id)?;
    let mut answers: Vec<Option<BrokerError>> = Vec::with_capacity(partitions.len());
    let mut valid = Vec::with_capacity(partitions.len());
    for (topic, partition) in &partitions {
        let at = |e: BrokerError| e.at(topic, *partition);
        let checked = broker
            .authorize_topic(ctx, Operation::Read, topic)
            .and_then(|()| {
                broker
                    .registry()
                    .topic(topic)
                    .map(|_| ())
                    .map_err(Into::into)
            });
        match checked {
            Ok(()) => {
                answers.push(None);
                valid.push((topic.clone(), *partition));
            }
            Err(e) => answers.push(Some(at(e))),
        }
    }
    let mut deleted = broker
        .groups()?
        .delete_offsets(group_id, valid)
        .await?
        .into_iter();
    Ok(partitions
        .iter()
        .zip(answers)
        .map(|((topic, partition), refused)| match refused {
            Some(e) => Err(e),
            None => deleted
                .next()
                .unwrap_or(Ok(()))
                .map_err(|e| BrokerError::from(e).at(topic, *partition)),
        })
        .collect())
}

/// Moves the committed offsets of a group without members (see
/// `GroupCoordinator::reset_offsets`). A topic with `None` means all its partitions.
pub async fn reset_offsets(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    targets: Vec<(String, Option<Vec<u32>>)>,
    spec: ResetSpec,
    dry_run: bool,
) -> Result<Vec<OffsetReset>, BrokerError> {
    broker.authorize_group(ctx, Operation::Read, group_id)?;
    for (topic, _) in &targets {
        broker.authorize_topic(ctx, Operation::Read, topic)?;
    }
    let named: usize = targets
        .iter()
        .map(|(_, p)| p.as_ref().map_or(0, Vec::len))
        .sum();
    if named > MAX_PARTITIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "an offset reset names {named} partitions; at most {MAX_PARTITIONS_PER_REQUEST} are accepted"
        )));
    }
    let coordinator = broker.groups()?;
    // The bounds of the partitions this coordinator hosts no replica of, from their
    // leaders; the coordinator reads the others itself.
    let mut named = Vec::new();
    for (topic, partitions) in &targets {
        let Ok(t) = broker.registry().topic(topic) else {
            continue; // the coordinator answers UNKNOWN_TOPIC
        };
        match partitions {
            Some(list) if !list.is_empty() => {
                named.extend(list.iter().map(|p| (topic.clone(), *p)));
            }
            _ => named.extend((0..t.partition_count()).map(|p| (topic.clone(), p))),
        }
    }
    let at = match spec {
        ResetSpec::Timestamp(ts) => Some(ts),
        _ => None,
    };
    let elsewhere = crate::cluster_reports::ends_elsewhere(broker, &named, at)
        .await
        .into_iter()
        .map(|e| {
            let bounds = group::ResetBounds {
                log_start_offset: e.log_start_offset,
                high_watermark: e.high_watermark,
                at_timestamp: e.at_timestamp,
            };
            ((e.topic, e.partition), bounds)
        })
        .collect();
    Ok(coordinator
        .reset_offsets(group_id, targets, spec, dry_run, &elsewhere)
        .await?)
}
