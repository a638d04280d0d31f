//! A share group's own settings (lock duration, delivery limit, dead-letter topic) and
//! their record in `__share_group_state`, beside the share-partitions' state records
//! (docs/storage-format.md § Share-group state records).
//!
//! The first two bytes of every key in that topic say what it is about: 0, one
//! share-partition (`StateKey`); 1, a group's settings. Big-endian integers; lengths are
//! checked before anything is read past them.

use bytes::{Buf, BufMut};

use super::partition::{MAX_DELIVERY_DELAY_MS, ShareConfig};
use super::state_records::{MAX_GROUP_ID_BYTES, StateKey, StateRecordError};

/// The key type of a share-partition's state records.
pub const PARTITION_KEY_TYPE: u16 = 0;
/// The key type of a group's settings record.
pub const SETTINGS_KEY_TYPE: u16 = 1;
/// The settings value's version; a reader refuses any other.
pub const SETTINGS_VALUE_VERSION: u16 = 0;
/// Longest dead-letter topic name (Kafka's topic-name limit).
pub const MAX_TOPIC_NAME_BYTES: usize = 249;
/// Most deliveries a group may allow a record.
pub const MAX_DELIVERY_COUNT_LIMIT: u16 = 10_000;

/// What a share group sets for itself; `None` takes the broker's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSettings {
    pub lock_duration_ms: Option<u64>,
    pub delivery_count_limit: Option<u16>,
    /// Where archived records are copied (with headers naming their source).
    pub dead_letter_topic: Option<String>,
}

impl GroupSettings {
    /// The window settings of the group's share-partitions: `defaults` with the group's
    /// own values over them.
    pub fn apply(&self, defaults: ShareConfig) -> ShareConfig {
        ShareConfig {
            lock_duration_ms: self.lock_duration_ms.unwrap_or(defaults.lock_duration_ms),
            delivery_count_limit: self
                .delivery_count_limit
                .unwrap_or(defaults.delivery_count_limit),
            dead_letter: self.dead_letter_topic.is_some(),
            ..defaults
        }
    }

    /// Refuses values no group may have.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(ms) = self.lock_duration_ms
            && (ms == 0 || ms > MAX_DELIVERY_DELAY_MS)
        {
            return Err(format!(
                "a lock duration of {ms} ms is outside 1..={MAX_DELIVERY_DELAY_MS} ms"
            ));
        }
        if let Some(n) = self.delivery_count_limit
            && (n == 0 || n > MAX_DELIVERY_COUNT_LIMIT)
        {
            return Err(format!(
                "a delivery count limit of {n} is outside 1..={MAX_DELIVERY_COUNT_LIMIT}"
            ));
        }
        if let Some(t) = &self.dead_letter_topic
            && (t.is_empty() || t.len() > MAX_TOPIC_NAME_BYTES)
        {
            return Err(format!(
                "a dead-letter topic name of {} bytes is outside 1..={MAX_TOPIC_NAME_BYTES}",
                t.len()
            ));
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let topic = self.dead_letter_topic.as_deref().unwrap_or("").as_bytes();
        let mut out = Vec::with_capacity(2 + 1 + 8 + 1 + 2 + 1 + topic.len());
        out.put_u16(SETTINGS_VALUE_VERSION);
        // Each optional number: a presence byte, then the value (0 when absent).
        out.put_u8(u8::from(self.lock_duration_ms.is_some()));
        out.put_u64(self.lock_duration_ms.unwrap_or(0));
        out.put_u8(u8::from(self.delivery_count_limit.is_some()));
        out.put_u16(self.delivery_count_limit.unwrap_or(0));
        out.put_u8(topic.len().min(MAX_TOPIC_NAME_BYTES) as u8);
        out.put_slice(&topic[..topic.len().min(MAX_TOPIC_NAME_BYTES)]);
        out
    }

