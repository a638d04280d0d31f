//! Each broker's part of a cluster-wide answer (`weir.internal.v1.Reports`): the groups it
//! coordinates and its disk use, for the console's pages about the whole cluster, and
//! the offsets of partitions it hosts, for a group's lag at a coordinator that hosts
//! none of them, and the description of groups it coordinates, for a console served by
//! another broker (a `GroupDescription` in its serde JSON form: a read-only view).
//!
//! [`ReportsService`] answers with this broker's own report, whole
//! (`weir_broker::cluster_reports::local_groups`, `local_disk`, `local_offsets`,
//! `local_descriptions`); [`GrpcPeerReports`] is
//! the core's [`PeerReports`]: it asks another broker's internal listener, and the core
//! merges the reports and applies its caller's ACLs. Only brokers reach it: on a secured
//! cluster the internal services answer only callers whose certificate names a super
//! user (`authn.rs`).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_broker::Broker;
use weir_broker::BrokerError;
use weir_broker::cluster_reports::{
    GroupsReport, PartitionEnds, PeerReports, ReportFuture, local_descriptions, local_disk,
    local_groups, local_offsets,
};
use weir_broker::groups::{
    ClassicState, GroupDescription, GroupProtocol, GroupState, GroupSummary,
};
use weir_broker::limits::{MAX_GROUPS_PER_REQUEST, MAX_PARTITIONS_PER_REQUEST};
use weir_broker::replicas::{BrokerDisk, TopicDisk};
use weir_broker::share_admin::{ShareGroupListing, ShareGroupState};
use weir_proto::internal::v1::reports_client::ReportsClient;
use weir_proto::internal::v1::reports_server::Reports;
use weir_proto::internal::v1::{self as pb};
use weir_security::dial::TlsDialer;

use super::MAX_REPORT_MESSAGE_BYTES;
use super::forward::{broker_error, core_error};
use super::peers::PeerChannels;
use crate::status::internal::{too_many_groups, too_many_partitions};

/// The leader's side: this broker's report.
#[derive(Debug)]
pub struct ReportsService {
    core: Arc<Broker>,
}

impl ReportsService {
    pub fn new(core: Arc<Broker>) -> ReportsService {
        ReportsService { core }
    }
}

#[tonic::async_trait]
impl Reports for ReportsService {
    async fn groups(
        &self,
        _request: Request<pb::GroupsReportRequest>,
    ) -> Result<Response<pb::GroupsReport>, Status> {
        let report = local_groups(&self.core).map_err(crate::status::broker_status)?;
        Ok(Response::new(pb::GroupsReport {
            consumer: report.consumer.into_iter().map(reported_group).collect(),
            share: report
                .share
                .into_iter()
                .map(|g| pb::ReportedShareGroup {
                    group_id: g.group_id,
                    members: g.members as u64,
                    has_state: g.has_state,
                })
                .collect(),
        }))
    }

    async fn disk(
        &self,
        _request: Request<pb::DiskReportRequest>,
    ) -> Result<Response<pb::DiskReport>, Status> {
        let disk = local_disk(&self.core).await;
        Ok(Response::new(pb::DiskReport {
            topics: disk
                .topics
                .into_iter()
                .map(|(topic, d)| pb::ReportedTopicDisk {
                    topic,
                    replicas: d.replicas as u64,
                    led: d.led as u64,
                    bytes: d.bytes,
                })
                .collect(),
        }))
    }

    async fn offsets(
        &self,
        request: Request<pb::OffsetsReportRequest>,
    ) -> Result<Response<pb::OffsetsReport>, Status> {
        let request = request.into_inner();
        let asked = request.partitions;
        if asked.len() > MAX_PARTITIONS_PER_REQUEST {
            return Err(too_many_partitions("an offsets report", asked.len()));
        }
        let asked: Vec<(String, u32)> = asked.into_iter().map(|p| (p.topic, p.partition)).collect();
        let ends = local_offsets(&self.core, &asked, request.timestamp).await;
        Ok(Response::new(pb::OffsetsReport {
            partitions: ends
                .into_iter()
                .map(|e| pb::ReportedOffsets {
                    topic: e.topic,
                    partition: e.partition,
                    log_start_offset: e.log_start_offset,
                    high_watermark: e.high_watermark,
                    at_timestamp: e.at_timestamp,
                })
                .collect(),
        }))
    }

