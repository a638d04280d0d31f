//! Share-group membership as Kafka's share consumers keep it (KIP-932's
//! ShareGroupHeartbeat): who is in a share group, what each member subscribes to, and
//! which partitions it is told to fetch from.
//!
//! Membership decides nothing about delivery here. Every member is assigned every
//! partition of the topics it subscribes to: the share coordinator hands each record to
//! one member whichever partitions members fetch from, so spreading partitions over
//! members would only leave a partition idle while its one member is slow. A member's
//! epoch moves when its assignment does (a topic appears or grows), which is what tells
//! a client to start fetching the new partitions.
//!
//! The table is kept in memory on the group's coordinator (the broker FindCoordinator
//! names for the group id, as for consumer groups) and is not replicated: when the
//! coordinator moves, members are told UNKNOWN_MEMBER_ID and join again with epoch 0,
//! losing nothing (acquired records and their locks live in the share coordinator, not
//! here). Members that stop heartbeating leave after [`SHARE_SESSION_TIMEOUT`].
//!
//! The table takes the time as an argument and reads no clock, so its rules are tested
//! without sleeping.
//!
//! Consumers that a listener serves without membership (AMQP's `basic.consume`: its
//! fetches name a member id of the listener's making, and nothing heartbeats) are counted
//! beside the members, on the broker serving them, while their [`AttachedConsumer`]
//! lives: listings show them as the group's members (a queue's consumers), and nothing
//! else about the group changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_cluster::group::{MAX_MEMBER_ID_CHARS, validate_group_id};

use crate::groups::find_coordinator;
use crate::{Broker, BrokerError, Reason, RequestContext};

/// How often a member is told to heartbeat (Kafka's `group.share.heartbeat.interval.ms`
/// default).
pub const SHARE_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How long a member stays without a heartbeat (Kafka's
/// `group.share.session.timeout.ms` default).
pub const SHARE_SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// Most members one share group may have (Kafka's `group.share.max.size` is 200; Weir's
/// coordinator has no per-member cost beyond this table, so it allows more).
pub const MAX_SHARE_GROUP_MEMBERS: usize = 1_000;
/// Most share groups with members one broker keeps.
pub const MAX_SHARE_GROUPS_WITH_MEMBERS: usize = 10_000;
/// Longest rack id, client id or client host a member's entry keeps.
pub const MAX_SHARE_CLIENT_FIELD_BYTES: usize = 1_024;
/// Most topics one member may subscribe to.
pub const MAX_SHARE_SUBSCRIBED_TOPICS: usize = 1_000;

/// The epoch a member sends to join.
const JOIN_EPOCH: i32 = 0;
/// The epoch a member sends to leave.
const LEAVE_EPOCH: i32 = -1;

/// Topic name to the partition numbers assigned in it.
pub type Assignment = BTreeMap<String, Vec<u32>>;

/// One ShareGroupHeartbeat.
#[derive(Debug, Clone)]
pub struct ShareHeartbeat {
    pub group_id: String,
    /// The client's own id for itself (KIP-1082); empty asks the broker for one.
    pub member_id: String,
    /// 0 to join, -1 to leave, else the epoch the member was last given.
    pub member_epoch: i32,
    /// The topics subscribed to; `None` when unchanged since the last heartbeat.
    pub topics: Option<Vec<String>>,
    /// The member's rack, if it says.
    pub rack_id: Option<String>,
    /// The client's id and host (filled from the request's context when empty).
    pub client_id: String,
    pub client_host: String,
}

/// The answer to a [`ShareHeartbeat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareHeartbeatAnswer {
    pub member_id: String,
    /// -1 once the member has left.
    pub member_epoch: i32,
    pub heartbeat_interval: Duration,
    /// The member's partitions, when they changed since the member was last told.
    pub assignment: Option<Assignment>,
}

/// One member of a share group, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareMemberView {
    pub member_id: String,
    pub member_epoch: i32,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub topics: Vec<String>,
    pub assignment: Assignment,
}

/// A share group's membership, described: its epoch (moved by every change of members
/// or of their assignments; every member is assigned at once, so it is the assignment
/// epoch too) and its live members.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShareGroupMembers {
    pub epoch: i32,
    pub members: Vec<ShareMemberView>,
}

