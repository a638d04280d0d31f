//! The `__transaction_state` record layouts, byte for byte as Kafka writes them.
//!
//! Key (version 0, not flexible): `int16 version = 0`, `string TransactionalId` (`int16`
//! length + UTF-8). Value: `int16 version`, then
//! `int64 ProducerId`, `int16 ProducerEpoch`, `int32 TransactionTimeoutMs`,
//! `int8 TransactionStatus`, a nullable array of `{ string Topic, []int32 PartitionIds }`
//! (null while the state is Empty), `int64 TransactionLastUpdateTimestampMs`,
//! `int64 TransactionStartTimestampMs`.
//!
//! Version 0 uses `int16` string lengths and `int32` array lengths (-1 = null). Version 1 is
//! flexible: compact lengths (`uvarint(n + 1)`, 0 = null), every struct ends with a tagged
//! field section, and the value's own section carries tag 0 `PreviousProducerId` (default
//! -1), tag 1 `NextProducerId` (default -1), tag 2 `ClientTransactionVersion` (default 0)
//! and tag 3 `NextProducerEpoch` (default -1), each written only when it differs from its
//! default, as Kafka's generated code does. Unknown tags are skipped on read.
//!
//! A transactional id that expired is a tombstone: its key with no value.
//! Every length read is checked against a named limit before it sizes an allocation.

use std::collections::BTreeMap;

use super::{
    MAX_PARTITIONS_PER_TRANSACTION, MAX_TOPIC_NAME_BYTES, MAX_TRANSACTIONAL_ID_BYTES,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, TopicPartition,
};

/// The only key version Kafka writes for `__transaction_state`.
pub const KEY_VERSION: i16 = 0;
/// The newest value version (flexible, with tagged fields).
pub const VALUE_VERSION_MAX: i16 = 1;

/// What a `__transaction_state` record says about one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogValue {
    pub producer_id: i64,
    /// Tag 0 (v1 only): the producer id of the last committed transaction.
    pub previous_producer_id: i64,
    /// Tag 1 (v1 only): the producer id handed out when the epoch ran out (TV2).
    pub next_producer_id: i64,
    /// Tag 3 (v1 only).
    pub next_producer_epoch: i16,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// The state id (see `TxnState::id`).
    pub status: i8,
    /// `None` is written as a null array (Kafka writes null for Empty).
    pub partitions: Option<Vec<TopicPartition>>,
    pub last_update_ms: i64,
    pub start_ms: i64,
    /// Tag 2 (v1 only): the transaction version the client used.
    pub client_txn_version: i16,
}

/// One record of the internal partition: a value, or a tombstone (expired id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogRecord {
    pub transactional_id: String,
    pub value: Option<TxnLogValue>,
}

