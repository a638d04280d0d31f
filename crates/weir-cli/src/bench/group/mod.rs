//! `weir bench group-*`: consumer-group scenarios against a running broker, one file
//! each: `join.rs` (how long a joining or leaving member takes to settle the group),
//! `consume.rs` (read throughput of one member against several, every record checked)
//! and `commit.rs` (offset commits per second and their latency).
//!
//! Every member is a [`weir_client::GroupConsumer`] of its own in this process, with its
//! own connections, driven by its own task. This file holds the flags, their checked
//! configurations, and what the scenarios share: a board of which member holds which
//! partition (fed by each member's rebalance listener), the wait for a settled group,
//! group ids, and percentiles. Every wait has a deadline and fails saying what it saw.

mod commit;
mod consume;
mod join;
mod queue;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio::sync::watch;
use weir_client::connection::Timeouts;
use weir_client::{Admin, GroupState, Rebalance, RebalanceListener};

use super::{MAX_RECORD_BYTES, parse_size};
use crate::UsageError;
use crate::brokers::BrokerArgs;
use crate::output::{Format, key_value_map, parse_duration, parse_key_value};

/// Most members `group-join` and `group-consume` run (each has two connections and a
/// task in this process).
const MAX_MEMBERS: u32 = 64;
/// Most concurrent committers of `group-commit` (one group and two connections each).
const MAX_COMMITTERS: u32 = 512;
/// Most records a member takes per poll.
const POLL_MAX_RECORDS: usize = 16 * 1024;
/// How long one poll waits for records: also how often an idle member looks at its stop
/// signal (a stop interrupts a poll anyway).
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How often the broker's view of a group is asked for while waiting for `stable`.
const DESCRIBE_INTERVAL: Duration = Duration::from_millis(10);
/// Longest a member may take to close (commit and leave) before the run fails.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);

const JOIN_NOTES: &str = "\
Method: --members members join a fresh group subscribed to --topic and settle: every
partition held by exactly one member, each holding P/N or P/N+1 (as their rebalance
listeners report) and the broker's DescribeGroup state `stable`. Then, each round, one
more member joins: join -> stable runs from its subscribe call until the group has settled
again with it; then it closes (commit, leave): leave -> stable runs until the others hold
everything again. Settled members learn of a change at their next heartbeat, so expect up
to one heartbeat interval per step (hand-over: from the last revocation a member saw to
stable, the part that does not wait for a heartbeat); --session-timeout lowers the
interval the broker gives (at most a third of the session).

Example:
  weir bench group-join --partitions 100 --members 3 --rounds 10 --format json | tail -1";

const CONSUME_NOTES: &str = "\
Method: the topic is filled to --count records if it holds fewer (not timed). A fresh
group of 1 member, then one of --members members, joins starting at the end of the log
(nothing to read while it forms); once the group is settled each member seeks its
partitions to the log start and the clock starts. It stops when every record between log
start and high watermark has arrived; each is counted once (duplicates are counted and
reported, a missing record fails the run after --stall-timeout).

Example:
  weir bench group-consume --partitions 12 --record-size 1KiB --count 2000000 --members 3";

