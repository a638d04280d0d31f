//! The group coordinator's settings ([`GroupConfig`], their defaults and limits) and a
//! group's own overrides of them ([`GroupOverrides`], Kafka's group configs).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{DEFAULT_OFFSETS_PARTITIONS, GroupError, MAX_OFFSETS_PARTITIONS};

/// Settings of the group coordinator.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Partitions of `__consumer_offsets` if the coordinator creates it.
    pub offsets_partitions: u32,
    /// Session timeout of members that do not ask for one.
    pub session_timeout: Duration,
    /// Shortest session timeout a member may ask for.
    pub min_session_timeout: Duration,
    /// Longest session timeout a member may ask for.
    pub max_session_timeout: Duration,
    /// How often members heartbeat when nothing is moving (a member whose session
    /// timeout is shorter than three intervals is told a third of its timeout instead).
    pub heartbeat_interval: Duration,
    /// Shortest heartbeat interval a group's own `consumer.heartbeat.interval.ms` may
    /// set (Kafka's `group.consumer.min.heartbeat.interval.ms`).
    pub min_heartbeat_interval: Duration,
    /// Longest heartbeat interval a group's own `consumer.heartbeat.interval.ms` may set
    /// (Kafka's `group.consumer.max.heartbeat.interval.ms`).
    pub max_heartbeat_interval: Duration,
    /// How often a member heartbeats while it must release partitions or waits for
    /// partitions another member is releasing, and during `join_window`.
    pub pending_heartbeat_interval: Duration,
    /// After a member joins, every member of the group is told
    /// `pending_heartbeat_interval` for this long, settled or not: members that join
    /// together (a deployment starting several consumers) then hear of each other
    /// within that interval instead of a full `heartbeat_interval`, in which the first
    /// to join would hold every partition while the others wait.
    pub join_window: Duration,
    /// How long a member may keep partitions it was asked to release before it is
    /// removed from the group (Kafka's rebalance timeout), so a member that heartbeats
    /// but never releases cannot hold partitions forever.
    pub rebalance_timeout: Duration,
    /// How often the expiry task checks sessions and topic changes.
    pub expiry_check_interval: Duration,
    /// Most members in one group.
    pub max_members_per_group: usize,
    /// Most groups on this coordinator.
    pub max_groups: usize,
    /// How long a group must have been empty (no members, no commit) before its
    /// committed offsets, and then the group, are deleted (Kafka's
    /// `offsets.retention.minutes`, KIP-211). A group with members keeps its offsets.
    pub offsets_retention: Duration,
    /// How often the expiry task looks for groups past `offsets_retention` (Kafka's
    /// `offsets.retention.check.interval.ms`); never more often than
    /// `expiry_check_interval`.
    pub offsets_retention_check_interval: Duration,
    /// How long the first join phase of an empty classic group waits for more members,
    /// and waits again while they keep coming, up to the rebalance timeout (Kafka's
    /// `group.initial.rebalance.delay.ms`): consumers started together share the first
    /// generation instead of rebalancing once per member. Zero: no wait.
    pub initial_rebalance_delay: Duration,
}

