//! A group's configs as Kafka's admin clients see them on a GROUP resource (KIP-848 and
//! KIP-932 group configs): the consumer-group keys `consumer.session.timeout.ms` and
//! `consumer.heartbeat.interval.ms`, kept in the metadata log
//! (`weir_cluster::controller::group_configs`) and honoured by the consumer group
//! coordinator, and the share-group keys ([`share_configs`]), kept by the share
//! coordinator. DescribeConfigs lists both; IncrementalAlterConfigs and AlterConfigs send
//! each key to its owner, after checking every key of the change, so a bad key or value
//! changes nothing.
//!
//! Any broker answers the consumer-group keys, as in Kafka 4 (Java's admin sends them to
//! the least-loaded broker, librdkafka to any): DescribeConfigs reads this broker's
//! metadata image, and a change goes to the active controller, which checks the group's
//! resulting settings against this broker's coordinator bounds and writes them; the
//! group's coordinator tells the members at their next heartbeat. A change is answered
//! once committed; another broker's image has it within a metadata propagation (Kafka's
//! configs are as eventually consistent). A group's configs outlive its deletion.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_cluster::controller::group_configs::GroupConfigBounds;
use weir_cluster::group::{
    CONSUMER_HEARTBEAT_INTERVAL_MS, CONSUMER_SESSION_TIMEOUT_MS, GroupConfig, GroupOverrides,
};

use crate::configs::{ConfigChange, ConfigEntry, ConfigType};
use crate::{Broker, BrokerError, Reason, RequestContext, share_configs};
use weir_cluster::security::Operation;

/// Every config key of a group, as DescribeConfigs lists them (sorted).
pub const GROUP_KEYS: &[&str] = &[
    CONSUMER_HEARTBEAT_INTERVAL_MS,
    CONSUMER_SESSION_TIMEOUT_MS,
    share_configs::AUTO_OFFSET_RESET,
    share_configs::DELIVERY_COUNT_LIMIT,
    share_configs::LOCK_DURATION_MS,
];

/// Most keys one change of a group's configs may name (every key, twice over).
pub const MAX_GROUP_CONFIG_CHANGES: usize = 2 * GROUP_KEYS.len();

fn is_consumer_key(name: &str) -> bool {
    name == CONSUMER_SESSION_TIMEOUT_MS || name == CONSUMER_HEARTBEAT_INTERVAL_MS
}

fn invalid(message: String) -> BrokerError {
    BrokerError::new(Reason::InvalidConfig, message)
}

