//! Answers that each broker knows only its part of: the groups it coordinates and what
//! its replicas take on its disk (the console's pages about the whole cluster), and the
//! offsets of the partitions it hosts (for a group coordinator that hosts no replica of
//! a partition: the group's lag there, an offset reset's bounds). The broker serving the
//! question asks the others for their reports ([`PeerReports`]: weir-grpc's internal
//! `Reports` service) and merges them with its own; it applies its caller's ACLs to the
//! whole, as to a listing of its own: a report is unfiltered, since brokers ask each
//! other as the internal principal.
//!
//! A group is described at its coordinator, which this broker asks for groups it does
//! not coordinate ([`describe_group_anywhere`], [`describe_groups_anywhere`]): the
//! console shows any group of the cluster, with its lag, whichever broker serves it.
//!
//! A broker that does not answer within [`REPORT_TIMEOUT`], or is fenced, is named in the
//! answer's `missing` and the rest is shown: a page about the cluster must not fail or
//! hang because one broker is down. A partition whose leader does not answer keeps an
//! unknown lag, and a reset of it is refused (NOT_LEADER, retriable).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::join_all;

use weir_cluster::security::Operation;

use crate::context::Listener;
use crate::groups::{GroupDescription, GroupSummary, PartitionProgress};
use crate::limits::{MAX_GROUPS_PER_REQUEST, MAX_PARTITIONS_PER_REQUEST};
use crate::replicas::{BrokerDisk, broker_disk};
use crate::share_admin::{ShareGroupListing, ShareGroupState};
use crate::shares::ShareCounts;
use crate::{Broker, BrokerError, Reason, RequestContext};

/// Longest wait for one broker's report, connecting included.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// One broker's groups: those it coordinates, and the share groups it holds state or
/// membership for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupsReport {
    pub consumer: Vec<GroupSummary>,
    pub share: Vec<ShareGroupListing>,
}

/// What [`PeerReports`] returns: the report, or why there is none (shown to the reader).
pub type ReportFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// How this broker asks another for its report, at that broker's internal address.
pub trait PeerReports: Send + Sync + std::fmt::Debug {
    fn groups<'a>(&'a self, address: &'a str) -> ReportFuture<'a, GroupsReport>;
    fn disk<'a>(&'a self, address: &'a str) -> ReportFuture<'a, BrokerDisk>;
    /// [`local_offsets`] at that broker, for at most [`MAX_PARTITIONS_PER_REQUEST`].
    fn offsets<'a>(
        &'a self,
        address: &'a str,
        partitions: Vec<(String, u32)>,
        timestamp: Option<i64>,
    ) -> ReportFuture<'a, Vec<PartitionEnds>>;
    /// [`crate::groups::describe_group`] of each of `group_ids` at that broker (at most
    /// [`MAX_GROUPS_PER_REQUEST`]), one answer each, in order.
    fn describe_groups<'a>(
        &'a self,
        address: &'a str,
        group_ids: Vec<String>,
    ) -> ReportFuture<'a, Vec<Result<GroupDescription, BrokerError>>>;
}

/// A partition's log start and high watermark, as a broker hosting it knows them, and
/// the first offset at or after a timestamp when one was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEnds {
    pub topic: String,
    pub partition: u32,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub at_timestamp: Option<i64>,
}

/// The ends of the `partitions` this broker hosts (the others are left out), with the
/// offset for `timestamp` if given: what it reports to another broker.
pub async fn local_offsets(
    broker: &Broker,
    partitions: &[(String, u32)],
    timestamp: Option<i64>,
) -> Vec<PartitionEnds> {
    let mut out = Vec::new();
    for (topic, partition) in partitions {
        let hosted = broker
            .registry()
            .topic(topic)
            .and_then(|t| t.partition(*partition));
        let Ok(p) = hosted else { continue };
        let Ok(o) = p.offsets().await else { continue };
        let at_timestamp = match timestamp {
            Some(ts) => match p.offset_for_timestamp(ts).await {
                Ok(found) => found,
                Err(_) => continue,
            },
            None => None,
        };
        out.push(PartitionEnds {
            topic: topic.clone(),
            partition: *partition,
            log_start_offset: o.log_start_offset,
            high_watermark: o.high_watermark,
            at_timestamp,
        });
    }
    out
}

