//! The records of `__consumer_offsets`: binary keys and values, big-endian, versioned.
//!
//! ```text
//! offset key   u16 type = 1 | u16 len, group (UTF-8) | u16 len, topic | u32 partition
//! group key    u16 type = 2 | u16 len, group
//! offset value u16 version = 1 | i64 offset | i64 commit_timestamp_ms | u16 len, metadata
//! group value  u16 version = 1 | i32 group_epoch | u16 len, assignor
//! ```
//!
//! A record without a value is a tombstone: the key's committed offset, or the group,
//! was deleted (compaction keeps only the newest record of each key). Value versions
//! only ever append fields, so a reader decodes the fields it knows from any version
//! and ignores the rest; a key type it does not know is skipped (a newer broker's
//! record). `docs/consumer-groups.md` has the same table.

use bytes::{BufMut, Bytes, BytesMut};

/// Key type of a committed offset.
pub(crate) const KEY_TYPE_OFFSET: u16 = 1;
/// Key type of a group record (epoch, assignor).
pub(crate) const KEY_TYPE_GROUP: u16 = 2;
/// Version of offset values this broker writes.
pub(crate) const OFFSET_VALUE_VERSION: u16 = 1;
/// Version of group values this broker writes.
pub(crate) const GROUP_VALUE_VERSION: u16 = 1;

/// A decoded key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: u32,
    },
    Group {
        group: String,
    },
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetValue {
    pub offset: i64,
    pub commit_timestamp_ms: i64,
    pub metadata: String,
}

/// What survives of a group across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupValue {
    pub epoch: i32,
    pub assignor: String,
}

fn put_str(buf: &mut BytesMut, s: &str) {
    // Every string written here is bounded far below u16::MAX by the callers' limits
    // (group ids and topic names 249 chars, metadata 4 KiB, assignor names).
    let len = u16::try_from(s.len()).expect("record strings are bounded by named limits");
    buf.put_u16(len);
    buf.put_slice(s.as_bytes());
}

pub(crate) fn offset_key(group: &str, topic: &str, partition: u32) -> Bytes {
    let mut buf = BytesMut::with_capacity(10 + group.len() + topic.len());
    buf.put_u16(KEY_TYPE_OFFSET);
    put_str(&mut buf, group);
    put_str(&mut buf, topic);
    buf.put_u32(partition);
    buf.freeze()
}

pub(crate) fn group_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_u16(KEY_TYPE_GROUP);
    put_str(&mut buf, group);
    buf.freeze()
}

pub(crate) fn offset_value(value: &OffsetValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(20 + value.metadata.len());
    buf.put_u16(OFFSET_VALUE_VERSION);
    buf.put_i64(value.offset);
    buf.put_i64(value.commit_timestamp_ms);
    put_str(&mut buf, &value.metadata);
    buf.freeze()
}

pub(crate) fn group_value(value: &GroupValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(8 + value.assignor.len());
    buf.put_u16(GROUP_VALUE_VERSION);
    buf.put_i32(value.epoch);
    put_str(&mut buf, &value.assignor);
    buf.freeze()
}

/// A bounds-checked reader over one key or value.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "truncated at byte {} reading {what} ({n} bytes, {} left)",
                self.pos,
                self.bytes.len() - self.pos
            ));
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_be_bytes(
            self.take(2, what)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    fn i32(&mut self, what: &str) -> Result<i32, String> {
        Ok(i32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    fn i64(&mut self, what: &str) -> Result<i64, String> {
        Ok(i64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.u16(what)? as usize;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }

    fn finish(&self, what: &str) -> Result<(), String> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(format!(
                "{} trailing bytes after the {what}",
                self.bytes.len() - self.pos
            ))
        }
    }
}

/// Decodes a key; `Ok(None)` for a key type this broker does not know (skip it).
pub(crate) fn decode_key(bytes: &[u8]) -> Result<Option<RecordKey>, String> {
    let mut r = Reader { bytes, pos: 0 };
    let key = match r.u16("key type")? {
        KEY_TYPE_OFFSET => RecordKey::Offset {
            group: r.string("group id")?,
            topic: r.string("topic")?,
            partition: r.u32("partition")?,
        },
        KEY_TYPE_GROUP => RecordKey::Group {
            group: r.string("group id")?,
        },
        _ => return Ok(None),
    };
    r.finish("key")?;
    Ok(Some(key))
}

fn version(r: &mut Reader<'_>) -> Result<u16, String> {
    match r.u16("value version")? {
        0 => Err("value version 0 does not exist".to_string()),
        v => Ok(v),
    }
}

pub(crate) fn decode_offset_value(bytes: &[u8]) -> Result<OffsetValue, String> {
    let mut r = Reader { bytes, pos: 0 };
    let v = version(&mut r)?;
    let value = OffsetValue {
        offset: r.i64("offset")?,
        commit_timestamp_ms: r.i64("commit timestamp")?,
        metadata: r.string("metadata")?,
    };
    if v == OFFSET_VALUE_VERSION {
        r.finish("offset value")?;
    }
    Ok(value)
}

pub(crate) fn decode_group_value(bytes: &[u8]) -> Result<GroupValue, String> {
    let mut r = Reader { bytes, pos: 0 };
    let v = version(&mut r)?;
    let value = GroupValue {
        epoch: r.i32("group epoch")?,
        assignor: r.string("assignor")?,
    };
    if v == GROUP_VALUE_VERSION {
        r.finish("group value")?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let key = offset_key("g", "orders", 7);
        assert_eq!(
            &key[..],
            &[
                0, 1, 0, 1, b'g', 0, 6, b'o', b'r', b'd', b'e', b'r', b's', 0, 0, 0, 7
            ]
        );
        assert_eq!(
            decode_key(&key).unwrap(),
            Some(RecordKey::Offset {
                group: "g".into(),
                topic: "orders".into(),
                partition: 7
            })
        );
        assert_eq!(
            decode_key(&group_key("grp")).unwrap(),
            Some(RecordKey::Group {
                group: "grp".into()
            })
        );
        let value = OffsetValue {
            offset: 42,
            commit_timestamp_ms: 1_700_000_000_000,
            metadata: "héllo".into(),
        };
        assert_eq!(decode_offset_value(&offset_value(&value)).unwrap(), value);
        let group = GroupValue {
            epoch: 9,
            assignor: "range".into(),
        };
        assert_eq!(decode_group_value(&group_value(&group)).unwrap(), group);
    }

    #[test]
    fn unknown_key_types_are_skipped_and_newer_values_read() {
        assert_eq!(decode_key(&[0, 99, 1, 2, 3]).unwrap(), None);
        // Version 2 with an appended field: the known prefix is read.
        let mut v2 = offset_value(&OffsetValue {
            offset: 5,
            commit_timestamp_ms: 6,
            metadata: String::new(),
        })
        .to_vec();
        v2[1] = 2;
        v2.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_offset_value(&v2).unwrap().offset, 5);
    }

    #[test]
    fn malformed_records_are_errors() {
        let key = offset_key("g", "t", 1);
        assert!(decode_key(&key[..key.len() - 1]).is_err());
        let mut long = key.to_vec();
        long.push(0);
        assert!(decode_key(&long).is_err());
        assert!(decode_offset_value(&[0, 1, 0]).is_err());
        assert!(decode_group_value(&[0, 0, 0, 0, 0, 1, 0, 0]).is_err());
        assert!(decode_key(&[0, 2, 0, 1, 0xff]).is_err());
    }
}
