//! A classic group after the join phase: SyncGroup, Heartbeat, LeaveGroup, the commit
//! check, members removed (by a leave or the clock: sessions, rebalance and sync
//! timeouts), and the invariants the tests check after every event.

use super::*;

impl ClassicGroup {
    /// Removes member `id`, answering its parked requests UNKNOWN_MEMBER_ID.
    pub(super) fn remove(&mut self, id: &str, replies: &mut Vec<Reply>) {
        let Some(m) = self.members.remove(id) else {
            return;
        };
        if let Some(w) = m.join_waiter {
            replies.push(Reply::Join(w, Err(ClassicError::UnknownMember)));
        }
        if let Some(w) = m.sync_waiter {
            replies.push(Reply::Sync(w, Err(ClassicError::UnknownMember)));
        }
        self.pending_sync.remove(id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
        if self.leader.as_deref() == Some(id) {
            // Prefer a member that has joined this rebalance already.
            self.leader = self
                .members
                .iter()
                .find(|(_, m)| m.join_waiter.is_some())
                .or_else(|| self.members.iter().next())
                .map(|(id, _)| id.clone());
        }
    }

    /// Removes member `id` and moves the group on as its leaving requires.
    pub(super) fn remove_and_rebalance(
        &mut self,
        id: &str,
        now: Instant,
        config: &ClassicConfig,
        replies: &mut Vec<Reply>,
    ) {
        self.remove(id, replies);
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                self.prepare_rebalance(now, config, replies);
            }
            ClassicState::PreparingRebalance | ClassicState::Empty => {}
        }
        self.try_complete_join(now, replies);
    }

    /// Checks the member and generation of a request from a member.
    pub(super) fn check_member(
        &self,
        member_id: &str,
        generation: i32,
    ) -> Result<(), ClassicError> {
        if !self.members.contains_key(member_id) {
            return Err(ClassicError::UnknownMember);
        }
        if generation != self.generation {
            return Err(ClassicError::IllegalGeneration {
                given: generation,
                current: self.generation,
            });
        }
        Ok(())
    }

    pub(super) fn heard_from(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline = now + m.session_timeout;
        }
    }

    /// Handles a SyncGroup parked as `waiter`.
    pub fn sync(&mut self, req: SyncGroup, waiter: Waiter, now: Instant) -> Vec<Reply> {
        let refuse = |e: ClassicError| vec![Reply::Sync(waiter, Err(e))];
        if let Err(e) = self.check_fenced(&req.member_id, req.group_instance_id.as_deref()) {
            return refuse(e);
        }
        if let Err(e) = self.check_member(&req.member_id, req.generation) {
            return refuse(e);
        }
        for (given, ours, what) in [
            (&req.protocol_type, &self.protocol_type, "protocol type"),
            (&req.protocol_name, &self.protocol_name, "protocol"),
        ] {
            if let Some(given) = given
                && ours.as_deref() != Some(given.as_str())
            {
                return refuse(ClassicError::InconsistentProtocol(format!(
                    "the group's {what} is {:?}, not {given:?}",
                    ours.as_deref().unwrap_or("")
                )));
            }
        }
        match self.state {
            ClassicState::Empty => refuse(ClassicError::UnknownMember),
            ClassicState::PreparingRebalance => refuse(ClassicError::RebalanceInProgress),
            ClassicState::Stable => {
                self.pending_sync.remove(&req.member_id);
                if self.pending_sync.is_empty() {
                    self.sync_deadline = None;
                }
                self.heard_from(&req.member_id, now);
                vec![Reply::Sync(waiter, Ok(self.sync_answer(&req.member_id)))]
            }
            ClassicState::CompletingRebalance => {
                let mut replies = Vec::new();
                self.pending_sync.remove(&req.member_id);
                if self.pending_sync.is_empty() {
                    self.sync_deadline = None;
                }
                let member = self.members.get_mut(&req.member_id).expect("checked");
                if let Some(old) = member.sync_waiter.replace(waiter) {
                    replies.push(Reply::Sync(old, Err(ClassicError::RebalanceInProgress)));
                }
                if self.leader.as_deref() == Some(req.member_id.as_str()) {
                    let mut given: BTreeMap<String, Bytes> = req.assignments.into_iter().collect();
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        // A member the leader left out gets an empty assignment.
                        let assignment = given.remove(&id).unwrap_or_default();
                        let m = self.members.get_mut(&id).expect("a member");
                        m.assignment = assignment;
                    }
                    self.state = ClassicState::Stable;
                    let waiting: Vec<(String, Waiter)> = self
                        .members
                        .iter_mut()
                        .filter_map(|(id, m)| m.sync_waiter.take().map(|w| (id.clone(), w)))
                        .collect();
                    for (id, w) in waiting {
                        self.heard_from(&id, now);
                        replies.push(Reply::Sync(w, Ok(self.sync_answer(&id))));
                    }
                }
                replies
            }
        }
    }

    pub(super) fn sync_answer(&self, member_id: &str) -> SyncAnswer {
        SyncAnswer {
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.members[member_id].assignment.clone(),
        }
    }

    /// Handles a Heartbeat: REBALANCE_IN_PROGRESS while members are joining (join
    /// again), otherwise the session goes on.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ClassicError> {
        self.check_fenced(member_id, instance_id)?;
        self.check_member(member_id, generation)?;
        match self.state {
            ClassicState::Empty => Err(ClassicError::UnknownMember),
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                self.heard_from(member_id, now);
                Ok(())
            }
            ClassicState::PreparingRebalance => {
                self.heard_from(member_id, now);
                Err(ClassicError::RebalanceInProgress)
            }
        }
    }

    /// Handles a LeaveGroup of `member_id`, or (LeaveGroup v3+) of static member
    /// `instance_id`, whose member id may then be left empty; an instance id with another
    /// member id than its own is FENCED_INSTANCE_ID.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        config: &ClassicConfig,
        replies: &mut Vec<Reply>,
    ) -> Result<(), ClassicError> {
        let member_id = match instance_id {
            Some(instance) => match self.static_member(instance) {
                Some(current) if member_id.is_empty() || member_id == current => current.clone(),
                Some(_) => {
                    return Err(ClassicError::FencedInstanceId {
                        instance_id: instance.to_string(),
                    });
                }
                None => return Err(ClassicError::UnknownMember),
            },
            None => member_id.to_string(),
        };
        let member_id = member_id.as_str();
        if self.pending.remove(member_id).is_some() {
            self.try_complete_join(now, replies);
            return Ok(());
        }
        if !self.members.contains_key(member_id) {
            return Err(ClassicError::UnknownMember);
        }
        self.remove_and_rebalance(member_id, now, config, replies);
        Ok(())
    }

    /// Checks an offset commit of `member_id` at `generation` (a member's commit keeps
    /// its session going, as a heartbeat does).
    pub fn check_commit(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Result<(), ClassicError> {
        self.check_member(member_id, generation)?;
        if self.state == ClassicState::CompletingRebalance {
            // It has the new generation but not its assignment yet.
            return Err(ClassicError::RebalanceInProgress);
        }
        self.heard_from(member_id, now);
        Ok(())
    }

    /// Moves the group on as of `now`: issued member ids that were not used lapse,
    /// members whose session ended are removed, the join phase ends at its deadline, and
    /// members that did not send SyncGroup in time are removed.
    pub fn tick(&mut self, now: Instant, config: &ClassicConfig) -> Vec<Reply> {
        let mut replies = Vec::new();
        let before = self.pending.len();
        self.pending.retain(|_, p| p.deadline > now);
        if self.pending.len() != before {
            self.try_complete_join(now, &mut replies);
        }
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !m.exempt_from_session() && m.heartbeat_deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove_and_rebalance(&id, now, config, &mut replies);
        }
        if self.state == ClassicState::PreparingRebalance
            && self.join_deadline.is_some_and(|d| d <= now)
        {
            match self.initial_delay {
                Some(delay) if delay.new_member_added && !delay.remaining.is_zero() => {
                    let next = config.initial_rebalance_delay.min(delay.remaining);
                    self.initial_delay = Some(InitialDelay {
                        remaining: delay.remaining.saturating_sub(next),
                        new_member_added: false,
                    });
                    self.join_deadline = Some(now + next);
                }
                _ => self.complete_join(now, &mut replies),
            }
        }
        if self.sync_deadline.is_some_and(|d| d <= now) {
            self.sync_deadline = None;
            let late: Vec<String> = std::mem::take(&mut self.pending_sync).into_iter().collect();
            if matches!(
                self.state,
                ClassicState::CompletingRebalance | ClassicState::Stable
            ) && !late.is_empty()
            {
                for id in &late {
                    self.remove(id, &mut replies);
                }
                self.prepare_rebalance(now, config, &mut replies);
                self.try_complete_join(now, &mut replies);
            }
        }
        replies
    }

    /// The state machine's invariants; `Err` names the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        let state = self.state;
        if self.members.is_empty() != self.leader.is_none() {
            return Err(format!(
                "leader {:?} with {} members",
                self.leader,
                self.members.len()
            ));
        }
        if let Some(l) = &self.leader
            && !self.members.contains_key(l)
        {
            return Err(format!("leader {l} is not a member"));
        }
        match state {
            ClassicState::Empty if !self.members.is_empty() => {
                return Err("an Empty group has members".to_string());
            }
            ClassicState::CompletingRebalance | ClassicState::Stable if self.members.is_empty() => {
                return Err(format!("{state:?} without members"));
            }
            _ => {}
        }
        for (id, m) in &self.members {
            if m.join_waiter.is_some() && state != ClassicState::PreparingRebalance {
                return Err(format!("{id} waits in a join in {state:?}"));
            }
            if m.sync_waiter.is_some() && state != ClassicState::CompletingRebalance {
                return Err(format!("{id} waits in a sync in {state:?}"));
            }
            if let Some(p) = &self.protocol_name
                && matches!(
                    state,
                    ClassicState::CompletingRebalance | ClassicState::Stable
                )
                && !m.protocols.iter().any(|(n, _)| n == p)
            {
                return Err(format!("{id} does not support the group's protocol {p}"));
            }
            if self.pending.contains_key(id) {
                return Err(format!("{id} is both a member and pending"));
            }
        }
        if let Some(id) = self
            .pending_sync
            .iter()
            .find(|id| !self.members.contains_key(*id))
        {
            return Err(format!("{id} is pending sync but not a member"));
        }
        if state == ClassicState::PreparingRebalance && self.join_deadline.is_none() {
            return Err("a rebalance without a deadline".to_string());
        }
        Ok(())
    }
}
