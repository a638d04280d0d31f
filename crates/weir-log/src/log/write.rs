//! Writing to the log: a leader's appends ([`Log::append`], [`Log::append_validated`])
//! and a follower's ([`Log::append_replicated`]), the idempotent-producer check before
//! them, the leader epochs persisted before the data that needs them, and the positioned
//! write itself. Checking the request's bytes, before the log lock is taken, is
//! `append.rs`; rolling to a new segment is `roll.rs`.

use std::io::IoSlice;

use super::roll::roll_to_append;
use super::{Inner, Log};
use crate::append::{ValidatedBatches, check_replicated, check_request, plan_replicated};
use crate::batch::{self, BatchHeader};
use crate::config::FlushPolicy;
use crate::error::{AppendError, CheckpointError, MaintenanceError};
use crate::producers::{ProducerStates, SequenceCheck, marker_record_of};
use crate::transactions::record_batches;

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record written.
    pub base_offset: i64,
    /// Offset of the last record written.
    pub last_offset: i64,
    /// Newest record timestamp among the batches.
    pub max_timestamp: i64,
    pub batches: usize,
    pub bytes: usize,
    /// The batch was an idempotent producer's retry of one already in the log: nothing
    /// was written, and the offsets are the original's (`producers`).
    pub duplicate: bool,
}

impl Log {
    /// Appends one or more concatenated batches as the leader: validates every batch
    /// (nothing is written if any is bad), assigns offsets from the log end by patching
    /// each batch's base offset and leader epoch in place, and writes them with one
    /// positioned write. With [`FlushPolicy::EveryAppend`] it returns once they are on
    /// disk; otherwise see [`Log::wait_durable`].
    ///
    /// `leader_epoch` is stamped into the batches and recorded in the epoch history; use
    /// `-1` for a log that is not replicated.
    pub fn append(&self, batches: &mut [u8], leader_epoch: i32) -> Result<AppendInfo, AppendError> {
        let mut headers = check_request(batches, self.config.max_message_bytes)?;
        let info = self.append_checked(batches, &mut headers, leader_epoch)?;
        if !info.duplicate {
            let mut pos = 0;
            for h in &headers {
                batch::patch_offset_and_epoch(&mut batches[pos..], h.base_offset, leader_epoch);
                pos += h.total_bytes();
            }
        }
        Ok(info)
    }

    /// [`Log::append`] for batches validated beforehand, where the request arrived (see
    /// [`ValidatedBatches`]), so the per-byte checks ran outside this log's lock and in
    /// parallel with other appends. Only the size limit is checked again, against this
    /// log's `max_message_bytes`. On success the batches hold their assigned offsets.
    pub fn append_validated(
        &self,
        batches: &mut ValidatedBatches,
        leader_epoch: i32,
    ) -> Result<AppendInfo, AppendError> {
        let max = self.config.max_message_bytes;
        if let Some(h) = batches.headers.iter().find(|h| h.total_bytes() > max) {
            return Err(AppendError::MessageTooLarge {
                bytes: h.total_bytes(),
                max,
            });
        }
        let (bytes, headers) = (&batches.bytes, &mut batches.headers);
        self.append_verified(bytes, headers, batches.verification, leader_epoch)
    }

    /// Assigns offsets to checked batches (in `headers`, which the write stamps into the
    /// batches as it writes them; `batches` itself is not changed) and writes them.
    pub(crate) fn append_checked(
        &self,
        batches: &[u8],
        headers: &mut [BatchHeader],
        leader_epoch: i32,
    ) -> Result<AppendInfo, AppendError> {
        self.append_verified(batches, headers, None, leader_epoch)
    }