/// Why bytes from the internal partition do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("__transaction_state record truncated reading {what}")]
    Truncated { what: &'static str },
    #[error("__transaction_state key version {0} is unknown")]
    UnknownKeyVersion(i16),
    #[error("__transaction_state value version {0} is unknown")]
    UnknownValueVersion(i16),
    #[error("{what} is {len} long, more than the limit {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} has a negative length {len}")]
    NegativeLength { what: &'static str, len: i64 },
    #[error("{what} is not UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("a varint in {what} runs past 5 bytes")]
    BadVarint { what: &'static str },
    #[error("transaction status {0} is not a state a record holds")]
    BadState(i8),
    #[error("{0} bytes follow the record")]
    TrailingBytes(usize),
}

/// The key bytes for a transactional id.
pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.extend_from_slice(&KEY_VERSION.to_be_bytes());
    put_string16(&mut out, transactional_id);
    out
}

/// The transactional id in key bytes.
pub fn decode_key(bytes: &[u8]) -> Result<String, RecordError> {
    let mut r = Reader::new(bytes);
    let version = r.i16("key version")?;
    if version != KEY_VERSION {
        return Err(RecordError::UnknownKeyVersion(version));
    }
    let len = r.i16("transactional id length")?;
    let id = r.string(
        i64::from(len),
        MAX_TRANSACTIONAL_ID_BYTES,
        "transactional id",
    )?;
    r.finish()?;
    Ok(id)
}

/// The value bytes in `version` (0 or 1; panics on others: a caller's bug).
pub fn encode_value(value: &TxnLogValue, version: i16) -> Vec<u8> {
    assert!(
        (0..=VALUE_VERSION_MAX).contains(&version),
        "value version {version} is not written"
    );
    let flexible = version >= 1;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&value.producer_id.to_be_bytes());
    out.extend_from_slice(&value.producer_epoch.to_be_bytes());
    out.extend_from_slice(&value.timeout_ms.to_be_bytes());
    out.push(value.status as u8);
    match &value.partitions {
        None if flexible => put_uvarint(&mut out, 0),
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(partitions) => {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for tp in partitions {
                by_topic.entry(&tp.topic).or_default().push(tp.partition);
            }
            put_len(&mut out, by_topic.len(), flexible);
            for (topic, ids) in by_topic {
                if flexible {
                    put_uvarint(&mut out, topic.len() as u32 + 1);
                    out.extend_from_slice(topic.as_bytes());
                } else {
                    put_string16(&mut out, topic);
                }
                put_len(&mut out, ids.len(), flexible);
                for id in ids {
                    out.extend_from_slice(&id.to_be_bytes());
                }
                if flexible {
                    put_uvarint(&mut out, 0); // the struct's (empty) tagged fields
                }
            }
        }
    }
    out.extend_from_slice(&value.last_update_ms.to_be_bytes());
    out.extend_from_slice(&value.start_ms.to_be_bytes());
    if flexible {
        let mut tags: Vec<(u32, Vec<u8>)> = Vec::new();
        if value.previous_producer_id != NO_PRODUCER_ID {
            tags.push((0, value.previous_producer_id.to_be_bytes().to_vec()));
        }
        if value.next_producer_id != NO_PRODUCER_ID {
            tags.push((1, value.next_producer_id.to_be_bytes().to_vec()));
        }
        if value.client_txn_version != 0 {
            tags.push((2, value.client_txn_version.to_be_bytes().to_vec()));
        }
        if value.next_producer_epoch != NO_PRODUCER_EPOCH {
            tags.push((3, value.next_producer_epoch.to_be_bytes().to_vec()));
        }
        put_uvarint(&mut out, tags.len() as u32);
        for (tag, data) in tags {
            put_uvarint(&mut out, tag);
            put_uvarint(&mut out, data.len() as u32);
            out.extend_from_slice(&data);
        }
    }
    out
}

