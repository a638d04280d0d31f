//! Planning a compaction pass: surveying the cleanable segments (what each would lose
//! and how large it would be after) without writing anything, and grouping neighbours
//! whose compacted sizes fit one segment into one rewrite each. Separate because it
//! decides what the rewrite (`rewrite.rs`) does and writes nothing itself.

use super::batch_reader::BatchReader;
use super::cleaning::{Cleaned, Rules, clean_batch, min_option};
use super::malformed_batch;
use super::snapshot::SegmentView;
use crate::batch::HEADER_BYTES;
use crate::error::MaintenanceError;

/// What surveying the cleanable segments found.
#[derive(Debug, Default)]
pub(super) struct Survey {
    pub(super) segments: Vec<SegmentSurvey>,
    pub(super) malformed: bool,
    /// Base offset of the log's last batch, if it lies in a closed segment.
    pub(super) last_batch_base: Option<i64>,
    pub(super) next_tombstone_expiry_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct SegmentSurvey {
    /// Records that would go.
    removable: u64,
    /// Estimated size after compaction.
    estimated_bytes: u64,
}

/// Decides every record of the cleanable segments without writing anything, to find what
/// is worth rewriting and how segments can be grouped.
pub(super) fn survey(
    cleanable: &[&SegmentView],
    rules: &Rules<'_>,
) -> Result<Survey, MaintenanceError> {
    let mut survey = Survey::default();
    for view in cleanable {
        let mut seg = SegmentSurvey {
            removable: 0,
            estimated_bytes: 0,
        };
        let mut reader = BatchReader::new(view);
        while let Some((position, header, bytes)) = reader.next()? {
            if header.next_offset() == rules.log_end {
                survey.last_batch_base = Some(header.base_offset);
            }
            let ((cleaned, size), tally) = clean_batch(&bytes, &header, rules, false);
            if let Cleaned::Malformed(problem) = &cleaned {
                malformed_batch(view, position, problem);
                survey.malformed = true;
            }
            seg.removable += tally.removed();
            seg.estimated_bytes += size;
            survey.next_tombstone_expiry_ms = min_option(
                survey.next_tombstone_expiry_ms,
                tally.next_tombstone_expiry_ms,
            );
        }
        survey.segments.push(seg);
    }
    Ok(survey)
}

/// Groups neighbouring segments whose compacted sizes together fit `segment_bytes` (and
/// whose offsets fit 32-bit relative offsets) into one rewrite each. A group is rewritten
/// if it removes something or merges segments. Returns indexes into `cleanable`.
pub(super) fn plan_groups(
    cleanable: &[&SegmentView],
    surveys: &[SegmentSurvey],
    segment_bytes: u64,
) -> Vec<Vec<usize>> {
    let mut groups = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let (mut estimated, mut removable) = (0u64, 0u64);
    let mut close = |current: &mut Vec<usize>, removable: u64| {
        if removable > 0 || current.len() > 1 {
            groups.push(std::mem::take(current));
        }
        current.clear();
    };
    for (i, (view, s)) in cleanable.iter().zip(surveys).enumerate() {
        if view.size == 0 {
            close(&mut current, removable);
            (estimated, removable) = (0, 0);
            continue;
        }
        if view.has_aborted {
            close(&mut current, removable);
            current.push(i);
            close(&mut current, s.removable);
            (estimated, removable) = (0, 0);
            continue;
        }
        let fits = current.first().is_some_and(|&first| {
            estimated + s.estimated_bytes + HEADER_BYTES as u64 <= segment_bytes
                && view.end - cleanable[first].base <= i64::from(u32::MAX)
        });
        if !fits {
            close(&mut current, removable);
            (estimated, removable) = (0, 0);
        }
        current.push(i);
        estimated += s.estimated_bytes;
        removable += s.removable;
    }
    close(&mut current, removable);
    groups
}
