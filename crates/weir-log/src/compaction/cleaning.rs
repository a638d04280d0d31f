//! What compaction does to each record and batch: the [`Rules`] of a pass decide each
//! record's [`Fate`], `clean_batch` applies them to a batch, and `rebuild_batch` and
//! `empty_batch` re-encode what is left. Separate because the survey (`plan.rs`) and the
//! rewrite (`rewrite.rs`) both decide batches by these rules, and re-encoding a batch
//! is byte-level work with tests of its own.

use std::ops::Range;

use bytes::Bytes;

use super::key_map::KeyMap;
use crate::batch::{self, BatchError, BatchHeader, Compression, HEADER_BYTES};

/// Added to the estimate of a re-compressed batch: codec framing does not shrink with
/// the records removed.
const RECOMPRESSION_SLACK_BYTES: u64 = 64;

/// What decides each record's fate in a pass.
#[derive(Debug)]
pub(super) struct Rules<'a> {
    pub(super) map: &'a KeyMap,
    /// See [`CompactionState::clean_through`](super::CompactionState::clean_through).
    pub(super) clean_through: i64,
    /// Tombstones in batches whose `max_timestamp` is below this may go.
    pub(super) horizon: i64,
    pub(super) retention_ms: i64,
    /// Tombstone removal is allowed in this pass (so far).
    pub(super) tombstones: bool,
    /// The batch that ends here is the log's last: kept untouched.
    pub(super) log_end: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    /// A tombstone that goes once its batch is old enough (at `expires_at_ms`).
    KeepTombstone {
        expires_at_ms: i64,
    },
    Superseded,
    ExpiredTombstone,
}

impl Rules<'_> {
    fn fate(&self, offset: i64, key: Option<&[u8]>, tombstone: bool, max_timestamp: i64) -> Fate {
        let Some(key) = key else {
            return Fate::Keep;
        };
        let newest = self.map.get(key);
        if newest.is_some_and(|n| offset < n) {
            return Fate::Superseded;
        }
        // A tombstone may go once nothing older of its key is left below it: it is the
        // newest the map knows (this pass removes every older copy, oldest segments
        // first), or it lies below `clean_through` (an earlier pass did).
        let removable = tombstone
            && self.tombstones
            && match newest {
                Some(n) => n == offset,
                None => offset < self.clean_through,
            };
        if !removable {
            Fate::Keep
        } else if max_timestamp < self.horizon {
            Fate::ExpiredTombstone
        } else {
            Fate::KeepTombstone {
                expires_at_ms: max_timestamp
                    .saturating_add(self.retention_ms)
                    .saturating_add(1),
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tally {
    superseded: u64,
    pub(super) tombstones: u64,
    pub(super) next_tombstone_expiry_ms: Option<i64>,
}

impl Tally {
    pub(super) fn removed(&self) -> u64 {
        self.superseded + self.tombstones
    }

    pub(super) fn add(&mut self, other: &Tally) {
        self.superseded += other.superseded;
        self.tombstones += other.tombstones;
        self.next_tombstone_expiry_ms = min_option(
            self.next_tombstone_expiry_ms,
            other.next_tombstone_expiry_ms,
        );
    }
}

pub(super) fn min_option(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug)]
pub(super) enum Cleaned {
    /// Kept byte for byte.
    Unchanged,
    /// Some records removed: the re-encoded batch (empty when only surveying).
    Rewritten(Vec<u8>),
    /// Every record removed (or an empty batch).
    Removed,
    /// Its records could not be read: kept byte for byte.
    Malformed(String),
}

/// Decides a batch's records and, with `build`, re-encodes the survivors: same base
/// offset, offset deltas, timestamps, headers, producer fields, leader epoch,
/// `last_offset_delta` and codec; only `record_count`, the length and the CRC change.
/// Returns the size the result will have (estimated for re-compressed batches).
pub(super) fn clean_batch(
    batch: &Bytes,
    header: &BatchHeader,
    rules: &Rules<'_>,
    build: bool,
) -> ((Cleaned, u64), Tally) {
    let mut tally = Tally::default();
    let unchanged = (Cleaned::Unchanged, batch.len() as u64);
    if header.is_control() || header.next_offset() == rules.log_end {
        return (unchanged, tally);
    }
    if header.record_count == 0 {
        // Only compaction writes empty batches, to end a segment; one is written again
        // where a rewritten group still needs it. Dropping one removes no record, so it
        // alone is no reason to rewrite a segment (where it is, it is still needed).
        return ((Cleaned::Removed, 0), tally);
    }
    let records = match batch::records_section(batch, header) {
        Ok(r) => r,
        Err(e) => {
            return (
                (Cleaned::Malformed(e.to_string()), batch.len() as u64),
                tally,
            );
        }
    };
    let mut kept: Vec<Range<usize>> = Vec::new();
    let (mut kept_bytes, mut count) = (0usize, 0i32);
    let walked = batch::walk_records(&records, header, |r| {
        let offset = header.base_offset + i64::from(r.offset_delta);
        match rules.fate(offset, r.key, r.is_tombstone, header.max_timestamp) {
            Fate::Superseded => tally.superseded += 1,
            Fate::ExpiredTombstone => tally.tombstones += 1,
            fate => {
                if let Fate::KeepTombstone { expires_at_ms } = fate {
                    tally.next_tombstone_expiry_ms =
                        min_option(tally.next_tombstone_expiry_ms, Some(expires_at_ms));
                }
                kept_bytes += r.span.len();
                count += 1;
                kept.push(r.span);
            }
        }
    });
    if let Err(e) = walked {
        return (
            (Cleaned::Malformed(e.to_string()), batch.len() as u64),
            Tally::default(),
        );
    }
    if tally.removed() == 0 {
        return (unchanged, tally);
    }
    if count == 0 {
        return ((Cleaned::Removed, 0), tally);
    }
    let codec = header.compression().unwrap_or(Compression::None);
    let estimate = if codec == Compression::None {
        (HEADER_BYTES + kept_bytes) as u64
    } else {
        let body = (batch.len() - HEADER_BYTES) as u64;
        HEADER_BYTES as u64
            + body * kept_bytes as u64 / records.len().max(1) as u64
            + RECOMPRESSION_SLACK_BYTES
    };
    if !build {
        return ((Cleaned::Rewritten(Vec::new()), estimate), tally);
    }
    match rebuild_batch(batch, codec, &records, &kept, count) {
        Ok(b) => {
            let len = b.len() as u64;
            ((Cleaned::Rewritten(b), len), tally)
        }
        Err(e) => (
            (Cleaned::Malformed(e.to_string()), batch.len() as u64),
            Tally::default(),
        ),
    }
}

/// A batch holding the records of `original` at `kept` (byte ranges of its decompressed
/// records section), re-compressed with its codec, checked before it is returned.
fn rebuild_batch(
    original: &[u8],
    codec: Compression,
    records: &[u8],
    kept: &[Range<usize>],
    count: i32,
) -> Result<Vec<u8>, BatchError> {
    let mut raw = Vec::with_capacity(kept.iter().map(|r| r.len()).sum());
    for r in kept {
        raw.extend_from_slice(&records[r.clone()]);
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + raw.len());
    out.extend_from_slice(&original[..HEADER_BYTES]);
    if codec == Compression::None {
        out.extend_from_slice(&raw);
    } else {
        codec.compress(&raw, &mut out)?;
    }
    if out.len() > batch::MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge {
            bytes: out.len(),
            max: batch::MAX_BATCH_BYTES,
        });
    }
    batch::reseal(&mut out, count);
    // Kept on in release builds: a batch is checked before it is written.
    batch::validate(&out)?;
    debug_assert!(
        batch::decode_records(&Bytes::from(out.clone())).is_ok_and(|r| r.len() == count as usize),
        "compaction built a batch that does not decode"
    );
    Ok(out)
}

