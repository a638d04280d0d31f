//! One share-partition's in-flight window (docs/queues.md § The model).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::state_records::{PersistedState, StateKind, StateLock, StateRange, StateValue};

/// Longest delay a release or a `weir-deliver-at` header may ask for: 7 days. Longer is
/// refused, not clamped (docs/queues.md § Delays says why this bound).
pub const MAX_DELIVERY_DELAY_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// No expiry: a record that never expires.
pub const NEVER_EXPIRES: u64 = u64::MAX;

/// A share group's settings for one share-partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareConfig {
    /// How long an acquired record stays locked to its member
    /// (`share.record.lock.duration.ms`).
    pub lock_duration_ms: u64,
    /// Deliveries after which a released or expired record is archived instead of made
    /// available again (`share.delivery.count.limit`).
    pub delivery_count_limit: u16,
    /// Records acquired at once, at most (`share.partition.max.record.locks`).
    pub max_record_locks: usize,
    /// Records the window holds at most, whatever their state: bounds its memory.
    pub max_window_records: usize,
    /// Whether archived records wait for [`SharePartition::dead_lettered`] before they
    /// count as finished (the group names a dead-letter topic).
    pub dead_letter: bool,
}

impl Default for ShareConfig {
    /// Kafka's defaults: 30 s locks, 5 deliveries, 2,000 locks; no dead-letter topic.
    fn default() -> ShareConfig {
        ShareConfig {
            lock_duration_ms: 30_000,
            delivery_count_limit: 5,
            max_record_locks: 2_000,
            max_window_records: 10_000,
            dead_letter: false,
        }
    }
}

/// How a member acknowledges a record it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// Done.
    Accept,
    /// Deliver again, not before `delay_ms` from now (0: at once).
    Release { delay_ms: u64 },
    /// Never deliver again: archived (and dead-lettered).
    Reject,
    /// Keep it: the lock's deadline moves to a full lock duration from now.
    Renew,
}

/// Why a record was archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveReason {
    Rejected,
    /// Released at the delivery limit.
    DeliveryLimit,
    /// Its lock expired, or was forfeited in a failover, at the delivery limit.
    LockExpiredAtLimit,
    /// Its time to live ran out while it waited to be delivered (first or again).
    Expired,
    /// Dropped from the head: the group's maximum length was passed (an AMQP queue's
    /// `x-max-length` with `drop-head`).
    MaxLength,
    /// Archived before a failover, whose reason the state record does not keep (the
    /// dead-letter copy's delivery count still tells a limit from a reject).
    Unknown,
}

impl ArchiveReason {
    /// The `weir-dlq-reason` header's value.
    pub fn name(self) -> &'static str {
        match self {
            ArchiveReason::Rejected => "rejected",
            ArchiveReason::DeliveryLimit => "delivery-limit",
            ArchiveReason::LockExpiredAtLimit => "lock-expired-at-limit",
            ArchiveReason::Expired => "expired",
            ArchiveReason::MaxLength => "maxlen",
            ArchiveReason::Unknown => "unknown",
        }
    }
}

/// A record's state in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    Available,
    Acquired {
        member: Arc<str>,
        deadline_ms: u64,
    },
    Acknowledged,
    /// `copied`: its dead-letter copy is done (always true without a dead-letter topic).
    Archived {
        reason: ArchiveReason,
        copied: bool,
    },
}

/// A record handed to a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    pub offset: i64,
    pub delivery_count: u16,
    pub deadline_ms: u64,
}

/// A record just archived: to be dead-lettered where the group names a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Archived {
    pub offset: i64,
    pub delivery_count: u16,
    pub reason: ArchiveReason,
}

/// Why an acknowledgement was refused; the record is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// Not acquired by this member under a valid lock (it expired, a failover released
    /// it, or it was never this member's): Kafka's INVALID_RECORD_STATE.
    #[error("offset {0} is not held by this member")]
    NotHeld(i64),
    #[error("a delay of {0} ms is over the limit of {MAX_DELIVERY_DELAY_MS} ms")]
    DelayTooLong(u64),
}

/// What the window holds, for describe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Available now.
    pub available: usize,
    /// Available, but not before a later time.
    pub delayed: usize,
    pub acquired: usize,
    /// Archived and waiting for their dead-letter copy.
    pub archived_pending: usize,
    /// The lowest offset not yet finished, if any.
    pub oldest_unfinished: Option<i64>,
}

