//! A replica whose log failed (`docs/replication.md` § A replica's log fails). A write or
//! sync error leaves the log's unsynced tail unknown, so the replica stops serving
//! (no appends, no reads, no answers to followers), has its driver reopen the log from
//! its durable point, and then takes up the role the metadata gives it, with one
//! exception: a leader whose reopened log ends short of where it ended may have given
//! followers batches it no longer holds, so it never appends at that leader epoch again.
//! It resigns (the controller elects the next in-sync replica, or this one again, at the
//! next epoch) and waits for a registration past that epoch.

use super::replica::{Command, LocalLog, Replica, State};
use crate::controller::records::PartitionRegistration;

/// What a replica with a failed log is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The driver is reopening the log ([`Command::ReopenLog`]).
    Reopening,
    /// The log was reopened short of where it ended while this replica led at
    /// `led_at`: the controller was asked for a new leader epoch at `sent_ms`.
    Resigning { led_at: i32, sent_ms: u64 },
}

/// The state of a replica whose log failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recovering {
    /// The log end when the log failed: a reopened log that ends below it lost a tail.
    log_end_at_failure: i64,
    /// The leader epoch this replica led at when its log failed.
    led_at: Option<i32>,
    pub(super) phase: Phase,
}

impl Replica {
    /// The log failed: stop serving, and reopen it from its durable point (the flushed
    /// offset under a durable policy, where the high watermark never passes it;
    /// whatever recovery finds intact otherwise, which is what those policies promise).
    pub(super) fn on_log_failed(&mut self, log: &impl LocalLog, out: &mut Vec<Command>) {
        if matches!(self.state, State::Recovering(_)) {
            return;
        }
        let led_at = match &self.state {
            State::Leader(l) => Some(l.leader_epoch),
            _ => None,
        };
        self.end_leadership(out);
        self.state = State::Recovering(Recovering {
            log_end_at_failure: log.log_end_offset(),
            led_at,
            phase: Phase::Reopening,
        });
        let truncate_to = self.config.durable.then(|| log.flushed_offset());
        out.push(Command::ReopenLog { truncate_to });
    }

    /// The driver reopened the log. A leader that lost a tail, with other replicas that
    /// may hold it, resigns; every other replica takes up its role at once.
    pub(super) fn on_log_reopened(
        &mut self,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        let State::Recovering(r) = &mut self.state else {
            return;
        };
        if r.phase != Phase::Reopening {
            return;
        }
        let me = self.config.node;
        let others = self
            .registration
            .as_ref()
            .is_some_and(|reg| reg.replicas.iter().any(|b| *b != me));
        match r.led_at {
            Some(led_at) if others && log.log_end_offset() < r.log_end_at_failure => {
                r.phase = Phase::Resigning {
                    led_at,
                    sent_ms: now_ms,
                };
                out.push(Command::ResignLeadership {
                    leader_epoch: led_at,
                });
                self.resume_if_resigned(now_ms, log, out);
            }
            _ => self.resume(now_ms, log, out),
        }
    }

    /// A registration arrived while recovering: remembered; acted on once the log is
    /// reopened and, for a resigning leader, once it no longer names this replica leader
    /// at the epoch it resigned.
    pub(super) fn on_registration_recovering(
        &mut self,
        reg: PartitionRegistration,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        self.remember_registration(reg);
        self.resume_if_resigned(now_ms, log, out);
    }

    /// Remembers a registration newer than the one it has, without acting on it: for a
    /// recovering replica whose log is closed while it is reopened (the driver has no
    /// log to show it). Taken up once the log is open again.
    pub fn remember_registration(&mut self, reg: PartitionRegistration) {
        let newer = self.registration.as_ref().is_none_or(|current| {
            (reg.leader_epoch, reg.partition_epoch)
                > (current.leader_epoch, current.partition_epoch)
        });
        if newer && matches!(self.state, State::Recovering(_)) {
            self.registration = Some(reg);
        }
    }

    /// Asks the controller again if it has not answered (through the metadata) in time.
    pub(super) fn on_tick_recovering(
        &mut self,
        now_ms: u64,
        log: &impl LocalLog,
        out: &mut Vec<Command>,
    ) {
        let timeout = self.config.alter_isr_timeout_ms;
        if let State::Recovering(Recovering {
            phase: Phase::Resigning { led_at, sent_ms },
            ..
        }) = &mut self.state
            && now_ms.saturating_sub(*sent_ms) >= timeout
        {
            *sent_ms = now_ms;
            out.push(Command::ResignLeadership {
                leader_epoch: *led_at,
            });
        }
        self.resume_if_resigned(now_ms, log, out);
    }

    fn resume_if_resigned(&mut self, now_ms: u64, log: &impl LocalLog, out: &mut Vec<Command>) {
        let State::Recovering(Recovering {
            phase: Phase::Resigning { led_at, .. },
            ..
        }) = self.state
        else {
            return;
        };
        let me = self.config.node;
        let resigned = self
            .registration
            .as_ref()
            .is_some_and(|reg| reg.leader != me || reg.leader_epoch > led_at);
        if resigned {
            self.resume(now_ms, log, out);
        }
    }

    /// Takes up the role the last registration gives, as if it had just arrived.
    fn resume(&mut self, now_ms: u64, log: &impl LocalLog, out: &mut Vec<Command>) {
        self.state = State::Offline;
        if let Some(reg) = self.registration.take() {
            out.extend(self.handle(super::Event::Registration(reg), now_ms, log));
        }
    }
}
