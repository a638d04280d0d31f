//! Consumer groups over the Kafka protocol, through the core's `groups` module (the same
//! operations the gRPC Groups and Admin services use): FindCoordinator; the classic
//! protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) kafka-python, aiokafka and
//! librdkafka speak by default; KIP-848's ConsumerGroupHeartbeat (librdkafka with
//! `group.protocol=consumer`); OffsetCommit, OffsetFetch and OffsetDelete; ListGroups,
//! DescribeGroups, ConsumerGroupDescribe (KIP-848 groups) and DeleteGroups.
//!
//! Reasons become Kafka codes in `errors.rs`; the few answers Kafka gives per api rather
//! than per reason (a commit from outside a group that has members is UNKNOWN_MEMBER_ID,
//! a KIP-848 join to a classic group GROUP_ID_NOT_FOUND) are chosen here, each with why.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as CgdAssignment, DescribedGroup as CgdGroup, Member as CgdMember,
    TopicPartitions as CgdTopicPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment, TopicPartitions as CghTopicPartitions,
};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as KafkaCoordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use weir_broker::groups::{
    self, CommitRequest, GroupDescription, GroupProtocol, GroupState, Heartbeat, JoinGroup,
    JoinOutcome, OffsetCommit, SyncGroup, TopicPartitions,
};
use weir_broker::limits::MAX_GROUPS_PER_REQUEST;
use weir_broker::security::ResourceType;
use weir_broker::{BrokerError, Reason, RequestContext, metadata};

use super::{KafkaBroker, answer, assignment_by_id, error_code, errors, host_port};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};

/// FindCoordinator v4+ looks up a batch of keys.
const FIRST_BATCHED_FIND_COORDINATOR: i16 = 4;
/// JoinGroup v1+ carries a rebalance timeout (v0 rebalances within the session timeout).
const FIRST_REBALANCE_TIMEOUT_JOIN: i16 = 1;
/// JoinGroup v4+: a new member is given its id with MEMBER_ID_REQUIRED first (KIP-394).
const FIRST_MEMBER_ID_REQUIRED_JOIN: i16 = 4;
/// JoinGroup v7+ answers a nullable protocol name (and the protocol type).
const FIRST_NULLABLE_PROTOCOL_JOIN: i16 = 7;
/// First JoinGroup version whose member list carries each member's `group.instance.id`.
const FIRST_STATIC_MEMBER_JOIN: i16 = 5;
/// First JoinGroup version that can tell a leader to skip the assignment (KIP-814).
const FIRST_SKIP_ASSIGNMENT_JOIN: i16 = 9;
/// LeaveGroup v3+ names a batch of members (KIP-345).
const FIRST_BATCHED_LEAVE: i16 = 3;
/// OffsetCommit v9+ answers GROUP_ID_NOT_FOUND and STALE_MEMBER_EPOCH (KIP-848); older
/// versions ILLEGAL_GENERATION for both.
pub(super) const FIRST_KIP848_OFFSET_COMMIT: i16 = 9;
/// OffsetFetch v2+ has a top-level error code.
const FIRST_TOP_LEVEL_ERROR_OFFSET_FETCH: i16 = 2;
/// OffsetFetch v8+ fetches a batch of groups.
const FIRST_BATCHED_OFFSET_FETCH: i16 = 8;
/// DescribeGroups v6+ answers GROUP_ID_NOT_FOUND for a group that does not exist
/// (before, a group in state Dead).
const FIRST_NOT_FOUND_DESCRIBE: i16 = 6;
/// DescribeGroups v3+ can ask for the operations allowed on each group.
const FIRST_OPERATIONS_DESCRIBE: i16 = 3;
/// Kafka's `authorized_operations` when they were not asked for.
pub(super) const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// FindCoordinator's key type of a consumer group (1 is a transactional id).
const KEY_TYPE_GROUP: i8 = 0;

