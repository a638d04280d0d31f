//! The leader's side: followers' positions, the high watermark, ISR proposals, and the
//! answers to followers' fetches (`docs/replication.md` § The leader, § The fetch).

use std::collections::{BTreeMap, VecDeque};

use super::messages::{AlterIsrAnswer, AlterIsrRequest, FetchAnswer, FetchError, FetchRequest};
use super::replica::{Command, LocalLog, Replica, State};
use crate::controller::records::BrokerEpoch;
use crate::partition::BrokerId;

/// What the leader knows of one follower since it took its epoch.
#[derive(Debug, Clone)]
pub(super) struct Progress {
    /// The follower's registration epoch, from its fetches; fetches of an older
    /// incarnation are ignored.
    broker_epoch: Option<BrokerEpoch>,
    /// Everything below it is on the follower (durably, under a durable policy); `None`
    /// until its first accepted fetch of this epoch.
    position: Option<i64>,
    /// When it was last caught up (Kafka's lastCaughtUpTimeMs).
    last_caught_up_ms: u64,
    /// The leader's log end when it answered each of this follower's last
    /// [`FETCH_HISTORY`] fetches, and when, oldest first.
    fetches: VecDeque<(i64, u64)>,
}

/// Fetches remembered per follower for the caught-up rule. Kafka looks one fetch back; a
/// pipelined follower reports its flush a fetch or two after the data arrived, so a
/// few more are kept (`docs/replication.md` § The leader, ISR shrink).
const FETCH_HISTORY: usize = 4;

impl Progress {
    fn new(now_ms: u64) -> Progress {
        Progress {
            broker_epoch: None,
            position: None,
            last_caught_up_ms: now_ms,
            fetches: VecDeque::with_capacity(FETCH_HISTORY),
        }
    }

    /// Records an accepted fetch reporting `position` while the leader's log ends at
    /// `log_end`: the follower is caught up as of the latest time at which the leader's
    /// log ended at or below its position (now, if it has everything).
    fn fetched(&mut self, position: i64, log_end: i64, now_ms: u64) {
        let position = self.position.unwrap_or(i64::MIN).max(position);
        self.position = Some(position);
        let caught_up_at = if position >= log_end {
            Some(now_ms)
        } else {
            self.fetches
                .iter()
                .rev()
                .find(|(end, _)| position >= *end)
                .map(|(_, at)| *at)
        };
        if let Some(at) = caught_up_at {
            self.last_caught_up_ms = self.last_caught_up_ms.max(at);
        }
        if self.fetches.len() == FETCH_HISTORY {
            self.fetches.pop_front();
        }
        self.fetches.push_back((log_end, now_ms));
    }
}

/// An ISR change sent to the controller and not answered yet (or refused).
#[derive(Debug, Clone)]
struct Pending {
    isr: Vec<BrokerId>,
    /// The controller refused it: it will never be committed, so the members it adds
    /// no longer hold the high watermark back.
    refused: bool,
    /// When the leader may propose again if nothing newer arrives: the answer timeout
    /// after sending, a short back-off after a refusal.
    retry_at_ms: u64,
}

/// Wait after a refused ISR change before proposing again (a refusal often means "not
/// yet": a returning broker not unfenced yet; the fault tests saw rejoins wait out the
/// whole answer timeout).
const REFUSED_RETRY_MS: u64 = 500;

#[derive(Debug)]
pub(super) struct Leader {
    pub(super) leader_epoch: i32,
    /// The log end when this leadership began: the published high watermark waits until
    /// everything before it is committed.
    epoch_start_offset: i64,
    followers: BTreeMap<BrokerId, Progress>,
    pending: Option<Pending>,
    /// Members added by earlier proposals that got no answer (no reply, or the answer
    /// timeout ran out): one of them may have been committed, so they count in the
    /// maximal ISR until the metadata moves past the epoch they were proposed on. Without
    /// this, a proposal replacing an unanswered one, then refused because the first was
    /// committed, would let the HW pass a member the committed ISR holds.
    uncertain: Vec<BrokerId>,
}