/// Value bytes of either version.
pub fn decode_value(bytes: &[u8]) -> Result<TxnLogValue, RecordError> {
    let mut r = Reader::new(bytes);
    let version = r.i16("value version")?;
    if !(0..=VALUE_VERSION_MAX).contains(&version) {
        return Err(RecordError::UnknownValueVersion(version));
    }
    let flexible = version >= 1;
    let producer_id = r.i64("producer id")?;
    let producer_epoch = r.i16("producer epoch")?;
    let timeout_ms = r.i32("transaction timeout")?;
    let status = r.i8("transaction status")?;
    let topics = r.array_len(flexible, "transaction partitions")?;
    let partitions = match topics {
        None => None,
        Some(topics) => {
            let mut partitions = Vec::new();
            for _ in 0..topics {
                let topic_len = if flexible {
                    i64::from(r.uvarint("topic length")?) - 1
                } else {
                    i64::from(r.i16("topic length")?)
                };
                let topic = r.string(topic_len, MAX_TOPIC_NAME_BYTES, "topic")?;
                let ids =
                    r.array_len(flexible, "partition ids")?
                        .ok_or(RecordError::NegativeLength {
                            what: "partition ids",
                            len: -1,
                        })?;
                if partitions.len() + ids > MAX_PARTITIONS_PER_TRANSACTION {
                    return Err(RecordError::TooLong {
                        what: "transaction partitions",
                        len: partitions.len() + ids,
                        max: MAX_PARTITIONS_PER_TRANSACTION,
                    });
                }
                r.need(ids * 4, "partition ids")?;
                partitions.reserve(ids);
                for _ in 0..ids {
                    partitions.push(TopicPartition::new(topic.clone(), r.i32("partition id")?));
                }
                if flexible {
                    r.skip_tags("partition tagged fields")?;
                }
            }
            Some(partitions)
        }
    };
    let last_update_ms = r.i64("last update time")?;
    let start_ms = r.i64("start time")?;
    let mut value = TxnLogValue {
        producer_id,
        previous_producer_id: NO_PRODUCER_ID,
        next_producer_id: NO_PRODUCER_ID,
        next_producer_epoch: NO_PRODUCER_EPOCH,
        producer_epoch,
        timeout_ms,
        status,
        partitions,
        last_update_ms,
        start_ms,
        client_txn_version: 0,
    };
    if flexible {
        let count = r.uvarint("tagged field count")?;
        for _ in 0..count {
            let tag = r.uvarint("tag")?;
            let size = r.uvarint("tag size")? as usize;
            let data = r.take(size, "tagged field")?;
            let mut t = Reader::new(data);
            match tag {
                0 => value.previous_producer_id = t.i64("previous producer id")?,
                1 => value.next_producer_id = t.i64("next producer id")?,
                2 => value.client_txn_version = t.i16("client transaction version")?,
                3 => value.next_producer_epoch = t.i16("next producer epoch")?,
                _ => continue, // a newer writer's field: skipped, as Kafka does
            }
            t.finish()?;
        }
    }
    r.finish()?;
    Ok(value)
}

impl TxnLogRecord {
    /// Key and value bytes (`None` value: a tombstone).
    pub fn encode(&self, value_version: i16) -> (Vec<u8>, Option<Vec<u8>>) {
        (
            encode_key(&self.transactional_id),
            self.value.as_ref().map(|v| encode_value(v, value_version)),
        )
    }

    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<TxnLogRecord, RecordError> {
        Ok(TxnLogRecord {
            transactional_id: decode_key(key)?,
            value: value.map(decode_value).transpose()?,
        })
    }
}

