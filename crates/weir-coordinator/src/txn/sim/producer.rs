//! The simulation's producers: each runs transactions as Kafka's transactional client does
//! (init, add, produce, end), asks again when an answer is lost, aborts when a produce's
//! outcome is unknown, and dies when fenced.

use std::collections::BTreeMap;

use super::super::api::{Reply, RequestId};
use super::super::{ProducerIdAndEpoch, TxnError, TxnResult, TxnVersion};
use super::partition::ProduceError;
use super::{
    Call, Msg, NEW_TXNS_UNTIL_MS, OFFSETS, PARTITIONS, PRODUCE_LOSS, PRODUCE_TIMEOUT_MS,
    REQUEST_TIMEOUT_MS, Sim, TXN_TIMEOUT_MS,
};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
    NeedInit,
    Idle,
    Adding,
    Producing,
    /// AddOffsetsToTxn, then the offset commit (a produce to the offsets partition).
    AddingOffsets,
    Ending(TxnResult),
    Stalled(i64),
    Dead,
}

#[derive(Debug)]
pub(super) struct Client {
    pub(super) txn_id: usize,
    pub(super) alive: bool,
    pub(super) version: TxnVersion,
    pub(super) phase: Phase,
    pub(super) ids: Option<ProducerIdAndEpoch>,
    pub(super) waiting: Option<(RequestId, Call, i64)>,
    pub(super) uid: u64,
    pub(super) parts: Vec<i32>,
    pub(super) will: TxnResult,
    /// Produces sent and not answered: (rec, part, sent at).
    pub(super) producing: BTreeMap<u64, (i32, i64)>,
    pub(super) kip360: Option<ProducerIdAndEpoch>,
    /// A produce of this transaction may still be on its way: a TV0 producer bumps its
    /// epoch after the abort (Kafka's client re-initialises with its id and epoch), so the
    /// straggler cannot land in its next transaction.
    pub(super) epoch_bump_needed: bool,
    /// This transaction also commits the group's offsets (consume-transform-produce).
    pub(super) commits_offsets: bool,
}

impl Sim {
    pub(super) fn start_client(&mut self, txn_id: usize) {
        let version = if self.rng.chance(0.7) {
            TxnVersion::TV2
        } else {
            TxnVersion::TV0
        };
        self.clients.push(Client {
            txn_id,
            alive: true,
            version,
            phase: Phase::NeedInit,
            ids: None,
            waiting: None,
            uid: 0,
            parts: Vec::new(),
            will: TxnResult::Commit,
            producing: BTreeMap::new(),
            kip360: None,
            epoch_bump_needed: false,
            commits_offsets: false,
        });
    }

    // --- producers --------------------------------------------------------------------

    pub(super) fn request(&mut self, inst: usize, call: Call) {
        self.note(|| format!("i{inst} asks {call:?}"));
        self.next_req += 1;
        let req = RequestId(self.next_req);
        self.requests.insert(req, inst);
        self.clients[inst].waiting = Some((req, call.clone(), self.now));
        let msg = Msg::ToCoord { inst, req, call };
        if self.clients[inst].version.bumps_epoch() {
            // TV2 survives a request overtaken by its own retry: a late EndTxn carries an
            // epoch the coordinator has moved past.
            self.send_lossy(msg, 0.05);
            return;
        }
        // Under TV0 a late EndTxn of the last transaction would end the current one (the
        // flaw KIP-890 part 2 mends), so a TV0 producer's requests keep their order, as on
        // Kafka's single connection: a retry never overtakes its original.
        if self.faulty() && self.rng.chance(0.05) {
            return;
        }
        let delay = if self.faulty() && self.rng.chance(0.05) {
            self.rng.range(200, 2_000) as i64
        } else {
            self.rng.range(1, 30) as i64
        };
        let channel = self.client_channel.entry(inst).or_default();
        let at = (self.now + delay).max(*channel);
        *channel = at;
        self.seq += 1;
        self.queue.insert((at, self.seq), msg);
    }

