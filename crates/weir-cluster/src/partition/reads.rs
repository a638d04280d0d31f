//! Reading a partition: its offsets and where a reader may start, records up to the high
//! watermark (or the last stable offset for read_committed readers), a follower's fetch
//! of what it must copy, lookups by timestamp and by leader epoch, and the producers it
//! remembers. Every read holds the log's read guard for its duration (`mod.rs`).

use weir_log::producers::ProducerSummary;
use weir_log::{FetchData, LogOffsets, ReadTo};

use super::driver::PAUSED_SYNC_WAIT;
use super::transactions::last_stable_offset;
use super::{DiskUsage, IsolatedRead, Isolation, Partition, PartitionOffsets};
use crate::error::ClusterError;
use crate::replication::Role;

impl Partition {
    /// Log start, high watermark and log end (on a follower, the high watermark its
    /// leader last told it).
    pub async fn offsets(&self) -> Result<PartitionOffsets, ClusterError> {
        let guard = self.shared.read_guard().await;
        let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
        // A short mutex hold inside weir-log (no I/O under it), fine on this thread.
        let LogOffsets {
            log_start_offset,
            log_end_offset,
            ..
        } = log.offsets();
        // A follower never publishes: it reports the high watermark its leader last
        // told it (reads are refused on it anyway).
        let high_watermark = {
            let replica = self.shared.replica();
            match replica.role() {
                Role::Follower { .. } => replica.high_watermark(),
                _ => self.high_watermark(),
            }
        };
        Ok(PartitionOffsets {
            log_start_offset,
            high_watermark: high_watermark.max(log_start_offset),
            log_end_offset,
        })
    }

    /// Its segments and their bytes on this broker's disk (a leader's or a follower's
    /// replica alike): read-only, for operators.
    pub async fn disk_usage(&self) -> Result<DiskUsage, ClusterError> {
        let guard = self.shared.read_guard().await;
        let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
        // Short mutex holds inside weir-log (no I/O under them), fine on this thread.
        Ok(DiskUsage {
            segments: log.segment_count(),
            bytes: log.size_bytes(),
        })
    }

    pub(super) fn out_of_range(&self, offset: i64, offsets: PartitionOffsets) -> ClusterError {
        ClusterError::OffsetOutOfRange {
            topic: self.shared.topic.clone(),
            partition: self.shared.index,
            offset,
            log_start_offset: offsets.log_start_offset,
            high_watermark: offsets.high_watermark,
        }
    }

    /// True while this replica leads at `leader_epoch` (and has not stepped aside).
    pub fn leads_at(&self, leader_epoch: i32) -> bool {
        self.shared.replica().role() == Role::Leader { leader_epoch }
    }

    /// Where a reader may start: `offset` checked against the leader's log as
    /// [`read`](Self::read) checks it, and the offsets it was checked against. Only on
    /// the leader: a replica that does not lead may lag (a follower out of the ISR, a
    /// broker restarted on an old log), and its log end is no reason to tell a consumer
    /// its offset is out of range (which sends it back to the log start); it is
    /// NOT_LEADER, so the consumer asks for the leader again.
    pub async fn read_start(&self, offset: i64) -> Result<PartitionOffsets, ClusterError> {
        self.shared.check_leader()?;
        let offsets = self.offsets().await?;
        self.check_in_log(offset, offsets)?;
        Ok(offsets)
    }

    /// OFFSET_OUT_OF_RANGE for an offset outside the log. Past the log end of a leader
    /// that has not published a high watermark in its leadership it is retriable
    /// OFFSET_NOT_AVAILABLE instead: such a leader may not have what the leader before
    /// it committed yet (it believes it leads on metadata it has not caught up with), so
    /// its log end says nothing about the offset.
    fn check_in_log(&self, offset: i64, offsets: PartitionOffsets) -> Result<(), ClusterError> {
        if offset >= offsets.log_start_offset && offset <= offsets.log_end_offset {
            return Ok(());
        }
        let replica = self.shared.replica();
        if offset > offsets.log_end_offset
            && matches!(replica.role(), Role::Leader { .. })
            && replica.published_high_watermark().is_none()
        {
            return Err(ClusterError::OffsetNotAvailable {
                topic: self.shared.topic.clone(),
                partition: self.shared.index,
            });
        }
        Err(self.out_of_range(offset, offsets))
    }