#[derive(Debug, Clone)]
struct Entry {
    state: RecordState,
    delivery_count: u16,
    not_before_ms: u64,
    /// When it expires if still not finished and not held ([`NEVER_EXPIRES`]: never). Not
    /// persisted: a record a new leader reads from the log again gets it again; one its
    /// state record holds (delivered before the failover) never expires.
    expires_at_ms: u64,
}

impl Entry {
    fn waits_for_copy(&self) -> bool {
        matches!(self.state, RecordState::Archived { copied: false, .. })
    }

    fn finished(&self) -> bool {
        match self.state {
            RecordState::Acknowledged => true,
            RecordState::Archived { copied, .. } => copied,
            RecordState::Available | RecordState::Acquired { .. } => false,
        }
    }
}

/// One partition's in-flight window for one share group (see the module docs).
#[derive(Debug, Clone)]
pub struct SharePartition {
    config: ShareConfig,
    /// Every offset below is finished.
    start: i64,
    /// No offset at or above has been taken into the window.
    end: i64,
    /// The records in `[start, end)` that the log holds (a compacted log has gaps).
    records: BTreeMap<i64, Entry>,
    /// Records in the `Acquired` state.
    acquired: usize,
    /// No lock ends before this (a lower bound: ACCEPTs and releases leave it stale,
    /// never too late), so [`Self::expire`] skips its walk until then.
    earliest_deadline_ms: u64,
    /// Archived records waiting for their dead-letter copy, so a group with a
    /// dead-letter topic does not walk its window on every request to find none.
    pending_copies: usize,
    /// Records the group's filter skipped since this window was made or loaded (not
    /// persisted: a new coordinator counts from 0).
    filtered_out: u64,
    /// Every record of the window from here on was never delivered: available, count 0,
    /// due when its header says. Such records are what the log holds and nothing more, so
    /// a snapshot stops here and a new leader reads them from the log again; a snapshot's
    /// cost follows what is in flight, not how far the window has read ahead.
    touched_end: i64,
    /// No record below this is available: where [`Self::acquire`] starts looking, so a
    /// fetch does not walk past every record other members hold.
    available_from: i64,
    /// No record expires before this (a lower bound), so [`Self::expire_records`] skips
    /// its walk until then.
    earliest_expiry_ms: u64,
}

impl SharePartition {
    /// An empty window starting at `start` (the group's start offset).
    pub fn new(config: ShareConfig, start: i64) -> SharePartition {
        SharePartition {
            config,
            start,
            end: start,
            records: BTreeMap::new(),
            acquired: 0,
            earliest_deadline_ms: u64::MAX,
            pending_copies: 0,
            filtered_out: 0,
            touched_end: start,
            available_from: start,
            earliest_expiry_ms: NEVER_EXPIRES,
        }
    }

    pub fn start(&self) -> i64 {
        self.start
    }

    pub fn end(&self) -> i64 {
        self.end
    }

    /// A record's state, delivery count and not-before time.
    pub fn state(&self, offset: i64) -> Option<(&RecordState, u16, u64)> {
        self.records
            .get(&offset)
            .map(|e| (&e.state, e.delivery_count, e.not_before_ms))
    }

    /// Takes the log's next records, `(offset, not_before_ms)` in offset order, into the
    /// window while it has room; offsets below `end` are ignored. Returns how many were
    /// taken: the caller reads on from [`Self::end`].
    pub fn extend(&mut self, records: impl IntoIterator<Item = (i64, u64)>) -> usize {
        self.extend_filtered(records.into_iter().map(|(o, at)| (o, Some(at))))
    }

    /// [`Self::extend`] for a group with a filter: `(offset, None)` is a record the filter
    /// skips. It never enters the window and needs no room: `end` moves past it, and it
    /// is finished at once (an offset of `[start, end)` the window does not hold is
    /// finished, like a compacted one), so `start` passes it as soon as every record
    /// before it is finished. Returns how many records were taken into the window.
    pub fn extend_filtered(
        &mut self,
        records: impl IntoIterator<Item = (i64, Option<u64>)>,
    ) -> usize {
        self.extend_timed(
            records
                .into_iter()
                .map(|(offset, at)| (offset, at.map(|at| (at, NEVER_EXPIRES)))),
        )
    }

