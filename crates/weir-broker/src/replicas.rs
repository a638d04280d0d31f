//! The replicas this broker hosts, as an operator looks at them: each one's offsets
//! (log start, high watermark, log end) and what its log takes on disk (segments, bytes),
//! leader or follower alike. Read-only; clients read through [`crate::fetch`] and
//! [`crate::offsets`], which answer only on the leader.

use std::collections::BTreeMap;
use weir_cluster::security::{Operation, ResourceType};

pub use weir_cluster::DiskUsage;
use weir_cluster::PartitionOffsets;

use crate::{Broker, BrokerError, RequestContext};

/// One replica of a partition on this broker.
#[derive(Debug, Clone)]
pub struct HostedReplica {
    pub partition: u32,
    /// This broker leads the partition.
    pub leader: bool,
    /// On a follower, the high watermark its leader last told it.
    pub offsets: Result<PartitionOffsets, BrokerError>,
    pub disk: Result<DiskUsage, BrokerError>,
}

/// The replicas of topic `name` this broker hosts, by partition; UNKNOWN_TOPIC if there is
/// no such topic.
pub async fn topic_replicas(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
) -> Result<Vec<HostedReplica>, BrokerError> {
    let topic = broker.topic_for(ctx, Operation::Describe, name)?;
    let me = broker.node_id();
    let mut out = Vec::new();
    for p in topic.partitions() {
        out.push(HostedReplica {
            partition: p.index(),
            leader: p.state().leader == me,
            offsets: p.offsets().await.map_err(BrokerError::from),
            disk: p.disk_usage().await.map_err(BrokerError::from),
        });
    }
    out.sort_by_key(|r| r.partition);
    Ok(out)
}

/// What this broker's replicas take on its disk, in total and per topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerDisk {
    /// Replicas hosted here (internal topics included).
    pub replicas: usize,
    /// Of them, those this broker leads.
    pub led: usize,
    /// Bytes of every replica's segments.
    pub bytes: u64,
    /// Bytes per topic.
    pub topic_bytes: BTreeMap<String, u64>,
}

/// What this broker's replicas of the topics the request may describe take on its disk
/// (for a principal with Describe on the cluster, or authorization off, every replica).
/// A replica that is closed (being deleted, or reopened after a failure) counts no bytes.
pub async fn broker_disk(broker: &Broker, ctx: &RequestContext) -> BrokerDisk {
    let me = broker.node_id();
    let mut disk = BrokerDisk::default();
    let visible = broker
        .registry()
        .topics()
        .into_iter()
        .filter(|t| broker.may(ctx, Operation::Describe, ResourceType::Topic, &t.name));
    for topic in visible {
        let mut topic_bytes = 0;
        for p in topic.partitions() {
            disk.replicas += 1;
            if p.state().leader == me {
                disk.led += 1;
            }
            if let Ok(usage) = p.disk_usage().await {
                topic_bytes += usage.bytes;
            }
        }
        disk.bytes += topic_bytes;
        disk.topic_bytes.insert(topic.name.clone(), topic_bytes);
    }
    disk
}
