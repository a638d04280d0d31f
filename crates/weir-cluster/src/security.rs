//! What the metadata log keeps for security: users' SCRAM credentials (salted and
//! iterated, never a password) and access control lists in Kafka's model
//! (`docs/security.md` § Authorisation). This module holds the data and its validation;
//! the broker core (`weir-broker`'s `authz`) decides requests with it, and the controller
//! (`controller::security`) writes it.
//!
//! A binding reads as Kafka's: *principal* is *allowed* / *denied* *operation* on
//! resources of *type* whose name *matches* (`Literal`: equal, or every name for `*`;
//! `Prefixed`: starts with it), from *host* (`*` for any).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Longest user name (Kafka's principal names have no limit; this bounds the image).
pub const MAX_USER_NAME_CHARS: usize = 255;
/// Longest resource name in an ACL (topic names are at most 249; group and
/// transactional ids are longer in Kafka in principle, never in practice).
pub const MAX_RESOURCE_NAME_CHARS: usize = 1024;
/// Most ACL bindings the cluster keeps: each is part of every metadata image.
pub const MAX_ACLS: usize = 100_000;
/// Most bindings one CreateAcls or DeleteAcls request may name.
pub const MAX_ACLS_PER_REQUEST: usize = 10_000;
/// Most users the cluster keeps.
pub const MAX_USERS: usize = 100_000;
/// Longest salt, stored key or server key accepted (SHA-512 keys are 64 bytes).
pub const MAX_CREDENTIAL_BYTES: usize = 128;
/// The SCRAM mechanisms a credential may be for, by their SASL names.
pub const SCRAM_MECHANISMS: [&str; 2] = ["SCRAM-SHA-256", "SCRAM-SHA-512"];
/// Fewest and most PBKDF2 iterations a stored credential may have (Kafka's bounds).
pub const SCRAM_ITERATIONS: std::ops::RangeInclusive<u32> = 4096..=16384;
/// The one name of the cluster resource (as in Kafka).
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";
/// The principal type of every Weir principal (`User:alice`).
pub const USER_PRINCIPAL_PREFIX: &str = "User:";
/// The literal resource name, principal name or host that matches all.
pub const WILDCARD: &str = "*";

/// One user's SCRAM credential for one mechanism (RFC 5802: what the server keeps).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are as good as a password to anyone who can run the exchange offline.
        f.debug_struct("StoredCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl StoredCredential {
    /// Why this credential cannot be stored, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !SCRAM_MECHANISMS.contains(&self.mechanism.as_str()) {
            return Err(format!(
                "unknown SCRAM mechanism {:?} (known: {})",
                self.mechanism,
                SCRAM_MECHANISMS.join(", ")
            ));
        }
        if !SCRAM_ITERATIONS.contains(&self.iterations) {
            return Err(format!(
                "{} iterations is outside {}..={}",
                self.iterations,
                SCRAM_ITERATIONS.start(),
                SCRAM_ITERATIONS.end()
            ));
        }
        for (what, bytes) in [
            ("salt", &self.salt),
            ("stored key", &self.stored_key),
            ("server key", &self.server_key),
        ] {
            if bytes.is_empty() || bytes.len() > MAX_CREDENTIAL_BYTES {
                return Err(format!(
                    "the {what} must have 1 to {MAX_CREDENTIAL_BYTES} bytes"
                ));
            }
        }
        Ok(())
    }
}

/// Why a user name cannot be used, if it cannot: 1 to [`MAX_USER_NAME_CHARS`] characters,
/// no control characters, not the wildcard.
pub fn validate_user_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_USER_NAME_CHARS {
        return Err(format!(
            "user name must have 1 to {MAX_USER_NAME_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("user name {name:?} has a control character"));
    }
    if name == WILDCARD {
        return Err("`*` is the wildcard, not a user name".into());
    }
    Ok(())
}

/// What an ACL protects (Kafka's resource types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

/// How an ACL's resource name matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    /// The name itself, or every name for `*`.
    Literal,
    /// Every name that starts with it.
    Prefixed,
}