    /// [`Self::extend_filtered`] with each record's expiry: `(offset, Some((not_before_ms,
    /// expires_at_ms)))`, [`NEVER_EXPIRES`] for a record without one. A record that
    /// expires is archived ([`ArchiveReason::Expired`]) by [`Self::expire_records`] or
    /// when [`Self::acquire`] comes to it, never handed out.
    pub fn extend_timed(
        &mut self,
        records: impl IntoIterator<Item = (i64, Option<(u64, u64)>)>,
    ) -> usize {
        let mut taken = 0;
        let mut skipped = 0;
        for (offset, times) in records {
            if offset < self.end {
                continue;
            }
            let Some((not_before_ms, expires_at_ms)) = times else {
                self.end = offset + 1;
                skipped += 1;
                continue;
            };
            if self.records.len() >= self.config.max_window_records {
                break;
            }
            self.records.insert(
                offset,
                Entry {
                    state: RecordState::Available,
                    delivery_count: 0,
                    not_before_ms,
                    expires_at_ms,
                },
            );
            self.earliest_expiry_ms = self.earliest_expiry_ms.min(expires_at_ms);
            self.end = offset + 1;
            taken += 1;
        }
        if skipped > 0 {
            self.filtered_out += skipped;
            self.advance_start();
        }
        taken
    }

    /// Records the group's filter skipped since this window was made or loaded.
    pub fn filtered_out(&self) -> u64 {
        self.filtered_out
    }

    /// The records of the window never delivered yet (available, delivery count 0, due or
    /// not): what a new filter applies to.
    pub fn undelivered(&self) -> Vec<i64> {
        self.records
            .iter()
            .filter(|(_, e)| e.state == RecordState::Available && e.delivery_count == 0)
            .map(|(&offset, _)| offset)
            .collect()
    }

    /// A new filter skips the record at `offset`, which was taken into the window but never
    /// delivered: it leaves the window, finished, as if skipped when taken. Returns whether
    /// it did (a record delivered before, or not in the window, stays as it is).
    pub fn filter_out(&mut self, offset: i64) -> bool {
        let undelivered = self
            .records
            .get(&offset)
            .is_some_and(|e| e.state == RecordState::Available && e.delivery_count == 0);
        if undelivered {
            self.records.remove(&offset);
            self.filtered_out += 1;
            self.advance_start();
        }
        undelivered
    }

    /// The window's settings.
    pub fn config(&self) -> ShareConfig {
        self.config
    }

    /// Takes new settings (the group changed its own). Locks already given keep their
    /// deadlines; without a dead-letter topic now, archived records waiting for their
    /// copy are finished.
    pub fn reconfigure(&mut self, config: ShareConfig) {
        self.config = config;
        if !config.dead_letter {
            self.pending_copies = 0;
            for entry in self.records.values_mut() {
                if let RecordState::Archived { copied, .. } = &mut entry.state {
                    *copied = true;
                }
            }
            self.advance_start();
        }
    }

    /// How many archived records wait for their dead-letter copy.
    pub fn pending_copies(&self) -> usize {
        self.pending_copies
    }

    /// `offset` if it is archived and waits for its dead-letter copy.
    pub fn pending_dead_letter(&self, offset: i64) -> Option<Archived> {
        let entry = self.records.get(&offset)?;
        match entry.state {
            RecordState::Archived {
                reason,
                copied: false,
            } => Some(Archived {
                offset,
                delivery_count: entry.delivery_count,
                reason,
            }),
            _ => None,
        }
    }

    /// Up to `max` archived records waiting for their dead-letter copy, lowest first.
    pub fn pending_dead_letters(&self, max: usize) -> Vec<Archived> {
        if self.pending_copies == 0 {
            return Vec::new();
        }
        self.records
            .iter()
            .filter_map(|(&offset, e)| match e.state {
                RecordState::Archived {
                    reason,
                    copied: false,
                } => Some(Archived {
                    offset,
                    delivery_count: e.delivery_count,
                    reason,
                }),
                _ => None,
            })
            .take(max)
            .collect()
    }