    pub fn decode(mut buf: &[u8]) -> Result<GroupSettings, StateRecordError> {
        need(buf, 2 + 1 + 8 + 1 + 2 + 1, "settings")?;
        let version = buf.get_u16();
        if version != SETTINGS_VALUE_VERSION {
            return Err(StateRecordError::Version(version));
        }
        let lock = (buf.get_u8() != 0, buf.get_u64());
        let limit = (buf.get_u8() != 0, buf.get_u16());
        let len = buf.get_u8() as usize;
        need(buf, len, "dead-letter topic")?;
        let topic = std::str::from_utf8(&buf[..len])
            .map_err(|_| StateRecordError::GroupNotUtf8)?
            .to_owned();
        buf.advance(len);
        if !buf.is_empty() {
            return Err(StateRecordError::Trailing(buf.len()));
        }
        Ok(GroupSettings {
            lock_duration_ms: lock.0.then_some(lock.1),
            delivery_count_limit: limit.0.then_some(limit.1),
            dead_letter_topic: (!topic.is_empty()).then_some(topic),
        })
    }
}

/// What a key of `__share_group_state` is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Partition(StateKey),
    Settings { group: String },
}

impl RecordKey {
    /// The key of `group`'s settings record.
    pub fn settings(group: &str) -> Result<Vec<u8>, StateRecordError> {
        let bytes = group.as_bytes();
        if bytes.len() > MAX_GROUP_ID_BYTES {
            return Err(StateRecordError::GroupTooLong(bytes.len()));
        }
        let mut out = Vec::with_capacity(2 + 1 + bytes.len());
        out.put_u16(SETTINGS_KEY_TYPE);
        out.put_u8(bytes.len() as u8);
        out.put_slice(bytes);
        Ok(out)
    }

    pub fn decode(buf: &[u8]) -> Result<RecordKey, StateRecordError> {
        need(buf, 2, "key type")?;
        match u16::from_be_bytes([buf[0], buf[1]]) {
            PARTITION_KEY_TYPE => StateKey::decode(buf).map(RecordKey::Partition),
            SETTINGS_KEY_TYPE => {
                let mut rest = &buf[2..];
                need(rest, 1, "group length")?;
                let len = rest.get_u8() as usize;
                need(rest, len, "group id")?;
                let group = std::str::from_utf8(&rest[..len])
                    .map_err(|_| StateRecordError::GroupNotUtf8)?
                    .to_owned();
                if rest.len() > len {
                    return Err(StateRecordError::Trailing(rest.len() - len));
                }
                Ok(RecordKey::Settings { group })
            }
            other => Err(StateRecordError::Version(other)),
        }
    }
}

fn need(buf: &[u8], n: usize, what: &'static str) -> Result<(), StateRecordError> {
    if buf.len() < n {
        return Err(StateRecordError::Truncated(what));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use weir_log::framed_file::golden_hex;

    use super::*;

    #[test]
    fn the_settings_bytes_are_pinned() {
        assert_eq!(
            RecordKey::settings("jobs").unwrap(),
            golden_hex("0001 04 6a6f6273")
        );
        let settings = GroupSettings {
            lock_duration_ms: Some(60_000),
            delivery_count_limit: None,
            dead_letter_topic: Some("dlq".into()),
        };
        let bytes = settings.encode();
        assert_eq!(
            bytes,
            golden_hex("0000 01 000000000000ea60 00 0000 03 646c71")
        );
        assert_eq!(GroupSettings::decode(&bytes).unwrap(), settings);
        assert_eq!(
            RecordKey::decode(&golden_hex("0001 04 6a6f6273")).unwrap(),
            RecordKey::Settings {
                group: "jobs".into()
            }
        );
    }

    #[test]
    fn damaged_settings_are_refused_not_misread() {
        let bytes = GroupSettings::default().encode();
        for cut in 0..bytes.len() {
            assert!(
                GroupSettings::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(GroupSettings::decode(&long).is_err());
        assert!(RecordKey::decode(&golden_hex("0002 00")).is_err());
        assert!(RecordKey::decode(&golden_hex("0001 05 6a6f6273")).is_err());
    }

    #[test]
    fn a_group_s_values_override_the_defaults() {
        let defaults = ShareConfig::default();
        let config = GroupSettings {
            delivery_count_limit: Some(2),
            dead_letter_topic: Some("dlq".into()),
            ..GroupSettings::default()
        }
        .apply(defaults);
        assert_eq!(config.delivery_count_limit, 2);
        assert_eq!(config.lock_duration_ms, defaults.lock_duration_ms);
        assert!(config.dead_letter);
        assert!(
            GroupSettings {
                lock_duration_ms: Some(0),
                ..GroupSettings::default()
            }
            .validate()
            .is_err()
        );
    }
}
