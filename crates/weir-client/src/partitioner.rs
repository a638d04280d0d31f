//! Choosing a partition for a record: Kafka's default partitioner.
//!
//! - A record with an explicit partition goes there.
//! - A keyed record goes to `(murmur2(key) & 0x7fffffff) % partitions`, exactly as Kafka's
//!   Java client computes it, so a key lands on the same partition number as with Kafka's
//!   own clients and, for a fixed partition count, always on the same partition.
//! - Unkeyed records stick to one partition until the batch being filled there is closed
//!   (full or lingered out), then move to another (Kafka's sticky partitioner, KIP-480):
//!   records spread evenly over time while each batch still fills up.

/// Kafka's murmur2 seed (`Utils.murmur2`).
const MURMUR2_SEED: u32 = 0x9747_b28c;
/// murmur2's multiplication constant.
const MURMUR2_M: u32 = 0x5bd1_e995;
/// murmur2's shift.
const MURMUR2_R: u32 = 24;

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with seed `0x9747b28c`, reading the data
/// as little-endian 4-byte words. Returned as the Java `int` it is there.
pub fn murmur2(data: &[u8]) -> i32 {
    let length = data.len() as u32;
    let mut h = MURMUR2_SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(MURMUR2_M);
        k ^= k >> MURMUR2_R;
        k = k.wrapping_mul(MURMUR2_M);
        h = h.wrapping_mul(MURMUR2_M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(MURMUR2_M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(MURMUR2_M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a keyed record:
/// `(murmur2(key) & 0x7fffffff) % partitions`. `partitions` must be at least 1.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

/// The sticky choice for unkeyed records of one topic.
#[derive(Debug)]
pub(crate) struct StickyPartitioner {
    current: Option<u32>,
    /// xorshift64 state: the choice needs spreading, not unpredictability.
    rng: u64,
}

impl StickyPartitioner {
    /// A partitioner seeded from `seed` (any value; 0 is replaced).
    pub(crate) fn new(seed: u64) -> StickyPartitioner {
        StickyPartitioner {
            current: None,
            rng: seed | 1,
        }
    }

    /// The partition for the next unkeyed record among `partitions`.
    pub(crate) fn partition(&mut self, partitions: u32) -> u32 {
        match self.current {
            Some(p) if p < partitions => p,
            _ => {
                let p = (self.next_random() % u64::from(partitions)) as u32;
                self.current = Some(p);
                p
            }
        }
    }

    /// Called when the batch being filled on `partition` was closed: the next unkeyed
    /// record goes to a different partition (when there is more than one).
    pub(crate) fn batch_closed(&mut self, partition: u32, partitions: u32) {
        if self.current != Some(partition) {
            return;
        }
        if partitions <= 1 {
            return;
        }
        // Any partition but the one just filled, uniformly.
        let step = 1 + (self.next_random() % u64::from(partitions - 1)) as u32;
        self.current = Some((partition + step) % partitions);
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own vectors, `clients/src/test/java/org/apache/kafka/common/utils/
    /// UtilsTest.java`, `testMurmur2`.
    #[test]
    fn murmur2_matches_kafka_utils_test() {
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn keyed_partition_is_the_positive_hash_modulo_the_count() {
        // "21" hashes negative: the sign bit is masked, as in Kafka (toPositive), not
        // negated or taken absolute.
        let h = -973_932_308_i32;
        let positive = (h & 0x7fff_ffff) as u32;
        assert_eq!(partition_for_key(b"21", 3), positive % 3);
        assert_eq!(partition_for_key(b"21", 10), positive % 10);
        assert_eq!(partition_for_key(b"abc", 7), 479_470_107 % 7);
        assert_eq!(partition_for_key(b"foobar", 1), 0);
        for n in 1..50 {
            assert!(partition_for_key(b"any key", n) < n);
        }
    }

    #[test]
    fn murmur2_reads_every_tail_length() {
        // Lengths 0..=8 cover every remainder; the values must differ from one another
        // (a dropped tail byte would make "ab" and "a" collide and so on).
        let data = b"abcdefgh";
        let hashes: Vec<i32> = (0..=8).map(|n| murmur2(&data[..n])).collect();
        let mut unique = hashes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), hashes.len());
    }

    #[test]
    fn unkeyed_records_stick_until_their_batch_closes_then_move() {
        let mut sticky = StickyPartitioner::new(42);
        let first = sticky.partition(8);
        for _ in 0..100 {
            assert_eq!(sticky.partition(8), first);
        }
        // Closing another partition's batch changes nothing.
        sticky.batch_closed((first + 1) % 8, 8);
        assert_eq!(sticky.partition(8), first);
        sticky.batch_closed(first, 8);
        let second = sticky.partition(8);
        assert_ne!(second, first);
        assert!(second < 8);
    }

    #[test]
    fn sticky_choices_spread_over_every_partition() {
        let mut sticky = StickyPartitioner::new(7);
        let mut seen = [0_u32; 4];
        for _ in 0..400 {
            let p = sticky.partition(4);
            seen[p as usize] += 1;
            sticky.batch_closed(p, 4);
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn one_partition_always_gets_everything() {
        let mut sticky = StickyPartitioner::new(1);
        assert_eq!(sticky.partition(1), 0);
        sticky.batch_closed(0, 1);
        assert_eq!(sticky.partition(1), 0);
    }

    #[test]
    fn a_shrunken_count_is_never_exceeded() {
        let mut sticky = StickyPartitioner::new(3);
        let _ = sticky.partition(100);
        assert!(sticky.partition(2) < 2);
    }
}
