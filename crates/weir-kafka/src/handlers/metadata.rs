//! Metadata: every broker's Kafka address, the active controller, and each topic's
//! partitions (leader, leader epoch, replicas, ISR, offline replicas) and topic id, from
//! the core's view of the metadata image. Topics are created on first use where the
//! broker does that and the client allows it. DescribeCluster: the brokers, the
//! controller and the cluster id from the same view. Both answer the operations the
//! principal may do on each topic and on the cluster when asked
//! (`include_*_authorized_operations`), from the core's authorisation. DescribeLogDirs:
//! this broker's log directory and the replicas in it; AlterReplicaLogDirs: moves to it
//! (already there) or elsewhere (no such directory). DescribeQuorum: the metadata quorum,
//! from its leader. DescribeTopicPartitions: the topics' partitions as Metadata
//! describes them, a page at a time.

/// Metadata v8+ can ask for the operations allowed on each topic.
const FIRST_TOPIC_OPERATIONS: i16 = 8;
/// Metadata v8 to v10 can ask for those on the cluster (later, DescribeCluster does).
const CLUSTER_OPERATIONS: std::ops::RangeInclusive<i16> = 8..=10;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, BrokerId, DescribeClusterRequest,
    DescribeClusterResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    DescribeQuorumRequest, DescribeQuorumResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse, TopicName,
    alter_replica_log_dirs_response::{
        AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
    },
    describe_cluster_response::DescribeClusterBroker,
    describe_log_dirs_response::{
        DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
    },
    describe_quorum_response::{
        Listener as QuorumListener, Node as QuorumNode, PartitionData as QuorumPartition,
        ReplicaState, TopicData as QuorumTopic,
    },
    describe_topic_partitions_response::{
        Cursor as PartitionCursor, DescribeTopicPartitionsResponsePartition,
        DescribeTopicPartitionsResponseTopic,
    },
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
};
use kafka_protocol::protocol::StrBytes;
use weir_broker::RequestContext;
use weir_broker::metadata::{self, PartitionView, TopicView};
use weir_broker::replicas::ReplicaDirMove;
use weir_broker::security::{CLUSTER_RESOURCE_NAME, ResourceType};

use super::security::authorized_operations;
use super::{KafkaBroker, answer, error_code, host_port};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};

pub(super) async fn metadata(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: MetadataRequest = request.decode_body()?;
    let version = request.api_version;
    // v0: an empty list means every topic; v1+: null does, and empty means none.
    let names: Option<Vec<String>> = match req.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .map(|t| match t.name {
                    Some(name) => Ok(name.to_string()),
                    // v10+ may name a topic by id only.
                    None => Ok(metadata::topic_name(&broker.core, &t.topic_id.to_string())
                        .unwrap_or_default()),
                })
                .collect::<Result<_, HandlerError>>()?,
        ),
    };
    // Before v4 a client could not say; Kafka creates topics for it then.
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    let cluster = metadata::cluster(&broker.core, ctx, &broker.this_broker());
    // Every topic, internal ones included (flagged `is_internal`), as Kafka lists them: a
    // client filters them itself (`exclude.internal.topics`, the admin clients' listings).
    let lookups = metadata::topics(&broker.core, ctx, names.as_deref(), allow_create, true).await;
    let brokers = cluster
        .brokers
        .iter()
        .filter_map(|b| {
            let (host, port) = host_port(broker.address_of(&b.endpoints)?)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.node_id))
                    .with_host(StrBytes::from_string(host.to_owned()))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    let topic_operations =
        version >= FIRST_TOPIC_OPERATIONS && req.include_topic_authorized_operations;
    let topics = lookups
        .into_iter()
        .map(|lookup| {
            let name = Some(TopicName(StrBytes::from_string(lookup.name.clone())));
            let described = match lookup.outcome {
                Ok(view) => topic(view),
                Err(e) => MetadataResponseTopic::default()
                    .with_name(name)
                    .with_error_code(error_code(&e)),
            };
            if topic_operations {
                described.with_topic_authorized_operations(authorized_operations(
                    broker,
                    ctx,
                    ResourceType::Topic,
                    &lookup.name,
                ))
            } else {
                described
            }
        })
        .collect();
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(cluster.cluster_id)))
        .with_controller_id(BrokerId(cluster.controller_id))
        .with_topics(topics);
    if CLUSTER_OPERATIONS.contains(&version) && req.include_cluster_authorized_operations {
        response = response.with_cluster_authorized_operations(cluster_operations(broker, ctx));
    }
    answer(ctx, request, response)
}

