//! The record accumulator: per-partition batches being filled, batches ready to send,
//! and the per-partition bookkeeping of what is in flight and what must be retried.
//!
//! It is synchronous and knows nothing of the network: `send` appends under one short
//! mutex hold (encoding the record into the partition's open batch), the sender task
//! [`drain`](Accumulator::drain)s what may be sent and reports each batch's outcome with
//! [`complete`](Accumulator::complete). Memory is reserved by the caller before an
//! append and released here when a batch completes, so the bytes held in open, ready,
//! failed and in-flight batches never exceed `buffer_memory`: that is the bound on every
//! queue here.
//!
//! Routing: `drain` is given each partition's leader (from the client's metadata) and
//! sends a partition's batches there. A partition whose leader changed keeps its batches
//! back until those in flight to the old leader have answered, so a partition never has
//! batches in flight to two brokers at once: its outcomes still arrive in send order, and
//! the retry rule below still holds across a leader change. A partition with no known
//! leader waits (the sender refreshes metadata meanwhile) for at most `request_timeout`,
//! then its waiting batches fail.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore};
use weir_batch::{Header, Record, RecordBatchBuilder};

use self::txn::TxnGate;
use super::config::{METADATA_MAX_AGE, ProducerConfig};
use crate::error::ClientError;
use crate::partitioner::StickyPartitioner;
use crate::routing::BrokerId;

mod append;
mod drain;

pub(crate) use append::{AppendCall, AppendError, AppendStep};

/// Upper bound on what a record adds to a batch besides its key, value and header bytes:
/// length (5), attributes (1), timestamp delta (10), offset delta (5), key and value
/// lengths (5 each) and header count (5), as varints at their widest.
pub(crate) const RECORD_OVERHEAD_BYTES: usize = 36;
/// Upper bound on what one header adds besides its key and value bytes: two varint
/// lengths at their widest.
pub(crate) const HEADER_OVERHEAD_BYTES: usize = 10;

/// What the broker said about an appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchAck {
    /// Offset of the batch's first record (-1 with `Acks::None`).
    pub base_offset: i64,
    /// The append time if the topic uses LogAppendTime, else -1.
    pub log_append_time_ms: i64,
}

/// The outcome of one batch, shared by the delivery futures of all its records.
#[derive(Debug)]
pub(crate) struct BatchCompletion {
    pub topic: Arc<str>,
    pub partition: u32,
    result: OnceLock<Result<BatchAck, ClientError>>,
    notify: Notify,
}

impl BatchCompletion {
    fn new(topic: Arc<str>, partition: u32) -> BatchCompletion {
        BatchCompletion {
            topic,
            partition,
            result: OnceLock::new(),
            notify: Notify::new(),
        }
    }

    /// Sets the outcome (once) and wakes every waiter.
    fn complete(&self, result: Result<BatchAck, ClientError>) {
        let _ = self.result.set(result);
        self.notify.notify_waiters();
    }

    /// The outcome, if the batch has completed.
    pub fn result(&self) -> Option<&Result<BatchAck, ClientError>> {
        self.result.get()
    }

    /// Waits for the outcome.
    pub async fn wait(&self) -> &Result<BatchAck, ClientError> {
        loop {
            // Register before checking, so a completion between the check and the
            // await is not missed.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = self.result.get() {
                return result;
            }
            notified.await;
        }
    }
}

/// A record appended to a batch: where its outcome will appear.
#[derive(Debug)]
pub(crate) struct Appended {
    pub completion: Arc<BatchCompletion>,
    /// The record's position in its batch (its offset delta).
    pub index: u32,
}

/// The records of one `send_all` call in one batch: indices `first_index..first_index +
/// count` of the batch, contiguous because they were appended under one lock hold.
#[derive(Debug)]
pub(crate) struct Segment {
    pub completion: Arc<BatchCompletion>,
    pub partition: u32,
    pub first_index: u32,
    pub count: u32,
    batch_id: u64,
    /// The lock hold of the call it was started in: a later hold starts a new segment,
    /// since other sends may have appended to the batch in between.
    hold: u32,
}

/// A batch's records: still a builder until the sender encodes it (CRC and compression
/// run on the sender task, off the application's `send` path), then bytes kept for
/// retries.
#[derive(Debug)]
pub(crate) enum Payload {
    Open(RecordBatchBuilder),
    Built(Bytes),
}

