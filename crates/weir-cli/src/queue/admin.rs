//! `weir queue describe` and `weir queue configure`: a share group's settings and each
//! share-partition's window, from the group's share coordinator, printed as a table or
//! as JSON; `weir queue list`, `reset` and `delete`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use weir_client::connection::human_duration;
use weir_client::{
    Admin, ClientError, ShareGroupInfo, ShareGroupSettings, ShareResetTo, ShareStart,
};

use crate::brokers::BrokerArgs;
use crate::group::table;
use crate::output::Format;

/// `weir queue describe`.
pub(super) async fn describe(
    brokers: &BrokerArgs,
    group: &str,
    format: Format,
) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&brokers.list(), brokers.connect_options()?)
        .await
        .context("connecting to the broker")?;
    let doing = format!("describing share group {group}");
    let info = match admin.describe_share_group(group).await {
        Ok(info) => info,
        Err(error @ ClientError::NotFound(_)) => {
            return Err(anyhow::anyhow!(
                "{doing}: {error}\n  hint: a share group has state once a member fetched from \
                 it (`weir queue consume TOPIC --group {group}`)"
            ));
        }
        Err(error) => return Err(anyhow::Error::from(error).context(doing)),
    };
    let mut out = std::io::stdout().lock();
    print_share_group(&mut out, format, &info)?;
    out.flush()?;
    Ok(())
}

/// `weir queue configure`.
pub(super) async fn configure(
    brokers: &BrokerArgs,
    group: &str,
    settings: &ShareGroupSettings,
    format: Format,
) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&brokers.list(), brokers.connect_options()?)
        .await
        .context("connecting to the broker")?;
    let doing = format!("configuring share group {group}");
    let info = match admin.configure_share_group(group, settings).await {
        Ok(info) => info,
        Err(error @ ClientError::NotFound(_)) if settings.dead_letter_topic.is_some() => {
            return Err(anyhow::anyhow!(
                "{doing}: {error}\n  hint: the dead-letter topic must exist: `weir topic \
                 create TOPIC --partitions N` makes one"
            ));
        }
        Err(error) => return Err(anyhow::Error::from(error).context(doing)),
    };
    let mut out = std::io::stdout().lock();
    print_share_group(&mut out, format, &info)?;
    out.flush()?;
    Ok(())
}

async fn connect(brokers: &BrokerArgs) -> anyhow::Result<Admin> {
    Admin::connect_with(&brokers.list(), brokers.connect_options()?)
        .await
        .context("connecting to the broker")
}

#[derive(Debug, Serialize)]
struct ListedJson<'a> {
    group_id: &'a str,
    members: u32,
}

/// `weir queue list`.
pub(super) async fn list(brokers: &BrokerArgs, format: Format) -> anyhow::Result<()> {
    let groups = connect(brokers)
        .await?
        .list_share_groups()
        .await
        .context("listing share groups")?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            for g in &groups {
                let line = ListedJson {
                    group_id: &g.group_id,
                    members: g.members,
                };
                writeln!(out, "{}", serde_json::to_string(&line)?)?;
            }
        }
        Format::Text => {
            let rows: Vec<[String; 2]> = groups
                .iter()
                .map(|g| [g.group_id.clone(), g.members.to_string()])
                .collect();
            table(&mut out, ["GROUP", "KAFKA-MEMBERS"], &[false, true], &rows)?;
        }
    }
    out.flush()?;
    Ok(())
}

#[derive(Debug, Serialize)]
struct ResetJson<'a> {
    topic: &'a str,
    partition: u32,
    start_offset: Option<i64>,
    error: Option<String>,
}

/// `weir queue reset`: fails (exit 1) if any partition was refused, after printing them
/// all.
pub(super) async fn reset(
    brokers: &BrokerArgs,
    group: &str,
    topic: &str,
    partitions: &[u32],
    to: ShareResetTo,
    format: Format,
) -> anyhow::Result<()> {
    let doing = format!("moving share group {group}'s start on {topic}");
    let results = match connect(brokers)
        .await?
        .reset_share_group(group, topic, partitions, to)
        .await
    {
        Ok(results) => results,
        Err(error @ ClientError::FailedPrecondition(_)) => {
            return Err(anyhow::anyhow!(
                "{doing}: {error}
  hint: stop the group's workers (or wait for their locks to end) and retry"
            ));
        }
        Err(error) => return Err(anyhow::Error::from(error).context(doing)),
    };
    let mut out = std::io::stdout().lock();
    let mut refused = 0;
    let mut rows = Vec::new();
    for r in &results {
        let (start, error) = match &r.result {
            Ok(start) => (Some(*start), None),
            Err(e) => {
                refused += 1;
                (None, Some(e.to_string()))
            }
        };
        match format {
            Format::Json => {
                let line = ResetJson {
                    topic: &r.topic,
                    partition: r.partition,
                    start_offset: start,
                    error,
                };
                writeln!(out, "{}", serde_json::to_string(&line)?)?;
            }
            Format::Text => rows.push([
                r.topic.clone(),
                r.partition.to_string(),
                start.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                error.unwrap_or_default(),
            ]),
        }
    }
    if format == Format::Text {
        table(
            &mut out,
            ["TOPIC", "PARTITION", "NEW-START", "ERROR"],
            &[false, true, true, false],
            &rows,
        )?;
    }
    out.flush()?;
    anyhow::ensure!(refused == 0, "{doing}: {refused} partitions were refused");
    Ok(())
}

