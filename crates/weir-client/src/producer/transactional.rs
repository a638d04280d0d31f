//! [`TransactionalProducer`]: Kafka's transactional producer over Weir's gRPC API
//! (`transactions.proto`): records to any partitions, and a consumer group's offsets,
//! committed or aborted together. Readers at [`IsolationLevel::ReadCommitted`]
//! (crate::IsolationLevel) see a transaction's records once it commits, never those of
//! one that aborts.
//!
//! It is the idempotent [`Producer`] with three additions:
//!
//! - its producer id and epoch come from the coordinator of its transactional id
//!   (`Transactions.InitProducerId`, which fences every older instance of the id,
//!   aborting its open transaction first);
//! - each partition is added to the open transaction before its first batch goes out:
//!   the accumulator holds the batches of a partition not added yet, and the sender adds
//!   the waiting partitions in one `AddPartitions` call at a time (`add_partitions`);
//! - its batches carry the transactional bit and its produces the transactional id, so
//!   each partition's leader checks the first batch with the coordinator (KIP-890).
//!
//! Calls to the coordinator follow it as group calls do (`Groups.FindCoordinator` with
//! the transaction type, found again after NOT_COORDINATOR or a broken connection) and
//! are retried while the answer is retriable (UNAVAILABLE: the coordinator moving,
//! loading, or finishing the previous transaction) for up to `request_timeout`.
//!
//! A batch or an add that fails for good leaves the transaction unable to commit:
//! [`commit_transaction`](TransactionalProducer::commit_transaction) and later sends
//! fail with that error, and the application aborts. An abort drops what was not sent
//! yet, waits for what is in flight, ends the transaction at the coordinator, and, if
//! a batch failed for good, asks for a new epoch (so the partitions' sequences start
//! again). A newer instance of the transactional id fences this one for good
//! ([`ClientError::ProducerFenced`]), and so does a transaction left open past
//! `transaction_timeout` (its coordinator aborts it and bumps the epoch, as Kafka's
//! does): make a new producer.
//!
//! # Example: consume, transform, produce, exactly once
//!
//! ```no_run
//! use std::time::Duration;
//! use weir_client::{
//!     GroupConsumer, GroupConsumerConfig, IsolationLevel, ProducerConfig, ProducerRecord,
//!     TransactionalProducer,
//! };
//!
//! # async fn example() -> Result<(), weir_client::ClientError> {
//! let mut consumer = GroupConsumer::connect(GroupConsumerConfig {
//!     group_id: "copier".into(),
//!     isolation: IsolationLevel::ReadCommitted,
//!     auto_commit: false,
//!     ..GroupConsumerConfig::default()
//! })
//! .await?;
//! consumer.subscribe(["input"])?;
//! let producer = TransactionalProducer::connect(ProducerConfig {
//!     transactional_id: Some("copier-1".into()),
//!     ..ProducerConfig::default()
//! })
//! .await?;
//! loop {
//!     let records = consumer.poll(500, Duration::from_millis(200)).await?;
//!     if records.is_empty() {
//!         continue;
//!     }
//!     producer.begin_transaction()?;
//!     for r in &records {
//!         let value = r.value.clone().unwrap_or_default();
//!         producer.send(ProducerRecord::new("output", value)).await?;
//!     }
//!     producer
//!         .send_offsets_to_transaction(consumer.positions(), &consumer.group_metadata())
//!         .await?;
//!     if let Err(error) = producer.commit_transaction().await {
//!         eprintln!("aborting: {error}");
//!         producer.abort_transaction().await?;
//!     }
//! }
//! # }
//! ```

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_proto::v1 as pb;
use weir_proto::v1::transactions_client::TransactionsClient;

