//! Users and ACLs as [`Admin`](crate::Admin) takes and returns them: ACL bindings and
//! filters in Kafka's model (`docs/security.md`), and users with their SCRAM
//! credentials' mechanisms. These are the client's own small types (this crate knows
//! nothing of the broker's), turned into and from the API's messages here.
//!
//! Each enum has a name ([`AclOperation::as_str`]: `read`, `describe-configs`, ...) and
//! parses from it, case-insensitively and with `-` or `_` or nothing between words, so
//! Kafka's spellings (`DescribeConfigs`, `TRANSACTIONAL_ID`) are accepted too.

use std::fmt;
use std::str::FromStr;

use tonic::Code;
use weir_proto::v1 as pb;

use crate::error::ClientError;

pub use weir_security::scram::ScramMechanism;

/// Why a name is not one of an enum's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}: use one of {known}")]
pub struct UnknownName {
    what: &'static str,
    given: String,
    known: String,
}

/// `-`, `_` and case do not count.
fn normalized(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Defines an ACL enum: its variants with their names, the API enum it maps to, and
/// names both ways.
macro_rules! acl_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($what:literal, $proto:ty) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every value, in the API's order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The name, lower case with `-` between words.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            fn to_proto(self) -> $proto {
                match self {
                    $($name::$variant => <$proto>::$variant,)*
                }
            }

            /// The value of an API enum number; `None` for UNSPECIFIED or a number this
            /// client does not know.
            #[allow(dead_code, reason = "filters are only sent, never received")]
            fn from_proto(value: i32) -> Option<$name> {
                match <$proto>::try_from(value).ok()? {
                    $(<$proto>::$variant => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(text: &str) -> Result<$name, UnknownName> {
                let wanted = normalized(text);
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| normalized(v.as_str()) == wanted)
                    .ok_or_else(|| UnknownName {
                        what: $what,
                        given: text.to_owned(),
                        known: $name::ALL
                            .iter()
                            .map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            }
        }
    };
}

acl_enum! {
    /// What an ACL protects.
    AclResourceType("resource type", pb::ResourceType) {
        /// A topic.
        Topic = "topic",
        /// A consumer or share group.
        Group = "group",
        /// The cluster (its one resource is named [`CLUSTER_RESOURCE_NAME`]).
        Cluster = "cluster",
        /// A transactional id.
        TransactionalId = "transactional-id",
    }
}

acl_enum! {
    /// How a binding's resource name matches.
    AclPatternType("pattern type", pb::PatternType) {
        /// The name itself, or every name for `*`.
        Literal = "literal",
        /// Every name that starts with it.
        Prefixed = "prefixed",
    }
}

acl_enum! {
    /// How a filter's resource name selects bindings.
    AclPatternFilter("pattern type", pb::PatternType) {
        /// Bindings of any pattern type whose name is the filter's.
        Any = "any",
        /// Every binding that applies to a resource named as the filter's name: the
        /// literal name, the literal `*`, and prefixes of it.
        Match = "match",
        /// Literal bindings only.
        Literal = "literal",
        /// Prefixed bindings only.
        Prefixed = "prefixed",
    }
}

acl_enum! {
    /// What a principal may do (Kafka's operations; `docs/security.md` has which apply
    /// to which resource type).
    AclOperation("operation", pb::Operation) {
        /// Every operation.
        All = "all",
        /// Read records, join a group, commit offsets.
        Read = "read",
        /// Produce records.
        Write = "write",
        /// Create topics.
        Create = "create",
        /// Delete topics, groups or records.
        Delete = "delete",
        /// Change partitions, users or ACLs.
        Alter = "alter",
        /// See that a resource exists and describe it.
        Describe = "describe",
        /// What brokers do to each other.
        ClusterAction = "cluster-action",
        /// Read configuration.
        DescribeConfigs = "describe-configs",
        /// Change configuration.
        AlterConfigs = "alter-configs",
        /// Produce idempotently.
        IdempotentWrite = "idempotent-write",
    }
}

acl_enum! {
    /// Allow or deny; a matching DENY wins over any ALLOW.
    AclPermission("permission", pb::Permission) {
        /// Allow.
        Allow = "allow",
        /// Deny.
        Deny = "deny",
    }
}

/// The one name of the cluster resource.
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";
/// The principal type of every Weir principal (`User:alice`).
pub const USER_PRINCIPAL_PREFIX: &str = "User:";

/// One access control entry on one resource pattern: `principal` is allowed (or denied)
/// `operation` on resources of `resource_type` whose name matches `resource_name`, from
/// `host`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    /// The type of resource.
    pub resource_type: AclResourceType,
    /// A topic, group or transactional id name, `*` for every name (literal only), or
    /// [`CLUSTER_RESOURCE_NAME`].
    pub resource_name: String,
    /// How the name matches.
    pub pattern_type: AclPatternType,
    /// `User:NAME`, or `User:*` for every principal.
    pub principal: String,
    /// A client IP address, or `*` for any.
    pub host: String,
    /// The operation.
    pub operation: AclOperation,
    /// Allow or deny.
    pub permission: AclPermission,
}

