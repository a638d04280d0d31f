//! The windows of one share group as its coordinator holds them (one
//! [`SharePartition`] per topic partition, with the key of its state records and
//! whether it changed since its last snapshot), the snapshots a request writes
//! ([`dirty_snapshots`]) and the replay of `__share_group_state` a new coordinator runs
//! ([`Replay`]).
//!
//! The last record of each key `(group, topic id, partition)` is that share-partition's
//! state, a snapshot of its whole window (a tombstone: none). Every write is a snapshot
//! too, so key compaction keeps exactly what a new coordinator needs. A share-partition's
//! window is rebuilt from its snapshot the first time its group is used after a load.
//! The shell (weir-cluster's `share::shard`) holds each group's windows under a lock,
//! queues their snapshots on the partition and answers once they are durable.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use bytes::Bytes;

use super::partition::{Archived, ShareConfig, SharePartition};
use super::settings::{GroupSettings, RecordKey};
use super::state_records::{StateKey, StateRecordError, StateValue};

/// A `__share_group_state` record a write carries: its key, its value (`None`: a
/// tombstone) and, for a snapshot with locks, the value of its
/// [`LOCKS_HEADER`](super::state_records::LOCKS_HEADER) header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    pub key: Bytes,
    pub value: Option<Bytes>,
    pub locks: Option<Bytes>,
}

/// A share-partition of a group: its window, and the key of its state records.
#[derive(Debug)]
pub struct Window<C> {
    pub key: Bytes,
    pub topic_id: String,
    pub window: SharePartition,
    /// Changed since its last snapshot was queued.
    pub dirty: bool,
    /// Records taken into the window and not handed out yet (the shell's cache of the
    /// data partition's records: weir-cluster's `RecordCache`).
    pub cache: C,
    /// Each archived record waiting for its dead-letter copy, with the number of the
    /// group's first write that carries its archiving ([`Windows::writes_queued`]; 0:
    /// known from the durable log). A copy is made only once that write is durable
    /// ([`Window::copyable_dead_letters`]): a REJECT whose write is lost leaves the record
    /// to be delivered again and perhaps accepted, so a copy made earlier would be a
    /// dead letter of a record the group finished otherwise.
    pub archived_in_write: BTreeMap<i64, u64>,
}

impl<C> Window<C> {
    /// Up to `max` archived records waiting for their copy whose archiving is durable
    /// (carried by a write numbered at most `durable_through`), lowest first.
    pub fn copyable_dead_letters(&self, max: usize, durable_through: u64) -> Vec<Archived> {
        self.archived_in_write
            .iter()
            .filter(|&(_, &write)| write <= durable_through)
            .filter_map(|(&offset, _)| self.window.pending_dead_letter(offset))
            .take(max)
            .collect()
    }

    /// The dead-letter copy of `offset` is made: see [`SharePartition::dead_lettered`].
    pub fn dead_lettered(&mut self, offset: i64) -> bool {
        self.archived_in_write.remove(&offset);
        self.window.dead_lettered(offset)
    }

    /// Numbers the archived records waiting for their copy that no write has carried
    /// yet with `write`, the write about to carry them; forgets those no longer waiting.
    /// Returns whether any was numbered.
    fn number_archives(&mut self, write: u64) -> bool {
        // Compared as sets, not counts: a record may stop waiting (its log start passed
        // it) in the same change that archives another.
        if self.archived_in_write.is_empty() && self.window.pending_copies() == 0 {
            return false;
        }
        let waiting: BTreeMap<i64, u64> = self
            .window
            .pending_dead_letters(usize::MAX)
            .into_iter()
            .map(|a| {
                (
                    a.offset,
                    self.archived_in_write
                        .get(&a.offset)
                        .copied()
                        .unwrap_or(write),
                )
            })
            .collect();
        let numbered = waiting.values().any(|&w| w == write);
        self.archived_in_write = waiting;
        numbered
    }
}

/// The windows of one share group, by topic name and partition, and its settings.
#[derive(Debug)]
pub struct Windows<C> {
    pub settings: GroupSettings,
    pub partitions: BTreeMap<(String, u32), Window<C>>,
    /// Persisted states not yet rebuilt into windows, by topic id and partition.
    pub stored: HashMap<(String, u32), StateValue>,
    /// After a failed dead-letter copy: not before this again.
    pub dead_letters_retry_at: Option<Instant>,
    /// The group was deleted: a request that waited for its lock finds it gone.
    pub deleted: bool,
    /// How many writes of the group's snapshots this coordinator has queued (they become
    /// durable in this order: the shell tracks how far).
    pub writes_queued: u64,
}

impl<C> Default for Windows<C> {
    fn default() -> Self {
        Windows {
            settings: GroupSettings::default(),
            partitions: BTreeMap::new(),
            stored: HashMap::new(),
            dead_letters_retry_at: None,
            deleted: false,
            writes_queued: 0,
        }
    }
}

