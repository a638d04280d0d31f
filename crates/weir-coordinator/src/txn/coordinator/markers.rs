//! Markers: after Prepare* replicates, WriteTxnMarkers to each partition of the transaction;
//! when all are written, the Complete* record.

use super::super::api::*;
use super::super::state::TxnState;
use super::super::{TopicPartition, TxnResult};
use super::{MarkerRound, Status, TxnCoordinator};

impl TxnCoordinator {
    pub(super) fn start_markers(&mut self, txn_id: &str, now: i64, out: &mut Vec<Command>) {
        let id = MarkerId(self.fresh_id());
        let entry = self
            .entries
            .get_mut(txn_id)
            .expect("markers for an id it holds");
        let outstanding = entry.meta.partitions.clone();
        entry.markers = Some(MarkerRound {
            id,
            outstanding,
            sent_ms: now,
        });
        self.rounds.insert(id, txn_id.to_owned());
        if entry.meta.partitions.is_empty() {
            self.markers_done(txn_id, now, out);
        } else {
            let partitions = entry.meta.partitions.iter().cloned().collect();
            out.push(self.marker_command(txn_id, id, partitions));
        }
    }

    pub(super) fn marker_command(
        &self,
        txn_id: &str,
        id: MarkerId,
        partitions: Vec<TopicPartition>,
    ) -> Command {
        let meta = &self.entries[txn_id].meta;
        Command::WriteMarkers {
            id,
            transactional_id: txn_id.to_owned(),
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            coordinator_epoch: self.coordinator_epoch,
            result: if meta.state == TxnState::PrepareCommit {
                TxnResult::Commit
            } else {
                TxnResult::Abort
            },
            transaction_version: meta.client_version,
            partitions,
        }
    }

    /// The shell's report on markers: each partition's outcome.
    pub fn on_markers(
        &mut self,
        id: MarkerId,
        outcomes: Vec<(TopicPartition, MarkerOutcome)>,
        now: i64,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        if self.status != Status::Active {
            return out;
        }
        let Some(txn_id) = self.rounds.get(&id).cloned() else {
            return out;
        };
        let Some(round) = self
            .entries
            .get_mut(&txn_id)
            .and_then(|e| e.markers.as_mut())
        else {
            return out;
        };
        let mut again = Vec::new();
        for (tp, outcome) in outcomes {
            if !round.outstanding.contains(&tp) {
                continue; // an answer to a re-send already settled
            }
            match outcome {
                MarkerOutcome::Written
                | MarkerOutcome::StaleProducerEpoch
                | MarkerOutcome::UnknownPartition => {
                    round.outstanding.remove(&tp);
                }
                MarkerOutcome::Retriable => again.push(tp),
                MarkerOutcome::StaleCoordinatorEpoch => {
                    // A newer coordinator owns the partition and finishes the transaction.
                    return out;
                }
            }
        }
        if round.outstanding.is_empty() {
            self.markers_done(&txn_id, now, &mut out);
        } else if !again.is_empty() {
            round.sent_ms = now;
            out.push(self.marker_command(&txn_id, id, again));
        }
        out
    }

    pub(super) fn markers_done(&mut self, txn_id: &str, now: i64, out: &mut Vec<Command>) {
        let entry = self
            .entries
            .get_mut(txn_id)
            .expect("markers of an id it holds");
        if let Some(round) = entry.markers.take() {
            self.rounds.remove(&round.id);
        }
        self.append_completion(txn_id, now, out);
    }
}