    /// Records acquired now.
    pub fn acquired(&self) -> usize {
        self.acquired
    }

    /// Whether [`Self::extend`] would take a record now.
    pub fn has_room(&self) -> bool {
        self.records.len() < self.config.max_window_records
    }

    /// Whether [`Self::acquire`] at `now_ms` could hand out `max_records` (or as many as
    /// the lock bound leaves room for) from what the window holds: that many records are
    /// available, due and not expired. A fetch that finds so needs nothing more from the
    /// log; the walk starts where [`Self::acquire`] does and stops at the count.
    pub fn has_due(&self, now_ms: u64, max_records: usize) -> bool {
        let wanted = max_records.min(self.config.max_record_locks.saturating_sub(self.acquired));
        if wanted == 0 {
            return true;
        }
        self.records
            .range(self.available_from..)
            .filter(|(_, e)| {
                e.state == RecordState::Available
                    && e.not_before_ms <= now_ms
                    && e.expires_at_ms > now_ms
            })
            .nth(wanted - 1)
            .is_some()
    }

    /// The log's start moved past `log_start` (retention or DeleteRecords): the records
    /// below it are gone, finished as if archived (docs/queues.md § Failure cases).
    /// Returns how many the window dropped.
    pub fn log_start_moved(&mut self, log_start: i64) -> usize {
        if log_start <= self.start {
            return 0;
        }
        let kept = self.records.split_off(&log_start);
        let dropped = std::mem::replace(&mut self.records, kept);
        self.pending_copies -= dropped.values().filter(|e| e.waits_for_copy()).count();
        self.acquired -= dropped
            .values()
            .filter(|e| matches!(e.state, RecordState::Acquired { .. }))
            .count();
        self.end = self.end.max(log_start);
        self.advance_start();
        dropped.len()
    }

    /// The earliest time after `now_ms` at which a lock expires or a delayed record comes
    /// due: when a waiting fetch should look again.
    pub fn next_due(&self, now_ms: u64) -> Option<u64> {
        self.records
            .values()
            .filter_map(|e| match e.state {
                RecordState::Acquired { deadline_ms, .. } => Some(deadline_ms),
                RecordState::Available if e.not_before_ms > now_ms => Some(e.not_before_ms),
                _ => None,
            })
            .min()
    }

    /// Hands `member` up to `max_records` available records that are due at `now_ms`,
    /// lowest offsets first, each under a lock and with its delivery count raised, within
    /// the window's lock bound. Call [`Self::expire`] first so that expired locks count.
    pub fn acquire(&mut self, member: &str, now_ms: u64, max_records: usize) -> Vec<Acquired> {
        let room = self.config.max_record_locks.saturating_sub(self.acquired);
        let wanted = max_records.min(room);
        let member: Arc<str> = Arc::from(member);
        let deadline_ms = now_ms.saturating_add(self.config.lock_duration_ms);
        let mut out = Vec::new();
        let mut expired = 0;
        // The first available record left behind: where the next look starts.
        let mut left = None;
        for (&offset, entry) in self.records.range_mut(self.available_from..) {
            if out.len() >= wanted {
                left.get_or_insert(offset);
                break;
            }
            if entry.state != RecordState::Available {
                continue;
            }
            if entry.expires_at_ms <= now_ms {
                entry.state = RecordState::Archived {
                    reason: ArchiveReason::Expired,
                    copied: !self.config.dead_letter,
                };
                expired += 1;
                continue;
            }
            if entry.not_before_ms > now_ms {
                left.get_or_insert(offset);
                continue;
            }
            entry.delivery_count = entry.delivery_count.saturating_add(1);
            entry.state = RecordState::Acquired {
                member: member.clone(),
                deadline_ms,
            };
            self.touched_end = self.touched_end.max(offset + 1);
            out.push(Acquired {
                offset,
                delivery_count: entry.delivery_count,
                deadline_ms,
            });
        }
        self.available_from = left.unwrap_or(self.end);
        self.acquired += out.len();
        if !out.is_empty() {
            self.earliest_deadline_ms = self.earliest_deadline_ms.min(deadline_ms);
        }
        if expired > 0 {
            if self.config.dead_letter {
                self.pending_copies += expired;
            }
            self.advance_start();
        }
        out
    }

