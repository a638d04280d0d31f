//! `weir bench group-join`: how long a group takes to settle when a member joins, and
//! when it leaves again. `--members` members form a group on a topic of `--partitions`
//! partitions; then, `--rounds` times, one more member joins (timed from its `subscribe`
//! until the group is settled with it: every partition held once, shares even, broker
//! state `stable`) and closes (timed from `close` until the others hold everything
//! again). The topic needs no records: only ownership is watched.
//!
//! Settled members hear of a change at their next heartbeat, so each step takes up to
//! one heartbeat interval plus the hand-over (release, then the new owner's next
//! heartbeat at the short pending interval, then positioning).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_client::{Admin, GroupConsumer, GroupConsumerConfig};

use super::{
    Board, JoinConfig, POLL_MAX_RECORDS, POLL_WAIT, Spread, Tracker, delete_groups, join_member,
    print, run_id, spawn_member, wait_settled,
};
use crate::bench::{Progress, ensure_topic_named};

/// The goal: join to stable within this plus one heartbeat interval.
const GOAL_BEYOND_HEARTBEAT: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize)]
struct JoinReport {
    scenario: &'static str,
    topic: String,
    partitions: u32,
    /// Members before the extra one joins.
    members: u32,
    rounds: u32,
    group_id: String,
    /// The interval settled members heartbeat at (not read from the broker: see
    /// `heartbeat_interval_from`).
    heartbeat_interval_ms: u64,
    heartbeat_interval_from: &'static str,
    session_timeout_ms: Option<u64>,
    /// Joins and leaves came after a random pause below one heartbeat interval (else
    /// right after the group settled: the worst case).
    jitter: bool,
    /// Seed of the pauses.
    jitter_seed: u64,
    /// From the first member's subscribe until the first `--members` were settled.
    formation_ms: f64,
    /// From the joining member's subscribe until the group was settled with it.
    join_to_stable: Spread,
    /// From the joining member's subscribe until it held its first partition.
    join_to_first_partition: Spread,
    /// From the last revocation a settled member saw (the answer to its first heartbeat
    /// after the join) until stable: the hand-over, without the wait for that heartbeat.
    handover: Spread,
    /// From the joining member's close until the others held everything again.
    leave_to_stable: Spread,
    /// Goal: every join to stable within 1 s plus one heartbeat interval.
    goal_ms: f64,
    goal_met: bool,
    /// Partitions assigned to a member while another held them (must be 0).
    double_owned: u64,
    /// Partitions members lost (fenced or expired; should be 0).
    lost: u64,
}

/// A member polling in its own task until told to stop, then closing.
struct Running {
    slot: usize,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Connects a member (not yet joined) whose listener reports to `board`.
    async fn connect(
        config: &JoinConfig,
        group_id: &str,
        slot: usize,
        board: &Arc<watch::Sender<Board>>,
    ) -> anyhow::Result<GroupConsumer> {
        let mut consumer = GroupConsumer::connect(GroupConsumerConfig {
            brokers: config.brokers.clone(),
            timeouts: config.timeouts,
            tls: config.tls.clone(),
            group_id: group_id.to_owned(),
            client_id: format!("weir-bench-member-{slot}"),
            session_timeout: config.session_timeout,
            ..GroupConsumerConfig::default()
        })
        .await
        .with_context(|| format!("connecting member {slot}"))?;
        consumer.set_rebalance_listener(Tracker::listener(slot, &config.topic, board));
        Ok(consumer)
    }

    /// Joins (subscribes) and polls from a task of its own.
    fn start(
        mut consumer: GroupConsumer,
        topic: &str,
        slot: usize,
        board: &Arc<watch::Sender<Board>>,
    ) -> anyhow::Result<Running> {
        consumer
            .subscribe([topic])
            .with_context(|| format!("subscribing member {slot}"))?;
        let (stop, stopped) = watch::channel(false);
        let task = spawn_member(board, poll_until_stopped(consumer, stopped, slot));
        Ok(Running { slot, stop, task })
    }

    /// Stops polling and closes the member (commit, leave); waits for it.
    async fn finish(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        join_member(self.slot, self.task).await
    }
}

