//! The Queues gRPC service (share groups; `proto/weir/v1/queues.proto`): decodes each
//! request into the broker core's share-group operations (`weir_broker::shares`) and
//! encodes the answer. Nothing here decides anything.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use weir_broker::share_admin;
use weir_broker::shares::{
    self as core, AckKind, AckRange, AckResult, GroupSettings, HeaderCondition, HeaderFilter,
    HeaderMatch, ShareFetch, ShareGroupView, ShareStart,
};
use weir_broker::{BrokerError, Reason};
use weir_proto::v1::queues_server::Queues;
use weir_proto::v1::{
    self as pb, ConfigureShareGroupRequest, DeleteShareGroupRequest, DeleteShareGroupResponse,
    DescribeShareGroupRequest, DescribeShareGroupResponse, ListShareGroupsRequest,
    ListShareGroupsResponse, ResetShareGroupRequest, ResetShareGroupResponse,
    ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest, ShareFetchResponse,
};

use crate::convert::consumed;
use crate::status::{broker_partition_error, broker_status};
use crate::{Broker, grpc_context};

/// The Queues gRPC service.
#[derive(Debug, Clone)]
pub struct QueuesService {
    broker: Arc<Broker>,
}

impl QueuesService {
    pub(crate) fn new(broker: Arc<Broker>) -> QueuesService {
        QueuesService { broker }
    }
}

/// An acknowledgement entry as the core takes it; INVALID_ARGUMENT for an unknown type.
fn ack_range(ack: pb::ShareAck) -> Result<AckRange, Status> {
    let kind = match pb::AckType::try_from(ack.r#type) {
        Ok(pb::AckType::Accept) => AckKind::Accept,
        Ok(pb::AckType::Release) => AckKind::Release {
            delay_ms: ack.delay_ms,
        },
        Ok(pb::AckType::Reject) => AckKind::Reject,
        Ok(pb::AckType::Renew) => AckKind::Renew,
        Ok(pb::AckType::Unspecified) | Err(_) => {
            return Err(broker_status(BrokerError::new(
                Reason::InvalidRequest,
                format!(
                    "acknowledgement of {} partition {} offsets {}..={}: type {} is not ACCEPT, RELEASE, REJECT or RENEW",
                    ack.topic, ack.partition, ack.first_offset, ack.last_offset, ack.r#type
                ),
            )));
        }
    };
    if ack.delay_ms != 0 && !matches!(kind, AckKind::Release { .. }) {
        return Err(broker_status(BrokerError::new(
            Reason::InvalidRequest,
            "delay_ms is only for RELEASE",
        )));
    }
    Ok(AckRange {
        topic: ack.topic,
        partition: ack.partition,
        first: ack.first_offset,
        last: ack.last_offset,
        kind,
    })
}