    /// [`append_checked`](Self::append_checked) with a transactional producer's
    /// verification guard.
    fn append_verified(
        &self,
        batches: &[u8],
        headers: &mut [BatchHeader],
        verification: Option<u64>,
        leader_epoch: i32,
    ) -> Result<AppendInfo, AppendError> {
        let mut inner = self.lock();
        inner
            .check_failed()
            .map_err(|reason| AppendError::Failed { reason })?;
        if let Some(latest) = inner.epochs.latest()
            && leader_epoch >= 0
            && leader_epoch < latest.epoch
        {
            return Err(AppendError::StaleLeaderEpoch {
                epoch: leader_epoch,
                latest: latest.epoch,
            });
        }
        if let Some(seq) = headers
            .first()
            .and_then(|h| inner.producers.follows_refused(h))
        {
            let why = format!(
                "no space left on the device: this producer's batch at sequence {seq} was refused, and the batches after it wait for its retry"
            );
            return Err(AppendError::Io {
                path: self.dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::StorageFull, why),
            });
        }
        if let Some(duplicate) = check_sequences(&inner.producers, batches, headers, verification)?
        {
            return Ok(duplicate);
        }
        let written = self.write_new(&mut inner, batches, headers, leader_epoch);
        if let Err(e) = &written
            && e.is_storage_full()
            && let [h] = &headers[..]
        {
            inner.producers.note_refused_for_space(h);
        }
        let info = written?;
        drop(inner);
        self.after_append(info.last_offset)?;
        Ok(info)
    }

    /// The write of [`Log::append_verified`] once its batches are checked: rolled to a new
    /// segment if due, the epoch history first if it changes, offsets assigned, written,
    /// and recorded in the producers' state.
    fn write_new(
        &self,
        inner: &mut Inner,
        batches: &[u8],
        headers: &mut [BatchHeader],
        leader_epoch: i32,
    ) -> Result<AppendInfo, AppendError> {
        let span = headers
            .iter()
            .map(|h| i64::from(h.last_offset_delta) + 1)
            .sum();
        self.open_active(inner)?;
        self.maybe_roll(inner, batches.len(), span)?;
        let mut changed = inner.epochs_unpersisted;
        if leader_epoch >= 0 {
            let start = inner.next_offset;
            changed |= inner.epochs.assign(leader_epoch, start);
        }
        if changed {
            self.persist_epochs_before_data(inner)?;
        }
        let mut offset = inner.next_offset;
        for h in headers.iter_mut() {
            h.base_offset = offset;
            h.partition_leader_epoch = leader_epoch;
            offset += i64::from(h.last_offset_delta) + 1;
        }
        let info = self
            .write_abort_entries(inner, batches, headers)
            .and_then(|entries| {
                self.write_locked(inner, batches, headers, Stamp::Assigned)
                    .inspect_err(|_| self.unwrite_abort_entries(inner, entries))
            });
        let info = match info {
            Ok(info) => info,
            Err(e) => {
                self.forget_unwritten_epochs(inner);
                return Err(e);
            }
        };
        record_batches(&mut inner.producers, batches, headers);
        Ok(info)
    }

    /// Appends batches exactly as the leader stored them, as a follower copying its log
    /// (Kafka's append as follower): bytes, offsets and leader epochs are kept. `batches`
    /// is what [`Log::read`] on the leader returned (with no upper bound: followers read
    /// up to the leader's log end).
    ///
    /// Each batch must start at or after the log end and after the batch before it, so
    /// the gaps a compacted leader has, between batches and before the first, are kept
    /// as gaps; batches without records (what compaction leaves to end a segment) are
    /// accepted. Every batch passes the integrity checks of `batch::validate`: the
    /// leader decompressed and walked compressed batches when a producer sent them
    /// ([`check_request`]), so a follower does not again, and the size limit is the hard
    /// `MAX_BATCH_BYTES` (see `check_replicated`). Nothing is
    /// written if any batch is refused ([`AppendError::InvalidBatch`],
    /// [`AppendError::OffsetMismatch`]). The log end becomes the last batch's last offset
    /// plus one; newer leader epochs in the batch headers are recorded in the epoch
    /// history at the base offset of their first batch.
    ///
    /// A batch that would not fit the active segment's 32-bit relative offsets (a gap can
    /// push it there) rolls first, to a segment starting at the log end. If a write
    /// fails after such a roll, the batches before the roll stay appended: the log end
    /// says how far the append got.
    pub fn append_replicated(&self, batches: &[u8]) -> Result<AppendInfo, AppendError> {
        let headers = check_replicated(batches)?;
        let mut inner = self.lock();
        inner
            .check_failed()
            .map_err(|reason| AppendError::Failed { reason })?;
        self.open_active(&mut inner)?;
        let runs = {
            let active = inner.active();
            plan_replicated(
                &headers,
                inner.next_offset,
                active.base_offset,
                active.size == 0,
            )?
        };
        // Epochs before data: a crash may leave an epoch that starts past the recovered
        // end (recovery drops it), never a batch whose epoch the history lacks.
        let mut changed = inner.epochs_unpersisted;
        for h in &headers {
            if h.partition_leader_epoch >= 0
                && inner
                    .epochs
                    .latest()
                    .is_none_or(|l| l.epoch < h.partition_leader_epoch)
            {
                changed |= inner.epochs.assign(h.partition_leader_epoch, h.base_offset);
            }
        }
        if changed {
            self.persist_epochs_before_data(&mut inner)?;
        }
        let mut total: Option<AppendInfo> = None;
        for run in &runs {
            let (bytes, run_headers) = (&batches[run.bytes.clone()], &headers[run.batches.clone()]);
            let written = if run.roll_first {
                self.roll_locked(&mut inner).map_err(roll_to_append)
            } else {
                let span = run_headers
                    .last()
                    .expect("a run holds a batch")
                    .next_offset()
                    - inner.next_offset;
                self.maybe_roll(&mut inner, bytes.len(), span)
            }
            .and_then(|()| self.write_abort_entries(&mut inner, bytes, run_headers))
            .and_then(|entries| {
                self.write_locked(&mut inner, bytes, run_headers, Stamp::AsIs)
                    .inspect_err(|_| self.unwrite_abort_entries(&mut inner, entries))
            });
            let info = match written {
                Ok(info) => info,
                Err(e) => {
                    self.forget_unwritten_epochs(&mut inner);
                    return Err(e);
                }
            };
            record_batches(&mut inner.producers, bytes, run_headers);
            total = Some(match total {
                None => info,
                Some(t) => AppendInfo {
                    base_offset: t.base_offset,
                    last_offset: info.last_offset,
                    max_timestamp: t.max_timestamp.max(info.max_timestamp),
                    batches: t.batches + info.batches,
                    bytes: t.bytes + info.bytes,
                    duplicate: false,
                },
            });
        }
        let info = total.expect("a request holds a batch");
        drop(inner);
        self.after_append(info.last_offset)?;
        Ok(info)
    }

    /// Opens the active segment if it is parked (`log/park.rs`), before anything is
    /// written or rolled; if that fails (out of descriptors, say) the append is refused
    /// with nothing written and the log stays parked and healthy.
    fn open_active(&self, inner: &mut Inner) -> Result<(), AppendError> {
        inner.last_used = std::time::Instant::now();
        let end = inner.next_offset;
        inner
            .active_mut()
            .ensure_open(self.storage.as_ref(), &self.config, end)
            .map(|_| ())
            .map_err(|e| match e {
                crate::OpenError::Io { path, source } => AppendError::Io { path, source },
                other => AppendError::Failed {
                    reason: other.to_string(),
                },
            })
    }

    /// After a failed write: drops the epochs recorded for batches that were not written
    /// (they start at or past the log end), so the history does not run past the log. If
    /// that cannot be persisted the log fails (a reopen drops them: see recovery).
    fn forget_unwritten_epochs(&self, inner: &mut Inner) {
        if inner.epochs.truncate_from_end(inner.next_offset) {
            match self.persist_epochs(inner) {
                Ok(()) => inner.epochs_unpersisted = false,
                // The next append rewrites it before any data (`epochs_unpersisted`).
                Err(e) if e.is_storage_full() => inner.epochs_unpersisted = true,
                Err(e) => {
                    self.fail(inner, e);
                }
            }
        }
    }

    /// Writes the epoch history before the data that needs it (a batch is never on disk
    /// under an epoch the history lacks). For want of space the append is refused as
    /// storage-full and the log stays healthy: the epochs recorded for it are dropped
    /// again (it wrote nothing) and the next append writes the history first; a full disk
    /// refuses writes, it does not fail the log (found by the soak: a full disk during a
    /// leadership change stopped the broker). Any other error fails the log.
    fn persist_epochs_before_data(&self, inner: &mut Inner) -> Result<(), AppendError> {
        match self.persist_epochs(inner) {
            Ok(()) => {
                inner.epochs_unpersisted = false;
                Ok(())
            }
            Err(
                MaintenanceError::Io { path, source }
                | MaintenanceError::Checkpoint(CheckpointError::Io { path, source }),
            ) if crate::error::no_space(&source) => {
                inner.epochs.truncate_from_end(inner.next_offset);
                inner.epochs_unpersisted = true;
                Err(AppendError::Io { path, source })
            }
            Err(e) => Err(self.fail(inner, e)),
        }
    }

    /// Writes validated, offset-assigned batches at the end of the active segment and
    /// indexes them. On a write error the segment is cut back so nothing partial stays.
    fn write_locked(
        &self,
        inner: &mut Inner,
        batches: &[u8],
        headers: &[BatchHeader],
        stamp: Stamp,
    ) -> Result<AppendInfo, AppendError> {
        let active = inner.active_mut();
        active.reserve_index_room(headers.len())?;
        let start = active.size;
        let file = active.files().file.clone();
        let written = match stamp {
            Stamp::AsIs => file.write_all_at(batches, start),
            Stamp::Assigned => {
                // Each batch as a patched copy of its first bytes and its untouched rest,
                // in one pwritev: the request's buffer is shared, never copied.
                let prefixes: Vec<[u8; batch::STAMPED_BYTES]> = {
                    let mut pos = 0;
                    headers
                        .iter()
                        .map(|h| {
                            let prefix = batch::stamped_prefix(
                                &batches[pos..],
                                h.base_offset,
                                h.partition_leader_epoch,
                            );
                            pos += h.total_bytes();
                            prefix
                        })
                        .collect()
                };
                let mut slices = Vec::with_capacity(2 * headers.len());
                let mut pos = 0;
                for (h, prefix) in headers.iter().zip(&prefixes) {
                    let end = pos + h.total_bytes();
                    slices.push(IoSlice::new(prefix));
                    slices.push(IoSlice::new(&batches[pos + batch::STAMPED_BYTES..end]));
                    pos = end;
                }
                file.write_all_vectored_at(&mut slices, start)
            }
        };
        if let Err(e) = written {
            let path = active.log_path.clone();
            if let Err(cut) = file.set_len(start) {
                let reason = format!(
                    "write to {} failed ({e}) and could not be undone ({cut})",
                    path.display()
                );
                inner.failed = Some(reason);
            }
            return Err(AppendError::io(path, e));
        }
        let mut pos = start;
        let mut max_timestamp = i64::MIN;
        for h in headers {
            active.index_batch(pos, h, &self.config);
            pos += h.total_bytes() as u64;
            max_timestamp = max_timestamp.max(h.max_timestamp);
        }
        active.size = pos;
        let base_offset = headers[0].base_offset;
        let last_offset = headers.last().expect("at least one batch").last_offset();
        assert!(
            base_offset >= inner.next_offset,
            "offsets never go backwards"
        );
        inner.next_offset = last_offset + 1;
        Ok(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp,
            batches: headers.len(),
            bytes: batches.len(),
            duplicate: false,
        })
    }

    fn after_append(&self, last_offset: i64) -> Result<(), AppendError> {
        let to_append = |e: MaintenanceError| match e {
            MaintenanceError::Io { path, source } => AppendError::Io { path, source },
            other => AppendError::Failed {
                reason: other.to_string(),
            },
        };
        match self.config.flush {
            FlushPolicy::EveryAppend => self.wait_durable(last_offset).map_err(to_append),
            FlushPolicy::Interval(_) => self.flush_interval_if_due().map_err(to_append),
            FlushPolicy::GroupCommit | FlushPolicy::None => Ok(()),
        }
    }

    fn fail(&self, inner: &mut Inner, e: MaintenanceError) -> AppendError {
        let reason = e.to_string();
        inner.failed = Some(reason.clone());
        AppendError::Failed { reason }
    }
}

