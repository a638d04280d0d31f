//! The share coordinator: the async API the broker calls for share groups (share fetch,
//! acknowledge, describe), over shards (`shard.rs`) that hold the share groups of each
//! `__share_group_state` partition this broker leads.
//!
//! Share group `g` lives in the `__share_group_state` partition `g` hashes to (Kafka's
//! rule, as for consumer groups) and is served by that partition's leader, its
//! coordinator, which runs every share-partition of the group: it reads the data
//! partitions from its own replicas (`reader.rs`) and writes the windows' state to its
//! partition. So every state write is a local append fenced by that partition's leader
//! epoch, the mechanism consumer groups already rely on; docs/queues.md § Where the state
//! lives says why this and not the data partition's leader.
//!
//! A request is answered only after the state it changed is durable (acks=all, fsynced):
//! an acknowledged ACCEPT is never lost, and a delivery count a fetch answered with is
//! never forgotten. The coordinator follows leadership as the group coordinator does: a
//! request for a group whose shard is elsewhere gets [`ShareError::NotCoordinator`], one
//! that arrives while the shard loads [`ShareError::CoordinatorLoading`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::select_all;
use tokio::sync::watch;
use tokio::time::Instant;
use weir_log::DecodedRecord;

use super::dead_letter::{
    DeadLetterSink, DeadLetterTarget, MAX_DEAD_LETTERS_PER_PASS, dead_letter_copy,
};
use super::partition::{AckKind, ShareConfig, WindowCounts};
use super::reader::{self, DataSource, data_partition};
use super::remote::RemoteLog;
use super::settings::{GroupSettings, RecordKey};
use super::shard::{ShareGroup, ShareShard, Windows};
use super::{
    DEFAULT_SHARE_FETCH_RECORDS, MAX_ACK_ENTRIES, MAX_EXPIRED_PER_PASS, MAX_SHARE_FETCH_RECORDS,
    MAX_SHARE_FETCH_TOPICS, MAX_SHARE_FETCH_WAIT, SHARE_LEADERSHIP_CHECK_INTERVAL,
    SHARE_OPEN_LOAD_WAIT, SHARE_STATE_REPLICATION_FACTOR, SHARE_STATE_SEGMENT_BYTES,
    SHARE_STATE_TOPIC, SHARE_SWEEP_INTERVAL, ShareError, ShareGroupConfig, validate_group_id,
};
use crate::group::{MAX_MEMBER_ID_CHARS, partition_for_group};
use crate::internal_topic::{self, InternalTopic, LeaderSlots, wall_clock_ms};
use crate::partition::BrokerId;
use crate::registry::TopicRegistry;
use crate::replication::BoxFuture;
pub use weir_coordinator::share::ShareStart;

mod acks;
mod acquire;
mod sweep;

use acks::too_many_acks;

/// Longest a waiting share fetch goes without looking at the windows again when it reads
/// a partition this broker only follows (a follower's high watermark has no wake-up).
const FOLLOWER_RECHECK: Duration = Duration::from_millis(100);
/// How long a group waits after a dead-letter copy failed before it tries again.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(1);

/// A member's acknowledgement of offsets `first..=last` of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRange {
    pub topic: String,
    pub partition: u32,
    pub first: i64,
    pub last: i64,
    pub kind: AckKind,
}

/// What became of one [`AckRange`].
#[derive(Debug)]
pub struct AckResult {
    pub range: AckRange,
    /// The offsets the member did not hold (the rest were applied), or why the whole
    /// range was refused (nothing in it applied).
    pub outcome: Result<Vec<i64>, ShareError>,
}

/// A share fetch: acknowledgements first, then acquisition.
#[derive(Debug, Clone)]
pub struct ShareFetch {
    pub group_id: String,
    pub member_id: String,
    pub topics: Vec<String>,
    /// When set, only these partitions of `topics` (Kafka's share consumers fetch each
    /// partition from its leader, one request per leader).
    pub partitions: Option<BTreeSet<(String, u32)>>,
    /// 0: [`DEFAULT_SHARE_FETCH_RECORDS`].
    pub max_records: usize,
    /// Capped at [`MAX_SHARE_FETCH_WAIT`].
    pub max_wait: Duration,
    pub start: ShareStart,
    pub acks: Vec<AckRange>,
}

