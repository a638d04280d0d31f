//! The coordinator's background work: following leadership, expiring member sessions
//! and idle groups' offsets, and re-evaluating subscriptions when topics change.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::coordinator::GroupCoordinator;
use super::records;
use super::shard::{Prepared, Scope, Shard, ShardState, delete_group_records};
use super::{GroupError, LEADERSHIP_CHECK_INTERVAL, OFFSETS_TOPIC};
use crate::internal_topic;

impl GroupCoordinator {
    /// Removes members whose session timed out (or who kept partitions they were asked
    /// to release past the rebalance timeout) as of `now`; returns how many.
    pub async fn expire_sessions(&self, now: Instant) -> Result<usize, GroupError> {
        let topics = self.topics_snapshot();
        let mut removed = 0;
        for shard in &self.loaded() {
            let bumped: Vec<String> = {
                let mut st = shard.state();
                if st.next_deadline.is_none_or(|d| d > now) {
                    continue;
                }
                // Classic groups that emptied are written so, as KIP-848 ones are.
                let mut bumped = self.tick_classic(&mut st, now);
                let mut next: Option<Instant> = None;
                for (group_id, e) in st.groups.iter_mut() {
                    let gone = e.group.expire(now, &topics);
                    if !gone.is_empty() && e.member_count() == 0 {
                        e.idle_since = e.idle_since.max(now);
                    }
                    if !gone.is_empty() {
                        tracing::info!(group = group_id, members = ?gone, "members removed: session or rebalance timeout");
                        removed += gone.len();
                        if !bumped.contains(group_id) {
                            bumped.push(group_id.clone());
                        }
                    }
                    for d in [e.group.next_deadline(), e.classic.next_deadline()]
                        .into_iter()
                        .flatten()
                    {
                        next = Some(next.map_or(d, |n| n.min(d)));
                    }
                }
                st.next_deadline = next;
                bumped
            };
            for group_id in bumped {
                shard.persist(&group_id, Scope::All).await?;
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
                e.member_count() == 0
                    && !e.classic.is_active()
                    && !e.deleting
                    && e.idle_since
                        .checked_add(retention)
                        .is_some_and(|t| t <= now)
            }) && !st.pending_keys.keys().any(|(g, _, _)| g == group)
        };
        let mut removed = 0;
        for shard in &self.loaded() {
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
        for shard in &self.loaded() {
            let bumped: Vec<String> = {
                let mut st = shard.state();
                st.groups
                    .iter_mut()
                    .filter_map(|(id, e)| e.group.refresh_topics(&topics).then(|| id.clone()))
                    .collect()
            };
            for group_id in bumped {
                shard.persist(&group_id, Scope::All).await?;
            }
            self.delete_stale_offsets(shard).await?;
        }
        self.refreshed_version
            .store(topics.version, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes (tombstones) the committed offsets of topics that no longer exist, or
    /// exist under a new id (deleted and created again), as Kafka does when a topic is
    /// deleted.
    async fn delete_stale_offsets(&self, shard: &Arc<Shard>) -> Result<(), GroupError> {
        let ids = self.topic_ids();
        let stale = move |st: &ShardState| -> Vec<(String, String, u32)> {
            st.groups
                .iter()
                .flat_map(|(group, e)| {
                    let ids = &ids;
                    e.offsets.iter().flat_map(move |(topic, parts)| {
                        parts
                            .iter()
                            .filter(move |(_, s)| ids.get(topic).is_none_or(|id| !s.is_for(id)))
                            .map(move |(p, _)| (group.clone(), topic.clone(), *p))
                    })
                })
                .collect()
        };
        if stale(&shard.state()).is_empty() {
            return Ok(());
        }
        let written = shard
            .write(move |st| {
                // A commit in flight for a key is newer than what it replaces: keep it.
                let records = stale(st)
                    .into_iter()
                    .filter(|key| !st.pending_keys.contains_key(key))
                    .map(|(g, t, p)| (records::offset_key(&g, &t, p), None))
                    .collect();
                Ok(Prepared {
                    records,
                    ..Prepared::default()
                })
            })
            .await?;
        if written.is_some() {
            tracing::info!(
                partition = shard.index,
                "deleted the committed offsets of deleted topics"
            );
        }
        Ok(())
    }

    /// Runs [`expire_sessions`](Self::expire_sessions) and
    /// [`refresh_topics`](Self::refresh_topics) every `expiry_check_interval`, and
    /// [`expire_offsets`](Self::expire_offsets) at most every
    /// `offsets_retention_check_interval`, until `shutdown` becomes true (or its sender
    /// is dropped).
    ///
    /// Also follows leadership of `__consumer_offsets` on its own task
    /// ([`follow_leadership`](Self::follow_leadership) after every metadata change and
    /// every [`LEADERSHIP_CHECK_INTERVAL`]), which stops with the same `shutdown`.
    pub fn spawn_expiry(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        self.spawn_leadership(shutdown.clone());
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

    fn spawn_leadership(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        let this = self.clone();
        internal_topic::spawn_following(
            self.registry.clone(),
            shutdown,
            LEADERSHIP_CHECK_INTERVAL,
            OFFSETS_TOPIC,
            move || {
                let this = this.clone();
                async move { this.follow_leadership().await.map(|_| ()) }
            },
        );
    }
}