/// What a principal may do (Kafka's operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl Operation {
    /// Every operation but `All`.
    pub const EACH: [Operation; 10] = [
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
    ];

    /// The operations an ALLOW binding may name to allow `self`: itself, `All`, and, as
    /// in Kafka, any operation that implies it (reading, writing, deleting or altering
    /// implies describing; altering configs implies describing them).
    pub fn allowed_by(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            Describe => &[Describe, Read, Write, Delete, Alter, All],
            DescribeConfigs => &[DescribeConfigs, AlterConfigs, All],
            Read => &[Read, All],
            Write => &[Write, All],
            Create => &[Create, All],
            Delete => &[Delete, All],
            Alter => &[Alter, All],
            ClusterAction => &[ClusterAction, All],
            AlterConfigs => &[AlterConfigs, All],
            IdempotentWrite => &[IdempotentWrite, All],
            All => &[All],
        }
    }

    /// Whether a binding on `resource_type` may name this operation (Kafka's table).
    pub fn applies_to(self, resource_type: ResourceType) -> bool {
        use Operation::*;
        match resource_type {
            ResourceType::Topic => matches!(
                self,
                All | Read
                    | Write
                    | Create
                    | Delete
                    | Alter
                    | Describe
                    | DescribeConfigs
                    | AlterConfigs
            ),
            ResourceType::Group => matches!(
                self,
                All | Read | Delete | Describe | DescribeConfigs | AlterConfigs
            ),
            ResourceType::Cluster => matches!(
                self,
                All | Create
                    | Alter
                    | Describe
                    | ClusterAction
                    | DescribeConfigs
                    | AlterConfigs
                    | IdempotentWrite
            ),
            ResourceType::TransactionalId => matches!(self, All | Describe | Write),
        }
    }
}

/// Allow or deny. A matching DENY wins over any ALLOW.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    Allow,
    Deny,
}

/// One access control entry on one resource pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    /// A topic, group or transactional id name, `*`, or `kafka-cluster`.
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `User:NAME`, or `User:*` for every principal (the anonymous one included).
    pub principal: String,
    /// A client IP address, or `*` for any.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Why this binding cannot be stored, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.resource_name;
        if name.is_empty() || name.chars().count() > MAX_RESOURCE_NAME_CHARS {
            return Err(format!(
                "resource name must have 1 to {MAX_RESOURCE_NAME_CHARS} characters"
            ));
        }
        if self.resource_type == ResourceType::Cluster && name != CLUSTER_RESOURCE_NAME {
            return Err(format!(
                "the cluster resource is named {CLUSTER_RESOURCE_NAME:?}, not {name:?}"
            ));
        }
        if self.pattern_type == PatternType::Prefixed && name == WILDCARD {
            return Err(
                "a prefixed pattern cannot be `*` (use a literal `*` for every name)".into(),
            );
        }
        let user = self
            .principal
            .strip_prefix(USER_PRINCIPAL_PREFIX)
            .ok_or_else(|| {
                format!(
                    "principal {:?} must be {USER_PRINCIPAL_PREFIX}NAME or {USER_PRINCIPAL_PREFIX}*",
                    self.principal
                )
            })?;
        if user != WILDCARD {
            validate_user_name(user)?;
        }
        if self.host != WILDCARD && self.host.parse::<IpAddr>().is_err() {
            return Err(format!("host {:?} must be an IP address or `*`", self.host));
        }
        if !self.operation.applies_to(self.resource_type) {
            return Err(format!(
                "operation {:?} does not apply to {:?} resources",
                self.operation, self.resource_type
            ));
        }
        Ok(())
    }
}

impl fmt::Display for AclBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} {:?} on {:?} {:?} {:?} from {}",
            self.principal,
            self.permission,
            self.operation,
            self.resource_type,
            self.pattern_type,
            self.resource_name,
            self.host
        )
    }
}

/// How a filter's resource pattern matches bindings (Kafka's pattern type filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternFilter {
    /// Any pattern type; the name, if given, equal.
    Any,
    /// Every binding that would apply to a resource named as the filter's name: the
    /// literal name, the literal `*`, and prefixes of it.
    Match,
    /// Only this pattern type; the name, if given, equal.
    Exactly(PatternType),
}