/// A closed batch on its way to the broker.
#[derive(Debug)]
pub(crate) struct ProducerBatch {
    pub topic: Arc<str>,
    pub partition: u32,
    pub payload: Payload,
    pub record_count: u32,
    pub completion: Arc<BatchCompletion>,
    id: u64,
    reserved_bytes: usize,
    /// Times it was sent and failed retriably.
    pub attempts: u32,
    /// Order of its last send among all sends (set by the sender); responses of one
    /// partition arrive in this order.
    pub send_seq: u64,
    /// The broker it was last drained for (its partition's leader then).
    pub broker: BrokerId,
    /// With idempotence: the identity it was numbered under when first drained (its
    /// sequence is in the batch); retries keep it.
    pub stamp: Option<Identity>,
}

/// An idempotent producer's id and epoch (from `InitProducerId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub producer_id: i64,
    pub epoch: i16,
}

impl ProducerBatch {
    /// The encoded batch, building it on first use.
    pub fn encode(&mut self) -> Result<Bytes, ClientError> {
        if let Payload::Built(bytes) = &self.payload {
            return Ok(bytes.clone());
        }
        let Payload::Open(builder) =
            std::mem::replace(&mut self.payload, Payload::Built(Bytes::new()))
        else {
            unreachable!("checked above");
        };
        let bytes = builder.build()?.freeze();
        self.payload = Payload::Built(bytes.clone());
        Ok(bytes)
    }
}

struct OpenBatch {
    batch: ProducerBatch,
    created: Instant,
}

#[derive(Default)]
struct PartitionState {
    open: Option<OpenBatch>,
    /// Closed batches in append order, not yet sent (or put back for a retry).
    ready: VecDeque<ProducerBatch>,
    in_flight: usize,
    /// The broker the in-flight batches went to (`None` when none are in flight).
    in_flight_broker: Option<BrokerId>,
    /// Since when batches have waited for a leader to be known.
    unrouted_since: Option<Instant>,
    /// The last batch closed here was closed full (not by linger or flush): the next one
    /// gets its whole buffer at once.
    filled: bool,
    /// Batches that failed retriably while later batches of this partition were still
    /// in flight; held until those answer, then retried or failed (see `complete`).
    failed: Vec<(ProducerBatch, ClientError)>,
    /// No sends before this (retry backoff).
    retry_at: Option<Instant>,
    /// The broker the batches waiting out `retry_at` failed on.
    failed_on: Option<BrokerId>,
    /// The identity `next_sequence` counts under (idempotence).
    sequence_of: Option<Identity>,
    /// The sequence of the next record numbered under `sequence_of`.
    next_sequence: i32,
    /// A batch numbered under this identity failed for good, so the ones numbered after
    /// it can never be appended (the partition expects the failed one's sequence): they
    /// fail instead of retrying.
    poisoned: Option<Identity>,
    /// A transactional producer's: the transaction (`TxnGate`'s generation) the
    /// coordinator last added this partition to; its batches go out only in that one.
    in_transaction: Option<u64>,
}

struct TopicState {
    partitions: Vec<PartitionState>,
    sticky: StickyPartitioner,
    /// When the cached partition count must be fetched again.
    expires: Instant,
}

struct State {
    topics: HashMap<Arc<str>, TopicState>,
    /// Every batch not yet completed, for `flush`.
    incomplete: HashMap<u64, Arc<BatchCompletion>>,
    next_batch_id: u64,
    /// Flushes in progress: while any is, open batches are sent without lingering.
    flushing: usize,
    closing: bool,
    /// With idempotence: the identity new batches are numbered under; `None` until the
    /// sender has one, and while a new one is wanted (see `poisoned`).
    identity: Option<Identity>,
    /// A numbered batch failed for good: the sender gets a new identity, under which
    /// every partition numbers from 0 again.
    identity_wanted: bool,
    /// The producer was fenced by a newer instance: every send fails with this.
    fenced: Option<ClientError>,
    /// A transactional producer's open transaction (`txn.rs`); `None` for others.
    txn: Option<TxnGate>,
    /// Buffers of acknowledged batches, for new batches of partitions that fill theirs.
    spare_buffers: Vec<Vec<u8>>,
}

/// The parts of [`State`] that opening a batch updates, borrowed apart from its topics.
struct BatchBook<'a> {
    next_batch_id: &'a mut u64,
    incomplete: &'a mut HashMap<u64, Arc<BatchCompletion>>,
    spare_buffers: &'a mut Vec<Vec<u8>>,
}

/// Most buffers [`State::spare_buffers`] keeps: batches are opened about as often as
/// they complete, so a few cover the churn.
const MAX_SPARE_BUFFERS: usize = 8;

