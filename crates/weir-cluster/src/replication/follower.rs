//! The follower's side: one fetch at a time to the leader; append what it sends, flush
//! (under a durable policy), and fetch again, at once while the flush runs after a large
//! answer (pipelining), after it otherwise; truncate first when the leader says the log
//! diverged (`docs/replication.md` § The fetch, § The follower).

use bytes::Bytes;

use super::messages::{FetchAnswer, FetchError, FetchRequest};
use super::replica::{Command, LocalLog, Replica, State};
use crate::controller::records::NO_LEADER;
use crate::partition::BrokerId;

/// Where the follower is in its fetch loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Ready to send the next fetch.
    Ready,
    /// Waiting for the answer to fetch `fetch_id`.
    Fetching { fetch_id: u64, sent_ms: u64 },
    /// Waiting for the append of the last answer's batches.
    Appending,
    /// Waiting for a flush before the next fetch reports the new position (the last
    /// answer was empty or too small to pipeline).
    Flushing,
    /// Waiting for a truncation.
    Truncating,
    /// Waiting until `until_ms` after a refused fetch.
    Backoff { until_ms: u64 },
    /// The partition has no leader: wait for metadata.
    NoLeader,
}

#[derive(Debug)]
pub(super) struct Follower {
    pub(super) leader: BrokerId,
    pub(super) leader_epoch: i32,
    pub(super) phase: Phase,
    /// The leader's high watermark from the last answer, applied once its batches are in.
    leader_high_watermark: Option<i64>,
    /// Flush before the next fetch: set unless the last answer brought at least
    /// `pipeline_min_bytes`; after that many the follower fetches at once while they
    /// are synced (pipelining).
    flush_first: bool,
    /// The answer being appended brought at least `pipeline_min_bytes`.
    pipeline: bool,
}

/// Default of [`ReplicaConfig::pipeline_min_bytes`](super::ReplicaConfig): an answer
/// at least this large is synced while the next fetch is out (pipelining); after a
/// smaller one the follower syncs first and its next fetch reports the sync. A
/// pipelined fetch reports the previous sync, so the leader hears of each sync one fetch
/// round trip later than it could: with little data a sync takes less than the round
/// trip and pipelining only adds latency (at 100,000 records/s of 100 B, replication
/// added 1.9 ms to the end-to-end p50 with every answer pipelined, 0.6 ms with none),
/// while under a bulk load overlapping the sync with the fetch moved 3-10% more
/// (BENCHMARKS.md). 256 KiB kept the latency but lost most of the gain (the answers of
/// one partition at 150 MB/s are mostly smaller); 64 KiB kept both.
pub const PIPELINE_MIN_BYTES: usize = 64 << 10;

/// How long a follower whose replicated append was refused for want of disk space waits
/// before it fetches the same offset again. Before, it waited for an append that never
/// came and stopped replicating for good: after the soak filled and freed a node's disk,
/// that node never caught up again.
pub const APPEND_REFUSED_BACKOFF_MS: u64 = 1_000;

/// Whether `batches` can be what a leader at `leader_epoch` holds from `from_offset`:
/// they start at or after it (a compacted log has gaps) and none was written in a later
/// epoch. A driver that answered a held fetch after its leadership ended would send
/// another leader's batches under the old epoch (the simulation did, seed 1384); they
/// are refused here as well as by the driver's own check.
fn batches_fit(batches: &[u8], from_offset: i64, leader_epoch: i32) -> bool {
    let mut rest = batches;
    let mut first = true;
    while !rest.is_empty() {
        let Ok(len) = weir_log::batch::framed_len(rest) else {
            return false;
        };
        if len < weir_log::batch::HEADER_BYTES || len > rest.len() {
            return false;
        }
        let header = weir_log::BatchHeader::parse(&rest[..len]);
        if (first && header.base_offset < from_offset)
            || header.partition_leader_epoch > leader_epoch
        {
            return false;
        }
        first = false;
        rest = &rest[len..];
    }
    true
}

impl Replica {
    pub(super) fn become_follower(
        &mut self,
        leader: BrokerId,
        leader_epoch: i32,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        let phase = if leader == NO_LEADER {
            Phase::NoLeader
        } else {
            Phase::Ready
        };
        self.state = State::Follower(Follower {
            leader,
            leader_epoch,
            phase,
            leader_high_watermark: None,
            flush_first: true,
            pipeline: false,
        });
        self.fetch_if_ready(now_ms, log, out);
    }

    /// Sends the next fetch if the follower is ready. Under a durable policy with
    /// unflushed records it flushes first, unless the last answer was large enough to
    /// pipeline: then the fetch goes at once and reports the flushed offset so far, and
    /// the flush runs meanwhile (the driver coalesces flushes).
    fn fetch_if_ready(&mut self, now_ms: u64, log: &impl LocalLog, out: &mut Vec<Command>) {
        let durable = self.config.durable;
        let position = self.config.position(log);
        let (node, broker_epoch) = (self.config.node, self.config.broker_epoch);
        let fetch_id = self.next_fetch_id;
        let State::Follower(f) = &mut self.state else {
            return;
        };
        if f.phase != Phase::Ready {
            return;
        }
        let log_end = log.log_end_offset();
        if durable && position < log_end {
            out.push(Command::Flush);
            if f.flush_first {
                f.phase = Phase::Flushing;
                return;
            }
        }
        f.flush_first = true;
        f.phase = Phase::Fetching {
            fetch_id,
            sent_ms: now_ms,
        };
        out.push(Command::SendFetch {
            leader: f.leader,
            request: FetchRequest {
                fetch_id,
                replica: node,
                broker_epoch,
                leader_epoch: f.leader_epoch,
                fetch_offset: log_end,
                flushed_offset: position,
                last_fetched_epoch: log.last_epoch().unwrap_or(-1),
            },
        });
        self.next_fetch_id += 1;
    }