/// Default session timeout (Kafka's `group.consumer.session.timeout.ms`).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// Default shortest session timeout a member may ask for.
pub const DEFAULT_MIN_SESSION_TIMEOUT: Duration = Duration::from_secs(1);
/// Default longest session timeout a member may ask for.
pub const DEFAULT_MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// Default shortest heartbeat interval a group may set for itself (Kafka's is 5 s, above
/// Weir's default interval; each heartbeat is cheap here).
pub const DEFAULT_MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Default longest heartbeat interval a group may set for itself (Kafka's
/// `group.consumer.max.heartbeat.interval.ms`).
pub const DEFAULT_MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// Default heartbeat interval while partitions are moving.
pub const DEFAULT_PENDING_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
/// Default join window: consumers started together join within a fraction of a second
/// of each other; each join restarts the window. At most 10 heartbeats per member per
/// second for that long.
pub const DEFAULT_JOIN_WINDOW: Duration = Duration::from_secs(1);
/// Default rebalance timeout (Kafka's `max.poll.interval.ms` default).
pub const DEFAULT_REBALANCE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default interval of the expiry task.
pub const DEFAULT_EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Default most members per group.
pub const DEFAULT_MAX_MEMBERS_PER_GROUP: usize = 1000;
/// Default most groups per coordinator.
pub const DEFAULT_MAX_GROUPS: usize = 100_000;
/// Default offsets retention of empty groups: 7 days (Kafka's default).
pub const DEFAULT_OFFSETS_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Default period of the offsets retention check: 10 minutes (Kafka's default).
pub const DEFAULT_OFFSETS_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(600);
/// Default initial rebalance delay of classic groups: 3 s (Kafka's default).
pub const DEFAULT_INITIAL_REBALANCE_DELAY: Duration = Duration::from_secs(3);

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_partitions: DEFAULT_OFFSETS_PARTITIONS,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            min_session_timeout: DEFAULT_MIN_SESSION_TIMEOUT,
            max_session_timeout: DEFAULT_MAX_SESSION_TIMEOUT,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            min_heartbeat_interval: DEFAULT_MIN_HEARTBEAT_INTERVAL,
            max_heartbeat_interval: DEFAULT_MAX_HEARTBEAT_INTERVAL,
            pending_heartbeat_interval: DEFAULT_PENDING_HEARTBEAT_INTERVAL,
            join_window: DEFAULT_JOIN_WINDOW,
            rebalance_timeout: DEFAULT_REBALANCE_TIMEOUT,
            expiry_check_interval: DEFAULT_EXPIRY_CHECK_INTERVAL,
            max_members_per_group: DEFAULT_MAX_MEMBERS_PER_GROUP,
            max_groups: DEFAULT_MAX_GROUPS,
            offsets_retention: DEFAULT_OFFSETS_RETENTION,
            offsets_retention_check_interval: DEFAULT_OFFSETS_RETENTION_CHECK_INTERVAL,
            initial_rebalance_delay: DEFAULT_INITIAL_REBALANCE_DELAY,
        }
    }
}

impl GroupConfig {
    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), GroupError> {
        let bad = |why: String| Err(GroupError::InvalidRequest(why));
        if !(1..=MAX_OFFSETS_PARTITIONS).contains(&self.offsets_partitions) {
            return bad(format!(
                "offsets_partitions {} is outside 1..={MAX_OFFSETS_PARTITIONS}",
                self.offsets_partitions
            ));
        }
        if self.min_session_timeout > self.max_session_timeout
            || !(self.min_session_timeout..=self.max_session_timeout)
                .contains(&self.session_timeout)
        {
            return bad(format!(
                "session timeouts must satisfy min <= default <= max (got {:?} <= {:?} <= {:?})",
                self.min_session_timeout, self.session_timeout, self.max_session_timeout
            ));
        }
        if self.heartbeat_interval.is_zero()
            || self.pending_heartbeat_interval.is_zero()
            || self.heartbeat_interval >= self.session_timeout
            || self.pending_heartbeat_interval > self.heartbeat_interval
        {
            return bad(format!(
                "heartbeat intervals must be above zero, pending <= heartbeat < session timeout \
                 (got {:?}, {:?}, {:?})",
                self.pending_heartbeat_interval, self.heartbeat_interval, self.session_timeout
            ));
        }
        // The bounds are a group's own interval's (the default may be outside them:
        // tests run with short ones).
        if self.min_heartbeat_interval.is_zero()
            || self.min_heartbeat_interval > self.max_heartbeat_interval
        {
            return bad(format!(
                "a group's heartbeat interval bounds must satisfy 0 < min <= max (got {:?} and \
                 {:?})",
                self.min_heartbeat_interval, self.max_heartbeat_interval
            ));
        }
        if self.expiry_check_interval.is_zero()
            || self.rebalance_timeout.is_zero()
            || self.max_members_per_group == 0
            || self.max_groups == 0
        {
            return bad(
                "expiry_check_interval, rebalance_timeout, max_members_per_group and max_groups \
                 must be above zero"
                    .to_string(),
            );
        }
        if self.offsets_retention.is_zero() || self.offsets_retention_check_interval.is_zero() {
            return bad(format!(
                "offsets_retention and offsets_retention_check_interval must be above zero \
                 (got {:?}, {:?})",
                self.offsets_retention, self.offsets_retention_check_interval
            ));
        }
        Ok(())
    }
}

/// Kafka's name of a consumer group's own session timeout (a group config, KIP-848).
pub const CONSUMER_SESSION_TIMEOUT_MS: &str = "consumer.session.timeout.ms";
/// Kafka's name of a consumer group's own heartbeat interval (a group config, KIP-848).
pub const CONSUMER_HEARTBEAT_INTERVAL_MS: &str = "consumer.heartbeat.interval.ms";

