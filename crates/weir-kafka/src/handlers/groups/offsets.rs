//! Committed offsets: OffsetCommit, OffsetFetch and OffsetDelete (KIP-496).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use weir_broker::groups::{self, CommitRequest, OffsetCommit, PartitionCommitted};
use weir_broker::limits::MAX_GROUPS_PER_REQUEST;
use weir_broker::{BrokerError, RequestContext};

use super::str;
use crate::frame::Request;
use crate::handler::{HandlerError, Response};
use crate::handlers::{KafkaBroker, answer, error_code, errors};

/// OffsetCommit v9+ answers GROUP_ID_NOT_FOUND and STALE_MEMBER_EPOCH (KIP-848); older
/// versions ILLEGAL_GENERATION for both.
pub(in crate::handlers) const FIRST_KIP848_OFFSET_COMMIT: i16 = 9;
/// OffsetFetch v2+ has a top-level error code.
const FIRST_TOP_LEVEL_ERROR_OFFSET_FETCH: i16 = 2;
/// OffsetFetch v8+ fetches a batch of groups.
const FIRST_BATCHED_OFFSET_FETCH: i16 = 8;

pub(in crate::handlers) async fn offset_commit(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: OffsetCommitRequest = request.decode_body()?;
    let version = request.api_version;
    let mut offsets = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            offsets.push(commit_of(
                &t.name,
                p.partition_index,
                p.committed_offset,
                p.committed_metadata.as_deref(),
                p.committed_leader_epoch,
            ));
        }
    }
    let commit = CommitRequest {
        group_id: req.group_id.to_string(),
        member: Some((req.member_id.to_string(), req.generation_id_or_member_epoch)),
        offsets,
        atomic: false,
    };
    let outcome = groups::commit_offsets(&broker.core, ctx, commit).await;
    let partitions = req.topics.iter().map(|t| t.partitions.len()).sum();
    let mut codes = commit_codes(&outcome, partitions, |e| errors::commit_code(e, version));
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(codes.next().unwrap_or(0))
                        })
                        .collect(),
                )
        })
        .collect();
    answer(
        ctx,
        request,
        OffsetCommitResponse::default().with_topics(topics),
    )
}

/// One partition's offset to commit, from the fields OffsetCommit and TxnOffsetCommit
/// carry alike.
pub(in crate::handlers) fn commit_of(
    topic: &str,
    partition_index: i32,
    offset: i64,
    metadata: Option<&str>,
    leader_epoch: i32,
) -> OffsetCommit {
    OffsetCommit {
        topic: topic.to_string(),
        // A negative index names no partition: refused as unknown.
        partition: u32::try_from(partition_index).unwrap_or(u32::MAX),
        offset,
        metadata: metadata.unwrap_or_default().to_string(),
        // OffsetCommit v6+ and TxnOffsetCommit v2+ carry it; -1 (and older versions)
        // commit none.
        leader_epoch: (leader_epoch >= 0).then_some(leader_epoch),
    }
}

/// One error code per partition of a commit of `partitions` partitions, in request
/// order: each partition's own, or the whole request's (`request_code` of its error),
/// with a failed write of the coordinator's as Kafka's coordinator answers it
/// ([`errors::coordinator_write_code`]).
pub(in crate::handlers) fn commit_codes(
    outcome: &Result<Vec<PartitionCommitted>, BrokerError>,
    partitions: usize,
    request_code: impl Fn(&BrokerError) -> i16,
) -> std::vec::IntoIter<i16> {
    let codes: Vec<i16> = match outcome {
        Ok(results) => results
            .iter()
            .map(|r| r.result.as_ref().err().map_or(0, error_code))
            .collect(),
        Err(e) => vec![request_code(e); partitions],
    };
    codes
        .into_iter()
        .map(errors::coordinator_write_code)
        .collect::<Vec<_>>()
        .into_iter()
}

/// One partition's committed offset as OffsetFetch answers it: -1 for an offset or a
/// leader epoch there is none of.
struct FetchedOffset {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
    /// UNSTABLE_OFFSET_COMMIT when asked for stable offsets and a transaction has an
    /// offset of this partition pending (KIP-447); else 0.
    error_code: i16,
}

impl FetchedOffset {
    fn none(partition: i32) -> FetchedOffset {
        FetchedOffset {
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
            error_code: 0,
        }
    }

    fn of(c: groups::CommittedOffset) -> FetchedOffset {
        FetchedOffset {
            partition: c.partition as i32,
            offset: c.offset.unwrap_or(-1),
            leader_epoch: c.leader_epoch.unwrap_or(-1),
            metadata: c.metadata,
            error_code: 0,
        }
    }
}

/// One group's committed offsets for OffsetFetch: of the partitions named (every one
/// the group has an offset for if `None`), by topic, or the group's error.
type FetchedOffsets = Result<BTreeMap<String, Vec<FetchedOffset>>, BrokerError>;

