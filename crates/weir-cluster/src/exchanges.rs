//! Exchanges and bindings as the metadata log keeps them (`docs/amqp.md` § Exchanges
//! and bindings): an exchange is a name, a type (direct, fanout, topic, headers) and its
//! flags; a binding routes what an exchange receives to a queue (a topic) under a key
//! and arguments. The controller's side is `controller/exchanges.rs`; routing, the
//! predeclared exchanges and authorisation are weir-broker's (`exchanges.rs`).
//!
//! Protocol-neutral on purpose: arguments are text (an AMQP field table's values as
//! their text, as message headers become record headers), so the metadata holds no
//! AMQP type.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Most exchanges the cluster keeps (the predeclared ones are not counted: they have
/// no record).
pub const MAX_EXCHANGES: usize = 10_000;
/// Most bindings of one exchange.
pub const MAX_BINDINGS_PER_EXCHANGE: usize = 10_000;
/// Most bindings the cluster keeps, all exchanges together.
pub const MAX_BINDINGS: usize = 100_000;
/// Longest exchange name, in UTF-8 bytes (an AMQP short string).
pub const MAX_EXCHANGE_NAME_BYTES: usize = 255;
/// Longest routing (binding) key, in UTF-8 bytes (an AMQP short string).
pub const MAX_ROUTING_KEY_BYTES: usize = 255;
/// Most arguments of one exchange or binding.
pub const MAX_ARGUMENTS: usize = 64;
/// Longest argument name, in UTF-8 bytes.
pub const MAX_ARGUMENT_NAME_BYTES: usize = 255;
/// Longest argument value (its text), in UTF-8 bytes.
pub const MAX_ARGUMENT_VALUE_BYTES: usize = 1_024;

/// How an exchange picks the queues a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    /// Bindings whose key is the message's routing key.
    Direct,
    /// Every binding.
    Fanout,
    /// Bindings whose key is a pattern of the routing key's words (`*`, `#`).
    Topic,
    /// Bindings whose arguments match the message's headers (`x-match`).
    Headers,
}

impl ExchangeType {
    /// Every type, in the order of their names.
    pub const ALL: [ExchangeType; 4] = [
        ExchangeType::Direct,
        ExchangeType::Fanout,
        ExchangeType::Headers,
        ExchangeType::Topic,
    ];

    /// Its name, as AMQP clients send it.
    pub fn name(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
            ExchangeType::Headers => "headers",
        }
    }

    /// The type named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<ExchangeType> {
        ExchangeType::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for ExchangeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One declared exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredExchange {
    pub name: String,
    pub kind: ExchangeType,
    pub durable: bool,
    /// Deleted with its last binding (as RabbitMQ deletes an auto-delete exchange).
    pub auto_delete: bool,
    /// Bound to, never published to by clients.
    pub internal: bool,
    /// Declared arguments, values as text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arguments: BTreeMap<String, String>,
}

/// One binding: what `exchange` routes under `routing_key` (and `arguments`, for a
/// headers exchange) goes to `queue`. A binding is its four parts: the same parts twice
/// are one binding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StoredBinding {
    pub exchange: String,
    /// The queue: a topic of that name.
    pub queue: String,
    pub routing_key: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arguments: BTreeMap<String, String>,
}

/// One exchange-to-exchange binding (RabbitMQ's extension, `exchange.bind`): what
/// `source` routes under `routing_key` (and `arguments`, for a headers exchange) is
/// routed again by `destination`, as if published to it. Its four parts are the binding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StoredExchangeBinding {
    pub source: String,
    pub destination: String,
    pub routing_key: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arguments: BTreeMap<String, String>,
}

/// The exchange argument naming where messages the exchange routes nowhere go
/// (RabbitMQ's alternate exchange).
pub const ALTERNATE_EXCHANGE: &str = "alternate-exchange";