    /// Archives ([`ArchiveReason::Expired`]) up to `max` records that expired by `now_ms`
    /// and are not held (available, due or delayed), lowest first, and returns them: what
    /// the coordinator's sweep does for a queue nobody reads. A held record expires once
    /// it is released, if its time has passed by then.
    pub fn expire_records(&mut self, now_ms: u64, max: usize) -> Vec<Archived> {
        if now_ms < self.earliest_expiry_ms || max == 0 {
            return Vec::new();
        }
        let copied = !self.config.dead_letter;
        let mut archived = Vec::new();
        let mut earliest = NEVER_EXPIRES;
        for (&offset, entry) in self.records.iter_mut() {
            if entry.state != RecordState::Available {
                continue;
            }
            if entry.expires_at_ms > now_ms || archived.len() >= max {
                earliest = earliest.min(entry.expires_at_ms);
                continue;
            }
            let reason = ArchiveReason::Expired;
            entry.state = RecordState::Archived { reason, copied };
            archived.push(Archived {
                offset,
                delivery_count: entry.delivery_count,
                reason,
            });
        }
        self.earliest_expiry_ms = earliest;
        if !copied {
            self.pending_copies += archived.len();
        }
        if !archived.is_empty() {
            self.advance_start();
        }
        archived
    }

    /// Applies `member`'s acknowledgement of `offset` at `now_ms`. Returns the record if
    /// this archived it (to be dead-lettered).
    pub fn acknowledge(
        &mut self,
        member: &str,
        offset: i64,
        kind: AckKind,
        now_ms: u64,
    ) -> Result<Option<Archived>, AckError> {
        if let AckKind::Release { delay_ms } = kind
            && delay_ms > MAX_DELIVERY_DELAY_MS
        {
            return Err(AckError::DelayTooLong(delay_ms));
        }
        let entry = self
            .records
            .get_mut(&offset)
            .ok_or(AckError::NotHeld(offset))?;
        match &entry.state {
            RecordState::Acquired {
                member: holder,
                deadline_ms,
            } if &**holder == member && *deadline_ms > now_ms => {}
            _ => return Err(AckError::NotHeld(offset)),
        }
        let limit = self.config.delivery_count_limit;
        let copied = !self.config.dead_letter;
        let mut archived = None;
        match kind {
            AckKind::Accept => entry.state = RecordState::Acknowledged,
            AckKind::Renew => {
                if let RecordState::Acquired { deadline_ms, .. } = &mut entry.state {
                    *deadline_ms = now_ms.saturating_add(self.config.lock_duration_ms);
                }
            }
            AckKind::Reject => {
                entry.state = RecordState::Archived {
                    reason: ArchiveReason::Rejected,
                    copied,
                };
                archived = Some(ArchiveReason::Rejected);
            }
            AckKind::Release { .. } if entry.delivery_count >= limit => {
                entry.state = RecordState::Archived {
                    reason: ArchiveReason::DeliveryLimit,
                    copied,
                };
                archived = Some(ArchiveReason::DeliveryLimit);
            }
            AckKind::Release { delay_ms } => {
                entry.state = RecordState::Available;
                self.available_from = self.available_from.min(offset);
                entry.not_before_ms = entry.not_before_ms.max(now_ms.saturating_add(delay_ms));
            }
        }
        let delivery_count = entry.delivery_count;
        if kind != AckKind::Renew {
            self.acquired -= 1;
        }
        if archived.is_some() && !copied {
            self.pending_copies += 1;
        }
        self.advance_start();
        Ok(archived.map(|reason| Archived {
            offset,
            delivery_count,
            reason,
        }))
    }

    /// Ends the locks that expired by `now_ms`: those records become available again, or
    /// are archived at the delivery limit (returned, to be dead-lettered).
    pub fn expire(&mut self, now_ms: u64) -> Vec<Archived> {
        if self.acquired == 0 || now_ms < self.earliest_deadline_ms {
            return Vec::new();
        }
        self.end_locks(|_, deadline_ms| deadline_ms <= now_ms)
    }

