//! The membership and reconciliation state machine of one group (KIP-848), pure: no
//! I/O, no clock (every call takes `now`), no locks.
//!
//! The group has an epoch, bumped on every change of members, subscriptions, the
//! assignor, or the partition counts of subscribed topics; each bump recomputes the
//! target assignment (one target per member) with the group's assignor.
//!
//! Each member moves towards its target on its own heartbeats:
//!
//! 1. Partitions it was asked to release and no longer reports as owned are released
//!    (they become free).
//! 2. While it still owns partitions it was asked to release, nothing else changes: it
//!    keeps its epoch and is answered with the short heartbeat interval.
//! 3. If its epoch is behind the target epoch, the partitions of its assignment that
//!    are not in its target are taken out of its assignment; those it still owns wait
//!    for release (step 2); once none are owned, its epoch becomes the target epoch.
//! 4. At the target epoch it receives every partition of its target that is free.
//!    Partitions still owned by another member (assigned or waiting for release) are
//!    handed over on a later heartbeat, after they were released.
//!
//! `owners` records, for every partition in some member's assignment or waiting for
//! release, that member. A partition is only added to an assignment when it has no
//! owner, so no partition is ever in two members' assignments (`check_invariants`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::assignor::{self, Assignment, Assignor, MemberSpec, TopicPartition};
use super::{
    GroupConfig, GroupError, GroupState, HeartbeatOutcome, MemberDescription, TopicPartitions,
};
use crate::is_internal;

/// Every topic and its partition count, at one metadata version.
#[derive(Debug, Clone, Default)]
pub struct TopicsSnapshot {
    pub version: u64,
    pub partitions: BTreeMap<Arc<str>, u32>,
}

/// A compiled subscription regex, anchored to whole names.
#[derive(Debug)]
pub struct TopicRegex {
    pub source: String,
    pub regex: regex::Regex,
}

/// What a member subscribes to.
#[derive(Debug, Clone)]
pub enum Subscription {
    Topics(BTreeSet<Arc<str>>),
    Regex(Arc<TopicRegex>),
}

impl PartialEq for Subscription {
    fn eq(&self, other: &Subscription) -> bool {
        match (self, other) {
            (Subscription::Topics(a), Subscription::Topics(b)) => a == b,
            (Subscription::Regex(a), Subscription::Regex(b)) => a.source == b.source,
            _ => false,
        }
    }
}

impl Subscription {
    /// The existing topics it names or matches (internal topics never match a regex).
    fn resolve(&self, topics: &TopicsSnapshot) -> BTreeSet<Arc<str>> {
        match self {
            Subscription::Topics(names) => names
                .iter()
                .filter(|t| topics.partitions.contains_key(*t))
                .cloned()
                .collect(),
            Subscription::Regex(re) => topics
                .partitions
                .keys()
                .filter(|t| !is_internal(t) && re.regex.is_match(t))
                .cloned()
                .collect(),
        }
    }
}

/// A heartbeat, checked and converted by the coordinator.
#[derive(Debug, Clone)]
pub struct MemberRequest {
    /// Empty when joining without an id.
    pub member_id: String,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    /// `None` keeps the member's subscription (required when joining).
    pub subscription: Option<Subscription>,
    /// `None` keeps the member's choice.
    pub assignor: Option<Assignor>,
    pub owned: Assignment,
    /// Clamped already; `None`: the group's (`config.session_timeout` as the heartbeat
    /// passes it in).
    pub session_timeout: Option<Duration>,
}

/// What a heartbeat did, beyond the answer.
#[derive(Debug, Clone)]
pub struct HeartbeatResult {
    pub outcome: HeartbeatOutcome,
    /// The group epoch changed (persist the group record).
    pub bumped: bool,
    /// A member was added to the group.
    pub joined: bool,
}

