//! Putting a rewritten segment in place, and finishing that after a crash: the names of
//! the files compaction keeps aside (`.cleaned` while written, `.swap` once committed),
//! the swap under the log lock, and `finish_interrupted`, which completes or undoes a
//! swap a crash cut short before a log directory is opened. Together because the swap's
//! file states and what recovery makes of them are one protocol (`docs/storage-format.md`,
//! "Compaction").

use std::path::{Path, PathBuf};

use super::rewrite::CleanedSegment;
use super::snapshot::SegmentView;
use crate::error::{MaintenanceError, OpenError};
use crate::log::{Inner, Log};
use crate::recovery;
use crate::segment::{self, INDEX_SUFFIX, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX};
use crate::storage::Storage;

/// Suffix state of a segment file being written by compaction (deleted by recovery).
pub(super) const CLEANED: &str = "cleaned";

/// Suffix state of a complete compacted segment being swapped in (completed by recovery).
pub(super) const SWAP: &str = "swap";

impl Log {
    /// The swap, under the log lock (so no reader opens, and no retention deletes, a file
    /// half way): `.cleaned` -> `.swap` (the log file's rename, made durable, commits the
    /// compaction), delete the old segments (the group's first one first), `.swap` ->
    /// final names, then the segment map. A failure after the commit fails the log: the
    /// next open completes the swap (see [`finish_interrupted`]).
    pub(super) fn swap_in(
        &self,
        inner: &mut Inner,
        members: &[&SegmentView],
        out: CleanedSegment,
    ) -> Result<(), MaintenanceError> {
        let storage = self.storage.as_ref();
        let (dir, base) = (&self.dir, out.base);
        let rename = |suffix: &str, from: &str, to: Option<&str>| {
            let from = aside_path(dir, base, suffix, from);
            let to = match to {
                Some(state) => aside_path(dir, base, suffix, state),
                None => segment::file_path(dir, base, suffix),
            };
            storage
                .rename(&from, &to)
                .map_err(|e| MaintenanceError::io(from, e))
        };
        // Before the commit: on error the old segments are untouched; remove what we made.
        let prepared = rename(INDEX_SUFFIX, CLEANED, Some(SWAP))
            .and_then(|()| rename(TIME_INDEX_SUFFIX, CLEANED, Some(SWAP)))
            .and_then(|()| rename(LOG_SUFFIX, CLEANED, Some(SWAP)));
        if let Err(e) = prepared {
            drop(out.files);
            for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
                for state in [CLEANED, SWAP] {
                    let _ = storage.remove_file(&aside_path(dir, base, suffix, state));
                }
            }
            return Err(e);
        }
        drop(out.files);
        let committed = (|| {
            storage
                .sync_dir(dir)
                .map_err(|e| MaintenanceError::io(dir.clone(), e))?;
            // The group's first segment goes first: while its `.log` exists, recovery
            // knows no old segment of the group is gone yet.
            for m in members {
                for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
                    let path = segment::file_path(dir, m.base, suffix);
                    match storage.remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(MaintenanceError::io(path, e)),
                    }
                }
            }
            storage
                .sync_dir(dir)
                .map_err(|e| MaintenanceError::io(dir.clone(), e))?;
            rename(INDEX_SUFFIX, SWAP, None)?;
            rename(TIME_INDEX_SUFFIX, SWAP, None)?;
            rename(LOG_SUFFIX, SWAP, None)?;
            storage
                .sync_dir(dir)
                .map_err(|e| MaintenanceError::io(dir.clone(), e))
        })();
        if let Err(e) = committed {
            inner.failed = Some(format!("compaction swap of segment {base} failed: {e}"));
            return Err(e);
        }
        for m in members {
            inner.segments.remove(&m.base);
        }
        inner
            .segments
            .insert(base, Box::new(Segment::closed(dir, base, out.size)));
        // The rewritten segment was synced before the swap: a deferred sync of a member
        // it replaced is no longer needed.
        self.prune_rolled(inner);
        Ok(())
    }
}

/// `<dir>/<base>.<suffix>.<state>`: a file compaction keeps aside (`cleaned`, `swap`).
pub(super) fn aside_path(dir: &Path, base: i64, suffix: &str, state: &str) -> PathBuf {
    dir.join(format!("{base:020}.{suffix}.{state}"))
}

