//! Broker configs that Kafka lets an operator change while brokers run (AlterConfigs and
//! IncrementalAlterConfigs on a BROKER resource: one broker's, or the cluster's default
//! with an empty name), as Weir keeps them: replicated in the metadata log
//! (`MetadataRecord::BrokerConfigChanged`), so every broker, after a restart too, reports
//! the same values with Kafka's sources (DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG).
//!
//! Accepted: [`DYNAMIC_KEYS`], Kafka's dynamic keys for mechanisms Weir does not have
//! (Kerberos; Kafka's own network, I/O, replica-fetcher, recovery and cleaner thread
//! pools, where Weir runs on tokio's; metric reporter classes), so Kafka tooling that
//! sets them (`kafka-configs.sh --alter --entity-type brokers`, admin clients, operators
//! of Kafka clusters) works unchanged. They are checked as Kafka checks their type, kept
//! and reported, and change nothing in Weir: docs/kafka-compatibility.md says so key by
//! key. Every other key is refused by the core on its own (a Weir setting is static: a
//! `weir serve` flag; an unknown key is not a broker config).

use crate::error::ConfigError;

/// Longest value a dynamic broker key may hold (the keys themselves are bounded by the
/// table: a resource holds at most one value per key of [`DYNAMIC_KEYS`]).
pub const MAX_BROKER_CONFIG_VALUE_BYTES: usize = 4096;

/// The type Kafka gives a dynamic key's value, which its check follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DynamicType {
    /// A 32-bit integer, at least `min`.
    Int { min: i64 },
    /// A 64-bit integer, at least `min`.
    Long { min: i64 },
    /// A floating-point number in `min..=max`.
    Double { min: f64, max: f64 },
    /// Any text (a command, a list of rules or class names).
    Text,
}

/// One key Weir accepts at run time, under Kafka's name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynamicKey {
    pub name: &'static str,
    pub kind: DynamicType,
    /// Kafka's default, reported when nothing is set.
    pub default: &'static str,
    /// What it does in Kafka, and what it does in Weir (nothing: why).
    pub documentation: &'static str,
}

const NO_KERBEROS: &str = "Kerberos (SASL/GSSAPI) login setting in Kafka. Weir offers no \
    GSSAPI: accepted and kept for Kafka tooling, no effect.";
const NO_THREAD_POOL: &str = "Size of one of Kafka's thread pools. Weir runs on tokio's \
    runtime, which sizes itself to the machine: accepted and kept for Kafka tooling, no effect.";
const NO_CLEANER_TUNING: &str = "Tuning of Kafka's log cleaner. Weir's compaction paces \
    itself: accepted and kept for Kafka tooling, no effect.";

/// Kafka's dynamic broker keys that Weir accepts (sorted by name).
pub const DYNAMIC_KEYS: &[DynamicKey] = &[
    DynamicKey {
        name: "background.threads",
        kind: DynamicType::Int { min: 1 },
        default: "10",
        documentation: NO_THREAD_POOL,
    },
    DynamicKey {
        name: "log.cleaner.backoff.ms",
        kind: DynamicType::Long { min: 0 },
        default: "15000",
        documentation: NO_CLEANER_TUNING,
    },
    DynamicKey {
        name: "log.cleaner.dedupe.buffer.size",
        kind: DynamicType::Long { min: 0 },
        default: "134217728",
        documentation: NO_CLEANER_TUNING,
    },
    DynamicKey {
        name: "log.cleaner.io.buffer.load.factor",
        kind: DynamicType::Double { min: 0.0, max: 1.0 },
        default: "0.9",
        documentation: NO_CLEANER_TUNING,
    },
    DynamicKey {
        name: "log.cleaner.io.buffer.size",
        kind: DynamicType::Int { min: 0 },
        default: "524288",
        documentation: NO_CLEANER_TUNING,
    },
    DynamicKey {
        name: "log.cleaner.io.max.bytes.per.second",
        kind: DynamicType::Double {
            min: 0.0,
            max: f64::MAX,
        },
        default: "1.7976931348623157E308",
        documentation: NO_CLEANER_TUNING,
    },
    DynamicKey {
        name: "log.cleaner.threads",
        kind: DynamicType::Int { min: 0 },
        default: "1",
        documentation: NO_THREAD_POOL,
    },
    DynamicKey {
        name: "metric.reporters",
        kind: DynamicType::Text,
        default: "",
        documentation: "Java classes Kafka loads as metric reporters. Weir exports its \
            metrics on /metrics (Prometheus): accepted and kept for Kafka tooling, no effect.",
    },
    DynamicKey {
        name: "num.io.threads",
        kind: DynamicType::Int { min: 1 },
        default: "8",
        documentation: NO_THREAD_POOL,
    },
    DynamicKey {
        name: "num.network.threads",
        kind: DynamicType::Int { min: 1 },
        default: "3",
        documentation: NO_THREAD_POOL,
    },
    DynamicKey {
        name: "num.recovery.threads.per.data.dir",
        kind: DynamicType::Int { min: 1 },
        default: "2",
        documentation: NO_THREAD_POOL,
    },
    DynamicKey {
        name: "num.replica.fetchers",
        kind: DynamicType::Int { min: 1 },
        default: "1",
        documentation: NO_THREAD_POOL,
    },
    DynamicKey {
        name: "sasl.kerberos.kinit.cmd",
        kind: DynamicType::Text,
        default: "/usr/bin/kinit",
        documentation: NO_KERBEROS,
    },
    DynamicKey {
        name: "sasl.kerberos.min.time.before.relogin",
        kind: DynamicType::Long { min: i64::MIN },
        default: "60000",
        documentation: NO_KERBEROS,
    },
    DynamicKey {
        name: "sasl.kerberos.principal.to.local.rules",
        kind: DynamicType::Text,
        default: "DEFAULT",
        documentation: NO_KERBEROS,
    },
    DynamicKey {
        name: "sasl.kerberos.service.name",
        kind: DynamicType::Text,
        default: "",
        documentation: NO_KERBEROS,
    },
    DynamicKey {
        name: "sasl.kerberos.ticket.renew.jitter",
        kind: DynamicType::Double {
            min: f64::MIN,
            max: f64::MAX,
        },
        default: "0.05",
        documentation: NO_KERBEROS,
    },
    DynamicKey {
        name: "sasl.kerberos.ticket.renew.window.factor",
        kind: DynamicType::Double {
            min: f64::MIN,
            max: f64::MAX,
        },
        default: "0.8",
        documentation: NO_KERBEROS,
    },
];