fn str(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn message(e: &BrokerError) -> Option<StrBytes> {
    Some(str(e.message.clone()))
}

pub(super) async fn find_coordinator(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: FindCoordinatorRequest = request.decode_body()?;
    let version = request.api_version;
    let keys: Vec<String> = if version >= FIRST_BATCHED_FIND_COORDINATOR {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let too_many = groups::check_group_count(keys.len(), "a FindCoordinator request").err();
    let found: Vec<KafkaCoordinator> = keys
        .into_iter()
        .map(|key| {
            let outcome = match (&too_many, req.key_type) {
                (Some(e), _) => Err(e.clone()),
                (None, KEY_TYPE_GROUP) => coordinator_address(broker, ctx, &key),
                (None, other) => Err(BrokerError::invalid(format!(
                    "key type {other} is not served: only consumer groups (key type 0) have \
                     coordinators here (transactions are not supported)"
                ))),
            };
            match outcome {
                Ok((node_id, host, port)) => KafkaCoordinator::default()
                    .with_key(str(key))
                    .with_node_id(BrokerId(node_id))
                    .with_host(str(host))
                    .with_port(port),
                Err(e) => KafkaCoordinator::default()
                    .with_key(str(key))
                    .with_node_id(BrokerId(-1))
                    .with_host(str(""))
                    .with_port(-1)
                    .with_error_code(error_code(&e))
                    .with_error_message(message(&e)),
            }
        })
        .collect();
    let response = if version >= FIRST_BATCHED_FIND_COORDINATOR {
        FindCoordinatorResponse::default().with_coordinators(found)
    } else {
        let c = found.into_iter().next().expect("one key");
        FindCoordinatorResponse::default()
            .with_error_code(c.error_code)
            .with_error_message(c.error_message)
            .with_node_id(c.node_id)
            .with_host(c.host)
            .with_port(c.port)
    };
    answer(ctx, request, response)
}

/// The coordinator of `group_id` and its Kafka address (from the metadata image, as
/// Metadata answers it: the address for the listener the request came on).
fn coordinator_address(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<(i32, String, i32), BrokerError> {
    let c = groups::find_coordinator(&broker.core, ctx, group_id)?;
    let address = broker
        .address_of(&c.endpoints)
        .and_then(host_port)
        .ok_or_else(|| {
            BrokerError::new(
                Reason::CoordinatorNotAvailable,
                format!(
                    "the coordinator of group {group_id:?}, broker {}, has no Kafka listener",
                    c.node_id
                ),
            )
        })?;
    Ok((c.node_id, address.0.to_string(), address.1))
}

pub(super) async fn join_group(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: JoinGroupRequest = request.decode_body()?;
    let version = request.api_version;
    let session_timeout_ms = req.session_timeout_ms;
    let rebalance_timeout_ms = if version >= FIRST_REBALANCE_TIMEOUT_JOIN {
        req.rebalance_timeout_ms
    } else {
        session_timeout_ms
    };
    let ms = |v: i32| std::time::Duration::from_millis(u64::try_from(v).unwrap_or(0));
    let join = JoinGroup {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        client_id: String::new(),
        client_host: String::new(),
        group_instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        session_timeout: ms(session_timeout_ms),
        rebalance_timeout: ms(rebalance_timeout_ms),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= FIRST_MEMBER_ID_REQUIRED_JOIN,
    };
    let nullable = version >= FIRST_NULLABLE_PROTOCOL_JOIN;
    // Before v7 the protocol name is not nullable.
    let protocol_name = |name: Option<String>| match name {
        Some(n) => Some(str(n)),
        None if nullable => None,
        None => Some(str("")),
    };
    let failed = |code: i16, member_id: String| {
        JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .with_protocol_name(protocol_name(None))
            .with_leader(str(""))
            .with_member_id(str(member_id))
    };
    let response = match groups::join_group(&broker.core, ctx, join).await {
        Ok(JoinOutcome::MemberIdRequired { member_id }) => {
            failed(E::MemberIdRequired.code(), member_id)
        }
        Ok(JoinOutcome::Joined(a)) => JoinGroupResponse::default()
            .with_generation_id(a.generation)
            .with_protocol_type(a.protocol_type.map(str))
            .with_protocol_name(protocol_name(a.protocol_name))
            .with_leader(str(a.leader))
            .with_skip_assignment(a.skip_assignment && version >= FIRST_SKIP_ASSIGNMENT_JOIN)
            .with_member_id(str(a.member_id))
            .with_members(
                a.members
                    .into_iter()
                    .map(|(id, instance, metadata)| {
                        JoinGroupResponseMember::default()
                            .with_member_id(str(id))
                            .with_group_instance_id(
                                instance
                                    .filter(|_| version >= FIRST_STATIC_MEMBER_JOIN)
                                    .map(str),
                            )
                            .with_metadata(metadata)
                    })
                    .collect(),
            ),
        Err(e) => failed(error_code(&e), req.member_id.to_string()),
    };
    answer(ctx, request, response)
}

pub(super) async fn sync_group(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: SyncGroupRequest = request.decode_body()?;
    let sync = SyncGroup {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        generation: req.generation_id,
        group_instance_id: req.group_instance_id.map(|i| i.to_string()),
        protocol_type: req.protocol_type.map(|p| p.to_string()),
        protocol_name: req.protocol_name.map(|p| p.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let response = match groups::sync_group(&broker.core, ctx, sync).await {
        Ok(a) => SyncGroupResponse::default()
            .with_protocol_type(a.protocol_type.map(str))
            .with_protocol_name(a.protocol_name.map(str))
            .with_assignment(a.assignment),
        Err(e) => SyncGroupResponse::default()
            .with_error_code(error_code(&e))
            .with_assignment(Bytes::new()),
    };
    answer(ctx, request, response)
}

pub(super) async fn heartbeat(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: HeartbeatRequest = request.decode_body()?;
    let code = match groups::classic_heartbeat(
        &broker.core,
        ctx,
        &req.group_id,
        &req.member_id,
        req.group_instance_id.as_deref(),
        req.generation_id,
    ) {
        Ok(()) => 0,
        Err(e) => error_code(&e),
    };
    answer(
        ctx,
        request,
        HeartbeatResponse::default().with_error_code(code),
    )
}

pub(super) async fn leave_group(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: LeaveGroupRequest = request.decode_body()?;
    let batched = request.api_version >= FIRST_BATCHED_LEAVE;
    let members: Vec<(String, Option<StrBytes>)> = if batched {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.clone()))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let ids: Vec<(String, Option<String>)> = members
        .iter()
        .map(|(id, instance)| (id.clone(), instance.as_ref().map(|i| i.to_string())))
        .collect();
    let response = match groups::leave_group(&broker.core, ctx, &req.group_id, &ids).await {
        Err(e) => LeaveGroupResponse::default().with_error_code(error_code(&e)),
        Ok(results) if !batched => LeaveGroupResponse::default().with_error_code(
            results
                .first()
                .and_then(|r| r.as_ref().err())
                .map_or(0, error_code),
        ),
        Ok(results) => LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(results)
                .map(|((id, instance), r)| {
                    MemberResponse::default()
                        .with_member_id(str(id))
                        .with_group_instance_id(instance)
                        .with_error_code(r.err().as_ref().map_or(0, error_code))
                })
                .collect(),
        ),
    };
    answer(ctx, request, response)
}

pub(super) async fn offset_commit(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: OffsetCommitRequest = request.decode_body()?;
    let version = request.api_version;
    let mut offsets = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            offsets.push(OffsetCommit {
                topic: t.name.to_string(),
                // A negative index names no partition: refused as unknown.
                partition: u32::try_from(p.partition_index).unwrap_or(u32::MAX),
                offset: p.committed_offset,
                metadata: p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                // v6+ carries it; -1 (and older versions) commit none.
                leader_epoch: (p.committed_leader_epoch >= 0).then_some(p.committed_leader_epoch),
            });
        }
    }
    let commit = CommitRequest {
        group_id: req.group_id.to_string(),
        member: Some((req.member_id.to_string(), req.generation_id_or_member_epoch)),
        offsets,
        atomic: false,
    };
    let outcome = groups::commit_offsets(&broker.core, ctx, commit).await;
    // One code per partition in request order: the partition's own, or the request's.
    let codes: Vec<i16> = match &outcome {
        Ok(results) => results
            .iter()
            .map(|r| r.result.as_ref().err().map_or(0, error_code))
            .collect(),
        Err(e) => {
            vec![
                errors::commit_code(e, version);
                req.topics.iter().map(|t| t.partitions.len()).sum()
            ]
        }
    };
    let mut codes = codes.into_iter();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(codes.next().unwrap_or(0))
                        })
                        .collect(),
                )
        })
        .collect();
    answer(
        ctx,
        request,
        OffsetCommitResponse::default().with_topics(topics),
    )
}