async fn poll_until_stopped(
    mut consumer: GroupConsumer,
    mut stop: watch::Receiver<bool>,
    slot: usize,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            polled = consumer.poll(POLL_MAX_RECORDS, POLL_WAIT) => {
                polled.with_context(|| format!("member {slot} polling"))?;
            }
        }
    }
    consumer
        .close()
        .await
        .with_context(|| format!("closing member {slot}"))
}

/// Runs the scenario.
pub(super) async fn run(config: &JoinConfig) -> anyhow::Result<()> {
    let admin = Admin::connect_with(
        &config.brokers,
        weir_client::ConnectOptions {
            timeouts: config.timeouts,
            tls: config.tls.clone(),
        },
    )
    .await
    .context("connecting to the broker")?;
    let partitions =
        ensure_topic_named(&admin, &config.topic, config.partitions, &HashMap::new()).await?;
    anyhow::ensure!(
        partitions > config.members,
        "topic {} has {partitions} partition(s): the joining member would get none; use \
         another --topic or fewer --members",
        config.topic
    );
    let group_id = format!("weir-bench-join-{}", run_id());
    let joiner = config.members as usize;
    let settled: Vec<usize> = (0..joiner).collect();
    let with_joiner: Vec<usize> = (0..=joiner).collect();
    let board = Arc::new(watch::Sender::new(Board::new(joiner + 1)));

    let started = Instant::now();
    let mut members = Vec::with_capacity(joiner);
    for slot in 0..joiner {
        let consumer = Running::connect(config, &group_id, slot, &board).await?;
        members.push(Running::start(consumer, &config.topic, slot, &board)?);
    }
    wait_settled(
        &board,
        &admin,
        &group_id,
        &settled,
        partitions,
        config.settle_timeout,
        "forming the group",
    )
    .await?;
    let formation = started.elapsed();

    let mut join_to_stable = Vec::new();
    let mut join_to_first = Vec::new();
    let mut handover = Vec::new();
    let mut leave_to_stable = Vec::new();
    let seed = jitter_seed();
    let mut pauses = Pauses::new(seed, config.heartbeat_interval);
    let progress = Progress::start("join/leave rounds", Some(config.rounds.into()));
    for round in 1..=config.rounds {
        let consumer = Running::connect(config, &group_id, joiner, &board).await?;
        board.send_modify(|b| {
            b.first_assigned[joiner] = None;
            b.revoked_at.fill(None);
        });
        if config.jitter {
            tokio::time::sleep(pauses.next()).await;
        }
        let joined = Instant::now();
        let running = Running::start(consumer, &config.topic, joiner, &board)?;
        wait_settled(
            &board,
            &admin,
            &group_id,
            &with_joiner,
            partitions,
            config.settle_timeout,
            &format!("round {round}, member {joiner} joining"),
        )
        .await?;
        let stable = Instant::now();
        join_to_stable.push(stable.duration_since(joined));
        let (first, last_revoked) = {
            let b = board.borrow();
            (
                b.first_assigned[joiner],
                b.revoked_at[..joiner].iter().flatten().max().copied(),
            )
        };
        join_to_first.push(first.map_or(Duration::ZERO, |at| at.duration_since(joined)));
        handover.push(last_revoked.map_or(Duration::ZERO, |at| stable.duration_since(at)));

        if config.jitter {
            tokio::time::sleep(pauses.next()).await;
        }
        let leaving = Instant::now();
        let closed = tokio::spawn(running.finish());
        wait_settled(
            &board,
            &admin,
            &group_id,
            &settled,
            partitions,
            config.settle_timeout,
            &format!("round {round}, member {joiner} leaving"),
        )
        .await?;
        leave_to_stable.push(leaving.elapsed());
        closed
            .await
            .context("the closing member's task failed")?
            .with_context(|| format!("round {round}"))?;
        progress.done.store(round.into(), Ordering::Relaxed);
    }
    progress.finish();
    for member in members {
        member.finish().await?;
    }
    delete_groups(&admin, std::slice::from_ref(&group_id)).await;

    let (double_owned, lost) = {
        let b = board.borrow();
        (b.double_owned, b.lost)
    };
    let goal = GOAL_BEYOND_HEARTBEAT + config.heartbeat_interval;
    let join = Spread::of(&join_to_stable);
    let report = JoinReport {
        scenario: "group-join",
        topic: config.topic.clone(),
        partitions,
        members: config.members,
        rounds: config.rounds,
        group_id,
        heartbeat_interval_ms: config.heartbeat_interval.as_millis() as u64,
        heartbeat_interval_from: if config.session_timeout.is_some() {
            "--expect-heartbeat-ms capped at --session-timeout / 3"
        } else {
            "--expect-heartbeat-ms"
        },
        session_timeout_ms: config.session_timeout.map(|d| d.as_millis() as u64),
        jitter: config.jitter,
        jitter_seed: seed,
        formation_ms: formation.as_secs_f64() * 1e3,
        goal_ms: goal.as_secs_f64() * 1e3,
        goal_met: join.max_ms <= goal.as_secs_f64() * 1e3 && double_owned == 0,
        join_to_stable: join,
        join_to_first_partition: Spread::of(&join_to_first),
        handover: Spread::of(&handover),
        leave_to_stable: Spread::of(&leave_to_stable),
        double_owned,
        lost,
    };
    print(config.format, &report, &text(&report))
}

