//! The share coordinator's administration of share groups (Kafka's share-group admin
//! APIs, `weir queue list|reset|delete`): which groups it holds state for, moving a
//! share-partition's start, forgetting a topic's state, deleting a group.
//!
//! Each change is written as the coordinator writes every change: records in the group's
//! `__share_group_state` partition, queued under the group's windows lock and answered
//! once durable. A new start is a new snapshot whose window is empty (Kafka's
//! AlterShareGroupOffsets initialises the share-partition afresh the same way: every
//! record from the new start on is delivered again with a delivery count of 0);
//! forgetting is a tombstone per share-partition (and one for the group's settings when
//! the whole group goes), so compaction removes the state and a reload does not see it.
//!
//! The group must be idle: a record acquired under a lock that has not expired means a
//! member (of either protocol) is working on it, and the change is refused with
//! [`ShareError::GroupNotEmpty`]. Membership (Kafka's heartbeats) is checked by the
//! caller at the group's coordinator.

use bytes::Bytes;

use super::coordinator::ShareCoordinator;
use super::settings::RecordKey;
use super::shard::{Windows, state_key};
use super::{MAX_SHARE_ADMIN_PARTITIONS, ShareError};
use crate::internal_topic::wall_clock_ms;

/// Where a share-partition's new start goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTarget {
    /// This offset (below the log start: the log start; above the high watermark:
    /// refused).
    Offset(i64),
    /// The partition's log start.
    Earliest,
    /// The partition's high watermark.
    Latest,
}

/// One share-partition whose start to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartReset {
    pub topic: String,
    pub partition: u32,
    pub to: StartTarget,
}

impl ShareCoordinator {
    /// The ids of the share groups with state in the `__share_group_state` partitions
    /// this broker leads now, sorted.
    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .loaded_shards()
            .iter()
            .flat_map(|shard| shard.group_ids())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Moves the start of each share-partition named to where it says, discarding its
    /// in-flight window (a group without state is made). One answer per entry, in order:
    /// the new start, or why that entry was refused (an unknown topic or partition, an
    /// offset past the high watermark); the whole request fails where the group is in use.
    pub async fn reset_starts(
        &self,
        group_id: &str,
        resets: Vec<StartReset>,
    ) -> Result<Vec<Result<i64, ShareError>>, ShareError> {
        if resets.len() > MAX_SHARE_ADMIN_PARTITIONS {
            return Err(too_many(resets.len()));
        }
        let shard = self.shard(group_id)?;
        let group = shard.group_or_new(group_id)?;
        let mut windows = group.windows.lock().await;
        check_idle(group_id, &mut windows)?;
        let config = windows.settings.apply(self.config().partition);
        let mut answers = Vec::with_capacity(resets.len());
        for reset in resets {
            let moved = async {
                let topic = self.registry().topic(&reset.topic)?;
                let data = self.source(&reset.topic, reset.partition)?;
                let offsets = data.offsets().await?;
                let start = match reset.to {
                    StartTarget::Earliest => offsets.log_start_offset,
                    StartTarget::Latest => offsets.high_watermark,
                    StartTarget::Offset(n) if n < 0 => {
                        return Err(ShareError::InvalidRequest(format!(
                            "a start offset of {n} for {}/{}: offsets are not negative",
                            reset.topic, reset.partition
                        )));
                    }
                    StartTarget::Offset(n) if n > offsets.high_watermark => {
                        return Err(ShareError::InvalidRequest(format!(
                            "a start offset of {n} for {}/{} is past its high watermark {}",
                            reset.topic, reset.partition, offsets.high_watermark
                        )));
                    }
                    StartTarget::Offset(n) => n.max(offsets.log_start_offset),
                };
                let slot = (reset.topic.clone(), reset.partition);
                windows.partitions.remove(&slot);
                windows
                    .stored
                    .remove(&(topic.topic_id.clone(), reset.partition));
                // A new window at the start, written with this request's snapshots.
                windows.window(
                    group_id,
                    &reset.topic,
                    &topic.topic_id,
                    reset.partition,
                    config,
                    start,
                )?;
                Ok(start)
            };
            answers.push(moved.await);
        }
        let pending = shard.queue_snapshots(&mut windows).await?;
        drop(windows);
        if let Some(pending) = pending {
            shard.durable(&group, pending).await?;
        }
        Ok(answers)
    }

