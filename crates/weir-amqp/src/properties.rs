//! A message's AMQP properties as record headers and back (docs/amqp.md § Message
//! properties as record headers): what a pika publisher sets, a Kafka consumer reads as
//! `amqp-*` headers, and a Kafka producer's headers reach pika as AMQP headers.

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use bytes::Bytes;
use weir_batch::Header;

use crate::vhost::Vhost;
use weir_broker::shares::{
    DLQ_EXCHANGE, DLQ_GROUP, DLQ_ORIGINAL_EXPIRATION, DLQ_REASON, DLQ_ROUTING_KEY,
    DLQ_SOURCE_TOPIC, DLQ_TIME, EXPIRE_AT_HEADER,
};

pub const CONTENT_TYPE: &str = "amqp-content-type";
pub const CONTENT_ENCODING: &str = "amqp-content-encoding";
pub const DELIVERY_MODE: &str = "amqp-delivery-mode";
pub const PRIORITY: &str = "amqp-priority";
pub const CORRELATION_ID: &str = "amqp-correlation-id";
pub const REPLY_TO: &str = "amqp-reply-to";
pub const EXPIRATION: &str = "amqp-expiration";
pub const MESSAGE_ID: &str = "amqp-message-id";
pub const TIMESTAMP: &str = "amqp-timestamp";
pub const TYPE: &str = "amqp-type";
pub const USER_ID: &str = "amqp-user-id";
pub const APP_ID: &str = "amqp-app-id";
pub const ROUTING_KEY: &str = "amqp-routing-key";
/// The exchange a message was published to (absent for the default exchange).
pub const EXCHANGE: &str = "amqp-exchange";
/// The `headers` table in AMQP's own encoding, kept when some value is not a string, so
/// its field types come back on delivery (Celery reads integers and arrays from its
/// headers); the text form of each entry is a record header too, for Kafka consumers.
pub const HEADERS_TABLE: &str = "amqp-headers-table";
/// Most `F`/`A` octets a stored headers table may hold to be decoded on delivery (the
/// decoder recurses, and a record produced by a Kafka client could nest deeper than a
/// frame may): one with more is delivered with its entries' text forms.
const MAX_STORED_TABLE_NESTING_OCTETS: usize = 64;

/// Longest AMQP short string (property values and header names).
const MAX_SHORT_STRING_BYTES: usize = 255;
/// What every header of a dead-letter copy starts with.
const DLQ_PREFIX: &str = "weir-dlq-";
/// Most `x-death` entries a delivery carries (one per queue and reason, as RabbitMQ
/// keeps them; a message dead-lettered round a cycle of more queues than this shows the
/// latest).
pub const MAX_X_DEATH_ENTRIES: usize = 64;

/// The `weir-expire-at` header (epoch milliseconds) of a message published at `now_ms`
/// with `properties`, if its `expiration` asks for one; the reason, in RabbitMQ's words,
/// when the expiration is not a non-negative integer of milliseconds.
pub fn expire_at(properties: &BasicProperties, now_ms: u64) -> Result<Option<Header>, String> {
    let Some(expiration) = properties.expiration() else {
        return Ok(None);
    };
    let text = expiration.as_str();
    let ms: u64 = match text.parse::<i64>() {
        Ok(ms) if ms < 0 => {
            return Err(format!(
                "invalid expiration '{text}': {{value_negative,{ms}}}"
            ));
        }
        Ok(ms) => ms as u64,
        Err(_) => {
            return Err(format!(
                "invalid expiration '{text}': {{not_a_number,<<\"{text}\">>}}"
            ));
        }
    };
    Ok(Some(Header {
        key: EXPIRE_AT_HEADER.to_owned(),
        value: Some(Bytes::from(now_ms.saturating_add(ms).to_string())),
    }))
}