const COMMIT_NOTES: &str = "\
Method: for each C of --committers, C groups of one member each join (subscribed to
--topic, one partition); then every member loops for --duration: seek to the next offset,
commit_sync (one offset per commit, durable on the broker). With --placement same every
group id is chosen to hash to the same __consumer_offsets partition (Kafka's rule,
abs(Java String.hashCode(group)) % partitions, checked against the broker's answer), so
all commits go through one coordinator shard and one log; `hashed` spreads them.

Example:
  weir bench group-commit --committers 1,16,64 --duration 5s";

/// `weir bench group-join`.
#[derive(Debug, Args)]
#[command(after_help = JOIN_NOTES)]
pub(crate) struct JoinArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Topic the group subscribes to; created if missing.
    #[arg(long, short = 't', default_value = "weir-bench-group-join")]
    topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, short = 'p', default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    partitions: u32,
    /// Members of the group before the extra one joins.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=MAX_MEMBERS as i64 - 1))]
    members: u32,
    /// Times the extra member joins and leaves.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Heartbeat interval the broker gives settled members (its
    /// group_heartbeat_interval_ms), for the report and the goal: the client does not
    /// expose the broker's answer.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..))]
    expect_heartbeat_ms: u64,
    /// Session timeout the members ask for (e.g. 3s); the broker caps the heartbeat
    /// interval at a third of it [default: the broker's].
    #[arg(long, value_parser = parse_duration)]
    session_timeout: Option<Duration>,
    /// Before each join and each leave, wait a random time below one heartbeat interval
    /// (not timed), so that they land at random points of the members' heartbeat cycles;
    /// with false they come right after the group settled: the worst case, a whole
    /// interval before the next heartbeat.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    jitter: bool,
    /// Longest wait for the group to settle, each time, before the run fails.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    settle_timeout: Duration,
    /// Output format of the final report.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// `weir bench group-consume`.
#[derive(Debug, Args)]
#[command(after_help = CONSUME_NOTES)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Topic to read; created if missing.
    #[arg(long, short = 't', default_value = "weir-bench-group-consume")]
    topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, short = 'p', default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    partitions: u32,
    /// A topic setting used when it is created, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    topic_config: Vec<(String, String)>,
    /// Value size of the records produced to fill the topic: bytes, or with a unit.
    #[arg(long, short = 's', default_value = "1KiB", value_parser = parse_size)]
    record_size: u64,
    /// Records the topic must hold (produced first if it has fewer); every record in it
    /// is read.
    #[arg(long, short = 'n', default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Members of the second group (the first has one).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=MAX_MEMBERS as i64))]
    members: u32,
    /// Fail if no new record arrives for this long.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    stall_timeout: Duration,
    /// Longest wait for a group to settle before the run fails.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    settle_timeout: Duration,
    /// Output format of the final report.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// `weir bench queue`.
#[derive(Debug, Args)]
pub(crate) struct QueueArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Topic to read; created if missing.
    #[arg(long, short = 't', default_value = "weir-bench-queue")]
    topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, short = 'p', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    partitions: u32,
    /// A topic setting used when it is created, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    topic_config: Vec<(String, String)>,
    /// Value size of the records produced to fill the topic: bytes, or with a unit.
    #[arg(long, short = 's', default_value = "100", value_parser = parse_size)]
    record_size: u64,
    /// Records the topic must hold (produced first if it has fewer); every run takes and
    /// accepts every record in it.
    #[arg(long, short = 'n', default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Consumers of a fresh share group, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "4,16",
          value_parser = clap::value_parser!(u32).range(1..=MAX_MEMBERS as i64))]
    consumers: Vec<u32>,
    /// Records per fetch.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_records: u32,
    /// Fail if a consumer gets no record for this long.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    stall_timeout: Duration,
    /// Output format of the final report.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// `weir bench group-commit`.
#[derive(Debug, Args)]
#[command(after_help = COMMIT_NOTES)]
pub(crate) struct CommitArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Topic the committing groups subscribe to; created if missing, with one partition.
    #[arg(long, short = 't', default_value = "weir-bench-group-commit")]
    topic: String,
    /// Concurrent committers, one row each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64",
          value_parser = clap::value_parser!(u32).range(1..=MAX_COMMITTERS as i64))]
    committers: Vec<u32>,
    /// How long each row commits.
    #[arg(long, short = 'd', value_parser = parse_duration, default_value = "5s")]
    duration: Duration,
    /// Where the groups' offsets live: all on one __consumer_offsets partition, or
    /// wherever their ids hash.
    #[arg(long, value_enum, default_value_t)]
    placement: Placement,
    /// Longest wait for the members to hold their partition before the run fails.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    settle_timeout: Duration,
    /// Output format of the final report.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// `--placement` of `group-commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Placement {
    /// Every group on the same `__consumer_offsets` partition (one coordinator shard).
    #[default]
    Same,
    /// Groups where their ids hash (spread over the partitions).
    Hashed,
}