use super::accumulator::{Accumulator, Identity};
use super::{BatchDelivery, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordRef};
use crate::connection::BrokerChannel as Channel;
use crate::consumer::reconnect_backoff as backoff;
use crate::error::ClientError;
use crate::group::commit::offset_commits;
use crate::group::heartbeat::topic_partitions;
use crate::group::link::{CoordinatorLink, MAX_COORDINATOR_RETRY_BACKOFF};
use crate::group::{GroupMetadata, TopicPartition};

/// First wait before a coordinator call is tried again.
const INITIAL_RETRY_BACKOFF: Duration = Duration::from_millis(20);

/// See the [module docs](self).
#[derive(Debug)]
pub struct TransactionalProducer {
    producer: Producer,
    coordinator: Arc<CoordinatorLink>,
    transactional_id: String,
}

impl TransactionalProducer {
    /// Connects, and gets the producer id and epoch of `config.transactional_id` from its
    /// coordinator (fencing older instances). Needs `transactional_id`; see
    /// [`ProducerConfig`] for what goes with it.
    pub async fn connect(config: ProducerConfig) -> Result<TransactionalProducer, ClientError> {
        let Some(transactional_id) = config.transactional_id.clone() else {
            return Err(ClientError::Config(
                "a TransactionalProducer needs transactional_id".into(),
            ));
        };
        let producer = Producer::connect(config).await?;
        let coordinator = producer
            .txn_coordinator
            .clone()
            .expect("a producer with a transactional id links its coordinator");
        let this = TransactionalProducer {
            producer,
            coordinator,
            transactional_id,
        };
        if let Err(error) = this.init().await {
            // The sender task ends only when its producer closes.
            this.producer.close().await;
            return Err(error);
        }
        Ok(this)
    }

    fn accumulator(&self) -> &Accumulator {
        &self.producer.accumulator
    }

