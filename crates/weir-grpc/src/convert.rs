//! Conversions between the gRPC messages (`weir_proto::v1`) and the cluster's and log's
//! types. The broker's edge: nothing below this crate sees a prost type.

use bytes::Bytes;
use weir_cluster::storage::{Compression, DecodedRecord, Header, Record};
use weir_cluster::{ClusterError, ConfigEntry, Topic};
use weir_proto::v1;

/// The codec a produce asks for; `None` names an unknown enum value.
pub fn compression(value: i32) -> Option<Compression> {
    Some(match v1::Compression::try_from(value).ok()? {
        v1::Compression::Unspecified | v1::Compression::None => Compression::None,
        v1::Compression::Gzip => Compression::Gzip,
        v1::Compression::Snappy => Compression::Snappy,
        v1::Compression::Lz4 => Compression::Lz4,
        v1::Compression::Zstd => Compression::Zstd,
    })
}

/// Record headers as the broker keeps them.
fn headers(headers: Vec<v1::RecordHeader>) -> Vec<Header> {
    headers
        .into_iter()
        .map(|h| Header {
            key: h.key,
            value: h.value,
        })
        .collect()
}

/// A produced record; an absent timestamp takes `now_ms`.
pub fn record(r: v1::Record, now_ms: i64) -> Record {
    Record {
        key: r.key,
        value: r.value,
        headers: headers(r.headers),
        timestamp: r.timestamp_ms.unwrap_or(now_ms),
    }
}

/// A record as a consumer receives it.
pub fn consumed(r: DecodedRecord) -> v1::ConsumedRecord {
    v1::ConsumedRecord {
        offset: r.offset,
        timestamp_ms: r.timestamp,
        key: r.key,
        value: r.value,
        headers: r
            .headers
            .into_iter()
            .map(|h| v1::RecordHeader {
                key: h.key,
                value: h.value,
            })
            .collect(),
    }
}

/// A consumed record back as the broker decoded it ([`consumed`]'s inverse: a share
/// fetch forwarded to another broker's coordinator comes back this way).
pub fn decoded(r: v1::ConsumedRecord) -> DecodedRecord {
    DecodedRecord {
        offset: r.offset,
        timestamp: r.timestamp_ms,
        key: r.key,
        value: r.value,
        headers: headers(r.headers),
    }
}

/// Decoded records, and where the next read starts if they stopped short of the data.
#[derive(Debug, Default)]
pub struct Decoded {
    pub records: Vec<v1::ConsumedRecord>,
    /// The offset of the first record left out to keep within the budget.
    pub stopped_at: Option<i64>,
    /// The records' encoded size in a response.
    pub bytes: usize,
    /// The batch that stopped the decoding because it cannot be decoded; `records` are
    /// those before it.
    pub undecodable: Option<UndecodableBatch>,
}

/// A batch [`decode_from`] could not decode.
#[derive(Debug)]
pub struct UndecodableBatch {
    /// Its first offset and the offset after it, from its header (which the log's CRC
    /// check on the read covered, base offset aside, which the log checks against its
    /// neighbours).
    pub base_offset: i64,
    pub next_offset: i64,
    /// Its byte position in the batches decoded (the read's data).
    pub position: usize,
    pub error: weir_cluster::storage::BatchError,
}

