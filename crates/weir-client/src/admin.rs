//! [`Admin`]: one method per RPC of the `Admin` service, plus [`Admin::list_offsets`]
//! from the `Consumer` service, with plain Rust types in and out.

use std::collections::HashMap;

use tonic::transport::Channel;
use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::consumer_client::ConsumerClient;

use crate::connection::{self, MAX_MESSAGE_BYTES};
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

/// One broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Broker id.
    pub broker_id: i32,
    /// Host clients connect to.
    pub host: String,
    /// gRPC port.
    pub port: u32,
}

/// The cluster as `DescribeCluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Cluster id.
    pub cluster_id: String,
    /// Broker id of the controller.
    pub controller_id: i32,
    /// Every live broker.
    pub brokers: Vec<BrokerInfo>,
}

/// What to look up with [`Admin::list_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    /// The log start offset.
    Earliest,
    /// The high watermark (the offset the next visible record will get).
    Latest,
    /// The first offset whose record timestamp is at or after this (ms since epoch); the
    /// high watermark if every record is older.
    Timestamp(i64),
}

/// One partition's answer to [`Admin::list_offsets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedOffset {
    /// Partition index.
    pub partition: u32,
    /// The offset found.
    pub offset: i64,
    /// For timestamp lookups, the found record's timestamp; else -1.
    pub timestamp_ms: i64,
}

/// A client for topic management and cluster description.
///
/// Cheap to clone: clones share one connection.
#[derive(Debug, Clone)]
pub struct Admin {
    admin: AdminClient<Channel>,
    consumer: ConsumerClient<Channel>,
}

impl Admin {
    /// Connects to the first reachable broker of `brokers` (`host:port` or
    /// `http://host:port`; empty means [`connection::DEFAULT_BROKER`]).
    pub async fn connect(brokers: &[String]) -> Result<Admin, ClientError> {
        Ok(Admin::from_channel(connection::connect(brokers).await?))
    }

    /// An admin client over an existing channel.
    pub fn from_channel(channel: Channel) -> Admin {
        Admin {
            admin: AdminClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            consumer: ConsumerClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        }
    }

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

    /// Every topic, sorted by name; internal topics only if `include_internal`.
    pub async fn list_topics(
        &self,
        include_internal: bool,
    ) -> Result<Vec<TopicListing>, ClientError> {
        let response = self
            .admin
            .clone()
            .list_topics(pb::ListTopicsRequest { include_internal })
            .await?
            .into_inner();
        Ok(response
            .topics
            .into_iter()
            .map(|t| TopicListing {
                name: t.name,
                partitions: t.partitions,
                replication_factor: t.replication_factor,
                internal: t.internal,
            })
            .collect())
    }

    /// A topic's partitions with their leaders, replicas and offsets.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        let response = self
            .admin
            .clone()
            .describe_topic(pb::DescribeTopicRequest {
                name: name.to_owned(),
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

    /// Removes every record below the given offset of each `(partition, before_offset)`
    /// (-1: the high watermark, everything). Returns the new log start offset of each
    /// partition, in request order; the first partition that failed fails the call.
    pub async fn delete_records(
        &self,
        topic: &str,
        partitions: &[(u32, i64)],
    ) -> Result<Vec<(u32, i64)>, ClientError> {
        let response = self
            .admin
            .clone()
            .delete_records(pb::DeleteRecordsRequest {
                topic: topic.to_owned(),
                partitions: partitions
                    .iter()
                    .map(|&(partition, before_offset)| pb::PartitionDeleteRecords {
                        partition,
                        before_offset,
                    })
                    .collect(),
            })
            .await?
            .into_inner();
        response
            .results
            .into_iter()
            .map(|r| match &r.error {
                Some(error) => Err(ClientError::from_partition_error(error)),
                None => Ok((r.partition, r.log_start_offset)),
            })
            .collect()
    }

    /// The brokers of the cluster and its controller.
    pub async fn describe_cluster(&self) -> Result<ClusterInfo, ClientError> {
        let response = self
            .admin
            .clone()
            .describe_cluster(pb::DescribeClusterRequest {})
            .await?
            .into_inner();
        Ok(ClusterInfo {
            cluster_id: response.cluster_id,
            controller_id: response.controller_id,
            brokers: response
                .brokers
                .into_iter()
                .map(|b| BrokerInfo {
                    broker_id: b.broker_id,
                    host: b.host,
                    port: b.port,
                })
                .collect(),
        })
    }

    /// Looks up offsets of a topic's partitions: earliest, latest or by timestamp.
    /// Results are in request order; the first partition that failed fails the call.
    pub async fn list_offsets(
        &self,
        topic: &str,
        queries: &[(u32, OffsetQuery)],
    ) -> Result<Vec<ListedOffset>, ClientError> {
        list_offsets(&mut self.consumer.clone(), topic, queries).await
    }
}

/// `ListOffsets` over a consumer client; shared by [`Admin`] and the consumer's seek.
pub(crate) async fn list_offsets(
    client: &mut ConsumerClient<Channel>,
    topic: &str,
    queries: &[(u32, OffsetQuery)],
) -> Result<Vec<ListedOffset>, ClientError> {
    use pb::offset_spec::Spec;
    let request = pb::ListOffsetsRequest {
        topic: topic.to_owned(),
        partitions: queries
            .iter()
            .map(|&(partition, query)| pb::PartitionOffsetQuery {
                partition,
                spec: Some(pb::OffsetSpec {
                    spec: Some(match query {
                        OffsetQuery::Earliest => Spec::Earliest(true),
                        OffsetQuery::Latest => Spec::Latest(true),
                        OffsetQuery::Timestamp(ms) => Spec::TimestampMs(ms),
                    }),
                }),
            })
            .collect(),
    };
    let response = client.list_offsets(request).await?.into_inner();
    response
        .results
        .into_iter()
        .map(|r| match &r.error {
            Some(error) => Err(ClientError::from_partition_error(error)),
            None => Ok(ListedOffset {
                partition: r.partition,
                offset: r.offset,
                timestamp_ms: r.timestamp_ms,
            }),
        })
        .collect()
}

fn topic_info(topic: Option<pb::TopicDescription>) -> Result<TopicInfo, ClientError> {
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
