//! A transactional producer's gate (KIP-98): a partition's batches go out only once the
//! coordinator has added the partition to the open transaction. [`drain`]
//! (Accumulator::drain) holds back the batches of a partition not added yet and lists it
//! as wanted; the sender adds the wanted partitions in one `AddPartitions` call at a
//! time ([`take_partitions_to_add`](Accumulator::take_partitions_to_add)), then reports
//! the outcome. A batch or an add that fails for good leaves the transaction unable to
//! commit: later sends fail with that error until the application aborts.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Accumulator, Identity, ProducerBatch};
use crate::error::ClientError;

/// A topic partition, as the gate names it.
pub(crate) type Partition = (Arc<str>, u32);

/// Partitions to add to the open transaction, under the producer's identity.
#[derive(Debug)]
pub(crate) struct PartitionsToAdd {
    pub identity: Identity,
    pub partitions: Vec<Partition>,
    /// The transaction they are for (see [`TxnGate`]'s `generation`).
    generation: u64,
}

/// The transaction's partitions on the client (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct TxnGate {
    /// Between `begin_transaction` and the end of the transaction.
    open: bool,
    /// The coordinator has added a partition to the open transaction (each partition
    /// knows whether it is one: `PartitionState::in_transaction`).
    any_added: bool,
    /// Partitions with batches waiting to be added.
    wanted: BTreeSet<Partition>,
    /// An `AddPartitions` call is under way.
    adding: bool,
    /// A group's offsets were added to the open transaction (`AddOffsets`).
    offsets: bool,
    /// Why the open transaction cannot commit.
    failed: Option<ClientError>,
    /// Counts transactions: an add answered after its transaction was aborted does not
    /// count for the next one.
    generation: u64,
}

impl TxnGate {
    /// Why a send is refused now: no transaction is open, or it can no longer commit.
    pub(super) fn refuses_sends(&self) -> Option<ClientError> {
        if !self.open {
            return Some(ClientError::FailedPrecondition(
                "no transaction is open: call begin_transaction before sending".into(),
            ));
        }
        self.failed.clone()
    }

    /// Whether `partition`'s batches may go out (`added_in`: the transaction it was
    /// last added to); if not, it is wanted in the transaction.
    pub(super) fn may_send(
        &mut self,
        added_in: Option<u64>,
        topic: &Arc<str>,
        partition: u32,
    ) -> bool {
        if added_in == Some(self.generation) {
            return true;
        }
        self.wanted.insert((topic.clone(), partition));
        false
    }

    /// Records a batch that failed for good: the transaction cannot commit.
    pub(super) fn batch_failed(&mut self, error: &ClientError) {
        if self.open && self.failed.is_none() {
            self.failed = Some(ClientError::FailedPrecondition(format!(
                "the transaction cannot commit: a batch failed ({error}); abort it"
            )));
        }
    }
}

impl Accumulator {
    fn with_gate<T>(&self, f: impl FnOnce(&mut TxnGate) -> T) -> T {
        let mut state = self.lock();
        f(state
            .txn
            .as_mut()
            .expect("a transactional producer's accumulator"))
    }

    /// Opens a transaction: sends are accepted until it ends.
    pub(crate) fn begin_transaction(&self) -> Result<(), ClientError> {
        self.with_gate(|gate| {
            if gate.open {
                return Err(ClientError::FailedPrecondition(
                    "a transaction is already open: commit or abort it first".into(),
                ));
            }
            gate.open = true;
            Ok(())
        })
    }

    /// Whether a transaction is open.
    pub(crate) fn transaction_open(&self) -> bool {
        self.with_gate(|gate| gate.open)
    }

    /// Why the open transaction cannot commit, if it cannot.
    pub(crate) fn transaction_failed(&self) -> Option<ClientError> {
        self.with_gate(|gate| gate.failed.clone())
    }

    /// Whether the coordinator has anything of the open transaction: a partition or a
    /// group's offsets (if not, there is nothing to end there).
    pub(crate) fn anything_in_transaction(&self) -> bool {
        self.with_gate(|gate| gate.any_added || gate.offsets)
    }