    pub(super) fn step_client(&mut self, i: usize) {
        let c = &self.clients[i];
        if !c.alive {
            return;
        }
        if let Some((_, call, sent)) = &c.waiting {
            if self.now - sent >= REQUEST_TIMEOUT_MS {
                let call = call.clone();
                self.request(i, call); // the answer was lost: ask again
            }
            return;
        }
        match c.phase.clone() {
            Phase::NeedInit => {
                let expected = self.clients[i].kip360.take();
                self.request(i, Call::Init(expected));
            }
            Phase::Idle => {
                if self.now >= NEW_TXNS_UNTIL_MS {
                    return;
                }
                let n = self.rng.range(1, PARTITIONS as u64) as usize;
                let mut parts: Vec<i32> = (0..PARTITIONS).collect();
                while parts.len() > n {
                    let at = self.rng.next_u64() as usize % parts.len();
                    parts.remove(at);
                }
                self.next_uid += 1;
                let will = if self.rng.chance(0.7) {
                    TxnResult::Commit
                } else {
                    TxnResult::Abort
                };
                let ids = self.clients[i].ids.expect("idle has ids");
                let c = &mut self.clients[i];
                c.uid = self.next_uid;
                c.parts = parts.clone();
                c.will = will;
                c.commits_offsets = self.rng.chance(0.4);
                if c.version.bumps_epoch() {
                    // TV2: no AddPartitionsToTxn; the partition leaders add at produce time.
                    c.phase = Phase::Producing;
                    self.send_produces(i);
                } else {
                    c.phase = Phase::Adding;
                    self.request(i, Call::Add(ids, parts));
                }
            }
            Phase::Producing => {
                let c = &self.clients[i];
                if c.producing.is_empty() {
                    let will = c.will;
                    if c.commits_offsets && will == TxnResult::Commit {
                        let ids = c.ids.expect("producing has ids");
                        self.clients[i].commits_offsets = false;
                        self.clients[i].phase = Phase::AddingOffsets;
                        self.request(i, Call::AddOffsets(ids));
                        return;
                    }
                    if will == TxnResult::Commit && self.faulty() && self.rng.chance(0.03) {
                        // A producer that stalls past its transaction timeout.
                        let until = self.now + i64::from(TXN_TIMEOUT_MS) + 1_000;
                        self.clients[i].phase = Phase::Stalled(until);
                        return;
                    }
                    self.end(i, will);
                } else {
                    // Produces whose answer never came: the outcome is unknown, so abort.
                    let lost: Vec<u64> = c
                        .producing
                        .iter()
                        .filter(|(_, (_, sent))| self.now - sent >= PRODUCE_TIMEOUT_MS)
                        .map(|(r, _)| *r)
                        .collect();
                    for r in lost {
                        self.note(|| format!("i{i} gives up on produce {r}"));
                        self.clients[i].producing.remove(&r);
                        self.clients[i].will = TxnResult::Abort;
                        self.clients[i].epoch_bump_needed = true;
                    }
                }
            }
            Phase::Stalled(until) => {
                if self.now >= until {
                    self.stats.timeouts_seen += 1;
                    self.end(i, TxnResult::Commit);
                }
            }
            Phase::Adding | Phase::AddingOffsets | Phase::Ending(_) | Phase::Dead => {}
        }
    }

    pub(super) fn end(&mut self, i: usize, result: TxnResult) {
        let ids = self.clients[i].ids.expect("ending has ids");
        self.clients[i].phase = Phase::Ending(result);
        self.request(i, Call::End(ids, result));
    }

    pub(super) fn send_produces(&mut self, i: usize) {
        let parts = self.clients[i].parts.clone();
        for part in parts {
            for _ in 0..self.rng.range(1, 2) {
                self.send_produce(i, part);
            }
        }
    }

    fn send_produce(&mut self, i: usize, part: i32) {
        let ids = self.clients[i].ids.expect("producing has ids");
        let uid = self.clients[i].uid;
        self.next_rec += 1;
        let rec = self.next_rec;
        self.clients[i].producing.insert(rec, (part, self.now));
        let msg = Msg::Produce {
            inst: i,
            part,
            pid: ids.producer_id,
            epoch: ids.epoch,
            uid,
            rec,
        };
        self.send_lossy(msg, PRODUCE_LOSS);
    }

