//! kafka-python group members as processes (`tests/kafka/groups_member.py`), what they
//! printed, and the numbered records they read: shared by the two test crates that run
//! them (weir-client's `tests/it/kafka_groups.rs` on one broker, weir-tests'
//! `tests/it/kafka_failover.rs` on a 3-node cluster), each binary's `tests/it/main.rs`
//! including this file by path, since neither test crate can depend on the other.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use weir_client::{Acks, Producer, ProducerConfig, ProducerRecord};

/// What the members of a group printed, by member.
#[derive(Debug, Default)]
pub struct Members {
    /// Each member's latest assignment.
    pub assigned: Vec<Option<Vec<u32>>>,
    /// Every (partition, offset, value) read, by any member.
    pub read: BTreeSet<(u32, i64, String)>,
    /// Records read more than once (by one member or several): allowed after a crash.
    pub reread: usize,
    pub lines: Vec<String>,
}

impl Members {
    pub fn new(count: usize) -> Members {
        Members {
            assigned: vec![None; count],
            ..Members::default()
        }
    }

    fn absorb(&mut self, member: usize, line: String) {
        self.lines.push(format!("m{member}: {line}"));
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            return;
        };
        if let Some(parts) = event["assigned"].as_array() {
            self.assigned[member] = Some(
                parts
                    .iter()
                    .filter_map(|p| p.as_u64().map(|p| p as u32))
                    .collect(),
            );
        }
        if let (Some(p), Some(o), Some(v)) = (
            event["p"].as_u64(),
            event["o"].as_i64(),
            event["v"].as_str(),
        ) && !self.read.insert((p as u32, o, v.to_owned()))
        {
            self.reread += 1;
        }
    }

    /// The live members' assignments cover `partitions` exactly once, each member
    /// holding at least one.
    pub fn spread_over(&self, live: &[usize], partitions: u32) -> bool {
        let mut seen = BTreeSet::new();
        for &m in live {
            match &self.assigned[m] {
                Some(parts) if !parts.is_empty() => {
                    for p in parts {
                        if !seen.insert(*p) {
                            return false;
                        }
                    }
                }
                _ => return false,
            }
        }
        seen == (0..partitions).collect()
    }
}

/// A member process; killed (SIGKILL, no leaving the group) when dropped.
pub struct MemberProcess {
    child: Child,
}

impl Drop for MemberProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `groups_member.py` (at `script`) with `args`; a thread forwards its stdout
/// lines, tagged with `index`, to `lines`.
pub fn spawn_member(
    python: &str,
    script: &Path,
    args: &[&str],
    index: usize,
    lines: mpsc::Sender<(usize, String)>,
) -> Result<MemberProcess> {
    let mut child = Command::new(python)
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("piped stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if lines.send((index, line)).is_err() {
                break;
            }
        }
    });
    Ok(MemberProcess { child })
}

/// Takes the members' lines until `done` holds; fails after `limit` with what they
/// printed last.
pub async fn until(
    what: &str,
    limit: Duration,
    members: &mut Members,
    lines: &mpsc::Receiver<(usize, String)>,
    mut done: impl FnMut(&Members) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        while let Ok((m, line)) = lines.try_recv() {
            members.absorb(m, line);
        }
        if done(members) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let tail: Vec<&String> = members.lines.iter().rev().take(40).collect();
            bail!("timed out waiting for {what}; last lines (newest first): {tail:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes records `from..from + count` to every one of `partitions` partitions of `topic`
/// as `"{p}:{i}"` (what [`expected_records`] expects), through the gRPC client at
/// `brokers`, with `acks`; returns once every one is acknowledged. The client rides out a
/// leader change by itself.
pub async fn produce_numbered(
    brokers: Vec<String>,
    acks: Acks,
    topic: &str,
    partitions: u32,
    from: usize,
    count: usize,
) -> Result<()> {
    let producer = Producer::connect(ProducerConfig {
        brokers,
        acks,
        ..ProducerConfig::default()
    })
    .await?;
    let mut deliveries = Vec::new();
    for i in from..from + count {
        for p in 0..partitions {
            deliveries.push(
                producer
                    .send(ProducerRecord::new(topic, format!("{p}:{i}")).partition(p))
                    .await?,
            );
        }
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await;
    Ok(())
}

/// Every (partition, offset, value) of `per_partition` records in each of `partitions`
/// partitions written as `"{p}:{i}"`, one producer per topic, from offset 0.
pub fn expected_records(partitions: u32, per_partition: usize) -> BTreeSet<(u32, i64, String)> {
    (0..partitions)
        .flat_map(|p| (0..per_partition).map(move |i| (p, i as i64, format!("{p}:{i}"))))
        .collect()
}
