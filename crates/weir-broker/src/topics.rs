//! Topics: create, delete and grow them, move their replicas (reassignments), and create
//! one on first use where the broker is configured to (Kafka's
//! `auto.create.topics.enable`), for every protocol alike.

use std::collections::BTreeMap;
use std::sync::Arc;
use weir_cluster::security::Operation;

pub use weir_cluster::controller::elect_leaders::{
    ElectionKind, ElectionRefusal, ElectionResult, MAX_ELECTIONS_PER_REQUEST,
};
pub use weir_cluster::controller::{MAX_MOVES_PER_REQUEST, PartitionMove};
use weir_cluster::node::refusal;
use weir_cluster::{
    BrokerId, ClusterError, INTERNAL_TOPIC_PREFIX, MAX_PARTITIONS_PER_TOPIC, Topic, is_internal,
};

use crate::{Broker, BrokerError, Reason, RequestContext};

/// What a topic created on first use, or without a partition count or replication
/// factor, gets (Kafka's `auto.create.topics.enable`, `num.partitions`,
/// `default.replication.factor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicDefaults {
    /// Create a topic a client produces to, fetches from or asks metadata for when it
    /// does not exist.
    pub auto_create: bool,
    pub num_partitions: u32,
    pub replication_factor: u32,
}

impl Default for TopicDefaults {
    /// Kafka's defaults: on, 1 partition, 1 replica.
    fn default() -> TopicDefaults {
        TopicDefaults {
            auto_create: true,
            num_partitions: 1,
            replication_factor: 1,
        }
    }
}

/// Internal topics (`__` prefix, like `__consumer_offsets`) belong to the broker: `what`
/// (e.g. "deleted") is refused for them.
pub fn refuse_internal(name: &str, what: &str) -> Result<(), BrokerError> {
    if is_internal(name) {
        return Err(BrokerError::invalid(format!(
            "topic {name} cannot be {what}: names starting with {INTERNAL_TOPIC_PREFIX} are \
             reserved for the broker's internal topics"
        )));
    }
    Ok(())
}

/// Creates `name`. A partition count or replication factor of 0 takes the broker's
/// default.
pub async fn create_topic(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    partitions: u32,
    replication_factor: u32,
    configs: BTreeMap<String, String>,
) -> Result<Arc<Topic>, BrokerError> {
    authorize_create(broker, ctx, name)?;
    refuse_internal(name, "created")?;
    let (partitions, replication_factor) = resolve_defaults(broker, partitions, replication_factor);
    Ok(broker
        .registry()
        .create_topic(name, partitions, replication_factor, configs)
        .await?)
}

/// Creates `name` with its replicas where the caller placed them (Kafka's CreateTopics
/// with `assignments`): partition `i` on `assignments[i]`, the preferred leader first.
/// The controller checks them as Kafka does (INVALID_REPLICA_ASSIGNMENT).
pub async fn create_topic_assigned(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    assignments: Vec<Vec<BrokerId>>,
    configs: BTreeMap<String, String>,
) -> Result<Arc<Topic>, BrokerError> {
    authorize_create(broker, ctx, name)?;
    refuse_internal(name, "created")?;
    Ok(broker
        .registry()
        .create_topic_assigned(name, assignments, configs)
        .await?)
}

/// A manual assignment as Kafka's CreateTopics sends it (each partition's index and
/// replicas, in any order) as the replicas of partitions `0..n`: every partition from 0
/// listed once, none beyond (INVALID_REPLICA_ASSIGNMENT otherwise, as Kafka answers).
pub fn assignments_by_index(
    listed: Vec<(i32, Vec<BrokerId>)>,
) -> Result<Vec<Vec<BrokerId>>, BrokerError> {
    let invalid = |message: String| BrokerError::new(Reason::InvalidReplicaAssignment, message);
    let count = listed.len();
    let mut by_index: BTreeMap<i32, Vec<BrokerId>> = BTreeMap::new();
    for (index, replicas) in listed {
        if by_index.insert(index, replicas).is_some() {
            return Err(invalid(format!("partition {index} is assigned twice")));
        }
    }
    if by_index.keys().copied().ne(0..count as i32) {
        return Err(invalid(format!(
            "the {count} partitions assigned must be numbered 0 to {}, each once; got {:?}",
            count as i64 - 1,
            by_index.keys().collect::<Vec<_>>()
        )));
    }
    Ok(by_index.into_values().collect())
}

/// As [`validate_create`], for a topic placed by `assignments`.
pub fn validate_create_assigned(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    assignments: &[Vec<BrokerId>],
    configs: BTreeMap<String, String>,
) -> Result<(), BrokerError> {
    authorize_create(broker, ctx, name)?;
    refuse_internal(name, "created")?;
    broker
        .registry()
        .cluster()
        .image()
        .check_assigned_topic(name, assignments, configs)
        .map_err(|e| BrokerError::from(refusal(e)))?;
    Ok(())
}

