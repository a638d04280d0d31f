//! Share fetches and acknowledgements forwarded to a share group's coordinator on
//! another broker: the `ShareForwarder` the broker core calls for Kafka's share
//! consumers, which send each partition's fetch to its leader rather than to the
//! coordinator. It calls the coordinator's public Queues service over its advertised
//! client address, as a gRPC client would, with the partitions the Kafka client asked
//! this broker for.
//!
//! The forwarded call runs as the forwarding broker, not as the Kafka client: when
//! authorisation arrives it must be checked here, before forwarding.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Status};
use weir_broker::groups::Coordinator;
use weir_broker::shares::{
    AckKind, AckRange, AckResult, ForwardFuture, GroupSettings, ShareFetch, ShareFetchAnswer,
    ShareForwarder, ShareRecord, ShareStart, StartReset,
};
use weir_broker::{BrokerError, Reason};
use weir_cluster::share::ShareError;
use weir_proto::v1::queues_client::QueuesClient;
use weir_proto::v1::{self as pb};
use weir_security::dial::TlsDialer;

use crate::internal::peers::PeerChannels;

/// How long a forwarded call may take beyond the fetch's own wait.
const CALL_SLACK: Duration = Duration::from_secs(10);

/// Forwards over gRPC, one lazily connected channel per coordinator address.
#[derive(Debug)]
pub struct GrpcShareForwarder {
    channels: PeerChannels,
}

impl GrpcShareForwarder {
    /// A forwarder that dials coordinators with `tls`, or in plaintext.
    pub fn new(tls: Option<TlsDialer>) -> GrpcShareForwarder {
        GrpcShareForwarder {
            channels: PeerChannels::new(tls),
        }
    }

    fn client(&self, coordinator: &Coordinator) -> Result<QueuesClient<Channel>, BrokerError> {
        let address = coordinator.endpoints.client();
        let channel = self.channels.channel(address).map_err(|e| {
            BrokerError::new(
                Reason::CoordinatorNotAvailable,
                format!(
                    "broker {} advertises {address:?}, not an address: {e}",
                    coordinator.node_id
                ),
            )
        })?;
        Ok(QueuesClient::new(channel))
    }

    async fn forward_fetch(
        &self,
        coordinator: &Coordinator,
        fetch: ShareFetch,
    ) -> Result<ShareFetchAnswer, BrokerError> {
        let mut partitions: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (topic, p) in fetch.partitions.iter().flatten() {
            partitions.entry(topic.clone()).or_default().push(*p);
        }
        let ranges = fetch.acks.clone();
        let mut request = tonic::Request::new(pb::ShareFetchRequest {
            group_id: fetch.group_id,
            member_id: fetch.member_id,
            topics: fetch.topics,
            max_records: u32::try_from(fetch.max_records).unwrap_or(u32::MAX),
            max_wait_ms: u32::try_from(fetch.max_wait.as_millis()).unwrap_or(u32::MAX),
            start: match fetch.start {
                ShareStart::Latest => pb::ShareStart::Latest,
                ShareStart::Earliest => pb::ShareStart::Earliest,
            } as i32,
            acknowledgements: fetch.acks.iter().map(share_ack).collect(),
            partitions: partitions
                .into_iter()
                .map(|(topic, partitions)| pb::SharePartitions { topic, partitions })
                .collect(),
        });
        request.set_timeout(fetch.max_wait + CALL_SLACK);
        let answer = self
            .client(coordinator)?
            .share_fetch(request)
            .await
            .map_err(|s| forwarded_error(coordinator, s))?
            .into_inner();
        let records = answer
            .records
            .into_iter()
            .map(|r| ShareRecord {
                topic: Arc::from(r.topic.as_str()),
                partition: r.partition,
                record: crate::convert::decoded(r.record.unwrap_or_default()),
                delivery_count: u16::try_from(r.delivery_count).unwrap_or(u16::MAX),
                lock_deadline_ms: u64::try_from(r.lock_deadline_ms).unwrap_or(0),
            })
            .collect();
        Ok(ShareFetchAnswer {
            ack_results: ack_results(ranges, answer.ack_results),
            records,
            lock_duration_ms: answer.lock_duration_ms,
        })
    }