/// Every config of group `group_id` (consumer and share keys), sorted by name: the
/// group's own values, or the broker's defaults (`is_default`).
pub async fn describe(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<Vec<ConfigEntry>, BrokerError> {
    broker.authorize_group(ctx, Operation::DescribeConfigs, group_id)?;
    // Any broker: the metadata image has them, the group's coordinator or not.
    let coordinator = broker.groups()?;
    let own = coordinator.group_overrides(group_id)?;
    let mut entries = consumer_entries(own, coordinator.config());
    entries.extend(share_configs::describe(broker, ctx, group_id).await?);
    entries.sort_by_key(|e| e.name);
    Ok(entries)
}

fn consumer_entries(own: GroupOverrides, config: &GroupConfig) -> Vec<ConfigEntry> {
    let effective = own.apply(config);
    let ms = |d: Duration| d.as_millis().to_string();
    vec![
        ConfigEntry {
            name: CONSUMER_HEARTBEAT_INTERVAL_MS,
            value: ms(effective.heartbeat_interval),
            is_default: own.heartbeat_interval.is_none(),
            kind: ConfigType::Int,
            honoured: true,
            documentation: "The heartbeat interval the group's members (KIP-848 consumers) are told while they hold their assignment, in ms.",
        },
        ConfigEntry {
            name: CONSUMER_SESSION_TIMEOUT_MS,
            value: ms(effective.session_timeout),
            is_default: own.session_timeout.is_none(),
            kind: ConfigType::Int,
            honoured: true,
            documentation: "How long the coordinator waits for a heartbeat of one of the group's members (KIP-848 consumers) before it removes the member and gives its partitions to the others, in ms.",
        },
    ]
}

/// Applies `changes` (SET or DELETE; a key once) to the group's configs, all or nothing
/// (every key is checked before any is applied); with `validate_only`, checks them and
/// changes nothing.
pub async fn incremental_alter(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    changes: &[(String, ConfigChange)],
    validate_only: bool,
) -> Result<(), BrokerError> {
    check_count(changes.len())?;
    let (consumer, share): (Vec<_>, Vec<_>) = changes
        .iter()
        .cloned()
        .partition(|(name, _)| is_consumer_key(name));
    let overrides = if consumer.is_empty() {
        None
    } else {
        broker.authorize_group(ctx, Operation::AlterConfigs, group_id)?;
        let coordinator = broker.groups()?;
        let mut own = coordinator.group_overrides(group_id)?;
        let mut seen = Vec::new();
        for (name, change) in &consumer {
            if seen.contains(&name) {
                return Err(invalid(format!(
                    "{name} is named twice in one change; name each key once"
                )));
            }
            seen.push(name);
            match change {
                ConfigChange::Set(value) => set(&mut own, name, value)?,
                ConfigChange::Reset => reset(&mut own, name),
                ConfigChange::Append(_) | ConfigChange::Subtract(_) => {
                    return Err(BrokerError::invalid(format!(
                        "{name} is not a list: APPEND and SUBTRACT do not apply"
                    )));
                }
            }
        }
        own.validate(coordinator.config()).map_err(invalid)?;
        // What the controller is sent: each named key's value in its plain form, or
        // removed.
        let changes: Vec<(String, Option<String>)> = consumer
            .iter()
            .map(|(name, _)| (name.clone(), own.to_configs().get(name).cloned()))
            .collect();
        Some(changes)
    };
    if !share.is_empty() {
        // Checked in full before the consumer keys are written.
        share_configs::incremental_alter(broker, ctx, group_id, &share, true).await?;
    }
    if validate_only {
        return Ok(());
    }
    if let Some(changes) = overrides {
        store(broker, group_id, changes, false).await?;
    }
    if !share.is_empty() {
        share_configs::incremental_alter(broker, ctx, group_id, &share, false).await?;
    }
    Ok(())
}

/// Replaces the group's configs with `set_to` (a key left out goes back to its default),
/// all or nothing.
pub async fn replace(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    set_to: &BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), BrokerError> {
    if set_to.len() > MAX_GROUP_CONFIG_CHANGES {
        return check_count(set_to.len());
    }
    broker.authorize_group(ctx, Operation::AlterConfigs, group_id)?;
    let coordinator = broker.groups()?;
    let mut own = GroupOverrides::default();
    let mut share = BTreeMap::new();
    for (name, value) in set_to {
        if is_consumer_key(name) {
            set(&mut own, name, value)?;
        } else {
            share.insert(name.clone(), value.clone());
        }
    }
    own.validate(coordinator.config()).map_err(invalid)?;
    // A group whose share keys are all at their defaults and stay so is left alone: a
    // consumer group gets no share-group state from a change of its consumer keys.
    let share_unchanged = share.is_empty()
        && share_configs::describe(broker, ctx, group_id)
            .await?
            .iter()
            .all(|e| e.is_default);
    if !share_unchanged {
        share_configs::replace(broker, ctx, group_id, &share, true).await?;
    }
    if validate_only {
        return Ok(());
    }
    let changes = own.to_configs().into_iter().map(|(k, v)| (k, Some(v)));
    store(broker, group_id, changes.collect(), true).await?;
    if !share_unchanged {
        share_configs::replace(broker, ctx, group_id, &share, false).await?;
    }
    Ok(())
}

fn check_count(count: usize) -> Result<(), BrokerError> {
    if count > MAX_GROUP_CONFIG_CHANGES {
        return Err(BrokerError::invalid(format!(
            "a change of a group's configs names {count} keys; at most \
             {MAX_GROUP_CONFIG_CHANGES} are accepted"
        )));
    }
    Ok(())
}

/// Writes the group's consumer-group settings in the metadata log (through the active
/// controller, which checks the group's resulting settings against this broker's
/// coordinator bounds, so a concurrent change cannot leave them inconsistent): each key
/// of `changes` set or removed; with `replace`, every other key removed.
async fn store(
    broker: &Broker,
    group_id: &str,
    changes: Vec<(String, Option<String>)>,
    replace: bool,
) -> Result<(), BrokerError> {
    let bounds = GroupConfigBounds::of(broker.groups()?.config());
    Ok(broker
        .registry()
        .cluster()
        .alter_group_configs(group_id, changes, replace, bounds)
        .await?)
}

/// Sets one consumer-group key from its text (a whole number of ms, as Kafka's INT).
fn set(own: &mut GroupOverrides, name: &str, value: &str) -> Result<(), BrokerError> {
    let parsed = GroupOverrides::from_configs([(name, value)]).map_err(invalid)?;
    match name {
        CONSUMER_SESSION_TIMEOUT_MS => own.session_timeout = parsed.session_timeout,
        CONSUMER_HEARTBEAT_INTERVAL_MS => own.heartbeat_interval = parsed.heartbeat_interval,
        other => unreachable!("{other} is not a consumer-group key (checked by the caller)"),
    }
    Ok(())
}

fn reset(own: &mut GroupOverrides, name: &str) {
    match name {
        CONSUMER_SESSION_TIMEOUT_MS => own.session_timeout = None,
        CONSUMER_HEARTBEAT_INTERVAL_MS => own.heartbeat_interval = None,
        other => unreachable!("{other} is not a consumer-group key (checked by the caller)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_whole_positive_ms_and_checked_together() {
        let config = GroupConfig::default();
        let mut own = GroupOverrides::default();
        set(&mut own, CONSUMER_SESSION_TIMEOUT_MS, "50000").unwrap();
        set(&mut own, CONSUMER_HEARTBEAT_INTERVAL_MS, " 2000 ").unwrap();
        assert_eq!(own.session_timeout, Some(Duration::from_secs(50)));
        assert_eq!(own.heartbeat_interval, Some(Duration::from_secs(2)));
        own.validate(&config).unwrap();
        for bad in ["0", "-5", "1.5", "soon", "", "2147483648"] {
            let e = set(&mut own.clone(), CONSUMER_SESSION_TIMEOUT_MS, bad).unwrap_err();
            assert_eq!(e.reason, Reason::InvalidConfig, "{bad:?}");
            assert!(
                e.message.contains(CONSUMER_SESSION_TIMEOUT_MS),
                "{}",
                e.message
            );
        }
        reset(&mut own, CONSUMER_SESSION_TIMEOUT_MS);
        assert_eq!(own.session_timeout, None);
        // The described values: the group's own, else the broker's, marked default.
        let entries = consumer_entries(own, &config);
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.name, e.value.as_str(), e.is_default))
                .collect::<Vec<_>>(),
            [
                (CONSUMER_HEARTBEAT_INTERVAL_MS, "2000", false),
                (CONSUMER_SESSION_TIMEOUT_MS, "45000", true),
            ]
        );
    }
}
