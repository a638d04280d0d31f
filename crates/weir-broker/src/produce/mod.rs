//! Produce: checks, packs and queues each partition's records ([`submit`]), then waits
//! for the answers as `acks` asks ([`PendingProduce::finish`]).
//!
//! Validation, CRC and decompression run on the request's task, outside any partition
//! lock and in parallel with other requests; then the batches are queued on their
//! partitions in request order. Leadership (and `min.insync.replicas` for `acks=all`) is
//! checked before queueing, so a broker that does not lead answers NOT_LEADER at once
//! with nothing appended. Adapters that pipeline (a gRPC ProduceStream, a Kafka
//! connection) submit request after request while earlier ones are still being written
//! and answer in request order, so answers for one partition arrive in the order its
//! records were appended.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use weir_cluster::security::Operation;

use bytes::Bytes;
use tokio::time::Instant;
use weir_cluster::storage::{
    Compression, Record, RecordBatchBuilder, ValidatedBatches, decode_records,
};
use weir_cluster::{ClusterError, Durability, PendingAppend, TimestampType, Topic};

use crate::limits::{
    DEFAULT_PRODUCE_TIMEOUT, MAX_PARTITIONS_PER_REQUEST, MAX_PRODUCE_TIMEOUT, MAX_RECORD_ERRORS,
};
use crate::{Broker, BrokerError, Reason, RecordError, RequestContext};

mod forward;
pub use forward::{ForwardedProduce, ProduceForwarder, submit_anywhere};

/// When a produce is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Not at all: the append goes on, its errors are not reported.
    None,
    /// Once the leader has written it.
    Leader,
    /// Once every in-sync replica has it (and, under group commit, has flushed it).
    All,
}

/// One topic's part of a produce.
#[derive(Debug)]
pub struct ProduceRequest {
    pub topic: String,
    pub acks: Acks,
    /// How long `acks=all` may wait; `None` takes [`DEFAULT_PRODUCE_TIMEOUT`].
    pub timeout: Option<Duration>,
    pub partitions: Vec<PartitionProduce>,
}

/// One partition's data; an adapter that could not decode it passes the error, which is
/// answered in its place.
#[derive(Debug)]
pub struct PartitionProduce {
    pub partition: u32,
    pub data: Result<ProduceData, BrokerError>,
}

/// The identity of an idempotent producer, for records the broker packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// What a partition is sent.
#[derive(Debug)]
pub enum ProduceData {
    /// Plain records, packed here into one batch (stamped with the append time on a
    /// `LogAppendTime` topic).
    Records {
        records: Vec<Record>,
        compression: Compression,
        producer: Option<ProducerIdentity>,
        /// For a transactional producer's records (`producer` set): the verification
        /// guard, as for `Batches`; they are packed as a transactional batch.
        verification: Option<u64>,
    },
    /// RecordBatch v2 bytes as the producer sent them, appended as they are (a slice of
    /// the request's buffer). `compression`: the codec the request says they use, if it
    /// says; a batch with another codec refuses the partition.
    Batches {
        bytes: Bytes,
        compression: Option<Compression>,
        /// A transactional producer's verification guard (KIP-890), taken with
        /// [`begin_verification`](crate::transactions::begin_verification) before its
        /// coordinator was asked: the batch that opens its transaction here is appended
        /// only while the guard stands. `None`: not verified here.
        verification: Option<u64>,
    },
}

/// What one partition's append came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The first and last offset given to the records; -1 when unknown (`acks=none`).
    pub base_offset: i64,
    pub last_offset: i64,
    /// The append time stamped on the records on a `LogAppendTime` topic; -1 otherwise.
    pub log_append_time_ms: i64,
}

impl Appended {
    const UNKNOWN: Appended = Appended {
        base_offset: -1,
        last_offset: -1,
        log_append_time_ms: -1,
    };
}

/// One partition's answer.
#[derive(Debug)]
pub struct PartitionProduceResult {
    pub partition: u32,
    pub outcome: Result<Appended, BrokerError>,
}

enum Waiting {
    /// Queued; the log's answer comes here.
    Appending {
        pending: PendingAppend,
        records: u64,
        log_append_time_ms: i64,
    },
    /// Refused before reaching the log; nothing was appended.
    Refused(BrokerError),
    /// Sent to the partition's leader on another broker ([`forward`]).
    Forwarded(forward::Forwarding),
}

/// A produce queued on its partitions, waiting for their answers.
pub struct PendingProduce {
    broker: Arc<Broker>,
    topic: Arc<Topic>,
    acks: Acks,
    deadline: Instant,
    partitions: Vec<(u32, Waiting)>,
}

impl std::fmt::Debug for PendingProduce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingProduce")
            .field("topic", &self.topic.name)
            .field("acks", &self.acks)
            .field("partitions", &self.partitions.len())
            .finish()
    }
}