    /// The offsets a consumer may look up (ListOffsets): only on the leader, and only
    /// once this leadership has published its high watermark; before that a new
    /// leader's latest offset could be below one its predecessor already gave out, so
    /// the answer is a retriable [`ClusterError::OffsetNotAvailable`]
    /// (`docs/replication.md` § The leader, Publishing the HW).
    pub async fn leader_offsets(&self) -> Result<PartitionOffsets, ClusterError> {
        self.shared.check_leader()?;
        let paused = self.shared.reader_came();
        if self.shared.replica().published_high_watermark().is_none() {
            return Err(ClusterError::OffsetNotAvailable {
                topic: self.shared.topic.clone(),
                partition: self.shared.index,
            });
        }
        let offsets = self.offsets().await?;
        self.after_paused_sync(paused, offsets, offsets.log_end_offset)
            .await
    }

    /// If the flusher was pausing when this reader came (`paused`) and the high watermark
    /// in `offsets` is short of `wanted` and of the log end, waits (at most
    /// [`PAUSED_SYNC_WAIT`]) for the sync the reader's arrival started and returns the
    /// offsets after it; else `offsets`. So the pause never shows to a reader: it sees
    /// an `acks=leader` write as soon as it would with syncs back to back.
    async fn after_paused_sync(
        &self,
        paused: bool,
        offsets: PartitionOffsets,
        wanted: i64,
    ) -> Result<PartitionOffsets, ClusterError> {
        let hw = offsets.high_watermark;
        if !paused || hw >= wanted.min(offsets.log_end_offset) {
            return Ok(offsets);
        }
        let mut moved = self.subscribe();
        // Timing out leaves the answer as it was: "nothing new yet".
        let _ = tokio::time::timeout(PAUSED_SYNC_WAIT, moved.wait_for(|now| *now > hw)).await;
        self.offsets().await
    }