#[derive(Debug, Clone)]
struct Member {
    id: Arc<str>,
    client_id: String,
    client_host: String,
    epoch: i32,
    previous_epoch: i32,
    subscription: Subscription,
    /// Existing topics of the subscription (what the assignor sees).
    resolved: BTreeSet<Arc<str>>,
    assignor: Option<Assignor>,
    /// When the member last joined, for "the assignor of the most recently joined member
    /// that named one".
    join_seq: u64,
    session_timeout: Duration,
    session_deadline: Instant,
    /// The heartbeat interval it was last told (what a live member keeps to).
    heartbeat_interval: Duration,
    /// Set while the member must release partitions.
    revoke_deadline: Option<Instant>,
    /// Partitions it may consume.
    assigned: Assignment,
    /// Partitions it was asked to release and still owns.
    pending_revocation: Assignment,
}

/// One member as its member record keeps it (what a coordinator that takes over needs
/// so the member goes on without rejoining); deadlines and derived sets are not in it.
#[derive(Debug, Clone, PartialEq)]
pub struct PersistedMember {
    pub epoch: i32,
    pub previous_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscription: Subscription,
    pub assignor: Option<Assignor>,
    pub session_timeout: Duration,
    pub join_seq: u64,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
    pub target: Assignment,
}

/// One group's members, epochs and assignments.
#[derive(Debug, Clone)]
pub struct Group {
    id: String,
    epoch: i32,
    target_epoch: i32,
    assignor: Assignor,
    members: BTreeMap<Arc<str>, Member>,
    target: BTreeMap<Arc<str>, Assignment>,
    owners: HashMap<TopicPartition, Arc<str>>,
    /// Subscribed topics that exist, with their partition counts.
    subscribed: BTreeMap<Arc<str>, u32>,
    topics_version: u64,
    rebalances: u64,
    join_seq: u64,
    /// When a member last joined (or rejoined), for `GroupConfig::join_window`. Not
    /// persisted: a coordinator that takes over starts without a window.
    last_join: Option<Instant>,
}

pub fn to_map(set: &Assignment) -> TopicPartitions {
    let mut map = TopicPartitions::new();
    for (t, p) in set {
        map.entry(t.to_string()).or_default().push(*p);
    }
    map
}

