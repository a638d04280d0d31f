//! The invariants of `docs/replication.md` § 3, checked as the simulation runs.

use std::collections::BTreeMap;

use super::net::Addr;
use super::node::Node;

/// What clients were told, and what leaders did, as the checker needs it.
#[derive(Debug, Default)]
pub struct Checker {
    /// Records acknowledged (`acks=all`) or read by a consumer: committed facts,
    /// `(partition, offset) -> value`.
    committed: BTreeMap<(u32, i64), String>,
    /// Which node appended as leader in each `(partition, leader epoch)`.
    writers: BTreeMap<(u32, i32), Addr>,
    /// Which node acknowledged (answered an `acks=all` produce or raised the HW it
    /// publishes) in each `(partition, leader epoch)`.
    ackers: BTreeMap<(u32, i32), Addr>,
    /// Highest high watermark published in each `(partition, leader epoch)`.
    published: BTreeMap<(u32, i32), i64>,
    pub acked: u64,
}

pub type Verdict = Result<(), String>;

/// A replica's log as the checker reads it: offset -> (value, durable).
type LogView = BTreeMap<i64, (String, bool)>;

impl Checker {
    fn fact(&mut self, partition: u32, offset: i64, value: &str, how: &str) -> Verdict {
        match self.committed.get(&(partition, offset)) {
            Some(v) if v != value => Err(format!(
                "partition {partition} offset {offset} was {v:?}, now {how} {value:?}"
            )),
            Some(_) => Ok(()),
            None => {
                self.committed
                    .insert((partition, offset), value.to_string());
                Ok(())
            }
        }
    }

    pub fn acknowledged(&mut self, partition: u32, offset: i64, value: &str) -> Verdict {
        self.acked += 1;
        self.fact(partition, offset, value, "acknowledged as")
    }

    pub fn consumed(&mut self, partition: u32, offset: i64, value: &str) -> Verdict {
        self.fact(partition, offset, value, "read as")
    }

    /// Invariant 3: one writer per epoch.
    pub fn leader_append(&mut self, partition: u32, leader_epoch: i32, node: Addr) -> Verdict {
        match self.writers.insert((partition, leader_epoch), node) {
            Some(other) if other != node => Err(format!(
                "partition {partition} epoch {leader_epoch}: nodes {other} and {node} both appended as leader"
            )),
            _ => Ok(()),
        }
    }

    /// The lease argument's conclusion: no two nodes acknowledge at one epoch.
    pub fn acknowledging(&mut self, partition: u32, leader_epoch: i32, node: Addr) -> Verdict {
        match self.ackers.insert((partition, leader_epoch), node) {
            Some(other) if other != node => Err(format!(
                "partition {partition} epoch {leader_epoch}: nodes {other} and {node} both acknowledged as leader"
            )),
            _ => Ok(()),
        }
    }

    /// Invariant 4: what a leader publishes is never below what any earlier epoch
    /// published (a consumer following leaders by epoch never sees the HW move back).
    pub fn publish(&mut self, partition: u32, leader_epoch: i32, hw: i64) -> Verdict {
        let earlier = self
            .published
            .range((partition, i32::MIN)..(partition, leader_epoch))
            .map(|(_, hw)| *hw)
            .max();
        if let Some(earlier) = earlier
            && hw < earlier
        {
            return Err(format!(
                "partition {partition} epoch {leader_epoch} published HW {hw} below {earlier} published by an earlier epoch"
            ));
        }
        let entry = self
            .published
            .entry((partition, leader_epoch))
            .or_insert(hw);
        if hw < *entry {
            return Err(format!(
                "partition {partition} epoch {leader_epoch}: HW moved back from {entry} to {hw}"
            ));
        }
        *entry = hw;
        Ok(())
    }

    fn max_published(&self, partition: u32) -> i64 {
        self.published
            .range((partition, i32::MIN)..=(partition, i32::MAX))
            .map(|(_, hw)| *hw)
            .max()
            .unwrap_or(0)
    }

    /// Invariants 1, 2 and 5 against the logs on every node's disk. `isr` is the
    /// controller's ISR of each partition.
    pub fn check_logs(
        &self,
        nodes: &BTreeMap<Addr, Node>,
        isr: &BTreeMap<u32, Vec<Addr>>,
    ) -> Verdict {
        for (&partition, members) in isr {
            let logs: BTreeMap<Addr, LogView> = members
                .iter()
                .map(|m| {
                    let records = nodes[m].records(partition);
                    let map = records.into_iter().map(|(o, v, d)| (o, (v, d))).collect();
                    (*m, map)
                })
                .collect();
            // 1 and 5: every committed fact is durable on at least one ISR member.
            for ((_, offset), value) in self
                .committed
                .range((partition, i64::MIN)..=(partition, i64::MAX))
            {
                let held = logs.values().any(|log| {
                    log.get(offset)
                        .is_some_and(|(v, durable)| v == value && *durable)
                });
                if !held {
                    return Err(format!(
                        "partition {partition} offset {offset} ({value:?}) was committed but no ISR member {members:?} holds it durably"
                    ));
                }
            }
            // 2: ISR members agree below the highest published HW.
            let hw = self.max_published(partition);
            let mut reference: Option<(Addr, &LogView)> = None;
            for (&m, log) in &logs {
                if let Some((r, rlog)) = reference {
                    for (offset, (value, _)) in log.range(..hw) {
                        if let Some((other, _)) = rlog.get(offset)
                            && other != value
                        {
                            return Err(format!(
                                "partition {partition} offset {offset} below HW {hw}: ISR members {r} and {m} hold {other:?} and {value:?}"
                            ));
                        }
                    }
                } else {
                    reference = Some((m, log));
                }
            }
        }
        Ok(())
    }

    /// After healing and quiet: every replica holds exactly the same records, and every
    /// committed fact among them.
    pub fn check_converged(&self, nodes: &BTreeMap<Addr, Node>, partitions: u32) -> Verdict {
        for partition in 0..partitions {
            let mut first: Option<(Addr, Vec<(i64, String)>)> = None;
            for (id, node) in nodes {
                let records: Vec<(i64, String)> = node
                    .records(partition)
                    .into_iter()
                    .map(|(o, v, _)| (o, v))
                    .collect();
                match &first {
                    None => first = Some((*id, records)),
                    Some((fid, f)) if *f != records => {
                        let at = f.iter().zip(&records).position(|(a, b)| a != b);
                        return Err(format!(
                            "partition {partition}: nodes {fid} and {id} differ after healing ({} vs {} records, first difference at index {at:?})",
                            f.len(),
                            records.len()
                        ));
                    }
                    Some(_) => {}
                }
            }
            let (_, records) = first.expect("nodes");
            let by_offset: BTreeMap<i64, &String> = records.iter().map(|(o, v)| (*o, v)).collect();
            for ((_, offset), value) in self
                .committed
                .range((partition, i64::MIN)..=(partition, i64::MAX))
            {
                if by_offset.get(offset) != Some(&value) {
                    return Err(format!(
                        "partition {partition} offset {offset} ({value:?}) was committed but the healed replicas hold {:?}",
                        by_offset.get(offset)
                    ));
                }
            }
        }
        Ok(())
    }
}