/// The dynamic key `name`, if Weir accepts it.
pub fn dynamic_key(name: &str) -> Option<&'static DynamicKey> {
    DYNAMIC_KEYS.iter().find(|k| k.name == name)
}

/// Checks `value` for the dynamic key `key` as Kafka checks its type (and bounds).
pub fn check_value(key: &DynamicKey, value: &str) -> Result<(), ConfigError> {
    let bad = |expected: &'static str| ConfigError::BadValue {
        key: key.name.to_owned(),
        value: value.to_owned(),
        expected,
    };
    if value.len() > MAX_BROKER_CONFIG_VALUE_BYTES {
        return Err(bad("at most 4096 bytes"));
    }
    let trimmed = value.trim();
    match key.kind {
        DynamicType::Int { min } => match trimmed.parse::<i32>() {
            Ok(v) if i64::from(v) >= min => Ok(()),
            Ok(_) => Err(bad("a larger integer")),
            Err(_) => Err(bad("a 32-bit integer")),
        },
        DynamicType::Long { min } => match trimmed.parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => Err(bad("a larger integer")),
            Err(_) => Err(bad("a 64-bit integer")),
        },
        DynamicType::Double { min, max } => match trimmed.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= min && v <= max => Ok(()),
            Ok(_) => Err(bad("a number in the key's range")),
            Err(_) => Err(bad("a number")),
        },
        DynamicType::Text => Ok(()),
    }
}

/// Checks one change of a broker resource: the key is one Weir accepts and the value
/// (`None`: removed) is of its type.
pub fn check_change(key: &str, value: Option<&str>) -> Result<(), ConfigError> {
    let Some(dynamic) = dynamic_key(key) else {
        return Err(ConfigError::UnknownKey(key.to_owned()));
    };
    match value {
        Some(value) => check_value(dynamic, value),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_every_default_passes_its_own_check() {
        assert!(DYNAMIC_KEYS.windows(2).all(|w| w[0].name < w[1].name));
        for key in DYNAMIC_KEYS {
            check_value(key, key.default)
                .unwrap_or_else(|e| panic!("{}'s default fails its check: {e}", key.name));
        }
    }

    #[test]
    fn values_are_checked_by_kafkas_types() {
        assert!(check_change("sasl.kerberos.min.time.before.relogin", Some("58000")).is_ok());
        assert!(check_change("num.io.threads", Some("16")).is_ok());
        assert!(matches!(
            check_change("num.io.threads", Some("0")),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            check_change("num.io.threads", Some("many")),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            check_change("log.cleaner.io.buffer.load.factor", Some("1.5")),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            check_change("log.retention.ms", Some("1")),
            Err(ConfigError::UnknownKey(_))
        ));
        // Removing a key needs no value.
        assert!(check_change("num.io.threads", None).is_ok());
        let long = "x".repeat(MAX_BROKER_CONFIG_VALUE_BYTES + 1);
        assert!(check_change("metric.reporters", Some(&long)).is_err());
    }
}