/// One partition's committed offset as OffsetFetch answers it: -1 for an offset or a
/// leader epoch there is none of.
struct FetchedOffset {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
}

impl FetchedOffset {
    fn none(partition: i32) -> FetchedOffset {
        FetchedOffset {
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
        }
    }

    fn of(c: groups::CommittedOffset) -> FetchedOffset {
        FetchedOffset {
            partition: c.partition as i32,
            offset: c.offset.unwrap_or(-1),
            leader_epoch: c.leader_epoch.unwrap_or(-1),
            metadata: c.metadata,
        }
    }
}

/// One group's committed offsets for OffsetFetch: of the partitions named (every one
/// the group has an offset for if `None`), by topic, or the group's error.
type FetchedOffsets = Result<BTreeMap<String, Vec<FetchedOffset>>, BrokerError>;

async fn fetch_group_offsets(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    group_id: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> FetchedOffsets {
    // A negative index names no partition; it is answered as one without an offset.
    let partitions = wanted.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|(t, ps)| {
                ps.iter()
                    .filter_map(|p| u32::try_from(*p).ok())
                    .map(move |p| (t.clone(), p))
            })
            .collect::<Vec<_>>()
    });
    let found = groups::fetch_offsets(&broker.core, ctx, group_id, partitions).await?;
    let mut by_topic: BTreeMap<String, Vec<FetchedOffset>> = BTreeMap::new();
    match wanted {
        Some(topics) => {
            let mut known: BTreeMap<(String, u32), groups::CommittedOffset> = found
                .into_iter()
                .map(|c| ((c.topic.clone(), c.partition), c))
                .collect();
            for (t, ps) in topics {
                let list = by_topic.entry(t.clone()).or_default();
                for p in ps {
                    let committed = u32::try_from(p)
                        .ok()
                        .and_then(|index| known.remove(&(t.clone(), index)));
                    list.push(committed.map_or_else(|| FetchedOffset::none(p), FetchedOffset::of));
                }
            }
        }
        None => {
            for c in found {
                if c.offset.is_some() {
                    by_topic
                        .entry(c.topic.clone())
                        .or_default()
                        .push(FetchedOffset::of(c));
                }
            }
        }
    }
    Ok(by_topic)
}

