//! Produce, InitProducerId and DescribeProducers. A produce's RecordBatch v2 bytes go to the core as the
//! producer sent them (a slice of the request frame): validated, stored and replicated
//! byte for byte. acks=0 gets no answer, as in Kafka.

use std::future::Future;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId, TopicName,
    describe_producers_response::{PartitionResponse, ProducerState, TopicResponse},
    produce_response::{BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse},
};
use kafka_protocol::protocol::StrBytes;
use weir_broker::produce::{self, Acks, PartitionProduce, ProduceData};
use weir_broker::transactions::{self, ProducerIdAndEpoch};
use weir_broker::{BrokerError, Reason, RequestContext};

use super::errors::{abortable_as_known, fenced_as_known};
use super::{KafkaBroker, answer, error_code};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};

/// Decodes a produce and queues it on its partitions (in request order: the connection
/// awaits this before reading on); the future answers once `acks` is met.
pub(super) async fn start(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<impl Future<Output = Result<Response, HandlerError>> + Send + 'static, HandlerError> {
    let req: ProduceRequest = request.decode_body()?;
    let version = request.api_version;
    let acks = match req.acks {
        0 => Some(Acks::None),
        1 => Some(Acks::Leader),
        -1 => Some(Acks::All),
        _ => None,
    };
    let timeout = (req.timeout_ms > 0).then(|| Duration::from_millis(req.timeout_ms as u64));
    let transactional_id = req.transactional_id.as_ref().map(|id| id.to_string());
    // Every topic is queued before any is waited on, so one topic's acks=all wait does
    // not hold up another's append.
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for t in req.topic_data {
        let name = t.name.to_string();
        let indexes: Vec<i32> = t.partition_data.iter().map(|p| p.index).collect();
        if acks.is_none() {
            let code = ResponseError::InvalidRequiredAcks.code();
            topics.push((name, Err((indexes, code))));
            continue;
        }
        let partitions = t
            .partition_data
            .into_iter()
            .map(|p| PartitionProduce {
                partition: u32::try_from(p.index).unwrap_or(u32::MAX),
                data: match p.records {
                    Some(bytes) => Ok(ProduceData::Batches {
                        bytes,
                        compression: None,
                        verification: None,
                    }),
                    None => Err(BrokerError::invalid(format!(
                        "partition {}: no records",
                        p.index
                    ))),
                },
            })
            .collect();
        let mut request = produce::ProduceRequest {
            topic: name.clone(),
            acks: acks.expect("checked above"),
            timeout,
            partitions,
        };
        if let Some(id) = &transactional_id {
            // Without Write on the id every partition is refused (Kafka's
            // TRANSACTIONAL_ID_AUTHORIZATION_FAILED); a partition the check refuses is
            // answered in its place by `submit`.
            if let Err(e) = transactions::verify_produce(&broker.core, ctx, id, &mut request).await
            {
                topics.push((name, Err((indexes, error_code(&e)))));
                continue;
            }
        }
        let submitted = produce::submit(&broker.core, ctx, request).await;
        topics.push((name, submitted.map_err(|e| (indexes, error_code(&e)))));
    }
    let silent = acks == Some(Acks::None);
    // A quota held the request back while it was queued (the core's `submit`).
    let throttle_time_ms = ctx.throttle_ms();
    Ok(async move {
        let mut responses = Vec::with_capacity(topics.len());
        for (name, submitted) in topics {
            let partitions: Vec<PartitionProduceResponse> = match submitted {
                Err((indexes, code)) => indexes
                    .into_iter()
                    .map(|index| refused(index, code, None))
                    .collect(),
                Ok(pending) => pending
                    .finish()
                    .await
                    .into_iter()
                    .map(|r| match r.outcome {
                        Ok(appended) => PartitionProduceResponse::default()
                            .with_index(r.partition as i32)
                            .with_base_offset(appended.base_offset)
                            .with_log_append_time_ms(appended.log_append_time_ms)
                            .with_log_start_offset(-1),
                        Err(e) => refused(
                            r.partition as i32,
                            produce_code(&e, version),
                            Some(e.message.clone()),
                        )
                        .with_record_errors(record_errors(&e)),
                    })
                    .collect(),
            };
            responses.push(
                TopicProduceResponse::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partition_responses(partitions),
            );
        }
        if silent {
            return Ok(Response::Silent);
        }
        Response::encode(
            &ProduceResponse::default()
                .with_responses(responses)
                .with_throttle_time_ms(throttle_time_ms),
            version,
        )
    })
}

/// Produce v12 is the first whose producer knows TRANSACTION_ABORTABLE (KIP-890);
/// older ones hear INVALID_TXN_STATE for a partition not in their transaction.
const FIRST_TRANSACTION_ABORTABLE_PRODUCE: i16 = 12;

/// A coordinator's PRODUCER_FENCED as a produce answers it: INVALID_PRODUCER_EPOCH, as a
/// partition answers a producer whose epoch a newer instance bumped, and as Kafka's
/// leader converts its coordinator's answer ("the same meaning to the client"). librdkafka
/// takes INVALID_PRODUCER_EPOCH on a produce for its fatal "fenced" and PRODUCER_FENCED
/// for an abortable error (its test 0103, producing after the fence).
fn fenced_as_produce(code: i16) -> i16 {
    if code == ResponseError::ProducerFenced.code() {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        code
    }
}