impl<C: Default> Windows<C> {
    /// The window of `topic`/`partition` of this group, made if the group has none yet:
    /// rebuilt from its stored state, or new at `start`.
    pub fn window(
        &mut self,
        group_id: &str,
        topic: &str,
        topic_id: &str,
        partition: u32,
        config: ShareConfig,
        start: i64,
    ) -> Result<&mut Window<C>, StateRecordError> {
        let slot = (topic.to_string(), partition);
        if let Some(w) = self.partitions.get(&slot)
            && w.topic_id != topic_id
        {
            // The topic was deleted and made again: its old state does not apply.
            self.partitions.remove(&slot);
        }
        if !self.partitions.contains_key(&slot) {
            let key = state_key(group_id, topic_id, partition)?;
            // Written with the request's snapshots either way: a new window fixes where the
            // group starts, a rebuilt one is written under this coordinator's epoch.
            let window = match self.stored.remove(&(topic_id.to_string(), partition)) {
                Some(stored) => SharePartition::load(config, &stored, []).0,
                None => SharePartition::new(config, start),
            };
            // A rebuilt window's archived records are archived in the durable log, or
            // archived by the load from it as any coordinator's load would: their copies
            // need no write first.
            let archived_in_write = window
                .pending_dead_letters(usize::MAX)
                .into_iter()
                .map(|a| (a.offset, 0))
                .collect();
            self.partitions.insert(
                slot.clone(),
                Window {
                    key,
                    topic_id: topic_id.to_string(),
                    window,
                    dirty: true,
                    cache: C::default(),
                    archived_in_write,
                },
            );
        }
        Ok(self.partitions.get_mut(&slot).expect("inserted above"))
    }
}

/// The key of a share-partition's state records.
pub fn state_key(group: &str, topic_id: &str, partition: u32) -> Result<Bytes, StateRecordError> {
    StateKey {
        group: group.to_string(),
        topic_id: topic_id_bytes(topic_id),
        partition,
    }
    .encode()
    .map(Bytes::from)
}

/// A topic id as 16 bytes: the UUID's bytes (every topic id this build makes is one);
/// an id that is not a UUID is zero-padded or cut to 16 bytes.
pub fn topic_id_bytes(topic_id: &str) -> [u8; 16] {
    uuid::Uuid::parse_str(topic_id).map_or_else(
        |_| {
            let mut out = [0u8; 16];
            for (o, b) in out.iter_mut().zip(topic_id.bytes()) {
                *o = b;
            }
            out
        },
        |u| *u.as_bytes(),
    )
}

/// What a replay of a `__share_group_state` partition has found so far: the latest
/// state of each share-partition and the latest settings of each group (a tombstone:
/// none). A shard load runs it over the log; so does the simulation (`sim.rs`).
#[derive(Debug, Default)]
pub struct Replay {
    latest: HashMap<StateKey, Option<StateValue>>,
    settings: HashMap<String, Option<GroupSettings>>,
}

impl Replay {
    /// Takes the next record of the log: its key, value and the value of its
    /// [`LOCKS_HEADER`](super::state_records::LOCKS_HEADER) header, if it has one.
    pub fn apply(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        locks: Option<&[u8]>,
    ) -> Result<(), StateRecordError> {
        match RecordKey::decode(key)? {
            RecordKey::Partition(key) => {
                let value = value
                    .map(|v| StateValue::decode_with_locks(v, locks))
                    .transpose()?;
                self.latest.insert(key, value);
            }
            RecordKey::Settings { group } => {
                let value = value.map(GroupSettings::decode).transpose()?;
                self.settings.insert(group, value);
            }
        }
        Ok(())
    }

    /// The groups the log holds, with the states of the topics `known` (topic id bytes
    /// to topic id) still has: a deleted topic's states are dropped.
    pub fn finish<C>(self, known: &HashMap<[u8; 16], String>) -> HashMap<String, Windows<C>> {
        let mut groups: HashMap<String, Windows<C>> = HashMap::new();
        for (key, value) in self.latest {
            let (Some(value), Some(topic_id)) = (value, known.get(&key.topic_id)) else {
                continue;
            };
            groups
                .entry(key.group)
                .or_default()
                .stored
                .insert((topic_id.clone(), key.partition), value);
        }
        for (group, value) in self.settings {
            if let Some(value) = value {
                groups.entry(group).or_default().settings = value;
            }
        }
        groups
    }
}

/// The snapshots of a group's dirty windows, as one write queues them.
#[derive(Debug, Default)]
pub struct Snapshots {
    /// The state records (none: nothing changed).
    pub records: Vec<StateWrite>,
    /// The write's number ([`Windows::writes_queued`]): once it is durable, so is every
    /// change made before it was queued.
    pub write: u64,
    /// It carries the archiving of a record waiting for its dead-letter copy: the copy
    /// may be made once the write is durable.
    pub archives: bool,
}

/// The snapshots of a group's `dirty` windows as state records, written by the leader of
/// `leader_epoch`, numbered as the group's next write; the windows are marked clean.
pub fn dirty_snapshots<C>(
    windows: &mut Windows<C>,
    leader_epoch: i32,
) -> Result<Snapshots, StateRecordError> {
    let write = windows.writes_queued + 1;
    let mut snapshots = Snapshots {
        write,
        ..Snapshots::default()
    };
    for w in windows.partitions.values_mut().filter(|w| w.dirty) {
        w.dirty = false;
        snapshots.archives |= w.number_archives(write);
        let snapshot = w.window.snapshot(leader_epoch);
        snapshots.records.push(StateWrite {
            key: w.key.clone(),
            value: Some(Bytes::from(snapshot.encode()?)),
            locks: snapshot.encode_locks()?.map(Bytes::from),
        });
    }
    windows.writes_queued = write;
    Ok(snapshots)
}