/// Makes a dead-letter copy's headers those of a message dead-lettered through
/// `exchange`, as RabbitMQ does: the exchange and routing key it had are kept in
/// `weir-dlq-exchange` and `weir-dlq-routing-key` (what `x-death` shows), its per-message
/// `expiration` is removed (kept as `weir-dlq-original-expiration`) so it does not expire
/// again at once, and it is published to `exchange` with `routing_key`, or its own.
/// Returns the routing key to route it by. `queue` is the queue it leaves (its routing
/// key when the record has none: a Kafka client produced it).
pub fn dead_letter_headers(
    headers: &mut Vec<Header>,
    exchange: &str,
    routing_key: Option<&str>,
    queue: &str,
) -> String {
    let last = |headers: &[Header], key: &str| {
        headers
            .iter()
            .rev()
            .find(|h| h.key == key)
            .and_then(|h| h.value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let old_exchange = last(headers, EXCHANGE).unwrap_or_default();
    let old_key = last(headers, ROUTING_KEY).unwrap_or_else(|| queue.to_owned());
    let old_expiration = last(headers, EXPIRATION);
    headers.retain(|h| {
        ![EXCHANGE, ROUTING_KEY, EXPIRATION, EXPIRE_AT_HEADER].contains(&h.key.as_str())
    });
    let new_key = routing_key.map_or_else(|| old_key.clone(), str::to_owned);
    let mut put = |key: &str, value: String| {
        headers.push(Header {
            key: key.to_owned(),
            value: Some(Bytes::from(value)),
        })
    };
    put(DLQ_EXCHANGE, old_exchange);
    put(DLQ_ROUTING_KEY, old_key);
    if let Some(expiration) = old_expiration {
        put(DLQ_ORIGINAL_EXPIRATION, expiration);
    }
    put(ROUTING_KEY, new_key.clone());
    if !exchange.is_empty() {
        put(EXCHANGE, exchange.to_owned());
    }
    new_key
}

/// One dead-lettering of a message, as its `weir-dlq-*` headers tell it.
#[derive(Debug, Default, Clone)]
struct Death {
    queue: String,
    reason: &'static str,
    time_s: u64,
    exchange: String,
    routing_key: Option<String>,
    original_expiration: Option<String>,
}

/// RabbitMQ's name for why a message was dead-lettered, from Weir's.
fn death_reason(weir: &str) -> &'static str {
    match weir {
        "expired" => "expired",
        "maxlen" => "maxlen",
        "delivery-limit" | "lock-expired-at-limit" => "delivery_limit",
        _ => "rejected",
    }
}

/// The deaths the headers record, oldest first: each dead-letter copy appends its
/// `weir-dlq-*` headers, starting with `weir-dlq-source-topic`.
fn deaths(headers: &[Header]) -> Vec<Death> {
    let mut out: Vec<Death> = Vec::new();
    for h in headers {
        let text = || String::from_utf8_lossy(h.value.as_deref().unwrap_or_default()).into_owned();
        if h.key == DLQ_SOURCE_TOPIC {
            out.push(Death {
                queue: text(),
                reason: "rejected",
                ..Death::default()
            });
            continue;
        }
        let Some(death) = out.last_mut() else {
            continue;
        };
        match h.key.as_str() {
            DLQ_GROUP => death.queue = text(),
            DLQ_REASON => death.reason = death_reason(&text()),
            DLQ_TIME => death.time_s = text().parse::<u64>().unwrap_or(0) / 1000,
            DLQ_EXCHANGE => death.exchange = text(),
            DLQ_ROUTING_KEY => death.routing_key = Some(text()),
            DLQ_ORIGINAL_EXPIRATION => death.original_expiration = Some(text()),
            _ => {}
        }
    }
    out
}

/// RabbitMQ's `x-death` headers from `deaths` (oldest first), into `table`: `x-death`,
/// one entry per queue and reason, the latest first, with its count; and
/// `x-first-death-*` and `x-last-death-*`.
fn put_x_death(deaths: &[Death], table: &mut FieldTable) {
    let (Some(first), Some(last)) = (deaths.first(), deaths.last()) else {
        return;
    };
    let long = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
    let mut entries: Vec<(Death, i64)> = Vec::new();
    for death in deaths.iter().rev() {
        let full = entries.len() >= MAX_X_DEATH_ENTRIES;
        match entries
            .iter_mut()
            .find(|(d, _)| d.queue == death.queue && d.reason == death.reason)
        {
            Some((_, count)) => *count += 1,
            None if !full => entries.push((death.clone(), 1)),
            None => {}
        }
    }
    let array: Vec<AMQPValue> = entries
        .into_iter()
        .map(|(d, count)| {
            let mut entry = FieldTable::default();
            entry.insert("count".into(), AMQPValue::LongLongInt(count));
            entry.insert("reason".into(), long(d.reason));
            entry.insert("queue".into(), long(&d.queue));
            entry.insert("time".into(), AMQPValue::Timestamp(d.time_s));
            entry.insert("exchange".into(), long(&d.exchange));
            let keys: Vec<AMQPValue> = d.routing_key.iter().map(|k| long(k)).collect();
            entry.insert(
                "routing-keys".into(),
                AMQPValue::FieldArray(FieldArray::from(keys)),
            );
            if let Some(e) = &d.original_expiration {
                entry.insert("original-expiration".into(), long(e));
            }
            AMQPValue::FieldTable(entry)
        })
        .collect();
    table.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(array)),
    );
    for (prefix, d) in [("x-first-death", first), ("x-last-death", last)] {
        table.insert(format!("{prefix}-queue").into(), long(&d.queue));
        table.insert(format!("{prefix}-reason").into(), long(d.reason));
        table.insert(format!("{prefix}-exchange").into(), long(&d.exchange));
    }
}

