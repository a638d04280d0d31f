//! Share groups (queues; docs/queues.md) as every protocol's clients ask for them:
//! finding a share group's coordinator, share fetch (acknowledge, then acquire),
//! acknowledge, and describe. The rules and limits live in `weir_cluster::share`; this
//! module maps its errors to [`BrokerError`]s, once for every adapter.
//!
//! gRPC clients send share fetches to the group's coordinator themselves. Kafka's share
//! consumers send each partition's fetch to its leader instead; [`fetch_anywhere`] and
//! [`acknowledge_anywhere`] serve those at any broker, forwarding to the coordinator
//! through the [`ShareForwarder`] the server provides when it is another broker.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use weir_cluster::security::Operation;

use weir_cluster::share::{self, SHARE_STATE_TOPIC, ShareError};
pub use weir_cluster::share::{
    AckKind, AckRange, FilterError, GroupSettings, HeaderCondition, HeaderFilter, HeaderMatch,
    MAX_SHARE_FETCH_RECORDS, ShareFetch, ShareGroupView, SharePartitionView, ShareRecord,
    ShareStart, StartReset, StartTarget,
};
/// The headers of dead-letter copies and the expiry header, which the AMQP adapter reads
/// (`x-death`) and writes (`expiration`).
pub use weir_cluster::share::{
    DLQ_DELIVERY_COUNT, DLQ_EXCHANGE, DLQ_GROUP, DLQ_ORIGINAL_EXPIRATION, DLQ_REASON,
    DLQ_ROUTING_KEY, DLQ_SOURCE_TOPIC, DLQ_TIME, EXPIRE_AT_HEADER, MAX_DELIVERY_COUNT_LIMIT,
    MAX_LENGTH, MAX_MESSAGE_TTL_MS,
};

use crate::groups::{Coordinator, coordinator_at};
use crate::{Broker, BrokerError, Reason, RequestContext};

/// What became of one acknowledgement range.
#[derive(Debug)]
pub struct AckResult {
    pub range: AckRange,
    /// The offsets the member did not hold (the rest were applied), or why the whole
    /// range was refused (nothing in it applied).
    pub outcome: Result<Vec<i64>, BrokerError>,
}

/// The answer to a share fetch.
#[derive(Debug)]
pub struct ShareFetchAnswer {
    pub ack_results: Vec<AckResult>,
    pub records: Vec<ShareRecord>,
    /// How long the group locks an acquired record.
    pub lock_duration_ms: u64,
}

/// The coordinator's outcomes with its errors as the core's.
fn ack_results(results: Vec<share::AckResult>) -> Vec<AckResult> {
    results
        .into_iter()
        .map(|r| AckResult {
            range: r.range,
            outcome: r.outcome.map_err(BrokerError::from),
        })
        .collect()
}