/// Why an exchange or binding change was refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ExchangeError {
    /// NOT_FOUND: the exchange does not exist.
    #[error("no exchange {0:?}")]
    UnknownExchange(String),
    /// NOT_FOUND: the queue a binding names does not exist.
    #[error("no queue {0:?}")]
    UnknownQueue(String),
    /// A redeclare that differs from the exchange as it is.
    #[error("exchange {name:?} exists with other settings: {what}")]
    Inequivalent { name: String, what: String },
    /// A queue redeclared with other settings than its declaration.
    #[error("queue {name:?} was declared with other settings: {what}")]
    QueueInequivalent { name: String, what: String },
    /// A delete `if_unused` of an exchange with bindings.
    #[error("exchange {name:?} has {bindings} binding(s)")]
    InUse { name: String, bindings: usize },
    /// A predeclared exchange cannot be declared with other settings, deleted, or (the
    /// default one) bound.
    #[error("exchange {name:?} is predeclared: {what}")]
    Predeclared { name: String, what: String },
    /// A name, key or argument that cannot be stored.
    #[error("{0}")]
    Invalid(String),
    /// A limit of the cluster's metadata.
    #[error("{0}")]
    TooMany(String),
}

/// The exchanges that exist without a record, as in RabbitMQ: the default exchange
/// (`""`, direct, every queue bound by its name) and the `amq.*` ones. They cannot be
/// deleted or declared with another type; the default one cannot be bound.
pub const PREDECLARED: [(&str, ExchangeType); 6] = [
    ("", ExchangeType::Direct),
    ("amq.direct", ExchangeType::Direct),
    ("amq.fanout", ExchangeType::Fanout),
    ("amq.headers", ExchangeType::Headers),
    ("amq.match", ExchangeType::Headers),
    ("amq.topic", ExchangeType::Topic),
];

/// Names starting with this are the server's: clients cannot declare new ones.
pub const RESERVED_PREFIX: &str = "amq.";

/// The default exchange's other name (RabbitMQ's). A virtual host's default exchange is
/// known to the core by it: vhost `V`'s is `V.amq.default`.
pub const DEFAULT_EXCHANGE_ALIAS: &str = "amq.default";
/// Longest virtual host name, in bytes.
pub const MAX_VHOST_NAME_BYTES: usize = 64;

