//! One shard of the share coordinator: the share groups of one `__share_group_state`
//! partition, while this broker leads that partition.
//!
//! A shard is loaded by replaying its partition (log start to the committed end): the
//! last record of each key `(group, topic id, partition)` is that share-partition's
//! state, a snapshot of its whole window (a tombstone: none). Every write is a snapshot
//! too, so key compaction keeps exactly what a new coordinator needs. A share-partition's
//! window is rebuilt from its snapshot the first time its group is used after a load.
//!
//! Each group's windows sit behind one async mutex. A request changes them under it,
//! queues the snapshots of the windows it changed on the partition (under the leader
//! epoch the shard was loaded at: another leadership refuses them; queue order is log
//! order) and lets go; it answers once the write is durable. A write that fails fails
//! the shard: memory may then hold what the log does not, so the coordinator drops it
//! and loads it again from the log, and the client's request gets a retriable error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;
use weir_coordinator::share::LOCKS_HEADER;
use weir_log::Header;
use weir_log::batch::RecordView;

use super::reader::RecordCache;
use super::{
    MAX_SHARE_GROUPS_PER_SHARD, SHARE_LOAD_WAIT, SHARE_READ_BYTES, SHARE_STATE_TOPIC, ShareError,
};
use crate::error::ClusterError;
use crate::internal_topic::{self, LoadedShard, SubmitError, WriteFence};
use crate::partition::{Partition, PendingAppend};
use crate::registry::TopicRegistry;

pub(super) use weir_coordinator::share::windows::{
    Replay, dirty_snapshots, state_key, topic_id_bytes,
};

/// The windows of one share group, with the records read for each.
pub(super) type Windows = weir_coordinator::share::windows::Windows<RecordCache>;
/// One share-partition of a group, with the records read for it.
pub(super) type Window = weir_coordinator::share::windows::Window<RecordCache>;

/// One share group.
#[derive(Debug)]
pub(super) struct ShareGroup {
    pub(super) windows: tokio::sync::Mutex<Windows>,
    /// Woken when records may have become available (released, lock ended).
    pub(super) released: Notify,
    /// Where the next fetch starts looking, so members spread over the partitions.
    pub(super) cursor: AtomicUsize,
    /// The number of the group's last write known durable ([`Windows::writes_queued`]
    /// numbers them): archived records carried by it or an earlier one may be copied to
    /// the dead-letter topic. Its earlier writes are durable too: the shard's fence is
    /// chained, so no write after a failed one is answered as durable.
    pub(super) writes_durable: AtomicU64,
    /// Its settings let records expire or be dead-lettered (`GroupSettings::sweeps`,
    /// kept with every settings change): the sweep looks only at these, without taking
    /// the windows' lock of the others every pass.
    pub(super) sweeps: AtomicBool,
}

impl ShareGroup {
    fn new(windows: Windows) -> ShareGroup {
        ShareGroup {
            sweeps: AtomicBool::new(windows.settings.sweeps()),
            windows: tokio::sync::Mutex::new(windows),
            released: Notify::new(),
            cursor: AtomicUsize::new(0),
            writes_durable: AtomicU64::new(0),
        }
    }
}

/// A write of a group's state queued on the partition.
#[must_use = "a queued write is answered once durable"]
pub(super) struct QueuedWrite {
    pending: PendingAppend,
    /// Its number among the group's writes.
    write: u64,
    /// It carries the archiving of records waiting for their dead-letter copy.
    archives: bool,
}

/// The share groups of one `__share_group_state` partition.
#[derive(Debug)]
pub(super) struct ShareShard {
    pub(super) index: u32,
    partition: Arc<Partition>,
    leader_epoch: i32,
    /// Serializes the queueing of writes.
    writer: tokio::sync::Mutex<()>,
    groups: Mutex<HashMap<String, Arc<ShareGroup>>>,
    failed: AtomicBool,
    /// Set when it resigned: the leader it named (-1: none known).
    resigned: Mutex<Option<i32>>,
    /// Closed once it is replaced: see [`WriteFence`].
    writes: WriteFence,
}

impl LoadedShard for ShareShard {
    fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    fn group_count(&self) -> usize {
        self.groups.lock().expect("share groups mutex").len()
    }

