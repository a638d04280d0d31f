//! Authorisation: Kafka's ACL model, checked here once for every protocol on the
//! principal of each request's [`RequestContext`] (`docs/security.md` § Authorisation).
//!
//! - Off (the one-command start): everything is allowed.
//! - On: deny by default. Super users (`--super-users`) and the broker's own requests
//!   ([`crate::Listener::INTERNAL`]) may do anything. Every other listener, the console's
//!   ([`crate::Listener::HTTP`]) included, is checked here on its request's principal.
//!   Otherwise a request is allowed when an
//!   ALLOW binding matches and no DENY binding does: a binding matches when its principal
//!   is the request's (or `User:*`), its host is the client's address (or `*`), its
//!   resource pattern covers the resource (literal name, literal `*`, or a prefix), and
//!   its operation is the one asked, `All`, or (for ALLOW) one that implies it, as in
//!   Kafka ([`Operation::allowed_by`]).
//!
//! The bindings live in the metadata image; the [`Authorizer`] keeps an index of them
//! (literal names hashed, prefixes looked up by the lengths that occur) rebuilt only when
//! the image's ACL version moves, so a check costs a few hash lookups however many
//! bindings there are.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use weir_cluster::TopicRegistry;
use weir_cluster::controller::{MetadataImage, MetadataOffset};
use weir_cluster::security::{
    AclBinding, CLUSTER_RESOURCE_NAME, Operation, PatternType, Permission, ResourceType, WILDCARD,
};

use crate::audit::AuditLog;
use crate::authn::PasswordChecks;
use crate::context::{Principal, RequestContext};
use crate::error::{BrokerError, Reason};

/// How the broker authenticates and authorises requests (`--authentication`,
/// `--authorization`, `--super-users`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Clients must prove who they are (SASL on the Kafka listeners, a user and password
    /// on gRPC and the admin listener, or a client certificate) before anything else.
    pub require_authentication: bool,
    /// Off: every request is allowed. On: deny unless an ACL allows.
    pub authorization: bool,
    /// Principals (`User:NAME`) allowed everything.
    pub super_users: Vec<String>,
    /// How client quotas measure rates.
    pub quota_windows: crate::quotas::QuotaWindows,
}

/// Decides requests against the cluster's ACLs.
#[derive(Debug)]
pub struct Authorizer {
    config: SecurityConfig,
    super_users: HashSet<String>,
    index: RwLock<Arc<AclIndex>>,
    audit: AuditLog,
    passwords: PasswordChecks,
}

impl Authorizer {
    pub fn new(config: SecurityConfig) -> Authorizer {
        Authorizer {
            super_users: config.super_users.iter().cloned().collect(),
            config,
            index: RwLock::new(Arc::new(AclIndex::default())),
            audit: AuditLog::default(),
            passwords: PasswordChecks::default(),
        }
    }

    /// Whether authorisation is on.
    pub fn enabled(&self) -> bool {
        self.config.authorization
    }

    /// The security settings.
    pub fn config(&self) -> &SecurityConfig {
        &self.config
    }

    /// Password checks: the cache of recent outcomes (PBKDF2 is slow on purpose; a
    /// client that sends its password with every call must not pay it every time) and
    /// the cap on PBKDF2s at once (`authn`).
    pub fn passwords(&self) -> &PasswordChecks {
        &self.passwords
    }

    /// The audit log authentication failures are written to as well.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Whether the request may do `operation` on the resource, without a log line (for
    /// filtering what a listing reveals).
    /// Whether the request's principal is a super user (the brokers themselves among
    /// them, by their certificates).
    pub fn is_super_user(&self, ctx: &RequestContext) -> bool {
        match &ctx.principal {
            Principal::Anonymous => false,
            principal => self.super_users.contains(&principal.to_string()),
        }
    }

    pub fn allows(
        &self,
        registry: &TopicRegistry,
        ctx: &RequestContext,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        // The broker's own requests.
        if !self.config.authorization || ctx.listener.is_internal() {
            return true;
        }
        let principal = ctx.principal.to_string();
        if self.super_users.contains(&principal) {
            return true;
        }
        self.current(registry).allows(
            &principal,
            ctx.peer.map(|p| p.ip()),
            operation,
            resource_type,
            name,
        )
    }

