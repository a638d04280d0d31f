//! `weir group`: list, describe, reset the offsets of, and delete consumer groups. Text
//! output is aligned columns; `--format json` prints one JSON document on stdout.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;
use weir_client::{
    Admin, ClientError, GroupInfo, GroupListing, OffsetResetPlan, ResetOffsetsTo, TopicPartition,
};

use crate::UsageError;
use crate::brokers::BrokerArgs;
use crate::output::Format;

const EXAMPLES: &str = "\
Examples:
  weir group list
  weir group describe billing                  # lag per partition, and the members
  weir group describe billing --format json
  weir group reset-offsets billing --topic orders --to-earliest            # dry run: shows the plan
  weir group reset-offsets billing --topic orders --to-earliest --execute  # applies it
  weir group reset-offsets billing --topic orders:0,1 --shift-by -100 --execute
  weir group reset-offsets billing --all-topics --to-datetime 2024-05-01T00:00:00Z --execute
  weir group delete billing

Offsets can be reset, and a group deleted, only while it has no members: stop its
consumers first (or wait for their session timeout).";

/// Manage consumer groups.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t, global = true)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// List the groups with their state and member count.
    List,
    /// Show a group's committed offsets, high watermarks and lag per partition, and its
    /// members.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets. A dry run unless --execute: without it the plan
    /// is printed and nothing changes. Only while the group has no members.
    #[command(
        group = ArgGroup::new("targets").required(true),
        group = ArgGroup::new("to").required(true),
    )]
    ResetOffsets {
        /// Group id (a group that does not exist yet is created by --execute).
        group: String,
        /// A topic, or TOPIC:P,P,... for some of its partitions (repeatable).
        #[arg(long, group = "targets", value_name = "TOPIC[:P,P...]", value_parser = parse_target)]
        topic: Vec<Target>,
        /// Every topic the group has committed offsets for.
        #[arg(long, group = "targets")]
        all_topics: bool,
        /// To the log start offset.
        #[arg(long, group = "to")]
        to_earliest: bool,
        /// To the high watermark (skip everything not read yet).
        #[arg(long, group = "to")]
        to_latest: bool,
        /// To this offset (clamped to each partition's valid range).
        #[arg(long, group = "to", value_name = "OFFSET", value_parser = clap::value_parser!(i64).range(0..))]
        to_offset: Option<i64>,
        /// To the first record at or after this time: RFC 3339
        /// (2024-05-01T12:00:00Z, 2024-05-01T14:00:00+02:00) or ms since the Unix epoch.
        #[arg(long, group = "to", value_name = "TIME", value_parser = parse_datetime)]
        to_datetime: Option<i64>,
        /// Move the committed offsets by N (negative: back), clamped to the valid range.
        #[arg(long, group = "to", value_name = "N", allow_negative_numbers = true)]
        shift_by: Option<i64>,
        /// Only show the plan (the default).
        #[arg(long, conflicts_with = "execute")]
        dry_run: bool,
        /// Apply the plan.
        #[arg(long)]
        execute: bool,
    },
    /// Delete a group and its committed offsets (refused while it has members).
    Delete {
        /// Group id.
        group: String,
    },
}

/// One `--topic` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    topic: String,
    /// Empty: every partition.
    partitions: Vec<u32>,
}

fn parse_target(text: &str) -> Result<Target, String> {
    let (topic, partitions) = match text.split_once(':') {
        None => (text, Vec::new()),
        Some((topic, list)) => {
            let mut partitions = Vec::new();
            for p in list.split(',') {
                let p: u32 = p.trim().parse().map_err(|_| {
                    format!("{text:?}: {p:?} is not a partition number; use TOPIC or TOPIC:0,1,2")
                })?;
                partitions.push(p);
            }
            partitions.sort_unstable();
            partitions.dedup();
            (topic, partitions)
        }
    };
    if topic.is_empty() {
        return Err(format!(
            "{text:?} has no topic name; use TOPIC or TOPIC:0,1,2"
        ));
    }
    Ok(Target {
        topic: topic.to_owned(),
        partitions,
    })
}

