//! A share group's settings as configs, under Kafka's group-config names (KIP-932): what
//! Kafka's admin clients describe and alter on a GROUP resource. They are the same
//! settings `weir queue configure` and the gRPC ConfigureShareGroup set; this module only
//! names them, parses their values and merges a change into the group's settings, at
//! whichever broker coordinates the group.
//!
//! The dead-letter topic and the header filter have no Kafka group config; they keep
//! what the group has through any change made here.

use std::collections::BTreeMap;

use crate::configs::{ConfigEntry, ConfigType};

use crate::configs::ConfigChange;
use crate::shares::{self, GroupSettings, ShareStart};
use crate::{Broker, BrokerError, Reason, RequestContext};

/// Where the group starts on a partition it has no state for: `latest` or `earliest`.
pub const AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
/// How long a member holds a record it acquired, in ms.
pub const LOCK_DURATION_MS: &str = "share.record.lock.duration.ms";
/// Deliveries after which a record is archived.
pub const DELIVERY_COUNT_LIMIT: &str = "share.delivery.count.limit";

/// Every config of share group `group_id`, as a topic's are described, (the broker's defaults for a group that has no
/// state yet), sorted by name.
pub async fn describe(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<Vec<ConfigEntry>, BrokerError> {
    let (settings, lock_ms, limit) = current(broker, ctx, group_id).await?;
    Ok(vec![
        ConfigEntry {
            name: AUTO_OFFSET_RESET,
            value: start_name(settings.start.unwrap_or_default()).to_owned(),
            is_default: settings.start.is_none(),
            kind: ConfigType::String,
            honoured: true,
            documentation: "Where the share group starts on a partition it has no state for: latest (records produced from now on) or earliest (the log start).",
        },
        ConfigEntry {
            name: DELIVERY_COUNT_LIMIT,
            value: limit.to_string(),
            is_default: settings.delivery_count_limit.is_none(),
            kind: ConfigType::Int,
            honoured: true,
            documentation: "Deliveries after which a record is archived (and copied to the group's dead-letter topic, if it has one) instead of delivered again.",
        },
        ConfigEntry {
            name: LOCK_DURATION_MS,
            value: lock_ms.to_string(),
            is_default: settings.lock_duration_ms.is_none(),
            kind: ConfigType::Int,
            honoured: true,
            documentation: "How long a member holds a record it acquired before the record goes to another member, in ms.",
        },
    ])
}

/// Applies `changes` (SET or DELETE; a key once) to the group's settings, all or
/// nothing; with `validate_only`, checks them and changes nothing.
pub async fn incremental_alter(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    changes: &[(String, ConfigChange)],
    validate_only: bool,
) -> Result<(), BrokerError> {
    let (mut settings, _, _) = current(broker, ctx, group_id).await?;
    let mut seen = Vec::new();
    for (name, change) in changes {
        if seen.contains(name) {
            return Err(invalid(format!(
                "{name} is named twice in one change; name each key once"
            )));
        }
        seen.push(name.clone());
        match change {
            ConfigChange::Set(value) => set(&mut settings, name, value)?,
            ConfigChange::Reset => reset(&mut settings, name)?,
            ConfigChange::Append(_) | ConfigChange::Subtract(_) => {
                return Err(BrokerError::invalid(format!(
                    "{name} is not a list: APPEND and SUBTRACT do not apply"
                )));
            }
        }
    }
    store(broker, ctx, group_id, settings, validate_only).await
}

/// Replaces the group's configs with `set` (a key left out goes back to its default),
/// all or nothing.
pub async fn replace(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    set_to: &BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), BrokerError> {
    let (mut settings, _, _) = current(broker, ctx, group_id).await?;
    for name in [AUTO_OFFSET_RESET, LOCK_DURATION_MS, DELIVERY_COUNT_LIMIT] {
        reset(&mut settings, name)?;
    }
    for (name, value) in set_to {
        set(&mut settings, name, value)?;
    }
    store(broker, ctx, group_id, settings, validate_only).await
}

fn start_name(start: ShareStart) -> &'static str {
    match start {
        ShareStart::Latest => "latest",
        ShareStart::Earliest => "earliest",
    }
}

fn invalid(message: String) -> BrokerError {
    BrokerError::new(Reason::InvalidConfig, message)
}