/// `weir queue delete`.
pub(super) async fn delete(
    brokers: &BrokerArgs,
    group: &str,
    topics: &[String],
) -> anyhow::Result<()> {
    let doing = format!("deleting share group {group}");
    let named: Vec<&str> = topics.iter().map(String::as_str).collect();
    let results = match connect(brokers)
        .await?
        .delete_share_group(group, &named)
        .await
    {
        Ok(results) => results,
        Err(error @ ClientError::FailedPrecondition(_)) => {
            return Err(anyhow::anyhow!(
                "{doing}: {error}
  hint: stop the group's workers (or wait for their locks to end) and retry"
            ));
        }
        Err(error) => return Err(anyhow::Error::from(error).context(doing)),
    };
    let mut out = std::io::stdout().lock();
    let mut refused = 0;
    if topics.is_empty() {
        writeln!(out, "deleted share group {group}")?;
    }
    for (topic, result) in &results {
        match result {
            Ok(()) => writeln!(out, "{group}: forgot its state of {topic}")?,
            Err(e) => {
                refused += 1;
                writeln!(out, "{group}: {topic}: {e}")?;
            }
        }
    }
    out.flush()?;
    anyhow::ensure!(refused == 0, "{doing}: {refused} topics were refused");
    Ok(())
}

#[derive(Debug, Serialize)]
struct ShareGroupJson<'a> {
    group_id: &'a str,
    lock_duration_ms: u128,
    delivery_count_limit: u32,
    dead_letter_topic: Option<&'a str>,
    /// Conditions in `weir queue configure --filter` syntax; empty: no filter.
    filter: Vec<String>,
    /// "earliest" or "latest" when the group sets where it starts; null: each consumer's.
    start: Option<&'static str>,
    partitions: Vec<SharePartitionJson<'a>>,
}

#[derive(Debug, Serialize)]
struct SharePartitionJson<'a> {
    topic: &'a str,
    partition: u32,
    start_offset: i64,
    end_offset: i64,
    high_watermark: i64,
    available: u64,
    delayed: u64,
    acquired: u64,
    archived_pending: u64,
    filtered_out: u64,
    oldest_unfinished_offset: Option<i64>,
    oldest_unfinished_age_ms: Option<u128>,
}

fn start_name(start: ShareStart) -> &'static str {
    match start {
        ShareStart::Earliest => "earliest",
        ShareStart::Latest => "latest",
    }
}

