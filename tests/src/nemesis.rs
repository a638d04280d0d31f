//! The nemesis (Jepsen's name for the fault injector): a seeded random schedule of faults
//! on a [`Cluster`], each applied, held for a while, healed, and followed by a wait for
//! the cluster to be whole again. The seed is printed, and `WEIR_FAULTS_SEED` replays the
//! same schedule (the cluster's own timing still varies: the schedule is what repeats).

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::{Cluster, NodeState};
use crate::proxy::Peer;
use crate::workload::Workload;

/// Longest the cluster may take to be whole again after a fault is healed.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(40);
/// Longest a graceful stop may take.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(30);

/// splitmix64: small, seedable, good enough to pick faults.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `low..high` milliseconds.
    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high - low))
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The seed: `WEIR_FAULTS_SEED` if set, else from the clock.
pub fn seed() -> u64 {
    match std::env::var("WEIR_FAULTS_SEED") {
        Ok(s) => s.parse().expect("WEIR_FAULTS_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

/// One fault on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL; healed by a restart.
    Kill(i32),
    /// SIGTERM (controlled shutdown); healed by a restart.
    Terminate(i32),
    /// SIGSTOP; healed by SIGCONT.
    Pause(i32),
    /// Cut off from every other node by the proxy; healed by restoring the links.
    Isolate(i32),
    /// Every byte to and from the node held this long; healed by lifting the delay.
    Delay(i32, Duration),
    /// A network split of the node (the minority) from the two others (the majority),
    /// with the test's clients on one side: cut from the majority's nodes
    /// (`clients_with_minority`) or from the minority's node. Only the clients behind the
    /// fault proxy (gRPC) are split; Kafka and AMQP clients reach every node directly.
    /// Healed by restoring the links.
    Split {
        /// The node alone on its side.
        minority: i32,
        /// Whether the clients are on its side.
        clients_with_minority: bool,
    },
    /// The node's data directory's file system is full (its tmpfs shrunk to what it
    /// uses: [`crate::tmpfs`]); healed by giving it its size back.
    DiskFull(i32),
}

impl Fault {
    /// The node it hits.
    pub fn node(&self) -> i32 {
        match *self {
            Fault::Kill(n) | Fault::Terminate(n) | Fault::Pause(n) | Fault::Isolate(n) => n,
            Fault::Delay(n, _) => n,
            Fault::Split { minority, .. } => minority,
            Fault::DiskFull(n) => n,
        }
    }

    /// The fault's kind, for reports: its name without the node.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill(_) => "kill",
            Fault::Terminate(_) => "sigterm",
            Fault::Pause(_) => "pause",
            Fault::Isolate(_) => "cut one node",
            Fault::Delay(..) => "delay",
            Fault::Split {
                clients_with_minority: true,
                ..
            } => "split, clients with 1",
            Fault::Split {
                clients_with_minority: false,
                ..
            } => "split, clients with 2",
            Fault::DiskFull(_) => "disk full",
        }
    }

    /// Whether the node's process is down (or frozen) while the fault holds: at most one
    /// such node at a time keeps a majority.
    pub fn stops_the_node(&self) -> bool {
        matches!(self, Fault::Kill(_) | Fault::Terminate(_) | Fault::Pause(_))
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill(n) => write!(f, "kill -9 node {n}"),
            Fault::Terminate(n) => write!(f, "SIGTERM node {n}"),
            Fault::Pause(n) => write!(f, "SIGSTOP node {n}"),
            Fault::Isolate(n) => write!(f, "cut node {n} off"),
            Fault::Delay(n, d) => write!(f, "delay node {n} by {d:?}"),
            Fault::Split {
                minority,
                clients_with_minority,
            } => {
                let side = if *clients_with_minority {
                    "its side"
                } else {
                    "the other side"
                };
                write!(
                    f,
                    "split node {minority} from the others, clients on {side}"
                )
            }
            Fault::DiskFull(n) => write!(f, "fill node {n}'s disk"),
        }
    }
}