/// A record acquired by a member.
#[derive(Debug, Clone)]
pub struct ShareRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub record: DecodedRecord,
    pub delivery_count: u16,
    pub lock_deadline_ms: u64,
}

/// The answer to a share fetch.
#[derive(Debug)]
pub struct ShareFetchAnswer {
    pub ack_results: Vec<AckResult>,
    pub records: Vec<ShareRecord>,
    /// How long the group locks an acquired record.
    pub lock_duration_ms: u64,
}

/// One share-partition as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartitionView {
    pub topic: String,
    pub partition: u32,
    pub start: i64,
    pub end: i64,
    /// -1 when this broker hosts no replica of the partition.
    pub high_watermark: i64,
    pub counts: WindowCounts,
    /// Age of the oldest unfinished record, by its timestamp.
    pub oldest_unfinished_age_ms: Option<i64>,
    /// Records the group's filter skipped since this coordinator took the window (a
    /// failover or restart counts from 0 again).
    pub filtered_out: u64,
}

/// The share coordinator. Cheap to share: use it as `Arc<ShareCoordinator>`.
#[derive(Debug)]
pub struct ShareCoordinator {
    registry: Arc<TopicRegistry>,
    config: ShareGroupConfig,
    slots: LeaderSlots<ShareShard>,
    /// Where dead-letter copies go; without one, groups cannot name a dead-letter topic.
    sink: Option<Arc<dyn DeadLetterSink>>,
    /// How partitions this broker hosts no replica of are read at their leaders; without
    /// one, a group cannot read them ([`ShareError::NotHosted`]).
    remote: Option<Arc<dyn RemoteLog>>,
}

/// A share group as `describe` shows it.
#[derive(Debug, Clone)]
pub struct ShareGroupView {
    /// What the group set for itself.
    pub settings: GroupSettings,
    /// The settings its share-partitions run with (the group's over the broker's).
    pub config: ShareConfig,
    pub partitions: Vec<SharePartitionView>,
}

/// The `__share_group_state` partition of `group_id` and its leader (-1: none), from this
/// broker's metadata: where a client sends the group's requests.
pub fn find_share_coordinator(
    registry: &TopicRegistry,
    group_id: &str,
) -> Result<(u32, BrokerId), ShareError> {
    validate_group_id(group_id)?;
    Ok(internal_topic::coordinator_of(
        registry,
        SHARE_STATE_TOPIC,
        group_id,
    )?)
}

fn validate_member_id(member_id: &str) -> Result<(), ShareError> {
    if member_id.is_empty() || member_id.len() > MAX_MEMBER_ID_CHARS {
        return Err(ShareError::InvalidRequest(format!(
            "a member id must be 1 to {MAX_MEMBER_ID_CHARS} bytes; this one is {}",
            member_id.len()
        )));
    }
    Ok(())
}

