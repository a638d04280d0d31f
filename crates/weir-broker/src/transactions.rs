//! Transactions (KIP-98, issue 44) through the broker's core: finding a transactional
//! id's coordinator, InitProducerId with a transactional id, AddPartitionsToTxn,
//! AddOffsetsToTxn and EndTxn (weir-cluster's [`TransactionCoordinator`] on the leader
//! of the id's `__transaction_state` partition), and the markers that end a transaction
//! on its partitions (Kafka's WriteTxnMarkers).
//!
//! A marker is appended through the partition's ordered queue like any append and
//! answered once the high watermark passes it (`acks=all`), so a marker that was
//! answered survives a failover. [`write_markers_here`] writes a coordinator's markers
//! on the partitions this broker leads: called in-process by the coordinator's marker
//! writer for the partitions its own broker leads, and by the internal
//! `Transactions.WriteTxnMarkers` call for those a coordinator on another broker sends
//! here (weir-server groups a transaction's partitions by leader). A partition this
//! broker does not lead answers NOT_LEADER, as Kafka's leader-side handler does, and the
//! coordinator sends the marker again later.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::join_all;
use weir_cluster::group::OFFSETS_TOPIC;
use weir_cluster::security::{Operation, ResourceType};
use weir_cluster::storage::{BATCH_HEADER_BYTES, BatchHeader, ControlType, TxnMarker};
use weir_cluster::txn::{
    self as txn, MarkerOutcome, MarkerRequest, TXN_STATE_TOPIC, TransactionError,
};
use weir_cluster::{Durability, Topic};

use crate::groups::Coordinator;
use crate::limits::{DEFAULT_PRODUCE_TIMEOUT, MAX_PARTITIONS_PER_REQUEST};
use crate::produce::{ProduceData, ProduceRequest};
use crate::{Broker, BrokerError, Listener, Reason, RequestContext};

pub use weir_cluster::txn::{
    EndTxn, ListFilter, ProducerIdAndEpoch, TopicPartition, TxnDescription, TxnError, TxnListing,
    TxnResult, TxnState, TxnVersion,
};

/// The coordinator of `transactional_id` as this broker's metadata says (Kafka's
/// FindCoordinator with key type TRANSACTION): Describe on the transactional id, then
/// the leader of its `__transaction_state` partition; COORDINATOR_NOT_AVAILABLE while
/// that partition has no leader.
pub fn find_coordinator(
    broker: &Broker,
    ctx: &RequestContext,
    transactional_id: &str,
) -> Result<Coordinator, BrokerError> {
    broker.authorize(
        ctx,
        Operation::Describe,
        ResourceType::TransactionalId,
        transactional_id,
    )?;
    let found = txn::find_coordinator(broker.registry(), transactional_id);
    crate::groups::coordinator_at(
        broker,
        "transactional id",
        transactional_id,
        TXN_STATE_TOPIC,
        found,
    )
}

/// Write on the transactional id, as Kafka requires of every transactional request.
fn authorize_write(
    broker: &Broker,
    ctx: &RequestContext,
    transactional_id: &str,
) -> Result<(), BrokerError> {
    broker.authorize(
        ctx,
        Operation::Write,
        ResourceType::TransactionalId,
        transactional_id,
    )
}

/// InitProducerId with a transactional id: a producer id and epoch, fencing every older
/// instance of the id (aborting its ongoing transaction first: the client retries on
/// CONCURRENT_TRANSACTIONS). `expected`: KIP-360's id and epoch of a producer that
/// re-initialises after an error.
pub async fn init_producer_id(
    broker: &Broker,
    ctx: &RequestContext,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<ProducerIdAndEpoch>,
) -> Result<ProducerIdAndEpoch, BrokerError> {
    authorize_write(broker, ctx, transactional_id)?;
    let init = txn::InitProducerId {
        transactional_id: transactional_id.to_string(),
        timeout_ms,
        expected,
    };
    Ok(broker.transactions()?.init_producer_id(init).await?)
}

