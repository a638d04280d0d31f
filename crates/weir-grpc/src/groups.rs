//! The Groups service (membership heartbeats, offset commits and fetches) and the group
//! calls of the Admin service: decode, call `weir_broker::groups` (which holds every
//! rule and limit), encode.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use weir_broker::groups::{self as core, CommitRequest};
use weir_broker::limits::MAX_PARTITIONS_PER_REQUEST;
use weir_cluster::group::{GroupState, Heartbeat, OffsetCommit, ResetSpec};
use weir_proto::v1::{
    CommitOffsetsRequest, CommitOffsetsResponse, CommittedOffset, DeleteGroupRequest,
    DeleteGroupResponse, DescribeGroupRequest, DescribeGroupResponse, FetchOffsetsRequest,
    FetchOffsetsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupMemberDescription,
    GroupPartitionOffset, GroupState as ProtoGroupState, GroupSummary, HeartbeatRequest,
    HeartbeatResponse, ListGroupsRequest, ListGroupsResponse, OffsetPosition, PartitionOffsetReset,
    ResetOffsetsRequest, ResetOffsetsResponse, TopicOffsetCommit, TopicPartitions,
    groups_server::Groups, offset_reset_spec,
};

use crate::page::{self, Listing};
use crate::status::broker_status;
use crate::{Broker, grpc_context};

/// The Groups gRPC service. FindCoordinator names the coordinator by its address for
/// the listener the request came in on (the request context's).
#[derive(Debug, Clone)]
pub struct GroupsService {
    broker: Arc<Broker>,
}

impl GroupsService {
    pub(crate) fn new(broker: Arc<Broker>) -> GroupsService {
        GroupsService { broker }
    }
}

/// `topic -> partitions` as the API lists them, by topic.
fn topic_partitions(map: BTreeMap<String, Vec<u32>>) -> Vec<TopicPartitions> {
    map.into_iter()
        .map(|(topic, mut partitions)| {
            partitions.sort_unstable();
            TopicPartitions { topic, partitions }
        })
        .collect()
}

fn merge(
    mut a: BTreeMap<String, Vec<u32>>,
    b: BTreeMap<String, Vec<u32>>,
) -> BTreeMap<String, Vec<u32>> {
    for (topic, partitions) in b {
        let list = a.entry(topic).or_default();
        list.extend(partitions);
        list.sort_unstable();
        list.dedup();
    }
    a
}

fn owned_map(list: Vec<TopicPartitions>) -> BTreeMap<String, Vec<u32>> {
    let mut map: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for tp in list {
        map.entry(tp.topic).or_default().extend(tp.partitions);
    }
    map
}

/// A commit's offsets as the core takes them (Groups.CommitOffsets and
/// Transactions.CommitOffsets).
pub(crate) fn offset_commits(topics: Vec<TopicOffsetCommit>) -> Vec<OffsetCommit> {
    let count: usize = topics.iter().map(|t| t.partitions.len()).sum();
    // Counted before the copy; the core checks the same limit.
    let mut offsets = Vec::with_capacity(count.min(MAX_PARTITIONS_PER_REQUEST + 1));
    for topic in topics {
        for p in topic.partitions {
            offsets.push(OffsetCommit {
                topic: topic.topic.clone(),
                partition: p.partition,
                offset: p.offset,
                metadata: p.metadata,
                // Weir's gRPC commit carries no leader epoch.
                leader_epoch: None,
            });
        }
    }
    offsets
}

