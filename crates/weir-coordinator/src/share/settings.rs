//! A share group's own settings (lock duration, delivery limit, dead-letter topic, header
//! filter) and their record in `__share_group_state`, beside the share-partitions' state records
//! (docs/storage-format.md § Share-group state records).
//!
//! The first two bytes of every key in that topic say what it is about: 0, one
//! share-partition (`StateKey`); 1, a group's settings. Big-endian integers; lengths are
//! checked before anything is read past them.

use bytes::{Buf, BufMut};

use super::filter::{
    HeaderCondition, HeaderFilter, HeaderMatch, MAX_FILTER_CONDITIONS, MAX_FILTER_KEY_BYTES,
    MAX_FILTER_VALUE_BYTES, MAX_FILTER_VALUES,
};
use super::partition::{MAX_DELIVERY_DELAY_MS, ShareConfig};
use super::state_records::{MAX_GROUP_ID_BYTES, StateKey, StateRecordError};

/// Where a share group starts on a partition it has no state for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShareStart {
    /// The high watermark: records produced from now on (Kafka's default).
    #[default]
    Latest,
    /// The log start.
    Earliest,
}

/// The key type of a share-partition's state records.
pub const PARTITION_KEY_TYPE: u16 = 0;
/// The key type of a group's settings record.
pub const SETTINGS_KEY_TYPE: u16 = 1;
/// The settings value's version without a filter: what a group without one is written as,
/// so a broker that predates filters still reads it.
pub const SETTINGS_VALUE_VERSION: u16 = 0;
/// The settings value's version with a header filter after the version 0 fields. A reader
/// refuses any version but these three.
pub const SETTINGS_VALUE_VERSION_FILTER: u16 = 1;
/// The settings value's version with where the group starts (`share.auto.offset.reset`)
/// after the version 0 fields, then the filter's condition count (0: no filter) and its
/// conditions. Written only for a group that sets where it starts.
pub const SETTINGS_VALUE_VERSION_START: u16 = 2;
/// The settings value's version with the dead-letter exchange and message TTL (what an
/// AMQP queue's arguments set) after the version 2 fields: the TTL (a presence byte and
/// 8 bytes), the exchange and the routing key (each a presence byte, a length byte and the
/// name: the default exchange is the empty name). Written only for a group that sets one.
pub const SETTINGS_VALUE_VERSION_DEAD_LETTER_EXCHANGE: u16 = 3;
/// The settings value's version with a maximum length (an AMQP queue's `x-max-length`
/// with `drop-head`) after the version 3 fields: a presence byte and 8 bytes. Written only
/// for a group that sets one, so a broker that predates it reads every other group.
pub const SETTINGS_VALUE_VERSION_MAX_LENGTH: u16 = 4;
/// Longest dead-letter exchange name and routing key (AMQP short strings).
pub const MAX_DEAD_LETTER_EXCHANGE_BYTES: usize = 255;
/// Longest message time to live a group may set: the longest delay (7 days).
pub const MAX_MESSAGE_TTL_MS: u64 = MAX_DELIVERY_DELAY_MS;
/// The start byte of version 2: the group does not set it, latest, earliest.
const START_UNSET: u8 = 0;
const START_LATEST: u8 = 1;
const START_EARLIEST: u8 = 2;
/// A filter condition's kind byte.
const MATCH_EQUALS: u8 = 0;
const MATCH_PREFIX: u8 = 1;
const MATCH_ANY_OF: u8 = 2;
/// Longest dead-letter topic name (Kafka's topic-name limit).
pub const MAX_TOPIC_NAME_BYTES: usize = 249;
/// Most deliveries a group may allow a record.
pub const MAX_DELIVERY_COUNT_LIMIT: u16 = 10_000;
/// Largest maximum length a group may set (RabbitMQ's `x-max-length` is any
/// non-negative integer; this keeps counts within an `i64` offset difference).
pub const MAX_LENGTH: u64 = i64::MAX as u64;