    async fn forward_acknowledge(
        &self,
        coordinator: &Coordinator,
        group_id: &str,
        member_id: &str,
        acks: Vec<AckRange>,
        leaving: bool,
    ) -> Result<Vec<AckResult>, BrokerError> {
        let mut request = tonic::Request::new(pb::ShareAcknowledgeRequest {
            group_id: group_id.to_string(),
            member_id: member_id.to_string(),
            acknowledgements: acks.iter().map(share_ack).collect(),
            leaving,
        });
        request.set_timeout(CALL_SLACK);
        let answer = self
            .client(coordinator)?
            .share_acknowledge(request)
            .await
            .map_err(|s| forwarded_error(coordinator, s))?
            .into_inner();
        Ok(ack_results(acks, answer.results))
    }
}

impl GrpcShareForwarder {
    async fn forward_settings(
        &self,
        coordinator: &Coordinator,
        group_id: &str,
    ) -> Result<Option<(GroupSettings, u64, u16)>, BrokerError> {
        let mut request = tonic::Request::new(pb::DescribeShareGroupRequest {
            group_id: group_id.to_string(),
        });
        request.set_timeout(CALL_SLACK);
        let d = match self
            .client(coordinator)?
            .describe_share_group(request)
            .await
        {
            Ok(d) => d.into_inner(),
            // A group without state.
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(forwarded_error(coordinator, s)),
        };
        let limit = u16::try_from(d.delivery_count_limit).unwrap_or(u16::MAX);
        let settings = GroupSettings {
            lock_duration_ms: Some(d.lock_duration_ms),
            delivery_count_limit: Some(limit),
            dead_letter_topic: (!d.dead_letter_topic.is_empty()).then_some(d.dead_letter_topic),
            // Kept by the coordinator: configure sends none.
            message_ttl_ms: None,
            dead_letter_exchange: None,
            dead_letter_routing_key: None,
            max_length: None,
            filter: Default::default(),
            start: d
                .start
                .and_then(|s| match pb::ShareStart::try_from(s).ok()? {
                    pb::ShareStart::Latest => Some(ShareStart::Latest),
                    pb::ShareStart::Earliest => Some(ShareStart::Earliest),
                }),
        };
        Ok(Some((settings, d.lock_duration_ms, limit)))
    }

    async fn forward_configure(
        &self,
        coordinator: &Coordinator,
        group_id: &str,
        settings: GroupSettings,
    ) -> Result<(), BrokerError> {
        let mut request = tonic::Request::new(pb::ConfigureShareGroupRequest {
            group_id: group_id.to_string(),
            lock_duration_ms: settings.lock_duration_ms,
            delivery_count_limit: settings.delivery_count_limit.map(u32::from),
            dead_letter_topic: settings.dead_letter_topic,
            // Absent: the group keeps its filter.
            filter: None,
            start: settings
                .start
                .map(|s| crate::queues::pb_share_start(s) as i32),
        });
        request.set_timeout(CALL_SLACK);
        self.client(coordinator)?
            .configure_share_group(request)
            .await
            .map_err(|s| forwarded_error(coordinator, s))?;
        Ok(())
    }
}

impl GrpcShareForwarder {
    async fn forward_starts(
        &self,
        coordinator: &Coordinator,
        group_id: &str,
    ) -> Result<Option<Vec<(String, u32, i64)>>, BrokerError> {
        let mut request = tonic::Request::new(pb::DescribeShareGroupRequest {
            group_id: group_id.to_string(),
        });
        request.set_timeout(CALL_SLACK);
        match self
            .client(coordinator)?
            .describe_share_group(request)
            .await
        {
            Ok(d) => Ok(Some(
                d.into_inner()
                    .partitions
                    .into_iter()
                    .map(|p| (p.topic, p.partition, p.start_offset))
                    .collect(),
            )),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(forwarded_error(coordinator, s)),
        }
    }

