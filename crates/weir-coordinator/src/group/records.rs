//! The records of `__consumer_offsets`: binary keys and values, big-endian, versioned.
//!
//! ```text
//! offset key   u16 type = 1 | u16 len, group (UTF-8) | u16 len, topic | u32 partition
//! group key    u16 type = 2 | u16 len, group
//! offset value u16 version = 3 | i64 offset | i64 commit_timestamp_ms | u16 len, metadata
//!              | u16 len, topic id (version 2 on; version 1 has none)
//!              | i32 leader epoch (version 3 on, -1 for none; before, none)
//! group value  u16 version = 1 | i32 group_epoch | u16 len, assignor
//! member key   u16 type = 3 | u16 len, group | u16 len, member id
//! member value u16 version = 1 | i32 member_epoch | i32 previous_epoch
//!              | u16 len, client id | u16 len, client host
//!              | u8 kind (0 topics, 1 regex) | topics: u32 n, n × (u16 len, topic)
//!                                            | regex: u16 len, source
//!              | u16 len, assignor ("" for none) | u32 session_timeout_ms | u64 join_seq
//!              | assignment assigned | assignment pending_revocation | assignment target
//! assignment   u32 topics | per topic: u16 len, topic | u32 n | n × u32 partition
//! classic key  u16 type = 4 | u16 len, group
//! classic value u16 version = 1 | i32 generation | u16 len, protocol type
//!              | u16 len, protocol ("" for none) | u16 len, leader ("" for none)
//!              | u32 n | n × classic member
//! classic member u16 len, member id | u8 has instance id, then u16 len, instance id
//!              | u16 len, client id | u16 len, client host | u32 session_timeout_ms
//!              | u32 rebalance_timeout_ms | u32 len, metadata (for the group's protocol)
//!              | u32 len, assignment
//! config key   u16 type = 5 | u16 len, group   (reserved: never written, skipped)
//! rebalance key u16 type = 6 | u16 len, group
//! rebalance value u16 version = 1 | u8 state (0 Empty, 1 PreparingRebalance,
//!              2 CompletingRebalance, 3 Stable) | the classic value from its generation
//!              on, each member's metadata left empty | per member, in that order: u16 k
//!              | k × (u16 len, protocol | u32 len, metadata) | u32 p | p × (u16 len,
//!              issued member id | u32 session_timeout_ms)
//! ```
//!
//! Key type 5 held a consumer group's own settings (Kafka's group configs) in development
//! builds only. They are in the metadata log now (weir-cluster's
//! `MetadataRecord::GroupConfigChanged`), so every broker answers them, as Kafka 4 keeps
//! them in `ConfigRecord`s of resource type GROUP. A load skips such a record, whatever
//! its value (compaction keeps the newest one of each group; it is harmless).
//!
//! A classic value is a classic group (JoinGroup/SyncGroup) as of its last completed
//! generation (Kafka's GroupMetadata record): written when the leader's assignment is
//! in (the group is Stable), when a static member takes its place again under a new
//! member id, and when the group empties; a rebalance under way is not written in it (the
//! rebalance record below holds that), so it is the last generation that completed.
//!
//! A rebalance value is a classic group between generations: a rebalance under way
//! (joining, or joined and waiting for the leader's assignment), or member ids issued
//! with MEMBER_ID_REQUIRED that have not joined yet. It is written whenever that changes,
//! before the members are answered, so a coordinator that takes the group over in the
//! middle of a rebalance knows the members' ids (their JoinGroups are answered with the
//! others', not UNKNOWN_MEMBER_ID and a wait for members that will never come back) and
//! the generation they were told of (their SyncGroups go on). When the group settles it
//! gets a tombstone, followed in the same write by its classic value: a replay that meets
//! the tombstone starts the group over, and the classic value restores it. A broker of
//! an older version skips the key and finds the last completed generation, as before.
//!
//! A record without a value is a tombstone: the key's committed offset, or the group,
//! was deleted (compaction keeps only the newest record of each key). Value versions
//! only ever append fields, so a reader decodes the fields it knows from any version
//! and ignores the rest; a key type it does not know is skipped (a newer broker's
//! record). `docs/consumer-groups.md` has the same table.

use bytes::{BufMut, Bytes, BytesMut};

use super::classic::ClassicState;