    /// [`Authorizer::allows`], or the AUTHORIZATION_FAILED error for the resource's type,
    /// with an audit line.
    pub fn check(
        &self,
        registry: &TopicRegistry,
        ctx: &RequestContext,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> Result<(), BrokerError> {
        if self.allows(registry, ctx, operation, resource_type, name) {
            return Ok(());
        }
        let resource = format!("{resource_type:?}:{name}");
        self.audit.denied(ctx, &format!("{operation:?}"), &resource);
        Err(BrokerError::new(
            Reason::NotAuthorized { resource_type },
            format!(
                "{} is not authorized to {operation:?} {}",
                ctx.principal,
                describe(resource_type, name)
            ),
        ))
    }

    /// The index for the image now applied, rebuilt if the ACLs changed.
    fn current(&self, registry: &TopicRegistry) -> Arc<AclIndex> {
        let image = registry.cluster().image();
        let index = self.index.read().expect("acl index lock").clone();
        if index.version == image.acls_version() && index.built {
            return index;
        }
        let fresh = Arc::new(AclIndex::build(&image));
        *self.index.write().expect("acl index lock") = fresh.clone();
        fresh
    }
}

/// The operations that apply to a resource of `resource_type`, as Kafka lists them for
/// `authorized_operations` (its `AclEntry.supportedOperations`).
pub fn supported_operations(resource_type: ResourceType) -> &'static [Operation] {
    use Operation as O;
    match resource_type {
        ResourceType::Topic => &[
            O::Read,
            O::Write,
            O::Create,
            O::Describe,
            O::Delete,
            O::Alter,
            O::DescribeConfigs,
            O::AlterConfigs,
        ],
        ResourceType::Group => &[O::Read, O::Describe, O::Delete],
        ResourceType::Cluster => &[
            O::Create,
            O::ClusterAction,
            O::DescribeConfigs,
            O::AlterConfigs,
            O::IdempotentWrite,
            O::Alter,
            O::Describe,
        ],
        ResourceType::TransactionalId => &[O::Describe, O::Write],
    }
}

fn describe(resource_type: ResourceType, name: &str) -> String {
    match resource_type {
        ResourceType::Topic => format!("topic {name:?}"),
        ResourceType::Group => format!("group {name:?}"),
        ResourceType::Cluster => "the cluster".into(),
        ResourceType::TransactionalId => format!("transactional id {name:?}"),
    }
}

/// The bindings of one metadata image, indexed for lookups by resource.
#[derive(Debug, Default)]
struct AclIndex {
    version: MetadataOffset,
    /// False only for the empty index a new authoriser starts with.
    built: bool,
    by_type: HashMap<ResourceType, TypeIndex>,
}

#[derive(Debug, Default)]
struct TypeIndex {
    /// Literal bindings by resource name (`*` included).
    literal: HashMap<String, Vec<Entry>>,
    /// Prefixed bindings by prefix.
    prefixed: HashMap<String, Vec<Entry>>,
    /// The byte lengths of the prefixes in `prefixed`.
    prefix_lengths: BTreeSet<usize>,
}

#[derive(Debug)]
struct Entry {
    principal: String,
    /// `None` for any host.
    host: Option<IpAddr>,
    operation: Operation,
    permission: Permission,
}

impl AclIndex {
    fn build(image: &MetadataImage) -> AclIndex {
        let mut by_type: HashMap<ResourceType, TypeIndex> = HashMap::new();
        for acl in image.acls() {
            let index = by_type.entry(acl.resource_type).or_default();
            let entry = Entry::from(acl);
            match acl.pattern_type {
                PatternType::Literal => index
                    .literal
                    .entry(acl.resource_name.clone())
                    .or_default()
                    .push(entry),
                PatternType::Prefixed => {
                    index.prefix_lengths.insert(acl.resource_name.len());
                    index
                        .prefixed
                        .entry(acl.resource_name.clone())
                        .or_default()
                        .push(entry);
                }
            }
        }
        AclIndex {
            version: image.acls_version(),
            built: true,
            by_type,
        }
    }

    fn allows(
        &self,
        principal: &str,
        host: Option<IpAddr>,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let Some(index) = self.by_type.get(&resource_type) else {
            return false;
        };
        let name = if resource_type == ResourceType::Cluster {
            CLUSTER_RESOURCE_NAME
        } else {
            name
        };
        let literal = [name, WILDCARD]
            .into_iter()
            .filter_map(|n| index.literal.get(n));
        let prefixed = index
            .prefix_lengths
            .iter()
            .take_while(|&&len| len <= name.len())
            .filter_map(|&len| name.get(..len))
            .filter_map(|prefix| index.prefixed.get(prefix));
        let mut allowed = false;
        for entry in literal.chain(prefixed).flatten() {
            let applies = (entry.principal == principal || entry.principal == "User:*")
                && entry.host.is_none_or(|h| Some(h) == host);
            if !applies {
                continue;
            }
            match entry.permission {
                Permission::Deny
                    if entry.operation == operation || entry.operation == Operation::All =>
                {
                    return false;
                }
                Permission::Allow if operation.allowed_by().contains(&entry.operation) => {
                    allowed = true;
                }
                _ => {}
            }
        }
        allowed
    }
}

