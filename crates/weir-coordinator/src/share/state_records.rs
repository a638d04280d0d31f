//! The records of `__share_group_state` (docs/queues.md § Where the state lives): the
//! key names one share-partition, the value is a snapshot of its window or a delta over
//! the latest snapshot. Byte layouts are in docs/storage-format.md § Share-group state
//! records. Big-endian integers throughout; every count is checked against its limit
//! before anything is allocated for it.
//!
//! The locks a snapshot's window holds travel beside its value, in the record's
//! [`LOCKS_HEADER`] header ([`StateValue::encode_locks`]): brokers of releases before
//! it read the value alone, as they always did, and forfeit those locks on a failover;
//! this release's coordinators keep them.

use bytes::{Buf, BufMut};

use super::partition::{ArchiveReason, RecordState};

/// The key and value layouts' version; a reader refuses any other.
pub const STATE_RECORD_VERSION: u16 = 0;

/// Longest group id a key may carry.
pub const MAX_GROUP_ID_BYTES: usize = 255;

/// Most ranges one value may carry: a window of at most this many records
/// ([`ShareConfig::max_window_records`](super::ShareConfig) is below it) fits in one
/// snapshot even when no two neighbours share a state.
pub const MAX_STATE_RANGES: usize = 100_000;

/// Bytes of one encoded range.
const RANGE_BYTES: usize = 8 + 8 + 1 + 2 + 8;

/// The record header that carries a snapshot's locks.
pub const LOCKS_HEADER: &str = "weir.locks";

/// The locks header's layout version; a reader refuses any other.
pub const LOCKS_VERSION: u16 = 0;

/// Longest member id a lock may name (member ids are checked against a lower limit
/// where members join or fetch).
pub const MAX_LOCK_MEMBER_BYTES: usize = 255;

/// Bytes of one encoded lock before its member id.
const LOCK_FIXED_BYTES: usize = 8 + 8 + 8 + 1;

/// Which share-partition a record is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateKey {
    pub group: String,
    pub topic_id: [u8; 16],
    pub partition: u32,
}

/// Whether a value replaces the share-partition's state or changes some of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    Snapshot = 0,
    Delta = 1,
}

/// A record's persisted state. `Acquired` is not among them: an acquired record is
/// written as available, with its count, and its lock beside the value ([`StateLock`]),
/// so that a reader that does not know locks sees what it always saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistedState {
    Available = 0,
    Acknowledged = 1,
    /// Archived, its dead-letter copy still to make.
    ArchivedPending = 2,
    /// Archived and finished.
    Archived = 3,
}

impl PersistedState {
    /// What `state` is written as.
    pub fn of(state: &RecordState) -> PersistedState {
        match state {
            RecordState::Available | RecordState::Acquired { .. } => PersistedState::Available,
            RecordState::Acknowledged => PersistedState::Acknowledged,
            RecordState::Archived { copied: false, .. } => PersistedState::ArchivedPending,
            RecordState::Archived { copied: true, .. } => PersistedState::Archived,
        }
    }

    fn from_byte(b: u8) -> Option<PersistedState> {
        Some(match b {
            0 => PersistedState::Available,
            1 => PersistedState::Acknowledged,
            2 => PersistedState::ArchivedPending,
            3 => PersistedState::Archived,
            _ => return None,
        })
    }

    /// The in-memory state a loaded record starts in. The archive reason is not kept: a
    /// reloaded pending record is dead-lettered with reason `unknown`, and the copy's
    /// delivery count tells a limit from a reject.
    pub fn state(self) -> RecordState {
        match self {
            PersistedState::Available => RecordState::Available,
            PersistedState::Acknowledged => RecordState::Acknowledged,
            PersistedState::ArchivedPending => RecordState::Archived {
                reason: ArchiveReason::Unknown,
                copied: false,
            },
            PersistedState::Archived => RecordState::Archived {
                reason: ArchiveReason::Unknown,
                copied: true,
            },
        }
    }
}

