//! Adds that wait for the producer's previous transaction to complete.
//!
//! EndTxn is answered once PrepareCommit/PrepareAbort is replicated; the markers and the
//! Complete* record follow. A producer that begins its next transaction at once sends
//! AddPartitionsToTxn (or AddOffsetsToTxn) while they are still being written, and
//! Kafka answers it CONCURRENT_TRANSACTIONS; the client retries after its back-off
//! (librdkafka: about 20 ms), which was most of a 1,000-record transaction's time
//! (`benches/compare-transactions.sh`: 0.27 of idempotent produce). Here the add waits
//! beside the id instead and goes on as soon as the id is free (the completion
//! replicated), or is answered CONCURRENT_TRANSACTIONS after [`ADD_WAIT_MS`] (the
//! markers of a partition without a leader can take long). What it is then answered is
//! what it would have been answered had it come at that moment. A coordinator that
//! resigns drops its waiting adds with everything else; the shell answers them
//! NOT_COORDINATOR.
//!
//! The first waiting add that begins the producer's next transaction does not wait for
//! the Complete* record either: its Ongoing record is written in its place
//! ([`TxnCoordinator::append_completion`]). The id's latest record is what a new
//! coordinator loads, and an Ongoing record after a Prepare* one says what the Complete*
//! record would have (the markers are all written: nothing of the ended transaction is
//! left to do) and that the next one has begun, so the transaction pays one replicated
//! append (one sync on a single node) between its EndTxn and its first produce, not two.

use std::collections::BTreeSet;

use super::super::api::*;
use super::super::state::TxnState;
use super::{Then, TxnCoordinator};
use crate::txn::{TopicPartition, TxnError};

/// Longest an add waits for the previous transaction to complete before it is answered
/// CONCURRENT_TRANSACTIONS (checked on the coordinator's tick, so up to a tick more).
pub const ADD_WAIT_MS: i64 = 1_000;

/// An AddPartitionsToTxn (or AddOffsetsToTxn) and how long it may wait.
#[derive(Debug, Clone)]
pub(super) struct WaitingAdd {
    pub request: RequestId,
    pub add: AddPartitions,
    /// AddOffsetsToTxn: answered as one.
    pub for_offsets: bool,
    pub until_ms: i64,
}

impl WaitingAdd {
    pub fn new(request: RequestId, add: AddPartitions, for_offsets: bool, now: i64) -> Self {
        WaitingAdd {
            request,
            add,
            for_offsets,
            until_ms: now + ADD_WAIT_MS,
        }
    }

    /// Its answer (a verify-only check never waits: it is answered from the state).
    pub(super) fn reply(&self, result: Result<(), TxnError>) -> Command {
        answer(self.request, self.for_offsets, result)
    }
}

/// The answer to add `request` (AddOffsetsToTxn's when `for_offsets`).
pub(super) fn answer(
    request: RequestId,
    for_offsets: bool,
    result: Result<(), TxnError>,
) -> Command {
    let reply = if for_offsets {
        Reply::AddOffsets(result)
    } else {
        Reply::AddPartitions(result)
    };
    Command::Reply { request, reply }
}

impl TxnCoordinator {
    /// Appends the completion of `txn_id`'s ended transaction (its markers all written):
    /// as the Ongoing record of the first waiting add when the completed id takes it (the
    /// producer's id and epoch, the partition limit), else as the Complete* record.
    pub(super) fn append_completion(&mut self, txn_id: &str, now: i64, out: &mut Vec<Command>) {
        let entry = self
            .entries
            .get_mut(txn_id)
            .expect("completing an id it holds");
        let completed = entry.meta.prepare_complete(now);
        let begins = entry.waiting.first().is_some_and(|w| {
            let partitions: BTreeSet<&TopicPartition> = w.add.partitions.iter().collect();
            !w.add.verify_only
                && w.add.producer_id == completed.producer_id
                && w.add.producer_epoch == completed.producer_epoch
                && partitions.len() <= self.config.max_partitions_per_txn
        });
        if !begins {
            self.append(txn_id, completed, Then::Completed, out);
            return;
        }
        let add = entry.waiting.remove(0);
        let target = completed.prepare_add_partitions(add.add.partitions.iter().cloned(), now);
        self.append(txn_id, target, Then::CompletedAndAdded(add), out);
    }

    /// Answers `waiting` now, or has it wait beside its id while a change is in flight.
    pub(super) fn admit_add(&mut self, waiting: WaitingAdd, now: i64, out: &mut Vec<Command>) {
        let (request, for_offsets) = (waiting.request, waiting.for_offsets);
        let verify_only = waiting.add.verify_only;
        match self.add_inner(waiting, now, out) {
            Ok(None) => {}
            Ok(Some(waiting)) => {
                let id = &waiting.add.transactional_id;
                let entry = self.entries.get_mut(id).expect("it met the id's change");
                entry.waiting.push(waiting);
            }
            Err(e) if verify_only => out.push(Command::Reply {
                request,
                reply: Reply::VerifyPartitions(Err(e)),
            }),
            Err(e) => out.push(answer(request, for_offsets, Err(e))),
        }
    }

    /// After a change of `txn_id` applied or failed: its waiting adds go on if it is free
    /// (`removed`: those of an entry the change removed, which go on too).
    pub(super) fn release_waiting(
        &mut self,
        txn_id: &str,
        removed: Vec<WaitingAdd>,
        now: i64,
        out: &mut Vec<Command>,
    ) {
        let waiting = match self.entries.get_mut(txn_id) {
            Some(entry) if is_free(entry) => std::mem::take(&mut entry.waiting),
            Some(_) => return,
            None => removed,
        };
        for add in waiting {
            // The first that starts a change makes the rest wait again, in order.
            self.admit_add(add, now, out);
        }
    }

    /// On the tick: adds that waited their time are answered CONCURRENT_TRANSACTIONS;
    /// those of an id that became free without an append (a failed producer id
    /// allocation, say) go on.
    pub(super) fn tick_waiting(&mut self, txn_id: &str, now: i64, out: &mut Vec<Command>) {
        let Some(entry) = self.entries.get_mut(txn_id) else {
            return;
        };
        if entry.waiting.is_empty() {
            return;
        }
        if is_free(entry) {
            self.release_waiting(txn_id, Vec::new(), now, out);
            return;
        }
        entry.waiting.retain(|add| {
            let waited = add.until_ms <= now;
            if waited {
                out.push(add.reply(Err(TxnError::ConcurrentTransactions)));
            }
            !waited
        });
    }
}

/// Whether an id takes a new change now: nothing in flight and no transaction ending.
fn is_free(entry: &super::Entry) -> bool {
    !entry.busy()
        && !matches!(
            entry.meta.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort
        )
}
