//! The security admin apis: CreateAcls, DescribeAcls, DeleteAcls,
//! AlterUserScramCredentials and DescribeUserScramCredentials, through the core's
//! `security_admin` (which `weir acl` and `weir user` reach over gRPC too). Kafka's
//! numeric codes for resource types, pattern types, operations, permissions and SCRAM
//! mechanisms are turned into the core's ACL model here and nowhere else.

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, CreateAclsRequest,
    CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use weir_broker::security::{
    AclBinding, AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType,
};
use weir_broker::security_admin::{self, CredentialUpsert};
use weir_broker::{BrokerError, RequestContext};

use super::{KafkaBroker, answer, error_code};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};

// Kafka's codes (org.apache.kafka.common.resource / acl).
const ANY: i8 = 1;
const MATCH: i8 = 2;

fn resource_type(code: i8) -> Option<ResourceType> {
    Some(match code {
        2 => ResourceType::Topic,
        3 => ResourceType::Group,
        4 => ResourceType::Cluster,
        5 => ResourceType::TransactionalId,
        _ => return None,
    })
}

fn resource_type_code(t: ResourceType) -> i8 {
    match t {
        ResourceType::Topic => 2,
        ResourceType::Group => 3,
        ResourceType::Cluster => 4,
        ResourceType::TransactionalId => 5,
    }
}

fn pattern_type(code: i8) -> Option<PatternType> {
    match code {
        3 => Some(PatternType::Literal),
        4 => Some(PatternType::Prefixed),
        _ => None,
    }
}

fn pattern_type_code(p: PatternType) -> i8 {
    match p {
        PatternType::Literal => 3,
        PatternType::Prefixed => 4,
    }
}

const OPERATIONS: [(i8, Operation); 11] = [
    (2, Operation::All),
    (3, Operation::Read),
    (4, Operation::Write),
    (5, Operation::Create),
    (6, Operation::Delete),
    (7, Operation::Alter),
    (8, Operation::Describe),
    (9, Operation::ClusterAction),
    (10, Operation::DescribeConfigs),
    (11, Operation::AlterConfigs),
    (12, Operation::IdempotentWrite),
];

fn operation(code: i8) -> Option<Operation> {
    OPERATIONS.iter().find(|(c, _)| *c == code).map(|(_, o)| *o)
}

fn operation_code(op: Operation) -> i8 {
    OPERATIONS
        .iter()
        .find(|(_, o)| *o == op)
        .map_or(0, |(c, _)| *c)
}

/// Kafka's `authorized_operations` of a resource for the request's principal: a bit set
/// with bit `n` for the operation whose ACL code is `n`, from the core's authorisation.
pub(super) fn authorized_operations(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    resource_type: ResourceType,
    name: &str,
) -> i32 {
    broker
        .core
        .allowed_operations(ctx, resource_type, name)
        .into_iter()
        .fold(0, |bits, op| bits | 1 << operation_code(op))
}

fn permission(code: i8) -> Option<Permission> {
    match code {
        2 => Some(Permission::Deny),
        3 => Some(Permission::Allow),
        _ => None,
    }
}

fn permission_code(p: Permission) -> i8 {
    match p {
        Permission::Deny => 2,
        Permission::Allow => 3,
    }
}

/// Kafka's ScramMechanism codes.
fn mechanism_name(code: i8) -> Option<&'static str> {
    match code {
        1 => Some("SCRAM-SHA-256"),
        2 => Some("SCRAM-SHA-512"),
        _ => None,
    }
}

fn mechanism_code(name: &str) -> i8 {
    match name {
        "SCRAM-SHA-256" => 1,
        "SCRAM-SHA-512" => 2,
        _ => 0,
    }
}

/// The filter the request's fields describe (`ANY` and null are wildcards).
struct FilterFields<'a> {
    resource_type: i8,
    resource_name: Option<&'a StrBytes>,
    pattern_type: i8,
    principal: Option<&'a StrBytes>,
    host: Option<&'a StrBytes>,
    operation: i8,
    permission: i8,
}

fn filter(f: FilterFields<'_>) -> Result<AclFilter, BrokerError> {
    let unknown = |what: &str, code: i8| {
        BrokerError::invalid(format!("unknown {what} code {code} in the ACL filter"))
    };
    Ok(AclFilter {
        resource_type: match f.resource_type {
            ANY => None,
            code => Some(resource_type(code).ok_or_else(|| unknown("resource type", code))?),
        },
        resource_name: f.resource_name.map(|n| n.to_string()),
        pattern: Some(match f.pattern_type {
            ANY => PatternFilter::Any,
            MATCH => PatternFilter::Match,
            code => PatternFilter::Exactly(
                pattern_type(code).ok_or_else(|| unknown("pattern type", code))?,
            ),
        }),
        principal: f.principal.map(|p| p.to_string()),
        host: f.host.map(|h| h.to_string()),
        operation: match f.operation {
            ANY => None,
            code => Some(operation(code).ok_or_else(|| unknown("operation", code))?),
        },
        permission: match f.permission {
            ANY => None,
            code => Some(permission(code).ok_or_else(|| unknown("permission type", code))?),
        },
    })
}

