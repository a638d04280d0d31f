//! The group coordinator: the async API the broker calls for consumer groups (membership
//! heartbeats, offset commits and fetches here; expiry in `expiry.rs`, administration in
//! `admin.rs`), over shards (`shard.rs`) that hold the groups of each
//! `__consumer_offsets` partition this broker leads.
//!
//! Group `g` lives in shard [`partition_for_group`]`(g)`, whose partition holds its
//! records, and is served by the broker that leads that partition: its coordinator. The
//! coordinator follows leadership ([`GroupCoordinator::follow_leadership`], run on every
//! metadata change and every [`LEADERSHIP_CHECK_INTERVAL`]): a shard is loaded when this
//! broker becomes the partition's leader (replay, then serve) and dropped when it stops
//! leading. A request for a group whose shard is elsewhere gets
//! [`GroupError::NotCoordinator`] naming the leader; one that arrives while the shard
//! loads gets [`GroupError::CoordinatorLoading`]. Both are retriable; clients find the
//! coordinator with FindCoordinator ([`find_coordinator`]).
//!
//! What a new coordinator needs so that members go on without rejoining is in the log:
//! committed offsets, group records (epoch, assignor) and member records (epochs,
//! subscriptions, current and target assignments), as KIP-848 keeps them. A group's own
//! settings (Kafka's group configs) are in the metadata log instead
//! (`crate::controller::group_configs`), which every broker has: each heartbeat reads
//! them from the current metadata image, so members follow a change at their next one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::assignor::{Assignment, Assignor};
use super::records::{self, OffsetValue};
use super::shard::{
    LoadContext, Prepared, Scope, Shard, StoredOffset, admit_commit, entry, now_ms,
};
use super::state::{MemberRequest, Subscription, TopicRegex, TopicsSnapshot};
use super::{
    CommittedOffset, GroupConfig, GroupError, Heartbeat, HeartbeatOutcome,
    LEADERSHIP_CHECK_INTERVAL, MAX_CACHED_REGEXES, MAX_COMMIT_METADATA_BYTES, MAX_MEMBER_ID_CHARS,
    MAX_OFFSETS_PER_COMMIT, MAX_OWNED_PARTITIONS, MAX_REGEX_BYTES, MAX_REGEX_COMPILED_BYTES,
    MAX_SUBSCRIBED_TOPICS, OFFSETS_REPLICATION_FACTOR, OFFSETS_SEGMENT_BYTES, OFFSETS_TOPIC,
    OPEN_LOAD_WAIT, OffsetCommit, find_coordinator, partition_for_group, validate_group_id,
};
use crate::controller::group_configs;
use crate::internal_topic::{self, InternalTopic, LeaderSlots};
use crate::registry::TopicRegistry;
use crate::replication::BoxFuture;
use crate::topic_name::validate_topic_name;
use weir_coordinator::group::GroupError as MachineError;

/// Most transaction markers kept per `__consumer_offsets` partition while its shard
/// loads (a load takes a second or so; a transaction ends with one marker there).
const MAX_LATE_MARKERS: usize = 10_000;

/// A transaction marker written while its partition's shard was loading.
#[derive(Debug, Clone, Copy)]
struct LateMarker {
    producer_id: i64,
    commit: bool,
    offset: i64,
}

/// The consumer group coordinator. Cheap to share: use it as `Arc<GroupCoordinator>`.
#[derive(Debug)]
pub struct GroupCoordinator {
    pub(super) registry: Arc<TopicRegistry>,
    pub(super) config: GroupConfig,
    /// One slot per `__consumer_offsets` partition: its shard while this broker leads
    /// the partition and has loaded it.
    slots: LeaderSlots<Shard>,
    /// Per `__consumer_offsets` partition, the transaction markers written there while
    /// no shard of it was loaded here (during a load, before its shard is in its slot):
    /// applied by the next shard to serve, those it did not replay ([`Self::slot`]).
    late_markers: Vec<Mutex<Vec<LateMarker>>>,
    topics: Mutex<Arc<TopicsSnapshot>>,
    /// Registry version whose topic changes every group has seen.
    pub(super) refreshed_version: AtomicU64,
    regexes: Mutex<HashMap<String, Arc<TopicRegex>>>,
}

