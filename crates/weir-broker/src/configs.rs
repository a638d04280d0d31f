//! Configuration as clients see and change it: a topic's keys (set or default), changing
//! them (set and reset, replacing the whole set, or key by key with list values appended
//! to and subtracted from), and the broker's own settings under Kafka's names.
//!
//! Every change is validated as a whole before anything is sent to the controller
//! (`TopicConfig::altered`), so a request either changes every key it names or none.

use std::collections::{BTreeMap, BTreeSet};
use weir_cluster::security::Operation;

use weir_cluster::broker_configs::{DYNAMIC_KEYS, check_change, dynamic_key};
use weir_cluster::config::{
    CLEANUP_POLICY, DELETE_RETENTION_MS, MAX_MESSAGE_BYTES, MESSAGE_TIMESTAMP_TYPE,
    MIN_INSYNC_REPLICAS, RETENTION_BYTES, RETENTION_MS, SEGMENT_BYTES, SEGMENT_MS,
    UNCLEAN_LEADER_ELECTION_ENABLE,
};
use weir_cluster::{CONFIG_KEYS, ClusterError, ConfigError};
pub use weir_cluster::{ConfigEntry, ConfigType};

use crate::{Broker, BrokerError, Reason, RequestContext};

/// Topic keys whose value is a comma-separated list: [`ConfigChange::Append`] and
/// [`ConfigChange::Subtract`] change them item by item.
pub const LIST_KEYS: &[&str] = &[CLEANUP_POLICY];

/// Most keys one change may name (more than every key a topic has, twice over).
pub const MAX_CONFIG_CHANGES: usize = 2 * CONFIG_KEYS.len() + 16;

/// One key's change in [`incremental_alter_topic_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Set the key to this value.
    Set(String),
    /// Back to the default.
    Reset,
    /// Add these comma-separated items to a list value (those it lacks, in order).
    Append(String),
    /// Remove these comma-separated items from a list value.
    Subtract(String),
}

/// Every key of topic `name` with its value in effect, whether it is the default, and
/// what it does, sorted by name.
pub fn describe_topic_config(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
) -> Result<Vec<ConfigEntry>, BrokerError> {
    Ok(broker
        .topic_for(ctx, Operation::DescribeConfigs, name)?
        .config()
        .entries())
}

/// Sets the keys in `set` and resets those in `reset` to their defaults, all or nothing;
/// returns every key after the change. `validate_only`: checks the change and makes
/// none (the keys returned are what the change would give).
pub async fn alter_topic_config(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    set: &BTreeMap<String, String>,
    reset: &[String],
    validate_only: bool,
) -> Result<Vec<ConfigEntry>, BrokerError> {
    check_count(set.len() + reset.len())?;
    let topic = broker.topic_for(ctx, Operation::AlterConfigs, name)?;
    if validate_only {
        let target = topic
            .config()
            .altered(set, reset)
            .map_err(ClusterError::from)?;
        return Ok(target.entries());
    }
    let config = broker
        .registry()
        .alter_topic_config(name, set, reset)
        .await?;
    Ok(config.entries())
}

/// Replaces the keys set on topic `name` with `configs` (Kafka's AlterConfigs): a key set
/// now and absent from `configs` goes back to its default.
pub async fn replace_topic_config(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    configs: &BTreeMap<String, String>,
    validate_only: bool,
) -> Result<Vec<ConfigEntry>, BrokerError> {
    check_count(configs.len())?;
    let current = broker
        .topic_for(ctx, Operation::AlterConfigs, name)?
        .config();
    let reset: Vec<String> = current
        .overrides()
        .keys()
        .filter(|k| !configs.contains_key(*k))
        .cloned()
        .collect();
    alter_topic_config(broker, ctx, name, configs, &reset, validate_only).await
}

