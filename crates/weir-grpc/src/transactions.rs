//! The Transactions service: a transactional producer's calls (transactions.proto),
//! decoded and handed to `weir_broker::transactions`, which holds every rule, limit and
//! authorisation, as the Kafka listener's transaction handlers do. The produce-time
//! check of a transactional producer's batches is in the Producer service's `submit`.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_broker::limits::MAX_PARTITIONS_PER_REQUEST;
use weir_broker::transactions::{
    self as core, AddOutcome, EndTxn, ProducerIdAndEpoch, TopicPartition, TxnResult, TxnVersion,
};
use weir_proto::v1::{
    AddOffsetsRequest, AddOffsetsResponse, AddPartitionsRequest, AddPartitionsResponse,
    EndTransactionRequest, EndTransactionResponse, InitTransactionsRequest,
    InitTransactionsResponse, TransactionalCommitRequest, TransactionalCommitResponse,
    TransactionalCommitResult, transactions_server::Transactions,
};

use crate::status::{self, broker_partition_error, broker_status};
use crate::{Broker, grpc_context};

/// The transaction timeout when InitProducerId gives none (Kafka producers'
/// `transaction.timeout.ms` default).
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: u32 = 60_000;

/// The Transactions gRPC service.
#[derive(Debug, Clone)]
pub struct TransactionsService {
    broker: Arc<Broker>,
}

impl TransactionsService {
    pub(crate) fn new(broker: Arc<Broker>) -> TransactionsService {
        TransactionsService { broker }
    }
}

/// A producer id and epoch from a request; an epoch that does not fit an int16 is
/// INVALID_ARGUMENT.
fn producer(producer_id: i64, producer_epoch: i32) -> Result<ProducerIdAndEpoch, Status> {
    let epoch = i16::try_from(producer_epoch).map_err(|_| {
        status::invalid(format!(
            "producer_epoch {producer_epoch} does not fit an int16"
        ))
    })?;
    Ok(ProducerIdAndEpoch { producer_id, epoch })
}

#[tonic::async_trait]
impl Transactions for TransactionsService {
    async fn init_producer_id(
        &self,
        request: Request<InitTransactionsRequest>,
    ) -> Result<Response<InitTransactionsResponse>, Status> {
        let _timer = self
            .broker
            .metrics()
            .rpc_timer("Transactions.InitProducerId");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let timeout_ms = match req.transaction_timeout_ms {
            0 => DEFAULT_TRANSACTION_TIMEOUT_MS,
            ms => ms,
        };
        // Past an int32 is past any coordinator's maximum: refused there, by name.
        let timeout_ms = i32::try_from(timeout_ms).unwrap_or(i32::MAX);
        let ids = core::init_producer_id(
            &self.broker.core,
            &ctx,
            &req.transactional_id,
            timeout_ms,
            None,
        )
        .await
        .map_err(broker_status)?;
        Ok(Response::new(InitTransactionsResponse {
            producer_id: ids.producer_id,
            producer_epoch: ids.epoch.into(),
        }))
    }

    async fn add_partitions(
        &self,
        request: Request<AddPartitionsRequest>,
    ) -> Result<Response<AddPartitionsResponse>, Status> {
        let _timer = self
            .broker
            .metrics()
            .rpc_timer("Transactions.AddPartitions");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let ids = producer(req.producer_id, req.producer_epoch)?;
        let count: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
        if count > MAX_PARTITIONS_PER_REQUEST {
            return Err(status::invalid(format!(
                "AddPartitions names {count} partitions; at most \
                 {MAX_PARTITIONS_PER_REQUEST} are accepted"
            )));
        }
        let mut partitions = Vec::with_capacity(count);
        for t in &req.topics {
            for &p in &t.partitions {
                let index = i32::try_from(p).map_err(|_| {
                    status::invalid(format!("partition {p} of {} is out of range", t.topic))
                })?;
                partitions.push(TopicPartition::new(t.topic.as_str(), index));
            }
        }
        let outcome = core::add_partitions_to_txn(
            &self.broker.core,
            &ctx,
            &req.transactional_id,
            ids,
            partitions,
        )
        .await
        .map_err(broker_status)?;
        match outcome {
            AddOutcome::Added => Ok(Response::new(AddPartitionsResponse {})),
            // All or nothing: the first refusal, naming its partition, is the answer.
            AddOutcome::Refused(refused) => {
                let (tp, e) = refused
                    .into_iter()
                    .next()
                    .expect("a refusal names a partition");
                let index = u32::try_from(tp.partition).unwrap_or(u32::MAX);
                Err(broker_status(e.at(&tp.topic, index)))
            }
        }
    }

    async fn add_offsets(
        &self,
        request: Request<AddOffsetsRequest>,
    ) -> Result<Response<AddOffsetsResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("Transactions.AddOffsets");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let ids = producer(req.producer_id, req.producer_epoch)?;
        core::add_offsets_to_txn(
            &self.broker.core,
            &ctx,
            &req.transactional_id,
            ids,
            &req.group_id,
        )
        .await
        .map_err(broker_status)?;
        Ok(Response::new(AddOffsetsResponse {}))
    }

    async fn commit_offsets(
        &self,
        request: Request<TransactionalCommitRequest>,
    ) -> Result<Response<TransactionalCommitResponse>, Status> {
        let _timer = self
            .broker
            .metrics()
            .rpc_timer("Transactions.CommitOffsets");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let ids = producer(req.producer_id, req.producer_epoch)?;
        let offsets = crate::groups::offset_commits(req.topics);
        let member =
            (!req.member_id.is_empty()).then_some((req.member_id.as_str(), req.member_epoch));
        let committed = core::txn_offset_commit(
            &self.broker.core,
            &ctx,
            &req.transactional_id,
            ids,
            &req.group_id,
            member,
            offsets,
        )
        .await
        .map_err(broker_status)?;
        let results = committed
            .into_iter()
            .map(|c| TransactionalCommitResult {
                topic: c.topic,
                partition: c.partition,
                error: c.result.err().map(|e| broker_partition_error(&e)),
            })
            .collect();
        Ok(Response::new(TransactionalCommitResponse { results }))
    }

    async fn end_transaction(
        &self,
        request: Request<EndTransactionRequest>,
    ) -> Result<Response<EndTransactionResponse>, Status> {
        let _timer = self
            .broker
            .metrics()
            .rpc_timer("Transactions.EndTransaction");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let ids = producer(req.producer_id, req.producer_epoch)?;
        let end = EndTxn {
            transactional_id: req.transactional_id,
            producer_id: ids.producer_id,
            producer_epoch: ids.epoch,
            result: if req.commit {
                TxnResult::Commit
            } else {
                TxnResult::Abort
            },
            // The epoch stays across transactions, as for Kafka clients today
            // (transaction version 2's bump per transaction is not offered yet).
            version: TxnVersion::TV0,
        };
        let next = core::end_txn(&self.broker.core, &ctx, end)
            .await
            .map_err(broker_status)?;
        Ok(Response::new(EndTransactionResponse {
            producer_id: next.producer_id,
            producer_epoch: next.epoch.into(),
        }))
    }
}
