//! Share groups (queues) at their share coordinator (`Queues` service): described,
//! listed (every broker asked), configured, their start reset, deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_proto::v1 as pb;
use weir_proto::v1::queues_client::QueuesClient;

use super::Admin;
use crate::connection::{BrokerChannel as Channel, MAX_MESSAGE_BYTES};
use crate::error::ClientError;
use crate::share::filter::HeaderCondition;

/// One share group in a listing ([`Admin::list_share_groups`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupListing {
    /// Group id.
    pub group_id: String,
    /// Kafka share consumers in it (ShareGroupHeartbeat members; gRPC members do not join
    /// and are not counted).
    pub members: u32,
}

/// Where [`Admin::reset_share_group`] moves a share group's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareResetTo {
    /// This offset (below the log start: the log start; past the high watermark:
    /// refused for that partition).
    Offset(i64),
    /// Each partition's log start.
    Earliest,
    /// Each partition's high watermark.
    Latest,
}

/// One share-partition's answer to [`Admin::reset_share_group`].
#[derive(Debug, Clone)]
pub struct ShareStartReset {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// The new start, or why this partition was refused.
    pub result: Result<i64, ClientError>,
}

/// A share group (a queue) as `Queues.DescribeShareGroup` reports it: the coordinator's
/// settings for the group and each share-partition's in-flight window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupInfo {
    /// Group id.
    pub group_id: String,
    /// How long a member holds a record it acquired before it goes to another member
    /// (`share.record.lock.duration.ms`).
    pub lock_duration: Duration,
    /// Deliveries after which a record is archived (dead-lettered) instead of delivered
    /// again (`share.delivery.count.limit`).
    pub delivery_count_limit: u32,
    /// Where archived records are copied (with `weir-dlq-*` headers); `None`: nowhere,
    /// they are dropped.
    pub dead_letter_topic: Option<String>,
    /// The group's header filter: conditions on record headers that must all hold for a
    /// record to be delivered. Empty: no filter.
    pub filter: Vec<HeaderCondition>,
    /// Where the group starts on a partition it has no state for, when it sets it.
    pub start: Option<crate::share::ShareStart>,
    /// By topic, then partition.
    pub partitions: Vec<SharePartitionInfo>,
}

/// What a share group sets for itself ([`Admin::configure_share_group`]). Every setting
/// is replaced: `None` takes the broker's default (for the dead-letter topic: none);
/// except the filter, where `None` keeps the group's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareGroupSettings {
    /// How long a member holds a record it acquired (1 ms to 7 days).
    pub lock_duration: Option<Duration>,
    /// Deliveries after which a record is archived (1 to 10,000).
    pub delivery_count_limit: Option<u32>,
    /// An existing topic archived records are copied to.
    pub dead_letter_topic: Option<String>,
    /// The group's header filter (docs/queues.md § Filters): records that do not match
    /// every condition are never delivered, and finished. `None` keeps the filter the
    /// group has; `Some` replaces it, and `Some(vec![])` removes it. At most 16
    /// conditions, 32 values in an any-of; [`ClientError::InvalidArgument`] beyond.
    pub filter: Option<Vec<HeaderCondition>>,
    /// Where the group starts on a partition it has no state for (Kafka's
    /// `share.auto.offset.reset`): set, it wins over each consumer's
    /// [`ShareConsumerConfig::start`](crate::ShareConsumerConfig); `None`, each consumer's
    /// own decides.
    pub start: Option<crate::share::ShareStart>,
}

/// One share-partition's in-flight window: the offsets `start_offset..end_offset` the
/// group is working on, counted by state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartitionInfo {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// Every offset below is finished (accepted or archived).
    pub start_offset: i64,
    /// No offset at or above has been taken into the window yet.
    pub end_offset: i64,
    /// The partition's high watermark: `end_offset` up to here waits to enter the window.
    pub high_watermark: i64,
    /// Records that may be delivered now.
    pub available: u64,
    /// Records released with a delay (or produced with `weir-deliver-at`), not due yet.
    pub delayed: u64,
    /// Records a member holds under a lock.
    pub acquired: u64,
    /// Archived records waiting for their dead-letter copy.
    pub archived_pending: u64,
    /// Records the group's filter skipped (finished without delivery), since the
    /// coordinator took the window: a failover or restart counts from 0 again.
    pub filtered_out: u64,
    /// The oldest record of the window that is not finished; `None` when every record
    /// in it is.
    pub oldest_unfinished_offset: Option<i64>,
    /// How old that record is (since its timestamp; zero for a timestamp in the future).
    pub oldest_unfinished_age: Option<Duration>,
}

