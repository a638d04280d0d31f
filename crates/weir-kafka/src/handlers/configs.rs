//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs, through the core's config
//! operations (the same ones gRPC's DescribeTopicConfig and AlterTopicConfig use).
//! Topics' configs are read and changed; a broker's are read, and a change to one is
//! answered per key (each is static: set when `weir serve` starts).

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    alter_configs_response::AlterConfigsResourceResponse,
    describe_configs_response::{
        DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
    },
    incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;
use weir_broker::configs::{self, BrokerConfigSource, ConfigChange, ConfigEntry, ConfigType};
use weir_broker::group_configs;
use weir_broker::{BrokerError, Reason, RequestContext};

use super::{KafkaBroker, answer, error_code};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};

/// Kafka's config resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// A group's configs (KIP-848 / KIP-932): Weir serves the share-group ones.
const RESOURCE_GROUP: i8 = 32;

/// Kafka's config sources.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const SOURCE_GROUP: i8 = 8;

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// DescribeConfigs v3+ answers carry each config's type and documentation.
const FIRST_TYPED_DESCRIBE: i16 = 3;

/// Kafka's config types.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;

/// Kafka's code for the type of a topic's (or share group's) key.
/// Kafka's config source of a broker setting.
fn broker_source(source: BrokerConfigSource) -> i8 {
    match source {
        BrokerConfigSource::Static => SOURCE_STATIC_BROKER,
        BrokerConfigSource::DynamicBroker => SOURCE_DYNAMIC_BROKER,
        BrokerConfigSource::DynamicDefault => SOURCE_DYNAMIC_DEFAULT_BROKER,
        BrokerConfigSource::Default => SOURCE_DEFAULT,
    }
}

fn kafka_type(kind: ConfigType) -> i8 {
    match kind {
        ConfigType::Boolean => TYPE_BOOLEAN,
        ConfigType::String => TYPE_STRING,
        ConfigType::Int => TYPE_INT,
        ConfigType::Long => TYPE_LONG,
        ConfigType::Double => TYPE_DOUBLE,
        ConfigType::List => TYPE_LIST,
    }
}

/// The Kafka type of a broker setting.
fn config_type(name: &str) -> i8 {
    match name {
        "log.cleanup.policy" | "listeners" | "advertised.listeners" => TYPE_LIST,
        "unclean.leader.election.enable" | "auto.create.topics.enable" => TYPE_BOOLEAN,
        "message.max.bytes"
        | "min.insync.replicas"
        | "log.segment.bytes"
        | "broker.id"
        | "node.id"
        | "num.partitions"
        | "default.replication.factor"
        | "socket.request.max.bytes" => TYPE_INT,
        "log.cleaner.delete.retention.ms"
        | "log.retention.bytes"
        | "log.retention.ms"
        | "log.roll.ms" => TYPE_LONG,
        _ => TYPE_STRING,
    }
}

/// One config as a DescribeConfigs answer shows it at `version`.
struct Described<'a> {
    name: &'a str,
    value: &'a str,
    source: i8,
    read_only: bool,
    documentation: &'a str,
    config_type: i8,
}

fn described(
    d: Described<'_>,
    version: i16,
    synonyms: bool,
    documentation: bool,
) -> DescribeConfigsResourceResult {
    let mut result = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(d.name.to_owned()))
        .with_value(Some(StrBytes::from_string(d.value.to_owned())))
        .with_read_only(d.read_only)
        .with_config_source(d.source)
        .with_is_sensitive(false);
    if synonyms {
        // Kafka lists the source the value comes from first.
        result = result.with_synonyms(vec![
            DescribeConfigsSynonym::default()
                .with_name(StrBytes::from_string(d.name.to_owned()))
                .with_value(Some(StrBytes::from_string(d.value.to_owned())))
                .with_source(d.source),
        ]);
    }
    if version >= FIRST_TYPED_DESCRIBE {
        result = result.with_config_type(d.config_type).with_documentation(
            documentation.then(|| StrBytes::from_string(d.documentation.to_owned())),
        );
    }
    result
}