/// The record headers of a message published to `exchange` with `properties` and
/// `routing_key`.
pub fn to_headers(properties: &BasicProperties, exchange: &str, routing_key: &str) -> Vec<Header> {
    let mut headers = Vec::new();
    let mut put = |key: &str, value: String| {
        headers.push(Header {
            key: key.to_owned(),
            value: Some(Bytes::from(value)),
        })
    };
    let short = |s: &Option<ShortString>| s.as_ref().map(|s| s.as_str().to_owned());
    if let Some(v) = short(properties.content_type()) {
        put(CONTENT_TYPE, v);
    }
    if let Some(v) = short(properties.content_encoding()) {
        put(CONTENT_ENCODING, v);
    }
    if let Some(v) = properties.delivery_mode() {
        put(DELIVERY_MODE, v.to_string());
    }
    if let Some(v) = properties.priority() {
        put(PRIORITY, v.to_string());
    }
    if let Some(v) = short(properties.correlation_id()) {
        put(CORRELATION_ID, v);
    }
    if let Some(v) = short(properties.reply_to()) {
        put(REPLY_TO, v);
    }
    if let Some(v) = short(properties.expiration()) {
        put(EXPIRATION, v);
    }
    if let Some(v) = short(properties.message_id()) {
        put(MESSAGE_ID, v);
    }
    if let Some(v) = properties.timestamp() {
        put(TIMESTAMP, v.to_string());
    }
    if let Some(v) = short(properties.kind()) {
        put(TYPE, v);
    }
    if let Some(v) = short(properties.user_id()) {
        put(USER_ID, v);
    }
    if let Some(v) = short(properties.app_id()) {
        put(APP_ID, v);
    }
    put(ROUTING_KEY, routing_key.to_owned());
    if !exchange.is_empty() {
        put(EXCHANGE, exchange.to_owned());
    }
    if let Some(table) = properties.headers() {
        for (name, value) in table {
            headers.push(Header {
                key: name.as_str().to_owned(),
                value: value_bytes(value),
            });
        }
        let typed = table
            .into_iter()
            .any(|(_, v)| !matches!(v, AMQPValue::LongString(_) | AMQPValue::ShortString(_)));
        if typed && let Some(bytes) = encode_table(table) {
            headers.push(Header {
                key: HEADERS_TABLE.to_owned(),
                value: Some(Bytes::from(bytes)),
            });
        }
    }
    headers
}