/// The operations the principal may do on the cluster, as Kafka's bit set.
fn cluster_operations(broker: &KafkaBroker, ctx: &RequestContext) -> i32 {
    authorized_operations(broker, ctx, ResourceType::Cluster, CLUSTER_RESOURCE_NAME)
}

fn topic(view: TopicView) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(view.name))))
        .with_topic_id(view.topic_id.parse().unwrap_or_default())
        .with_is_internal(view.internal)
        .with_partitions(view.partitions.into_iter().map(partition).collect())
}

fn partition(p: PartitionView) -> MetadataResponsePartition {
    let ids = |v: Vec<i32>| v.into_iter().map(BrokerId).collect();
    MetadataResponsePartition::default()
        // No leader right now (an election): clients wait and ask again.
        .with_error_code(if p.leader < 0 {
            ResponseError::LeaderNotAvailable.code()
        } else {
            0
        })
        .with_partition_index(p.partition as i32)
        .with_leader_id(BrokerId(p.leader))
        .with_leader_epoch(p.leader_epoch)
        .with_replica_nodes(ids(p.replicas))
        .with_isr_nodes(ids(p.isr))
        .with_offline_replicas(ids(p.offline))
}

/// Most partitions one DescribeTopicPartitions answer holds, whatever the request asks
/// (Kafka's `max.request.partition.size.limit` default): the rest come with the cursor.
const MAX_DESCRIBED_PARTITIONS: usize = 2000;

/// DescribeTopicPartitions (KIP-966): the topics named (none: every topic the principal
/// may describe), by name, each with its partitions as Metadata describes them, a page
/// at a time: at most `response_partition_limit` partitions (and
/// [`MAX_DESCRIBED_PARTITIONS`]) in all, starting at the request's cursor, with
/// `next_cursor` naming the first partition left out. Authorised per topic as Metadata
/// (TOPIC_AUTHORIZATION_FAILED for a named topic the principal may not describe);
/// topics are never created here. A cursor whose topic is not among those named, a
/// negative cursor partition or a limit below 1 is INVALID_REQUEST for every topic.
pub(super) async fn describe_topic_partitions(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DescribeTopicPartitionsRequest = request.decode_body()?;
    let mut names: Option<Vec<String>> =
        (!req.topics.is_empty()).then(|| req.topics.iter().map(|t| t.name.to_string()).collect());
    if let Some(names) = &mut names {
        names.sort();
        names.dedup();
    }
    let cursor = req
        .cursor
        .as_ref()
        .map(|c| (c.topic_name.to_string(), c.partition_index));
    let refused = match (&names, &cursor) {
        _ if req.response_partition_limit < 1 => {
            Some("response_partition_limit must be at least 1")
        }
        (_, Some((_, p))) if *p < 0 => Some("the cursor's partition index is negative"),
        (Some(names), Some((t, _))) if !names.contains(t) => {
            Some("the cursor's topic must be one of the topics asked for")
        }
        _ => None,
    };
    if let Some(message) = refused {
        let topics = names
            .unwrap_or_default()
            .into_iter()
            .map(|name| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name))))
                    .with_error_code(ResponseError::InvalidRequest.code())
            })
            .collect();
        tracing::debug!(message, "DescribeTopicPartitions refused");
        return answer(
            ctx,
            request,
            DescribeTopicPartitionsResponse::default().with_topics(topics),
        );
    }
    // The topics before the cursor's were answered on earlier pages.
    if let (Some(names), Some((first, _))) = (&mut names, &cursor) {
        names.retain(|n| n >= first);
    }
    let lookups = metadata::topics(&broker.core, ctx, names.as_deref(), false, false).await;
    let mut left = (req.response_partition_limit as usize).min(MAX_DESCRIBED_PARTITIONS);
    let mut topics = Vec::new();
    let mut next: Option<(String, i32)> = None;
    for lookup in lookups {
        if let Some((first, _)) = &cursor
            && lookup.name < *first
        {
            continue;
        }
        if left == 0 {
            next = Some((lookup.name, 0));
            break;
        }
        let view = match lookup.outcome {
            Ok(view) => view,
            Err(e) => {
                topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(lookup.name))))
                        .with_error_code(error_code(&e)),
                );
                continue;
            }
        };
        let start = match &cursor {
            Some((first, p)) if *first == view.name => *p as u32,
            _ => 0,
        };
        let mut partitions: Vec<PartitionView> = view
            .partitions
            .into_iter()
            .filter(|p| p.partition >= start)
            .collect();
        if partitions.len() > left {
            next = Some((view.name.clone(), partitions[left].partition as i32));
            partitions.truncate(left);
        }
        left -= partitions.len();
        let operations = authorized_operations(broker, ctx, ResourceType::Topic, &view.name);
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(view.name))))
                .with_topic_id(view.topic_id.parse().unwrap_or_default())
                .with_is_internal(view.internal)
                .with_topic_authorized_operations(operations)
                .with_partitions(partitions.into_iter().map(described_partition).collect()),
        );
        if next.is_some() {
            break;
        }
    }
    let next_cursor = next.map(|(topic, partition)| {
        PartitionCursor::default()
            .with_topic_name(TopicName(StrBytes::from_string(topic)))
            .with_partition_index(partition)
    });
    answer(
        ctx,
        request,
        DescribeTopicPartitionsResponse::default()
            .with_topics(topics)
            .with_next_cursor(next_cursor),
    )
}

