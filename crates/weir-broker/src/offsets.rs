//! ListOffsets: a partition's earliest or latest offset, the first offset at or after a
//! timestamp, or the first offset holding the newest timestamp.

use weir_cluster::security::Operation;
use weir_cluster::storage::decode_records;
use weir_cluster::{Isolation, Topic};

use crate::limits::MAX_PARTITIONS_PER_REQUEST;
use crate::{Broker, BrokerError, Reason, RequestContext};

/// Which offset to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (the offset the next visible record gets); under
    /// [`Isolation::ReadCommitted`] the last stable offset.
    Latest,
    /// The first record with a timestamp at or after this (ms); the high watermark if
    /// there is none.
    Timestamp(i64),
    /// The first record holding the newest timestamp of the partition (Kafka's
    /// MAX_TIMESTAMP, KIP-734); the high watermark if there is none.
    MaxTimestamp,
}

/// One partition's answer: the offset, and the timestamp of the record there (-1 for
/// Earliest/Latest, and when no record matched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundOffset {
    pub offset: i64,
    pub timestamp_ms: i64,
    /// The partition's leader epoch when the offset was read.
    pub leader_epoch: i32,
    /// Whether a record answered a [`OffsetSpec::Timestamp`] or
    /// [`OffsetSpec::MaxTimestamp`] (always true for the others). When none did, the
    /// offset is the high watermark, where a reader told to start there waits for the
    /// next record (gRPC's answer); Kafka answers -1 for both offset and timestamp.
    pub matched: bool,
}

/// Looks up each `(partition, spec)` of `topic` on its leader (this broker): a
/// whole-request error for an unknown topic or too many partitions, else one answer per
/// partition in request order.
pub async fn list_offsets(
    broker: &Broker,
    ctx: &RequestContext,
    topic: &str,
    queries: &[(u32, OffsetSpec)],
) -> Result<Vec<Result<FoundOffset, BrokerError>>, BrokerError> {
    list_offsets_isolated(broker, ctx, topic, queries, Isolation::ReadUncommitted).await
}

/// [`list_offsets`] for a reader at `isolation` (Kafka's ListOffsets `isolation_level`):
/// under [`Isolation::ReadCommitted`] every answer is below the last stable offset
/// instead of the high watermark (Latest is the last stable offset).
pub async fn list_offsets_isolated(
    broker: &Broker,
    ctx: &RequestContext,
    topic: &str,
    queries: &[(u32, OffsetSpec)],
    isolation: Isolation,
) -> Result<Vec<Result<FoundOffset, BrokerError>>, BrokerError> {
    if queries.len() > MAX_PARTITIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "a list-offsets request names {} partitions; at most {MAX_PARTITIONS_PER_REQUEST} are accepted",
            queries.len()
        )));
    }
    let topic = broker.topic_for(ctx, Operation::Describe, topic)?;
    let mut results = Vec::with_capacity(queries.len());
    for &(partition, spec) in queries {
        results.push(list_one(&topic, partition, spec, isolation).await);
    }
    Ok(results)
}

async fn list_one(
    topic: &Topic,
    index: u32,
    spec: OffsetSpec,
    isolation: Isolation,
) -> Result<FoundOffset, BrokerError> {
    let partition = topic.partition(index)?;
    let leader_epoch = partition.state().leader_epoch;
    let offsets = partition.leader_offsets().await?;
    // The end of what a reader at `isolation` sees.
    let visible_end = match isolation {
        Isolation::ReadUncommitted => offsets.high_watermark,
        Isolation::ReadCommitted => partition
            .last_stable_offset()
            .await?
            .min(offsets.high_watermark),
    };
    let found = |offset, timestamp_ms| FoundOffset {
        offset,
        timestamp_ms,
        leader_epoch,
        matched: true,
    };
    let unmatched = FoundOffset {
        matched: false,
        ..found(visible_end, -1)
    };
    match spec {
        OffsetSpec::Earliest => Ok(found(offsets.log_start_offset, -1)),
        OffsetSpec::Latest => Ok(found(visible_end, -1)),
        OffsetSpec::Timestamp(_) | OffsetSpec::MaxTimestamp => {
            let offset = match spec {
                OffsetSpec::Timestamp(ts) => partition.offset_for_timestamp(ts).await?,
                _ => partition.offset_of_max_timestamp().await?,
            };
            let Some(offset) = offset.filter(|o| *o < visible_end) else {
                return Ok(unmatched);
            };
            // The record's own timestamp, from the batch that holds it.
            let data = partition.read(offset, 1).await?;
            for batch in data.batches() {
                let records = decode_records(&batch).map_err(|e| {
                    BrokerError::new(
                        Reason::CorruptData { batch: None },
                        format!(
                            "partition {}/{index}: the stored batch holding offset {offset} cannot be decoded: {e}",
                            topic.name
                        ),
                    )
                    .at(&topic.name, index)
                })?;
                if let Some(r) = records.into_iter().find(|r| r.offset >= offset) {
                    return Ok(found(r.offset, r.timestamp));
                }
            }
            Ok(found(offset, -1))
        }
    }
}
