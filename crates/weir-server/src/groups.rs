//! The Groups service (membership heartbeats, offset commits and fetches) and the group
//! calls of the Admin service: conversions around `weir_cluster::group`, which holds
//! every rule.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tonic::Code;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use weir_cluster::ClusterError;
use weir_cluster::group::{
    GroupCoordinator, GroupError, GroupState, Heartbeat, OFFSETS_TOPIC, OffsetCommit, ResetSpec,
    find_coordinator,
};
use weir_proto::v1::{
    CommitOffsetsRequest, CommitOffsetsResponse, CommittedOffset, DeleteGroupRequest,
    DeleteGroupResponse, DescribeGroupRequest, DescribeGroupResponse, FetchOffsetsRequest,
    FetchOffsetsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupMemberDescription,
    GroupPartitionOffset, GroupState as ProtoGroupState, GroupSummary, HeartbeatRequest,
    HeartbeatResponse, ListGroupsRequest, ListGroupsResponse, OffsetPosition, PartitionOffsetReset,
    ResetOffsetsRequest, ResetOffsetsResponse, TopicPartitions, groups_server::Groups,
    offset_reset_spec,
};

use crate::Broker;
use crate::admin::Listener;
use crate::page::{self, Listing};
use crate::status::{ERROR_DOMAIN, REASON_COORDINATOR_NOT_AVAILABLE, group_status};

/// Most partitions one commit or fetch may name.
pub const MAX_PARTITIONS_PER_OFFSET_REQUEST: usize = 100_000;

/// The Groups gRPC service.
#[derive(Debug, Clone)]
pub struct GroupsService {
    broker: Arc<Broker>,
    /// Which advertised address of the coordinator FindCoordinator hands out.
    listener: Listener,
}

impl GroupsService {
    pub(crate) fn new(broker: Arc<Broker>, listener: Listener) -> GroupsService {
        GroupsService { broker, listener }
    }