pub(super) async fn describe_configs(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DescribeConfigsRequest = request.decode_body()?;
    let version = request.api_version;
    let documentation = req.include_documentation;
    let mut results = Vec::with_capacity(req.resources.len());
    for resource in &req.resources {
        let name = resource.resource_name.to_string();
        let wanted = |key: &str| {
            resource
                .configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == key))
        };
        let as_described =
            |d: Described<'_>| described(d, version, req.include_synonyms, documentation);
        let configs = match resource.resource_type {
            RESOURCE_TOPIC => configs::describe_topic_config(&broker.core, ctx, &name)
                .map(|entries| settable(&entries, SOURCE_TOPIC, &wanted, &as_described)),
            RESOURCE_BROKER => configs::broker_configs(&broker.core, ctx, &name).map(|entries| {
                entries
                    .iter()
                    .filter(|c| wanted(c.name))
                    .map(|c| {
                        let d = Described {
                            name: c.name,
                            value: &c.value,
                            source: broker_source(c.source),
                            read_only: c.source.read_only(),
                            documentation: c.documentation,
                            config_type: config_type(c.name),
                        };
                        described(d, version, req.include_synonyms, documentation)
                    })
                    .collect()
            }),
            RESOURCE_GROUP => group_configs::describe(&broker.core, ctx, &name)
                .await
                .map(|entries| settable(&entries, SOURCE_GROUP, &wanted, &as_described)),
            other => Err(unserved_resource(other)),
        };
        let result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        results.push(match configs {
            Ok(configs) => result.with_configs(configs),
            Err(e) => result
                .with_error_code(error_code(&e))
                .with_error_message(Some(StrBytes::from_string(e.message))),
        });
    }
    answer(
        ctx,
        request,
        DescribeConfigsResponse::default().with_results(results),
    )
}

/// The keys `wanted` of a resource whose configs can be set (a topic's, a share group's):
/// DEFAULT_CONFIG where the default holds, else `set_source`.
fn settable(
    entries: &[ConfigEntry],
    set_source: i8,
    wanted: &impl Fn(&str) -> bool,
    as_described: &impl Fn(Described<'_>) -> DescribeConfigsResourceResult,
) -> Vec<DescribeConfigsResourceResult> {
    entries
        .iter()
        .filter(|e| wanted(e.name))
        .map(|e| {
            as_described(Described {
                name: e.name,
                value: &e.value,
                source: if e.is_default {
                    SOURCE_DEFAULT
                } else {
                    set_source
                },
                read_only: false,
                documentation: e.documentation,
                config_type: kafka_type(e.kind),
            })
        })
        .collect()
}

fn unserved_resource(resource_type: i8) -> BrokerError {
    BrokerError::invalid(format!(
        "config resource type {resource_type} is not served: topics ({RESOURCE_TOPIC}), \
         brokers ({RESOURCE_BROKER}) and groups ({RESOURCE_GROUP}) are"
    ))
}

/// Each resource's outcome as `(type, name, error)`.
type Outcomes = Vec<(i8, StrBytes, Option<BrokerError>)>;

/// The changes to a broker resource in AlterConfigs (`replace`) or
/// IncrementalAlterConfigs: each key set to its value or removed (`None`), judged by the
/// core.
async fn alter_broker(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    name: &StrBytes,
    changes: Result<Vec<(String, Option<String>)>, BrokerError>,
    replace: bool,
    validate_only: bool,
) -> Result<(), BrokerError> {
    configs::alter_broker_configs(
        &broker.core,
        ctx,
        name.as_str(),
        &changes?,
        replace,
        validate_only,
    )
    .await
}

pub(super) async fn alter_configs(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: AlterConfigsRequest = request.decode_body()?;
    let mut outcomes: Outcomes = Vec::with_capacity(req.resources.len());
    for resource in &req.resources {
        let outcome = match resource.resource_type {
            RESOURCE_TOPIC => {
                // A null value is no value: the key goes back to its default, as every
                // key the request leaves out does.
                let set: BTreeMap<String, String> = resource
                    .configs
                    .iter()
                    .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                    .collect();
                if set.len()
                    < resource
                        .configs
                        .iter()
                        .filter(|c| c.value.is_some())
                        .count()
                {
                    Err(BrokerError::invalid(
                        "a key is named twice in one change; name each key once",
                    ))
                } else {
                    configs::replace_topic_config(
                        &broker.core,
                        ctx,
                        resource.resource_name.as_str(),
                        &set,
                        req.validate_only,
                    )
                    .await
                    .map(|_| ())
                }
            }
            RESOURCE_BROKER => {
                let changes = resource
                    .configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                    .collect();
                alter_broker(
                    broker,
                    ctx,
                    &resource.resource_name,
                    Ok(changes),
                    true,
                    req.validate_only,
                )
                .await
            }
            RESOURCE_GROUP => {
                let set: BTreeMap<String, String> = resource
                    .configs
                    .iter()
                    .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                    .collect();
                group_configs::replace(
                    &broker.core,
                    ctx,
                    resource.resource_name.as_str(),
                    &set,
                    req.validate_only,
                )
                .await
            }
            other => Err(unserved_resource(other)),
        };
        outcomes.push((
            resource.resource_type,
            resource.resource_name.clone(),
            outcome.err(),
        ));
    }
    let responses = outcomes
        .into_iter()
        .map(|(resource_type, resource_name, error)| {
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource_type)
                .with_resource_name(resource_name);
            match error {
                None => response,
                Some(e) => response
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            }
        })
        .collect();
    answer(
        ctx,
        request,
        AlterConfigsResponse::default().with_responses(responses),
    )
}

