//! What one broker does for a client of another (`weir.internal.v1.Forward`): share-group
//! calls carried to the group's share coordinator, and produces carried to a
//! partition's leader.
//!
//! [`GrpcForwarder`] is both of the core's forwarders ([`ShareForwarder`] and
//! [`ProduceForwarder`]): it calls the other broker's internal listener, after the core
//! authorised the client and applied its quotas here. [`ForwardService`] runs each call
//! through the same core functions a local client's call reaches, as the broker itself
//! ([`Listener::INTERNAL`]: no second authorisation or quota). Only brokers reach it: on a
//! secured cluster the internal services answer only callers whose certificate names a
//! super user (`authn.rs`).
//!
//! The core's errors cross whole ([`CoreError`](pb::CoreError): a `BrokerError`'s serde
//! form), in a failed call's status details or in an entry; only a call that reached no
//! core (the peer unreachable, the deadline passed) is read from its status code.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use weir_broker::groups::Coordinator;
use weir_broker::produce::{
    self, Acks, Appended, ForwardedProduce, PartitionProduce, ProduceData, ProduceForwarder,
    ProduceRequest,
};
use weir_broker::shares::{
    self, AckKind, AckRange, AckResult, ForwardFuture, GroupSettings, ShareFetch, ShareFetchAnswer,
    ShareForwarder, ShareRecord, ShareStart, StartReset, StartTarget,
};
use weir_broker::{Broker, BrokerError, Listener, Reason, RequestContext};
use weir_cluster::controller::records::Endpoints;
use weir_proto::internal::v1::forward_client::ForwardClient;
use weir_proto::internal::v1::forward_server::Forward;
use weir_proto::internal::v1::{self as pb};
use weir_security::dial::TlsDialer;

use super::MAX_FORWARD_MESSAGE_BYTES;
use super::peers::PeerChannels;
use crate::status::internal::{core_error_status, malformed};

/// How long a forwarded call may take beyond its own wait (a share fetch's long poll, a
/// produce's timeout): connecting, the way there and back.
const CALL_SLACK: Duration = Duration::from_secs(10);

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

/// The core's error whole, as it crosses to another broker.
pub(crate) fn core_error(err: &BrokerError) -> pb::CoreError {
    pb::CoreError {
        message: err.message.clone(),
        // A BrokerError is strings, numbers and enums: it always serialises.
        error_json: serde_json::to_vec(err).unwrap_or_default().into(),
    }
}

/// [`core_error`]'s inverse: an error that names a reason this build does not know is
/// kept as an internal error with its message.
pub(crate) fn broker_error(who: &str, err: pb::CoreError) -> BrokerError {
    match serde_json::from_slice::<BrokerError>(&err.error_json) {
        Ok(e) => e,
        Err(_) => BrokerError::new(Reason::Internal, format!("{who}: {}", err.message)),
    }
}

/// A failed forwarded call as the core's error: the error the other broker's core
/// answered, or, for a call that reached no core, what its status code means
/// (`unreachable`: the reason for a peer that could not be reached, retriable).
fn call_error(who: &str, status: Status, unreachable: Reason) -> BrokerError {
    if !status.details().is_empty()
        && let Ok(err) = pb::CoreError::decode(status.details())
    {
        return broker_error(who, err);
    }
    let reason = match status.code() {
        Code::DeadlineExceeded => Reason::Timeout,
        // Refused or reset connections, a peer stopping, a build without the service.
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Unimplemented => unreachable,
        _ => Reason::Internal,
    };
    BrokerError::new(reason, format!("{who}: {}", status.message()))
}

fn ack_ranges(acks: Vec<pb::ForwardedAck>) -> Result<Vec<AckRange>, Status> {
    acks.into_iter()
        .map(|a| {
            let kind = match pb::ForwardedAckKind::try_from(a.kind) {
                Ok(pb::ForwardedAckKind::Accept) => AckKind::Accept,
                Ok(pb::ForwardedAckKind::Release) => AckKind::Release {
                    delay_ms: a.delay_ms,
                },
                Ok(pb::ForwardedAckKind::Reject) => AckKind::Reject,
                Ok(pb::ForwardedAckKind::Renew) => AckKind::Renew,
                _ => return Err(malformed("a forwarded acknowledgement", "it has no kind")),
            };
            Ok(AckRange {
                topic: a.topic,
                partition: a.partition,
                first: a.first,
                last: a.last,
                kind,
            })
        })
        .collect()
}

