//! Following the metadata image: open the partitions it assigns this broker, feed them
//! their leader, epochs and ISR, reconfigure them when their topic's config changes,
//! close and delete those of deleted topics and the replicas a reassignment moved away;
//! and the timers every hosted partition's state machine needs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use super::{
    ApplyFailure, ORPHANED_DIR, Slot, TOPICS_DIR, Topic, TopicRegistry, partition_dir, topic_dir,
};
use crate::config::{EffectiveConfig, TopicConfig};
use crate::controller::{MetadataImage, TopicImage};
use crate::error::ClusterError;
use crate::partition::{Partition, PartitionState, ReplicaHost, ReplicationLinks};

/// Partitions of one topic opened at once. Opening a new partition's log creates its
/// files and syncs a checkpoint and its directory; one at a time, a topic of 10,000
/// partitions spent most of its creation waiting on those syncs one after the other
/// (BENCHMARKS.md § Partition scale). Concurrent syncs overlap on the disk, and the
/// blocking threads that run them mostly wait.
pub(super) const OPEN_CONCURRENCY: usize = 32;
/// How often every hosted partition's state machine gets a tick (fetch retries, ISR
/// lag, unanswered proposals).
const TICK: Duration = Duration::from_millis(250);
/// Ticks between high watermark checkpoints.
const CHECKPOINT_EVERY_TICKS: u64 = 20;
/// A partition whose log nobody appended to or read from for this long has its files
/// closed (`Partition::park_if_idle`): a broker's descriptors and memory mappings then
/// grow with the partitions in use, not with every partition it holds (the kernel caps
/// both per process). The next append or read opens them again, as a clean open would.
const PARK_AFTER_IDLE: Duration = Duration::from_secs(30);
/// How often the parking pass looks at every hosted partition.
const PARK_PASS_EVERY: Duration = Duration::from_secs(10);

impl TopicRegistry {
    /// Brings the registry in step with `image`. One application at a time.
    pub(super) async fn apply_image(&self, image: &MetadataImage) -> Result<(), ClusterError> {
        let _apply = self.apply_lock.lock().await;
        let mut changed = false;
        let mut seen = Vec::new();
        let mut first_error = None;
        for topic in image.topics() {
            seen.push(topic.name.clone());
            // One topic that cannot be applied (its logs do not open) does not hold up
            // the others; it is tried again with the next image.
            match self.apply_topic(topic).await {
                Ok(c) => {
                    changed |= c;
                    self.apply_failures
                        .lock()
                        .expect("apply failures lock")
                        .remove(&topic.topic_id);
                }
                Err(e) => {
                    self.apply_failures
                        .lock()
                        .expect("apply failures lock")
                        .insert(
                            topic.topic_id.clone(),
                            ApplyFailure {
                                error: e.to_string(),
                                exhausted: e.is_resource_limit(),
                            },
                        );
                    first_error.get_or_insert(e);
                }
            }
        }
        let gone: Vec<Arc<Topic>> = self
            .topics()
            .into_iter()
            .filter(|t| !seen.contains(&t.name))
            .collect();
        for topic in gone {
            self.remove_topic(&topic).await;
            changed = true;
        }
        if changed {
            self.bump_metadata_version();
        }
        self.applied.send_replace(image.next_offset());
        first_error.map_or(Ok(()), Err)
    }