/// A group scenario, checked.
#[derive(Debug)]
pub enum GroupBench {
    /// `group-join`.
    Join(JoinConfig),
    /// `group-consume`.
    Consume(ConsumeConfig),
    /// `group-commit`.
    Commit(CommitConfig),
    /// `queue`.
    Queue(queue::QueueConfig),
}

#[derive(Debug)]
pub struct JoinConfig {
    brokers: Vec<String>,
    timeouts: Timeouts,
    tls: Option<weir_client::ClientTls>,
    topic: String,
    partitions: u32,
    members: u32,
    rounds: u32,
    /// What settled members are told: the broker's interval, capped at a third of the
    /// session timeout asked for.
    heartbeat_interval: Duration,
    session_timeout: Option<Duration>,
    jitter: bool,
    settle_timeout: Duration,
    format: Format,
}

#[derive(Debug)]
pub struct ConsumeConfig {
    brokers: Vec<String>,
    timeouts: Timeouts,
    tls: Option<weir_client::ClientTls>,
    topic: String,
    partitions: u32,
    topic_configs: HashMap<String, String>,
    record_bytes: usize,
    count: u64,
    members: u32,
    stall_timeout: Duration,
    settle_timeout: Duration,
    format: Format,
}

#[derive(Debug)]
pub struct CommitConfig {
    brokers: Vec<String>,
    timeouts: Timeouts,
    tls: Option<weir_client::ClientTls>,
    topic: String,
    committers: Vec<u32>,
    duration: Duration,
    placement: Placement,
    settle_timeout: Duration,
    format: Format,
}

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

fn check_timeout(flag: &str, d: Duration) -> anyhow::Result<()> {
    if d.is_zero() {
        return Err(usage(format!("{flag} must be above zero")));
    }
    Ok(())
}

impl JoinArgs {
    pub(crate) fn into_config(self) -> anyhow::Result<GroupBench> {
        if self.partitions <= self.members {
            return Err(usage(format!(
                "--partitions {} leaves the joining member nothing: use more partitions than \
                 --members ({})",
                self.partitions, self.members
            )));
        }
        check_timeout("--settle-timeout", self.settle_timeout)?;
        let mut heartbeat_interval = Duration::from_millis(self.expect_heartbeat_ms);
        if let Some(session) = self.session_timeout {
            if session.is_zero() {
                return Err(usage("--session-timeout must be above zero".to_owned()));
            }
            heartbeat_interval = heartbeat_interval.min(session / 3);
        }
        Ok(GroupBench::Join(JoinConfig {
            brokers: self.brokers.list(),
            timeouts: self.brokers.timeouts(),
            tls: self.brokers.tls()?,
            topic: self.topic,
            partitions: self.partitions,
            members: self.members,
            rounds: self.rounds,
            heartbeat_interval,
            session_timeout: self.session_timeout,
            jitter: self.jitter,
            settle_timeout: self.settle_timeout,
            format: self.format,
        }))
    }
}

impl ConsumeArgs {
    pub(crate) fn into_config(self) -> anyhow::Result<GroupBench> {
        if self.record_size > MAX_RECORD_BYTES {
            return Err(usage(format!(
                "--record-size {} is above the limit of {MAX_RECORD_BYTES} bytes",
                self.record_size
            )));
        }
        check_timeout("--stall-timeout", self.stall_timeout)?;
        check_timeout("--settle-timeout", self.settle_timeout)?;
        Ok(GroupBench::Consume(ConsumeConfig {
            brokers: self.brokers.list(),
            timeouts: self.brokers.timeouts(),
            tls: self.brokers.tls()?,
            topic: self.topic,
            partitions: self.partitions,
            topic_configs: key_value_map(self.topic_config)?,
            record_bytes: self.record_size as usize,
            count: self.count,
            members: self.members,
            stall_timeout: self.stall_timeout,
            settle_timeout: self.settle_timeout,
            format: self.format,
        }))
    }
}

