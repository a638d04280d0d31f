//! What is done to a topic's partitions rather than to the topic: replicas moved
//! (reassignment), records deleted below an offset, and offsets looked up at each
//! partition's leader.

use weir_proto::v1 as pb;
use weir_proto::v1::consumer_client::ConsumerClient;

use super::Admin;
use super::topics::{TopicInfo, topic_info};
use crate::connection::BrokerChannel as Channel;
use crate::consumer::IsolationLevel;
use crate::error::ClientError;

/// Where one partition's replicas are to move (`Admin::reassign_partitions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMove {
    /// Partition index.
    pub partition: u32,
    /// The replicas it is to have, the preferred leader first; `None` cancels the move
    /// in progress.
    pub replicas: Option<Vec<i32>>,
}

/// What to look up with [`Admin::list_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    /// The log start offset.
    Earliest,
    /// The high watermark (the offset the next visible record will get).
    Latest,
    /// The first offset whose record timestamp is at or after this (ms since epoch); the
    /// high watermark if every record is older.
    Timestamp(i64),
}

/// One partition's answer to [`Admin::list_offsets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedOffset {
    /// Partition index.
    pub partition: u32,
    /// The offset found.
    pub offset: i64,
    /// For timestamp lookups, the found record's timestamp; else -1.
    pub timestamp_ms: i64,
}

impl Admin {
    /// Moves replicas of `topic`'s partitions to other brokers: added replicas copy the
    /// partition (at most `throttle_bytes_per_sec` per broker, if given), join the
    /// in-sync replicas, then the removed ones are dropped. All the moves start or none
    /// does; returns once they started, with the topic as it then stands
    /// (`PartitionInfo::is_reassigning` tells which are still moving).
    pub async fn reassign_partitions(
        &self,
        topic: &str,
        moves: &[PartitionMove],
        throttle_bytes_per_sec: Option<u64>,
    ) -> Result<TopicInfo, ClientError> {
        let response = self
            .admin
            .clone()
            .alter_partition_reassignments(reassignment_request(
                topic,
                moves,
                throttle_bytes_per_sec,
            ))
            .await?
            .into_inner();
        topic_info(response.topic)
    }

    /// Removes every record below the given offset of each `(partition, before_offset)`
    /// (-1: the high watermark, everything). Returns the new log start offset of each
    /// partition, in request order; the first partition that failed fails the call.
    pub async fn delete_records(
        &self,
        topic: &str,
        partitions: &[(u32, i64)],
    ) -> Result<Vec<(u32, i64)>, ClientError> {
        let response = self
            .admin
            .clone()
            .delete_records(pb::DeleteRecordsRequest {
                topic: topic.to_owned(),
                partitions: partitions
                    .iter()
                    .map(|&(partition, before_offset)| pb::PartitionDeleteRecords {
                        partition,
                        before_offset,
                    })
                    .collect(),
            })
            .await?
            .into_inner();
        log_starts(response.results)
    }

    /// Looks up offsets of a topic's partitions: earliest, latest or by timestamp, each
    /// asked of the partition's leader (retried on a moved leader). Results are in
    /// request order; the first partition that failed fails the call.
    pub async fn list_offsets(
        &self,
        topic: &str,
        queries: &[(u32, OffsetQuery)],
    ) -> Result<Vec<ListedOffset>, ClientError> {
        self.list_offsets_isolated(topic, queries, IsolationLevel::ReadUncommitted)
            .await
    }

    /// [`list_offsets`](Self::list_offsets) for a reader at `isolation`: under read
    /// committed, latest is the last stable offset, and a timestamp lookup finds only
    /// records below it.
    pub async fn list_offsets_isolated(
        &self,
        topic: &str,
        queries: &[(u32, OffsetQuery)],
        isolation: IsolationLevel,
    ) -> Result<Vec<ListedOffset>, ClientError> {
        self.cluster.list_offsets(topic, queries, isolation).await
    }
}