#[derive(Debug)]
struct Member {
    epoch: i32,
    topics: Vec<String>,
    assigned: Assignment,
    last_seen: Instant,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
}

/// One group's entry in the table: kept when its last member leaves (an empty group
/// keeps its epoch) until the table is full or the group is deleted.
#[derive(Debug, Default)]
struct Group {
    epoch: i32,
    members: HashMap<String, Member>,
}

impl Group {
    /// Members that went quiet by `now` leave; the epoch moves if any did.
    fn expire(&mut self, now: Instant) {
        let before = self.members.len();
        self.members
            .retain(|_, m| now.duration_since(m.last_seen) < SHARE_SESSION_TIMEOUT);
        if self.members.len() < before {
            self.epoch += 1;
        }
    }
}

/// The share groups this broker coordinates membership of, with their members.
#[derive(Debug, Default)]
pub struct ShareMembers {
    groups: Mutex<HashMap<String, Group>>,
    /// Consumers served here without membership, by group.
    attached: Arc<Mutex<HashMap<String, usize>>>,
}

/// One consumer of a share group that a listener serves without membership, counted
/// among the group's members on this broker until dropped.
#[derive(Debug)]
pub struct AttachedConsumer {
    group_id: String,
    attached: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for AttachedConsumer {
    fn drop(&mut self) {
        let mut attached = self.attached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = attached.get_mut(&self.group_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                attached.remove(&self.group_id);
            }
        }
    }
}

impl ShareMembers {
    /// Applies one heartbeat at `now`. `assign` gives the partitions of a subscription
    /// (the topics that exist, each with all its partitions).
    pub fn heartbeat(
        &self,
        hb: ShareHeartbeat,
        now: Instant,
        assign: impl Fn(&[String]) -> Assignment,
    ) -> Result<ShareHeartbeatAnswer, BrokerError> {
        if hb.member_id.len() > MAX_MEMBER_ID_CHARS {
            return Err(BrokerError::invalid(format!(
                "member_id is {} bytes; the limit is {MAX_MEMBER_ID_CHARS}",
                hb.member_id.len()
            )));
        }
        if let Some(topics) = &hb.topics
            && topics.len() > MAX_SHARE_SUBSCRIBED_TOPICS
        {
            return Err(BrokerError::invalid(format!(
                "a share consumer subscribes to at most {MAX_SHARE_SUBSCRIBED_TOPICS} topics; this one names {}",
                topics.len()
            )));
        }
        for (what, value) in [
            ("rack_id", hb.rack_id.as_deref().unwrap_or("")),
            ("client_id", &hb.client_id),
            ("client_host", &hb.client_host),
        ] {
            if value.len() > MAX_SHARE_CLIENT_FIELD_BYTES {
                return Err(BrokerError::invalid(format!(
                    "{what} is {} bytes; the limit is {MAX_SHARE_CLIENT_FIELD_BYTES}",
                    value.len()
                )));
            }
        }
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        // Members that went quiet leave: this group's on each of its heartbeats, every
        // group's only when the table is full (a sweep of it all is not per heartbeat),
        // and then the groups left empty go.
        if let Some(group) = groups.get_mut(&hb.group_id) {
            group.expire(now);
        }
        if !groups.contains_key(&hb.group_id) && groups.len() >= MAX_SHARE_GROUPS_WITH_MEMBERS {
            for group in groups.values_mut() {
                group.expire(now);
            }
            groups.retain(|_, group| !group.members.is_empty());
        }
        if hb.member_epoch == LEAVE_EPOCH {
            if let Some(group) = groups.get_mut(&hb.group_id)
                && group.members.remove(&hb.member_id).is_some()
            {
                group.epoch += 1;
            }
            return Ok(ShareHeartbeatAnswer {
                member_id: hb.member_id,
                member_epoch: LEAVE_EPOCH,
                heartbeat_interval: SHARE_HEARTBEAT_INTERVAL,
                assignment: None,
            });
        }
        if !groups.contains_key(&hb.group_id) && groups.len() >= MAX_SHARE_GROUPS_WITH_MEMBERS {
            return Err(BrokerError::new(
                Reason::TooMany,
                format!(
                    "this broker coordinates {MAX_SHARE_GROUPS_WITH_MEMBERS} share groups with members, its limit"
                ),
            ));
        }
        let group = groups.entry(hb.group_id.clone()).or_default();
        let members = &mut group.members;
        let member_id = if hb.member_id.is_empty() {
            generated_member_id()
        } else {
            hb.member_id
        };
        let member = match (hb.member_epoch, members.get_mut(&member_id)) {
            (JOIN_EPOCH, _) => {
                if !members.contains_key(&member_id) && members.len() >= MAX_SHARE_GROUP_MEMBERS {
                    return Err(BrokerError::new(
                        Reason::TooMany,
                        format!(
                            "share group {:?} has {MAX_SHARE_GROUP_MEMBERS} members, its limit",
                            hb.group_id
                        ),
                    ));
                }
                // A (re)join starts the member afresh; its epoch moves past any it had,
                // so a heartbeat of its earlier life is fenced.
                let epoch = members.get(&member_id).map_or(0, |m| m.epoch);
                members.insert(
                    member_id.clone(),
                    Member {
                        epoch,
                        topics: Vec::new(),
                        assigned: Assignment::new(),
                        last_seen: now,
                        rack_id: None,
                        client_id: String::new(),
                        client_host: String::new(),
                    },
                );
                members.get_mut(&member_id).expect("just inserted")
            }
            (_, None) => {
                return Err(BrokerError::new(
                    Reason::UnknownMember,
                    format!(
                        "member {member_id:?} is not in share group {:?} (it left, timed out, or the coordinator moved); join again with epoch 0",
                        hb.group_id
                    ),
                ));
            }
            (epoch, Some(m)) if epoch != m.epoch => {
                return Err(BrokerError::new(
                    Reason::FencedMember,
                    format!(
                        "member {member_id:?} of share group {:?} sent epoch {epoch}; its epoch is {}",
                        hb.group_id, m.epoch
                    ),
                ));
            }
            (_, Some(m)) => m,
        };
        member.last_seen = now;
        if hb.rack_id.is_some() {
            member.rack_id = hb.rack_id;
        }
        if !hb.client_id.is_empty() {
            member.client_id = hb.client_id;
        }
        if !hb.client_host.is_empty() {
            member.client_host = hb.client_host;
        }
        let joined = hb.member_epoch == JOIN_EPOCH;
        if let Some(topics) = hb.topics {
            member.topics = topics;
        }
        let assigned = assign(&member.topics);
        let changed = joined || assigned != member.assigned;
        if changed {
            member.epoch += 1;
            member.assigned = assigned;
        }
        let answer = ShareHeartbeatAnswer {
            member_id,
            member_epoch: member.epoch,
            heartbeat_interval: SHARE_HEARTBEAT_INTERVAL,
            assignment: changed.then(|| member.assigned.clone()),
        };
        if changed {
            group.epoch += 1;
        }
        Ok(answer)
    }

