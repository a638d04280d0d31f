//! The receiving side of `Forward`: each forwarded call through the core, as this
//! broker.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use weir_broker::produce::{self, Acks, PartitionProduce, ProduceData, ProduceRequest};
use weir_broker::shares::{self, GroupSettings, ShareFetch, ShareStart, StartReset, StartTarget};
use weir_broker::{Broker, BrokerError, Listener, Reason, RequestContext};
use weir_proto::internal::v1::forward_server::Forward;
use weir_proto::internal::v1::{self as pb};

use super::{ack_ranges, ack_result, result};
use crate::status::internal::{core_error_status, malformed};

/// The receiving side: each call through the core, as this broker.
#[derive(Debug)]
pub struct ForwardService {
    core: Arc<Broker>,
}

impl ForwardService {
    pub fn new(core: Arc<Broker>) -> ForwardService {
        ForwardService { core }
    }
}

/// The core's context for a forwarded call: the broker itself, from the calling peer.
fn as_broker<T>(request: &Request<T>) -> RequestContext {
    RequestContext::anonymous(Listener::INTERNAL, request.remote_addr())
}

#[tonic::async_trait]
impl Forward for ForwardService {
    async fn share_fetch(
        &self,
        request: Request<pb::ForwardedShareFetch>,
    ) -> Result<Response<pb::ForwardedShareFetchAnswer>, Status> {
        let ctx = as_broker(&request);
        let f = request.into_inner();
        let fetch = ShareFetch {
            group_id: f.group_id,
            member_id: f.member_id,
            topics: f.topics,
            partitions: f.partitions.map(|p| {
                p.partitions
                    .into_iter()
                    .map(|p| (p.topic, p.partition))
                    .collect::<BTreeSet<_>>()
            }),
            max_records: usize::try_from(f.max_records).unwrap_or(usize::MAX),
            max_wait: Duration::from_millis(f.max_wait_ms),
            start: match pb::ForwardedStart::try_from(f.start) {
                Ok(pb::ForwardedStart::Earliest) => ShareStart::Earliest,
                _ => ShareStart::Latest,
            },
            acks: ack_ranges(f.acks)?,
        };
        let answer = shares::fetch(&self.core, &ctx, fetch)
            .await
            .map_err(core_error_status)?;
        Ok(Response::new(pb::ForwardedShareFetchAnswer {
            ack_results: answer.ack_results.iter().map(ack_result).collect(),
            records: answer
                .records
                .into_iter()
                .map(|r| pb::ForwardedShareRecord {
                    topic: r.topic.to_string(),
                    partition: r.partition,
                    record: Some(crate::convert::consumed(r.record)),
                    delivery_count: u32::from(r.delivery_count),
                    lock_deadline_ms: r.lock_deadline_ms,
                })
                .collect(),
            lock_duration_ms: answer.lock_duration_ms,
        }))
    }

    async fn share_acknowledge(
        &self,
        request: Request<pb::ForwardedShareAcknowledge>,
    ) -> Result<Response<pb::ForwardedAckResults>, Status> {
        let ctx = as_broker(&request);
        let a = request.into_inner();
        let acks = ack_ranges(a.acks)?;
        let results =
            shares::acknowledge(&self.core, &ctx, &a.group_id, &a.member_id, acks, a.leaving)
                .await
                .map_err(core_error_status)?;
        Ok(Response::new(pb::ForwardedAckResults {
            results: results.iter().map(ack_result).collect(),
        }))
    }

    async fn share_settings(
        &self,
        request: Request<pb::ForwardedShareGroup>,
    ) -> Result<Response<pb::ForwardedShareSettings>, Status> {
        let ctx = as_broker(&request);
        let group_id = request.into_inner().group_id;
        let found = shares::settings(&self.core, &ctx, &group_id)
            .await
            .map_err(core_error_status)?;
        Ok(Response::new(pb::ForwardedShareSettings {
            settings: found.map(
                |(settings, lock_duration_ms, limit)| pb::ForwardedGroupSettings {
                    encoded: settings.encode().into(),
                    lock_duration_ms,
                    delivery_count_limit: u32::from(limit),
                },
            ),
        }))
    }

    async fn share_configure(
        &self,
        request: Request<pb::ForwardedShareConfigure>,
    ) -> Result<Response<pb::ForwardedDone>, Status> {
        let ctx = as_broker(&request);
        let c = request.into_inner();
        let settings = GroupSettings::decode(&c.settings)
            .map_err(|e| malformed("a forwarded share group's settings", e))?;
        shares::configure(&self.core, &ctx, &c.group_id, settings, true)
            .await
            .map_err(core_error_status)?;
        Ok(Response::new(pb::ForwardedDone {}))
    }