    /// The transactional id.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Gets a producer id and epoch from the coordinator; new batches are numbered under
    /// them.
    async fn init(&self) -> Result<(), ClientError> {
        let config = self.accumulator().config();
        let request = pb::InitTransactionsRequest {
            transactional_id: self.transactional_id.clone(),
            transaction_timeout_ms: u32::try_from(config.transaction_timeout.as_millis())
                .unwrap_or(u32::MAX),
        };
        let answer = call(&self.coordinator, config.request_timeout, |mut client| {
            let request = request.clone();
            async move { client.init_producer_id(request).await }
        })
        .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                if matches!(error, ClientError::ProducerFenced(_)) {
                    self.accumulator().fail_fatal(error.clone());
                }
                return Err(error);
            }
        };
        let epoch = i16::try_from(answer.producer_epoch).map_err(|_| {
            ClientError::Unavailable(format!(
                "the coordinator gave producer epoch {}, which does not fit an int16",
                answer.producer_epoch
            ))
        })?;
        self.accumulator().set_identity(Identity {
            producer_id: answer.producer_id,
            epoch,
        });
        Ok(())
    }

    /// Opens a transaction. Fails if one is open already.
    pub fn begin_transaction(&self) -> Result<(), ClientError> {
        self.accumulator().begin_transaction()
    }

    /// Sends `record` as part of the open transaction (see [`Producer::send`]). Fails at
    /// once when no transaction is open or the open one can no longer commit.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ClientError> {
        self.producer.send(record).await
    }

    /// Sends many records of one topic as part of the open transaction (see
    /// [`Producer::send_all`]).
    pub async fn send_all<'r, R>(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: impl IntoIterator<Item = R>,
    ) -> Result<BatchDelivery, ClientError>
    where
        R: Into<RecordRef<'r>>,
    {
        self.producer.send_all(topic, partition, records).await
    }

    /// Sends every buffered record now and waits for their answers (their
    /// [`DeliveryFuture`]s are resolved after this).
    pub async fn flush(&self) {
        self.producer.flush().await;
    }

    /// Commits a consumer group's offsets as part of the open transaction (Kafka's
    /// `sendOffsetsToTransaction`): `offsets` are the next offsets to consume (what
    /// [`GroupConsumer::positions`](crate::GroupConsumer::positions) gives), `group` the
    /// consuming member ([`GroupConsumer::group_metadata`](crate::GroupConsumer::group_metadata)),
    /// checked by the group's coordinator so that a member that lost its partitions
    /// cannot commit them. They become the group's committed offsets when the transaction
    /// commits. A failure leaves the transaction unable to commit.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
        group: &GroupMetadata,
    ) -> Result<(), ClientError> {
        let result = self.send_offsets(offsets, group).await;
        if let Err(error) = &result {
            self.accumulator()
                .fail_transaction(ClientError::FailedPrecondition(format!(
                    "the transaction cannot commit: its offsets of group {} were not written \
                 ({error}); abort it",
                    group.group_id
                )));
        }
        result
    }

    async fn send_offsets(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
        group: &GroupMetadata,
    ) -> Result<(), ClientError> {
        if !self.accumulator().transaction_open() {
            return Err(ClientError::FailedPrecondition(
                "no transaction is open: call begin_transaction first".into(),
            ));
        }
        let identity = self.identity()?;
        let config = self.accumulator().config();
        let add = pb::AddOffsetsRequest {
            transactional_id: self.transactional_id.clone(),
            producer_id: identity.producer_id,
            producer_epoch: identity.epoch.into(),
            group_id: group.group_id.clone(),
        };
        call(&self.coordinator, config.request_timeout, |mut client| {
            let add = add.clone();
            async move { client.add_offsets(add).await }
        })
        .await?;
        self.accumulator().offsets_added();
        let offsets: Vec<(TopicPartition, i64)> = offsets.into_iter().collect();
        let commit = pb::TransactionalCommitRequest {
            transactional_id: self.transactional_id.clone(),
            producer_id: identity.producer_id,
            producer_epoch: identity.epoch.into(),
            group_id: group.group_id.clone(),
            member_id: group.member_id.clone(),
            member_epoch: group.member_epoch,
            topics: offset_commits(&offsets),
        };
        // The group's coordinator takes the offsets.
        let group_coordinator = self
            .coordinator
            .sibling(&group.group_id, pb::CoordinatorType::Group);
        let answer = call(&group_coordinator, config.request_timeout, |mut client| {
            let commit = commit.clone();
            async move { client.commit_offsets(commit).await }
        })
        .await?;
        // One partition's refusal (the others are written) fails the transaction's
        // offsets as a whole.
        match answer.results.into_iter().find_map(|r| r.error) {
            None => Ok(()),
            Some(error) => Err(ClientError::from_partition_error(&error)),
        }
    }

    /// Commits the open transaction: sends every record buffered, waits for their
    /// answers, then ends the transaction at the coordinator. Fails, leaving the
    /// transaction to abort, if a record or the offsets of it failed.
    pub async fn commit_transaction(&self) -> Result<(), ClientError> {
        if !self.accumulator().transaction_open() {
            return Err(ClientError::FailedPrecondition(
                "no transaction is open to commit".into(),
            ));
        }
        self.producer.flush().await;
        if let Some(error) = self.accumulator().transaction_failed() {
            return Err(error);
        }
        if let Err(error) = self.end(true).await {
            self.accumulator().fail_transaction(error.clone());
            return Err(error);
        }
        self.accumulator().end_transaction();
        Ok(())
    }

    /// Aborts the open transaction: records not sent yet are dropped (their deliveries
    /// fail), those in flight are waited for, and the coordinator aborts the rest, so no
    /// read-committed reader sees any of them.
    pub async fn abort_transaction(&self) -> Result<(), ClientError> {
        if !self.accumulator().transaction_open() {
            return Err(ClientError::FailedPrecondition(
                "no transaction is open to abort".into(),
            ));
        }
        self.accumulator()
            .drop_unsent(&ClientError::FailedPrecondition(
                "not sent: the transaction was aborted".into(),
            ));
        self.producer.flush().await;
        self.end(false).await?;
        self.accumulator().end_transaction();
        if self.accumulator().identity_wanted() {
            // A batch failed for good: its partition expects a sequence that will never
            // come. A new epoch starts every partition's sequence again.
            self.init().await?;
        }
        Ok(())
    }

    /// EndTransaction, unless nothing reached the coordinator in this transaction.
    async fn end(&self, commit: bool) -> Result<(), ClientError> {
        if !self.accumulator().anything_in_transaction() {
            return Ok(());
        }
        let identity = self.identity()?;
        let request = pb::EndTransactionRequest {
            transactional_id: self.transactional_id.clone(),
            producer_id: identity.producer_id,
            producer_epoch: identity.epoch.into(),
            commit,
        };
        let config = self.accumulator().config();
        call(&self.coordinator, config.request_timeout, |mut client| {
            let request = request.clone();
            async move { client.end_transaction(request).await }
        })
        .await?;
        Ok(())
    }

    fn identity(&self) -> Result<Identity, ClientError> {
        self.accumulator().identity().ok_or_else(|| {
            ClientError::FailedPrecondition("the producer has no producer id".into())
        })
    }

    /// Closes the producer: what is buffered is sent (an open transaction is left to its
    /// coordinator, which aborts it after its timeout, or when a new instance starts).
    pub async fn close(self) {
        self.producer.close().await;
    }
}

