//! OffsetsForLeaderEpoch: where a leader epoch ended in a partition's log, from the
//! leader's epoch history (`weir_log::epoch`), so a consumer that read up to some offset
//! under some epoch can tell whether a failover cut those records away (KIP-101,
//! KIP-320). Replication asks the same question of the same history when a follower
//! returns.

use crate::limits::MAX_PARTITIONS_PER_REQUEST;
use crate::{Broker, BrokerError, Reason, RequestContext};
use weir_cluster::security::Operation;

/// One partition's question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochQuery {
    pub partition: u32,
    /// The epoch whose end is asked for (the epoch of the last record the client read).
    pub leader_epoch: i32,
    /// The partition's leader epoch as the client's metadata has it, checked against the
    /// broker's: older is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH. `None`: not
    /// checked.
    pub current_leader_epoch: Option<i32>,
}

/// Where an epoch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    /// The largest epoch at most the one asked for that wrote records; -1 if the asked
    /// epoch is older than anything the log remembers.
    pub leader_epoch: i32,
    /// The offset after that epoch's last record (the log end for the latest epoch); -1
    /// with `leader_epoch` -1.
    pub end_offset: i64,
}

impl EpochEnd {
    /// The answer for an epoch older than the log's history.
    pub const UNDEFINED: EpochEnd = EpochEnd {
        leader_epoch: -1,
        end_offset: -1,
    };
}

/// Answers each query about `topic` on the partition's leader (this broker): a
/// whole-request error for an unknown topic or too many partitions, else one answer per
/// query in request order.
pub async fn end_offsets_for_epochs(
    broker: &Broker,
    ctx: &RequestContext,
    topic: &str,
    queries: &[EpochQuery],
) -> Result<Vec<Result<EpochEnd, BrokerError>>, BrokerError> {
    if queries.len() > MAX_PARTITIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "an offsets-for-leader-epoch request names {} partitions; at most \
             {MAX_PARTITIONS_PER_REQUEST} are accepted",
            queries.len()
        )));
    }
    let topic = broker.topic_for(ctx, Operation::Describe, topic)?;
    let mut answers = Vec::with_capacity(queries.len());
    for query in queries {
        let answer = async {
            let partition = topic.partition(query.partition)?;
            check_current_epoch(
                &topic.name,
                query.partition,
                query.current_leader_epoch,
                partition.leader_epoch(),
            )?;
            let end = partition.end_offset_for_epoch(query.leader_epoch).await?;
            Ok(
                end.map_or(EpochEnd::UNDEFINED, |(leader_epoch, end_offset)| EpochEnd {
                    leader_epoch,
                    end_offset,
                }),
            )
        }
        .await;
        answers.push(answer);
    }
    Ok(answers)
}

/// The client's view of the leader epoch (`asked`; `None` when it sends none) against
/// this broker's (`current`), as Kafka checks it for OffsetForLeaderEpoch and Fetch.
pub(crate) fn check_current_epoch(
    topic: &str,
    partition: u32,
    asked: Option<i32>,
    current: i32,
) -> Result<(), BrokerError> {
    let Some(asked) = asked else {
        return Ok(());
    };
    if asked < current {
        return Err(BrokerError::new(
            Reason::FencedLeaderEpoch {
                epoch: Some(current),
            },
            format!(
                "{topic}/{partition} is at leader epoch {current}; the client's metadata says \
                 {asked}: refresh the metadata and ask again"
            ),
        )
        .at(topic, partition));
    }
    if asked > current {
        return Err(BrokerError::new(
            Reason::UnknownLeaderEpoch,
            format!(
                "the client knows leader epoch {asked} of {topic}/{partition}; this broker has \
                 seen only {current} so far; retry shortly"
            ),
        )
        .at(topic, partition));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_epoch_is_checked_as_kafka_does() {
        assert!(check_current_epoch("t", 2, None, 5).is_ok());
        assert!(check_current_epoch("t", 2, Some(5), 5).is_ok());
        let older = check_current_epoch("t", 2, Some(4), 5).unwrap_err();
        assert_eq!(older.reason, Reason::FencedLeaderEpoch { epoch: Some(5) });
        assert_eq!(older.partition, Some(("t".into(), 2)));
        let newer = check_current_epoch("t", 2, Some(6), 5).unwrap_err();
        assert_eq!(newer.reason, Reason::UnknownLeaderEpoch);
    }
}