impl Group {
    pub fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            epoch: 0,
            target_epoch: 0,
            assignor: Assignor::default(),
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            owners: HashMap::new(),
            subscribed: BTreeMap::new(),
            topics_version: 0,
            rebalances: 0,
            join_seq: 0,
            last_join: None,
        }
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    pub fn assignor(&self) -> Assignor {
        self.assignor
    }

    pub fn rebalances(&self) -> u64 {
        self.rebalances
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    #[cfg(test)]
    pub fn has_member(&self, id: &str) -> bool {
        self.members.contains_key(id)
    }

    /// What member `id` holds: its assignment and what it was asked to release.
    pub fn held(&self, id: &str) -> Option<Assignment> {
        let m = self.members.get(id)?;
        Some(m.assigned.union(&m.pending_revocation).cloned().collect())
    }

    pub fn member_epoch(&self, id: &str) -> Option<i32> {
        self.members.get(id).map(|m| m.epoch)
    }

    /// Restores what a group record kept: the epoch never goes back; the assignor
    /// applies while the group has no members.
    pub fn restore(&mut self, epoch: i32, assignor: Option<Assignor>) {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.target_epoch = epoch;
        }
        if let Some(a) = assignor.filter(|_| self.members.is_empty()) {
            self.assignor = a;
        }
    }

    /// Member `id` as its member record keeps it; `None` if it is not a member.
    pub fn persisted_member(&self, id: &str) -> Option<PersistedMember> {
        let m = self.members.get(id)?;
        Some(PersistedMember {
            epoch: m.epoch,
            previous_epoch: m.previous_epoch,
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            subscription: m.subscription.clone(),
            assignor: m.assignor,
            session_timeout: m.session_timeout,
            join_seq: m.join_seq,
            assigned: m.assigned.clone(),
            pending_revocation: m.pending_revocation.clone(),
            target: self.target.get(id).cloned().unwrap_or_default(),
        })
    }

    /// The ids of every member.
    pub fn member_ids(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.members.keys()
    }

    /// Replay: sets member `id` as its newest member record says, at `now` (the load's
    /// time; its session starts in [`finish_restore`](Self::finish_restore), to be called
    /// once every record is applied).
    pub fn restore_member(&mut self, id: &str, p: PersistedMember, now: Instant) {
        let id: Arc<str> = Arc::from(id);
        self.join_seq = self.join_seq.max(p.join_seq);
        if p.target.is_empty() {
            self.target.remove(&id);
        } else {
            self.target.insert(id.clone(), p.target);
        }
        self.members.insert(
            id.clone(),
            Member {
                id,
                client_id: p.client_id,
                client_host: p.client_host,
                epoch: p.epoch,
                previous_epoch: p.previous_epoch,
                subscription: p.subscription,
                resolved: BTreeSet::new(),
                assignor: p.assignor,
                join_seq: p.join_seq,
                session_timeout: p.session_timeout,
                session_deadline: now,
                heartbeat_interval: Duration::ZERO,
                revoke_deadline: None,
                assigned: p.assigned,
                pending_revocation: p.pending_revocation,
            },
        );
    }

    /// Replay is over: rebuilds the owner map and what the assignor sees (without a new
    /// epoch: the target assignment was restored with the members), and gives every
    /// member a full session (and, if it must release partitions, a full rebalance
    /// timeout) from `now`, as Kafka does when a coordinator loads a group.
    pub fn finish_restore(&mut self, topics: &TopicsSnapshot, now: Instant, config: &GroupConfig) {
        self.owners.clear();
        let target_ids: Vec<Arc<str>> = self.target.keys().cloned().collect();
        for id in target_ids {
            if !self.members.contains_key(&id) {
                self.target.remove(&id);
            }
        }
        for m in self.members.values_mut() {
            m.session_deadline = now + m.session_timeout;
            m.heartbeat_interval = config.heartbeat_interval.min(m.session_timeout / 3);
            m.revoke_deadline =
                (!m.pending_revocation.is_empty()).then(|| now + config.rebalance_timeout);
            // A member epoch is never ahead of the group's: records are written in order,
            // but a damaged log must not break the invariant.
            m.epoch = m.epoch.min(self.epoch);
            for tp in m.assigned.iter().chain(&m.pending_revocation) {
                // Each partition has one owner; a second claim (impossible from records
                // this broker wrote) is dropped rather than trusted.
                self.owners
                    .entry(tp.clone())
                    .or_insert_with(|| m.id.clone());
            }
            let id = m.id.clone();
            let owners = &self.owners;
            m.assigned.retain(|tp| owners.get(tp) == Some(&id));
            m.pending_revocation
                .retain(|tp| owners.get(tp) == Some(&id));
        }
        self.target_epoch = self.epoch;
        let assignor = self.assignor;
        self.recompute_inputs(topics);
        if self.members.is_empty() {
            self.assignor = assignor;
        }
    }

    /// Back to a group with no history (after its group record was deleted).
    pub fn reset(&mut self) {
        debug_assert!(self.members.is_empty());
        *self = Group::new(&self.id);
    }

    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            return GroupState::Empty;
        }
        let settled = self.members.values().all(|m| {
            m.epoch == self.target_epoch
                && m.pending_revocation.is_empty()
                && self.target.get(&m.id).is_none_or(|t| *t == m.assigned)
        });
        if settled {
            GroupState::Stable
        } else {
            GroupState::Assigning
        }
    }

    /// The earliest session or revocation deadline of any member.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.members
            .values()
            .map(|m| match m.revoke_deadline {
                Some(r) => r.min(m.session_deadline),
                None => m.session_deadline,
            })
            .min()
    }

    /// Whether a member's subscription (topic names, or a regex as resolved now) takes in
    /// `topic`.
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed.contains_key(topic)
    }

    /// Every subscribed partition, by topic then partition.
    pub fn subscribed_partitions(&self) -> impl Iterator<Item = (&str, u32)> + '_ {
        self.subscribed
            .iter()
            .flat_map(|(t, n)| (0..*n).map(move |p| (&**t, p)))
    }

    /// The current owner of every owned partition.
    pub fn owners(&self) -> impl Iterator<Item = (&TopicPartition, &Arc<str>)> + '_ {
        self.owners.iter()
    }

    /// The members as `now` finds them.
    pub fn describe_members(&self, now: Instant) -> Vec<MemberDescription> {
        self.members
            .values()
            .map(|m| {
                let (topics, regex) = match &m.subscription {
                    Subscription::Topics(t) => (t.iter().map(|t| t.to_string()).collect(), None),
                    Subscription::Regex(r) => (Vec::new(), Some(r.source.clone())),
                };
                MemberDescription {
                    member_id: m.id.to_string(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    member_epoch: m.epoch,
                    subscribed_topics: topics,
                    subscribed_topic_regex: regex,
                    assignment: to_map(&m.assigned),
                    pending_revocation: to_map(&m.pending_revocation),
                    target_assignment: self.target.get(&m.id).map(to_map).unwrap_or_default(),
                    since_heartbeat: m
                        .session_deadline
                        .checked_sub(m.session_timeout)
                        .map_or(Duration::ZERO, |heard| now.saturating_duration_since(heard)),
                    session_timeout: m.session_timeout,
                    heartbeat_interval: m.heartbeat_interval,
                }
            })
            .collect()
    }

    /// Handles one heartbeat (join, stay, leave).
    pub fn heartbeat(
        &mut self,
        req: MemberRequest,
        topics: &TopicsSnapshot,
        now: Instant,
        config: &GroupConfig,
    ) -> Result<HeartbeatResult, GroupError> {
        match req.member_epoch {
            -1 => Ok(self.leave(&req.member_id, topics, config)),
            0 => self.join(req, topics, now, config),
            e if e > 0 => self.stay(req, topics, now, config),
            e => Err(GroupError::InvalidRequest(format!(
                "member_epoch {e} is not valid: send 0 to join, -1 to leave, or the epoch of the \
                 last answer"
            ))),
        }
    }

    fn leave(
        &mut self,
        member_id: &str,
        topics: &TopicsSnapshot,
        config: &GroupConfig,
    ) -> HeartbeatResult {
        // Leaving is idempotent: a member that is already gone (a lost answer to its leave,
        // or a broker restart) has left.
        let bumped = if self.members.contains_key(member_id) {
            self.remove_member(member_id);
            self.recompute_inputs(topics);
            self.bump();
            true
        } else {
            false
        };
        HeartbeatResult {
            outcome: HeartbeatOutcome {
                member_id: member_id.to_string(),
                member_epoch: -1,
                group_epoch: self.epoch,
                heartbeat_interval: config.heartbeat_interval,
                session_timeout: config.session_timeout,
                assignment: None,
            },
            bumped,
            joined: false,
        }
    }

    fn join(
        &mut self,
        req: MemberRequest,
        topics: &TopicsSnapshot,
        now: Instant,
        config: &GroupConfig,
    ) -> Result<HeartbeatResult, GroupError> {
        let Some(subscription) = req.subscription.clone() else {
            return Err(GroupError::InvalidRequest(
                "a joining member (member_epoch 0) must subscribe: name topics or give a \
                 topic_regex"
                    .to_string(),
            ));
        };
        // Ids are chosen outside (the coordinator generates one for a member that brings
        // none), so the state machine stays deterministic.
        if req.member_id.is_empty() {
            return Err(GroupError::InvalidRequest(
                "a joining member needs a member id".to_string(),
            ));
        }
        let id: Arc<str> = Arc::from(req.member_id.as_str());
        self.join_seq += 1;
        self.last_join = Some(now);
        let joined = if self.members.contains_key(&id) {
            // A rejoin (the member lost its state): it starts over, and what it held is
            // free again.
            self.release_all(&id);
            let m = self.members.get_mut(&id).expect("checked");
            m.epoch = 0;
            m.previous_epoch = -1;
            m.revoke_deadline = None;
            false
        } else {
            if self.members.len() >= config.max_members_per_group {
                return Err(GroupError::TooManyMembers {
                    group_id: self.id.clone(),
                    max: config.max_members_per_group,
                });
            }
            self.members.insert(
                id.clone(),
                Member {
                    id: id.clone(),
                    client_id: String::new(),
                    client_host: String::new(),
                    epoch: 0,
                    previous_epoch: -1,
                    subscription: subscription.clone(),
                    resolved: BTreeSet::new(),
                    assignor: None,
                    join_seq: 0,
                    session_timeout: config.session_timeout,
                    session_deadline: now,
                    heartbeat_interval: config.heartbeat_interval,
                    revoke_deadline: None,
                    assigned: Assignment::new(),
                    pending_revocation: Assignment::new(),
                },
            );
            true
        };
        let seq = self.join_seq;
        let m = self.members.get_mut(&id).expect("present");
        m.join_seq = seq;
        self.update_member(&id, &req, now, config);
        let changed = self.recompute_inputs(topics);
        let bumped = joined || changed;
        if bumped {
            self.bump();
        }
        let outcome = self.reconcile(&id, &req.owned, now, config);
        Ok(HeartbeatResult {
            outcome,
            bumped,
            joined,
        })
    }

    fn stay(
        &mut self,
        req: MemberRequest,
        topics: &TopicsSnapshot,
        now: Instant,
        config: &GroupConfig,
    ) -> Result<HeartbeatResult, GroupError> {
        let Some(m) = self.members.get(req.member_id.as_str()) else {
            return Err(GroupError::UnknownMember {
                group_id: self.id.clone(),
                member_id: req.member_id.clone(),
            });
        };
        // Kafka's rule: the current epoch, or the previous one when the answer that
        // raised it was lost, provided the member owns nothing it should not.
        let lost_answer = req.member_epoch == m.previous_epoch
            && req
                .owned
                .iter()
                .all(|tp| m.assigned.contains(tp) || m.pending_revocation.contains(tp));
        if req.member_epoch != m.epoch && !lost_answer {
            return Err(GroupError::FencedMember {
                group_id: self.id.clone(),
                member_id: req.member_id.clone(),
                given: req.member_epoch,
                current: m.epoch,
            });
        }
        let id = m.id.clone();
        let subscription_changed = self.update_member(&id, &req, now, config);
        let changed = (subscription_changed || self.topics_version != topics.version)
            && self.recompute_inputs(topics);
        if changed {
            self.bump();
        }
        let outcome = self.reconcile(&id, &req.owned, now, config);
        Ok(HeartbeatResult {
            outcome,
            bumped: changed,
            joined: false,
        })
    }

    /// Applies the request's fields to the member; true if its subscription or assignor
    /// changed.
    fn update_member(
        &mut self,
        id: &Arc<str>,
        req: &MemberRequest,
        now: Instant,
        config: &GroupConfig,
    ) -> bool {
        let m = self.members.get_mut(id).expect("member exists");
        let mut changed = false;
        if let Some(sub) = &req.subscription
            && *sub != m.subscription
        {
            m.subscription = sub.clone();
            changed = true;
        }
        if req.member_epoch == 0 {
            // A join states the member's whole subscription, assignor included.
            changed |= m.assignor != req.assignor;
            m.assignor = req.assignor;
        } else if let Some(a) = req.assignor {
            changed |= m.assignor != Some(a);
            m.assignor = Some(a);
        }
        if m.client_id != req.client_id {
            m.client_id.clone_from(&req.client_id);
        }
        if m.client_host != req.client_host {
            m.client_host.clone_from(&req.client_host);
        }
        // A member that asks for no session timeout (every Kafka member:
        // ConsumerGroupHeartbeat carries none) runs with the group's, which `config`
        // holds (the group's own `consumer.session.timeout.ms`, else the coordinator's),
        // as of this heartbeat: a changed group config reaches live members.
        m.session_timeout = req.session_timeout.unwrap_or(config.session_timeout);
        m.session_deadline = now + m.session_timeout;
        changed
    }

    /// Re-resolves every subscription and the group assignor against `topics`; true if
    /// anything the assignor sees changed.
    fn recompute_inputs(&mut self, topics: &TopicsSnapshot) -> bool {
        let mut changed = false;
        let mut union: BTreeMap<Arc<str>, u32> = BTreeMap::new();
        for m in self.members.values_mut() {
            let resolved = m.subscription.resolve(topics);
            if resolved != m.resolved {
                m.resolved = resolved;
                changed = true;
            }
            for t in &m.resolved {
                union.insert(t.clone(), topics.partitions[t]);
            }
        }
        if union != self.subscribed {
            self.subscribed = union;
            changed = true;
        }
        let assignor = self
            .members
            .values()
            .filter_map(|m| m.assignor.map(|a| (m.join_seq, a)))
            .max_by_key(|(seq, _)| *seq)
            .map(|(_, a)| a);
        // With no member naming one, the default (or, while empty, the last one used).
        let assignor = match assignor {
            Some(a) => a,
            None if self.members.is_empty() => self.assignor,
            None => Assignor::default(),
        };
        if assignor != self.assignor {
            self.assignor = assignor;
            changed = true;
        }
        self.topics_version = topics.version;
        changed
    }

    /// A new group epoch and its target assignment.
    fn bump(&mut self) {
        self.epoch = self.epoch.saturating_add(1);
        self.target_epoch = self.epoch;
        self.rebalances += 1;
        let empty = Assignment::new();
        let specs: Vec<MemberSpec<'_>> = self
            .members
            .values()
            .map(|m| MemberSpec {
                id: &m.id,
                topics: &m.resolved,
                current: self.target.get(&m.id).unwrap_or(&empty),
            })
            .collect();
        self.target = assignor::assign(self.assignor, &specs, &self.subscribed);
    }

    fn release_all(&mut self, id: &Arc<str>) {
        let m = self.members.get_mut(id).expect("member exists");
        for tp in m.assigned.iter().chain(&m.pending_revocation) {
            if self.owners.get(tp) == Some(id) {
                self.owners.remove(tp);
            }
        }
        m.assigned.clear();
        m.pending_revocation.clear();
    }

    fn remove_member(&mut self, id: &str) {
        let Some((id, _)) = self.members.get_key_value(id) else {
            return;
        };
        let id = id.clone();
        self.release_all(&id);
        self.members.remove(&id);
        self.target.remove(&id);
    }

    /// Removes members whose session or revocation deadline has passed; returns their
    /// ids (the epoch is bumped once if any were removed).
    pub fn expire(&mut self, now: Instant, topics: &TopicsSnapshot) -> Vec<String> {
        let expired: Vec<Arc<str>> = self
            .members
            .values()
            .filter(|m| m.session_deadline <= now || m.revoke_deadline.is_some_and(|d| d <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.recompute_inputs(topics);
            self.bump();
        }
        expired.iter().map(|id| id.to_string()).collect()
    }

    /// Re-evaluates subscriptions after topics changed; true if the epoch was bumped.
    pub fn refresh_topics(&mut self, topics: &TopicsSnapshot) -> bool {
        if self.topics_version == topics.version {
            return false;
        }
        let changed = self.recompute_inputs(topics);
        if changed {
            self.bump();
        }
        changed
    }

    /// Moves member `id` towards its target (see the module docs) and answers it.
    fn reconcile(
        &mut self,
        id: &Arc<str>,
        owned: &Assignment,
        now: Instant,
        config: &GroupConfig,
    ) -> HeartbeatOutcome {
        let empty = Assignment::new();
        let target = self.target.get(id).unwrap_or(&empty);
        let m = self.members.get_mut(id).expect("member exists");
        // 1. Released: asked to go and no longer owned.
        let released: Vec<TopicPartition> = m
            .pending_revocation
            .iter()
            .filter(|tp| !owned.contains(*tp))
            .cloned()
            .collect();
        for tp in released {
            m.pending_revocation.remove(&tp);
            if self.owners.get(&tp) == Some(id) {
                self.owners.remove(&tp);
            }
        }
        if m.pending_revocation.is_empty() {
            m.revoke_deadline = None;
            // 3. Behind the target: revoke what is not in it.
            if m.epoch != self.target_epoch {
                let revoked: Vec<TopicPartition> = m.assigned.difference(target).cloned().collect();
                for tp in revoked {
                    m.assigned.remove(&tp);
                    if owned.contains(&tp) {
                        m.pending_revocation.insert(tp);
                    } else if self.owners.get(&tp) == Some(id) {
                        self.owners.remove(&tp);
                    }
                }
                if m.pending_revocation.is_empty() {
                    m.previous_epoch = m.epoch;
                    m.epoch = self.target_epoch;
                } else {
                    m.revoke_deadline = Some(now + config.rebalance_timeout);
                }
            }
            // 4. At the target epoch: take every free partition of the target.
            if m.epoch == self.target_epoch {
                for tp in target.difference(&m.assigned).cloned().collect::<Vec<_>>() {
                    if !self.owners.contains_key(&tp) {
                        self.owners.insert(tp.clone(), id.clone());
                        m.assigned.insert(tp);
                    }
                }
            }
        }
        let settled = m.pending_revocation.is_empty() && m.assigned == *target;
        // Another member may join any moment now: a settled member hears of it at its
        // next heartbeat, which must not be a whole interval away.
        let joining = self
            .last_join
            .is_some_and(|joined| now < joined + config.join_window);
        let normal = config.heartbeat_interval.min(m.session_timeout / 3);
        m.heartbeat_interval = if settled && !joining {
            normal
        } else {
            config.pending_heartbeat_interval.min(normal)
        };
        HeartbeatOutcome {
            member_id: id.to_string(),
            member_epoch: m.epoch,
            group_epoch: self.epoch,
            heartbeat_interval: m.heartbeat_interval,
            session_timeout: m.session_timeout,
            assignment: Some(to_map(&m.assigned)),
        }
    }

    /// Checks that every owned partition has exactly one owner and the owner map agrees
    /// with the members (for tests; cheap enough for debug assertions).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen: HashMap<&TopicPartition, &Arc<str>> = HashMap::new();
        for m in self.members.values() {
            if let Some(tp) = m.assigned.intersection(&m.pending_revocation).next() {
                return Err(format!("{tp:?} both assigned to and revoked from {}", m.id));
            }
            for tp in m.assigned.iter().chain(&m.pending_revocation) {
                if let Some(other) = seen.insert(tp, &m.id) {
                    return Err(format!("{tp:?} owned by both {other} and {}", m.id));
                }
                if self.owners.get(tp) != Some(&m.id) {
                    return Err(format!(
                        "{tp:?} held by {} but the owner map says {:?}",
                        m.id,
                        self.owners.get(tp)
                    ));
                }
            }
            if m.epoch > self.epoch {
                return Err(format!(
                    "member {} epoch {} > group epoch {}",
                    m.id, m.epoch, self.epoch
                ));
            }
        }
        if seen.len() != self.owners.len() {
            return Err(format!(
                "owner map has {} entries but members hold {}",
                self.owners.len(),
                seen.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
