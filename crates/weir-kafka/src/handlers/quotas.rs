//! The client quota apis: AlterClientQuotas and DescribeClientQuotas, through the core's
//! `security_admin` (which `weir quota` reaches over gRPC too). Kafka's entities (a list
//! of entity type and name, a null name for the default) and match types become the
//! core's `QuotaEntity` and `QuotaFilter` here and nowhere else; Kafka's quota values are
//! doubles, Weir's whole numbers (bytes per second; percent of one thread).
//!
//! As in Kafka, each entry of an AlterClientQuotas is answered on its own: an entry
//! with a bad entity, an unknown key or a bad value gets INVALID_REQUEST with a message,
//! and the others are made; a caller without AlterConfigs on the cluster gets
//! CLUSTER_AUTHORIZATION_FAILED on every entry. DescribeClientQuotas needs
//! DescribeConfigs on the cluster.

use kafka_protocol::messages::alter_client_quotas_request::EntityData as AlterEntity;
use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlteredEntry,
};
use kafka_protocol::messages::describe_client_quotas_response::{
    EntityData as DescribedEntity, EntryData as DescribedEntry, ValueData,
};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;
use weir_broker::quotas::{QuotaFilter, QuotaMatch};
use weir_broker::security::{EntityName, MAX_QUOTA_VALUE, QuotaEntity};
use weir_broker::security_admin::{self, QuotaAlterations};
use weir_broker::{BrokerError, RequestContext};

use super::{KafkaBroker, answer, error_code};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};

// Kafka's entity types (org.apache.kafka.common.quota.ClientQuotaEntity).
const USER: &str = "user";
const CLIENT_ID: &str = "client-id";
const IP: &str = "ip";

// Kafka's match types (DescribeClientQuotasRequest).
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

/// The part of an entity an entity type names: true for the user, false for the client id.
fn entity_part(entity_type: &str) -> Result<bool, BrokerError> {
    match entity_type {
        USER => Ok(true),
        CLIENT_ID => Ok(false),
        IP => Err(BrokerError::invalid(
            "quotas by IP address (entity type \"ip\") are not supported by Weir",
        )),
        other => Err(BrokerError::invalid(format!(
            "unknown quota entity type {other:?} (use \"user\" or \"client-id\")"
        ))),
    }
}

/// The core's entity for a Kafka entity: its parts each at most once.
fn entity(parts: &[AlterEntity]) -> Result<QuotaEntity, BrokerError> {
    let mut entity = QuotaEntity {
        user: None,
        client_id: None,
    };
    for part in parts {
        let slot = match entity_part(&part.entity_type)? {
            true => &mut entity.user,
            false => &mut entity.client_id,
        };
        if slot.is_some() {
            return Err(BrokerError::invalid(format!(
                "the entity names {:?} twice",
                part.entity_type.as_str()
            )));
        }
        *slot = Some(match &part.entity_name {
            Some(name) => EntityName::Name(name.to_string()),
            None => EntityName::Default,
        });
    }
    Ok(entity)
}

/// A Kafka quota value as Weir keeps it: a whole number, 0 (which the core refuses with
/// the key's own message) up to [`MAX_QUOTA_VALUE`].
fn value(key: &str, value: f64) -> Result<u64, BrokerError> {
    if !value.is_finite() || value < 0.0 {
        return Err(BrokerError::invalid(format!(
            "{key} must be a positive number, not {value}"
        )));
    }
    if value.fract() != 0.0 {
        return Err(BrokerError::invalid(format!(
            "{key} must be a whole number, not {value} (Weir keeps byte rates in bytes per \
             second and request_percentage in whole percent)"
        )));
    }
    if value > MAX_QUOTA_VALUE as f64 {
        return Err(BrokerError::invalid(format!(
            "{key} must be at most {MAX_QUOTA_VALUE}"
        )));
    }
    Ok(value as u64)
}