/// What [`Accumulator::drain`] found.
#[derive(Debug, Default)]
pub(crate) struct Drained {
    /// Batches to send now, at most one per partition per round: `rounds[k]` holds the
    /// k-th batch of each partition that had one.
    pub rounds: Vec<Vec<ProducerBatch>>,
    /// When something will next become sendable (a linger or backoff running out).
    pub next_wake: Option<Instant>,
    /// Partitions with batches to send whose leader is not known: metadata is needed.
    pub unrouted: Vec<(Arc<str>, u32)>,
    /// Topics with a partition waiting to retry on the leader that failed: metadata is
    /// refreshed meanwhile (one entry per partition; repeats are harmless).
    pub waiting_on_failed: Vec<Arc<str>>,
}

/// See the module docs.
pub(crate) struct Accumulator {
    config: ProducerConfig,
    state: Mutex<State>,
    memory: Semaphore,
    /// Wakes the sender: a batch was opened (a linger timer to arm), closed, or the
    /// producer is flushing or closing.
    pub wake_sender: Notify,
}

impl std::fmt::Debug for Accumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accumulator")
            .field("available_memory", &self.memory.available_permits())
            .finish_non_exhaustive()
    }
}

impl Accumulator {
    pub(crate) fn new(config: ProducerConfig) -> Accumulator {
        let memory = Semaphore::new(config.buffer_memory);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let idempotence = config.idempotence;
        // A transactional producer's identity comes from its coordinator, asked by
        // `TransactionalProducer`, not by the sender.
        let transactional = config.transactional_id.is_some();
        Accumulator {
            config,
            state: Mutex::new(State {
                topics: HashMap::new(),
                incomplete: HashMap::new(),
                next_batch_id: seed,
                flushing: 0,
                closing: false,
                identity: None,
                identity_wanted: idempotence && !transactional,
                fenced: None,
                txn: transactional.then(TxnGate::default),
                spare_buffers: Vec::new(),
            }),
            memory,
            wake_sender: Notify::new(),
        }
    }

    pub(crate) fn config(&self) -> &ProducerConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the state is still consistent enough
        // to fail the remaining batches, so keep going rather than cascade panics.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An upper bound on the bytes `record` takes in a batch; what `send` reserves.
    pub(crate) fn record_bytes(record: &Record) -> usize {
        parts_bytes(
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        )
    }

    /// Reserves `bytes` of buffer memory, waiting while it is used up.
    pub(crate) async fn reserve(&self, bytes: usize) -> Result<(), ClientError> {
        if bytes > self.config.buffer_memory {
            return Err(ClientError::InvalidArgument(format!(
                "a record of {bytes} bytes is larger than buffer_memory ({} bytes)",
                self.config.buffer_memory
            )));
        }
        // Within MAX_BUFFER_MEMORY_BYTES = u32::MAX, checked by the config.
        let permits = bytes as u32;
        let permit = match self.memory.try_acquire_many(permits) {
            Ok(permit) => permit,
            Err(_) => self
                .memory
                .acquire_many(permits)
                .await
                .map_err(|_| ClientError::Closed)?,
        };
        permit.forget();
        Ok(())
    }

    /// Gives back memory reserved for a record that was not appended.
    pub(crate) fn unreserve(&self, bytes: usize) {
        self.memory.add_permits(bytes);
    }

    /// Records `topic`'s partition count. A count never shrinks here (topics only grow),
    /// so batches already queued for a partition keep a place.
    pub(crate) fn set_partitions(&self, topic: &str, partitions: u32, now: Instant) {
        let mut state = self.lock();
        let seed = state.next_batch_id;
        let entry = state
            .topics
            .entry(Arc::from(topic))
            .or_insert_with(|| TopicState {
                partitions: Vec::new(),
                sticky: StickyPartitioner::new(seed),
                expires: now,
            });
        entry.expires = now + METADATA_MAX_AGE;
        let partitions = partitions as usize;
        if entry.partitions.len() < partitions {
            entry
                .partitions
                .resize_with(partitions, PartitionState::default);
        }
    }

    /// Forgets `topic`'s cached partition count, so the next send fetches it again. Keeps
    /// its queued batches.
    pub(crate) fn invalidate(&self, topic: &str) {
        if let Some(t) = self.lock().topics.get_mut(topic) {
            t.expires = Instant::now();
        }
    }

    /// Whether new batches wait for a producer identity (idempotence).
    pub(crate) fn identity_wanted(&self) -> bool {
        let state = self.lock();
        state.identity_wanted && state.fenced.is_none()
    }

    /// The identity new batches are numbered under, if there is one.
    pub(crate) fn identity(&self) -> Option<Identity> {
        self.lock().identity
    }