fn set(settings: &mut GroupSettings, name: &str, value: &str) -> Result<(), BrokerError> {
    match name {
        AUTO_OFFSET_RESET => {
            settings.start = Some(match value {
                "latest" => ShareStart::Latest,
                "earliest" => ShareStart::Earliest,
                other => {
                    return Err(invalid(format!(
                        "{AUTO_OFFSET_RESET} is latest or earliest, not {other:?}"
                    )));
                }
            });
        }
        LOCK_DURATION_MS => {
            settings.lock_duration_ms = Some(value.parse().map_err(|_| {
                invalid(format!(
                    "{LOCK_DURATION_MS} is a number of ms, not {value:?}"
                ))
            })?);
        }
        DELIVERY_COUNT_LIMIT => {
            settings.delivery_count_limit = Some(value.parse().map_err(|_| {
                invalid(format!(
                    "{DELIVERY_COUNT_LIMIT} is a number of deliveries, not {value:?}"
                ))
            })?);
        }
        other => return Err(unknown_key(other)),
    }
    settings.validate().map_err(invalid)
}

fn reset(settings: &mut GroupSettings, name: &str) -> Result<(), BrokerError> {
    match name {
        AUTO_OFFSET_RESET => settings.start = None,
        LOCK_DURATION_MS => settings.lock_duration_ms = None,
        DELIVERY_COUNT_LIMIT => settings.delivery_count_limit = None,
        other => return Err(unknown_key(other)),
    }
    Ok(())
}

fn unknown_key(name: &str) -> BrokerError {
    invalid(format!(
        "{name} is not a group config; they are {}",
        crate::group_configs::GROUP_KEYS.join(", ")
    ))
}

/// The group's settings (defaults for a group without state) and the lock duration and
/// delivery limit it runs with.
async fn current(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<(GroupSettings, u64, u16), BrokerError> {
    let coordinator = shares::find_coordinator(broker, ctx, group_id)?;
    let found = if coordinator.node_id != broker.node_id() {
        broker
            .share_forwarder()?
            .settings(&coordinator, group_id)
            .await?
    } else {
        shares::settings(broker, ctx, group_id).await?
    };
    // A group without state runs with the broker's defaults (every broker has the same
    // ones unless their configs differ).
    if let Some(found) = found {
        return Ok(found);
    }
    let defaults = broker.shares()?.config().partition;
    Ok((
        GroupSettings::default(),
        defaults.lock_duration_ms,
        defaults.delivery_count_limit,
    ))
}

/// Writes `settings` at the group's coordinator, keeping its filter.
async fn store(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    settings: GroupSettings,
    validate_only: bool,
) -> Result<(), BrokerError> {
    settings.validate().map_err(invalid)?;
    if validate_only {
        return Ok(());
    }
    let coordinator = shares::find_coordinator(broker, ctx, group_id)?;
    if coordinator.node_id != broker.node_id() {
        return broker
            .share_forwarder()?
            .configure(&coordinator, group_id, settings)
            .await;
    }
    shares::configure(broker, ctx, group_id, settings, true)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_parsed_and_bounded_and_unknown_keys_refused() {
        let mut s = GroupSettings::default();
        set(&mut s, AUTO_OFFSET_RESET, "earliest").unwrap();
        set(&mut s, LOCK_DURATION_MS, "60000").unwrap();
        set(&mut s, DELIVERY_COUNT_LIMIT, "3").unwrap();
        assert_eq!(s.start, Some(ShareStart::Earliest));
        assert_eq!(s.lock_duration_ms, Some(60_000));
        assert_eq!(s.delivery_count_limit, Some(3));
        for (key, bad) in [
            (AUTO_OFFSET_RESET, "by_duration:PT1H"),
            (LOCK_DURATION_MS, "soon"),
            (LOCK_DURATION_MS, "0"),
            (DELIVERY_COUNT_LIMIT, "0"),
            (DELIVERY_COUNT_LIMIT, "-1"),
        ] {
            let e = set(&mut s.clone(), key, bad).unwrap_err();
            assert_eq!(e.reason, Reason::InvalidConfig, "{key}={bad}");
        }
        assert_eq!(
            set(&mut s, "share.isolation.level", "read_committed")
                .unwrap_err()
                .reason,
            Reason::InvalidConfig
        );
        reset(&mut s, AUTO_OFFSET_RESET).unwrap();
        assert_eq!(s.start, None);
    }
}
