//! The replicas this broker hosts, as an operator looks at them: each one's offsets
//! (log start, high watermark, log end) and what its log takes on disk (segments, bytes),
//! leader or follower alike, and its log directory as Kafka's DescribeLogDirs shows it.
//! Read-only; clients read through [`crate::fetch`] and [`crate::offsets`], which answer
//! only on the leader.

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

/// What a broker's replicas take on its disk, per topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerDisk {
    pub topics: BTreeMap<String, TopicDisk>,
}

/// One topic's replicas on one broker's disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicDisk {
    /// Replicas hosted there.
    pub replicas: usize,
    /// Of them, those that broker leads.
    pub led: usize,
    /// Bytes of their segments.
    pub bytes: u64,
}

impl BrokerDisk {
    /// Bytes of every replica's segments.
    pub fn bytes(&self) -> u64 {
        self.topics.values().map(|t| t.bytes).sum()
    }

    /// Replicas hosted (internal topics included).
    pub fn replicas(&self) -> usize {
        self.topics.values().map(|t| t.replicas).sum()
    }

    /// The same disk with only the topics `visible` keeps.
    pub fn only(mut self, visible: impl Fn(&str) -> bool) -> BrokerDisk {
        self.topics.retain(|name, _| visible(name));
        self
    }
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
        let mut on_disk = TopicDisk::default();
        for p in topic.partitions() {
            on_disk.replicas += 1;
            if p.state().leader == me {
                on_disk.led += 1;
            }
            if let Ok(usage) = p.disk_usage().await {
                on_disk.bytes += usage.bytes;
            }
        }
        disk.topics.insert(topic.name.clone(), on_disk);
    }
    disk
}

/// One replica in a log directory: its bytes on disk, and how far its log end is behind
/// its high watermark (a follower catching up; 0 on a leader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirReplica {
    pub partition: u32,
    pub bytes: u64,
    pub offset_lag: i64,
}

/// This broker's log directory (its data directory: every replica's log is under it)
/// and the replicas in it, by topic then partition (Kafka's DescribeLogDirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDir {
    pub path: String,
    pub topics: Vec<(String, Vec<LogDirReplica>)>,
}

/// The log directory of this broker with the replicas asked for that it hosts (`None`:
/// every one; partitions it does not host are left out, as in Kafka). DESCRIBE on the
/// cluster, as Kafka asks; a topic the principal may not describe is left out too.
pub async fn log_dir(
    broker: &Broker,
    ctx: &RequestContext,
    named: Option<&[(String, Vec<u32>)]>,
) -> Result<LogDir, BrokerError> {
    broker.authorize_cluster(ctx, Operation::Describe)?;
    let wanted = |topic: &str, partition: u32| {
        named.is_none_or(|named| {
            named
                .iter()
                .any(|(t, parts)| t == topic && parts.contains(&partition))
        })
    };
    let mut topics = Vec::new();
    for topic in broker.registry().topics() {
        if !broker.may(ctx, Operation::Describe, ResourceType::Topic, &topic.name) {
            continue;
        }
        let mut replicas = Vec::new();
        for p in topic.partitions() {
            if !wanted(&topic.name, p.index()) {
                continue;
            }
            // A replica closed under the request (being deleted or reopened) is not in
            // the directory now.
            let (Ok(disk), Ok(offsets)) = (p.disk_usage().await, p.offsets().await) else {
                continue;
            };
            replicas.push(LogDirReplica {
                partition: p.index(),
                bytes: disk.bytes,
                offset_lag: (offsets.high_watermark - offsets.log_end_offset).max(0),
            });
        }
        if !replicas.is_empty() {
            replicas.sort_by_key(|r| r.partition);
            topics.push((topic.name.clone(), replicas));
        }
    }
    topics.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(LogDir {
        path: broker.registry().data_dir().display().to_string(),
        topics,
    })
}

/// What a request to move a replica of this broker to the log directory `dir` (Kafka's
/// AlterReplicaLogDirs) finds. Every replica of a broker lives in its one log directory
/// (its data directory), so a move to it is already done and a move anywhere else has
/// no directory to go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaDirMove {
    /// The replica is hosted here and `dir` is this broker's log directory: nothing to
    /// move.
    AlreadyThere,
    /// `dir` is this broker's log directory, but the broker hosts no replica of the
    /// partition (Kafka's REPLICA_NOT_AVAILABLE).
    NotHosted,
    /// `dir` is not this broker's log directory (Kafka's LOG_DIR_NOT_FOUND).
    UnknownDir,
}

/// Where moving the replica of `topic`/`partition` to `dir` stands (see
/// [`ReplicaDirMove`]). `dir` names the log directory if it is the same path, as Kafka
/// compares absolute paths (a trailing `/` or a `.` component changes nothing). ALTER
/// on the cluster, as Kafka asks.
pub fn move_replica_dir(
    broker: &Broker,
    ctx: &RequestContext,
    dir: &str,
    topic: &str,
    partition: u32,
) -> Result<ReplicaDirMove, BrokerError> {
    broker.authorize_cluster(ctx, Operation::Alter)?;
    let dir = std::path::Path::new(dir);
    if !dir.is_absolute()
        || dir
            .components()
            .ne(broker.registry().data_dir().components())
    {
        return Ok(ReplicaDirMove::UnknownDir);
    }
    let hosted = broker
        .registry()
        .topic(topic)
        .is_ok_and(|t| t.partition(partition).is_ok());
    Ok(if hosted {
        ReplicaDirMove::AlreadyThere
    } else {
        ReplicaDirMove::NotHosted
    })
}