/// A field table in AMQP's encoding (a 4-byte length, then the entries); `None` for one
/// the encoder refuses (it came from a decoded frame, so this does not happen).
fn encode_table(table: &FieldTable) -> Option<Vec<u8>> {
    use amq_protocol::frame::WriteContext;
    amq_protocol::types::generation::gen_field_table(table)(WriteContext::from(Vec::new()))
        .ok()
        .map(|ctx| ctx.into_inner().0)
}

/// A stored headers table, if it decodes and nests shallowly enough to decode here.
fn decode_table(bytes: &[u8]) -> Option<FieldTable> {
    let nesting = bytes.iter().filter(|&&b| b == b'F' || b == b'A').count();
    if nesting > MAX_STORED_TABLE_NESTING_OCTETS {
        return None;
    }
    match amq_protocol::types::parsing::parse_field_table(bytes) {
        Ok((rest, table)) => rest.is_empty().then_some(table),
        Err(_) => None,
    }
}

/// The `headers` property's entries as text (name, value), what a headers exchange
/// matches on: strings as they are, other field types as the text they are stored as.
pub fn header_texts(properties: &BasicProperties) -> Vec<(String, Option<String>)> {
    let Some(table) = properties.headers() else {
        return Vec::new();
    };
    table
        .into_iter()
        .map(|(name, value)| {
            let text = value_bytes(value).map(|b| String::from_utf8_lossy(&b).into_owned());
            (name.as_str().to_owned(), text)
        })
        .collect()
}

/// An argument table (`exchange.declare`, `queue.bind`) as text: each value as a message
/// header's would be, no value as the empty text.
pub fn argument_texts(arguments: &FieldTable) -> std::collections::BTreeMap<String, String> {
    arguments
        .into_iter()
        .map(|(name, value)| {
            let text = value_bytes(value)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            (name.as_str().to_owned(), text)
        })
        .collect()
}

/// A header value's bytes: strings as they are, numbers and booleans as text, no value
/// as a null header; other field types as the text of their value.
fn value_bytes(value: &AMQPValue) -> Option<Bytes> {
    Some(Bytes::from(match value {
        AMQPValue::LongString(s) => return Some(Bytes::copy_from_slice(s.as_bytes())),
        AMQPValue::ShortString(s) => return Some(Bytes::copy_from_slice(s.as_str().as_bytes())),
        AMQPValue::ByteArray(b) => return Some(Bytes::copy_from_slice(b.as_slice())),
        AMQPValue::Void => return None,
        AMQPValue::Boolean(v) => v.to_string(),
        AMQPValue::ShortShortInt(v) => v.to_string(),
        AMQPValue::ShortShortUInt(v) => v.to_string(),
        AMQPValue::ShortInt(v) => v.to_string(),
        AMQPValue::ShortUInt(v) => v.to_string(),
        AMQPValue::LongInt(v) => v.to_string(),
        AMQPValue::LongUInt(v) => v.to_string(),
        AMQPValue::LongLongInt(v) => v.to_string(),
        AMQPValue::Timestamp(v) => v.to_string(),
        AMQPValue::Float(v) => v.to_string(),
        AMQPValue::Double(v) => v.to_string(),
        other => format!("{other:?}"),
    }))
}

/// Where a delivered message was published: its exchange (`""`, the default one) and
/// routing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub exchange: String,
    pub routing_key: String,
}

