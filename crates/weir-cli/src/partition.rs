//! `weir partition`: move a partition's replicas to other brokers (`reassign`), stop a
//! move (`cancel`), and list the moves in progress (`moving`). The whole-cluster plans,
//! `weir cluster decommission` and `weir cluster rebalance`, submit through
//! [`submit`] and wait through [`wait_until_moved`] here too.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use weir_client::{Admin, PartitionMove, TopicInfo};

use crate::brokers::BrokerArgs;
use crate::output::Format;
use crate::plan::Move;

const EXAMPLES: &str = "\
Examples:
  weir partition reassign orders 0 --replicas 1,2,4             # move the copy on 3 to 4
  weir partition reassign orders 0 --replicas 4,2,3 --wait      # and make 4 the preferred leader
  weir partition reassign orders 0 --replicas 1,2,4 --throttle 20MiB
  weir partition moving                                         # what is still moving
  weir partition cancel orders 0                                # back to where it started

A move adds the new replicas first: they copy the partition from its leader (at most
--throttle bytes per second per receiving broker), join the in-sync replicas, and only
then are the old ones dropped and their data deleted. The partition stays available
throughout and nothing acknowledged is lost. `weir cluster decommission` and `weir
cluster rebalance` plan such moves for a whole cluster.";

/// Move a partition's replicas to other brokers.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct PartitionArgs {
    #[command(subcommand)]
    command: PartitionCommand,
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t, global = true)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum PartitionCommand {
    /// Give a partition a new set of replicas (the first is the preferred leader).
    #[command(after_help = EXAMPLES)]
    Reassign {
        topic: String,
        partition: u32,
        /// The broker ids the partition is to live on, comma-separated, preferred leader
        /// first.
        #[arg(long, value_delimiter = ',', required = true, value_name = "ID,..")]
        replicas: Vec<i32>,
        #[command(flatten)]
        moving: MoveArgs,
    },
    /// Stop a move in progress: the partition goes back to the replicas it started from,
    /// and the copies made so far are deleted.
    #[command(after_help = EXAMPLES)]
    Cancel { topic: String, partition: u32 },
    /// List the partitions a move is still copying: replicas, the ones being added and
    /// removed, and the in-sync replicas.
    #[command(after_help = EXAMPLES)]
    Moving,
}

/// How a move is made, shared with `weir cluster decommission` and `rebalance`.
#[derive(Debug, Clone, Args)]
pub struct MoveArgs {
    /// Most bytes per second each receiving broker copies for the moving replicas (for
    /// example 50MB, 20MiB, 1000000); replicas already in sync are never slowed. No
    /// throttle if not given.
    #[arg(long, value_parser = parse_rate, value_name = "BYTES/S")]
    pub throttle: Option<u64>,
    /// Wait until every move is complete, printing progress to stderr.
    #[arg(long)]
    pub wait: bool,
}

/// A moving partition as `--format json` prints it.
#[derive(Debug, Serialize)]
struct MovingJson<'a> {
    topic: &'a str,
    partition: u32,
    replicas: &'a [i32],
    adding: &'a [i32],
    removing: &'a [i32],
    isr: &'a [i32],
    throttle_bytes_per_sec: Option<u64>,
}

