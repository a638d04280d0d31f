//! [`Replica`]: one partition replica's state machine, switching between leader,
//! follower and offline as the metadata says (and recovering while its log is reopened
//! after a failure: `recovery.rs`), and the events and commands it speaks.

use bytes::Bytes;

use super::follower::Follower;
use super::leader::Leader;
use super::messages::{AlterIsrAnswer, AlterIsrRequest, FetchAnswer, FetchRequest, ProduceRefusal};
use super::recovery::Recovering;
use crate::controller::records::{BrokerEpoch, NO_LEADER, PartitionRegistration};
use crate::partition::BrokerId;

/// What the state machine may ask of the local log: in-memory facts, no disk access.
pub trait LocalLog {
    fn log_start_offset(&self) -> i64;
    /// The offset the next record will get.
    fn log_end_offset(&self) -> i64;
    /// Everything below it is durable.
    fn flushed_offset(&self) -> i64;
    /// Kafka's OffsetsForLeaderEpoch on this log: the largest epoch at most `epoch` and
    /// the offset after its last record; `None` if the log remembers no epoch that old.
    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)>;
    /// Epoch of the last batch in the log; `None` if the log is empty.
    fn last_epoch(&self) -> Option<i32>;
}

/// Settings of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This broker.
    pub node: BrokerId,
    /// This broker's registration epoch (stamped on its fetches).
    pub broker_epoch: BrokerEpoch,
    /// Durable flush policy (`group-commit`, `every-append`): a replica's position is its
    /// flushed offset, so the high watermark only passes fsynced records.
    pub durable: bool,
    /// `min.insync.replicas`.
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: u64,
    pub fetch_timeout_ms: u64,
    pub fetch_backoff_ms: u64,
    pub alter_isr_timeout_ms: u64,
    /// A follower syncs an answer at least this large while its next fetch is out
    /// (pipelining); a smaller one before (see [`super::PIPELINE_MIN_BYTES`]).
    pub pipeline_min_bytes: usize,
}

impl ReplicaConfig {
    /// The defaults, for `node` registered at `broker_epoch`.
    pub fn new(node: BrokerId, broker_epoch: BrokerEpoch) -> ReplicaConfig {
        ReplicaConfig {
            node,
            broker_epoch,
            durable: true,
            min_insync_replicas: 1,
            replica_lag_time_max_ms: super::DEFAULT_REPLICA_LAG_TIME_MAX_MS,
            fetch_timeout_ms: super::DEFAULT_FETCH_TIMEOUT_MS,
            fetch_backoff_ms: super::DEFAULT_FETCH_BACKOFF_MS,
            alter_isr_timeout_ms: super::DEFAULT_ALTER_ISR_TIMEOUT_MS,
            pipeline_min_bytes: super::PIPELINE_MIN_BYTES,
        }
    }

    /// How far `log` is known to be safe: flushed under a durable policy, written
    /// otherwise (see `docs/replication.md`, "position").
    pub(super) fn position(&self, log: &impl LocalLog) -> i64 {
        if self.durable {
            log.flushed_offset().min(log.log_end_offset())
        } else {
            log.log_end_offset()
        }
    }
}

