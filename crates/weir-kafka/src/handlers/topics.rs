//! CreateTopics, DeleteTopics, CreatePartitions, AlterPartitionReassignments and
//! ListPartitionReassignments, through the core's topic operations (the same ones the
//! gRPC Admin service and the CLI use).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
    alter_partition_reassignments_response::{
        ReassignablePartitionResponse, ReassignableTopicResponse,
    },
    create_partitions_response::CreatePartitionsTopicResult,
    create_topics_response::CreatableTopicResult,
    delete_topics_response::DeletableTopicResult,
    list_partition_reassignments_response::{
        OngoingPartitionReassignment, OngoingTopicReassignment,
    },
};
use kafka_protocol::protocol::StrBytes;
use weir_broker::security::Operation;
use weir_broker::topics::{MAX_MOVES_PER_REQUEST, PartitionMove};
use weir_broker::{BrokerError, Reason, RequestContext, metadata, topics};

use super::{KafkaBroker, answer, error_code};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};

/// DeleteTopics v6+ may name topics by id.
const FIRST_TOPIC_ID_DELETE: i16 = 6;
/// CreateTopics v5+ answers with the topic's partition count and replication factor.
const FIRST_SIZED_CREATE: i16 = 5;

pub(super) async fn create_topics(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: CreateTopicsRequest = request.decode_body()?;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.to_string();
        let mut result = CreatableTopicResult::default().with_name(t.name.clone());
        let outcome = if !t.assignments.is_empty() {
            Err(BrokerError::invalid(
                "manual replica assignments are not served: give num_partitions and \
                 replication_factor and the broker places the replicas",
            ))
        } else {
            let configs: BTreeMap<String, String> = t
                .configs
                .into_iter()
                .filter_map(|c| Some((c.name.to_string(), c.value?.to_string())))
                .collect();
            // -1: the broker's default (Kafka's num.partitions, default.replication.factor).
            let partitions = u32::try_from(t.num_partitions).unwrap_or(0);
            let replication_factor = u32::try_from(t.replication_factor).unwrap_or(0);
            if req.validate_only {
                // Nothing is created; what the controller would refuse is refused.
                topics::validate_create(
                    &broker.core,
                    ctx,
                    &name,
                    partitions,
                    replication_factor,
                    configs,
                )
                .map(|()| None)
            } else {
                topics::create_topic(
                    &broker.core,
                    ctx,
                    &name,
                    partitions,
                    replication_factor,
                    configs,
                )
                .await
                .map(Some)
            }
        };
        match outcome {
            Ok(Some(topic)) => {
                result = result.with_topic_id(topic.topic_id.parse().unwrap_or_default());
                if request.api_version >= FIRST_SIZED_CREATE {
                    let view = metadata::topics(
                        &broker.core,
                        ctx,
                        Some(std::slice::from_ref(&name)),
                        false,
                        true,
                    )
                    .await;
                    let rf = view
                        .first()
                        .and_then(|v| v.outcome.as_ref().ok())
                        .and_then(|v| v.partitions.first())
                        .map_or(-1, |p| p.replicas.len() as i16);
                    result = result
                        .with_num_partitions(topic.partition_count() as i32)
                        .with_replication_factor(rf);
                }
            }
            Ok(None) => {}
            Err(e) => {
                result = result
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(StrBytes::from_string(e.message)));
            }
        }
        results.push(result);
    }
    answer(
        ctx,
        request,
        CreateTopicsResponse::default().with_topics(results),
    )
}

pub(super) async fn delete_topics(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DeleteTopicsRequest = request.decode_body()?;
    // v0-5 name topics in `topic_names`; v6+ in `topics`, by name or id.
    let named: Vec<(Option<String>, uuid::Uuid)> = if request.api_version >= FIRST_TOPIC_ID_DELETE {
        req.topics
            .iter()
            .map(|t| {
                let name = match &t.name {
                    Some(name) => Some(name.to_string()),
                    None => metadata::topic_name(&broker.core, &t.topic_id.to_string()),
                };
                (name, t.topic_id)
            })
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.to_string()), Default::default()))
            .collect()
    };
    let mut responses = Vec::with_capacity(named.len());
    for (name, topic_id) in named {
        let mut result = DeletableTopicResult::default().with_topic_id(topic_id);
        match name {
            None => {
                result = result.with_error_code(ResponseError::UnknownTopicId.code());
            }
            Some(name) => {
                result = result.with_name(Some(TopicName(StrBytes::from_string(name.clone()))));
                if let Err(e) = topics::delete_topic(&broker.core, ctx, &name).await {
                    result = result.with_error_code(error_code(&e));
                    if request.api_version >= 5 {
                        result = result.with_error_message(Some(StrBytes::from_string(e.message)));
                    }
                }
            }
        }
        responses.push(result);
    }
    answer(
        ctx,
        request,
        DeleteTopicsResponse::default().with_responses(responses),
    )
}

