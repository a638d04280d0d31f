//! `weir topic`: create, list, describe, delete, add partitions to and configure topics.
//! Text output is aligned columns; `--format json` prints one JSON document on stdout.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use weir_client::{Admin, ClientError, ConfigEntry, TopicInfo, TopicListing};
use weir_server::MAX_PARTITIONS_PER_TOPIC;

use crate::UsageError;
use crate::brokers::BrokerArgs;
use crate::output::{Format, key_value_map, parse_key_value};

const EXAMPLES: &str = "\
Examples:
  weir topic create events --partitions 3
  weir topic create orders --partitions 6 --replication-factor 3 --config min.insync.replicas=2
  weir topic create audit --partitions 1 --config retention.ms=604800000 --config flush.policy=every-append
  weir topic list --format json
  weir topic describe events                    # leader, replicas and in-sync replicas per partition
  weir topic describe events --format json
  weir topic add-partitions events --num 2        # 3 -> 5 partitions
  weir topic alter-config events --set retention.ms=3600000 --delete segment.bytes
  weir topic delete events";

const CREATE_HELP: &str = "\
Examples:
  weir topic create events --partitions 3
  weir topic create orders -p 6 -r 3 --config min.insync.replicas=2   # acks=all survives one broker down
  weir topic create events --partitions 3 --if-not-exists             # in scripts: run it every time

With --if-not-exists, a topic that exists already is left as it is and the command
succeeds (as kafka-topics.sh --if-not-exists does), with a note on stderr; the note says
so when the topic differs from what was asked (partitions, replicas, settings), since
nothing was changed to match. --format json prints the existing topic.

Each partition gets --replication-factor copies on different brokers; more copies than the
cluster has brokers are refused. With acks=all (the producers' default) a record is
acknowledged once every in-sync replica has it, and refused while fewer than
min.insync.replicas are in sync.";

const DESCRIBE_HELP: &str = "\
Examples:
  weir topic describe events
  weir topic describe events --format json | jq '.partitions[] | {partition, leader, isr}'

LEADER is the broker id that serves the partition (-1: none right now, an election is under
way); REPLICAS are the brokers holding a copy, ISR those in sync with the leader. A
partition whose ISR is shorter than its replicas is under-replicated; one with fewer in-sync
replicas than min.insync.replicas refuses acks=all produces. `weir cluster describe` maps
broker ids to addresses.";

/// Manage topics.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t, global = true)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic.
    #[command(after_help = CREATE_HELP)]
    Create {
        /// Topic name (letters, digits, '.', '_', '-'; at most 249 characters).
        name: String,
        #[arg(
            long,
            short = 'p',
            default_value_t = 1,
            help = format!("Number of partitions, 1 to {MAX_PARTITIONS_PER_TOPIC}"),
            value_parser = partition_count()
        )]
        partitions: u32,
        /// Copies of each partition, on different brokers: at least 1 and at most the
        /// number of brokers [default: the cluster's, 1 on a single node].
        #[arg(long, short = 'r', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        replication_factor: Option<u32>,
        /// A topic setting, KEY=VALUE (repeatable); see `weir topic describe` for the keys.
        #[arg(long, short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// Succeed, changing nothing, if the topic exists already (see below).
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topics.
    List {
        /// Include the broker's internal topics.
        #[arg(long)]
        internal: bool,
    },
    /// Show a topic's partitions (leader broker, leader epoch, replicas, in-sync
    /// replicas, offsets) and its settings.
    #[command(after_help = DESCRIBE_HELP)]
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and all its records.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Add partitions to a topic (keyed records may map to other partitions afterwards).
    #[command(group = clap::ArgGroup::new("how").required(true))]
    AddPartitions {
        /// Topic name.
        name: String,
        /// Partitions to add.
        #[arg(long, short = 'n', group = "how", value_parser = partition_count())]
        num: Option<u32>,
        #[arg(
            long,
            group = "how",
            help = format!("The total number of partitions wanted, at most {MAX_PARTITIONS_PER_TOPIC}"),
            value_parser = partition_count()
        )]
        total: Option<u32>,
    },
    /// Change a topic's settings: set keys, or reset them to their defaults.
    #[command(group = clap::ArgGroup::new("change").required(true).multiple(true))]
    AlterConfig {
        /// Topic name.
        name: String,
        /// KEY=VALUE to set (repeatable).
        #[arg(long, short = 's', value_name = "KEY=VALUE", value_parser = parse_key_value, group = "change")]
        set: Vec<(String, String)>,
        /// KEY to reset to its default (repeatable).
        #[arg(long, short = 'd', value_name = "KEY", group = "change")]
        delete: Vec<String>,
    },
}

