//! The users and ACLs calls of the Admin service (UpsertUser, DeleteUser, ListUsers,
//! CreateAcls, ListAcls, DeleteAcls): decode, call `weir_broker::security_admin` (which
//! authorises and holds every rule and limit), encode. The API's enums are turned into
//! the core's ACL model here and nowhere else; an enum value the API does not define, or
//! one a binding cannot have, is INVALID_ARGUMENT naming the field.

use tonic::Status;
use weir_broker::RequestContext;
use weir_broker::quotas::QuotaFilter;
use weir_broker::security::{
    AclBinding, AclFilter, EntityName, MAX_ACLS_PER_REQUEST, Operation, PatternFilter, PatternType,
    Permission, QuotaEntity, ResourceType,
};
use weir_broker::security_admin::{self as core, CredentialUpsert};
use weir_proto::v1 as pb;

use crate::Broker;
use crate::status::{broker_partition_error, broker_status};

pub(crate) async fn upsert_user(
    broker: &Broker,
    ctx: &RequestContext,
    req: pb::UpsertUserRequest,
) -> Result<pb::UpsertUserResponse, Status> {
    let upsert = CredentialUpsert {
        user: req.user,
        mechanism: req.mechanism,
        iterations: req.iterations,
        salt: req.salt.to_vec(),
        salted_password: req.salted_password.to_vec(),
    };
    core::upsert_credential(&broker.core, ctx, upsert)
        .await
        .map_err(broker_status)?;
    Ok(pb::UpsertUserResponse {})
}

pub(crate) async fn delete_user(
    broker: &Broker,
    ctx: &RequestContext,
    req: pb::DeleteUserRequest,
) -> Result<pb::DeleteUserResponse, Status> {
    let mechanisms =
        core::delete_credential(&broker.core, ctx, &req.user, req.mechanism.as_deref())
            .await
            .map_err(broker_status)?;
    Ok(pb::DeleteUserResponse { mechanisms })
}

pub(crate) fn list_users(
    broker: &Broker,
    ctx: &RequestContext,
    req: pb::ListUsersRequest,
) -> Result<pb::ListUsersResponse, Status> {
    let named = (!req.users.is_empty()).then_some(req.users.as_slice());
    let found = core::describe_users(&broker.core, ctx, named).map_err(broker_status)?;
    let users = found
        .into_iter()
        .enumerate()
        .map(|(i, result)| match result {
            Ok(listing) => pb::UserDescription {
                user: listing.user,
                credentials: listing
                    .mechanisms
                    .into_iter()
                    .map(|(mechanism, iterations)| pb::UserCredential {
                        mechanism,
                        iterations,
                    })
                    .collect(),
                error: None,
            },
            // Only named users are missing: one result per name, in request order.
            Err(e) => pb::UserDescription {
                user: req.users.get(i).cloned().unwrap_or_default(),
                credentials: Vec::new(),
                error: Some(broker_partition_error(&e)),
            },
        })
        .collect();
    Ok(pb::ListUsersResponse { users })
}

