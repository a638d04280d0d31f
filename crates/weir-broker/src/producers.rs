//! Idempotent producers: a producer id and epoch for a producer that asks (Kafka's
//! InitProducerId), from the controller's producer-id blocks, and the producers a
//! partition remembers (Kafka's DescribeProducers).

pub use weir_cluster::storage::ProducerSummary;

use crate::limits::MAX_PARTITIONS_PER_REQUEST;
use crate::{Broker, BrokerError, RequestContext};
use weir_cluster::security::{Operation, ResourceType};

/// A new producer id and epoch; with `name`, the same id as the last producer of that
/// name with its epoch bumped, fencing the old instance.
///
/// Authorised as in Kafka (KIP-679): a named producer needs Write on its transactional
/// id; an unnamed one IdempotentWrite on the cluster, or Write on some topic.
pub async fn init_producer_id(
    broker: &Broker,
    ctx: &RequestContext,
    name: Option<String>,
) -> Result<(i64, i16), BrokerError> {
    match &name {
        Some(name) => {
            broker.authorize(ctx, Operation::Write, ResourceType::TransactionalId, name)?
        }
        None => {
            let may_write_somewhere = || {
                broker
                    .registry()
                    .cluster()
                    .image()
                    .topics()
                    .any(|t| broker.may(ctx, Operation::Write, ResourceType::Topic, &t.name))
            };
            if !may_write_somewhere() {
                broker.authorize_cluster(ctx, Operation::IdempotentWrite)?;
            }
        }
    }
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
    let topic = broker.topic_for(ctx, Operation::Read, topic)?;
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