impl Leader {
    /// The metadata moved (same leadership): an answered or superseded proposal is over.
    /// Any registration newer than the one a proposal was made on either is that
    /// proposal's result or shows it was refused (the controller commits a proposal only
    /// on the partition epoch it names), so the uncertain members are settled too.
    ///
    /// Replicas a reassignment adds are tracked from now (fetched nothing yet); replicas
    /// it removed are forgotten (`docs/replication.md` § Reassignment).
    pub(super) fn registration_changed(
        &mut self,
        replicas: &[BrokerId],
        me: BrokerId,
        now_ms: u64,
    ) {
        self.pending = None;
        self.uncertain.clear();
        self.followers.retain(|b, _| replicas.contains(b));
        for &b in replicas.iter().filter(|b| **b != me) {
            self.followers
                .entry(b)
                .or_insert_with(|| Progress::new(now_ms));
        }
    }

    /// Drops the pending proposal without a definite answer: its additions stay counted.
    fn forget_unanswered(&mut self, committed_isr: &[BrokerId]) {
        if let Some(p) = self.pending.take()
            && !p.refused
        {
            for m in p.isr {
                if !committed_isr.contains(&m) && !self.uncertain.contains(&m) {
                    self.uncertain.push(m);
                }
            }
        }
    }
}

impl Replica {
    pub(super) fn become_leader(
        &mut self,
        leader_epoch: i32,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        let me = self.config.node;
        let replicas = self
            .registration
            .as_ref()
            .map(|r| r.replicas.clone())
            .unwrap_or_default();
        let followers = replicas
            .into_iter()
            .filter(|r| *r != me)
            .map(|r| (r, Progress::new(now_ms)))
            .collect();
        self.high_watermark = self.high_watermark.max(log.log_start_offset());
        self.state = State::Leader(Leader {
            leader_epoch,
            epoch_start_offset: log.log_end_offset(),
            followers,
            pending: None,
            uncertain: Vec::new(),
        });
        if self.config.durable && log.flushed_offset() < log.log_end_offset() {
            out.push(Command::Flush);
        }
        self.leader_progress(now_ms, log, out);
    }

    pub(super) fn on_fetch(
        &mut self,
        req: FetchRequest,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        let to = req.replica;
        let answer = match self.answer_fetch(&req, now_ms, log) {
            Some(answer) => answer,
            None => return, // a stale incarnation's fetch: dropped
        };
        let accepted = matches!(answer, FetchAnswer::Data { .. });
        // A follower whose flush is pending must be answered at once: the high
        // watermark waits for the flushed offset its next fetch reports.
        let may_wait = req.flushed_offset >= req.fetch_offset;
        out.push(Command::AnswerFetch {
            to,
            answer,
            may_wait,
        });
        if accepted {
            self.leader_progress(now_ms, log, out);
        }
    }