    /// Applies one topic of the image; whether the set of topics or partitions changed.
    async fn apply_topic(&self, image: &TopicImage) -> Result<bool, ClusterError> {
        let existing = self.topic(&image.name).ok();
        let mut changed = false;
        let topic = match existing {
            Some(t) if t.topic_id == image.topic_id => t,
            other => {
                if let Some(old) = other {
                    // Deleted and created again under the same name.
                    self.remove_topic(&old).await;
                }
                changed = true;
                let config = TopicConfig::new(image.configs.clone())?;
                let topic = Arc::new(Topic {
                    name: image.name.clone(),
                    topic_id: image.topic_id.clone(),
                    replication_factor: image.replication_factor() as u32,
                    config: RwLock::new(config),
                    partitions: RwLock::new(Vec::new()),
                });
                // Visible once its partitions are (below).
                topic
            }
        };
        // Config changes reach every hosted partition (each reopens its log).
        let config = TopicConfig::new(image.configs.clone())?;
        let reconfigure = config != topic.config();
        let effective = config.effective()?;
        let me = self.broker_id();
        let broker_epoch = self.node.broker_state().borrow().broker_epoch;
        let mut slots = topic.partitions.read().expect("partitions lock").clone();
        // What this call created, undone if a partition fails to open.
        let mut created_dirs: Vec<std::path::PathBuf> = Vec::new();
        if !topic_dir(&self.data_dir, &topic.topic_id).exists() {
            created_dirs.push(topic_dir(&self.data_dir, &topic.topic_id));
        }
        // The partitions to open here: each opens its log (files created and synced when
        // new), so they are opened OPEN_CONCURRENCY at a time rather than one after the
        // other; a topic of 10,000 partitions waits for syncs that overlap.
        let host = ReplicaHost {
            node: me,
            broker_epoch: broker_epoch.unwrap_or(0),
            links: self
                .replication
                .clone()
                .map(|r| r as Arc<dyn ReplicationLinks>),
            storage: self.storage.clone(),
            data_dir: self.data_dir_status.clone(),
        };
        let to_open: Vec<OpenJob> = image
            .partitions
            .iter()
            .enumerate()
            .filter(|(index, registration)| {
                registration.replicas.contains(&me)
                    && !matches!(slots.get(*index), Some(Slot::Hosted(_)))
            })
            .map(|(index, registration)| {
                let dir = partition_dir(&self.data_dir, &topic.topic_id, index as u32);
                OpenJob {
                    index: index as u32,
                    dir_is_new: !dir.exists(),
                    dir,
                    state: PartitionState::from(registration),
                }
            })
            .collect();
        let mut opened = open_partitions(&topic, &effective, &host, to_open).await;
        if let Some(e) = opened.failure.take() {
            created_dirs.extend(opened.created_dirs);
            let partitions = opened.partitions.into_values().collect();
            self.undo_opened(&topic, partitions, created_dirs).await;
            return Err(e);
        }
        for (index, registration) in image.partitions.iter().enumerate() {
            let index = index as u32;
            self.changes.lock().expect("changes lock").saw(
                me,
                &topic.topic_id,
                index,
                registration,
            );
            let hosted = match slots.get(index as usize) {
                Some(Slot::Hosted(p)) => Some(p.clone()),
                _ => None,
            };
            if !registration.replicas.contains(&me) {
                if let Some(p) = hosted {
                    // Reassigned away (`docs/replication.md` § Reassignment). The
                    // registration first: a leader ends its leadership, so appends
                    // waiting on it are answered NOT_LEADER, naming the new leader.
                    p.apply_registration_before_close(registration.clone())
                        .await;
                    self.remove_replica(&topic, &p).await;
                    changed = true;
                }
                set_slot(&mut slots, index, Slot::Elsewhere(registration.clone()));
                continue;
            }
            let partition = match hosted {
                Some(p) => {
                    if reconfigure {
                        p.reconfigure(effective.clone()).await?;
                    }
                    p
                }
                None => {
                    changed = true;
                    let p = opened
                        .partitions
                        .remove(&index)
                        .expect("every partition to host here was opened above");
                    self.hosted
                        .write()
                        .expect("hosted lock")
                        .insert((topic.topic_id.clone(), index), p.clone());
                    p
                }
            };
            if let Some(epoch) = broker_epoch {
                partition.set_broker_epoch(epoch);
            }
            partition.apply_registration(registration.clone());
            set_slot(&mut slots, index, Slot::Hosted(partition));
        }
        *topic.partitions.write().expect("partitions lock") = slots;
        if reconfigure {
            // After the partitions: whoever sees the new config sees it applied.
            *topic.config.write().expect("config lock") = config;
        }
        if changed {
            self.topics
                .write()
                .expect("topics lock")
                .insert(image.name.clone(), topic);
        }
        Ok(changed)
    }

