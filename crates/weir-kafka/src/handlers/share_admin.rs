//! The share-group admin APIs (KIP-932): ShareGroupDescribe, DescribeShareGroupOffsets,
//! AlterShareGroupOffsets and DeleteShareGroupOffsets. Each is answered at the group's
//! coordinator (NOT_COORDINATOR elsewhere) by `weir_broker::share_admin`; this file only
//! decodes, calls and encodes.

use kafka_protocol::messages::alter_share_group_offsets_response::{
    AlterShareGroupOffsetsResponsePartition, AlterShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic;
use kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup, DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::share_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse, DeleteShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsResponse, DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsResponse, GroupId, ShareGroupDescribeRequest,
    ShareGroupDescribeResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use weir_broker::groups::check_group_count;
use weir_broker::limits::MAX_GROUPS_PER_REQUEST;
use weir_broker::share_admin::{self, ShareGroupDescription, StartReset, StartTarget};
use weir_broker::{BrokerError, RequestContext, metadata};

use super::groups::AUTHORIZED_OPERATIONS_OMITTED;
use super::{KafkaBroker, answer, error_code};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};

/// The leader epoch DescribeShareGroupOffsets answers: Weir's state records carry the
/// epoch of the `__share_group_state` leader that wrote them, not one of the data
/// partition, so it is unknown.
const UNKNOWN_LEADER_EPOCH: i32 = -1;
/// The start offset of a partition the group has no state for.
const NO_START: i64 = -1;

fn str(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The topic's id as Kafka carries it; nil for a topic that does not exist.
fn topic_uuid(broker: &KafkaBroker, topic: &str) -> uuid::Uuid {
    metadata::topic_id(&broker.core, topic)
        .and_then(|id| id.parse().ok())
        .unwrap_or_default()
}

fn negative_partition(index: i32) -> BrokerError {
    BrokerError::invalid(format!("partition index {index} is negative"))
}

pub(super) async fn share_group_describe(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: ShareGroupDescribeRequest = request.decode_body()?;
    let too_many = check_group_count(req.group_ids.len(), "a ShareGroupDescribe request").err();
    let mut described = Vec::with_capacity(req.group_ids.len().min(MAX_GROUPS_PER_REQUEST));
    for group_id in req.group_ids {
        let outcome = match &too_many {
            Some(e) => Err(e.clone()),
            None => share_admin::describe_group(&broker.core, ctx, &group_id).await,
        };
        let group = DescribedGroup::default()
            .with_group_id(group_id)
            .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
        described.push(match outcome {
            Ok(d) => describe(broker, group, d),
            Err(e) => group
                .with_error_code(error_code(&e))
                .with_error_message(Some(str(e.message))),
        });
    }
    answer(
        ctx,
        request,
        ShareGroupDescribeResponse::default().with_groups(described),
    )
}

fn describe(
    broker: &KafkaBroker,
    group: DescribedGroup,
    d: ShareGroupDescription,
) -> DescribedGroup {
    let members = d
        .members
        .into_iter()
        .map(|m| {
            let assignment = Assignment::default().with_topic_partitions(
                m.assignment
                    .into_iter()
                    .map(|(topic, partitions)| {
                        TopicPartitions::default()
                            .with_topic_id(topic_uuid(broker, &topic))
                            .with_topic_name(TopicName(str(topic)))
                            .with_partitions(partitions.into_iter().map(|p| p as i32).collect())
                    })
                    .collect(),
            );
            Member::default()
                .with_member_id(str(m.member_id))
                .with_rack_id(m.rack_id.map(str))
                .with_member_epoch(m.member_epoch)
                .with_client_id(str(m.client_id))
                .with_client_host(str(m.client_host))
                .with_subscribed_topic_names(
                    m.topics.into_iter().map(|t| TopicName(str(t))).collect(),
                )
                .with_assignment(assignment)
        })
        .collect();
    group
        .with_group_state(str(d.state.name()))
        .with_group_epoch(d.epoch)
        .with_assignment_epoch(d.assignment_epoch)
        .with_assignor_name(str(d.assignor))
        .with_members(members)
}

pub(super) async fn describe_share_group_offsets(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DescribeShareGroupOffsetsRequest = request.decode_body()?;
    let too_many = check_group_count(req.groups.len(), "a DescribeShareGroupOffsets request").err();
    let mut groups = Vec::with_capacity(req.groups.len().min(MAX_GROUPS_PER_REQUEST));
    for g in req.groups {
        let asked = g.topics.as_ref().map(|topics| {
            topics
                .iter()
                .map(|t| {
                    (
                        t.topic_name.to_string(),
                        t.partitions
                            .iter()
                            .filter_map(|p| u32::try_from(*p).ok())
                            .collect::<Vec<u32>>(),
                    )
                })
                .collect::<Vec<_>>()
        });
        let outcome = match &too_many {
            Some(e) => Err(e.clone()),
            None => share_admin::describe_offsets(&broker.core, ctx, &g.group_id, asked).await,
        };
        let group = DescribeShareGroupOffsetsResponseGroup::default().with_group_id(g.group_id);
        let starts = match outcome {
            Ok(starts) => starts,
            Err(e) => {
                groups.push(
                    group
                        .with_error_code(error_code(&e))
                        .with_error_message(Some(str(e.message))),
                );
                continue;
            }
        };
        // By topic, in the order the answer names them (the request's order, or the
        // group's topics and partitions in order); a negative index asked is answered
        // INVALID_REQUEST where it was asked.
        let mut topics: Vec<DescribeShareGroupOffsetsResponseTopic> = Vec::new();
        let mut push =
            |topic: &str, partition: DescribeShareGroupOffsetsResponsePartition| match topics
                .last_mut()
            {
                Some(t) if t.topic_name.as_str() == topic => t.partitions.push(partition),
                _ => topics.push(
                    DescribeShareGroupOffsetsResponseTopic::default()
                        .with_topic_name(TopicName(str(topic)))
                        .with_topic_id(topic_uuid(broker, topic))
                        .with_partitions(vec![partition]),
                ),
            };
        let mut starts = starts.into_iter().peekable();
        let partition_answer = |index: i32, start: Result<Option<i64>, BrokerError>| {
            let p = DescribeShareGroupOffsetsResponsePartition::default()
                .with_partition_index(index)
                .with_leader_epoch(UNKNOWN_LEADER_EPOCH);
            match start {
                Ok(start) => p.with_start_offset(start.unwrap_or(NO_START)),
                Err(e) => p
                    .with_start_offset(NO_START)
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(str(e.message))),
            }
        };
        match &g.topics {
            None => {
                for s in starts {
                    let index = s.partition as i32;
                    push(&s.topic, partition_answer(index, s.start));
                }
            }
            Some(asked) => {
                for t in asked {
                    let topic = t.topic_name.as_str();
                    for &index in &t.partitions {
                        let start = if index < 0 {
                            Err(negative_partition(index))
                        } else {
                            starts
                                .next_if(|s| s.topic == topic && s.partition as i32 == index)
                                .map_or(Ok(None), |s| s.start)
                        };
                        push(topic, partition_answer(index, start));
                    }
                }
            }
        }
        groups.push(group.with_topics(topics));
    }
    answer(
        ctx,
        request,
        DescribeShareGroupOffsetsResponse::default().with_groups(groups),
    )
}