pub(crate) async fn create_acls(
    broker: &Broker,
    ctx: &RequestContext,
    req: pb::CreateAclsRequest,
) -> Result<pb::CreateAclsResponse, Status> {
    at_most_per_request("bindings", req.acls.len())?;
    let acls = req
        .acls
        .into_iter()
        .enumerate()
        .map(|(i, acl)| binding(acl, &format!("acls[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    core::create_acls(&broker.core, ctx, acls)
        .await
        .map_err(broker_status)?;
    Ok(pb::CreateAclsResponse {})
}

pub(crate) fn list_acls(
    broker: &Broker,
    ctx: &RequestContext,
    req: pb::ListAclsRequest,
) -> Result<pb::ListAclsResponse, Status> {
    let filter = filter(req.filter.unwrap_or_default(), "filter")?;
    let acls = core::describe_acls(&broker.core, ctx, &filter)
        .map_err(broker_status)?
        .into_iter()
        .map(proto_binding)
        .collect();
    Ok(pb::ListAclsResponse { acls })
}

pub(crate) async fn delete_acls(
    broker: &Broker,
    ctx: &RequestContext,
    req: pb::DeleteAclsRequest,
) -> Result<pb::DeleteAclsResponse, Status> {
    at_most_per_request("filters", req.filters.len())?;
    let filters = req
        .filters
        .into_iter()
        .enumerate()
        .map(|(i, f)| filter(f, &format!("filters[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let results = core::delete_acls(&broker.core, ctx, filters)
        .await
        .map_err(broker_status)?
        .into_iter()
        .map(|removed| pb::DeleteAclsResult {
            removed: removed.into_iter().map(proto_binding).collect(),
        })
        .collect();
    Ok(pb::DeleteAclsResponse { results })
}

/// Sets or removes quota keys, all or none.
pub(crate) async fn alter_quotas(
    broker: &Broker,
    ctx: &RequestContext,
    req: pb::AlterQuotasRequest,
) -> Result<pb::AlterQuotasResponse, Status> {
    at_most_per_request("alterations", req.alterations.len())?;
    let alterations = req
        .alterations
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let entity = quota_entity(a.entity.unwrap_or_default())
                .map_err(|e| crate::status::invalid(format!("alterations[{i}].entity: {e}")))?;
            Ok((entity, a.key, a.value))
        })
        .collect::<Result<Vec<_>, Status>>()?;
    // One entry: the request is made all or none.
    let outcome = core::alter_quotas(&broker.core, ctx, vec![alterations], false)
        .await
        .map_err(broker_status)?;
    for result in outcome {
        result.map_err(broker_status)?;
    }
    Ok(pb::AlterQuotasResponse {})
}

/// Every entity with a quota.
pub(crate) fn list_quotas(
    broker: &Broker,
    ctx: &RequestContext,
) -> Result<pb::ListQuotasResponse, Status> {
    let entries = core::describe_quotas(&broker.core, ctx, &QuotaFilter::default())
        .map_err(broker_status)?
        .into_iter()
        .map(|(entity, values)| pb::QuotaEntry {
            entity: Some(proto_quota_entity(&entity)),
            values: values.into_iter().collect(),
        })
        .collect();
    Ok(pb::ListQuotasResponse { entries })
}

fn quota_entity(e: pb::QuotaEntity) -> Result<QuotaEntity, String> {
    let part = |name: String, default: bool, what: &str| match (name.is_empty(), default) {
        (true, false) => Ok(None),
        (true, true) => Ok(Some(EntityName::Default)),
        (false, false) => Ok(Some(EntityName::Name(name))),
        (false, true) => Err(format!("a {what} name and the default {what} both")),
    };
    Ok(QuotaEntity {
        user: part(e.user, e.default_user, "user")?,
        client_id: part(e.client_id, e.default_client_id, "client id")?,
    })
}

fn proto_quota_entity(e: &QuotaEntity) -> pb::QuotaEntity {
    let part = |n: &Option<EntityName>| match n {
        None => (String::new(), false),
        Some(EntityName::Default) => (String::new(), true),
        Some(EntityName::Name(name)) => (name.clone(), false),
    };
    let (user, default_user) = part(&e.user);
    let (client_id, default_client_id) = part(&e.client_id);
    pb::QuotaEntity {
        user,
        default_user,
        client_id,
        default_client_id,
    }
}

/// Checked before anything is converted (the controller would refuse more anyway).
fn at_most_per_request(what: &str, given: usize) -> Result<(), Status> {
    match given > MAX_ACLS_PER_REQUEST {
        true => Err(crate::status::invalid(format!(
            "{given} {what} in one request; at most {MAX_ACLS_PER_REQUEST}"
        ))),
        false => Ok(()),
    }
}

/// A value of `field` that is not one of its enum's, or not one it may have here.
fn bad_enum(field: &str, value: i32, why: &str) -> Status {
    crate::status::invalid(format!("{field}: {value} {why}"))
}

/// An enum field of a binding or filter, as the core's type (`from` gives `None` for
/// UNSPECIFIED).
fn decode<P: TryFrom<i32>, T>(
    value: i32,
    field: &str,
    from: impl FnOnce(P) -> Option<T>,
) -> Result<Option<T>, Status> {
    let known = P::try_from(value).map_err(|_| bad_enum(field, value, "is not a known value"))?;
    Ok(from(known))
}

fn resource_type(value: i32, field: &str) -> Result<Option<ResourceType>, Status> {
    decode(value, field, |t| match t {
        pb::ResourceType::Unspecified => None,
        pb::ResourceType::Topic => Some(ResourceType::Topic),
        pb::ResourceType::Group => Some(ResourceType::Group),
        pb::ResourceType::Cluster => Some(ResourceType::Cluster),
        pb::ResourceType::TransactionalId => Some(ResourceType::TransactionalId),
    })
}

fn operation(value: i32, field: &str) -> Result<Option<Operation>, Status> {
    decode(value, field, |o| match o {
        pb::Operation::Unspecified => None,
        pb::Operation::All => Some(Operation::All),
        pb::Operation::Read => Some(Operation::Read),
        pb::Operation::Write => Some(Operation::Write),
        pb::Operation::Create => Some(Operation::Create),
        pb::Operation::Delete => Some(Operation::Delete),
        pb::Operation::Alter => Some(Operation::Alter),
        pb::Operation::Describe => Some(Operation::Describe),
        pb::Operation::ClusterAction => Some(Operation::ClusterAction),
        pb::Operation::DescribeConfigs => Some(Operation::DescribeConfigs),
        pb::Operation::AlterConfigs => Some(Operation::AlterConfigs),
        pb::Operation::IdempotentWrite => Some(Operation::IdempotentWrite),
    })
}

fn permission(value: i32, field: &str) -> Result<Option<Permission>, Status> {
    decode(value, field, |p| match p {
        pb::Permission::Unspecified => None,
        pb::Permission::Allow => Some(Permission::Allow),
        pb::Permission::Deny => Some(Permission::Deny),
    })
}

fn pattern_filter(value: i32, field: &str) -> Result<Option<PatternFilter>, Status> {
    decode(value, field, |p| match p {
        pb::PatternType::Unspecified => None,
        pb::PatternType::Any => Some(PatternFilter::Any),
        pb::PatternType::Match => Some(PatternFilter::Match),
        pb::PatternType::Literal => Some(PatternFilter::Exactly(PatternType::Literal)),
        pb::PatternType::Prefixed => Some(PatternFilter::Exactly(PatternType::Prefixed)),
    })
}

/// A binding as the core takes it: every enum set, the pattern LITERAL or PREFIXED.
fn binding(acl: pb::AclBinding, at: &str) -> Result<AclBinding, Status> {
    let required = |field: &str, value: i32| {
        bad_enum(
            &format!("{at}.{field}"),
            value,
            "is not allowed in a binding: give a value (UNSPECIFIED is only for filters)",
        )
    };
    let field = |name: &str| format!("{at}.{name}");
    let pattern_type = match pattern_filter(acl.pattern_type, &field("pattern_type"))? {
        Some(PatternFilter::Exactly(p)) => p,
        _ => {
            return Err(bad_enum(
                &field("pattern_type"),
                acl.pattern_type,
                "is not allowed in a binding: use LITERAL or PREFIXED (MATCH and ANY are for \
                 filters)",
            ));
        }
    };
    Ok(AclBinding {
        resource_type: resource_type(acl.resource_type, &field("resource_type"))?
            .ok_or_else(|| required("resource_type", acl.resource_type))?,
        resource_name: acl.resource_name,
        pattern_type,
        principal: acl.principal,
        host: acl.host,
        operation: operation(acl.operation, &field("operation"))?
            .ok_or_else(|| required("operation", acl.operation))?,
        permission: permission(acl.permission, &field("permission"))?
            .ok_or_else(|| required("permission", acl.permission))?,
    })
}

fn filter(f: pb::AclFilter, at: &str) -> Result<AclFilter, Status> {
    let field = |name: &str| format!("{at}.{name}");
    Ok(AclFilter {
        resource_type: resource_type(f.resource_type, &field("resource_type"))?,
        resource_name: f.resource_name,
        pattern: pattern_filter(f.pattern_type, &field("pattern_type"))?,
        principal: f.principal,
        host: f.host,
        operation: operation(f.operation, &field("operation"))?,
        permission: permission(f.permission, &field("permission"))?,
    })
}

fn proto_binding(acl: AclBinding) -> pb::AclBinding {
    let resource_type = match acl.resource_type {
        ResourceType::Topic => pb::ResourceType::Topic,
        ResourceType::Group => pb::ResourceType::Group,
        ResourceType::Cluster => pb::ResourceType::Cluster,
        ResourceType::TransactionalId => pb::ResourceType::TransactionalId,
    };
    let pattern_type = match acl.pattern_type {
        PatternType::Literal => pb::PatternType::Literal,
        PatternType::Prefixed => pb::PatternType::Prefixed,
    };
    let operation = match acl.operation {
        Operation::All => pb::Operation::All,
        Operation::Read => pb::Operation::Read,
        Operation::Write => pb::Operation::Write,
        Operation::Create => pb::Operation::Create,
        Operation::Delete => pb::Operation::Delete,
        Operation::Alter => pb::Operation::Alter,
        Operation::Describe => pb::Operation::Describe,
        Operation::ClusterAction => pb::Operation::ClusterAction,
        Operation::DescribeConfigs => pb::Operation::DescribeConfigs,
        Operation::AlterConfigs => pb::Operation::AlterConfigs,
        Operation::IdempotentWrite => pb::Operation::IdempotentWrite,
    };
    let permission = match acl.permission {
        Permission::Allow => pb::Permission::Allow,
        Permission::Deny => pb::Permission::Deny,
    };
    pb::AclBinding {
        resource_type: resource_type.into(),
        resource_name: acl.resource_name,
        pattern_type: pattern_type.into(),
        principal: acl.principal,
        host: acl.host,
        operation: operation.into(),
        permission: permission.into(),
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn acl() -> AclBinding {
        AclBinding {
            resource_type: ResourceType::TransactionalId,
            resource_name: "tx-".into(),
            pattern_type: PatternType::Prefixed,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::IdempotentWrite,
            permission: Permission::Deny,
        }
    }

    #[test]
    fn bindings_round_trip() {
        let acl = acl();
        assert_eq!(binding(proto_binding(acl.clone()), "acls[0]").unwrap(), acl);
    }

    #[test]
    fn unspecified_and_unknown_values_name_the_field() {
        let mut p = proto_binding(acl());
        p.operation = 0;
        let e = binding(p.clone(), "acls[3]").unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("acls[3].operation"), "{e:?}");
        p.operation = 99;
        let e = binding(p.clone(), "acls[3]").unwrap_err();
        assert!(e.message().contains("acls[3].operation: 99"), "{e:?}");
        p.operation = pb::Operation::Read.into();
        p.pattern_type = pb::PatternType::Match.into();
        let e = binding(p, "acls[0]").unwrap_err();
        assert!(e.message().contains("acls[0].pattern_type"), "{e:?}");
        let e = filter(
            pb::AclFilter {
                permission: 7,
                ..Default::default()
            },
            "filters[1]",
        )
        .unwrap_err();
        assert!(e.message().contains("filters[1].permission"), "{e:?}");
    }

    #[test]
    fn an_empty_filter_selects_everything_and_match_is_kept() {
        let empty = filter(pb::AclFilter::default(), "filter").unwrap();
        assert_eq!(
            empty,
            AclFilter {
                pattern: None,
                ..AclFilter::default()
            }
        );
        assert!(empty.matches(&acl()));
        let matching = filter(
            pb::AclFilter {
                resource_name: Some("tx-1".into()),
                pattern_type: pb::PatternType::Match.into(),
                ..Default::default()
            },
            "filter",
        )
        .unwrap();
        assert_eq!(matching.pattern, Some(PatternFilter::Match));
        assert!(matching.matches(&acl()));
    }
}
