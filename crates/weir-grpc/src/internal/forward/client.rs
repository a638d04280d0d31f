//! The sending side of `Forward`: the core's forwarders over another broker's internal
//! listener.

use std::sync::Arc;
use std::time::Duration;

use tonic::Request;
use tonic::transport::Channel;
use weir_broker::groups::Coordinator;
use weir_broker::produce::{Acks, Appended, ForwardedProduce, ProduceForwarder};
use weir_broker::shares::{
    AckRange, AckResult, ForwardFuture, GroupSettings, ShareCounts, ShareFetch, ShareFetchAnswer,
    ShareForwarder, ShareRecord, ShareStart, StartReset, StartTarget,
};
use weir_broker::{BrokerError, Reason};
use weir_cluster::controller::records::Endpoints;
use weir_proto::internal::v1::forward_client::ForwardClient;
use weir_proto::internal::v1::{self as pb};
use weir_security::dial::TlsDialer;

use super::{ack_results, call_error, forwarded_ack, results};
use crate::internal::MAX_FORWARD_MESSAGE_BYTES;
use crate::internal::peers::PeerChannels;

/// How long a forwarded call may take beyond its own wait (a share fetch's long poll, a
/// produce's timeout): connecting, the way there and back.
const CALL_SLACK: Duration = Duration::from_secs(10);

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

    async fn share_counts(
        &self,
        coordinator: &Coordinator,
        group_id: &str,
    ) -> Result<Option<ShareCounts>, BrokerError> {
        let (mut client, who) = self.coordinator(coordinator)?;
        let request = pb::ForwardedShareGroup {
            group_id: group_id.to_owned(),
        };
        let answer = client
            .share_counts(timed(request, CALL_SLACK))
            .await
            .map_err(|s| call_error(&who, s, Reason::CoordinatorNotAvailable))?
            .into_inner();
        Ok(answer.counts.map(|c| ShareCounts {
            ready: c.ready,
            delayed: c.delayed,
            unacked: c.unacked,
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

    fn counts<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
    ) -> ForwardFuture<'a, Option<ShareCounts>> {
        Box::pin(self.share_counts(coordinator, group_id))
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
