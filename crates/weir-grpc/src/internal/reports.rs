//! Each broker's part of a cluster-wide answer (`weir.internal.v1.Reports`): the groups it
//! coordinates and its disk use, for the console's pages about the whole cluster, and
//! the offsets of partitions it hosts, for a group's lag at a coordinator that hosts
//! none of them.
//!
//! [`ReportsService`] answers with this broker's own report, whole
//! (`weir_broker::cluster_reports::local_groups`, `local_disk`, `local_offsets`);
//! [`GrpcPeerReports`] is
//! the core's [`PeerReports`]: it asks another broker's internal listener, and the core
//! merges the reports and applies its caller's ACLs. Only brokers reach it: on a secured
//! cluster the internal services answer only callers whose certificate names a super
//! user (`authn.rs`).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_broker::Broker;
use weir_broker::cluster_reports::{
    GroupsReport, PartitionEnds, PeerReports, ReportFuture, local_disk, local_groups, local_offsets,
};
use weir_broker::groups::{ClassicState, GroupProtocol, GroupState, GroupSummary};
use weir_broker::limits::MAX_PARTITIONS_PER_REQUEST;
use weir_broker::replicas::{BrokerDisk, TopicDisk};
use weir_broker::share_admin::{ShareGroupListing, ShareGroupState};
use weir_proto::internal::v1::reports_client::ReportsClient;
use weir_proto::internal::v1::reports_server::Reports;
use weir_proto::internal::v1::{self as pb};
use weir_security::dial::TlsDialer;

use super::MAX_REPORT_MESSAGE_BYTES;
use super::peers::PeerChannels;
use crate::status::internal::too_many_partitions;

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
}