/// An empty batch in place of the removed batch whose header is `header`: same offsets
/// (so its segment still ends where the next begins), timestamps and producer fields,
/// no records, uncompressed (as Kafka writes empty batches).
pub(super) fn empty_batch(header: &[u8]) -> Vec<u8> {
    let mut out = header[..HEADER_BYTES].to_vec();
    batch::set_compression(&mut out, Compression::None);
    batch::reseal(&mut out, 0);
    debug_assert!(batch::validate(&out).is_ok(), "empty batch is valid");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Header, Record, RecordBatchBuilder, decode_records};

    fn batch(records: &[(Option<&str>, Option<&str>)], codec: Compression) -> Bytes {
        let mut b = RecordBatchBuilder::new(codec);
        for (i, (k, v)) in records.iter().enumerate() {
            b.push(&Record {
                key: k.map(|k| Bytes::from(k.to_string())),
                value: v.map(|v| Bytes::from(v.to_string())),
                headers: vec![Header {
                    key: "h".into(),
                    value: Some(Bytes::from(format!("{i}"))),
                }],
                timestamp: 1000 + i as i64 * 7,
            });
        }
        let mut bytes = b.build().unwrap();
        batch::patch_offset_and_epoch(&mut bytes, 100, 3);
        bytes.freeze()
    }

    #[test]
    fn a_rebuilt_batch_keeps_offsets_timestamps_headers_and_fields() {
        let records = [
            (Some("a"), Some("1")),
            (Some("b"), Some("2")),
            (Some("c"), Some("3")),
        ];
        for codec in Compression::ALL {
            let b = batch(&records, codec);
            let header = batch::check_stored(&b).unwrap();
            let section = batch::records_section(&b, &header).unwrap();
            let mut spans = Vec::new();
            batch::walk_records(&section, &header, |r| spans.push(r.span)).unwrap();
            let kept = [spans[0].clone(), spans[2].clone()];
            let rebuilt = Bytes::from(rebuild_batch(&b, codec, &section, &kept, 2).unwrap());
            let h = batch::check_stored(&rebuilt).unwrap();
            assert_eq!(h.compression().unwrap(), codec);
            assert_eq!(
                (h.base_offset, h.last_offset_delta, h.partition_leader_epoch),
                (100, 2, 3)
            );
            assert_eq!(
                (
                    h.base_timestamp,
                    h.max_timestamp,
                    h.producer_id,
                    h.record_count
                ),
                (
                    header.base_timestamp,
                    header.max_timestamp,
                    header.producer_id,
                    2
                )
            );
            let before = decode_records(&b).unwrap();
            let after = decode_records(&rebuilt).unwrap();
            assert_eq!(after, vec![before[0].clone(), before[2].clone()], "{codec}");
        }
    }

    #[test]
    fn an_empty_batch_keeps_the_offsets_of_the_one_it_replaces() {
        let b = batch(
            &[(Some("a"), Some("1")), (Some("b"), None)],
            Compression::Zstd,
        );
        let empty = Bytes::from(empty_batch(&b));
        let h = batch::validate(&empty).unwrap();
        assert_eq!(
            (h.base_offset, h.last_offset(), h.record_count),
            (100, 101, 0)
        );
        assert_eq!(h.compression().unwrap(), Compression::None);
        assert!(decode_records(&empty).unwrap().is_empty());
    }
}