/// One entry of an AlterClientQuotas as the core's alterations.
fn alterations(
    entry: &kafka_protocol::messages::alter_client_quotas_request::EntryData,
) -> Result<QuotaAlterations, BrokerError> {
    let entity = entity(&entry.entity)?;
    let mut out: QuotaAlterations = Vec::with_capacity(entry.ops.len());
    for op in &entry.ops {
        let key = op.key.to_string();
        if out.iter().any(|(_, k, _)| *k == key) {
            return Err(BrokerError::invalid(format!(
                "the entry alters {key:?} twice"
            )));
        }
        let set = match op.remove {
            true => None,
            false => Some(value(&key, op.value)?),
        };
        out.push((entity.clone(), key, set));
    }
    Ok(out)
}

pub(super) async fn alter_client_quotas(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: AlterClientQuotasRequest = request.decode_body()?;
    let decoded: Vec<Result<QuotaAlterations, BrokerError>> =
        req.entries.iter().map(alterations).collect();
    let valid: Vec<QuotaAlterations> = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok().cloned())
        .collect();
    let outcome = security_admin::alter_quotas(&broker.core, ctx, valid, req.validate_only).await;
    let mut made = match &outcome {
        Ok(each) => each.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let entries = req
        .entries
        .iter()
        .zip(decoded)
        .map(|(entry, decoded)| {
            let result = match (decoded.as_ref(), &outcome) {
                (Err(e), _) | (Ok(_), Err(e)) => Err(e.clone()),
                (Ok(_), Ok(_)) => made.next().expect("one outcome per valid entry"),
            };
            let answered = AlteredEntry::default().with_entity(
                entry
                    .entity
                    .iter()
                    .map(|p| {
                        AlteredEntity::default()
                            .with_entity_type(p.entity_type.clone())
                            .with_entity_name(p.entity_name.clone())
                    })
                    .collect(),
            );
            match result {
                Ok(()) => answered,
                Err(e) => answered
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            }
        })
        .collect();
    answer(
        ctx,
        request,
        AlterClientQuotasResponse::default().with_entries(entries),
    )
}

/// A DescribeClientQuotas filter as the core's.
fn filter(req: &DescribeClientQuotasRequest) -> Result<QuotaFilter, BrokerError> {
    let mut filter = QuotaFilter {
        strict: req.strict,
        ..QuotaFilter::default()
    };
    for component in &req.components {
        let slot = match entity_part(&component.entity_type)? {
            true => &mut filter.user,
            false => &mut filter.client_id,
        };
        if slot.is_some() {
            return Err(BrokerError::invalid(format!(
                "the filter names {:?} twice",
                component.entity_type.as_str()
            )));
        }
        *slot = Some(match (component.match_type, &component._match) {
            (MATCH_EXACT, Some(name)) => QuotaMatch::Exact(name.to_string()),
            (MATCH_EXACT, None) => {
                return Err(BrokerError::invalid(
                    "an exact match (match type 0) needs a name to match",
                ));
            }
            (MATCH_DEFAULT, _) => QuotaMatch::Default,
            (MATCH_ANY, _) => QuotaMatch::Any,
            (other, _) => {
                return Err(BrokerError::invalid(format!(
                    "unknown match type {other} (0: exact name, 1: default, 2: any)"
                )));
            }
        });
    }
    Ok(filter)
}