    fn leads(&self) -> bool {
        self.partition.leads_at(self.leader_epoch)
    }

    /// Wakes every long-polling share fetch of its groups, which then finds the shard
    /// resigned and answers NOT_COORDINATOR.
    fn resign(&self, coordinator: i32) {
        *self.resigned.lock().expect("share resigned mutex") = Some(coordinator);
        for group in self.groups.lock().expect("share groups mutex").values() {
            group.released.notify_waiters();
        }
    }

    fn writes(&self) -> &WriteFence {
        &self.writes
    }
}

impl ShareShard {
    /// Loads the shard of `partition`, which this broker leads at `leader_epoch`.
    /// `Ok(None)`: not ready yet; try again later.
    pub(super) async fn load(
        index: u32,
        partition: Arc<Partition>,
        leader_epoch: i32,
        registry: &TopicRegistry,
    ) -> Result<Option<Arc<ShareShard>>, ShareError> {
        let Some(end) = internal_topic::wait_committed(&partition, SHARE_LOAD_WAIT).await? else {
            return Ok(None);
        };
        let corrupt = |offset, reason| ShareError::CorruptRecord {
            partition: index,
            offset,
            reason,
        };
        let mut replay = Replay::default();
        internal_topic::for_each_record(&partition, end, SHARE_READ_BYTES, corrupt, |record| {
            let Some(key) = &record.key else {
                return Ok(());
            };
            let locks = record
                .headers
                .iter()
                .find(|h| h.key == LOCKS_HEADER)
                .and_then(|h| h.value.as_deref());
            replay
                .apply(key, record.value.as_deref(), locks)
                .map_err(|e| corrupt(record.offset, e.to_string()))
        })
        .await?;
        let known: HashMap<[u8; 16], String> = registry
            .topics()
            .iter()
            .map(|t| (topic_id_bytes(&t.topic_id), t.topic_id.clone()))
            .collect();
        let groups = replay.finish(&known);
        let shard = ShareShard {
            index,
            partition,
            leader_epoch,
            writer: tokio::sync::Mutex::new(()),
            groups: Mutex::new(
                groups
                    .into_iter()
                    .map(|(g, w)| (g, Arc::new(ShareGroup::new(w))))
                    .collect(),
            ),
            failed: AtomicBool::new(false),
            resigned: Mutex::new(None),
            writes: WriteFence::chained(),
        };
        if shard.partition.state().leader_epoch != leader_epoch {
            return Ok(None);
        }
        Ok(Some(Arc::new(shard)))
    }

    /// NOT_COORDINATOR naming the leader it named, once it resigned.
    pub(super) fn check_serving(&self) -> Result<(), ShareError> {
        match *self.resigned.lock().expect("share resigned mutex") {
            Some(coordinator) => Err(ShareError::NotCoordinator {
                partition: self.index,
                coordinator,
            }),
            None => Ok(()),
        }
    }

    /// The group `group_id`, if it has state.
    pub(super) fn group(&self, group_id: &str) -> Option<Arc<ShareGroup>> {
        self.groups
            .lock()
            .expect("share groups mutex")
            .get(group_id)
            .cloned()
    }

    /// The ids of the groups with state here.
    pub(super) fn group_ids(&self) -> Vec<String> {
        self.groups
            .lock()
            .expect("share groups mutex")
            .keys()
            .cloned()
            .collect()
    }

    /// Forgets `group` (if it is still the one held under `group_id`).
    pub(super) fn remove_group(&self, group_id: &str, group: &Arc<ShareGroup>) {
        let mut groups = self.groups.lock().expect("share groups mutex");
        if groups.get(group_id).is_some_and(|g| Arc::ptr_eq(g, group)) {
            groups.remove(group_id);
        }
    }

    /// The group `group_id`, made empty if it has no state yet; refused once the shard
    /// holds [`MAX_SHARE_GROUPS_PER_SHARD`] groups.
    pub(super) fn group_or_new(&self, group_id: &str) -> Result<Arc<ShareGroup>, ShareError> {
        let mut groups = self.groups.lock().expect("share groups mutex");
        if let Some(g) = groups.get(group_id) {
            return Ok(g.clone());
        }
        if groups.len() >= MAX_SHARE_GROUPS_PER_SHARD {
            return Err(ShareError::TooManyGroups {
                max: MAX_SHARE_GROUPS_PER_SHARD,
            });
        }
        let group = Arc::new(ShareGroup::new(Windows::default()));
        groups.insert(group_id.to_string(), group.clone());
        Ok(group)
    }

