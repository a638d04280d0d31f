//! Transactions over the Kafka protocol, through the core's `transactions` module:
//! InitProducerId with a transactional id (in `produce.rs`, with the idempotent form),
//! AddPartitionsToTxn (v0-v3, the client's form), AddOffsetsToTxn, TxnOffsetCommit,
//! EndTxn, DescribeTransactions and ListTransactions.
//! FindCoordinator with key type 1 is in `groups/mod.rs`. Reasons become Kafka codes in
//! `errors.rs`.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedState,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TransactionalId,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::protocol::StrBytes;
use weir_broker::transactions::{
    self as txn, AddOutcome, EndTxn, ListFilter, ProducerIdAndEpoch, TopicPartition, TxnResult,
    TxnVersion,
};
use weir_broker::{BrokerError, RequestContext};

use super::errors::{abortable_as_known, fenced_as_known};
use super::groups::{commit_codes, commit_of};
use super::{KafkaBroker, answer, error_code};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};

/// The first AddPartitionsToTxn, AddOffsetsToTxn and EndTxn version that knows
/// PRODUCER_FENCED (KIP-588); older ones are told INVALID_PRODUCER_EPOCH.
const FENCED_SINCE: i16 = 2;

/// The last AddPartitionsToTxn version a client sends (v4+ carries several
/// transactions, brokers' verify-only form).
pub(super) const LAST_CLIENT_ADD_PARTITIONS: i16 = 3;

pub(super) async fn add_partitions_to_txn(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: AddPartitionsToTxnRequest = request.decode_body()?;
    let partitions: Vec<TopicPartition> = req
        .v3_and_below_topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|&p| TopicPartition::new(t.name.to_string(), p))
        })
        .collect();
    let producer = ProducerIdAndEpoch {
        producer_id: req.v3_and_below_producer_id.0,
        epoch: req.v3_and_below_producer_epoch,
    };
    let outcome = txn::add_partitions_to_txn(
        &broker.core,
        ctx,
        &req.v3_and_below_transactional_id,
        producer,
        partitions.clone(),
    )
    .await;
    let not_attempted = ResponseError::OperationNotAttempted.code();
    let code_of = |tp: &TopicPartition| -> i16 {
        let code = match &outcome {
            Ok(AddOutcome::Added) => 0,
            Ok(AddOutcome::Refused(refused)) => refused
                .iter()
                .find(|(r, _)| r == tp)
                .map_or(not_attempted, |(_, e)| error_code(e)),
            Err(e) => error_code(e),
        };
        fenced_as_known(code, request.api_version, FENCED_SINCE)
    };
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for t in &req.v3_and_below_topics {
        let results = t
            .partitions
            .iter()
            .map(|&p| {
                let tp = TopicPartition::new(t.name.to_string(), p);
                AddPartitionsToTxnPartitionResult::default()
                    .with_partition_index(p)
                    .with_partition_error_code(code_of(&tp))
            })
            .collect();
        topics.push(
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(results),
        );
    }
    answer(
        ctx,
        request,
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics),
    )
}

pub(super) async fn add_offsets_to_txn(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: AddOffsetsToTxnRequest = request.decode_body()?;
    let producer = ProducerIdAndEpoch {
        producer_id: req.producer_id.0,
        epoch: req.producer_epoch,
    };
    let outcome = txn::add_offsets_to_txn(
        &broker.core,
        ctx,
        &req.transactional_id,
        producer,
        &req.group_id,
    )
    .await;
    let code = outcome.err().map_or(0, |e| error_code(&e));
    let code = fenced_as_known(code, request.api_version, FENCED_SINCE);
    answer(
        ctx,
        request,
        AddOffsetsToTxnResponse::default().with_error_code(code),
    )
}

/// The last TxnOffsetCommit version served (v5 belongs to transaction version 2, which
/// is not advertised).
pub(super) const LAST_TXN_OFFSET_COMMIT: i16 = 4;

/// TxnOffsetCommit v5 is the first whose client knows TRANSACTION_ABORTABLE (KIP-890);
/// older ones hear INVALID_TXN_STATE for a group whose offsets the transaction does not
/// hold.
const FIRST_TRANSACTION_ABORTABLE_OFFSET_COMMIT: i16 = 5;

