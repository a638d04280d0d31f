//! The append path's record checks, behind [`validate`](crate::validate) and
//! [`validate_untrusted`](crate::validate_untrusted): every check [`decode_records`]
//! makes, record by record, keeping nothing. An uncompressed section takes a lean yes or
//! no loop first; a compressed one is decompressed through a small window as it is
//! walked, never held whole.
//!
//! [`decode_records`]: super::decode_records

use super::NULL_LENGTH;
use super::fields::{
    Field, RecordFault, declared_count, read_deltas, read_header, read_header_count, read_nullable,
    split_record,
};
use crate::BatchHeader;
use crate::compression::Compression;
use crate::error::BatchError;
use crate::varint::{VarintError, read_varint, read_varlong};

/// Bounds of the first window [`check_compressed_records`] decompresses into, sized as
/// [`ASSUMED_WALK_RATIO`] times the compressed section: small batches zero little, large
/// ones read in pieces big enough that the decoder's per-call overhead does not count.
const MIN_WALK_WINDOW_BYTES: usize = 4 * 1024;
const MAX_WALK_WINDOW_BYTES: usize = 64 * 1024;
/// Guess at the compression ratio, only to size the first walk window.
const ASSUMED_WALK_RATIO: usize = 4;

/// Checks an uncompressed records section against its header, record by record, as
/// [`decode_records`] reads it but keeping nothing: each record's length fits, offset
/// deltas start at 0 or more, strictly increase and stay within `last_offset_delta`, the
/// key, value and headers fit the record (header keys UTF-8) with nothing after them, and
/// the section holds exactly `record_count` records with nothing after them. A section
/// that passes decodes. Allocates nothing.
///
/// [`decode_records`]: super::decode_records
pub(crate) fn check_uncompressed_records(
    records: &[u8],
    header: &BatchHeader,
) -> Result<(), BatchError> {
    let count = declared_count(header)?;
    if records_are_valid(records, count, header.last_offset_delta) {
        return Ok(());
    }
    // Something is wrong: walk again, slowly, to say what and where.
    let mut walk = RecordWalk::new(header)?;
    let mut rest = records;
    while !rest.is_empty() {
        walk.record(&mut rest)?;
    }
    walk.finish()
}

/// Checks the records of a compressed batch exactly as [`check_uncompressed_records`]
/// checks an uncompressed one, decompressing the section as it walks: the output passes
/// through a window that holds the record being checked (it starts at
/// [`MIN_WALK_WINDOW_BYTES`] to [`MAX_WALK_WINDOW_BYTES`] and grows only for a record
/// larger than that), never the whole output. At most `max_decompressed` bytes are
/// decompressed: a section that expands further (a decompression bomb) is refused with
/// [`BatchError::DecompressedTooLarge`] without being held, and a record whose stated
/// length passes the limit is refused before anything is allocated for it.
pub(crate) fn check_compressed_records(
    codec: Compression,
    section: &[u8],
    header: &BatchHeader,
    max_decompressed: usize,
) -> Result<(), BatchError> {
    let mut walk = RecordWalk::new(header)?;
    let mut decoder = codec.decoder(section, max_decompressed)?;
    let first_len = section
        .len()
        .saturating_mul(ASSUMED_WALK_RATIO)
        .clamp(MIN_WALK_WINDOW_BYTES, MAX_WALK_WINDOW_BYTES)
        .min(max_decompressed.max(1));
    let mut window = vec![0u8; first_len];
    // Unchecked bytes are `window[start..filled]`.
    let (mut start, mut filled) = (0, 0);
    loop {
        // Check every record that lies wholly in the window; `needed` is how many bytes
        // of the window the next one takes, as far as is known yet.
        let needed = loop {
            let mut rest = &window[start..filled];
            let available = rest.len();
            if available == 0 {
                break 1;
            }
            if walk.is_complete() {
                // Records past the declared count: say how many bytes follow them.
                let mut trailing = available;
                loop {
                    match decoder.read(&mut window)? {
                        0 => break,
                        n => trailing += n,
                    }
                }
                return Err(BatchError::TrailingBytes {
                    declared: header.record_count,
                    bytes: trailing,
                });
            }
            let mut peek = rest;
            let len = match read_varint(&mut peek) {
                Ok(len) => len,
                // The length continues past the window: read on.
                Err(VarintError::Truncated) => break available + 1,
                // Malformed: the walk says how.
                Err(VarintError::Overlong) => return walk.record(&mut rest),
            };
            let Ok(len) = usize::try_from(len) else {
                return walk.record(&mut rest);
            };
            let total = (available - peek.len()).saturating_add(len);
            if total > available {
                break total;
            }
            walk.record(&mut rest)?;
            start = filled - rest.len();
        };
        if needed > max_decompressed {
            // Nothing this long can come out of the section.
            return Err(BatchError::DecompressedTooLarge {
                max: max_decompressed,
            });
        }
        // Keep the unchecked bytes, at the front, and make room for the rest of the record.
        window.copy_within(start..filled, 0);
        (filled, start) = (filled - start, 0);
        if needed > window.len() {
            let grown = window.len().saturating_mul(2).max(needed);
            window.resize(grown.min(max_decompressed), 0);
        }
        let n = decoder.read(&mut window[filled..])?;
        if n == 0 {
            // The end of the section: whatever is left is a truncated record.
            let mut rest = &window[..filled];
            while !rest.is_empty() {
                walk.record(&mut rest)?;
            }
            return walk.finish();
        }
        filled += n;
    }
}