/// What became of an AddPartitionsToTxn.
#[derive(Debug)]
pub enum AddOutcome {
    /// Every partition is in the transaction.
    Added,
    /// Nothing was added: these partitions were refused (not authorised, unknown); the
    /// others were not attempted (Kafka's OPERATION_NOT_ATTEMPTED).
    Refused(Vec<(TopicPartition, BrokerError)>),
}

/// AddPartitionsToTxn for one transaction: Write on the transactional id and on each
/// topic, every partition known, then the coordinator adds them (answered once the
/// state is replicated). A whole-request error (not authorised on the id, too many
/// partitions, the coordinator's refusal) applies to every partition.
pub async fn add_partitions_to_txn(
    broker: &Broker,
    ctx: &RequestContext,
    transactional_id: &str,
    producer: ProducerIdAndEpoch,
    partitions: Vec<TopicPartition>,
) -> Result<AddOutcome, BrokerError> {
    authorize_write(broker, ctx, transactional_id)?;
    if partitions.len() > MAX_PARTITIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "an add-partitions-to-txn request names {} partitions; at most \
             {MAX_PARTITIONS_PER_REQUEST} are accepted",
            partitions.len()
        )));
    }
    let mut refused = Vec::new();
    for tp in &partitions {
        // Known to the metadata is enough: the partition's leader may be another broker,
        // or not elected yet (a topic just created), as in Kafka.
        let checked = broker
            .topic_for(ctx, Operation::Write, &tp.topic)
            .and_then(|t| {
                let known = u32::try_from(tp.partition).is_ok_and(|i| i < t.partition_count());
                match known {
                    true => Ok(()),
                    false => Err(BrokerError::new(
                        Reason::UnknownPartition,
                        format!("partition {} of {} does not exist", tp.partition, tp.topic),
                    )),
                }
            });
        if let Err(e) = checked {
            refused.push((tp.clone(), e));
        }
    }
    if !refused.is_empty() {
        return Ok(AddOutcome::Refused(refused));
    }
    let add = txn::AddPartitions {
        transactional_id: transactional_id.to_string(),
        producer_id: producer.producer_id,
        producer_epoch: producer.epoch,
        partitions,
        verify_only: false,
    };
    broker.transactions()?.add_partitions(add).await?;
    Ok(AddOutcome::Added)
}

/// AddOffsetsToTxn: Write on the transactional id and Read on the group, then the
/// coordinator adds the group's `__consumer_offsets` partition to the transaction.
pub async fn add_offsets_to_txn(
    broker: &Broker,
    ctx: &RequestContext,
    transactional_id: &str,
    producer: ProducerIdAndEpoch,
    group_id: &str,
) -> Result<(), BrokerError> {
    authorize_write(broker, ctx, transactional_id)?;
    broker.authorize_group(ctx, Operation::Read, group_id)?;
    weir_cluster::group::validate_group_id(group_id)?;
    Ok(broker
        .transactions()?
        .add_offsets(
            transactional_id,
            producer.producer_id,
            producer.epoch,
            group_id,
        )
        .await?)
}