impl QueueArgs {
    pub(crate) fn into_config(self) -> anyhow::Result<GroupBench> {
        if self.record_size > MAX_RECORD_BYTES {
            return Err(usage(format!(
                "--record-size {} is above the limit of {MAX_RECORD_BYTES} bytes",
                self.record_size
            )));
        }
        check_timeout("--stall-timeout", self.stall_timeout)?;
        if self.consumers.is_empty() {
            return Err(usage("--consumers needs at least one count".to_owned()));
        }
        Ok(GroupBench::Queue(queue::QueueConfig {
            base: ConsumeConfig {
                brokers: self.brokers.list(),
                timeouts: self.brokers.timeouts(),
                tls: self.brokers.tls()?,
                topic: self.topic,
                partitions: self.partitions,
                topic_configs: key_value_map(self.topic_config)?,
                record_bytes: self.record_size as usize,
                count: self.count,
                members: 1,
                stall_timeout: self.stall_timeout,
                settle_timeout: self.stall_timeout,
                format: self.format,
            },
            consumers: self.consumers,
            max_records: self.max_records,
        }))
    }
}

impl CommitArgs {
    pub(crate) fn into_config(self) -> anyhow::Result<GroupBench> {
        check_timeout("--duration", self.duration)?;
        check_timeout("--settle-timeout", self.settle_timeout)?;
        if self.committers.is_empty() {
            return Err(usage("--committers needs at least one count".to_owned()));
        }
        Ok(GroupBench::Commit(CommitConfig {
            brokers: self.brokers.list(),
            timeouts: self.brokers.timeouts(),
            tls: self.brokers.tls()?,
            topic: self.topic,
            committers: self.committers,
            duration: self.duration,
            placement: self.placement,
            settle_timeout: self.settle_timeout,
            format: self.format,
        }))
    }
}

/// Runs a group scenario and prints its report.
pub(crate) async fn run(bench: GroupBench) -> anyhow::Result<()> {
    match bench {
        GroupBench::Join(config) => join::run(&config).await,
        GroupBench::Consume(config) => consume::run(&config).await,
        GroupBench::Commit(config) => commit::run(&config).await,
        GroupBench::Queue(config) => queue::run(&config).await,
    }
}

/// Prints `report` as one JSON line, or `text` for people.
fn print(format: Format, report: &impl serde::Serialize, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer(&mut out, report)?;
            writeln!(out)?;
        }
        Format::Text => out.write_all(text.as_bytes())?,
    }
    out.flush()?;
    Ok(())
}

/// A prefix for the group ids of one run, so that every run starts with fresh groups.
fn run_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{ms:x}-{:x}", std::process::id())
}

/// Which member holds which partition of the bench topic, as the members' rebalance
/// listeners report it: a partition is added when `on_assigned` runs (the member may read
/// it) and removed when `on_revoked` or `on_lost` runs (it reads no more of it).
#[derive(Debug, Clone)]
struct Board {
    /// Per member slot.
    held: Vec<BTreeSet<u32>>,
    /// When each slot first got a partition since it was last reset.
    first_assigned: Vec<Option<Instant>>,
    /// When each slot last had partitions revoked.
    revoked_at: Vec<Option<Instant>>,
    /// Partitions that were assigned to a member while another member held them.
    double_owned: u64,
    /// Partitions members lost (fenced or expired: dropped without a commit).
    lost: u64,
    /// Why a member's task stopped, if one failed: waits end with it.
    failure: Option<String>,
}

impl Board {
    fn new(slots: usize) -> Board {
        Board {
            held: vec![BTreeSet::new(); slots],
            first_assigned: vec![None; slots],
            revoked_at: vec![None; slots],
            double_owned: 0,
            lost: 0,
            failure: None,
        }
    }