/// Where [`check_uncompressed_records`] (when it explains a fault) and
/// [`check_compressed_records`] are in a records section: the one record walk both use,
/// fed one record at a time.
struct RecordWalk {
    declared: i32,
    count: usize,
    last_offset_delta: i32,
    previous_delta: i32,
    found: usize,
}

impl RecordWalk {
    fn new(header: &BatchHeader) -> Result<RecordWalk, BatchError> {
        Ok(RecordWalk {
            declared: header.record_count,
            count: declared_count(header)?,
            last_offset_delta: header.last_offset_delta,
            previous_delta: -1,
            found: 0,
        })
    }

    /// Checks the record at the front of `rest` (which must not be empty) and advances
    /// `rest` past it.
    fn record(&mut self, rest: &mut &[u8]) -> Result<(), BatchError> {
        if self.found == self.count {
            return Err(BatchError::TrailingBytes {
                declared: self.declared,
                bytes: rest.len(),
            });
        }
        let mut body = split_record(rest).map_err(|fault| fault.at(self.found))?;
        let (_, offset_delta) = read_deltas(&mut body, self.previous_delta, self.last_offset_delta)
            .map_err(|fault| fault.at(self.found))?;
        check_record_rest(&mut body).map_err(|fault| fault.at(self.found))?;
        self.previous_delta = offset_delta;
        self.found += 1;
        Ok(())
    }

    /// Every declared record was found.
    fn is_complete(&self) -> bool {
        self.found == self.count
    }

    /// Checks that the section held as many records as the header declares.
    fn finish(&self) -> Result<(), BatchError> {
        if self.found != self.count {
            return Err(BatchError::RecordCountMismatch {
                declared: self.declared,
                found: self.found,
            });
        }
        Ok(())
    }
}

/// The append path's per-record check, kept lean: it only answers whether the records
/// are valid (see [`check_uncompressed_records`]), so the loop carries no error values;
/// [`check_uncompressed_records`] explains a `false`.
#[inline]
fn records_are_valid(records: &[u8], count: usize, last_offset_delta: i32) -> bool {
    let mut rest = records;
    let mut previous = -1i32;
    let mut found = 0usize;
    while !rest.is_empty() {
        let Ok(len) = read_varint(&mut rest) else {
            return false;
        };
        let Ok(len) = usize::try_from(len) else {
            return false;
        };
        let Some((body, after)) = rest.split_at_checked(len) else {
            return false;
        };
        rest = after;
        // attributes (1 byte), timestamp delta, offset delta
        let Some((_, mut body)) = body.split_first() else {
            return false;
        };
        if read_varlong(&mut body).is_err() {
            return false;
        }
        match read_varint(&mut body) {
            Ok(delta) if delta > previous && delta <= last_offset_delta => previous = delta,
            _ => return false,
        }
        if !record_rest_is_valid(body) {
            return false;
        }
        found += 1;
    }
    found == count
}