fn put_string16(out: &mut Vec<u8>, s: &str) {
    let len = i16::try_from(s.len()).expect("string longer than int16: checked by the caller");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_len(out: &mut Vec<u8>, len: usize, flexible: bool) {
    if flexible {
        put_uvarint(out, len as u32 + 1);
    } else {
        out.extend_from_slice(&(len as i32).to_be_bytes());
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), RecordError> {
        if self.bytes.len() < n {
            return Err(RecordError::Truncated { what });
        }
        Ok(())
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        self.need(n, what)?;
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn i8(&mut self, what: &'static str) -> Result<i8, RecordError> {
        Ok(i8::from_be_bytes(self.array(what)?))
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    fn uvarint(&mut self, what: &'static str) -> Result<u32, RecordError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.i8(what)? as u8;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::BadVarint { what })
    }

    /// An array's length: `None` for null.
    fn array_len(
        &mut self,
        flexible: bool,
        what: &'static str,
    ) -> Result<Option<usize>, RecordError> {
        let len = if flexible {
            i64::from(self.uvarint(what)?) - 1
        } else {
            i64::from(self.i32(what)?)
        };
        if len == -1 {
            return Ok(None);
        }
        if len < 0 {
            return Err(RecordError::NegativeLength { what, len });
        }
        let len = len as usize;
        if len > MAX_PARTITIONS_PER_TRANSACTION {
            return Err(RecordError::TooLong {
                what,
                len,
                max: MAX_PARTITIONS_PER_TRANSACTION,
            });
        }
        Ok(Some(len))
    }

    fn string(&mut self, len: i64, max: usize, what: &'static str) -> Result<String, RecordError> {
        if len < 0 {
            return Err(RecordError::NegativeLength { what, len });
        }
        let len = len as usize;
        if len > max {
            return Err(RecordError::TooLong { what, len, max });
        }
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| RecordError::NotUtf8 { what })
    }

    fn skip_tags(&mut self, what: &'static str) -> Result<(), RecordError> {
        let count = self.uvarint(what)?;
        for _ in 0..count {
            self.uvarint(what)?;
            let size = self.uvarint(what)? as usize;
            self.take(size, what)?;
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), RecordError> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(RecordError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(version: i16) -> TxnLogValue {
        TxnLogValue {
            producer_id: 1000,
            previous_producer_id: if version >= 1 { 999 } else { NO_PRODUCER_ID },
            next_producer_id: NO_PRODUCER_ID,
            next_producer_epoch: NO_PRODUCER_EPOCH,
            producer_epoch: 3,
            timeout_ms: 60_000,
            status: 1,
            partitions: Some(vec![
                TopicPartition::new("t", 0),
                TopicPartition::new("t", 2),
            ]),
            last_update_ms: 7,
            start_ms: 5,
            client_txn_version: if version >= 1 { 2 } else { 0 },
        }
    }

    #[test]
    fn key_is_version_then_int16_string() {
        assert_eq!(encode_key("tx"), vec![0, 0, 0, 2, b't', b'x']);
        assert_eq!(decode_key(&encode_key("tx")).unwrap(), "tx");
        assert_eq!(
            decode_key(&[0, 1, 0, 0]),
            Err(RecordError::UnknownKeyVersion(1))
        );
    }

    #[test]
    fn value_v0_bytes_are_kafkas() {
        let bytes = encode_value(&sample(0), 0);
        let mut want = vec![0, 0]; // version
        want.extend_from_slice(&1000i64.to_be_bytes());
        want.extend_from_slice(&3i16.to_be_bytes());
        want.extend_from_slice(&60_000i32.to_be_bytes());
        want.push(1);
        want.extend_from_slice(&1i32.to_be_bytes()); // one topic
        want.extend_from_slice(&[0, 1, b't']);
        want.extend_from_slice(&2i32.to_be_bytes());
        want.extend_from_slice(&0i32.to_be_bytes());
        want.extend_from_slice(&2i32.to_be_bytes());
        want.extend_from_slice(&7i64.to_be_bytes());
        want.extend_from_slice(&5i64.to_be_bytes());
        assert_eq!(bytes, want);
        assert_eq!(decode_value(&bytes).unwrap(), sample(0));
    }

    #[test]
    fn value_v1_bytes_are_kafkas() {
        let bytes = encode_value(&sample(1), 1);
        let mut want = vec![0, 1];
        want.extend_from_slice(&1000i64.to_be_bytes());
        want.extend_from_slice(&3i16.to_be_bytes());
        want.extend_from_slice(&60_000i32.to_be_bytes());
        want.push(1);
        want.push(2); // compact array: one topic
        want.extend_from_slice(&[2, b't']); // compact string
        want.push(3); // two partitions
        want.extend_from_slice(&0i32.to_be_bytes());
        want.extend_from_slice(&2i32.to_be_bytes());
        want.push(0); // the topic struct's tagged fields
        want.extend_from_slice(&7i64.to_be_bytes());
        want.extend_from_slice(&5i64.to_be_bytes());
        want.push(2); // two tagged fields: 0 and 2
        want.extend_from_slice(&[0, 8]);
        want.extend_from_slice(&999i64.to_be_bytes());
        want.extend_from_slice(&[2, 2, 0, 2]);
        assert_eq!(bytes, want);
        assert_eq!(decode_value(&bytes).unwrap(), sample(1));
    }

    #[test]
    fn empty_state_writes_a_null_array() {
        let mut v = sample(0);
        v.partitions = None;
        let v0 = encode_value(&v, 0);
        assert_eq!(&v0[17..21], &(-1i32).to_be_bytes());
        let mut v1v = sample(1);
        v1v.partitions = None;
        let v1 = encode_value(&v1v, 1);
        assert_eq!(v1[17], 0);
        assert_eq!(decode_value(&v1).unwrap().partitions, None);
    }

    #[test]
    fn unknown_tags_are_skipped_and_a_tombstone_has_no_value() {
        let mut bytes = encode_value(&sample(1), 1);
        let n = bytes.len();
        // Rewrite the tag count 2 -> 3 and append tag 9 with 1 byte.
        let count_at = n - (2 + 8) - 4 - 1;
        assert_eq!(bytes[count_at], 2);
        bytes[count_at] = 3;
        bytes.extend_from_slice(&[9, 1, 42]);
        assert_eq!(decode_value(&bytes).unwrap(), sample(1));

        let tomb = TxnLogRecord {
            transactional_id: "gone".into(),
            value: None,
        };
        let (k, v) = tomb.encode(1);
        assert_eq!(v, None);
        assert_eq!(TxnLogRecord::decode(&k, None).unwrap(), tomb);
    }

    #[test]
    fn lengths_over_the_limits_are_refused_before_allocating() {
        let mut key = vec![0, 0];
        key.extend_from_slice(&i16::MAX.to_be_bytes());
        assert!(matches!(decode_key(&key), Err(RecordError::TooLong { .. })));
        let mut v = encode_value(&sample(0), 0);
        v[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(decode_value(&v), Err(RecordError::TooLong { .. })));
    }

    fn arb_value() -> impl Strategy<Value = (TxnLogValue, i16)> {
        (
            0i16..=1,
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            any::<i16>(),
            any::<i16>(),
            any::<i32>(),
            0i8..8,
            proptest::option::of(proptest::collection::btree_set(
                ("[a-z._-]{1,20}", 0i32..64),
                0..20,
            )),
            any::<i64>(),
            any::<i64>(),
            any::<i16>(),
        )
            .prop_map(
                |(ver, pid, prev, next, next_epoch, epoch, timeout, status, parts, lu, st, tv)| {
                    let flexible = ver >= 1;
                    let partitions = parts.map(|set| {
                        set.into_iter()
                            .map(|(t, p)| TopicPartition::new(t, p))
                            .collect::<Vec<_>>()
                    });
                    (
                        TxnLogValue {
                            producer_id: pid,
                            previous_producer_id: if flexible { prev } else { NO_PRODUCER_ID },
                            next_producer_id: if flexible { next } else { NO_PRODUCER_ID },
                            next_producer_epoch: if flexible {
                                next_epoch
                            } else {
                                NO_PRODUCER_EPOCH
                            },
                            producer_epoch: epoch,
                            timeout_ms: timeout,
                            status,
                            partitions,
                            last_update_ms: lu,
                            start_ms: st,
                            client_txn_version: if flexible { tv } else { 0 },
                        },
                        ver,
                    )
                },
            )
    }

    proptest! {
        #[test]
        fn values_round_trip((value, version) in arb_value(), id in "[ -~]{1,64}") {
            let record = TxnLogRecord { transactional_id: id, value: Some(value) };
            let (k, v) = record.encode(version);
            // Partitions come back grouped by topic (sorted), as the set they were.
            let back = TxnLogRecord::decode(&k, v.as_deref()).unwrap();
            let sort = |r: &TxnLogRecord| {
                let mut r = r.clone();
                if let Some(p) = r.value.as_mut().and_then(|v| v.partitions.as_mut()) { p.sort(); }
                r
            };
            prop_assert_eq!(sort(&back), sort(&record));
        }

        #[test]
        fn garbage_and_truncation_error_without_panicking(
            (value, version) in arb_value(),
            cut in any::<prop::sample::Index>(),
            junk in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let bytes = encode_value(&value, version);
            let cut = cut.index(bytes.len());
            prop_assert!(decode_value(&bytes[..cut]).is_err());
            let _ = decode_value(&junk);
            let _ = decode_key(&junk);
        }
    }
}