impl AclBinding {
    pub(crate) fn to_proto(&self) -> pb::AclBinding {
        pb::AclBinding {
            resource_type: self.resource_type.to_proto().into(),
            resource_name: self.resource_name.clone(),
            pattern_type: self.pattern_type.to_proto().into(),
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: self.operation.to_proto().into(),
            permission: self.permission.to_proto().into(),
        }
    }

    /// A binding the broker sent; an enum value this client does not know is an error
    /// (a newer broker's).
    pub(crate) fn from_proto(acl: pb::AclBinding) -> Result<AclBinding, ClientError> {
        fn known<T>(value: Option<T>, what: &str, number: i32) -> Result<T, ClientError> {
            value.ok_or_else(|| ClientError::Rpc {
                code: Code::Internal,
                message: format!(
                    "the broker answered an ACL with {what} {number}, which this client does \
                     not know (is the broker newer?)"
                ),
            })
        }
        Ok(AclBinding {
            resource_type: known(
                AclResourceType::from_proto(acl.resource_type),
                "resource type",
                acl.resource_type,
            )?,
            resource_name: acl.resource_name,
            pattern_type: known(
                AclPatternType::from_proto(acl.pattern_type),
                "pattern type",
                acl.pattern_type,
            )?,
            principal: acl.principal,
            host: acl.host,
            operation: known(
                AclOperation::from_proto(acl.operation),
                "operation",
                acl.operation,
            )?,
            permission: known(
                AclPermission::from_proto(acl.permission),
                "permission",
                acl.permission,
            )?,
        })
    }
}

/// Selects ACL bindings: `None` matches anything, so the default filter selects every
/// binding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    /// Bindings on this type of resource.
    pub resource_type: Option<AclResourceType>,
    /// Bindings with this resource name (compared as `pattern` says).
    pub resource_name: Option<String>,
    /// How the name compares and which pattern types are selected; `None` as
    /// [`AclPatternFilter::Any`].
    pub pattern: Option<AclPatternFilter>,
    /// Bindings for this principal exactly.
    pub principal: Option<String>,
    /// Bindings for this host exactly.
    pub host: Option<String>,
    /// Bindings naming this operation exactly.
    pub operation: Option<AclOperation>,
    /// Bindings with this permission.
    pub permission: Option<AclPermission>,
}

impl AclFilter {
    /// Whether the filter selects every binding.
    pub fn is_empty(&self) -> bool {
        *self == AclFilter::default()
    }

    pub(crate) fn to_proto(&self) -> pb::AclFilter {
        fn number<T: Into<i32>>(value: Option<T>) -> i32 {
            value.map_or(0, Into::into)
        }
        pb::AclFilter {
            resource_type: number(self.resource_type.map(AclResourceType::to_proto)),
            resource_name: self.resource_name.clone(),
            pattern_type: number(self.pattern.map(AclPatternFilter::to_proto)),
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: number(self.operation.map(AclOperation::to_proto)),
            permission: number(self.permission.map(AclPermission::to_proto)),
        }
    }
}

/// One SCRAM credential of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCredentialInfo {
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// Its PBKDF2 iterations.
    pub iterations: u32,
}

/// One user as [`Admin::list_users`](crate::Admin::list_users) answers it.
#[derive(Debug, Clone)]
pub struct UserInfo {
    /// User name.
    pub user: String,
    /// Its credentials by mechanism name, or why it could not be listed
    /// ([`ClientError::NotFound`] for a user named that does not exist).
    pub credentials: Result<Vec<UserCredentialInfo>, ClientError>,
}

