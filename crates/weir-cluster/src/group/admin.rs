//! The coordinator's administration of groups: list, describe, delete, reset offsets,
//! and the figures metrics report.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::consumer_protocol;
use super::coordinator::GroupCoordinator;
use super::records;
use super::shard::{GroupEntry, Prepared, ShardState, delete_group_records};
use super::{
    GroupDescription, GroupError, GroupMetrics, GroupOverrides, GroupProtocol, GroupSummary,
    MAX_OFFSETS_PER_COMMIT, MemberDescription, OffsetCommit, OffsetReset, PartitionLag,
    PartitionProgress, ResetBounds, ResetSpec, validate_group_id,
};
use crate::controller::group_configs;

impl GroupCoordinator {
    /// `f` of every group of the loaded shards, by group id.
    fn each_group<T>(&self, f: impl Fn(&str, &GroupEntry) -> T) -> Vec<T> {
        let mut out: Vec<(String, T)> = Vec::new();
        for shard in self.loaded() {
            let st = shard.state();
            out.extend(st.groups.iter().map(|(id, e)| (id.clone(), f(id, e))));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, t)| t).collect()
    }

    /// Every group, by id.
    pub fn list_groups(&self) -> Vec<GroupSummary> {
        self.each_group(|id, e| GroupSummary {
            group_id: id.to_string(),
            state: e.state(),
            members: e.member_count(),
            protocol: e.protocol(),
        })
    }

    /// A group's state, members, and the progress of every partition it subscribes to or
    /// has an offset for.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription, GroupError> {
        validate_group_id(group_id)?;
        let ids = self.topic_ids();
        let (mut description, committed, partitions, owners) = {
            let shard = self.shard(group_id)?;
            let st = shard.state();
            let e = st
                .groups
                .get(group_id)
                .ok_or_else(|| GroupError::UnknownGroup(group_id.to_string()))?;
            let committed: BTreeMap<(String, u32), i64> = e
                .offsets
                .iter()
                .filter_map(|(t, parts)| ids.get(t).map(|id| (t, id, parts)))
                .flat_map(|(t, id, parts)| {
                    parts
                        .iter()
                        .filter(|(_, s)| s.is_for(id))
                        .map(move |(p, s)| ((t.clone(), *p), s.offset))
                })
                .collect();
            let mut partitions: BTreeSet<(String, u32)> = e
                .group
                .subscribed_partitions()
                .map(|(t, p)| (t.to_string(), p))
                .collect();
            partitions.extend(committed.keys().cloned());
            let mut owners: HashMap<(String, u32), String> = e
                .group
                .owners()
                .map(|((t, p), m)| ((t.to_string(), *p), m.to_string()))
                .collect();
            let now = Instant::now();
            let protocol = e.protocol();
            let mut members = e.group.describe_members(now);
            let classic = match &protocol {
                GroupProtocol::Classic { .. } => {
                    let classic = e.classic.describe(now);
                    // The consumer protocol's topics and partitions, where they decode.
                    for m in &classic.members {
                        let subscribed =
                            consumer_protocol::subscribed_topics(&m.metadata).unwrap_or_default();
                        for topic in &subscribed {
                            if let Ok(t) = self.registry.topic(topic) {
                                partitions
                                    .extend((0..t.partition_count()).map(|p| (topic.clone(), p)));
                            }
                        }
                        let assignment = consumer_protocol::assigned_partitions(&m.assignment)
                            .unwrap_or_default();
                        for (topic, parts) in &assignment {
                            for p in parts {
                                owners.insert((topic.clone(), *p), m.member_id.clone());
                                partitions.insert((topic.clone(), *p));
                            }
                        }
                        members.push(MemberDescription {
                            member_id: m.member_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            member_epoch: classic.generation,
                            subscribed_topics: subscribed,
                            subscribed_topic_regex: None,
                            target_assignment: assignment.clone(),
                            assignment,
                            pending_revocation: Default::default(),
                            since_heartbeat: m.session_timeout.saturating_sub(m.session_remaining),
                            session_timeout: m.session_timeout,
                            // Classic clients choose their own interval; Kafka's
                            // rule is at most a third of the session timeout.
                            heartbeat_interval: m.session_timeout / 3,
                        });
                    }
                    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
                    Some(classic)
                }
                GroupProtocol::Consumer => None,
            };
            let description = GroupDescription {
                group_id: group_id.to_string(),
                state: e.state(),
                group_epoch: match &classic {
                    Some(c) => c.generation,
                    None => e.group.epoch(),
                },
                assignor: match &classic {
                    Some(c) => c.protocol_name.clone(),
                    None => e.group.assignor().name().to_string(),
                },
                members,
                offsets: Vec::new(),
                coordinator_partition: self.coordinator_partition(group_id),
                protocol,
                classic,
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

    /// `group_id`'s own settings (Kafka's group configs `consumer.session.timeout.ms` and
    /// `consumer.heartbeat.interval.ms`) as this broker's metadata has them
    /// (`crate::controller::group_configs`): `None` for each the group leaves to the
    /// coordinator. Any broker answers, coordinator or not; a group need not exist to
    /// have them. They are changed with `ClusterNode::alter_group_configs`.
    pub fn group_overrides(&self, group_id: &str) -> Result<GroupOverrides, GroupError> {
        validate_group_id(group_id)?;
        let image = self.registry.cluster().image();
        Ok(group_configs::group_overrides(&image, group_id))
    }

    /// Deletes a group without members and its committed offsets (tombstones in
    /// `__consumer_offsets`). Its configs stay (they are metadata of the group id, in the
    /// metadata log: `crate::controller::group_configs`), for a group of that id again.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), GroupError> {
        validate_group_id(group_id)?;
        // Members whose session has ended are gone first: the expiry task runs every
        // `expiry_check_interval`, so without this a deletion sent right after the last
        // member's session timeout (as librdkafka's test 0081 sends one) is refused by
        // members Kafka's exact session timers would have removed.
        self.expire_sessions(Instant::now()).await?;
        let group = group_id.to_string();
        let check = move |st: &ShardState| {
            let e = st
                .groups
                .get(&group)
                .ok_or_else(|| GroupError::UnknownGroup(group.clone()))?;
            if e.member_count() > 0 || e.classic.is_active() {
                return Err(GroupError::GroupNotEmpty {
                    members: e.member_count(),
                    group_id: group,
                    operation: "deleting a group",
                });
            }
            Ok(true)
        };
        delete_group_records(&self.shard(group_id)?, group_id, check).await?;
        tracing::info!(group = group_id, "group deleted");
        Ok(())
    }

    /// Deletes the committed offsets of some partitions of a group (Kafka's OffsetDelete,
    /// KIP-496) with tombstones in `__consumer_offsets`, in one write. The offsets of
    /// topics the group's members subscribe to are kept: those partitions are answered
    /// [`GroupError::GroupSubscribedToTopic`]; every other one is answered `Ok` (deleted,
    /// or it had no offset). One answer per partition, in order. UNKNOWN_GROUP if the
    /// group does not exist; NON_EMPTY_GROUP if it is a classic group with members of a
    /// protocol type other than "consumer" (whose subscriptions the broker cannot read),
    /// as Kafka refuses it.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, u32)>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        validate_group_id(group_id)?;
        if partitions.len() > MAX_OFFSETS_PER_COMMIT {
            return Err(GroupError::InvalidRequest(format!(
                "{} partitions in one offset deletion; the limit is {MAX_OFFSETS_PER_COMMIT}",
                partitions.len()
            )));
        }
        let group = group_id.to_string();
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let wanted = partitions.clone();
        self.shard(group_id)?
            .write(move |st| {
                let e = st
                    .groups
                    .get(&group)
                    .filter(|e| !e.deleting)
                    .ok_or_else(|| GroupError::UnknownGroup(group.clone()))?;
                if e.classic.member_count() > 0 && e.classic.protocol_type() != Some("consumer") {
                    return Err(GroupError::GroupNotEmpty {
                        group_id: group,
                        members: e.classic.member_count(),
                        operation: "deleting offsets of a group that is not a consumer group",
                    });
                }
                let subscribed: Vec<bool> = wanted
                    .iter()
                    .map(|(topic, _)| e.is_subscribed_to(topic))
                    .collect();
                // A commit in flight for a key is tombstoned too: it is older than this.
                let keys: BTreeSet<(String, u32)> = wanted
                    .into_iter()
                    .zip(&subscribed)
                    .filter(|(_, subscribed)| !**subscribed)
                    .map(|(key, _)| key)
                    .filter(|(t, p)| {
                        e.offsets.get(t).is_some_and(|o| o.contains_key(p))
                            || st
                                .pending_keys
                                .contains_key(&(group.clone(), t.clone(), *p))
                    })
                    .collect();
                let records = keys
                    .iter()
                    .map(|(t, p)| (records::offset_key(&group, t, *p), None))
                    .collect();
                let _ = subscribed_tx.send(subscribed);
                Ok(Prepared {
                    records,
                    ..Prepared::default()
                })
            })
            .await?;
        // The write succeeded, so its preparation ran and sent the flags.
        let subscribed = subscribed_rx.await.map_err(|_| {
            GroupError::Cluster(crate::error::ClusterError::TaskFailed(
                "the offset deletion's preparation did not run".to_string(),
            ))
        })?;
        Ok(partitions
            .into_iter()
            .zip(subscribed)
            .map(|((topic, _), subscribed)| {
                if subscribed {
                    Err(GroupError::GroupSubscribedToTopic {
                        group_id: group_id.to_string(),
                        topic,
                    })
                } else {
                    Ok(())
                }
            })
            .collect())
    }

    /// Moves the committed offsets of a group without members, clamped to each
    /// partition's `[log start, high watermark]`. A topic with `None` (or no partitions
    /// listed) means all of its partitions. With `dry_run`, only computes the plan. A
    /// partition this broker hosts no replica of is reset within the bounds its leader
    /// reported in `elsewhere` (NOT_LEADER if they are not there).
    pub async fn reset_offsets(
        &self,
        group_id: &str,
        targets: Vec<(String, Option<Vec<u32>>)>,
        spec: ResetSpec,
        dry_run: bool,
        elsewhere: &BTreeMap<(String, u32), ResetBounds>,
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
                if p >= count {
                    return Err(GroupError::UnknownPartition {
                        topic: topic_name.clone(),
                        partition: p,
                        count,
                    });
                }
                let key = (topic_name.clone(), p);
                let bounds = match topic.partition(p) {
                    Ok(hosted) => Bounds::Hosted(hosted),
                    Err(e) => Bounds::Reported(*elsewhere.get(&key).ok_or(e)?),
                };
                handles.insert(key.clone(), bounds);
                partitions.insert(key);
            }
        }
        let members = self
            .shard(group_id)?
            .state()
            .groups
            .get(group_id)
            .map_or(0, |e| e.member_count());
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
            let bounds = match &handles[&(topic.clone(), partition)] {
                Bounds::Hosted(handle) => {
                    let offsets = handle.offsets().await?;
                    let at_timestamp = match spec {
                        ResetSpec::Timestamp(ts) => handle.offset_for_timestamp(ts).await?,
                        _ => None,
                    };
                    ResetBounds {
                        log_start_offset: offsets.log_start_offset,
                        high_watermark: offsets.high_watermark,
                        at_timestamp,
                    }
                }
                Bounds::Reported(bounds) => *bounds,
            };
            let (start, end) = (bounds.log_start_offset, bounds.high_watermark);
            let previous = current.get(&(topic.clone(), partition)).copied();
            let wanted = match spec {
                ResetSpec::Earliest => start,
                ResetSpec::Latest => end,
                ResetSpec::Offset(o) => o,
                ResetSpec::Timestamp(_) => bounds.at_timestamp.unwrap_or(end),
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
                    leader_epoch: None,
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
        self.each_group(|id, e| GroupMetrics {
            group_id: id.to_string(),
            state: e.state(),
            members: e.member_count(),
            group_epoch: match e.protocol() {
                GroupProtocol::Classic { .. } => e.classic.generation(),
                GroupProtocol::Consumer => e.group.epoch(),
            },
            rebalances: e.group.rebalances() + e.classic.rebalances(),
        })
    }

    /// The lag of every committed partition of every group (high watermark minus
    /// committed offset), for metrics scrapes: no I/O, no awaits. Partitions of deleted
    /// topics are left out.
    pub fn lags(&self) -> Vec<PartitionLag> {
        let ids = self.topic_ids();
        let mut committed = Vec::new();
        for shard in &self.loaded() {
            let st = shard.state();
            for (group_id, e) in &st.groups {
                for (topic, parts) in &e.offsets {
                    let Some(id) = ids.get(topic) else { continue };
                    for (partition, s) in parts.iter().filter(|(_, s)| s.is_for(id)) {
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
        self.loaded().iter().map(|s| s.group_count()).sum()
    }

    /// How long a heartbeat answer tells a settled member to wait, for callers that
    /// need it without a heartbeat.
    pub fn heartbeat_interval(&self) -> Duration {
        self.config.heartbeat_interval
    }
}

/// Where a reset finds a partition's bounds: its replica here, or its leader's report.
enum Bounds {
    Hosted(std::sync::Arc<crate::partition::Partition>),
    Reported(ResetBounds),
}