/// A header filter as the core takes it; INVALID_ARGUMENT for a condition without a match
/// or one over the limits.
fn header_filter(filter: pb::HeaderFilter) -> Result<HeaderFilter, Status> {
    use pb::header_condition::ValueMatch;
    let invalid =
        |message: String| broker_status(BrokerError::new(Reason::InvalidRequest, message));
    let conditions = filter
        .conditions
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let matches = match c.value_match {
                Some(ValueMatch::Equals(v)) => HeaderMatch::Equals(v),
                Some(ValueMatch::Prefix(p)) => HeaderMatch::Prefix(p),
                Some(ValueMatch::AnyOf(vs)) => HeaderMatch::AnyOf(vs.values),
                None => {
                    return Err(invalid(format!(
                        "filter condition {i} (header {:?}) sets none of equals, prefix or any_of",
                        c.key
                    )));
                }
            };
            Ok(HeaderCondition {
                key: c.key,
                matches,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    HeaderFilter::new(conditions).map_err(|e| invalid(format!("filter: {e}")))
}

/// A header filter as DescribeShareGroup answers it; `None` for no filter.
fn pb_filter(filter: &HeaderFilter) -> Option<pb::HeaderFilter> {
    use pb::header_condition::ValueMatch;
    if filter.is_empty() {
        return None;
    }
    let conditions = filter
        .conditions()
        .iter()
        .map(|c| pb::HeaderCondition {
            key: c.key.clone(),
            value_match: Some(match &c.matches {
                HeaderMatch::Equals(v) => ValueMatch::Equals(v.clone()),
                HeaderMatch::Prefix(p) => ValueMatch::Prefix(p.clone()),
                HeaderMatch::AnyOf(vs) => {
                    ValueMatch::AnyOf(pb::HeaderValues { values: vs.clone() })
                }
            }),
        })
        .collect();
    Some(pb::HeaderFilter { conditions })
}

fn ack_ranges(acks: Vec<pb::ShareAck>) -> Result<Vec<AckRange>, Status> {
    acks.into_iter().map(ack_range).collect()
}

fn ack_result(result: AckResult) -> pb::ShareAckResult {
    let AckResult { range, outcome } = result;
    let (error, not_held) = match outcome {
        Ok(not_held) => (None, not_held),
        Err(e) => (Some(broker_partition_error(&e)), Vec::new()),
    };
    pb::ShareAckResult {
        topic: range.topic,
        partition: range.partition,
        first_offset: range.first,
        last_offset: range.last,
        error,
        not_held,
    }
}

#[tonic::async_trait]
impl Queues for QueuesService {
    async fn share_fetch(
        &self,
        request: Request<ShareFetchRequest>,
    ) -> Result<Response<ShareFetchResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("ShareFetch");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let start = match pb::ShareStart::try_from(req.start) {
            Ok(start) => share_start(start),
            Err(_) => {
                return Err(broker_status(BrokerError::new(
                    Reason::InvalidRequest,
                    format!("start {} is not LATEST or EARLIEST", req.start),
                )));
            }
        };
        let partitions = (!req.partitions.is_empty()).then(|| {
            req.partitions
                .into_iter()
                .flat_map(|t| {
                    let topic = t.topic;
                    t.partitions.into_iter().map(move |p| (topic.clone(), p))
                })
                .collect()
        });
        let fetch = ShareFetch {
            group_id: req.group_id,
            member_id: req.member_id,
            topics: req.topics,
            partitions,
            max_records: req.max_records as usize,
            max_wait: Duration::from_millis(u64::from(req.max_wait_ms)),
            start,
            acks: ack_ranges(req.acknowledgements)?,
        };
        let answer = core::fetch(&self.broker.core, &ctx, fetch)
            .await
            .map_err(broker_status)?;
        Ok(Response::new(ShareFetchResponse {
            ack_results: answer.ack_results.into_iter().map(ack_result).collect(),
            records: answer
                .records
                .into_iter()
                .map(|r| pb::SharedRecord {
                    topic: r.topic.to_string(),
                    partition: r.partition,
                    record: Some(consumed(r.record)),
                    delivery_count: u32::from(r.delivery_count),
                    lock_deadline_ms: i64::try_from(r.lock_deadline_ms).unwrap_or(i64::MAX),
                })
                .collect(),
            lock_duration_ms: answer.lock_duration_ms,
        }))
    }

    async fn share_acknowledge(
        &self,
        request: Request<ShareAcknowledgeRequest>,
    ) -> Result<Response<ShareAcknowledgeResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("ShareAcknowledge");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let acks = ack_ranges(req.acknowledgements)?;
        let results = core::acknowledge(
            &self.broker.core,
            &ctx,
            &req.group_id,
            &req.member_id,
            acks,
            req.leaving,
        )
        .await
        .map_err(broker_status)?;
        Ok(Response::new(ShareAcknowledgeResponse {
            results: results.into_iter().map(ack_result).collect(),
        }))
    }

    async fn describe_share_group(
        &self,
        request: Request<DescribeShareGroupRequest>,
    ) -> Result<Response<DescribeShareGroupResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("DescribeShareGroup");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let described = core::describe(&self.broker.core, &ctx, &req.group_id)
            .await
            .map_err(broker_status)?;
        Ok(Response::new(group_description(req.group_id, described)))
    }

    async fn configure_share_group(
        &self,
        request: Request<ConfigureShareGroupRequest>,
    ) -> Result<Response<DescribeShareGroupResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("ConfigureShareGroup");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let limit = req
            .delivery_count_limit
            .map(|n| u16::try_from(n).unwrap_or(u16::MAX));
        // An absent filter keeps the group's.
        let keep_filter = req.filter.is_none();
        let filter = match req.filter {
            Some(f) => header_filter(f)?,
            None => HeaderFilter::default(),
        };
        // What an AMQP queue's arguments set (message TTL, dead-letter exchange) has no
        // field here: it is kept, unless a dead-letter topic replaces the exchange.
        let amqp = match core::describe(&self.broker.core, &ctx, &req.group_id).await {
            Ok(view) => view.settings,
            Err(_) => GroupSettings::default(),
        };
        let dead_letter_topic = req.dead_letter_topic.filter(|t| !t.is_empty());
        let keep_exchange = dead_letter_topic.is_none();
        let settings = GroupSettings {
            lock_duration_ms: req.lock_duration_ms,
            delivery_count_limit: limit,
            dead_letter_topic,
            message_ttl_ms: amqp.message_ttl_ms,
            dead_letter_exchange: amqp.dead_letter_exchange.filter(|_| keep_exchange),
            dead_letter_routing_key: amqp.dead_letter_routing_key.filter(|_| keep_exchange),
            max_length: amqp.max_length,
            filter,
            start: match req.start.map(pb::ShareStart::try_from) {
                None => None,
                Some(Ok(start)) => Some(share_start(start)),
                Some(Err(_)) => {
                    return Err(broker_status(BrokerError::new(
                        Reason::InvalidRequest,
                        format!("start {:?} is not LATEST or EARLIEST", req.start),
                    )));
                }
            },
        };
        let described = core::configure(
            &self.broker.core,
            &ctx,
            &req.group_id,
            settings,
            keep_filter,
        )
        .await
        .map_err(broker_status)?;
        Ok(Response::new(group_description(req.group_id, described)))
    }

    async fn list_share_groups(
        &self,
        request: Request<ListShareGroupsRequest>,
    ) -> Result<Response<ListShareGroupsResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("ListShareGroups");
        let ctx = grpc_context(&request);
        let groups = share_admin::list_groups(&self.broker.core, &ctx).map_err(broker_status)?;
        Ok(Response::new(ListShareGroupsResponse {
            groups: groups
                .into_iter()
                .map(|g| pb::ShareGroupListing {
                    group_id: g.group_id,
                    members: u32::try_from(g.members).unwrap_or(u32::MAX),
                    has_state: g.has_state,
                })
                .collect(),
        }))
    }

    async fn reset_share_group(
        &self,
        request: Request<ResetShareGroupRequest>,
    ) -> Result<Response<ResetShareGroupResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("ResetShareGroup");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let resets = req
            .partitions
            .into_iter()
            .map(start_reset)
            .collect::<Result<Vec<_>, Status>>()?;
        let asked: Vec<(String, u32)> = resets
            .iter()
            .map(|r| (r.topic.clone(), r.partition))
            .collect();
        let results = core::reset_starts(&self.broker.core, &ctx, &req.group_id, resets)
            .await
            .map_err(broker_status)?;
        Ok(Response::new(ResetShareGroupResponse {
            results: asked
                .into_iter()
                .zip(results)
                .map(|((topic, partition), result)| match result {
                    Ok(start_offset) => pb::ShareStartResult {
                        topic,
                        partition,
                        error: None,
                        start_offset,
                    },
                    Err(e) => pb::ShareStartResult {
                        topic,
                        partition,
                        error: Some(broker_partition_error(&e)),
                        start_offset: -1,
                    },
                })
                .collect(),
        }))
    }

    async fn delete_share_group(
        &self,
        request: Request<DeleteShareGroupRequest>,
    ) -> Result<Response<DeleteShareGroupResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("DeleteShareGroup");
        let ctx = grpc_context(&request);
        let req = request.into_inner();
        let topics = (!req.topics.is_empty()).then(|| req.topics.clone());
        let results = core::delete(&self.broker.core, &ctx, &req.group_id, topics)
            .await
            .map_err(broker_status)?;
        Ok(Response::new(DeleteShareGroupResponse {
            results: req
                .topics
                .into_iter()
                .zip(results)
                .map(|(topic, result)| pb::ShareTopicResult {
                    topic,
                    error: result.err().as_ref().map(broker_partition_error),
                })
                .collect(),
        }))
    }
}