/// Checks, packs and queues every partition of `req`. Whole-request problems (an unknown
/// or internal topic, too many partitions) are the error; a partition's own problem is
/// its answer.
pub async fn submit(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ProduceRequest,
) -> Result<PendingProduce, BrokerError> {
    let topic = resolve(broker, ctx, &req).await?;
    submit_to(broker, ctx, topic, req).await
}

/// The whole-request checks of a produce: the partition count, Write on the topic, the
/// topic (created on first use where the broker does that), not an internal one.
async fn resolve(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: &ProduceRequest,
) -> Result<Arc<Topic>, BrokerError> {
    if req.partitions.len() > MAX_PARTITIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "a produce names {} partitions; at most {MAX_PARTITIONS_PER_REQUEST} are accepted",
            req.partitions.len()
        )));
    }
    broker.authorize_topic(ctx, Operation::Write, &req.topic)?;
    let topic = crate::topics::topic_or_create(broker, ctx, &req.topic).await?;
    if topic.is_internal() {
        return Err(BrokerError::invalid(format!(
            "topic {} is internal: only the broker writes to it",
            req.topic
        )));
    }
    Ok(topic)
}

/// How long `acks=all` may wait: what the request asked, or the default, within the
/// maximum.
fn produce_timeout(asked: Option<Duration>) -> Duration {
    asked
        .unwrap_or(DEFAULT_PRODUCE_TIMEOUT)
        .min(MAX_PRODUCE_TIMEOUT)
}

/// [`submit`] past [`resolve`]: packs and queues every partition of `req` on `topic`.
async fn submit_to(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    topic: Arc<Topic>,
    req: ProduceRequest,
) -> Result<PendingProduce, BrokerError> {
    let timeout = produce_timeout(req.timeout);
    let durability = match req.acks {
        Acks::All => Durability::Durable,
        Acks::Leader | Acks::None => Durability::Written,
    };
    let now_ms = crate::now_ms();
    let mut seen = HashSet::new();
    let mut partitions = Vec::with_capacity(req.partitions.len());
    let mut queued_bytes = 0usize;
    for pr in req.partitions {
        let index = pr.partition;
        let waiting = if !seen.insert(index) {
            Waiting::Refused(
                BrokerError::invalid(format!(
                    "partition {index} appears more than once in the request"
                ))
                .at(&topic.name, index),
            )
        } else {
            match pr
                .data
                .and_then(|data| prepare(&topic, index, data, now_ms))
            {
                Err(e) => Waiting::Refused(e),
                Ok((batches, log_append_time_ms)) => {
                    let records = batches
                        .headers()
                        .iter()
                        .map(|h| h.record_count as u64)
                        .sum();
                    let partition = topic.partition(index).expect("checked in prepare");
                    queued_bytes += batches.bytes().len();
                    match partition.submit(batches, durability).await {
                        Ok(pending) => Waiting::Appending {
                            pending,
                            records,
                            log_append_time_ms,
                        },
                        Err(e) => Waiting::Refused(e.into()),
                    }
                }
            }
        };
        partitions.push((index, waiting));
    }
    // Queued first, then held back if over quota: a Kafka connection reads nothing
    // meanwhile (the adapter awaits this before its next request).
    broker
        .enforce_quota(ctx, crate::quotas::QuotaKind::Produce, queued_bytes)
        .await;
    Ok(PendingProduce {
        broker: broker.clone(),
        topic,
        acks: req.acks,
        deadline: Instant::now() + timeout,
        partitions,
    })
}

