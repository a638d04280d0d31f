//! The group coordinator: the async API the broker calls for consumer groups, with
//! committed offsets and group records persisted in `__consumer_offsets` and replayed on
//! open.
//!
//! State is sharded by `__consumer_offsets` partition: group `g` lives in shard
//! [`partition_for_group`]`(g)`, whose partition holds its records. A shard is a
//! `std::sync::Mutex` over its groups (held for short, synchronous steps, never across an
//! await) plus a `tokio::sync::Mutex` serializing its writes. A write takes the writer
//! lock, checks and prepares under the state lock, builds one record batch, queues it on
//! the partition (queue order is log order) and releases the writer lock; it then waits
//! for the durable acknowledgement (concurrent writers share the fsync) and applies the
//! records to the state. Each in-memory offset remembers the log offset of the record
//! that set it, and a record only replaces an older one, so the state matches the last
//! record in the log whatever order the acknowledgements arrive in. Writes run as their
//! own tasks, so a caller that goes away (a cancelled RPC) cannot leave a record in the
//! log that the state never saw.
//!
//! Membership lives only in memory: after a restart, members are unknown and rejoin.
//! What survives is each group's committed offsets and its epoch and assignor (the
//! group record), so epochs never go back.

use std::collections::{BTreeMap, BTreeSet, HashMap, btree_map};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_log::{Compression, Record, RecordBatchBuilder, ValidatedBatches, decode_records};

use super::assignor::{Assignment, Assignor};
use super::records::{self, GroupValue, OffsetValue, RecordKey};
use super::state::{Group, MemberRequest, Subscription, TopicRegex, TopicsSnapshot};
use super::{
    CommittedOffset, GroupConfig, GroupDescription, GroupError, GroupMetrics, GroupState,
    GroupSummary, Heartbeat, HeartbeatOutcome, MAX_CACHED_REGEXES, MAX_CLIENT_ID_CHARS,
    MAX_COMMIT_METADATA_BYTES, MAX_MEMBER_ID_CHARS, MAX_OFFSETS_PER_COMMIT, MAX_OWNED_PARTITIONS,
    MAX_REGEX_BYTES, MAX_REGEX_COMPILED_BYTES, MAX_SUBSCRIBED_TOPICS, OFFSETS_SEGMENT_BYTES,
    OFFSETS_TOPIC, OffsetCommit, OffsetReset, PartitionLag, PartitionProgress, REPLAY_READ_BYTES,
    ResetSpec, partition_for_group, validate_group_id,
};
use crate::config::{CLEANUP_POLICY, SEGMENT_BYTES};
use crate::error::ClusterError;
use crate::partition::{Durability, Partition};
use crate::registry::TopicRegistry;
use crate::topic_name::validate_topic_name;

/// One committed offset in memory.
#[derive(Debug, Clone)]
struct StoredOffset {
    offset: i64,
    metadata: String,
    commit_timestamp_ms: i64,
    /// Log offset of the record that set it.
    record_offset: i64,
}

/// One group of a shard.
#[derive(Debug)]
struct GroupEntry {
    group: Group,
    offsets: BTreeMap<String, BTreeMap<u32, StoredOffset>>,
    /// Tombstones for it are being written.
    deleting: bool,
    /// Start of the offsets retention clock: when the group last became empty or was
    /// last committed to, whichever is later (on open: the open time, or the newest
    /// commit timestamp if later). Only read while the group has no members.
    idle_since: Instant,
}

impl GroupEntry {
    fn state(&self) -> GroupState {
        if self.deleting {
            GroupState::Dead
        } else {
            self.group.state()
        }
    }
}

/// The groups of one `__consumer_offsets` partition.
#[derive(Debug, Default)]
struct ShardState {
    groups: HashMap<String, GroupEntry>,
    /// Writes queued and not yet applied.
    in_flight: usize,
    /// Log offset of the newest group tombstone per group, kept while writes are in
    /// flight: an older commit acknowledged after the deletion must not bring the group
    /// back.
    deleted: HashMap<String, i64>,
    /// Offset keys of commits in flight, so a deletion also tombstones them.
    pending_keys: HashMap<(String, String, u32), u32>,
    /// No member deadline is earlier than this (a lower bound; `None`: no members).
    next_deadline: Option<Instant>,
}

/// The records of one write, and the commit keys to forget once it is applied.
#[derive(Debug, Default)]
struct Prepared {
    records: Vec<(Bytes, Option<Bytes>)>,
    pending: Vec<(String, String, u32)>,
    /// A commit: once applied, the group's retention clock restarts at this time.
    committed_at: Option<(String, Instant)>,
}

#[derive(Debug)]
struct Shard {
    index: u32,
    partition: Arc<Partition>,
    writer: tokio::sync::Mutex<()>,
    state: Mutex<ShardState>,
    /// Groups on the whole coordinator (shared by the shards).
    group_count: Arc<AtomicUsize>,
}

/// The consumer group coordinator. Cheap to share: use it as `Arc<GroupCoordinator>`.
#[derive(Debug)]
pub struct GroupCoordinator {
    registry: Arc<TopicRegistry>,
    config: GroupConfig,
    shards: Vec<Arc<Shard>>,
    topics: Mutex<Arc<TopicsSnapshot>>,
    /// Registry version whose topic changes every group has seen.
    refreshed_version: AtomicU64,
    regexes: Mutex<HashMap<String, Arc<TopicRegex>>>,
    group_count: Arc<AtomicUsize>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Shard {
    fn state(&self) -> MutexGuard<'_, ShardState> {
        self.state.lock().expect("group shard mutex")
    }