/// Offsets `first..=last` that share one state, delivery count and not-before time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateRange {
    pub first: i64,
    pub last: i64,
    pub state: PersistedState,
    pub delivery_count: u16,
    pub not_before_ms: u64,
}

/// Offsets `first..=last`, written as available, that `member` holds under a lock until
/// `deadline_ms` (epoch ms, the writing coordinator's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLock {
    pub first: i64,
    pub last: i64,
    pub member: String,
    pub deadline_ms: u64,
}

/// A snapshot of a share-partition's window, or a delta over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateValue {
    pub kind: StateKind,
    /// The partition leader epoch of the leader that wrote it.
    pub leader_epoch: i32,
    /// The window's start after this change.
    pub start: i64,
    pub ranges: Vec<StateRange>,
    /// The locks held, in offset order ([`Self::encode_locks`]: not part of the value's
    /// bytes).
    pub locks: Vec<StateLock>,
}

/// Why a state record does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateRecordError {
    #[error("state record version {0} (this build reads {STATE_RECORD_VERSION})")]
    Version(u16),
    #[error("the record ends early: {0}")]
    Truncated(&'static str),
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("a group id of {0} bytes (at most {MAX_GROUP_ID_BYTES})")]
    GroupTooLong(usize),
    #[error("the group id is not UTF-8")]
    GroupNotUtf8,
    #[error("{0} ranges (at most {MAX_STATE_RANGES})")]
    TooManyRanges(usize),
    #[error("unknown {what} {value}")]
    Unknown { what: &'static str, value: u8 },
    #[error("range {first}..={last} is empty or out of order")]
    BadRange { first: i64, last: i64 },
    #[error("a group's header filter: {0}")]
    Filter(String),
    #[error("locks header version {0} (this build reads {LOCKS_VERSION})")]
    LocksVersion(u16),
    #[error("{0} locks (at most {MAX_STATE_RANGES})")]
    TooManyLocks(usize),
    #[error("a lock's member id of {0} bytes (at most {MAX_LOCK_MEMBER_BYTES})")]
    MemberTooLong(usize),
    #[error("a lock's member id is not UTF-8")]
    MemberNotUtf8,
}

impl StateKey {
    pub fn encode(&self) -> Result<Vec<u8>, StateRecordError> {
        let group = self.group.as_bytes();
        if group.len() > MAX_GROUP_ID_BYTES {
            return Err(StateRecordError::GroupTooLong(group.len()));
        }
        let mut out = Vec::with_capacity(2 + 1 + group.len() + 16 + 4);
        out.put_u16(STATE_RECORD_VERSION);
        out.put_u8(group.len() as u8);
        out.put_slice(group);
        out.put_slice(&self.topic_id);
        out.put_u32(self.partition);
        Ok(out)
    }

    pub fn decode(mut buf: &[u8]) -> Result<StateKey, StateRecordError> {
        version(&mut buf)?;
        need(buf, 1, "group length")?;
        let len = buf.get_u8() as usize;
        need(buf, len, "group id")?;
        let group = std::str::from_utf8(&buf[..len])
            .map_err(|_| StateRecordError::GroupNotUtf8)?
            .to_owned();
        buf.advance(len);
        need(buf, 16 + 4, "topic id and partition")?;
        let mut topic_id = [0u8; 16];
        buf.copy_to_slice(&mut topic_id);
        let partition = buf.get_u32();
        done(buf)?;
        Ok(StateKey {
            group,
            topic_id,
            partition,
        })
    }
}

impl StateValue {
    pub fn encode(&self) -> Result<Vec<u8>, StateRecordError> {
        if self.ranges.len() > MAX_STATE_RANGES {
            return Err(StateRecordError::TooManyRanges(self.ranges.len()));
        }
        let mut out = Vec::with_capacity(2 + 1 + 4 + 8 + 4 + RANGE_BYTES * self.ranges.len());
        out.put_u16(STATE_RECORD_VERSION);
        out.put_u8(self.kind as u8);
        out.put_i32(self.leader_epoch);
        out.put_i64(self.start);
        out.put_u32(self.ranges.len() as u32);
        for r in &self.ranges {
            out.put_i64(r.first);
            out.put_i64(r.last);
            out.put_u8(r.state as u8);
            out.put_u16(r.delivery_count);
            out.put_u64(r.not_before_ms);
        }
        Ok(out)
    }