/// A topic as `--format json` prints it.
#[derive(Debug, Serialize)]
struct TopicJson<'a> {
    name: &'a str,
    topic_id: &'a str,
    internal: bool,
    partitions: Vec<PartitionJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    configs: Option<Vec<ConfigJson<'a>>>,
}

#[derive(Debug, Serialize)]
struct PartitionJson<'a> {
    partition: u32,
    leader: i32,
    leader_epoch: i32,
    replicas: &'a [i32],
    isr: &'a [i32],
    log_start_offset: i64,
    high_watermark: i64,
    log_end_offset: i64,
}

#[derive(Debug, Serialize)]
struct ConfigJson<'a> {
    name: &'a str,
    value: &'a str,
    is_default: bool,
}

#[derive(Debug, Serialize)]
struct ListingJson<'a> {
    name: &'a str,
    partitions: u32,
    replication_factor: u32,
    internal: bool,
}

/// Runs a `weir topic` subcommand.
pub async fn run(args: TopicArgs) -> anyhow::Result<()> {
    // Everything that can be checked without the broker is checked first.
    let command = match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            config,
            if_not_exists,
        } => Validated::Create {
            name,
            partitions,
            replication_factor: replication_factor.unwrap_or(0),
            configs: key_value_map(config)?,
            if_not_exists,
        },
        TopicCommand::AlterConfig { name, set, delete } => {
            if let Some(key) = delete.iter().find(|k| set.iter().any(|(s, _)| s == *k)) {
                return Err(UsageError(format!("{key} is both set and deleted")).into());
            }
            Validated::AlterConfig {
                name,
                set: key_value_map(set)?,
                reset: delete,
            }
        }
        TopicCommand::List { internal } => Validated::List { internal },
        TopicCommand::Describe { name } => Validated::Describe { name },
        TopicCommand::Delete { name } => Validated::Delete { name },
        TopicCommand::AddPartitions { name, num, total } => Validated::AddPartitions {
            name,
            how: match (num, total) {
                (Some(n), _) => Grow::By(n),
                (None, Some(t)) => Grow::To(t),
                (None, None) => unreachable!("clap requires --num or --total"),
            },
        },
    };
    let admin = Admin::connect_with(&args.brokers.list(), args.brokers.connect_options()?)
        .await
        .context("connecting to the broker")?;
    let format = args.format;
    let mut out = std::io::stdout().lock();
    match command {
        Validated::Create {
            name,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            let created = admin
                .create_topic(&name, partitions, replication_factor, configs.clone())
                .await;
            let topic = match created {
                Err(ClientError::AlreadyExists(_)) if if_not_exists => {
                    let asked = Asked {
                        partitions,
                        replication_factor,
                        configs: &configs,
                    };
                    let existing = existing_topic(&admin, &name, &asked).await?;
                    if format == Format::Json {
                        print_topic(&mut out, format, &existing, None)?;
                    }
                    out.flush()?;
                    return Ok(());
                }
                other => other.with_context(|| format!("creating topic {name}"))?,
            };
            match format {
                Format::Text => writeln!(
                    out,
                    "created topic {} with {} partition(s), {} replica(s) each",
                    topic.name,
                    topic.partitions.len(),
                    topic.partitions.first().map_or(0, |p| p.replicas.len())
                )?,
                Format::Json => print_topic(&mut out, format, &topic, None)?,
            }
        }
        Validated::List { internal } => {
            let topics = admin
                .list_topics(internal)
                .await
                .context("listing topics")?;
            print_listing(&mut out, format, &topics)?;
        }
        Validated::Describe { name } => {
            let topic = admin
                .describe_topic(&name)
                .await
                .with_context(|| format!("describing topic {name}"))?;
            let configs = admin
                .describe_topic_config(&name)
                .await
                .with_context(|| format!("reading the settings of topic {name}"))?;
            print_topic(&mut out, format, &topic, Some(&configs))?;
        }
        Validated::Delete { name } => {
            admin
                .delete_topic(&name)
                .await
                .with_context(|| format!("deleting topic {name}"))?;
            match format {
                Format::Text => writeln!(out, "deleted topic {name}")?,
                Format::Json => writeln!(out, "{}", serde_json::json!({ "deleted": name }))?,
            }
        }
        Validated::AddPartitions { name, how } => {
            let total = match how {
                Grow::To(total) => total,
                Grow::By(more) => {
                    let topic = admin
                        .describe_topic(&name)
                        .await
                        .with_context(|| format!("describing topic {name}"))?;
                    (topic.partitions.len() as u32).saturating_add(more)
                }
            };
            let topic = admin
                .create_partitions(&name, total)
                .await
                .with_context(|| format!("growing topic {name} to {total} partitions"))?;
            match format {
                Format::Text => writeln!(
                    out,
                    "topic {} now has {} partition(s)",
                    topic.name,
                    topic.partitions.len()
                )?,
                Format::Json => print_topic(&mut out, format, &topic, None)?,
            }
        }
        Validated::AlterConfig { name, set, reset } => {
            let entries = admin
                .alter_topic_config(&name, set, reset)
                .await
                .with_context(|| format!("changing the settings of topic {name}"))?;
            print_configs(&mut out, format, &entries)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `--partitions`, `--num`, `--total`: 1 to the broker's limit.
fn partition_count() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=i64::from(MAX_PARTITIONS_PER_TOPIC))
}