/// Key type of a committed offset.
pub const KEY_TYPE_OFFSET: u16 = 1;
/// Key type of a group record (epoch, assignor).
pub const KEY_TYPE_GROUP: u16 = 2;
/// Key type of a member record (KIP-848's member metadata, current and target
/// assignment, in one record).
pub const KEY_TYPE_MEMBER: u16 = 3;
/// Key type of a classic group record (its generation, members and assignments).
pub const KEY_TYPE_CLASSIC: u16 = 4;
/// Key type of a group config record: a consumer group's own session timeout and
/// heartbeat interval, written by development builds only (never released) before group
/// configs moved to the metadata log (weir-cluster's `MetadataRecord::GroupConfigChanged`).
/// Reserved: nothing writes it, and a load skips such a record whatever its value.
pub const KEY_TYPE_CONFIG: u16 = 5;
/// Key type of a classic group's rebalance record (a classic group between
/// generations: its members, state and issued member ids).
pub const KEY_TYPE_CLASSIC_REBALANCE: u16 = 6;
/// Version of classic rebalance values this broker writes.
pub const CLASSIC_REBALANCE_VALUE_VERSION: u16 = 1;
/// Most protocols one decoded classic rebalance member may name (a bound checked before
/// allocating; the coordinator's own limit, `MAX_PROTOCOLS_PER_MEMBER`, is lower).
const MAX_DECODED_PROTOCOLS: u16 = 1_000;
/// Version of classic group values this broker writes.
pub const CLASSIC_VALUE_VERSION: u16 = 1;
/// Most members one decoded classic group value may list (a bound checked before
/// allocating; the coordinator's own limit is lower).
const MAX_DECODED_CLASSIC_MEMBERS: u32 = 100_000;
/// Version of member values this broker writes.
pub const MEMBER_VALUE_VERSION: u16 = 1;
/// Most topics one decoded assignment or subscription may name (a bound checked before
/// allocating; the coordinator's own limits are lower).
const MAX_DECODED_TOPICS: u32 = 100_000;
/// Most partitions of one topic in one decoded assignment.
const MAX_DECODED_PARTITIONS: u32 = 1_000_000;
/// Version of offset values this broker writes.
pub const OFFSET_VALUE_VERSION: u16 = 3;
/// Version of group values this broker writes.
pub const GROUP_VALUE_VERSION: u16 = 1;

/// A decoded key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: u32,
    },
    Group {
        group: String,
    },
    Member {
        group: String,
        member: String,
    },
    Classic {
        group: String,
    },
    ClassicRebalance {
        group: String,
    },
    Config {
        group: String,
    },
}

/// What a member's subscription names, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredSubscription {
    Topics(Vec<String>),
    Regex(String),
}

/// One member as a member record keeps it: everything a new coordinator needs so the
/// member goes on without rejoining (deadlines restart when a coordinator loads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub epoch: i32,
    pub previous_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscription: StoredSubscription,
    /// Empty: the member named none.
    pub assignor: String,
    pub session_timeout_ms: u32,
    pub join_seq: u64,
    pub assigned: Vec<(String, Vec<u32>)>,
    pub pending_revocation: Vec<(String, Vec<u32>)>,
    pub target: Vec<(String, Vec<u32>)>,
}

/// A classic group as of its last completed generation: everything a new coordinator
/// needs so that its members go on heartbeating and committing with their member ids
/// and generation (sessions restart when a coordinator loads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicValue {
    pub generation: i32,
    pub protocol_type: String,
    /// Empty: no protocol (an empty group).
    pub protocol_name: String,
    /// Empty: no leader (an empty group).
    pub leader: String,
    pub members: Vec<ClassicMemberValue>,
}