impl From<&AclBinding> for Entry {
    fn from(acl: &AclBinding) -> Entry {
        Entry {
            principal: acl.principal.clone(),
            // Validated when stored: `*` or an address.
            host: acl.host.parse().ok(),
            operation: acl.operation,
            permission: acl.permission,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_cluster::controller::MetadataRecord;

    fn binding(
        principal: &str,
        name: &str,
        pattern_type: PatternType,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type,
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission,
        }
    }

    fn index(acls: Vec<AclBinding>) -> AclIndex {
        let mut image = MetadataImage::new();
        image
            .apply(&MetadataRecord::ClusterCreated {
                cluster_id: "c".into(),
            })
            .unwrap();
        for acl in acls {
            image.apply(&MetadataRecord::AclCreated { acl }).unwrap();
        }
        AclIndex::build(&image)
    }

    const ALICE: &str = "User:alice";

    fn may(index: &AclIndex, principal: &str, op: Operation, topic: &str) -> bool {
        index.allows(principal, None, op, ResourceType::Topic, topic)
    }

    #[test]
    fn nothing_is_allowed_without_a_binding() {
        let index = index(vec![]);
        assert!(!may(&index, ALICE, Operation::Read, "orders"));
    }

    #[test]
    fn literal_wildcard_and_prefixed_patterns_match_as_in_kafka() {
        use Operation::*;
        use PatternType::*;
        let index = index(vec![
            binding(ALICE, "orders", Literal, Read, Permission::Allow),
            binding(ALICE, "pay.", Prefixed, Write, Permission::Allow),
            binding("User:*", "*", Literal, Describe, Permission::Allow),
        ]);
        assert!(may(&index, ALICE, Read, "orders"));
        assert!(!may(&index, ALICE, Read, "orders2"), "literal is exact");
        assert!(may(&index, ALICE, Write, "pay.eu"));
        assert!(may(&index, ALICE, Write, "pay."));
        assert!(!may(&index, ALICE, Write, "pay"), "shorter than the prefix");
        assert!(!may(&index, ALICE, Read, "pay.eu"), "other operation");
        assert!(may(&index, "User:bob", Describe, "anything"), "wildcards");
        assert!(!may(&index, "User:bob", Read, "orders"));
    }

    #[test]
    fn deny_wins_and_implied_operations_allow_describe() {
        use Operation::*;
        use PatternType::*;
        let index = index(vec![
            binding(ALICE, "*", Literal, All, Permission::Allow),
            binding(ALICE, "secret", Prefixed, Read, Permission::Deny),
            binding("User:*", "audit", Literal, All, Permission::Deny),
            binding("User:bob", "orders", Literal, Write, Permission::Allow),
        ]);
        assert!(may(&index, ALICE, Read, "orders"));
        assert!(
            !may(&index, ALICE, Read, "secret-plans"),
            "deny overrides allow"
        );
        assert!(
            may(&index, ALICE, Write, "secret-plans"),
            "denied Read only"
        );
        assert!(
            !may(&index, ALICE, Describe, "audit"),
            "deny All for everyone"
        );
        assert!(
            may(&index, "User:bob", Describe, "orders"),
            "Write implies Describe"
        );
        assert!(!may(&index, "User:bob", Read, "orders"));
    }

    #[test]
    fn hosts_restrict_bindings() {
        let mut acl = binding(
            ALICE,
            "orders",
            PatternType::Literal,
            Operation::Read,
            Permission::Allow,
        );
        acl.host = "10.0.0.1".into();
        let index = index(vec![acl]);
        let from = |ip: &str| {
            index.allows(
                ALICE,
                Some(ip.parse().unwrap()),
                Operation::Read,
                ResourceType::Topic,
                "orders",
            )
        };
        assert!(from("10.0.0.1"));
        assert!(!from("10.0.0.2"));
        assert!(!index.allows(ALICE, None, Operation::Read, ResourceType::Topic, "orders"));
    }

    #[test]
    fn ten_thousand_bindings_cost_a_few_lookups() {
        let mut acls: Vec<AclBinding> = (0..10_000)
            .map(|i| {
                binding(
                    &format!("User:u{i}"),
                    &format!("topic-{i}"),
                    if i % 2 == 0 {
                        PatternType::Literal
                    } else {
                        PatternType::Prefixed
                    },
                    Operation::Write,
                    Permission::Allow,
                )
            })
            .collect();
        acls.push(binding(
            ALICE,
            "orders",
            PatternType::Literal,
            Operation::Write,
            Permission::Allow,
        ));
        let index = index(acls);
        assert!(may(&index, ALICE, Operation::Write, "orders"));
        assert!(may(&index, "User:u3", Operation::Write, "topic-3-eu"));
        assert!(!may(&index, "User:u3", Operation::Write, "topic-4"));
    }
}
