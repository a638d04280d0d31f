//! Consumer group configs in the metadata log: Kafka's group configs
//! `consumer.session.timeout.ms` and `consumer.heartbeat.interval.ms` (KIP-848), one
//! `MetadataRecord::GroupConfigChanged` per key, as Kafka 4 keeps them in `ConfigRecord`s
//! of resource type GROUP. Every broker answers DescribeConfigs on a group from its image
//! ([`MetadataImage::group_configs`]), and the group's coordinator tells the members the
//! values at their next heartbeat (`crate::group::GroupCoordinator`).
//!
//! The active controller checks a change as a whole against the image it applies to, so
//! two changes at once cannot leave a group with a heartbeat interval at or above its
//! session timeout: the merged settings are checked against the coordinator bounds the
//! asking broker sends ([`GroupConfigBounds`]; every broker runs the same group settings,
//! and the asking broker has checked the same change against its image before asking).
//!
//! A group's configs outlive the group: they may be set before it has members or offsets,
//! and a deletion of the group (DeleteGroups, offsets retention) leaves them, as
//! metadata of the group id rather than of the group's state
//! (`docs/consumer-groups.md` § Group configs). Removing each key removes them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::image::MetadataImage;
use super::records::MetadataRecord;
use super::requests::{ControllerError, ControllerReply, Outcome};
use crate::error::ConfigError;
use weir_coordinator::group::{
    CONSUMER_HEARTBEAT_INTERVAL_MS, CONSUMER_SESSION_TIMEOUT_MS, GroupConfig, GroupOverrides,
    validate_group_id,
};

/// Most changes one request may name (each consumer group key, twice over: more is a
/// request no admin client sends).
pub const MAX_GROUP_CONFIG_CHANGES: usize = 4;

/// The coordinator settings a group's own are checked against (the asking broker's
/// [`GroupConfig`]), in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupConfigBounds {
    pub session_timeout_ms: u64,
    pub min_session_timeout_ms: u64,
    pub max_session_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub min_heartbeat_interval_ms: u64,
    pub max_heartbeat_interval_ms: u64,
}

impl GroupConfigBounds {
    /// The bounds of `config`.
    pub fn of(config: &GroupConfig) -> GroupConfigBounds {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        GroupConfigBounds {
            session_timeout_ms: ms(config.session_timeout),
            min_session_timeout_ms: ms(config.min_session_timeout),
            max_session_timeout_ms: ms(config.max_session_timeout),
            heartbeat_interval_ms: ms(config.heartbeat_interval),
            min_heartbeat_interval_ms: ms(config.min_heartbeat_interval),
            max_heartbeat_interval_ms: ms(config.max_heartbeat_interval),
        }
    }

    /// A coordinator configuration with these bounds (the rest is irrelevant to
    /// [`GroupOverrides::validate`]).
    fn config(&self) -> GroupConfig {
        let ms = Duration::from_millis;
        GroupConfig {
            session_timeout: ms(self.session_timeout_ms),
            min_session_timeout: ms(self.min_session_timeout_ms),
            max_session_timeout: ms(self.max_session_timeout_ms),
            heartbeat_interval: ms(self.heartbeat_interval_ms),
            min_heartbeat_interval: ms(self.min_heartbeat_interval_ms),
            max_heartbeat_interval: ms(self.max_heartbeat_interval_ms),
            ..GroupConfig::default()
        }
    }
}