/// What `topic create` asked for (0 replicas: the broker's default).
struct Asked<'a> {
    partitions: u32,
    replication_factor: u32,
    configs: &'a std::collections::HashMap<String, String>,
}

/// `topic create --if-not-exists` of a topic that exists: the topic as it is, after a
/// note on stderr saying so, and how it differs from what was asked.
async fn existing_topic(admin: &Admin, name: &str, asked: &Asked<'_>) -> anyhow::Result<TopicInfo> {
    let topic = admin
        .describe_topic(name)
        .await
        .with_context(|| format!("describing topic {name}"))?;
    let settings = admin
        .describe_topic_config(name)
        .await
        .with_context(|| format!("reading the settings of topic {name}"))?;
    let differences = differences(&topic, &settings, asked);
    if differences.is_empty() {
        eprintln!("note: topic {name} exists already; nothing changed");
    } else {
        eprintln!(
            "note: topic {name} exists already and differs from what was asked ({}); nothing \
             changed (`weir topic add-partitions` and `weir topic alter-config` change it)",
            differences.join(", ")
        );
    }
    Ok(topic)
}

/// How an existing topic differs from what `create` asked for.
fn differences(topic: &TopicInfo, settings: &[ConfigEntry], asked: &Asked<'_>) -> Vec<String> {
    let mut differences = Vec::new();
    let partitions = topic.partitions.len();
    if partitions != asked.partitions as usize {
        differences.push(format!("{partitions} partitions, not {}", asked.partitions));
    }
    let replicas = topic.partitions.first().map_or(0, |p| p.replicas.len());
    if asked.replication_factor != 0 && replicas != asked.replication_factor as usize {
        differences.push(format!(
            "{replicas} replicas, not {}",
            asked.replication_factor
        ));
    }
    let mut keys: Vec<&String> = asked.configs.keys().collect();
    keys.sort();
    for key in keys {
        let wanted = &asked.configs[key];
        match settings.iter().find(|e| &e.name == key) {
            Some(e) if &e.value == wanted => {}
            Some(e) => differences.push(format!("{key}={}, not {wanted}", e.value)),
            None => differences.push(format!("{key} unset, not {wanted}")),
        }
    }
    differences
}