    pub(super) fn on_fetch_answered(
        &mut self,
        answer: FetchAnswer,
        batches: Bytes,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        let backoff = self.config.fetch_backoff_ms;
        let wait_metadata = self.config.fetch_timeout_ms;
        let pipeline_min_bytes = self.config.pipeline_min_bytes;
        let State::Follower(f) = &mut self.state else {
            return;
        };
        match f.phase {
            Phase::Fetching { fetch_id, .. } if fetch_id == answer.fetch_id() => {}
            _ => return, // late, duplicated or for an earlier leadership
        }
        match answer {
            FetchAnswer::Data {
                leader_epoch,
                from_offset,
                high_watermark,
                ..
            } => {
                if leader_epoch != f.leader_epoch
                    || from_offset != log.log_end_offset()
                    || !batches_fit(&batches, from_offset, leader_epoch)
                {
                    f.phase = Phase::Ready; // not for the log as it is now: ask again
                } else if batches.is_empty() {
                    f.leader_high_watermark = high_watermark;
                    f.phase = Phase::Ready;
                    self.apply_leader_high_watermark(log);
                } else {
                    f.leader_high_watermark = high_watermark;
                    f.phase = Phase::Appending;
                    f.pipeline = batches.len() >= pipeline_min_bytes;
                    out.push(Command::AppendReplicated { batches });
                    return;
                }
            }
            FetchAnswer::Diverging {
                epoch, end_offset, ..
            } => {
                // Where the leader's epoch `epoch` ends in this log. With no epoch at or
                // below it here, every batch this log holds is from a later epoch the
                // leader never had: none of it is committed, so all of it goes (found by
                // the simulation, seed 884: cutting only to `end_offset` kept diverged
                // batches and then asked the same question forever).
                let own_end = if epoch < 0 {
                    log.log_start_offset()
                } else {
                    log.end_offset_for_epoch(epoch)
                        .map_or(log.log_start_offset(), |(_, end)| end)
                };
                // A proven divergence lies above the committed prefix, so this never
                // cuts a committed record.
                let target = own_end.min(end_offset).min(log.log_end_offset());
                f.phase = Phase::Truncating;
                out.push(Command::Truncate { offset: target });
                return;
            }
            FetchAnswer::OffsetOutOfRange {
                log_start_offset, ..
            } => {
                f.phase = Phase::Truncating;
                out.push(Command::Truncate {
                    offset: log_start_offset,
                });
                return;
            }
            FetchAnswer::Error { error, .. } => {
                let wait = match error {
                    // Our metadata is stale: the newer registration will restart us; the
                    // timeout is only a safety net.
                    FetchError::FencedLeaderEpoch => wait_metadata,
                    FetchError::UnknownLeaderEpoch | FetchError::NotLeader => backoff,
                };
                f.phase = Phase::Backoff {
                    until_ms: now_ms + wait,
                };
                return;
            }
        }
        self.fetch_if_ready(now_ms, log, out);
    }

    fn apply_leader_high_watermark(&mut self, log: &impl LocalLog) {
        let State::Follower(f) = &self.state else {
            return;
        };
        if let Some(hw) = f.leader_high_watermark {
            let hw = hw.min(log.log_end_offset());
            self.raise_high_watermark(hw);
        }
    }

    /// The append of the last answer's batches wrote nothing (the disk is full): fetch
    /// the same offset again after [`APPEND_REFUSED_BACKOFF_MS`].
    pub(super) fn on_append_refused(&mut self, now_ms: u64) {
        if let State::Follower(f) = &mut self.state
            && f.phase == Phase::Appending
        {
            f.phase = Phase::Backoff {
                until_ms: now_ms + APPEND_REFUSED_BACKOFF_MS,
            };
        }
    }

    pub(super) fn on_log_appended(
        &mut self,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        match &mut self.state {
            State::Leader(_) => {
                if self.config.durable && log.flushed_offset() < log.log_end_offset() {
                    out.push(Command::Flush);
                }
                self.leader_progress(now_ms, log, out);
            }
            State::Follower(f) if f.phase == Phase::Appending => {
                f.phase = Phase::Ready;
                f.flush_first = !f.pipeline;
                self.apply_leader_high_watermark(log);
                self.fetch_if_ready(now_ms, log, out);
            }
            _ => {}
        }
    }

    pub(super) fn on_log_flushed(
        &mut self,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        match &mut self.state {
            State::Leader(_) => self.leader_progress(now_ms, log, out),
            State::Follower(f) if f.phase == Phase::Flushing => {
                f.phase = Phase::Ready;
                self.fetch_if_ready(now_ms, log, out);
            }
            _ => {}
        }
    }

    pub(super) fn on_log_truncated(
        &mut self,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        if let State::Follower(f) = &mut self.state
            && f.phase == Phase::Truncating
        {
            f.phase = Phase::Ready;
            self.fetch_if_ready(now_ms, log, out);
        }
    }

    pub(super) fn on_tick(&mut self, now_ms: u64, log: &impl LocalLog, out: &mut Vec<Command>) {
        let timeout = self.config.fetch_timeout_ms;
        match &mut self.state {
            State::Leader(_) => self.leader_progress(now_ms, log, out),
            State::Follower(f) => {
                let retry = match f.phase {
                    Phase::Fetching { sent_ms, .. } => now_ms.saturating_sub(sent_ms) >= timeout,
                    Phase::Backoff { until_ms } => now_ms >= until_ms,
                    _ => false,
                };
                if retry {
                    f.phase = Phase::Ready;
                    self.fetch_if_ready(now_ms, log, out);
                }
            }
            State::Offline | State::Recovering(_) => {}
        }
    }
}