pub(super) async fn incremental_alter_configs(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: IncrementalAlterConfigsRequest = request.decode_body()?;
    let mut outcomes: Outcomes = Vec::with_capacity(req.resources.len());
    for resource in &req.resources {
        let outcome = match resource.resource_type {
            RESOURCE_TOPIC | RESOURCE_GROUP => {
                let changes: Result<Vec<(String, ConfigChange)>, BrokerError> = resource
                    .configs
                    .iter()
                    .map(|c| {
                        let value = || c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                        let change = match c.config_operation {
                            OP_SET => ConfigChange::Set(value()),
                            OP_DELETE => ConfigChange::Reset,
                            OP_APPEND => ConfigChange::Append(value()),
                            OP_SUBTRACT => ConfigChange::Subtract(value()),
                            op => {
                                return Err(BrokerError::invalid(format!(
                                    "unknown config operation {op} for {}",
                                    c.name.as_str()
                                )));
                            }
                        };
                        Ok((c.name.to_string(), change))
                    })
                    .collect();
                let name = resource.resource_name.as_str();
                match changes {
                    Ok(changes) if resource.resource_type == RESOURCE_GROUP => {
                        group_configs::incremental_alter(
                            &broker.core,
                            ctx,
                            name,
                            &changes,
                            req.validate_only,
                        )
                        .await
                    }
                    Ok(changes) => configs::incremental_alter_topic_config(
                        &broker.core,
                        ctx,
                        name,
                        &changes,
                        req.validate_only,
                    )
                    .await
                    .map(|_| ()),
                    Err(e) => Err(e),
                }
            }
            RESOURCE_BROKER => {
                let changes = resource
                    .configs
                    .iter()
                    .map(|c| match c.config_operation {
                        OP_SET => Ok((
                            c.name.to_string(),
                            Some(c.value.as_ref().map(|v| v.to_string()).unwrap_or_default()),
                        )),
                        OP_DELETE => Ok((c.name.to_string(), None)),
                        op => Err(BrokerError::new(
                            Reason::InvalidConfig,
                            format!(
                                "operation {op} on broker config {}: Weir's dynamic broker keys \
                                 are set whole (SET) or removed (DELETE); APPEND and SUBTRACT \
                                 apply to list configs",
                                c.name.as_str()
                            ),
                        )),
                    })
                    .collect();
                alter_broker(
                    broker,
                    ctx,
                    &resource.resource_name,
                    changes,
                    false,
                    req.validate_only,
                )
                .await
            }
            other => Err(unserved_resource(other)),
        };
        outcomes.push((
            resource.resource_type,
            resource.resource_name.clone(),
            outcome.err(),
        ));
    }
    let responses = outcomes
        .into_iter()
        .map(|(resource_type, resource_name, error)| {
            let response =
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(resource_name);
            match error {
                None => response,
                Some(e) => response
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            }
        })
        .collect();
    answer(
        ctx,
        request,
        IncrementalAlterConfigsResponse::default().with_responses(responses),
    )
}