impl GroupCoordinator {
    /// Opens the coordinator: creates `__consumer_offsets` if missing (compacted,
    /// `config.offsets_partitions` partitions; an existing topic keeps its count) and
    /// loads the shards of the partitions this broker leads (waiting at most
    /// [`OPEN_LOAD_WAIT`] for them). Call [`spawn_expiry`](Self::spawn_expiry) to keep
    /// following leadership and expiring sessions.
    ///
    /// Boxed, as the other entry points the broker process awaits once: the tasks it
    /// spawns are compiled in this crate rather than in each crate that awaits it
    /// (docs/ARCHITECTURE.md § Build time).
    pub fn open(
        registry: Arc<TopicRegistry>,
        config: GroupConfig,
    ) -> BoxFuture<'static, Result<Arc<GroupCoordinator>, GroupError>> {
        Box::pin(Self::open_shards(registry, config))
    }

    async fn open_shards(
        registry: Arc<TopicRegistry>,
        config: GroupConfig,
    ) -> Result<Arc<GroupCoordinator>, GroupError> {
        config.validate()?;
        let spec = InternalTopic {
            name: OFFSETS_TOPIC,
            partitions: config.offsets_partitions,
            replication_factor: OFFSETS_REPLICATION_FACTOR,
            segment_bytes: OFFSETS_SEGMENT_BYTES,
        };
        let topic = internal_topic::ensure(&registry, spec, OPEN_LOAD_WAIT).await?;
        if topic.partition_count() != config.offsets_partitions {
            tracing::warn!(
                existing = topic.partition_count(),
                configured = config.offsets_partitions,
                "{OFFSETS_TOPIC} keeps its partition count (groups hash to existing partitions)"
            );
        }
        let coordinator = Arc::new(GroupCoordinator {
            registry,
            config,
            slots: LeaderSlots::new(OFFSETS_TOPIC, topic.partition_count()),
            late_markers: (0..topic.partition_count())
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            topics: Mutex::new(Arc::new(TopicsSnapshot {
                version: 0,
                partitions: BTreeMap::new(),
            })),
            refreshed_version: AtomicU64::new(0),
            regexes: Mutex::new(HashMap::new()),
        });
        let deadline = Instant::now() + OPEN_LOAD_WAIT;
        loop {
            let waiting = coordinator.follow_leadership().await?;
            if waiting == 0 || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(LEADERSHIP_CHECK_INTERVAL / 10).await;
        }
        tracing::info!(
            groups = coordinator.group_count(),
            shards = coordinator.loaded().len(),
            partitions = coordinator.slots.len(),
            "group coordinator open"
        );
        Ok(coordinator)
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The `__consumer_offsets` partition coordinating `group_id` (Kafka's rule:
    /// `abs(String.hashCode(group_id)) % partitions`).
    pub fn coordinator_partition(&self, group_id: &str) -> u32 {
        partition_for_group(group_id, self.slots.len())
    }

    /// The shards loaded here (each with its `__consumer_offsets` partition index).
    pub(super) fn loaded(&self) -> Vec<Arc<Shard>> {
        (0..self.slots.len()).filter_map(|p| self.slot(p)).collect()
    }

    /// The shard of `__consumer_offsets` partition `partition` if loaded here, with the
    /// markers written there while it loaded applied first: every way to a shard comes
    /// through here, so none answers before it has them.
    fn slot(&self, partition: u32) -> Option<Arc<Shard>> {
        let shard = self.slots.get(partition)?;
        // Held while they are applied: another caller waits rather than answer without.
        let mut late = self.late_markers[partition as usize]
            .lock()
            .expect("late markers lock");
        if !late.is_empty() {
            late.sort_by_key(|m| m.offset);
            for m in late.drain(..) {
                if m.offset >= shard.replayed_to {
                    shard.txn_marker(m.producer_id, m.commit, m.offset);
                }
            }
        }
        drop(late);
        Some(shard)
    }

    /// The shard of `group_id`, if this broker coordinates it now; else
    /// `NotCoordinator` naming the broker that does, or `CoordinatorLoading`.
    pub(super) fn shard(&self, group_id: &str) -> Result<Arc<Shard>, GroupError> {
        let partition = self.coordinator_partition(group_id);
        if let Some(shard) = self.slot(partition) {
            return Ok(shard);
        }
        let (_, coordinator) = find_coordinator(&self.registry, group_id)?;
        if coordinator == self.registry.broker_id() {
            Err(GroupError::CoordinatorLoading { partition })
        } else {
            Err(GroupError::NotCoordinator {
                partition,
                coordinator,
            })
        }
    }

    /// Loads the shards of the `__consumer_offsets` partitions this broker now leads and
    /// drops those it no longer leads (or whose membership write failed, to load them
    /// again from the log). Returns how many partitions it leads but could not load yet
    /// (their high watermark has not reached the log end); they are tried again on the
    /// next call.
    pub async fn follow_leadership(&self) -> Result<usize, GroupError> {
        let topic = self.registry.topic(OFFSETS_TOPIC)?;
        let topics = self.topics_snapshot();
        let compile = |source: &str| self.compile_regex(source);
        let image = self.registry.cluster().image();
        let overrides = |group: &str| group_configs::group_overrides(&image, group);
        let cx = LoadContext {
            topics: &topics,
            config: &self.config,
            overrides: &overrides,
            compile: &compile,
        };
        let me = self.registry.broker_id();
        Ok(self
            .slots
            .follow(&topic, me, |index, partition, epoch| {
                Shard::load(index, partition, epoch, &cx)
            })
            .await)
    }

    /// The id of every topic, by name: committed offsets of a topic count only while
    /// they carry its current id.
    pub(super) fn topic_ids(&self) -> HashMap<String, String> {
        self.registry
            .topics()
            .iter()
            .map(|t| (t.name.clone(), t.topic_id.clone()))
            .collect()
    }

    /// The topics as of the registry's current metadata version.
    pub(super) fn topics_snapshot(&self) -> Arc<TopicsSnapshot> {
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

    fn compile_regex(&self, source: &str) -> Result<Arc<TopicRegex>, MachineError> {
        let invalid = |reason: String| MachineError::InvalidRegex {
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
        if let Some(why) = super::client_fields_too_long(&req.client_id, &req.client_host) {
            return invalid(why);
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
        // The member id generator: a joining member without an id gets a UUID here, so
        // the state machine never draws one itself.
        let member_id = if req.member_epoch == 0 && req.member_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            req.member_id
        };
        Ok(MemberRequest {
            member_id,
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
        let owned_unchanged = req.owned_unchanged && req.member_epoch > 0;
        let mut request = self.member_request(req)?;
        let topics = self.topics_snapshot();
        let shard = self.shard(&group_id)?;
        // The group's own settings (its configs, as the metadata has them now) in place
        // of the coordinator's; read before the shard's lock is taken.
        let config = self.group_overrides(&group_id)?.apply(&self.config);
        // Counted before the shard's lock is taken (counting takes every shard's lock); a
        // limit checked without a global lock may be passed by concurrent creations.
        let at_limit = self.group_count() >= self.config.max_groups;
        let result = {
            let mut st = shard.state();
            let created = !st.groups.contains_key(&group_id);
            if created {
                match request.member_epoch {
                    0 => {
                        if at_limit {
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
            if let Some(e) = st.groups.get(&group_id)
                && e.classic.is_active()
                && request.member_epoch != -1
            {
                return Err(GroupError::InconsistentGroupProtocol {
                    group_id,
                    reason: format!(
                        "it runs the classic protocol (JoinGroup and SyncGroup, {} member(s)); a \
                         group runs one protocol at a time, so join with the classic protocol \
                         or use another group id",
                        e.classic.member_count()
                    ),
                });
            }
            let result = {
                let e = entry(&mut st, &group_id);
                if owned_unchanged && let Some(held) = e.group.held(&request.member_id) {
                    request.owned = held;
                }
                let members_before = e.group.member_count();
                let result = e.group.heartbeat(request, &topics, now, &config);
                if result.as_ref().is_ok_and(|r| r.joined) {
                    e.deleting = false;
                }
                if members_before > 0 && e.member_count() == 0 {
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
                }
                Err(_) => {}
            }
            result?
        };
        // The answer goes out once what it tells the member is in the log, so a
        // coordinator that takes over knows it too.
        let scope = if result.bumped {
            Scope::All
        } else {
            Scope::Member(result.outcome.member_id.clone())
        };
        shard.persist(&group_id, scope).await?;
        Ok(result.outcome)
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
        self.commit(group_id, member, offsets, now, None).await
    }

    /// Commits offsets for `group_id` as part of the transaction of `producer` (id,
    /// epoch): Kafka's TxnOffsetCommit. They are written, durably, as one transactional
    /// batch of that producer to the group's `__consumer_offsets` partition (which
    /// AddOffsetsToTxn added to the transaction) and become the group's committed
    /// offsets only when the producer's commit marker reaches that partition
    /// ([`txn_marker`](Self::txn_marker)); an abort marker drops them. `member` is
    /// checked as for a plain commit when given (librdkafka and the Java client send the
    /// consumer's member id and generation); without one the commit is taken whatever
    /// the group's members, as Kafka takes it.
    pub async fn commit_txn_offsets(
        &self,
        group_id: &str,
        producer: (i64, i16),
        member: Option<(&str, i32)>,
        offsets: Vec<OffsetCommit>,
    ) -> Result<(), GroupError> {
        if producer.0 < 0 || producer.1 < 0 {
            return Err(GroupError::InvalidRequest(format!(
                "a transactional offset commit needs a producer id and epoch, got {} and {}",
                producer.0, producer.1
            )));
        }
        self.commit(group_id, member, offsets, Instant::now(), Some(producer))
            .await
    }

    /// The marker of `producer_id`'s transaction was written (durably) at `offset` of
    /// `__consumer_offsets` partition `partition`, which this broker leads: the pending
    /// transactional offsets of that producer there become committed offsets (`commit`)
    /// or are dropped. Written while the partition's shard loads, past what its load
    /// replays, it is kept until that shard serves ([`Self::slot`]); before, such a
    /// marker reached neither the load nor the shard, and the producer's offsets stayed
    /// pending until the partition loaded again.
    pub fn txn_marker(&self, partition: u32, producer_id: i64, commit: bool, offset: i64) {
        if partition >= self.slots.len() {
            return;
        }
        if let Some(shard) = self.slot(partition) {
            // Below what its load replayed, the load applied it already.
            if offset >= shard.replayed_to {
                shard.txn_marker(producer_id, commit, offset);
            }
            return;
        }
        let mut late = self.late_markers[partition as usize]
            .lock()
            .expect("late markers lock");
        if late.len() >= MAX_LATE_MARKERS {
            tracing::warn!(
                partition,
                "too many transaction markers written while this {OFFSETS_TOPIC} partition \
                 loads; the oldest is dropped (its producer's offsets stay pending until the \
                 partition loads again)"
            );
            late.remove(0);
        }
        late.push(LateMarker {
            producer_id,
            commit,
            offset,
        });
        drop(late);
        // The shard may have come in its slot meanwhile: it applies what waits now.
        let _ = self.slot(partition);
    }

    /// A commit, of the transaction of `txn` (producer id, epoch) if given.
    async fn commit(
        &self,
        group_id: &str,
        member: Option<(&str, i32)>,
        offsets: Vec<OffsetCommit>,
        now: Instant,
        txn: Option<(i64, i16)>,
    ) -> Result<(), GroupError> {
        validate_group_id(group_id)?;
        if offsets.len() > MAX_OFFSETS_PER_COMMIT {
            return Err(GroupError::InvalidRequest(format!(
                "{} offsets in one commit; the limit is {MAX_OFFSETS_PER_COMMIT}",
                offsets.len()
            )));
        }
        let mut topics: HashMap<&str, (u32, String)> = HashMap::new();
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
            let count = match topics.get(o.topic.as_str()) {
                Some((c, _)) => *c,
                None => {
                    let t = self
                        .registry
                        .topic(&o.topic)
                        .map_err(|_| GroupError::UnknownTopic(o.topic.clone()))?;
                    let c = t.partition_count();
                    topics.insert(&o.topic, (c, t.topic_id.clone()));
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
                        topic_id: topics
                            .get(o.topic.as_str())
                            .map(|(_, id)| id.clone())
                            .unwrap_or_default(),
                        leader_epoch: o.leader_epoch.filter(|e| *e >= 0).unwrap_or(-1),
                    };
                    (
                        records::offset_key(group_id, &o.topic, o.partition),
                        Some(records::offset_value(&value)),
                    )
                })
                .collect(),
            // A deletion meanwhile need not tombstone transactional offsets: its group
            // tombstone drops them from the pending ones.
            pending: match txn {
                Some(_) => Vec::new(),
                None => offsets
                    .into_iter()
                    .map(|o| (group.clone(), o.topic, o.partition))
                    .collect(),
            },
            committed_at: Some((group.clone(), now)),
            membership_seq: None,
            txn,
        };
        let member = member
            .filter(|(id, _)| !id.is_empty())
            .map(|(id, epoch)| (id.to_string(), epoch));
        let max_groups = self.config.max_groups;
        let at_limit = self.group_count() >= max_groups;
        self.shard(group_id)?
            .write(move |st| {
                let member = member.as_ref().map(|(id, epoch)| (id.as_str(), *epoch));
                let full = at_limit.then_some(max_groups);
                match (txn, member) {
                    // Kafka takes a transactional commit without a member whatever the
                    // group's members; only the group limit applies.
                    (Some(_), None) => {
                        admit_commit(st, &group, None, now, full).or_else(|e| match e {
                            weir_coordinator::group::GroupError::GroupNotEmpty { .. } => Ok(()),
                            e => Err(e),
                        })?
                    }
                    _ => admit_commit(st, &group, member, now, full)?,
                }
                Ok(prepared)
            })
            .await?;
        Ok(())
    }

    /// The committed offsets of `group_id`: of the partitions asked for (an offset of
    /// `None` where there is none), or every partition it has an offset for; each says
    /// whether a transaction has an offset pending for it. A group that does not exist
    /// has no offsets (not an error: a new consumer asks before its first commit).
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, u32)>>,
    ) -> Result<Vec<CommittedOffset>, GroupError> {
        validate_group_id(group_id)?;
        let ids = self.topic_ids();
        let shard = self.shard(group_id)?;
        let st = shard.state();
        let offsets = st.groups.get(group_id).map(|e| &e.offsets);
        let found = |topic: &str, partition: u32| -> CommittedOffset {
            let current = |s: &&StoredOffset| ids.get(topic).is_some_and(|id| s.is_for(id));
            let pending = st.has_pending_txn_offset(group_id, topic, partition);
            match offsets
                .and_then(|o| o.get(topic))
                .and_then(|p| p.get(&partition))
                .filter(current)
            {
                Some(s) => CommittedOffset {
                    topic: topic.to_string(),
                    partition,
                    offset: Some(s.offset),
                    metadata: s.metadata.clone(),
                    leader_epoch: (s.leader_epoch >= 0).then_some(s.leader_epoch),
                    commit_timestamp_ms: Some(s.commit_timestamp_ms),
                    pending,
                },
                None => CommittedOffset {
                    topic: topic.to_string(),
                    partition,
                    offset: None,
                    metadata: String::new(),
                    leader_epoch: None,
                    commit_timestamp_ms: None,
                    pending,
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
                // Offsets of a deleted topic, or of its namesake's earlier incarnation.
                .filter(|c| c.offset.is_some())
                .collect(),
        })
    }
}
