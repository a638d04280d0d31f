//! CreateTopics, DeleteTopics, CreatePartitions, AlterPartitionReassignments,
//! ListPartitionReassignments and ElectLeaders, through the core's topic operations (the
//! same ones the gRPC Admin service and the CLI use).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, ElectLeadersRequest, ElectLeadersResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
    alter_partition_reassignments_response::{
        ReassignablePartitionResponse, ReassignableTopicResponse,
    },
    create_partitions_response::CreatePartitionsTopicResult,
    create_topics_response::CreatableTopicResult,
    delete_topics_response::DeletableTopicResult,
    elect_leaders_response::{PartitionResult, ReplicaElectionResult},
    list_partition_reassignments_response::{
        OngoingPartitionReassignment, OngoingTopicReassignment,
    },
};
use kafka_protocol::protocol::StrBytes;
use weir_broker::security::Operation;
use weir_broker::topics::{ElectionKind, MAX_MOVES_PER_REQUEST, PartitionMove};
use weir_broker::{BrokerError, Reason, RequestContext, metadata, topics};

use super::errors::{election_code, reassignment_code};
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
        // No error message unless there is an error: Kafka answers null (the generated
        // default is an empty string, which aiokafka's own tests take for an error).
        let mut result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_error_message(None);
        let configs: BTreeMap<String, String> = t
            .configs
            .into_iter()
            .filter_map(|c| Some((c.name.to_string(), c.value?.to_string())))
            .collect();
        let outcome = if !t.assignments.is_empty() {
            // The assignment gives both counts; Kafka refuses a request that also gives
            // either.
            if t.num_partitions != -1 || t.replication_factor != -1 {
                Err(BrokerError::invalid(
                    "a manual partition assignment was given, so num_partitions and \
                     replication_factor must be -1",
                ))
            } else {
                match topics::assignments_by_index(
                    t.assignments
                        .into_iter()
                        .map(|a| {
                            (
                                a.partition_index,
                                a.broker_ids.into_iter().map(|b| b.0).collect(),
                            )
                        })
                        .collect(),
                ) {
                    Err(e) => Err(e),
                    Ok(assignments) if req.validate_only => topics::validate_create_assigned(
                        &broker.core,
                        ctx,
                        &name,
                        &assignments,
                        configs,
                    )
                    .map(|()| None),
                    Ok(assignments) => topics::create_topic_assigned(
                        &broker.core,
                        ctx,
                        &name,
                        assignments,
                        configs,
                    )
                    .await
                    .map(Some),
                }
            }
        } else {
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
        // An empty list is taken as none (the broker places the new replicas), as Weir
        // took it before it served assignments.
        let outcome = if let Some(assignments) = t.assignments.as_ref().filter(|a| !a.is_empty()) {
            // One per new partition, its replicas with the preferred leader first.
            let assignments = assignments
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect();
            topics::create_partitions_assigned(
                &broker.core,
                ctx,
                &name,
                count,
                assignments,
                req.validate_only,
            )
            .await
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
                    .with_error_code(reassignment_code(&e, cancel))
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

/// ElectLeaders v1+ names the election type and has a top-level error code; v0 is a
/// preferred election.
const FIRST_TYPED_ELECTION: i16 = 1;

/// ElectLeaders: each partition named (null: every partition, answering those whose
/// election was needed) gets its preferred replica as leader, or for an unclean
/// election a partition without a leader gets any replica that may lead; each answered
/// on its own (ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE,
/// ELIGIBLE_LEADERS_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION). A refusal of the whole
/// request (ALTER on the cluster, an unknown election type, too many partitions) is the
/// top-level error and every partition's, as Kafka answers it.
pub(super) async fn elect_leaders(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: ElectLeadersRequest = request.decode_body()?;
    let version = request.api_version;
    let kind = match req.election_type {
        _ if version < FIRST_TYPED_ELECTION => Ok(ElectionKind::Preferred),
        0 => Ok(ElectionKind::Preferred),
        1 => Ok(ElectionKind::Unclean),
        other => Err(BrokerError::invalid(format!(
            "election type {other}: 0 (preferred) or 1 (unclean)"
        ))),
    };
    // A negative index names no partition: answered UNKNOWN_TOPIC_OR_PARTITION here.
    let mut negative: Vec<(TopicName, i32)> = Vec::new();
    let named: Option<Vec<(String, Vec<u32>)>> = req.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| {
                let mut parts = Vec::with_capacity(t.partitions.len());
                for &p in &t.partitions {
                    match u32::try_from(p) {
                        Ok(p) => parts.push(p),
                        Err(_) => negative.push((t.topic.clone(), p)),
                    }
                }
                (t.topic.to_string(), parts)
            })
            .collect()
    });
    let outcome = match kind {
        Ok(kind) => weir_broker::topics::elect_leaders(&broker.core, ctx, kind, named).await,
        Err(e) => Err(e),
    };
    let mut by_topic: Vec<ReplicaElectionResult> = Vec::new();
    let mut push = |topic: TopicName, result: PartitionResult| match by_topic.last_mut() {
        Some(t) if t.topic == topic => t.partition_result.push(result),
        _ => by_topic.push(
            ReplicaElectionResult::default()
                .with_topic(topic)
                .with_partition_result(vec![result]),
        ),
    };
    let mut response = ElectLeadersResponse::default();
    match outcome {
        Ok(results) => {
            for r in results {
                let mut answered = PartitionResult::default().with_partition_id(r.partition as i32);
                if let Err(refusal) = &r.outcome {
                    answered = answered
                        .with_error_code(election_code(refusal))
                        .with_error_message(Some(StrBytes::from_string(refusal.to_string())));
                }
                push(TopicName(StrBytes::from_string(r.topic)), answered);
            }
            for (topic, p) in negative {
                push(
                    topic,
                    PartitionResult::default()
                        .with_partition_id(p)
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(StrBytes::from_static_str(
                            "a negative partition index",
                        ))),
                );
            }
        }
        Err(e) => {
            let code = error_code(&e);
            for t in req.topic_partitions.into_iter().flatten() {
                for p in t.partitions {
                    push(
                        t.topic.clone(),
                        PartitionResult::default()
                            .with_partition_id(p)
                            .with_error_code(code)
                            .with_error_message(Some(StrBytes::from_string(e.message.clone()))),
                    );
                }
            }
            if version >= FIRST_TYPED_ELECTION {
                response = response.with_error_code(code);
            }
        }
    }
    answer(
        ctx,
        request,
        response.with_replica_election_results(by_topic),
    )
}