    async fn forward_reset(
        &self,
        coordinator: &Coordinator,
        group_id: &str,
        resets: Vec<StartReset>,
    ) -> Result<Vec<Result<i64, BrokerError>>, BrokerError> {
        let count = resets.len();
        let mut request = tonic::Request::new(pb::ResetShareGroupRequest {
            group_id: group_id.to_string(),
            partitions: resets.iter().map(crate::queues::pb_start_reset).collect(),
        });
        request.set_timeout(CALL_SLACK);
        let answer = self
            .client(coordinator)?
            .reset_share_group(request)
            .await
            .map_err(|s| forwarded_error(coordinator, s))?
            .into_inner();
        let mut results: Vec<Result<i64, BrokerError>> = answer
            .results
            .into_iter()
            .map(|r| match r.error {
                Some(e) => Err(partition_error(coordinator, e)),
                None => Ok(r.start_offset),
            })
            .collect();
        results.resize_with(count, || Err(short_answer(coordinator)));
        Ok(results)
    }

    async fn forward_delete(
        &self,
        coordinator: &Coordinator,
        group_id: &str,
        topics: Option<Vec<String>>,
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        let topics = topics.unwrap_or_default();
        let count = topics.len();
        let mut request = tonic::Request::new(pb::DeleteShareGroupRequest {
            group_id: group_id.to_string(),
            topics,
        });
        request.set_timeout(CALL_SLACK);
        let answer = self
            .client(coordinator)?
            .delete_share_group(request)
            .await
            .map_err(|s| forwarded_error(coordinator, s))?
            .into_inner();
        let mut results: Vec<Result<(), BrokerError>> = answer
            .results
            .into_iter()
            .map(|r| match r.error {
                Some(e) => Err(partition_error(coordinator, e)),
                None => Ok(()),
            })
            .collect();
        results.resize_with(count, || Err(short_answer(coordinator)));
        Ok(results)
    }
}

impl ShareForwarder for GrpcShareForwarder {
    fn starts<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
    ) -> ForwardFuture<'a, Option<Vec<(String, u32, i64)>>> {
        Box::pin(self.forward_starts(coordinator, group_id))
    }

    fn reset<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
        resets: Vec<StartReset>,
    ) -> ForwardFuture<'a, Vec<Result<i64, BrokerError>>> {
        Box::pin(self.forward_reset(coordinator, group_id, resets))
    }

    fn delete<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
        topics: Option<Vec<String>>,
    ) -> ForwardFuture<'a, Vec<Result<(), BrokerError>>> {
        Box::pin(self.forward_delete(coordinator, group_id, topics))
    }

    fn settings<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
    ) -> ForwardFuture<'a, Option<(GroupSettings, u64, u16)>> {
        Box::pin(self.forward_settings(coordinator, group_id))
    }

    fn configure<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
        settings: GroupSettings,
    ) -> ForwardFuture<'a, ()> {
        Box::pin(self.forward_configure(coordinator, group_id, settings))
    }

    fn fetch<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        fetch: ShareFetch,
    ) -> ForwardFuture<'a, ShareFetchAnswer> {
        Box::pin(self.forward_fetch(coordinator, fetch))
    }

    fn acknowledge<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
        member_id: &'a str,
        acks: Vec<AckRange>,
        leaving: bool,
    ) -> ForwardFuture<'a, Vec<AckResult>> {
        Box::pin(self.forward_acknowledge(coordinator, group_id, member_id, acks, leaving))
    }
}

fn share_ack(a: &AckRange) -> pb::ShareAck {
    let (kind, delay_ms) = match a.kind {
        AckKind::Accept => (pb::AckType::Accept, 0),
        AckKind::Release { delay_ms } => (pb::AckType::Release, delay_ms),
        AckKind::Reject => (pb::AckType::Reject, 0),
        AckKind::Renew => (pb::AckType::Renew, 0),
    };
    pb::ShareAck {
        topic: a.topic.clone(),
        partition: a.partition,
        first_offset: a.first,
        last_offset: a.last,
        r#type: kind as i32,
        delay_ms,
    }
}