    async fn describe_groups(
        &self,
        request: Request<pb::DescribeGroupsReportRequest>,
    ) -> Result<Response<pb::DescribedGroups>, Status> {
        let ids = request.into_inner().group_ids;
        if ids.len() > MAX_GROUPS_PER_REQUEST {
            return Err(too_many_groups("a group description report", ids.len()));
        }
        let groups = local_descriptions(&self.core, &ids)
            .await
            .into_iter()
            .map(|answer| match answer {
                Ok(d) => pb::DescribedGroup {
                    // A description is strings, numbers and enums: it always serialises.
                    description_json: serde_json::to_vec(&d).unwrap_or_default().into(),
                    error: None,
                },
                Err(e) => pb::DescribedGroup {
                    description_json: Default::default(),
                    error: Some(core_error(&e)),
                },
            })
            .collect();
        Ok(Response::new(pb::DescribedGroups { groups }))
    }
}

/// How the core asks other brokers for their reports: one lazily connected channel per
/// internal address.
#[derive(Debug)]
pub struct GrpcPeerReports {
    channels: PeerChannels,
}

impl GrpcPeerReports {
    /// Asks other brokers with `tls`, or in plaintext.
    pub fn new(tls: Option<TlsDialer>) -> GrpcPeerReports {
        GrpcPeerReports {
            channels: PeerChannels::new(tls),
        }
    }

    fn client(&self, address: &str) -> Result<ReportsClient<tonic::transport::Channel>, String> {
        let channel = self
            .channels
            .channel(address)
            .map_err(|e| format!("{address:?} is not an address: {e}"))?;
        Ok(ReportsClient::new(channel).max_decoding_message_size(MAX_REPORT_MESSAGE_BYTES))
    }
}

impl PeerReports for GrpcPeerReports {
    fn groups<'a>(&'a self, address: &'a str) -> ReportFuture<'a, GroupsReport> {
        Box::pin(async move {
            let report = self
                .client(address)?
                .groups(pb::GroupsReportRequest {})
                .await
                .map_err(|s| unanswered(address, &s))?
                .into_inner();
            Ok(GroupsReport {
                consumer: report.consumer.into_iter().map(group_summary).collect(),
                share: report
                    .share
                    .into_iter()
                    .map(|g| {
                        let members = count(g.members);
                        ShareGroupListing {
                            group_id: g.group_id,
                            state: ShareGroupState::of(members),
                            members,
                            has_state: g.has_state,
                        }
                    })
                    .collect(),
            })
        })
    }

    fn offsets<'a>(
        &'a self,
        address: &'a str,
        partitions: Vec<(String, u32)>,
        timestamp: Option<i64>,
    ) -> ReportFuture<'a, Vec<PartitionEnds>> {
        Box::pin(self.ask_offsets(address, partitions, timestamp))
    }

    fn describe_groups<'a>(
        &'a self,
        address: &'a str,
        group_ids: Vec<String>,
    ) -> ReportFuture<'a, Vec<Result<GroupDescription, BrokerError>>> {
        Box::pin(self.ask_descriptions(address, group_ids))
    }

    fn disk<'a>(&'a self, address: &'a str) -> ReportFuture<'a, BrokerDisk> {
        Box::pin(async move {
            let report = self
                .client(address)?
                .disk(pb::DiskReportRequest {})
                .await
                .map_err(|s| unanswered(address, &s))?
                .into_inner();
            Ok(BrokerDisk {
                topics: report
                    .topics
                    .into_iter()
                    .map(|t| {
                        let disk = TopicDisk {
                            replicas: count(t.replicas),
                            led: count(t.led),
                            bytes: t.bytes,
                        };
                        (t.topic, disk)
                    })
                    .collect(),
            })
        })
    }
}