/// Runs a `weir partition` subcommand.
pub async fn run(args: PartitionArgs) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&args.brokers.list(), args.brokers.connect_options()?)
        .await
        .context("connecting to the broker")?;
    match args.command {
        PartitionCommand::Reassign {
            topic,
            partition,
            replicas,
            moving,
        } => {
            let plan = [Move {
                topic,
                partition,
                from: Vec::new(),
                to: replicas,
            }];
            submit(&admin, &plan, moving.throttle).await?;
            if moving.wait {
                wait_until_moved(&admin, &plan).await?;
            }
        }
        PartitionCommand::Cancel { topic, partition } => {
            let cancel = PartitionMove {
                partition,
                replicas: None,
            };
            let info = admin
                .reassign_partitions(&topic, &[cancel], None)
                .await
                .with_context(|| {
                    format!("cancelling the move of partition {partition} of {topic}")
                })?;
            if let Some(p) = info.partitions.get(partition as usize) {
                eprintln!(
                    "partition {partition} of {topic} is back on {:?}",
                    p.replicas
                );
            }
        }
        PartitionCommand::Moving => {
            let moving = moving_partitions(&admin).await?;
            let mut out = std::io::stdout().lock();
            print_moving(&mut out, args.format, &moving)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Starts the moves of `plan`, one request per topic (all of a topic's moves start or
/// none does).
pub async fn submit(admin: &Admin, plan: &[Move], throttle: Option<u64>) -> anyhow::Result<()> {
    let mut by_topic: BTreeMap<&str, Vec<PartitionMove>> = BTreeMap::new();
    for m in plan {
        by_topic.entry(&m.topic).or_default().push(PartitionMove {
            partition: m.partition,
            replicas: Some(m.to.clone()),
        });
    }
    for (topic, moves) in by_topic {
        admin
            .reassign_partitions(topic, &moves, throttle)
            .await
            .with_context(|| format!("moving {} partition(s) of topic {topic}", moves.len()))?;
        eprintln!("moving {} partition(s) of topic {topic}", moves.len());
    }
    Ok(())
}

/// How often `--wait` looks again.
const WAIT_POLL: Duration = Duration::from_millis(500);
/// How often `--wait` reports progress.
const WAIT_REPORT: Duration = Duration::from_secs(5);

/// Waits until none of the partitions of `plan` is still moving.
pub async fn wait_until_moved(admin: &Admin, plan: &[Move]) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut reported = Instant::now();
    loop {
        let mut left = 0;
        let topics: BTreeMap<&str, ()> = plan.iter().map(|m| (m.topic.as_str(), ())).collect();
        for topic in topics.keys() {
            let info = admin
                .describe_topic(topic)
                .await
                .with_context(|| format!("describing topic {topic}"))?;
            left += still_moving(&info, plan);
        }
        if left == 0 {
            eprintln!(
                "all {} move(s) complete in {:.1} s",
                plan.len(),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if reported.elapsed() >= WAIT_REPORT {
            reported = Instant::now();
            eprintln!(
                "{} of {} partition(s) moved ({:.0} s)",
                plan.len() - left,
                plan.len(),
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// How many partitions of `plan` in `topic` are still moving.
fn still_moving(topic: &TopicInfo, plan: &[Move]) -> usize {
    plan.iter()
        .filter(|m| m.topic == topic.name)
        .filter(|m| {
            topic
                .partitions
                .get(m.partition as usize)
                .is_some_and(|p| p.is_reassigning())
        })
        .count()
}

/// Every topic, internal ones too, described.
pub async fn describe_all(admin: &Admin) -> anyhow::Result<Vec<TopicInfo>> {
    let mut out = Vec::new();
    for listing in admin.list_topics(true).await.context("listing topics")? {
        let info = admin
            .describe_topic(&listing.name)
            .await
            .with_context(|| format!("describing topic {}", listing.name))?;
        out.push(info);
    }
    Ok(out)
}

/// Every partition of every topic (internal ones too) that a move is still copying.
async fn moving_partitions(admin: &Admin) -> anyhow::Result<Vec<TopicInfo>> {
    let mut topics = describe_all(admin).await?;
    for t in &mut topics {
        t.partitions.retain(|p| p.is_reassigning());
    }
    topics.retain(|t| !t.partitions.is_empty());
    Ok(topics)
}

fn print_moving(out: &mut impl Write, format: Format, topics: &[TopicInfo]) -> anyhow::Result<()> {
    let rows = topics.iter().flat_map(|t| {
        t.partitions.iter().map(|p| MovingJson {
            topic: &t.name,
            partition: p.partition,
            replicas: &p.replicas,
            adding: &p.adding_replicas,
            removing: &p.removing_replicas,
            isr: &p.isr,
            throttle_bytes_per_sec: p.reassignment_throttle_bytes_per_sec,
        })
    });
    match format {
        Format::Json => {
            for row in rows {
                serde_json::to_writer(&mut *out, &row)?;
                writeln!(out)?;
            }
        }
        Format::Text => {
            let ids = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
            let rows: Vec<MovingJson<'_>> = rows.collect();
            if rows.is_empty() {
                writeln!(out, "no partition is moving")?;
                return Ok(());
            }
            let width = rows
                .iter()
                .map(|r| r.topic.len())
                .max()
                .unwrap_or(0)
                .max("TOPIC".len());
            writeln!(
                out,
                "{:<width$}  PARTITION  REPLICAS      ADDING    REMOVING  ISR",
                "TOPIC"
            )?;
            for r in rows {
                writeln!(
                    out,
                    "{:<width$}  {:>9}  {:<12}  {:<8}  {:<8}  {}",
                    r.topic,
                    r.partition,
                    ids(r.replicas),
                    ids(r.adding),
                    ids(r.removing),
                    ids(r.isr)
                )?;
            }
        }
    }
    Ok(())
}

/// A rate in bytes per second: a number with an optional unit (B, KB, MB, GB in powers
/// of 1000; KiB, MiB, GiB in powers of 1024).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a rate: expected a number such as 50MB or 20MiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().trim_end_matches("/s") {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    match number.checked_mul(scale) {
        Some(0) => Err("a throttle of 0 would never finish; leave --throttle out for none".into()),
        Some(rate) => Ok(rate),
        None => Err(format!("{s:?} is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_decimal_and_binary_units() {
        assert_eq!(parse_rate("1000"), Ok(1000));
        assert_eq!(parse_rate("50MB"), Ok(50_000_000));
        assert_eq!(parse_rate("20MiB"), Ok(20 << 20));
        assert_eq!(parse_rate("1gib/s"), Ok(1 << 30));
        assert!(parse_rate("0").unwrap_err().contains("never finish"));
        assert!(parse_rate("fast").unwrap_err().contains("not a rate"));
        assert!(
            parse_rate("5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            parse_rate("99999999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
    }
}