/// One member of a [`ClassicValue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    /// Its metadata for the group's protocol (its subscription), as Kafka keeps it: the
    /// other protocols it named are not kept.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A classic group between generations ([`KEY_TYPE_CLASSIC_REBALANCE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicRebalanceValue {
    pub state: ClassicState,
    /// Its generation (in CompletingRebalance, the one its members joined), protocol,
    /// leader and members with their assignments; the members' `metadata` is empty
    /// (`protocols` holds it).
    pub group: ClassicValue,
    /// Each member's protocols with their metadata, in the order of `group.members`.
    pub protocols: Vec<Vec<(String, Bytes)>>,
    /// Member ids issued with MEMBER_ID_REQUIRED and not joined yet, with the session
    /// timeout of the JoinGroup that got each (it lapses after that long).
    pub pending: Vec<(String, u32)>,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub commit_timestamp_ms: i64,
    pub metadata: String,
    /// The id of the topic the offset was committed for (empty in version 1 records):
    /// a topic deleted and created again under its name does not inherit it.
    pub topic_id: String,
    /// The leader epoch of the last record consumed, as the committer gave it (Kafka's
    /// committed leader epoch, for truncation detection); -1 for none (and in records
    /// before version 3).
    pub leader_epoch: i32,
}

/// What survives of a group across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub epoch: i32,
    pub assignor: String,
}

fn put_str(buf: &mut BytesMut, s: &str) {
    // Every string written here is bounded far below u16::MAX by the callers' limits
    // (group ids and topic names 249 chars, metadata 4 KiB, assignor names).
    let len = u16::try_from(s.len()).expect("record strings are bounded by named limits");
    buf.put_u16(len);
    buf.put_slice(s.as_bytes());
}

pub fn offset_key(group: &str, topic: &str, partition: u32) -> Bytes {
    let mut buf = BytesMut::with_capacity(10 + group.len() + topic.len());
    buf.put_u16(KEY_TYPE_OFFSET);
    put_str(&mut buf, group);
    put_str(&mut buf, topic);
    buf.put_u32(partition);
    buf.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_u16(KEY_TYPE_GROUP);
    put_str(&mut buf, group);
    buf.freeze()
}

pub fn member_key(group: &str, member: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(6 + group.len() + member.len());
    buf.put_u16(KEY_TYPE_MEMBER);
    put_str(&mut buf, group);
    put_str(&mut buf, member);
    buf.freeze()
}

pub fn classic_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_u16(KEY_TYPE_CLASSIC);
    put_str(&mut buf, group);
    buf.freeze()
}

pub fn classic_rebalance_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_u16(KEY_TYPE_CLASSIC_REBALANCE);
    put_str(&mut buf, group);
    buf.freeze()
}

/// The key of a group config record ([`KEY_TYPE_CONFIG`]), as development builds wrote
/// it: only for tests that such a record in an existing log is skipped.
#[cfg(test)]
pub fn config_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_u16(KEY_TYPE_CONFIG);
    put_str(&mut buf, group);
    buf.freeze()
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    // Metadata and assignments are bounded (2 MiB each) by the coordinator's limits.
    buf.put_u32(u32::try_from(b.len()).expect("classic member bytes are bounded"));
    buf.put_slice(b);
}

pub fn classic_value(value: &ClassicValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(classic_capacity(value));
    buf.put_u16(CLASSIC_VALUE_VERSION);
    put_classic(&mut buf, value);
    buf.freeze()
}

fn classic_capacity(value: &ClassicValue) -> usize {
    let members: usize = value
        .members
        .iter()
        .map(|m| 64 + m.metadata.len() + m.assignment.len())
        .sum();
    32 + members
}

/// A classic value after its version.
fn put_classic(buf: &mut BytesMut, value: &ClassicValue) {
    buf.put_i32(value.generation);
    put_str(buf, &value.protocol_type);
    put_str(buf, &value.protocol_name);
    put_str(buf, &value.leader);
    buf.put_u32(value.members.len() as u32);
    for m in &value.members {
        put_str(buf, &m.member_id);
        match &m.group_instance_id {
            Some(id) => {
                buf.put_u8(1);
                put_str(buf, id);
            }
            None => buf.put_u8(0),
        }
        put_str(buf, &m.client_id);
        put_str(buf, &m.client_host);
        buf.put_u32(m.session_timeout_ms);
        buf.put_u32(m.rebalance_timeout_ms);
        put_bytes(buf, &m.metadata);
        put_bytes(buf, &m.assignment);
    }
}