impl Admin {
    /// A share group's settings and each share-partition's window, from the group's
    /// share coordinator (`Queues.DescribeShareGroup`, found again while it moves, for
    /// at most [`GROUP_ADMIN_TIMEOUT`]). [`ClientError::NotFound`] for a group without
    /// state (no member has fetched from it, and it was never configured).
    pub async fn describe_share_group(
        &self,
        group_id: &str,
    ) -> Result<ShareGroupInfo, ClientError> {
        let d = self
            .on_coordinator_of(group_id, pb::CoordinatorType::Share, |channel| {
                let request = pb::DescribeShareGroupRequest {
                    group_id: group_id.to_owned(),
                };
                async move { queues_client(channel).describe_share_group(request).await }
            })
            .await?
            .into_inner();
        Ok(share_group_info(d))
    }

    /// Every share group, by id, with its Kafka member count: every broker is asked
    /// (`Queues.ListShareGroups`: each lists the groups whose state or membership it
    /// holds); a broker that cannot be reached is skipped with a warning.
    pub async fn list_share_groups(&self) -> Result<Vec<ShareGroupListing>, ClientError> {
        self.cluster.refresh(&[]).await?;
        let brokers: Vec<i32> = self.cluster.table().brokers().map(|(id, _)| id).collect();
        let mut groups: BTreeMap<String, ShareGroupListing> = BTreeMap::new();
        let mut asked = 0;
        let mut last_error = None;
        for broker in brokers {
            let listed = async {
                let channel = self.cluster.channel(broker)?;
                Ok::<_, ClientError>(
                    queues_client(channel)
                        .list_share_groups(pb::ListShareGroupsRequest {})
                        .await?
                        .into_inner()
                        .groups,
                )
            }
            .await;
            match listed {
                Ok(found) => {
                    asked += 1;
                    merge_share_listing(&mut groups, found);
                }
                Err(error) if error.is_retriable() => {
                    tracing::warn!(broker, %error, "a broker did not list its share groups; skipped");
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        match (asked, last_error) {
            (0, Some(error)) => Err(error),
            _ => Ok(groups.into_values().collect()),
        }
    }

    /// Moves an idle share group's start on `partitions` of `topic` (none: all of them)
    /// to `to` (`Queues.ResetShareGroup`, at its share coordinator): each
    /// share-partition's in-flight window is discarded and its records from the new start
    /// on are delivered again, from a delivery count of 0. A group without state is made.
    /// [`ClientError::FailedPrecondition`] while a member holds a record under a lock or
    /// the group has Kafka members; [`ClientError::NotFound`] for an unknown topic.
    pub async fn reset_share_group(
        &self,
        group_id: &str,
        topic: &str,
        partitions: &[u32],
        to: ShareResetTo,
    ) -> Result<Vec<ShareStartReset>, ClientError> {
        use pb::share_start_reset::To;
        let partitions: Vec<u32> = if partitions.is_empty() {
            (0..self.describe_topic(topic).await?.partitions.len() as u32).collect()
        } else {
            partitions.to_vec()
        };
        let to = match to {
            ShareResetTo::Offset(n) => To::Offset(n),
            ShareResetTo::Earliest => To::Earliest(true),
            ShareResetTo::Latest => To::Latest(true),
        };
        let request = pb::ResetShareGroupRequest {
            group_id: group_id.to_owned(),
            partitions: partitions
                .iter()
                .map(|&partition| pb::ShareStartReset {
                    topic: topic.to_owned(),
                    partition,
                    to: Some(to),
                })
                .collect(),
        };
        let answer = self
            .on_coordinator_of(group_id, pb::CoordinatorType::Share, |channel| {
                let request = request.clone();
                async move { queues_client(channel).reset_share_group(request).await }
            })
            .await?
            .into_inner();
        Ok(answer
            .results
            .into_iter()
            .map(|r| ShareStartReset {
                topic: r.topic,
                partition: r.partition,
                result: match &r.error {
                    Some(e) => Err(ClientError::from_partition_error(e)),
                    None => Ok(r.start_offset),
                },
            })
            .collect())
    }

    /// Deletes an idle share group (`topics` empty: its whole state and settings) or its
    /// state of `topics` (`Queues.DeleteShareGroup`, at its share coordinator); one
    /// answer per topic. [`ClientError::NotFound`] for a group without state,
    /// [`ClientError::FailedPrecondition`] while it is in use.
    pub async fn delete_share_group(
        &self,
        group_id: &str,
        topics: &[&str],
    ) -> Result<Vec<(String, Result<(), ClientError>)>, ClientError> {
        let request = pb::DeleteShareGroupRequest {
            group_id: group_id.to_owned(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
        };
        let answer = self
            .on_coordinator_of(group_id, pb::CoordinatorType::Share, |channel| {
                let request = request.clone();
                async move { queues_client(channel).delete_share_group(request).await }
            })
            .await?
            .into_inner();
        Ok(answer
            .results
            .into_iter()
            .map(|r| {
                let result = match &r.error {
                    Some(e) => Err(ClientError::from_partition_error(e)),
                    None => Ok(()),
                };
                (r.topic, result)
            })
            .collect())
    }

    /// Replaces what a share group sets for itself (`Queues.ConfigureShareGroup`; a
    /// setting left `None` goes back to the broker's default, but a `None` filter keeps
    /// the group's), making the group if it
    /// has no state yet, and returns the group as it now runs once the settings are
    /// durable. [`ClientError::NotFound`] for a dead-letter topic that does not exist,
    /// [`ClientError::InvalidArgument`] for values out of bounds.
    pub async fn configure_share_group(
        &self,
        group_id: &str,
        settings: &ShareGroupSettings,
    ) -> Result<ShareGroupInfo, ClientError> {
        let request = configure_request(group_id, settings);
        let d = self
            .on_coordinator_of(group_id, pb::CoordinatorType::Share, |channel| {
                let request = request.clone();
                async move { queues_client(channel).configure_share_group(request).await }
            })
            .await?
            .into_inner();
        Ok(share_group_info(d))
    }
}

fn queues_client(channel: Channel) -> QueuesClient<Channel> {
    QueuesClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A `DescribeShareGroup` (or `ConfigureShareGroup`) answer.
fn share_group_info(d: pb::DescribeShareGroupResponse) -> ShareGroupInfo {
    ShareGroupInfo {
        group_id: d.group_id,
        lock_duration: Duration::from_millis(d.lock_duration_ms),
        delivery_count_limit: d.delivery_count_limit,
        dead_letter_topic: (!d.dead_letter_topic.is_empty()).then_some(d.dead_letter_topic),
        filter: crate::share::filter::from_proto(d.filter),
        start: d.start.and_then(crate::share::ShareStart::from_proto),
        partitions: d
            .partitions
            .into_iter()
            .map(|p| SharePartitionInfo {
                topic: p.topic,
                partition: p.partition,
                start_offset: p.start_offset,
                end_offset: p.end_offset,
                high_watermark: p.high_watermark,
                available: p.available,
                delayed: p.delayed,
                acquired: p.acquired,
                archived_pending: p.archived_pending,
                filtered_out: p.filtered_out,
                oldest_unfinished_offset: p.oldest_unfinished_offset,
                // A timestamp in the future (clock skew) is no age.
                oldest_unfinished_age: p
                    .oldest_unfinished_age_ms
                    .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            })
            .collect(),
    }
}

/// Adds one broker's share-group listing to `groups`.
fn merge_share_listing(
    groups: &mut BTreeMap<String, ShareGroupListing>,
    found: Vec<pb::ShareGroupListing>,
) {
    for g in found {
        let entry = groups
            .entry(g.group_id.clone())
            .or_insert_with(|| ShareGroupListing {
                group_id: g.group_id,
                members: 0,
            });
        // Membership lives on one broker; the others say 0.
        entry.members = entry.members.max(g.members);
    }
}

/// `ConfigureShareGroup` for `settings`: an unset setting is absent (the broker's
/// default), and so is an unset filter (the group keeps its own); a lock duration past
/// `u64::MAX` milliseconds is sent as that, for the broker to refuse as out of bounds.
fn configure_request(
    group_id: &str,
    settings: &ShareGroupSettings,
) -> pb::ConfigureShareGroupRequest {
    pb::ConfigureShareGroupRequest {
        group_id: group_id.to_owned(),
        lock_duration_ms: settings
            .lock_duration
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        delivery_count_limit: settings.delivery_count_limit,
        dead_letter_topic: settings.dead_letter_topic.clone(),
        filter: settings
            .filter
            .as_deref()
            .map(crate::share::filter::to_proto),
        start: settings.start.map(|s| s.to_proto() as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::ShareStart;

    #[test]
    fn a_described_share_group_reads_back_with_absent_values_as_none() {
        let group = share_group_info(pb::DescribeShareGroupResponse {
            group_id: "jobs".to_owned(),
            lock_duration_ms: 30_000,
            delivery_count_limit: 5,
            dead_letter_topic: String::new(),
            filter: Some(crate::share::filter::to_proto(&["region=eu"
                .parse()
                .expect("a condition")])),
            start: Some(pb::ShareStart::Earliest.into()),
            partitions: vec![
                pb::SharePartitionDescription {
                    topic: "tasks".to_owned(),
                    partition: 0,
                    start_offset: 10,
                    end_offset: 20,
                    available: 6,
                    acquired: 4,
                    oldest_unfinished_offset: Some(10),
                    oldest_unfinished_age_ms: Some(2_500),
                    ..Default::default()
                },
                pb::SharePartitionDescription {
                    topic: "tasks".to_owned(),
                    partition: 1,
                    // The coordinator's clock behind the record's: no age, not a panic.
                    oldest_unfinished_offset: Some(3),
                    oldest_unfinished_age_ms: Some(-40),
                    ..Default::default()
                },
            ],
        });
        assert_eq!(group.group_id, "jobs");
        assert_eq!(group.lock_duration, Duration::from_secs(30));
        assert_eq!(group.delivery_count_limit, 5);
        assert_eq!(group.dead_letter_topic, None);
        assert_eq!(group.filter.len(), 1);
        assert_eq!(group.filter[0].to_string(), "region=eu");
        assert_eq!(group.start, Some(ShareStart::Earliest));
        let [first, second] = &group.partitions[..] else {
            panic!("two share-partitions: {:?}", group.partitions);
        };
        assert_eq!(
            (
                first.start_offset,
                first.end_offset,
                first.available,
                first.acquired
            ),
            (10, 20, 6, 4)
        );
        assert_eq!(
            first.oldest_unfinished_age,
            Some(Duration::from_millis(2_500))
        );
        assert_eq!(second.oldest_unfinished_age, Some(Duration::ZERO));
        assert_eq!(
            share_group_info(pb::DescribeShareGroupResponse {
                dead_letter_topic: "tasks.dlq".to_owned(),
                ..Default::default()
            })
            .dead_letter_topic
            .as_deref(),
            Some("tasks.dlq")
        );
    }

    #[test]
    fn unset_settings_are_absent_and_an_empty_filter_is_sent_to_remove_the_groups() {
        let defaults = configure_request("jobs", &ShareGroupSettings::default());
        assert_eq!(defaults.group_id, "jobs");
        assert_eq!(
            (
                defaults.lock_duration_ms,
                defaults.delivery_count_limit,
                &defaults.dead_letter_topic,
                &defaults.filter,
                defaults.start
            ),
            (None, None, &None, &None, None)
        );

        let set = configure_request(
            "jobs",
            &ShareGroupSettings {
                lock_duration: Some(Duration::from_secs(45)),
                delivery_count_limit: Some(3),
                dead_letter_topic: Some("tasks.dlq".to_owned()),
                filter: Some(Vec::new()),
                start: Some(ShareStart::Latest),
            },
        );
        assert_eq!(set.lock_duration_ms, Some(45_000));
        assert_eq!(set.delivery_count_limit, Some(3));
        assert_eq!(set.dead_letter_topic.as_deref(), Some("tasks.dlq"));
        assert_eq!(set.filter.map(|f| f.conditions.len()), Some(0));
        assert_eq!(set.start, Some(pb::ShareStart::Latest as i32));

        let forever = configure_request(
            "jobs",
            &ShareGroupSettings {
                lock_duration: Some(Duration::MAX),
                ..Default::default()
            },
        );
        assert_eq!(forever.lock_duration_ms, Some(u64::MAX));
    }

    #[test]
    fn a_share_group_listed_by_several_brokers_is_one_entry_with_its_members() {
        let listing = |group: &str, members: u32| pb::ShareGroupListing {
            group_id: group.to_owned(),
            members,
            ..Default::default()
        };
        let mut groups = BTreeMap::new();
        merge_share_listing(&mut groups, vec![listing("jobs", 0), listing("mail", 2)]);
        merge_share_listing(&mut groups, vec![listing("jobs", 3), listing("mail", 0)]);
        assert_eq!(
            groups.into_values().collect::<Vec<_>>(),
            [
                ShareGroupListing {
                    group_id: "jobs".to_owned(),
                    members: 3
                },
                ShareGroupListing {
                    group_id: "mail".to_owned(),
                    members: 2
                },
            ]
        );
    }
}
