//! Consumer groups over the Kafka protocol, through the core's `groups` module (the same
//! operations the gRPC Groups and Admin services use): FindCoordinator; the classic
//! protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) kafka-python, aiokafka and
//! librdkafka speak by default; KIP-848's ConsumerGroupHeartbeat (librdkafka with
//! `group.protocol=consumer`); OffsetCommit, OffsetFetch and OffsetDelete; ListGroups,
//! DescribeGroups, ConsumerGroupDescribe (KIP-848 groups) and DeleteGroups.
//!
//! Reasons become Kafka codes in `errors.rs`; the few answers Kafka gives per api rather
//! than per reason (a commit from outside a group that has members is UNKNOWN_MEMBER_ID,
//! a KIP-848 join to a classic group GROUP_ID_NOT_FOUND) are chosen here, each with why.

mod classic;
mod consumer;
mod describe;
mod offsets;

use kafka_protocol::messages::find_coordinator_response::Coordinator as KafkaCoordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use weir_broker::{BrokerError, Reason, RequestContext};
use weir_broker::{groups, transactions};

use super::{KafkaBroker, answer, error_code, host_port};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};

pub(super) use classic::{heartbeat, join_group, leave_group, sync_group};
pub(super) use consumer::consumer_group_heartbeat;
pub(super) use describe::{consumer_group_describe, delete_groups, describe_groups, list_groups};
pub(super) use offsets::{
    FIRST_KIP848_OFFSET_COMMIT, commit_codes, commit_of, offset_commit, offset_delete, offset_fetch,
};

/// FindCoordinator v4+ looks up a batch of keys.
const FIRST_BATCHED_FIND_COORDINATOR: i16 = 4;
/// Kafka's `authorized_operations` when they were not asked for.
pub(super) const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// FindCoordinator's key type of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// FindCoordinator's key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

fn str(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn message(e: &BrokerError) -> Option<StrBytes> {
    Some(str(e.message.clone()))
}

pub(super) async fn find_coordinator(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: FindCoordinatorRequest = request.decode_body()?;
    let version = request.api_version;
    let keys: Vec<String> = if version >= FIRST_BATCHED_FIND_COORDINATOR {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let too_many = groups::check_group_count(keys.len(), "a FindCoordinator request").err();
    let found: Vec<KafkaCoordinator> = keys
        .into_iter()
        .map(|key| {
            let outcome = match (&too_many, req.key_type) {
                (Some(e), _) => Err(e.clone()),
                (None, KEY_TYPE_GROUP) => {
                    let found = groups::find_coordinator(&broker.core, ctx, &key);
                    coordinator_address(broker, "group", &key, found)
                }
                (None, KEY_TYPE_TRANSACTION) => {
                    let found = transactions::find_coordinator(&broker.core, ctx, &key);
                    coordinator_address(broker, "transactional id", &key, found)
                }
                (None, other) => Err(BrokerError::invalid(format!(
                    "key type {other} is not served: consumer groups (key type 0) and \
                     transactional ids (key type 1) have coordinators here"
                ))),
            };
            match outcome {
                Ok((node_id, host, port)) => KafkaCoordinator::default()
                    .with_key(str(key))
                    .with_node_id(BrokerId(node_id))
                    .with_host(str(host))
                    .with_port(port),
                Err(e) => KafkaCoordinator::default()
                    .with_key(str(key))
                    .with_node_id(BrokerId(-1))
                    .with_host(str(""))
                    .with_port(-1)
                    .with_error_code(error_code(&e))
                    .with_error_message(message(&e)),
            }
        })
        .collect();
    let response = if version >= FIRST_BATCHED_FIND_COORDINATOR {
        FindCoordinatorResponse::default().with_coordinators(found)
    } else {
        let c = found.into_iter().next().expect("one key");
        FindCoordinatorResponse::default()
            .with_error_code(c.error_code)
            .with_error_message(c.error_message)
            .with_node_id(c.node_id)
            .with_host(c.host)
            .with_port(c.port)
    };
    answer(ctx, request, response)
}

/// The Kafka address of the coordinator `found` of `key` (a `kind`: group or
/// transactional id), from the metadata image as Metadata answers it: the address for
/// the listener the request came on.
fn coordinator_address(
    broker: &KafkaBroker,
    kind: &str,
    key: &str,
    found: Result<groups::Coordinator, BrokerError>,
) -> Result<(i32, String, i32), BrokerError> {
    let c = found?;
    let address = broker
        .address_of(&c.endpoints)
        .and_then(host_port)
        .ok_or_else(|| {
            BrokerError::new(
                Reason::CoordinatorNotAvailable,
                format!(
                    "the coordinator of {kind} {key:?}, broker {}, has no Kafka listener",
                    c.node_id
                ),
            )
        })?;
    Ok((c.node_id, address.0.to_string(), address.1))
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_served_table_is_one_kafka_protocol_can_serve() {
        crate::apis::check_table(super::super::SERVED).unwrap();
    }
}