    /// Undoes what a failed [`Self::apply_topic`] did: closes the partitions it opened
    /// and removes the directories it created (new and empty but for fresh log files),
    /// so a topic whose partitions could not all be opened (too many open files, a full
    /// disk) leaves nothing behind here. Directories that existed before are kept: they
    /// may hold data.
    async fn undo_opened(
        &self,
        topic: &Topic,
        opened: Vec<Arc<Partition>>,
        created_dirs: Vec<std::path::PathBuf>,
    ) {
        for p in opened {
            self.hosted
                .write()
                .expect("hosted lock")
                .remove(&(topic.topic_id.clone(), p.index()));
            if let Err(e) = p.close().await {
                tracing::warn!(topic = topic.name, partition = p.index(), error = %e, "closing a partition that was just opened failed");
            }
        }
        let count = created_dirs.len();
        let removed = tokio::task::spawn_blocking(move || {
            // Partition directories first, the topic's directory (if new) last.
            for dir in created_dirs.iter().rev() {
                match std::fs::remove_dir_all(dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a directory of a partition that failed to open");
                    }
                    _ => {}
                }
            }
        })
        .await;
        if removed.is_ok() {
            tracing::warn!(
                topic = topic.name,
                topic_id = topic.topic_id,
                directories = count,
                "opening the topic's partitions failed; undid what was opened"
            );
        }
    }

    /// A replica the image no longer places here (a reassignment moved it): it closes and
    /// its directory goes. The image is committed metadata, so this is no guess; if the
    /// partition is ever moved back, it starts empty and copies from the leader.
    async fn remove_replica(&self, topic: &Topic, partition: &Arc<Partition>) {
        let index = partition.index();
        self.hosted
            .write()
            .expect("hosted lock")
            .remove(&(topic.topic_id.clone(), index));
        if let Err(e) = partition.close().await {
            tracing::warn!(topic = topic.name, partition = index, error = %e, "closing a replica moved away failed");
        }
        let dir = partition_dir(&self.data_dir, &topic.topic_id, index);
        remove_dir_all(dir, "the directory of a replica moved away").await;
        // The topic's directory too, once it holds no partition (refused while it does).
        let _ = std::fs::remove_dir(topic_dir(&self.data_dir, &topic.topic_id));
        tracing::info!(
            topic = topic.name,
            partition = index,
            "replica moved to other brokers; removed here"
        );
    }

    /// A topic the image no longer names (deleted): its partitions close and its
    /// directory goes. The image is committed metadata, so this is no guess.
    async fn remove_topic(&self, topic: &Topic) {
        for p in topic.partitions() {
            self.hosted
                .write()
                .expect("hosted lock")
                .remove(&(topic.topic_id.clone(), p.index()));
            if let Err(e) = p.close().await {
                tracing::warn!(topic = topic.name, partition = p.index(), error = %e, "closing a deleted partition failed");
            }
        }
        self.changes
            .lock()
            .expect("changes lock")
            .seen
            .retain(|(id, _), _| *id != topic.topic_id);
        // Gone from the map once closed: whoever no longer finds it finds it closed.
        {
            let mut topics = self.topics.write().expect("topics lock");
            if topics
                .get(&topic.name)
                .is_some_and(|t| t.topic_id == topic.topic_id)
            {
                topics.remove(&topic.name);
            }
        }
        remove_dir_all(
            topic_dir(&self.data_dir, &topic.topic_id),
            "a deleted topic's directory",
        )
        .await;
        tracing::info!(
            topic = topic.name,
            topic_id = topic.topic_id,
            "topic deleted"
        );
    }

    /// Moves aside every topic directory the current image does not name. Called once
    /// the image is known to be current (see the module docs).
    fn move_orphans_aside(&self) {
        let image = self.node.image();
        let topics = self.data_dir.join(TOPICS_DIR);
        let Ok(entries) = std::fs::read_dir(&topics) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ORPHANED_DIR || image.topic_by_id(&name).is_some() {
                continue;
            }
            let aside = topics.join(ORPHANED_DIR).join(&name);
            let moved = std::fs::create_dir_all(topics.join(ORPHANED_DIR))
                .and_then(|()| std::fs::rename(entry.path(), &aside));
            match moved {
                Ok(()) => {
                    tracing::warn!(from = %entry.path().display(), to = %aside.display(), "moved aside a topic directory the metadata does not name")
                }
                Err(e) => {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "could not move aside an unnamed topic directory")
                }
            }
        }
    }
}

