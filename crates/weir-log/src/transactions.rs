//! Transactions on one partition's log (KIP-98): the markers a leader appends, the
//! ongoing transactions and the first unstable offset they set, and the aborted
//! transactions a `read_committed` reader is told about. The per-producer bookkeeping is
//! in `producers.rs`, the index file in `txn_index.rs`.

use crate::batch::control::{ControlType, TxnMarker};
use crate::batch::{self, BatchHeader};
use crate::error::{AppendError, OpenError, ReadError};
use crate::log::{AppendInfo, Inner, Log};
use crate::producers::{OngoingTxn, ProducerStates, Verification, marker_record_of};
use crate::recovery;
use crate::txn_index::{AbortedTxn, Loaded, TXN_INDEX_SUFFIX, TxnIndex};

impl Log {
    /// Appends a transaction marker as the leader: a control batch (Kafka's layout, see
    /// `weir_batch::control`) that ends `producer_id`'s ongoing transaction, committing
    /// it if `commit`, else aborting it (an abort is entered in the aborted-transaction
    /// index). A marker of an epoch older than the producer's is refused
    /// ([`SequenceError::Fenced`](crate::producers::SequenceError)); one for a producer
    /// with no ongoing transaction is written and ends nothing, as in Kafka (the
    /// coordinator may retry a marker whose answer it lost). `leader_epoch` as for
    /// [`Log::append`]; the marker's timestamp is the broker's clock.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        leader_epoch: i32,
    ) -> Result<AppendInfo, AppendError> {
        let marker = TxnMarker {
            producer_id,
            producer_epoch,
            control: if commit {
                ControlType::Commit
            } else {
                ControlType::Abort
            },
            coordinator_epoch,
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let invalid = |source| AppendError::InvalidBatch {
            index: 0,
            position: 0,
            source,
        };
        let bytes = marker.encode(now_ms).map_err(invalid)?;
        let header = batch::validate(&bytes).map_err(invalid)?;
        self.append_checked(&bytes, &mut [header], leader_epoch)
    }

    /// The smallest first offset of the ongoing transactions (Kafka's first unstable
    /// offset), or `None` if none is ongoing. A partition's last stable offset is the
    /// smaller of it and the high watermark.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.lock().producers.first_unstable_offset()
    }

    /// KIP-890, before the leader asks `producer_id`'s coordinator whether this
    /// partition is in its transaction: the guard to append its batch with
    /// ([`ValidatedBatches::verified`](crate::ValidatedBatches::verified)), which a
    /// marker for the producer revokes, and whether the coordinator must be asked at all
    /// (see `producers`).
    pub fn begin_verification(&self, producer_id: i64, epoch: i16) -> Verification {
        self.lock().producers.begin_verification(producer_id, epoch)
    }

    /// The transactions under way, oldest first.
    pub fn ongoing_transactions(&self) -> Vec<OngoingTxn> {
        self.lock().producers.ongoing_transactions()
    }

    /// The aborted transactions that hold records in `start..end` (their first offset is
    /// before `end`, their marker at or after `start`), in marker order: what a
    /// `read_committed` reader of that range must drop. Reads the indexes of the segments
    /// from the one holding `start` on, and stops at the first entry whose last stable
    /// offset is past `end` (every transaction that began before `end` had ended then).
    pub fn aborted_transactions(&self, start: i64, end: i64) -> Result<Vec<AbortedTxn>, ReadError> {
        let mut inner = self.lock();
        let first = inner
            .segments
            .range(..=start)
            .next_back()
            .map_or(start, |(base, _)| *base);
        let bases: Vec<i64> = inner.segments.range(first..).map(|(b, _)| *b).collect();
        let mut found = Vec::new();
        for base in bases {
            self.load_txn_index(&mut inner, base)
                .map_err(open_to_read)?;
            let Some(seg) = inner.segments.get(&base) else {
                continue; // a rebuild does not remove segments; stay safe all the same
            };
            let entries = &seg.txn.as_ref().expect("loaded").entries;
            let from = entries.partition_point(|e| e.last_offset < start);
            for e in &entries[from..] {
                if e.first_offset < end {
                    found.push(*e);
                }
                if e.last_stable_offset > end {
                    return Ok(found);
                }
            }
        }
        Ok(found)
    }

    /// Loads segment `base`'s aborted-transaction index if it is not loaded yet. A
    /// damaged one is rebuilt, with every other, from the log start.
    pub(crate) fn load_txn_index(&self, inner: &mut Inner, base: i64) -> Result<(), OpenError> {
        let end = inner.end_of(base);
        let seg = inner.segments.get_mut(&base).expect("listed");
        if seg.txn.is_some() {
            return Ok(());
        }
        let path = seg.path(TXN_INDEX_SUFFIX);
        let loaded = TxnIndex::load(self.storage.as_ref(), &path, base, end)
            .map_err(|e| OpenError::io(path.clone(), e))?;
        match loaded {
            Loaded::Entries(entries) => {
                seg.txn = Some(TxnIndex::new(entries));
                Ok(())
            }
            Loaded::Damaged(problem) => {
                tracing::warn!(index = %path.display(), problem, "aborted-transaction index damaged; rebuilding the producers' state from the log start");
                recovery::rebuild_transactions_fully(&self.config, self.storage.as_ref(), inner)?;
                // Segments before the rebuild's start keep what they had.
                let seg = inner.segments.get_mut(&base).expect("listed");
                if seg.txn.is_none() {
                    let mut empty = TxnIndex::default();
                    empty
                        .replace(self.storage.as_ref(), &path, Vec::new())
                        .map_err(|e| OpenError::io(path.clone(), e))?;
                    seg.txn = Some(empty);
                }
                Ok(())
            }
        }
    }

    /// Writes the aborted-transaction index entries that the abort markers among
    /// `headers` (offsets assigned, to be written next at the end of the active segment)
    /// will make, before the batches are written, and returns how many. A full disk then
    /// refuses the append with nothing written and the log healthy; before, the entry
    /// was written after its marker, and running out of space there failed the log (a
    /// marker cannot be taken back and its entry cannot be left out), whose reopen on
    /// the still-full disk then took the broker's data directory offline (found by the
    /// soak). If the batches' write fails, [`Log::unwrite_abort_entries`] removes them.
    /// Any other failure fails the log.
    pub(crate) fn write_abort_entries(
        &self,
        inner: &mut Inner,
        batches: &[u8],
        headers: &[BatchHeader],
    ) -> Result<usize, AppendError> {
        if !holds_abort_marker(batches, headers) {
            return Ok(0);
        }
        // Worked out on a copy of the producers' state, by the walk that records them
        // (aborts are rare: a commit marker, one per partition and transaction, takes
        // the test above and no copy).
        let mut states = inner.producers.clone();
        let entries = record_batches(&mut states, batches, headers);
        if entries.is_empty() {
            return Ok(0);
        }
        let base = inner.active().base_offset;
        let loaded = self.load_txn_index(inner, base);
        let seg = inner.active_mut();
        let path = seg.path(TXN_INDEX_SUFFIX);
        let problem = match loaded {
            Err(e) => e.to_string(),
            Ok(()) => {
                let txn = seg.txn.as_mut().expect("loaded");
                let before = txn.entries.len();
                let written = entries
                    .iter()
                    .try_for_each(|e| txn.append(self.storage.as_ref(), &path, *e));
                let Err(e) = written else {
                    return Ok(entries.len());
                };
                match txn.truncate(before) {
                    Ok(()) if crate::error::no_space(&e) => {
                        return Err(AppendError::Io { path, source: e });
                    }
                    Ok(()) => format!("{}: {e}", path.display()),
                    Err(cut) => format!("{}: {e}, and could not be undone: {cut}", path.display()),
                }
            }
        };
        let reason = format!("aborted-transaction index not written: {problem}");
        inner.failed = Some(reason.clone());
        Err(AppendError::Failed { reason })
    }

    /// Removes the last `count` entries of the active segment's aborted-transaction
    /// index, written by [`Log::write_abort_entries`] for batches whose write then
    /// failed. If that fails the log fails (a reopen rebuilds the index from the log).
    pub(crate) fn unwrite_abort_entries(&self, inner: &mut Inner, count: usize) {
        if count == 0 {
            return;
        }
        let seg = inner.active_mut();
        let path = seg.path(TXN_INDEX_SUFFIX);
        let txn = seg.txn.as_mut().expect("written to");
        if let Err(e) = txn.truncate(txn.entries.len() - count) {
            inner.failed = Some(format!(
                "aborted-transaction index entries of an unwritten marker not removed: {}: {e}",
                path.display()
            ));
        }
    }
}

/// Whether `batches` hold a transaction's abort marker (a control batch of a producer
/// whose record says abort).
fn holds_abort_marker(batches: &[u8], headers: &[BatchHeader]) -> bool {
    let mut pos = 0;
    headers.iter().any(|h| {
        let bytes = &batches[pos..pos + h.total_bytes()];
        pos += h.total_bytes();
        h.producer_id >= 0
            && marker_record_of(h, bytes).is_some_and(|m| m.control == ControlType::Abort)
    })
}

/// Records written batches (`batches`, whose headers carry their offsets) in `states`
/// and returns the aborted-transaction index entries their abort markers make, in order.
pub(crate) fn record_batches(
    states: &mut ProducerStates,
    batches: &[u8],
    headers: &[BatchHeader],
) -> Vec<AbortedTxn> {
    let mut pos = 0;
    let mut entries = Vec::new();
    for h in headers {
        let bytes = &batches[pos..pos + h.total_bytes()];
        pos += h.total_bytes();
        entries.extend(states.record_batch(h, bytes));
    }
    entries
}

fn open_to_read(e: OpenError) -> ReadError {
    match e {
        OpenError::Io { path, source } => ReadError::Io { path, source },
        other => ReadError::Io {
            path: std::path::PathBuf::new(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}