pub(super) async fn offset_fetch(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: OffsetFetchRequest = request.decode_body()?;
    let version = request.api_version;
    if version >= FIRST_BATCHED_OFFSET_FETCH {
        let too_many = groups::check_group_count(req.groups.len(), "an OffsetFetch request").err();
        let mut answers = Vec::with_capacity(req.groups.len().min(MAX_GROUPS_PER_REQUEST));
        for g in req.groups {
            let wanted = g.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let fetched = match &too_many {
                Some(e) => Err(e.clone()),
                None => fetch_group_offsets(broker, ctx, &g.group_id, wanted).await,
            };
            let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id);
            answers.push(match fetched {
                Err(e) => group.with_error_code(error_code(&e)),
                Ok(topics) => group.with_topics(
                    topics
                        .into_iter()
                        .map(|(name, parts)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(str(name)))
                                .with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|f| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(f.partition)
                                                .with_committed_offset(f.offset)
                                                .with_committed_leader_epoch(f.leader_epoch)
                                                .with_metadata(Some(str(f.metadata)))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            });
        }
        return answer(
            ctx,
            request,
            OffsetFetchResponse::default().with_groups(answers),
        );
    }
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let response = match fetch_group_offsets(broker, ctx, &req.group_id, wanted).await {
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(name, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str(name)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|f| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(f.partition)
                                        .with_committed_offset(f.offset)
                                        .with_committed_leader_epoch(f.leader_epoch)
                                        .with_metadata(Some(str(f.metadata)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(e) if version >= FIRST_TOP_LEVEL_ERROR_OFFSET_FETCH => {
            OffsetFetchResponse::default().with_error_code(error_code(&e))
        }
        // v1 has no top-level code: every partition asked for carries it.
        Err(e) => OffsetFetchResponse::default().with_topics(
            req.topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    OffsetFetchResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partition_indexes
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_error_code(error_code(&e))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    };
    answer(ctx, request, response)
}

/// OffsetDelete (KIP-496): a group-wide refusal (the group unknown or not authorised, a
/// group of another protocol type with members) is the top-level code; each partition
/// has its own (its topic unknown or not readable, or subscribed to by the members).
pub(super) async fn offset_delete(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: OffsetDeleteRequest = request.decode_body()?;
    // A negative index names no partition: answered as unknown.
    let partitions: Vec<(String, u32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.to_string(),
                    u32::try_from(p.partition_index).unwrap_or(u32::MAX),
                )
            })
        })
        .collect();
    let response = match groups::delete_offsets(&broker.core, ctx, &req.group_id, partitions).await
    {
        Err(e) => OffsetDeleteResponse::default().with_error_code(error_code(&e)),
        Ok(results) => {
            let mut results = results.into_iter();
            OffsetDeleteResponse::default().with_topics(
                req.topics
                    .into_iter()
                    .map(|t| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(t.name)
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        let code = results
                                            .next()
                                            .and_then(Result::err)
                                            .as_ref()
                                            .map_or(0, error_code);
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        }
    };
    answer(ctx, request, response)
}

/// Kafka's name for a group's state: the classic states for a classic group, the
/// consumer group states (KIP-848) for the others.
fn state_name(state: GroupState, protocol: &GroupProtocol) -> &'static str {
    match (protocol, state) {
        (_, GroupState::Dead) => "Dead",
        (GroupProtocol::Classic { state, .. }, _) => state.kafka_name(),
        (GroupProtocol::Consumer, GroupState::Empty) => "Empty",
        // Weir's "assigning": members still moving towards their targets.
        (GroupProtocol::Consumer, GroupState::Assigning) => "Reconciling",
        (GroupProtocol::Consumer, GroupState::Stable) => "Stable",
    }
}

/// Kafka's protocol type and group type of a group.
fn protocol_and_type(protocol: &GroupProtocol) -> (String, &'static str) {
    match protocol {
        GroupProtocol::Consumer => ("consumer".to_string(), "consumer"),
        GroupProtocol::Classic { protocol_type, .. } => (protocol_type.clone(), "classic"),
    }
}

pub(super) async fn list_groups(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: ListGroupsRequest = request.decode_body()?;
    // Kafka compares the filters without case.
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let keep = |state: &str, group_type: &str| {
        (states.is_empty() || states.contains(&state.to_lowercase()))
            && (types.is_empty() || types.iter().any(|t| t == group_type))
    };
    let listed = groups::list_groups(&broker.core, ctx).and_then(|consumer| {
        let mut listed: Vec<ListedGroup> = consumer
            .into_iter()
            .filter_map(|g| {
                let state = state_name(g.state, &g.protocol);
                let (protocol_type, group_type) = protocol_and_type(&g.protocol);
                keep(state, group_type).then(|| {
                    ListedGroup::default()
                        .with_group_id(GroupId(str(g.group_id)))
                        .with_protocol_type(str(protocol_type))
                        .with_group_state(str(state))
                        .with_group_type(str(group_type))
                })
            })
            .collect();
        // Share groups (KIP-932): protocol type and group type "share".
        for (group_id, protocol_type, state, group_type) in
            super::share_admin::listed_share_groups(broker, ctx)?
        {
            if keep(state, group_type) {
                listed.push(
                    ListedGroup::default()
                        .with_group_id(group_id)
                        .with_protocol_type(str(protocol_type))
                        .with_group_state(str(state))
                        .with_group_type(str(group_type)),
                );
            }
        }
        Ok(listed)
    });
    let response = match listed {
        Err(e) => ListGroupsResponse::default().with_error_code(error_code(&e)),
        Ok(listed) => ListGroupsResponse::default().with_groups(listed),
    };
    answer(ctx, request, response)
}

pub(super) async fn describe_groups(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DescribeGroupsRequest = request.decode_body()?;
    let version = request.api_version;
    let too_many = groups::check_group_count(req.groups.len(), "a DescribeGroups request").err();
    let mut described = Vec::with_capacity(req.groups.len().min(MAX_GROUPS_PER_REQUEST));
    for group_id in req.groups {
        let outcome = match &too_many {
            Some(e) => Err(e.clone()),
            None => groups::describe_group(&broker.core, ctx, &group_id).await,
        };
        // v3+ may ask; Kafka answers them for each group described without an error.
        let operations =
            if version >= FIRST_OPERATIONS_DESCRIBE && req.include_authorized_operations {
                super::security::authorized_operations(broker, ctx, ResourceType::Group, &group_id)
            } else {
                AUTHORIZED_OPERATIONS_OMITTED
            };
        let group = DescribedGroup::default()
            .with_group_id(group_id.clone())
            .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
        described.push(match outcome {
            Ok(d) => describe(group, d)?.with_authorized_operations(operations),
            Err(e) if e.reason == Reason::UnknownGroup && version < FIRST_NOT_FOUND_DESCRIBE => {
                group
                    .with_group_state(str("Dead"))
                    .with_authorized_operations(operations)
            }
            Err(e) => group
                .with_group_state(str("Dead"))
                .with_error_code(error_code(&e))
                // Only v6+ carries a message (an older version refuses to encode one).
                .with_error_message(
                    (version >= FIRST_NOT_FOUND_DESCRIBE)
                        .then(|| message(&e))
                        .flatten(),
                ),
        });
    }
    answer(
        ctx,
        request,
        DescribeGroupsResponse::default().with_groups(described),
    )
}

fn describe(group: DescribedGroup, d: GroupDescription) -> Result<DescribedGroup, HandlerError> {
    let state = state_name(d.state, &d.protocol);
    let (protocol_type, _) = protocol_and_type(&d.protocol);
    let members = match d.classic {
        // A classic group: its members' bytes as they sent them.
        Some(classic) => classic
            .members
            .into_iter()
            .map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(str(m.member_id))
                    .with_client_id(str(m.client_id))
                    .with_client_host(str(m.client_host))
                    // As the member gave it (v4+ carries it; older versions drop it).
                    .with_group_instance_id(m.group_instance_id.map(str))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment)
            })
            .collect(),
        // A KIP-848 group: each member's subscription and assignment in the consumer
        // protocol's encoding, as a classic member's would be.
        None => d
            .members
            .into_iter()
            .map(|m| -> Result<DescribedGroupMember, HandlerError> {
                let subscription = ConsumerProtocolSubscription::default()
                    .with_topics(m.subscribed_topics.into_iter().map(str).collect());
                let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                    m.assignment
                        .into_iter()
                        .map(|(topic, parts)| {
                            AssignedTopic::default()
                                .with_topic(TopicName(str(topic)))
                                .with_partitions(parts.into_iter().map(|p| p as i32).collect())
                        })
                        .collect(),
                );
                Ok(DescribedGroupMember::default()
                    .with_member_id(str(m.member_id))
                    .with_client_id(str(m.client_id))
                    .with_client_host(str(m.client_host))
                    .with_member_metadata(consumer_protocol_bytes(&subscription)?)
                    .with_member_assignment(consumer_protocol_bytes(&assignment)?))
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(group
        .with_group_state(str(state))
        .with_protocol_type(str(protocol_type))
        .with_protocol_data(str(d.assignor))
        .with_members(members))
}