#[tonic::async_trait]
impl Groups for GroupsService {
    async fn find_coordinator(
        &self,
        request: Request<FindCoordinatorRequest>,
    ) -> Result<Response<FindCoordinatorResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("FindCoordinator");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let found = match weir_proto::v1::CoordinatorType::try_from(req.r#type) {
            Ok(weir_proto::v1::CoordinatorType::Group) => {
                core::find_coordinator(&self.broker.core, &ctx, &req.group_id)
            }
            Ok(weir_proto::v1::CoordinatorType::Share) => {
                weir_broker::shares::find_coordinator(&self.broker.core, &ctx, &req.group_id)
            }
            Ok(weir_proto::v1::CoordinatorType::Transaction) => {
                weir_broker::transactions::find_coordinator(&self.broker.core, &ctx, &req.group_id)
            }
            Err(_) => Err(weir_broker::BrokerError::new(
                weir_broker::Reason::InvalidRequest,
                format!(
                    "coordinator type {} is not GROUP, SHARE or TRANSACTION",
                    req.r#type
                ),
            )),
        }
        .map_err(broker_status)?;
        let address =
            weir_broker::metadata::advertised(&found.endpoints, ctx.listener).unwrap_or("");
        let (host, port) = weir_broker::metadata::split_host_port(address)
            .map(|(h, p)| (h.to_string(), u32::from(p)))
            .unwrap_or_else(|| (address.to_owned(), 0));
        Ok(Response::new(FindCoordinatorResponse {
            broker_id: found.node_id,
            host,
            port,
            partition: found.partition,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("Heartbeat");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let heartbeat = Heartbeat {
            group_id: req.group_id,
            member_id: req.member_id,
            member_epoch: req.member_epoch,
            client_id: req.client_id,
            // The peer's address, from the context.
            client_host: String::new(),
            topics: req.topics,
            topic_regex: (!req.topic_regex.is_empty()).then_some(req.topic_regex),
            assignor: (!req.assignor.is_empty()).then_some(req.assignor),
            owned: owned_map(req.owned_partitions),
            owned_unchanged: false,
            session_timeout: (req.session_timeout_ms > 0)
                .then(|| Duration::from_millis(req.session_timeout_ms.into())),
        };
        let outcome = core::heartbeat(&self.broker.core, &ctx, heartbeat)
            .await
            .map_err(broker_status)?;
        Ok(Response::new(HeartbeatResponse {
            member_id: outcome.member_id,
            member_epoch: outcome.member_epoch,
            heartbeat_interval_ms: millis(outcome.heartbeat_interval),
            assignment: topic_partitions(outcome.assignment.unwrap_or_default()),
            group_epoch: outcome.group_epoch,
            session_timeout_ms: millis(outcome.session_timeout),
        }))
    }

    async fn commit_offsets(
        &self,
        request: Request<CommitOffsetsRequest>,
    ) -> Result<Response<CommitOffsetsResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("CommitOffsets");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let commit = CommitRequest {
            group_id: req.group_id,
            member: (!req.member_id.is_empty()).then_some((req.member_id, req.member_epoch)),
            offsets: offset_commits(req.topics),
            atomic: true,
        };
        core::commit_offsets(&self.broker.core, &ctx, commit)
            .await
            .map_err(broker_status)?;
        Ok(Response::new(CommitOffsetsResponse {}))
    }

    async fn fetch_offsets(
        &self,
        request: Request<FetchOffsetsRequest>,
    ) -> Result<Response<FetchOffsetsResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("FetchOffsets");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let wanted = (!req.topics.is_empty()).then(|| {
            req.topics
                .into_iter()
                .flat_map(|t| {
                    let topic = t.topic;
                    t.partitions.into_iter().map(move |p| (topic.clone(), p))
                })
                .collect()
        });
        let offsets = core::fetch_offsets(&self.broker.core, &ctx, &req.group_id, wanted)
            .await
            .map_err(broker_status)?
            .into_iter()
            .map(|c| CommittedOffset {
                topic: c.topic,
                partition: c.partition,
                offset: c.offset.unwrap_or(-1),
                metadata: c.metadata,
                commit_timestamp_ms: c.commit_timestamp_ms.unwrap_or(-1),
                pending: c.pending,
            })
            .collect();
        Ok(Response::new(FetchOffsetsResponse { offsets }))
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// The API's enum for a group state.
fn group_state(state: GroupState) -> ProtoGroupState {
    match state {
        GroupState::Empty => ProtoGroupState::Empty,
        GroupState::Assigning => ProtoGroupState::Assigning,
        GroupState::Stable => ProtoGroupState::Stable,
        GroupState::Dead => ProtoGroupState::Dead,
    }
}

/// ListGroups: one page of the coordinator's groups, by id.
pub(crate) fn list_groups(
    broker: &Broker,
    ctx: &weir_broker::RequestContext,
    req: ListGroupsRequest,
) -> Result<ListGroupsResponse, Status> {
    let (page, next_page_token) = page::paginate(
        Listing::Groups,
        core::list_groups(&broker.core, ctx).map_err(broker_status)?,
        |g| g.group_id.as_str(),
        req.page_size,
        &req.page_token,
    )?;
    let groups = page
        .into_iter()
        .map(|g| GroupSummary {
            group_id: g.group_id,
            state: group_state(g.state).into(),
            members: u32::try_from(g.members).unwrap_or(u32::MAX),
        })
        .collect();
    Ok(ListGroupsResponse {
        groups,
        next_page_token,
    })
}

/// DescribeGroup: the group with one page of its members, by id.
pub(crate) async fn describe_group(
    broker: &Broker,
    ctx: &weir_broker::RequestContext,
    req: DescribeGroupRequest,
) -> Result<DescribeGroupResponse, Status> {
    let d = core::describe_group(&broker.core, ctx, &req.group_id)
        .await
        .map_err(broker_status)?;
    let (members, next_page_token) = page::paginate(
        Listing::GroupMembers,
        d.members,
        |m| m.member_id.as_str(),
        req.page_size,
        &req.page_token,
    )?;
    Ok(DescribeGroupResponse {
        group_id: d.group_id,
        state: group_state(d.state).into(),
        group_epoch: d.group_epoch,
        assignor: d.assignor,
        members: members
            .into_iter()
            .map(|m| GroupMemberDescription {
                member_id: m.member_id,
                client_id: m.client_id,
                client_host: m.client_host,
                member_epoch: m.member_epoch,
                subscribed_topics: m.subscribed_topics,
                subscribed_topic_regex: m.subscribed_topic_regex.unwrap_or_default(),
                // Owned now: what it may consume plus what it is still releasing.
                assignment: topic_partitions(merge(m.assignment, m.pending_revocation)),
                target_assignment: topic_partitions(m.target_assignment),
                ms_since_heartbeat: u64::try_from(m.since_heartbeat.as_millis())
                    .unwrap_or(u64::MAX),
                session_timeout_ms: millis(m.session_timeout),
                heartbeat_interval_ms: millis(m.heartbeat_interval),
            })
            .collect(),
        offsets: d
            .offsets
            .into_iter()
            .map(|o| GroupPartitionOffset {
                topic: o.topic,
                partition: o.partition,
                committed_offset: o.committed_offset.unwrap_or(-1),
                high_watermark: o.high_watermark.unwrap_or(-1),
                lag: o.lag.unwrap_or(-1),
                member_id: o.member_id.unwrap_or_default(),
            })
            .collect(),
        coordinator_partition: d.coordinator_partition,
        next_page_token,
    })
}

/// DeleteGroup.
pub(crate) async fn delete_group(
    broker: &Broker,
    ctx: &weir_broker::RequestContext,
    req: DeleteGroupRequest,
) -> Result<DeleteGroupResponse, Status> {
    core::delete_group(&broker.core, ctx, &req.group_id)
        .await
        .map_err(broker_status)?;
    Ok(DeleteGroupResponse {})
}

/// ResetOffsets.
pub(crate) async fn reset_offsets(
    broker: &Broker,
    ctx: &weir_broker::RequestContext,
    req: ResetOffsetsRequest,
) -> Result<ResetOffsetsResponse, Status> {
    let spec = match req.spec.and_then(|s| s.to) {
        Some(offset_reset_spec::To::Position(position)) => {
            match OffsetPosition::try_from(position) {
                Ok(OffsetPosition::Earliest) => ResetSpec::Earliest,
                Ok(OffsetPosition::Latest) => ResetSpec::Latest,
                Ok(OffsetPosition::Unspecified) | Err(_) => {
                    return Err(crate::status::invalid(format!(
                        "spec.position is {position}: it must be OFFSET_POSITION_EARLIEST (1) \
                         or OFFSET_POSITION_LATEST (2); OFFSET_POSITION_UNSPECIFIED (0) \
                         selects nothing"
                    )));
                }
            }
        }
        Some(offset_reset_spec::To::Offset(n)) => ResetSpec::Offset(n),
        Some(offset_reset_spec::To::TimestampMs(ms)) => ResetSpec::Timestamp(ms),
        Some(offset_reset_spec::To::ShiftBy(n)) => ResetSpec::ShiftBy(n),
        None => {
            return Err(crate::status::invalid(
                "spec must say where to reset to: position, offset, timestamp_ms or shift_by",
            ));
        }
    };
    if req.topics.is_empty() {
        return Err(crate::status::invalid(
            "name at least one topic whose offsets to reset",
        ));
    }
    let targets = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = (!t.partitions.is_empty()).then_some(t.partitions);
            (t.topic, partitions)
        })
        .collect();
    let plan = core::reset_offsets(&broker.core, ctx, &req.group_id, targets, spec, req.dry_run)
        .await
        .map_err(broker_status)?;
    Ok(ResetOffsetsResponse {
        partitions: plan
            .into_iter()
            .map(|r| PartitionOffsetReset {
                topic: r.topic,
                partition: r.partition,
                previous_offset: r.previous.unwrap_or(-1),
                new_offset: r.new,
            })
            .collect(),
        applied: !req.dry_run,
    })
}