/// Removes `dir` and everything in it, off the runtime; a failure (other than its being
/// gone already) is logged, naming `what` it was: what the committed image dropped is
/// gone for the broker either way.
async fn remove_dir_all(dir: std::path::PathBuf, what: &'static str) {
    let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err((dir, e)),
        _ => Ok(()),
    })
    .await;
    if let Ok(Err((dir, e))) = removed {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove {what}");
    }
}

/// A partition of a topic to open here.
struct OpenJob {
    index: u32,
    dir: PathBuf,
    /// The directory did not exist before: removed again if the topic fails to open.
    dir_is_new: bool,
    state: PartitionState,
}

/// What [`open_partitions`] opened, the new directories it made, and the first failure.
struct Opened {
    partitions: BTreeMap<u32, Arc<Partition>>,
    created_dirs: Vec<PathBuf>,
    failure: Option<ClusterError>,
}

/// Opens `jobs`, [`OPEN_CONCURRENCY`] at a time. After a failure no further open starts,
/// but those under way run to their end, so that what they opened and created can be
/// undone; of several failures, the one of the lowest partition index is kept.
async fn open_partitions(
    topic: &Topic,
    config: &EffectiveConfig,
    host: &ReplicaHost,
    jobs: Vec<OpenJob>,
) -> Opened {
    let mut opened = Opened {
        partitions: BTreeMap::new(),
        created_dirs: Vec::new(),
        failure: None,
    };
    let mut first_failed = u32::MAX;
    let mut jobs = jobs.into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        // After a failure nothing more is started: the topic is undone anyway.
        while running.len() < OPEN_CONCURRENCY && opened.failure.is_none() {
            let Some(job) = jobs.next() else { break };
            let (name, id, config, host) = (
                topic.name.clone(),
                topic.topic_id.clone(),
                config.clone(),
                host.clone(),
            );
            running.spawn(async move {
                let result =
                    Partition::open(&name, &id, job.index, &job.dir, config, host, job.state).await;
                (job.index, job.dir, job.dir_is_new, result)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (index, result) = match done {
            Ok((index, dir, dir_is_new, result)) => {
                if dir_is_new {
                    opened.created_dirs.push(dir);
                }
                (index, result)
            }
            // A panic in an open: its directory (if new) is left for the orphan sweep.
            Err(e) => (u32::MAX, Err(ClusterError::TaskFailed(e.to_string()))),
        };
        match result {
            Ok(p) => {
                opened.partitions.insert(index, p);
            }
            Err(e) if opened.failure.is_none() || index < first_failed => {
                first_failed = index;
                opened.failure = Some(e);
            }
            Err(_) => {}
        }
    }
    opened
}

fn set_slot(slots: &mut Vec<Slot>, index: u32, slot: Slot) {
    let i = index as usize;
    if i < slots.len() {
        slots[i] = slot;
    } else {
        slots.push(slot);
    }
}

/// Parks every hosted partition idle for [`PARK_AFTER_IDLE`], one at a time, every
/// [`PARK_PASS_EVERY`], for as long as the registry lives.
fn spawn_parker(registry: &Arc<TopicRegistry>) {
    let weak: Weak<TopicRegistry> = Arc::downgrade(registry);
    tokio::spawn(async move {
        let mut pass = tokio::time::interval(PARK_PASS_EVERY);
        pass.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            pass.tick().await;
            let Some(registry) = weak.upgrade() else {
                return;
            };
            let hosted = registry.all_hosted();
            drop(registry);
            let mut parked = 0usize;
            for p in hosted {
                match p.park_if_idle(PARK_AFTER_IDLE).await {
                    Ok(true) => parked += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(topic = p.topic(), partition = p.index(), error = %e, "parking an idle log failed");
                    }
                }
            }
            if parked > 0 {
                tracing::debug!(parked, "idle partitions parked");
            }
        }
    });
}