/// ConsumerGroupDescribe v1+ says which protocol each member speaks.
const FIRST_MEMBER_TYPE_DESCRIBE: i16 = 1;
/// ConsumerGroupDescribe's member type of a KIP-848 member (0 is a classic one).
const MEMBER_TYPE_CONSUMER: i8 = 1;

/// ConsumerGroupDescribe (KIP-848): a KIP-848 group's state, epochs, assignor and
/// members, each with its subscription and its current and target assignments. A group
/// that runs the classic protocol (or only has offsets) is GROUP_ID_NOT_FOUND, as Kafka
/// answers it ("not a consumer group"): clients then describe it with DescribeGroups.
pub(super) async fn consumer_group_describe(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: ConsumerGroupDescribeRequest = request.decode_body()?;
    let version = request.api_version;
    let too_many =
        groups::check_group_count(req.group_ids.len(), "a ConsumerGroupDescribe request").err();
    let mut described = Vec::with_capacity(req.group_ids.len().min(MAX_GROUPS_PER_REQUEST));
    for group_id in req.group_ids {
        let outcome = match &too_many {
            Some(e) => Err(e.clone()),
            None => groups::describe_group(&broker.core, ctx, &group_id).await,
        };
        let group = CgdGroup::default().with_group_id(group_id.clone());
        described.push(match outcome {
            Ok(d) if d.protocol == GroupProtocol::Consumer => {
                let operations = if req.include_authorized_operations {
                    super::security::authorized_operations(
                        broker,
                        ctx,
                        ResourceType::Group,
                        &group_id,
                    )
                } else {
                    AUTHORIZED_OPERATIONS_OMITTED
                };
                let assignment = |topics: TopicPartitions| {
                    CgdAssignment::default().with_topic_partitions(
                        topics
                            .into_iter()
                            .filter_map(|(topic, parts)| {
                                // A topic deleted meanwhile has no id: left out.
                                let id = metadata::topic_id(&broker.core, &topic)?.parse().ok()?;
                                Some(
                                    CgdTopicPartitions::default()
                                        .with_topic_id(id)
                                        .with_topic_name(TopicName(str(topic)))
                                        .with_partitions(
                                            parts.into_iter().map(|p| p as i32).collect(),
                                        ),
                                )
                            })
                            .collect(),
                    )
                };
                let members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        let member = CgdMember::default()
                            .with_member_id(str(m.member_id))
                            .with_member_epoch(m.member_epoch)
                            .with_client_id(str(m.client_id))
                            .with_client_host(str(m.client_host))
                            .with_subscribed_topic_names(
                                m.subscribed_topics
                                    .into_iter()
                                    .map(|t| TopicName(str(t)))
                                    .collect(),
                            )
                            .with_subscribed_topic_regex(m.subscribed_topic_regex.map(str))
                            .with_assignment(assignment(m.assignment))
                            .with_target_assignment(assignment(m.target_assignment));
                        if version >= FIRST_MEMBER_TYPE_DESCRIBE {
                            member.with_member_type(MEMBER_TYPE_CONSUMER)
                        } else {
                            member
                        }
                    })
                    .collect();
                group
                    .with_group_state(str(state_name(d.state, &d.protocol)))
                    .with_group_epoch(d.group_epoch)
                    // The target assignment is computed with each epoch bump.
                    .with_assignment_epoch(d.group_epoch)
                    .with_assignor_name(str(d.assignor))
                    .with_members(members)
                    .with_authorized_operations(operations)
            }
            Ok(_) => group
                .with_error_code(E::GroupIdNotFound.code())
                .with_error_message(Some(str(format!(
                    "group {group_id:?} is not a consumer group: describe it with DescribeGroups"
                )))),
            Err(e) => group
                .with_error_code(error_code(&e))
                .with_error_message(message(&e)),
        });
    }
    answer(
        ctx,
        request,
        ConsumerGroupDescribeResponse::default().with_groups(described),
    )
}

