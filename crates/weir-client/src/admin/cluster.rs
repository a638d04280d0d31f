//! The cluster as `DescribeCluster` reports it: its brokers and active controller.

use weir_proto::v1 as pb;

use super::Admin;
use crate::error::ClientError;

/// One broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Broker id.
    pub broker_id: i32,
    /// Host clients connect to (the address the broker advertises).
    pub host: String,
    /// gRPC port.
    pub port: u32,
    /// The broker's rack, if it was given one.
    pub rack: Option<String>,
    /// Registered but not allowed to lead or be in an ISR (it missed its session, or is
    /// catching up after a start).
    pub fenced: bool,
    /// A controller voter; false for an observer broker.
    pub voter: bool,
}

/// The cluster as `DescribeCluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Cluster id.
    pub cluster_id: String,
    /// Broker id of the active controller; -1 while none is elected.
    pub controller_id: i32,
    /// Every registered broker, fenced ones included.
    pub brokers: Vec<BrokerInfo>,
}

impl Admin {
    /// The brokers of the cluster and its controller.
    pub async fn describe_cluster(&self) -> Result<ClusterInfo, ClientError> {
        let response = self
            .admin
            .clone()
            .describe_cluster(pb::DescribeClusterRequest {})
            .await?
            .into_inner();
        Ok(ClusterInfo {
            cluster_id: response.cluster_id,
            controller_id: response.controller_id,
            brokers: response
                .brokers
                .into_iter()
                .map(|b| BrokerInfo {
                    broker_id: b.broker_id,
                    host: b.host,
                    port: b.port,
                    rack: (!b.rack.is_empty()).then_some(b.rack),
                    fenced: b.fenced,
                    voter: b.voter,
                })
                .collect(),
        })
    }
}