/// Whether `name` can name a virtual host other than `/`: 1 to [`MAX_VHOST_NAME_BYTES`]
/// ASCII letters, digits, `-` and `_`, and not `amq`. A vhost `V` is the namespace `V.`
/// of the cluster's names (its queue `Q` is the topic `V.Q`, its exchange `E` the
/// exchange `V.E`, docs/amqp.md § Virtual hosts), so it holds no `.`: the first `.` of a
/// qualified name ends its vhost.
pub fn is_vhost_name(name: &str) -> bool {
    (1..=MAX_VHOST_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        && name != RESERVED_PREFIX.trim_end_matches('.')
}

/// The namespace (`""` for `/`, `V.` for vhost `V`) whose default exchange `name` is, if
/// it is one: `""`, or `V.amq.default`.
pub fn default_exchange_namespace(name: &str) -> Option<&str> {
    if name.is_empty() {
        return Some("");
    }
    let (prefix, local) = split_vhost(name)?;
    (local == DEFAULT_EXCHANGE_ALIAS).then_some(prefix)
}

/// Whether `name` is a default exchange (`/`'s or a virtual host's): it routes to the
/// queue its routing key names in its namespace, and cannot be bound.
pub fn is_default_exchange(name: &str) -> bool {
    default_exchange_namespace(name).is_some()
}

/// `V.rest` as (`V.`, `rest`) when `V` is a vhost name and `rest` a predeclared name of
/// it (starting with [`RESERVED_PREFIX`]).
fn split_vhost(name: &str) -> Option<(&str, &str)> {
    let dot = name.find('.')?;
    let (vhost, local) = (&name[..dot], &name[dot + 1..]);
    (is_vhost_name(vhost) && local.starts_with(RESERVED_PREFIX)).then_some((&name[..=dot], local))
}

/// Whether `name` is a predeclared exchange of a virtual host other than `/`
/// (`V.amq.topic`): records naming one need metadata level 4.
pub fn is_vhost_predeclared(name: &str) -> bool {
    split_vhost(name).is_some() && predeclared_kind(name).is_some()
}

/// The type of the predeclared exchange named `name`, if it is one: `/`'s (`""`,
/// `amq.direct`, ...) and every virtual host's (`V.amq.direct`, ..., and its default
/// exchange `V.amq.default`), which exist without records. Allocates nothing (routing
/// asks it for every exchange a publish passes).
pub fn predeclared_kind(name: &str) -> Option<ExchangeType> {
    let local = match split_vhost(name) {
        Some((_, local)) if local == DEFAULT_EXCHANGE_ALIAS => "",
        Some((_, local)) => local,
        None => name,
    };
    PREDECLARED
        .iter()
        .find(|(n, _)| *n == local)
        .map(|(_, kind)| *kind)
}

/// The predeclared exchange named `name` ([`predeclared_kind`]), as a declared one would
/// look.
pub fn predeclared(name: &str) -> Option<StoredExchange> {
    predeclared_kind(name).map(|kind| StoredExchange {
        name: name.to_owned(),
        kind,
        durable: true,
        auto_delete: false,
        internal: false,
        arguments: BTreeMap::new(),
    })
}

/// Whether `name` is a valid exchange name: at most [`MAX_EXCHANGE_NAME_BYTES`], of
/// letters, digits, `-`, `_`, `.` and `:` (RabbitMQ's rule), not empty (the default
/// exchange is never declared).
pub fn validate_exchange_name(name: &str) -> Result<(), ExchangeError> {
    if name.is_empty() {
        return Err(ExchangeError::Invalid(
            "an exchange name cannot be empty (that is the default exchange)".into(),
        ));
    }
    if name.len() > MAX_EXCHANGE_NAME_BYTES {
        return Err(ExchangeError::Invalid(format!(
            "exchange name of {} bytes is longer than {MAX_EXCHANGE_NAME_BYTES}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(ExchangeError::Invalid(format!(
            "exchange name {name:?} has the character {c:?}: use letters, digits, '-', '_', '.' and ':'"
        )));
    }
    Ok(())
}

/// Whether `arguments` can be stored: at most [`MAX_ARGUMENTS`], names and values within
/// their limits.
pub fn validate_arguments(arguments: &BTreeMap<String, String>) -> Result<(), ExchangeError> {
    if arguments.len() > MAX_ARGUMENTS {
        return Err(ExchangeError::Invalid(format!(
            "{} arguments; at most {MAX_ARGUMENTS}",
            arguments.len()
        )));
    }
    for (name, value) in arguments {
        if name.is_empty() || name.len() > MAX_ARGUMENT_NAME_BYTES {
            return Err(ExchangeError::Invalid(format!(
                "argument name {name:?} must have 1 to {MAX_ARGUMENT_NAME_BYTES} bytes"
            )));
        }
        if value.len() > MAX_ARGUMENT_VALUE_BYTES {
            return Err(ExchangeError::Invalid(format!(
                "argument {name:?} has a value of {} bytes; at most {MAX_ARGUMENT_VALUE_BYTES}",
                value.len()
            )));
        }
    }
    Ok(())
}

impl StoredExchange {
    /// Why this exchange cannot be stored, if it cannot.
    pub fn validate(&self) -> Result<(), ExchangeError> {
        validate_exchange_name(&self.name)?;
        validate_arguments(&self.arguments)
    }

    /// What differs between this exchange and `other` (a redeclare), if anything: the
    /// first difference, as RabbitMQ names it.
    pub fn difference(&self, other: &StoredExchange) -> Option<String> {
        if self.kind != other.kind {
            return Some(format!(
                "type: received '{}' but current is '{}'",
                other.kind, self.kind
            ));
        }
        for (what, current, received) in [
            ("durable", self.durable, other.durable),
            ("auto_delete", self.auto_delete, other.auto_delete),
            ("internal", self.internal, other.internal),
        ] {
            if current != received {
                return Some(format!(
                    "{what}: received '{received}' but current is '{current}'"
                ));
            }
        }
        (self.arguments != other.arguments).then(|| {
            format!(
                "arguments: received {:?} but current is {:?}",
                other.arguments, self.arguments
            )
        })
    }
}

/// A queue's declaration (AMQP `queue.declare`): its flags and arguments, kept in the
/// metadata so a redeclare on any broker, after a restart too, is compared with it. The
/// queue itself is the topic of its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredQueue {
    pub name: String,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arguments: BTreeMap<String, String>,
}