    fn answer_fetch(
        &mut self,
        req: &FetchRequest,
        now_ms: u64,
        log: &impl LocalLog,
    ) -> Option<FetchAnswer> {
        let fetch_id = req.fetch_id;
        let error = |error| Some(FetchAnswer::Error { fetch_id, error });
        let published = self.published;
        let State::Leader(leader) = &mut self.state else {
            return error(FetchError::NotLeader);
        };
        let leader_epoch = leader.leader_epoch;
        if req.leader_epoch < leader_epoch {
            return error(FetchError::FencedLeaderEpoch);
        }
        if req.leader_epoch > leader_epoch {
            return error(FetchError::UnknownLeaderEpoch);
        }
        let Some(progress) = leader.followers.get_mut(&req.replica) else {
            return error(FetchError::NotLeader); // not a replica of this partition
        };
        match progress.broker_epoch {
            Some(known) if known > req.broker_epoch => return None,
            Some(known) if known == req.broker_epoch => {}
            _ => {
                // A new incarnation: nothing it reported before counts.
                *progress = Progress {
                    broker_epoch: Some(req.broker_epoch),
                    ..Progress::new(progress.last_caught_up_ms)
                };
            }
        }
        let log_end = log.log_end_offset();
        let log_start = log.log_start_offset();
        if req.last_fetched_epoch >= 0 {
            let diverged = match log.end_offset_for_epoch(req.last_fetched_epoch) {
                Some((epoch, end)) if epoch != req.last_fetched_epoch || end < req.fetch_offset => {
                    Some((epoch, end))
                }
                Some(_) => None,
                // Older than anything this log remembers: start again from the log start.
                None => Some((-1, log_start)),
            };
            if let Some((epoch, end_offset)) = diverged {
                return Some(FetchAnswer::Diverging {
                    fetch_id,
                    leader_epoch,
                    epoch,
                    end_offset,
                });
            }
        } else if req.fetch_offset > log_end {
            // An empty log claiming to be past our end: start it again at our end.
            return Some(FetchAnswer::Diverging {
                fetch_id,
                leader_epoch,
                epoch: -1,
                end_offset: log_end,
            });
        }
        if req.fetch_offset < log_start {
            return Some(FetchAnswer::OffsetOutOfRange {
                fetch_id,
                leader_epoch,
                log_start_offset: log_start,
            });
        }
        // Accepted: the follower holds everything below its position.
        progress.fetched(req.flushed_offset.min(req.fetch_offset), log_end, now_ms);
        Some(FetchAnswer::Data {
            fetch_id,
            leader_epoch,
            from_offset: req.fetch_offset,
            high_watermark: published,
            log_start_offset: log_start,
        })
    }

    /// Whether a tick can change nothing: a leader with no other replica (no follower
    /// to time out), no ISR proposal out or in doubt, its lease held and its high
    /// watermark published at its own position. Every change to such a replica comes
    /// with an event (an append or flush of its log, new metadata, a lease change), so a
    /// driver need not tick it until the next event.
    pub fn at_rest(&self, log: &impl LocalLog) -> bool {
        let (State::Leader(leader), Some(reg)) = (&self.state, &self.registration) else {
            return false;
        };
        let me = self.config.node;
        !self.lease_lapsed
            && reg.replicas == [me]
            && reg.isr == [me]
            && reg.reassignment.is_none()
            && leader.followers.is_empty()
            && leader.pending.is_none()
            && leader.uncertain.is_empty()
            && self.published == Some(self.high_watermark)
            && self.high_watermark == self.config.position(log)
    }

    /// Recomputes the high watermark (publishing it once this leadership's inherited log
    /// is committed) and proposes an ISR change if one is due.
    pub(super) fn leader_progress(
        &mut self,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        let own = self.config.position(log);
        let me = self.config.node;
        let State::Leader(leader) = &self.state else {
            return;
        };
        let Some(reg) = &self.registration else {
            return;
        };
        // The maximal ISR: the committed one plus members a pending proposal adds
        // (members it removes still count until the removal is committed). A proposal
        // the controller refused adds nobody: counting its members held the HW on a
        // broker that had just stopped for as long as it still looked caught up (10 s
        // of stalled acks=all writes after every controlled shutdown; docs/replication.md
        // § Found 6). One with no answer still counts: it may have been committed.
        let mut maximal: Vec<BrokerId> = reg.isr.clone();
        if let Some(p) = leader.pending.as_ref().filter(|p| !p.refused) {
            maximal.extend(p.isr.iter().copied().filter(|b| !reg.isr.contains(b)));
        }
        for m in &leader.uncertain {
            if !maximal.contains(m) {
                maximal.push(*m);
            }
        }
        let mut hw = Some(own);
        for member in maximal.iter().filter(|m| **m != me) {
            let position = leader.followers.get(member).and_then(|p| p.position);
            hw = match (hw, position) {
                (Some(h), Some(p)) => Some(h.min(p)),
                _ => None, // a member not heard from this epoch holds the HW where it is
            };
        }
        let epoch_start = leader.epoch_start_offset;
        if let Some(hw) = hw {
            self.raise_high_watermark(hw);
        }
        if self.high_watermark >= epoch_start && self.published < Some(self.high_watermark) {
            self.published = Some(self.high_watermark);
            out.push(Command::PublishHighWatermark(self.high_watermark));
        }
        self.maybe_propose_isr(now_ms, out);
    }