impl GrpcPeerReports {
    async fn ask_descriptions(
        &self,
        address: &str,
        group_ids: Vec<String>,
    ) -> Result<Vec<Result<GroupDescription, BrokerError>>, String> {
        let asked = group_ids.len();
        let who = format!("the broker at {address}");
        let report = self
            .client(address)?
            .describe_groups(pb::DescribeGroupsReportRequest { group_ids })
            .await
            .map_err(|s| unanswered(address, &s))?
            .into_inner();
        if report.groups.len() != asked {
            return Err(format!(
                "{who} described {} groups of the {asked} asked",
                report.groups.len()
            ));
        }
        report
            .groups
            .into_iter()
            .map(|g| match g.error {
                Some(e) => Ok(Err(broker_error(&who, e))),
                None => serde_json::from_slice(&g.description_json)
                    .map(Ok)
                    .map_err(|e| format!("{who} sent a description this build cannot read: {e}")),
            })
            .collect()
    }

    async fn ask_offsets(
        &self,
        address: &str,
        partitions: Vec<(String, u32)>,
        timestamp: Option<i64>,
    ) -> Result<Vec<PartitionEnds>, String> {
        let request = pb::OffsetsReportRequest {
            partitions: partitions
                .into_iter()
                .map(|(topic, partition)| pb::ReportedPartition { topic, partition })
                .collect(),
            timestamp,
        };
        let report = self
            .client(address)?
            .offsets(request)
            .await
            .map_err(|s| unanswered(address, &s))?
            .into_inner();
        Ok(report
            .partitions
            .into_iter()
            .map(|p| PartitionEnds {
                topic: p.topic,
                partition: p.partition,
                log_start_offset: p.log_start_offset,
                high_watermark: p.high_watermark,
                at_timestamp: p.at_timestamp,
            })
            .collect())
    }
}

/// A count from the wire; one past this platform's range reads as its largest.
fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn unanswered(address: &str, status: &Status) -> String {
    match status.code() {
        tonic::Code::Unimplemented => {
            format!("the broker at {address} is of an older build without reports")
        }
        _ => format!(
            "the broker at {address} did not report: {}",
            status.message()
        ),
    }
}

fn reported_group(g: GroupSummary) -> pb::ReportedGroup {
    let state = match g.state {
        GroupState::Empty => pb::ReportedGroupState::Empty,
        GroupState::Assigning => pb::ReportedGroupState::Assigning,
        GroupState::Stable => pb::ReportedGroupState::Stable,
        GroupState::Dead => pb::ReportedGroupState::Dead,
    };
    let classic = match g.protocol {
        GroupProtocol::Consumer => None,
        GroupProtocol::Classic {
            state,
            protocol_type,
        } => Some(pb::ReportedClassic {
            state: match state {
                ClassicState::Empty => pb::ReportedClassicState::Empty,
                ClassicState::PreparingRebalance => pb::ReportedClassicState::PreparingRebalance,
                ClassicState::CompletingRebalance => pb::ReportedClassicState::CompletingRebalance,
                ClassicState::Stable => pb::ReportedClassicState::Stable,
            } as i32,
            protocol_type,
        }),
    };
    pb::ReportedGroup {
        group_id: g.group_id,
        state: state as i32,
        members: g.members as u64,
        classic,
    }
}

