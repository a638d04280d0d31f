//! The coordinator's API for the classic group protocol (Kafka's JoinGroup, SyncGroup,
//! Heartbeat and LeaveGroup): checks each request against the limits, runs it through
//! the group's state machine (`classic.rs`) under the shard's lock, and parks JoinGroup
//! and SyncGroup until the state machine answers them (the join phase ends, the leader
//! sends the assignment). A step that completes a generation (the leader's assignment
//! is in, a static member took its place again, the group emptied) writes the group's
//! classic record to `__consumer_offsets`, and a step of a rebalance (an id issued, a
//! member joined or removed, the join phase over) its rebalance record, before anyone
//! is answered, so a new coordinator knows every member id and generation a member was
//! told of; committed offsets go
//! through the durable commit path shared with KIP-848 members
//! ([`GroupCoordinator::commit_offsets`]).
//!
//! A group runs one protocol at a time: a classic JoinGroup to a group with KIP-848
//! members, or a KIP-848 join to a group with classic members, is
//! [`GroupError::InconsistentGroupProtocol`].

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::classic::{ClassicConfig, JoinGroup, JoinOutcome, Reply, SyncAnswer, SyncGroup};
use super::coordinator::GroupCoordinator;
use super::shard::{
    GroupEntry, Parked, ParkedAnswer, Scope, Shard, ShardState, admit_join, classic_error, entry,
};
use super::{
    GroupError, MAX_ASSIGNMENT_BYTES, MAX_GROUP_INSTANCE_ID_BYTES, MAX_PROTOCOL_METADATA_BYTES,
    MAX_PROTOCOL_NAME_CHARS, MAX_PROTOCOLS_PER_MEMBER, MAX_REBALANCE_TIMEOUT, validate_group_id,
};

impl GroupCoordinator {
    fn classic_config(&self) -> ClassicConfig {
        ClassicConfig {
            initial_rebalance_delay: self.config.initial_rebalance_delay,
            max_members: self.config.max_members_per_group,
        }
    }

    /// Checks a JoinGroup against the limits; cuts its rebalance timeout to
    /// [`MAX_REBALANCE_TIMEOUT`].
    fn check_join(&self, req: &mut JoinGroup) -> Result<(), GroupError> {
        validate_group_id(&req.group_id)?;
        let invalid = |why: String| Err(GroupError::InvalidRequest(why));
        let (min, max) = (
            self.config.min_session_timeout,
            self.config.max_session_timeout,
        );
        if !(min..=max).contains(&req.session_timeout) {
            return Err(GroupError::InvalidSessionTimeout {
                given_ms: i64::try_from(req.session_timeout.as_millis()).unwrap_or(i64::MAX),
                min_ms: min.as_millis(),
                max_ms: max.as_millis(),
            });
        }
        req.rebalance_timeout = req.rebalance_timeout.min(MAX_REBALANCE_TIMEOUT);
        if let Some(why) = super::client_fields_too_long(&req.client_id, &req.client_host) {
            return invalid(why);
        }
        if let Some(instance) = &req.group_instance_id
            && (instance.is_empty() || instance.len() > MAX_GROUP_INSTANCE_ID_BYTES)
        {
            return invalid(format!(
                "the group.instance.id is {} bytes; it must have 1 to \
                 {MAX_GROUP_INSTANCE_ID_BYTES}",
                instance.len()
            ));
        }
        if req.protocols.len() > MAX_PROTOCOLS_PER_MEMBER {
            return invalid(format!(
                "{} protocols; the limit is {MAX_PROTOCOLS_PER_MEMBER}",
                req.protocols.len()
            ));
        }
        if req.protocol_type.len() > MAX_PROTOCOL_NAME_CHARS {
            return invalid(format!(
                "the protocol type is {} bytes; the limit is {MAX_PROTOCOL_NAME_CHARS}",
                req.protocol_type.len()
            ));
        }
        for (name, metadata) in &req.protocols {
            if name.len() > MAX_PROTOCOL_NAME_CHARS {
                return invalid(format!(
                    "a protocol name is {} bytes; the limit is {MAX_PROTOCOL_NAME_CHARS}",
                    name.len()
                ));
            }
            if metadata.len() > MAX_PROTOCOL_METADATA_BYTES {
                return invalid(format!(
                    "the metadata of protocol {name:?} is {} bytes; the limit is \
                     {MAX_PROTOCOL_METADATA_BYTES}",
                    metadata.len()
                ));
            }
        }
        Ok(())
    }