/// The Kafka code a produce's partition is refused with: a coordinator's
/// PRODUCER_FENCED as INVALID_PRODUCER_EPOCH, TRANSACTION_ABORTABLE as INVALID_TXN_STATE
/// before the version that knows it, and a leader epoch that changed under the append
/// as NOT_LEADER_OR_FOLLOWER. A produce carries no leader epoch and Kafka never answers
/// it FENCED_LEADER_EPOCH; librdkafka fails the batch on that code where it retries a
/// lost leadership (found by the soak: an idempotent producer's writes failed across a
/// leadership change).
fn produce_code(e: &BrokerError, version: i16) -> i16 {
    if matches!(e.reason, Reason::FencedLeaderEpoch { .. }) {
        return ResponseError::NotLeaderOrFollower.code();
    }
    abortable_as_known(
        fenced_as_produce(error_code(e)),
        version,
        FIRST_TRANSACTION_ABORTABLE_PRODUCE,
    )
}

/// The records an INVALID_RECORD answer names (v8+; older versions carry the code
/// alone).
fn record_errors(e: &BrokerError) -> Vec<BatchIndexAndErrorMessage> {
    e.record_errors()
        .iter()
        .map(|r| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(i32::try_from(r.batch_index).unwrap_or(i32::MAX))
                .with_batch_index_error_message(Some(StrBytes::from_string(r.message.clone())))
        })
        .collect()
}

fn refused(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(StrBytes::from_string))
}

pub(super) async fn init_producer_id(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: InitProducerIdRequest = request.decode_body()?;
    let response = if let Some(id) = req.transactional_id.as_ref().map(|id| id.to_string()) {
        // KIP-360: a producer re-initialising after an error names its id and epoch.
        let expected = (req.producer_id.0 >= 0).then_some(ProducerIdAndEpoch {
            producer_id: req.producer_id.0,
            epoch: req.producer_epoch,
        });
        let init = weir_broker::transactions::init_producer_id(
            &broker.core,
            ctx,
            &id,
            req.transaction_timeout_ms,
            expected,
        )
        .await;
        match init {
            Ok(p) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(p.producer_id))
                .with_producer_epoch(p.epoch),
            // PRODUCER_FENCED from InitProducerId v4 on (KIP-588).
            Err(e) => InitProducerIdResponse::default()
                .with_error_code(fenced_as_known(error_code(&e), request.api_version, 4))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        }
    } else {
        match weir_broker::producers::init_producer_id(&broker.core, ctx, None).await {
            Ok((id, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
            Err(e) => InitProducerIdResponse::default()
                .with_error_code(error_code(&e))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        }
    };
    answer(ctx, request, response)
}

pub(super) async fn describe_producers(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DescribeProducersRequest = request.decode_body()?;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let indexes: Vec<u32> = t
            .partition_indexes
            .iter()
            .filter_map(|&p| u32::try_from(p).ok())
            .collect();
        let mut found = weir_broker::producers::describe_producers(
            &broker.core,
            ctx,
            t.name.as_str(),
            &indexes,
        )
        .await
        .map(Vec::into_iter);
        let partitions = t
            .partition_indexes
            .iter()
            .map(|&index| {
                let outcome = match &mut found {
                    Ok(_) if index < 0 => Err(BrokerError::invalid("a negative partition index")),
                    Ok(found) => found.next().expect("one answer per partition"),
                    Err(e) => Err(e.clone()),
                };
                let result = PartitionResponse::default().with_partition_index(index);
                match outcome {
                    Ok(producers) => result.with_active_producers(
                        producers
                            .into_iter()
                            .map(|p| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(p.producer_id))
                                    .with_producer_epoch(p.epoch.into())
                                    .with_last_sequence(p.last_sequence)
                                    .with_last_timestamp(p.last_timestamp)
                                    .with_coordinator_epoch(p.coordinator_epoch)
                                    .with_current_txn_start_offset(
                                        p.current_txn_start_offset.unwrap_or(-1),
                                    )
                            })
                            .collect(),
                    ),
                    Err(e) => result
                        .with_error_code(error_code(&e))
                        .with_error_message(Some(StrBytes::from_string(e.message))),
                }
            })
            .collect();
        topics.push(
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    answer(
        ctx,
        request,
        DescribeProducersResponse::default().with_topics(topics),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leadership_lost_under_an_append_is_not_leader_to_kafka_producers() {
        let lost = BrokerError::new(Reason::FencedLeaderEpoch { epoch: None }, "epoch moved");
        for version in [3, 9, 12] {
            assert_eq!(
                produce_code(&lost, version),
                ResponseError::NotLeaderOrFollower.code()
            );
        }
        let full = BrokerError::new(Reason::StorageFull, "no space");
        assert_eq!(
            produce_code(&full, 9),
            ResponseError::KafkaStorageError.code()
        );
    }
}