    /// Queues the snapshots of the `dirty` windows of a group (call under its windows
    /// lock, so its writes are in the log in the order they were made) and marks them
    /// clean. `None`: nothing to write.
    pub(super) async fn queue_snapshots(
        &self,
        windows: &mut Windows,
    ) -> Result<Option<QueuedWrite>, ShareError> {
        self.queue_with(windows, Vec::new()).await
    }

    /// [`queue_snapshots`](Self::queue_snapshots) after `first` (other records of the
    /// group, such as its settings), in one batch.
    pub(super) async fn queue_with(
        &self,
        windows: &mut Windows,
        first: Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<Option<QueuedWrite>, ShareError> {
        let snapshots = dirty_snapshots(windows, self.leader_epoch)?;
        if first.is_empty() && snapshots.records.is_empty() {
            return Ok(None);
        }
        // Each snapshot's locks, as its record's header.
        let headers: Vec<Vec<Header>> = snapshots
            .records
            .iter()
            .map(|w| {
                w.locks
                    .iter()
                    .map(|locks| Header {
                        key: LOCKS_HEADER.to_string(),
                        value: Some(locks.clone()),
                    })
                    .collect()
            })
            .collect();
        let records = first
            .iter()
            .map(|(key, value)| internal_topic::keyed(key, value.as_deref()))
            .chain(
                snapshots
                    .records
                    .iter()
                    .zip(&headers)
                    .map(|(w, headers)| RecordView {
                        headers,
                        ..internal_topic::keyed(&w.key, w.value.as_deref())
                    }),
            );
        let writer = self.writer.lock().await;
        let queued = internal_topic::submit_records(
            &self.writes,
            &self.partition,
            SHARE_STATE_TOPIC,
            self.leader_epoch,
            records,
        )
        .await;
        drop(writer);
        match queued {
            Ok(pending) => Ok(Some(QueuedWrite {
                pending,
                write: snapshots.write,
                archives: snapshots.archives,
            })),
            Err(e) => {
                self.fail(&e);
                Err(match e {
                    SubmitError::Cluster(e) => self.refused(e),
                    SubmitError::Fenced => ShareError::CoordinatorLoading {
                        partition: self.index,
                    },
                    e => ShareError::InvalidRequest(e.to_string()),
                })
            }
        }
    }

    /// Waits for a write of `group` to be durable and records that it is; a failure
    /// fails the shard. Returns whether the write carried the archiving of records
    /// waiting for their dead-letter copy (which may be made now).
    pub(super) async fn durable(
        &self,
        group: &ShareGroup,
        queued: QueuedWrite,
    ) -> Result<bool, ShareError> {
        let outcome = queued
            .pending
            .await
            .map_err(|_| ClusterError::PartitionClosed {
                topic: SHARE_STATE_TOPIC.to_string(),
                partition: self.index,
            });
        match outcome.and_then(|o| o) {
            Ok(_) => {
                group
                    .writes_durable
                    .fetch_max(queued.write, Ordering::AcqRel);
                Ok(queued.archives)
            }
            Err(e) => {
                self.fail(&e);
                Err(self.refused(e))
            }
        }
    }

    /// A write's failure as the client hears it: refused because this broker no longer
    /// leads the partition at the shard's epoch, it is NOT_COORDINATOR (the group's
    /// coordinator is elsewhere now), as for consumer groups.
    fn refused(&self, e: ClusterError) -> ShareError {
        match e {
            ClusterError::NotLeader { leader, .. } => ShareError::NotCoordinator {
                partition: self.index,
                coordinator: leader,
            },
            ClusterError::FencedLeaderEpoch { .. } => ShareError::NotCoordinator {
                partition: self.index,
                coordinator: -1,
            },
            e => e.into(),
        }
    }

    fn fail(&self, error: &dyn std::fmt::Display) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                partition = self.index,
                %error,
                "a share group state write failed; the share groups of this {SHARE_STATE_TOPIC} partition load again from its log"
            );
        }
    }
}