/// Follows the image, the broker's registration, and ticks every hosted partition, for
/// as long as the registry lives; parks idle ones ([`spawn_parker`]).
pub(super) fn spawn_follower(registry: &Arc<TopicRegistry>) {
    spawn_parker(registry);
    let weak: Weak<TopicRegistry> = Arc::downgrade(registry);
    let mut images = registry.node.subscribe();
    let mut broker = registry.node.broker_state();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        let mut orphans_checked = false;
        // Whether the hosted partitions were last told to step aside (the broker's
        // session lapsed, or it is starting); those opened before this task are told now.
        let mut lapsed = broker.borrow().leaders_aside();
        if lapsed && let Some(registry) = weak.upgrade() {
            for p in registry.all_hosted() {
                p.set_lease_lapsed(true);
            }
        }
        loop {
            tokio::select! {
                changed = images.changed() => {
                    if changed.is_err() { return; }
                    let image = images.borrow_and_update().clone();
                    let Some(registry) = weak.upgrade() else { return };
                    if let Err(e) = registry.apply_image(&image).await {
                        tracing::error!(error = %e, offset = image.next_offset(), "applying the metadata image failed");
                    }
                    // A partition opened by this image steps aside too.
                    if lapsed {
                        for p in registry.all_hosted() {
                            p.set_lease_lapsed(true);
                        }
                    }
                }
                changed = broker.changed() => {
                    if changed.is_err() { return; }
                    let state = broker.borrow_and_update().clone();
                    let Some(registry) = weak.upgrade() else { return };
                    if let Some(epoch) = state.broker_epoch {
                        for p in registry.all_hosted() {
                            p.set_broker_epoch(epoch);
                        }
                    }
                    if state.leaders_aside() != lapsed {
                        lapsed = state.leaders_aside();
                        for p in registry.all_hosted() {
                            p.set_lease_lapsed(lapsed);
                        }
                    }
                    if !state.fenced && state.broker_epoch.is_some() && !orphans_checked {
                        orphans_checked = true;
                        let r = registry.clone();
                        let _ = tokio::task::spawn_blocking(move || r.move_orphans_aside()).await;
                    }
                }
                _ = tick.tick() => {
                    let Some(registry) = weak.upgrade() else { return };
                    ticks += 1;
                    let checkpoint = ticks.is_multiple_of(CHECKPOINT_EVERY_TICKS);
                    for p in registry.all_hosted() {
                        p.tick();
                        if checkpoint && let Err(e) = p.checkpoint_high_watermark_unless_busy().await {
                            tracing::debug!(topic = p.topic(), partition = p.index(), error = %e, "high watermark checkpoint failed");
                        }
                    }
                }
            }
        }
    });
}

impl From<&crate::controller::records::PartitionRegistration> for PartitionState {
    fn from(r: &crate::controller::records::PartitionRegistration) -> Self {
        PartitionState {
            leader: r.leader,
            leader_epoch: r.leader_epoch,
            replicas: r.replicas.clone(),
            isr: r.isr.clone(),
        }
    }
}