/// What a share group sets for itself; `None` takes the broker's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSettings {
    pub lock_duration_ms: Option<u64>,
    pub delivery_count_limit: Option<u16>,
    /// Where archived records are copied (with headers naming their source).
    pub dead_letter_topic: Option<String>,
    /// Records that do not match are never handed out (empty: no filter).
    pub filter: HeaderFilter,
    /// Where the group starts on a partition it has no state for
    /// (`share.auto.offset.reset`); `None`: where each fetch asks (gRPC) or the latest
    /// offset (Kafka's default).
    pub start: Option<ShareStart>,
    /// How long a record may wait to be delivered, from its timestamp; then it is archived
    /// as expired (and dead-lettered). `None`: records wait for ever (a `weir-expire-at`
    /// header still expires its record).
    pub message_ttl_ms: Option<u64>,
    /// Where archived records are routed, as an AMQP publish to this exchange would be
    /// (an AMQP queue's `x-dead-letter-exchange`); instead of a dead-letter topic.
    pub dead_letter_exchange: Option<String>,
    /// The routing key dead letters are routed with (`x-dead-letter-routing-key`); `None`:
    /// each keeps its own.
    pub dead_letter_routing_key: Option<String>,
    /// Most ready records (available, delayed, or not yet read from the log: not those
    /// delivered and unacknowledged, as RabbitMQ counts for `x-max-length`); past it the
    /// oldest available ones are archived with reason `maxlen` (and dead-lettered): an
    /// AMQP queue's `x-max-length` with `x-overflow` `drop-head`. `None`: no bound.
    pub max_length: Option<u64>,
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
            dead_letter: self.dead_letter_topic.is_some() || self.dead_letter_exchange.is_some(),
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
        if self.dead_letter_topic.is_some() && self.dead_letter_exchange.is_some() {
            return Err(
                "a group dead-letters to a topic or through an exchange, not both".to_string(),
            );
        }
        if let Some(ms) = self.message_ttl_ms
            && ms > MAX_MESSAGE_TTL_MS
        {
            return Err(format!(
                "a message time to live of {ms} ms is over the limit of {MAX_MESSAGE_TTL_MS} ms"
            ));
        }
        for (what, name) in [
            ("dead-letter exchange", &self.dead_letter_exchange),
            ("dead-letter routing key", &self.dead_letter_routing_key),
        ] {
            if let Some(name) = name
                && name.len() > MAX_DEAD_LETTER_EXCHANGE_BYTES
            {
                return Err(format!(
                    "a {what} of {} bytes is over the limit of {MAX_DEAD_LETTER_EXCHANGE_BYTES}",
                    name.len()
                ));
            }
        }
        if self.dead_letter_routing_key.is_some() && self.dead_letter_exchange.is_none() {
            return Err("a dead-letter routing key needs a dead-letter exchange".to_string());
        }
        if let Some(n) = self.max_length
            && n > MAX_LENGTH
        {
            return Err(format!(
                "a maximum length of {n} records is over the limit of {MAX_LENGTH}"
            ));
        }
        Ok(())
    }

    /// Whether records of this group can expire or be dead-lettered: what the
    /// coordinator's sweep looks at without a consumer asking.
    pub fn sweeps(&self) -> bool {
        self.message_ttl_ms.is_some()
            || self.dead_letter_exchange.is_some()
            || self.dead_letter_topic.is_some()
            || self.max_length.is_some()
    }

    pub fn encode(&self) -> Vec<u8> {
        let topic = self.dead_letter_topic.as_deref().unwrap_or("").as_bytes();
        let mut out = Vec::with_capacity(2 + 1 + 8 + 1 + 2 + 1 + topic.len());
        let exchange = self.message_ttl_ms.is_some() || self.dead_letter_exchange.is_some();
        let version = match (self.start, self.filter.is_empty()) {
            _ if self.max_length.is_some() => SETTINGS_VALUE_VERSION_MAX_LENGTH,
            _ if exchange => SETTINGS_VALUE_VERSION_DEAD_LETTER_EXCHANGE,
            (Some(_), _) => SETTINGS_VALUE_VERSION_START,
            (None, true) => SETTINGS_VALUE_VERSION,
            (None, false) => SETTINGS_VALUE_VERSION_FILTER,
        };
        out.put_u16(version);
        // Each optional number: a presence byte, then the value (0 when absent).
        out.put_u8(u8::from(self.lock_duration_ms.is_some()));
        out.put_u64(self.lock_duration_ms.unwrap_or(0));
        out.put_u8(u8::from(self.delivery_count_limit.is_some()));
        out.put_u16(self.delivery_count_limit.unwrap_or(0));
        out.put_u8(topic.len().min(MAX_TOPIC_NAME_BYTES) as u8);
        out.put_slice(&topic[..topic.len().min(MAX_TOPIC_NAME_BYTES)]);
        if version >= SETTINGS_VALUE_VERSION_START {
            out.put_u8(match self.start {
                None => START_UNSET,
                Some(ShareStart::Latest) => START_LATEST,
                Some(ShareStart::Earliest) => START_EARLIEST,
            });
            if self.filter.is_empty() {
                out.put_u8(0);
            }
        }
        if !self.filter.is_empty() {
            encode_filter(&self.filter, &mut out);
        }
        if version >= SETTINGS_VALUE_VERSION_DEAD_LETTER_EXCHANGE {
            out.put_u8(u8::from(self.message_ttl_ms.is_some()));
            out.put_u64(self.message_ttl_ms.unwrap_or(0));
            let short = |s: &Option<String>| {
                let b = s.as_deref().unwrap_or("").as_bytes();
                b[..b.len().min(MAX_DEAD_LETTER_EXCHANGE_BYTES)].to_vec()
            };
            let exchange = short(&self.dead_letter_exchange);
            out.put_u8(u8::from(self.dead_letter_exchange.is_some()));
            out.put_u8(exchange.len() as u8);
            out.put_slice(&exchange);
            let key = short(&self.dead_letter_routing_key);
            out.put_u8(u8::from(self.dead_letter_routing_key.is_some()));
            out.put_u8(key.len() as u8);
            out.put_slice(&key);
        }
        if version == SETTINGS_VALUE_VERSION_MAX_LENGTH {
            out.put_u8(u8::from(self.max_length.is_some()));
            out.put_u64(self.max_length.unwrap_or(0));
        }
        out
    }

    pub fn decode(mut buf: &[u8]) -> Result<GroupSettings, StateRecordError> {
        need(buf, 2 + 1 + 8 + 1 + 2 + 1, "settings")?;
        let version = buf.get_u16();
        if ![
            SETTINGS_VALUE_VERSION,
            SETTINGS_VALUE_VERSION_FILTER,
            SETTINGS_VALUE_VERSION_START,
            SETTINGS_VALUE_VERSION_DEAD_LETTER_EXCHANGE,
            SETTINGS_VALUE_VERSION_MAX_LENGTH,
        ]
        .contains(&version)
        {
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
        let mut start = None;
        let mut has_filter = version == SETTINGS_VALUE_VERSION_FILTER;
        if version >= SETTINGS_VALUE_VERSION_START {
            need(buf, 2, "start and filter condition count")?;
            start = match buf.get_u8() {
                START_UNSET => None,
                START_LATEST => Some(ShareStart::Latest),
                START_EARLIEST => Some(ShareStart::Earliest),
                other => {
                    return Err(StateRecordError::Unknown {
                        what: "start",
                        value: other,
                    });
                }
            };
            // A count of 0 is no filter; any other is the filter's own first byte.
            if buf[0] == 0 {
                buf.advance(1);
            } else {
                has_filter = true;
            }
        }
        let filter = if has_filter {
            decode_filter(&mut buf)?
        } else {
            HeaderFilter::default()
        };
        let (mut message_ttl_ms, mut dead_letter_exchange, mut dead_letter_routing_key) =
            (None, None, None);
        if version >= SETTINGS_VALUE_VERSION_DEAD_LETTER_EXCHANGE {
            need(buf, 1 + 8 + 1, "message TTL and dead-letter exchange")?;
            let ttl = (buf.get_u8() != 0, buf.get_u64());
            message_ttl_ms = ttl.0.then_some(ttl.1);
            let text = |buf: &mut &[u8], what: &'static str| {
                need(buf, 1, what)?;
                let len = buf.get_u8() as usize;
                need(buf, len, what)?;
                let text = std::str::from_utf8(&buf[..len])
                    .map_err(|_| StateRecordError::GroupNotUtf8)?
                    .to_owned();
                buf.advance(len);
                Ok::<String, StateRecordError>(text)
            };
            need(buf, 1, "dead-letter exchange presence")?;
            let has_exchange = buf.get_u8() != 0;
            let exchange = text(&mut buf, "dead-letter exchange")?;
            dead_letter_exchange = has_exchange.then_some(exchange);
            need(buf, 1, "dead-letter routing key presence")?;
            let has_key = buf.get_u8() != 0;
            let key = text(&mut buf, "dead-letter routing key")?;
            dead_letter_routing_key = has_key.then_some(key);
        }
        let mut max_length = None;
        if version == SETTINGS_VALUE_VERSION_MAX_LENGTH {
            need(buf, 1 + 8, "maximum length")?;
            let n = (buf.get_u8() != 0, buf.get_u64());
            max_length = n.0.then_some(n.1);
        }
        if !buf.is_empty() {
            return Err(StateRecordError::Trailing(buf.len()));
        }
        Ok(GroupSettings {
            lock_duration_ms: lock.0.then_some(lock.1),
            delivery_count_limit: limit.0.then_some(limit.1),
            dead_letter_topic: (!topic.is_empty()).then_some(topic),
            filter,
            start,
            message_ttl_ms,
            dead_letter_exchange,
            dead_letter_routing_key,
            max_length,
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

/// The filter after the version 0 fields: a condition count, then each condition (its
/// lengths are within the filter's limits, which [`HeaderFilter::new`] checked).
fn encode_filter(filter: &HeaderFilter, out: &mut Vec<u8>) {
    out.put_u8(filter.conditions().len() as u8);
    for c in filter.conditions() {
        out.put_u8(c.key.len() as u8);
        out.put_slice(c.key.as_bytes());
        let put_value = |out: &mut Vec<u8>, v: &str| {
            out.put_u16(v.len() as u16);
            out.put_slice(v.as_bytes());
        };
        match &c.matches {
            HeaderMatch::Equals(v) => {
                out.put_u8(MATCH_EQUALS);
                put_value(out, v);
            }
            HeaderMatch::Prefix(v) => {
                out.put_u8(MATCH_PREFIX);
                put_value(out, v);
            }
            HeaderMatch::AnyOf(vs) => {
                out.put_u8(MATCH_ANY_OF);
                out.put_u8(vs.len() as u8);
                for v in vs {
                    put_value(out, v);
                }
            }
        }
    }
}

fn decode_filter(buf: &mut &[u8]) -> Result<HeaderFilter, StateRecordError> {
    need(buf, 1, "filter condition count")?;
    let count = buf.get_u8() as usize;
    if count == 0 || count > MAX_FILTER_CONDITIONS {
        return Err(StateRecordError::Filter(format!(
            "{count} conditions (1 to {MAX_FILTER_CONDITIONS})"
        )));
    }
    let mut conditions = Vec::with_capacity(count);
    for _ in 0..count {
        let key = read_text(buf, 1, MAX_FILTER_KEY_BYTES, "filter header key")?;
        need(buf, 1, "filter condition kind")?;
        let matches = match buf.get_u8() {
            MATCH_EQUALS => HeaderMatch::Equals(read_value(buf)?),
            MATCH_PREFIX => HeaderMatch::Prefix(read_value(buf)?),
            MATCH_ANY_OF => {
                need(buf, 1, "filter value count")?;
                let n = buf.get_u8() as usize;
                if n == 0 || n > MAX_FILTER_VALUES {
                    return Err(StateRecordError::Filter(format!(
                        "an any-of condition of {n} values (1 to {MAX_FILTER_VALUES})"
                    )));
                }
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(read_value(buf)?);
                }
                HeaderMatch::AnyOf(values)
            }
            other => {
                return Err(StateRecordError::Unknown {
                    what: "filter condition kind",
                    value: other,
                });
            }
        };
        conditions.push(HeaderCondition { key, matches });
    }
    HeaderFilter::new(conditions).map_err(|e| StateRecordError::Filter(e.to_string()))
}

fn read_value(buf: &mut &[u8]) -> Result<String, StateRecordError> {
    read_text(buf, 2, MAX_FILTER_VALUE_BYTES, "filter value")
}

/// A string of at most `max` bytes after its `len_bytes`-byte (1 or 2) length.
fn read_text(
    buf: &mut &[u8],
    len_bytes: usize,
    max: usize,
    what: &'static str,
) -> Result<String, StateRecordError> {
    need(buf, len_bytes, what)?;
    let len = if len_bytes == 1 {
        buf.get_u8() as usize
    } else {
        buf.get_u16() as usize
    };
    if len > max {
        return Err(StateRecordError::Filter(format!(
            "a {what} of {len} bytes (at most {max})"
        )));
    }
    need(buf, len, what)?;
    let text = std::str::from_utf8(&buf[..len])
        .map_err(|_| StateRecordError::Filter(format!("a {what} that is not UTF-8")))?
        .to_owned();
    buf.advance(len);
    Ok(text)
}

fn need(buf: &[u8], n: usize, what: &'static str) -> Result<(), StateRecordError> {
    if buf.len() < n {
        return Err(StateRecordError::Truncated(what));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::golden_hex;

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
            filter: HeaderFilter::default(),
            start: None,
            message_ttl_ms: None,
            dead_letter_exchange: None,
            dead_letter_routing_key: None,
            max_length: None,
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
    fn a_dead_letter_exchange_and_ttl_are_written_as_version_3_with_or_without_a_filter() {
        let settings = GroupSettings {
            delivery_count_limit: Some(3),
            start: Some(ShareStart::Earliest),
            message_ttl_ms: Some(1_000),
            dead_letter_exchange: Some("dlx".into()),
            dead_letter_routing_key: Some("work".into()),
            ..GroupSettings::default()
        };
        let bytes = settings.encode();
        assert_eq!(
            bytes,
            golden_hex(
                "0003 00 0000000000000000 01 0003 00 02 00 \
                 01 00000000000003e8 01 03 646c78 01 04 776f726b"
            )
        );
        assert_eq!(GroupSettings::decode(&bytes).unwrap(), settings);
        // The default exchange and an empty key are kept apart from none; a filter comes
        // before the new fields.
        let settings = GroupSettings {
            dead_letter_exchange: Some(String::new()),
            dead_letter_routing_key: Some(String::new()),
            filter: email_or_sms_in_eu(),
            ..GroupSettings::default()
        };
        assert_eq!(GroupSettings::decode(&settings.encode()).unwrap(), settings);
        // Cut anywhere, it is refused, never misread.
        let bytes = settings.encode();
        for len in 0..bytes.len() {
            assert!(GroupSettings::decode(&bytes[..len]).is_err(), "{len}");
        }
    }

    #[test]
    fn a_maximum_length_is_written_as_version_4_after_the_version_3_fields() {
        let settings = GroupSettings {
            dead_letter_exchange: Some("dlx".into()),
            max_length: Some(3),
            ..GroupSettings::default()
        };
        let bytes = settings.encode();
        assert_eq!(
            bytes,
            golden_hex(
                "0004 00 0000000000000000 00 0000 00 00 00 \
                 00 0000000000000000 01 03 646c78 00 00 \
                 01 0000000000000003"
            )
        );
        assert_eq!(GroupSettings::decode(&bytes).unwrap(), settings);
        assert!(settings.sweeps());
        // Alone, without a dead-letter exchange, it is a version 4 record too.
        let alone = GroupSettings {
            max_length: Some(0),
            ..GroupSettings::default()
        };
        assert_eq!(GroupSettings::decode(&alone.encode()).unwrap(), alone);
        // Cut short, it is refused rather than read as no bound.
        let bytes = alone.encode();
        assert!(GroupSettings::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn a_routing_key_without_an_exchange_or_both_targets_are_refused() {
        let key_only = GroupSettings {
            dead_letter_routing_key: Some("k".into()),
            ..GroupSettings::default()
        };
        assert!(
            key_only
                .validate()
                .unwrap_err()
                .contains("needs a dead-letter exchange")
        );
        let both = GroupSettings {
            dead_letter_topic: Some("dlq".into()),
            dead_letter_exchange: Some("dlx".into()),
            ..GroupSettings::default()
        };
        assert!(both.validate().unwrap_err().contains("not both"));
    }

    fn email_or_sms_in_eu() -> HeaderFilter {
        HeaderFilter::new(vec![
            HeaderCondition {
                key: "type".into(),
                matches: HeaderMatch::AnyOf(vec!["email".into(), "sms".into()]),
            },
            HeaderCondition {
                key: "region".into(),
                matches: HeaderMatch::Prefix("eu".into()),
            },
            HeaderCondition {
                key: "v".into(),
                matches: HeaderMatch::Equals("2".into()),
            },
        ])
        .unwrap()
    }

    #[test]
    fn a_filter_is_written_as_version_1_and_version_0_still_reads() {
        let settings = GroupSettings {
            filter: email_or_sms_in_eu(),
            ..GroupSettings::default()
        };
        let bytes = settings.encode();
        assert_eq!(
            bytes,
            golden_hex(
                "0001 00 0000000000000000 00 0000 00 \
                 03 04 74797065 02 02 0005 656d61696c 0003 736d73 \
                 06 726567696f6e 01 0002 6575 \
                 01 76 00 0001 32"
            )
        );
        assert_eq!(GroupSettings::decode(&bytes).unwrap(), settings);
        // Without a filter the bytes are version 0's, as brokers before filters wrote them.
        let old = golden_hex("0000 01 000000000000ea60 00 0000 03 646c71");
        let read = GroupSettings::decode(&old).unwrap();
        assert!(read.filter.is_empty());
        assert_eq!(read.encode(), old);
    }

    #[test]
    fn where_a_group_starts_is_written_as_version_2_with_or_without_a_filter() {
        let earliest = GroupSettings {
            start: Some(ShareStart::Earliest),
            ..GroupSettings::default()
        };
        let bytes = earliest.encode();
        assert_eq!(
            bytes,
            golden_hex("0002 00 0000000000000000 00 0000 00 02 00")
        );
        assert_eq!(GroupSettings::decode(&bytes).unwrap(), earliest);
        let both = GroupSettings {
            start: Some(ShareStart::Latest),
            filter: email_or_sms_in_eu(),
            ..GroupSettings::default()
        };
        let bytes = both.encode();
        assert_eq!(
            &bytes[..17],
            &golden_hex("0002 00 0000000000000000 00 0000 00 01 03")[..]
        );
        assert_eq!(GroupSettings::decode(&bytes).unwrap(), both);
        for cut in 0..bytes.len() {
            assert!(
                GroupSettings::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn damaged_settings_are_refused_not_misread() {
        let filtered = GroupSettings {
            filter: email_or_sms_in_eu(),
            ..GroupSettings::default()
        };
        for bytes in [GroupSettings::default().encode(), filtered.encode()] {
            for cut in 0..bytes.len() {
                assert!(
                    GroupSettings::decode(&bytes[..cut]).is_err(),
                    "cut at {cut}"
                );
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(GroupSettings::decode(&long).is_err());
        }
        // Version 1 with no condition, an unknown kind, too many values: refused.
        let v1 = |tail: &str| golden_hex(&format!("0001 00 0000000000000000 00 0000 00 {tail}"));
        assert!(GroupSettings::decode(&v1("00")).is_err());
        assert!(GroupSettings::decode(&v1("01 01 76 07 0000")).is_err());
        assert!(GroupSettings::decode(&v1("01 01 76 02 21")).is_err());
        assert!(GroupSettings::decode(&v1("11")).is_err());
        assert!(GroupSettings::decode(&golden_hex("0003 00 0000000000000000 00 0000 00")).is_err());
        // Version 2 with an unknown start, or cut before its filter count: refused.
        let v2 = |tail: &str| golden_hex(&format!("0002 00 0000000000000000 00 0000 00 {tail}"));
        assert!(GroupSettings::decode(&v2("03 00")).is_err());
        assert!(GroupSettings::decode(&v2("02")).is_err());
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
