//! The bytes records carry: a pool of distinct pseudo-random payloads cut from one
//! buffer (so consecutive records differ and handing one out is a reference count), and
//! the stamp a latency record starts with (its sequence number and intended send time).
//!
//! None of the peers compresses by default, so the content does not change what they do;
//! random bytes keep it that way if one ever does.

use bytes::Bytes;

/// Bytes of distinct payloads in a pool: more than the CPU caches hold, little to build.
const POOL_BYTES: usize = 8 << 20;

/// Fewest distinct payloads a pool holds, even of large records.
const MIN_POOL_RECORDS: usize = 16;

/// Seed of the payload generator: fixed, so every run sends the same bytes.
const SEED: u64 = 0x5745_4952_5045_4552;

/// Bytes of the stamp at the start of a latency record: sequence number, then intended
/// send time in nanoseconds since the run's start, both little-endian `u64`.
pub const STAMP_BYTES: usize = 16;

/// Distinct payloads of one size.
#[derive(Debug, Clone)]
pub struct PayloadPool {
    payloads: Vec<Bytes>,
}

impl PayloadPool {
    pub fn new(record_bytes: usize) -> PayloadPool {
        let count = (POOL_BYTES / record_bytes.max(1)).max(MIN_POOL_RECORDS);
        let mut buf = vec![0u8; count * record_bytes];
        let mut rng = SplitMix64(SEED);
        for chunk in buf.chunks_mut(8) {
            let word = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        let buf = Bytes::from(buf);
        let payloads = (0..count)
            .map(|i| buf.slice(i * record_bytes..(i + 1) * record_bytes))
            .collect();
        PayloadPool { payloads }
    }

    /// The payload of record `index` (the pool repeats).
    pub fn get(&self, index: u64) -> Bytes {
        // The pool is never empty and its length fits u64.
        let i = index % self.payloads.len() as u64;
        self.payloads[i as usize].clone()
    }
}

/// Writes the stamp of record `seq`, intended to be sent `intended_ns` after the start,
/// over the first [`STAMP_BYTES`] of `payload` (which must be at least that long).
pub fn stamp(payload: &mut [u8], seq: u64, intended_ns: u64) {
    payload[..8].copy_from_slice(&seq.to_le_bytes());
    payload[8..STAMP_BYTES].copy_from_slice(&intended_ns.to_le_bytes());
}

/// The `(seq, intended_ns)` a payload was stamped with, `None` if it is too short.
pub fn read_stamp(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = payload.get(..8)?.try_into().ok()?;
    let intended = payload.get(8..STAMP_BYTES)?.try_into().ok()?;
    Some((u64::from_le_bytes(seq), u64::from_le_bytes(intended)))
}

/// SplitMix64: fast and deterministic; benches need repeatable bytes, not secrets.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_payloads_have_the_size_and_differ() {
        for size in [1, 100, 1024, 3 << 20] {
            let pool = PayloadPool::new(size);
            assert!(pool.payloads.len() >= MIN_POOL_RECORDS);
            assert!(pool.payloads.iter().all(|p| p.len() == size));
            if size >= 8 {
                assert_ne!(pool.get(0), pool.get(1));
            }
            assert_eq!(pool.get(0), pool.get(pool.payloads.len() as u64));
        }
    }

    #[test]
    fn stamps_round_trip() {
        let mut payload = vec![7u8; 32];
        stamp(&mut payload, 42, 1_234_567_890);
        assert_eq!(read_stamp(&payload), Some((42, 1_234_567_890)));
        assert_eq!(read_stamp(&payload[..STAMP_BYTES - 1]), None);
    }
}