/// Something that happened to the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The metadata image holds this state for the partition (new or changed).
    Registration(PartitionRegistration),
    /// A follower's fetch arrived (this replica should be the leader).
    Fetch(FetchRequest),
    /// The leader answered this replica's fetch; `batches` are the stored batches that
    /// came with a [`FetchAnswer::Data`] (empty otherwise).
    FetchAnswered { answer: FetchAnswer, batches: Bytes },
    /// The local log's end moved forward: a produce append as leader, or a
    /// [`Command::AppendReplicated`] as follower, finished.
    LogAppended,
    /// A [`Command::AppendReplicated`] wrote nothing and the log did not fail: its disk
    /// is full. The follower fetches the same offset again after
    /// [`APPEND_REFUSED_BACKOFF_MS`](super::follower::APPEND_REFUSED_BACKOFF_MS), and so
    /// catches up by itself once space is freed (meanwhile the leader's lag timer takes it
    /// out of the ISR).
    AppendRefused,
    /// A [`Command::Flush`] (or any sync) finished; the flushed offset moved.
    LogFlushed,
    /// A [`Command::Truncate`] finished (durably).
    LogTruncated,
    /// The controller answered this replica's ISR proposal.
    AlterIsrAnswered(AlterIsrAnswer),
    /// Time passed (timeouts: fetch retries, ISR lag, unanswered proposals).
    Tick,
    /// A write or sync of the local log failed: its unsynced tail is unknown.
    LogFailed,
    /// A [`Command::ReopenLog`] finished: the log is open again, recovered.
    LogReopened,
    /// This broker's session with the controller lapsed: it has had no heartbeat answered
    /// for a session timeout, so the controller may have fenced it and elected other
    /// leaders (docs/replication.md § Stepping aside when cut off). A leader stops
    /// leading until [`Event::LeaseRenewed`]: it takes no appends, serves no reads and
    /// fails the `acks=all` appends waiting under its epoch with NOT_LEADER.
    LeaseLapsed,
    /// A heartbeat was answered again: a leader whose metadata still names it leads again
    /// at the same epoch (if the controller moved the leadership meanwhile, the metadata
    /// that says so arrives as a [`Event::Registration`]).
    LeaseRenewed,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send this fetch to the leader.
    SendFetch {
        leader: BrokerId,
        request: FetchRequest,
    },
    /// Answer a follower's fetch; for [`FetchAnswer::Data`] read the batches from
    /// `from_offset` and send them along. If there are none yet and `may_wait`, the
    /// driver may hold the answer until the log end moves, up to the fetch wait; without
    /// `may_wait` (the follower's flush is pending) it answers at once.
    AnswerFetch {
        to: BrokerId,
        answer: FetchAnswer,
        may_wait: bool,
    },
    /// Append these batches, as stored by the leader, to the local log; then
    /// [`Event::LogAppended`].
    AppendReplicated { batches: Bytes },
    /// Make everything written durable; then [`Event::LogFlushed`]. Drivers coalesce
    /// these (group commit).
    Flush,
    /// Make the log end at `offset`, durably: cut what is above it, or, if the log ends
    /// below it, empty the log and restart it at `offset`. Then [`Event::LogTruncated`].
    Truncate { offset: i64 },
    /// Send this ISR change to the controller.
    ProposeIsr(AlterIsrRequest),
    /// The published high watermark moved: consumers may read below it and `acks=all`
    /// appends below it are answered.
    PublishHighWatermark(i64),
    /// This replica no longer leads at `leader_epoch`: fail the appends still waiting
    /// under it with NOT_LEADER.
    LeadershipEnded { leader_epoch: i32 },
    /// The log failed: close it and open it again (recovery), cut to `truncate_to` if
    /// it ends above it (durably); keep trying while that fails. Then
    /// [`Event::LogReopened`].
    ReopenLog { truncate_to: Option<i64> },
    /// Ask the controller for a new leader epoch: this replica must not append at
    /// `leader_epoch` again (`recovery.rs`).
    ResignLeadership { leader_epoch: i32 },
}

/// What a replica is, as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not a replica, or no metadata yet.
    Offline,
    /// Leading at `leader_epoch` (and not stepped aside: a leader whose lease lapsed shows
    /// as a follower of [`NO_LEADER`]).
    Leader { leader_epoch: i32 },
    /// Following `leader` ([`NO_LEADER`] while the partition has none).
    Follower { leader: BrokerId, leader_epoch: i32 },
    /// The log failed; it serves nothing until it is reopened (and, for a leader that
    /// lost a tail, until the controller has moved past its leadership).
    Recovering,
}

#[derive(Debug)]
pub(super) enum State {
    Offline,
    Leader(Leader),
    Follower(Follower),
    Recovering(Recovering),
}