/// Picks a fault: on the leader of a partition half the time (leaders are where faults
/// hurt), else on any node.
pub fn pick(rng: &mut Rng, nodes: &[i32], leader: Option<i32>) -> Fault {
    let node = match leader {
        Some(l) if rng.percent(50) => l,
        _ => nodes[rng.below(nodes.len() as u64) as usize],
    };
    match rng.below(100) {
        0..=29 => Fault::Kill(node),
        30..=44 => Fault::Terminate(node),
        45..=69 => Fault::Pause(node),
        70..=89 => Fault::Isolate(node),
        _ => Fault::Delay(node, rng.millis(50, 500)),
    }
}

/// Picks a fault for the soak (`tests/tests/it/soak.rs`): every kind, the split and the
/// full disk too, on a partition's leader half the time.
pub fn pick_soak(rng: &mut Rng, nodes: &[i32], leader: Option<i32>) -> Fault {
    let node = match leader {
        Some(l) if rng.percent(50) => l,
        _ => nodes[rng.below(nodes.len() as u64) as usize],
    };
    match rng.below(100) {
        0..=19 => Fault::Kill(node),
        20..=24 => Fault::Terminate(node),
        25..=44 => Fault::Pause(node),
        45..=59 => Fault::Isolate(node),
        60..=67 => Fault::Split {
            minority: node,
            clients_with_minority: true,
        },
        68..=75 => Fault::Split {
            minority: node,
            clients_with_minority: false,
        },
        76..=84 => Fault::Delay(node, rng.millis(50, 500)),
        _ => Fault::DiskFull(node),
    }
}

/// Applies `fault`.
pub async fn apply(cluster: &mut Cluster, fault: Fault) -> anyhow::Result<()> {
    match fault {
        Fault::Kill(n) => cluster.kill(n),
        Fault::Terminate(n) => cluster.terminate(n, TERMINATE_TIMEOUT).await.map(|_| ()),
        Fault::Pause(n) => cluster.pause(n),
        Fault::Isolate(n) => {
            cluster.proxy().isolate(n);
            Ok(())
        }
        Fault::Delay(n, d) => {
            cluster.proxy().delay(n, d);
            Ok(())
        }
        Fault::Split {
            minority,
            clients_with_minority,
        } => {
            let proxy = cluster.proxy();
            proxy.isolate(minority);
            if clients_with_minority {
                for other in cluster.ids().into_iter().filter(|&id| id != minority) {
                    proxy.cut(Peer::Client, Peer::Node(other));
                }
            } else {
                proxy.cut(Peer::Client, Peer::Node(minority));
            }
            Ok(())
        }
        Fault::DiskFull(n) => cluster.fill_disk(n),
    }
}

/// Undoes `fault`: restarts, resumes or restores the node.
pub async fn heal(cluster: &mut Cluster, fault: Fault) -> anyhow::Result<()> {
    let n = fault.node();
    match fault {
        Fault::Kill(_) | Fault::Terminate(_) => {
            if cluster.state(n) == NodeState::Down {
                cluster.restart(n).await?;
            }
            Ok(())
        }
        Fault::Pause(_) => cluster.resume(n),
        Fault::Isolate(_) | Fault::Delay(..) | Fault::Split { .. } => {
            cluster.proxy().heal();
            Ok(())
        }
        Fault::DiskFull(_) => cluster.free_disk(n),
    }
}

/// What a run of the nemesis did and what went wrong with the cluster's liveness.
#[derive(Debug, Default)]
pub struct NemesisLog {
    /// Faults applied, in order, with when (seconds since the start).
    pub applied: Vec<(f64, String)>,
    /// Faults after which the cluster did not become whole, or writes did not resume,
    /// in time: each with what was seen.
    pub stuck: Vec<String>,
    /// Faults that could not be applied or healed (a node that would not stop, say).
    pub errors: Vec<String>,
}