/// The settings of group `group` as `image` has them (none set: all `None`). A value the
/// controller did not write (it checks every one) reads as unset.
pub fn group_overrides(image: &MetadataImage, group: &str) -> GroupOverrides {
    let Some(configs) = image.group_configs(group) else {
        return GroupOverrides::default();
    };
    GroupOverrides::from_configs(configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .unwrap_or_else(|reason| {
            tracing::error!(group, reason, "a group config in the metadata is not valid");
            GroupOverrides::default()
        })
}

fn refused(reason: String) -> ControllerError {
    ControllerError::InvalidConfig(ConfigError::Group(reason))
}

/// Changes the configs of group `group`: each key set to its value or removed (`None`);
/// with `replace`, the keys set now and not named are removed. The settings that result
/// are checked as a whole (keys, values, `bounds`) before anything is written; only the
/// keys that change are written, each value in its plain form (`" 500 "` is `500`).
pub(super) fn alter_group_configs(
    image: &MetadataImage,
    group: String,
    changes: Vec<(String, Option<String>)>,
    replace: bool,
    bounds: &GroupConfigBounds,
) -> Result<Outcome, ControllerError> {
    validate_group_id(&group).map_err(|e| refused(e.to_string()))?;
    if changes.len() > MAX_GROUP_CONFIG_CHANGES {
        return Err(refused(format!(
            "{} group config changes in one request; at most {MAX_GROUP_CONFIG_CHANGES} are \
             accepted",
            changes.len()
        )));
    }
    let current = image.group_configs(&group).cloned().unwrap_or_default();
    let mut wanted = if replace {
        Default::default()
    } else {
        current.clone()
    };
    for (key, value) in &changes {
        if key != CONSUMER_SESSION_TIMEOUT_MS && key != CONSUMER_HEARTBEAT_INTERVAL_MS {
            return Err(refused(format!("{key} is not a consumer group config")));
        }
        match value {
            Some(value) => wanted.insert(key.clone(), value.clone()),
            None => wanted.remove(key),
        };
    }
    let own = GroupOverrides::from_configs(wanted.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(refused)?;
    own.validate(&bounds.config()).map_err(refused)?;
    let wanted = own.to_configs();
    let mut records = Vec::new();
    for key in current.keys().filter(|k| !wanted.contains_key(*k)) {
        records.push(MetadataRecord::GroupConfigChanged {
            group: group.clone(),
            key: key.clone(),
            value: None,
        });
    }
    for (key, value) in wanted {
        if current.get(&key) != Some(&value) {
            records.push(MetadataRecord::GroupConfigChanged {
                group: group.clone(),
                key,
                value: Some(value),
            });
        }
    }
    Ok(Outcome {
        records,
        reply: ControllerReply::GroupConfigsAltered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::controller::test_support::{apply_outcome as apply, empty_image as image};

    fn set(key: &str, value: &str) -> (String, Option<String>) {
        (key.to_string(), Some(value.to_string()))
    }

    fn bounds() -> GroupConfigBounds {
        GroupConfigBounds::of(&GroupConfig::default())
    }

    #[test]
    fn group_configs_are_checked_merged_written_and_kept_in_a_snapshot() {
        let mut image = image();
        let alter = |image: &MetadataImage, changes, replace| {
            alter_group_configs(image, "g".into(), changes, replace, &bounds())
        };
        let outcome = alter(
            &image,
            vec![set(CONSUMER_SESSION_TIMEOUT_MS, " 50000 ")],
            false,
        )
        .unwrap();
        assert_eq!(
            outcome.records,
            [MetadataRecord::GroupConfigChanged {
                group: "g".into(),
                key: CONSUMER_SESSION_TIMEOUT_MS.into(),
                value: Some("50000".into()),
            }]
        );
        // A record type of level 3: written only once every broker reads that level.
        assert_eq!(outcome.records[0].level(), 3);
        assert_eq!(outcome.reply, ControllerReply::GroupConfigsAltered);
        apply(&mut image, &outcome);
        assert_eq!(
            group_overrides(&image, "g").session_timeout,
            Some(Duration::from_secs(50))
        );
        assert_eq!(group_overrides(&image, "other"), GroupOverrides::default());
        // An incremental change keeps what it does not name; the same value again writes
        // nothing.
        let outcome = alter(
            &image,
            vec![
                set(CONSUMER_HEARTBEAT_INTERVAL_MS, "2000"),
                set(CONSUMER_SESSION_TIMEOUT_MS, "50000"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(outcome.records.len(), 1, "{:?}", outcome.records);
        apply(&mut image, &outcome);
        let configs = image.group_configs("g").unwrap();
        assert_eq!(configs[CONSUMER_SESSION_TIMEOUT_MS], "50000");
        assert_eq!(configs[CONSUMER_HEARTBEAT_INTERVAL_MS], "2000");

        // One bad key or value, or settings that do not fit together with what is set,
        // refuse the whole change.
        for (bad, why) in [
            (
                vec![
                    set(CONSUMER_HEARTBEAT_INTERVAL_MS, "3000"),
                    set("share.record.lock.duration.ms", "1000"),
                ],
                "not a consumer group config",
            ),
            (
                vec![set(CONSUMER_SESSION_TIMEOUT_MS, "0")],
                "whole number of ms",
            ),
            (
                vec![set(CONSUMER_SESSION_TIMEOUT_MS, "61000")],
                "group.consumer.max.session.timeout.ms (60000)",
            ),
            // 1.5 s is within the bounds, but not above the group's 2 s interval.
            (
                vec![set(CONSUMER_SESSION_TIMEOUT_MS, "1500")],
                "must be greater than consumer.heartbeat.interval.ms (2000)",
            ),
        ] {
            let e = alter(&image, bad, false).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        assert!(
            alter_group_configs(&image, String::new(), vec![], false, &bounds()).is_err(),
            "a group id is not empty"
        );
        let too_many = vec![set(CONSUMER_SESSION_TIMEOUT_MS, "50000"); 5];
        assert!(alter(&image, too_many, false).is_err());

        // Kept in a snapshot, and a snapshot without any is what older brokers wrote.
        let json = serde_json::to_string(&image).unwrap();
        assert!(json.contains("group_configs"), "{json}");
        let back: MetadataImage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, image);
        assert_eq!(back.group_configs("g"), image.group_configs("g"));
        let empty = serde_json::to_string(&self::image()).unwrap();
        assert!(!empty.contains("group_configs"), "{empty}");

        // AlterConfigs replaces: a key left out is removed; removing the last forgets
        // the group.
        let outcome = alter(
            &image,
            vec![set(CONSUMER_HEARTBEAT_INTERVAL_MS, "4000")],
            true,
        )
        .unwrap();
        apply(&mut image, &outcome);
        let configs = image.group_configs("g").unwrap();
        assert_eq!(configs.len(), 1, "{configs:?}");
        assert_eq!(configs[CONSUMER_HEARTBEAT_INTERVAL_MS], "4000");
        let outcome = alter(
            &image,
            vec![(CONSUMER_HEARTBEAT_INTERVAL_MS.into(), None)],
            false,
        )
        .unwrap();
        apply(&mut image, &outcome);
        assert!(image.group_configs("g").is_none());
        assert_eq!(group_overrides(&image, "g"), GroupOverrides::default());
    }

    /// The record as the metadata log stores it (serde_json of the record): this text is
    /// what every broker of this level reads, so it must not change.
    #[test]
    fn the_group_config_record_keeps_its_stored_form() {
        const STORED: &str = r#"{"GroupConfigChanged":{"group":"orders","key":"consumer.session.timeout.ms","value":"50000"}}"#;
        let record = MetadataRecord::GroupConfigChanged {
            group: "orders".into(),
            key: CONSUMER_SESSION_TIMEOUT_MS.into(),
            value: Some("50000".into()),
        };
        assert_eq!(serde_json::to_string(&record).unwrap(), STORED);
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(STORED).unwrap(),
            record
        );
    }
}