    /// Handles a classic JoinGroup: answered once the group's join phase ends (at most
    /// the longest rebalance timeout of its members), or at once with
    /// [`JoinOutcome::MemberIdRequired`] for a new member of JoinGroup v4+.
    pub async fn join_group(&self, req: JoinGroup) -> Result<JoinOutcome, GroupError> {
        self.join_group_at(req, Instant::now()).await
    }

    /// [`join_group`](Self::join_group) at time `now` (the clock of
    /// [`expire_sessions`](Self::expire_sessions)).
    pub async fn join_group_at(
        &self,
        mut req: JoinGroup,
        now: Instant,
    ) -> Result<JoinOutcome, GroupError> {
        self.check_join(&mut req)?;
        let group_id = req.group_id.clone();
        let member_id = req.member_id.clone();
        let shard = self.shard(&group_id)?;
        let at_limit = self.group_count() >= self.config.max_groups;
        let config = self.classic_config();
        let answer = {
            let mut st = shard.state();
            if let Some(coordinator) = st.resigned {
                return Err(shard.not_coordinator(coordinator));
            }
            let created = !st.groups.contains_key(&group_id);
            admit_join(
                &st,
                &group_id,
                &member_id,
                at_limit.then_some(self.config.max_groups),
            )?;
            let waiter = st.next_waiter;
            st.next_waiter += 1;
            let (tx, rx) = oneshot::channel();
            st.parked.insert(
                waiter,
                Parked {
                    group_id: group_id.clone(),
                    member_id: member_id.clone(),
                    answer: ParkedAnswer::Join(tx),
                },
            );
            // Kafka's form: the client id, then a UUID.
            let new_member_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            let replies = {
                let e = entry(&mut st, &group_id);
                let before = e.classic.member_count();
                let replies = e.classic.join(req, waiter, new_member_id, now, &config);
                after_classic_change(e, before, now);
                if e.classic.has_member(&member_id) || e.classic.member_count() > before {
                    e.deleting = false;
                }
                replies
            };
            if created
                && st
                    .groups
                    .get(&group_id)
                    .is_some_and(|e| !e.classic.is_active() && e.offsets.is_empty())
            {
                // A refused join does not leave a group behind.
                st.groups.remove(&group_id);
            }
            update_deadline(&mut st, &group_id);
            (rx, replies)
        };
        let (answer, replies) = answer;
        // Its own answer, if among the replies, carries any failure.
        let _ = persist_then_deliver(&shard, &group_id, replies).await;
        self.parked_answer(&group_id, &member_id, answer).await
    }

    /// The answer to a parked request: the state machine's, or NOT_COORDINATOR when the
    /// shard resigned first (it stopped leading, or loads again). A sender dropped
    /// without an answer (the waiter was replaced) is the coordinator's error, else
    /// UNKNOWN_MEMBER_ID (the member joins again).
    async fn parked_answer<T>(
        &self,
        group_id: &str,
        member_id: &str,
        answer: oneshot::Receiver<Result<T, GroupError>>,
    ) -> Result<T, GroupError> {
        match answer.await {
            Ok(result) => result,
            Err(_) => {
                self.shard(group_id)?;
                Err(GroupError::UnknownMember {
                    group_id: group_id.to_string(),
                    member_id: member_id.to_string(),
                })
            }
        }
    }

