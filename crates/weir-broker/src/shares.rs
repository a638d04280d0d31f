//! Share groups (queues; docs/queues.md) as every protocol's clients ask for them:
//! finding a share group's coordinator, share fetch (acknowledge, then acquire),
//! acknowledge, and describe. The rules and limits live in `weir_cluster::share`; this
//! module maps its errors to [`BrokerError`]s, once for every adapter.

use weir_cluster::share::{self, SHARE_STATE_TOPIC, ShareError};
pub use weir_cluster::share::{
    AckKind, AckRange, AckResult, GroupSettings, ShareFetch, ShareFetchAnswer, ShareGroupView,
    SharePartitionView, ShareRecord, ShareStart,
};

use crate::groups::{Coordinator, coordinator_at};
use crate::{Broker, BrokerError, Reason, RequestContext};

/// The coordinator of share group `group_id` as this broker's metadata says:
/// COORDINATOR_NOT_AVAILABLE while its `__share_group_state` partition has no leader (or
/// the topic is not created yet).
pub fn find_coordinator(
    broker: &Broker,
    _ctx: &RequestContext,
    group_id: &str,
) -> Result<Coordinator, BrokerError> {
    let found = share::find_share_coordinator(broker.registry(), group_id);
    coordinator_at(broker, "share group", group_id, SHARE_STATE_TOPIC, found)
}

/// Applies the fetch's acknowledgements, then acquires records for the member (long
/// poll). Per-entry acknowledgement errors are in the answer; the rest fail the request.
pub async fn fetch(
    broker: &Broker,
    _ctx: &RequestContext,
    fetch: ShareFetch,
) -> Result<ShareFetchAnswer, BrokerError> {
    Ok(broker.shares()?.fetch(fetch).await?)
}

/// Acknowledges records the member holds; answers once the outcome is durable.
pub async fn acknowledge(
    broker: &Broker,
    _ctx: &RequestContext,
    group_id: &str,
    member_id: &str,
    acks: Vec<AckRange>,
) -> Result<Vec<AckResult>, BrokerError> {
    Ok(broker
        .shares()?
        .acknowledge(group_id, member_id, acks)
        .await?)
}

/// Each share-partition of the group, with the settings it runs with.
pub async fn describe(
    broker: &Broker,
    _ctx: &RequestContext,
    group_id: &str,
) -> Result<ShareGroupView, BrokerError> {
    Ok(broker.shares()?.describe(group_id).await?)
}

/// Replaces what the group sets for itself; answers as [`describe`].
pub async fn configure(
    broker: &Broker,
    _ctx: &RequestContext,
    group_id: &str,
    settings: GroupSettings,
) -> Result<ShareGroupView, BrokerError> {
    Ok(broker.shares()?.configure(group_id, settings).await?)
}

impl From<ShareError> for BrokerError {
    fn from(err: ShareError) -> BrokerError {
        let (reason, partition) = match &err {
            ShareError::Cluster(inner) => return BrokerError::from(inner),
            ShareError::InvalidGroupId { .. } => (Reason::InvalidGroupId, None),
            ShareError::InvalidRequest(_) => (Reason::InvalidRequest, None),
            ShareError::UnknownGroup(_) => (Reason::UnknownGroup, None),
            ShareError::TooManyGroups { .. } => (Reason::TooMany, None),
            ShareError::NotCoordinator { coordinator, .. } => (
                Reason::NotCoordinator {
                    coordinator: (*coordinator).max(-1),
                },
                None,
            ),
            ShareError::CoordinatorLoading { .. } => (Reason::CoordinatorLoading, None),
            ShareError::CorruptRecord { .. } => (Reason::Internal, None),
            // A placement the coordinator cannot serve: not the request's fault, and no
            // retry helps until the topic has a replica on the coordinator.
            ShareError::NotHosted {
                topic, partition, ..
            } => (Reason::StateConflict, Some((topic.clone(), *partition))),
            ShareError::CorruptData {
                topic, partition, ..
            } => (
                Reason::CorruptData { batch: None },
                Some((topic.clone(), *partition)),
            ),
        };
        BrokerError {
            reason,
            message: err.to_string(),
            partition,
        }
    }
}
