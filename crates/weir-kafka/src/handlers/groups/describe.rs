//! Groups listed, described and deleted: ListGroups, DescribeGroups,
//! ConsumerGroupDescribe (KIP-848 groups) and DeleteGroups.

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as CgdAssignment, DescribedGroup as CgdGroup, Member as CgdMember,
    TopicPartitions as CgdTopicPartitions,
};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse, TopicName,
};
use kafka_protocol::protocol::Encodable;
use weir_broker::groups::{self, GroupDescription, GroupProtocol, GroupState, TopicPartitions};
use weir_broker::limits::MAX_GROUPS_PER_REQUEST;
use weir_broker::security::ResourceType;
use weir_broker::{BrokerError, Reason, RequestContext, metadata};

use super::{AUTHORIZED_OPERATIONS_OMITTED, message, str};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};
use crate::handlers::{KafkaBroker, answer, error_code};

/// DescribeGroups v6+ answers GROUP_ID_NOT_FOUND for a group that does not exist
/// (before, a group in state Dead).
const FIRST_NOT_FOUND_DESCRIBE: i16 = 6;
/// DescribeGroups v3+ can ask for the operations allowed on each group.
const FIRST_OPERATIONS_DESCRIBE: i16 = 3;

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

pub(in crate::handlers) async fn list_groups(
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
            crate::handlers::share_admin::listed_share_groups(broker, ctx)?
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

pub(in crate::handlers) async fn describe_groups(
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
                crate::handlers::security::authorized_operations(
                    broker,
                    ctx,
                    ResourceType::Group,
                    &group_id,
                )
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
pub(in crate::handlers) async fn consumer_group_describe(
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
                    crate::handlers::security::authorized_operations(
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

pub(in crate::handlers) async fn delete_groups(
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

#[cfg(test)]
mod tests {
    use super::*;

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
