//! Topics and their configuration: create, delete, list, describe, grow, and the
//! topic configs described and altered, with the answers' conversions.

use std::collections::HashMap;

use weir_proto::v1 as pb;

use super::{Admin, LISTING_PAGE_SIZE};
use crate::error::ClientError;

/// One partition's state, as `DescribeTopic` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: u32,
    /// Broker id of the leader; -1 if there is none.
    pub leader: i32,
    /// Leader epoch, bumped on every leadership change.
    pub leader_epoch: i32,
    /// Broker ids holding a copy.
    pub replicas: Vec<i32>,
    /// Broker ids in sync with the leader.
    pub isr: Vec<i32>,
    /// First offset still in the log.
    pub log_start_offset: i64,
    /// Offsets below this are visible to consumers.
    pub high_watermark: i64,
    /// Offset the next record will get.
    pub log_end_offset: i64,
    /// While a reassignment moves the partition: replicas it adds (`replicas` lists the
    /// target first, then `removing_replicas`). Empty otherwise.
    pub adding_replicas: Vec<i32>,
    /// While a reassignment moves the partition: replicas it drops once the target is
    /// in sync. Empty otherwise.
    pub removing_replicas: Vec<i32>,
    /// The moving replicas' fetch throttle in bytes per second, if one was set.
    pub reassignment_throttle_bytes_per_sec: Option<u64>,
}

impl PartitionInfo {
    /// Whether a reassignment is moving this partition.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas the partition has, or will have once its reassignment completes.
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|b| !self.removing_replicas.contains(b))
            .collect()
    }
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Unique id, new for each creation of a name.
    pub topic_id: String,
    /// Partitions in index order.
    pub partitions: Vec<PartitionInfo>,
    /// True for the broker's own topics.
    pub internal: bool,
}

/// One topic in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Copies of each partition.
    pub replication_factor: u32,
    /// True for the broker's own topics.
    pub internal: bool,
}

/// One configuration key of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Key, for example `retention.ms`.
    pub name: String,
    /// Value in effect.
    pub value: String,
    /// True if the value is the default (not set on the topic).
    pub is_default: bool,
    /// What the key does.
    pub documentation: String,
}

impl Admin {
    /// Creates a topic. `replication_factor` 0 means the broker's default. Fails with
    /// [`ClientError::AlreadyExists`] if it exists, [`ClientError::InvalidArgument`] for
    /// a bad name, count or configuration.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: HashMap<String, String>,
    ) -> Result<TopicInfo, ClientError> {
        let response = self
            .admin
            .clone()
            .create_topic(pb::CreateTopicRequest {
                name: name.to_owned(),
                partitions,
                replication_factor,
                configs,
            })
            .await?
            .into_inner();
        topic_info(response.topic)
    }

    /// Deletes a topic and all its records ([`ClientError::NotFound`] if there is none).
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        self.admin
            .clone()
            .delete_topic(pb::DeleteTopicRequest {
                name: name.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Every topic, sorted by name; internal topics only if `include_internal`. The
    /// broker answers a page at a time; this follows the pages to the last.
    pub async fn list_topics(
        &self,
        include_internal: bool,
    ) -> Result<Vec<TopicListing>, ClientError> {
        let mut topics = Vec::new();
        let mut page_token = String::new();
        loop {
            let response = self
                .admin
                .clone()
                .list_topics(pb::ListTopicsRequest {
                    include_internal,
                    page_size: LISTING_PAGE_SIZE,
                    page_token: std::mem::take(&mut page_token),
                })
                .await?
                .into_inner();
            topics.extend(response.topics.into_iter().map(|t| TopicListing {
                name: t.name,
                partitions: t.partitions,
                replication_factor: t.replication_factor,
                internal: t.internal,
            }));
            if response.next_page_token.is_empty() {
                return Ok(topics);
            }
            page_token = response.next_page_token;
        }
    }

    /// A topic's partitions with their leaders, replicas and offsets.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        let response = self
            .admin
            .clone()
            .describe_topic(pb::DescribeTopicRequest {
                name: name.to_owned(),
                allow_auto_create: false,
            })
            .await?
            .into_inner();
        topic_info(response.topic)
    }

    /// Grows a topic to `total_partitions` (never fewer). Keyed records may map to other
    /// partitions afterwards, as in Kafka.
    pub async fn create_partitions(
        &self,
        name: &str,
        total_partitions: u32,
    ) -> Result<TopicInfo, ClientError> {
        let response = self
            .admin
            .clone()
            .create_partitions(pb::CreatePartitionsRequest {
                name: name.to_owned(),
                total_partitions,
            })
            .await?
            .into_inner();
        topic_info(response.topic)
    }

    /// Every configuration key of a topic, sorted by name.
    pub async fn describe_topic_config(&self, name: &str) -> Result<Vec<ConfigEntry>, ClientError> {
        let response = self
            .admin
            .clone()
            .describe_topic_config(pb::DescribeTopicConfigRequest {
                name: name.to_owned(),
            })
            .await?
            .into_inner();
        Ok(config_entries(response.entries))
    }

    /// Sets the keys in `set` and resets the keys in `reset` to their defaults, all or
    /// nothing. Returns every key after the change.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: HashMap<String, String>,
        reset: Vec<String>,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        let response = self
            .admin
            .clone()
            .alter_topic_config(pb::AlterTopicConfigRequest {
                name: name.to_owned(),
                set,
                reset,
            })
            .await?
            .into_inner();
        Ok(config_entries(response.entries))
    }
}