/// Packs or validates one partition's records; returns the batches and the append
/// time stamped on them (-1 for CreateTime topics).
fn prepare(
    topic: &Topic,
    index: u32,
    data: ProduceData,
    now_ms: i64,
) -> Result<(ValidatedBatches, i64), BrokerError> {
    let partition = topic.partition(index)?;
    let config = partition.config();
    let max = config.log.max_message_bytes;
    let log_append_time = config.timestamp_type == TimestampType::LogAppendTime;
    let bad = |what: String| {
        BrokerError::invalid(format!("partition {index}: {what}")).at(&topic.name, index)
    };
    let packed = matches!(data, ProduceData::Batches { .. });
    let mut verification = None;
    let (bytes, labelled) = match data {
        ProduceData::Records {
            records,
            compression,
            producer,
            verification: guard,
        } => {
            if records.is_empty() {
                return Err(bad("no records".into()));
            }
            if config.cleanup.compact {
                let keys = records.iter().map(|r| r.key.is_some());
                refuse_keyless(&topic.name, index, keys)?;
            }
            let mut builder = RecordBatchBuilder::new(compression);
            if let Some(p) = producer {
                if p.producer_id < 0 || p.producer_epoch < 0 || p.base_sequence < 0 {
                    return Err(bad(format!(
                        "producer_id {}, producer_epoch {} and base_sequence {} must not be negative",
                        p.producer_id, p.producer_epoch, p.base_sequence
                    )));
                }
                builder = builder
                    .producer_id(p.producer_id)
                    .producer_epoch(p.producer_epoch)
                    .base_sequence(p.base_sequence);
                if guard.is_some() {
                    builder = builder.transactional();
                    verification = guard;
                }
            }
            if log_append_time {
                builder = builder.log_append_time(now_ms);
            }
            for r in &records {
                builder.try_push(r).map_err(|e| bad(e.to_string()))?;
            }
            (
                builder.build().map_err(|e| bad(e.to_string()))?.freeze(),
                None,
            )
        }
        ProduceData::Batches {
            bytes,
            compression,
            verification: guard,
        } => {
            verification = guard;
            if log_append_time {
                // Stamping the append time into a packed batch changes bytes under its
                // CRC, so it would mean re-encoding every batch on the hot path.
                return Err(bad(
                    "the topic uses message.timestamp.type=LogAppendTime, which accepts plain records only (the broker does not re-encode batches)".into(),
                ));
            }
            (bytes, compression)
        }
    };
    // Every batch is checked here, compressed ones decompressed and walked: a batch that
    // cannot be decoded refuses the partition's whole data, as CORRUPT_BATCH naming it.
    let mut batches = ValidatedBatches::new(bytes, max).map_err(|source| {
        BrokerError::from(ClusterError::Append {
            topic: topic.name.clone(),
            partition: index,
            source,
        })
    })?;
    match verification {
        Some(guard) => batches = batches.verified(guard),
        // KIP-890: a transactional batch opens a transaction on the partition, which
        // only its coordinator can end; one that no coordinator verified could hold the
        // last stable offset back for good. Every listener verifies the batches of a
        // produce that names its transactional id.
        None if batches.headers().iter().any(|h| h.is_transactional()) => {
            return Err(bad(
                "a transactional batch needs the producer's transactional id in the \
                 request, so that the partition can verify it with the transaction's \
                 coordinator"
                    .into(),
            ));
        }
        None => {}
    }
    if let Some(codec) = labelled {
        check_labels(&topic.name, index, &batches, codec)?;
    }
    if config.cleanup.compact && packed {
        // Decoded once more (compressed ones decompressed again) only on compacted
        // topics, where every record needs a key.
        let mut keys = Vec::new();
        for batch in batches.batches() {
            let records = decode_records(&batch).map_err(|e| {
                bad(format!(
                    "a batch that passed its checks cannot be decoded: {e}"
                ))
            })?;
            keys.extend(records.iter().map(|r| r.key.is_some()));
        }
        refuse_keyless(&topic.name, index, keys)?;
    }
    Ok((batches, if log_append_time { now_ms } else { -1 }))
}

/// Refuses a compacted topic's records that have no key, as Kafka does (compaction keeps
/// the newest record of each key, so a record without one could never be kept or
/// replaced): INVALID_RECORD naming each (by its index among the partition's records),
/// and nothing of the partition's data appended. `keys`: whether each record has one.
fn refuse_keyless(
    topic: &str,
    partition: u32,
    keys: impl IntoIterator<Item = bool>,
) -> Result<(), BrokerError> {
    let keyless: Vec<u32> = keys
        .into_iter()
        .enumerate()
        .filter(|(_, has_key)| !has_key)
        .map(|(i, _)| u32::try_from(i).unwrap_or(u32::MAX))
        .collect();
    let Some(first) = keyless.first() else {
        return Ok(());
    };
    let why = format!(
        "compacted topic {topic} (cleanup.policy compact) cannot accept a record without a \
         key (partition {partition})"
    );
    let mut err = BrokerError::new(
        Reason::InvalidRecord,
        format!(
            "{} of the records have no key, the first at index {first}: {why}; nothing \
             was appended",
            keyless.len()
        ),
    )
    .at(topic, partition);
    err.refused_records = Some(Box::new(
        keyless
            .iter()
            .take(MAX_RECORD_ERRORS)
            .map(|&batch_index| RecordError {
                batch_index,
                message: why.clone(),
            })
            .collect(),
    ));
    Err(err)
}

/// Checks that every packed batch is compressed with `codec`, the codec the request
/// says they use.
fn check_labels(
    topic: &str,
    partition: u32,
    batches: &ValidatedBatches,
    codec: Compression,
) -> Result<(), BrokerError> {
    let mut position = 0;
    for (i, header) in batches.headers().iter().enumerate() {
        // Validated, so the codec is a known one.
        let actual = header.compression().unwrap_or(codec);
        if actual != codec {
            return Err(BrokerError::invalid(format!(
                "partition {topic}/{partition}: batch {i} (at byte {position} of the \
                 request) is compressed with {actual}, but the request's compression \
                 says {codec}; nothing was appended. Send COMPRESSION_UNSPECIFIED to \
                 take each batch's codec from its attributes"
            ))
            .at(topic, partition));
        }
        position += header.total_bytes();
    }
    Ok(())
}