    /// The members of `group_id` live at `now`.
    pub fn describe(&self, group_id: &str, now: Instant) -> Vec<ShareMemberView> {
        self.group(group_id, now)
            .map(|g| g.members)
            .unwrap_or_default()
    }

    /// The group's epoch and its members live at `now`; `None` for a group this table
    /// does not hold.
    pub fn group(&self, group_id: &str, now: Instant) -> Option<ShareGroupMembers> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let group = groups.get(group_id)?;
        let mut members: Vec<ShareMemberView> = group
            .members
            .iter()
            .filter(|(_, m)| now.duration_since(m.last_seen) < SHARE_SESSION_TIMEOUT)
            .map(|(id, m)| ShareMemberView {
                member_id: id.clone(),
                member_epoch: m.epoch,
                rack_id: m.rack_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                topics: m.topics.clone(),
                assignment: m.assigned.clone(),
            })
            .collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        // Members that went quiet since the last heartbeat moved the epoch too.
        let quiet = group.members.len() - members.len();
        Some(ShareGroupMembers {
            epoch: group.epoch + i32::from(quiet > 0),
            members,
        })
    }

    /// Every group this table holds, with its number of live members at `now`, by id.
    pub fn groups(&self, now: Instant) -> Vec<(String, usize)> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: BTreeMap<String, usize> = groups
            .iter()
            .map(|(id, g)| {
                let live = g
                    .members
                    .values()
                    .filter(|m| now.duration_since(m.last_seen) < SHARE_SESSION_TIMEOUT)
                    .count();
                (id.clone(), live)
            })
            .collect();
        drop(groups);
        let attached = self.attached.lock().unwrap_or_else(|p| p.into_inner());
        for (id, n) in attached.iter() {
            *out.entry(id.clone()).or_default() += n;
        }
        out.into_iter().collect()
    }

    /// The consumers of `group_id` served here without membership.
    pub fn attached(&self, group_id: &str) -> usize {
        let attached = self.attached.lock().unwrap_or_else(|p| p.into_inner());
        attached.get(group_id).copied().unwrap_or(0)
    }

    /// Counts one more consumer of `group_id` served here without membership, until the
    /// returned guard is dropped.
    pub fn attach(&self, group_id: &str) -> AttachedConsumer {
        let mut attached = self.attached.lock().unwrap_or_else(|p| p.into_inner());
        *attached.entry(group_id.to_owned()).or_default() += 1;
        AttachedConsumer {
            group_id: group_id.to_owned(),
            attached: self.attached.clone(),
        }
    }

    /// Forgets `group_id` if it has no live member at `now` (a deleted group); refuses
    /// with GROUP_NOT_EMPTY otherwise.
    pub fn remove_if_empty(&self, group_id: &str, now: Instant) -> Result<(), BrokerError> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(group) = groups.get_mut(group_id) {
            group.expire(now);
            if !group.members.is_empty() {
                return Err(not_empty(group_id, group.members.len()));
            }
            groups.remove(group_id);
        }
        Ok(())
    }

    /// GROUP_NOT_EMPTY if `group_id` has live members at `now`.
    pub fn check_empty(&self, group_id: &str, now: Instant) -> Result<(), BrokerError> {
        let live = self.group(group_id, now).map_or(0, |g| g.members.len());
        if live > 0 {
            return Err(not_empty(group_id, live));
        }
        Ok(())
    }
}

