//! Appending to the accumulator: a record (`send`) or a run of records (`send_all`,
//! across lock holds) goes into its partition's open batch, opening one (from a spare
//! buffer when there is one) and closing a full one for the sender.

use std::sync::Arc;
use std::time::Instant;

use weir_batch::{Record, RecordBatchBuilder, RecordView};

use super::txn::TxnGate;
use super::{
    Accumulator, Appended, BatchBook, BatchCompletion, OpenBatch, PartitionState, Payload,
    ProducerBatch, Segment, State, parts_bytes,
};
use crate::error::ClientError;
use crate::partitioner::partition_for_key;
use crate::producer::batch::RecordRef;

/// No segment yet (in [`AppendCall::latest`]).
const NO_SEGMENT: u32 = u32::MAX;

/// The progress of one `send_all` call across its lock holds.
#[derive(Debug, Default)]
pub(crate) struct AppendCall<'r> {
    /// Where the call's records went, one entry per batch (per lock hold).
    pub segments: Vec<Segment>,
    /// Index in `segments` of each partition's latest segment; filled only once a call's
    /// records go to more than one batch (keyed records over several partitions).
    latest: Vec<u32>,
    /// Buffer memory reserved for the call and not yet charged to a batch.
    pub credit: usize,
    /// Records appended.
    pub accepted: u64,
    /// A record taken from the iterator but not appended yet (memory was short, or its
    /// partition's batch was just closed).
    pub pending: Option<RecordRef<'r>>,
    /// The partition already chosen for `pending`, if one was.
    pending_partition: Option<u32>,
    hold: u32,
}

impl AppendCall<'_> {
    /// Counts a record appended at `index` of batch `batch_id` of `partition`.
    #[inline]
    fn note(
        &mut self,
        partition: u32,
        partitions: u32,
        batch_id: u64,
        index: u32,
        completion: &Arc<BatchCompletion>,
    ) {
        if let Some(last) = self.segments.last_mut()
            && last.batch_id == batch_id
            && last.hold == self.hold
        {
            last.count += 1;
            return;
        }
        self.note_new(partition, partitions, batch_id, index, completion);
    }

    /// [`note`](Self::note) past its common case (the same batch as the last record).
    #[cold]
    fn note_new(
        &mut self,
        partition: u32,
        partitions: u32,
        batch_id: u64,
        index: u32,
        completion: &Arc<BatchCompletion>,
    ) {
        let hold = self.hold;
        let continues = |s: &Segment| s.batch_id == batch_id && s.hold == hold;
        if !self.segments.is_empty() {
            if self.latest.len() < partitions as usize {
                self.latest.clear();
                self.latest.resize(partitions as usize, NO_SEGMENT);
                for (at, s) in self.segments.iter().enumerate() {
                    self.latest[s.partition as usize] = at as u32;
                }
            }
            let at = self.latest[partition as usize];
            if at != NO_SEGMENT && continues(&self.segments[at as usize]) {
                self.segments[at as usize].count += 1;
                return;
            }
            self.latest[partition as usize] = self.segments.len() as u32;
        }
        self.segments.push(Segment {
            completion: completion.clone(),
            partition,
            first_index: index,
            count: 1,
            batch_id,
            hold,
        });
    }
}

/// Where [`Accumulator::append_many`] stopped.
#[derive(Debug)]
pub(crate) enum AppendStep {
    /// Every record is appended.
    Done,
    /// A batch was closed: the lock was let go so the sender can take it; call again
    /// (the record that closed it goes first, to the same partition, in a new batch).
    Yield,
    /// Reserve this many bytes (after giving back the call's credit), then call again.
    NeedMemory(usize),
    /// As [`AppendError::NeedMetadata`].
    NeedMetadata,
    /// The call cannot go on: the record taken last is dropped, later ones are not taken.
    Failed(ClientError),
}

/// Why an append did not happen.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// The topic's partition count is not known, is stale, or the partition is past it:
    /// fetch metadata and try again.
    NeedMetadata,
    /// The record can never be appended.
    Failed(ClientError),
}

impl Accumulator {
    /// Appends `record` (whose [`record_bytes`](Self::record_bytes) the caller reserved)
    /// to the open batch of its partition.
    pub(crate) fn append(
        &self,
        topic: &str,
        partition: Option<u32>,
        record: &Record,
        reserved_bytes: usize,
        now: Instant,
    ) -> Result<Appended, AppendError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.closing {
            return Err(AppendError::Failed(ClientError::Closed));
        }
        if let Some(fenced) = &state.fenced {
            return Err(AppendError::Failed(fenced.clone()));
        }
        if let Some(refusal) = state.txn.as_ref().and_then(TxnGate::refuses_sends) {
            return Err(AppendError::Failed(refusal));
        }
        let Some((topic_name, topic_state)) = state.topics.get_key_value(topic) else {
            return Err(AppendError::NeedMetadata);
        };
        if topic_state.expires <= now {
            return Err(AppendError::NeedMetadata);
        }
        let topic_name = topic_name.clone();
        let topic_state = state.topics.get_mut(topic).expect("found above");
        let count = topic_state.partitions.len() as u32;
        let partition = match (partition, &record.key) {
            (Some(p), _) if p < count => p,
            (Some(_), _) => return Err(AppendError::NeedMetadata),
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => topic_state.sticky.partition(count),
        };
        let part = &mut topic_state.partitions[partition as usize];
        let mut wake = false;

