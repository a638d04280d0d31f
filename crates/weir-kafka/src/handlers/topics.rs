//! CreateTopics, DeleteTopics and CreatePartitions, through the core's topic operations
//! (the same ones the gRPC Admin service and the CLI use).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
    create_partitions_response::CreatePartitionsTopicResult,
    create_topics_response::CreatableTopicResult, delete_topics_response::DeletableTopicResult,
};
use kafka_protocol::protocol::StrBytes;
use weir_broker::{BrokerError, RequestContext, metadata, topics};

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
