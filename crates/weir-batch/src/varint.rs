//! Kafka's variable-length integers: protobuf-style base-128 with zigzag sign folding, as
//! used inside RecordBatch v2 records (`ByteUtils.writeVarint`/`writeVarlong` in Kafka).
//!
//! Zigzag maps small magnitudes of either sign to small unsigned values (0, -1, 1, -2, ...
//! become 0, 1, 2, 3, ...), so the `-1` Kafka uses for "null" costs one byte.
//!
//! Decoding reads untrusted bytes: it never panics and never reads past the slice. It
//! rejects encodings longer than the type allows (more than [`MAX_VARINT_BYTES`] or
//! [`MAX_VARLONG_BYTES`] bytes, or a last byte carrying bits past the type's width).
//! Non-minimal encodings that fit (`0x80 0x00` for zero) are accepted, as Kafka's Java
//! decoder accepts them.

use std::fmt;

/// Longest encoding of a 32-bit varint: ceil(32 / 7).
pub(crate) const MAX_VARINT_BYTES: usize = 5;
/// Longest encoding of a 64-bit varlong: ceil(64 / 7).
pub(crate) const MAX_VARLONG_BYTES: usize = 10;

/// Set on every byte of an encoding except the last.
const CONTINUATION: u8 = 0x80;
/// The seven value bits each byte carries.
const PAYLOAD: u8 = 0x7f;

/// Why a varint could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The bytes ended inside the encoding.
    Truncated,
    /// The encoding is longer than its type allows or overflows it.
    Overlong,
}

impl VarintError {
    /// A short description, for error messages that name the field being read.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            VarintError::Truncated => "truncated varint",
            VarintError::Overlong => "overlong varint",
        }
    }
}

impl fmt::Display for VarintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for VarintError {}

#[inline]
fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag32(u: u32) -> i32 {
    ((u >> 1) as i32) ^ -((u & 1) as i32)
}

#[inline]
fn unzigzag64(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Bytes needed for the base-128 encoding of `u` (1 for 0).
#[inline]
fn unsigned_len(u: u64) -> usize {
    // Index of the highest set bit (0 for u <= 1), then one byte per started 7 bits.
    1 + (63 - (u | 1).leading_zeros() as usize) / 7
}

#[inline]
fn put_unsigned(out: &mut Vec<u8>, mut u: u64) {
    // Assemble on the stack so the Vec sees one capacity check, not one per byte.
    let mut scratch = [0u8; MAX_VARLONG_BYTES];
    let mut n = 0;
    while u >= u64::from(CONTINUATION) {
        scratch[n] = (u as u8) | CONTINUATION;
        u >>= 7;
        n += 1;
    }
    scratch[n] = u as u8;
    out.extend_from_slice(&scratch[..=n]);
}

/// Writes the base-128 encoding of `u` at the start of `out` (which must have room for
/// it: up to [`MAX_VARLONG_BYTES`]) and returns its length. For encoders that assemble a
/// record's fixed fields on the stack and append them to the batch in one copy.
#[inline]
fn write_unsigned(out: &mut [u8], mut u: u64) -> usize {
    if u < u64::from(CONTINUATION) {
        out[0] = u as u8;
        return 1;
    }
    let mut n = 0;
    while u >= u64::from(CONTINUATION) {
        out[n] = (u as u8) | CONTINUATION;
        u >>= 7;
        n += 1;
    }
    out[n] = u as u8;
    n + 1
}

/// Writes the zigzag varint encoding of `v` (1 to 5 bytes) at the start of `out`;
/// returns its length.
#[inline]
pub(crate) fn write_varint(out: &mut [u8], v: i32) -> usize {
    write_unsigned(out, u64::from(zigzag32(v)))
}

/// Writes the zigzag varlong encoding of `v` (1 to 10 bytes) at the start of `out`;
/// returns its length.
#[inline]
pub(crate) fn write_varlong(out: &mut [u8], v: i64) -> usize {
    write_unsigned(out, zigzag64(v))
}

/// Reads one unsigned base-128 value of at most `max_bytes` bytes whose value must fit in
/// `bits` bits, advancing `buf` past it only on success.
#[inline(always)]
fn read_unsigned(buf: &mut &[u8], max_bytes: usize, bits: u32) -> Result<u64, VarintError> {
    // Nearly every length, delta and count in a batch fits one or two bytes; decode those
    // without the general loop (this is the append path's per-record cost). Fourteen bits
    // fit every width, so no overlong check is needed here.
    match **buf {
        [b0, ref rest @ ..] if b0 & CONTINUATION == 0 => {
            *buf = rest;
            Ok(u64::from(b0))
        }
        [b0, b1, ref rest @ ..] if b1 & CONTINUATION == 0 => {
            *buf = rest;
            Ok(u64::from(b0 & PAYLOAD) | u64::from(b1) << 7)
        }
        _ => read_unsigned_slow(buf, max_bytes, bits),
    }
}

#[cold]
fn read_unsigned_slow(buf: &mut &[u8], max_bytes: usize, bits: u32) -> Result<u64, VarintError> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().take(max_bytes).enumerate() {
        let shift = 7 * i as u32;
        let payload = u64::from(byte & PAYLOAD);
        // Only the last permitted byte can carry bits past the width; reject them rather
        // than silently dropping them.
        if shift + 7 > bits && payload >> (bits - shift) != 0 {
            return Err(VarintError::Overlong);
        }
        value |= payload << shift;
        if byte & CONTINUATION == 0 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    if buf.len() >= max_bytes {
        Err(VarintError::Overlong)
    } else {
        Err(VarintError::Truncated)
    }
}

/// Appends the zigzag varint encoding of `v` (1 to 5 bytes).
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_unsigned(out, u64::from(zigzag32(v)));
}