    /// Forgets the group's state of each topic named (every partition of it): the group
    /// starts on it afresh, where `share.auto.offset.reset` says, when it next fetches.
    /// One answer per topic, in order (an unknown topic is refused); the whole request
    /// fails where the group has no state or is in use.
    pub async fn delete_topics(
        &self,
        group_id: &str,
        topics: &[String],
    ) -> Result<Vec<Result<(), ShareError>>, ShareError> {
        if topics.len() > MAX_SHARE_ADMIN_PARTITIONS {
            return Err(too_many(topics.len()));
        }
        let shard = self.shard(group_id)?;
        let group = shard
            .group(group_id)
            .ok_or_else(|| ShareError::UnknownGroup(group_id.to_string()))?;
        let mut windows = group.windows.lock().await;
        if windows.deleted {
            return Err(ShareError::UnknownGroup(group_id.to_string()));
        }
        check_idle(group_id, &mut windows)?;
        let mut tombstones = Vec::new();
        let mut answers = Vec::with_capacity(topics.len());
        for name in topics {
            let topic = match self.registry().topic(name) {
                Ok(t) => t,
                Err(e) => {
                    answers.push(Err(e.into()));
                    continue;
                }
            };
            tombstones.extend(forget_topic(group_id, &mut windows, name, &topic.topic_id)?);
            answers.push(Ok(()));
        }
        let pending = shard.queue_with(&mut windows, tombstones).await?;
        drop(windows);
        if let Some(pending) = pending {
            shard.durable(&group, pending).await?;
        }
        Ok(answers)
    }

    /// Deletes the group: the state of every share-partition and its settings.
    /// [`ShareError::UnknownGroup`] where it has no state, [`ShareError::GroupNotEmpty`]
    /// where it is in use.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ShareError> {
        let shard = self.shard(group_id)?;
        let group = shard
            .group(group_id)
            .ok_or_else(|| ShareError::UnknownGroup(group_id.to_string()))?;
        let mut windows = group.windows.lock().await;
        if windows.deleted {
            return Err(ShareError::UnknownGroup(group_id.to_string()));
        }
        check_idle(group_id, &mut windows)?;
        let mut tombstones: Vec<(Bytes, Option<Bytes>)> = windows
            .partitions
            .values()
            .map(|w| (w.key.clone(), None))
            .collect();
        for (topic_id, partition) in windows.stored.keys() {
            tombstones.push((state_key(group_id, topic_id, *partition)?, None));
        }
        let settings =
            RecordKey::settings(group_id).map_err(|e| ShareError::InvalidRequest(e.to_string()))?;
        tombstones.push((settings.into(), None));
        windows.partitions.clear();
        windows.stored.clear();
        // A request that waits for this lock finds the group gone rather than writing
        // state for it again.
        windows.deleted = true;
        shard.remove_group(group_id, &group);
        let pending = shard.queue_with(&mut windows, tombstones).await?;
        drop(windows);
        if let Some(pending) = pending {
            shard.durable(&group, pending).await?;
        }
        Ok(())
    }
}

/// Refuses a change to a group a member is working in: a record acquired under a lock
/// that has not expired (expired locks end here first, as a fetch would end them).
fn check_idle(group_id: &str, windows: &mut Windows) -> Result<(), ShareError> {
    check_idle_at(group_id, windows, wall_clock_ms().max(0) as u64)
}

fn check_idle_at(group_id: &str, windows: &mut Windows, now: u64) -> Result<(), ShareError> {
    let mut held = 0;
    for w in windows.partitions.values_mut() {
        let before = w.window.acquired();
        if !w.window.expire(now).is_empty() || w.window.acquired() < before {
            w.dirty = true;
        }
        held += w.window.acquired();
    }
    if held > 0 {
        return Err(ShareError::GroupNotEmpty {
            group: group_id.to_string(),
            held,
        });
    }
    Ok(())
}