/// `ListOffsets` over one connection; [`Cluster::list_offsets`](crate::cluster::Cluster)
/// routes it.
pub(crate) async fn list_offsets(
    client: &mut ConsumerClient<Channel>,
    topic: &str,
    queries: &[(u32, OffsetQuery)],
    isolation: IsolationLevel,
) -> Result<Vec<ListedOffset>, ClientError> {
    let response = client
        .list_offsets(list_offsets_request(topic, queries, isolation))
        .await?
        .into_inner();
    listed_offsets(response.results)
}

/// `AlterPartitionReassignments` for `moves`: a move without replicas cancels the
/// partition's move in progress; no throttle is 0, which the broker reads as none.
fn reassignment_request(
    topic: &str,
    moves: &[PartitionMove],
    throttle_bytes_per_sec: Option<u64>,
) -> pb::AlterPartitionReassignmentsRequest {
    pb::AlterPartitionReassignmentsRequest {
        topic: topic.to_owned(),
        partitions: moves
            .iter()
            .map(|m| pb::PartitionReassignment {
                partition: m.partition,
                replicas: m.replicas.clone().unwrap_or_default(),
                cancel: m.replicas.is_none(),
            })
            .collect(),
        throttle_bytes_per_sec: throttle_bytes_per_sec.unwrap_or(0),
    }
}

/// The new log start of each partition of a `DeleteRecords` answer, in its order; the
/// first partition that failed fails them all.
fn log_starts(
    results: Vec<pb::PartitionDeleteRecordsResult>,
) -> Result<Vec<(u32, i64)>, ClientError> {
    results
        .into_iter()
        .map(|r| match &r.error {
            Some(error) => Err(ClientError::from_partition_error(error)),
            None => Ok((r.partition, r.log_start_offset)),
        })
        .collect()
}

fn list_offsets_request(
    topic: &str,
    queries: &[(u32, OffsetQuery)],
    isolation: IsolationLevel,
) -> pb::ListOffsetsRequest {
    use pb::offset_spec::Spec;
    pb::ListOffsetsRequest {
        topic: topic.to_owned(),
        isolation: isolation.proto(),
        partitions: queries
            .iter()
            .map(|&(partition, query)| pb::PartitionOffsetQuery {
                partition,
                spec: Some(pb::OffsetSpec {
                    spec: Some(match query {
                        OffsetQuery::Earliest => {
                            Spec::Position(pb::OffsetPosition::Earliest.into())
                        }
                        OffsetQuery::Latest => Spec::Position(pb::OffsetPosition::Latest.into()),
                        OffsetQuery::Timestamp(ms) => Spec::TimestampMs(ms),
                    }),
                }),
            })
            .collect(),
    }
}

