//! Acquiring records for a share fetch: one pass over the requested partitions ends
//! expired locks, takes new records into the windows and acquires up to the fetch's
//! maximum (`acquire`), and the acquired records' contents are then read from the
//! windows' cache or the log (`read_acquired`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use weir_log::DecodedRecord;

use super::{ShareCoordinator, ShareFetch, ShareRecord, ShareStart, sweep};

use crate::share::ShareError;
use crate::share::reader::{self, DataSource};
use crate::share::shard::{ShareGroup, Windows};

/// How many times one fetch reads on past the head a maximum length dropped: each pass
/// drops at least one record, and the sweep drops what a longer backlog leaves.
const DROP_HEAD_PASSES: usize = 64;

impl ShareCoordinator {
    /// One pass over the requested partitions (under the group's windows lock): ends
    /// expired locks, takes new records into the windows and acquires up to `max` records.
    pub(super) async fn acquire(
        &self,
        fetch: &ShareFetch,
        group: &ShareGroup,
        windows: &mut Windows,
        max: usize,
        now_ms: u64,
    ) -> Result<Round, ShareError> {
        let me = self.registry.broker_id();
        let mut targets = Vec::new();
        for name in &fetch.topics {
            let topic = self.registry.topic(name)?;
            let name: Arc<str> = Arc::from(name.as_str());
            for p in 0..topic.partition_count() {
                let wanted = fetch
                    .partitions
                    .as_ref()
                    .is_none_or(|only| only.contains(&(name.to_string(), p)));
                if wanted {
                    targets.push((name.clone(), topic.topic_id.clone(), p));
                }
            }
        }
        if !targets.is_empty() {
            let turn = group.cursor.fetch_add(1, Ordering::Relaxed) % targets.len();
            targets.rotate_left(turn);
        }
        let mut round = Round::default();
        let mut visited = Vec::with_capacity(targets.len());
        let filter = windows.settings.filter.clone();
        let ttl_ms = windows.settings.message_ttl_ms;
        let windows_max_length = windows.settings.max_length;
        for (topic, topic_id, p) in targets {
            let data = self.source(&topic, p)?;
            let known = windows.partitions.contains_key(&(topic.to_string(), p))
                || windows.stored.contains_key(&(topic_id.clone(), p));
            // The group's own setting wins over the fetch's.
            let start = match windows.settings.start.unwrap_or(fetch.start) {
                _ if known => 0,
                ShareStart::Earliest => data.offsets().await?.log_start_offset,
                ShareStart::Latest => data.offsets().await?.high_watermark,
            };
            let config = windows.settings.apply(self.config.partition);
            let w = windows.window(&fetch.group_id, &topic, &topic_id, p, config, start)?;
            // The high watermark this round looked at: a fetch that waits wakes when it
            // moves from here.
            let seen_hw = data.local().map(|p| p.high_watermark());
            let held = w.window.acquired();
            if !w.window.expire(now_ms).is_empty() || w.window.acquired() < held {
                w.dirty = true;
                round.released = true;
            }
            let wanted = max - round.acquired_count;
            if wanted > 0 {
                // A queue past its maximum length drops its head first; that may take
                // every record the window just read for this fetch while newer ones wait
                // in the log (a basic.get right after publishes that overflowed), so the
                // window reads on until it has one to hand out, the log has no more, or
                // DROP_HEAD_PASSES (the sweep drops the rest).
                for _ in 0..DROP_HEAD_PASSES {
                    let start = w.window.start();
                    let more = reader::extend(
                        &data,
                        &mut w.window,
                        &mut w.cache,
                        &filter,
                        ttl_ms,
                        now_ms,
                        wanted,
                    )
                    .await?;
                    round.more_to_read |= more;
                    // Records the filter skipped moved the start: written, so a new
                    // coordinator does not read them again.
                    w.dirty |= w.window.start() != start;
                    let Some(max_ready) = windows_max_length else {
                        break;
                    };
                    let dropped =
                        sweep::drop_over_length(&fetch.group_id, &data, w, max_ready, usize::MAX)
                            .await?;
                    // Nothing dropped: nothing more to read for it either.
                    if dropped == 0 || w.window.has_due(now_ms, 1) {
                        break;
                    }
                }
                let got = w.window.acquire(&fetch.member_id, now_ms, wanted);
                if !got.is_empty() {
                    w.dirty = true;
                    round.acquired_count += got.len();
                    let mut found = Vec::with_capacity(got.len());
                    let mut missing = Vec::new();
                    for a in &got {
                        match w.cache.take(a.offset) {
                            Some(record) => found.push(record),
                            None => missing.push(a.offset),
                        }
                    }
                    round.acquired.push(AcquiredIn {
                        topic: topic.clone(),
                        partition: p,
                        data: data.clone(),
                        records: got,
                        found,
                        missing,
                    });
                }
            }
            match (data.local(), seen_hw) {
                (Some(local), Some(seen)) => {
                    if local.state().leader != me {
                        round.follows_some = true;
                    }
                    round.watched.push((local.clone(), seen));
                }
                // Read at its leader elsewhere: nothing here to watch.
                _ => round.follows_some = true,
            }
            visited.push((topic.to_string(), p));
        }
        // Only a fetch that waits needs to know when a lock ends or a delay is over.
        if round.acquired_count == 0 {
            round.next_due_ms = visited
                .iter()
                .filter_map(|key| windows.partitions.get(key)?.window.next_due(now_ms))
                .min();
        }
        Ok(round)
    }