impl ShareCoordinator {
    /// Opens the coordinator: creates `__share_group_state` if missing and loads the
    /// shards of the partitions this broker leads (waiting at most
    /// [`SHARE_OPEN_LOAD_WAIT`]), then keeps following leadership until `shutdown`.
    /// Dead-letter copies go through `sink`; partitions this broker hosts no replica of
    /// are read at their leaders through `remote`.
    ///
    /// Boxed, as the other entry points the broker process awaits once: the tasks it
    /// spawns are compiled in this crate rather than in each crate that awaits it
    /// (docs/ARCHITECTURE.md § Build time).
    pub fn open(
        registry: Arc<TopicRegistry>,
        config: ShareGroupConfig,
        sink: Option<Arc<dyn DeadLetterSink>>,
        remote: Option<Arc<dyn RemoteLog>>,
        shutdown: watch::Receiver<bool>,
    ) -> BoxFuture<'static, Result<Arc<ShareCoordinator>, ShareError>> {
        Box::pin(Self::open_shards(registry, config, sink, remote, shutdown))
    }

    async fn open_shards(
        registry: Arc<TopicRegistry>,
        config: ShareGroupConfig,
        sink: Option<Arc<dyn DeadLetterSink>>,
        remote: Option<Arc<dyn RemoteLog>>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<ShareCoordinator>, ShareError> {
        config.validate()?;
        let spec = InternalTopic {
            name: SHARE_STATE_TOPIC,
            partitions: config.state_partitions,
            replication_factor: SHARE_STATE_REPLICATION_FACTOR,
            segment_bytes: SHARE_STATE_SEGMENT_BYTES,
        };
        let topic = internal_topic::ensure(&registry, spec, SHARE_OPEN_LOAD_WAIT).await?;
        let coordinator = Arc::new(ShareCoordinator {
            registry: registry.clone(),
            config,
            slots: LeaderSlots::new(SHARE_STATE_TOPIC, topic.partition_count()),
            sink,
            remote,
        });
        let deadline = Instant::now() + SHARE_OPEN_LOAD_WAIT;
        while coordinator.follow_leadership().await? > 0 && Instant::now() < deadline {
            tokio::time::sleep(SHARE_LEADERSHIP_CHECK_INTERVAL / 10).await;
        }
        tokio::spawn(sweep::sweep_loop(
            Arc::downgrade(&coordinator),
            shutdown.clone(),
        ));
        let this = coordinator.clone();
        internal_topic::spawn_following(
            registry,
            shutdown,
            SHARE_LEADERSHIP_CHECK_INTERVAL,
            SHARE_STATE_TOPIC,
            move || {
                let this = this.clone();
                async move { this.follow_leadership().await.map(|_| ()) }
            },
        );
        tracing::info!(
            shards = coordinator.slots.loaded().len(),
            partitions = coordinator.slots.len(),
            "share coordinator open"
        );
        Ok(coordinator)
    }

    pub fn config(&self) -> &ShareGroupConfig {
        &self.config
    }

    /// Loads the shards of the partitions this broker now leads and drops the others;
    /// returns how many it leads but could not load yet.
    pub async fn follow_leadership(&self) -> Result<usize, ShareError> {
        let topic = self.registry.topic(SHARE_STATE_TOPIC)?;
        let registry = &self.registry;
        Ok(self
            .slots
            .follow(&topic, registry.broker_id(), |index, partition, epoch| {
                ShareShard::load(index, partition, epoch, registry)
            })
            .await)
    }

    pub(super) fn registry(&self) -> &Arc<TopicRegistry> {
        &self.registry
    }

    /// Where the group reads `topic`/`partition`: this broker's replica, or its leader.
    pub(super) fn source(&self, topic: &str, partition: u32) -> Result<DataSource, ShareError> {
        data_partition(&self.registry, self.remote.as_ref(), topic, partition)
    }

    /// The shards this broker leads and has loaded.
    pub(super) fn loaded_shards(&self) -> Vec<Arc<ShareShard>> {
        self.slots.loaded()
    }

    /// The shard of `group_id`, if this broker coordinates it now.
    pub(super) fn shard(&self, group_id: &str) -> Result<Arc<ShareShard>, ShareError> {
        validate_group_id(group_id)?;
        let partition = partition_for_group(group_id, self.slots.len());
        if let Some(shard) = self.slots.get(partition) {
            return Ok(shard);
        }
        let (_, coordinator) = find_share_coordinator(&self.registry, group_id)?;
        if coordinator == self.registry.broker_id() {
            Err(ShareError::CoordinatorLoading { partition })
        } else {
            Err(ShareError::NotCoordinator {
                partition,
                coordinator,
            })
        }
    }

    /// Applies `fetch.acks`, then acquires up to `fetch.max_records` records of the
    /// requested topics for the member, waiting up to `fetch.max_wait` for any. Answers
    /// once what it changed is durable.
    pub async fn fetch(&self, mut fetch: ShareFetch) -> Result<ShareFetchAnswer, ShareError> {
        validate_member_id(&fetch.member_id)?;
        if fetch.topics.is_empty() || fetch.topics.len() > MAX_SHARE_FETCH_TOPICS {
            return Err(ShareError::InvalidRequest(format!(
                "a share fetch names 1 to {MAX_SHARE_FETCH_TOPICS} topics; this one names {}",
                fetch.topics.len()
            )));
        }
        if fetch.max_records > MAX_SHARE_FETCH_RECORDS {
            return Err(ShareError::InvalidRequest(format!(
                "a share fetch acquires at most {MAX_SHARE_FETCH_RECORDS} records; it asked for {}",
                fetch.max_records
            )));
        }
        if fetch.acks.len() > MAX_ACK_ENTRIES {
            return Err(too_many_acks(fetch.acks.len()));
        }
        let shard = self.shard(&fetch.group_id)?;
        let group = shard.group_or_new(&fetch.group_id)?;
        let max_records = match fetch.max_records {
            0 => DEFAULT_SHARE_FETCH_RECORDS,
            n => n,
        };
        let deadline = Instant::now() + fetch.max_wait.min(MAX_SHARE_FETCH_WAIT);
        let mut acks = Some(std::mem::take(&mut fetch.acks));
        let mut ack_results = Vec::new();
        loop {
            let now = wall_clock_ms().max(0) as u64;
            let mut windows = group.windows.lock().await;
            if windows.deleted {
                return Err(ShareError::UnknownGroup(fetch.group_id.clone()));
            }
            // Registered before anything is looked at: a release made after this round
            // looked wakes this fetch even if it lands before the fetch starts waiting.
            let released_wait = group.released.notified();
            // Checked after the wait above is registered: a resignation from now on
            // wakes it, one before it is seen here.
            shard.check_serving()?;
            let mut released = false;
            if let Some(acks) = acks.take() {
                ack_results = self.apply_acks(
                    &fetch.group_id,
                    &fetch.member_id,
                    &mut windows,
                    acks,
                    now,
                    &mut released,
                );
            }
            let round = self
                .acquire(&fetch, &group, &mut windows, max_records, now)
                .await;
            self.copy_dead_letters(&fetch.group_id, &group, &mut windows)
                .await;
            let lock_duration_ms = windows
                .settings
                .apply(self.config.partition)
                .lock_duration_ms;
            // What changed is written even when the round failed part way.
            let pending = shard.queue_snapshots(&mut windows).await?;
            drop(windows);
            if let Some(pending) = pending
                && shard.durable(&group, pending).await?
            {
                self.copy_durable_dead_letters(&shard, &group, &fetch.group_id)
                    .await;
            }
            if released || round.as_ref().is_ok_and(|r| r.released) {
                group.released.notify_waiters();
            }
            let mut round = round?;
            if !round.is_empty() || Instant::now() >= deadline {
                let now = wall_clock_ms().max(0) as u64;
                let records = self.read_acquired(&mut round, now).await?;
                return Ok(ShareFetchAnswer {
                    ack_results,
                    records,
                    lock_duration_ms,
                });
            }
            if round.more_to_read {
                continue;
            }
            let mut wake_at = deadline;
            if let Some(due) = round.next_due_ms {
                let in_ms = due.saturating_sub(now);
                wake_at = wake_at.min(Instant::now() + Duration::from_millis(in_ms));
            }
            if round.follows_some {
                wake_at = wake_at.min(Instant::now() + FOLLOWER_RECHECK);
            }
            let released = released_wait;
            tokio::pin!(released);
            // Subscribed only now that the fetch waits (a subscription nudges the
            // partition's flusher); a move since the round looked ends the wait at once.
            let mut watchers: Vec<watch::Receiver<i64>> =
                round.watched.iter().map(|(p, _)| p.subscribe()).collect();
            if watchers
                .iter()
                .zip(&round.watched)
                .any(|(w, (_, seen))| *w.borrow() != *seen)
            {
                continue;
            }
            let moved = async {
                if watchers.is_empty() {
                    std::future::pending::<()>().await;
                }
                let hws = watchers.iter_mut().map(|w| Box::pin(w.changed()));
                let _ = select_all(hws).await;
            };
            tokio::select! {
                _ = &mut released => {}
                _ = moved => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    /// Acknowledges records the member holds; with `leaving`, then ends every lock the
    /// member still holds (the records go to other members at once, counts kept).
    /// Answers once the outcome is durable.
    pub async fn acknowledge(
        &self,
        group_id: &str,
        member_id: &str,
        acks: Vec<AckRange>,
        leaving: bool,
    ) -> Result<Vec<AckResult>, ShareError> {
        validate_member_id(member_id)?;
        if acks.len() > MAX_ACK_ENTRIES {
            return Err(too_many_acks(acks.len()));
        }
        let shard = self.shard(group_id)?;
        let group = shard.group_or_new(group_id)?;
        let now = wall_clock_ms().max(0) as u64;
        let mut windows = group.windows.lock().await;
        if windows.deleted {
            return Err(ShareError::UnknownGroup(group_id.to_string()));
        }
        let mut released = false;
        let results = self.apply_acks(group_id, member_id, &mut windows, acks, now, &mut released);
        if leaving {
            for w in windows.partitions.values_mut() {
                let held = w.window.acquired();
                w.window.release_member(member_id);
                if w.window.acquired() < held {
                    w.dirty = true;
                    released = true;
                }
            }
        }
        self.copy_dead_letters(group_id, &group, &mut windows).await;
        let pending = shard.queue_snapshots(&mut windows).await?;
        drop(windows);
        if let Some(pending) = pending
            && shard.durable(&group, pending).await?
        {
            self.copy_durable_dead_letters(&shard, &group, group_id)
                .await;
        }
        if released {
            group.released.notify_waiters();
        }
        Ok(results)
    }

    /// Each share-partition of the group: its window, counts, and the oldest unfinished
    /// record's age. [`ShareError::UnknownGroup`] for a group without state.
    pub async fn describe(&self, group_id: &str) -> Result<ShareGroupView, ShareError> {
        let shard = self.shard(group_id)?;
        let group = shard
            .group(group_id)
            .ok_or_else(|| ShareError::UnknownGroup(group_id.to_string()))?;
        let now = wall_clock_ms();
        let mut windows = group.windows.lock().await;
        // Rebuild the windows only stored so far, so they show too.
        self.rebuild_stored(group_id, &mut windows)?;
        let mut views = Vec::new();
        for ((topic, partition), w) in &mut windows.partitions {
            let counts = w.window.counts(now.max(0) as u64);
            let data = self.source(topic, *partition).ok();
            let high_watermark = match &data {
                Some(p) => p.offsets().await.map_or(-1, |o| o.high_watermark),
                None => -1,
            };
            let mut oldest_unfinished_age_ms = None;
            if let (Some(data), Some(offset)) = (&data, counts.oldest_unfinished)
                && let Ok(found) = reader::records_at(data, &[offset]).await
            {
                oldest_unfinished_age_ms = found.first().map(|r| (now - r.timestamp).max(0));
            }
            views.push(SharePartitionView {
                topic: topic.clone(),
                partition: *partition,
                start: w.window.start(),
                end: w.window.end(),
                high_watermark,
                counts,
                oldest_unfinished_age_ms,
                filtered_out: w.window.filtered_out(),
            });
        }
        Ok(ShareGroupView {
            settings: windows.settings.clone(),
            config: windows.settings.apply(self.config.partition),
            partitions: views,
        })
    }

    /// Replaces what the group sets for itself (a new group is made with them); its
    /// share-partitions take them at once. With `keep_filter` the group keeps the filter it
    /// has, whatever `settings.filter` says (a client that knows nothing of filters does
    /// not remove one). A new filter applies to every record not delivered yet, those
    /// already in the windows included; a record it skipped before stays finished.
    /// Answers once the settings are durable.
    pub async fn configure(
        &self,
        group_id: &str,
        mut settings: GroupSettings,
        keep_filter: bool,
    ) -> Result<ShareGroupView, ShareError> {
        settings.validate().map_err(ShareError::InvalidRequest)?;
        if let Some(topic) = &settings.dead_letter_topic {
            if self.sink.is_none() {
                return Err(ShareError::InvalidRequest(
                    "this broker cannot produce dead-letter copies".to_string(),
                ));
            }
            self.registry.topic(topic)?;
        }
        if settings.dead_letter_exchange.is_some() && self.sink.is_none() {
            return Err(ShareError::InvalidRequest(
                "this broker cannot route dead letters through an exchange".to_string(),
            ));
        }
        let shard = self.shard(group_id)?;
        let group = shard.group_or_new(group_id)?;
        {
            let mut windows = group.windows.lock().await;
            if windows.deleted {
                return Err(ShareError::UnknownGroup(group_id.to_string()));
            }
            let key = RecordKey::settings(group_id)
                .map_err(|e| ShareError::InvalidRequest(e.to_string()))?;
            if keep_filter {
                settings.filter = windows.settings.filter.clone();
            }
            if settings.filter != windows.settings.filter && !settings.filter.is_empty() {
                self.refilter(group_id, &mut windows, &settings.filter)
                    .await?;
            }
            let value = settings.encode();
            let config = settings.apply(self.config.partition);
            for w in windows.partitions.values_mut() {
                w.window.reconfigure(config);
                w.dirty = true;
            }
            group.sweeps.store(settings.sweeps(), Ordering::Relaxed);
            windows.settings = settings;
            let pending = shard
                .queue_with(&mut windows, vec![(key.into(), Some(value.into()))])
                .await?;
            drop(windows);
            if let Some(pending) = pending {
                shard.durable(&group, pending).await?;
            }
        }
        self.describe(group_id).await
    }

    /// Rebuilds the group's windows that are only stored so far (those of topics that
    /// still exist).
    fn rebuild_stored(&self, group_id: &str, windows: &mut Windows) -> Result<(), ShareError> {
        let ids: HashMap<String, String> = self
            .registry
            .topics()
            .iter()
            .map(|t| (t.topic_id.clone(), t.name.clone()))
            .collect();
        let stored: Vec<(String, u32)> = windows.stored.keys().cloned().collect();
        for (topic_id, partition) in stored {
            if let Some(name) = ids.get(&topic_id) {
                let config = windows.settings.apply(self.config.partition);
                windows.window(group_id, name, &topic_id, partition, config, 0)?;
            }
        }
        Ok(())
    }

    /// Applies a new `filter` to the records the group's windows took in and never
    /// delivered (under its windows lock): those it does not match leave the windows,
    /// finished. Their headers come from the windows' caches, or the log.
    async fn refilter(
        &self,
        group_id: &str,
        windows: &mut Windows,
        filter: &super::filter::HeaderFilter,
    ) -> Result<(), ShareError> {
        self.rebuild_stored(group_id, windows)?;
        for ((topic, partition), w) in &mut windows.partitions {
            let undelivered = w.window.undelivered();
            if undelivered.is_empty() {
                continue;
            }
            let mut skip = Vec::new();
            let mut uncached = Vec::new();
            for offset in undelivered {
                match w.cache.get(offset) {
                    Some(r) if !filter.matches(&r.headers) => skip.push(offset),
                    Some(_) => {}
                    None => uncached.push(offset),
                }
            }
            if !uncached.is_empty() {
                let read = match self.source(topic, *partition) {
                    Ok(data) => reader::records_at(&data, &uncached).await,
                    Err(e) => Err(e),
                };
                match read {
                    Ok(records) => skip.extend(
                        records
                            .iter()
                            .filter(|r| !filter.matches(&r.headers))
                            .map(|r| r.offset),
                    ),
                    // The group cannot fetch from it either; its records keep their state.
                    Err(e) => tracing::warn!(
                        group = group_id,
                        topic = %topic,
                        partition,
                        error = %e,
                        "a new share group filter could not read records the window holds; \
                         they stay deliverable"
                    ),
                }
            }
            for offset in &skip {
                w.window.filter_out(*offset);
                w.cache.take(*offset);
            }
            if !skip.is_empty() {
                w.dirty = true;
                tracing::info!(
                    group = group_id,
                    topic = %topic,
                    partition,
                    skipped = skip.len(),
                    "a new share group filter skipped records the window held"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::partition::PartitionState;

    /// One broker with a topic `q` of one partition, and its share coordinator (it runs
    /// until the returned sender is dropped).
    async fn one_broker_with_q() -> (
        tempfile::TempDir,
        Arc<TopicRegistry>,
        Arc<ShareCoordinator>,
        watch::Sender<bool>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let registry = TopicRegistry::open(dir.path(), 0).await.unwrap();
        registry
            .create_topic("q", 1, 1, BTreeMap::new())
            .await
            .unwrap();
        let (stop, stopping) = watch::channel(false);
        let shares = ShareCoordinator::open(
            registry.clone(),
            ShareGroupConfig::default(),
            None,
            None,
            stopping,
        )
        .await
        .unwrap();
        (dir, registry, shares, stop)
    }

    /// Member `m` of `group_id` asks for up to 10 records of `q`, from its start.
    fn fetch_of_q(group_id: &str, max_wait: Duration) -> ShareFetch {
        ShareFetch {
            group_id: group_id.into(),
            member_id: "m".into(),
            topics: vec!["q".into()],
            partitions: None,
            max_records: 10,
            max_wait,
            start: ShareStart::Earliest,
            acks: Vec::new(),
        }
    }

    /// An acquisition whose lock ran out before it could be answered (its write took
    /// longer than the lock, as under faults) is left out of the answer; one whose lock
    /// still runs is answered with its records.
    #[tokio::test]
    async fn records_whose_lock_ran_out_before_the_answer_are_left_out() {
        use weir_log::{Compression, Record, RecordBatchBuilder, ValidatedBatches};

        let (_dir, registry, shares, _stop) = one_broker_with_q().await;
        let mut b = RecordBatchBuilder::new(Compression::None);
        for v in ["a", "b", "c"] {
            b.push(&Record {
                value: Some(bytes::Bytes::from(v)),
                timestamp: 1_000,
                ..Record::default()
            });
        }
        let batch = ValidatedBatches::new(b.build().unwrap(), 1 << 20).unwrap();
        registry
            .topic("q")
            .unwrap()
            .partition(0)
            .unwrap()
            .append(batch, crate::partition::Durability::Durable)
            .await
            .unwrap();
        let lock_ms = ShareConfig::default().lock_duration_ms;
        let now = wall_clock_ms() as u64;
        // Acquired at `acquired_at`, answered at `now`: how many records the answer holds.
        let answered = async |group_id: &str, acquired_at: u64| {
            let fetch = fetch_of_q(group_id, Duration::ZERO);
            let shard = shares.shard(group_id).unwrap();
            let group = shard.group_or_new(group_id).unwrap();
            let mut windows = group.windows.lock().await;
            let mut round = shares
                .acquire(&fetch, &group, &mut windows, 10, acquired_at)
                .await
                .unwrap();
            assert!(!round.is_empty(), "nothing acquired");
            drop(windows);
            shares.read_acquired(&mut round, now).await.unwrap().len()
        };
        assert_eq!(answered("in-time", now).await, 3);
        assert_eq!(answered("too-late", now - lock_ms - 1).await, 0);
    }

    /// A share fetch long-polling a coordinator that loses the group's partition hears
    /// NOT_COORDINATOR at once, not after its wait.
    #[tokio::test]
    async fn a_long_poll_on_a_coordinator_that_loses_the_group_is_answered_at_once() {
        let (_dir, registry, shares, _stop) = one_broker_with_q().await;
        let fetch = tokio::spawn({
            let shares = shares.clone();
            async move { shares.fetch(fetch_of_q("sg", MAX_SHARE_FETCH_WAIT)).await }
        });
        // The fetch has taken the group (its new window's state is in the log) and waits
        // for records that never come.
        let state = registry
            .topic(SHARE_STATE_TOPIC)
            .unwrap()
            .partition(partition_for_group("sg", shares.slots.len()))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while state.offsets().await.unwrap().log_end_offset == 0 {
            assert!(
                Instant::now() < deadline,
                "the fetch never wrote its window"
            );
            tokio::task::yield_now().await;
        }
        // Durable too, so no write of the fetch is left for the leadership change to
        // refuse: what answers it is the shard resigning.
        let end = state.offsets().await.unwrap().log_end_offset;
        let mut hw = state.subscribe();
        tokio::time::timeout(Duration::from_secs(5), hw.wait_for(|hw| *hw >= end))
            .await
            .expect("the window's state never became durable")
            .unwrap();

        // Broker 1 takes the partition over; once this broker follows the change, the
        // fetch is answered, long before its 30 s wait.
        state
            .apply_state(&PartitionState {
                leader: 1,
                leader_epoch: state.state().leader_epoch + 1,
                replicas: vec![0, 1],
                isr: vec![1],
            })
            .await;
        shares.follow_leadership().await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), fetch)
            .await
            .expect("the long poll was not answered")
            .unwrap();
        assert!(
            matches!(
                answer,
                Err(ShareError::NotCoordinator { coordinator: 1, .. })
            ),
            "{answer:?}"
        );
        drop(shares);
        registry.close().await.unwrap();
    }
}