pub fn classic_rebalance_value(value: &ClassicRebalanceValue) -> Bytes {
    let protocols: usize = value
        .protocols
        .iter()
        .flatten()
        .map(|(name, metadata)| 6 + name.len() + metadata.len())
        .sum();
    let pending: usize = value.pending.iter().map(|(id, _)| 6 + id.len()).sum();
    let mut buf = BytesMut::with_capacity(8 + classic_capacity(&value.group) + protocols + pending);
    buf.put_u16(CLASSIC_REBALANCE_VALUE_VERSION);
    buf.put_u8(match value.state {
        ClassicState::Empty => 0,
        ClassicState::PreparingRebalance => 1,
        ClassicState::CompletingRebalance => 2,
        ClassicState::Stable => 3,
    });
    put_classic(&mut buf, &value.group);
    for protocols in &value.protocols {
        // At most MAX_PROTOCOLS_PER_MEMBER (64), checked at the JoinGroup.
        buf.put_u16(u16::try_from(protocols.len()).expect("protocols are bounded"));
        for (name, metadata) in protocols {
            put_str(&mut buf, name);
            put_bytes(&mut buf, metadata);
        }
    }
    buf.put_u32(value.pending.len() as u32);
    for (id, session_timeout_ms) in &value.pending {
        put_str(&mut buf, id);
        buf.put_u32(*session_timeout_ms);
    }
    buf.freeze()
}

fn put_assignment(buf: &mut BytesMut, assignment: &[(String, Vec<u32>)]) {
    buf.put_u32(assignment.len() as u32);
    for (topic, partitions) in assignment {
        put_str(buf, topic);
        buf.put_u32(partitions.len() as u32);
        for p in partitions {
            buf.put_u32(*p);
        }
    }
}

pub fn member_value(value: &MemberValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u16(MEMBER_VALUE_VERSION);
    buf.put_i32(value.epoch);
    buf.put_i32(value.previous_epoch);
    put_str(&mut buf, &value.client_id);
    put_str(&mut buf, &value.client_host);
    match &value.subscription {
        StoredSubscription::Topics(topics) => {
            buf.put_u8(0);
            buf.put_u32(topics.len() as u32);
            for t in topics {
                put_str(&mut buf, t);
            }
        }
        StoredSubscription::Regex(source) => {
            buf.put_u8(1);
            put_str(&mut buf, source);
        }
    }
    put_str(&mut buf, &value.assignor);
    buf.put_u32(value.session_timeout_ms);
    buf.put_u64(value.join_seq);
    put_assignment(&mut buf, &value.assigned);
    put_assignment(&mut buf, &value.pending_revocation);
    put_assignment(&mut buf, &value.target);
    buf.freeze()
}

pub fn offset_value(value: &OffsetValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(26 + value.metadata.len() + value.topic_id.len());
    buf.put_u16(OFFSET_VALUE_VERSION);
    buf.put_i64(value.offset);
    buf.put_i64(value.commit_timestamp_ms);
    put_str(&mut buf, &value.metadata);
    put_str(&mut buf, &value.topic_id);
    buf.put_i32(value.leader_epoch);
    buf.freeze()
}

pub fn group_value(value: &GroupValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(8 + value.assignor.len());
    buf.put_u16(GROUP_VALUE_VERSION);
    buf.put_i32(value.epoch);
    put_str(&mut buf, &value.assignor);
    buf.freeze()
}

