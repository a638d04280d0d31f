//! DeleteRecords, through the core's `records::delete_records` (which gRPC's
//! DeleteRecords calls too).

use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse,
    delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
};
use weir_broker::{RequestContext, records};

use super::{KafkaBroker, answer, error_code, per_partition};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};

pub(super) async fn delete_records(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: DeleteRecordsRequest = request.decode_body()?;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        // Kafka's -1 is the high watermark, as the core's.
        let asked: Vec<(u32, i64)> = t
            .partitions
            .iter()
            .filter_map(|p| Some((u32::try_from(p.partition_index).ok()?, p.offset)))
            .collect();
        let deleted = records::delete_records(&broker.core, ctx, t.name.as_str(), &asked).await;
        let partitions = per_partition(t.partitions.iter().map(|p| p.partition_index), deleted)
            .into_iter()
            .map(|(index, outcome)| {
                let result = DeleteRecordsPartitionResult::default().with_partition_index(index);
                match outcome {
                    Ok(low_watermark) => result.with_low_watermark(low_watermark),
                    Err(e) => result
                        .with_low_watermark(-1)
                        .with_error_code(error_code(&e)),
                }
            })
            .collect();
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    answer(
        ctx,
        request,
        DeleteRecordsResponse::default().with_topics(topics),
    )
}