    /// Writes what `prepare` returns (run under the writer and state locks; it checks
    /// the request and may mark state) as one batch, waits until it is durable, and
    /// applies it. Returns the base offset, or `None` if there was nothing to write.
    async fn write(
        self: &Arc<Self>,
        prepare: impl FnOnce(&mut ShardState) -> Result<Prepared, GroupError> + Send + 'static,
    ) -> Result<Option<i64>, GroupError> {
        let shard = self.clone();
        // Its own task: once records are queued they are applied even if the caller
        // stops waiting.
        tokio::spawn(async move {
            let writer = shard.writer.lock().await;
            let prepared = {
                let mut st = shard.state();
                let prepared = prepare(&mut st)?;
                if prepared.records.is_empty() {
                    return Ok(None);
                }
                st.in_flight += 1;
                for key in &prepared.pending {
                    *st.pending_keys.entry(key.clone()).or_insert(0) += 1;
                }
                prepared
            };
            let appended = shard.append(&prepared.records, writer).await;
            let mut st = shard.state();
            st.in_flight -= 1;
            for key in prepared.pending {
                if let Some(n) = st.pending_keys.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        st.pending_keys.remove(&key);
                    }
                }
            }
            let result = appended.map(|base| {
                for (i, (key, value)) in prepared.records.iter().enumerate() {
                    let offset = base + i as i64;
                    if let Err(reason) =
                        apply_record(&mut st, key, value.as_deref(), offset, &shard.group_count)
                    {
                        // We encoded it ourselves: a bug, not bad input.
                        tracing::error!(
                            partition = shard.index,
                            offset,
                            reason,
                            "applying own record failed"
                        );
                    }
                }
                if let Some((group, at)) = &prepared.committed_at
                    && let Some(e) = st.groups.get_mut(group)
                {
                    e.idle_since = e.idle_since.max(*at);
                }
                Some(base)
            });
            if st.in_flight == 0 {
                st.deleted.clear();
            }
            result
        })
        .await
        .map_err(|e| GroupError::Cluster(ClusterError::TaskFailed(e.to_string())))?
    }

    /// Builds the batch, queues it (then lets the next writer in) and waits for the
    /// durable acknowledgement; returns the base offset.
    async fn append(
        &self,
        records: &[(Bytes, Option<Bytes>)],
        writer: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<i64, GroupError> {
        let timestamp = now_ms();
        let mut builder = RecordBatchBuilder::new(Compression::None);
        for (key, value) in records {
            builder.push(&Record {
                key: Some(key.clone()),
                value: value.clone(),
                headers: Vec::new(),
                timestamp,
            });
        }
        let bytes = builder
            .build()
            .map_err(|e| GroupError::InvalidRequest(format!("cannot encode the records: {e}")))?;
        let max = self.partition.config().log.max_message_bytes;
        if bytes.len() > max {
            return Err(GroupError::InvalidRequest(format!(
                "the request makes a {} byte record batch, over the {max} byte limit of \
                 {OFFSETS_TOPIC} (max.message.bytes); send fewer partitions per request",
                bytes.len()
            )));
        }
        let batch = ValidatedBatches::new(bytes, max).map_err(|source| ClusterError::Append {
            topic: OFFSETS_TOPIC.to_string(),
            partition: self.index,
            source,
        })?;
        let pending = self.partition.submit(batch, Durability::Durable).await?;
        drop(writer);
        let outcome = pending.await.map_err(|_| ClusterError::PartitionClosed {
            topic: OFFSETS_TOPIC.to_string(),
            partition: self.index,
        })??;
        Ok(outcome.base_offset)
    }
}

/// The entry of `group`, created if missing.
fn entry<'a>(st: &'a mut ShardState, group: &str, count: &AtomicUsize) -> &'a mut GroupEntry {
    if !st.groups.contains_key(group) {
        count.fetch_add(1, Ordering::Relaxed);
        st.groups.insert(
            group.to_string(),
            GroupEntry {
                group: Group::new(group),
                offsets: BTreeMap::new(),
                deleting: false,
                idle_since: Instant::now(),
            },
        );
    }
    st.groups.get_mut(group).expect("inserted")
}