/// Checks the rest of a record's body after its offset delta exactly as
/// `decode::decode_record` reads it, keeping nothing: the key and value fit, the headers fit
/// (their keys UTF-8), and nothing follows them. What lets a batch that passes the
/// record walk be decoded by every reader.
#[inline]
fn check_record_rest(body: &mut &[u8]) -> Result<(), RecordFault> {
    read_nullable(body, Field::Key)?;
    read_nullable(body, Field::Value)?;
    for _ in 0..read_header_count(body)? {
        read_header(body)?;
    }
    if !body.is_empty() {
        return Err(RecordFault::UnreadBytes(body.len()));
    }
    Ok(())
}

/// [`check_record_rest`] as a yes or no, for the append path's lean loop: the key and
/// value are skipped by their lengths, and a record without headers (nearly all) ends the
/// check at one byte; headers take the full check.
#[inline(always)]
fn record_rest_is_valid(mut body: &[u8]) -> bool {
    if !skip_nullable(&mut body) {
        return false;
    }
    // Nearly every record: a value, then a 0 header count as the record's last byte.
    let at_value = body;
    if let Ok(len) = read_varint(&mut body)
        && let Ok(len) = usize::try_from(len)
        && body.len() == len + 1
        && body[len] == 0
    {
        return true;
    }
    let mut body = at_value;
    skip_nullable(&mut body) && headers_are_valid(body)
}

/// Skips a length-prefixed byte string that may be null; false if it does not fit.
#[inline(always)]
fn skip_nullable(body: &mut &[u8]) -> bool {
    match read_varint(body) {
        Ok(NULL_LENGTH) => true,
        Ok(len) => match usize::try_from(len).ok().and_then(|len| body.get(len..)) {
            Some(rest) => {
                *body = rest;
                true
            }
            None => false,
        },
        Err(_) => false,
    }
}

