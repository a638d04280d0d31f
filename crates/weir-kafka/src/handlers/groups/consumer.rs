//! KIP-848's ConsumerGroupHeartbeat (librdkafka with `group.protocol=consumer`).

use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment, TopicPartitions as CghTopicPartitions,
};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use weir_broker::groups::{self, Heartbeat, TopicPartitions};
use weir_broker::{RequestContext, metadata};

use super::{message, str};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};
use crate::handlers::{KafkaBroker, answer, assignment_by_id, errors};

pub(in crate::handlers) async fn consumer_group_heartbeat(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: ConsumerGroupHeartbeatRequest = request.decode_body()?;
    // Owned partitions come by topic id; ids of topics that are gone are dropped (the
    // member no longer owns anything of them).
    let owned_unchanged = req.topic_partitions.is_none();
    let mut owned = TopicPartitions::new();
    for tp in req.topic_partitions.iter().flatten() {
        if let Some(name) = metadata::topic_name(&broker.core, &tp.topic_id.to_string()) {
            owned
                .entry(name)
                .or_default()
                .extend(tp.partitions.iter().filter_map(|p| u32::try_from(*p).ok()));
        }
    }
    let heartbeat = Heartbeat {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        // -2 is a static member's leave; static membership is not kept, so it leaves.
        member_epoch: if req.member_epoch == -2 {
            -1
        } else {
            req.member_epoch
        },
        client_id: String::new(),
        client_host: String::new(),
        topics: req
            .subscribed_topic_names
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.to_string())
            .collect(),
        topic_regex: req.subscribed_topic_regex.map(|r| r.to_string()),
        assignor: req.server_assignor.map(|a| a.to_string()),
        owned,
        owned_unchanged,
        session_timeout: None,
    };
    let response = match groups::heartbeat(&broker.core, ctx, heartbeat).await {
        Ok(out) => {
            let assignment = out.assignment.map(|topics| {
                Assignment::default().with_topic_partitions(
                    assignment_by_id(broker, topics)
                        .into_iter()
                        .map(|(id, parts)| {
                            CghTopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(parts)
                        })
                        .collect(),
                )
            });
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(str(out.member_id)))
                .with_member_epoch(out.member_epoch)
                .with_heartbeat_interval_ms(
                    i32::try_from(out.heartbeat_interval.as_millis()).unwrap_or(i32::MAX),
                )
                .with_assignment(assignment)
        }
        Err(e) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(errors::consumer_heartbeat_code(&e))
            .with_error_message(message(&e))
            .with_member_id(Some(req.member_id))
            .with_member_epoch(req.member_epoch),
    };
    answer(ctx, request, response)
}