impl StoredQueue {
    /// Why this declaration cannot be stored, if it cannot (its topic is the
    /// controller's to check).
    pub fn validate(&self) -> Result<(), ExchangeError> {
        if self.name.is_empty() {
            return Err(ExchangeError::Invalid(
                "a queue declaration names its queue".into(),
            ));
        }
        validate_arguments(&self.arguments)
    }

    /// What differs between this declaration and `other` (a redeclare), if anything:
    /// the first difference, as RabbitMQ names it.
    pub fn difference(&self, other: &StoredQueue) -> Option<String> {
        for (what, current, received) in [
            ("durable", self.durable, other.durable),
            ("exclusive", self.exclusive, other.exclusive),
            ("auto_delete", self.auto_delete, other.auto_delete),
        ] {
            if current != received {
                return Some(format!(
                    "inequivalent arg '{what}': received '{received}' but current is '{current}'"
                ));
            }
        }
        (self.arguments != other.arguments).then(|| {
            format!(
                "inequivalent arguments: received {:?} but current is {:?}",
                other.arguments, self.arguments
            )
        })
    }
}

impl StoredBinding {
    /// Why this binding cannot be stored, if it cannot (its exchange and queue are the
    /// controller's to check against the image).
    pub fn validate(&self) -> Result<(), ExchangeError> {
        if is_default_exchange(&self.exchange) {
            return Err(ExchangeError::Predeclared {
                name: self.exchange.clone(),
                what:
                    "the default exchange cannot be bound (every queue is bound to it by its name)"
                        .into(),
            });
        }
        validate_exchange_name(&self.exchange)?;
        if self.queue.is_empty() {
            return Err(ExchangeError::Invalid("a binding names a queue".into()));
        }
        if self.routing_key.len() > MAX_ROUTING_KEY_BYTES {
            return Err(ExchangeError::Invalid(format!(
                "routing key of {} bytes is longer than {MAX_ROUTING_KEY_BYTES}",
                self.routing_key.len()
            )));
        }
        validate_arguments(&self.arguments)
    }
}