/// Applies one `__consumer_offsets` record at log offset `offset`: on replay, and after
/// each write is durable. Records only replace what older records set.
fn apply_record(
    st: &mut ShardState,
    key: &[u8],
    value: Option<&[u8]>,
    offset: i64,
    count: &AtomicUsize,
) -> Result<(), String> {
    let Some(key) = records::decode_key(key)? else {
        return Ok(());
    };
    let deleted_after =
        |st: &ShardState, group: &str| st.deleted.get(group).is_some_and(|d| *d > offset);
    match (key, value) {
        (
            RecordKey::Offset {
                group,
                topic,
                partition,
            },
            Some(value),
        ) => {
            let value = records::decode_offset_value(value)?;
            if deleted_after(st, &group) {
                return Ok(());
            }
            let e = entry(st, &group, count);
            let stored = StoredOffset {
                offset: value.offset,
                metadata: value.metadata,
                commit_timestamp_ms: value.commit_timestamp_ms,
                record_offset: offset,
            };
            match e.offsets.entry(topic).or_default().entry(partition) {
                btree_map::Entry::Vacant(v) => {
                    v.insert(stored);
                }
                btree_map::Entry::Occupied(mut o) => {
                    if o.get().record_offset < offset {
                        o.insert(stored);
                    }
                }
            }
        }
        (
            RecordKey::Offset {
                group,
                topic,
                partition,
            },
            None,
        ) => {
            if let Some(e) = st.groups.get_mut(&group)
                && let Some(parts) = e.offsets.get_mut(&topic)
            {
                if parts
                    .get(&partition)
                    .is_some_and(|s| s.record_offset < offset)
                {
                    parts.remove(&partition);
                }
                if parts.is_empty() {
                    e.offsets.remove(&topic);
                }
            }
        }
        (RecordKey::Group { group }, Some(value)) => {
            let value = records::decode_group_value(value)?;
            if deleted_after(st, &group) {
                return Ok(());
            }
            let assignor = value.assignor.parse::<Assignor>().ok();
            entry(st, &group, count)
                .group
                .restore(value.epoch, assignor);
        }
        (RecordKey::Group { group }, None) => {
            let newest = st.deleted.entry(group.clone()).or_insert(offset);
            *newest = (*newest).max(offset);
            if let Some(e) = st.groups.get_mut(&group) {
                for parts in e.offsets.values_mut() {
                    parts.retain(|_, s| s.record_offset > offset);
                }
                e.offsets.retain(|_, parts| !parts.is_empty());
                if e.group.member_count() == 0 {
                    e.group.reset();
                    e.deleting = false;
                    if e.offsets.is_empty() {
                        st.groups.remove(&group);
                        count.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Writes, in one batch, a tombstone for each committed offset of `group` (including
/// commits still in flight) and then one for its group key, if `check` (run under the
/// writer and state locks) says so; marks the group `deleting` meanwhile. Returns
/// whether it wrote. Used by `delete_group` and the offsets retention.
async fn delete_group_records(
    shard: &Arc<Shard>,
    group_id: &str,
    check: impl FnOnce(&ShardState) -> Result<bool, GroupError> + Send + 'static,
) -> Result<bool, GroupError> {
    let group = group_id.to_string();
    let written = shard
        .write(move |st| {
            if !check(st)? {
                return Ok(Prepared::default());
            }
            let pending: Vec<(String, u32)> = st
                .pending_keys
                .keys()
                .filter(|(g, _, _)| *g == group)
                .map(|(_, t, p)| (t.clone(), *p))
                .collect();
            let e = st
                .groups
                .get_mut(&group)
                .ok_or_else(|| GroupError::UnknownGroup(group.clone()))?;
            e.deleting = true;
            let mut keys: BTreeSet<(String, u32)> = e
                .offsets
                .iter()
                .flat_map(|(t, parts)| parts.keys().map(move |p| (t.clone(), *p)))
                .collect();
            keys.extend(pending);
            let mut records: Vec<(Bytes, Option<Bytes>)> = keys
                .iter()
                .map(|(t, p)| (records::offset_key(&group, t, *p), None))
                .collect();
            records.push((records::group_key(&group), None));
            Ok(Prepared {
                records,
                ..Prepared::default()
            })
        })
        .await;
    if written.is_err()
        && let Some(e) = shard.state().groups.get_mut(group_id)
    {
        e.deleting = false;
    }
    Ok(written?.is_some())
}

/// Rebuilds a shard from its partition, log start to high watermark.
async fn replay(
    index: u32,
    partition: &Partition,
    count: &AtomicUsize,
) -> Result<ShardState, GroupError> {
    let mut st = ShardState::default();
    let offsets = partition.offsets().await?;
    let mut position = offsets.log_start_offset;
    let mut records_applied = 0u64;
    while position < offsets.high_watermark {
        let data = partition.read(position, REPLAY_READ_BYTES).await?;
        for batch in data.batches() {
            let corrupt = |offset, reason: String| GroupError::CorruptRecord {
                partition: index,
                offset,
                reason,
            };
            let decoded = decode_records(&batch).map_err(|e| corrupt(position, e.to_string()))?;
            for record in decoded {
                let Some(key) = &record.key else {
                    tracing::warn!(
                        partition = index,
                        offset = record.offset,
                        "skipping a record without a key"
                    );
                    continue;
                };
                apply_record(&mut st, key, record.value.as_deref(), record.offset, count)
                    .map_err(|reason| corrupt(record.offset, reason))?;
                records_applied += 1;
            }
        }
        if data.next_offset <= position {
            break;
        }
        position = data.next_offset;
    }
    // Everything is applied in log order: no write is in flight.
    st.deleted.clear();
    // Members do not survive a restart: every group's retention clock restarts now
    // (entries were created during the replay), or at its newest commit timestamp if
    // that is later (a wall clock that went back), so offsets never expire earlier than
    // Kafka, which counts from when the group became empty.
    let (open_instant, open_ms) = (Instant::now(), now_ms());
    for e in st.groups.values_mut() {
        let newest = e
            .offsets
            .values()
            .flat_map(|parts| parts.values())
            .map(|s| s.commit_timestamp_ms)
            .max()
            .unwrap_or(i64::MIN);
        let ahead = Duration::from_millis(newest.saturating_sub(open_ms).max(0) as u64);
        e.idle_since = open_instant + ahead;
    }
    tracing::debug!(
        partition = index,
        records = records_applied,
        groups = st.groups.len(),
        "replayed offsets partition"
    );
    Ok(st)
}

impl GroupCoordinator {
    /// Opens the coordinator: creates `__consumer_offsets` if missing (compacted,
    /// `config.offsets_partitions` partitions; an existing topic keeps its count) and
    /// replays each partition to rebuild groups, epochs and committed offsets.
    pub async fn open(
        registry: Arc<TopicRegistry>,
        config: GroupConfig,
    ) -> Result<Arc<GroupCoordinator>, GroupError> {
        config.validate()?;
        let topic = match registry.topic(OFFSETS_TOPIC) {
            Ok(t) => t,
            Err(ClusterError::UnknownTopic(_)) => {
                let configs = BTreeMap::from([
                    (CLEANUP_POLICY.to_string(), "compact".to_string()),
                    (SEGMENT_BYTES.to_string(), OFFSETS_SEGMENT_BYTES.to_string()),
                ]);
                match registry
                    .create_topic(OFFSETS_TOPIC, config.offsets_partitions, 0, configs)
                    .await
                {
                    Ok(t) => t,
                    Err(ClusterError::TopicExists(_)) => registry.topic(OFFSETS_TOPIC)?,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        if topic.partition_count() != config.offsets_partitions {
            tracing::warn!(
                existing = topic.partition_count(),
                configured = config.offsets_partitions,
                "{OFFSETS_TOPIC} keeps its partition count (groups hash to existing partitions)"
            );
        }
        let group_count = Arc::new(AtomicUsize::new(0));
        let mut shards = Vec::new();
        for partition in topic.partitions() {
            let index = partition.index();
            let state = replay(index, &partition, &group_count).await?;
            shards.push(Arc::new(Shard {
                index,
                partition,
                writer: tokio::sync::Mutex::new(()),
                state: Mutex::new(state),
                group_count: group_count.clone(),
            }));
        }
        tracing::info!(
            groups = group_count.load(Ordering::Relaxed),
            partitions = shards.len(),
            "group coordinator open"
        );
        Ok(Arc::new(GroupCoordinator {
            registry,
            config,
            shards,
            topics: Mutex::new(Arc::new(TopicsSnapshot {
                version: 0,
                partitions: BTreeMap::new(),
            })),
            refreshed_version: AtomicU64::new(0),
            regexes: Mutex::new(HashMap::new()),
            group_count,
        }))
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The `__consumer_offsets` partition coordinating `group_id` (Kafka's rule:
    /// `abs(String.hashCode(group_id)) % partitions`).
    pub fn coordinator_partition(&self, group_id: &str) -> u32 {
        partition_for_group(group_id, self.shards.len() as u32)
    }

    fn shard(&self, group_id: &str) -> &Arc<Shard> {
        &self.shards[self.coordinator_partition(group_id) as usize]
    }

    /// The topics as of the registry's current metadata version.
    fn topics_snapshot(&self) -> Arc<TopicsSnapshot> {
        let version = self.registry.metadata_version();
        {
            let current = self.topics.lock().expect("topics mutex");
            if current.version == version {
                return current.clone();
            }
        }
        let snapshot = Arc::new(TopicsSnapshot {
            version,
            partitions: self
                .registry
                .topics()
                .iter()
                .map(|t| (Arc::from(t.name.as_str()), t.partition_count()))
                .collect(),
        });
        *self.topics.lock().expect("topics mutex") = snapshot.clone();
        snapshot
    }

    fn compile_regex(&self, source: &str) -> Result<Arc<TopicRegex>, GroupError> {
        let invalid = |reason: String| GroupError::InvalidRegex {
            regex: source.chars().take(MAX_REGEX_BYTES).collect(),
            reason,
        };
        if source.len() > MAX_REGEX_BYTES {
            return Err(invalid(format!(
                "it is {} bytes long; the limit is {MAX_REGEX_BYTES}",
                source.len()
            )));
        }
        if let Some(re) = self.regexes.lock().expect("regex cache").get(source) {
            return Ok(re.clone());
        }
        let build = |pattern: &str| {
            regex::RegexBuilder::new(pattern)
                .size_limit(MAX_REGEX_COMPILED_BYTES)
                .dfa_size_limit(MAX_REGEX_COMPILED_BYTES)
                .build()
                .map_err(|e| invalid(e.to_string()))
        };
        // The pattern alone first: a valid pattern has balanced groups, so anchoring it
        // in a group cannot change what it means.
        build(source)?;
        let regex = build(&format!("^(?:{source})$"))?;
        let compiled = Arc::new(TopicRegex {
            source: source.to_string(),
            regex,
        });
        let mut cache = self.regexes.lock().expect("regex cache");
        if cache.len() >= MAX_CACHED_REGEXES {
            cache.clear();
        }
        cache.insert(source.to_string(), compiled.clone());
        Ok(compiled)
    }

    /// Checks a heartbeat's fields and converts them for the state machine.
    fn member_request(&self, req: Heartbeat) -> Result<MemberRequest, GroupError> {
        let invalid = |why: String| Err(GroupError::InvalidRequest(why));
        if req.member_id.len() > MAX_MEMBER_ID_CHARS {
            return invalid(format!(
                "member_id is {} bytes; the limit is {MAX_MEMBER_ID_CHARS}",
                req.member_id.len()
            ));
        }
        if req.member_epoch > 0 && req.member_id.is_empty() {
            return invalid(format!(
                "member_epoch {} needs the member_id the broker gave (send member_epoch 0 to join)",
                req.member_epoch
            ));
        }
        for (name, value) in [
            ("client_id", &req.client_id),
            ("client_host", &req.client_host),
        ] {
            if value.len() > MAX_CLIENT_ID_CHARS {
                return invalid(format!(
                    "{name} is {} bytes; the limit is {MAX_CLIENT_ID_CHARS}",
                    value.len()
                ));
            }
        }
        if req.topics.len() > MAX_SUBSCRIBED_TOPICS {
            return invalid(format!(
                "{} topics subscribed; the limit is {MAX_SUBSCRIBED_TOPICS} (use a topic_regex)",
                req.topics.len()
            ));
        }
        let regex = req.topic_regex.filter(|r| !r.is_empty());
        let subscription = match (req.topics.is_empty(), regex) {
            (false, Some(_)) => {
                return invalid(
                    "subscribe with topics or with a topic_regex, not both".to_string(),
                );
            }
            (false, None) => {
                let mut names = BTreeSet::new();
                for t in req.topics {
                    validate_topic_name(&t).map_err(|e| {
                        GroupError::InvalidRequest(format!("subscribed topic: {e}"))
                    })?;
                    names.insert(Arc::from(t));
                }
                Some(Subscription::Topics(names))
            }
            (true, Some(r)) => Some(Subscription::Regex(self.compile_regex(&r)?)),
            (true, None) => None,
        };
        let assignor = match req.assignor.filter(|a| !a.is_empty()) {
            Some(a) => Some(a.parse::<Assignor>().map_err(GroupError::InvalidRequest)?),
            None => None,
        };
        let count: usize = req.owned.values().map(Vec::len).sum();
        if count > MAX_OWNED_PARTITIONS {
            return invalid(format!(
                "{count} owned partitions; the limit is {MAX_OWNED_PARTITIONS}"
            ));
        }
        let owned: Assignment = req
            .owned
            .into_iter()
            .flat_map(|(t, ps)| {
                let t: Arc<str> = Arc::from(t);
                ps.into_iter().map(move |p| (t.clone(), p))
            })
            .collect();
        let session_timeout = req.session_timeout.filter(|t| !t.is_zero()).map(|t| {
            t.clamp(
                self.config.min_session_timeout,
                self.config.max_session_timeout,
            )
        });
        Ok(MemberRequest {
            member_id: req.member_id,
            member_epoch: req.member_epoch,
            client_id: req.client_id,
            client_host: req.client_host,
            subscription,
            assignor,
            owned,
            session_timeout,
        })
    }

    /// Handles a member's heartbeat: join (`member_epoch` 0), stay, or leave (-1).
    pub async fn heartbeat(&self, req: Heartbeat) -> Result<HeartbeatOutcome, GroupError> {
        self.heartbeat_at(req, Instant::now()).await
    }

    /// [`heartbeat`](Self::heartbeat) at time `now` (simulations drive the clock; use
    /// the same clock for [`expire_sessions`](Self::expire_sessions)).
    pub async fn heartbeat_at(
        &self,
        req: Heartbeat,
        now: Instant,
    ) -> Result<HeartbeatOutcome, GroupError> {
        validate_group_id(&req.group_id)?;
        let group_id = req.group_id.clone();
        let request = self.member_request(req)?;
        let topics = self.topics_snapshot();
        let shard = self.shard(&group_id);
        let result = {
            let mut st = shard.state();
            let created = !st.groups.contains_key(&group_id);
            if created {
                match request.member_epoch {
                    0 => {
                        if self.group_count.load(Ordering::Relaxed) >= self.config.max_groups {
                            return Err(GroupError::TooManyGroups {
                                max: self.config.max_groups,
                            });
                        }
                    }
                    -1 => {
                        return Ok(HeartbeatOutcome {
                            member_id: request.member_id,
                            member_epoch: -1,
                            group_epoch: 0,
                            heartbeat_interval: self.config.heartbeat_interval,
                            session_timeout: self.config.session_timeout,
                            assignment: None,
                        });
                    }
                    _ => {
                        return Err(GroupError::UnknownMember {
                            group_id,
                            member_id: request.member_id,
                        });
                    }
                }
            }
            let result = {
                let e = entry(&mut st, &group_id, &self.group_count);
                let members_before = e.group.member_count();
                let result = e.group.heartbeat(request, &topics, now, &self.config);
                if result.as_ref().is_ok_and(|r| r.joined) {
                    e.deleting = false;
                }
                if members_before > 0 && e.group.member_count() == 0 {
                    e.idle_since = e.idle_since.max(now);
                }
                // Cheap next to the heartbeat; checked in debug builds (tests) only.
                debug_assert_eq!(e.group.check_invariants(), Ok(()));
                result
            };
            match &result {
                Ok(r) => {
                    if r.outcome.member_epoch >= 0 {
                        let deadline =
                            now + r.outcome.session_timeout.min(self.config.rebalance_timeout);
                        st.next_deadline =
                            Some(st.next_deadline.map_or(deadline, |d| d.min(deadline)));
                    }
                }
                Err(_) if created => {
                    st.groups.remove(&group_id);
                    self.group_count.fetch_sub(1, Ordering::Relaxed);
                }
                Err(_) => {}
            }
            result?
        };
        if result.bumped {
            self.persist_group(shard, &group_id).await?;
        }
        Ok(result.outcome)
    }

    /// Writes the group record (epoch, assignor) as the group is now.
    async fn persist_group(&self, shard: &Arc<Shard>, group_id: &str) -> Result<(), GroupError> {
        let group_id = group_id.to_string();
        shard
            .write(move |st| {
                let Some(e) = st.groups.get(&group_id) else {
                    return Ok(Prepared::default());
                };
                let value = records::group_value(&GroupValue {
                    epoch: e.group.epoch(),
                    assignor: e.group.assignor().name().to_string(),
                });
                Ok(Prepared {
                    records: vec![(records::group_key(&group_id), Some(value))],
                    ..Prepared::default()
                })
            })
            .await?;
        Ok(())
    }

    /// Removes members whose session timed out (or who kept partitions they were asked
    /// to release past the rebalance timeout) as of `now`; returns how many.
    pub async fn expire_sessions(&self, now: Instant) -> Result<usize, GroupError> {
        let topics = self.topics_snapshot();
        let mut removed = 0;
        for shard in &self.shards {
            let bumped: Vec<String> = {
                let mut st = shard.state();
                if st.next_deadline.is_none_or(|d| d > now) {
                    continue;
                }
                let mut bumped = Vec::new();
                let mut next: Option<Instant> = None;
                for (group_id, e) in st.groups.iter_mut() {
                    let gone = e.group.expire(now, &topics);
                    if !gone.is_empty() && e.group.member_count() == 0 {
                        e.idle_since = e.idle_since.max(now);
                    }
                    if !gone.is_empty() {
                        tracing::info!(group = group_id, members = ?gone, "members removed: session or rebalance timeout");
                        removed += gone.len();
                        bumped.push(group_id.clone());
                    }
                    if let Some(d) = e.group.next_deadline() {
                        next = Some(next.map_or(d, |n| n.min(d)));
                    }
                }
                st.next_deadline = next;
                bumped
            };
            for group_id in bumped {
                self.persist_group(shard, &group_id).await?;
            }
        }
        Ok(removed)
    }

    /// Deletes the committed offsets, and then the group, of every group that has had no
    /// members and no commit for `offsets_retention` as of `now` (same clock as
    /// [`heartbeat_at`](Self::heartbeat_at)), exactly as
    /// [`delete_group`](Self::delete_group) does; returns how many groups were deleted.
    /// A group with members, or with commits in flight, is kept.
    pub async fn expire_offsets(&self, now: Instant) -> Result<usize, GroupError> {
        let retention = self.config.offsets_retention;
        let expired = move |st: &ShardState, group: &str| {
            st.groups.get(group).is_some_and(|e| {
                e.group.member_count() == 0
                    && !e.deleting
                    && e.idle_since
                        .checked_add(retention)
                        .is_some_and(|t| t <= now)
            }) && !st.pending_keys.keys().any(|(g, _, _)| g == group)
        };
        let mut removed = 0;
        for shard in &self.shards {
            let candidates: Vec<String> = {
                let st = shard.state();
                st.groups
                    .keys()
                    .filter(|g| expired(&st, g))
                    .cloned()
                    .collect()
            };
            for group_id in candidates {
                // Checked again under the writer lock: a member may have joined, or a
                // commit arrived, since.
                let check = {
                    let group_id = group_id.clone();
                    move |st: &ShardState| Ok(expired(st, &group_id))
                };
                if delete_group_records(shard, &group_id, check).await? {
                    tracing::info!(
                        group = group_id,
                        retention = ?retention,
                        "group and its committed offsets deleted: empty past the offsets retention"
                    );
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Re-evaluates every group's subscriptions if topics were created, deleted or grew
    /// since the last call (regex subscriptions pick up new topics); bumps the epochs of
    /// the groups affected. Members also see changes on their next heartbeat without it.
    pub async fn refresh_topics(&self) -> Result<(), GroupError> {
        let topics = self.topics_snapshot();
        if self.refreshed_version.load(Ordering::Relaxed) == topics.version {
            return Ok(());
        }
        for shard in &self.shards {
            let bumped: Vec<String> = {
                let mut st = shard.state();
                st.groups
                    .iter_mut()
                    .filter_map(|(id, e)| e.group.refresh_topics(&topics).then(|| id.clone()))
                    .collect()
            };
            for group_id in bumped {
                self.persist_group(shard, &group_id).await?;
            }
        }
        self.refreshed_version
            .store(topics.version, Ordering::Relaxed);
        Ok(())
    }

    /// Runs [`expire_sessions`](Self::expire_sessions) and
    /// [`refresh_topics`](Self::refresh_topics) every `expiry_check_interval`, and
    /// [`expire_offsets`](Self::expire_offsets) at most every
    /// `offsets_retention_check_interval`, until `shutdown` becomes true (or its sender
    /// is dropped).
    pub fn spawn_expiry(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut last_offsets_check = Instant::now();
            let mut tick = tokio::time::interval(this.config.expiry_check_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                if *shutdown.borrow() {
                    break;
                }
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = shutdown.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        continue;
                    }
                }
                if let Err(e) = this.expire_sessions(Instant::now()).await {
                    tracing::warn!(error = %e, "expiring group sessions failed");
                }
                if let Err(e) = this.refresh_topics().await {
                    tracing::warn!(error = %e, "refreshing group subscriptions failed");
                }
                let now = Instant::now();
                if now.duration_since(last_offsets_check)
                    >= this.config.offsets_retention_check_interval
                {
                    last_offsets_check = now;
                    if let Err(e) = this.expire_offsets(now).await {
                        tracing::warn!(error = %e, "expiring committed offsets failed");
                    }
                }
            }
        })
    }

    /// Commits offsets for `group_id`, durably, all or none. `member` is the committing
    /// member's id and epoch (both must be current); `None` commits from outside the
    /// group, allowed only while it has no members. A commit restarts the offsets
    /// retention clock of the group.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        member: Option<(&str, i32)>,
        offsets: Vec<OffsetCommit>,
    ) -> Result<(), GroupError> {
        self.commit_offsets_at(group_id, member, offsets, Instant::now())
            .await
    }

    /// [`commit_offsets`](Self::commit_offsets) at time `now` for the retention clock
    /// (same clock as [`heartbeat_at`](Self::heartbeat_at); the stored commit timestamp
    /// is still the wall clock).
    pub async fn commit_offsets_at(
        &self,
        group_id: &str,
        member: Option<(&str, i32)>,
        offsets: Vec<OffsetCommit>,
        now: Instant,
    ) -> Result<(), GroupError> {
        validate_group_id(group_id)?;
        if offsets.len() > MAX_OFFSETS_PER_COMMIT {
            return Err(GroupError::InvalidRequest(format!(
                "{} offsets in one commit; the limit is {MAX_OFFSETS_PER_COMMIT}",
                offsets.len()
            )));
        }
        let mut counts: HashMap<&str, u32> = HashMap::new();
        for o in &offsets {
            if o.offset < 0 {
                return Err(GroupError::InvalidRequest(format!(
                    "offset {} for {}/{} is negative; commit the next offset to consume",
                    o.offset, o.topic, o.partition
                )));
            }
            if o.metadata.len() > MAX_COMMIT_METADATA_BYTES {
                return Err(GroupError::InvalidRequest(format!(
                    "metadata for {}/{} is {} bytes; the limit is {MAX_COMMIT_METADATA_BYTES}",
                    o.topic,
                    o.partition,
                    o.metadata.len()
                )));
            }
            let count = match counts.get(o.topic.as_str()) {
                Some(c) => *c,
                None => {
                    let c = self
                        .registry
                        .topic(&o.topic)
                        .map_err(|_| GroupError::UnknownTopic(o.topic.clone()))?
                        .partition_count();
                    counts.insert(&o.topic, c);
                    c
                }
            };
            if o.partition >= count {
                return Err(GroupError::UnknownPartition {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    count,
                });
            }
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let timestamp = now_ms();
        let group = group_id.to_string();
        let prepared = Prepared {
            records: offsets
                .iter()
                .map(|o| {
                    let value = OffsetValue {
                        offset: o.offset,
                        commit_timestamp_ms: timestamp,
                        metadata: o.metadata.clone(),
                    };
                    (
                        records::offset_key(group_id, &o.topic, o.partition),
                        Some(records::offset_value(&value)),
                    )
                })
                .collect(),
            pending: offsets
                .into_iter()
                .map(|o| (group.clone(), o.topic, o.partition))
                .collect(),
            committed_at: Some((group.clone(), now)),
        };
        let member = member
            .filter(|(id, _)| !id.is_empty())
            .map(|(id, epoch)| (id.to_string(), epoch));
        let max_groups = self.config.max_groups;
        let group_count = self.group_count.clone();
        self.shard(group_id)
            .write(move |st| {
                let e = st.groups.get(&group);
                match (&member, e) {
                    (Some((member_id, epoch)), e) => {
                        let current = e.and_then(|e| e.group.member_epoch(member_id));
                        match current {
                            None => {
                                return Err(GroupError::UnknownMember {
                                    group_id: group,
                                    member_id: member_id.clone(),
                                });
                            }
                            Some(current) if current != *epoch => {
                                return Err(GroupError::StaleEpoch {
                                    group_id: group,
                                    member_id: member_id.clone(),
                                    given: *epoch,
                                    current,
                                });
                            }
                            Some(_) => {}
                        }
                    }
                    (None, Some(e)) if e.group.member_count() > 0 => {
                        return Err(GroupError::GroupNotEmpty {
                            members: e.group.member_count(),
                            group_id: group,
                            operation: "committing without a member id",
                        });
                    }
                    (None, None) if group_count.load(Ordering::Relaxed) >= max_groups => {
                        return Err(GroupError::TooManyGroups { max: max_groups });
                    }
                    (None, _) => {}
                }
                Ok(prepared)
            })
            .await?;
        Ok(())
    }

    /// The committed offsets of `group_id`: of the partitions asked for (an offset of
    /// `None` where there is none), or every partition it has an offset for. A group that
    /// does not exist has no offsets (not an error: a new consumer asks before its first
    /// commit).
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, u32)>>,
    ) -> Result<Vec<CommittedOffset>, GroupError> {
        validate_group_id(group_id)?;
        let st = self.shard(group_id).state();
        let offsets = st.groups.get(group_id).map(|e| &e.offsets);
        let found = |topic: &str, partition: u32| -> CommittedOffset {
            match offsets
                .and_then(|o| o.get(topic))
                .and_then(|p| p.get(&partition))
            {
                Some(s) => CommittedOffset {
                    topic: topic.to_string(),
                    partition,
                    offset: Some(s.offset),
                    metadata: s.metadata.clone(),
                    commit_timestamp_ms: Some(s.commit_timestamp_ms),
                },
                None => CommittedOffset {
                    topic: topic.to_string(),
                    partition,
                    offset: None,
                    metadata: String::new(),
                    commit_timestamp_ms: None,
                },
            }
        };
        Ok(match partitions {
            Some(list) => {
                let list: BTreeSet<(String, u32)> = list.into_iter().collect();
                list.iter().map(|(t, p)| found(t, *p)).collect()
            }
            None => offsets
                .into_iter()
                .flatten()
                .flat_map(|(t, parts)| parts.keys().map(move |p| (t, *p)))
                .map(|(t, p)| found(t, p))
                .collect(),
        })
    }

    /// Every group, by id.
    pub fn list_groups(&self) -> Vec<GroupSummary> {
        let mut out: Vec<GroupSummary> = self
            .shards
            .iter()
            .flat_map(|shard| {
                shard
                    .state()
                    .groups
                    .iter()
                    .map(|(id, e)| GroupSummary {
                        group_id: id.clone(),
                        state: e.state(),
                        members: e.group.member_count(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// A group's state, members, and the progress of every partition it subscribes to or
    /// has an offset for.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription, GroupError> {
        validate_group_id(group_id)?;
        let (mut description, committed, partitions, owners) = {
            let st = self.shard(group_id).state();
            let e = st
                .groups
                .get(group_id)
                .ok_or_else(|| GroupError::UnknownGroup(group_id.to_string()))?;
            let committed: BTreeMap<(String, u32), i64> = e
                .offsets
                .iter()
                .flat_map(|(t, parts)| parts.iter().map(move |(p, s)| ((t.clone(), *p), s.offset)))
                .collect();
            let mut partitions: BTreeSet<(String, u32)> = e
                .group
                .subscribed_partitions()
                .map(|(t, p)| (t.to_string(), p))
                .collect();
            partitions.extend(committed.keys().cloned());
            let owners: HashMap<(String, u32), String> = e
                .group
                .owners()
                .map(|((t, p), m)| ((t.to_string(), *p), m.to_string()))
                .collect();
            let description = GroupDescription {
                group_id: group_id.to_string(),
                state: e.state(),
                group_epoch: e.group.epoch(),
                assignor: e.group.assignor().name().to_string(),
                members: e.group.describe_members(),
                offsets: Vec::new(),
                coordinator_partition: self.coordinator_partition(group_id),
            };
            (description, committed, partitions, owners)
        };
        for (topic, partition) in partitions {
            let committed_offset = committed.get(&(topic.clone(), partition)).copied();
            let log = match self
                .registry
                .topic(&topic)
                .and_then(|t| t.partition(partition))
            {
                Ok(p) => p.offsets().await.ok(),
                Err(_) => None,
            };
            let high_watermark = log.map(|o| o.high_watermark);
            let lag = log.map(|o| {
                (o.high_watermark - committed_offset.unwrap_or(o.log_start_offset)).max(0)
            });
            let member_id = owners.get(&(topic.clone(), partition)).cloned();
            description.offsets.push(PartitionProgress {
                topic,
                partition,
                committed_offset,
                high_watermark,
                lag,
                member_id,
            });
        }
        Ok(description)
    }

    /// Deletes a group without members and its committed offsets (tombstones in
    /// `__consumer_offsets`).
    pub async fn delete_group(&self, group_id: &str) -> Result<(), GroupError> {
        validate_group_id(group_id)?;
        let group = group_id.to_string();
        let check = move |st: &ShardState| {
            let e = st
                .groups
                .get(&group)
                .ok_or_else(|| GroupError::UnknownGroup(group.clone()))?;
            if e.group.member_count() > 0 {
                return Err(GroupError::GroupNotEmpty {
                    members: e.group.member_count(),
                    group_id: group,
                    operation: "deleting a group",
                });
            }
            Ok(true)
        };
        delete_group_records(self.shard(group_id), group_id, check).await?;
        tracing::info!(group = group_id, "group deleted");
        Ok(())
    }

    /// Moves the committed offsets of a group without members, clamped to each
    /// partition's `[log start, high watermark]`. A topic with `None` (or no partitions
    /// listed) means all of its partitions. With `dry_run`, only computes the plan.
    pub async fn reset_offsets(
        &self,
        group_id: &str,
        targets: Vec<(String, Option<Vec<u32>>)>,
        spec: ResetSpec,
        dry_run: bool,
    ) -> Result<Vec<OffsetReset>, GroupError> {
        validate_group_id(group_id)?;
        if targets.is_empty() {
            return Err(GroupError::InvalidRequest(
                "name at least one topic to reset".to_string(),
            ));
        }
        let not_empty = |members| GroupError::GroupNotEmpty {
            group_id: group_id.to_string(),
            members,
            operation: "resetting offsets",
        };
        let mut partitions: BTreeSet<(String, u32)> = BTreeSet::new();
        let mut handles = HashMap::new();
        for (topic_name, list) in targets {
            let topic = self
                .registry
                .topic(&topic_name)
                .map_err(|_| GroupError::UnknownTopic(topic_name.clone()))?;
            let count = topic.partition_count();
            let list = match list {
                Some(l) if !l.is_empty() => l,
                _ => (0..count).collect(),
            };
            for p in list {
                let partition = topic
                    .partition(p)
                    .map_err(|_| GroupError::UnknownPartition {
                        topic: topic_name.clone(),
                        partition: p,
                        count,
                    })?;
                handles.insert((topic_name.clone(), p), partition);
                partitions.insert((topic_name.clone(), p));
            }
        }
        let members = self
            .shard(group_id)
            .state()
            .groups
            .get(group_id)
            .map_or(0, |e| e.group.member_count());
        if members > 0 {
            return Err(not_empty(members));
        }
        let current: HashMap<(String, u32), i64> = self
            .fetch_offsets(group_id, Some(partitions.iter().cloned().collect()))
            .await?
            .into_iter()
            .filter_map(|c| c.offset.map(|o| ((c.topic, c.partition), o)))
            .collect();
        let mut plan = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let handle = &handles[&(topic.clone(), partition)];
            let offsets = handle.offsets().await?;
            let (start, end) = (offsets.log_start_offset, offsets.high_watermark);
            let previous = current.get(&(topic.clone(), partition)).copied();
            let wanted = match spec {
                ResetSpec::Earliest => start,
                ResetSpec::Latest => end,
                ResetSpec::Offset(o) => o,
                ResetSpec::Timestamp(ts) => handle.offset_for_timestamp(ts).await?.unwrap_or(end),
                ResetSpec::ShiftBy(n) => previous.unwrap_or(start).saturating_add(n),
            };
            plan.push(OffsetReset {
                topic,
                partition,
                previous,
                new: wanted.clamp(start, end.max(start)),
            });
        }
        if !dry_run {
            let commits = plan
                .iter()
                .map(|r| OffsetCommit {
                    topic: r.topic.clone(),
                    partition: r.partition,
                    offset: r.new,
                    metadata: String::new(),
                })
                .collect();
            self.commit_offsets(group_id, None, commits)
                .await
                .map_err(|e| match e {
                    GroupError::GroupNotEmpty { members, .. } => not_empty(members),
                    e => e,
                })?;
        }
        Ok(plan)
    }

    /// Counters of every group, by id.
    pub fn metrics(&self) -> Vec<GroupMetrics> {
        let mut out: Vec<GroupMetrics> = self
            .shards
            .iter()
            .flat_map(|shard| {
                shard
                    .state()
                    .groups
                    .iter()
                    .map(|(id, e)| GroupMetrics {
                        group_id: id.clone(),
                        state: e.state(),
                        members: e.group.member_count(),
                        group_epoch: e.group.epoch(),
                        rebalances: e.group.rebalances(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// The lag of every committed partition of every group (high watermark minus
    /// committed offset), for metrics scrapes: no I/O, no awaits. Partitions of deleted
    /// topics are left out.
    pub fn lags(&self) -> Vec<PartitionLag> {
        let mut committed = Vec::new();
        for shard in &self.shards {
            let st = shard.state();
            for (group_id, e) in &st.groups {
                for (topic, parts) in &e.offsets {
                    for (partition, s) in parts {
                        committed.push((group_id.clone(), topic.clone(), *partition, s.offset));
                    }
                }
            }
        }
        committed.sort();
        committed
            .into_iter()
            .filter_map(|(group_id, topic, partition, offset)| {
                let hw = self
                    .registry
                    .topic(&topic)
                    .and_then(|t| t.partition(partition))
                    .ok()?
                    .high_watermark();
                Some(PartitionLag {
                    group_id,
                    topic,
                    partition,
                    committed_offset: offset,
                    high_watermark: hw,
                    lag: (hw - offset).max(0),
                })
            })
            .collect()
    }

    /// Number of groups.
    pub fn group_count(&self) -> usize {
        self.group_count.load(Ordering::Relaxed)
    }

    /// How long a heartbeat answer tells a settled member to wait, for callers that
    /// need it without a heartbeat.
    pub fn heartbeat_interval(&self) -> Duration {
        self.config.heartbeat_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(st: &mut ShardState, count: &AtomicUsize, offset: i64, committed: i64) {
        let key = records::offset_key("g", "t", 0);
        let value = records::offset_value(&OffsetValue {
            offset: committed,
            commit_timestamp_ms: 1,
            metadata: String::new(),
        });
        apply_record(st, &key, Some(&value), offset, count).unwrap();
    }

    fn committed(st: &ShardState) -> Option<i64> {
        st.groups
            .get("g")
            .and_then(|e| e.offsets.get("t"))
            .and_then(|p| p.get(&0))
            .map(|s| s.offset)
    }

    #[test]
    fn records_applied_out_of_order_keep_the_newest_in_the_log() {
        let count = AtomicUsize::new(0);
        let mut st = ShardState::default();
        // Acknowledgements can arrive out of log order: the record at 10 wins over 5.
        commit(&mut st, &count, 10, 100);
        commit(&mut st, &count, 5, 50);
        assert_eq!(committed(&st), Some(100));
        // A tombstone older than the value leaves it.
        let key = records::offset_key("g", "t", 0);
        apply_record(&mut st, &key, None, 7, &count).unwrap();
        assert_eq!(committed(&st), Some(100));
        // A group tombstone at 20 removes what came before it...
        apply_record(&mut st, &records::group_key("g"), None, 20, &count).unwrap();
        assert_eq!(committed(&st), None);
        assert_eq!(count.load(Ordering::Relaxed), 0);
        // ...and an older commit acknowledged after it does not bring the group back,
        commit(&mut st, &count, 15, 150);
        assert_eq!(committed(&st), None);
        // while a newer one does.
        commit(&mut st, &count, 25, 250);
        assert_eq!(committed(&st), Some(250));
        assert_eq!(count.load(Ordering::Relaxed), 1);
        // Group records never lower the epoch.
        let group = |epoch| {
            records::group_value(&GroupValue {
                epoch,
                assignor: "range".into(),
            })
        };
        apply_record(
            &mut st,
            &records::group_key("g"),
            Some(&group(7)),
            30,
            &count,
        )
        .unwrap();
        apply_record(
            &mut st,
            &records::group_key("g"),
            Some(&group(3)),
            31,
            &count,
        )
        .unwrap();
        let g = &st.groups["g"].group;
        assert_eq!((g.epoch(), g.assignor()), (7, Assignor::Range));
        // Unknown key types are skipped; malformed values are errors.
        apply_record(&mut st, &[0, 77], None, 32, &count).unwrap();
        assert!(
            apply_record(&mut st, &records::group_key("g"), Some(&[0, 1]), 33, &count).is_err()
        );
    }
}
