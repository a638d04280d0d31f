//! The simulation's partitions: transactional appends with KIP-890 verification, markers,
//! the last stable offset and read_committed reads, as a partition leader keeps them.

use std::collections::BTreeMap;

use super::super::api::{AddPartitions, Command, MarkerOutcome, Reply, RequestId};
use super::super::{TxnError, TxnResult};
use super::{Msg, OFFSETS, PRODUCE_LOSS, Sim, topic_partition};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProduceError {
    Retriable,
    Abortable,
}

#[derive(Debug, Clone)]
pub(super) enum Entry {
    Data { pid: i64, uid: u64, rec: u64 },
    Marker { pid: i64, commit: bool },
}

#[derive(Debug, Clone, Default)]
pub(super) struct ProducerAtPartition {
    pub(super) epoch: i16,
    pub(super) coordinator_epoch: i32,
    pub(super) ongoing_first: Option<usize>,
    pub(super) guard: Option<u64>,
}

impl ProducerAtPartition {
    /// A producer this partition has seen nothing of: no epoch, no coordinator epoch.
    fn unseen() -> ProducerAtPartition {
        ProducerAtPartition {
            epoch: -1,
            coordinator_epoch: -1,
            ..Default::default()
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Partition {
    pub(super) log: Vec<Entry>,
    pub(super) producers: BTreeMap<i64, ProducerAtPartition>,
    pub(super) lso: usize,
}

impl Partition {
    pub(super) fn last_stable_offset(&self) -> usize {
        self.producers
            .values()
            .filter_map(|p| p.ongoing_first)
            .min()
            .unwrap_or(self.log.len())
    }

    /// What a read_committed consumer sees: records below the last stable offset whose
    /// transaction's marker commits.
    pub(super) fn read_committed(&self) -> Vec<(u64, u64)> {
        let lso = self.last_stable_offset();
        let mut open: BTreeMap<i64, Vec<(u64, u64)>> = BTreeMap::new();
        let mut visible = Vec::new();
        for entry in &self.log[..lso] {
            match entry {
                Entry::Data { pid, uid, rec } => open.entry(*pid).or_default().push((*uid, *rec)),
                Entry::Marker { pid, commit } => {
                    let records = open.remove(pid).unwrap_or_default();
                    if *commit {
                        visible.extend(records);
                    }
                }
            }
        }
        visible
    }
}

/// What a partition leader makes of the coordinator's answer about a produce.
fn produce_verdict(reply: &Reply) -> Result<(), ProduceError> {
    match reply {
        Reply::VerifyPartitions(Ok(r)) if r.iter().all(|(_, v)| v.is_ok()) => Ok(()),
        Reply::AddPartitions(Ok(())) => Ok(()),
        Reply::VerifyPartitions(Err(e)) | Reply::AddPartitions(Err(e))
            if matches!(
                e,
                TxnError::NotCoordinator
                    | TxnError::CoordinatorLoadInProgress
                    | TxnError::CoordinatorNotAvailable
                    | TxnError::ConcurrentTransactions
            ) =>
        {
            Err(ProduceError::Retriable)
        }
        _ => Err(ProduceError::Abortable),
    }
}

impl Sim {
    pub(super) fn produce(
        &mut self,
        inst: usize,
        part: i32,
        pid: i64,
        epoch: i16,
        uid: u64,
        rec: u64,
    ) {
        let txn = Self::txn_name(self.clients[inst].txn_id);
        let ongoing = self.parts[part as usize]
            .producers
            .get(&pid)
            .is_some_and(|p| p.ongoing_first.is_some() && p.epoch == epoch);
        if ongoing {
            self.verified_append(inst, part, pid, epoch, uid, rec);
            return;
        }
        let now = self.now;
        let Some(c) = self.coord.as_mut() else {
            self.produce_failed(inst, uid, rec, ProduceError::Retriable);
            return;
        };
        let add = AddPartitions {
            transactional_id: txn,
            producer_id: pid,
            producer_epoch: epoch,
            partitions: vec![topic_partition(part)],
            // An offset commit's partition was added by AddOffsetsToTxn: only verified.
            verify_only: !self.clients[inst].version.bumps_epoch() || part == OFFSETS,
        };
        if !add.verify_only {
            // TV2: the leader adds the partition on the producer's behalf (KIP-890 part 2)
            // and appends once the coordinator has it replicated.
            self.next_req += 1;
            let req = RequestId(self.next_req);
            self.leader_adds
                .insert(req, (inst, part, pid, epoch, uid, rec));
            let cmds = c.add_partitions(req, add, now);
            self.exec(cmds);
            return;
        }
        // KIP-890 part 1: the leader verifies that the producer added the partition.
        let cmds = c.add_partitions(RequestId(u64::MAX), add, now);
        let verdict = match cmds.as_slice() {
            [Command::Reply { reply, .. }] => produce_verdict(reply),
            other => unreachable!("a verification answers at once: {other:?}"),
        };
        match verdict {
            Ok(()) => self.verified_append(inst, part, pid, epoch, uid, rec),
            Err(e) => self.produce_failed(inst, uid, rec, e),
        }
    }

    /// The coordinator's answer to a leader's implicit add.
    pub(super) fn implicit_add_answered(&mut self, req: RequestId, reply: Reply) {
        let Some((inst, part, pid, epoch, uid, rec)) = self.leader_adds.remove(&req) else {
            return;
        };
        match produce_verdict(&reply) {
            Ok(()) => self.verified_append(inst, part, pid, epoch, uid, rec),
            Err(e) => self.produce_failed(inst, uid, rec, e),
        }
    }

    fn produce_failed(&mut self, inst: usize, uid: u64, rec: u64, e: ProduceError) {
        self.note(|| format!("produce i{inst} uid {uid} rec {rec} refused: {e:?}"));
        let result = Err(e);
        self.send_lossy(
            Msg::ProduceResult {
                inst,
                uid,
                rec,
                result,
            },
            PRODUCE_LOSS,
        );
    }

    /// The producer may open a transaction here: leave the guard (shared by its concurrent
    /// produces, as Kafka's verification entry is) that the append must still find; a
    /// marker clears it.
    fn verified_append(
        &mut self,
        inst: usize,
        part: i32,
        pid: i64,
        epoch: i16,
        uid: u64,
        rec: u64,
    ) {
        let state = self.parts[part as usize]
            .producers
            .entry(pid)
            .or_insert_with(ProducerAtPartition::unseen);
        let guard = match state.guard {
            Some(g) => g,
            None => {
                self.next_guard += 1;
                state.guard = Some(self.next_guard);
                self.next_guard
            }
        };
        // The append happens a little later; a slow one lands after the world moved on.
        let delay = if self.faulty() && self.rng.chance(0.03) {
            self.rng.range(300, 4_000) as i64
        } else {
            self.rng.range(1, 20) as i64
        };
        self.send(
            delay,
            Msg::ProduceAppend {
                inst,
                part,
                pid,
                epoch,
                uid,
                rec,
                guard,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn append_data(
        &mut self,
        inst: usize,
        part: i32,
        pid: i64,
        epoch: i16,
        uid: u64,
        rec: u64,
        guard: u64,
    ) -> Result<(), ProduceError> {
        let p = &mut self.parts[part as usize];
        let state = p
            .producers
            .entry(pid)
            .or_insert_with(ProducerAtPartition::unseen);
        if epoch < state.epoch {
            return Err(ProduceError::Abortable); // INVALID_PRODUCER_EPOCH
        }
        if state.ongoing_first.is_none() || epoch > state.epoch {
            // Only a verified producer opens a transaction here (no hanging transaction).
            if state.guard != Some(guard) || state.ongoing_first.is_some() {
                return Err(ProduceError::Abortable);
            }
            state.ongoing_first = Some(p.log.len());
        }
        state.epoch = epoch;
        p.log.push(Entry::Data { pid, uid, rec });
        self.accepted.entry(uid).or_default().insert((part, rec));
        if let Some(&at) = self.fenced_at.get(&inst) {
            self.violations.push(format!(
                "t={} partition {part} accepted a record of fenced instance {inst} (fenced at {at})",
                self.now
            ));
        }
        self.check_lso(part);
        Ok(())
    }

    pub(super) fn write_marker(
        &mut self,
        part: i32,
        pid: i64,
        epoch: i16,
        coordinator_epoch: i32,
        result: TxnResult,
        tv2: bool,
    ) -> MarkerOutcome {
        let p = &mut self.parts[part as usize];
        let state = p
            .producers
            .entry(pid)
            .or_insert_with(ProducerAtPartition::unseen);
        if coordinator_epoch < state.coordinator_epoch {
            return MarkerOutcome::StaleCoordinatorEpoch;
        }
        // Kafka 4.0: a TV2 marker's epoch is above its transaction's; one at the epoch of
        // the open transaction is a late copy of an earlier marker.
        if epoch < state.epoch || (tv2 && epoch == state.epoch && state.ongoing_first.is_some()) {
            return MarkerOutcome::StaleProducerEpoch;
        }
        state.epoch = epoch;
        state.coordinator_epoch = coordinator_epoch;
        state.ongoing_first = None;
        state.guard = None;
        p.log.push(Entry::Marker {
            pid,
            commit: result == TxnResult::Commit,
        });
        self.check_lso(part);
        MarkerOutcome::Written
    }

    pub(super) fn check_lso(&mut self, part: i32) {
        let p = &mut self.parts[part as usize];
        let lso = p.last_stable_offset();
        if lso < p.lso {
            self.violations.push(format!(
                "t={} partition {part}: LSO moved back {} -> {lso}",
                self.now, p.lso
            ));
        }
        p.lso = lso;
    }
}
