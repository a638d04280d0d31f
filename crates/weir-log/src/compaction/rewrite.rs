//! Rewriting one group of neighbouring closed segments into one: the surviving batches
//! are written, without the log lock, to a [`CleanedSegment`] under `.cleaned` names,
//! its indexes built and everything synced, then the result goes to the swap
//! (`swap.rs`). Separate because it is where a pass writes, and where a group found
//! changed (retention, truncation) or not worth it is abandoned.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::batch_reader::BatchReader;
use super::cleaning::{Cleaned, Rules, Tally, clean_batch, empty_batch};
use super::snapshot::{SegmentView, Snapshot};
use super::swap::{CLEANED, aside_path};
use super::{CompactionOutcome, malformed_batch};
use crate::batch::{BatchHeader, HEADER_BYTES};
use crate::config::MAX_SEGMENT_BYTES;
use crate::error::MaintenanceError;
use crate::index::{Index, OffsetEntry, TimeEntry};
use crate::log::{Log, open_to_maintenance};
use crate::recovery;
use crate::segment::{INDEX_SUFFIX, LOG_SUFFIX, Segment, SegmentFiles, TIME_INDEX_SUFFIX};
use crate::storage::{Storage, StorageFile};

/// Rewritten batches are buffered up to this size before each write.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

impl Log {
    /// Rewrites one group of neighbouring closed segments into one and swaps it in.
    /// Returns false if the group changed under it (retention or truncation) and was left
    /// alone.
    pub(super) fn rewrite_group(
        &self,
        snap: &Snapshot,
        members: &[&SegmentView],
        rules: &Rules<'_>,
        outcome: &mut CompactionOutcome,
    ) -> Result<bool, MaintenanceError> {
        let base = members[0].base;
        let mut out = CleanedSegment::create(self.storage.as_ref(), &self.dir, base)?;
        let written = (|| {
            let mut tally = Tally::default();
            for view in members {
                // A marker kept for the previous member's end is not needed: this member
                // follows on inside the same segment.
                out.pending_marker = None;
                let mut last_removed: Option<Bytes> = None;
                let mut reader = BatchReader::new(view);
                while let Some((position, header, bytes)) = reader.next()? {
                    let ((cleaned, _), t) = clean_batch(&bytes, &header, rules, true);
                    tally.add(&t);
                    match cleaned {
                        Cleaned::Unchanged => out.push(&bytes, header)?,
                        Cleaned::Rewritten(b) => out.push(&b, BatchHeader::parse(&b))?,
                        Cleaned::Removed => {
                            last_removed = Some(bytes.slice(..HEADER_BYTES));
                            continue;
                        }
                        Cleaned::Malformed(problem) => {
                            malformed_batch(view, position, &problem);
                            if rules.tombstones {
                                // Records this batch should have lost stay: a tombstone
                                // after them must not go, so leave the group alone.
                                return Ok(None);
                            }
                            out.push(&bytes, header)?;
                        }
                    }
                    last_removed = None;
                }
                out.pending_marker = last_removed.map(|h| empty_batch(&h));
            }
            if let Some(marker) = out.pending_marker.take() {
                out.push(&marker, BatchHeader::parse(&marker))?;
            }
            out.flush()?;
            Ok::<_, MaintenanceError>(Some(tally))
        })();
        let tally = match written {
            Ok(Some(t)) => t,
            Ok(None) => {
                out.discard(self.storage.as_ref());
                return Ok(false);
            }
            Err(e) => {
                out.discard(self.storage.as_ref());
                return Err(e);
            }
        };
        if tally.removed() == 0 && members.len() == 1 {
            out.discard(self.storage.as_ref());
            return Ok(true);
        }
        if out.size > MAX_SEGMENT_BYTES {
            tracing::warn!(segment = %members[0].path.display(), bytes = out.size, "compacted segment would be too large; left as it is");
            out.discard(self.storage.as_ref());
            return Ok(true);
        }
        if let Err(e) = out.seal(&self.config) {
            out.discard(self.storage.as_ref());
            return Err(e);
        }
        let mut inner = self.lock();
        let unchanged = inner.failed.is_none()
            && inner.generation == snap.generation
            && inner.active().base_offset != base
            && members.iter().all(|m| {
                inner
                    .segments
                    .get(&m.base)
                    .is_some_and(|s| s.size == m.size)
            });
        if !unchanged {
            drop(inner);
            out.discard(self.storage.as_ref());
            tracing::debug!(segment = %members[0].path.display(), "segments changed during compaction; not swapped");
            return Ok(false);
        }
        let new_size = out.size;
        self.swap_in(&mut inner, members, out)?;
        drop(inner);
        outcome.segments_rewritten += members.len();
        outcome.segments_written += 1;
        outcome.records_removed += tally.removed();
        outcome.tombstones_removed += tally.tombstones;
        outcome.bytes_before += members.iter().map(|m| m.size).sum::<u64>();
        outcome.bytes_after += new_size;
        Ok(true)
    }
}