fn message(e: &BrokerError) -> Option<StrBytes> {
    Some(StrBytes::from_string(e.message.clone()))
}

pub(super) async fn create_acls(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: CreateAclsRequest = request.decode_body()?;
    // Each creation is answered on its own, as Kafka does: the valid ones are added
    // together, the invalid ones get their error.
    let mut results = Vec::with_capacity(req.creations.len());
    let mut valid = Vec::new();
    for c in &req.creations {
        let invalid = |what: &str| BrokerError::invalid(format!("unknown {what} in the ACL"));
        let acl = (|| {
            Ok::<_, BrokerError>(AclBinding {
                resource_type: resource_type(c.resource_type)
                    .ok_or_else(|| invalid("resource type"))?,
                resource_name: c.resource_name.to_string(),
                pattern_type: pattern_type(c.resource_pattern_type)
                    .ok_or_else(|| invalid("pattern type"))?,
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: operation(c.operation).ok_or_else(|| invalid("operation"))?,
                permission: permission(c.permission_type)
                    .ok_or_else(|| invalid("permission type"))?,
            })
        })()
        .and_then(|acl| acl.validate().map(|()| acl).map_err(BrokerError::invalid));
        results.push(acl.as_ref().err().cloned());
        if let Ok(acl) = acl {
            valid.push(acl);
        }
    }
    let added = security_admin::create_acls(&broker.core, ctx, valid).await;
    let results = results
        .into_iter()
        .map(|own| {
            let error = own.or_else(|| added.as_ref().err().cloned());
            match error {
                None => AclCreationResult::default(),
                Some(e) => AclCreationResult::default()
                    .with_error_code(error_code(&e))
                    .with_error_message(message(&e)),
            }
        })
        .collect();
    answer(
        ctx,
        request,
        CreateAclsResponse::default().with_results(results),
    )
}

pub(super) async fn describe_acls(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DescribeAclsRequest = request.decode_body()?;
    let found = filter(FilterFields {
        resource_type: req.resource_type_filter,
        resource_name: req.resource_name_filter.as_ref(),
        pattern_type: req.pattern_type_filter,
        principal: req.principal_filter.as_ref(),
        host: req.host_filter.as_ref(),
        operation: req.operation,
        permission: req.permission_type,
    })
    .and_then(|f| security_admin::describe_acls(&broker.core, ctx, &f));
    let response = match found {
        Err(e) => DescribeAclsResponse::default()
            .with_error_code(error_code(&e))
            .with_error_message(message(&e)),
        Ok(acls) => {
            // Grouped by resource pattern; the bindings come sorted, so one pass does.
            let mut resources: Vec<DescribeAclsResource> = Vec::new();
            for acl in acls {
                let key = (
                    resource_type_code(acl.resource_type),
                    acl.resource_name.as_str(),
                    pattern_type_code(acl.pattern_type),
                );
                let description = AclDescription::default()
                    .with_principal(StrBytes::from_string(acl.principal.clone()))
                    .with_host(StrBytes::from_string(acl.host.clone()))
                    .with_operation(operation_code(acl.operation))
                    .with_permission_type(permission_code(acl.permission));
                match resources.last_mut() {
                    Some(r)
                        if (r.resource_type, r.resource_name.as_str(), r.pattern_type) == key =>
                    {
                        r.acls.push(description)
                    }
                    _ => resources.push(
                        DescribeAclsResource::default()
                            .with_resource_type(key.0)
                            .with_resource_name(StrBytes::from_string(acl.resource_name.clone()))
                            .with_pattern_type(key.2)
                            .with_acls(vec![description]),
                    ),
                }
            }
            DescribeAclsResponse::default().with_resources(resources)
        }
    };
    answer(ctx, request, response)
}