/// The ends of those of `partitions` this broker hosts no replica of, asked of their
/// leaders at once, each within [`REPORT_TIMEOUT`], with the offset for `timestamp` if
/// given; a partition whose leader is unknown or did not answer is left out.
pub(crate) async fn ends_elsewhere(
    broker: &Broker,
    partitions: &[(String, u32)],
    timestamp: Option<i64>,
) -> Vec<PartitionEnds> {
    let Some(peers) = broker.peer_reports() else {
        return Vec::new();
    };
    let image = broker.registry().cluster().image();
    let mut by_leader: BTreeMap<i32, Vec<(String, u32)>> = BTreeMap::new();
    for (topic, partition) in partitions {
        let Ok(t) = broker.registry().topic(topic) else {
            continue; // deleted: nothing to ask
        };
        if t.partition(*partition).is_ok() {
            continue; // hosted here
        }
        if let Some(leader) = t.leader(*partition).filter(|l| *l >= 0) {
            by_leader
                .entry(leader)
                .or_default()
                .push((topic.clone(), *partition));
        }
    }
    // One call per leader and at most MAX_PARTITIONS_PER_REQUEST partitions each.
    let asked: Vec<(String, Vec<(String, u32)>)> = by_leader
        .into_iter()
        .filter_map(|(leader, partitions)| {
            let address = image.broker(leader)?.endpoints.internal().to_owned();
            Some((address, partitions))
        })
        .flat_map(|(address, partitions)| {
            partitions
                .chunks(MAX_PARTITIONS_PER_REQUEST)
                .map(|chunk| (address.clone(), chunk.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect();
    let answers = join_all(asked.into_iter().map(|(address, partitions)| async move {
        tokio::time::timeout(
            REPORT_TIMEOUT,
            peers.offsets(&address, partitions, timestamp),
        )
        .await
    }))
    .await;
    answers
        .into_iter()
        .filter_map(|a| a.ok()?.ok())
        .flatten()
        .collect()
}

/// Fills the high watermark and lag of the partitions in `described` that this broker
/// could not (it hosts no replica of them) from their leaders: one call per leader for
/// every group at once, each within [`REPORT_TIMEOUT`]. A partition whose leader is
/// unknown or does not answer keeps `None`.
pub(crate) async fn fill_remote_lag(broker: &Broker, described: &mut [GroupDescription]) {
    let unknown = |o: &&mut PartitionProgress| o.high_watermark.is_none();
    let mut asked: Vec<(String, u32)> = described
        .iter_mut()
        .flat_map(|d| d.offsets.iter_mut())
        .filter(unknown)
        .map(|o| (o.topic.clone(), o.partition))
        .collect();
    if asked.is_empty() {
        return;
    }
    asked.sort();
    asked.dedup();
    let ends: BTreeMap<(String, u32), (i64, i64)> = ends_elsewhere(broker, &asked, None)
        .await
        .into_iter()
        .map(|e| {
            (
                (e.topic, e.partition),
                (e.log_start_offset, e.high_watermark),
            )
        })
        .collect();
    for o in described
        .iter_mut()
        .flat_map(|d| d.offsets.iter_mut())
        .filter(unknown)
    {
        if let Some(&(log_start, hw)) = ends.get(&(o.topic.clone(), o.partition)) {
            o.high_watermark = Some(hw);
            o.lag = Some((hw - o.committed_offset.unwrap_or(log_start)).max(0));
        }
    }
}

/// The description of `group_id` at whichever broker coordinates it (here, or asked of
/// it within [`REPORT_TIMEOUT`]), and that broker's id. Authorised here, with the
/// caller's principal; the coordinator answers the broker.
pub async fn describe_group_anywhere(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<(GroupDescription, i32), BrokerError> {
    let coordinator = crate::groups::find_coordinator(broker, ctx, group_id)?;
    let node = coordinator.node_id;
    if node == broker.node_id() {
        let d = crate::groups::describe_group(broker, ctx, group_id).await?;
        return Ok((d, node));
    }
    let unanswered = |why: String| {
        BrokerError::new(
            Reason::CoordinatorNotAvailable,
            format!("broker {node} coordinates group {group_id:?} and did not answer: {why}"),
        )
    };
    let peers = broker
        .peer_reports()
        .ok_or_else(|| unanswered("this broker cannot ask other brokers".to_owned()))?;
    let asked = peers.describe_groups(coordinator.endpoints.internal(), vec![group_id.to_owned()]);
    let answers = tokio::time::timeout(REPORT_TIMEOUT, asked)
        .await
        .map_err(|_| unanswered(format!("no answer within {} s", REPORT_TIMEOUT.as_secs())))?
        .map_err(unanswered)?;
    let d = answers
        .into_iter()
        .next()
        .ok_or_else(|| unanswered("it answered no group".to_owned()))??;
    Ok((d, node))
}

/// The descriptions of `groups` (id and coordinator, as [`cluster_groups`] lists them)
/// that the caller may describe: those coordinated here described here, the others
/// asked of their coordinators at once (one call per coordinator and
/// [`MAX_GROUPS_PER_REQUEST`] groups, each within [`REPORT_TIMEOUT`]). A group whose
/// coordinator does not answer, or that moved or went since it was listed, is left out.
pub async fn describe_groups_anywhere(
    broker: &Broker,
    ctx: &RequestContext,
    groups: &[(String, i32)],
) -> Vec<GroupDescription> {
    let me = broker.node_id();
    let mut by_node: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    // Groups coordinated here are authorised by `describe_groups`; the others here,
    // since their coordinators answer the broker.
    for (id, node) in groups {
        if *node == me || broker.authorize_group(ctx, Operation::Describe, id).is_ok() {
            by_node.entry(*node).or_default().push(id.clone());
        }
    }
    let here = by_node.remove(&me).unwrap_or_default();
    let mut described = crate::groups::describe_groups(broker, ctx, &here).await;
    let Some(peers) = broker.peer_reports() else {
        return described;
    };
    let image = broker.registry().cluster().image();
    let asked: Vec<(String, Vec<String>)> = by_node
        .into_iter()
        .filter_map(|(node, ids)| Some((image.broker(node)?.endpoints.internal().to_owned(), ids)))
        .flat_map(|(address, ids)| {
            ids.chunks(MAX_GROUPS_PER_REQUEST)
                .map(|chunk| (address.clone(), chunk.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect();
    let answers = join_all(asked.into_iter().map(|(address, ids)| async move {
        tokio::time::timeout(REPORT_TIMEOUT, peers.describe_groups(&address, ids)).await
    }))
    .await;
    described.extend(
        answers
            .into_iter()
            .filter_map(|a| a.ok()?.ok())
            .flatten()
            .filter_map(Result::ok),
    );
    described
}

/// The [`ShareCounts`] of each of `queues` (a topic and the share group of its name), one
/// answer each in order: a queue list's ready and unacknowledged counts, whichever broker
/// serves it. Each group is counted at its share coordinator (here, or asked of it over
/// the internal listener), all at once and each within [`REPORT_TIMEOUT`]; a group
/// without state yet (nobody fetched) has every record of its topic ready, from the log
/// ends of its partitions' replicas here or their leaders. Describe on the group and on
/// the topic.
pub async fn queue_counts(
    broker: &Broker,
    ctx: &RequestContext,
    queues: &[String],
) -> Vec<Result<ShareCounts, BrokerError>> {
    let counted = join_all(queues.iter().map(|id| async move {
        broker.authorize_topic(ctx, Operation::Describe, id)?;
        tokio::time::timeout(
            REPORT_TIMEOUT,
            crate::shares::counts_anywhere(broker, ctx, id),
        )
        .await
        .unwrap_or_else(|_| {
            Err(BrokerError::new(
                Reason::CoordinatorNotAvailable,
                format!(
                    "the share coordinator of {id:?} did not answer within {} s",
                    REPORT_TIMEOUT.as_secs()
                ),
            ))
        })
    }))
    .await;
    // The queues without state: every record of their partitions is ready.
    let image = broker.registry().cluster().image();
    let unread: Vec<(String, u32)> = queues
        .iter()
        .zip(&counted)
        .filter(|(_, c)| matches!(c, Ok(None)))
        .filter_map(|(q, _)| image.topic(q))
        .flat_map(|t| (0..t.partitions.len() as u32).map(|p| (t.name.clone(), p)))
        .collect();
    let mut ends = local_offsets(broker, &unread, None).await;
    ends.extend(ends_elsewhere(broker, &unread, None).await);
    let mut ready: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &ends {
        *ready.entry(e.topic.as_str()).or_default() +=
            u64::try_from(e.high_watermark - e.log_start_offset).unwrap_or(0);
    }
    queues
        .iter()
        .zip(counted)
        .map(|(q, c)| {
            c.map(|c| {
                c.unwrap_or(ShareCounts {
                    ready: ready.get(q.as_str()).copied().unwrap_or(0),
                    ..ShareCounts::default()
                })
            })
        })
        .collect()
}

/// Each of `group_ids` as this broker, its coordinator, describes it, one answer each in
/// order, with the partitions' leaders asked once for them all: what it reports to
/// another broker ([`describe_groups_anywhere`] there).
pub async fn local_descriptions(
    broker: &Broker,
    group_ids: &[String],
) -> Vec<Result<GroupDescription, BrokerError>> {
    let coordinator = match broker.groups() {
        Ok(c) => c,
        Err(e) => return group_ids.iter().map(|_| Err(e.clone())).collect(),
    };
    // Each answer is an index into `found` or the group's error; `found` gets its lag
    // filled in one pass.
    let mut found = Vec::new();
    let mut answers = Vec::with_capacity(group_ids.len());
    for id in group_ids {
        answers.push(match coordinator.describe_group(id).await {
            Ok(d) => {
                found.push(d);
                Ok(found.len() - 1)
            }
            Err(e) => Err(BrokerError::from(e)),
        });
    }
    fill_remote_lag(broker, &mut found).await;
    let mut found: Vec<Option<GroupDescription>> = found.into_iter().map(Some).collect();
    answers
        .into_iter()
        .map(|a| a.map(|i| found[i].take().expect("each description is answered once")))
        .collect()
}

/// This broker's groups, unfiltered: what it reports to another broker.
pub fn local_groups(broker: &Broker) -> Result<GroupsReport, BrokerError> {
    let ctx = internal();
    Ok(GroupsReport {
        consumer: crate::groups::list_groups(broker, &ctx)?,
        share: crate::share_admin::list_groups(broker, &ctx)?,
    })
}

/// This broker's disk, every topic: what it reports to another broker.
pub async fn local_disk(broker: &Broker) -> BrokerDisk {
    broker_disk(broker, &internal()).await
}

/// A broker whose report is not in an answer, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub node: i32,
    pub why: String,
}

/// A consumer group of the cluster and the broker that coordinates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterGroup {
    pub group: GroupSummary,
    pub coordinator: i32,
}

/// A share group of the cluster: its members summed over the brokers that know them (a
/// member heartbeats to one), and the broker holding its state, if one reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterShareGroup {
    pub listing: ShareGroupListing,
    pub state_held_by: Option<i32>,
}

/// The groups of every broker that answered, as `ctx`'s principal may list them, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterGroups {
    pub consumer: Vec<ClusterGroup>,
    pub share: Vec<ClusterShareGroup>,
    pub missing: Vec<Missing>,
}

/// Every broker's groups (see the module docs). Fails only where this broker cannot list
/// its own (still joining its cluster).
pub async fn cluster_groups(
    broker: &Broker,
    ctx: &RequestContext,
) -> Result<ClusterGroups, BrokerError> {
    let own = local_groups(broker)?;
    let (reports, missing) = gather(broker, own, |reports, address| reports.groups(address)).await;
    let visible = crate::groups::listed_group_filter(broker, ctx);
    let (consumer, share) = merge_groups(reports, visible);
    Ok(ClusterGroups {
        consumer,
        share,
        missing,
    })
}

/// Every broker's groups as one listing, by id, with only the groups `visible` keeps. A
/// consumer group two brokers list (during a coordinator move) is the one with more
/// members, which its members reach; a share group's members are summed (each member
/// heartbeats to one broker).
fn merge_groups(
    reports: Vec<(i32, GroupsReport)>,
    visible: impl Fn(&str) -> bool,
) -> (Vec<ClusterGroup>, Vec<ClusterShareGroup>) {
    let mut consumer: BTreeMap<String, ClusterGroup> = BTreeMap::new();
    let mut share: BTreeMap<String, ClusterShareGroup> = BTreeMap::new();
    for (node, report) in reports {
        for group in report.consumer.into_iter().filter(|g| visible(&g.group_id)) {
            let newer = ClusterGroup {
                group,
                coordinator: node,
            };
            consumer
                .entry(newer.group.group_id.clone())
                .and_modify(|known| {
                    if newer.group.members > known.group.members {
                        *known = newer.clone();
                    }
                })
                .or_insert(newer);
        }
        for listing in report.share.into_iter().filter(|g| visible(&g.group_id)) {
            let held = listing.has_state.then_some(node);
            share
                .entry(listing.group_id.clone())
                .and_modify(|known| {
                    known.listing.members += listing.members;
                    known.listing.state = ShareGroupState::of(known.listing.members);
                    known.listing.has_state |= listing.has_state;
                    known.state_held_by = known.state_held_by.or(held);
                })
                .or_insert(ClusterShareGroup {
                    listing,
                    state_held_by: held,
                });
        }
    }
    (
        consumer.into_values().collect(),
        share.into_values().collect(),
    )
}

/// Each broker's disk, with the topics `ctx`'s principal may describe, by node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterDisk {
    pub brokers: BTreeMap<i32, BrokerDisk>,
    pub missing: Vec<Missing>,
}

impl ClusterDisk {
    /// Bytes of `topic`'s replicas on every broker that answered.
    pub fn topic_bytes(&self, topic: &str) -> u64 {
        self.brokers
            .values()
            .filter_map(|d| d.topics.get(topic))
            .map(|t| t.bytes)
            .sum()
    }
}

/// Every broker's disk use (see the module docs).
pub async fn cluster_disk(broker: &Broker, ctx: &RequestContext) -> ClusterDisk {
    let own = local_disk(broker).await;
    let (reports, missing) = gather(broker, own, |reports, address| reports.disk(address)).await;
    let visible = |topic: &str| {
        broker.may(
            ctx,
            weir_cluster::security::Operation::Describe,
            weir_cluster::security::ResourceType::Topic,
            topic,
        )
    };
    ClusterDisk {
        brokers: reports
            .into_iter()
            .map(|(node, disk)| (node, disk.only(visible)))
            .collect(),
        missing,
    }
}

/// `own` report and those of every other registered broker, asked at once, each within
/// [`REPORT_TIMEOUT`]; the brokers left out, and why. A fenced broker (dead, cut off or
/// stopping) is not asked. Without a [`PeerReports`] (a broker serving alone) only `own`.
async fn gather<'b, T, F>(broker: &'b Broker, own: T, ask: F) -> (Vec<(i32, T)>, Vec<Missing>)
where
    F: for<'a> Fn(&'a dyn PeerReports, &'a str) -> ReportFuture<'a, T>,
{
    let me = broker.node_id();
    let image = broker.registry().cluster().image();
    let others: Vec<(i32, bool, String)> = image
        .brokers()
        .filter(|b| b.node != me)
        .map(|b| {
            (
                b.node,
                b.fenced || b.shutting_down,
                b.endpoints.internal().to_owned(),
            )
        })
        .collect();
    let mut reports = vec![(me, own)];
    let mut missing = Vec::new();
    let Some(peers) = broker.peer_reports() else {
        missing.extend(others.into_iter().map(|(node, _, _)| Missing {
            node,
            why: "this broker cannot ask other brokers".to_owned(),
        }));
        return (reports, missing);
    };
    let mut asked = Vec::new();
    for (node, fenced, address) in &others {
        if *fenced {
            missing.push(Missing {
                node: *node,
                why: "fenced: not heartbeating to the controller".to_owned(),
            });
        } else {
            asked.push((*node, address.as_str()));
        }
    }
    let answers =
        join_all(asked.iter().map(|(_, address)| {
            tokio::time::timeout(REPORT_TIMEOUT, ask(peers.as_ref(), address))
        }))
        .await;
    for ((node, _), answer) in asked.iter().zip(answers) {
        match answer {
            Ok(Ok(report)) => reports.push((*node, report)),
            Ok(Err(why)) => missing.push(Missing { node: *node, why }),
            Err(_) => missing.push(Missing {
                node: *node,
                why: format!("no answer within {} s", REPORT_TIMEOUT.as_secs()),
            }),
        }
    }
    (reports, missing)
}

fn internal() -> RequestContext {
    RequestContext::anonymous(Listener::INTERNAL, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::{GroupProtocol, GroupState};

    fn group(id: &str, members: usize) -> GroupSummary {
        GroupSummary {
            group_id: id.into(),
            state: GroupState::Stable,
            members,
            protocol: GroupProtocol::Consumer,
        }
    }

    fn share(id: &str, members: usize, has_state: bool) -> ShareGroupListing {
        ShareGroupListing {
            group_id: id.into(),
            state: ShareGroupState::of(members),
            members,
            has_state,
        }
    }

    #[test]
    fn reports_merge_by_id_within_what_the_caller_may_see() {
        let reports = vec![
            (
                1,
                GroupsReport {
                    consumer: vec![group("billing", 0), group("secret", 2)],
                    share: vec![share("queue", 0, true)],
                },
            ),
            (
                2,
                GroupsReport {
                    // Moving from broker 1: its members reach broker 2 now.
                    consumer: vec![group("billing", 3), group("orders", 1)],
                    share: vec![share("queue", 2, false)],
                },
            ),
        ];
        let (consumer, shares) = merge_groups(reports, |id| id != "secret");
        let listed: Vec<(&str, usize, i32)> = consumer
            .iter()
            .map(|g| (g.group.group_id.as_str(), g.group.members, g.coordinator))
            .collect();
        assert_eq!(listed, [("billing", 3, 2), ("orders", 1, 2)]);
        assert_eq!(
            shares,
            [ClusterShareGroup {
                listing: share("queue", 2, true),
                state_held_by: Some(1),
            }]
        );
    }
}