    /// True if the members in `active` hold every one of `partitions` exactly once, each
    /// holding P/N or P/N+1 (what the broker's uniform assignor gives), and the other
    /// slots hold nothing.
    fn balanced(&self, active: &[usize], partitions: u32) -> bool {
        let n = active.len() as u32;
        if n == 0 {
            return false;
        }
        let (low, high) = (partitions / n, partitions.div_ceil(n));
        let mut seen = BTreeSet::new();
        for (slot, held) in self.held.iter().enumerate() {
            if !active.contains(&slot) {
                if !held.is_empty() {
                    return false;
                }
                continue;
            }
            let count = held.len() as u32;
            if count < low || count > high {
                return false;
            }
            seen.extend(held.iter().copied());
        }
        let total: usize = active.iter().map(|&s| self.held[s].len()).sum();
        seen.len() == partitions as usize
            && total == partitions as usize
            && seen.last().is_none_or(|&p| p < partitions)
    }

    /// `member 0: 34, member 1: 33, ...` for error messages.
    fn summary(&self) -> String {
        self.held
            .iter()
            .enumerate()
            .map(|(slot, held)| format!("member {slot}: {}", held.len()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One member's rebalance listener: keeps its slot of the [`Board`] current.
struct Tracker {
    slot: usize,
    topic: Arc<str>,
    board: Arc<watch::Sender<Board>>,
}

impl Tracker {
    fn listener(slot: usize, topic: &str, board: &Arc<watch::Sender<Board>>) -> Arc<Tracker> {
        Arc::new(Tracker {
            slot,
            topic: topic.into(),
            board: board.clone(),
        })
    }

    fn partitions<'a>(&'a self, rebalance: &'a Rebalance) -> impl Iterator<Item = u32> + 'a {
        rebalance
            .partitions
            .iter()
            .filter(|tp| *tp.topic == *self.topic)
            .map(|tp| tp.partition)
    }
}

impl RebalanceListener for Tracker {
    fn on_assigned(&self, rebalance: &Rebalance) {
        self.board.send_modify(|board| {
            for p in self.partitions(rebalance) {
                let elsewhere = board
                    .held
                    .iter()
                    .enumerate()
                    .any(|(slot, held)| slot != self.slot && held.contains(&p));
                if elsewhere {
                    board.double_owned += 1;
                }
                board.held[self.slot].insert(p);
            }
            if !board.held[self.slot].is_empty() && board.first_assigned[self.slot].is_none() {
                board.first_assigned[self.slot] = Some(Instant::now());
            }
        });
    }

    fn on_revoked(&self, rebalance: &Rebalance) {
        self.board.send_modify(|board| {
            for p in self.partitions(rebalance) {
                board.held[self.slot].remove(&p);
            }
            board.revoked_at[self.slot] = Some(Instant::now());
        });
    }

    fn on_lost(&self, rebalance: &Rebalance) {
        self.board.send_modify(|board| {
            for p in self.partitions(rebalance) {
                board.held[self.slot].remove(&p);
                board.lost += 1;
            }
        });
    }
}

/// Runs a member's work in a task of its own; a failure is also written to the board,
/// so that a wait on the board ends with it instead of timing out.
fn spawn_member<T: Send + 'static>(
    board: &Arc<watch::Sender<Board>>,
    work: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> tokio::task::JoinHandle<anyhow::Result<T>> {
    let board = board.clone();
    tokio::spawn(async move {
        let result = work.await;
        if let Err(e) = &result {
            board.send_modify(|b| {
                b.failure.get_or_insert_with(|| format!("{e:#}"));
            });
        }
        result
    })
}

/// Waits for a member's task, at most [`CLOSE_TIMEOUT`] (it is closing: commit, leave).
async fn join_member<T>(
    slot: usize,
    task: tokio::task::JoinHandle<anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(CLOSE_TIMEOUT, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(e).with_context(|| format!("member {slot} panicked")),
        Err(_) => anyhow::bail!("member {slot} did not close within {CLOSE_TIMEOUT:?}"),
    }
}

/// Waits until the members in `active` hold the topic's partitions balanced (see
/// [`Board::balanced`]) and the broker describes the group as `stable` with exactly
/// that many members. Fails after `timeout`, saying what it saw. `what` names the step.
async fn wait_settled(
    board: &watch::Sender<Board>,
    admin: &Admin,
    group_id: &str,
    active: &[usize],
    partitions: u32,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rx = board.subscribe();
    let held = tokio::time::timeout_at(
        deadline,
        rx.wait_for(|b| b.failure.is_some() || b.balanced(active, partitions)),
    )
    .await;
    match held {
        Ok(Ok(b)) => {
            if let Some(failure) = &b.failure {
                anyhow::bail!("{what}: a member failed: {failure}");
            }
        }
        Ok(Err(_)) => anyhow::bail!("{what}: every member stopped"),
        Err(_) => anyhow::bail!(
            "{what}: the {} member(s) did not hold the {partitions} partitions once each, \
             balanced, within {timeout:?} (they hold {})",
            active.len(),
            board.borrow().summary()
        ),
    }
    loop {
        let info = admin
            .describe_group(group_id)
            .await
            .with_context(|| format!("describing group {group_id}"))?;
        if info.state == GroupState::Stable && info.members.len() == active.len() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{what}: the members hold their partitions, but after {timeout:?} the broker \
                 still describes group {group_id} as {} with {} member(s)",
                info.state,
                info.members.len()
            );
        }
        tokio::time::sleep(DESCRIBE_INTERVAL).await;
    }
}

/// Deletes the groups a run made (they are empty once their members closed). A failure
/// is only noted: the figures stand.
async fn delete_groups(admin: &Admin, groups: &[String]) {
    for group in groups {
        if let Err(e) = admin.delete_group(group).await {
            eprintln!("note: could not delete bench group {group}: {e}");
        }
    }
}

/// Percentiles of a few durations (nearest rank), in ms.
#[derive(Debug, Clone, serde::Serialize)]
struct Spread {
    p50_ms: f64,
    max_ms: f64,
    /// Every sample, in order.
    all_ms: Vec<f64>,
}

impl Spread {
    fn of(samples: &[Duration]) -> Spread {
        let all_ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        let mut sorted = all_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i]
        };
        Spread {
            p50_ms: rank(0.5),
            max_ms: rank(1.0),
            all_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(held: &[&[u32]]) -> Board {
        let mut b = Board::new(held.len());
        for (slot, parts) in held.iter().enumerate() {
            b.held[slot] = parts.iter().copied().collect();
        }
        b
    }

    #[test]
    fn a_board_is_balanced_only_with_each_partition_once_and_even_shares() {
        assert!(board(&[&[0, 1], &[2, 3], &[4]]).balanced(&[0, 1, 2], 5));
        // Partition 4 held twice.
        assert!(!board(&[&[0, 1, 4], &[2, 3], &[4]]).balanced(&[0, 1, 2], 5));
        // Partition 4 held by nobody.
        assert!(!board(&[&[0, 1], &[2, 3], &[]]).balanced(&[0, 1, 2], 5));
        // Uneven: 3 and 1.
        assert!(!board(&[&[0, 1, 2], &[3], &[4]]).balanced(&[0, 1, 2], 5));
        // An inactive slot still holding something.
        assert!(!board(&[&[0, 1, 2], &[3, 4], &[4]]).balanced(&[0, 1], 5));
        assert!(board(&[&[0, 1, 2], &[3, 4], &[]]).balanced(&[0, 1], 5));
        // A partition outside the topic.
        assert!(!board(&[&[0, 1, 2], &[3, 9], &[]]).balanced(&[0, 1], 5));
    }

    #[test]
    fn spreads_use_the_nearest_rank() {
        let ms =
            |v: &[u64]| -> Vec<Duration> { v.iter().map(|&m| Duration::from_millis(m)).collect() };
        let s = Spread::of(&ms(&[30, 10, 20, 40]));
        assert_eq!((s.p50_ms, s.max_ms), (20.0, 40.0));
        assert_eq!(s.all_ms, vec![30.0, 10.0, 20.0, 40.0]);
        let s = Spread::of(&ms(&[5]));
        assert_eq!((s.p50_ms, s.max_ms), (5.0, 5.0));
    }
}