/// A bounds-checked reader over one key or value.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "truncated at byte {} reading {what} ({n} bytes, {} left)",
                self.pos,
                self.bytes.len() - self.pos
            ));
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_be_bytes(
            self.take(2, what)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    fn i32(&mut self, what: &str) -> Result<i32, String> {
        Ok(i32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    /// A count, refused above `max` before anything is allocated for it.
    fn count(&mut self, what: &str, max: u32) -> Result<usize, String> {
        let n = self.u32(what)?;
        if n > max {
            return Err(format!("{what} {n} is over the limit of {max}"));
        }
        Ok(n as usize)
    }

    /// A u32-length byte string of at most `max` bytes.
    fn bytes(&mut self, what: &str, max: usize) -> Result<Bytes, String> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(format!("{what} of {len} bytes is over the limit of {max}"));
        }
        Ok(Bytes::copy_from_slice(self.take(len, what)?))
    }

    fn assignment(&mut self, what: &str) -> Result<Vec<(String, Vec<u32>)>, String> {
        let topics = self.count(what, MAX_DECODED_TOPICS)?;
        // Each topic takes at least 6 bytes: no more entries than the bytes left allow.
        let mut out = Vec::with_capacity(topics.min(self.bytes.len() / 6));
        for _ in 0..topics {
            let topic = self.string(what)?;
            let n = self.count(what, MAX_DECODED_PARTITIONS)?;
            let mut partitions = Vec::with_capacity(n.min(self.bytes.len() / 4));
            for _ in 0..n {
                partitions.push(self.u32(what)?);
            }
            out.push((topic, partitions));
        }
        Ok(out)
    }

    fn i64(&mut self, what: &str) -> Result<i64, String> {
        Ok(i64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.u16(what)? as usize;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }

    /// A classic value after its version.
    fn classic(&mut self) -> Result<ClassicValue, String> {
        use super::{MAX_ASSIGNMENT_BYTES, MAX_PROTOCOL_METADATA_BYTES};
        let generation = self.i32("generation")?;
        let protocol_type = self.string("protocol type")?;
        let protocol_name = self.string("protocol")?;
        let leader = self.string("leader")?;
        let n = self.count("classic members", MAX_DECODED_CLASSIC_MEMBERS)?;
        // Each member takes at least 24 bytes: no more entries than the bytes left allow.
        let mut members = Vec::with_capacity(n.min(self.bytes.len() / 24));
        for _ in 0..n {
            let member_id = self.string("member id")?;
            let group_instance_id = match self.u8("instance id flag")? {
                0 => None,
                1 => Some(self.string("group instance id")?),
                f => return Err(format!("instance id flag {f} does not exist")),
            };
            members.push(ClassicMemberValue {
                member_id,
                group_instance_id,
                client_id: self.string("client id")?,
                client_host: self.string("client host")?,
                session_timeout_ms: self.u32("session timeout")?,
                rebalance_timeout_ms: self.u32("rebalance timeout")?,
                metadata: self.bytes("member metadata", MAX_PROTOCOL_METADATA_BYTES)?,
                assignment: self.bytes("member assignment", MAX_ASSIGNMENT_BYTES)?,
            });
        }
        Ok(ClassicValue {
            generation,
            protocol_type,
            protocol_name,
            leader,
            members,
        })
    }

    fn finish(&self, what: &str) -> Result<(), String> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(format!(
                "{} trailing bytes after the {what}",
                self.bytes.len() - self.pos
            ))
        }
    }
}

/// Decodes a key; `Ok(None)` for a key type this broker does not know (skip it).
pub fn decode_key(bytes: &[u8]) -> Result<Option<RecordKey>, String> {
    let mut r = Reader { bytes, pos: 0 };
    let key = match r.u16("key type")? {
        KEY_TYPE_OFFSET => RecordKey::Offset {
            group: r.string("group id")?,
            topic: r.string("topic")?,
            partition: r.u32("partition")?,
        },
        KEY_TYPE_GROUP => RecordKey::Group {
            group: r.string("group id")?,
        },
        KEY_TYPE_MEMBER => RecordKey::Member {
            group: r.string("group id")?,
            member: r.string("member id")?,
        },
        KEY_TYPE_CLASSIC => RecordKey::Classic {
            group: r.string("group id")?,
        },
        KEY_TYPE_CLASSIC_REBALANCE => RecordKey::ClassicRebalance {
            group: r.string("group id")?,
        },
        KEY_TYPE_CONFIG => RecordKey::Config {
            group: r.string("group id")?,
        },
        _ => return Ok(None),
    };
    r.finish("key")?;
    Ok(Some(key))
}

fn version(r: &mut Reader<'_>) -> Result<u16, String> {
    match r.u16("value version")? {
        0 => Err("value version 0 does not exist".to_string()),
        v => Ok(v),
    }
}

pub fn decode_offset_value(bytes: &[u8]) -> Result<OffsetValue, String> {
    let mut r = Reader { bytes, pos: 0 };
    let v = version(&mut r)?;
    let value = OffsetValue {
        offset: r.i64("offset")?,
        commit_timestamp_ms: r.i64("commit timestamp")?,
        metadata: r.string("metadata")?,
        topic_id: if v >= 2 {
            r.string("topic id")?
        } else {
            String::new()
        },
        leader_epoch: if v >= 3 { r.i32("leader epoch")? } else { -1 },
    };
    if v <= OFFSET_VALUE_VERSION {
        r.finish("offset value")?;
    }
    Ok(value)
}