/// The segment a group is rewritten into, under its `.cleaned` names.
pub(super) struct CleanedSegment {
    pub(super) base: i64,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    /// Bytes written or buffered.
    pub(super) size: u64,
    buf: Vec<u8>,
    /// Bytes handed to the file.
    flushed: u64,
    batches: Vec<(u64, BatchHeader)>,
    /// The empty batch that must end the segment if nothing follows the last member's
    /// removed last batch.
    pending_marker: Option<Vec<u8>>,
    /// The indexes, once sealed; dropped (unmapped) before the swap.
    pub(super) files: Option<SegmentFiles>,
}

impl CleanedSegment {
    fn create(storage: &dyn Storage, dir: &Path, base: i64) -> Result<Self, MaintenanceError> {
        let path = aside_path(dir, base, LOG_SUFFIX, CLEANED);
        let file = storage
            .open(&path, true)
            .map_err(|e| MaintenanceError::io(path.clone(), e))?;
        file.set_len(0)
            .map_err(|e| MaintenanceError::io(path.clone(), e))?;
        Ok(CleanedSegment {
            base,
            path,
            file,
            size: 0,
            buf: Vec::new(),
            flushed: 0,
            batches: Vec::new(),
            pending_marker: None,
            files: None,
        })
    }

    fn push(&mut self, batch: &[u8], header: BatchHeader) -> Result<(), MaintenanceError> {
        self.batches.push((self.size, header));
        self.size += batch.len() as u64;
        self.buf.extend_from_slice(batch);
        if self.buf.len() >= WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), MaintenanceError> {
        if !self.buf.is_empty() {
            self.file
                .write_all_at(&self.buf, self.flushed)
                .map_err(|e| MaintenanceError::io(self.path.clone(), e))?;
            self.flushed += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Syncs the log file and writes its indexes (built as appends build them), sealed
    /// and synced, under their `.cleaned` names.
    fn seal(&mut self, config: &crate::LogConfig) -> Result<(), MaintenanceError> {
        self.file
            .sync_data()
            .map_err(|e| MaintenanceError::io(self.path.clone(), e))?;
        let dir = self
            .path
            .parent()
            .expect("segment files live in a directory");
        let entries = self.batches.len() as u64 + 2;
        let index_path = aside_path(dir, self.base, INDEX_SUFFIX, CLEANED);
        let time_path = aside_path(dir, self.base, TIME_INDEX_SUFFIX, CLEANED);
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| MaintenanceError::io(p, e)
        };
        for p in [&index_path, &time_path] {
            match fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(MaintenanceError::io(p.clone(), e)),
            }
        }
        let index = Index::<OffsetEntry>::open(&index_path, Some(entries * 8), Some(0))
            .map_err(io(&index_path))?;
        let time_index = Index::<TimeEntry>::open(&time_path, Some(entries * 12), Some(0))
            .map_err(io(&time_path))?;
        let mut seg = Segment::closed(dir, self.base, self.size);
        seg.files = Some(SegmentFiles {
            file: self.file.clone(),
            index,
            time_index,
        });
        for (position, header) in &self.batches {
            seg.index_batch(*position, header, config);
        }
        recovery::seal(&mut seg).map_err(open_to_maintenance)?;
        self.files = seg.files.take();
        Ok(())
    }

    /// Removes the files of a rewrite that will not be swapped in.
    fn discard(self, storage: &dyn Storage) {
        let dir = self
            .path
            .parent()
            .expect("segment files live in a directory");
        let (dir, base) = (dir.to_path_buf(), self.base);
        drop(self.files);
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
            let path = aside_path(&dir, base, suffix, CLEANED);
            match storage.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove an abandoned compaction file; the next open will")
                }
            }
        }
    }
}