fn not_empty(group_id: &str, members: usize) -> BrokerError {
    BrokerError::new(
        Reason::GroupNotEmpty,
        format!(
            "share group {group_id:?} is not empty: it has {members} members; stop them (or wait {}s after they stop heartbeating) and retry",
            SHARE_SESSION_TIMEOUT.as_secs()
        ),
    )
}

/// A member id for a client that sent none: unique on this broker (its clock and a
/// counter).
fn generated_member_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("weir-{:x}-{n:x}", crate::now_ms())
}

/// One ShareGroupHeartbeat at this broker: NOT_COORDINATOR unless it coordinates the
/// group id (as FindCoordinator names it). An empty client id or host is filled from the
/// request's context.
pub fn heartbeat(
    broker: &Broker,
    ctx: &RequestContext,
    mut hb: ShareHeartbeat,
) -> Result<ShareHeartbeatAnswer, BrokerError> {
    validate_group_id(&hb.group_id)?;
    broker.authorize_group(ctx, weir_cluster::security::Operation::Read, &hb.group_id)?;
    crate::groups::fill_client(ctx, &mut hb.client_id, &mut hb.client_host);
    check_coordinator(broker, ctx, &hb.group_id)?;
    broker
        .share_members()
        .heartbeat(hb, Instant::now(), |topics| assignment(broker, ctx, topics))
}