/// Completes or undoes a compaction a crash interrupted, before a log directory is
/// opened (`names` is its listing). `.cleaned` files are deleted: their rewrite had not
/// committed and the old segments are intact. A `<base>.log.swap` had committed: the old
/// segments it replaces (every `.log` whose base lies between `base` and the end of the
/// swap file's last batch) are deleted, then the `.swap` files are renamed to their final
/// names. Returns true if anything was changed (the caller lists the directory again).
pub(crate) fn finish_interrupted(
    dir: &Path,
    storage: &dyn Storage,
    names: &[String],
) -> Result<bool, OpenError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| OpenError::io(p, e)
    };
    let remove = |path: &Path| match storage.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OpenError::io(path.to_path_buf(), e)),
    };
    let mut changed = false;
    let mut log_swaps = Vec::new();
    let mut index_swaps = Vec::new();
    for name in names {
        let Some((base, suffix, state)) = parse_aside_name(name) else {
            continue;
        };
        match (suffix, state) {
            (_, CLEANED) => {
                tracing::info!(file = name, "removing an unfinished compaction file");
                remove(&dir.join(name))?;
                changed = true;
            }
            (LOG_SUFFIX, SWAP) => log_swaps.push(base),
            _ => index_swaps.push((base, name)),
        }
    }
    // Index files without their log's `.swap` belong to a rewrite that had not committed
    // (or whose log is already in place): indexes are rebuilt when missing.
    for (base, name) in index_swaps {
        if !log_swaps.contains(&base) {
            remove(&dir.join(name))?;
            changed = true;
        }
    }
    let segments: Vec<i64> = names
        .iter()
        .filter_map(|n| segment::parse_log_name(n))
        .collect();
    log_swaps.sort_unstable();
    for base in log_swaps {
        changed = true;
        let swap = aside_path(dir, base, LOG_SUFFIX, SWAP);
        let file = storage.open(&swap, false).map_err(io(&swap))?;
        let size = file.size().map_err(io(&swap))?;
        let scanned = recovery::scan(file.as_ref(), &swap, base, 0, size, base, |_, _, _| {})?;
        drop(file);
        if let Some(problem) = &scanned.problem {
            if segments.contains(&base) {
                // The swap file was synced before it was named `.swap`, so this is damage
                // at rest; the old segments are all still there (the first is deleted
                // first), so keep them.
                tracing::error!(file = %swap.display(), problem, "damaged compacted segment; keeping the segments it was to replace");
                for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
                    remove(&aside_path(dir, base, suffix, SWAP))?;
                }
                continue;
            }
            tracing::error!(file = %swap.display(), problem, "damaged compacted segment; completing its swap");
        }
        let end = scanned.next_offset.unwrap_or(base);
        tracing::info!(
            base_offset = base,
            end_offset = end,
            "completing an interrupted compaction swap"
        );
        for old in segments
            .iter()
            .filter(|b| (base..end.max(base + 1)).contains(*b))
        {
            for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
                remove(&segment::file_path(dir, *old, suffix))?;
            }
        }
        storage.sync_dir(dir).map_err(io(dir))?;
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
            let from = aside_path(dir, base, suffix, SWAP);
            if from.exists() {
                let to = segment::file_path(dir, base, suffix);
                storage.rename(&from, &to).map_err(io(&from))?;
            }
        }
        storage.sync_dir(dir).map_err(io(dir))?;
    }
    Ok(changed)
}

/// Parses `<20-digit base>.<log|index|timeindex>.<cleaned|swap>`.
fn parse_aside_name(name: &str) -> Option<(i64, &'static str, &'static str)> {
    let (rest, state) = name.rsplit_once('.')?;
    let state = [CLEANED, SWAP].into_iter().find(|s| *s == state)?;
    let (stem, suffix) = rest.rsplit_once('.')?;
    let suffix = [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX]
        .into_iter()
        .find(|s| *s == suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aside_names_parse() {
        assert_eq!(
            parse_aside_name("00000000000000000042.log.swap"),
            Some((42, LOG_SUFFIX, SWAP))
        );
        assert_eq!(
            parse_aside_name("00000000000000000042.timeindex.cleaned"),
            Some((42, TIME_INDEX_SUFFIX, CLEANED))
        );
        assert_eq!(parse_aside_name("00000000000000000042.log"), None);
        assert_eq!(parse_aside_name("42.log.swap"), None);
        assert_eq!(parse_aside_name("recovery-point.checkpoint.tmp"), None);
    }
}