/// TxnOffsetCommit: Write on the transactional id and Read on the group (and on each
/// topic, as a plain commit), then the group coordinator writes the offsets as a
/// transactional batch of `producer` to the group's `__consumer_offsets` partition,
/// durably; they become the group's committed offsets when the transaction commits. A
/// partition's own problem is its answer; the others are committed together.
/// `member`: the consumer's member id and generation (or KIP-848 epoch), checked when
/// given.
pub async fn txn_offset_commit(
    broker: &Broker,
    ctx: &RequestContext,
    transactional_id: &str,
    producer: ProducerIdAndEpoch,
    group_id: &str,
    member: Option<(&str, i32)>,
    offsets: Vec<weir_cluster::group::OffsetCommit>,
) -> Result<Vec<crate::groups::PartitionCommitted>, BrokerError> {
    if offsets.len() > MAX_PARTITIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "a transactional commit names {} partitions; at most \
             {MAX_PARTITIONS_PER_REQUEST} are accepted",
            offsets.len()
        )));
    }
    authorize_write(broker, ctx, transactional_id)?;
    broker.authorize_group(ctx, Operation::Read, group_id)?;
    weir_cluster::group::validate_group_id(group_id)?;
    let coordinator = broker.groups()?;
    // KIP-890: the group's `__consumer_offsets` partition must be in the transaction
    // (AddOffsetsToTxn put it there), else a commit marker would never reach these
    // offsets, or an abort already did.
    let offsets_partition = coordinator.coordinator_partition(group_id) as i32;
    let added = TopicPartition::new(OFFSETS_TOPIC, offsets_partition);
    if let Some(verdicts) = ask_coordinator(broker, transactional_id, producer, vec![added]).await {
        // Not the group coordinator's NOT_COORDINATOR or LOADING: those would send the
        // client looking for another group coordinator.
        let verdicts = verdicts
            .map_err(|e| cannot_verify(transactional_id, e, Reason::CoordinatorNotAvailable))?;
        if let Some((_, Err(e))) = verdicts.into_iter().next() {
            return Err(BrokerError::new(
                Reason::Transaction(e),
                format!(
                    "the transaction of {transactional_id:?} does not hold group \
                     {group_id:?}'s offsets ({e}): AddOffsetsToTxn first"
                ),
            ));
        }
    }
    let mut answers = Vec::with_capacity(offsets.len());
    let mut valid = Vec::with_capacity(offsets.len());
    for o in offsets {
        match crate::groups::check_commit(broker, ctx, &o) {
            Ok(()) => {
                answers.push((o.topic.clone(), o.partition, None));
                valid.push(o);
            }
            Err(e) => answers.push((o.topic, o.partition, Some(e))),
        }
    }
    let member = member.filter(|(id, generation)| !id.is_empty() && *generation >= 0);
    coordinator
        .commit_txn_offsets(
            group_id,
            (producer.producer_id, producer.epoch),
            member,
            valid,
        )
        .await?;
    Ok(answers
        .into_iter()
        .map(
            |(topic, partition, error)| crate::groups::PartitionCommitted {
                topic,
                partition,
                result: error.map_or(Ok(()), Err),
            },
        )
        .collect())
}

/// EndTxn: Write on the transactional id, then commit or abort; answered once the
/// prepared state is replicated (the markers follow). The producer id and epoch to use
/// next (under transaction version 2, the bumped epoch).
pub async fn end_txn(
    broker: &Broker,
    ctx: &RequestContext,
    end: EndTxn,
) -> Result<ProducerIdAndEpoch, BrokerError> {
    authorize_write(broker, ctx, &end.transactional_id)?;
    Ok(broker.transactions()?.end_txn(end).await?)
}