/// One partition replica's replication state machine.
#[derive(Debug)]
pub struct Replica {
    pub(super) config: ReplicaConfig,
    pub(super) registration: Option<PartitionRegistration>,
    pub(super) state: State,
    /// Everything below it is committed. Never moves back.
    pub(super) high_watermark: i64,
    /// The high watermark published by the current leadership (see
    /// `docs/replication.md`, "Publishing the HW"); `None` outside a leadership and
    /// until it has committed its inherited log. Never moves back within one.
    pub(super) published: Option<i64>,
    pub(super) next_fetch_id: u64,
    /// The broker's controller session lapsed ([`Event::LeaseLapsed`]): a leader steps
    /// aside until it is renewed.
    pub(super) lease_lapsed: bool,
}

impl Replica {
    /// A replica with no metadata yet; `high_watermark` is the last checkpointed one.
    pub fn new(config: ReplicaConfig, high_watermark: i64) -> Replica {
        Replica {
            config,
            registration: None,
            state: State::Offline,
            high_watermark,
            published: None,
            next_fetch_id: 1,
            lease_lapsed: false,
        }
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// New settings (a topic config change); the role and positions stay.
    pub fn reconfigure(&mut self, config: ReplicaConfig) {
        self.config = config;
    }

    pub fn role(&self) -> Role {
        match &self.state {
            State::Offline => Role::Offline,
            // Stepped aside: it keeps its state (and answers followers' fetches), but
            // leads for nobody else.
            State::Leader(l) if self.lease_lapsed => Role::Follower {
                leader: NO_LEADER,
                leader_epoch: l.leader_epoch,
            },
            State::Leader(l) => Role::Leader {
                leader_epoch: l.leader_epoch,
            },
            State::Follower(f) => Role::Follower {
                leader: f.leader,
                leader_epoch: f.leader_epoch,
            },
            State::Recovering(_) => Role::Recovering,
        }
    }

    /// The partition state last applied from metadata.
    pub fn registration(&self) -> Option<&PartitionRegistration> {
        self.registration.as_ref()
    }

    /// The leader to name to a client this replica turns away: the metadata's, or
    /// [`NO_LEADER`] while the broker's session has lapsed (its metadata may be stale,
    /// and may name this very broker).
    pub fn known_leader(&self) -> BrokerId {
        match self.lease_lapsed {
            true => NO_LEADER,
            false => self.registration.as_ref().map_or(NO_LEADER, |r| r.leader),
        }
    }

    /// Everything below it is committed; a leader serves reads below it.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The high watermark consumers and `acks=all` see; `None` while a new leader has
    /// not committed what it inherited (and on a replica that never led).
    pub fn published_high_watermark(&self) -> Option<i64> {
        self.published
    }

    /// Whether a produce may be appended now, and under which leader epoch (each queued
    /// append carries it; the appender refuses it if the epoch moved meanwhile).
    pub fn check_produce(&self, acks_all: bool) -> Result<i32, ProduceRefusal> {
        if let State::Recovering(_) = self.state {
            return Err(ProduceRefusal::LogRecovering);
        }
        let leader = match &self.state {
            State::Leader(leader) if !self.lease_lapsed => leader,
            _ => {
                let leader_epoch = self.registration.as_ref().map_or(-1, |r| r.leader_epoch);
                return Err(ProduceRefusal::NotLeader {
                    leader: self.known_leader(),
                    leader_epoch,
                });
            }
        };
        let isr = self.registration.as_ref().map_or(0, |r| r.isr.len());
        if acks_all && isr < self.config.min_insync_replicas {
            return Err(ProduceRefusal::NotEnoughReplicas {
                isr,
                min_insync: self.config.min_insync_replicas,
            });
        }
        Ok(leader.leader_epoch)
    }

    /// Handles one event at time `now_ms` against the local log's current state.
    pub fn handle(&mut self, event: Event, now_ms: u64, log: &impl LocalLog) -> Vec<Command> {
        let mut out = Vec::new();
        match event {
            Event::Registration(reg) if matches!(self.state, State::Recovering(_)) => {
                self.on_registration_recovering(reg, now_ms, log, &mut out)
            }
            Event::Tick if matches!(self.state, State::Recovering(_)) => {
                self.on_tick_recovering(now_ms, log, &mut out)
            }
            Event::LogFailed => self.on_log_failed(log, &mut out),
            Event::LogReopened => self.on_log_reopened(now_ms, log, &mut out),
            Event::Registration(reg) => self.on_registration(reg, now_ms, log, &mut out),
            Event::Fetch(request) => self.on_fetch(request, now_ms, log, &mut out),
            Event::FetchAnswered { answer, batches } => {
                self.on_fetch_answered(answer, batches, now_ms, log, &mut out)
            }
            Event::LogAppended => self.on_log_appended(now_ms, log, &mut out),
            Event::AppendRefused => self.on_append_refused(now_ms),
            Event::LogFlushed => self.on_log_flushed(now_ms, log, &mut out),
            Event::LogTruncated => self.on_log_truncated(now_ms, log, &mut out),
            Event::AlterIsrAnswered(answer) => {
                self.on_alter_isr_answered(answer, now_ms, log, &mut out)
            }
            Event::Tick => self.on_tick(now_ms, log, &mut out),
            Event::LeaseLapsed => self.on_lease_lapsed(&mut out),
            Event::LeaseRenewed => self.on_lease_renewed(now_ms, log, &mut out),
        }
        out
    }

    fn on_lease_lapsed(&mut self, out: &mut Vec<Command>) {
        if self.lease_lapsed {
            return;
        }
        self.lease_lapsed = true;
        // The leader state stays (a renewal resumes it at the same epoch); what waits on
        // it is answered now, not at the client's timeout.
        if let State::Leader(leader) = &self.state {
            out.push(Command::LeadershipEnded {
                leader_epoch: leader.leader_epoch,
            });
        }
    }

    fn on_lease_renewed(&mut self, now_ms: u64, log: &impl LocalLog, out: &mut Vec<Command>) {
        if !std::mem::take(&mut self.lease_lapsed) {
            return;
        }
        if matches!(self.state, State::Leader(_)) {
            // Followers may have caught up meanwhile: publish what is committed.
            self.leader_progress(now_ms, log, out);
        }
    }

    fn on_registration(
        &mut self,
        reg: PartitionRegistration,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        if let Some(current) = &self.registration
            && (reg.leader_epoch, reg.partition_epoch)
                <= (current.leader_epoch, current.partition_epoch)
        {
            return; // not newer than what we act on (a late copy)
        }
        let me = self.config.node;
        self.registration = Some(reg.clone());
        if !reg.replicas.contains(&me) {
            self.end_leadership(out);
            self.state = State::Offline;
            return;
        }
        if reg.leader == me {
            if let State::Leader(leader) = &mut self.state
                && leader.leader_epoch == reg.leader_epoch
            {
                // Same leadership, new ISR or replicas (an accepted proposal, a fence,
                // a reassignment).
                leader.registration_changed(&reg.replicas, me, now_ms);
                self.leader_progress(now_ms, log, out);
                return;
            }
            self.end_leadership(out);
            self.become_leader(reg.leader_epoch, now_ms, log, out);
            return;
        }
        if let State::Follower(f) = &self.state
            && f.leader == reg.leader
            && f.leader_epoch == reg.leader_epoch
        {
            return; // an ISR change elsewhere; nothing for this follower to do
        }
        self.end_leadership(out);
        self.become_follower(reg.leader, reg.leader_epoch, now_ms, log, out);
    }

    pub(super) fn end_leadership(&mut self, out: &mut Vec<Command>) {
        if let State::Leader(leader) = &self.state {
            out.push(Command::LeadershipEnded {
                leader_epoch: leader.leader_epoch,
            });
            self.state = State::Offline;
        }
        // What this replica published belongs to that leadership: a later one publishes
        // only once it has committed what it inherits (found by the simulation, seed
        // 119: a re-elected leader served its old, lower HW).
        self.published = None;
    }

    /// Raises the high watermark to `hw` (never lowers it).
    pub(super) fn raise_high_watermark(&mut self, hw: i64) {
        self.high_watermark = self.high_watermark.max(hw);
    }
}