/// `--to-datetime`: ms since the epoch, or RFC 3339 with a `Z` or `±HH:MM` offset.
fn parse_datetime(text: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "{text:?} is not a time: use RFC 3339 (2024-05-01T12:00:00Z, \
             2024-05-01T12:00:00.5+02:00) or ms since the Unix epoch"
        )
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad());
    }
    rfc3339_ms(text).ok_or_else(bad)
}

/// Milliseconds since the Unix epoch of an RFC 3339 date-time.
fn rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if b[at] == b'.' {
        let start = at + 1;
        at = start;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        if at == start {
            return None;
        }
        // Milliseconds: the first three digits, padded.
        let fraction = &text[start..at.min(start + 3)];
        millis = format!("{fraction:0<3}").parse().ok()?;
    }
    let offset_minutes = match b.get(at..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let hours = digits(at + 1..at + 3)?;
            let minutes = digits(at + 4..at + 6)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let total = hours * 60 + minutes;
            if *sign == b'+' { total } else { -total }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A group command after its arguments were checked.
enum Validated {
    List,
    Describe {
        group: String,
    },
    Reset {
        group: String,
        /// `None`: every topic the group has offsets for.
        targets: Option<Vec<Target>>,
        to: ResetOffsetsTo,
        execute: bool,
    },
    Delete {
        group: String,
    },
}

/// Runs a `weir group` subcommand.
pub async fn run(args: GroupArgs) -> anyhow::Result<()> {
    let command = validate(args.command)?;
    let admin = Admin::connect_with(&args.brokers.list(), args.brokers.connect_options()?)
        .await
        .context("connecting to the broker")?;
    let format = args.format;
    let mut out = std::io::stdout().lock();
    match command {
        Validated::List => {
            let groups = admin.list_groups().await.context("listing groups")?;
            print_listing(&mut out, format, &groups)?;
        }
        Validated::Describe { group } => {
            let info = admin
                .describe_group(&group)
                .await
                .map_err(|e| explain(e, &group, format!("describing group {group}")))?;
            print_group(&mut out, format, &info)?;
        }
        Validated::Reset {
            group,
            targets,
            to,
            execute,
        } => {
            let targets = match targets {
                Some(targets) => targets,
                None => {
                    let info = admin
                        .describe_group(&group)
                        .await
                        .map_err(|e| explain(e, &group, format!("describing group {group}")))?;
                    let mut topics: Vec<String> = info
                        .offsets
                        .iter()
                        .filter(|o| o.committed_offset.is_some())
                        .map(|o| o.topic.clone())
                        .collect();
                    topics.dedup();
                    if topics.is_empty() {
                        anyhow::bail!(
                            "group {group} has no committed offsets, so --all-topics names \
                             nothing; name the topics with --topic"
                        );
                    }
                    topics
                        .into_iter()
                        .map(|topic| Target {
                            topic,
                            partitions: Vec::new(),
                        })
                        .collect()
                }
            };
            let list: Vec<(&str, &[u32])> = targets
                .iter()
                .map(|t| (t.topic.as_str(), t.partitions.as_slice()))
                .collect();
            let doing = if execute {
                format!("resetting the offsets of group {group}")
            } else {
                format!("planning an offset reset of group {group}")
            };
            let plan = admin
                .reset_offsets(&group, &list, to, !execute)
                .await
                .map_err(|e| explain(e, &group, doing))?;
            print_plan(&mut out, format, &group, &plan)?;
            out.flush()?;
            if plan.applied {
                eprintln!(
                    "reset {} partition(s) of group {group}",
                    plan.partitions.len()
                );
            } else {
                eprintln!(
                    "dry run: nothing was changed; add --execute to apply this plan to group {group}"
                );
            }
        }
        Validated::Delete { group } => {
            admin
                .delete_group(&group)
                .await
                .map_err(|e| explain(e, &group, format!("deleting group {group}")))?;
            match format {
                Format::Text => writeln!(out, "deleted group {group}")?,
                Format::Json => writeln!(out, "{}", serde_json::json!({ "deleted": group }))?,
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Everything that can be checked without the broker.
fn validate(command: GroupCommand) -> anyhow::Result<Validated> {
    let check = |group: &str| -> anyhow::Result<()> {
        weir_client::group::check_group_id(group).map_err(|e| match e {
            ClientError::Config(message) => UsageError(message).into(),
            other => anyhow::Error::from(other),
        })
    };
    Ok(match command {
        GroupCommand::List => Validated::List,
        GroupCommand::Describe { group } => {
            check(&group)?;
            Validated::Describe { group }
        }
        GroupCommand::Delete { group } => {
            check(&group)?;
            Validated::Delete { group }
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            all_topics,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
            shift_by,
            dry_run: _,
            execute,
        } => {
            check(&group)?;
            let to = if to_earliest {
                ResetOffsetsTo::Earliest
            } else if to_latest {
                ResetOffsetsTo::Latest
            } else if let Some(offset) = to_offset {
                ResetOffsetsTo::Offset(offset)
            } else if let Some(ms) = to_datetime {
                ResetOffsetsTo::Timestamp(ms)
            } else if let Some(n) = shift_by {
                ResetOffsetsTo::ShiftBy(n)
            } else {
                unreachable!("clap requires one --to-* or --shift-by")
            };
            let targets = if all_topics {
                None
            } else {
                // One entry per topic: TOPIC and TOPIC:P together mean all of it.
                let mut merged: Vec<Target> = Vec::new();
                for t in topic {
                    match merged.iter_mut().find(|m| m.topic == t.topic) {
                        Some(m) if m.partitions.is_empty() || t.partitions.is_empty() => {
                            m.partitions.clear();
                        }
                        Some(m) => {
                            m.partitions.extend(t.partitions);
                            m.partitions.sort_unstable();
                            m.partitions.dedup();
                        }
                        None => merged.push(t),
                    }
                }
                Some(merged)
            };
            Validated::Reset {
                group,
                targets,
                to,
                execute,
            }
        }
    })
}

/// The error with what to do about it, for the answers that mean something particular
/// for a group. The hint replaces the generic ones (`explain` in `brokers.rs` speaks of
/// topics for NOT_FOUND), so the broker's message is kept as text.
fn explain(error: ClientError, group: &str, doing: String) -> anyhow::Error {
    match &error {
        ClientError::NotFound(message) if message.contains(group) || !message.contains("topic") => {
            anyhow::anyhow!(
                "{doing}: {error}\n  hint: `weir group list` shows the groups (a group exists \
                 once a consumer joined it or offsets were committed for it)"
            )
        }
        ClientError::FailedPrecondition(_) => anyhow::anyhow!(
            "{doing}: {error}\n  hint: the group has live members; stop its consumers (`weir \
             group describe {group}` lists them) or wait for their session timeout, then try \
             again"
        ),
        _ => anyhow::Error::from(error).context(doing),
    }
}

#[derive(Debug, Serialize)]
struct ListingJson<'a> {
    group_id: &'a str,
    state: &'a str,
    members: u32,
}

#[derive(Debug, Serialize)]
struct GroupJson<'a> {
    group_id: &'a str,
    state: &'a str,
    group_epoch: i32,
    assignor: &'a str,
    coordinator_partition: u32,
    offsets: Vec<OffsetJson<'a>>,
    members: Vec<MemberJson<'a>>,
}

#[derive(Debug, Serialize)]
struct OffsetJson<'a> {
    topic: &'a str,
    partition: u32,
    committed_offset: Option<i64>,
    high_watermark: i64,
    lag: i64,
    member_id: Option<&'a str>,
    client_id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct MemberJson<'a> {
    member_id: &'a str,
    client_id: &'a str,
    client_host: &'a str,
    member_epoch: i32,
    subscribed_topics: &'a [String],
    subscribed_topic_regex: Option<&'a str>,
    assignment: Vec<TopicPartitionsJson>,
    target_assignment: Vec<TopicPartitionsJson>,
    /// Since the coordinator last heard from the member.
    ms_since_heartbeat: u128,
    /// The member is removed once `ms_since_heartbeat` reaches this.
    session_timeout_ms: u128,
    /// The heartbeat interval the member was last told.
    heartbeat_interval_ms: u128,
}

#[derive(Debug, Serialize)]
struct TopicPartitionsJson {
    topic: String,
    partitions: Vec<u32>,
}

#[derive(Debug, Serialize)]
struct PlanJson<'a> {
    group_id: &'a str,
    applied: bool,
    partitions: Vec<ResetJson<'a>>,
}

#[derive(Debug, Serialize)]
struct ResetJson<'a> {
    topic: &'a str,
    partition: u32,
    previous_offset: Option<i64>,
    new_offset: i64,
}