    /// Handles a classic SyncGroup: the leader's carries the assignment; every member's
    /// is answered with its own assignment once the leader's has arrived.
    pub async fn sync_group(&self, req: SyncGroup) -> Result<SyncAnswer, GroupError> {
        self.sync_group_at(req, Instant::now()).await
    }

    /// [`sync_group`](Self::sync_group) at time `now`.
    pub async fn sync_group_at(
        &self,
        req: SyncGroup,
        now: Instant,
    ) -> Result<SyncAnswer, GroupError> {
        validate_group_id(&req.group_id)?;
        if req.assignments.len() > self.config.max_members_per_group {
            return Err(GroupError::InvalidRequest(format!(
                "{} assignments; a group has at most {} members",
                req.assignments.len(),
                self.config.max_members_per_group
            )));
        }
        if let Some((member, bytes)) = req
            .assignments
            .iter()
            .find(|(_, b)| b.len() > MAX_ASSIGNMENT_BYTES)
        {
            return Err(GroupError::InvalidRequest(format!(
                "the assignment of member {member:?} is {} bytes; the limit is \
                 {MAX_ASSIGNMENT_BYTES}",
                bytes.len()
            )));
        }
        let group_id = req.group_id.clone();
        let member_id = req.member_id.clone();
        let shard = self.shard(&group_id)?;
        let answer = {
            let mut st = shard.state();
            if let Some(coordinator) = st.resigned {
                return Err(shard.not_coordinator(coordinator));
            }
            if !st.groups.contains_key(&group_id) {
                return Err(GroupError::UnknownMember {
                    group_id,
                    member_id,
                });
            }
            let waiter = st.next_waiter;
            st.next_waiter += 1;
            let (tx, rx) = oneshot::channel();
            st.parked.insert(
                waiter,
                Parked {
                    group_id: group_id.clone(),
                    member_id: member_id.clone(),
                    answer: ParkedAnswer::Sync(tx),
                },
            );
            let replies = {
                let e = entry(&mut st, &group_id);
                e.classic.sync(req, waiter, now)
            };
            update_deadline(&mut st, &group_id);
            (rx, replies)
        };
        let (answer, replies) = answer;
        // The leader's assignment completes a generation: its record is durable before
        // any member hears of it (a member's own SyncGroup in a stable group waits for
        // the write that carried the generation, if it is still under way).
        let _ = persist_then_deliver(&shard, &group_id, replies).await;
        self.parked_answer(&group_id, &member_id, answer).await
    }

