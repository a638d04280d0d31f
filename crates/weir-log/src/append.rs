//! Checking an append request before it reaches the log: [`check_request`] and
//! [`ValidatedBatches`] for a leader's appends; [`check_replicated`] and
//! [`plan_replicated`] for a follower's, which keep the leader's offsets.

use std::ops::Range;

use bytes::Bytes;

use crate::batch::{
    BatchError, BatchHeader, MAX_BATCH_BYTES, decompressed_limit, framed_len, validate,
    validate_untrusted,
};
use crate::error::{AppendError, OffsetProblem};

/// Checks an append request from a producer: one or more concatenated batches, each at
/// most `max_batch_bytes` (`max.message.bytes`) and valid as [`validate_untrusted`] sees
/// it, so a compressed batch is decompressed (to at most
/// [`decompressed_limit`]`(max_batch_bytes)`) and its records walked: a batch that passes
/// can be decoded by every reader. Returns their headers; the error names the first bad
/// batch by index and byte position, and nothing of the request may be appended.
pub fn check_request(
    bytes: &[u8],
    max_batch_bytes: usize,
) -> Result<Vec<BatchHeader>, AppendError> {
    check_batches(bytes, max_batch_bytes, Source::Producer)
}

/// Checks batches a follower copies from its leader: the integrity checks of
/// [`validate`] (framing, magic, CRC-32C, counts, the record framing of uncompressed
/// batches), but compressed batches are not decompressed again (the leader did that when
/// it accepted them; the CRC shows they are the same bytes), a batch without records is
/// accepted, as compaction leaves one where it emptied the last batch of a segment, and
/// the size limit is the hard [`MAX_BATCH_BYTES`] rather than this log's
/// `max.message.bytes`: the leader accepted the batch already (and compaction may have
/// re-compressed it), so refusing it here would stall replication for good.
pub(crate) fn check_replicated(bytes: &[u8]) -> Result<Vec<BatchHeader>, AppendError> {
    check_batches(bytes, MAX_BATCH_BYTES, Source::Leader)
}

/// Where the batches [`check_batches`] checks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Untrusted: every batch must decode, and hold records.
    Producer,
    /// This partition's leader, which checked them as [`Source::Producer`] batches.
    Leader,
}

fn check_batches(
    bytes: &[u8],
    max_batch_bytes: usize,
    source: Source,
) -> Result<Vec<BatchHeader>, AppendError> {
    if bytes.is_empty() {
        return Err(AppendError::Empty);
    }
    let max_decompressed = decompressed_limit(max_batch_bytes);
    let mut headers = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let invalid = |source| AppendError::InvalidBatch {
            index: headers.len(),
            position: pos,
            source,
        };
        let len = framed_len(rest).map_err(invalid)?;
        if len > max_batch_bytes {
            return Err(AppendError::MessageTooLarge {
                bytes: len,
                max: max_batch_bytes,
            });
        }
        if rest.len() < len {
            return Err(invalid(BatchError::Truncated {
                needed: len,
                available: rest.len(),
            }));
        }
        let header = match source {
            Source::Producer => validate_untrusted(&rest[..len], max_decompressed),
            Source::Leader => validate(&rest[..len]),
        }
        .map_err(invalid)?;
        // Only compaction leaves batches without records; a producer never sends one.
        if header.record_count == 0 && source == Source::Producer {
            return Err(invalid(BatchError::Empty));
        }
        // Markers are the leader's to write (`Log::append_marker`), as in Kafka.
        if header.is_control() && source == Source::Producer {
            return Err(invalid(BatchError::ControlBatchFromProducer));
        }
        headers.push(header);
        pos += len;
    }
    Ok(headers)
}

/// Part of a replicated append that goes into one segment: batches `batches` of the
/// request, bytes `bytes` of it, after a roll if `roll_first`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplicatedRun {
    pub(crate) batches: Range<usize>,
    pub(crate) bytes: Range<usize>,
    pub(crate) roll_first: bool,
}

