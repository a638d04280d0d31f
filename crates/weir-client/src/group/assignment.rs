//! How a member follows its assignment: what the heartbeat task heard applied in
//! [`GroupConsumer::reconcile`] (partitions lost; revoked ones released once the listener
//! was told and, with auto commit, their positions committed; new ones started at their
//! committed offset or per `auto_offset_reset`), the held partitions attached to the inner consumer, records of
//! partitions no longer held dropped, and the rebalance listener told.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use tokio::time::Instant;
use weir_proto::v1 as pb;

use super::heartbeat::topic_partitions;
use super::{CoordinatorLink, GroupConsumer, Held, Rebalance, TopicPartition, backoff, list};
use crate::admin::OffsetQuery;
use crate::consumer::{ConsumerRecord, IsolationLevel, OffsetReset, SeekTo};
use crate::error::ClientError;

impl GroupConsumer {
    /// Applies what the heartbeat task heard: losses, revocations, new partitions.
    pub(super) async fn reconcile(&mut self) -> Result<(), ClientError> {
        let (membership, target, version) = {
            let state = self.shared.state();
            if let Some(error) = &state.fatal {
                return Err(error.clone());
            }
            let due = self.retry_at.is_some_and(|at| Instant::now() >= at);
            if state.membership.incarnation == self.member.incarnation
                && self.attempted_version == Some(state.target_version)
                && !due
            {
                self.member.member_epoch = state.membership.member_epoch;
                return Ok(());
            }
            (
                state.membership.clone(),
                state.target.clone(),
                state.target_version,
            )
        };
        self.attempted_version = Some(version);
        self.retry_at = None;

        // Lost: the broker forgot or fenced the member; drop everything uncommitted.
        if membership.incarnation != self.member.incarnation {
            let lost: Vec<TopicPartition> = self.held.keys().cloned().collect();
            self.held.clear();
            self.inner.assign(&[]);
            self.tell(Event::Lost, lost);
            self.last_auto_committed.clear();
        }
        self.member = membership;

        // Revoked: finish what the heartbeat task started.
        let revoked: Vec<TopicPartition> = self
            .held
            .keys()
            .filter(|tp| !target.contains(*tp))
            .cloned()
            .collect();
        if !revoked.is_empty() {
            let unnotified: Vec<TopicPartition> = revoked
                .iter()
                .filter(|tp| self.held.get(*tp).is_some_and(|h| !h.revoke_notified))
                .cloned()
                .collect();
            for tp in &unnotified {
                if let Some(held) = self.held.get_mut(tp) {
                    held.revoke_notified = true;
                }
            }
            self.tell(Event::Revoked, unnotified);
            if self.config.auto_commit {
                let revoked_set: HashSet<&TopicPartition> = revoked.iter().collect();
                let offsets = self.positions_of(|tp| revoked_set.contains(tp));
                if let Err(error) = self.commit_wait(offsets).await {
                    tracing::warn!(group = %self.config.group_id, %error, partitions = %list(&revoked), "could not commit revoked partitions; their next owner starts from the previous commit");
                }
            }
            for tp in &revoked {
                self.held.remove(tp);
            }
            self.inner.assign(&attached(&self.held));
            self.release(&revoked);
        }

        // Never taken, and revoked again before they could be: release them.
        {
            let mut state = self.shared.state();
            if state.membership.incarnation == self.member.incarnation {
                let stale: Vec<TopicPartition> = state
                    .owned
                    .iter()
                    .filter(|tp| !self.held.contains_key(*tp) && !state.target.contains(*tp))
                    .cloned()
                    .collect();
                if !stale.is_empty() {
                    for tp in &stale {
                        state.owned.remove(tp);
                    }
                    self.shared.heartbeat_now.notify_one();
                }
            }
        }

        // Assigned: position new partitions, then tell the application.
        let added: Vec<TopicPartition> = {
            let mut added: Vec<TopicPartition> = target
                .iter()
                .filter(|tp| !self.held.contains_key(*tp))
                .cloned()
                .collect();
            added.sort();
            added
        };
        if !added.is_empty() {
            match self.starting_positions(&added).await {
                Ok(positions) => {
                    self.retry_failures = 0;
                    let state = self.shared.state();
                    if state.membership.incarnation != self.member.incarnation {
                        return Ok(()); // fenced meanwhile: the next round drops everything
                    }
                    let mut taken = Vec::with_capacity(positions.len());
                    for (tp, position) in positions {
                        // Taken away again while it was being positioned: never held;
                        // the next round releases it.
                        if !state.target.contains(&tp) {
                            continue;
                        }
                        taken.push(tp.clone());
                        self.held.insert(
                            tp,
                            Held {
                                position,
                                paused: false,
                                revoke_notified: false,
                            },
                        );
                    }
                    self.member.member_epoch = state.membership.member_epoch;
                    drop(state);
                    self.tell(Event::Assigned, taken);
                }
                Err(error) if error.is_retriable() || matches!(error, ClientError::NotFound(_)) => {
                    self.retry_failures = self.retry_failures.saturating_add(1);
                    let wait = backoff(self.config.reconnect_backoff, self.retry_failures);
                    tracing::debug!(group = %self.config.group_id, %error, ?wait, "could not position new partitions; retrying");
                    self.retry_at = Some(Instant::now() + wait);
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Where new partitions start: the group's committed offset, else per
    /// `auto_offset_reset` (`None` for [`OffsetReset::None`]).
    pub(super) async fn starting_positions(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>, ClientError> {
        let wanted: BTreeSet<TopicPartition> = partitions.iter().cloned().collect();
        let fetched = fetch_offsets(&self.coordinator, &self.config.group_id, &wanted).await?;
        // A transaction's offsets not settled yet may be about to move the committed one:
        // a read-committed consumer starting from it now would read again what that
        // transaction consumed (Kafka's consumers wait on UNSTABLE_OFFSET_COMMIT, KIP-447).
        // Retried as any retriable error is (`retry_at`).
        if self.config.isolation == IsolationLevel::ReadCommitted
            && let Some(c) = fetched.iter().find(|c| c.pending)
        {
            return Err(ClientError::Unavailable(format!(
                "a transaction's offsets of group {} for {}/{} are not settled yet",
                self.config.group_id, c.topic, c.partition
            )));
        }
        let committed: HashMap<TopicPartition, i64> = fetched
            .into_iter()
            .filter(|c| c.offset >= 0)
            .map(|c| (TopicPartition::new(c.topic.as_str(), c.partition), c.offset))
            .collect();
        let missing: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| !committed.contains_key(*tp))
            .cloned()
            .collect();
        let query = match self.config.auto_offset_reset {
            OffsetReset::Earliest => Some(OffsetQuery::Earliest),
            OffsetReset::Latest => Some(OffsetQuery::Latest),
            OffsetReset::None => None,
        };
        let mut reset: HashMap<TopicPartition, i64> = HashMap::new();
        if let Some(query) = query {
            let mut by_topic: BTreeMap<Arc<str>, Vec<(u32, OffsetQuery)>> = BTreeMap::new();
            for tp in &missing {
                by_topic
                    .entry(tp.topic.clone())
                    .or_default()
                    .push((tp.partition, query));
            }
            for (topic, queries) in by_topic {
                // Offsets come from each partition's leader, through the records'
                // connections.
                for found in self
                    .inner
                    .cluster()
                    .list_offsets(&topic, &queries, self.config.isolation)
                    .await?
                {
                    reset.insert(
                        TopicPartition::new(topic.clone(), found.partition),
                        found.offset,
                    );
                }
            }
        }
        Ok(partitions
            .iter()
            .map(|tp| {
                let position = committed.get(tp).or_else(|| reset.get(tp)).copied();
                (tp.clone(), position)
            })
            .collect())
    }

    /// Hands released partitions back: the next heartbeat omits them.
    pub(super) fn release(&self, partitions: &[TopicPartition]) {
        {
            let mut state = self.shared.state();
            if state.membership.incarnation == self.member.incarnation {
                for tp in partitions {
                    state.owned.remove(tp);
                }
            }
        }
        self.shared.heartbeat_now.notify_one();
    }

    /// Makes the inner consumer read exactly the attached partitions, each from its
    /// position (after a resume, a seek, or records dropped for a revocation).
    pub(super) async fn attach(&mut self) -> Result<(), ClientError> {
        let wanted: Vec<(TopicPartition, i64)> = self
            .held
            .iter()
            .filter(|(_, h)| !h.paused)
            .filter_map(|(tp, h)| Some((tp.clone(), h.position?)))
            .collect();
        let assigned: HashSet<(Arc<str>, u32)> = self.inner.assignment().into_iter().collect();
        if assigned.len() != wanted.len()
            || wanted
                .iter()
                .any(|(tp, _)| !assigned.contains(&(tp.topic.clone(), tp.partition)))
        {
            self.inner.assign(&attached(&self.held));
        }
        for (tp, position) in wanted {
            if self.inner.position(&tp.topic, tp.partition) != Some(position) {
                self.inner
                    .seek(&tp.topic, tp.partition, SeekTo::Offset(position))
                    .await?;
            }
        }
        Ok(())
    }

    /// Keeps the records `poll` may return, and moves positions past them. Checked
    /// under the state lock, against the assignment the heartbeat task keeps current:
    /// a partition whose revocation started, or that was lost, returns nothing more.
    pub(super) fn keep_held(&mut self, mut records: Vec<ConsumerRecord>) -> Vec<ConsumerRecord> {
        let state = self.shared.state();
        let current = state.membership.incarnation == self.member.incarnation;
        let held = &mut self.held;
        // Records come in runs of one partition: decide once per run.
        let mut run: Option<(TopicPartition, bool)> = None;
        records.retain(|record| {
            if !current {
                return false;
            }
            let same_run = run.as_ref().is_some_and(|(tp, _)| {
                tp.partition == record.partition && *tp.topic == *record.topic
            });
            if !same_run {
                let tp = TopicPartition {
                    topic: record.topic.clone(),
                    partition: record.partition,
                };
                let keep = state.target.contains(&tp)
                    && held
                        .get(&tp)
                        .is_some_and(|h| !h.paused && h.position.is_some());
                run = Some((tp, keep));
            }
            let Some((tp, true)) = &run else {
                return false;
            };
            let Some(h) = held.get_mut(tp) else {
                return false;
            };
            match h.position {
                // Never backwards: a record before the position was returned already.
                Some(position) if record.offset >= position => {
                    h.position = Some(record.offset + 1);
                    true
                }
                _ => false,
            }
        });
        records
    }

    pub(super) fn tell(&self, event: Event, partitions: Vec<TopicPartition>) {
        if partitions.is_empty() {
            return;
        }
        tracing::debug!(group = %self.config.group_id, member = %self.member.member_id, epoch = self.member.member_epoch, ?event, partitions = %list(&partitions), "rebalance");
        let Some(listener) = &self.listener else {
            return;
        };
        let rebalance = Rebalance {
            member_id: self.member.member_id.clone(),
            member_epoch: self.member.member_epoch,
            partitions,
        };
        match event {
            Event::Assigned => listener.on_assigned(&rebalance),
            Event::Revoked => listener.on_revoked(&rebalance),
            Event::Lost => listener.on_lost(&rebalance),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Event {
    Assigned,
    Revoked,
    Lost,
}

/// The partitions the inner consumer should read: held, not paused, positioned.
pub(super) fn attached(held: &BTreeMap<TopicPartition, Held>) -> Vec<(&str, u32)> {
    held.iter()
        .filter(|(_, h)| !h.paused && h.position.is_some())
        .map(|(tp, _)| (&*tp.topic, tp.partition))
        .collect()
}

/// `Groups.FetchOffsets` for some partitions.
pub(super) async fn fetch_offsets(
    coordinator: &CoordinatorLink,
    group_id: &str,
    partitions: &BTreeSet<TopicPartition>,
) -> Result<Vec<pb::CommittedOffset>, ClientError> {
    let answer = async {
        coordinator
            .client()
            .await?
            .fetch_offsets(pb::FetchOffsetsRequest {
                group_id: group_id.to_owned(),
                topics: topic_partitions(partitions),
            })
            .await
            .map_err(ClientError::from)
    }
    .await;
    match answer {
        Ok(response) => Ok(response.into_inner().offsets),
        Err(error) => {
            coordinator.failed(&error);
            Err(error)
        }
    }
}