fn text(r: &JoinReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "group-join: {} member(s) + 1 joining and leaving, topic {} ({} partitions), {} round(s)",
        r.members, r.topic, r.partitions, r.rounds
    );
    let _ = writeln!(
        out,
        "  group of {} settled {:.0} ms after the first subscribe",
        r.members, r.formation_ms
    );
    let _ = writeln!(
        out,
        "  join -> stable:  p50 {:.0} ms, max {:.0} ms (joiner's first partition: p50 {:.0} ms, max {:.0} ms)",
        r.join_to_stable.p50_ms,
        r.join_to_stable.max_ms,
        r.join_to_first_partition.p50_ms,
        r.join_to_first_partition.max_ms
    );
    let _ = writeln!(
        out,
        "  hand-over (last revocation seen -> stable): p50 {:.0} ms, max {:.0} ms",
        r.handover.p50_ms, r.handover.max_ms
    );
    let _ = writeln!(
        out,
        "  leave -> stable: p50 {:.0} ms, max {:.0} ms",
        r.leave_to_stable.p50_ms, r.leave_to_stable.max_ms
    );
    let rounds: Vec<String> = r
        .join_to_stable
        .all_ms
        .iter()
        .zip(&r.leave_to_stable.all_ms)
        .map(|(j, l)| format!("{j:.0}/{l:.0}"))
        .collect();
    let _ = writeln!(
        out,
        "  rounds (join/leave ms): {} ({})",
        rounds.join(" "),
        if r.jitter {
            "each after a random pause below one heartbeat interval"
        } else {
            "each right after the group settled: the worst phase"
        }
    );
    let _ = writeln!(
        out,
        "  heartbeat interval {} ms ({}); goal join -> stable <= 1 s + one interval = {:.0} ms: {}",
        r.heartbeat_interval_ms,
        r.heartbeat_interval_from,
        r.goal_ms,
        if r.goal_met { "met" } else { "NOT met" }
    );
    let _ = writeln!(
        out,
        "  partitions owned by two members at once: {}; partitions lost: {}",
        r.double_owned, r.lost
    );
    out
}

/// A seed for the pauses, from the clock.
fn jitter_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1
}

/// Random pauses below one heartbeat interval (xorshift64*: no dependency for it).
struct Pauses {
    state: u64,
    below: Duration,
}

impl Pauses {
    fn new(seed: u64, below: Duration) -> Pauses {
        Pauses {
            state: seed.max(1),
            below,
        }
    }

    fn next(&mut self) -> Duration {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        // The top 53 bits as a fraction in [0, 1).
        let fraction = (r >> 11) as f64 / (1u64 << 53) as f64;
        self.below.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_stay_below_the_interval_and_spread() {
        let interval = Duration::from_millis(3000);
        let mut pauses = Pauses::new(42, interval);
        let drawn: Vec<Duration> = (0..1000).map(|_| pauses.next()).collect();
        assert!(drawn.iter().all(|d| *d < interval));
        let low = drawn.iter().filter(|d| **d < interval / 2).count();
        assert!((400..600).contains(&low), "{low}");
    }
}