/// Selects bindings for DescribeAcls and DeleteAcls: `None` matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: Option<PatternFilter>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// Whether `acl` is selected.
    pub fn matches(&self, acl: &AclBinding) -> bool {
        fn eq<T: PartialEq>(filter: &Option<T>, value: &T) -> bool {
            filter.as_ref().is_none_or(|f| f == value)
        }
        let resource = match (
            self.pattern.unwrap_or(PatternFilter::Any),
            &self.resource_name,
        ) {
            (PatternFilter::Match, Some(name)) => match acl.pattern_type {
                PatternType::Literal => acl.resource_name == *name || acl.resource_name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&acl.resource_name),
            },
            (PatternFilter::Exactly(pattern), name) => {
                acl.pattern_type == pattern && eq(name, &acl.resource_name)
            }
            (PatternFilter::Any | PatternFilter::Match, name) => eq(name, &acl.resource_name),
        };
        resource
            && eq(&self.resource_type, &acl.resource_type)
            && eq(&self.principal, &acl.principal)
            && eq(&self.host, &acl.host)
            && eq(&self.operation, &acl.operation)
            && eq(&self.permission, &acl.permission)
    }
}

/// The quota keys Weir enforces, by Kafka's names: bytes per second a principal (and
/// client id) may produce, and may fetch, and the share of a request-handling thread's
/// time its requests may take.
pub const QUOTA_KEYS: [&str; 3] = [PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE];
/// Kafka's `producer_byte_rate`.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Kafka's `consumer_byte_rate`.
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Kafka's `request_percentage`: the percentage of one thread's time (100 = one whole
/// thread) requests may spend on the broker's threads, in whole percent here.
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
/// Largest value of a quota key (`i64::MAX`, the largest Kafka's `long` quotas take).
pub const MAX_QUOTA_VALUE: u64 = i64::MAX as u64;
/// Most quota entities the cluster keeps.
pub const MAX_QUOTA_ENTITIES: usize = 10_000;
/// Longest client id in a quota entity (Kafka's client ids are unbounded in principle).
pub const MAX_CLIENT_ID_CHARS: usize = 255;

/// One part of a quota entity: a name, or the default for every name without its own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityName {
    Name(String),
    Default,
}

/// Whom a quota applies to, as in Kafka: a user, a client id, or a user's client id;
/// `None` leaves that part out.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

impl QuotaEntity {
    /// Why this entity cannot carry a quota, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.user.is_none() && self.client_id.is_none() {
            return Err("a quota entity names a user, a client id, or both".into());
        }
        if let Some(EntityName::Name(user)) = &self.user {
            validate_user_name(user)?;
        }
        if let Some(EntityName::Name(id)) = &self.client_id
            && (id.is_empty() || id.chars().count() > MAX_CLIENT_ID_CHARS)
        {
            return Err(format!(
                "a client id must have 1 to {MAX_CLIENT_ID_CHARS} characters"
            ));
        }
        Ok(())
    }

    /// The entities that may hold the quota of `user` (None: anonymous) with
    /// `client_id`, most specific first: Kafka's order of precedence.
    pub fn candidates(user: Option<&str>, client_id: Option<&str>) -> Vec<QuotaEntity> {
        let name = |n: Option<&str>| n.map(|n| EntityName::Name(n.to_owned()));
        let entity = |user: Option<EntityName>, client_id: Option<EntityName>| QuotaEntity {
            user,
            client_id,
        };
        let mut out = Vec::with_capacity(8);
        for u in [name(user), Some(EntityName::Default)]
            .into_iter()
            .flatten()
        {
            for c in [name(client_id), Some(EntityName::Default)]
                .into_iter()
                .flatten()
            {
                out.push(entity(Some(u.clone()), Some(c)));
            }
            out.push(entity(Some(u), None));
        }
        for c in [name(client_id), Some(EntityName::Default)]
            .into_iter()
            .flatten()
        {
            out.push(entity(None, Some(c)));
        }
        out
    }
}