    async fn share_starts(
        &self,
        request: Request<pb::ForwardedShareGroup>,
    ) -> Result<Response<pb::ForwardedShareStarts>, Status> {
        let ctx = as_broker(&request);
        let group_id = request.into_inner().group_id;
        let starts = shares::starts(&self.core, &ctx, &group_id)
            .await
            .map_err(core_error_status)?;
        Ok(Response::new(pb::ForwardedShareStarts {
            starts: starts.map(|starts| pb::ForwardedStarts {
                starts: starts
                    .into_iter()
                    .map(|(topic, partition, start)| pb::ForwardedPartitionStart {
                        topic,
                        partition,
                        start,
                    })
                    .collect(),
            }),
        }))
    }

    async fn share_counts(
        &self,
        request: Request<pb::ForwardedShareGroup>,
    ) -> Result<Response<pb::ForwardedShareCounts>, Status> {
        let ctx = as_broker(&request);
        let group_id = request.into_inner().group_id;
        let counts = shares::counts(&self.core, &ctx, &group_id)
            .await
            .map_err(core_error_status)?;
        Ok(Response::new(pb::ForwardedShareCounts {
            counts: counts.map(|c| pb::ForwardedCounts {
                ready: c.ready,
                delayed: c.delayed,
                unacked: c.unacked,
            }),
        }))
    }

    async fn share_reset(
        &self,
        request: Request<pb::ForwardedShareReset>,
    ) -> Result<Response<pb::ForwardedResults>, Status> {
        let ctx = as_broker(&request);
        let r = request.into_inner();
        let resets = r
            .resets
            .into_iter()
            .map(|r| {
                let to = match r.to {
                    Some(pb::forwarded_start_reset::To::Offset(offset)) => {
                        StartTarget::Offset(offset)
                    }
                    Some(pb::forwarded_start_reset::To::Earliest(_)) => StartTarget::Earliest,
                    Some(pb::forwarded_start_reset::To::Latest(_)) => StartTarget::Latest,
                    None => return Err(malformed("a forwarded start reset", "it names no target")),
                };
                Ok(StartReset {
                    topic: r.topic,
                    partition: r.partition,
                    to,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let results = shares::reset_starts(&self.core, &ctx, &r.group_id, resets)
            .await
            .map_err(core_error_status)?;
        Ok(Response::new(pb::ForwardedResults {
            results: results.into_iter().map(result).collect(),
        }))
    }

    async fn share_delete(
        &self,
        request: Request<pb::ForwardedShareDelete>,
    ) -> Result<Response<pb::ForwardedResults>, Status> {
        let ctx = as_broker(&request);
        let d = request.into_inner();
        let results = shares::delete(&self.core, &ctx, &d.group_id, d.topics.map(|t| t.topics))
            .await
            .map_err(core_error_status)?;
        Ok(Response::new(pb::ForwardedResults {
            results: results.into_iter().map(|r| result(r.map(|()| 0))).collect(),
        }))
    }

    async fn produce(
        &self,
        request: Request<pb::ForwardedProduce>,
    ) -> Result<Response<pb::ForwardedAppended>, Status> {
        let ctx = as_broker(&request);
        let p = request.into_inner();
        let acks = match pb::ForwardedAcks::try_from(p.acks) {
            Ok(pb::ForwardedAcks::None) => Acks::None,
            Ok(pb::ForwardedAcks::Leader) => Acks::Leader,
            _ => Acks::All,
        };
        let request = ProduceRequest {
            topic: p.topic,
            acks,
            timeout: Some(Duration::from_millis(p.timeout_ms)),
            partitions: vec![PartitionProduce {
                partition: p.partition,
                data: Ok(ProduceData::Batches {
                    bytes: p.batch,
                    compression: None,
                    verification: None,
                }),
            }],
        };
        let pending = produce::submit(&self.core, &ctx, request)
            .await
            .map_err(core_error_status)?;
        let appended = pending
            .finish()
            .await
            .into_iter()
            .next()
            .ok_or_else(|| {
                core_error_status(BrokerError::new(
                    Reason::Internal,
                    "the produce answered no partition",
                ))
            })?
            .outcome
            .map_err(core_error_status)?;
        Ok(Response::new(pb::ForwardedAppended {
            base_offset: appended.base_offset,
            last_offset: appended.last_offset,
            log_append_time_ms: appended.log_append_time_ms,
        }))
    }
}
