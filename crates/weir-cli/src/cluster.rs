//! `weir cluster`: describe the cluster, its brokers (address, rack, fenced, voter or
//! observer) and active controller, as `DescribeCluster` reports them (text output is
//! aligned columns; `--format json` prints one JSON document); and plan and start the
//! moves that empty a broker (`decommission`) or spread replicas evenly (`rebalance`).

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use weir_client::{Admin, ClusterInfo};

use crate::brokers::BrokerArgs;
use crate::output::Format;
use crate::partition::{self, MoveArgs};
use crate::plan::{self, Move, Placed};

const EXAMPLES: &str = "\
Examples:
  weir cluster describe
  weir cluster describe --format json
  weir cluster describe --brokers 10.0.0.1:9292,10.0.0.2:9292   # the first that answers is asked
  weir cluster decommission 3 --throttle 50MB --wait   # move every replica off broker 3
  weir cluster rebalance --dry-run                     # after adding a broker: the plan
  weir cluster rebalance --throttle 50MB --wait        # ... and carrying it out

ADDRESS is what each broker advertises (weir serve --advertise): clients bootstrapped
from any broker connect to the others there, so it must be reachable from clients. A
fenced broker is registered but may not lead or be in sync (it missed its session, or is
catching up after a start). ROLE is `controller` for the active controller, `voter`
for the other controller voters, `observer` for brokers that follow the metadata without
voting. CONTROLLER is the active controller, `none` during an election. `weir topic describe NAME` shows which broker leads each partition.";

/// Describe the cluster.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t, global = true)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Show the cluster id, the active controller and every registered broker with the
    /// address it advertises to clients, its rack, whether it is fenced and whether it
    /// is a controller voter.
    #[command(after_help = EXAMPLES)]
    Describe,
    /// Move every replica off a broker, onto the least-loaded other brokers (each in the
    /// place the broker had, so its preferred leaderships go to its replacements). Once
    /// `weir partition moving` lists nothing, the broker holds no data and can be
    /// stopped.
    #[command(after_help = EXAMPLES)]
    Decommission {
        /// The broker to empty.
        broker: i32,
        /// Print the plan without starting it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        moving: MoveArgs,
    },
    /// Spread every topic's replicas evenly over the unfenced brokers (after adding
    /// brokers, or to move replicas off fenced ones): replicas move from the most to the
    /// least loaded brokers until no two differ by more than one.
    #[command(after_help = EXAMPLES)]
    Rebalance {
        /// Print the plan without starting it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        moving: MoveArgs,
    },
}

/// The cluster as `--format json` prints it.
#[derive(Debug, Serialize)]
struct ClusterJson<'a> {
    cluster_id: &'a str,
    controller_id: i32,
    brokers: Vec<BrokerJson<'a>>,
}

#[derive(Debug, Serialize)]
struct BrokerJson<'a> {
    broker_id: i32,
    host: &'a str,
    port: u32,
    /// `host:port`, as clients connect to it.
    address: String,
    rack: Option<&'a str>,
    fenced: bool,
    /// A controller voter (false: an observer broker).
    voter: bool,
    controller: bool,
}

/// Runs a `weir cluster` subcommand.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&args.brokers.list(), args.brokers.connect_options()?)
        .await
        .context("connecting to the broker")?;
    let (dry_run, moving, leaving) = match args.command {
        ClusterCommand::Describe => return describe(&admin, args.format).await,
        ClusterCommand::Decommission {
            broker,
            dry_run,
            moving,
        } => (dry_run, moving, Some(broker)),
        ClusterCommand::Rebalance { dry_run, moving } => (dry_run, moving, None),
    };
    let cluster = admin
        .describe_cluster()
        .await
        .context("describing the cluster")?;
    let brokers: Vec<i32> = cluster
        .brokers
        .iter()
        .filter(|b| !b.fenced)
        .map(|b| b.broker_id)
        .collect();
    let placed = placed_partitions(&admin).await?;
    let plan = match leaving {
        Some(broker) => {
            if !cluster.brokers.iter().any(|b| b.broker_id == broker) {
                anyhow::bail!("broker {broker} is not registered (see `weir cluster describe`)");
            }
            plan::decommission(&placed, &brokers, broker).map_err(anyhow::Error::msg)?
        }
        None => plan::rebalance_topics(&placed, &brokers),
    };
    let mut out = std::io::stdout().lock();
    print_plan(&mut out, args.format, &plan)?;
    out.flush()?;
    if dry_run || plan.is_empty() {
        return Ok(());
    }
    partition::submit(&admin, &plan, moving.throttle).await?;
    if moving.wait {
        partition::wait_until_moved(&admin, &plan).await?;
    }
    Ok(())
}

/// Every partition of every topic (internal ones too), where it is or is moving to.
async fn placed_partitions(admin: &Admin) -> anyhow::Result<Vec<Placed>> {
    let topics = partition::describe_all(admin).await?;
    Ok(topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Placed {
                topic: t.name.clone(),
                partition: p.partition,
                replicas: p.target_replicas(),
            })
        })
        .collect())
}

/// A plan's moves as `--format json` prints them.
#[derive(Debug, Serialize)]
struct MoveJson<'a> {
    topic: &'a str,
    partition: u32,
    from: &'a [i32],
    to: &'a [i32],
}

fn print_plan(out: &mut impl Write, format: Format, plan: &[Move]) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            for m in plan {
                let json = MoveJson {
                    topic: &m.topic,
                    partition: m.partition,
                    from: &m.from,
                    to: &m.to,
                };
                serde_json::to_writer(&mut *out, &json)?;
                writeln!(out)?;
            }
        }
        Format::Text => {
            if plan.is_empty() {
                writeln!(out, "nothing to move")?;
            }
            for m in plan {
                writeln!(
                    out,
                    "{} {}: {:?} -> {:?}",
                    m.topic, m.partition, m.from, m.to
                )?;
            }
        }
    }
    Ok(())
}