/// A consumer protocol message as members exchange it: its version (0), then its body.
fn consumer_protocol_bytes<M: Encodable>(message: &M) -> Result<Bytes, HandlerError> {
    const VERSION: i16 = 0;
    let encode_error = |source: Box<dyn std::error::Error + Send + Sync>| HandlerError::Encode {
        version: VERSION,
        source,
    };
    let size = message
        .compute_size(VERSION)
        .map_err(|e| encode_error(e.into()))?;
    let mut out = BytesMut::with_capacity(2 + size);
    out.extend_from_slice(&VERSION.to_be_bytes());
    message
        .encode(&mut out, VERSION)
        .map_err(|e| encode_error(e.into()))?;
    Ok(out.freeze())
}

pub(super) async fn delete_groups(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DeleteGroupsRequest = request.decode_body()?;
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.to_string()).collect();
    let results: Vec<Result<(), BrokerError>> =
        match groups::delete_groups(&broker.core, ctx, &ids).await {
            Ok(results) => results,
            Err(e) => ids.iter().map(|_| Err(e.clone())).collect(),
        };
    let results = req
        .groups_names
        .into_iter()
        .zip(results)
        .map(|(group_id, r)| {
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(r.err().as_ref().map_or(0, error_code))
        })
        .collect();
    answer(
        ctx,
        request,
        DeleteGroupsResponse::default().with_results(results),
    )
}