/// The coordinator of share group `group_id` as this broker's metadata says:
/// COORDINATOR_NOT_AVAILABLE while its `__share_group_state` partition has no leader (or
/// the topic is not created yet).
pub fn find_coordinator(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<Coordinator, BrokerError> {
    broker.authorize_group(ctx, Operation::Describe, group_id)?;
    let found = share::find_share_coordinator(broker.registry(), group_id);
    coordinator_at(broker, "share group", group_id, SHARE_STATE_TOPIC, found)
}

/// Applies the fetch's acknowledgements, then acquires records for the member (long
/// poll). Per-entry acknowledgement errors are in the answer; the rest fail the request.
pub async fn fetch(
    broker: &Broker,
    ctx: &RequestContext,
    fetch: ShareFetch,
) -> Result<ShareFetchAnswer, BrokerError> {
    authorize_fetch(broker, ctx, &fetch)?;
    let answer = broker.shares()?.fetch(fetch).await?;
    Ok(ShareFetchAnswer {
        ack_results: ack_results(answer.ack_results),
        records: answer.records,
        lock_duration_ms: answer.lock_duration_ms,
    })
}

/// Acknowledges records the member holds; `leaving`, then gives back every record it
/// still holds. Answers once the outcome is durable.
pub async fn acknowledge(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    member_id: &str,
    acks: Vec<AckRange>,
    leaving: bool,
) -> Result<Vec<AckResult>, BrokerError> {
    broker.authorize_group(ctx, Operation::Read, group_id)?;
    let results = broker
        .shares()?
        .acknowledge(group_id, member_id, acks, leaving)
        .await?;
    Ok(ack_results(results))
}

/// A boxed future of a forwarded call.
pub type ForwardFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send + 'a>>;

/// Carries a share fetch or acknowledgement to the group's coordinator on another
/// broker (the server implements it over the coordinator's internal listener).
pub trait ShareForwarder: Send + Sync + Debug {
    fn fetch<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        fetch: ShareFetch,
    ) -> ForwardFuture<'a, ShareFetchAnswer>;

    fn acknowledge<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
        member_id: &'a str,
        acks: Vec<AckRange>,
        leaving: bool,
    ) -> ForwardFuture<'a, Vec<AckResult>>;

    /// The group's settings as it sets them (what it leaves to the broker's defaults
    /// unset), with the lock duration and delivery limit it runs with; `None` for a group
    /// without state.
    fn settings<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
    ) -> ForwardFuture<'a, Option<(GroupSettings, u64, u16)>>;

    /// Replaces the group's settings, keeping its header filter.
    fn configure<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
        settings: GroupSettings,
    ) -> ForwardFuture<'a, ()>;

    /// The start of each share-partition of the group; `None` for a group without state.
    fn starts<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
    ) -> ForwardFuture<'a, Option<Vec<(String, u32, i64)>>>;

    /// [`counts`] at the coordinator.
    fn counts<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
    ) -> ForwardFuture<'a, Option<ShareCounts>>;

    /// [`reset_starts`] at the coordinator.
    fn reset<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
        resets: Vec<StartReset>,
    ) -> ForwardFuture<'a, Vec<Result<i64, BrokerError>>>;

    /// [`delete`] at the coordinator.
    fn delete<'a>(
        &'a self,
        coordinator: &'a Coordinator,
        group_id: &'a str,
        topics: Option<Vec<String>>,
    ) -> ForwardFuture<'a, Vec<Result<(), BrokerError>>>;
}

/// [`fetch`] at whichever broker coordinates the group: here, or forwarded to it.
pub async fn fetch_anywhere(
    broker: &Broker,
    ctx: &RequestContext,
    share_fetch: ShareFetch,
) -> Result<ShareFetchAnswer, BrokerError> {
    authorize_fetch(broker, ctx, &share_fetch)?;
    let coordinator = find_coordinator(broker, ctx, &share_fetch.group_id)?;
    if coordinator.node_id == broker.node_id() {
        return fetch(broker, ctx, share_fetch).await;
    }
    broker
        .share_forwarder()?
        .fetch(&coordinator, share_fetch)
        .await
}

/// [`acknowledge`] at whichever broker coordinates the group: here, or forwarded to it.
pub async fn acknowledge_anywhere(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    member_id: &str,
    acks: Vec<AckRange>,
    leaving: bool,
) -> Result<Vec<AckResult>, BrokerError> {
    broker.authorize_group(ctx, Operation::Read, group_id)?;
    let coordinator = find_coordinator(broker, ctx, group_id)?;
    if coordinator.node_id == broker.node_id() {
        return acknowledge(broker, ctx, group_id, member_id, acks, leaving).await;
    }
    broker
        .share_forwarder()?
        .acknowledge(&coordinator, group_id, member_id, acks, leaving)
        .await
}

/// Each share-partition of the group, with the settings it runs with.
pub async fn describe(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<ShareGroupView, BrokerError> {
    broker.authorize_group(ctx, Operation::Describe, group_id)?;
    Ok(broker.shares()?.describe(group_id).await?)
}

/// A share group's records as RabbitMQ's management page counts a queue's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShareCounts {
    /// Not held by a member: in the log past the windows, available, or delayed.
    pub ready: u64,
    /// Of `ready`, those delayed (a delivery time to come, or a release's delay).
    pub delayed: u64,
    /// Held by members, not yet acknowledged (acquired).
    pub unacked: u64,
}

impl ShareCounts {
    /// The counts of `view`'s share-partitions together. A partition this broker hosts
    /// no replica of has no high watermark here: what its window has not read yet is not
    /// counted.
    pub fn of(view: &ShareGroupView) -> ShareCounts {
        let mut counts = ShareCounts::default();
        for p in &view.partitions {
            let unread = u64::try_from(p.high_watermark - p.end).unwrap_or(0);
            counts.ready += unread + p.counts.available as u64 + p.counts.delayed as u64;
            counts.delayed += p.counts.delayed as u64;
            counts.unacked += p.counts.acquired as u64;
        }
        counts
    }
}