pub(super) async fn alter_share_group_offsets(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: AlterShareGroupOffsetsRequest = request.decode_body()?;
    let mut resets = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            if let Ok(partition) = u32::try_from(p.partition_index) {
                resets.push(StartReset {
                    topic: t.topic_name.to_string(),
                    partition,
                    to: StartTarget::Offset(p.start_offset),
                });
            }
        }
    }
    let outcome = share_admin::alter_offsets(&broker.core, ctx, &req.group_id, resets).await;
    let (group_error, mut results) = match outcome {
        Ok(results) => (None, results.into_iter()),
        Err(e) => (Some(e), Vec::new().into_iter()),
    };
    let responses = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let result = match &group_error {
                        Some(e) => Err(e.clone()),
                        None if p.partition_index < 0 => Err(negative_partition(p.partition_index)),
                        None => results.next().unwrap_or_else(|| {
                            Err(BrokerError::invalid("no answer for this partition"))
                        }),
                    };
                    let answer = AlterShareGroupOffsetsResponsePartition::default()
                        .with_partition_index(p.partition_index);
                    match result {
                        Ok(_) => answer,
                        Err(e) => answer
                            .with_error_code(error_code(&e))
                            .with_error_message(Some(str(e.message))),
                    }
                })
                .collect();
            AlterShareGroupOffsetsResponseTopic::default()
                .with_topic_name(t.topic_name.clone())
                .with_topic_id(topic_uuid(broker, &t.topic_name))
                .with_partitions(partitions)
        })
        .collect();
    let mut response = AlterShareGroupOffsetsResponse::default().with_responses(responses);
    if let Some(e) = group_error {
        response = response
            .with_error_code(error_code(&e))
            .with_error_message(Some(str(e.message)));
    }
    answer(ctx, request, response)
}

pub(super) async fn delete_share_group_offsets(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DeleteShareGroupOffsetsRequest = request.decode_body()?;
    let topics: Vec<String> = req
        .topics
        .iter()
        .map(|t| t.topic_name.to_string())
        .collect();
    let outcome = share_admin::delete_offsets(&broker.core, ctx, &req.group_id, topics).await;
    let (group_error, results) = match outcome {
        Ok(results) => (None, results),
        Err(e) => (Some(e), Vec::new()),
    };
    let mut results = results.into_iter();
    let responses = req
        .topics
        .iter()
        .map(|t| {
            let result = match &group_error {
                Some(e) => Err(e.clone()),
                None => results
                    .next()
                    .unwrap_or_else(|| Err(BrokerError::invalid("no answer for this topic"))),
            };
            let answer = DeleteShareGroupOffsetsResponseTopic::default()
                .with_topic_name(t.topic_name.clone())
                .with_topic_id(topic_uuid(broker, &t.topic_name));
            match result {
                Ok(()) => answer,
                Err(e) => answer
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(str(e.message))),
            }
        })
        .collect();
    let mut response = DeleteShareGroupOffsetsResponse::default().with_responses(responses);
    if let Some(e) = group_error {
        response = response
            .with_error_code(error_code(&e))
            .with_error_message(Some(str(e.message)));
    }
    answer(ctx, request, response)
}

/// ListGroups' share groups: this broker's, as Kafka's `ListedGroup` fields (group id,
/// protocol type, state, type).
pub(super) fn listed_share_groups(
    broker: &KafkaBroker,
    ctx: &RequestContext,
) -> Result<Vec<(GroupId, &'static str, &'static str, &'static str)>, BrokerError> {
    Ok(share_admin::list_groups(&broker.core, ctx)?
        .into_iter()
        .map(|g| (GroupId(str(g.group_id)), "share", g.state.name(), "share"))
        .collect())
}