impl fmt::Display for QuotaEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |what: &str, n: &Option<EntityName>| match n {
            None => None,
            Some(EntityName::Name(n)) => Some(format!("{what}={n}")),
            Some(EntityName::Default) => Some(format!("{what}=<default>")),
        };
        let parts: Vec<String> = [part("user", &self.user), part("client-id", &self.client_id)]
            .into_iter()
            .flatten()
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(name: &str, pattern_type: PatternType, op: Operation) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: op,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn bindings_are_validated_with_reasons() {
        assert_eq!(
            acl("orders", PatternType::Literal, Operation::Read).validate(),
            Ok(())
        );
        let mut bad = acl("orders", PatternType::Literal, Operation::IdempotentWrite);
        assert!(bad.validate().unwrap_err().contains("does not apply"));
        bad = acl("*", PatternType::Prefixed, Operation::Read);
        assert!(bad.validate().unwrap_err().contains("prefixed"));
        bad = acl("orders", PatternType::Literal, Operation::Read);
        bad.principal = "alice".into();
        assert!(bad.validate().unwrap_err().contains("User:NAME"));
        bad.principal = "User:*".into();
        bad.host = "somewhere".into();
        assert!(bad.validate().unwrap_err().contains("IP address"));
        bad.host = "::1".into();
        assert_eq!(bad.validate(), Ok(()));
        bad.resource_type = ResourceType::Cluster;
        assert!(bad.validate().unwrap_err().contains("kafka-cluster"));
        assert!(validate_user_name("").is_err());
        assert!(validate_user_name("*").is_err());
        assert!(validate_user_name("a\nb").is_err());
        assert!(validate_user_name(&"x".repeat(MAX_USER_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn filters_select_as_kafkas_do() {
        let literal = acl("orders", PatternType::Literal, Operation::Read);
        let wildcard = acl("*", PatternType::Literal, Operation::Read);
        let prefixed = acl("ord", PatternType::Prefixed, Operation::Write);
        let other = acl("audit", PatternType::Literal, Operation::Read);
        let all = [&literal, &wildcard, &prefixed, &other];
        let select = |filter: &AclFilter| -> Vec<&AclBinding> {
            all.iter().copied().filter(|a| filter.matches(a)).collect()
        };
        assert_eq!(select(&AclFilter::default()).len(), 4);
        let by_match = AclFilter {
            resource_name: Some("orders".into()),
            pattern: Some(PatternFilter::Match),
            ..AclFilter::default()
        };
        assert_eq!(select(&by_match), vec![&literal, &wildcard, &prefixed]);
        let exact = AclFilter {
            resource_name: Some("orders".into()),
            ..AclFilter::default()
        };
        assert_eq!(select(&exact), vec![&literal]);
        let prefixed_only = AclFilter {
            pattern: Some(PatternFilter::Exactly(PatternType::Prefixed)),
            ..AclFilter::default()
        };
        assert_eq!(select(&prefixed_only), vec![&prefixed]);
        let reads = AclFilter {
            operation: Some(Operation::Read),
            principal: Some("User:alice".into()),
            ..AclFilter::default()
        };
        assert_eq!(select(&reads).len(), 3);
    }

    #[test]
    fn quota_entities_are_tried_in_kafkas_order() {
        let shown: Vec<String> = QuotaEntity::candidates(Some("alice"), Some("app"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "user=alice,client-id=app",
                "user=alice,client-id=<default>",
                "user=alice",
                "user=<default>,client-id=app",
                "user=<default>,client-id=<default>",
                "user=<default>",
                "client-id=app",
                "client-id=<default>",
            ]
        );
        assert_eq!(QuotaEntity::candidates(None, None).len(), 3);
        let none = QuotaEntity {
            user: None,
            client_id: None,
        };
        assert!(none.validate().is_err());
    }

    #[test]
    fn credential_keys_are_not_printed() {
        let credential = StoredCredential {
            mechanism: "SCRAM-SHA-256".into(),
            salt: vec![1; 16],
            iterations: 4096,
            stored_key: vec![0xAB; 32],
            server_key: vec![0xCD; 32],
        };
        assert_eq!(credential.validate(), Ok(()));
        let shown = format!("{credential:?}");
        assert!(!shown.contains("171") && !shown.contains("205"), "{shown}");
        let bad = StoredCredential {
            iterations: 10,
            ..credential.clone()
        };
        assert!(bad.validate().unwrap_err().contains("iterations"));
        let bad = StoredCredential {
            mechanism: "MD5".into(),
            ..credential
        };
        assert!(bad.validate().unwrap_err().contains("SCRAM-SHA-256"));
    }
}