    /// A group's offsets were added to the open transaction.
    pub(crate) fn offsets_added(&self) {
        self.with_gate(|gate| gate.offsets = true);
    }

    /// Marks the open transaction as unable to commit with `error` (a failed
    /// `AddOffsets` or offsets commit).
    pub(crate) fn fail_transaction(&self, error: ClientError) {
        self.with_gate(|gate| {
            gate.failed.get_or_insert(error);
        });
    }

    /// An abort drops every batch not sent yet (their deliveries fail with `error`). A
    /// dropped batch that was numbered leaves its partition expecting a sequence that
    /// will never come, so the producer then wants a new identity (a new epoch starts
    /// every partition's sequence again).
    pub(crate) fn drop_unsent(&self, error: &ClientError) {
        {
            let mut state = self.lock();
            let numbered = state.topics.values().any(|t| {
                t.partitions.iter().any(|p| {
                    p.ready.iter().any(|b| b.stamp.is_some())
                        || p.failed.iter().any(|(b, _)| b.stamp.is_some())
                })
            });
            if numbered {
                state.identity_wanted = true;
            }
        }
        self.fail_unsent(error);
    }

    /// The transaction ended (committed or aborted): the next one starts with no
    /// partitions.
    pub(crate) fn end_transaction(&self) {
        self.with_gate(|gate| {
            *gate = TxnGate {
                generation: gate.generation + 1,
                ..TxnGate::default()
            }
        });
    }

    /// The partitions to add now and the identity to add them under, unless an add is
    /// under way, none is wanted, or the producer has no identity yet.
    pub(crate) fn take_partitions_to_add(&self) -> Option<PartitionsToAdd> {
        let mut state = self.lock();
        let identity = state.identity.filter(|_| !state.identity_wanted)?;
        let gate = state.txn.as_mut()?;
        if gate.adding || gate.wanted.is_empty() || !gate.open {
            return None;
        }
        gate.adding = true;
        Some(PartitionsToAdd {
            identity,
            partitions: std::mem::take(&mut gate.wanted).into_iter().collect(),
            generation: gate.generation,
        })
    }

    /// The coordinator added `add`'s partitions: their batches may go out (if the
    /// transaction they were added to is still the open one).
    pub(crate) fn partitions_added(&self, add: PartitionsToAdd) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let gate = state.txn.as_mut().expect("transactional");
        if gate.generation == add.generation {
            gate.adding = false;
            gate.any_added = true;
            for (topic, partition) in &add.partitions {
                if let Some(part) = state
                    .topics
                    .get_mut(topic)
                    .and_then(|t| t.partitions.get_mut(*partition as usize))
                {
                    part.in_transaction = Some(add.generation);
                }
            }
        }
        drop(guard);
        self.wake_sender.notify_one();
    }

    /// Adding `add`'s partitions failed for good: their waiting batches fail with
    /// `error`, and the transaction cannot commit.
    pub(crate) fn partitions_not_added(&self, add: &PartitionsToAdd, error: &ClientError) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let gate = state.txn.as_mut().expect("transactional");
        if gate.generation != add.generation {
            return; // its transaction was aborted, and its batches with it
        }
        let partitions = &add.partitions;
        gate.adding = false;
        gate.failed.get_or_insert_with(|| {
            ClientError::FailedPrecondition(format!(
                "the transaction cannot commit: partitions could not be added ({error}); \
                 abort it"
            ))
        });
        let mut failed: Vec<ProducerBatch> = Vec::new();
        for (topic, partition) in partitions {
            gate.wanted.remove(&(topic.clone(), *partition));
            let Some(part) = state
                .topics
                .get_mut(topic)
                .and_then(|t| t.partitions.get_mut(*partition as usize))
            else {
                continue;
            };
            failed.extend(part.open.take().map(|o| o.batch));
            failed.extend(part.ready.drain(..));
        }
        self.fail_taken(guard, failed, error);
        self.wake_sender.notify_one();
    }
}