    /// Ends the locks `ends` picks (by holder and deadline): the record becomes
    /// available, or is archived at the delivery limit.
    fn end_locks(&mut self, ends: impl Fn(&str, u64) -> bool) -> Vec<Archived> {
        let limit = self.config.delivery_count_limit;
        let copied = !self.config.dead_letter;
        let mut archived = Vec::new();
        let mut released = 0;
        for (&offset, entry) in self.records.iter_mut() {
            let RecordState::Acquired {
                ref member,
                deadline_ms,
            } = entry.state
            else {
                continue;
            };
            if !ends(member, deadline_ms) {
                continue;
            }
            released += 1;
            if entry.delivery_count >= limit {
                let reason = ArchiveReason::LockExpiredAtLimit;
                entry.state = RecordState::Archived { reason, copied };
                archived.push(Archived {
                    offset,
                    delivery_count: entry.delivery_count,
                    reason,
                });
            } else {
                entry.state = RecordState::Available;
                self.available_from = self.available_from.min(offset);
            }
        }
        self.acquired -= released;
        if !copied {
            self.pending_copies += archived.len();
        }
        self.earliest_deadline_ms = self
            .records
            .values()
            .filter_map(|e| match e.state {
                RecordState::Acquired { deadline_ms, .. } => Some(deadline_ms),
                _ => None,
            })
            .min()
            .unwrap_or(u64::MAX);
        self.advance_start();
        archived
    }

    /// Every lock ends at once, counts kept: what a leader of a release that did not
    /// carry locks did with the records its predecessor had handed out. As with an
    /// expired lock, a record at the delivery limit is archived (returned) rather than
    /// made available for one delivery too many.
    pub fn forfeit_locks(&mut self) -> Vec<Archived> {
        self.end_locks(|_, _| true)
    }

    /// Ends every lock `member` holds, counts kept, as an expired lock ends: what a member
    /// that leaves gives back (Kafka releases a closed share session's records).
    pub fn release_member(&mut self, member: &str) -> Vec<Archived> {
        if self.acquired == 0 {
            return Vec::new();
        }
        self.end_locks(|holder, _| holder == member)
    }

    /// The dead-letter copy of an archived record is done: it may now be finished.
    /// Returns whether `offset` was archived and waiting.
    pub fn dead_lettered(&mut self, offset: i64) -> bool {
        let Some(entry) = self.records.get_mut(&offset) else {
            return false;
        };
        let RecordState::Archived { copied, .. } = &mut entry.state else {
            return false;
        };
        let waited = !*copied;
        *copied = true;
        self.pending_copies -= usize::from(waited);
        self.advance_start();
        waited
    }

    /// What the window holds at `now_ms`.
    pub fn counts(&self, now_ms: u64) -> WindowCounts {
        let mut counts = WindowCounts::default();
        for (&offset, entry) in &self.records {
            if !entry.finished() && counts.oldest_unfinished.is_none() {
                counts.oldest_unfinished = Some(offset);
            }
            match entry.state {
                RecordState::Available if entry.not_before_ms > now_ms => counts.delayed += 1,
                RecordState::Available => counts.available += 1,
                RecordState::Acquired { .. } => counts.acquired += 1,
                RecordState::Archived { copied: false, .. } => counts.archived_pending += 1,
                RecordState::Acknowledged | RecordState::Archived { .. } => {}
            }
        }
        counts
    }

    /// The window as a `__share_group_state` snapshot, written by the leader of
    /// `leader_epoch`: consecutive offsets with one state, count and not-before time make
    /// one range; an acquired record is written as available, its lock beside the ranges
    /// (consecutive offsets held by one member until one deadline make one lock). The
    /// records never delivered after the last one delivered are left out: the log holds
    /// all there is to know of them ([`Self::load`] reads them again).
    pub fn snapshot(&self, leader_epoch: i32) -> StateValue {
        let mut ranges: Vec<StateRange> = Vec::new();
        let mut locks: Vec<StateLock> = Vec::new();
        for (&offset, entry) in self.records.range(..self.touched_end) {
            let state = PersistedState::of(&entry.state);
            match ranges.last_mut() {
                Some(r)
                    if r.last + 1 == offset
                        && r.state == state
                        && r.delivery_count == entry.delivery_count
                        && r.not_before_ms == entry.not_before_ms =>
                {
                    r.last = offset;
                }
                _ => ranges.push(StateRange {
                    first: offset,
                    last: offset,
                    state,
                    delivery_count: entry.delivery_count,
                    not_before_ms: entry.not_before_ms,
                }),
            }
            let RecordState::Acquired {
                member,
                deadline_ms,
            } = &entry.state
            else {
                continue;
            };
            match locks.last_mut() {
                Some(l)
                    if l.last + 1 == offset
                        && *l.member == **member
                        && l.deadline_ms == *deadline_ms =>
                {
                    l.last = offset;
                }
                _ => locks.push(StateLock {
                    first: offset,
                    last: offset,
                    member: member.to_string(),
                    deadline_ms: *deadline_ms,
                }),
            }
        }
        StateValue {
            kind: StateKind::Snapshot,
            leader_epoch,
            start: self.start,
            ranges,
            locks,
        }
    }