    pub fn decode(mut buf: &[u8]) -> Result<StateValue, StateRecordError> {
        version(&mut buf)?;
        need(buf, 1 + 4 + 8 + 4, "value header")?;
        let kind = match buf.get_u8() {
            0 => StateKind::Snapshot,
            1 => StateKind::Delta,
            value => {
                return Err(StateRecordError::Unknown {
                    what: "kind",
                    value,
                });
            }
        };
        let leader_epoch = buf.get_i32();
        let start = buf.get_i64();
        let count = buf.get_u32() as usize;
        if count > MAX_STATE_RANGES {
            return Err(StateRecordError::TooManyRanges(count));
        }
        need(buf, count * RANGE_BYTES, "ranges")?;
        let mut ranges = Vec::with_capacity(count);
        let mut previous_last: Option<i64> = None;
        for _ in 0..count {
            let first = buf.get_i64();
            let last = buf.get_i64();
            next_range(&mut previous_last, first, last)?;
            let state_byte = buf.get_u8();
            let state = PersistedState::from_byte(state_byte).ok_or(StateRecordError::Unknown {
                what: "record state",
                value: state_byte,
            })?;
            ranges.push(StateRange {
                first,
                last,
                state,
                delivery_count: buf.get_u16(),
                not_before_ms: buf.get_u64(),
            });
        }
        done(buf)?;
        Ok(StateValue {
            kind,
            leader_epoch,
            start,
            ranges,
            locks: Vec::new(),
        })
    }

    /// The [`LOCKS_HEADER`] header's value: `None` when no record is locked (the header
    /// is left out).
    pub fn encode_locks(&self) -> Result<Option<Vec<u8>>, StateRecordError> {
        if self.locks.is_empty() {
            return Ok(None);
        }
        if self.locks.len() > MAX_STATE_RANGES {
            return Err(StateRecordError::TooManyLocks(self.locks.len()));
        }
        let mut out = Vec::with_capacity(2 + 4 + self.locks.len() * (LOCK_FIXED_BYTES + 36));
        out.put_u16(LOCKS_VERSION);
        out.put_u32(self.locks.len() as u32);
        for l in &self.locks {
            if l.member.len() > MAX_LOCK_MEMBER_BYTES {
                return Err(StateRecordError::MemberTooLong(l.member.len()));
            }
            out.put_i64(l.first);
            out.put_i64(l.last);
            out.put_u64(l.deadline_ms);
            out.put_u8(l.member.len() as u8);
            out.put_slice(l.member.as_bytes());
        }
        Ok(Some(out))
    }

    /// The value `value` decodes to, with the locks of its record's [`LOCKS_HEADER`]
    /// header, if it has one.
    pub fn decode_with_locks(
        value: &[u8],
        locks: Option<&[u8]>,
    ) -> Result<StateValue, StateRecordError> {
        let mut decoded = StateValue::decode(value)?;
        if let Some(locks) = locks {
            decoded.locks = decode_locks(locks)?;
        }
        Ok(decoded)
    }
}

/// A [`LOCKS_HEADER`] header's locks.
fn decode_locks(mut buf: &[u8]) -> Result<Vec<StateLock>, StateRecordError> {
    need(buf, 2 + 4, "locks header")?;
    match buf.get_u16() {
        LOCKS_VERSION => {}
        v => return Err(StateRecordError::LocksVersion(v)),
    }
    let count = buf.get_u32() as usize;
    if count > MAX_STATE_RANGES {
        return Err(StateRecordError::TooManyLocks(count));
    }
    need(buf, count * LOCK_FIXED_BYTES, "locks")?;
    let mut locks = Vec::with_capacity(count);
    let mut previous_last: Option<i64> = None;
    for _ in 0..count {
        need(buf, LOCK_FIXED_BYTES, "lock")?;
        let first = buf.get_i64();
        let last = buf.get_i64();
        next_range(&mut previous_last, first, last)?;
        let deadline_ms = buf.get_u64();
        let len = buf.get_u8() as usize;
        need(buf, len, "lock member id")?;
        let member = std::str::from_utf8(&buf[..len])
            .map_err(|_| StateRecordError::MemberNotUtf8)?
            .to_string();
        buf.advance(len);
        locks.push(StateLock {
            first,
            last,
            member,
            deadline_ms,
        });
    }
    done(buf)?;
    Ok(locks)
}