/// Checks the offsets of replicated batches and splits them by segment. Each batch must
/// start at or after `log_end` and after the batch before it (gaps are allowed: they are
/// what compaction removed on the leader), and its offsets must fit the 32-bit relative
/// offsets of the segment it lands in. The active segment starts at `active_base`; a
/// batch that would not fit it starts a run that rolls first, to a segment starting where
/// the batch before it ends (the log end at that point, so every segment still ends
/// exactly where the next begins). An empty active segment (`active_empty`) takes the
/// first batch without a roll, so that batch must fit it. Nothing is decided from the
/// size or age of the segment here: the log's usual roll check runs before the first run.
pub(crate) fn plan_replicated(
    headers: &[BatchHeader],
    log_end: i64,
    active_base: i64,
    active_empty: bool,
) -> Result<Vec<ReplicatedRun>, AppendError> {
    let max_span = i64::from(u32::MAX);
    let mut runs = Vec::new();
    let (mut run_start, mut byte_start, mut pos) = (0, 0, 0);
    let (mut seg_base, mut seg_empty, mut end) = (active_base, active_empty, log_end);
    let mut roll_first = false;
    for (index, h) in headers.iter().enumerate() {
        let refuse = |problem| AppendError::OffsetMismatch {
            index,
            base_offset: h.base_offset,
            last_offset: h.base_offset.saturating_add(i64::from(h.last_offset_delta)),
            problem,
        };
        if h.base_offset < end {
            return Err(refuse(if index == 0 {
                OffsetProblem::BelowLogEnd {
                    log_end_offset: log_end,
                }
            } else {
                OffsetProblem::OutOfOrder { previous_end: end }
            }));
        }
        let next = h
            .base_offset
            .checked_add(i64::from(h.last_offset_delta) + 1)
            .ok_or_else(|| refuse(OffsetProblem::Overflow))?;
        if next - seg_base > max_span {
            if seg_empty || next - end > max_span {
                let segment_base = if seg_empty { seg_base } else { end };
                return Err(refuse(OffsetProblem::TooFar { segment_base }));
            }
            if index > run_start {
                runs.push(ReplicatedRun {
                    batches: run_start..index,
                    bytes: byte_start..pos,
                    roll_first,
                });
            }
            (run_start, byte_start, roll_first) = (index, pos, true);
            seg_base = end;
        }
        seg_empty = false;
        end = next;
        pos += h.total_bytes();
    }
    runs.push(ReplicatedRun {
        batches: run_start..headers.len(),
        bytes: byte_start..pos,
        roll_first,
    });
    Ok(runs)
}

/// Batches that passed [`check_request`], with their headers: what
/// [`Log::append_validated`](crate::Log::append_validated) takes. Build it where untrusted
/// bytes arrive (a request handler), so the CRC and framing checks run there, in parallel
/// with other requests, rather than under the partition's lock.
///
/// The bytes are kept as they arrived (a request's buffer, shared, never copied): the
/// append writes each batch's assigned offset and leader epoch from a patched copy of
/// its first bytes ([`batch::stamped_prefix`](crate::batch::stamped_prefix)) beside the
/// untouched rest. After an append the headers carry the assigned offsets.
#[derive(Debug)]
pub struct ValidatedBatches {
    pub(crate) bytes: Bytes,
    pub(crate) headers: Vec<BatchHeader>,
    /// The verification guard of a transactional producer's batch (see `producers`).
    pub(crate) verification: Option<u64>,
}

impl ValidatedBatches {
    /// Validates `bytes` (see [`check_request`]).
    pub fn new(
        bytes: impl Into<Bytes>,
        max_batch_bytes: usize,
    ) -> Result<ValidatedBatches, AppendError> {
        let bytes = bytes.into();
        let headers = check_request(&bytes, max_batch_bytes)?;
        Ok(ValidatedBatches {
            bytes,
            headers,
            verification: None,
        })
    }

    /// The batches of a transactional producer that the leader verified with its
    /// coordinator under `guard` ([`Log::begin_verification`](crate::Log)): the one that
    /// opens the transaction here is appended only while the guard stands.
    pub fn verified(mut self, guard: u64) -> ValidatedBatches {
        self.verification = Some(guard);
        self
    }

    /// The batch bytes as they arrived (offsets as the producer sent them).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// One header per batch; after an append, with the assigned base offsets and leader
    /// epoch.
    pub fn headers(&self) -> &[BatchHeader] {
        &self.headers
    }