pub fn decode_group_value(bytes: &[u8]) -> Result<GroupValue, String> {
    let mut r = Reader { bytes, pos: 0 };
    let v = version(&mut r)?;
    let value = GroupValue {
        epoch: r.i32("group epoch")?,
        assignor: r.string("assignor")?,
    };
    if v == GROUP_VALUE_VERSION {
        r.finish("group value")?;
    }
    Ok(value)
}

pub fn decode_member_value(bytes: &[u8]) -> Result<MemberValue, String> {
    let mut r = Reader { bytes, pos: 0 };
    let v = version(&mut r)?;
    let epoch = r.i32("member epoch")?;
    let previous_epoch = r.i32("previous member epoch")?;
    let client_id = r.string("client id")?;
    let client_host = r.string("client host")?;
    let subscription = match r.u8("subscription kind")? {
        0 => {
            let n = r.count("subscribed topics", MAX_DECODED_TOPICS)?;
            let mut topics = Vec::with_capacity(n.min(bytes.len() / 2));
            for _ in 0..n {
                topics.push(r.string("subscribed topic")?);
            }
            StoredSubscription::Topics(topics)
        }
        1 => StoredSubscription::Regex(r.string("subscription regex")?),
        k => return Err(format!("subscription kind {k} does not exist")),
    };
    let value = MemberValue {
        epoch,
        previous_epoch,
        client_id,
        client_host,
        subscription,
        assignor: r.string("assignor")?,
        session_timeout_ms: r.u32("session timeout")?,
        join_seq: r.u64("join sequence")?,
        assigned: r.assignment("assigned partitions")?,
        pending_revocation: r.assignment("partitions pending revocation")?,
        target: r.assignment("target assignment")?,
    };
    if v == MEMBER_VALUE_VERSION {
        r.finish("member value")?;
    }
    Ok(value)
}

pub fn decode_classic_value(bytes: &[u8]) -> Result<ClassicValue, String> {
    let mut r = Reader { bytes, pos: 0 };
    let v = version(&mut r)?;
    let value = r.classic()?;
    if v == CLASSIC_VALUE_VERSION {
        r.finish("classic group value")?;
    }
    Ok(value)
}