/// Checks that `first..=last` is a range, after the one that ended at `previous_last`
/// (ranges and locks come in increasing, non-overlapping order), and moves that on.
fn next_range(
    previous_last: &mut Option<i64>,
    first: i64,
    last: i64,
) -> Result<(), StateRecordError> {
    if last < first || previous_last.is_some_and(|p| first <= p) {
        return Err(StateRecordError::BadRange { first, last });
    }
    *previous_last = Some(last);
    Ok(())
}

fn version(buf: &mut &[u8]) -> Result<(), StateRecordError> {
    need(buf, 2, "version")?;
    match buf.get_u16() {
        STATE_RECORD_VERSION => Ok(()),
        v => Err(StateRecordError::Version(v)),
    }
}

fn need(buf: &[u8], n: usize, what: &'static str) -> Result<(), StateRecordError> {
    if buf.len() < n {
        return Err(StateRecordError::Truncated(what));
    }
    Ok(())
}

fn done(buf: &[u8]) -> Result<(), StateRecordError> {
    match buf.len() {
        0 => Ok(()),
        n => Err(StateRecordError::Trailing(n)),
    }
}

#[cfg(test)]
mod tests {
    use crate::golden_hex;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_key_and_value_bytes_are_pinned() {
        let key = StateKey {
            group: "jobs".into(),
            topic_id: [0x11; 16],
            partition: 3,
        };
        assert_eq!(
            key.encode().unwrap(),
            golden_hex("0000 04 6a6f6273 11111111111111111111111111111111 00000003")
        );
        let value = StateValue {
            kind: StateKind::Delta,
            leader_epoch: 7,
            start: 100,
            ranges: vec![StateRange {
                first: 100,
                last: 101,
                state: PersistedState::ArchivedPending,
                delivery_count: 5,
                not_before_ms: 0x0102,
            }],
            locks: vec![],
        };
        assert_eq!(
            value.encode().unwrap(),
            golden_hex(
                "0000 01 00000007 0000000000000064 00000001
                 0000000000000064 0000000000000065 02 0005 0000000000000102"
            )
        );
        assert_eq!(StateKey::decode(&key.encode().unwrap()).unwrap(), key);
        assert_eq!(StateValue::decode(&value.encode().unwrap()).unwrap(), value);
        assert_eq!(value.encode_locks(), Ok(None), "no locks, no header");
    }

    #[test]
    fn the_locks_header_bytes_are_pinned() {
        let value = StateValue {
            kind: StateKind::Snapshot,
            leader_epoch: 7,
            start: 100,
            ranges: vec![StateRange {
                first: 100,
                last: 102,
                state: PersistedState::Available,
                delivery_count: 1,
                not_before_ms: 0,
            }],
            locks: vec![StateLock {
                first: 101,
                last: 102,
                member: "m1".into(),
                deadline_ms: 0x0a0b,
            }],
        };
        let locks = value.encode_locks().unwrap().expect("one lock");
        assert_eq!(
            locks,
            golden_hex(
                "0000 00000001
                 0000000000000065 0000000000000066 0000000000000a0b 02 6d31"
            )
        );
        let bytes = value.encode().unwrap();
        assert_eq!(
            StateValue::decode_with_locks(&bytes, Some(&locks)).unwrap(),
            value
        );
        // A reader of the value alone (an older release's) sees the record available.
        assert_eq!(StateValue::decode(&bytes).unwrap().locks, vec![]);
        // Refused: another version, a count over the limit before sizing, locks out of
        // order, a member id that is not UTF-8.
        assert_eq!(
            StateValue::decode_with_locks(&bytes, Some(&golden_hex("0001 00000000"))),
            Err(StateRecordError::LocksVersion(1))
        );
        assert_eq!(
            StateValue::decode_with_locks(&bytes, Some(&golden_hex("0000 ffffffff"))),
            Err(StateRecordError::TooManyLocks(0xffff_ffff))
        );
        let backwards = golden_hex(
            "0000 00000002
             0000000000000065 0000000000000066 0000000000000a0b 01 6d
             0000000000000064 0000000000000064 0000000000000a0b 01 6d",
        );
        assert_eq!(
            StateValue::decode_with_locks(&bytes, Some(&backwards)),
            Err(StateRecordError::BadRange {
                first: 100,
                last: 100
            })
        );
        let not_utf8 =
            golden_hex("0000 00000001 0000000000000065 0000000000000065 0000000000000a0b 01 ff");
        assert_eq!(
            StateValue::decode_with_locks(&bytes, Some(&not_utf8)),
            Err(StateRecordError::MemberNotUtf8)
        );
    }