impl StoredExchangeBinding {
    /// Why this binding cannot be stored, if it cannot (its exchanges are the
    /// controller's to check against the image). The default exchange is neither a
    /// source nor a destination (RabbitMQ refuses both).
    pub fn validate(&self) -> Result<(), ExchangeError> {
        for name in [&self.source, &self.destination] {
            if is_default_exchange(name) {
                return Err(ExchangeError::Predeclared {
                    name: name.clone(),
                    what: "the default exchange cannot be bound to or from another exchange".into(),
                });
            }
            validate_exchange_name(name)?;
        }
        if self.routing_key.len() > MAX_ROUTING_KEY_BYTES {
            return Err(ExchangeError::Invalid(format!(
                "routing key of {} bytes is longer than {MAX_ROUTING_KEY_BYTES}",
                self.routing_key.len()
            )));
        }
        validate_arguments(&self.arguments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vhost_has_the_predeclared_exchanges_under_its_prefix() {
        assert_eq!(predeclared("amq.topic").unwrap().kind, ExchangeType::Topic);
        let topic = predeclared("sales.amq.topic").unwrap();
        assert_eq!(
            (topic.name.as_str(), topic.kind),
            ("sales.amq.topic", ExchangeType::Topic)
        );
        assert_eq!(
            predeclared("sales.amq.default").unwrap().kind,
            ExchangeType::Direct
        );
        assert!(is_vhost_predeclared("sales.amq.fanout"));
        assert!(!is_vhost_predeclared("amq.fanout") && !is_vhost_predeclared("sales.logs"));
        // Not a vhost: `amq` is refused as one, a name with a dot is no vhost's.
        for name in [
            "amq.amq.topic",
            "a.b.amq.topic",
            "sales.amq.nothing",
            "sales.logs",
        ] {
            assert!(predeclared(name).is_none(), "{name}");
        }
        assert_eq!(default_exchange_namespace(""), Some(""));
        assert_eq!(
            default_exchange_namespace("sales.amq.default"),
            Some("sales.")
        );
        assert_eq!(default_exchange_namespace("amq.default"), None);
        assert!(is_default_exchange("sales.amq.default") && !is_default_exchange("sales.logs"));
        // A vhost's default exchange is bound to nothing, as `/`'s.
        let binding = StoredBinding {
            exchange: "sales.amq.default".into(),
            queue: "sales.q".into(),
            routing_key: "q".into(),
            arguments: BTreeMap::new(),
        };
        assert!(matches!(
            binding.validate(),
            Err(ExchangeError::Predeclared { .. })
        ));
    }

    #[test]
    fn names_keys_and_arguments_are_checked_against_the_limits() {
        assert!(validate_exchange_name("logs.direct:v1_a-b").is_ok());
        assert!(validate_exchange_name("").is_err());
        assert!(validate_exchange_name(&"x".repeat(MAX_EXCHANGE_NAME_BYTES)).is_ok());
        assert!(validate_exchange_name(&"x".repeat(MAX_EXCHANGE_NAME_BYTES + 1)).is_err());
        let err = validate_exchange_name("a b").unwrap_err();
        assert!(err.to_string().contains("' '"), "{err}");

        let binding = StoredBinding {
            exchange: "logs".into(),
            queue: "q".into(),
            routing_key: "k".repeat(MAX_ROUTING_KEY_BYTES + 1),
            arguments: BTreeMap::new(),
        };
        assert!(binding.validate().is_err());
        let default = StoredBinding {
            exchange: "".into(),
            routing_key: "k".into(),
            ..binding.clone()
        };
        assert!(matches!(
            default.validate(),
            Err(ExchangeError::Predeclared { .. })
        ));
        let many: BTreeMap<String, String> = (0..=MAX_ARGUMENTS)
            .map(|i| (format!("a{i}"), "v".into()))
            .collect();
        assert!(validate_arguments(&many).is_err());
    }

    #[test]
    fn the_first_difference_of_a_redeclare_is_named() {
        let logs = StoredExchange {
            name: "logs".into(),
            kind: ExchangeType::Fanout,
            durable: false,
            auto_delete: false,
            internal: false,
            arguments: BTreeMap::new(),
        };
        assert_eq!(logs.difference(&logs.clone()), None);
        let other = StoredExchange {
            kind: ExchangeType::Direct,
            ..logs.clone()
        };
        assert!(logs.difference(&other).unwrap().starts_with("type"));
        let durable = StoredExchange {
            durable: true,
            ..logs.clone()
        };
        assert!(logs.difference(&durable).unwrap().starts_with("durable"));
        assert_eq!(predeclared("amq.topic").unwrap().kind, ExchangeType::Topic);
        assert!(predeclared("amq.nope").is_none());
        for t in ExchangeType::ALL {
            assert_eq!(ExchangeType::from_name(t.name()), Some(t));
        }
    }
}