/// A topic command after its arguments were checked.
enum Validated {
    Create {
        name: String,
        partitions: u32,
        replication_factor: u32,
        configs: std::collections::HashMap<String, String>,
        if_not_exists: bool,
    },
    List {
        internal: bool,
    },
    Describe {
        name: String,
    },
    Delete {
        name: String,
    },
    AddPartitions {
        name: String,
        how: Grow,
    },
    AlterConfig {
        name: String,
        set: std::collections::HashMap<String, String>,
        reset: Vec<String>,
    },
}

/// How `add-partitions` grows a topic.
enum Grow {
    By(u32),
    To(u32),
}

fn print_listing(
    out: &mut impl Write,
    format: Format,
    topics: &[TopicListing],
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let list: Vec<ListingJson<'_>> = topics
                .iter()
                .map(|t| ListingJson {
                    name: &t.name,
                    partitions: t.partitions,
                    replication_factor: t.replication_factor,
                    internal: t.internal,
                })
                .collect();
            serde_json::to_writer(&mut *out, &list)?;
            writeln!(out)?;
        }
        Format::Text => {
            let width = topics
                .iter()
                .map(|t| t.name.len())
                .max()
                .unwrap_or(0)
                .max(4);
            writeln!(out, "{:<width$}  PARTITIONS  REPLICAS", "NAME")?;
            for t in topics {
                let internal = if t.internal { "  (internal)" } else { "" };
                writeln!(
                    out,
                    "{:<width$}  {:>10}  {:>8}{internal}",
                    t.name, t.partitions, t.replication_factor
                )?;
            }
        }
    }
    Ok(())
}

fn print_topic(
    out: &mut impl Write,
    format: Format,
    topic: &TopicInfo,
    configs: Option<&[ConfigEntry]>,
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let json = TopicJson {
                name: &topic.name,
                topic_id: &topic.topic_id,
                internal: topic.internal,
                partitions: topic
                    .partitions
                    .iter()
                    .map(|p| PartitionJson {
                        partition: p.partition,
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        replicas: &p.replicas,
                        isr: &p.isr,
                        log_start_offset: p.log_start_offset,
                        high_watermark: p.high_watermark,
                        log_end_offset: p.log_end_offset,
                    })
                    .collect(),
                configs: configs.map(config_json),
            };
            serde_json::to_writer(&mut *out, &json)?;
            writeln!(out)?;
        }
        Format::Text => {
            writeln!(out, "NAME      {}", topic.name)?;
            writeln!(out, "ID        {}", topic.topic_id)?;
            writeln!(out, "INTERNAL  {}", topic.internal)?;
            writeln!(out)?;
            writeln!(
                out,
                "PARTITION  LEADER  EPOCH  REPLICAS  ISR       LOG-START  HIGH-WATERMARK  LOG-END"
            )?;
            for p in &topic.partitions {
                writeln!(
                    out,
                    "{:>9}  {:>6}  {:>5}  {:<8}  {:<8}  {:>9}  {:>14}  {:>7}",
                    p.partition,
                    p.leader,
                    p.leader_epoch,
                    ids(&p.replicas),
                    ids(&p.isr),
                    p.log_start_offset,
                    p.high_watermark,
                    p.log_end_offset
                )?;
            }
            if let Some(configs) = configs {
                writeln!(out)?;
                print_configs(out, format, configs)?;
            }
        }
    }
    Ok(())
}

fn print_configs(
    out: &mut impl Write,
    format: Format,
    entries: &[ConfigEntry],
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *out, &config_json(entries))?;
            writeln!(out)?;
        }
        Format::Text => {
            let width = entries
                .iter()
                .map(|e| e.name.len())
                .max()
                .unwrap_or(0)
                .max(6);
            writeln!(out, "{:<width$}  VALUE", "CONFIG")?;
            for e in entries {
                let source = if e.is_default { "  (default)" } else { "" };
                writeln!(out, "{:<width$}  {}{source}", e.name, e.value)?;
            }
        }
    }
    Ok(())
}

fn config_json(entries: &[ConfigEntry]) -> Vec<ConfigJson<'_>> {
    entries
        .iter()
        .map(|e| ConfigJson {
            name: &e.name,
            value: &e.value,
            is_default: e.is_default,
        })
        .collect()
}

/// Broker ids as `0,1,2`.
fn ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}
