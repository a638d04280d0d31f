//! The key map of a compaction pass: key bytes -> newest offset, over the batches from
//! the first uncompacted offset to the durable end, within its memory cap. Separate
//! because it is the pass's one structure that grows with the data, with its own cap,
//! its own rules for what enters it (no aborted or unstable records) and its own test.

use std::collections::HashMap;

use super::batch_reader::BatchReader;
use super::snapshot::Snapshot;
use super::{KEY_MAP_ENTRY_OVERHEAD_BYTES, malformed_batch};
use crate::batch;
use crate::error::MaintenanceError;

/// Key bytes -> highest offset seen. Keys are compared by their bytes, never by a hash
/// alone: a collision must not make one key's record remove another's.
#[derive(Debug)]
pub(super) struct KeyMap {
    newest: HashMap<Box<[u8]>, i64>,
    bytes: usize,
    limit: usize,
}

impl KeyMap {
    fn new(limit: usize) -> KeyMap {
        KeyMap {
            newest: HashMap::new(),
            bytes: 0,
            limit,
        }
    }

    /// Records `offset` as the newest of `key` (offsets arrive in increasing order).
    /// Returns false, changing nothing, if `key` is new and would pass the memory cap.
    fn offer(&mut self, key: &[u8], offset: i64) -> bool {
        if let Some(newest) = self.newest.get_mut(key) {
            *newest = offset;
            return true;
        }
        let cost = key.len() + KEY_MAP_ENTRY_OVERHEAD_BYTES;
        if self.bytes + cost > self.limit {
            return false;
        }
        self.bytes += cost;
        self.newest.insert(key.into(), offset);
        true
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<i64> {
        self.newest.get(key).copied()
    }

    pub(super) fn len(&self) -> usize {
        self.newest.len()
    }
}

#[derive(Debug)]
pub(super) struct MapPass {
    pub(super) map: KeyMap,
    /// The map holds every keyed record from the pass's start up to here.
    pub(super) covered_to: i64,
    pub(super) full: bool,
    /// A batch's records could not be read (its CRC holds, so a producer sent it so).
    pub(super) malformed: bool,
}

/// Builds the key map over the batches from `from` (a batch boundary) up to the snapshot's
/// durable end, closed segments then the active one, until the memory cap.
pub(super) fn build_key_map(
    snap: &Snapshot,
    from: i64,
    limit: usize,
) -> Result<MapPass, MaintenanceError> {
    let mut pass = MapPass {
        map: KeyMap::new(limit),
        covered_to: snap.map_end,
        full: false,
        malformed: false,
    };
    let segments = snap.closed.iter().chain(std::iter::once(&snap.active));
    for view in segments.filter(|s| s.end > from) {
        let mut reader = BatchReader::new(view);
        while let Some((position, header, bytes)) = reader.next()? {
            if header.base_offset < from || header.is_control() || header.record_count == 0 {
                continue;
            }
            let aborted = header.is_transactional()
                && snap.aborted.get(&header.producer_id).is_some_and(|txns| {
                    txns.iter()
                        .any(|&(first, last)| (first..=last).contains(&header.base_offset))
                });
            if aborted {
                continue;
            }
            if header.next_offset() > snap.map_end {
                return Ok(pass);
            }
            let records = match batch::records_section(&bytes, &header) {
                Ok(r) => r,
                Err(e) => {
                    malformed_batch(view, position, &e.to_string());
                    pass.malformed = true;
                    continue;
                }
            };
            // Offsets first, so a malformed batch adds nothing.
            let mut keyed = Vec::new();
            if let Err(e) = batch::walk_records(&records, &header, |r| {
                if let Some(key) = r.key {
                    keyed.push((key, header.base_offset + i64::from(r.offset_delta)));
                }
            }) {
                malformed_batch(view, position, &e.to_string());
                pass.malformed = true;
                continue;
            }
            for (key, offset) in keyed {
                if !pass.map.offer(key, offset) {
                    pass.full = true;
                    pass.covered_to = header.base_offset;
                    return Ok(pass);
                }
            }
        }
    }
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_map_compares_keys_and_keeps_to_its_cap() {
        let mut map = KeyMap::new(2 * (KEY_MAP_ENTRY_OVERHEAD_BYTES + 1));
        assert!(map.offer(b"a", 1));
        assert!(map.offer(b"b", 2));
        assert!(map.offer(b"a", 3), "a known key always fits");
        assert!(!map.offer(b"c", 4), "a third key passes the cap");
        assert_eq!(
            (map.get(b"a"), map.get(b"b"), map.get(b"c")),
            (Some(3), Some(2), None)
        );
    }
}