/// A consumer group's own settings, over the coordinator's ([`GroupConfig`]): Kafka's
/// group configs `consumer.session.timeout.ms` and `consumer.heartbeat.interval.ms`.
/// The shell keeps them (weir-cluster: in the metadata log, as text by key:
/// [`GroupOverrides::from_configs`], [`GroupOverrides::to_configs`]) and passes them with
/// each heartbeat. `None`: the coordinator's setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupOverrides {
    /// The session timeout of the group's members that ask for none (every Kafka
    /// member: ConsumerGroupHeartbeat carries none).
    pub session_timeout: Option<Duration>,
    /// The heartbeat interval the group's members are told while settled.
    pub heartbeat_interval: Option<Duration>,
}

impl GroupOverrides {
    /// Whether the group sets nothing of its own.
    pub fn is_empty(&self) -> bool {
        self.session_timeout.is_none() && self.heartbeat_interval.is_none()
    }

    /// The settings as config text (a whole number of ms) by Kafka's key; a key left to
    /// the coordinator is absent.
    pub fn to_configs(&self) -> BTreeMap<String, String> {
        [
            (CONSUMER_SESSION_TIMEOUT_MS, self.session_timeout),
            (CONSUMER_HEARTBEAT_INTERVAL_MS, self.heartbeat_interval),
        ]
        .into_iter()
        .filter_map(|(key, d)| Some((key.to_string(), d?.as_millis().to_string())))
        .collect()
    }

    /// The settings of config text by Kafka's key (each value a whole number of ms from
    /// 1 to `i32::MAX`, Kafka's INT; surrounding blanks ignored). A key that is not one
    /// of the consumer group keys is refused; the message names the key (and value).
    pub fn from_configs<'a>(
        configs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<GroupOverrides, String> {
        let mut own = GroupOverrides::default();
        for (key, value) in configs {
            let ms: u32 = value
                .trim()
                .parse()
                .ok()
                .filter(|ms| *ms >= 1 && i32::try_from(*ms).is_ok())
                .ok_or_else(|| {
                    format!(
                        "{key} is a whole number of ms from 1 to {}, not {value:?}",
                        i32::MAX
                    )
                })?;
            let d = Some(Duration::from_millis(u64::from(ms)));
            match key {
                CONSUMER_SESSION_TIMEOUT_MS => own.session_timeout = d,
                CONSUMER_HEARTBEAT_INTERVAL_MS => own.heartbeat_interval = d,
                other => return Err(format!("{other} is not a consumer group config")),
            }
        }
        Ok(own)
    }

    /// The coordinator's settings with the group's own in their place.
    pub fn apply(&self, config: &GroupConfig) -> GroupConfig {
        GroupConfig {
            session_timeout: self.session_timeout.unwrap_or(config.session_timeout),
            heartbeat_interval: self.heartbeat_interval.unwrap_or(config.heartbeat_interval),
            ..config.clone()
        }
    }

    /// Checks the group's settings as Kafka checks a group's configs, together with the
    /// coordinator's for what the group leaves unset: each within the coordinator's
    /// bounds, and the heartbeat interval below the session timeout. The message names
    /// the key, the value and the bound.
    pub fn validate(&self, config: &GroupConfig) -> Result<(), String> {
        let ms = |d: Duration| d.as_millis();
        let effective = self.apply(config);
        let (session, heartbeat) = (effective.session_timeout, effective.heartbeat_interval);
        // Kafka's words: "KEY VALUE must be greater than or equal to the broker's
        // group.consumer.min.NAME.ms (BOUND)", and "less than or equal to" for the max.
        let within = |key: &str,
                      value: Option<Duration>,
                      name: &str,
                      min: Duration,
                      max: Duration| {
            let Some(v) = value else { return Ok(()) };
            let (relation, bound, which) = if v < min {
                ("greater than or equal to", min, "min")
            } else if v > max {
                ("less than or equal to", max, "max")
            } else {
                return Ok(());
            };
            Err(format!(
                "{key} {} must be {relation} the broker's group.consumer.{which}.{name}.ms ({})",
                ms(v),
                ms(bound)
            ))
        };
        within(
            CONSUMER_SESSION_TIMEOUT_MS,
            self.session_timeout,
            "session.timeout",
            config.min_session_timeout,
            config.max_session_timeout,
        )?;
        within(
            CONSUMER_HEARTBEAT_INTERVAL_MS,
            self.heartbeat_interval,
            "heartbeat.interval",
            config.min_heartbeat_interval,
            config.max_heartbeat_interval,
        )?;
        if session <= heartbeat {
            return Err(format!(
                "{CONSUMER_SESSION_TIMEOUT_MS} ({}) must be greater than \
                 {CONSUMER_HEARTBEAT_INTERVAL_MS} ({})",
                ms(session),
                ms(heartbeat)
            ));
        }
        Ok(())
    }
}
