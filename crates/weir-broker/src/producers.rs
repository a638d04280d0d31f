//! Idempotent producers: a producer id and epoch for a producer that asks (Kafka's
//! InitProducerId), from the controller's producer-id blocks, and the producers a
//! partition remembers (Kafka's DescribeProducers).

pub use weir_cluster::storage::ProducerSummary;

use crate::limits::MAX_PARTITIONS_PER_REQUEST;
use crate::{Broker, BrokerError, RequestContext};

/// A new producer id and epoch; with `name`, the same id as the last producer of that
/// name with its epoch bumped, fencing the old instance.
pub async fn init_producer_id(
    broker: &Broker,
    _ctx: &RequestContext,
    name: Option<String>,
) -> Result<(i64, i16), BrokerError> {
    Ok(broker.registry().cluster().init_producer_id(name).await?)
}

/// Most producers one partition's description lists: the most recently active (a
/// partition remembers every producer that wrote to it within the expiry window).
pub const MAX_PRODUCERS_DESCRIBED: usize = 10_000;

/// The idempotent producers each partition of `topic` remembers (Kafka's
/// DescribeProducers), on its leader (this broker): a whole-request error for an unknown
/// topic or too many partitions, else each partition's producers by id (at most
/// [`MAX_PRODUCERS_DESCRIBED`]), in request order.
pub async fn describe_producers(
    broker: &Broker,
    ctx: &RequestContext,
    topic: &str,
    partitions: &[u32],
) -> Result<Vec<Result<Vec<ProducerSummary>, BrokerError>>, BrokerError> {
    if partitions.len() > MAX_PARTITIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "a describe-producers request names {} partitions; at most \
             {MAX_PARTITIONS_PER_REQUEST} are accepted",
            partitions.len()
        )));
    }
    let topic = broker.topic(ctx, topic)?;
    let mut answers = Vec::with_capacity(partitions.len());
    for &index in partitions {
        let answer = async { topic.partition(index)?.producers().await }.await;
        answers.push(answer.map(most_recent).map_err(BrokerError::from));
    }
    Ok(answers)
}

/// `producers` (by id), cut to the [`MAX_PRODUCERS_DESCRIBED`] most recently active.
fn most_recent(mut producers: Vec<ProducerSummary>) -> Vec<ProducerSummary> {
    if producers.len() > MAX_PRODUCERS_DESCRIBED {
        producers.sort_by_key(|p| std::cmp::Reverse(p.last_timestamp));
        producers.truncate(MAX_PRODUCERS_DESCRIBED);
        producers.sort_by_key(|p| p.producer_id);
    }
    producers
}