    /// Each batch's bytes, in order (slices of [`bytes`](Self::bytes), no copy).
    pub fn batches(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.headers.iter().scan(0, |at, header| {
            let batch = self.bytes.slice(*at..*at + header.total_bytes());
            *at += header.total_bytes();
            Some(batch)
        })
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::batch::{self, Compression, Record, RecordBatchBuilder};

    /// A batch of `records` records at `base_offset`, and its header.
    fn batch_at(base_offset: i64, records: usize) -> (bytes::BytesMut, BatchHeader) {
        let mut b = RecordBatchBuilder::new(Compression::None);
        for _ in 0..records {
            b.push(&Record {
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: Vec::new(),
                timestamp: 1,
            });
        }
        let mut bytes = b.build().unwrap();
        batch::patch_offset_and_epoch(&mut bytes, base_offset, 0);
        let header = BatchHeader::parse(&bytes);
        (bytes, header)
    }

    fn headers(at: &[(i64, usize)]) -> Vec<BatchHeader> {
        at.iter().map(|&(o, n)| batch_at(o, n).1).collect()
    }

    const FOUR_G: i64 = 1 << 32;

    #[test]
    fn validated_batches_hand_back_each_batch_as_sent() {
        let sent: Vec<bytes::BytesMut> = [(0, 2), (0, 3), (0, 1)]
            .iter()
            .map(|&(o, n)| batch_at(o, n).0)
            .collect();
        let request: Vec<u8> = sent.iter().flat_map(|b| b.iter().copied()).collect();
        let batches = ValidatedBatches::new(request, MAX_BATCH_BYTES).unwrap();
        let back: Vec<Bytes> = batches.batches().collect();
        assert_eq!(back.len(), 3);
        for (got, want) in back.iter().zip(&sent) {
            assert_eq!(&got[..], &want[..]);
        }
    }

    #[test]
    fn gaps_that_fit_the_active_segment_make_one_run() {
        let h = headers(&[(10, 2), (15, 1), (40, 3)]);
        let runs = plan_replicated(&h, 10, 0, false).unwrap();
        let bytes = h.iter().map(|h| h.total_bytes()).sum();
        assert_eq!(
            runs,
            [ReplicatedRun {
                batches: 0..3,
                bytes: 0..bytes,
                roll_first: false
            }]
        );
        // A gap from the log end is fine as well.
        assert_eq!(plan_replicated(&h[1..], 10, 0, false).unwrap().len(), 1);
    }

    #[test]
    fn a_batch_past_the_active_segments_relative_offsets_rolls_first() {
        // Fits the segment at 0; the next does not, but fits one at the end of the first.
        let h = headers(&[(20, 1), (3_000_000_000, 1), (6_000_000_000, 2)]);
        let runs = plan_replicated(&h, 10, 0, false).unwrap();
        let split = h[0].total_bytes() + h[1].total_bytes();
        assert_eq!(
            runs,
            [
                ReplicatedRun {
                    batches: 0..2,
                    bytes: 0..split,
                    roll_first: false
                },
                ReplicatedRun {
                    batches: 2..3,
                    bytes: split..split + h[2].total_bytes(),
                    roll_first: true
                }
            ]
        );
        // The very first batch may need the roll.
        let h = headers(&[(FOUR_G, 1)]);
        let runs = plan_replicated(&h, 10, 0, false).unwrap();
        assert_eq!(runs.len(), 1);
        assert!(runs[0].roll_first);
    }

    #[test]
    fn offsets_that_no_segment_can_index_are_refused() {
        let too_far = |r: Result<_, AppendError>| match r {
            Err(AppendError::OffsetMismatch {
                problem: OffsetProblem::TooFar { segment_base },
                ..
            }) => segment_base,
            other => panic!("expected TooFar, got {other:?}"),
        };
        // Past 2^32 of the log end: a roll would not help.
        let h = headers(&[(10 + FOUR_G, 1)]);
        assert_eq!(too_far(plan_replicated(&h, 10, 0, false)), 10);
        // An empty active segment takes the first batch without a roll.
        let h = headers(&[(FOUR_G, 1)]);
        assert_eq!(too_far(plan_replicated(&h, 0, 0, true)), 0);
        // Between batches of one request too.
        let h = headers(&[(10, 1), (12 + FOUR_G, 1)]);
        assert_eq!(too_far(plan_replicated(&h, 10, 0, false)), 11);
    }

    #[test]
    fn offsets_below_the_end_or_out_of_order_are_refused() {
        let h = headers(&[(8, 3)]);
        assert!(matches!(
            plan_replicated(&h, 10, 0, false),
            Err(AppendError::OffsetMismatch {
                index: 0,
                base_offset: 8,
                last_offset: 10,
                problem: OffsetProblem::BelowLogEnd { log_end_offset: 10 }
            })
        ));
        let h = headers(&[(10, 3), (20, 1), (20, 1)]);
        assert!(matches!(
            plan_replicated(&h, 10, 0, false),
            Err(AppendError::OffsetMismatch {
                index: 2,
                base_offset: 20,
                problem: OffsetProblem::OutOfOrder { previous_end: 21 },
                ..
            })
        ));
        let h = headers(&[(i64::MAX - 1, 3)]);
        assert!(matches!(
            plan_replicated(&h, 10, 0, false),
            Err(AppendError::OffsetMismatch {
                problem: OffsetProblem::Overflow,
                ..
            })
        ));
    }

    #[test]
    fn replicated_batches_may_be_empty_but_appended_ones_may_not() {
        // What compaction leaves where it emptied a segment's last batch.
        let (mut b, _) = batch_at(5, 1);
        let count_at = 57;
        b[count_at..count_at + 4].copy_from_slice(&0i32.to_be_bytes());
        b.truncate(batch::HEADER_BYTES);
        let len = (b.len() - batch::LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = batch::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let headers = check_replicated(&b).unwrap();
        assert_eq!(headers[0].record_count, 0);
        assert!(matches!(
            check_request(&b, MAX_BATCH_BYTES),
            Err(AppendError::InvalidBatch {
                source: BatchError::Empty,
                ..
            })
        ));
    }
}