/// KIP-890's produce-time check of a transactional producer's produce, made by every
/// listener for a request that names its transactional id, before
/// [`submit`](crate::produce::submit): Write on the transactional id (the whole
/// request's error without it), then each partition whose data is transactional
/// (batches with the transactional bit; plain records with a producer identity, which
/// are then packed as a transactional batch) gets its verification guard, or is refused
/// (its `data` becomes the error, answered in its place).
///
/// Each such partition's log gives a guard; where the producer has no transaction going
/// yet on the partition, the coordinator of `transactional_id` (in-process, or at the
/// coordinator's broker) is asked whether the transaction holds it. Refused: a
/// partition that cannot take a guard here (not led here, unknown), one the
/// transaction does not hold (TRANSACTION_ABORTABLE), and every asked partition when the
/// coordinator refuses the check (PRODUCER_FENCED, ...) or cannot answer now
/// (NOT_ENOUGH_REPLICAS, which producers retry). A partition whose transaction is going
/// is not asked again, as Kafka verifies only a transaction's first batch on a
/// partition; its guard holds only while that transaction goes on.
pub async fn verify_produce(
    broker: &Broker,
    ctx: &RequestContext,
    transactional_id: &str,
    request: &mut ProduceRequest,
) -> Result<(), BrokerError> {
    authorize_write(broker, ctx, transactional_id)?;
    let topic = request.topic.clone();
    let mut producer = None;
    let mut ask = Vec::new();
    for p in &mut request.partitions {
        let Some(ids) = p.data.as_ref().ok().and_then(transactional_producer) else {
            continue;
        };
        producer = Some(ids);
        let index = p.partition;
        let verification = async {
            let partition = broker
                .topic_for(ctx, Operation::Write, &topic)?
                .partition(index)?;
            Ok::<_, BrokerError>(
                partition
                    .begin_verification(ids.producer_id, ids.epoch)
                    .await?,
            )
        };
        match verification.await {
            Ok(v) => {
                set_verification(&mut p.data, v.guard);
                if v.ask {
                    ask.push(TopicPartition::new(topic.as_str(), index as i32));
                }
            }
            Err(e) => p.data = Err(e.at(&topic, index)),
        }
    }
    let Some(producer) = producer.filter(|_| !ask.is_empty()) else {
        return Ok(());
    };
    let indexes: Vec<u32> = ask.iter().map(|tp| tp.partition as u32).collect();
    let refused: Vec<(u32, BrokerError)> =
        match verify_partitions(broker, transactional_id, producer, ask).await {
            None => Vec::new(),
            Some(Err(e)) => indexes.into_iter().map(|i| (i, e.clone())).collect(),
            Some(Ok(verdicts)) => verdicts
                .into_iter()
                .filter_map(|(tp, verdict)| {
                    let e = verdict.err()?;
                    let index = tp.partition as u32;
                    let message = format!(
                        "the transaction of {transactional_id:?} did not verify partition \
                         {index} of {topic}: {e}"
                    );
                    Some((index, BrokerError::new(Reason::Transaction(e), message)))
                })
                .collect(),
        };
    for (index, e) in refused {
        if let Some(p) = request.partitions.iter_mut().find(|p| p.partition == index) {
            p.data = Err(e.at(&topic, index));
        }
    }
    Ok(())
}

/// The producer of a partition's data if it is transactional: packed batches whose
/// first batch has the transactional bit (a batch with a producer id must be its
/// partition's only one, which the log checks; `submit` refuses a transactional batch
/// left without a guard), or plain records with a producer identity.
fn transactional_producer(data: &ProduceData) -> Option<ProducerIdAndEpoch> {
    match data {
        ProduceData::Batches { bytes, .. } => {
            // Too short: `submit` refuses it as malformed.
            let header = bytes
                .get(..BATCH_HEADER_BYTES)
                .map(BatchHeader::parse)
                .filter(BatchHeader::is_transactional)?;
            Some(ProducerIdAndEpoch {
                producer_id: header.producer_id,
                epoch: header.producer_epoch,
            })
        }
        ProduceData::Records { producer, .. } => producer.map(|p| ProducerIdAndEpoch {
            producer_id: p.producer_id,
            epoch: p.producer_epoch,
        }),
    }
}

fn set_verification(data: &mut Result<ProduceData, BrokerError>, guard: u64) {
    match data {
        Ok(
            ProduceData::Batches { verification, .. } | ProduceData::Records { verification, .. },
        ) => *verification = Some(guard),
        Err(_) => {}
    }
}

/// KIP-890's produce-time check (verify-only AddPartitionsToTxn) with the coordinator
/// of the transactional id: per partition, whether it is in the producer's transaction
/// (TRANSACTION_ABORTABLE if not), or the coordinator's refusal of the whole check
/// (PRODUCER_FENCED, ...). Made in-process where this broker coordinates the id, else
/// at the coordinator's broker through the server's [`TxnVerifier`]. A coordinator that
/// cannot answer now (none, loading, unreachable) refuses the produce with
/// NOT_ENOUGH_REPLICAS, which producers retry, as Kafka's leader does (its clients do not
/// retry the coordinator codes on a produce). `None`: no way to ask (a broker core
/// embedded without a server, before its coordinators opened), and the check is not
/// made.
async fn verify_partitions(
    broker: &Broker,
    transactional_id: &str,
    producer: ProducerIdAndEpoch,
    partitions: Vec<TopicPartition>,
) -> Option<Result<Vec<(TopicPartition, Result<(), TxnError>)>, BrokerError>> {
    let verdicts = ask_coordinator(broker, transactional_id, producer, partitions).await?;
    Some(verdicts.map_err(|e| {
        // A produce: retriable for producers, as Kafka's leader answers (its clients do
        // not retry the coordinator codes on a produce).
        let retry = Reason::NotEnoughReplicas {
            isr: 0,
            min_insync: 0,
        };
        cannot_verify(transactional_id, e, retry)
    }))
}