/// Applies `changes` to topic `name` (Kafka's IncrementalAlterConfigs), all or nothing;
/// each key at most once. Appending to or subtracting from a key that is not a list
/// ([`LIST_KEYS`]) is refused as an invalid request.
pub async fn incremental_alter_topic_config(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    changes: &[(String, ConfigChange)],
    validate_only: bool,
) -> Result<Vec<ConfigEntry>, BrokerError> {
    check_count(changes.len())?;
    let mut named = BTreeSet::new();
    for (key, _) in changes {
        if !named.insert(key.as_str()) {
            return Err(BrokerError::invalid(format!(
                "{key} is named twice in one change; name each key once"
            )));
        }
    }
    let entries = broker
        .topic_for(ctx, Operation::AlterConfigs, name)?
        .config()
        .entries();
    let mut set = BTreeMap::new();
    let mut reset = Vec::new();
    for (key, change) in changes {
        match change {
            ConfigChange::Set(value) => {
                set.insert(key.clone(), value.clone());
            }
            ConfigChange::Reset => reset.push(key.clone()),
            ConfigChange::Append(items) | ConfigChange::Subtract(items) => {
                let Some(entry) = entries.iter().find(|e| e.name == key) else {
                    return Err(ClusterError::from(ConfigError::UnknownKey(key.clone())).into());
                };
                if !LIST_KEYS.contains(&key.as_str()) {
                    return Err(BrokerError::invalid(format!(
                        "{key} is not a list: only {} can be appended to or subtracted from; \
                         set it instead",
                        LIST_KEYS.join(", ")
                    )));
                }
                let mut list = list_items(&entry.value);
                let given = list_items(items);
                match change {
                    ConfigChange::Append(_) => {
                        for item in given {
                            if !list.contains(&item) {
                                list.push(item);
                            }
                        }
                    }
                    _ => list.retain(|item| !given.contains(item)),
                }
                set.insert(key.clone(), list.join(","));
            }
        }
    }
    alter_topic_config(broker, ctx, name, &set, &reset, validate_only).await
}

fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn check_count(keys: usize) -> Result<(), BrokerError> {
    if keys > MAX_CONFIG_CHANGES {
        return Err(BrokerError::invalid(format!(
            "a config change names {keys} keys; at most {MAX_CONFIG_CHANGES} are accepted"
        )));
    }
    Ok(())
}

/// One broker setting, under Kafka's name for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    pub name: &'static str,
    pub value: String,
    pub documentation: &'static str,
    /// Where its value comes from (Kafka's config source).
    pub source: BrokerConfigSource,
}

/// Where a broker setting's value comes from, as Kafka's DescribeConfigs says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerConfigSource {
    /// A `weir serve` setting, read at start: read-only while the broker runs.
    Static,
    /// A dynamic key set on this broker (`weir_cluster::broker_configs`).
    DynamicBroker,
    /// A dynamic key set as the cluster's default.
    DynamicDefault,
    /// A dynamic key set nowhere: Kafka's default.
    Default,
}

impl BrokerConfigSource {
    /// Whether AlterConfigs can change it.
    pub fn read_only(self) -> bool {
        self == BrokerConfigSource::Static
    }
}

/// This broker's Kafka listeners as Kafka's `listeners` and `advertised.listeners` write
/// them: `NAME://host:port` joined by commas (PLAINTEXT, or SSL with TLS, for the Kafka
/// listener; EXTERNAL for the external one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaListeners {
    /// The addresses bound.
    pub listeners: String,
    /// The addresses clients are told.
    pub advertised: String,
}