/// A partition as DescribeTopicPartitions answers it: Metadata's fields, and empty
/// eligible-leader lists (Weir has no ELR: its ISR of last resort keeps one member).
fn described_partition(p: PartitionView) -> DescribeTopicPartitionsResponsePartition {
    let ids = |v: Vec<i32>| v.into_iter().map(BrokerId).collect();
    DescribeTopicPartitionsResponsePartition::default()
        .with_error_code(if p.leader < 0 {
            ResponseError::LeaderNotAvailable.code()
        } else {
            0
        })
        .with_partition_index(p.partition as i32)
        .with_leader_id(BrokerId(p.leader))
        .with_leader_epoch(p.leader_epoch)
        .with_replica_nodes(ids(p.replicas))
        .with_isr_nodes(ids(p.isr))
        .with_eligible_leader_replicas(Some(vec![]))
        .with_last_known_elr(Some(vec![]))
        .with_offline_replicas(ids(p.offline))
}

/// DescribeCluster v1+ names the endpoints asked for: brokers (1) or controllers (2).
const FIRST_ENDPOINT_TYPE: i16 = 1;
const ENDPOINT_BROKERS: i8 = 1;
/// DescribeCluster v2+ may ask for fenced brokers too, and says which are.
const FIRST_FENCED_DESCRIBE: i16 = 2;

pub(super) async fn describe_cluster(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DescribeClusterRequest = request.decode_body()?;
    let version = request.api_version;
    let mut response = DescribeClusterResponse::default();
    if version >= FIRST_ENDPOINT_TYPE {
        response = response.with_endpoint_type(req.endpoint_type);
        if req.endpoint_type != ENDPOINT_BROKERS {
            // Weir's controllers are brokers too, reached as brokers.
            return answer(
                ctx,
                request,
                response
                    .with_error_code(ResponseError::UnsupportedEndpointType.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "only broker endpoints (1) are served: the controllers are brokers",
                    ))),
            );
        }
    }
    if req.include_cluster_authorized_operations {
        response = response.with_cluster_authorized_operations(cluster_operations(broker, ctx));
    }
    let with_fenced = version >= FIRST_FENCED_DESCRIBE;
    let cluster = metadata::cluster(&broker.core, ctx, &broker.this_broker());
    let brokers = cluster
        .brokers
        .iter()
        // Kafka lists the brokers that are up, unless a v2 client asks for all.
        .filter(|b| !b.fenced || (with_fenced && req.include_fenced_brokers))
        .filter_map(|b| {
            let (host, port) = host_port(broker.address_of(&b.endpoints)?)?;
            let described = DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(host.to_owned()))
                .with_port(port)
                .with_rack(b.rack.clone().map(StrBytes::from_string));
            Some(if with_fenced {
                described.with_is_fenced(b.fenced)
            } else {
                described
            })
        })
        .collect();
    answer(
        ctx,
        request,
        response
            .with_cluster_id(StrBytes::from_string(cluster.cluster_id))
            .with_controller_id(BrokerId(cluster.controller_id))
            .with_brokers(brokers),
    )
}