/// [`verify_partitions`] with the coordinator's failures as they are.
async fn ask_coordinator(
    broker: &Broker,
    transactional_id: &str,
    producer: ProducerIdAndEpoch,
    partitions: Vec<TopicPartition>,
) -> Option<Result<Vec<(TopicPartition, Result<(), TxnError>)>, BrokerError>> {
    let add = txn::AddPartitions {
        transactional_id: transactional_id.to_string(),
        producer_id: producer.producer_id,
        producer_epoch: producer.epoch,
        partitions,
        verify_only: true,
    };
    let coordinator = broker.transactions().ok()?;
    let verdicts = if coordinator.coordinates(transactional_id) {
        coordinator
            .verify_partitions(add)
            .await
            .map_err(BrokerError::from)
    } else {
        let verifier = broker.txn_verifier.get()?;
        let found = txn::find_coordinator(broker.registry(), transactional_id);
        match crate::groups::coordinator_at(
            broker,
            "transactional id",
            transactional_id,
            TXN_STATE_TOPIC,
            found,
        ) {
            // This broker's own shard is loading (or just moved).
            Ok(c) if c.node_id == broker.node_id() => Err(BrokerError::new(
                Reason::CoordinatorLoading,
                format!("the coordinator of {transactional_id:?} is loading here"),
            )),
            Ok(c) => verifier.verify(&c, add).await,
            Err(e) => Err(e),
        }
    };
    Some(verdicts)
}

/// Whether `e` says the coordinator could not answer now (rather than refused).
fn cannot_answer_now(e: &BrokerError) -> bool {
    matches!(
        e.reason,
        Reason::CoordinatorNotAvailable
            | Reason::CoordinatorLoading
            | Reason::NotCoordinator { .. }
            | Reason::Timeout
            | Reason::Transaction(
                TxnError::NotCoordinator
                    | TxnError::CoordinatorLoadInProgress
                    | TxnError::CoordinatorNotAvailable,
            )
    )
}

/// A check the transaction's coordinator could not make now, as `retry` (the code the
/// request's clients retry on); its refusals (PRODUCER_FENCED, ...) as they are.
fn cannot_verify(transactional_id: &str, e: BrokerError, retry: Reason) -> BrokerError {
    if !cannot_answer_now(&e) {
        return e;
    }
    BrokerError::new(
        retry,
        format!(
            "the transaction of {transactional_id:?} could not be verified with its \
             coordinator now ({e}); retry"
        ),
    )
}

/// A boxed future of a check made at another broker.
pub type VerifyFuture<'a> = Pin<
    Box<
        dyn Future<Output = Result<Vec<(TopicPartition, Result<(), TxnError>)>, BrokerError>>
            + Send
            + 'a,
    >,
>;

/// Carries a produce-time check (a verify-only AddPartitionsToTxn) to the transaction
/// coordinator on another broker (the server implements it over the internal
/// `Transactions` service). A coordinator that cannot be reached is an error of
/// [`Reason::CoordinatorNotAvailable`].
pub trait TxnVerifier: Send + Sync + Debug {
    fn verify<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        add: txn::AddPartitions,
    ) -> VerifyFuture<'a>;
}

/// The produce-time check made here for a partition leader on another broker (the
/// server side of [`TxnVerifier`]): this broker's coordinator's verdicts, or its
/// refusal (NOT_COORDINATOR when the id's shard is not here).
pub async fn verify_here(
    broker: &Broker,
    add: txn::AddPartitions,
) -> Result<Vec<(TopicPartition, Result<(), TxnError>)>, TransactionError> {
    let coordinator = broker
        .transactions()
        .map_err(|_| TransactionError::Refused(TxnError::CoordinatorNotAvailable))?;
    coordinator.verify_partitions(add).await
}