pub(super) async fn txn_offset_commit(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: TxnOffsetCommitRequest = request.decode_body()?;
    let mut offsets = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            offsets.push(commit_of(
                &t.name,
                p.partition_index,
                p.committed_offset,
                p.committed_metadata.as_deref(),
                p.committed_leader_epoch,
            ));
        }
    }
    let producer = ProducerIdAndEpoch {
        producer_id: req.producer_id.0,
        epoch: req.producer_epoch,
    };
    // v3+ carries the consumer's member id and generation (KIP-447).
    let member = Some((req.member_id.as_str(), req.generation_id));
    let outcome = txn::txn_offset_commit(
        &broker.core,
        ctx,
        &req.transactional_id,
        producer,
        &req.group_id,
        member,
        offsets,
    )
    .await;
    let partitions = req.topics.iter().map(|t| t.partitions.len()).sum();
    let version = request.api_version;
    let mut codes = commit_codes(&outcome, partitions, error_code)
        .map(|code| abortable_as_known(code, version, FIRST_TRANSACTION_ABORTABLE_OFFSET_COMMIT));
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
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
        TxnOffsetCommitResponse::default().with_topics(topics),
    )
}

pub(super) async fn end_txn(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: EndTxnRequest = request.decode_body()?;
    let end = EndTxn {
        transactional_id: req.transactional_id.to_string(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        result: if req.committed {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        },
        // Transaction version 2 (an epoch bump per EndTxn) is not advertised, so a
        // client speaks version 0 or 1, which end alike.
        version: TxnVersion::TV0,
    };
    let response = match txn::end_txn(&broker.core, ctx, end).await {
        Ok(next) => EndTxnResponse::default()
            .with_producer_id(ProducerId(next.producer_id))
            .with_producer_epoch(next.epoch),
        Err(e) => EndTxnResponse::default()
            .with_error_code(fenced_as_known(
                error_code(&e),
                request.api_version,
                FENCED_SINCE,
            ))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    };
    answer(ctx, request, response)
}

pub(super) async fn describe_transactions(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DescribeTransactionsRequest = request.decode_body()?;
    let too_many = (req.transactional_ids.len() > txn::MAX_DESCRIBED_TRANSACTIONS).then(|| {
        BrokerError::invalid(format!(
            "a describe-transactions request names {} transactional ids; at most {} are accepted",
            req.transactional_ids.len(),
            txn::MAX_DESCRIBED_TRANSACTIONS
        ))
    });
    let mut states = Vec::with_capacity(req.transactional_ids.len());
    for id in &req.transactional_ids {
        let described = match &too_many {
            Some(e) => Err(e.clone()),
            None => txn::describe_transaction(&broker.core, ctx, id).await,
        };
        let state = DescribedState::default().with_transactional_id(id.clone());
        states.push(match described {
            Ok(d) => {
                let mut topics: Vec<TopicData> = Vec::new();
                for tp in d.partitions {
                    match topics.iter_mut().find(|t| *t.topic == *tp.topic) {
                        Some(t) => t.partitions.push(tp.partition),
                        None => topics.push(
                            TopicData::default()
                                .with_topic(TopicName(StrBytes::from_string(tp.topic)))
                                .with_partitions(vec![tp.partition]),
                        ),
                    }
                }
                state
                    .with_transaction_state(StrBytes::from_static_str(d.state.name()))
                    .with_transaction_timeout_ms(d.timeout_ms)
                    .with_transaction_start_time_ms(d.start_ms)
                    .with_producer_id(ProducerId(d.producer_id))
                    .with_producer_epoch(d.producer_epoch)
                    .with_topics(topics)
            }
            Err(e) => state
                .with_error_code(error_code(&e))
                .with_transaction_state(StrBytes::from_static_str(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1),
        });
    }
    answer(
        ctx,
        request,
        DescribeTransactionsResponse::default().with_transaction_states(states),
    )
}

pub(super) async fn list_transactions(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: ListTransactionsRequest = request.decode_body()?;
    let filter = ListFilter {
        producer_ids: req.producer_id_filters.iter().map(|p| p.0).collect(),
        states: req.state_filters.iter().map(|s| s.to_string()).collect(),
        // v1's duration filter; -1 (and v0) is none.
        min_duration_ms: (req.duration_filter >= 0).then_some(req.duration_filter),
    };
    let response = match txn::list_transactions(&broker.core, ctx, &filter).await {
        Ok((rows, unknown)) => ListTransactionsResponse::default()
            .with_unknown_state_filters(unknown.into_iter().map(StrBytes::from_string).collect())
            .with_transaction_states(
                rows.into_iter()
                    .map(|r| {
                        ListedState::default()
                            .with_transactional_id(TransactionalId(StrBytes::from_string(
                                r.transactional_id,
                            )))
                            .with_producer_id(ProducerId(r.producer_id))
                            .with_transaction_state(StrBytes::from_static_str(r.state.name()))
                    })
                    .collect(),
            ),
        Err(e) => ListTransactionsResponse::default().with_error_code(error_code(&e)),
    };
    answer(ctx, request, response)
}