fn forwarded_ack(a: &AckRange) -> pb::ForwardedAck {
    let (kind, delay_ms) = match a.kind {
        AckKind::Accept => (pb::ForwardedAckKind::Accept, 0),
        AckKind::Release { delay_ms } => (pb::ForwardedAckKind::Release, delay_ms),
        AckKind::Reject => (pb::ForwardedAckKind::Reject, 0),
        AckKind::Renew => (pb::ForwardedAckKind::Renew, 0),
    };
    pb::ForwardedAck {
        topic: a.topic.clone(),
        partition: a.partition,
        first: a.first,
        last: a.last,
        kind: kind as i32,
        delay_ms,
    }
}

fn ack_result(r: &AckResult) -> pb::ForwardedAckResult {
    match &r.outcome {
        Ok(not_held) => pb::ForwardedAckResult {
            not_held: not_held.clone(),
            error: None,
        },
        Err(e) => pb::ForwardedAckResult {
            not_held: Vec::new(),
            error: Some(core_error(e)),
        },
    }
}

/// The coordinator's outcomes laid back on the ranges sent, in order.
fn ack_results(
    who: &str,
    ranges: Vec<AckRange>,
    results: Vec<pb::ForwardedAckResult>,
) -> Vec<AckResult> {
    let mut results = results.into_iter();
    ranges
        .into_iter()
        .map(|range| {
            let outcome = match results.next() {
                Some(pb::ForwardedAckResult { error: Some(e), .. }) => Err(broker_error(who, e)),
                Some(r) => Ok(r.not_held),
                None => Err(short_answer(who)),
            };
            AckResult { range, outcome }
        })
        .collect()
}

fn result(r: Result<i64, BrokerError>) -> pb::ForwardedResult {
    match r {
        Ok(offset) => pb::ForwardedResult {
            offset,
            error: None,
        },
        Err(e) => pb::ForwardedResult {
            offset: 0,
            error: Some(core_error(&e)),
        },
    }
}

/// One outcome per entry sent, in order (an answer short of entries fails the rest).
fn results(
    who: &str,
    sent: usize,
    results: Vec<pb::ForwardedResult>,
) -> Vec<Result<i64, BrokerError>> {
    let mut outcomes: Vec<Result<i64, BrokerError>> = results
        .into_iter()
        .map(|r| match r.error {
            Some(e) => Err(broker_error(who, e)),
            None => Ok(r.offset),
        })
        .collect();
    outcomes.truncate(sent);
    outcomes.resize_with(sent, || Err(short_answer(who)));
    outcomes
}

fn short_answer(who: &str) -> BrokerError {
    BrokerError::new(
        Reason::Internal,
        format!("{who} answered fewer entries than it was sent"),
    )
}

/// The sending side: the core's [`ShareForwarder`] and [`ProduceForwarder`], one lazily
/// connected channel per broker's internal address.
#[derive(Debug)]
pub struct GrpcForwarder {
    channels: PeerChannels,
}

impl GrpcForwarder {
    /// A forwarder that dials brokers with `tls`, or in plaintext.
    pub fn new(tls: Option<TlsDialer>) -> GrpcForwarder {
        GrpcForwarder {
            channels: PeerChannels::new(tls),
        }
    }

    fn client(
        &self,
        node_id: i32,
        endpoints: &Endpoints,
        unreachable: Reason,
    ) -> Result<ForwardClient<Channel>, BrokerError> {
        let address = endpoints.internal();
        let channel = self.channels.channel(address).map_err(|e| {
            BrokerError::new(
                unreachable,
                format!("broker {node_id} advertises {address:?}, not an address: {e}"),
            )
        })?;
        Ok(ForwardClient::new(channel)
            .max_decoding_message_size(MAX_FORWARD_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_FORWARD_MESSAGE_BYTES))
    }

    /// The coordinator's client, and how its answers name it.
    fn coordinator(
        &self,
        coordinator: &Coordinator,
    ) -> Result<(ForwardClient<Channel>, String), BrokerError> {
        let client = self.client(
            coordinator.node_id,
            &coordinator.endpoints,
            Reason::CoordinatorNotAvailable,
        )?;
        Ok((
            client,
            format!("the share coordinator, broker {}", coordinator.node_id),
        ))
    }
}

/// A request bounded by `timeout`.
fn timed<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

