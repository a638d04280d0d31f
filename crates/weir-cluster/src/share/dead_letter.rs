//! Dead-letter copies: an archived record of a group that names a dead-letter topic is
//! copied there, with headers saying where it came from and why, once its archiving is
//! durable and before it counts as finished (docs/queues.md § Delivery limit). The copy is produced through a
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
/// `lock-expired-at-limit`, or `unknown` when archived before a failover).
pub const DLQ_REASON: &str = "weir-dlq-reason";
/// Every header a dead-letter copy gets (a redrive removes them).
pub const DLQ_HEADERS: [&str; 6] = [
    DLQ_SOURCE_TOPIC,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_OFFSET,
    DLQ_GROUP,
    DLQ_DELIVERY_COUNT,
    DLQ_REASON,
];
/// Most records one pass copies from one share-partition (one produce request).
pub const MAX_DEAD_LETTERS_PER_PASS: usize = 500;

/// What a [`DeadLetterSink`] returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where dead-letter copies are produced.
pub trait DeadLetterSink: Send + Sync + Debug {
    /// Appends `records` to `partition` of `topic` with `acks=all`; `Ok` once they are
    /// durable, an error saying why not (the records may then be in the topic or not).
    fn send<'a>(&'a self, topic: &'a str, partition: u32, records: Vec<Record>) -> SinkFuture<'a>;
}

/// The dead-letter copy of `record`, archived by `group` from `topic`/`partition`: its
/// key, value, timestamp and headers, then the dead-letter headers.
pub fn dead_letter_copy(
    group: &str,
    topic: &str,
    partition: u32,
    record: DecodedRecord,
    archived: &Archived,
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
    ]);
    Record {
        key: record.key,
        value: record.value,
        headers,
        timestamp: record.timestamp,
    }
}