/// Runs `faults` rounds on `topic` while `workload` runs: pick a fault (sometimes two at
/// once, on different nodes), hold it, heal it, then wait for the cluster to be whole
/// and for writes to go through again. Stops early if the cluster stays broken.
pub async fn run(
    cluster: &mut Cluster,
    workload: &Workload,
    topic: &str,
    partitions: u32,
    faults: usize,
    rng: &mut Rng,
) -> NemesisLog {
    let started = Instant::now();
    let mut log = NemesisLog::default();
    let nodes = cluster.ids();
    let mut round = 0;
    while log.applied.len() < faults {
        round += 1;
        let partition = rng.below(u64::from(partitions)) as u32;
        let leader = cluster
            .leader(topic, partition)
            .await
            .ok()
            .filter(|&l| l > 0);
        let mut now = vec![pick(rng, &nodes, leader)];
        if rng.percent(15) {
            let second = pick(rng, &nodes, None);
            if second.node() != now[0].node() {
                now.push(second);
            }
        }
        for &fault in &now {
            let at = started.elapsed().as_secs_f64();
            eprintln!("nemesis: round {round} at {at:.1} s: {fault}");
            match apply(cluster, fault).await {
                Ok(()) => log.applied.push((at, fault.to_string())),
                Err(e) => log.errors.push(format!("applying {fault}: {e:#}")),
            }
        }
        tokio::time::sleep(rng.millis(500, 5000)).await;
        for &fault in &now {
            if let Err(e) = heal(cluster, fault).await {
                log.errors.push(format!("healing {fault}: {e:#}"));
            }
        }
        let faults_text: Vec<String> = now.iter().map(Fault::to_string).collect();
        if let Err(e) = cluster.wait_healthy(topic, RECOVERY_TIMEOUT).await {
            log.stuck
                .push(format!("after {}: {e:#}", faults_text.join(" + ")));
            eprintln!("nemesis: the cluster did not recover: {e:#}");
            break;
        }
        if let Err(e) = workload.wait_progress(20, RECOVERY_TIMEOUT).await {
            log.stuck.push(format!(
                "after {}: writes did not resume: {e:#}",
                faults_text.join(" + ")
            ));
            eprintln!("nemesis: writes did not resume: {e:#}");
            break;
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_soak_draws_every_kind_on_the_given_nodes_and_the_same_for_a_seed() {
        let nodes = [1, 2, 3];
        let mut rng = Rng::new(42);
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        let mut on_leader = 0;
        for _ in 0..10_000 {
            let fault = pick_soak(&mut rng, &nodes, Some(2));
            assert!(nodes.contains(&fault.node()), "{fault}");
            if let Fault::Delay(_, d) = fault {
                assert!((50..500).contains(&(d.as_millis() as u64)), "{fault}");
            }
            on_leader += usize::from(fault.node() == 2);
            *kinds.entry(fault.kind()).or_default() += 1;
        }
        assert_eq!(kinds.len(), 8, "{kinds:?}");
        // Half on the leader, a third of the rest too.
        assert!((6_300..7_000).contains(&on_leader), "{on_leader}");
        assert!((1_300..1_700).contains(&kinds["disk full"]), "{kinds:?}");
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(
                pick_soak(&mut a, &nodes, None),
                pick_soak(&mut b, &nodes, None)
            );
        }
    }

    #[test]
    fn only_kills_sigterms_and_pauses_stop_the_node() {
        let split = Fault::Split {
            minority: 1,
            clients_with_minority: true,
        };
        assert!(Fault::Kill(1).stops_the_node());
        assert!(Fault::Terminate(1).stops_the_node());
        assert!(Fault::Pause(1).stops_the_node());
        for fault in [
            Fault::Isolate(1),
            split,
            Fault::Delay(1, Duration::from_millis(50)),
            Fault::DiskFull(1),
        ] {
            assert!(!fault.stops_the_node(), "{fault}");
        }
        assert_eq!(
            split.to_string(),
            "split node 1 from the others, clients on its side"
        );
    }
}