/// A call to a coordinator, following it and retrying retriable answers (see the
/// module docs) for up to `timeout`.
pub(super) async fn call<T, F, Fut>(
    coordinator: &CoordinatorLink,
    timeout: Duration,
    mut f: F,
) -> Result<T, ClientError>
where
    F: FnMut(TransactionsClient<Channel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + timeout;
    let mut failures = 0;
    loop {
        let attempt = async {
            let client = TransactionsClient::new(coordinator.channel().await?);
            f(client)
                .await
                .map(tonic::Response::into_inner)
                .map_err(ClientError::from)
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let error = match tokio::time::timeout(remaining, attempt).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(error)) => error,
            Err(_) => ClientError::DeadlineExceeded(format!(
                "the transaction coordinator did not answer within {timeout:?}"
            )),
        };
        coordinator.failed(&error);
        if !error.is_retriable() || Instant::now() >= deadline {
            return Err(error);
        }
        failures += 1;
        let wait = backoff(INITIAL_RETRY_BACKOFF, failures).min(MAX_COORDINATOR_RETRY_BACKOFF);
        tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// Adds the partitions the accumulator holds batches for to the open transaction, one
/// call at a time, until none is wanted (the sender starts it when some are).
pub(super) async fn add_partitions(accumulator: &Accumulator, coordinator: &CoordinatorLink) {
    let config = accumulator.config();
    let transactional_id = config.transactional_id.clone().unwrap_or_default();
    while let Some(add) = accumulator.take_partitions_to_add() {
        let identity = add.identity;
        let partitions: BTreeSet<TopicPartition> = add
            .partitions
            .iter()
            .map(|(topic, partition)| TopicPartition::new(topic.clone(), *partition))
            .collect();
        let request = pb::AddPartitionsRequest {
            transactional_id: transactional_id.clone(),
            producer_id: identity.producer_id,
            producer_epoch: identity.epoch.into(),
            topics: topic_partitions(&partitions),
        };
        let answer = call(coordinator, config.request_timeout, |mut client| {
            let request = request.clone();
            async move { client.add_partitions(request).await }
        })
        .await;
        match answer {
            Ok(_) => accumulator.partitions_added(add),
            Err(error) => {
                tracing::warn!(%error, transactional_id, "partitions could not be added to the transaction");
                accumulator.partitions_not_added(&add, &error);
                if matches!(error, ClientError::ProducerFenced(_)) {
                    accumulator.fail_fatal(error);
                }
            }
        }
    }
}