pub fn decode_classic_rebalance_value(bytes: &[u8]) -> Result<ClassicRebalanceValue, String> {
    use super::MAX_PROTOCOL_METADATA_BYTES;
    let mut r = Reader { bytes, pos: 0 };
    let v = version(&mut r)?;
    let state = match r.u8("classic state")? {
        0 => ClassicState::Empty,
        1 => ClassicState::PreparingRebalance,
        2 => ClassicState::CompletingRebalance,
        3 => ClassicState::Stable,
        s => return Err(format!("classic state {s} does not exist")),
    };
    let group = r.classic()?;
    let mut protocols = Vec::with_capacity(group.members.len());
    for _ in &group.members {
        let k = r.u16("member protocols")?;
        if k > MAX_DECODED_PROTOCOLS {
            return Err(format!(
                "member protocols {k} is over the limit of {MAX_DECODED_PROTOCOLS}"
            ));
        }
        // Each protocol takes at least 6 bytes: no more than the bytes left allow.
        let mut list = Vec::with_capacity(usize::from(k).min(bytes.len() / 6));
        for _ in 0..k {
            list.push((
                r.string("protocol name")?,
                r.bytes("protocol metadata", MAX_PROTOCOL_METADATA_BYTES)?,
            ));
        }
        protocols.push(list);
    }
    let n = r.count("issued member ids", MAX_DECODED_CLASSIC_MEMBERS)?;
    let mut pending = Vec::with_capacity(n.min(bytes.len() / 6));
    for _ in 0..n {
        pending.push((r.string("issued member id")?, r.u32("session timeout")?));
    }
    if v == CLASSIC_REBALANCE_VALUE_VERSION {
        r.finish("classic rebalance value")?;
    }
    Ok(ClassicRebalanceValue {
        state,
        group,
        protocols,
        pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let key = offset_key("g", "orders", 7);
        assert_eq!(
            &key[..],
            &[
                0, 1, 0, 1, b'g', 0, 6, b'o', b'r', b'd', b'e', b'r', b's', 0, 0, 0, 7
            ]
        );
        assert_eq!(
            decode_key(&key).unwrap(),
            Some(RecordKey::Offset {
                group: "g".into(),
                topic: "orders".into(),
                partition: 7
            })
        );
        assert_eq!(
            decode_key(&group_key("grp")).unwrap(),
            Some(RecordKey::Group {
                group: "grp".into()
            })
        );
        let value = OffsetValue {
            offset: 42,
            commit_timestamp_ms: 1_700_000_000_000,
            metadata: "héllo".into(),
            topic_id: "7b0c".into(),
            leader_epoch: 3,
        };
        assert_eq!(decode_offset_value(&offset_value(&value)).unwrap(), value);
        let group = GroupValue {
            epoch: 9,
            assignor: "range".into(),
        };
        assert_eq!(decode_group_value(&group_value(&group)).unwrap(), group);
        assert_eq!(
            decode_key(&config_key("grp")).unwrap(),
            Some(RecordKey::Config {
                group: "grp".into()
            })
        );
        assert_eq!(
            decode_key(&member_key("grp", "m-1")).unwrap(),
            Some(RecordKey::Member {
                group: "grp".into(),
                member: "m-1".into()
            })
        );
        for subscription in [
            StoredSubscription::Topics(vec!["a".into(), "b".into()]),
            StoredSubscription::Regex("or.*".into()),
        ] {
            let member = MemberValue {
                epoch: 7,
                previous_epoch: 6,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                subscription,
                assignor: "range".into(),
                session_timeout_ms: 45_000,
                join_seq: 3,
                assigned: vec![("a".into(), vec![0, 2])],
                pending_revocation: vec![("b".into(), vec![1])],
                target: vec![("a".into(), vec![0, 1, 2])],
            };
            let bytes = member_value(&member);
            assert_eq!(decode_member_value(&bytes).unwrap(), member);
            // Every truncation is an error, never a panic.
            for len in 0..bytes.len() {
                assert!(decode_member_value(&bytes[..len]).is_err(), "{len}");
            }
        }
    }

    #[test]
    fn classic_values_round_trip_and_truncations_are_errors() {
        assert_eq!(
            decode_key(&classic_key("grp")).unwrap(),
            Some(RecordKey::Classic {
                group: "grp".into()
            })
        );
        let value = ClassicValue {
            generation: 4,
            protocol_type: "consumer".into(),
            protocol_name: "range".into(),
            leader: "c-1".into(),
            members: vec![
                ClassicMemberValue {
                    member_id: "c-1".into(),
                    group_instance_id: Some("instance-a".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 300_000,
                    metadata: Bytes::from_static(b"\0\x01sub"),
                    assignment: Bytes::from_static(b"\0\x01asg"),
                },
                ClassicMemberValue {
                    member_id: "c-2".into(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.2".into(),
                    session_timeout_ms: 6_000,
                    rebalance_timeout_ms: 6_000,
                    metadata: Bytes::new(),
                    assignment: Bytes::new(),
                },
            ],
        };
        let bytes = classic_value(&value);
        assert_eq!(decode_classic_value(&bytes).unwrap(), value);
        for len in 0..bytes.len() {
            assert!(decode_classic_value(&bytes[..len]).is_err(), "{len}");
        }
        // An empty group (every member left): the generation is kept.
        let empty = ClassicValue {
            generation: 5,
            protocol_type: "consumer".into(),
            protocol_name: String::new(),
            leader: String::new(),
            members: Vec::new(),
        };
        assert_eq!(decode_classic_value(&classic_value(&empty)).unwrap(), empty);
        // A newer version's appended field is skipped.
        let mut v2 = classic_value(&empty).to_vec();
        v2[1] = 2;
        v2.push(9);
        assert_eq!(decode_classic_value(&v2).unwrap(), empty);
        // A length over the limit is refused before allocating.
        let mut huge = classic_value(&ClassicValue {
            members: vec![ClassicMemberValue {
                metadata: Bytes::new(),
                assignment: Bytes::new(),
                ..value.members[1].clone()
            }],
            ..empty
        })
        .to_vec();
        let at = huge.len() - 8;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = decode_classic_value(&huge).unwrap_err();
        assert!(err.contains("over the limit"), "{err}");
    }

    #[test]
    fn classic_rebalance_values_round_trip_and_truncations_are_errors() {
        assert_eq!(
            decode_key(&classic_rebalance_key("grp")).unwrap(),
            Some(RecordKey::ClassicRebalance {
                group: "grp".into()
            })
        );
        let member = ClassicMemberValue {
            member_id: "c-1".into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 300_000,
            metadata: Bytes::new(),
            assignment: Bytes::from_static(b"\0\x01asg"),
        };
        for state in [
            ClassicState::Empty,
            ClassicState::PreparingRebalance,
            ClassicState::CompletingRebalance,
            ClassicState::Stable,
        ] {
            let value = ClassicRebalanceValue {
                state,
                group: ClassicValue {
                    generation: 7,
                    protocol_type: "consumer".into(),
                    protocol_name: "range".into(),
                    leader: "c-1".into(),
                    members: vec![member.clone()],
                },
                protocols: vec![vec![
                    ("range".into(), Bytes::from_static(b"\0\x01sub")),
                    ("roundrobin".into(), Bytes::new()),
                ]],
                pending: vec![("c-2".into(), 6_000)],
            };
            let bytes = classic_rebalance_value(&value);
            assert_eq!(decode_classic_rebalance_value(&bytes).unwrap(), value);
            for len in 0..bytes.len() {
                assert!(
                    decode_classic_rebalance_value(&bytes[..len]).is_err(),
                    "{len}"
                );
            }
            // A newer version's appended field is skipped.
            let mut v2 = bytes.to_vec();
            v2[1] = 2;
            v2.push(9);
            assert_eq!(decode_classic_rebalance_value(&v2).unwrap(), value);
        }
        let mut bad_state = classic_rebalance_value(&ClassicRebalanceValue {
            state: ClassicState::Empty,
            group: ClassicValue {
                generation: 1,
                protocol_type: String::new(),
                protocol_name: String::new(),
                leader: String::new(),
                members: Vec::new(),
            },
            protocols: Vec::new(),
            pending: Vec::new(),
        })
        .to_vec();
        bad_state[2] = 4;
        let err = decode_classic_rebalance_value(&bad_state).unwrap_err();
        assert!(err.contains("state 4"), "{err}");
    }

    #[test]
    fn member_values_with_huge_counts_are_refused_before_allocating() {
        let mut bytes = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        let err = decode_member_value(&bytes).unwrap_err();
        assert!(err.contains("over the limit"), "{err}");
    }

    #[test]
    fn unknown_key_types_are_skipped_and_newer_values_read() {
        assert_eq!(decode_key(&[0, 99, 1, 2, 3]).unwrap(), None);
        // Version 4 with an appended field: the known prefix is read.
        let mut v4 = offset_value(&OffsetValue {
            offset: 5,
            commit_timestamp_ms: 6,
            metadata: String::new(),
            topic_id: "id".into(),
            leader_epoch: 2,
        })
        .to_vec();
        v4[1] = 4;
        v4.extend_from_slice(&[1, 2, 3]);
        let read = decode_offset_value(&v4).unwrap();
        assert_eq!(
            (read.offset, read.topic_id.as_str(), read.leader_epoch),
            (5, "id", 2)
        );
        // Version 2 (no leader epoch) and version 1 (no topic id either) are still read.
        let v2 = [
            0, 2, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, b'x',
        ];
        let read = decode_offset_value(&v2).unwrap();
        assert_eq!(
            (read.offset, read.topic_id.as_str(), read.leader_epoch),
            (8, "x", -1)
        );
        let v1 = [0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];
        let read = decode_offset_value(&v1).unwrap();
        assert_eq!(
            (read.offset, read.topic_id.as_str(), read.leader_epoch),
            (9, "", -1)
        );
    }

    #[test]
    fn malformed_records_are_errors() {
        let key = offset_key("g", "t", 1);
        assert!(decode_key(&key[..key.len() - 1]).is_err());
        let mut long = key.to_vec();
        long.push(0);
        assert!(decode_key(&long).is_err());
        assert!(decode_offset_value(&[0, 1, 0]).is_err());
        assert!(decode_group_value(&[0, 0, 0, 0, 0, 1, 0, 0]).is_err());
        assert!(decode_key(&[0, 2, 0, 1, 0xff]).is_err());
    }
}