fn print_share_group(
    out: &mut impl Write,
    format: Format,
    info: &ShareGroupInfo,
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let json = ShareGroupJson {
                group_id: &info.group_id,
                lock_duration_ms: info.lock_duration.as_millis(),
                delivery_count_limit: info.delivery_count_limit,
                dead_letter_topic: info.dead_letter_topic.as_deref(),
                filter: info.filter.iter().map(ToString::to_string).collect(),
                start: info.start.map(start_name),
                partitions: info
                    .partitions
                    .iter()
                    .map(|p| SharePartitionJson {
                        topic: &p.topic,
                        partition: p.partition,
                        start_offset: p.start_offset,
                        end_offset: p.end_offset,
                        high_watermark: p.high_watermark,
                        available: p.available,
                        delayed: p.delayed,
                        acquired: p.acquired,
                        archived_pending: p.archived_pending,
                        filtered_out: p.filtered_out,
                        oldest_unfinished_offset: p.oldest_unfinished_offset,
                        oldest_unfinished_age_ms: p.oldest_unfinished_age.map(|a| a.as_millis()),
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut *out, &json)?;
            writeln!(out)?;
        }
        Format::Text => {
            writeln!(out, "GROUP           {}", info.group_id)?;
            writeln!(
                out,
                "LOCK-DURATION   {}",
                human_duration(info.lock_duration)
            )?;
            writeln!(out, "DELIVERY-LIMIT  {}", info.delivery_count_limit)?;
            writeln!(
                out,
                "DEAD-LETTERS    {}",
                info.dead_letter_topic
                    .as_deref()
                    .unwrap_or("- (archived records are dropped)")
            )?;
            let filter: Vec<String> = info.filter.iter().map(|c| format!("'{c}'")).collect();
            writeln!(
                out,
                "FILTER          {}",
                if filter.is_empty() {
                    "- (every record is delivered)".to_owned()
                } else {
                    filter.join(" and ")
                }
            )?;
            writeln!(
                out,
                "START           {}",
                info.start.map_or("- (each consumer's --start)", start_name)
            )?;
            if info.partitions.is_empty() {
                return Ok(());
            }
            writeln!(out)?;
            let rows: Vec<[String; 12]> = info
                .partitions
                .iter()
                .map(|p| {
                    [
                        p.topic.clone(),
                        p.partition.to_string(),
                        p.start_offset.to_string(),
                        p.end_offset.to_string(),
                        p.high_watermark.to_string(),
                        p.available.to_string(),
                        p.delayed.to_string(),
                        p.acquired.to_string(),
                        p.archived_pending.to_string(),
                        p.filtered_out.to_string(),
                        p.oldest_unfinished_offset
                            .map_or_else(|| "-".to_owned(), |o| o.to_string()),
                        p.oldest_unfinished_age.map_or_else(|| "-".to_owned(), age),
                    ]
                })
                .collect();
            table(
                out,
                [
                    "TOPIC",
                    "PARTITION",
                    "START",
                    "END",
                    "HIGH-WATERMARK",
                    "AVAILABLE",
                    "DELAYED",
                    "ACQUIRED",
                    "ARCHIVED-PENDING",
                    "FILTERED",
                    "OLDEST-UNFINISHED",
                    "AGE",
                ],
                &[
                    false, true, true, true, true, true, true, true, true, true, true, true,
                ],
                &rows,
            )?;
        }
    }
    Ok(())
}

/// An age for people: `850 ms`, `42 s`, `5m 3s`, `3h 20m`, `2d 4h`.
fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{} ms", d.as_millis()),
        1..60 => format!("{s} s"),
        60..3_600 => format!("{}m {}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h {}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use weir_client::SharePartitionInfo;

    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(Duration::from_millis(850)), "850 ms");
        assert_eq!(age(Duration::from_secs(42)), "42 s");
        assert_eq!(age(Duration::from_secs(303)), "5m 3s");
        assert_eq!(age(Duration::from_secs(12_000)), "3h 20m");
        assert_eq!(age(Duration::from_secs(187_200)), "2d 4h");
    }

    #[test]
    fn a_share_group_prints_as_a_table_or_json() {
        let info = ShareGroupInfo {
            group_id: "workers".to_owned(),
            lock_duration: Duration::from_secs(30),
            delivery_count_limit: 5,
            dead_letter_topic: Some("jobs-dlq".to_owned()),
            filter: vec![
                "type=email".parse().unwrap(),
                "region^=eu-".parse().unwrap(),
            ],
            start: Some(ShareStart::Earliest),
            partitions: vec![SharePartitionInfo {
                topic: "jobs".to_owned(),
                partition: 0,
                start_offset: 10,
                end_offset: 20,
                high_watermark: 25,
                available: 4,
                delayed: 2,
                acquired: 3,
                archived_pending: 0,
                filtered_out: 7,
                oldest_unfinished_offset: Some(11),
                oldest_unfinished_age: Some(Duration::from_secs(90)),
            }],
        };
        let mut text = Vec::new();
        print_share_group(&mut text, Format::Text, &info).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.starts_with(
                "GROUP           workers\nLOCK-DURATION   30 s\nDELIVERY-LIMIT  5\n\
                 DEAD-LETTERS    jobs-dlq\nFILTER          'type=email' and 'region^=eu-'\n\
                 START           earliest\n"
            ),
            "{text}"
        );
        let last = text.lines().last().unwrap();
        let cells: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "jobs", "0", "10", "20", "25", "4", "2", "3", "0", "7", "11", "1m", "30s"
            ]
        );

        let mut json = Vec::new();
        print_share_group(&mut json, Format::Json, &info).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["lock_duration_ms"], 30_000);
        assert_eq!(value["partitions"][0]["oldest_unfinished_age_ms"], 90_000);
        assert_eq!(value["partitions"][0]["available"], 4);
        assert_eq!(value["dead_letter_topic"], "jobs-dlq");
        assert_eq!(value["filter"][1], "region^=eu-");
        assert_eq!(value["partitions"][0]["filtered_out"], 7);
    }
}