/// Drops the group's windows and stored states of one topic; returns their tombstones.
fn forget_topic(
    group_id: &str,
    windows: &mut Windows,
    name: &str,
    topic_id: &str,
) -> Result<Vec<(Bytes, Option<Bytes>)>, ShareError> {
    let mut tombstones = Vec::new();
    windows.partitions.retain(|(topic, _), w| {
        let gone = topic == name || w.topic_id == topic_id;
        if gone {
            tombstones.push((w.key.clone(), None));
        }
        !gone
    });
    let stored: Vec<u32> = windows
        .stored
        .keys()
        .filter(|(id, _)| id == topic_id)
        .map(|(_, p)| *p)
        .collect();
    for partition in stored {
        windows.stored.remove(&(topic_id.to_string(), partition));
        tombstones.push((state_key(group_id, topic_id, partition)?, None));
    }
    Ok(tombstones)
}

fn too_many(n: usize) -> ShareError {
    ShareError::InvalidRequest(format!(
        "a share-group admin request names at most {MAX_SHARE_ADMIN_PARTITIONS} partitions or topics; this one names {n}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::partition::{ShareConfig, SharePartition};

    const A: &str = "00000000-0000-0000-0000-00000000000a";
    const B: &str = "00000000-0000-0000-0000-00000000000b";

    /// A group with windows on topics a (partitions 0, 1) and b (0), each holding offsets
    /// 0..5, and a stored state of a's partition 2.
    fn windows() -> Windows {
        let mut w = Windows::default();
        let config = ShareConfig::default();
        for (topic, id, partition) in [("a", A, 0), ("a", A, 1), ("b", B, 0)] {
            let window = w.window("g", topic, id, partition, config, 0).unwrap();
            window.window.extend((0..5).map(|o| (o, 0)));
        }
        let stored = SharePartition::new(config, 3).snapshot(1);
        w.stored.insert((A.to_string(), 2), stored);
        w
    }

    #[test]
    fn a_record_held_under_a_live_lock_makes_the_group_busy_until_the_lock_ends() {
        let mut w = windows();
        let slot = ("a".to_string(), 0);
        let acquired = w
            .partitions
            .get_mut(&slot)
            .unwrap()
            .window
            .acquire("m1", 1_000, 2);
        let deadline = acquired[0].deadline_ms;
        let busy = check_idle_at("g", &mut w, deadline - 1).unwrap_err();
        assert!(
            matches!(&busy, ShareError::GroupNotEmpty { held: 2, .. }),
            "{busy:?}"
        );
        // Once the locks run out the group is idle, and the records are available again.
        w.partitions.get_mut(&slot).unwrap().dirty = false;
        check_idle_at("g", &mut w, deadline).unwrap();
        let window = &w.partitions[&slot];
        assert_eq!(window.window.acquired(), 0);
        assert!(window.dirty, "the ended locks are written with the change");
    }

    #[test]
    fn forgetting_a_topic_drops_its_windows_and_stored_states_and_tombstones_each() {
        let mut w = windows();
        let tombstones = forget_topic("g", &mut w, "a", A).unwrap();
        let mut keys: Vec<Bytes> = tombstones
            .iter()
            .map(|(k, v)| {
                assert!(v.is_none(), "a tombstone has no value");
                k.clone()
            })
            .collect();
        keys.sort();
        let mut expected: Vec<Bytes> = (0..3).map(|p| state_key("g", A, p).unwrap()).collect();
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(
            w.partitions.keys().cloned().collect::<Vec<_>>(),
            vec![("b".to_string(), 0)]
        );
        assert!(w.stored.is_empty());
        // A topic the group never read: nothing to forget.
        assert!(
            forget_topic("g", &mut w, "c", "00000000-0000-0000-0000-00000000000c")
                .unwrap()
                .is_empty()
        );
    }
}