async fn fetch_group_offsets(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    group_id: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> FetchedOffsets {
    // A negative index names no partition; it is answered as one without an offset.
    let partitions = wanted.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|(t, ps)| {
                ps.iter()
                    .filter_map(|p| u32::try_from(*p).ok())
                    .map(move |p| (t.clone(), p))
            })
            .collect::<Vec<_>>()
    });
    let found = groups::fetch_offsets(&broker.core, ctx, group_id, partitions).await?;
    let mut by_topic: BTreeMap<String, Vec<FetchedOffset>> = BTreeMap::new();
    match wanted {
        Some(topics) => {
            let mut known: BTreeMap<(String, u32), groups::CommittedOffset> = found
                .into_iter()
                .map(|c| ((c.topic.clone(), c.partition), c))
                .collect();
            for (t, ps) in topics {
                let list = by_topic.entry(t.clone()).or_default();
                for p in ps {
                    let index = u32::try_from(p).ok();
                    let committed = index.and_then(|index| known.remove(&(t.clone(), index)));
                    if require_stable && committed.as_ref().is_some_and(|c| c.pending) {
                        // KIP-447: the consumer retries until the transaction ends.
                        let mut f = FetchedOffset::none(p);
                        f.error_code = ResponseError::UnstableOffsetCommit.code();
                        list.push(f);
                        continue;
                    }
                    list.push(committed.map_or_else(|| FetchedOffset::none(p), FetchedOffset::of));
                }
            }
        }
        None => {
            for c in found {
                if c.offset.is_some() {
                    by_topic
                        .entry(c.topic.clone())
                        .or_default()
                        .push(FetchedOffset::of(c));
                }
            }
        }
    }
    Ok(by_topic)
}

pub(in crate::handlers) async fn offset_fetch(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: OffsetFetchRequest = request.decode_body()?;
    let version = request.api_version;
    if version >= FIRST_BATCHED_OFFSET_FETCH {
        let too_many = groups::check_group_count(req.groups.len(), "an OffsetFetch request").err();
        let mut answers = Vec::with_capacity(req.groups.len().min(MAX_GROUPS_PER_REQUEST));
        for g in req.groups {
            let wanted = g.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let fetched = match &too_many {
                Some(e) => Err(e.clone()),
                None => {
                    fetch_group_offsets(broker, ctx, &g.group_id, wanted, req.require_stable).await
                }
            };
            let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id);
            answers.push(match fetched {
                Err(e) => group.with_error_code(error_code(&e)),
                Ok(topics) => group.with_topics(
                    topics
                        .into_iter()
                        .map(|(name, parts)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(str(name)))
                                .with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|f| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(f.partition)
                                                .with_committed_offset(f.offset)
                                                .with_committed_leader_epoch(f.leader_epoch)
                                                .with_metadata(Some(str(f.metadata)))
                                                .with_error_code(f.error_code)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            });
        }
        return answer(
            ctx,
            request,
            OffsetFetchResponse::default().with_groups(answers),
        );
    }
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let stable = req.require_stable;
    let response = match fetch_group_offsets(broker, ctx, &req.group_id, wanted, stable).await {
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(name, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str(name)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|f| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(f.partition)
                                        .with_committed_offset(f.offset)
                                        .with_committed_leader_epoch(f.leader_epoch)
                                        .with_metadata(Some(str(f.metadata)))
                                        .with_error_code(f.error_code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(e) if version >= FIRST_TOP_LEVEL_ERROR_OFFSET_FETCH => {
            OffsetFetchResponse::default().with_error_code(error_code(&e))
        }
        // v1 has no top-level code: every partition asked for carries it.
        Err(e) => OffsetFetchResponse::default().with_topics(
            req.topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    OffsetFetchResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partition_indexes
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_error_code(error_code(&e))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    };
    answer(ctx, request, response)
}

/// OffsetDelete (KIP-496): a group-wide refusal (the group unknown or not authorised, a
/// group of another protocol type with members) is the top-level code; each partition
/// has its own (its topic unknown or not readable, or subscribed to by the members).
pub(in crate::handlers) async fn offset_delete(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: OffsetDeleteRequest = request.decode_body()?;
    // A negative index names no partition: answered as unknown.
    let partitions: Vec<(String, u32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.to_string(),
                    u32::try_from(p.partition_index).unwrap_or(u32::MAX),
                )
            })
        })
        .collect();
    let response = match groups::delete_offsets(&broker.core, ctx, &req.group_id, partitions).await
    {
        Err(e) => OffsetDeleteResponse::default().with_error_code(error_code(&e)),
        Ok(results) => {
            let mut results = results.into_iter();
            OffsetDeleteResponse::default().with_topics(
                req.topics
                    .into_iter()
                    .map(|t| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(t.name)
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        let code = results
                                            .next()
                                            .and_then(Result::err)
                                            .as_ref()
                                            .map_or(0, error_code);
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        }
    };
    answer(ctx, request, response)
}