/// AlterConfigs (`replace`: keys not named are removed) or IncrementalAlterConfigs on
/// broker `resource` (this broker's id, or empty for the cluster's default): each key
/// named is judged on its own. Kafka's dynamic keys Weir accepts
/// (`weir_cluster::broker_configs::DYNAMIC_KEYS`) are checked by type and replicated in
/// the metadata log; every other broker setting Weir has is static (a `weir serve`
/// flag, read at start) and refused as read-only, naming where it is set, and a key Weir
/// does not have is refused as unknown. One refused key refuses the resource, all
/// INVALID_CONFIG, as Kafka answers a key it cannot update.
pub async fn alter_broker_configs(
    broker: &Broker,
    ctx: &RequestContext,
    resource: &str,
    changes: &[(String, Option<String>)],
    replace: bool,
    validate_only: bool,
) -> Result<(), BrokerError> {
    broker.authorize_cluster(ctx, Operation::AlterConfigs)?;
    check_count(changes.len())?;
    let target = broker_resource(broker, resource)?;
    let known = broker_configs(broker, ctx, resource)?;
    let mut refused = Vec::new();
    for (key, value) in changes {
        if dynamic_key(key).is_some() {
            if let Err(e) = check_change(key, value.as_deref()) {
                refused.push(e.to_string());
            }
            continue;
        }
        match known.iter().find(|c| c.name == key.as_str()) {
            Some(c) => refused.push(format!(
                "{key} is read-only: a static setting ({})",
                c.documentation.trim_end_matches('.')
            )),
            None => refused.push(format!("{key} is not a broker config Weir has")),
        }
    }
    if !refused.is_empty() {
        return Err(BrokerError::new(
            Reason::InvalidConfig,
            format!(
                "cannot update these broker configs while the broker runs: {}",
                refused.join("; ")
            ),
        ));
    }
    if validate_only {
        return Ok(());
    }
    Ok(broker
        .registry()
        .cluster()
        .alter_broker_configs(target, changes.to_vec(), replace)
        .await?)
}

/// The broker a BROKER resource names: this broker (its id), or `None` for the cluster's
/// default (an empty name). A broker answers for itself only, as Kafka does: another
/// broker's id is an invalid request naming the broker to ask.
fn broker_resource(broker: &Broker, resource: &str) -> Result<Option<i32>, BrokerError> {
    if resource.is_empty() {
        return Ok(None);
    }
    let me = broker.node_id();
    match resource.parse::<i32>() {
        Ok(id) if id == me => Ok(Some(id)),
        Ok(id) => Err(BrokerError::invalid(format!(
            "this is broker {me}: ask broker {id} for its configs (or name no broker for the \
             cluster's defaults)"
        ))),
        Err(_) => Err(BrokerError::invalid(format!(
            "{resource:?} is not a broker id"
        ))),
    }
}

/// Kafka's broker-level names of the topic keys' defaults (`log.retention.ms` is the
/// default of `retention.ms`, ...): what clients read to learn what a new topic gets.
const TOPIC_DEFAULT_NAMES: &[(&str, &str)] = &[
    ("log.cleaner.delete.retention.ms", DELETE_RETENTION_MS),
    ("log.cleanup.policy", CLEANUP_POLICY),
    ("log.message.timestamp.type", MESSAGE_TIMESTAMP_TYPE),
    ("log.retention.bytes", RETENTION_BYTES),
    ("log.retention.ms", RETENTION_MS),
    ("log.roll.ms", SEGMENT_MS),
    ("log.segment.bytes", SEGMENT_BYTES),
    ("message.max.bytes", MAX_MESSAGE_BYTES),
    ("min.insync.replicas", MIN_INSYNC_REPLICAS),
    (
        "unclean.leader.election.enable",
        UNCLEAN_LEADER_ELECTION_ENABLE,
    ),
];

