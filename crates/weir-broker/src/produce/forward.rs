//! Produces forwarded to a partition's leader on another broker, for adapters whose
//! clients do not route by leader. A Kafka or gRPC producer learns each partition's
//! leader from metadata and is told NOT_LEADER when it asks the wrong broker; an AMQP
//! client (and the Redis and SQS clients to come) connects to one broker and publishes
//! to any queue, so the broker it reached carries the records to the leader, as
//! RabbitMQ carries a publish to a queue's leader inside its cluster.
//!
//! The records are packed here into one batch, as the leader would pack them, and sent
//! through [`ProduceForwarder`] (the server implements it over the leader's internal
//! listener). The leader checks the batch as it checks any producer's; its answer is the
//! partition's.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use weir_cluster::controller::records::Endpoints;

use weir_cluster::storage::{BatchError, Compression, Record, RecordBatchBuilder};

use super::{
    Acks, Appended, PartitionProduce, PendingProduce, ProduceData, ProduceRequest, Waiting,
    produce_timeout, resolve, submit, submit_to,
};
use crate::shares::ForwardFuture;
use crate::{Broker, BrokerError, RequestContext};

/// One partition's produce, forwarded to its leader: the records packed into one batch.
#[derive(Debug, Clone)]
pub struct ForwardedProduce {
    pub topic: String,
    pub partition: u32,
    /// One RecordBatch v2 (offsets left for the leader's log to assign).
    pub batch: Bytes,
    pub acks: Acks,
    pub timeout: Duration,
}

/// Carries a produce to its partition's leader on another broker (`leader`: its id and
/// advertised endpoints).
pub trait ProduceForwarder: Send + Sync + Debug {
    fn produce<'a>(
        &'a self,
        leader: (i32, &'a Endpoints),
        produce: ForwardedProduce,
    ) -> ForwardFuture<'a, Appended>;
}

/// A forwarded produce's answer, awaited by [`PendingProduce::finish`].
pub(super) type Forwarding = ForwardFuture<'static, Appended>;

/// [`submit`] for adapters whose clients do not know partition leaders (AMQP): plain
/// records for a partition another broker leads are packed here and forwarded to that
/// leader ([`ProduceForwarder`], set by the server) rather than refused with NOT_LEADER.
/// The whole-request checks are `submit`'s, made once; the rest goes through `submit`'s
/// queueing, and answers come in request order, as `submit`'s do. Without a forwarder
/// (a broker alone), or with every partition led here, it is `submit`.
pub async fn submit_anywhere(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ProduceRequest,
) -> Result<PendingProduce, BrokerError> {
    let Some(forwarder) = broker.produce_forwarder.get().cloned() else {
        return submit(broker, ctx, req).await;
    };
    // Authorised here, before anything is forwarded: the leader sees the forwarding
    // broker, not the client.
    let topic = resolve(broker, ctx, &req).await?;
    let elsewhere = |index: u32| {
        topic
            .leader(index)
            .filter(|&leader| leader >= 0 && leader != broker.node_id())
    };
    if req
        .partitions
        .iter()
        .all(|p| elsewhere(p.partition).is_none())
    {
        return submit_to(broker, ctx, topic, req).await;
    }
    let image = broker.registry().cluster().image();
    let timeout = produce_timeout(req.timeout);
    let order: Vec<u32> = req.partitions.iter().map(|p| p.partition).collect();
    let mut local = Vec::with_capacity(req.partitions.len());
    let mut forwarded = Vec::new();
    for pr in req.partitions {
        let leader = elsewhere(pr.partition)
            .and_then(|leader| image.broker(leader).map(|b| (leader, b.endpoints.clone())));
        let Some((leader, endpoints)) = leader else {
            local.push(pr);
            continue;
        };
        let records = match pr.data {
            Ok(ProduceData::Records {
                records,
                compression,
                producer: None,
                verification: None,
            }) => (records, compression),
            // Packed batches and idempotent records are for clients that route by
            // leader: refused here with NOT_LEADER, as `submit` refuses them.
            data => {
                local.push(PartitionProduce {
                    partition: pr.partition,
                    data,
                });
                continue;
            }
        };
        let waiting = match pack(records) {
            Ok(batch) => {
                let produce = ForwardedProduce {
                    topic: req.topic.clone(),
                    partition: pr.partition,
                    batch,
                    acks: req.acks,
                    timeout,
                };
                let forwarder = forwarder.clone();
                let forwarding: Forwarding =
                    Box::pin(async move { forwarder.produce((leader, &endpoints), produce).await });
                Waiting::Forwarded(forwarding)
            }
            Err(e) => Waiting::Refused(
                BrokerError::invalid(format!("partition {}: {e}", pr.partition))
                    .at(&req.topic, pr.partition),
            ),
        };
        forwarded.push((pr.partition, waiting));
    }
    let mut pending = submit_to(
        broker,
        ctx,
        topic,
        ProduceRequest {
            partitions: local,
            ..req
        },
    )
    .await?;
    pending.partitions.extend(forwarded);
    pending
        .partitions
        .sort_by_key(|(index, _)| order.iter().position(|p| p == index));
    Ok(pending)
}

/// Plain records packed into one batch, as the leader would pack them.
fn pack((records, compression): (Vec<Record>, Compression)) -> Result<Bytes, BatchError> {
    let mut builder = RecordBatchBuilder::new(compression);
    for record in &records {
        builder.push(record);
    }
    Ok(builder.build()?.freeze())
}