/// A topic description from an answer that must carry one (a broker that leaves it out
/// is answering wrongly: `INTERNAL`); a throttle of 0 is none.
pub(super) fn topic_info(topic: Option<pb::TopicDescription>) -> Result<TopicInfo, ClientError> {
    let topic = topic.ok_or_else(|| ClientError::Rpc {
        code: tonic::Code::Internal,
        message: "the broker's answer has no topic description".to_owned(),
    })?;
    Ok(TopicInfo {
        name: topic.name,
        topic_id: topic.topic_id,
        internal: topic.internal,
        partitions: topic
            .partitions
            .into_iter()
            .map(|p| PartitionInfo {
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas,
                isr: p.isr,
                log_start_offset: p.log_start_offset,
                high_watermark: p.high_watermark,
                log_end_offset: p.log_end_offset,
                adding_replicas: p.adding_replicas,
                removing_replicas: p.removing_replicas,
                reassignment_throttle_bytes_per_sec: (p.reassignment_throttle_bytes_per_sec > 0)
                    .then_some(p.reassignment_throttle_bytes_per_sec),
            })
            .collect(),
    })
}

fn config_entries(entries: Vec<pb::ConfigEntry>) -> Vec<ConfigEntry> {
    entries
        .into_iter()
        .map(|e| ConfigEntry {
            name: e.name,
            value: e.value,
            is_default: e.is_default,
            documentation: e.documentation,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(partitions: Vec<pb::PartitionDescription>) -> Option<pb::TopicDescription> {
        Some(pb::TopicDescription {
            name: "events".to_owned(),
            partitions,
            ..Default::default()
        })
    }

    #[test]
    fn a_topic_answer_without_a_description_is_the_brokers_fault() {
        let missing = topic_info(None);
        assert!(
            matches!(&missing, Err(ClientError::Rpc { code: tonic::Code::Internal, message }) if message.contains("no topic description")),
            "{missing:?}"
        );
    }

    #[test]
    fn a_partition_reads_back_as_described_and_a_zero_throttle_is_none() {
        let topic = topic_info(described(vec![
            pb::PartitionDescription {
                partition: 0,
                leader: 1,
                leader_epoch: 4,
                replicas: vec![1, 2, 3],
                isr: vec![1, 3],
                log_start_offset: 10,
                high_watermark: 90,
                log_end_offset: 95,
                ..Default::default()
            },
            pb::PartitionDescription {
                partition: 1,
                leader: -1,
                reassignment_throttle_bytes_per_sec: 65_536,
                ..Default::default()
            },
        ]))
        .expect("a description");
        assert_eq!(topic.name, "events");
        let [first, second] = &topic.partitions[..] else {
            panic!("two partitions: {:?}", topic.partitions);
        };
        assert_eq!(
            (
                first.leader,
                first.leader_epoch,
                &first.isr[..],
                first.log_start_offset,
                first.high_watermark,
                first.log_end_offset
            ),
            (1, 4, &[1, 3][..], 10, 90, 95)
        );
        assert_eq!(first.reassignment_throttle_bytes_per_sec, None);
        assert_eq!(second.leader, -1);
        assert_eq!(second.reassignment_throttle_bytes_per_sec, Some(65_536));
    }

    #[test]
    fn a_moving_partition_has_its_target_without_the_replicas_it_drops() {
        let moving = topic_info(described(vec![pb::PartitionDescription {
            partition: 0,
            // The target first (4, 5, 1), then the replicas being removed.
            replicas: vec![4, 5, 1, 2, 3],
            adding_replicas: vec![4, 5],
            removing_replicas: vec![2, 3],
            ..Default::default()
        }]))
        .expect("a description")
        .partitions
        .remove(0);
        assert!(moving.is_reassigning());
        assert_eq!(moving.target_replicas(), [4, 5, 1]);

        let settled = PartitionInfo {
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            ..moving
        };
        assert!(!settled.is_reassigning());
        assert_eq!(settled.target_replicas(), settled.replicas);
    }

    #[test]
    fn config_entries_keep_the_brokers_order_and_defaults() {
        let entries = config_entries(vec![
            pb::ConfigEntry {
                name: "cleanup.policy".to_owned(),
                value: "compact".to_owned(),
                is_default: false,
                documentation: "What to do with old segments.".to_owned(),
            },
            pb::ConfigEntry {
                name: "retention.ms".to_owned(),
                value: "604800000".to_owned(),
                is_default: true,
                ..Default::default()
            },
        ]);
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.name.as_str(), e.value.as_str(), e.is_default))
                .collect::<Vec<_>>(),
            [
                ("cleanup.policy", "compact", false),
                ("retention.ms", "604800000", true)
            ]
        );
        assert_eq!(entries[0].documentation, "What to do with old segments.");
    }
}
