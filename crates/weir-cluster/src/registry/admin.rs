//! Admin changes: each is a request to the active controller, and returns once this
//! broker's registry has applied the metadata that holds it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{ApplyFailure, Topic, TopicRegistry};
use crate::config::TopicConfig;
use crate::controller::elect_leaders::{ElectionKind, ElectionResult};
use crate::controller::{ControllerReply, ControllerRequest, PartitionMove, PartitionRegistration};
use crate::error::ClusterError;
use crate::node::refusal;
use crate::partition::BrokerId;

/// Longest an admin change waits to show in this broker's registry after the
/// controller committed it, plus [`APPLY_WAIT_PER_PARTITION`] for each partition the
/// change opens here.
const APPLY_WAIT: Duration = Duration::from_secs(15);
/// Opening a partition's log creates and syncs files: about a millisecond each here,
/// several on a slow disk; a topic of 10,000 partitions takes seconds to open.
const APPLY_WAIT_PER_PARTITION: Duration = Duration::from_millis(10);

impl TopicRegistry {
    /// Creates a topic. `replication_factor` 0 means the default (1); more copies than
    /// brokers that can take one are refused, naming both numbers.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, ClusterError> {
        let reply = self
            .node
            .call(ControllerRequest::CreateTopic {
                name: name.to_string(),
                partitions,
                replication_factor,
                configs,
            })
            .await?;
        self.created(name, partitions, reply).await
    }

    /// Creates a topic whose replicas the caller placed: partition `i` on
    /// `assignments[i]`, the preferred leader first (the controller checks them as Kafka
    /// checks a manual assignment).
    pub async fn create_topic_assigned(
        &self,
        name: &str,
        assignments: Vec<Vec<BrokerId>>,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, ClusterError> {
        let partitions = assignments.len() as u32;
        let reply = self
            .node
            .call(ControllerRequest::CreateTopicAssigned {
                name: name.to_string(),
                assignments,
                configs,
            })
            .await?;
        self.created(name, partitions, reply).await
    }

    /// The topic the controller's `reply` to a create says it made, once this broker
    /// has opened it.
    async fn created(
        &self,
        name: &str,
        partitions: u32,
        reply: ControllerReply,
    ) -> Result<Arc<Topic>, ClusterError> {
        let topic_id = match reply {
            ControllerReply::TopicCreated { topic_id } => topic_id,
            ControllerReply::Refused(e) => return Err(refusal(e)),
            other => return Err(unexpected(&other)),
        };
        let created = self
            .until(partitions, |r| {
                if let Some(error) = r.apply_failure(&topic_id) {
                    return Some(Err(error));
                }
                r.topic(name)
                    .ok()
                    .filter(|t| t.topic_id == topic_id)
                    .map(Ok)
            })
            .await?;
        let topic = match created {
            Ok(topic) => topic,
            Err(failure) => {
                // This broker could not open its partitions (and undid what it opened):
                // take the topic back out of the metadata so no broker keeps a part of
                // it, and say why.
                tracing::warn!(
                    topic = name,
                    topic_id,
                    error = failure.error,
                    "topic create failed here; deleting it again"
                );
                if let Err(e) = self.delete_topic(name).await {
                    tracing::warn!(topic = name, error = %e, "deleting the topic that failed to open failed");
                }
                return Err(ClusterError::CreateFailed {
                    topic: name.to_string(),
                    reason: failure.error,
                    exhausted: failure.exhausted,
                });
            }
        };
        tracing::info!(
            topic = name,
            partitions,
            topic_id = topic.topic_id,
            "topic created"
        );
        Ok(topic)
    }

    /// Deletes a topic and its records.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClusterError> {
        let reply = self
            .node
            .call(ControllerRequest::DeleteTopic {
                name: name.to_string(),
            })
            .await?;
        let topic_id = match reply {
            ControllerReply::TopicDeleted { topic_id } => topic_id,
            ControllerReply::Refused(e) => return Err(refusal(e)),
            other => return Err(unexpected(&other)),
        };
        self.until(0, |r| match r.topic(name) {
            Ok(t) if t.topic_id == topic_id => None,
            _ => Some(()),
        })
        .await
    }

    /// Grows a topic to `total` partitions (more than it has).
    pub async fn create_partitions(
        &self,
        name: &str,
        total: u32,
    ) -> Result<Arc<Topic>, ClusterError> {
        let reply = self
            .node
            .call(ControllerRequest::CreatePartitions {
                topic: name.to_string(),
                total,
            })
            .await?;
        self.partitions_created(name, total, reply).await
    }

    /// Grows a topic of `current` partitions by one partition per assignment, each on
    /// the brokers it lists.
    pub async fn create_partitions_assigned(
        &self,
        name: &str,
        current: u32,
        assignments: Vec<Vec<BrokerId>>,
    ) -> Result<Arc<Topic>, ClusterError> {
        let total = current.saturating_add(assignments.len() as u32);
        let reply = self
            .node
            .call(ControllerRequest::CreatePartitionsAssigned {
                topic: name.to_string(),
                assignments,
            })
            .await?;
        self.partitions_created(name, total, reply).await
    }

    /// The topic grown to `total` partitions, once this broker has opened them.
    async fn partitions_created(
        &self,
        name: &str,
        total: u32,
        reply: ControllerReply,
    ) -> Result<Arc<Topic>, ClusterError> {
        match reply {
            ControllerReply::PartitionsCreated => {}
            ControllerReply::Refused(e) => return Err(refusal(e)),
            other => return Err(unexpected(&other)),
        }
        let topic = self
            .until(total, |r| {
                r.topic(name).ok().filter(|t| t.partition_count() >= total)
            })
            .await?;
        tracing::info!(topic = name, to = total, "partitions added");
        Ok(topic)
    }

    /// Sets and resets configuration keys of a topic. The whole change is validated
    /// first (nothing is sent if any key or value is bad), then each key goes to the
    /// controller; hosted partitions reopen their logs with the result.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        reset: &[String],
    ) -> Result<TopicConfig, ClusterError> {
        let topic = self.topic(name)?;
        let target = topic.config().altered(set, reset)?;
        target.effective()?;
        let changes = set
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .chain(reset.iter().map(|k| (k.clone(), None)));
        for (key, value) in changes {
            let reply = self
                .node
                .call(ControllerRequest::AlterTopicConfig {
                    topic: name.to_string(),
                    key,
                    value,
                })
                .await?;
            match reply {
                ControllerReply::TopicConfigAltered => {}
                ControllerReply::Refused(e) => return Err(refusal(e)),
                other => return Err(unexpected(&other)),
            }
        }
        let topic_id = topic.topic_id.clone();
        self.until(topic.partition_count(), |r| {
            r.topic(name)
                .ok()
                .filter(|t| t.topic_id == topic_id && t.config() == target)
                .map(|_| ())
        })
        .await?;
        tracing::info!(topic = name, "topic config altered");
        Ok(target)
    }

    /// Elects leaders (Kafka's ElectLeaders) of the partitions named, by topic (`None`:
    /// every partition); returns once this broker's registry has applied the elections
    /// made.
    pub async fn elect_leaders(
        &self,
        kind: ElectionKind,
        partitions: Option<Vec<(String, Vec<u32>)>>,
    ) -> Result<Vec<ElectionResult>, ClusterError> {
        let reply = self
            .node
            .call(ControllerRequest::ElectLeaders { kind, partitions })
            .await?;
        let results = match reply {
            ControllerReply::LeadersElected(results) => results,
            ControllerReply::Refused(e) => return Err(refusal(e)),
            other => return Err(unexpected(&other)),
        };
        let elected: Vec<(String, u32, i32)> = results
            .iter()
            .filter_map(|r| {
                let reg = r.outcome.as_ref().ok()?;
                Some((r.topic.clone(), r.partition, reg.partition_epoch))
            })
            .collect();
        self.until(0, |r| {
            let image = r.node.image();
            elected
                .iter()
                .all(|(topic, p, epoch)| {
                    // A topic deleted meanwhile has nothing left to wait for.
                    image.topic(topic).is_none_or(|t| {
                        t.partitions
                            .get(*p as usize)
                            .is_none_or(|now| now.partition_epoch >= *epoch)
                    })
                })
                .then_some(())
        })
        .await?;
        Ok(results)
    }

    /// Moves replicas of partitions of `name` (`docs/replication.md` § Reassignment), all
    /// or none; returns each moved partition as it stands once this broker's metadata
    /// holds the change (a move already in sync is complete by then).
    pub async fn reassign_partitions(
        &self,
        name: &str,
        moves: Vec<PartitionMove>,
        throttle_bytes_per_sec: Option<u64>,
    ) -> Result<Vec<(u32, PartitionRegistration)>, ClusterError> {
        let topic = self.topic(name)?;
        let reply = self
            .node
            .call(ControllerRequest::ReassignPartitions {
                topic: name.to_string(),
                moves,
                throttle_bytes_per_sec,
            })
            .await?;
        let moved = match reply {
            ControllerReply::PartitionsReassigned(moved) => moved,
            ControllerReply::Refused(e) => return Err(refusal(e)),
            other => return Err(unexpected(&other)),
        };
        let topic_id = topic.topic_id.clone();
        let opens = moved.len() as u32;
        self.until(opens, |r| {
            let image = r.node.image();
            moved
                .iter()
                .all(|(p, reg)| {
                    image
                        .partition(&topic_id, *p)
                        .is_some_and(|now| now.partition_epoch >= reg.partition_epoch)
                })
                .then_some(())
        })
        .await?;
        tracing::info!(
            topic = name,
            partitions = moved.len(),
            "reassignment submitted"
        );
        Ok(moved)
    }

    /// Why the last application of the topic `topic_id` failed here, if it did.
    fn apply_failure(&self, topic_id: &str) -> Option<ApplyFailure> {
        self.apply_failures
            .lock()
            .expect("apply failures lock")
            .get(topic_id)
            .cloned()
    }

    /// Waits until `ready` finds what it looks for in this registry (it is re-checked
    /// each time the registry applies metadata).
    async fn until<T>(
        &self,
        opens: u32,
        ready: impl Fn(&TopicRegistry) -> Option<T>,
    ) -> Result<T, ClusterError> {
        let mut applied = self.applied.subscribe();
        let deadline = tokio::time::Instant::now() + APPLY_WAIT + APPLY_WAIT_PER_PARTITION * opens;
        loop {
            applied.borrow_and_update();
            if let Some(found) = ready(self) {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(ClusterError::ControllerUnavailable(
                        "the change was committed but has not reached this broker's metadata yet"
                            .into(),
                    ));
                }
            }
        }
    }
}

fn unexpected(reply: &ControllerReply) -> ClusterError {
    ClusterError::ControllerUnavailable(format!("unexpected controller answer {reply:?}"))
}