pub(super) async fn describe_client_quotas(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DescribeClientQuotasRequest = request.decode_body()?;
    let described =
        filter(&req).and_then(|f| security_admin::describe_quotas(&broker.core, ctx, &f));
    let response = match described {
        Err(e) => DescribeClientQuotasResponse::default()
            .with_error_code(error_code(&e))
            .with_error_message(Some(StrBytes::from_string(e.message))),
        Ok(found) => DescribeClientQuotasResponse::default().with_entries(Some(
            found
                .into_iter()
                .map(|(entity, values)| {
                    DescribedEntry::default()
                        .with_entity(described_entity(&entity))
                        .with_values(
                            values
                                .into_iter()
                                .map(|(key, value)| {
                                    ValueData::default()
                                        .with_key(StrBytes::from_string(key))
                                        .with_value(value as f64)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )),
    };
    answer(ctx, request, response)
}

/// An entity as Kafka lists it: user first, then client id; a null name is the default.
fn described_entity(entity: &QuotaEntity) -> Vec<DescribedEntity> {
    [(USER, &entity.user), (CLIENT_ID, &entity.client_id)]
        .into_iter()
        .filter_map(|(entity_type, part)| {
            let name = match part.as_ref()? {
                EntityName::Name(n) => Some(StrBytes::from_string(n.clone())),
                EntityName::Default => None,
            };
            Some(
                DescribedEntity::default()
                    .with_entity_type(StrBytes::from_static_str(entity_type))
                    .with_entity_name(name),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(entity_type: &'static str, name: Option<&'static str>) -> AlterEntity {
        AlterEntity::default()
            .with_entity_type(StrBytes::from_static_str(entity_type))
            .with_entity_name(name.map(StrBytes::from_static_str))
    }

    #[test]
    fn kafka_entities_become_the_cores_and_bad_ones_are_refused_with_a_reason() {
        assert_eq!(
            entity(&[part(USER, Some("alice")), part(CLIENT_ID, None)]).unwrap(),
            QuotaEntity {
                user: Some(EntityName::Name("alice".into())),
                client_id: Some(EntityName::Default),
            }
        );
        for (bad, why) in [
            (vec![part(IP, Some("10.0.0.1"))], "not supported"),
            (vec![part("group", Some("g"))], "unknown quota entity type"),
            (vec![part(USER, Some("a")), part(USER, None)], "twice"),
        ] {
            let err = entity(&bad).unwrap_err();
            assert!(err.message.contains(why), "{}", err.message);
            assert_eq!(error_code(&err), 42, "INVALID_REQUEST");
        }
    }

    #[test]
    fn values_are_whole_numbers_in_range() {
        assert_eq!(value("producer_byte_rate", 1048576.0).unwrap(), 1048576);
        assert_eq!(value("request_percentage", 0.0).unwrap(), 0);
        for (bad, why) in [
            (12.5, "whole number"),
            (-1.0, "positive"),
            (f64::NAN, "positive"),
            (f64::INFINITY, "positive"),
            (1e30, "at most"),
        ] {
            let err = value("request_percentage", bad).unwrap_err();
            assert!(err.message.contains(why), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn describe_filters_take_each_match_type() {
        use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
        let component = |entity_type: &'static str, match_type: i8, name: Option<&'static str>| {
            ComponentData::default()
                .with_entity_type(StrBytes::from_static_str(entity_type))
                .with_match_type(match_type)
                .with_match(name.map(StrBytes::from_static_str))
        };
        let req = DescribeClientQuotasRequest::default()
            .with_components(vec![
                component(USER, MATCH_EXACT, Some("alice")),
                component(CLIENT_ID, MATCH_ANY, None),
            ])
            .with_strict(true);
        assert_eq!(
            filter(&req).unwrap(),
            QuotaFilter {
                user: Some(QuotaMatch::Exact("alice".into())),
                client_id: Some(QuotaMatch::Any),
                strict: true,
            }
        );
        for (components, why) in [
            (vec![component(USER, MATCH_EXACT, None)], "needs a name"),
            (vec![component(USER, 7, None)], "unknown match type"),
            (
                vec![
                    component(USER, MATCH_DEFAULT, None),
                    component(USER, MATCH_ANY, None),
                ],
                "twice",
            ),
        ] {
            let req = DescribeClientQuotasRequest::default().with_components(components);
            let err = filter(&req).unwrap_err();
            assert!(err.message.contains(why), "{}", err.message);
        }
    }
}