/// A start reset as the core takes it; INVALID_ARGUMENT when it says nowhere to go.
fn start_reset(reset: pb::ShareStartReset) -> Result<core::StartReset, Status> {
    use pb::share_start_reset::To;
    let to = match reset.to {
        Some(To::Offset(n)) => core::StartTarget::Offset(n),
        Some(To::Earliest(true)) => core::StartTarget::Earliest,
        Some(To::Latest(true)) => core::StartTarget::Latest,
        _ => {
            return Err(broker_status(BrokerError::new(
                Reason::InvalidRequest,
                format!(
                    "the reset of {} partition {} sets none of offset, earliest or latest",
                    reset.topic, reset.partition
                ),
            )));
        }
    };
    Ok(core::StartReset {
        topic: reset.topic,
        partition: reset.partition,
        to,
    })
}

fn share_start(start: pb::ShareStart) -> ShareStart {
    match start {
        pb::ShareStart::Earliest => ShareStart::Earliest,
        pb::ShareStart::Latest => ShareStart::Latest,
    }
}

pub(crate) fn pb_share_start(start: ShareStart) -> pb::ShareStart {
    match start {
        ShareStart::Earliest => pb::ShareStart::Earliest,
        ShareStart::Latest => pb::ShareStart::Latest,
    }
}

/// A share group as DescribeShareGroup answers it.
fn group_description(group_id: String, described: ShareGroupView) -> DescribeShareGroupResponse {
    DescribeShareGroupResponse {
        group_id,
        lock_duration_ms: described.config.lock_duration_ms,
        delivery_count_limit: u32::from(described.config.delivery_count_limit),
        filter: pb_filter(&described.settings.filter),
        start: described.settings.start.map(|s| pb_share_start(s) as i32),
        dead_letter_topic: described.settings.dead_letter_topic.unwrap_or_default(),
        partitions: described
            .partitions
            .into_iter()
            .map(|p| pb::SharePartitionDescription {
                topic: p.topic,
                partition: p.partition,
                start_offset: p.start,
                end_offset: p.end,
                available: p.counts.available as u64,
                delayed: p.counts.delayed as u64,
                acquired: p.counts.acquired as u64,
                archived_pending: p.counts.archived_pending as u64,
                oldest_unfinished_offset: p.counts.oldest_unfinished,
                oldest_unfinished_age_ms: p.oldest_unfinished_age_ms,
                high_watermark: p.high_watermark,
                filtered_out: p.filtered_out,
            })
            .collect(),
    }
}