/// Decodes the records at or after `from` in `batches` (concatenated batches as read
/// from the log), while their encoded size in a response stays within `budget` bytes
/// (the first record always goes): decoded records can take much more room than the
/// batches they came from (compression, per-record fields), and a response must fit the
/// client's receive limit (4 MiB in grpc-python and grpc-go). A batch that cannot be
/// decoded ends the decoding: the records before it are returned with it.
///
/// Transaction markers are never records, and the batches of the transactions in
/// `aborted` (a read committed read's list; empty otherwise) are skipped too
/// ([`weir_broker::fetch::is_visible`]).
pub fn decode_from(
    batches: impl Iterator<Item = Bytes>,
    from: i64,
    budget: usize,
    aborted: &[weir_cluster::storage::AbortedTxn],
) -> Decoded {
    use prost::Message;
    let mut out = Decoded::default();
    let mut position = 0;
    for batch in batches {
        let at = position;
        position += batch.len();
        if batch.len() < weir_cluster::storage::BATCH_HEADER_BYTES {
            // The log returns whole batches only; nothing to decode in a fragment.
            break;
        }
        let header = weir_cluster::storage::BatchHeader::parse(&batch);
        if header.next_offset() <= from || !weir_broker::fetch::is_visible(&header, aborted) {
            continue; // wholly before the offset asked for, or not for this reader
        }
        let decoded = match weir_cluster::storage::decode_records(&batch) {
            Ok(decoded) => decoded,
            Err(error) => {
                out.undecodable = Some(UndecodableBatch {
                    base_offset: header.base_offset,
                    next_offset: header.next_offset(),
                    position: at,
                    error,
                });
                return out;
            }
        };
        for r in decoded {
            if r.offset < from {
                continue;
            }
            let record = consumed(r);
            let len = record.encoded_len();
            // Field tag and length prefix of the repeated field.
            let size = 1 + prost::encoding::encoded_len_varint(len as u64) + len;
            if out.bytes + size > budget && !out.records.is_empty() {
                out.stopped_at = Some(record.offset);
                return out;
            }
            out.bytes += size;
            out.records.push(record);
        }
    }
    out
}

pub fn config_entry(e: ConfigEntry) -> v1::ConfigEntry {
    v1::ConfigEntry {
        name: e.name.to_string(),
        value: e.value,
        is_default: e.is_default,
        documentation: e.documentation.to_string(),
    }
}

/// A topic and the current state of its partitions: offsets of those this broker holds a
/// replica of, -1 for the others (their leader has them). A replica closing (moved away
/// by a reassignment, or the broker stopping) counts as not held: the description of the
/// topic does not depend on it, and failing it made `weir cluster rebalance --wait` stop
/// with "partition is closed" when the broker it asked was dropping a replica.
pub async fn topic_description(topic: &Topic) -> Result<v1::TopicDescription, ClusterError> {
    let mut partitions = Vec::new();
    for (index, reg) in topic.registrations().into_iter().enumerate() {
        let index = index as u32;
        let offsets = match topic.partition(index) {
            Ok(p) => match p.offsets().await {
                Ok(offsets) => Some(offsets),
                Err(ClusterError::PartitionClosed { .. }) => None,
                Err(e) => return Err(e),
            },
            Err(_) => None,
        };
        let moving = reg.reassignment.clone();
        let moving = moving.as_ref();
        partitions.push(v1::PartitionDescription {
            partition: index,
            leader: reg.leader,
            leader_epoch: reg.leader_epoch,
            replicas: reg.replicas,
            isr: reg.isr,
            log_start_offset: offsets.map_or(-1, |o| o.log_start_offset),
            high_watermark: offsets.map_or(-1, |o| o.high_watermark),
            log_end_offset: offsets.map_or(-1, |o| o.log_end_offset),
            adding_replicas: moving.map(|m| m.adding.clone()).unwrap_or_default(),
            removing_replicas: moving.map(|m| m.removing.clone()).unwrap_or_default(),
            reassignment_throttle_bytes_per_sec: moving
                .and_then(|m| m.throttle_bytes_per_sec)
                .unwrap_or(0),
        });
    }
    Ok(v1::TopicDescription {
        name: topic.name.clone(),
        topic_id: topic.topic_id.clone(),
        partitions,
        internal: topic.is_internal(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use weir_cluster::TopicRegistry;

    use super::*;

    #[tokio::test]
    async fn a_replica_being_closed_is_described_as_not_held() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TopicRegistry::open(dir.path(), 0).await.unwrap();
        registry
            .create_topic("t", 2, 1, BTreeMap::new())
            .await
            .unwrap();
        let topic = registry.topic("t").unwrap();
        topic.partition(1).unwrap().close().await.unwrap();
        let described = topic_description(&topic).await.unwrap();
        assert_eq!(described.partitions[0].log_end_offset, 0);
        assert_eq!(described.partitions[1].log_end_offset, -1);
        assert_eq!(described.partitions[1].high_watermark, -1);
        registry.close().await.unwrap();
    }
}