fn print_listing(
    out: &mut impl Write,
    format: Format,
    groups: &[GroupListing],
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let list: Vec<ListingJson<'_>> = groups
                .iter()
                .map(|g| ListingJson {
                    group_id: &g.group_id,
                    state: g.state.as_str(),
                    members: g.members,
                })
                .collect();
            serde_json::to_writer(&mut *out, &list)?;
            writeln!(out)?;
        }
        Format::Text => {
            let width = groups
                .iter()
                .map(|g| g.group_id.len())
                .max()
                .unwrap_or(0)
                .max(5);
            writeln!(out, "{:<width$}  {:<9}  MEMBERS", "GROUP", "STATE")?;
            for g in groups {
                writeln!(
                    out,
                    "{:<width$}  {:<9}  {:>7}",
                    g.group_id,
                    g.state.as_str(),
                    g.members
                )?;
            }
        }
    }
    Ok(())
}

/// `[{topic, partitions}]` from sorted partitions.
fn grouped(partitions: &[TopicPartition]) -> Vec<TopicPartitionsJson> {
    let mut out: Vec<TopicPartitionsJson> = Vec::new();
    for tp in partitions {
        match out.last_mut() {
            Some(last) if last.topic == *tp.topic => last.partitions.push(tp.partition),
            _ => out.push(TopicPartitionsJson {
                topic: tp.topic.to_string(),
                partitions: vec![tp.partition],
            }),
        }
    }
    out
}