/// DescribeLogDirs v3+ has a top-level error code (before, a refused request is answered
/// with no directories, as Kafka does).
const FIRST_TOP_LEVEL_ERROR_LOG_DIRS: i16 = 3;

/// DescribeLogDirs: this broker's one log directory (its data directory) with the
/// replicas asked for that it hosts, each one's bytes on disk and offset lag. The
/// volume's total and usable bytes (v4) are -1, Kafka's "unknown".
pub(super) async fn describe_log_dirs(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DescribeLogDirsRequest = request.decode_body()?;
    let named: Option<Vec<(String, Vec<u32>)>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| {
                // A negative index names no partition: none is hosted there.
                let parts = t
                    .partitions
                    .into_iter()
                    .filter_map(|p| u32::try_from(p).ok())
                    .collect();
                (t.topic.to_string(), parts)
            })
            .collect()
    });
    let response = match weir_broker::replicas::log_dir(&broker.core, ctx, named.as_deref()).await {
        Err(e) if request.api_version >= FIRST_TOP_LEVEL_ERROR_LOG_DIRS => {
            DescribeLogDirsResponse::default().with_error_code(error_code(&e))
        }
        Err(_) => DescribeLogDirsResponse::default(),
        Ok(dir) => DescribeLogDirsResponse::default().with_results(vec![
            DescribeLogDirsResult::default()
                .with_log_dir(StrBytes::from_string(dir.path))
                .with_topics(
                    dir.topics
                        .into_iter()
                        .map(|(name, replicas)| {
                            DescribeLogDirsTopic::default()
                                .with_name(TopicName(StrBytes::from_string(name)))
                                .with_partitions(
                                    replicas
                                        .into_iter()
                                        .map(|r| {
                                            DescribeLogDirsPartition::default()
                                                .with_partition_index(r.partition as i32)
                                                .with_partition_size(
                                                    i64::try_from(r.bytes).unwrap_or(i64::MAX),
                                                )
                                                .with_offset_lag(r.offset_lag)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
        ]),
    };
    answer(ctx, request, response)
}

/// AlterReplicaLogDirs: each replica named, to the directory named. Weir keeps a broker's
/// replicas in its one log directory, so a move to that directory is answered as Kafka
/// answers a move to the directory a replica is in (NONE, nothing moves), a replica this
/// broker does not host as Kafka does (REPLICA_NOT_AVAILABLE), and another directory as
/// one the broker does not have (LOG_DIR_NOT_FOUND). Without ALTER on the cluster every
/// partition is CLUSTER_AUTHORIZATION_FAILED.
pub(super) async fn alter_replica_log_dirs(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: AlterReplicaLogDirsRequest = request.decode_body()?;
    let mut results: Vec<AlterReplicaLogDirTopicResult> = Vec::new();
    for dir in &req.dirs {
        for t in &dir.topics {
            let partitions = t
                .partitions
                .iter()
                .map(|&p| {
                    let code = match u32::try_from(p) {
                        Err(_) => ResponseError::ReplicaNotAvailable.code(),
                        Ok(index) => match weir_broker::replicas::move_replica_dir(
                            &broker.core,
                            ctx,
                            &dir.path,
                            &t.name,
                            index,
                        ) {
                            Err(e) => error_code(&e),
                            Ok(ReplicaDirMove::AlreadyThere) => 0,
                            Ok(ReplicaDirMove::NotHosted) => {
                                ResponseError::ReplicaNotAvailable.code()
                            }
                            Ok(ReplicaDirMove::UnknownDir) => ResponseError::LogDirNotFound.code(),
                        },
                    };
                    AlterReplicaLogDirPartitionResult::default()
                        .with_partition_index(p)
                        .with_error_code(code)
                })
                .collect();
            results.push(
                AlterReplicaLogDirTopicResult::default()
                    .with_topic_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
    }
    answer(
        ctx,
        request,
        AlterReplicaLogDirsResponse::default().with_results(results),
    )
}

/// DescribeQuorum v2+ lists where each voter is reached (KIP-853).
const FIRST_NODES_DESCRIBE_QUORUM: i16 = 2;
/// The topic and partition of Kafka's metadata quorum, the one DescribeQuorum describes.
const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";

/// DescribeQuorum: Weir's metadata quorum (its Raft voters) as Kafka's
/// `__cluster_metadata` quorum, answered by its leader: the leader, its term as the
/// leader epoch, and each voter's log end and last acknowledgement as Raft indexes and
/// times, and (v2) each voter's internal address as its CONTROLLER listener. Offsets are
/// Raft indexes, not Kafka record offsets; observers (brokers that do not vote) are not
/// listed. Another topic or partition is UNKNOWN_TOPIC_OR_PARTITION; a
/// broker that does not lead the quorum answers NOT_LEADER_OR_FOLLOWER naming the leader
/// (Kafka's brokers forward the request to the controller instead).
pub(super) async fn describe_quorum(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DescribeQuorumRequest = request.decode_body()?;
    let quorum = metadata::quorum(&broker.core, ctx);
    if let Err(e) = &quorum
        && matches!(e.reason, weir_broker::Reason::NotAuthorized { .. })
    {
        return answer(
            ctx,
            request,
            DescribeQuorumResponse::default()
                .with_error_code(error_code(e))
                .with_error_message(Some(StrBytes::from_string(e.message.clone()))),
        );
    }
    // Only v2+ carries a partition's error message (an older version refuses to encode
    // one).
    let with_message = request.api_version >= FIRST_NODES_DESCRIBE_QUORUM;
    let text = |m: String| with_message.then(|| StrBytes::from_string(m));
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let is_metadata = t.topic_name.as_str() == CLUSTER_METADATA_TOPIC;
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let described =
                        QuorumPartition::default().with_partition_index(p.partition_index);
                    match &quorum {
                        _ if !is_metadata || p.partition_index != 0 => described
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(text(
                                "only __cluster_metadata partition 0 has a quorum".to_string(),
                            ))
                            .with_leader_id(BrokerId(-1)),
                        Err(e) => described
                            .with_error_code(error_code(e))
                            .with_error_message(text(e.message.clone()))
                            .with_leader_id(BrokerId(match e.reason {
                                weir_broker::Reason::NotLeader { leader } => leader,
                                _ => -1,
                            })),
                        Ok(q) => described
                            .with_leader_id(BrokerId(q.leader))
                            .with_leader_epoch(i32::try_from(q.term).unwrap_or(i32::MAX))
                            .with_high_watermark(q.high_watermark)
                            .with_current_voters(
                                q.voters
                                    .iter()
                                    .map(|v| {
                                        ReplicaState::default()
                                            .with_replica_id(BrokerId(v.node_id))
                                            .with_log_end_offset(v.log_end_offset)
                                            .with_last_fetch_timestamp(v.last_ack_ms.unwrap_or(-1))
                                            .with_last_caught_up_timestamp(
                                                v.last_ack_ms.unwrap_or(-1),
                                            )
                                    })
                                    .collect(),
                            ),
                    }
                })
                .collect();
            QuorumTopic::default()
                .with_topic_name(t.topic_name)
                .with_partitions(partitions)
        })
        .collect();
    let mut response = DescribeQuorumResponse::default().with_topics(topics);
    if request.api_version >= FIRST_NODES_DESCRIBE_QUORUM
        && let Ok(q) = &quorum
    {
        // Where each voter is reached: its internal address, as Kafka lists the
        // controllers' listeners.
        response = response.with_nodes(
            q.voters
                .iter()
                .map(|v| {
                    let listeners = host_port(&v.address)
                        .and_then(|(host, port)| Some((host, u16::try_from(port).ok()?)))
                        .map(|(host, port)| {
                            QuorumListener::default()
                                .with_name(StrBytes::from_static_str("CONTROLLER"))
                                .with_host(StrBytes::from_string(host.to_owned()))
                                .with_port(port)
                        });
                    QuorumNode::default()
                        .with_node_id(BrokerId(v.node_id))
                        .with_listeners(listeners.into_iter().collect())
                })
                .collect(),
        );
    }
    answer(ctx, request, response)
}