/// The headers part of [`check_record_rest`]: the count, the headers, nothing after.
#[inline(never)]
fn headers_are_valid(mut body: &[u8]) -> bool {
    let Ok(count) = read_header_count(&mut body) else {
        return false;
    };
    (0..count).all(|_| read_header(&mut body).is_ok()) && body.is_empty()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::records::test_support::{
        any_codec, any_record, build, raw_batch, raw_record, with_length,
    };
    use crate::records::{MAX_DECOMPRESSED_BYTES, RECORD_ATTRIBUTES, Record, decode_records};
    use crate::varint::put_varint;
    use crate::{
        BATCH_LENGTH, CRC, HEADER_BYTES, LOG_OVERHEAD, MAX_RECORDS_PER_BATCH, compute_crc,
        patch_offset_and_epoch, reseal, validate, validate_untrusted,
    };

    #[test]
    fn bytes_after_the_declared_records_are_rejected() {
        let mut section = raw_record(0, 0, None, Some(b"a"), &[]);
        section.extend(raw_record(0, 1, None, Some(b"b"), &[]));
        let batch = raw_batch(Compression::None, &section, 1, 1);
        let bytes = section.len() / 2;
        assert!(matches!(
            validate(&batch),
            Err(BatchError::TrailingBytes { declared: 1, bytes: b }) if b == bytes
        ));
        assert!(matches!(
            decode_records(&batch),
            Err(BatchError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn fewer_records_than_declared_are_rejected() {
        let section = raw_record(0, 0, None, Some(b"a"), &[]);
        let batch = raw_batch(Compression::None, &section, 2, 1);
        assert!(matches!(
            validate(&batch),
            Err(BatchError::RecordCountMismatch {
                declared: 2,
                found: 1
            })
        ));
        assert!(matches!(
            decode_records(&batch),
            Err(BatchError::RecordCountMismatch { .. })
        ));
    }

    #[test]
    fn compressed_records_are_checked_by_validate_untrusted_and_when_decoded() {
        // validate checks a compressed batch only up to its CRC; validate_untrusted (the
        // produce check) and decode_records check the inner records.
        let mut section = raw_record(0, 0, None, Some(b"a"), &[]);
        section.push(0);
        let batch = raw_batch(Compression::Gzip, &section, 1, 0);
        validate(&batch).expect("valid up to the CRC");
        assert!(matches!(
            validate_untrusted(&batch, 1024),
            Err(BatchError::TrailingBytes { bytes: 1, .. })
        ));
        assert!(matches!(
            decode_records(&batch),
            Err(BatchError::TrailingBytes { bytes: 1, .. })
        ));
    }

    /// Records sections the record walk refuses, with the record count and last offset
    /// delta their header declares.
    fn malformed_sections() -> Vec<(&'static str, Vec<u8>, i32, i32)> {
        let a = raw_record(0, 0, None, Some(b"a"), &[]);
        let b = raw_record(0, 1, None, Some(b"b"), &[]);
        vec![
            ("trailing bytes", [a.clone(), b.clone()].concat(), 1, 0),
            ("too few records", a.clone(), 2, 1),
            (
                "a repeated offset delta",
                [a.clone(), a.clone()].concat(),
                2,
                1,
            ),
            (
                "a delta past the last",
                [a.clone(), raw_record(0, 5, None, None, &[])].concat(),
                2,
                1,
            ),
            (
                "a truncated varint",
                with_length(&[RECORD_ATTRIBUTES, 0, 0x80]),
                1,
                0,
            ),
            ("a truncated length", [a.clone(), vec![0x80]].concat(), 2, 1),
            (
                "a length past the end",
                [a.clone(), vec![40, 0]].concat(),
                2,
                1,
            ),
            ("a negative length", [a.clone(), vec![1]].concat(), 2, 1),
            ("an empty record", vec![0], 1, 0),
            ("nothing", Vec::new(), 1, 0),
            (
                "a key past the record",
                [a.clone(), with_length(&[RECORD_ATTRIBUTES, 0, 2, 40, 0])].concat(),
                2,
                1,
            ),
            (
                "a header key that is not UTF-8",
                [a.clone(), raw_record(0, 1, None, None, &[(b"\xc3", None)])].concat(),
                2,
                1,
            ),
            (
                "a byte after the headers",
                [
                    a.clone(),
                    with_length(&[&raw_record(0, 1, Some(b"k"), None, &[])[1..], &[0]].concat()),
                ]
                .concat(),
                2,
                1,
            ),
        ]
    }

    #[test]
    fn untrusted_compressed_batches_are_refused_as_uncompressed_ones_are() {
        for (what, section, count, last) in malformed_sections() {
            let plain = raw_batch(Compression::None, &section, count, last);
            let expected = validate(&plain).expect_err(what).to_string();
            assert_eq!(
                validate_untrusted(&plain, 1024)
                    .expect_err(what)
                    .to_string(),
                expected,
                "{what}"
            );
            for codec in Compression::ALL.into_iter().skip(1) {
                let batch = raw_batch(codec, &section, count, last);
                validate(&batch).expect("intact up to its CRC");
                let error = validate_untrusted(&batch, 1024).expect_err(what);
                assert_eq!(error.to_string(), expected, "{what}, {codec}");
                assert!(decode_records(&batch).is_err(), "{what}, {codec}");
            }
        }
    }

    #[test]
    fn damaged_compressed_bytes_under_a_recomputed_crc_are_refused() {
        let records: Vec<Record> = (0..200)
            .map(|i| Record {
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(
                    format!("value {i} of a damaged batch").repeat(3),
                )),
                headers: Vec::new(),
                timestamp: 1_000 + i,
            })
            .collect();
        for codec in Compression::ALL.into_iter().skip(1) {
            let mut batch = build(codec, &records).to_vec();
            let middle = HEADER_BYTES + (batch.len() - HEADER_BYTES) / 2;
            for byte in &mut batch[middle..middle + 16] {
                *byte = !*byte;
            }
            reseal(&mut batch, 200);
            let batch = Bytes::from(batch);
            validate(&batch).expect("the CRC covers the damage");
            let error = validate_untrusted(&batch, MAX_DECOMPRESSED_BYTES)
                .expect_err("damaged batch refused");
            assert!(decode_records(&batch).is_err(), "{codec}: decodes");
            // The message names the problem.
            assert!(!error.to_string().is_empty(), "{codec}");
        }
    }

    #[test]
    fn records_that_straddle_the_walk_window_are_checked_whole() {
        // Values around and far above the first window's size, so records start and end
        // on both sides of every refill and the window grows.
        let sizes = [10, 70_000, 3, 200_000, 65_530, 0, 1, 4_093, 300_001, 17];
        let records: Vec<Record> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Record {
                key: None,
                value: Some(Bytes::from(vec![b'a' + i as u8; n])),
                headers: Vec::new(),
                timestamp: i as i64,
            })
            .collect();
        let uncompressed: usize = build(Compression::None, &records).len();
        for codec in Compression::ALL {
            let batch = build(codec, &records);
            validate_untrusted(&batch, uncompressed).expect("valid");
            // The limit counts decompressed bytes.
            if codec != Compression::None {
                assert!(
                    matches!(
                        validate_untrusted(&batch, uncompressed / 2),
                        Err(BatchError::DecompressedTooLarge { .. })
                    ),
                    "{codec}"
                );
            }
            // A bad last record is found after every refill.
            let mut section = Vec::new();
            let section_at = build(Compression::None, &records);
            section.extend_from_slice(&section_at[HEADER_BYTES..]);
            section.push(0);
            let bad = raw_batch(codec, &section, sizes.len() as i32, sizes.len() as i32 - 1);
            assert!(
                matches!(
                    validate_untrusted(&bad, uncompressed * 2),
                    Err(BatchError::TrailingBytes { bytes: 1, .. })
                ),
                "{codec}"
            );
        }
    }

    #[test]
    fn a_record_longer_than_the_limit_is_refused_before_it_is_read() {
        // A record that states 100 MiB in a section of a few bytes: refused from its
        // length alone, whatever follows.
        let mut section = Vec::new();
        put_varint(&mut section, 100 << 20);
        section.extend_from_slice(&[RECORD_ATTRIBUTES, 0, 0]);
        for codec in Compression::ALL.into_iter().skip(1) {
            let batch = raw_batch(codec, &section, 1, 0);
            assert!(
                matches!(
                    validate_untrusted(&batch, 1 << 20),
                    Err(BatchError::DecompressedTooLarge { max }) if max == 1 << 20
                ),
                "{codec}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn mutated_or_truncated_batches_never_panic(
            records in vec(any_record(), 1..6),
            codec in any_codec(),
            flips in vec((any::<Index>(), any::<u8>()), 0..6),
            cut in proptest::option::of(any::<Index>()),
            repair_framing in any::<bool>(),
        ) {
            let mut bytes = build(codec, &records).to_vec();
            for (at, xor) in &flips {
                let at = at.index(bytes.len());
                bytes[at] ^= xor;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            // Without repair nearly every mutation stops at the length or CRC check; with
            // it, the damage reaches the record decoder and the decompressors.
            if repair_framing && bytes.len() >= HEADER_BYTES {
                let batch_length = (bytes.len() - LOG_OVERHEAD) as i32;
                bytes[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
                let crc = compute_crc(&bytes);
                bytes[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
            }
            // The base offset lies outside the CRC and the log assigns it: keep it in
            // range, so that decoding cannot fail on an offset overflow alone.
            if bytes.len() >= HEADER_BYTES {
                patch_offset_and_epoch(&mut bytes, 0, -1);
            }
            let bytes = Bytes::from(bytes);
            let valid = validate(&bytes).is_ok();
            let untrusted = validate_untrusted(&bytes, MAX_DECOMPRESSED_BYTES);
            if untrusted.is_ok() {
                prop_assert!(valid);
                // What the produce check accepts, every reader can decode.
                let decoded = decode_records(&bytes);
                prop_assert!(decoded.is_ok(), "accepted but undecodable: {:?}", decoded);
            }
            if let Ok(decoded) = decode_records(&bytes) {
                prop_assert!(valid);
                prop_assert!(untrusted.is_ok(), "decodes but refused: {:?}", untrusted);
                prop_assert!(decoded.len() <= MAX_RECORDS_PER_BATCH as usize);
            }
        }
    }
}
