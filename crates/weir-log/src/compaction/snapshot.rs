//! What a compaction pass works from: the [`Snapshot`] of the log's segments and offsets
//! taken under the log lock when the pass starts, each segment a [`SegmentView`] with an
//! open handle. Separate because every later step of the pass (key map, survey, rewrite)
//! reads the log through it, without the log lock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::MaintenanceError;
use crate::log::{Log, open_to_maintenance};
use crate::storage::StorageFile;

/// A segment as a pass saw it: its offsets `base..end`, `size` bytes of batches, and an
/// open handle (reads through it stay valid after the file is swapped out).
#[derive(Debug)]
pub(super) struct SegmentView {
    pub(super) base: i64,
    /// The next segment's base offset (the log end for the active segment).
    pub(super) end: i64,
    pub(super) size: u64,
    pub(super) file: Arc<dyn StorageFile>,
    pub(super) path: PathBuf,
    /// Its aborted-transaction index has entries: it is rewritten on its own, never
    /// merged, so its `.txnindex` stays its own.
    pub(super) has_aborted: bool,
}

#[derive(Debug)]
pub(super) struct Snapshot {
    pub(super) closed: Vec<SegmentView>,
    pub(super) active: SegmentView,
    /// The key map reads batches that end at or below this (durable) offset, which is
    /// before the segment holding the first unstable offset.
    pub(super) map_end: i64,
    /// The aborted transactions' offsets (first, marker) by producer id: their records
    /// never enter the key map (an aborted value must not remove a committed one).
    pub(super) aborted: HashMap<i64, Vec<(i64, i64)>>,
    pub(super) log_end: i64,
    pub(super) generation: u64,
}

impl Log {
    /// The segments and offsets a pass works from, taken under the log lock.
    pub(super) fn snapshot(&self) -> Result<Snapshot, MaintenanceError> {
        let mut inner = self.lock();
        inner
            .check_failed()
            .map_err(|reason| MaintenanceError::Failed { reason })?;
        let flushed = self.flush_state().flushed_offset;
        let active_base = inner.active().base_offset;
        let bases: Vec<i64> = inner.segments.keys().copied().collect();
        let mut closed = Vec::new();
        let mut aborted: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for &base in &bases {
            self.load_txn_index(&mut inner, base)
                .map_err(open_to_maintenance)?;
            let txn = inner.segments[&base].txn.as_ref().expect("loaded");
            for e in &txn.entries {
                aborted
                    .entry(e.producer_id)
                    .or_default()
                    .push((e.first_offset, e.last_offset));
            }
        }
        // Records of an ongoing transaction are neither cleaned nor let remove older
        // records of their keys (it may yet abort): the pass stops at the first segment
        // that holds the first unstable offset.
        let first_unstable = inner.producers.first_unstable_offset();
        let stable_end = first_unstable.map_or(i64::MAX, |fuo| {
            let holding = inner.segments.range(..=fuo).next_back();
            holding.map_or(fuo, |(base, _)| *base)
        });
        for base in bases.into_iter().filter(|b| *b != active_base) {
            let end = inner.end_of(base);
            let has_aborted = !inner.segments[&base]
                .txn
                .as_ref()
                .expect("loaded")
                .entries
                .is_empty();
            let seg = inner.segments.get_mut(&base).expect("listed");
            let file = seg
                .ensure_open(self.storage.as_ref(), &self.config, end)
                .map_err(open_to_maintenance)?
                .file
                .clone();
            closed.push(SegmentView {
                base,
                end,
                size: seg.size,
                file,
                path: seg.log_path.clone(),
                has_aborted,
            });
        }
        let end = inner.next_offset;
        let active = inner.active_mut();
        let file = active
            .ensure_open(self.storage.as_ref(), &self.config, end)
            .map_err(open_to_maintenance)?
            .file
            .clone();
        let active = SegmentView {
            base: active.base_offset,
            end,
            size: active.size,
            file,
            path: active.log_path.clone(),
            has_aborted: false,
        };
        Ok(Snapshot {
            closed,
            active,
            map_end: flushed.min(inner.next_offset).min(stable_end),
            aborted,
            log_end: inner.next_offset,
            generation: inner.generation,
        })
    }
}