impl GrpcForwarder {
    async fn share_fetch(
        &self,
        coordinator: &Coordinator,
        fetch: ShareFetch,
    ) -> Result<ShareFetchAnswer, BrokerError> {
        let (mut client, who) = self.coordinator(coordinator)?;
        let ranges = fetch.acks.clone();
        let request = pb::ForwardedShareFetch {
            group_id: fetch.group_id,
            member_id: fetch.member_id,
            topics: fetch.topics,
            partitions: fetch.partitions.map(|p| pb::ForwardedPartitions {
                partitions: p
                    .into_iter()
                    .map(|(topic, partition)| pb::ForwardedPartition { topic, partition })
                    .collect(),
            }),
            max_records: fetch.max_records as u64,
            max_wait_ms: u64::try_from(fetch.max_wait.as_millis()).unwrap_or(u64::MAX),
            start: match fetch.start {
                ShareStart::Latest => pb::ForwardedStart::Latest,
                ShareStart::Earliest => pb::ForwardedStart::Earliest,
            } as i32,
            acks: fetch.acks.iter().map(forwarded_ack).collect(),
        };
        let answer = client
            .share_fetch(timed(request, fetch.max_wait + CALL_SLACK))
            .await
            .map_err(|s| call_error(&who, s, Reason::CoordinatorNotAvailable))?
            .into_inner();
        Ok(ShareFetchAnswer {
            ack_results: ack_results(&who, ranges, answer.ack_results),
            records: answer
                .records
                .into_iter()
                .map(|r| ShareRecord {
                    topic: Arc::from(r.topic.as_str()),
                    partition: r.partition,
                    record: crate::convert::decoded(r.record.unwrap_or_default()),
                    delivery_count: u16::try_from(r.delivery_count).unwrap_or(u16::MAX),
                    lock_deadline_ms: r.lock_deadline_ms,
                })
                .collect(),
            lock_duration_ms: answer.lock_duration_ms,
        })
    }

    async fn share_acknowledge(
        &self,
        coordinator: &Coordinator,
        group_id: &str,
        member_id: &str,
        acks: Vec<AckRange>,
        leaving: bool,
    ) -> Result<Vec<AckResult>, BrokerError> {
        let (mut client, who) = self.coordinator(coordinator)?;
        let request = pb::ForwardedShareAcknowledge {
            group_id: group_id.to_owned(),
            member_id: member_id.to_owned(),
            acks: acks.iter().map(forwarded_ack).collect(),
            leaving,
        };
        let answer = client
            .share_acknowledge(timed(request, CALL_SLACK))
            .await
            .map_err(|s| call_error(&who, s, Reason::CoordinatorNotAvailable))?
            .into_inner();
        Ok(ack_results(&who, acks, answer.results))
    }

    async fn share_settings(
        &self,
        coordinator: &Coordinator,
        group_id: &str,
    ) -> Result<Option<(GroupSettings, u64, u16)>, BrokerError> {
        let (mut client, who) = self.coordinator(coordinator)?;
        let request = pb::ForwardedShareGroup {
            group_id: group_id.to_owned(),
        };
        let answer = client
            .share_settings(timed(request, CALL_SLACK))
            .await
            .map_err(|s| call_error(&who, s, Reason::CoordinatorNotAvailable))?
            .into_inner();
        let Some(found) = answer.settings else {
            return Ok(None);
        };
        let settings = GroupSettings::decode(&found.encoded).map_err(|e| {
            BrokerError::new(
                Reason::Internal,
                format!("{who} answered settings that do not decode: {e}"),
            )
        })?;
        let limit = u16::try_from(found.delivery_count_limit).unwrap_or(u16::MAX);
        Ok(Some((settings, found.lock_duration_ms, limit)))
    }

    async fn share_configure(
        &self,
        coordinator: &Coordinator,
        group_id: &str,
        settings: GroupSettings,
    ) -> Result<(), BrokerError> {
        let (mut client, who) = self.coordinator(coordinator)?;
        let request = pb::ForwardedShareConfigure {
            group_id: group_id.to_owned(),
            settings: settings.encode().into(),
        };
        client
            .share_configure(timed(request, CALL_SLACK))
            .await
            .map_err(|s| call_error(&who, s, Reason::CoordinatorNotAvailable))?;
        Ok(())
    }