pub(super) async fn delete_acls(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DeleteAclsRequest = request.decode_body()?;
    let filters: Vec<Result<AclFilter, BrokerError>> = req
        .filters
        .iter()
        .map(|f| {
            filter(FilterFields {
                resource_type: f.resource_type_filter,
                resource_name: f.resource_name_filter.as_ref(),
                pattern_type: f.pattern_type_filter,
                principal: f.principal_filter.as_ref(),
                host: f.host_filter.as_ref(),
                operation: f.operation,
                permission: f.permission_type,
            })
        })
        .collect();
    let valid: Vec<AclFilter> = filters
        .iter()
        .filter_map(|f| f.as_ref().ok().cloned())
        .collect();
    let deleted = security_admin::delete_acls(&broker.core, ctx, valid).await;
    let mut removed = match &deleted {
        Ok(per_filter) => per_filter.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = filters
        .into_iter()
        .map(|f| match (f.as_ref(), &deleted) {
            (Err(e), _) | (Ok(_), Err(e)) => DeleteAclsFilterResult::default()
                .with_error_code(error_code(e))
                .with_error_message(message(e)),
            (Ok(_), Ok(_)) => DeleteAclsFilterResult::default().with_matching_acls(
                removed
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|acl| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(resource_type_code(acl.resource_type))
                            .with_resource_name(StrBytes::from_string(acl.resource_name))
                            .with_pattern_type(pattern_type_code(acl.pattern_type))
                            .with_principal(StrBytes::from_string(acl.principal))
                            .with_host(StrBytes::from_string(acl.host))
                            .with_operation(operation_code(acl.operation))
                            .with_permission_type(permission_code(acl.permission))
                    })
                    .collect(),
            ),
        })
        .collect();
    answer(
        ctx,
        request,
        DeleteAclsResponse::default().with_filter_results(results),
    )
}

pub(super) async fn alter_user_scram_credentials(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: AlterUserScramCredentialsRequest = request.decode_body()?;
    let mut results = Vec::with_capacity(req.deletions.len() + req.upsertions.len());
    let result = |user: &StrBytes, outcome: Result<(), BrokerError>| {
        let r = AlterUserScramCredentialsResult::default().with_user(user.clone());
        match outcome {
            Ok(()) => r,
            Err(e) => r
                .with_error_code(error_code(&e))
                .with_error_message(message(&e)),
        }
    };
    for d in &req.deletions {
        let outcome = match mechanism_name(d.mechanism) {
            None => Err(BrokerError::invalid("unknown SCRAM mechanism")),
            Some(m) => {
                security_admin::delete_credential(&broker.core, ctx, d.name.as_str(), Some(m))
                    .await
                    .map(|_| ())
            }
        };
        results.push(result(&d.name, outcome));
    }
    for u in &req.upsertions {
        let outcome = match mechanism_name(u.mechanism) {
            None => Err(BrokerError::invalid("unknown SCRAM mechanism")),
            Some(m) => {
                let upsert = CredentialUpsert {
                    user: u.name.to_string(),
                    mechanism: m.to_owned(),
                    iterations: u32::try_from(u.iterations).unwrap_or(0),
                    salt: u.salt.to_vec(),
                    salted_password: u.salted_password.to_vec(),
                };
                security_admin::upsert_credential(&broker.core, ctx, upsert).await
            }
        };
        results.push(result(&u.name, outcome));
    }
    answer(
        ctx,
        request,
        AlterUserScramCredentialsResponse::default().with_results(results),
    )
}

pub(super) async fn describe_user_scram_credentials(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DescribeUserScramCredentialsRequest = request.decode_body()?;
    let names: Option<Vec<String>> = req
        .users
        .as_ref()
        .map(|users| users.iter().map(|u| u.name.to_string()).collect());
    let response = match security_admin::describe_users(&broker.core, ctx, names.as_deref()) {
        Err(e) => DescribeUserScramCredentialsResponse::default()
            .with_error_code(error_code(&e))
            .with_error_message(message(&e)),
        Ok(listed) => {
            let asked = names.unwrap_or_default();
            let results = listed
                .into_iter()
                .enumerate()
                .map(|(i, listing)| match listing {
                    Ok(l) => DescribeUserScramCredentialsResult::default()
                        .with_user(StrBytes::from_string(l.user))
                        .with_credential_infos(
                            l.mechanisms
                                .into_iter()
                                .map(|(m, iterations)| {
                                    CredentialInfo::default()
                                        .with_mechanism(mechanism_code(&m))
                                        .with_iterations(iterations as i32)
                                })
                                .collect(),
                        ),
                    Err(e) => DescribeUserScramCredentialsResult::default()
                        .with_user(StrBytes::from_string(
                            asked.get(i).cloned().unwrap_or_default(),
                        ))
                        .with_error_code(error_code(&e))
                        .with_error_message(message(&e)),
                })
                .collect();
            DescribeUserScramCredentialsResponse::default().with_results(results)
        }
    };
    answer(ctx, request, response)
}
