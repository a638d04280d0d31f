//! Dead-letter copies: an archived record of a group that names a dead-letter topic is
//! copied there (or, for an AMQP queue with a dead-letter exchange, routed through that
//! exchange), with headers saying where it came from and why, once its archiving is
//! durable and before it counts as finished (docs/queues.md § Delivery limit). The copy
//! is produced through a
//! [`DeadLetterSink`] the server provides (the topic's partition may be led by another
//! broker); until it is acknowledged the record stays archived-pending and holds the
//! window's start, and a failover copies it again: a duplicate in the dead-letter topic,
//! never a gap.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use weir_log::{DecodedRecord, Header, Record};

use super::partition::Archived;

/// Header naming the topic a dead letter came from.
pub const DLQ_SOURCE_TOPIC: &str = "weir-dlq-source-topic";
/// Header naming its partition.
pub const DLQ_SOURCE_PARTITION: &str = "weir-dlq-source-partition";
/// Header naming its offset.
pub const DLQ_SOURCE_OFFSET: &str = "weir-dlq-source-offset";
/// Header naming the share group that archived it.
pub const DLQ_GROUP: &str = "weir-dlq-group";
/// Header giving how many times it was delivered.
pub const DLQ_DELIVERY_COUNT: &str = "weir-dlq-delivery-count";
/// Header giving why it was archived (`rejected`, `delivery-limit`,
/// `lock-expired-at-limit`, `expired`, or `unknown` when archived before a failover).
pub const DLQ_REASON: &str = "weir-dlq-reason";
/// Header giving when the copy was made (epoch milliseconds).
pub const DLQ_TIME: &str = "weir-dlq-time";
/// Header giving the exchange a message routed through a dead-letter exchange was
/// published to before (empty: the default exchange).
pub const DLQ_EXCHANGE: &str = "weir-dlq-exchange";
/// Header giving its routing key before.
pub const DLQ_ROUTING_KEY: &str = "weir-dlq-routing-key";
/// Header giving its per-message expiration before (dead-lettering removes it, as
/// RabbitMQ does, so the copy does not expire again at once).
pub const DLQ_ORIGINAL_EXPIRATION: &str = "weir-dlq-original-expiration";
/// Every header a dead-letter copy gets (a redrive removes them).
pub const DLQ_HEADERS: [&str; 10] = [
    DLQ_SOURCE_TOPIC,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_OFFSET,
    DLQ_GROUP,
    DLQ_DELIVERY_COUNT,
    DLQ_REASON,
    DLQ_TIME,
    DLQ_EXCHANGE,
    DLQ_ROUTING_KEY,
    DLQ_ORIGINAL_EXPIRATION,
];
/// Most records one pass copies from one share-partition (one produce request).
pub const MAX_DEAD_LETTERS_PER_PASS: usize = 500;

/// What a [`DeadLetterSink`] returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where a group's dead-letter copies go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterTarget {
    /// A partition of the group's dead-letter topic.
    Topic { topic: String, partition: u32 },
    /// Routed through an exchange, as an AMQP publish to it with the record's routing key
    /// (or `routing_key` where set) would be: to every queue it routes to, none if the
    /// exchange does not exist or routes nowhere (RabbitMQ drops such dead letters too).
    Exchange {
        exchange: String,
        routing_key: Option<String>,
    },
}

/// Where dead-letter copies are produced.
pub trait DeadLetterSink: Send + Sync + Debug {
    /// Appends `records` to `target` with `acks=all` (through an exchange: to each queue
    /// it routes them to); `Ok` once they are durable everywhere, an error saying why not
    /// (the records may then be there or not: a retry makes duplicates, never a gap).
    fn send<'a>(&'a self, target: &'a DeadLetterTarget, records: Vec<Record>) -> SinkFuture<'a>;
}

/// The dead-letter copy of `record`, archived by `group` from `topic`/`partition`: its
/// key, value, timestamp and headers, then the dead-letter headers (made at `now_ms`).
pub fn dead_letter_copy(
    group: &str,
    topic: &str,
    partition: u32,
    record: DecodedRecord,
    archived: &Archived,
    now_ms: i64,
) -> Record {
    let header = |key: &str, value: String| Header {
        key: key.to_string(),
        value: Some(Bytes::from(value)),
    };
    let mut headers = record.headers;
    headers.extend([
        header(DLQ_SOURCE_TOPIC, topic.to_string()),
        header(DLQ_SOURCE_PARTITION, partition.to_string()),
        header(DLQ_SOURCE_OFFSET, record.offset.to_string()),
        header(DLQ_GROUP, group.to_string()),
        header(DLQ_DELIVERY_COUNT, archived.delivery_count.to_string()),
        header(DLQ_REASON, archived.reason.name().to_string()),
        header(DLQ_TIME, now_ms.to_string()),
    ]);
    Record {
        key: record.key,
        value: record.value,
        headers,
        timestamp: record.timestamp,
    }
}