impl UserInfo {
    pub(crate) fn from_proto(user: pb::UserDescription) -> UserInfo {
        UserInfo {
            user: user.user,
            credentials: match &user.error {
                Some(e) => Err(ClientError::from_partition_error(e)),
                None => Ok(user
                    .credentials
                    .into_iter()
                    .map(|c| UserCredentialInfo {
                        mechanism: c.mechanism,
                        iterations: c.iterations,
                    })
                    .collect()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_kafkas_spellings_too() {
        for op in AclOperation::ALL {
            assert_eq!(op.as_str().parse::<AclOperation>(), Ok(*op));
        }
        assert_eq!(
            "DescribeConfigs".parse::<AclOperation>(),
            Ok(AclOperation::DescribeConfigs)
        );
        assert_eq!(
            "TRANSACTIONAL_ID".parse::<AclResourceType>(),
            Ok(AclResourceType::TransactionalId)
        );
        let unknown = "rad".parse::<AclOperation>().unwrap_err().to_string();
        assert!(unknown.contains("unknown operation \"rad\""), "{unknown}");
        assert!(unknown.contains("read, write"), "{unknown}");
    }

    #[test]
    fn bindings_and_filters_convert() {
        let acl = AclBinding {
            resource_type: AclResourceType::Group,
            resource_name: "billing-".into(),
            pattern_type: AclPatternType::Prefixed,
            principal: "User:alice".into(),
            host: "10.0.0.1".into(),
            operation: AclOperation::Read,
            permission: AclPermission::Deny,
        };
        assert_eq!(AclBinding::from_proto(acl.to_proto()).unwrap(), acl);
        let mut unknown = acl.to_proto();
        unknown.operation = 99;
        let e = AclBinding::from_proto(unknown).unwrap_err().to_string();
        assert!(e.contains("operation 99"), "{e}");
        assert_eq!(AclFilter::default().to_proto(), pb::AclFilter::default());
        let filter = AclFilter {
            pattern: Some(AclPatternFilter::Match),
            resource_name: Some("orders".into()),
            ..AclFilter::default()
        };
        assert!(!filter.is_empty());
        assert_eq!(
            filter.to_proto().pattern_type,
            i32::from(pb::PatternType::Match)
        );
    }
}

/// One part of a quota entity: a name, or the default for every name without a quota of
/// its own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum QuotaName {
    /// This user or client id.
    Name(String),
    /// Every user (or client id) without a quota of its own.
    Default,
}

/// Whom a client quota applies to: a user, a client id, or a user's client id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QuotaEntity {
    /// The user part; `None`: none.
    pub user: Option<QuotaName>,
    /// The client id part; `None`: none.
    pub client_id: Option<QuotaName>,
}

impl QuotaEntity {
    pub(crate) fn to_proto(&self) -> pb::QuotaEntity {
        let part = |n: &Option<QuotaName>| match n {
            None => (String::new(), false),
            Some(QuotaName::Default) => (String::new(), true),
            Some(QuotaName::Name(name)) => (name.clone(), false),
        };
        let (user, default_user) = part(&self.user);
        let (client_id, default_client_id) = part(&self.client_id);
        pb::QuotaEntity {
            user,
            default_user,
            client_id,
            default_client_id,
        }
    }

    pub(crate) fn from_proto(e: pb::QuotaEntity) -> QuotaEntity {
        let part = |name: String, default: bool| match (name.is_empty(), default) {
            (_, true) => Some(QuotaName::Default),
            (true, false) => None,
            (false, false) => Some(QuotaName::Name(name)),
        };
        QuotaEntity {
            user: part(e.user, e.default_user),
            client_id: part(e.client_id, e.default_client_id),
        }
    }
}

impl fmt::Display for QuotaEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |what: &str, n: &Option<QuotaName>| match n {
            None => None,
            Some(QuotaName::Name(n)) => Some(format!("{what}={n}")),
            Some(QuotaName::Default) => Some(format!("{what}=<default>")),
        };
        let parts: Vec<String> = [part("user", &self.user), part("client-id", &self.client_id)]
            .into_iter()
            .flatten()
            .collect();
        f.write_str(&parts.join(","))
    }
}