async fn describe(admin: &Admin, format: Format) -> anyhow::Result<()> {
    let cluster = admin
        .describe_cluster()
        .await
        .context("describing the cluster")?;
    let mut out = std::io::stdout().lock();
    print_cluster(&mut out, format, &cluster)?;
    out.flush()?;
    Ok(())
}

fn print_cluster(
    out: &mut impl Write,
    format: Format,
    cluster: &ClusterInfo,
) -> anyhow::Result<()> {
    let mut brokers: Vec<BrokerJson<'_>> = cluster
        .brokers
        .iter()
        .map(|b| BrokerJson {
            broker_id: b.broker_id,
            host: &b.host,
            port: b.port,
            address: address(&b.host, b.port),
            rack: b.rack.as_deref(),
            fenced: b.fenced,
            voter: b.voter,
            controller: b.broker_id == cluster.controller_id,
        })
        .collect();
    brokers.sort_by_key(|b| b.broker_id);
    match format {
        Format::Json => {
            let json = ClusterJson {
                cluster_id: &cluster.cluster_id,
                controller_id: cluster.controller_id,
                brokers,
            };
            serde_json::to_writer(&mut *out, &json)?;
            writeln!(out)?;
        }
        Format::Text => {
            writeln!(out, "CLUSTER     {}", cluster.cluster_id)?;
            writeln!(out, "CONTROLLER  {}", id_or_none(cluster.controller_id))?;
            writeln!(out)?;
            let width = brokers
                .iter()
                .map(|b| b.address.len())
                .max()
                .unwrap_or(0)
                .max("ADDRESS".len());
            let rack_width = brokers
                .iter()
                .filter_map(|b| b.rack.map(str::len))
                .max()
                .unwrap_or(0)
                .max("RACK".len());
            writeln!(
                out,
                "BROKER  {:<width$}  {:<rack_width$}  STATE     ROLE",
                "ADDRESS", "RACK"
            )?;
            for b in &brokers {
                let state = if b.fenced { "fenced" } else { "unfenced" };
                let role = match (b.controller, b.voter) {
                    (true, _) => "controller",
                    (false, true) => "voter",
                    (false, false) => "observer",
                };
                let line = format!(
                    "{:>6}  {:<width$}  {:<rack_width$}  {state:<8}  {role}",
                    b.broker_id,
                    b.address,
                    b.rack.unwrap_or("-")
                );
                writeln!(out, "{}", line.trim_end())?;
            }
        }
    }
    Ok(())
}

/// `host:port`, IPv6 hosts in brackets.
fn address(host: &str, port: u32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A broker id, or `none` for -1.
fn id_or_none(id: i32) -> String {
    if id < 0 {
        "none".to_owned()
    } else {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use weir_client::BrokerInfo;

    use super::*;

    fn cluster() -> ClusterInfo {
        ClusterInfo {
            cluster_id: "c1".to_owned(),
            controller_id: 2,
            brokers: vec![
                BrokerInfo {
                    broker_id: 2,
                    host: "b.example".to_owned(),
                    port: 9392,
                    rack: Some("rack-b".to_owned()),
                    fenced: false,
                    voter: true,
                },
                BrokerInfo {
                    broker_id: 1,
                    host: "::1".to_owned(),
                    port: 9292,
                    rack: None,
                    fenced: true,
                    voter: false,
                },
                BrokerInfo {
                    broker_id: 3,
                    host: "c.example".to_owned(),
                    port: 9492,
                    rack: None,
                    fenced: false,
                    voter: true,
                },
            ],
        }
    }

    #[test]
    fn text_lists_brokers_by_id_and_marks_the_controller() {
        let mut out = Vec::new();
        print_cluster(&mut out, Format::Text, &cluster()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "CLUSTER     c1");
        assert_eq!(lines[1], "CONTROLLER  2");
        assert_eq!(
            lines[3], "BROKER  ADDRESS         RACK    STATE     ROLE",
            "{text}"
        );
        assert_eq!(
            lines[4],
            "     1  [::1]:9292      -       fenced    observer"
        );
        assert_eq!(
            lines[5],
            "     2  b.example:9392  rack-b  unfenced  controller"
        );
        assert_eq!(lines[6], "     3  c.example:9492  -       unfenced  voter");
    }

    #[test]
    fn json_has_every_field() {
        let mut out = Vec::new();
        print_cluster(&mut out, Format::Json, &cluster()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["cluster_id"], "c1");
        assert_eq!(json["controller_id"], 2);
        assert_eq!(json["brokers"][0]["broker_id"], 1);
        assert_eq!(json["brokers"][0]["address"], "[::1]:9292");
        assert_eq!(json["brokers"][0]["controller"], false);
        assert_eq!(json["brokers"][0]["rack"], serde_json::Value::Null);
        assert_eq!(json["brokers"][0]["fenced"], true);
        assert_eq!(json["brokers"][1]["rack"], "rack-b");
        assert_eq!(json["brokers"][1]["fenced"], false);
        assert_eq!(json["brokers"][1]["host"], "b.example");
        assert_eq!(json["brokers"][1]["port"], 9392);
        assert_eq!(json["brokers"][1]["controller"], true);
        assert_eq!(json["brokers"][0]["voter"], false);
        assert_eq!(json["brokers"][1]["voter"], true);
    }
}