    /// The window a new leader rebuilds from the latest snapshot and the deltas written
    /// after it, in order: every record in the state it was persisted in, with its count
    /// and not-before time, and every lock the snapshot carries held by the same member
    /// until the same deadline (docs/queues.md § What is promised, 3; one that has run
    /// out ends at the next [`Self::expire`]). An available record already at the
    /// delivery limit was acquired when its leader went, by a leader that did not carry
    /// its lock (a release at the limit archives at once): its lock is forfeited at the
    /// limit, so it is archived and returned, to be dead-lettered, as
    /// [`Self::forfeit_locks`] does. Offsets from [`Self::end`] on are read from the log
    /// again with [`Self::extend`].
    pub fn load<'a>(
        config: ShareConfig,
        snapshot: &StateValue,
        deltas: impl IntoIterator<Item = &'a StateValue>,
    ) -> (SharePartition, Vec<Archived>) {
        let mut sp = SharePartition::new(config, snapshot.start);
        sp.overlay(snapshot);
        for delta in deltas {
            sp.overlay(delta);
        }
        let limit = config.delivery_count_limit;
        let copied = !config.dead_letter;
        let mut archived = Vec::new();
        for (&offset, entry) in sp.records.iter_mut() {
            if let RecordState::Acquired { deadline_ms, .. } = entry.state {
                sp.acquired += 1;
                sp.earliest_deadline_ms = sp.earliest_deadline_ms.min(deadline_ms);
            }
            if entry.state == RecordState::Available && entry.delivery_count >= limit {
                let reason = ArchiveReason::LockExpiredAtLimit;
                entry.state = RecordState::Archived { reason, copied };
                archived.push(Archived {
                    offset,
                    delivery_count: entry.delivery_count,
                    reason,
                });
            }
        }
        sp.pending_copies = sp.records.values().filter(|e| e.waits_for_copy()).count();
        sp.touched_end = sp.end;
        sp.available_from = sp.start;
        sp.advance_start();
        (sp, archived)
    }

    /// Writes `value`'s ranges over the window, then its locks over the records they
    /// name, and moves `start` to its start.
    fn overlay(&mut self, value: &StateValue) {
        for r in &value.ranges {
            for offset in r.first..=r.last {
                self.records.insert(
                    offset,
                    Entry {
                        state: r.state.state(),
                        delivery_count: r.delivery_count,
                        not_before_ms: r.not_before_ms,
                        expires_at_ms: NEVER_EXPIRES,
                    },
                );
            }
            self.end = self.end.max(r.last + 1);
        }
        for lock in &value.locks {
            let member: Arc<str> = Arc::from(lock.member.as_str());
            // Only a record the ranges wrote as available was acquired.
            for (_, entry) in self.records.range_mut(lock.first..=lock.last) {
                if entry.state == RecordState::Available {
                    entry.state = RecordState::Acquired {
                        member: member.clone(),
                        deadline_ms: lock.deadline_ms,
                    };
                }
            }
        }
        self.start = self.start.max(value.start);
        self.end = self.end.max(self.start);
        let kept = self.records.split_off(&self.start);
        self.records = kept;
    }

    /// Moves `start` past the finished records at the head of the window.
    fn advance_start(&mut self) {
        while let Some(entry) = self.records.first_entry() {
            if !entry.get().finished() {
                self.start = *entry.key();
                return;
            }
            entry.remove();
        }
        self.start = self.end;
    }
}

mod length;
#[cfg(test)]
mod tests;