/// Appends the zigzag varlong encoding of `v` (1 to 10 bytes).
#[cfg(test)]
#[inline]
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_unsigned(out, zigzag64(v));
}

/// Encoded size of `v` as a varint.
#[inline]
pub(crate) fn varint_len(v: i32) -> usize {
    unsigned_len(u64::from(zigzag32(v)))
}

/// Encoded size of `v` as a varlong.
#[inline]
pub(crate) fn varlong_len(v: i64) -> usize {
    unsigned_len(zigzag64(v))
}

/// Decodes a zigzag varint from the front of `buf` and advances `buf` past it. On error
/// `buf` is left unchanged.
#[inline]
pub(crate) fn read_varint(buf: &mut &[u8]) -> Result<i32, VarintError> {
    let u = read_unsigned(buf, MAX_VARINT_BYTES, 32)?;
    // read_unsigned guarantees the value fits in 32 bits.
    Ok(unzigzag32(u as u32))
}

/// Decodes a zigzag varlong from the front of `buf` and advances `buf` past it. On error
/// `buf` is left unchanged.
#[inline]
pub(crate) fn read_varlong(buf: &mut &[u8]) -> Result<i64, VarintError> {
    read_unsigned(buf, MAX_VARLONG_BYTES, 64).map(unzigzag64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn varint_bytes(v: i32) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    fn varlong_bytes(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varlong(&mut out, v);
        out
    }

    proptest! {
        #[test]
        fn writing_in_place_agrees_with_appending(v: i32, w: i64) {
            let mut scratch = [0u8; MAX_VARLONG_BYTES];
            let n = write_varint(&mut scratch, v);
            prop_assert_eq!(&scratch[..n], &varint_bytes(v)[..]);
            let n = write_varlong(&mut scratch, w);
            prop_assert_eq!(&scratch[..n], &varlong_bytes(w)[..]);
        }
    }

    #[test]
    fn known_values_encode_as_zigzag_base_128() {
        // Zigzag then base-128, least significant group first.
        assert_eq!(varint_bytes(0), [0x00]);
        assert_eq!(varint_bytes(-1), [0x01]);
        assert_eq!(varint_bytes(1), [0x02]);
        assert_eq!(varint_bytes(63), [0x7e]);
        assert_eq!(varint_bytes(-64), [0x7f]);
        assert_eq!(varint_bytes(64), [0x80, 0x01]);
        assert_eq!(varint_bytes(-65), [0x81, 0x01]);
        assert_eq!(varint_bytes(i32::MAX), [0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(varint_bytes(i32::MIN), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(
            varlong_bytes(i64::MIN),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(varlong_bytes(-1), [0x01]);
    }

    #[test]
    fn lengths_at_the_extremes() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(-1), 1);
        assert_eq!(varint_len(i32::MAX), MAX_VARINT_BYTES);
        assert_eq!(varint_len(i32::MIN), MAX_VARINT_BYTES);
        assert_eq!(varlong_len(i64::MAX), MAX_VARLONG_BYTES);
        assert_eq!(varlong_len(i64::MIN), MAX_VARLONG_BYTES);
    }

    #[test]
    fn truncated_input_is_an_error_and_leaves_the_cursor() {
        let bytes = varint_bytes(i32::MAX);
        for cut in 0..bytes.len() {
            let mut buf = &bytes[..cut];
            assert_eq!(read_varint(&mut buf), Err(VarintError::Truncated));
            assert_eq!(buf.len(), cut);
        }
        let bytes = varlong_bytes(i64::MIN);
        for cut in 0..bytes.len() {
            let mut buf = &bytes[..cut];
            assert_eq!(read_varlong(&mut buf), Err(VarintError::Truncated));
        }
    }

    #[test]
    fn too_many_bytes_is_overlong() {
        let mut buf: &[u8] = &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert_eq!(read_varint(&mut buf), Err(VarintError::Overlong));
        let mut buf: &[u8] = &[0xff; 11];
        assert_eq!(read_varlong(&mut buf), Err(VarintError::Overlong));
    }

    #[test]
    fn bits_past_the_width_are_overlong() {
        // Fifth byte of a varint may only use its low four bits (28 + 4 = 32).
        let mut buf: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0x1f];
        assert_eq!(read_varint(&mut buf), Err(VarintError::Overlong));
        // Tenth byte of a varlong may only use its lowest bit (63 + 1 = 64).
        let mut buf: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(read_varlong(&mut buf), Err(VarintError::Overlong));
    }

    #[test]
    fn non_minimal_encoding_is_accepted() {
        let mut buf: &[u8] = &[0x82, 0x80, 0x00, 0xaa];
        assert_eq!(read_varint(&mut buf), Ok(1));
        assert_eq!(buf, [0xaa]);
    }

    proptest! {
        #[test]
        fn varint_round_trips(v in any::<i32>(), tail in vec(any::<u8>(), 0..4)) {
            let mut bytes = varint_bytes(v);
            prop_assert_eq!(bytes.len(), varint_len(v));
            bytes.extend_from_slice(&tail);
            let mut buf = bytes.as_slice();
            prop_assert_eq!(read_varint(&mut buf), Ok(v));
            prop_assert_eq!(buf, tail.as_slice());
        }

        #[test]
        fn varlong_round_trips(v in any::<i64>(), tail in vec(any::<u8>(), 0..4)) {
            let mut bytes = varlong_bytes(v);
            prop_assert_eq!(bytes.len(), varlong_len(v));
            bytes.extend_from_slice(&tail);
            let mut buf = bytes.as_slice();
            prop_assert_eq!(read_varlong(&mut buf), Ok(v));
            prop_assert_eq!(buf, tail.as_slice());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..12)) {
            let mut buf = bytes.as_slice();
            if read_varint(&mut buf).is_ok() {
                prop_assert!(bytes.len() - buf.len() <= MAX_VARINT_BYTES);
            }
            let mut buf = bytes.as_slice();
            if read_varlong(&mut buf).is_ok() {
                prop_assert!(bytes.len() - buf.len() <= MAX_VARLONG_BYTES);
            }
        }
    }
}