    /// Reads whole batches from `offset`, up to `max_bytes` (at least one batch), only
    /// below the high watermark. `offset` must be within `[log start, log end]`; at or
    /// past the high watermark the answer is empty.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<FetchData, ClusterError> {
        self.read_to(offset, max_bytes, ReadTo::Memory).await
    }

    /// [`read`](Self::read), with the batches in memory or left in their segment file
    /// ([`FetchData::in_file`], checked as `read` checks them) for a listener that sends
    /// them to its socket with `sendfile`, as `to` says.
    pub async fn read_to(
        &self,
        offset: i64,
        max_bytes: usize,
        to: ReadTo,
    ) -> Result<FetchData, ClusterError> {
        self.shared.check_leader()?;
        self.read_replicated(offset, max_bytes, to, Isolation::ReadUncommitted)
            .await
            .map(|read| read.data)
    }

    /// [`read`](Self::read) on any replica, leader or follower: below the high watermark
    /// this replica knows, which on a follower is the one its leader last told it (so
    /// lagging, but committed: nothing below it is ever truncated). For a coordinator
    /// that reads a partition it may only follow (share groups), never for clients,
    /// whose reads go to the leader.
    pub async fn read_replica(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<FetchData, ClusterError> {
        if matches!(self.shared.replica().role(), Role::Recovering) {
            return Err(self.shared.closed());
        }
        self.read_replicated(
            offset,
            max_bytes,
            ReadTo::Memory,
            Isolation::ReadUncommitted,
        )
        .await
        .map(|read| read.data)
    }

    /// Reads below the high watermark this replica knows ("replicated": on every ISR
    /// member, so never truncated), and under [`Isolation::ReadCommitted`] also below
    /// the last stable offset, with the aborted transactions of the range read. Not
    /// Kafka's `read_committed` by itself: that is the isolation level on top.
    pub(super) async fn read_replicated(
        &self,
        offset: i64,
        max_bytes: usize,
        to: ReadTo,
        isolation: Isolation,
    ) -> Result<IsolatedRead, ClusterError> {
        let paused = self.shared.reader_came();
        let offsets = self.offsets().await?;
        let offsets = self.after_paused_sync(paused, offsets, offset + 1).await?;
        // Out of range only outside the log: an offset the log holds but the high
        // watermark has not passed yet is "nothing yet" (a new leader publishes only once
        // it has committed what it inherited; until then a consumer resuming at the old
        // leader's high watermark must wait, not be told to reset: found by the fault
        // tests, where it sent consumers back to offset 0).
        self.check_in_log(offset, offsets)?;
        let hw = offsets.high_watermark;
        let last_stable_offset = {
            let guard = self.shared.read_guard().await;
            let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
            // A short mutex hold inside weir-log (no I/O under it), fine on this thread.
            last_stable_offset(log, hw)
        };
        let bound = match isolation {
            Isolation::ReadUncommitted => hw,
            Isolation::ReadCommitted => last_stable_offset,
        };
        if offset >= bound {
            return Ok(IsolatedRead {
                data: FetchData {
                    records: bytes::Bytes::new(),
                    in_file: None,
                    next_offset: offset,
                    log_start_offset: offsets.log_start_offset,
                    log_end_offset: offsets.log_end_offset,
                    stored_at: None,
                },
                high_watermark: hw,
                last_stable_offset,
                aborted: Vec::new(),
            });
        }
        let (topic, partition) = (self.shared.topic.clone(), self.shared.index);
        self.shared
            .with_log(move |log| {
                let read_error = |source| match source {
                    // Retention moved the start between our check and the read.
                    weir_log::ReadError::OffsetOutOfRange {
                        log_start_offset, ..
                    } => ClusterError::OffsetOutOfRange {
                        topic: topic.clone(),
                        partition,
                        offset,
                        log_start_offset,
                        high_watermark: hw,
                    },
                    source => ClusterError::Read {
                        topic: topic.clone(),
                        partition,
                        source,
                    },
                };
                let data = log
                    .read_to(offset, max_bytes, Some(bound), to)
                    .map_err(read_error)?;
                let aborted = match isolation {
                    Isolation::ReadCommitted if !data.is_empty() => log
                        .aborted_transactions(offset, data.next_offset)
                        .map_err(read_error)?,
                    _ => Vec::new(),
                };
                Ok(IsolatedRead {
                    data,
                    high_watermark: hw,
                    last_stable_offset,
                    aborted,
                })
            })
            .await
    }

    /// The first offset whose record timestamp is at least `timestamp_ms`, or `None` if
    /// every visible record is older.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, ClusterError> {
        let hw = self.high_watermark();
        let (topic, partition) = (self.shared.topic.clone(), self.shared.index);
        let found = self
            .shared
            .with_log(move |log| {
                log.offset_for_timestamp(timestamp_ms)
                    .map_err(|source| ClusterError::Read {
                        topic,
                        partition,
                        source,
                    })
            })
            .await?;
        Ok(found.filter(|o| *o < hw))
    }

    /// The first offset holding the newest record timestamp (Kafka's ListOffsets
    /// MAX_TIMESTAMP), or `None` if no visible record has one: the log is empty, or the
    /// record is not below the high watermark yet.
    pub async fn offset_of_max_timestamp(&self) -> Result<Option<i64>, ClusterError> {
        let hw = self.high_watermark();
        let (topic, partition) = (self.shared.topic.clone(), self.shared.index);
        let found = self
            .shared
            .with_log(move |log| {
                let newest = log.max_timestamp();
                let found =
                    newest.and_then(|t| t.map_or(Ok(None), |t| log.offset_for_timestamp(t)));
                found.map_err(|source| ClusterError::Read {
                    topic,
                    partition,
                    source,
                })
            })
            .await?;
        Ok(found.filter(|o| *o < hw))
    }

    /// Where leader epoch `epoch` ended in this replica's log (Kafka's
    /// OffsetsForLeaderEpoch, KIP-101 and KIP-320): the largest epoch at most `epoch` and
    /// the offset after its last record (the log end for the latest epoch), from the
    /// log's epoch history, as replication's divergence check answers a follower; `None`
    /// if `epoch` is older than anything the log remembers. Only on the leader: a
    /// follower may still hold records its leader cut.
    pub async fn end_offset_for_epoch(
        &self,
        epoch: i32,
    ) -> Result<Option<(i32, i64)>, ClusterError> {
        self.shared.check_leader()?;
        let guard = self.shared.read_guard().await;
        let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
        // In-memory state under a short mutex hold inside weir-log: no blocking thread.
        Ok(log.end_offset_for_epoch(epoch))
    }

    /// The idempotent producers this partition remembers (epoch, last sequence, last
    /// timestamp and offset of each), by producer id. Only on the leader, whose state
    /// checks the next append.
    pub async fn producers(&self) -> Result<Vec<ProducerSummary>, ClusterError> {
        self.shared.check_leader()?;
        let guard = self.shared.read_guard().await;
        let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
        Ok(log.producers())
    }
}
