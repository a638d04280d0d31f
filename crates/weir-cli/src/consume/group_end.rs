//! When `weir consume --group` without `--follow` is done ([`super::GROUP_END`]): its own
//! partitions are read to their end, and no partition of its topics with records left is
//! held by a member that stopped answering.
//!
//! A consumer that crashed without leaving (killed, its machine lost) stays a member until
//! its session times out (45 s by default) and keeps its partitions meanwhile, so a
//! command started to drain the group would otherwise be assigned nothing, print nothing
//! and succeed with the group's lag untouched. Other members' partitions are theirs to
//! read while those members answer; what tells a live member from a crashed one is
//! `DescribeGroup`'s time since each member's last heartbeat:
//!
//! - **alive**: seen heartbeating (its time since the last heartbeat went down between
//!   two looks);
//! - **silent**: not heard from for more than two heartbeat intervals and a second
//!   ([`GroupMemberInfo::is_silent`]);
//! - undecided until one of those, at most about two heartbeat intervals.
//!
//! The command waits for partitions held by silent members (they come to it when the
//! broker removes the member, and it reads them) for at most `--wait`, saying so on
//! stderr, and fails naming them with their lag if they are still held then (or at once
//! when the members' sessions end after that). Partitions meant for it that another
//! member is still releasing, and partitions nobody holds yet, are waited for the same
//! way.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;
use weir_client::connection::human_duration;
use weir_client::{
    Admin, GroupConsumer, GroupInfo, GroupMemberInfo, IsolationLevel, TopicPartition,
};

use super::high_watermarks;

/// How long nothing may happen before the command decides it reached the end of the log.
pub const GROUP_END_IDLE: Duration = Duration::from_secs(1);
/// Shortest time between two looks at the group (`DescribeGroup`) while waiting.
const DESCRIBE_INTERVAL: Duration = Duration::from_millis(500);
/// A member's time since its last heartbeat must drop by more than this between two
/// looks to count as a heartbeat (the two looks' round trips differ a little).
const HEARTBEAT_SEEN_MARGIN: Duration = Duration::from_millis(250);
/// Added to the time it takes to tell a live member from a silent one (two heartbeat
/// intervals and a second), before anything still undecided is reported.
const DECIDE_SLACK: Duration = Duration::from_secs(2);

/// Tells when a group member reached the end of the log (see the module docs).
pub struct EndOfLog {
    /// `--wait`.
    wait: Duration,
    /// `--isolation`: under read committed the end is the last stable offset.
    isolation: IsolationLevel,
    /// High watermark of each assigned partition when it was assigned or last checked.
    marks: HashMap<TopicPartition, i64>,
    assignment: Vec<TopicPartition>,
    /// When a record last arrived or the assignment last changed.
    last_activity: Instant,
    last_described: Option<Instant>,
    /// Each member's time since its last heartbeat at the last look, and when that was.
    seen: HashMap<String, (Instant, Duration)>,
    /// Members seen heartbeating.
    alive: HashSet<String>,
    /// Since when the command has its own partitions read and waits for others.
    waiting_since: Option<Instant>,
    /// Whether it said on stderr what it waits for.
    told: bool,
}

/// A partition with records left that this command waits for.
struct Blocker<'a> {
    partition: TopicPartition,
    lag: i64,
    holder: Option<&'a GroupMemberInfo>,
    /// Meant for this command (its target), not yet released to it.
    for_me: bool,
}

impl EndOfLog {
    pub fn new(wait: Duration, isolation: IsolationLevel) -> EndOfLog {
        EndOfLog {
            wait,
            isolation,
            marks: HashMap::new(),
            assignment: Vec::new(),
            last_activity: Instant::now(),
            last_described: None,
            seen: HashMap::new(),
            alive: HashSet::new(),
            waiting_since: None,
            told: false,
        }
    }

    /// True once done; an error (the command fails) if partitions stay held by members
    /// that do not answer.
    pub async fn reached(
        &mut self,
        admin: &Admin,
        group: &str,
        topics: &[String],
        consumer: &GroupConsumer,
        got_records: bool,
    ) -> anyhow::Result<bool> {
        let now = Instant::now();
        if got_records {
            self.last_activity = now;
            self.waiting_since = None;
        }
        let assignment = consumer.assignment();
        if assignment != self.assignment {
            self.last_activity = now;
            self.waiting_since = None;
            self.marks.retain(|tp, _| assignment.contains(tp));
            let new: Vec<TopicPartition> = assignment
                .iter()
                .filter(|tp| !self.marks.contains_key(*tp))
                .cloned()
                .collect();
            self.marks
                .extend(high_watermarks(admin, &new, self.isolation).await?);
            self.assignment = assignment;
        }
        if consumer.member_epoch() <= 0
            || now.duration_since(self.last_activity) < GROUP_END_IDLE
            || self.behind(consumer)
            || self
                .last_described
                .is_some_and(|at| now.duration_since(at) < DESCRIBE_INTERVAL)
        {
            return Ok(false);
        }
        // Caught up with the marks: look again, records may have come since, and ask
        // what the rest of the group holds.
        self.last_described = Some(now);
        self.marks = high_watermarks(admin, &self.assignment, self.isolation).await?;
        let info = admin
            .describe_group(group)
            .await
            .with_context(|| format!("describing group {group}"))?;
        self.observe(&info.members, Instant::now());
        let me = consumer.member_id();
        let Some(mine) = info.members.iter().find(|m| m.member_id == me) else {
            return Ok(false);
        };
        if mine.assignment != self.assignment || self.behind(consumer) {
            self.last_activity = now;
            return Ok(false);
        }
        let blockers = self.blockers(&info, mine, topics);
        if blockers.is_empty() {
            return Ok(true);
        }
        let since = *self.waiting_since.get_or_insert(now);
        let silent: Vec<&Blocker<'_>> = blockers
            .iter()
            .filter(|b| b.holder.is_some_and(GroupMemberInfo::is_silent))
            .collect();
        let give_up = since + self.wait;
        let decided = since + decide_time(&blockers);
        let hopeless = silent.len() == blockers.len()
            && silent
                .iter()
                .all(|b| b.holder.is_some_and(|m| now + m.session_left() > give_up));
        if (silent.len() == blockers.len() && (now >= give_up || hopeless))
            || now >= give_up.max(decided)
        {
            let all: Vec<&Blocker<'_>> = blockers.iter().collect();
            anyhow::bail!(
                "partitions of group {group} with records left are held by members that do not \
                 answer: {}; their records were not read. Run again once the broker removed \
                 those members (when their sessions end), or wait longer with --wait",
                describe(&all)
            );
        }
        if !silent.is_empty() && !self.told {
            self.told = true;
            eprintln!(
                "waiting up to {} (--wait) for partitions held by members that stopped \
                 answering: {}",
                human_duration(self.wait.saturating_sub(now.duration_since(since))),
                describe(&silent)
            );
        }
        Ok(false)
    }