/// `orders:0,1 refunds:2`.
fn compact(partitions: &[TopicPartition]) -> String {
    if partitions.is_empty() {
        return "-".to_owned();
    }
    grouped(partitions)
        .iter()
        .map(|t| {
            let list: Vec<String> = t.partitions.iter().map(u32::to_string).collect();
            format!("{}:{}", t.topic, list.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_group(out: &mut impl Write, format: Format, info: &GroupInfo) -> anyhow::Result<()> {
    let client_of: HashMap<&str, &str> = info
        .members
        .iter()
        .map(|m| (m.member_id.as_str(), m.client_id.as_str()))
        .collect();
    match format {
        Format::Json => {
            let json = GroupJson {
                group_id: &info.group_id,
                state: info.state.as_str(),
                group_epoch: info.group_epoch,
                assignor: &info.assignor,
                coordinator_partition: info.coordinator_partition,
                offsets: info
                    .offsets
                    .iter()
                    .map(|o| OffsetJson {
                        topic: &o.topic,
                        partition: o.partition,
                        committed_offset: o.committed_offset,
                        high_watermark: o.high_watermark,
                        lag: o.lag,
                        member_id: o.member_id.as_deref(),
                        client_id: o
                            .member_id
                            .as_deref()
                            .and_then(|m| client_of.get(m).copied()),
                    })
                    .collect(),
                members: info
                    .members
                    .iter()
                    .map(|m| MemberJson {
                        member_id: &m.member_id,
                        client_id: &m.client_id,
                        client_host: &m.client_host,
                        member_epoch: m.member_epoch,
                        subscribed_topics: &m.subscribed_topics,
                        subscribed_topic_regex: m.subscribed_topic_regex.as_deref(),
                        assignment: grouped(&m.assignment),
                        target_assignment: grouped(&m.target_assignment),
                        ms_since_heartbeat: m.since_heartbeat.as_millis(),
                        session_timeout_ms: m.session_timeout.as_millis(),
                        heartbeat_interval_ms: m.heartbeat_interval.as_millis(),
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut *out, &json)?;
            writeln!(out)?;
        }
        Format::Text => {
            writeln!(out, "GROUP        {}", info.group_id)?;
            writeln!(out, "STATE        {}", info.state)?;
            writeln!(out, "EPOCH        {}", info.group_epoch)?;
            writeln!(out, "ASSIGNOR     {}", info.assignor)?;
            writeln!(
                out,
                "COORDINATOR  __consumer_offsets/{}",
                info.coordinator_partition
            )?;
            writeln!(out)?;
            let rows: Vec<[String; 7]> = info
                .offsets
                .iter()
                .map(|o| {
                    let member = o.member_id.as_deref();
                    [
                        o.topic.clone(),
                        o.partition.to_string(),
                        o.committed_offset
                            .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                        o.high_watermark.to_string(),
                        o.lag.to_string(),
                        member.unwrap_or("-").to_owned(),
                        member
                            .and_then(|m| client_of.get(m).copied())
                            .unwrap_or("-")
                            .to_owned(),
                    ]
                })
                .collect();
            table(
                out,
                [
                    "TOPIC",
                    "PARTITION",
                    "COMMITTED",
                    "HIGH-WATERMARK",
                    "LAG",
                    "MEMBER",
                    "CLIENT-ID",
                ],
                &[false, true, true, true, true, false, false],
                &rows,
            )?;
            writeln!(out)?;
            let rows: Vec<[String; 7]> = info
                .members
                .iter()
                .map(|m| {
                    [
                        m.member_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        m.member_epoch.to_string(),
                        format!("{} s ago", m.since_heartbeat.as_secs()),
                        compact(&m.assignment),
                        match &m.subscribed_topic_regex {
                            Some(regex) => format!("/{regex}/"),
                            None => m.subscribed_topics.join(","),
                        },
                    ]
                })
                .collect();
            table(
                out,
                [
                    "MEMBER",
                    "CLIENT-ID",
                    "HOST",
                    "EPOCH",
                    "LAST-HEARTBEAT",
                    "PARTITIONS",
                    "SUBSCRIPTION",
                ],
                &[false, false, false, true, true, false, false],
                &rows,
            )?;
        }
    }
    Ok(())
}

fn print_plan(
    out: &mut impl Write,
    format: Format,
    group: &str,
    plan: &OffsetResetPlan,
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let json = PlanJson {
                group_id: group,
                applied: plan.applied,
                partitions: plan
                    .partitions
                    .iter()
                    .map(|p| ResetJson {
                        topic: &p.topic,
                        partition: p.partition,
                        previous_offset: p.previous_offset,
                        new_offset: p.new_offset,
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut *out, &json)?;
            writeln!(out)?;
        }
        Format::Text => {
            let rows: Vec<[String; 4]> = plan
                .partitions
                .iter()
                .map(|p| {
                    [
                        p.topic.clone(),
                        p.partition.to_string(),
                        p.previous_offset
                            .map_or_else(|| "-".to_owned(), |o| o.to_string()),
                        p.new_offset.to_string(),
                    ]
                })
                .collect();
            table(
                out,
                ["TOPIC", "PARTITION", "PREVIOUS", "NEW"],
                &[false, true, true, true],
                &rows,
            )?;
        }
    }
    Ok(())
}

/// Aligned columns; `right[i]` right-aligns column i (numbers). Also `weir queue`'s.
pub(crate) fn table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    right: &[bool; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; N]| -> String {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            if right[i] {
                text.push_str(&format!("{cell:>width$}", width = widths[i]));
            } else if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}", width = widths[i]));
            }
        }
        text
    };
    writeln!(out, "{}", line(header))?;
    for row in rows {
        writeln!(out, "{}", line(std::array::from_fn(|i| row[i].as_str())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("orders"),
            Ok(Target {
                topic: "orders".into(),
                partitions: vec![]
            })
        );
        assert_eq!(
            parse_target("orders:2,0,2"),
            Ok(Target {
                topic: "orders".into(),
                partitions: vec![0, 2]
            })
        );
        for bad in [":1", "orders:", "orders:x", "orders:1,,2", "orders:-1"] {
            assert!(parse_target(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn datetimes_parse_as_rfc3339_or_millis() {
        assert_eq!(parse_datetime("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime("2023-11-14T23:13:20.25+01:00"),
            Ok(1_700_000_000_250)
        );
        assert_eq!(
            parse_datetime("2023-11-14t21:13:20.123456-01:00"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_datetime("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000)
        );
        for bad in [
            "",
            "yesterday",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0100",
            "-5",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tables_align() {
        let mut out = Vec::new();
        table(
            &mut out,
            ["TOPIC", "LAG"],
            &[false, true],
            &[
                ["orders".to_owned(), "5".to_owned()],
                ["t".to_owned(), "1234".to_owned()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "TOPIC    LAG\norders     5\nt       1234\n"
        );
    }
}