    /// Handles a classic Heartbeat: REBALANCE_IN_PROGRESS tells the member to join
    /// again.
    pub fn classic_heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        self.classic_heartbeat_at(group_id, member_id, instance_id, generation, Instant::now())
    }

    /// [`classic_heartbeat`](Self::classic_heartbeat) at time `now`.
    pub fn classic_heartbeat_at(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), GroupError> {
        validate_group_id(group_id)?;
        let shard = self.shard(group_id)?;
        let mut st = shard.state();
        let unknown = || GroupError::UnknownMember {
            group_id: group_id.to_string(),
            member_id: member_id.to_string(),
        };
        let e = st.groups.get_mut(group_id).ok_or_else(unknown)?;
        e.classic
            .heartbeat(member_id, instance_id, generation, now)
            .map_err(|err| classic_error(group_id, member_id, err).into())
    }

    /// Handles a classic LeaveGroup of `members` (each a member id, and from LeaveGroup
    /// v3 on the member's `group.instance.id`, with which the member id may be empty;
    /// one answer each, in order): the group rebalances without them. Answered once a
    /// group that emptied is written so.
    pub async fn leave_group(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.leave_group_at(group_id, members, Instant::now()).await
    }

    /// [`leave_group`](Self::leave_group) at time `now`.
    pub async fn leave_group_at(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: Instant,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        validate_group_id(group_id)?;
        let shard = self.shard(group_id)?;
        let config = self.classic_config();
        let unknown = |member_id: &str| GroupError::UnknownMember {
            group_id: group_id.to_string(),
            member_id: member_id.to_string(),
        };
        let (answers, replies) = {
            let mut st = shard.state();
            if !st.groups.contains_key(group_id) {
                return Ok(members.iter().map(|(m, _)| Err(unknown(m))).collect());
            }
            let mut replies = Vec::new();
            let e = st.groups.get_mut(group_id).expect("checked");
            let before = e.classic.member_count();
            let answers: Vec<Result<(), GroupError>> = members
                .iter()
                .map(|(m, instance)| {
                    e.classic
                        .leave(m, instance.as_deref(), now, &config, &mut replies)
                        .map_err(|err| classic_error(group_id, m, err).into())
                })
                .collect();
            after_classic_change(e, before, now);
            update_deadline(&mut st, group_id);
            (answers, replies)
        };
        persist_then_deliver(&shard, group_id, replies).await?;
        Ok(answers)
    }

    /// Moves every classic group of `st` on as of `now` (sessions, join and sync
    /// deadlines), delivering the answers that frees; returns the groups whose classic
    /// record changed (a group emptied), for the caller to write.
    pub(super) fn tick_classic(&self, st: &mut ShardState, now: Instant) -> Vec<String> {
        let config = self.classic_config();
        let mut replies = Vec::new();
        let mut changed = Vec::new();
        for (group_id, e) in st.groups.iter_mut() {
            if e.classic.next_deadline().is_none_or(|d| d > now) {
                continue;
            }
            let before = e.classic.member_count();
            replies.extend(e.classic.tick(now, &config));
            if e.classic.member_count() < before {
                tracing::info!(
                    group = group_id,
                    removed = before - e.classic.member_count(),
                    "classic members removed: session or rebalance timeout"
                );
            }
            after_classic_change(e, before, now);
            changed.push(group_id.clone());
        }
        st.deliver(replies);
        changed.retain(|g| st.membership_changed(g, &Scope::All));
        changed
    }
}

/// Writes what the state machine's last step changed in `group_id`'s classic record, or,
/// with nothing to write, waits until the write that last carried the group is durable;
/// then sends `replies`: a member is told of a generation only once a new coordinator
/// would know it too. If that fails (the shard resigned, or its write failed and it
/// loads again from its log), the requests are answered with the retriable error
/// instead, and the error is returned.
async fn persist_then_deliver(
    shard: &Arc<Shard>,
    group_id: &str,
    replies: Vec<Reply>,
) -> Result<(), GroupError> {
    let persisted = shard.persist(group_id, Scope::All).await;
    let mut st = shard.state();
    match persisted {
        Ok(()) => {
            st.deliver(replies);
            Ok(())
        }
        Err(e) => {
            let index = shard.index;
            st.fail(replies, || match &e {
                GroupError::NotCoordinator {
                    partition,
                    coordinator,
                } => GroupError::NotCoordinator {
                    partition: *partition,
                    coordinator: *coordinator,
                },
                _ => GroupError::CoordinatorLoading { partition: index },
            });
            Err(e)
        }
    }
}

/// After a classic change: the offsets retention clock starts when the group empties.
fn after_classic_change(e: &mut GroupEntry, members_before: usize, now: Instant) {
    if members_before > 0 && e.member_count() == 0 {
        e.idle_since = e.idle_since.max(now);
    }
    debug_assert_eq!(e.classic.check_invariants(), Ok(()));
}

/// Lowers the shard's next deadline to the group's next classic one.
fn update_deadline(st: &mut ShardState, group_id: &str) {
    if let Some(d) = st
        .groups
        .get(group_id)
        .and_then(|e| e.classic.next_deadline())
    {
        st.next_deadline = Some(st.next_deadline.map_or(d, |n| n.min(d)));
    }
}