/// The coordinator's per-entry outcomes laid back on the ranges sent, in order.
fn ack_results(ranges: Vec<AckRange>, results: Vec<pb::ShareAckResult>) -> Vec<AckResult> {
    let mut results = results.into_iter();
    ranges
        .into_iter()
        .map(|range| {
            let outcome = match results.next() {
                Some(pb::ShareAckResult { error: Some(e), .. }) => {
                    Err(ShareError::InvalidRequest(e.message))
                }
                Some(r) => Ok(r.not_held),
                None => Err(ShareError::InvalidRequest(
                    "the coordinator answered fewer acknowledgements than it was sent".into(),
                )),
            };
            AckResult { range, outcome }
        })
        .collect()
}

fn short_answer(coordinator: &Coordinator) -> BrokerError {
    BrokerError::new(
        Reason::Internal,
        format!(
            "the share coordinator, broker {}, answered fewer entries than it was sent",
            coordinator.node_id
        ),
    )
}

/// The reasons of Weir's list a forwarded share-group call is answered with where the
/// code alone does not tell them apart (GROUP_NOT_EMPTY and INVALID_REQUEST are both
/// FAILED_PRECONDITION or INVALID_ARGUMENT; UNKNOWN_GROUP and UNKNOWN_TOPIC both
/// NOT_FOUND).
fn named_reason(name: &str) -> Option<Reason> {
    Some(match name {
        "GROUP_NOT_EMPTY" => Reason::GroupNotEmpty,
        "UNKNOWN_GROUP" => Reason::UnknownGroup,
        "UNKNOWN_TOPIC" => Reason::UnknownTopic,
        "UNKNOWN_PARTITION" => Reason::UnknownPartition,
        "INVALID_GROUP_ID" => Reason::InvalidGroupId,
        "INVALID_REQUEST" => Reason::InvalidRequest,
        "COORDINATOR_LOADING" => Reason::CoordinatorLoading,
        _ => return None,
    })
}

/// A per-entry error of a forwarded call as the core's error.
fn partition_error(coordinator: &Coordinator, e: pb::PartitionError) -> BrokerError {
    remote_partition_error(
        &format!("the share coordinator, broker {}", coordinator.node_id),
        e,
    )
}

/// A per-entry error another broker answered (`who` names it) as the core's error, as
/// [`remote_error`] reads a whole call's.
pub(crate) fn remote_partition_error(who: &str, e: pb::PartitionError) -> BrokerError {
    let status = Status::new(Code::from_i32(e.code), e.message.clone());
    let mut err = remote_error(who, status);
    if let Some(reason) = named_reason(&e.reason) {
        err.reason = reason;
    }
    err
}

/// A failed forwarded call as the core's error: retriable where the coordinator was
/// unavailable (it moved, or is loading), the request's fault where it said so.
fn forwarded_error(coordinator: &Coordinator, status: Status) -> BrokerError {
    remote_error(
        &format!("the share coordinator, broker {}", coordinator.node_id),
        status,
    )
}

/// A failed call to another broker (`who` names it for the message) as the core's
/// error: the reason its ErrorInfo names where it names one of Weir's, else the one
/// its code means (UNAVAILABLE and the like retriable as an unavailable coordinator).
pub(crate) fn remote_error(who: &str, status: Status) -> BrokerError {
    use tonic_types::StatusExt;
    if let Some(reason) = status
        .get_details_error_info()
        .and_then(|info| named_reason(&info.reason))
    {
        return BrokerError::new(reason, format!("{who}: {}", status.message()));
    }
    let reason = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => Reason::InvalidRequest,
        Code::NotFound => Reason::UnknownTopic,
        Code::FailedPrecondition => Reason::StateConflict,
        Code::DeadlineExceeded => Reason::Timeout,
        Code::Unavailable | Code::Unknown | Code::Cancelled => Reason::CoordinatorNotAvailable,
        _ => Reason::Internal,
    };
    BrokerError::new(reason, format!("{who}: {}", status.message()))
}