/// How [`Log::write_locked`] writes batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    /// As they are: a follower's copy keeps the leader's offsets and epochs.
    AsIs,
    /// With the base offset and leader epoch of each batch's header (a leader's append).
    Assigned,
}

/// The idempotent-producer check of a leader's append (see `producers`): `Some` with the
/// original offsets for a retry of a batch already written (nothing is to be written),
/// `None` to write it. A batch with a producer id must come alone.
fn check_sequences(
    producers: &ProducerStates,
    bytes: &[u8],
    headers: &[BatchHeader],
    verification: Option<u64>,
) -> Result<Option<AppendInfo>, AppendError> {
    if !headers.iter().any(|h| h.producer_id >= 0) {
        return Ok(None);
    }
    if headers.len() > 1 {
        return Err(AppendError::IdempotentBatchNotAlone {
            batches: headers.len(),
        });
    }
    let h = &headers[0];
    if h.is_control() {
        let coordinator_epoch = marker_record_of(h, bytes).map_or(-1, |m| m.coordinator_epoch);
        producers.check_marker(h.producer_id, h.producer_epoch, coordinator_epoch)?;
        return Ok(None);
    }
    Ok(match producers.check(h, verification)? {
        SequenceCheck::Append => None,
        SequenceCheck::Duplicate {
            base_offset,
            last_offset,
        } => Some(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp: h.max_timestamp,
            batches: 0,
            bytes: 0,
            duplicate: true,
        }),
    })
}
