//! Joining a classic group: JoinGroup (new, known and static members), the protocol
//! every member supports, and the rebalance's join phase up to its completion.

use super::*;

impl ClassicGroup {
    /// The protocols every member other than `except` supports.
    pub(super) fn common_protocols(&self, except: Option<&str>) -> Option<BTreeSet<&str>> {
        let mut common: Option<BTreeSet<&str>> = None;
        for (id, m) in &self.members {
            if Some(id.as_str()) == except {
                continue;
            }
            let names: BTreeSet<&str> = m.protocols.iter().map(|(n, _)| n.as_str()).collect();
            common = Some(match common {
                None => names,
                Some(c) => c.intersection(&names).copied().collect(),
            });
        }
        common
    }

    /// Whether a member (`except`: its id if it is one already) with this protocol
    /// type and protocols may be in the group.
    pub(super) fn supports(
        &self,
        req: &JoinGroup,
        except: Option<&str>,
    ) -> Result<(), ClassicError> {
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(ClassicError::InconsistentProtocol(
                "a member must name a protocol type and at least one protocol".to_string(),
            ));
        }
        let others = self.common_protocols(except);
        let Some(others) = others else {
            // The only member (or the first): it sets the group's protocol type.
            return Ok(());
        };
        if self.protocol_type.as_deref() != Some(req.protocol_type.as_str()) {
            return Err(ClassicError::InconsistentProtocol(format!(
                "the group's protocol type is {:?}, not {:?}",
                self.protocol_type.as_deref().unwrap_or(""),
                req.protocol_type
            )));
        }
        if !req
            .protocols
            .iter()
            .any(|(name, _)| others.contains(name.as_str()))
        {
            return Err(ClassicError::InconsistentProtocol(format!(
                "none of the member's protocols ({}) is supported by every member of the group \
                 ({})",
                req.protocols
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                others.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    /// Handles a JoinGroup parked as `waiter`. `new_member_id` is the id a new member
    /// gets (drawn by the caller). The replies may include the answer to `waiter` (or
    /// it comes from a later call, when the join phase ends) and answers to other
    /// members' parked requests.
    pub fn join(
        &mut self,
        req: JoinGroup,
        waiter: Waiter,
        new_member_id: String,
        now: Instant,
        config: &ClassicConfig,
    ) -> Vec<Reply> {
        let mut replies = Vec::new();
        let refuse = |e: ClassicError| vec![Reply::Join(waiter, Err(e))];
        if !req.member_id.is_empty()
            && let Err(e) = self.check_fenced(&req.member_id, req.group_instance_id.as_deref())
        {
            return refuse(e);
        }
        if req.member_id.is_empty() {
            if let Some(old) = req
                .group_instance_id
                .as_deref()
                .and_then(|i| self.static_member(i))
                .cloned()
            {
                // A known static member restarted: it takes its old place.
                if let Err(e) = self.supports(&req, Some(&old)) {
                    return refuse(e);
                }
                self.replace_static_member(
                    &old,
                    new_member_id,
                    req,
                    waiter,
                    now,
                    config,
                    &mut replies,
                );
                self.try_complete_join(now, &mut replies);
                return replies;
            }
            if let Err(e) = self.supports(&req, None) {
                return refuse(e);
            }
            if self.members.len() + self.pending.len() >= config.max_members {
                return refuse(ClassicError::TooManyMembers {
                    max: config.max_members,
                });
            }
            // A static member is not asked to join again with its id (Kafka's
            // doStaticNewMemberJoinGroup): its instance id identifies it.
            if req.require_known_member_id && req.group_instance_id.is_none() {
                self.pending.insert(
                    new_member_id.clone(),
                    Pending {
                        deadline: now + req.session_timeout,
                        session_timeout: req.session_timeout,
                    },
                );
                return vec![Reply::Join(
                    waiter,
                    Ok(JoinOutcome::MemberIdRequired {
                        member_id: new_member_id,
                    }),
                )];
            }
            self.add_member(new_member_id, req, waiter, now, config, &mut replies);
        } else if self.pending.contains_key(&req.member_id) {
            if let Err(e) = self.supports(&req, None) {
                return refuse(e);
            }
            let id = req.member_id.clone();
            self.add_member(id, req, waiter, now, config, &mut replies);
        } else if !self.members.contains_key(&req.member_id) {
            return refuse(ClassicError::UnknownMember);
        } else {
            if let Err(e) = self.supports(&req, Some(&req.member_id)) {
                return refuse(e);
            }
            let id = req.member_id.clone();
            let member = &self.members[&id];
            let same = member.protocols == req.protocols;
            match self.state {
                ClassicState::PreparingRebalance => {
                    self.update_member(&id, req, waiter, &mut replies);
                }
                ClassicState::CompletingRebalance if same => {
                    // The answer to its join was lost: the current generation again.
                    replies.push(Reply::Join(waiter, Ok(self.joined(&id))));
                }
                ClassicState::Stable if same && self.leader.as_deref() != Some(id.as_str()) => {
                    replies.push(Reply::Join(waiter, Ok(self.joined(&id))));
                }
                ClassicState::CompletingRebalance | ClassicState::Stable => {
                    // New metadata, or the leader (which may know of topic changes the
                    // metadata does not show): a new generation.
                    self.update_member(&id, req, waiter, &mut replies);
                    self.prepare_rebalance(now, config, &mut replies);
                }
                ClassicState::Empty => return refuse(ClassicError::UnknownMember),
            }
        }
        self.try_complete_join(now, &mut replies);
        replies
    }

    /// Static member `old` (its instance id given again with no member id: the consumer
    /// restarted) becomes member `new` with the request's metadata (Kafka's
    /// `updateStaticMemberAndRebalance`). Requests the old one left parked are answered
    /// FENCED_INSTANCE_ID. In a stable group whose protocol and the member's subscription
    /// stay the same, it is answered at once with the current generation and keeps its
    /// assignment; otherwise it waits in the join of a rebalance.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn replace_static_member(
        &mut self,
        old: &str,
        new: String,
        req: JoinGroup,
        waiter: Waiter,
        now: Instant,
        config: &ClassicConfig,
        replies: &mut Vec<Reply>,
    ) {
        let mut member = self.members.remove(old).expect("a member");
        let fenced = || ClassicError::FencedInstanceId {
            instance_id: req.group_instance_id.clone().unwrap_or_default(),
        };
        if let Some(w) = member.join_waiter.take() {
            replies.push(Reply::Join(w, Err(fenced())));
        }
        if let Some(w) = member.sync_waiter.take() {
            replies.push(Reply::Sync(w, Err(fenced())));
        }
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let before = member.metadata(&protocol);
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.heartbeat_deadline = now + member.session_timeout;
        let same_subscription = self.same_subscription(&before, &member.metadata(&protocol));
        self.members.insert(new.clone(), member);
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new.clone());
        }
        if self.pending_sync.remove(old) {
            self.pending_sync.insert(new.clone());
        }
        match self.state {
            ClassicState::Stable
                if same_subscription && self.select_protocol() == self.protocol_name =>
            {
                let mut outcome = self.joined(&new);
                if let JoinOutcome::Joined(answer) = &mut outcome {
                    // The leader keeps the group's assignment (KIP-814).
                    answer.skip_assignment = answer.leader == new;
                }
                replies.push(Reply::Join(waiter, Ok(outcome)));
            }
            ClassicState::PreparingRebalance => {
                self.members.get_mut(&new).expect("inserted").join_waiter = Some(waiter);
            }
            ClassicState::Stable | ClassicState::CompletingRebalance | ClassicState::Empty => {
                self.members.get_mut(&new).expect("inserted").join_waiter = Some(waiter);
                self.prepare_rebalance(now, config, replies);
            }
        }
    }

    /// Whether two metadata of the group's protocol subscribe to the same topics: for
    /// the consumer protocol, the topics (a restarted consumer's metadata differs in its
    /// owned partitions and generation, which do not call for a rebalance); otherwise
    /// the bytes.
    pub(super) fn same_subscription(&self, before: &Bytes, after: &Bytes) -> bool {
        if self.protocol_type.as_deref() == Some("consumer") {
            let topics = |b: &Bytes| {
                crate::group::consumer_protocol::subscribed_topics(b)
                    .map(|t| t.into_iter().collect::<BTreeSet<String>>())
            };
            if let (Some(b), Some(a)) = (topics(before), topics(after)) {
                return b == a;
            }
        }
        before == after
    }

    /// The join answer of member `id` for the current generation.
    pub(super) fn joined(&self, id: &str) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == id {
            let protocol = self.protocol_name.as_deref().unwrap_or("");
            self.members
                .iter()
                .map(|(mid, m)| {
                    (
                        mid.clone(),
                        m.group_instance_id.clone(),
                        m.metadata(protocol),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome::Joined(JoinAnswer {
            member_id: id.to_string(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            members,
            skip_assignment: false,
        })
    }

    pub(super) fn add_member(
        &mut self,
        id: String,
        req: JoinGroup,
        waiter: Waiter,
        now: Instant,
        config: &ClassicConfig,
        replies: &mut Vec<Reply>,
    ) {
        self.pending.remove(&id);
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        self.members.insert(
            id,
            Member {
                client_id: req.client_id,
                client_host: req.client_host,
                group_instance_id: req.group_instance_id,
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocols: req.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(waiter),
                sync_waiter: None,
                heartbeat_deadline: now + req.session_timeout,
            },
        );
        if let Some(delay) = &mut self.initial_delay {
            delay.new_member_added = true;
        }
        self.prepare_rebalance(now, config, replies);
    }

    pub(super) fn update_member(
        &mut self,
        id: &str,
        req: JoinGroup,
        waiter: Waiter,
        replies: &mut Vec<Reply>,
    ) {
        let member = self.members.get_mut(id).expect("a member");
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.group_instance_id = req.group_instance_id;
        if let Some(old) = member.join_waiter.replace(waiter) {
            // It joined again before the first join was answered: that one is over.
            replies.push(Reply::Join(old, Err(ClassicError::RebalanceInProgress)));
        }
    }

    /// Starts a rebalance unless one is under way (Kafka's `maybePrepareRebalance`).
    pub(super) fn prepare_rebalance(
        &mut self,
        now: Instant,
        config: &ClassicConfig,
        replies: &mut Vec<Reply>,
    ) {
        match self.state {
            ClassicState::PreparingRebalance => return,
            ClassicState::CompletingRebalance => {
                // Members waiting for the leader's assignment join again instead.
                for m in self.members.values_mut() {
                    m.assignment = Bytes::new();
                    if let Some(w) = m.sync_waiter.take() {
                        replies.push(Reply::Sync(w, Err(ClassicError::RebalanceInProgress)));
                    }
                }
            }
            ClassicState::Empty | ClassicState::Stable => {}
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let timeout = self.rebalance_timeout();
        if self.state == ClassicState::Empty && !config.initial_rebalance_delay.is_zero() {
            let delay = config
                .initial_rebalance_delay
                .min(timeout.max(Duration::from_millis(1)));
            self.initial_delay = Some(InitialDelay {
                remaining: timeout.saturating_sub(delay),
                new_member_added: false,
            });
            self.join_deadline = Some(now + delay);
        } else {
            self.initial_delay = None;
            self.join_deadline = Some(now + timeout);
        }
        self.state = ClassicState::PreparingRebalance;
    }

    /// Ends the join phase if every member has joined (not during the initial delay).
    pub(super) fn try_complete_join(&mut self, now: Instant, replies: &mut Vec<Reply>) {
        if self.state == ClassicState::PreparingRebalance
            && self.initial_delay.is_none()
            && self.pending.is_empty()
            && self.members.values().all(|m| m.join_waiter.is_some())
        {
            self.complete_join(now, replies);
        }
    }

    /// Ends the join phase: members that did not join are removed, and the others get
    /// the new generation (Kafka's `onCompleteJoin`).
    pub(super) fn complete_join(&mut self, now: Instant, replies: &mut Vec<Reply>) {
        let absent: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in absent {
            self.remove(&id, replies);
        }
        self.join_deadline = None;
        self.initial_delay = None;
        self.generation += 1;
        self.rebalances += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.state = ClassicState::Empty;
            return;
        }
        self.protocol_name = self.select_protocol();
        self.state = ClassicState::CompletingRebalance;
        self.pending_sync = self.members.keys().cloned().collect();
        self.sync_deadline = Some(now + self.rebalance_timeout());
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let answer = self.joined(&id);
            let m = self.members.get_mut(&id).expect("a member");
            m.heartbeat_deadline = now + m.session_timeout;
            if let Some(w) = m.join_waiter.take() {
                replies.push(Reply::Join(w, Ok(answer)));
            }
        }
    }

    /// The protocol every member supports that most members prefer (each votes for its
    /// first supported one); ties go to the name first in order.
    pub(super) fn select_protocol(&self) -> Option<String> {
        let common = self.common_protocols(None)?;
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| common.contains(n.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, v)| *v == best)
            .map(|(name, _)| name.to_string())
    }
}