/// The group's [`ShareCounts`] at this broker, its share coordinator (Describe on the
/// group); `None` for a group without state (nothing fetched or attached yet).
pub async fn counts(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<Option<ShareCounts>, BrokerError> {
    broker.authorize_group(ctx, Operation::Describe, group_id)?;
    local_counts(broker, group_id).await
}

/// [`counts`] at whichever broker coordinates the group: here, or forwarded to it.
pub async fn counts_anywhere(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<Option<ShareCounts>, BrokerError> {
    let coordinator = find_coordinator(broker, ctx, group_id)?;
    if coordinator.node_id == broker.node_id() {
        return counts(broker, ctx, group_id).await;
    }
    broker
        .share_forwarder()?
        .counts(&coordinator, group_id)
        .await
}

async fn local_counts(broker: &Broker, group_id: &str) -> Result<Option<ShareCounts>, BrokerError> {
    match broker.shares()?.describe(group_id).await {
        Ok(view) => Ok(Some(ShareCounts::of(&view))),
        Err(ShareError::UnknownGroup(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The ready records of the group (available, delayed, or in the log past its windows;
/// not those its members hold): what an AMQP queue's `x-max-length` bounds, as RabbitMQ
/// counts ready messages only. `None` for a group without state (nothing fetched or
/// attached yet). No authorisation: the broker's own check of a publish into the group's
/// topic, which the publish's Write on it allowed.
pub async fn ready_count(broker: &Broker, group_id: &str) -> Result<Option<u64>, BrokerError> {
    Ok(local_counts(broker, group_id).await?.map(|c| c.ready))
}

/// The group's settings as it sets them, with the lock duration and delivery limit it
/// runs with, at its share coordinator (here); `None` for a group without state.
pub async fn settings(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<Option<(GroupSettings, u64, u16)>, BrokerError> {
    broker.authorize_group(ctx, Operation::Describe, group_id)?;
    match broker.shares()?.describe(group_id).await {
        Ok(view) => Ok(Some((
            view.settings,
            view.config.lock_duration_ms,
            view.config.delivery_count_limit,
        ))),
        Err(ShareError::UnknownGroup(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Replaces what the group sets for itself (with `keep_filter`, all but its header
/// filter); answers as [`describe`].
pub async fn configure(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    settings: GroupSettings,
    keep_filter: bool,
) -> Result<ShareGroupView, BrokerError> {
    broker.authorize_group(ctx, Operation::AlterConfigs, group_id)?;
    Ok(broker
        .shares()?
        .configure(group_id, settings, keep_filter)
        .await?)
}

/// Makes the group read every partition of `topic` from now on, before any member
/// fetches, so records expire and are dead-lettered while nobody reads them (an AMQP
/// queue with a TTL): AlterConfigs on the group, Read on the topic.
pub async fn attach(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    topic: &str,
) -> Result<(), BrokerError> {
    broker.authorize_group(ctx, Operation::AlterConfigs, group_id)?;
    broker.authorize_topic(ctx, Operation::Read, topic)?;
    Ok(broker.shares()?.attach(group_id, topic).await?)
}

/// The start of each share-partition of the group, at its share coordinator (here);
/// `None` for a group without state.
pub async fn starts(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<Option<Vec<(String, u32, i64)>>, BrokerError> {
    broker.authorize_group(ctx, Operation::Describe, group_id)?;
    match broker.shares()?.describe(group_id).await {
        Ok(view) => Ok(Some(
            view.partitions
                .into_iter()
                .map(|p| (p.topic, p.partition, p.start))
                .collect(),
        )),
        Err(ShareError::UnknownGroup(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// [`starts`] at whichever broker is the group's share coordinator.
pub async fn starts_anywhere(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<Option<Vec<(String, u32, i64)>>, BrokerError> {
    broker.authorize_group(ctx, Operation::Describe, group_id)?;
    let coordinator = find_coordinator(broker, ctx, group_id)?;
    if coordinator.node_id == broker.node_id() {
        return starts(broker, ctx, group_id).await;
    }
    broker
        .share_forwarder()?
        .starts(&coordinator, group_id)
        .await
}

/// Moves the start of share-partitions of the group, at its share coordinator (here),
/// discarding their in-flight windows; GROUP_NOT_EMPTY while it has members this broker
/// knows or a record is held under a lock. One answer (the new start) per entry.
pub async fn reset_starts(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    resets: Vec<StartReset>,
) -> Result<Vec<Result<i64, BrokerError>>, BrokerError> {
    broker.authorize_group(ctx, Operation::Read, group_id)?;
    broker
        .share_members()
        .check_empty(group_id, std::time::Instant::now())?;
    Ok(broker
        .shares()?
        .reset_starts(group_id, resets)
        .await?
        .into_iter()
        .map(|r| r.map_err(BrokerError::from))
        .collect())
}

/// [`reset_starts`] at whichever broker is the group's share coordinator.
pub async fn reset_anywhere(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    resets: Vec<StartReset>,
) -> Result<Vec<Result<i64, BrokerError>>, BrokerError> {
    broker.authorize_group(ctx, Operation::Read, group_id)?;
    let coordinator = find_coordinator(broker, ctx, group_id)?;
    if coordinator.node_id == broker.node_id() {
        return reset_starts(broker, ctx, group_id, resets).await;
    }
    broker
        .share_forwarder()?
        .reset(&coordinator, group_id, resets)
        .await
}

/// Deletes the group's state at its share coordinator (here): of the topics named (one
/// answer each), or all of it and its settings (`None`; no answers). UNKNOWN_GROUP for a
/// group without state; GROUP_NOT_EMPTY as [`reset_starts`].
pub async fn delete(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    topics: Option<Vec<String>>,
) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
    broker.authorize_group(ctx, Operation::Delete, group_id)?;
    broker
        .share_members()
        .check_empty(group_id, std::time::Instant::now())?;
    let coordinator = broker.shares()?;
    match topics {
        None => {
            coordinator.delete_group(group_id).await?;
            Ok(Vec::new())
        }
        Some(topics) => Ok(coordinator
            .delete_topics(group_id, &topics)
            .await?
            .into_iter()
            .map(|r| r.map_err(BrokerError::from))
            .collect()),
    }
}

/// [`delete`] at whichever broker is the group's share coordinator.
pub async fn delete_anywhere(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    topics: Option<Vec<String>>,
) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
    broker.authorize_group(ctx, Operation::Delete, group_id)?;
    let coordinator = find_coordinator(broker, ctx, group_id)?;
    if coordinator.node_id == broker.node_id() {
        return delete(broker, ctx, group_id, topics).await;
    }
    broker
        .share_forwarder()?
        .delete(&coordinator, group_id, topics)
        .await
}

impl From<ShareError> for BrokerError {
    fn from(err: ShareError) -> BrokerError {
        let (reason, partition) = match &err {
            ShareError::Cluster(inner) => return BrokerError::from(inner),
            ShareError::InvalidGroupId { .. } => (Reason::InvalidGroupId, None),
            ShareError::InvalidRequest(_) => (Reason::InvalidRequest, None),
            ShareError::UnknownGroup(_) => (Reason::UnknownGroup, None),
            ShareError::TooManyGroups { .. } => (Reason::TooMany, None),
            ShareError::GroupNotEmpty { .. } => (Reason::GroupNotEmpty, None),
            ShareError::NotCoordinator { coordinator, .. } => (
                Reason::NotCoordinator {
                    coordinator: (*coordinator).max(-1),
                },
                None,
            ),
            ShareError::CoordinatorLoading { .. } => (Reason::CoordinatorLoading, None),
            ShareError::CorruptRecord { .. } => (Reason::Internal, None),
            // A coordinator without a way to read partitions at their leaders (a server
            // that sets no remote log): not the request's fault, and no retry helps.
            ShareError::NotHosted {
                topic, partition, ..
            } => (Reason::StateConflict, Some((topic.clone(), *partition))),
            // The partition's leader could not be read just now (moving, or unreachable):
            // the coordinator cannot serve the group for the moment; the client retries.
            ShareError::RemoteRead {
                topic, partition, ..
            } => (
                Reason::CoordinatorNotAvailable,
                Some((topic.clone(), *partition)),
            ),
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
            refused_records: None,
        }
    }
}

/// A share fetch reads as its group and reads each of its topics (Kafka: Read on both).
fn authorize_fetch(
    broker: &Broker,
    ctx: &RequestContext,
    fetch: &ShareFetch,
) -> Result<(), BrokerError> {
    broker.authorize_group(ctx, Operation::Read, &fetch.group_id)?;
    for topic in &fetch.topics {
        broker.authorize_topic(ctx, Operation::Read, topic)?;
    }
    Ok(())
}
