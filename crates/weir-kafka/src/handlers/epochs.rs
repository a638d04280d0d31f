//! OffsetForLeaderEpoch: where a leader epoch ended in a partition's log, which clients
//! ask after a leader change to find out whether what they read was truncated
//! (KIP-320), through the core's `epochs::end_offsets_for_epochs`.

use kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult},
};
use weir_broker::RequestContext;
use weir_broker::epochs::{self, EpochQuery};

use super::{KafkaBroker, answer, error_code, per_partition};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};

/// The current leader epoch a client sends when it does not want it checked.
const NO_EPOCH: i32 = -1;

pub(super) async fn offset_for_leader_epoch(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: OffsetForLeaderEpochRequest = request.decode_body()?;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let queries: Vec<EpochQuery> = t
            .partitions
            .iter()
            .filter_map(|p| {
                Some(EpochQuery {
                    partition: u32::try_from(p.partition).ok()?,
                    leader_epoch: p.leader_epoch,
                    current_leader_epoch: (p.current_leader_epoch != NO_EPOCH)
                        .then_some(p.current_leader_epoch),
                })
            })
            .collect();
        let answers =
            epochs::end_offsets_for_epochs(&broker.core, ctx, t.topic.as_str(), &queries).await;
        let partitions = per_partition(t.partitions.iter().map(|p| p.partition), answers)
            .into_iter()
            .map(|(index, outcome)| {
                let result = EpochEndOffset::default().with_partition(index);
                match outcome {
                    Ok(end) => result
                        .with_leader_epoch(end.leader_epoch)
                        .with_end_offset(end.end_offset),
                    Err(e) => result.with_error_code(error_code(&e)),
                }
            })
            .collect();
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions),
        );
    }
    answer(
        ctx,
        request,
        OffsetForLeaderEpochResponse::default().with_topics(topics),
    )
}