    #[test]
    fn bad_records_are_refused_before_anything_is_sized_from_them() {
        // A count of 4 G ranges in a 21-byte value.
        let huge = golden_hex("0000 00 00000001 0000000000000000 ffffffff");
        assert_eq!(
            StateValue::decode(&huge),
            Err(StateRecordError::TooManyRanges(0xffff_ffff))
        );
        let short = golden_hex("0000 00 00000001 0000000000000000 00000001 00");
        assert_eq!(
            StateValue::decode(&short),
            Err(StateRecordError::Truncated("ranges"))
        );
        assert_eq!(
            StateKey::decode(&golden_hex("0001")),
            Err(StateRecordError::Version(1))
        );
        let long = StateKey {
            group: "g".repeat(MAX_GROUP_ID_BYTES + 1),
            topic_id: [0; 16],
            partition: 0,
        };
        assert_eq!(
            long.encode(),
            Err(StateRecordError::GroupTooLong(MAX_GROUP_ID_BYTES + 1))
        );
    }

    proptest! {
        #[test]
        fn values_round_trip_and_damage_never_panics(
            epoch in any::<i32>(),
            start in 0i64..1_000_000,
            spans in proptest::collection::vec((1i64..50, 0u8..4, any::<u16>(), any::<u64>()), 0..20),
            cut in any::<usize>(),
            flip in any::<(usize, u8)>(),
        ) {
            let mut first = start;
            let ranges: Vec<StateRange> = spans
                .into_iter()
                .map(|(len, state, delivery_count, not_before_ms)| {
                    let r = StateRange {
                        first,
                        last: first + len - 1,
                        state: PersistedState::from_byte(state).unwrap(),
                        delivery_count,
                        not_before_ms,
                    };
                    first += len + 1;
                    r
                })
                .collect();
            let locks = ranges
                .iter()
                .filter(|r| r.state == PersistedState::Available)
                .map(|r| StateLock {
                    first: r.first,
                    last: r.last,
                    member: format!("member-{}", r.delivery_count),
                    deadline_ms: r.not_before_ms,
                })
                .collect();
            let value = StateValue { kind: StateKind::Snapshot, leader_epoch: epoch, start, ranges, locks };
            let bytes = value.encode().unwrap();
            let header = value.encode_locks().unwrap();
            prop_assert_eq!(
                StateValue::decode_with_locks(&bytes, header.as_deref()).unwrap(),
                value
            );
            if let Some(header) = &header {
                let _ = decode_locks(&header[..cut % (header.len() + 1)]);
                let mut damaged = header.clone();
                let i = flip.0 % damaged.len();
                damaged[i] ^= flip.1.max(1);
                let _ = decode_locks(&damaged);
            }
            // Cut or damaged: an error or some value, never a panic.
            let _ = StateValue::decode(&bytes[..cut % (bytes.len() + 1)]);
            let mut damaged = bytes.clone();
            let i = flip.0 % damaged.len();
            damaged[i] ^= flip.1.max(1);
            let _ = StateValue::decode(&damaged);
        }
    }
}