    async fn share_starts(
        &self,
        coordinator: &Coordinator,
        group_id: &str,
    ) -> Result<Option<Vec<(String, u32, i64)>>, BrokerError> {
        let (mut client, who) = self.coordinator(coordinator)?;
        let request = pb::ForwardedShareGroup {
            group_id: group_id.to_owned(),
        };
        let answer = client
            .share_starts(timed(request, CALL_SLACK))
            .await
            .map_err(|s| call_error(&who, s, Reason::CoordinatorNotAvailable))?
            .into_inner();
        Ok(answer.starts.map(|s| {
            s.starts
                .into_iter()
                .map(|p| (p.topic, p.partition, p.start))
                .collect()
        }))
    }

    async fn share_reset(
        &self,
        coordinator: &Coordinator,
        group_id: &str,
        resets: Vec<StartReset>,
    ) -> Result<Vec<Result<i64, BrokerError>>, BrokerError> {
        let (mut client, who) = self.coordinator(coordinator)?;
        let sent = resets.len();
        let request = pb::ForwardedShareReset {
            group_id: group_id.to_owned(),
            resets: resets
                .into_iter()
                .map(|r| pb::ForwardedStartReset {
                    topic: r.topic,
                    partition: r.partition,
                    to: Some(match r.to {
                        StartTarget::Offset(offset) => {
                            pb::forwarded_start_reset::To::Offset(offset)
                        }
                        StartTarget::Earliest => pb::forwarded_start_reset::To::Earliest(true),
                        StartTarget::Latest => pb::forwarded_start_reset::To::Latest(true),
                    }),
                })
                .collect(),
        };
        let answer = client
            .share_reset(timed(request, CALL_SLACK))
            .await
            .map_err(|s| call_error(&who, s, Reason::CoordinatorNotAvailable))?
            .into_inner();
        Ok(results(&who, sent, answer.results))
    }

    async fn share_delete(
        &self,
        coordinator: &Coordinator,
        group_id: &str,
        topics: Option<Vec<String>>,
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        let (mut client, who) = self.coordinator(coordinator)?;
        let sent = topics.as_ref().map_or(0, Vec::len);
        let request = pb::ForwardedShareDelete {
            group_id: group_id.to_owned(),
            topics: topics.map(|topics| pb::ForwardedTopics { topics }),
        };
        let answer = client
            .share_delete(timed(request, CALL_SLACK))
            .await
            .map_err(|s| call_error(&who, s, Reason::CoordinatorNotAvailable))?
            .into_inner();
        Ok(results(&who, sent, answer.results)
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect())
    }

    async fn produce(
        &self,
        (leader, endpoints): (i32, &Endpoints),
        produce: ForwardedProduce,
    ) -> Result<Appended, BrokerError> {
        // A leader that cannot be reached: no leader for now, as metadata would say
        // while it fails over.
        let unreachable = Reason::NotLeader { leader: -1 };
        let mut client = self.client(leader, endpoints, unreachable)?;
        let who = format!("the partition's leader, broker {leader}");
        let request = pb::ForwardedProduce {
            topic: produce.topic,
            partition: produce.partition,
            batch: produce.batch,
            acks: match produce.acks {
                Acks::None => pb::ForwardedAcks::None,
                Acks::Leader => pb::ForwardedAcks::Leader,
                Acks::All => pb::ForwardedAcks::All,
            } as i32,
            timeout_ms: u64::try_from(produce.timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let answer = client
            .produce(timed(request, produce.timeout + CALL_SLACK))
            .await
            .map_err(|s| call_error(&who, s, unreachable))?
            .into_inner();
        Ok(Appended {
            base_offset: answer.base_offset,
            last_offset: answer.last_offset,
            log_append_time_ms: answer.log_append_time_ms,
        })
    }
}

impl ShareForwarder for GrpcForwarder {
    fn fetch<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        fetch: ShareFetch,
    ) -> ForwardFuture<'a, ShareFetchAnswer> {
        Box::pin(self.share_fetch(coordinator, fetch))
    }