pub(super) async fn create_partitions(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: CreatePartitionsRequest = request.decode_body()?;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.to_string();
        let count = u32::try_from(t.count).unwrap_or(0);
        let outcome = if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            Err(BrokerError::invalid(
                "manual replica assignments are not served: give the count and the broker \
                 places the new replicas",
            ))
        } else if req.validate_only {
            topics::check_partition_count(&broker.core, ctx, &name, count).map(|_| ())
        } else {
            topics::create_partitions(&broker.core, ctx, &name, count)
                .await
                .map(|_| ())
        };
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        results.push(match outcome {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(error_code(&e))
                .with_error_message(Some(StrBytes::from_string(e.message))),
        });
    }
    answer(
        ctx,
        request,
        CreatePartitionsResponse::default().with_results(results),
    )
}

/// A reassignment's refusal as Kafka codes it: the controller refuses a move it cannot
/// start as an invalid request, which Kafka answers NO_REASSIGNMENT_IN_PROGRESS for a
/// cancel (nothing to cancel) and INVALID_REPLICA_ASSIGNMENT for a target (a broker
/// that is not registered, a replica listed twice, an empty list).
fn reassignment_error_code(e: &BrokerError, cancel: bool) -> i16 {
    match e.reason {
        Reason::InvalidRequest if cancel => ResponseError::NoReassignmentInProgress.code(),
        Reason::InvalidRequest => ResponseError::InvalidReplicaAssignment.code(),
        _ => error_code(e),
    }
}

/// AlterPartitionReassignments: each partition is moved (or its move cancelled, with
/// null replicas) on its own, so each has its own answer, as in Kafka (Weir's
/// controller moves one request's partitions all or none). Refused as a whole without
/// ALTER on the cluster, or beyond `MAX_MOVES_PER_REQUEST` partitions.
pub(super) async fn alter_partition_reassignments(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: AlterPartitionReassignmentsRequest = request.decode_body()?;
    let count: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
    let refused = if count > MAX_MOVES_PER_REQUEST {
        Some(BrokerError::invalid(format!(
            "{count} partitions in one reassignment; at most {MAX_MOVES_PER_REQUEST}"
        )))
    } else {
        broker.core.authorize_cluster(ctx, Operation::Alter).err()
    };
    if let Some(e) = refused {
        return answer(
            ctx,
            request,
            AlterPartitionReassignmentsResponse::default()
                .with_error_code(error_code(&e))
                .with_error_message(Some(StrBytes::from_string(e.message))),
        );
    }
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let cancel = p.replicas.is_none();
            let outcome = match u32::try_from(p.partition_index) {
                Err(_) => Err(BrokerError::new(
                    Reason::UnknownPartition,
                    format!("partition index {} is negative", p.partition_index),
                )),
                Ok(partition) => {
                    let target = p.replicas.map(|r| r.into_iter().map(|b| b.0).collect());
                    topics::reassign_partitions(
                        &broker.core,
                        ctx,
                        &name,
                        vec![PartitionMove { partition, target }],
                        None,
                    )
                    .await
                    .map(|_| ())
                }
            };
            let answered =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(match outcome {
                Ok(()) => answered,
                Err(e) => answered
                    .with_error_code(reassignment_error_code(&e, cancel))
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            });
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    answer(
        ctx,
        request,
        AlterPartitionReassignmentsResponse::default().with_responses(responses),
    )
}

/// ListPartitionReassignments: the reassignments in progress, of the partitions named
/// (null: of every topic); partitions not moving are left out, as in Kafka.
pub(super) async fn list_partition_reassignments(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: ListPartitionReassignmentsRequest = request.decode_body()?;
    // A negative index names no partition: nothing moves there.
    let named: Option<Vec<(String, Vec<u32>)>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| {
                let parts = t
                    .partition_indexes
                    .into_iter()
                    .filter_map(|p| u32::try_from(p).ok())
                    .collect();
                (t.name.to_string(), parts)
            })
            .collect()
    });
    let response = match topics::list_reassignments(&broker.core, ctx, named.as_deref()) {
        Err(e) => ListPartitionReassignmentsResponse::default()
            .with_error_code(error_code(&e))
            .with_error_message(Some(StrBytes::from_string(e.message))),
        Ok(views) => {
            let mut by_topic: Vec<OngoingTopicReassignment> = Vec::new();
            for v in views {
                let ids = |list: Vec<i32>| list.into_iter().map(BrokerId).collect();
                let partition = OngoingPartitionReassignment::default()
                    .with_partition_index(v.partition as i32)
                    .with_replicas(ids(v.replicas))
                    .with_adding_replicas(ids(v.adding))
                    .with_removing_replicas(ids(v.removing));
                match by_topic.last_mut() {
                    Some(t) if t.name.as_str() == v.topic => t.partitions.push(partition),
                    _ => by_topic.push(
                        OngoingTopicReassignment::default()
                            .with_name(TopicName(StrBytes::from_string(v.topic)))
                            .with_partitions(vec![partition]),
                    ),
                }
            }
            ListPartitionReassignmentsResponse::default().with_topics(by_topic)
        }
    };
    answer(ctx, request, response)
}