/// Whether the request may create the topic `name`: Create on the cluster, or on the
/// topic (a literal or prefixed ACL), as in Kafka.
pub fn authorize_create(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
) -> Result<(), BrokerError> {
    broker.authorize_cluster_or_topic(ctx, Operation::Create, Operation::Create, name)
}

/// Whether the request could create `name` now, changing nothing (Kafka's
/// `validate_only`): authorised first, as [`create_topic`] is, so a principal that may
/// not create it learns nothing of which topics exist; then the controller's own checks
/// against this broker's metadata (name, partitions, replicas, configs, name taken).
pub fn validate_create(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    partitions: u32,
    replication_factor: u32,
    configs: BTreeMap<String, String>,
) -> Result<(), BrokerError> {
    authorize_create(broker, ctx, name)?;
    refuse_internal(name, "created")?;
    let (partitions, replication_factor) = resolve_defaults(broker, partitions, replication_factor);
    broker
        .registry()
        .cluster()
        .image()
        .check_new_topic(name, partitions, replication_factor, configs)
        .map_err(|e| BrokerError::from(refusal(e)))?;
    Ok(())
}

/// A partition count or replication factor of 0 is the broker's default.
fn resolve_defaults(broker: &Broker, partitions: u32, replication_factor: u32) -> (u32, u32) {
    let defaults = broker.topic_defaults();
    let or_default = |n: u32, default: u32| if n == 0 { default } else { n };
    (
        or_default(partitions, defaults.num_partitions),
        or_default(replication_factor, defaults.replication_factor),
    )
}

/// Deletes `name` and its records.
pub async fn delete_topic(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
) -> Result<(), BrokerError> {
    broker.authorize_topic(ctx, Operation::Delete, name)?;
    refuse_internal(name, "deleted")?;
    broker.registry().delete_topic(name).await?;
    broker.metrics().forget_topic(name);
    Ok(())
}

/// Grows `name` to `count` partitions. Internal topics are refused: the coordinator of a
/// group is found by hashing over the partition count of `__consumer_offsets`, so
/// growing it would move every group.
pub async fn create_partitions(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    count: u32,
) -> Result<Arc<Topic>, BrokerError> {
    check_partition_count(broker, ctx, name, count)?;
    Ok(broker.registry().create_partitions(name, count).await?)
}

/// Grows `name` to `count` partitions placed by `assignments`, one per new partition
/// (Kafka's CreatePartitions with `assignments`); with `validate_only`, checks and changes
/// nothing. The count is checked first (INVALID_PARTITIONS), then that there is one
/// assignment per new partition and the controller's checks of each
/// (INVALID_REPLICA_ASSIGNMENT), as Kafka orders them.
pub async fn create_partitions_assigned(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    count: u32,
    assignments: Vec<Vec<BrokerId>>,
    validate_only: bool,
) -> Result<(), BrokerError> {
    let topic = check_partition_count(broker, ctx, name, count)?;
    let current = topic.partition_count();
    let adding = (count - current) as usize;
    if assignments.len() != adding {
        return Err(BrokerError::new(
            Reason::InvalidReplicaAssignment,
            format!(
                "topic {name} grows by {adding} partition(s) to {count}, but {} assignment(s) \
                 were given: one per new partition",
                assignments.len()
            ),
        ));
    }
    if validate_only {
        let image = broker.registry().cluster().image();
        let rf = image.topic(name).map(|t| t.replication_factor());
        image
            .check_assignment(name, current, &assignments, rf)
            .map_err(|e| BrokerError::from(refusal(e)))?;
        return Ok(());
    }
    broker
        .registry()
        .create_partitions_assigned(name, current, assignments)
        .await?;
    Ok(())
}

/// Moves replicas of partitions of `name` (`docs/replication.md` § Reassignment), all or
/// none: each move's target (the preferred leader first), or `None` to cancel the
/// reassignment in progress. Moving replicas is the cluster's business, as in Kafka:
/// ALTER on the cluster. At most [`MAX_MOVES_PER_REQUEST`] moves.
pub async fn reassign_partitions(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    moves: Vec<PartitionMove>,
    throttle_bytes_per_sec: Option<u64>,
) -> Result<Arc<Topic>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::Alter)?;
    if moves.len() > MAX_MOVES_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "{} partitions in one reassignment; at most {MAX_MOVES_PER_REQUEST}",
            moves.len()
        )));
    }
    broker
        .registry()
        .reassign_partitions(name, moves, throttle_bytes_per_sec)
        .await?;
    Ok(broker.registry().topic(name)?)
}