/// Most transactional ids one DescribeTransactions request may name.
pub const MAX_DESCRIBED_TRANSACTIONS: usize = 1_000;

/// DescribeTransactions for one id: Describe on it, then its coordinator's state
/// (NOT_COORDINATOR if that is another broker).
pub async fn describe_transaction(
    broker: &Broker,
    ctx: &RequestContext,
    transactional_id: &str,
) -> Result<TxnDescription, BrokerError> {
    broker.authorize(
        ctx,
        Operation::Describe,
        ResourceType::TransactionalId,
        transactional_id,
    )?;
    Ok(broker.transactions()?.describe(transactional_id).await?)
}

/// ListTransactions: the transactions this broker coordinates that match `filter` and
/// that the principal may Describe, and the state names in the filter that are not
/// states.
pub async fn list_transactions(
    broker: &Broker,
    ctx: &RequestContext,
    filter: &ListFilter,
) -> Result<(Vec<TxnListing>, Vec<String>), BrokerError> {
    let (rows, unknown) = broker.transactions()?.list(filter).await?;
    let rows = rows
        .into_iter()
        .filter(|r| {
            broker.may(
                ctx,
                Operation::Describe,
                ResourceType::TransactionalId,
                &r.transactional_id,
            )
        })
        .collect();
    Ok((rows, unknown))
}

/// The markers of `request` written on the partitions this broker leads, through its
/// core as the internal principal: each partition's outcome as the coordinator acts on it
/// (a partition led elsewhere answers NOT_LEADER: Retriable). The one local path of the
/// coordinator's marker writer (weir-grpc's, which sends the partitions other brokers
/// lead to them) and of the internal `Transactions.WriteTxnMarkers` call that a
/// coordinator on another broker makes here.
pub async fn write_markers_here(
    broker: &Broker,
    request: MarkerRequest,
) -> Vec<(TopicPartition, MarkerOutcome)> {
    let mut topics: Vec<(String, Vec<u32>)> = Vec::new();
    let mut invalid = Vec::new();
    for tp in &request.partitions {
        let Ok(index) = u32::try_from(tp.partition) else {
            invalid.push((tp.clone(), MarkerOutcome::UnknownPartition));
            continue;
        };
        match topics.iter_mut().find(|(t, _)| *t == tp.topic) {
            Some((_, p)) => p.push(index),
            None => topics.push((tp.topic.clone(), vec![index])),
        }
    }
    let markers = [TxnMarkers {
        producer_id: request.producer_id,
        producer_epoch: request.producer_epoch,
        commit: request.result == TxnResult::Commit,
        coordinator_epoch: request.coordinator_epoch,
        topics,
    }];
    let ctx = RequestContext::anonymous(Listener::INTERNAL, None);
    let mut outcomes: Vec<(TopicPartition, MarkerOutcome)> =
        match write_txn_markers(broker, &ctx, &markers, None).await {
            Ok(answers) => answers
                .into_iter()
                .flatten()
                .map(|w| {
                    if let Err(e) = &w.outcome {
                        tracing::debug!(
                            topic = w.topic,
                            partition = w.partition,
                            error = %e,
                            "a transaction marker was not written"
                        );
                    }
                    let tp = TopicPartition::new(w.topic, w.partition as i32);
                    (tp, marker_outcome(&w.outcome))
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "writing transaction markers failed");
                request
                    .partitions
                    .iter()
                    .filter(|tp| tp.partition >= 0)
                    .map(|tp| (tp.clone(), MarkerOutcome::Retriable))
                    .collect()
            }
        };
    outcomes.extend(invalid);
    outcomes
}

/// What one partition's marker answer means to the coordinator.
fn marker_outcome(outcome: &Result<i64, BrokerError>) -> MarkerOutcome {
    match outcome {
        Ok(_) => MarkerOutcome::Written,
        Err(e) => match e.reason {
            Reason::ProducerFenced { .. } => MarkerOutcome::StaleProducerEpoch,
            Reason::CoordinatorFenced { .. } => MarkerOutcome::StaleCoordinatorEpoch,
            Reason::UnknownTopic | Reason::UnknownPartition => MarkerOutcome::UnknownPartition,
            _ => MarkerOutcome::Retriable,
        },
    }
}

