//! DeleteRecords: moving partitions' log start forward, removing the records before it
//! (Kafka's DeleteRecords; `weir topic` trims through it too).

use crate::limits::MAX_PARTITIONS_PER_REQUEST;
use crate::topics::refuse_internal;
use crate::{Broker, BrokerError, RequestContext};
use weir_cluster::security::Operation;

/// The offset that means "before the high watermark": every record consumers can read.
pub const HIGH_WATERMARK: i64 = -1;

/// Removes the records of each `(partition, before)` of `topic` below `before`
/// ([`HIGH_WATERMARK`]: all that consumers can read), on its leader (this broker): a
/// whole-request error for an internal or unknown topic or too many partitions, else
/// each partition's new log start offset (or why not), in request order. An offset below
/// the log start changes nothing; one above the high watermark is out of range.
pub async fn delete_records(
    broker: &Broker,
    ctx: &RequestContext,
    topic: &str,
    requests: &[(u32, i64)],
) -> Result<Vec<Result<i64, BrokerError>>, BrokerError> {
    if requests.len() > MAX_PARTITIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "a delete-records request names {} partitions; at most \
             {MAX_PARTITIONS_PER_REQUEST} are accepted",
            requests.len()
        )));
    }
    refuse_internal(topic, "trimmed with DeleteRecords")?;
    let topic = broker.topic_for(ctx, Operation::Delete, topic)?;
    let mut results = Vec::with_capacity(requests.len());
    for &(index, before) in requests {
        let outcome = async {
            let partition = topic.partition(index)?;
            let before = match before {
                HIGH_WATERMARK => partition.high_watermark(),
                offset => offset,
            };
            partition.delete_records_before(before).await
        }
        .await;
        if let Ok(log_start_offset) = outcome {
            tracing::info!(
                topic = topic.name,
                partition = index,
                log_start_offset,
                "records deleted"
            );
        }
        results.push(outcome.map_err(BrokerError::from));
    }
    Ok(results)
}