/// Elects leaders of the partitions named, by topic (`None`: every partition, answering
/// only those whose election was needed): `kind` preferred (each partition's first
/// replica, when it is in sync and may lead) or unclean (for a partition without a
/// leader, any replica that may lead). Each partition is answered on its own. Choosing
/// leaders is the cluster's business, as in Kafka: ALTER on the cluster. At most
/// [`MAX_ELECTIONS_PER_REQUEST`] partitions.
pub async fn elect_leaders(
    broker: &Broker,
    ctx: &RequestContext,
    kind: ElectionKind,
    partitions: Option<Vec<(String, Vec<u32>)>>,
) -> Result<Vec<ElectionResult>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::Alter)?;
    let asked: usize = partitions
        .iter()
        .flatten()
        .map(|(_, parts)| parts.len())
        .sum();
    if asked > MAX_ELECTIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "{asked} partitions in one election; at most {MAX_ELECTIONS_PER_REQUEST}"
        )));
    }
    Ok(broker.registry().elect_leaders(kind, partitions).await?)
}

/// A partition's reassignment in progress: its replicas (the target's, then those
/// leaving), the target's replicas not yet in it, and those leaving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignmentView {
    pub topic: String,
    pub partition: u32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// The reassignments in progress, by topic then partition: of the partitions named
/// (those not moving, or not existing, are left out, as in Kafka), or of every topic.
/// DESCRIBE on the cluster, as Kafka asks.
pub fn list_reassignments(
    broker: &Broker,
    ctx: &RequestContext,
    named: Option<&[(String, Vec<u32>)]>,
) -> Result<Vec<ReassignmentView>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::Describe)?;
    let image = broker.registry().cluster().image();
    let view = |topic: &str, partition: u32| -> Option<ReassignmentView> {
        let reg = image.topic(topic)?.partitions.get(partition as usize)?;
        let moving = reg.reassignment.as_ref()?;
        Some(ReassignmentView {
            topic: topic.to_string(),
            partition,
            replicas: reg.replicas.clone(),
            adding: moving.adding.clone(),
            removing: moving.removing.clone(),
        })
    };
    Ok(match named {
        Some(named) => named
            .iter()
            .flat_map(|(t, parts)| parts.iter().filter_map(|p| view(t, *p)))
            .collect(),
        None => {
            let mut all: Vec<ReassignmentView> = image
                .topics()
                .flat_map(|t| (0..t.partitions.len() as u32).filter_map(|p| view(&t.name, p)))
                .collect();
            all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            all
        }
    })
}

/// Whether `name` could grow to `count` partitions now (Kafka's `validate_only`): not an
/// internal topic, and more partitions than it has, within the broker's limit
/// (INVALID_PARTITIONS otherwise). The controller checks again when it grows the topic.
pub fn check_partition_count(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    count: u32,
) -> Result<Arc<Topic>, BrokerError> {
    refuse_internal(name, "given more partitions")?;
    let topic = broker.topic_for(ctx, Operation::Alter, name)?;
    let current = topic.partition_count();
    if count <= current {
        return Err(BrokerError::new(
            Reason::InvalidPartitions,
            format!(
                "topic {name} has {current} partitions; the new count {count} must be larger \
                 (partitions are never removed)"
            ),
        ));
    }
    if count > MAX_PARTITIONS_PER_TOPIC {
        return Err(BrokerError::new(
            Reason::InvalidPartitions,
            format!(
                "{count} partitions is more than a topic may have ({MAX_PARTITIONS_PER_TOPIC})"
            ),
        ));
    }
    Ok(topic)
}

/// The topic `name` for a client that uses it: created with the defaults if it does not
/// exist and the broker creates topics on first use (a race with another creator is
/// fine: whoever wins, the topic exists). UNKNOWN_TOPIC otherwise, as for a principal
/// that may not create it.
pub async fn topic_or_create(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
) -> Result<Arc<Topic>, BrokerError> {
    match broker.registry().topic(name) {
        Ok(topic) => Ok(topic),
        Err(ClusterError::UnknownTopic(_))
            if broker.topic_defaults().auto_create
                && !is_internal(name)
                && authorize_create(broker, ctx, name).is_ok() =>
        {
            match create_topic(broker, ctx, name, 0, 0, BTreeMap::new()).await {
                Ok(topic) => {
                    tracing::info!(topic = name, "created on first use");
                    Ok(topic)
                }
                Err(e) if e.reason == Reason::TopicAlreadyExists => {
                    // Another request created it first; wait for this broker to see it.
                    broker.registry().wait_current().await;
                    Ok(broker.registry().topic(name)?)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e.into()),
    }
}