/// The settings of broker `resource` (its node id, or empty for the cluster's defaults)
/// that clients read (a topic's defaults, creation on first use, this broker's id),
/// under Kafka's names, sorted by name. They are static: set when the broker starts.
/// A broker answers for itself only, as Kafka does: another broker's id is an invalid
/// request naming the broker to ask.
pub fn broker_configs(
    broker: &Broker,
    ctx: &RequestContext,
    resource: &str,
) -> Result<Vec<BrokerConfig>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::DescribeConfigs)?;
    let target = broker_resource(broker, resource)?;
    let me = broker.node_id();
    let defaults = broker.topic_defaults();
    let listeners = broker.kafka_listeners();
    let mut configs = vec![
        BrokerConfig {
            source: BrokerConfigSource::Static,
            name: "auto.create.topics.enable",
            value: defaults.auto_create.to_string(),
            documentation: "Create a topic that a client produces to or asks metadata of when \
                it does not exist (weir serve --auto-create-topics).",
        },
        BrokerConfig {
            source: BrokerConfigSource::Static,
            name: "broker.id",
            value: me.to_string(),
            documentation: "This broker's node id (weir serve --node-id).",
        },
        BrokerConfig {
            source: BrokerConfigSource::Static,
            name: "default.replication.factor",
            value: defaults.replication_factor.to_string(),
            documentation: "Replicas of a topic created on first use or without a \
                replication factor (weir serve --default-replication-factor).",
        },
        BrokerConfig {
            source: BrokerConfigSource::Static,
            name: "listeners",
            value: listeners.listeners,
            documentation: "The addresses this broker's Kafka listeners are bound to \
                (weir serve --kafka-listen, --kafka-external-listen).",
        },
        BrokerConfig {
            source: BrokerConfigSource::Static,
            name: "advertised.listeners",
            value: listeners.advertised,
            documentation: "The addresses clients are told to reach this broker's Kafka \
                listeners at (weir serve --kafka-advertise, --kafka-external-advertise).",
        },
        BrokerConfig {
            source: BrokerConfigSource::Static,
            name: "log.dirs",
            value: broker.registry().data_dir().display().to_string(),
            documentation: "The directory every replica's log of this broker is kept in \
                (weir serve --data-dir): one per broker.",
        },
        BrokerConfig {
            source: BrokerConfigSource::Static,
            name: "socket.request.max.bytes",
            value: broker.max_request_bytes().to_string(),
            documentation: "The largest request the broker reads (max_request_bytes).",
        },
        BrokerConfig {
            source: BrokerConfigSource::Static,
            name: "node.id",
            value: me.to_string(),
            documentation: "This broker's node id (weir serve --node-id).",
        },
        BrokerConfig {
            source: BrokerConfigSource::Static,
            name: "num.partitions",
            value: defaults.num_partitions.to_string(),
            documentation: "Partitions of a topic created on first use or without a count \
                (weir serve --num-partitions).",
        },
    ];
    for &(kafka_name, key) in TOPIC_DEFAULT_NAMES {
        let key = CONFIG_KEYS
            .iter()
            .find(|k| k.name == key)
            .expect("every topic default names a topic key");
        configs.push(BrokerConfig {
            source: BrokerConfigSource::Static,
            name: kafka_name,
            value: key.default.to_owned(),
            documentation: key.documentation,
        });
    }
    configs.extend(dynamic_configs(broker, target));
    configs.sort_by_key(|c| c.name);
    Ok(configs)
}

/// Every dynamic key Weir accepts, with the value that holds for broker `target`
/// (`None`: the cluster's default): set on the broker, else as the default, else Kafka's.
fn dynamic_configs(broker: &Broker, target: Option<i32>) -> Vec<BrokerConfig> {
    let image = broker.registry().cluster().image();
    let own = target.and_then(|id| image.broker_configs(Some(id)));
    let default = image.broker_configs(None);
    DYNAMIC_KEYS
        .iter()
        .map(|key| {
            let (value, source) = match (
                own.and_then(|c| c.get(key.name)),
                default.and_then(|c| c.get(key.name)),
            ) {
                (Some(v), _) => (v.clone(), BrokerConfigSource::DynamicBroker),
                (None, Some(v)) => (v.clone(), BrokerConfigSource::DynamicDefault),
                (None, None) => (key.default.to_owned(), BrokerConfigSource::Default),
            };
            BrokerConfig {
                name: key.name,
                value,
                documentation: key.documentation,
                source,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_items_trim_and_drop_empties() {
        assert_eq!(list_items("compact, delete,,"), ["compact", "delete"]);
        assert!(list_items("").is_empty());
    }

    #[test]
    fn every_topic_default_names_a_topic_key_once() {
        let mut seen = BTreeSet::new();
        for (kafka_name, key) in TOPIC_DEFAULT_NAMES {
            assert!(CONFIG_KEYS.iter().any(|k| k.name == *key), "{key}");
            assert!(seen.insert(*kafka_name), "{kafka_name} twice");
        }
    }
}
