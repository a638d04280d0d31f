//! Transaction markers (Kafka's WriteTxnMarkers): when a transaction ends, its
//! coordinator asks the leader of every partition the transaction wrote to append a
//! commit or abort marker there (KIP-98). A marker is appended through the partition's
//! ordered queue like any append and answered once the high watermark passes it
//! (`acks=all`), so a marker that was answered survives a failover.
//!
//! [`write_txn_markers`] is called in-process by the transaction coordinator on the broker
//! that leads the partitions. Forwarding a marker to a leader on another broker (Kafka's
//! broker-to-broker WriteTxnMarkers request) comes with the coordinator; until then a
//! partition this broker does not lead answers NOT_LEADER, as Kafka's leader-side handler
//! does, and the coordinator retries on the new leader.

use std::time::Duration;

use futures_util::future::join_all;
use weir_cluster::security::Operation;
use weir_cluster::storage::{ControlType, TxnMarker};
use weir_cluster::{Durability, Topic};

use crate::limits::{DEFAULT_PRODUCE_TIMEOUT, MAX_PARTITIONS_PER_REQUEST};
use crate::{Broker, BrokerError, Reason, RequestContext};

/// One transaction's end, on some partitions (one entry of Kafka's WriteTxnMarkers).
#[derive(Debug, Clone)]
pub struct TxnMarkers {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Commit (true) or abort (false).
    pub commit: bool,
    /// The epoch of the coordinator that writes them.
    pub coordinator_epoch: i32,
    /// `(topic, partitions)`.
    pub topics: Vec<(String, Vec<u32>)>,
}

/// One partition's answer: the marker's offset, or why it was not written.
#[derive(Debug)]
pub struct MarkerWritten {
    pub topic: String,
    pub partition: u32,
    pub outcome: Result<i64, BrokerError>,
}

/// Appends each transaction's markers on its partitions (this broker must lead them),
/// all partitions at once, each answered once replicated or after `timeout` (default
/// [`DEFAULT_PRODUCE_TIMEOUT`]). A whole-request error for a principal without
/// ClusterAction (only brokers write markers, as in Kafka) or too many partitions; else
/// one answer per transaction, one per partition in request order. A marker of an epoch
/// older than the producer's is PRODUCER_FENCED with nothing written.
pub async fn write_txn_markers(
    broker: &Broker,
    ctx: &RequestContext,
    markers: &[TxnMarkers],
    timeout: Option<Duration>,
) -> Result<Vec<Vec<MarkerWritten>>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::ClusterAction)?;
    let count: usize = markers
        .iter()
        .flat_map(|m| &m.topics)
        .map(|(_, partitions)| partitions.len())
        .sum();
    if count > MAX_PARTITIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "a write-txn-markers request names {count} partitions; at most \
             {MAX_PARTITIONS_PER_REQUEST} are accepted"
        )));
    }
    let timeout = timeout.unwrap_or(DEFAULT_PRODUCE_TIMEOUT);
    let mut answers = Vec::with_capacity(markers.len());
    for m in markers {
        let marker = TxnMarker {
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            control: if m.commit {
                ControlType::Commit
            } else {
                ControlType::Abort
            },
            coordinator_epoch: m.coordinator_epoch,
        };
        let writes = m.topics.iter().flat_map(|(topic, partitions)| {
            let resolved = broker.topic(ctx, topic);
            partitions.iter().map(move |&partition| {
                let resolved = resolved.clone();
                async move {
                    let outcome = match resolved {
                        Ok(t) => write_one(&t, partition, marker, timeout).await,
                        Err(e) => Err(e),
                    };
                    MarkerWritten {
                        topic: topic.clone(),
                        partition,
                        outcome,
                    }
                }
            })
        });
        answers.push(join_all(writes).await);
    }
    Ok(answers)
}

async fn write_one(
    topic: &Topic,
    index: u32,
    marker: TxnMarker,
    timeout: Duration,
) -> Result<i64, BrokerError> {
    let partition = topic.partition(index)?;
    match tokio::time::timeout(
        timeout,
        partition.append_marker(marker, Durability::Durable),
    )
    .await
    {
        Ok(Ok(outcome)) => Ok(outcome.base_offset),
        Ok(Err(e)) => Err(BrokerError::from(e).at(&topic.name, index)),
        Err(_) => Err(BrokerError::new(
            Reason::Timeout,
            format!(
                "the marker on partition {}/{index} was not replicated within {} ms",
                topic.name,
                timeout.as_millis()
            ),
        )
        .at(&topic.name, index)),
    }
}