    pub(super) fn at_client(&mut self, i: usize, req: RequestId, reply: Reply) {
        let c = &mut self.clients[i];
        if !c.alive || c.waiting.as_ref().is_none_or(|(r, _, _)| *r != req) {
            return; // a crashed producer, or an answer to a request asked again
        }
        let (_, call, _) = c.waiting.take().expect("checked");
        let retriable = |e: &TxnError| {
            matches!(
                e,
                TxnError::NotCoordinator
                    | TxnError::CoordinatorLoadInProgress
                    | TxnError::CoordinatorNotAvailable
                    | TxnError::ConcurrentTransactions
            )
        };
        match reply {
            Reply::InitProducerId(Ok(p)) => {
                c.ids = Some(p);
                c.phase = Phase::Idle;
            }
            Reply::AddPartitions(Ok(())) => {
                c.phase = Phase::Producing;
                self.send_produces(i);
            }
            Reply::EndTxn(Ok(p)) => {
                let Phase::Ending(result) = c.phase else {
                    return;
                };
                c.ids = Some(p);
                c.phase = Phase::Idle;
                match result {
                    TxnResult::Commit => {
                        self.stats.committed += 1;
                        self.committed.insert(c.uid)
                    }
                    TxnResult::Abort => {
                        self.stats.aborted += 1;
                        self.aborted.insert(c.uid)
                    }
                };
                let bump = std::mem::take(&mut self.clients[i].epoch_bump_needed);
                if (bump && !self.clients[i].version.bumps_epoch()) || self.rng.chance(0.1) {
                    // KIP-360: re-initialise with the id and epoch it has.
                    self.clients[i].kip360 = Some(p);
                    self.clients[i].phase = Phase::NeedInit;
                }
            }
            Reply::InitProducerId(Err(e))
            | Reply::AddPartitions(Err(e))
            | Reply::AddOffsets(Err(e))
            | Reply::EndTxn(Err(e))
                if retriable(&e) =>
            {
                // Ask again a little later.
                c.waiting = Some((req, call, self.now - REQUEST_TIMEOUT_MS + 50));
            }
            Reply::AddPartitions(Err(_)) | Reply::AddOffsets(Err(_)) => {
                // Fenced, or the transaction was aborted under it: abort (which tells).
                c.will = TxnResult::Abort;
                self.end(i, TxnResult::Abort);
            }
            Reply::InitProducerId(Err(_)) | Reply::EndTxn(Err(_)) => {
                // Fenced: the application closes this producer and opens a new one.
                c.phase = Phase::Dead;
                c.alive = false;
                let txn_id = c.txn_id;
                self.stats.fenced += 1;
                // Unless another instance already runs (the fencer), that is.
                let others = self.clients.iter().any(|o| o.alive && o.txn_id == txn_id);
                if !others && self.now < NEW_TXNS_UNTIL_MS {
                    self.start_client(txn_id);
                }
            }
            Reply::AddOffsets(Ok(())) => {
                // TxnOffsetCommit: the group coordinator writes the offsets as a
                // transactional record of the offsets partition.
                c.phase = Phase::Producing;
                self.send_produce(i, OFFSETS);
            }
            Reply::VerifyPartitions(_) => unreachable!("not asked"),
        }
    }

    pub(super) fn produce_result(
        &mut self,
        i: usize,
        uid: u64,
        rec: u64,
        result: Result<(), ProduceError>,
    ) {
        let c = &mut self.clients[i];
        if !c.alive || c.uid != uid || c.phase != Phase::Producing {
            return;
        }
        let Some((part, _)) = c.producing.remove(&rec) else {
            return;
        };
        match result {
            Ok(()) => {}
            Err(ProduceError::Retriable) => {
                let ids = c.ids.expect("producing has ids");
                c.producing.insert(rec, (part, self.now));
                let msg = Msg::Produce {
                    inst: i,
                    part,
                    pid: ids.producer_id,
                    epoch: ids.epoch,
                    uid,
                    rec,
                };
                self.send_lossy(msg, PRODUCE_LOSS);
            }
            Err(ProduceError::Abortable) => {
                c.will = TxnResult::Abort;
                c.epoch_bump_needed = true;
            }
        }
    }
}