    fn acknowledge<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
        member_id: &'a str,
        acks: Vec<AckRange>,
        leaving: bool,
    ) -> ForwardFuture<'a, Vec<AckResult>> {
        Box::pin(self.share_acknowledge(coordinator, group_id, member_id, acks, leaving))
    }

    fn settings<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
    ) -> ForwardFuture<'a, Option<(GroupSettings, u64, u16)>> {
        Box::pin(self.share_settings(coordinator, group_id))
    }

    fn configure<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
        settings: GroupSettings,
    ) -> ForwardFuture<'a, ()> {
        Box::pin(self.share_configure(coordinator, group_id, settings))
    }

    fn starts<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
    ) -> ForwardFuture<'a, Option<Vec<(String, u32, i64)>>> {
        Box::pin(self.share_starts(coordinator, group_id))
    }

    fn reset<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
        resets: Vec<StartReset>,
    ) -> ForwardFuture<'a, Vec<Result<i64, BrokerError>>> {
        Box::pin(self.share_reset(coordinator, group_id, resets))
    }

    fn delete<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
        topics: Option<Vec<String>>,
    ) -> ForwardFuture<'a, Vec<Result<(), BrokerError>>> {
        Box::pin(self.share_delete(coordinator, group_id, topics))
    }
}

impl ProduceForwarder for GrpcForwarder {
    fn produce<'a>(
        &'a self,
        leader: (i32, &'a Endpoints),
        produce: ForwardedProduce,
    ) -> ForwardFuture<'a, Appended> {
        Box::pin(GrpcForwarder::produce(self, leader, produce))
    }
}

#[cfg(test)]
mod tests {
    use weir_broker::RecordError;
    use weir_cluster::security::ResourceType;
    use weir_cluster::txn::TxnError;

    use super::*;

    /// Errors cross whole: the reason with its facts, the partition and refused records;
    /// a status with the error in its details reads back as that error, and one without
    /// (a peer never reached) by its code.
    #[test]
    fn core_errors_cross_whole() {
        let mut refused = BrokerError::new(Reason::InvalidRecord, "no key").at("t", 3);
        refused.refused_records = Some(Box::new(vec![RecordError {
            batch_index: 2,
            message: "a compacted topic's record needs a key".into(),
        }]));
        let errors = [
            BrokerError::new(Reason::NotLeader { leader: 4 }, "not here").at("t", 1),
            BrokerError::new(Reason::NotCoordinator { coordinator: -1 }, "moved"),
            BrokerError::new(
                Reason::OffsetOutOfRange {
                    log_start_offset: 10,
                    high_watermark: 20,
                },
                "out",
            ),
            BrokerError::new(Reason::StateConflict, "conflict"),
            BrokerError::new(
                Reason::CorruptData {
                    batch: Some((5, 9)),
                },
                "bad",
            ),
            BrokerError::new(
                Reason::NotAuthorized {
                    resource_type: ResourceType::TransactionalId,
                },
                "no",
            ),
            BrokerError::new(
                Reason::Transaction(TxnError::ConcurrentTransactions),
                "busy",
            ),
            refused,
        ];
        for err in errors {
            let crossed = broker_error("peer", core_error(&err));
            assert_eq!(crossed, err);
            let status = core_error_status(err.clone());
            assert_eq!(status.code(), crate::status::code(&err.reason));
            assert_eq!(call_error("peer", status, Reason::Internal), err);
        }
        let unreached = call_error(
            "broker 2",
            Status::unavailable("connection refused"),
            Reason::CoordinatorNotAvailable,
        );
        assert_eq!(unreached.reason, Reason::CoordinatorNotAvailable);
        assert_eq!(unreached.message, "broker 2: connection refused");
        assert_eq!(
            call_error("b", Status::deadline_exceeded("late"), Reason::Internal).reason,
            Reason::Timeout
        );
    }

    /// A reason a newer build added reads as an internal error with its message.
    #[test]
    fn an_unknown_reason_is_kept_as_an_internal_error() {
        let err = pb::CoreError {
            message: "something new".into(),
            error_json: br#"{"reason":"SomethingNew","message":"something new"}"#
                .to_vec()
                .into(),
        };
        let read = broker_error("broker 3", err);
        assert_eq!(read.reason, Reason::Internal);
        assert_eq!(read.message, "broker 3: something new");
    }

    #[test]
    fn an_answer_short_of_entries_fails_the_rest() {
        let answer = vec![
            result(Ok(7)),
            result(Err(BrokerError::new(Reason::UnknownPartition, "no p"))),
        ];
        let read = results("broker 1", 3, answer);
        assert_eq!(read[0], Ok(7));
        assert_eq!(
            read[1].as_ref().unwrap_err().reason,
            Reason::UnknownPartition
        );
        assert_eq!(read[2].as_ref().unwrap_err().reason, Reason::Internal);
    }
}
