//! The leader-epoch history of a log: for each leader epoch, the first offset written in
//! it. Replication asks it where an epoch ended so a returning follower can cut what
//! diverged (Kafka's `LeaderEpochFileCache`, KIP-101 and KIP-279).

use crate::checkpoint::PayloadReader;

/// Most epochs a history keeps; older ones are dropped as the log start moves, so this is
/// only reached by a partition that changed leader millions of times without a delete.
pub const MAX_EPOCH_ENTRIES: usize = 65_536;

/// Leader epoch `epoch` started at offset `start_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EpochHistory {
    entries: Vec<EpochEntry>,
}

impl EpochHistory {
    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub(crate) fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`. Returns whether anything changed.
    /// Epochs must grow; a lower epoch is ignored by the caller's check before this.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        match self.entries.last() {
            Some(last) if last.epoch >= epoch => false,
            _ => {
                if self.entries.len() == MAX_EPOCH_ENTRIES {
                    self.entries.remove(0);
                }
                // Entries keep increasing start offsets; an epoch that wrote nothing is
                // replaced by the one that follows it at the same offset.
                while self
                    .entries
                    .last()
                    .is_some_and(|l| l.start_offset >= start_offset)
                {
                    self.entries.pop();
                }
                self.entries.push(EpochEntry {
                    epoch,
                    start_offset,
                });
                true
            }
        }
    }

    /// Drops epochs that start at or after `end_offset` (the log was truncated there).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// Forgets offsets before `start_offset` (the log start moved): epochs wholly before it
    /// are dropped and the first remaining one starts there.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let keep_from = self
            .entries
            .iter()
            .rposition(|e| e.start_offset <= start_offset)
            .unwrap_or(0);
        let mut changed = keep_from > 0;
        self.entries.drain(..keep_from);
        if let Some(first) = self.entries.first_mut()
            && first.start_offset < start_offset
        {
            first.start_offset = start_offset;
            changed = true;
        }
        changed
    }

    /// Kafka's OffsetsForLeaderEpoch answer for `epoch` given the log end: the largest
    /// epoch not above it and the offset where that epoch ended (the start of the next
    /// epoch, or the log end for the latest). `None` if `epoch` is older than the history.
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let i = self.entries.partition_point(|e| e.epoch <= epoch);
        if i == 0 {
            return None;
        }
        let found = self.entries[i - 1];
        let end = self
            .entries
            .get(i)
            .map_or(log_end_offset, |next| next.start_offset);
        Some((found.epoch, end))
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(4 + self.entries.len() * 12);
        b.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            b.extend_from_slice(&e.epoch.to_be_bytes());
            b.extend_from_slice(&e.start_offset.to_be_bytes());
        }
        b
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<EpochHistory> {
        let mut r = PayloadReader::new(bytes);
        let n = r.u32()? as usize;
        if n > MAX_EPOCH_ENTRIES {
            return None;
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(EpochEntry {
                epoch: r.i32()?,
                start_offset: r.i64()?,
            });
        }
        let sorted = entries
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset);
        (r.is_empty() && sorted).then_some(EpochHistory { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(pairs: &[(i32, i64)]) -> EpochHistory {
        let mut h = EpochHistory::default();
        for &(e, o) in pairs {
            h.assign(e, o);
        }
        h
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let h = history(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(h.end_offset_for(0, 40), None);
        assert_eq!(h.end_offset_for(1, 40), Some((1, 10)));
        // Epoch 2 never wrote: answer with the largest epoch below it.
        assert_eq!(h.end_offset_for(2, 40), Some((1, 10)));
        assert_eq!(h.end_offset_for(3, 40), Some((3, 25)));
        assert_eq!(h.end_offset_for(4, 40), Some((4, 40)));
        assert_eq!(h.end_offset_for(9, 40), Some((4, 40)));
    }

    #[test]
    fn assign_ignores_older_and_replaces_empty_epochs() {
        let mut h = history(&[(1, 0), (2, 5)]);
        assert!(!h.assign(1, 9));
        assert!(h.assign(3, 5)); // epoch 2 wrote nothing
        assert_eq!(
            h.entries(),
            &[
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 3,
                    start_offset: 5
                }
            ]
        );
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut h = history(&[(1, 0), (2, 10), (3, 20)]);
        assert!(h.truncate_from_end(15));
        assert_eq!(
            h.latest(),
            Some(EpochEntry {
                epoch: 2,
                start_offset: 10
            })
        );
        assert!(h.truncate_from_start(12));
        assert_eq!(
            h.entries(),
            &[EpochEntry {
                epoch: 2,
                start_offset: 12
            }]
        );
        let round = EpochHistory::decode(&h.encode()).unwrap();
        assert_eq!(round, h);
    }
}