pub(super) async fn consumer_group_heartbeat(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: ConsumerGroupHeartbeatRequest = request.decode_body()?;
    // Owned partitions come by topic id; ids of topics that are gone are dropped (the
    // member no longer owns anything of them).
    let owned_unchanged = req.topic_partitions.is_none();
    let mut owned = TopicPartitions::new();
    for tp in req.topic_partitions.iter().flatten() {
        if let Some(name) = metadata::topic_name(&broker.core, &tp.topic_id.to_string()) {
            owned
                .entry(name)
                .or_default()
                .extend(tp.partitions.iter().filter_map(|p| u32::try_from(*p).ok()));
        }
    }
    let heartbeat = Heartbeat {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        // -2 is a static member's leave; static membership is not kept, so it leaves.
        member_epoch: if req.member_epoch == -2 {
            -1
        } else {
            req.member_epoch
        },
        client_id: String::new(),
        client_host: String::new(),
        topics: req
            .subscribed_topic_names
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.to_string())
            .collect(),
        topic_regex: req.subscribed_topic_regex.map(|r| r.to_string()),
        assignor: req.server_assignor.map(|a| a.to_string()),
        owned,
        owned_unchanged,
        session_timeout: None,
    };
    let response = match groups::heartbeat(&broker.core, ctx, heartbeat).await {
        Ok(out) => {
            let assignment = out.assignment.map(|topics| {
                Assignment::default().with_topic_partitions(
                    assignment_by_id(broker, topics)
                        .into_iter()
                        .map(|(id, parts)| {
                            CghTopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(parts)
                        })
                        .collect(),
                )
            });
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(str(out.member_id)))
                .with_member_epoch(out.member_epoch)
                .with_heartbeat_interval_ms(
                    i32::try_from(out.heartbeat_interval.as_millis()).unwrap_or(i32::MAX),
                )
                .with_assignment(assignment)
        }
        Err(e) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(errors::consumer_heartbeat_code(&e))
            .with_error_message(message(&e))
            .with_member_id(Some(req.member_id))
            .with_member_epoch(req.member_epoch),
    };
    answer(ctx, request, response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_table_is_one_kafka_protocol_can_serve() {
        crate::apis::check_table(super::super::SERVED).unwrap();
    }

    #[test]
    fn states_have_kafkas_names_for_each_kind_of_group() {
        let classic = |state| GroupProtocol::Classic {
            state,
            protocol_type: "consumer".into(),
        };
        use weir_broker::groups::ClassicState as C;
        assert_eq!(
            state_name(GroupState::Assigning, &classic(C::CompletingRebalance)),
            "CompletingRebalance"
        );
        assert_eq!(state_name(GroupState::Empty, &classic(C::Empty)), "Empty");
        assert_eq!(
            state_name(GroupState::Assigning, &GroupProtocol::Consumer),
            "Reconciling"
        );
        assert_eq!(
            state_name(GroupState::Dead, &GroupProtocol::Consumer),
            "Dead"
        );
        assert_eq!(
            protocol_and_type(&GroupProtocol::Consumer),
            ("consumer".to_string(), "consumer")
        );
    }

    #[test]
    fn consumer_protocol_bytes_start_with_their_version() {
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            AssignedTopic::default()
                .with_topic(TopicName(str("t")))
                .with_partitions(vec![0, 2]),
        ]);
        let bytes = consumer_protocol_bytes(&assignment).unwrap();
        // version 0, one topic "t", partitions [0, 2], null user data.
        let expected: Vec<u8> = [
            &0i16.to_be_bytes()[..],
            &1i32.to_be_bytes(),
            &1i16.to_be_bytes(),
            b"t",
            &2i32.to_be_bytes(),
            &0i32.to_be_bytes(),
            &2i32.to_be_bytes(),
            &(-1i32).to_be_bytes(),
        ]
        .concat();
        assert_eq!(&bytes[..], &expected[..]);
    }
}