/// The members of share group `group_id`, at its coordinator.
pub fn describe(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<Vec<ShareMemberView>, BrokerError> {
    check_coordinator(broker, ctx, group_id)?;
    Ok(broker.share_members().describe(group_id, Instant::now()))
}

/// NOT_COORDINATOR unless this broker coordinates `group_id`'s membership.
pub(crate) fn check_coordinator(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
) -> Result<(), BrokerError> {
    let coordinator = find_coordinator(broker, ctx, group_id)?;
    if coordinator.node_id != broker.node_id() {
        return Err(BrokerError::new(
            Reason::NotCoordinator {
                coordinator: coordinator.node_id,
            },
            format!(
                "broker {} is not the coordinator of group {group_id:?}; broker {} is",
                broker.node_id(),
                coordinator.node_id
            ),
        ));
    }
    Ok(())
}

/// Every partition of each subscribed topic that exists.
fn assignment(broker: &Broker, ctx: &RequestContext, topics: &[String]) -> Assignment {
    topics
        .iter()
        .filter_map(|name| {
            let topic = broker.topic(ctx, name).ok()?;
            Some((name.clone(), (0..topic.partition_count()).collect()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(member: &str, epoch: i32, topics: Option<&[&str]>) -> ShareHeartbeat {
        ShareHeartbeat {
            group_id: "workers".into(),
            member_id: member.into(),
            member_epoch: epoch,
            topics: topics.map(|t| t.iter().map(|s| s.to_string()).collect()),
            rack_id: None,
            client_id: "client".into(),
            client_host: "127.0.0.1".into(),
        }
    }

    fn two_partitions_each(topics: &[String]) -> Assignment {
        topics
            .iter()
            .filter(|t| t.as_str() != "missing")
            .map(|t| (t.clone(), vec![0, 1]))
            .collect()
    }

    #[test]
    fn attached_consumers_count_as_members_while_they_live() {
        let table = ShareMembers::default();
        let t0 = Instant::now();
        table
            .heartbeat(hb("m1", 0, Some(&["jobs"])), t0, two_partitions_each)
            .unwrap();
        let first = table.attach("workers");
        let second = table.attach("workers");
        let other = table.attach("queue");
        assert_eq!(
            table.groups(t0),
            [("queue".to_owned(), 1), ("workers".to_owned(), 3)]
        );
        drop(first);
        drop(other);
        assert_eq!(table.groups(t0), [("workers".to_owned(), 2)]);
        assert_eq!((table.attached("workers"), table.attached("queue")), (1, 0));
        drop(second);
        assert_eq!(table.groups(t0), [("workers".to_owned(), 1)]);
        assert_eq!(table.attached("workers"), 0);
    }

    #[test]
    fn a_member_joins_gets_every_partition_and_then_no_news_until_it_changes() {
        let table = ShareMembers::default();
        let t0 = Instant::now();
        let a = table
            .heartbeat(
                hb("m1", 0, Some(&["jobs", "missing"])),
                t0,
                two_partitions_each,
            )
            .unwrap();
        assert_eq!(a.member_epoch, 1);
        assert_eq!(
            a.assignment,
            Some(Assignment::from([("jobs".to_string(), vec![0, 1])]))
        );
        let b = table
            .heartbeat(hb("m1", 1, None), t0, two_partitions_each)
            .unwrap();
        assert_eq!((b.member_epoch, b.assignment), (1, None));
        // The topic grows: the epoch moves and the new assignment is sent.
        let c = table
            .heartbeat(hb("m1", 1, None), t0, |_| {
                Assignment::from([("jobs".to_string(), vec![0, 1, 2])])
            })
            .unwrap();
        assert_eq!(c.member_epoch, 2);
        assert_eq!(
            c.assignment,
            Some(Assignment::from([("jobs".to_string(), vec![0, 1, 2])]))
        );
    }

    #[test]
    fn a_stale_epoch_is_fenced_and_an_unknown_member_is_told_to_rejoin() {
        let table = ShareMembers::default();
        let t0 = Instant::now();
        table
            .heartbeat(hb("m1", 0, Some(&["jobs"])), t0, two_partitions_each)
            .unwrap();
        let fenced = table
            .heartbeat(hb("m1", 7, None), t0, two_partitions_each)
            .unwrap_err();
        assert_eq!(fenced.reason, Reason::FencedMember);
        let unknown = table
            .heartbeat(hb("m2", 3, None), t0, two_partitions_each)
            .unwrap_err();
        assert_eq!(unknown.reason, Reason::UnknownMember);
    }

    #[test]
    fn members_leave_by_asking_or_by_going_quiet() {
        let table = ShareMembers::default();
        let t0 = Instant::now();
        table
            .heartbeat(hb("m1", 0, Some(&["jobs"])), t0, two_partitions_each)
            .unwrap();
        table
            .heartbeat(hb("m2", 0, Some(&["jobs"])), t0, two_partitions_each)
            .unwrap();
        assert_eq!(table.describe("workers", t0).len(), 2);
        let left = table
            .heartbeat(hb("m1", -1, None), t0, two_partitions_each)
            .unwrap();
        assert_eq!(left.member_epoch, -1);
        assert_eq!(table.describe("workers", t0).len(), 1);
        let later = t0 + SHARE_SESSION_TIMEOUT;
        assert!(table.describe("workers", later).is_empty());
        let gone = table
            .heartbeat(hb("m2", 1, None), later, two_partitions_each)
            .unwrap_err();
        assert_eq!(gone.reason, Reason::UnknownMember);
    }

    #[test]
    fn a_member_without_an_id_is_given_one() {
        let table = ShareMembers::default();
        let a = table
            .heartbeat(
                hb("", 0, Some(&["jobs"])),
                Instant::now(),
                two_partitions_each,
            )
            .unwrap();
        assert!(!a.member_id.is_empty() && a.member_id.len() <= MAX_MEMBER_ID_CHARS);
    }

    #[test]
    fn a_rejoin_fences_the_members_earlier_life() {
        let table = ShareMembers::default();
        let t0 = Instant::now();
        let first = table
            .heartbeat(hb("m1", 0, Some(&["jobs"])), t0, two_partitions_each)
            .unwrap();
        let again = table
            .heartbeat(hb("m1", 0, Some(&["jobs"])), t0, two_partitions_each)
            .unwrap();
        assert!(again.member_epoch > first.member_epoch);
        let old = table
            .heartbeat(hb("m1", first.member_epoch, None), t0, two_partitions_each)
            .unwrap_err();
        assert_eq!(old.reason, Reason::FencedMember);
    }

    #[test]
    fn the_group_epoch_moves_with_its_members_and_an_empty_group_keeps_it() {
        let table = ShareMembers::default();
        let t0 = Instant::now();
        assert_eq!(table.group("workers", t0), None);
        let mut join = hb("m1", 0, Some(&["jobs"]));
        join.rack_id = Some("rack-a".into());
        table.heartbeat(join, t0, two_partitions_each).unwrap();
        let one = table.group("workers", t0).unwrap();
        assert_eq!(one.epoch, 1);
        let m = &one.members[0];
        assert_eq!(
            (
                m.rack_id.as_deref(),
                m.client_id.as_str(),
                m.client_host.as_str()
            ),
            (Some("rack-a"), "client", "127.0.0.1")
        );
        // A heartbeat that changes nothing keeps the epoch; a second member moves it.
        table
            .heartbeat(hb("m1", 1, None), t0, two_partitions_each)
            .unwrap();
        assert_eq!(table.group("workers", t0).unwrap().epoch, 1);
        table
            .heartbeat(hb("m2", 0, Some(&["jobs"])), t0, two_partitions_each)
            .unwrap();
        assert_eq!(table.group("workers", t0).unwrap().epoch, 2);
        assert_eq!(table.groups(t0), vec![("workers".to_string(), 2)]);
        let busy = table.check_empty("workers", t0).unwrap_err();
        assert_eq!(busy.reason, Reason::GroupNotEmpty);
        assert_eq!(
            table.remove_if_empty("workers", t0).unwrap_err().reason,
            Reason::GroupNotEmpty
        );
        // Both leave: the group stays, empty, its epoch moved past both leaves.
        for m in ["m1", "m2"] {
            table
                .heartbeat(hb(m, -1, None), t0, two_partitions_each)
                .unwrap();
        }
        let empty = table.group("workers", t0).unwrap();
        assert_eq!((empty.epoch, empty.members.len()), (4, 0));
        assert_eq!(table.groups(t0), vec![("workers".to_string(), 0)]);
        table.check_empty("workers", t0).unwrap();
        table.remove_if_empty("workers", t0).unwrap();
        assert_eq!(table.group("workers", t0), None);
    }

    #[test]
    fn a_member_that_went_quiet_no_longer_counts_and_moved_the_epoch() {
        let table = ShareMembers::default();
        let t0 = Instant::now();
        table
            .heartbeat(hb("m1", 0, Some(&["jobs"])), t0, two_partitions_each)
            .unwrap();
        let later = t0 + SHARE_SESSION_TIMEOUT;
        let g = table.group("workers", later).unwrap();
        assert_eq!((g.epoch, g.members.len()), (2, 0));
        table.check_empty("workers", later).unwrap();
    }

    #[test]
    fn client_fields_over_the_limit_are_refused() {
        let table = ShareMembers::default();
        let mut join = hb("m1", 0, Some(&["jobs"]));
        join.client_id = "c".repeat(MAX_SHARE_CLIENT_FIELD_BYTES + 1);
        let refused = table
            .heartbeat(join, Instant::now(), two_partitions_each)
            .unwrap_err();
        assert_eq!(refused.reason, Reason::InvalidRequest);
    }
}