        // Close the open batch first if this record would take it past batch_bytes.
        if let Some(open) = &part.open
            && !open.batch.is_empty()
            && open.estimated_size() + reserved_bytes > self.config.batch_bytes
        {
            let open = part.open.take().expect("checked");
            part.ready.push_back(open.batch);
            part.filled = true;
            topic_state.sticky.batch_closed(partition, count);
            wake = true;
        }
        if part.open.is_none() {
            let mut book = BatchBook {
                next_batch_id: &mut state.next_batch_id,
                incomplete: &mut state.incomplete,
                spare_buffers: &mut state.spare_buffers,
            };
            self.open_batch(part, &mut book, &topic_name, partition, now);
            // The sender arms the linger timer of the new batch.
            wake = true;
        }
        let open = part.open.as_mut().expect("opened above");
        let Payload::Open(builder) = &mut open.batch.payload else {
            unreachable!("an open batch is never built");
        };
        if let Err(error) = builder.try_push(record) {
            if builder.is_empty() {
                // Nothing to close: the record alone is over a batch limit.
                drop(guard);
                return Err(AppendError::Failed(error.into()));
            }
            drop(guard);
            // The record may still fit an empty batch: close this one and retry once.
            self.close_open(topic, partition);
            return self.append(topic, Some(partition), record, reserved_bytes, now);
        }
        let index = open.batch.record_count;
        open.batch.record_count += 1;
        open.batch.reserved_bytes += reserved_bytes;
        let appended = Appended {
            completion: open.batch.completion.clone(),
            index,
        };
        drop(guard);
        if wake {
            self.wake_sender.notify_one();
        }
        Ok(appended)
    }

    /// Opens a new batch on `part` (which has none open).
    fn open_batch(
        &self,
        part: &mut PartitionState,
        book: &mut BatchBook<'_>,
        topic_name: &Arc<str>,
        partition: u32,
        now: Instant,
    ) {
        let id = *book.next_batch_id;
        *book.next_batch_id = book.next_batch_id.wrapping_add(1);
        let completion = Arc::new(BatchCompletion::new(topic_name.clone(), partition));
        book.incomplete.insert(id, completion.clone());
        let spare_buffers = &mut *book.spare_buffers;
        // A partition whose last batch filled up will likely fill this one too: it gets a
        // full-size buffer at once (an acknowledged batch's, else a new one) instead of one
        // doubled up from the default (which copies as many bytes again as the batch
        // holds, and faults in fresh pages per batch). Others start small.
        let compression = self.config.compression;
        let builder = match spare_buffers.pop() {
            Some(buf) if part.filled => RecordBatchBuilder::with_buffer(compression, buf),
            None if part.filled => {
                RecordBatchBuilder::with_capacity(compression, self.config.batch_bytes)
            }
            spare => {
                spare_buffers.extend(spare);
                RecordBatchBuilder::new(compression)
            }
        };
        part.open = Some(OpenBatch {
            batch: ProducerBatch {
                topic: topic_name.clone(),
                partition,
                payload: Payload::Open(builder),
                record_count: 0,
                completion,
                id,
                reserved_bytes: 0,
                attempts: 0,
                send_seq: 0,
                broker: crate::routing::NO_BROKER,
                stamp: None,
            },
            created: now,
        });
    }

    /// How much memory a `send_all` call reserves when its credit runs out at a record of
    /// `need` bytes with `rest` (a size hint) still to come: the whole rest at once, if it
    /// fits a chunk of about four batches (a quarter of `buffer_memory` at most, and never
    /// less than a batch), else such a chunk; always at least `need`.
    fn want(&self, need: usize, rest: (usize, Option<usize>)) -> usize {
        let batch = self.config.batch_bytes;
        let chunk = batch.max((self.config.buffer_memory / 4).min(4 * batch));
        let rest = match rest {
            (_, Some(0)) => 0,
            // Not known: take a chunk, and give back what is left at the end.
            (0, _) => chunk,
            (lower, _) => need.saturating_mul(lower),
        };
        need.saturating_add(rest).min(chunk).max(need)
    }

    /// Appends records from `records` (after `call.pending`) to their partitions' open
    /// batches under one lock hold, as [`append`](Self::append) would one by one: the
    /// same partition choice (`partition`, else the key's hash, else the sticky
    /// partition) and the same batch closing rule. Memory comes from `call.credit`, topped
    /// up without waiting while the semaphore has it; stops when it has not
    /// ([`AppendStep::NeedMemory`]), and after closing a batch, so the sender is not kept
    /// waiting on the lock for more than a batch's records.
    pub(crate) fn append_many<'r>(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: &mut impl Iterator<Item = RecordRef<'r>>,
        call: &mut AppendCall<'r>,
        now: Instant,
        now_ms: i64,
    ) -> AppendStep {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.closing {
            return AppendStep::Failed(ClientError::Closed);
        }
        if let Some(fenced) = &state.fenced {
            return AppendStep::Failed(fenced.clone());
        }
        if let Some(refusal) = state.txn.as_ref().and_then(TxnGate::refuses_sends) {
            return AppendStep::Failed(refusal);
        }
        let Some((topic_name, topic_state)) = state.topics.get_key_value(topic) else {
            return AppendStep::NeedMetadata;
        };
        let count = topic_state.partitions.len() as u32;
        if topic_state.expires <= now || partition.is_some_and(|p| p >= count) {
            return AppendStep::NeedMetadata;
        }
        let topic_name = topic_name.clone();
        let State {
            topics,
            incomplete,
            next_batch_id,
            spare_buffers,
            ..
        } = state;
        let mut book = BatchBook {
            next_batch_id,
            incomplete,
            spare_buffers,
        };
        let topic_state = topics.get_mut(topic).expect("found above");
        let batch_bytes = self.config.batch_bytes;
        call.hold = call.hold.wrapping_add(1);
        let mut wake = false;
        let step = loop {
            let Some(record) = call.pending.take().or_else(|| records.next()) else {
                break AppendStep::Done;
            };
            let need = parts_bytes(record.key, record.value, record.headers);
            if need > call.credit {
                if need > self.config.buffer_memory {
                    break AppendStep::Failed(ClientError::InvalidArgument(format!(
                        "a record of {need} bytes is larger than buffer_memory ({} bytes)",
                        self.config.buffer_memory
                    )));
                }
                let want = self.want(need, records.size_hint());
                // Within MAX_BUFFER_MEMORY_BYTES = u32::MAX, checked by the config.
                match self.memory.try_acquire_many(want as u32) {
                    Ok(permit) => {
                        permit.forget();
                        call.credit += want;
                    }
                    Err(_) => {
                        call.pending = Some(record);
                        break AppendStep::NeedMemory(want);
                    }
                }
            }
            let p = match (call.pending_partition.take(), partition, record.key) {
                (Some(p), _, _) | (None, Some(p), _) => p,
                (None, None, Some(key)) => partition_for_key(key, count),
                (None, None, None) => topic_state.sticky.partition(count),
            };
            let part = &mut topic_state.partitions[p as usize];
            if let Some(open) = &part.open
                && !open.batch.is_empty()
                && open.estimated_size() + need > batch_bytes
            {
                let open = part.open.take().expect("checked");
                part.ready.push_back(open.batch);
                part.filled = true;
                topic_state.sticky.batch_closed(p, count);
                // Let the sender have the lock; the record goes on where `send` would
                // put it (a new batch of the same partition) in the next hold.
                call.pending = Some(record);
                call.pending_partition = Some(p);
                wake = true;
                break AppendStep::Yield;
            }
            let view = RecordView {
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp: record.timestamp.unwrap_or(now_ms),
            };
            let pushed = loop {
                if part.open.is_none() {
                    self.open_batch(part, &mut book, &topic_name, p, now);
                    wake = true;
                }
                let open = part.open.as_mut().expect("opened above");
                let Payload::Open(builder) = &mut open.batch.payload else {
                    unreachable!("an open batch is never built");
                };
                match builder.try_push_view(view) {
                    Ok(()) => break Ok(()),
                    // Nothing to close: the record alone is over a batch limit.
                    Err(error) if builder.is_empty() => break Err(error),
                    Err(_) => {
                        // It may still fit an empty batch: close this one, try once more.
                        let open = part.open.take().expect("checked");
                        part.ready.push_back(open.batch);
                        topic_state.sticky.batch_closed(p, count);
                        wake = true;
                    }
                }
            };
            if let Err(error) = pushed {
                break AppendStep::Failed(error.into());
            }
            let batch = &mut part.open.as_mut().expect("pushed to it").batch;
            let index = batch.record_count;
            batch.record_count += 1;
            batch.reserved_bytes += need;
            call.credit -= need;
            call.accepted += 1;
            call.note(p, count, batch.id, index, &batch.completion);
        };
        drop(guard);
        if wake {
            self.wake_sender.notify_one();
        }
        step
    }

    fn close_open(&self, topic: &str, partition: u32) {
        let mut state = self.lock();
        if let Some(t) = state.topics.get_mut(topic) {
            let count = t.partitions.len() as u32;
            let part = &mut t.partitions[partition as usize];
            if let Some(open) = part.open.take() {
                part.ready.push_back(open.batch);
                t.sticky.batch_closed(partition, count);
            }
        }
        drop(state);
        self.wake_sender.notify_one();
    }
}