/// Waits, at most `timeout`, until the record at `offset` of `topic`/`partition` is
/// below the partition's high watermark on this broker (its leader), so every reader
/// sees it; whether it is. For an adapter whose protocol promises that what a client
/// published is there for its next read, whatever its acks: AMQP's publish, then
/// `basic.get`, on one connection. Needs Write on the topic, as the publish did.
pub async fn wait_readable(
    broker: &Broker,
    ctx: &RequestContext,
    (topic, partition): (&str, u32),
    offset: i64,
    timeout: Duration,
) -> Result<bool, BrokerError> {
    let topic = broker.topic_for(ctx, Operation::Write, topic)?;
    let partition = topic.partition(partition)?;
    let deadline = Instant::now() + timeout;
    loop {
        // Subscribed before the look: a move between the two still wakes the wait.
        let mut moved = partition.subscribe();
        if partition.high_watermark() > offset {
            return Ok(true);
        }
        match tokio::time::timeout_at(deadline, moved.changed()).await {
            Ok(Ok(())) => {}
            // Timed out, or the partition closed (moved away, broker stopping).
            Ok(Err(_)) | Err(_) => return Ok(false),
        }
    }
}

impl PendingProduce {
    /// The topic this produce writes to.
    pub fn topic(&self) -> &str {
        &self.topic.name
    }

    /// Waits for every partition's answer (not at all with `acks=none`), in request
    /// order.
    pub async fn finish(self) -> Vec<PartitionProduceResult> {
        let mut results = Vec::with_capacity(self.partitions.len());
        for (partition, waiting) in self.partitions {
            let outcome = match waiting {
                Waiting::Refused(e) => Err(e),
                // Fire and forget: the append goes on; its errors are not reported.
                Waiting::Appending { .. } if self.acks == Acks::None => Ok(Appended::UNKNOWN),
                Waiting::Appending {
                    pending,
                    records,
                    log_append_time_ms,
                } => match tokio::time::timeout_at(self.deadline, pending).await {
                    Ok(Ok(Ok(outcome))) => {
                        if !outcome.duplicate {
                            self.broker.metrics().produced(
                                &self.topic.name,
                                records,
                                outcome.bytes,
                            );
                        }
                        Ok(Appended {
                            base_offset: outcome.base_offset,
                            last_offset: outcome.last_offset,
                            log_append_time_ms,
                        })
                    }
                    Ok(Ok(Err(e))) => Err(e.into()),
                    Ok(Err(_)) => Err(BrokerError::new(
                        Reason::PartitionClosed,
                        format!("partition {partition} closed before answering"),
                    )
                    .at(&self.topic.name, partition)),
                    Err(_) => Err(BrokerError::new(
                        Reason::Timeout,
                        format!(
                            "partition {partition}: timed out waiting for the append; the records may still be appended"
                        ),
                    )
                    .at(&self.topic.name, partition)),
                },
                // The leader answers within its own timeout (the request's); the
                // deadline bounds the call as it bounds an append here.
                Waiting::Forwarded(forwarding) => {
                    match tokio::time::timeout_at(self.deadline, forwarding).await {
                        Ok(outcome) => outcome.map_err(|e| e.at(&self.topic.name, partition)),
                        Err(_) => Err(BrokerError::new(
                            Reason::Timeout,
                            format!(
                                "partition {partition}: timed out waiting for its leader; the records may still be appended"
                            ),
                        )
                        .at(&self.topic.name, partition)),
                    }
                }
            };
            results.push(PartitionProduceResult { partition, outcome });
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyless_records_of_a_compacted_topic_are_each_named() {
        assert!(refuse_keyless("t", 0, [true, true]).is_ok());
        let err = refuse_keyless("t", 2, [true, false, true, false]).unwrap_err();
        assert_eq!(err.reason, Reason::InvalidRecord);
        assert_eq!(err.partition, Some(("t".into(), 2)));
        let indexes: Vec<u32> = err.record_errors().iter().map(|e| e.batch_index).collect();
        assert_eq!(indexes, [1, 3]);
        assert!(err.message.contains("2 of the records"), "{}", err.message);
        assert!(err.record_errors()[0].message.contains("without a key"));
        // The answer names at most MAX_RECORD_ERRORS; the message has the count.
        let many =
            refuse_keyless("t", 0, std::iter::repeat_n(false, MAX_RECORD_ERRORS + 5)).unwrap_err();
        assert_eq!(many.record_errors().len(), MAX_RECORD_ERRORS);
        assert!(
            many.message
                .contains(&format!("{} of", MAX_RECORD_ERRORS + 5))
        );
    }
}