    fn coordinator(&self) -> Result<&Arc<GroupCoordinator>, Status> {
        self.broker.groups()
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

#[tonic::async_trait]
impl Groups for GroupsService {
    async fn find_coordinator(
        &self,
        request: Request<FindCoordinatorRequest>,
    ) -> Result<Response<FindCoordinatorResponse>, Status> {
        let _timer = self.broker.metrics.rpc_timer("FindCoordinator");
        let req = request.into_inner();
        let (partition, coordinator) = match find_coordinator(&self.broker.registry, &req.group_id)
        {
            Ok(found) => found,
            // Not created yet (the first broker to open its coordinator creates it).
            Err(GroupError::Cluster(ClusterError::UnknownTopic(_))) => (0, -1),
            Err(e) => return Err(group_status(e)),
        };
        let image = self.broker.registry.cluster().image();
        let address = image
            .brokers()
            .find(|b| b.node == coordinator && coordinator >= 0)
            .map(|b| {
                self.listener
                    .pick(&b.endpoints.client, b.endpoints.external.as_ref())
                    .clone()
            });
        let Some(address) = address else {
            return Err(Status::with_error_details(
                Code::Unavailable,
                format!(
                    "group {:?} has no coordinator right now (partition {partition} of \
                     {OFFSETS_TOPIC} has no leader this broker knows of); retry shortly",
                    req.group_id
                ),
                ErrorDetails::with_error_info(
                    REASON_COORDINATOR_NOT_AVAILABLE,
                    ERROR_DOMAIN,
                    HashMap::new(),
                ),
            ));
        };
        let (host, port) = crate::parse_host_port(&address)
            .map(|(h, p)| (h.to_string(), u32::from(p)))
            .unwrap_or_else(|_| (address.clone(), 0));
        Ok(Response::new(FindCoordinatorResponse {
            broker_id: coordinator,
            host,
            port,
            partition,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let _timer = self.broker.metrics.rpc_timer("Heartbeat");
        let client_host = request
            .remote_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let req = request.into_inner();
        let outcome = self
            .coordinator()?
            .heartbeat(Heartbeat {
                group_id: req.group_id,
                member_id: req.member_id,
                member_epoch: req.member_epoch,
                client_id: req.client_id,
                client_host,
                topics: req.topics,
                topic_regex: (!req.topic_regex.is_empty()).then_some(req.topic_regex),
                assignor: (!req.assignor.is_empty()).then_some(req.assignor),
                owned: owned_map(req.owned_partitions),
                session_timeout: (req.session_timeout_ms > 0)
                    .then(|| Duration::from_millis(req.session_timeout_ms.into())),
            })
            .await
            .map_err(group_status)?;
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
        let _timer = self.broker.metrics.rpc_timer("CommitOffsets");
        let req = request.into_inner();
        let count: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
        if count > MAX_PARTITIONS_PER_OFFSET_REQUEST {
            return Err(Status::invalid_argument(format!(
                "a commit names {count} partitions; at most \
                 {MAX_PARTITIONS_PER_OFFSET_REQUEST} are accepted"
            )));
        }
        let mut offsets = Vec::with_capacity(count);
        for topic in req.topics {
            for p in topic.partitions {
                offsets.push(OffsetCommit {
                    topic: topic.topic.clone(),
                    partition: p.partition,
                    offset: p.offset,
                    metadata: p.metadata,
                });
            }
        }
        let member =
            (!req.member_id.is_empty()).then_some((req.member_id.as_str(), req.member_epoch));
        self.coordinator()?
            .commit_offsets(&req.group_id, member, offsets)
            .await
            .map_err(group_status)?;
        self.broker.metrics.count_commits(count as u64);
        Ok(Response::new(CommitOffsetsResponse {}))
    }

    async fn fetch_offsets(
        &self,
        request: Request<FetchOffsetsRequest>,
    ) -> Result<Response<FetchOffsetsResponse>, Status> {
        let _timer = self.broker.metrics.rpc_timer("FetchOffsets");
        let req = request.into_inner();
        let count: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
        if count > MAX_PARTITIONS_PER_OFFSET_REQUEST {
            return Err(Status::invalid_argument(format!(
                "a fetch names {count} partitions; at most \
                 {MAX_PARTITIONS_PER_OFFSET_REQUEST} are accepted"
            )));
        }
        let wanted = (!req.topics.is_empty()).then(|| {
            req.topics
                .into_iter()
                .flat_map(|t| {
                    let topic = t.topic;
                    t.partitions.into_iter().map(move |p| (topic.clone(), p))
                })
                .collect()
        });
        let offsets = self
            .coordinator()?
            .fetch_offsets(&req.group_id, wanted)
            .await
            .map_err(group_status)?
            .into_iter()
            .map(|c| CommittedOffset {
                topic: c.topic,
                partition: c.partition,
                offset: c.offset.unwrap_or(-1),
                metadata: c.metadata,
                commit_timestamp_ms: c.commit_timestamp_ms.unwrap_or(-1),
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
    req: ListGroupsRequest,
) -> Result<ListGroupsResponse, Status> {
    let (page, next_page_token) = page::paginate(
        Listing::Groups,
        broker.groups()?.list_groups(),
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
    req: DescribeGroupRequest,
) -> Result<DescribeGroupResponse, Status> {
    let d = broker
        .groups()?
        .describe_group(&req.group_id)
        .await
        .map_err(group_status)?;
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
    req: DeleteGroupRequest,
) -> Result<DeleteGroupResponse, Status> {
    broker
        .groups()?
        .delete_group(&req.group_id)
        .await
        .map_err(group_status)?;
    Ok(DeleteGroupResponse {})
}

/// ResetOffsets.
pub(crate) async fn reset_offsets(
    broker: &Broker,
    req: ResetOffsetsRequest,
) -> Result<ResetOffsetsResponse, Status> {
    let spec = match req.spec.and_then(|s| s.to) {
        Some(offset_reset_spec::To::Position(position)) => {
            match OffsetPosition::try_from(position) {
                Ok(OffsetPosition::Earliest) => ResetSpec::Earliest,
                Ok(OffsetPosition::Latest) => ResetSpec::Latest,
                Ok(OffsetPosition::Unspecified) | Err(_) => {
                    return Err(Status::invalid_argument(format!(
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
            return Err(Status::invalid_argument(
                "spec must say where to reset to: position, offset, timestamp_ms or shift_by",
            ));
        }
    };
    if req.topics.is_empty() {
        return Err(Status::invalid_argument(
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
    let plan = broker
        .groups()?
        .reset_offsets(&req.group_id, targets, spec, req.dry_run)
        .await
        .map_err(group_status)?;
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