/// A `ListOffsets` answer, in its order; the first partition that failed fails them all.
fn listed_offsets(
    results: Vec<pb::PartitionOffsetResult>,
) -> Result<Vec<ListedOffset>, ClientError> {
    results
        .into_iter()
        .map(|r| match &r.error {
            Some(error) => Err(ClientError::from_partition_error(error)),
            None => Ok(ListedOffset {
                partition: r.partition,
                offset: r.offset,
                timestamp_ms: r.timestamp_ms,
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: tonic::Code, reason: &str, message: &str) -> Option<pb::PartitionError> {
        Some(pb::PartitionError {
            code: code as i32,
            message: message.to_owned(),
            reason: reason.to_owned(),
            metadata: [("leader_id".to_owned(), "2".to_owned())].into(),
        })
    }

    #[test]
    fn a_move_without_replicas_cancels_and_no_throttle_is_zero() {
        let moves = [
            PartitionMove {
                partition: 0,
                replicas: Some(vec![3, 1, 2]),
            },
            PartitionMove {
                partition: 4,
                replicas: None,
            },
        ];
        let request = reassignment_request("events", &moves, None);
        assert_eq!(request.topic, "events");
        assert_eq!(request.throttle_bytes_per_sec, 0);
        let [moved, cancelled] = &request.partitions[..] else {
            panic!("two partitions: {:?}", request.partitions);
        };
        assert_eq!(
            (moved.partition, &moved.replicas[..], moved.cancel),
            (0, &[3, 1, 2][..], false)
        );
        assert_eq!(
            (
                cancelled.partition,
                cancelled.replicas.is_empty(),
                cancelled.cancel
            ),
            (4, true, true)
        );
        let throttled = reassignment_request("events", &moves[..1], Some(1_048_576));
        assert_eq!(throttled.throttle_bytes_per_sec, 1_048_576);
    }

    #[test]
    fn offset_queries_become_positions_and_timestamps_in_order() {
        use pb::offset_spec::Spec;
        let request = list_offsets_request(
            "events",
            &[
                (2, OffsetQuery::Latest),
                (0, OffsetQuery::Earliest),
                (1, OffsetQuery::Timestamp(1_700_000_000_000)),
            ],
            IsolationLevel::ReadCommitted,
        );
        assert_eq!(request.isolation, pb::IsolationLevel::ReadCommitted as i32);
        let specs: Vec<(u32, Option<Spec>)> = request
            .partitions
            .into_iter()
            .map(|p| (p.partition, p.spec.and_then(|s| s.spec)))
            .collect();
        assert_eq!(
            specs,
            [
                (2, Some(Spec::Position(pb::OffsetPosition::Latest.into()))),
                (0, Some(Spec::Position(pb::OffsetPosition::Earliest.into()))),
                (1, Some(Spec::TimestampMs(1_700_000_000_000))),
            ]
        );
    }

    #[test]
    fn answers_keep_their_order_and_the_first_refused_partition_fails_the_call() {
        let found = listed_offsets(vec![
            pb::PartitionOffsetResult {
                partition: 1,
                offset: 40,
                timestamp_ms: -1,
                ..Default::default()
            },
            pb::PartitionOffsetResult {
                partition: 0,
                offset: 7,
                timestamp_ms: 1_234,
                ..Default::default()
            },
        ])
        .expect("no partition refused");
        assert_eq!(
            found,
            [
                ListedOffset {
                    partition: 1,
                    offset: 40,
                    timestamp_ms: -1
                },
                ListedOffset {
                    partition: 0,
                    offset: 7,
                    timestamp_ms: 1_234
                },
            ]
        );
        let refused_lookup = listed_offsets(vec![
            pb::PartitionOffsetResult {
                partition: 0,
                offset: 7,
                ..Default::default()
            },
            pb::PartitionOffsetResult {
                partition: 1,
                error: refused(
                    tonic::Code::Unavailable,
                    "NOT_LEADER",
                    "broker 2 leads partition 1",
                ),
                ..Default::default()
            },
        ]);
        assert!(
            matches!(&refused_lookup, Err(ClientError::NotLeader { leader: Some(2), message }) if message.contains("partition 1")),
            "{refused_lookup:?}"
        );

        assert_eq!(
            log_starts(vec![
                pb::PartitionDeleteRecordsResult {
                    partition: 0,
                    log_start_offset: 100,
                    ..Default::default()
                },
                pb::PartitionDeleteRecordsResult {
                    partition: 3,
                    log_start_offset: 5,
                    ..Default::default()
                },
            ])
            .expect("no partition refused"),
            [(0, 100), (3, 5)]
        );
        let refused_delete = log_starts(vec![pb::PartitionDeleteRecordsResult {
            partition: 9,
            error: refused(tonic::Code::InvalidArgument, "", "partition 9 out of range"),
            ..Default::default()
        }]);
        assert!(
            matches!(&refused_delete, Err(ClientError::InvalidArgument(m)) if m.contains("partition 9")),
            "{refused_delete:?}"
        );
    }
}