    /// The identity to number new batches under, from `InitProducerId`.
    pub(crate) fn set_identity(&self, identity: Identity) {
        let mut state = self.lock();
        state.identity = Some(identity);
        state.identity_wanted = false;
        drop(state);
        self.wake_sender.notify_one();
    }

    /// Getting an identity failed for good: every batch not sent fails, and so does
    /// every later send.
    pub(crate) fn fail_fatal(&self, error: ClientError) {
        self.lock().fenced = Some(error.clone());
        self.fail_unsent(&error);
    }

    /// Starts a flush: open batches are sent at once until [`end_flush`](Self::end_flush).
    /// Returns the completions of every batch not yet completed.
    pub(crate) fn begin_flush(&self) -> Vec<Arc<BatchCompletion>> {
        let mut state = self.lock();
        state.flushing += 1;
        let pending = state.incomplete.values().cloned().collect();
        drop(state);
        self.wake_sender.notify_one();
        pending
    }

    /// Ends a flush started with [`begin_flush`](Self::begin_flush).
    pub(crate) fn end_flush(&self) {
        self.lock().flushing -= 1;
    }

    /// Refuses further appends; what is buffered is still sent.
    pub(crate) fn close(&self) {
        self.lock().closing = true;
        self.wake_sender.notify_one();
    }

    /// Whether the producer is closing and nothing is left to send or await.
    pub(crate) fn is_finished(&self) -> bool {
        let state = self.lock();
        state.closing && state.incomplete.is_empty()
    }

    /// Fails every batch not yet sent or in flight (the sender is stopping for good).
    pub(crate) fn fail_unsent(&self, error: &ClientError) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut failed = Vec::new();
        for topic in state.topics.values_mut() {
            for part in &mut topic.partitions {
                failed.extend(part.open.take().map(|o| o.batch));
                failed.extend(part.ready.drain(..));
                failed.extend(part.failed.drain(..).map(|(b, _)| b));
            }
        }
        self.fail_taken(guard, failed, error);
    }

    /// Fails `failed`, batches taken out of their partitions under `guard`: forgets them,
    /// then (the lock released) completes them with `error` and gives their memory back.
    fn fail_taken(
        &self,
        mut guard: MutexGuard<'_, State>,
        failed: Vec<ProducerBatch>,
        error: &ClientError,
    ) {
        let mut released = 0;
        for batch in &failed {
            guard.incomplete.remove(&batch.id);
            released += batch.reserved_bytes;
        }
        drop(guard);
        for batch in failed {
            batch.completion.complete(Err(error.clone()));
        }
        self.memory.add_permits(released);
    }
}

/// An upper bound on the bytes a record of these parts takes in a batch.
fn parts_bytes(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    let len = |b: Option<&[u8]>| b.map_or(0, <[u8]>::len);
    RECORD_OVERHEAD_BYTES
        + len(key)
        + len(value)
        + headers
            .iter()
            .map(|h| HEADER_OVERHEAD_BYTES + h.key.len() + len(h.value.as_deref()))
            .sum::<usize>()
}

/// How [`Accumulator::drain`] numbers batches sent for the first time.
#[derive(Debug, Clone, Copy)]
enum Numbering {
    /// Not idempotent.
    Off,
    Under(Identity),
    /// No identity yet (or a new one is wanted): unnumbered batches wait.
    Waiting,
}

impl PartitionState {
    /// Numbers `batch` under `identity` with this partition's next sequence (from 0 for
    /// a new identity); sequences wrap past `i32::MAX` as Kafka's.
    fn stamp(&mut self, batch: &mut ProducerBatch, identity: Identity, transactional: bool) {
        if self.sequence_of != Some(identity) {
            self.sequence_of = Some(identity);
            self.next_sequence = 0;
        }
        let first = self.next_sequence;
        if let Payload::Open(builder) = &mut batch.payload {
            builder.set_producer(identity.producer_id, identity.epoch, first);
            if transactional {
                builder.set_transactional();
            }
        }
        let next = (i64::from(first) + i64::from(batch.record_count)) % (i64::from(i32::MAX) + 1);
        self.next_sequence = next as i32;
        batch.stamp = Some(identity);
    }
}

impl OpenBatch {
    fn estimated_size(&self) -> usize {
        match &self.batch.payload {
            Payload::Open(builder) => builder.estimated_size(),
            Payload::Built(bytes) => bytes.len(),
        }
    }
}

impl ProducerBatch {
    fn is_empty(&self) -> bool {
        self.record_count == 0
    }
}

#[cfg(test)]
mod tests;
mod txn;