/// A delivered record's properties, exchange and routing key (the default exchange and
/// `queue` when it has none: a record a Kafka client produced), with the names of queues
/// and exchanges (`queue`, the exchange, `x-death`'s) as `vhost` knows them. Values that
/// do not fit a short string are left out.
pub fn from_headers(
    headers: &[Header],
    queue: &str,
    vhost: &Vhost,
) -> (BasicProperties, Published) {
    let mut properties = BasicProperties::default();
    // The typed table a publisher's headers were kept as, if any: its entries win over
    // their text forms.
    let typed = headers
        .iter()
        .rev()
        .find(|h| h.key == HEADERS_TABLE)
        .and_then(|h| decode_table(h.value.as_deref()?));
    let mut table = FieldTable::default();
    let mut routing_key = vhost.local(queue).to_owned();
    let mut exchange = String::new();
    for header in headers {
        let value = header.value.as_deref().unwrap_or_default();
        let text = std::str::from_utf8(value).ok();
        let short = || {
            text.filter(|t| t.len() <= MAX_SHORT_STRING_BYTES)
                .map(ShortString::from)
        };
        let number = || text.and_then(|t| t.parse::<u64>().ok());
        let set = |p: BasicProperties, f: fn(BasicProperties, ShortString) -> BasicProperties| {
            match short() {
                Some(v) => f(p, v),
                None => p,
            }
        };
        properties = match header.key.as_str() {
            CONTENT_TYPE => set(properties, BasicProperties::with_content_type),
            CONTENT_ENCODING => set(properties, BasicProperties::with_content_encoding),
            CORRELATION_ID => set(properties, BasicProperties::with_correlation_id),
            REPLY_TO => set(properties, BasicProperties::with_reply_to),
            EXPIRATION => set(properties, BasicProperties::with_expiration),
            MESSAGE_ID => set(properties, BasicProperties::with_message_id),
            TYPE => set(properties, BasicProperties::with_type),
            USER_ID => set(properties, BasicProperties::with_user_id),
            APP_ID => set(properties, BasicProperties::with_app_id),
            DELIVERY_MODE => match number().and_then(|n| u8::try_from(n).ok()) {
                Some(n) => properties.with_delivery_mode(n),
                None => properties,
            },
            PRIORITY => match number().and_then(|n| u8::try_from(n).ok()) {
                Some(n) => properties.with_priority(n),
                None => properties,
            },
            TIMESTAMP => match number() {
                Some(n) => properties.with_timestamp(n),
                None => properties,
            },
            ROUTING_KEY => {
                if let Some(key) = text.filter(|t| t.len() <= MAX_SHORT_STRING_BYTES) {
                    routing_key = key.to_owned();
                }
                properties
            }
            EXCHANGE => {
                if let Some(name) = text.filter(|t| t.len() <= MAX_SHORT_STRING_BYTES) {
                    exchange = vhost.local_exchange(name).to_owned();
                }
                properties
            }
            // Told as `x-death` below; the expiry is the `expiration` property's.
            name if name.starts_with(DLQ_PREFIX) || name == EXPIRE_AT_HEADER => properties,
            HEADERS_TABLE => properties,
            name if typed.as_ref().is_some_and(|t| t.contains_key(name)) => properties,
            name if name.len() <= MAX_SHORT_STRING_BYTES => {
                let value = match &header.value {
                    Some(v) => AMQPValue::LongString(LongString::from(v.to_vec())),
                    None => AMQPValue::Void,
                };
                table.insert(ShortString::from(name), value);
                properties
            }
            _ => properties,
        };
    }
    if let Some(typed) = typed {
        for (name, value) in &typed {
            table.insert(name.clone(), value.clone());
        }
    }
    let mut deaths = deaths(headers);
    for death in &mut deaths {
        death.queue = vhost.local(&death.queue).to_owned();
        death.exchange = vhost.local_exchange(&death.exchange).to_owned();
    }
    put_x_death(&deaths, &mut table);
    if !table.inner().is_empty() {
        properties = properties.with_headers(table);
    }
    (
        properties,
        Published {
            exchange,
            routing_key,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_survive_the_round_trip_through_record_headers() {
        let mut table = FieldTable::default();
        table.insert("task".into(), AMQPValue::LongString("resize".into()));
        table.insert("retries".into(), AMQPValue::LongInt(3));
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_correlation_id("c-1".into())
            .with_reply_to("amq.gen-reply".into())
            .with_message_id("m-1".into())
            .with_timestamp(1_700_000_000)
            .with_headers(table);
        let headers = to_headers(&properties, "", "tasks");
        let keys: Vec<&str> = headers.iter().map(|h| h.key.as_str()).collect();
        assert!(
            keys.contains(&"amqp-content-type") && keys.contains(&"retries"),
            "{keys:?}"
        );
        let (back, published) = from_headers(&headers, "other", &Vhost::root());
        assert_eq!(published.routing_key, "tasks");
        assert_eq!(published.exchange, "");
        let (_, published) =
            from_headers(&to_headers(&properties, "logs", "k"), "q", &Vhost::root());
        assert_eq!(published.exchange, "logs");
        assert_eq!(published.routing_key, "k");
        let texts = header_texts(&properties);
        assert!(
            texts.contains(&("retries".to_owned(), Some("3".to_owned()))),
            "{texts:?}"
        );
        assert_eq!(back.content_type(), properties.content_type());
        assert_eq!(back.delivery_mode(), &Some(2));
        assert_eq!(back.correlation_id(), properties.correlation_id());
        assert_eq!(back.reply_to(), properties.reply_to());
        assert_eq!(back.timestamp(), &Some(1_700_000_000));
        let table = back.headers().as_ref().unwrap();
        // Kept typed beside its text form: the integer comes back an integer.
        assert_eq!(
            table.inner().get(&ShortString::from("retries")),
            Some(&AMQPValue::LongInt(3))
        );
        // Without the typed table (a Kafka client copied only the text headers), a
        // header is bytes: the integer comes back as its text.
        let text_only: Vec<Header> = headers
            .into_iter()
            .filter(|h| h.key != HEADERS_TABLE)
            .collect();
        let (back, _) = from_headers(&text_only, "other", &Vhost::root());
        assert_eq!(
            back.headers()
                .as_ref()
                .unwrap()
                .inner()
                .get(&ShortString::from("retries")),
            Some(&AMQPValue::LongString("3".into()))
        );
    }

    #[test]
    fn typed_header_values_come_back_with_their_types() {
        let mut table = FieldTable::default();
        table.insert("retries".into(), AMQPValue::LongInt(2));
        table.insert(
            "timelimit".into(),
            AMQPValue::FieldArray(vec![AMQPValue::Void, AMQPValue::Void].into()),
        );
        table.insert("task".into(), AMQPValue::LongString("add".into()));
        let properties = BasicProperties::default().with_headers(table.clone());
        let headers = to_headers(&properties, "", "celery");
        // Kafka consumers still see each entry as text.
        assert!(
            headers
                .iter()
                .any(|h| h.key == "retries" && h.value.as_deref() == Some(&b"2"[..]))
        );
        let (back, _) = from_headers(&headers, "celery", &Vhost::root());
        assert_eq!(back.headers().as_ref(), Some(&table));
        // A stored table nested too deep is not decoded: the text forms come instead.
        let deep = vec![b'F'; 100];
        assert!(decode_table(&deep).is_none());
    }

    #[test]
    fn x_death_counts_each_queue_and_reason_once_latest_first() {
        let h = |k: &str, v: &str| Header {
            key: k.to_owned(),
            value: Some(Bytes::from(v.to_owned())),
        };
        // Published to `tasks` with key `t`; expired from `delay` twice (a retry loop
        // through the default exchange), rejected from `work` once, in that order.
        let mut headers = to_headers(&BasicProperties::default(), "tasks", "t");
        let mut die = |queue: &str, reason: &str, at_ms: &str, dlx: &str| {
            headers.extend([
                h(DLQ_SOURCE_TOPIC, queue),
                h(DLQ_GROUP, queue),
                h(DLQ_REASON, reason),
                h(DLQ_TIME, at_ms),
            ]);
            dead_letter_headers(&mut headers, dlx, Some("work"), queue);
        };
        die("delay", "expired", "1700000000000", "");
        die("work", "rejected", "1700000001000", "");
        die("delay", "expired", "1700000002000", "");
        let (properties, published) = from_headers(&headers, "x", &Vhost::root());
        assert_eq!(published.routing_key, "work");
        let table = properties.headers().as_ref().unwrap().inner();
        let Some(AMQPValue::FieldArray(deaths)) = table.get(&ShortString::from("x-death")) else {
            panic!("no x-death in {table:?}");
        };
        let field = |entry: &AMQPValue, name: &str| match entry {
            AMQPValue::FieldTable(t) => t.inner().get(&ShortString::from(name)).cloned(),
            _ => None,
        };
        let long = |s: &str| Some(AMQPValue::LongString(s.into()));
        let entries = deaths.as_slice();
        assert_eq!(entries.len(), 2);
        assert_eq!(field(&entries[0], "queue"), long("delay"));
        assert_eq!(field(&entries[0], "count"), Some(AMQPValue::LongLongInt(2)));
        assert_eq!(
            field(&entries[0], "time"),
            Some(AMQPValue::Timestamp(1_700_000_002))
        );
        assert_eq!(field(&entries[1], "reason"), long("rejected"));
        // The first death was of a message published to `tasks` with key `t`.
        assert_eq!(
            table.get(&ShortString::from("x-first-death-exchange")),
            long("tasks").as_ref()
        );
        assert_eq!(
            table.get(&ShortString::from("x-last-death-queue")),
            long("delay").as_ref()
        );
        // The weir-dlq-* headers themselves are not AMQP headers.
        assert!(!table.keys().any(|k| k.as_str().starts_with("weir-")));
    }

    #[test]
    fn a_vhost_is_shown_its_own_names() {
        let h = |k: &str, v: &str| Header {
            key: k.to_owned(),
            value: Some(Bytes::from(v.to_owned())),
        };
        let sales = Vhost::named("sales").unwrap();
        let mut headers = to_headers(&BasicProperties::default(), "sales.tasks", "t");
        headers.extend([
            h(DLQ_SOURCE_TOPIC, "sales.delay"),
            h(DLQ_GROUP, "sales.delay"),
            h(DLQ_REASON, "expired"),
        ]);
        dead_letter_headers(
            &mut headers,
            "sales.amq.default",
            Some("work"),
            "sales.delay",
        );
        let (properties, published) = from_headers(&headers, "sales.work", &sales);
        assert_eq!(published.exchange, "");
        assert_eq!(published.routing_key, "work");
        let table = properties.headers().as_ref().unwrap().inner();
        let long = |s: &str| Some(AMQPValue::LongString(s.into()));
        assert_eq!(
            table.get(&ShortString::from("x-first-death-queue")),
            long("delay").as_ref()
        );
        assert_eq!(
            table.get(&ShortString::from("x-first-death-exchange")),
            long("tasks").as_ref()
        );
        // A record without a routing key is routed by its queue's name in the vhost.
        let (_, published) = from_headers(&[], "sales.orders", &sales);
        assert_eq!(published.routing_key, "orders");
    }

    #[test]
    fn a_kafka_record_without_amqp_headers_is_routed_by_its_queue() {
        let headers = vec![Header {
            key: "trace".into(),
            value: Some(Bytes::from_static(b"abc")),
        }];
        let (properties, published) = from_headers(&headers, "orders", &Vhost::root());
        assert_eq!(published.routing_key, "orders");
        assert!(properties.headers().as_ref().unwrap().contains_key("trace"));
    }
}
