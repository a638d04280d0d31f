//! [`Admin`]: one method per RPC of the `Admin` service, plus [`Admin::list_offsets`]
//! from the `Consumer` service and [`Admin::describe_share_group`] and
//! [`Admin::configure_share_group`] from the `Queues` service, with plain Rust types in
//! and out (users' and ACLs' in [`crate::security`]).
//!
//! Admin requests go to the bootstrap broker (the first of the list that answered);
//! group requests to the group's coordinator (a share group's for share groups); offset
//! lookups go to each partition's leader.
//!
//! Here: [`Admin`] itself, connecting, and the retry loop that follows a group's
//! coordinator. The calls are in one file per family, each with the types it takes and
//! answers (all re-exported here, so `weir_client::admin::TopicInfo` and
//! `weir_client::TopicInfo` stay the paths): `topics` (topics and their configs),
//! `partitions` (reassignment, DeleteRecords, ListOffsets), `cluster`
//! (DescribeCluster), `groups` (consumer groups), `share_groups` (share groups, at
//! their share coordinator) and `security` (users, ACLs, quotas).

mod cluster;
mod groups;
mod partitions;
mod security;
mod share_groups;
mod topics;

use std::future::Future;
use std::time::Duration;

use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::groups_client::GroupsClient;

use crate::cluster::Cluster;
use crate::connection::BrokerChannel as Channel;
use crate::connection::{ConnectOptions, MAX_MESSAGE_BYTES, Timeouts};
use crate::consumer::reconnect_backoff;
use crate::error::ClientError;

pub use cluster::{BrokerInfo, ClusterInfo};
pub use groups::{
    GroupInfo, GroupListing, GroupMemberInfo, GroupPartitionLag, GroupState, OffsetResetPlan,
    PartitionOffsetReset, ResetOffsetsTo,
};
pub(crate) use partitions::list_offsets;
pub use partitions::{ListedOffset, OffsetQuery, PartitionMove};
pub use share_groups::{
    ShareGroupInfo, ShareGroupListing, ShareGroupSettings, SharePartitionInfo, ShareResetTo,
    ShareStartReset,
};
pub use topics::{ConfigEntry, PartitionInfo, TopicInfo, TopicListing};

/// Items asked for per page of `ListTopics`, `ListGroups` and `DescribeGroup`'s
/// members: the broker's largest page (it clamps larger sizes), so that listing
/// everything takes as few round trips as the broker allows.
pub const LISTING_PAGE_SIZE: u32 = 1000;
/// Longest a group call (describe, delete, reset) keeps looking for the group's
/// coordinator while it moves.
pub const GROUP_ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait before such a call is tried again.
const GROUP_ADMIN_BACKOFF: Duration = Duration::from_millis(100);

fn admin_client(channel: Channel) -> AdminClient<Channel> {
    AdminClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A client for topic and group management and cluster description.
///
/// Cheap to clone: clones share the connections.
#[derive(Debug, Clone)]
pub struct Admin {
    pub(crate) admin: AdminClient<Channel>,
    cluster: Cluster,
}

impl Admin {
    /// Connects to the first reachable broker of `brokers` (`host:port` or
    /// `http://host:port`, entries may be comma-separated lists; empty means
    /// [`crate::connection::DEFAULT_BROKER`]).
    pub async fn connect(brokers: &[String]) -> Result<Admin, ClientError> {
        Admin::connect_with_timeouts(brokers, Timeouts::default()).await
    }

    /// [`Admin::connect`] with other [`Timeouts`] than the defaults.
    pub async fn connect_with_timeouts(
        brokers: &[String],
        timeouts: Timeouts,
    ) -> Result<Admin, ClientError> {
        Admin::connect_with(brokers, timeouts.into()).await
    }

    /// [`Admin::connect`] with other [`ConnectOptions`] (timeouts, TLS) than the
    /// defaults.
    pub async fn connect_with(
        brokers: &[String],
        options: ConnectOptions,
    ) -> Result<Admin, ClientError> {
        Ok(Admin::with_cluster(
            Cluster::connect(brokers, options).await?,
        ))
    }

    /// An admin client over an existing channel (offset lookups route to leaders from
    /// there).
    pub fn from_channel(channel: Channel) -> Admin {
        Admin::with_cluster(Cluster::from_channel(channel))
    }

    /// Runs `call` against the Admin service of the broker coordinating `group_id`
    /// (found with FindCoordinator on the bootstrap broker), finding it again and
    /// retrying while it moves or is elected, for at most [`GROUP_ADMIN_TIMEOUT`].
    async fn on_coordinator<T, F, Fut>(&self, group_id: &str, call: F) -> Result<T, ClientError>
    where
        F: Fn(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        self.on_coordinator_of(group_id, pb::CoordinatorType::Group, |channel| {
            call(admin_client(channel))
        })
        .await
    }

    /// Runs `call` on the connection to the broker coordinating `group_id` as a group of
    /// `kind` (a consumer group's coordinator or a share group's), finding it again and
    /// retrying while it moves or is elected, for at most [`GROUP_ADMIN_TIMEOUT`].
    async fn on_coordinator_of<T, F, Fut>(
        &self,
        group_id: &str,
        kind: pb::CoordinatorType,
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + GROUP_ADMIN_TIMEOUT;
        let mut failures = 0;
        loop {
            let attempt = async {
                let found = GroupsClient::new(self.cluster.bootstrap())
                    .find_coordinator(pb::FindCoordinatorRequest {
                        group_id: group_id.to_owned(),
                        r#type: kind.into(),
                    })
                    .await?
                    .into_inner();
                let channel = match self.cluster.channel(found.broker_id) {
                    Ok(channel) => channel,
                    // A broker this client has not heard of yet.
                    Err(_) => {
                        self.cluster.refresh(&[]).await?;
                        self.cluster.channel(found.broker_id)?
                    }
                };
                call(channel).await.map_err(ClientError::from)
            }
            .await;
            match attempt {
                Err(error) if error.is_retriable() && tokio::time::Instant::now() < deadline => {
                    failures += 1;
                    tokio::time::sleep(
                        reconnect_backoff(GROUP_ADMIN_BACKOFF, failures)
                            .min(crate::group::MAX_COORDINATOR_RETRY_BACKOFF),
                    )
                    .await;
                }
                other => return other,
            }
        }
    }

    pub(crate) fn with_cluster(cluster: Cluster) -> Admin {
        Admin {
            admin: AdminClient::new(cluster.bootstrap())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            cluster,
        }
    }
}