/// A reported group as the core lists it. A state this build does not know (a newer
/// one's) reads as the closest it has: assigning, or a classic group preparing a
/// rebalance.
fn group_summary(g: pb::ReportedGroup) -> GroupSummary {
    let state = match pb::ReportedGroupState::try_from(g.state) {
        Ok(pb::ReportedGroupState::Empty) => GroupState::Empty,
        Ok(pb::ReportedGroupState::Stable) => GroupState::Stable,
        Ok(pb::ReportedGroupState::Dead) => GroupState::Dead,
        Ok(pb::ReportedGroupState::Assigning | pb::ReportedGroupState::Unspecified) | Err(_) => {
            GroupState::Assigning
        }
    };
    let protocol = match g.classic {
        None => GroupProtocol::Consumer,
        Some(c) => GroupProtocol::Classic {
            state: match pb::ReportedClassicState::try_from(c.state) {
                Ok(pb::ReportedClassicState::Empty) => ClassicState::Empty,
                Ok(pb::ReportedClassicState::CompletingRebalance) => {
                    ClassicState::CompletingRebalance
                }
                Ok(pb::ReportedClassicState::Stable) => ClassicState::Stable,
                Ok(
                    pb::ReportedClassicState::PreparingRebalance
                    | pb::ReportedClassicState::Unspecified,
                )
                | Err(_) => ClassicState::PreparingRebalance,
            },
            protocol_type: c.protocol_type,
        },
    };
    GroupSummary {
        group_id: g.group_id,
        state,
        members: count(g.members),
        protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_state_and_protocol_survives_the_wire() {
        let states = [
            GroupState::Empty,
            GroupState::Assigning,
            GroupState::Stable,
            GroupState::Dead,
        ];
        let classic = [
            ClassicState::Empty,
            ClassicState::PreparingRebalance,
            ClassicState::CompletingRebalance,
            ClassicState::Stable,
        ];
        let protocols = std::iter::once(GroupProtocol::Consumer).chain(classic.map(|state| {
            GroupProtocol::Classic {
                state,
                protocol_type: "consumer".into(),
            }
        }));
        for (i, protocol) in protocols.enumerate() {
            for state in states {
                let group = GroupSummary {
                    group_id: format!("g{i}"),
                    state,
                    members: i,
                    protocol: protocol.clone(),
                };
                assert_eq!(group_summary(reported_group(group.clone())), group);
            }
        }
    }

    /// A classic group's description crosses whole, its members' metadata and
    /// assignment bytes (not UTF-8) included.
    #[test]
    fn a_classic_group_description_survives_the_wire() {
        use std::time::Duration;
        use weir_broker::groups::{
            ClassicDescription, ClassicMemberDescription, PartitionProgress,
        };
        use weir_cluster::group::MemberDescription;
        let described = GroupDescription {
            group_id: "billing".into(),
            state: GroupState::Stable,
            group_epoch: 3,
            assignor: "range".into(),
            members: vec![MemberDescription {
                member_id: "m-1".into(),
                client_id: "rdkafka".into(),
                client_host: "/127.0.0.1".into(),
                member_epoch: 3,
                subscribed_topics: vec!["orders".into()],
                subscribed_topic_regex: None,
                assignment: [("orders".to_owned(), vec![0, 2])].into(),
                pending_revocation: Default::default(),
                target_assignment: [("orders".to_owned(), vec![0, 2])].into(),
                since_heartbeat: Duration::from_millis(1500),
                session_timeout: Duration::from_secs(45),
                heartbeat_interval: Duration::from_secs(3),
            }],
            offsets: vec![PartitionProgress {
                topic: "orders".into(),
                partition: 0,
                committed_offset: Some(41),
                high_watermark: Some(50),
                lag: Some(9),
                member_id: Some("m-1".into()),
            }],
            coordinator_partition: 7,
            protocol: GroupProtocol::Classic {
                state: ClassicState::Stable,
                protocol_type: "consumer".into(),
            },
            classic: Some(ClassicDescription {
                state: ClassicState::Stable,
                generation: 3,
                protocol_type: "consumer".into(),
                protocol_name: "range".into(),
                leader: Some("m-1".into()),
                members: vec![ClassicMemberDescription {
                    member_id: "m-1".into(),
                    client_id: "rdkafka".into(),
                    client_host: "/127.0.0.1".into(),
                    group_instance_id: None,
                    metadata: bytes::Bytes::from_static(&[0, 3, 0xff, 0xfe, 0]),
                    assignment: bytes::Bytes::from_static(&[0x80, 0, 1]),
                    session_timeout: Duration::from_secs(45),
                    session_remaining: Duration::from_millis(43_500),
                }],
            }),
        };
        let json = serde_json::to_vec(&described).unwrap();
        let read: GroupDescription = serde_json::from_slice(&json).unwrap();
        assert_eq!(read, described);
    }
}