/// One transaction's end, on some partitions (one entry of Kafka's WriteTxnMarkers).
#[derive(Debug, Clone)]
pub struct TxnMarkers {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Commit (true) or abort (false).
    pub commit: bool,
    /// The epoch of the coordinator that writes them.
    pub coordinator_epoch: i32,
    /// `(topic, partitions)`.
    pub topics: Vec<(String, Vec<u32>)>,
}

/// One partition's answer: the marker's offset, or why it was not written.
#[derive(Debug)]
pub struct MarkerWritten {
    pub topic: String,
    pub partition: u32,
    pub outcome: Result<i64, BrokerError>,
}

/// Appends each transaction's markers on its partitions (this broker must lead them),
/// all partitions at once, each answered once replicated or after `timeout` (default
/// [`DEFAULT_PRODUCE_TIMEOUT`]). A whole-request error for a principal without
/// ClusterAction (only brokers write markers, as in Kafka) or too many partitions; else
/// one answer per transaction, one per partition in request order. A marker of an epoch
/// older than the producer's is PRODUCER_FENCED with nothing written.
pub async fn write_txn_markers(
    broker: &Broker,
    ctx: &RequestContext,
    markers: &[TxnMarkers],
    timeout: Option<Duration>,
) -> Result<Vec<Vec<MarkerWritten>>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::ClusterAction)?;
    let count: usize = markers
        .iter()
        .flat_map(|m| &m.topics)
        .map(|(_, partitions)| partitions.len())
        .sum();
    if count > MAX_PARTITIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "a write-txn-markers request names {count} partitions; at most \
             {MAX_PARTITIONS_PER_REQUEST} are accepted"
        )));
    }
    let timeout = timeout.unwrap_or(DEFAULT_PRODUCE_TIMEOUT);
    let mut answers = Vec::with_capacity(markers.len());
    for m in markers {
        let marker = TxnMarker {
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            control: if m.commit {
                ControlType::Commit
            } else {
                ControlType::Abort
            },
            coordinator_epoch: m.coordinator_epoch,
        };
        let writes = m.topics.iter().flat_map(|(topic, partitions)| {
            let resolved = broker.topic(ctx, topic);
            partitions.iter().map(move |&partition| {
                let resolved = resolved.clone();
                async move {
                    let outcome = match resolved {
                        Ok(t) => write_one(&t, partition, marker, timeout).await,
                        Err(e) => Err(e),
                    };
                    // A marker in a group's `__consumer_offsets` partition settles the
                    // transactional offsets its producer committed there. The group
                    // coordinator is told here, once the marker is durable; a shard that
                    // loads later reads the marker from its log.
                    if let (Ok(offset), true) = (&outcome, topic == OFFSETS_TOPIC)
                        && let Some(groups) = broker.groups_if_up()
                    {
                        groups.txn_marker(partition, m.producer_id, m.commit, *offset);
                    }
                    MarkerWritten {
                        topic: topic.clone(),
                        partition,
                        outcome,
                    }
                }
            })
        });
        answers.push(join_all(writes).await);
    }
    Ok(answers)
}

async fn write_one(
    topic: &Topic,
    index: u32,
    marker: TxnMarker,
    timeout: Duration,
) -> Result<i64, BrokerError> {
    let partition = topic.partition(index)?;
    match tokio::time::timeout(
        timeout,
        partition.append_marker(marker, Durability::Durable),
    )
    .await
    {
        Ok(Ok(outcome)) => Ok(outcome.base_offset),
        Ok(Err(e)) => Err(BrokerError::from(e).at(&topic.name, index)),
        Err(_) => Err(BrokerError::new(
            Reason::Timeout,
            format!(
                "the marker on partition {}/{index} was not replicated within {} ms",
                topic.name,
                timeout.as_millis()
            ),
        )
        .at(&topic.name, index)),
    }
}