    /// The acquired records' contents, in topic, partition and offset order, leaving out
    /// those whose lock ran out by `now_ms` (while the acquisition's write became
    /// durable, slow under faults): the member could not acknowledge them, and another
    /// may hold them already. Each keeps its counted delivery, as a lost answer would.
    pub(super) async fn read_acquired(
        &self,
        round: &mut Round,
        now_ms: u64,
    ) -> Result<Vec<ShareRecord>, ShareError> {
        let mut out = Vec::with_capacity(round.acquired_count);
        let mut lapsed = 0usize;
        for a in &mut round.acquired {
            let before = a.records.len();
            a.records.retain(|r| r.deadline_ms > now_ms);
            lapsed += before - a.records.len();
            if a.records.is_empty() {
                continue;
            }
            let mut found = std::mem::take(&mut a.found);
            if !a.missing.is_empty() {
                found.extend(reader::records_at(&a.data, &a.missing).await?);
                found.sort_unstable_by_key(|r| r.offset);
            }
            let mut found = found.into_iter().peekable();
            for acquired in &a.records {
                while found.peek().is_some_and(|r| r.offset < acquired.offset) {
                    found.next();
                }
                if let Some(record) = found.next_if(|r| r.offset == acquired.offset) {
                    out.push(ShareRecord {
                        topic: a.topic.clone(),
                        partition: a.partition,
                        record,
                        delivery_count: acquired.delivery_count,
                        lock_deadline_ms: acquired.deadline_ms,
                    });
                }
            }
        }
        if lapsed > 0 {
            tracing::debug!(
                lapsed,
                "acquired records left out of a share fetch's answer: their locks ran out before the acquisition was durable"
            );
        }
        Ok(out)
    }
}

/// What one acquisition pass found.
#[derive(Default)]
pub(super) struct Round {
    acquired: Vec<AcquiredIn>,
    acquired_count: usize,
    /// Some lock ended: records may be available to waiting fetches.
    pub(super) released: bool,
    /// The earliest lock deadline or not-before time over the windows.
    pub(super) next_due_ms: Option<u64>,
    /// Some partition is read from a follower replica or at its leader elsewhere: a
    /// waiting fetch looks again every [`FOLLOWER_RECHECK`].
    pub(super) follows_some: bool,
    /// Some window's pass stopped after [`super::SHARE_FILTER_SCAN_BYTES`] of records its
    /// filter skipped, with more to read: the fetch looks again at once.
    pub(super) more_to_read: bool,
    /// The partitions looked at, with the high watermark the round saw.
    pub(super) watched: Vec<(Arc<crate::partition::Partition>, i64)>,
}

impl Round {
    /// Nothing was acquired.
    pub(super) fn is_empty(&self) -> bool {
        self.acquired.is_empty()
    }
}

/// Records acquired in one partition.
struct AcquiredIn {
    topic: Arc<str>,
    partition: u32,
    data: DataSource,
    records: Vec<crate::share::partition::Acquired>,
    /// Their contents, from the window's cache, and the offsets to read from the log.
    found: Vec<DecodedRecord>,
    missing: Vec<i64>,
}