    fn behind(&self, consumer: &GroupConsumer) -> bool {
        self.assignment.iter().any(|tp| {
            let mark = self.marks.get(tp).copied().unwrap_or(0);
            consumer
                .position(&tp.topic, tp.partition)
                .is_none_or(|position| position < mark)
        })
    }

    /// Records each member's time since its last heartbeat; one that went down (more than
    /// the margin) since the last look heartbeated in between.
    fn observe(&mut self, members: &[GroupMemberInfo], at: Instant) {
        let mut seen = HashMap::with_capacity(members.len());
        for m in members {
            if let Some((then, since)) = self.seen.get(&m.member_id)
                && m.since_heartbeat + HEARTBEAT_SEEN_MARGIN < *since + at.duration_since(*then)
            {
                self.alive.insert(m.member_id.clone());
            }
            seen.insert(m.member_id.clone(), (at, m.since_heartbeat));
        }
        self.alive.retain(|id| seen.contains_key(id));
        self.seen = seen;
    }

    /// What this command still waits for: partitions meant for it that it does not hold
    /// yet, and partitions of its topics with records left that no live member holds.
    fn blockers<'a>(
        &self,
        info: &'a GroupInfo,
        mine: &GroupMemberInfo,
        topics: &[String],
    ) -> Vec<Blocker<'a>> {
        info.offsets
            .iter()
            .filter(|o| topics.contains(&o.topic))
            .filter_map(|o| {
                let partition = TopicPartition::new(o.topic.as_str(), o.partition);
                if o.member_id.as_deref() == Some(mine.member_id.as_str()) {
                    return None;
                }
                let for_me = mine.target_assignment.contains(&partition);
                let holder = o
                    .member_id
                    .as_deref()
                    .and_then(|id| info.members.iter().find(|m| m.member_id == id));
                // Seen heartbeating, and not silent since (a member may crash while this
                // command waits).
                let theirs =
                    holder.is_some_and(|m| self.alive.contains(&m.member_id) && !m.is_silent());
                let wait = for_me || (o.lag > 0 && !theirs);
                wait.then_some(Blocker {
                    partition,
                    lag: o.lag.max(0),
                    holder,
                    for_me,
                })
            })
            .collect()
    }
}

/// How long after the wait started every holder is known alive or silent: two of its
/// heartbeat intervals and a second after its last heartbeat, plus slack.
fn decide_time(blockers: &[Blocker<'_>]) -> Duration {
    blockers
        .iter()
        .filter_map(|b| b.holder)
        .map(|m| m.heartbeat_interval * 2 + Duration::from_secs(1))
        .max()
        .unwrap_or_default()
        + DECIDE_SLACK
}

/// `t/0 (lag 1000) held by member M (weir-cli at 10.0.0.5), last heard from 8 s ago, its
/// session ends in 37 s; ...`
fn describe(blockers: &[&Blocker<'_>]) -> String {
    let mut text = String::new();
    for (i, b) in blockers.iter().enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        let _ = write!(text, "{} (lag {})", b.partition, b.lag);
        match b.holder {
            Some(m) => {
                let _ = write!(
                    text,
                    " held by member {} ({} at {}), last heard from {} ago",
                    m.member_id,
                    m.client_id,
                    m.client_host,
                    human_duration(round_to_seconds(m.since_heartbeat))
                );
                if m.is_silent() {
                    let _ = write!(
                        text,
                        ", its session ends in {}",
                        human_duration(round_to_seconds(m.session_left()))
                    );
                }
            }
            None => text.push_str(" held by no member yet"),
        }
        if b.for_me {
            text.push_str(", assigned to this command once released");
        }
    }
    text
}

/// Whole seconds from a second up (a person does not need the milliseconds).
fn round_to_seconds(d: Duration) -> Duration {
    if d < Duration::from_secs(1) {
        d
    } else {
        Duration::from_secs(d.as_secs())
    }
}