    fn maybe_propose_isr(&mut self, now_ms: u64, out: &mut Vec<Command>) {
        let me = self.config.node;
        let (lag_max, alter_timeout) = (
            self.config.replica_lag_time_max_ms,
            self.config.alter_isr_timeout_ms,
        );
        let hw = self.high_watermark;
        let (Some(reg), State::Leader(leader)) = (&self.registration, &mut self.state) else {
            return;
        };
        if let Some(p) = &leader.pending {
            if now_ms < p.retry_at_ms {
                return;
            }
            // Unanswered or refused: look again (an unanswered one's additions stay
            // counted).
            leader.forget_unanswered(&reg.isr);
        }
        let floor = hw.max(leader.epoch_start_offset);
        let mut isr: Vec<BrokerId> = reg
            .isr
            .iter()
            .copied()
            .filter(|m| {
                *m == me
                    || leader
                        .followers
                        .get(m)
                        .is_some_and(|p| now_ms.saturating_sub(p.last_caught_up_ms) <= lag_max)
            })
            .collect();
        for (broker, progress) in &leader.followers {
            let caught_up = progress.broker_epoch.is_some()
                && progress.position.is_some_and(|p| p >= floor)
                && now_ms.saturating_sub(progress.last_caught_up_ms) <= lag_max;
            if caught_up && !isr.contains(broker) {
                isr.push(*broker);
            }
        }
        if !isr.contains(&me) {
            isr.push(me);
        }
        let mut proposed = isr.clone();
        proposed.sort_unstable();
        let mut committed = reg.isr.clone();
        committed.sort_unstable();
        if proposed == committed {
            return;
        }
        // Keep the replica order (the preferred leader first) in what is proposed.
        let isr: Vec<BrokerId> = reg
            .replicas
            .iter()
            .copied()
            .filter(|r| isr.contains(r))
            .collect();
        let new_isr = isr
            .iter()
            .map(|m| {
                let epoch = if *m == me {
                    self.config.broker_epoch
                } else {
                    leader.followers[m].broker_epoch.unwrap_or(-1)
                };
                (*m, epoch)
            })
            .collect();
        out.push(Command::ProposeIsr(AlterIsrRequest {
            leader: me,
            leader_epoch: leader.leader_epoch,
            partition_epoch: reg.partition_epoch,
            new_isr,
        }));
        leader.pending = Some(Pending {
            isr,
            refused: false,
            retry_at_ms: now_ms + alter_timeout,
        });
    }

    pub(super) fn on_alter_isr_answered(
        &mut self,
        answer: AlterIsrAnswer,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        match answer {
            // The same registration also arrives through the metadata log; whichever
            // comes first is applied, the other is ignored as not newer.
            AlterIsrAnswer::Accepted(reg) => {
                self.handle_registration_from_answer(reg, now_ms, log, out)
            }
            // Keep the proposal pending until newer metadata or a short back-off:
            // proposing again at once would only be refused again.
            AlterIsrAnswer::Refused => {
                if let State::Leader(leader) = &mut self.state
                    && let Some(p) = &mut leader.pending
                {
                    p.retry_at_ms = now_ms + REFUSED_RETRY_MS;
                    p.refused = true;
                }
                // Its additions no longer count: the HW may move now.
                self.leader_progress(now_ms, log, out);
            }
            AlterIsrAnswer::Unknown => {
                if let State::Leader(leader) = &mut self.state
                    && let Some(p) = &mut leader.pending
                {
                    p.retry_at_ms = now_ms + REFUSED_RETRY_MS;
                }
            }
        }
    }

    fn handle_registration_from_answer(
        &mut self,
        reg: crate::controller::records::PartitionRegistration,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        out.extend(self.handle(super::Event::Registration(reg), now_ms, log));
    }
}
