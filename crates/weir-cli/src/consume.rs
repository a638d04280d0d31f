//! `weir consume`: read a topic's partitions from a starting point and print the records,
//! as text (the value, optionally `key<sep>value`) or JSON (one object per record).
//!
//! Without `--follow` the command stops at the end of the log as it was when it started:
//! the high watermark of each partition is looked up first (ListOffsets latest), and a
//! partition is done once its position reaches that offset. `--count N` stops after N
//! records, whichever comes first.
//!
//! With `--group G` the command is a member of consumer group G (a
//! [`GroupConsumer`]): the broker assigns it partitions of the topics, each starts at the
//! group's committed offset (`--from` only where there is none), it commits as it goes,
//! and before it exits (`--count` reached, end of the log, Ctrl-C or SIGTERM, closed
//! stdout) it commits exactly what it printed and leaves the group. The end of the log is
//! defined in [`GROUP_END`].

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use clap::{Args, ValueEnum};
use serde::Serialize;
use weir_client::connection::Timeouts;
use weir_client::{
    Admin, ClientError, Consumer, ConsumerConfig, ConsumerRecord, GroupConsumer,
    GroupConsumerConfig, IsolationLevel, OffsetQuery, OffsetReset, SeekTo, TopicPartition,
};

use crate::UsageError;
use crate::brokers::BrokerArgs;
use crate::output::{Format, parse_duration};
use crate::signals::StopSignals;

mod group_end;
use group_end::EndOfLog;

/// Most records taken from the consumer per poll.
const POLL_MAX_RECORDS: usize = 8192;
/// How long one poll waits for records; between polls the command checks whether it is
/// done, so this bounds how late it notices.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);
/// Stdout buffer; flushed after every poll so followers see records promptly.
const OUTPUT_BUFFER_BYTES: usize = 256 * 1024;
/// With `--group`: how often what was printed is committed while the command runs.
const GROUP_COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// With `--group`: how many times in a row an out-of-range position is moved into the
/// log before the command gives up (the log may be shrinking under it).
const MAX_OUT_OF_RANGE_RETRIES: u32 = 5;
/// The client id a `weir consume --group` member shows in `weir group describe`.
const GROUP_CLIENT_ID: &str = "weir-cli";

/// What "the end of the log" means for `--group` without `--follow` (also in `--help`).
pub const GROUP_END: &str =
    "End of the log with --group (without --follow): the command stops once, for 1 s, no
record arrived and its assignment did not change, every partition assigned to it has
been read up to its high watermark (looked up when the partition was assigned, and again
when the position reached it), and the broker reports its assignment complete (no
partition meant for it is still being released by another member). Partitions other
members keep are theirs to read while they answer. A consumer that crashed without
leaving keeps its partitions until the broker ends its session (45 s by default): the
command then waits for them, saying so on stderr, for up to --wait (60 s by default), reads
them when they come, and otherwise fails (exit 1) naming them and their lag.";

const EXAMPLES: &str = "\
Examples:
  weir consume events
      Every record from the beginning, then exit at the end of the log.
  weir consume events --from end --follow
      Only new records, until interrupted.
  weir consume events --from 42 --partition 0 --count 10 --format json
  weir consume events --from @1700000000000      # ms since the epoch
  weir consume events --format json --encoding base64     # binary keys and values
  weir consume events --print-keys --key-separator '='
  weir consume events --group billing --count 100
      As a member of group billing: from the group's committed offsets (--from only
      where it has none); commits what it printed and leaves the group before exiting.
  weir consume events refunds --group billing --follow      # several topics, until Ctrl-C
  weir consume events --isolation read-committed
      Only records of committed transactions (Kafka transactional producers'), up to
      the first transaction still open.
  weir consume events --skip-corrupt
      Past a stored batch that cannot be decoded, with a warning naming its offsets.
  weir consume events --group billing --wait 2m
      Drain the group: if a crashed member still holds partitions, wait up to 2 minutes
      for the broker to hand them over (exit 1 naming them if it does not).

Exit status: 0 on success (also on Ctrl-C or SIGTERM with --group, after committing, and
when stdout is closed early; a second signal exits at once with 130 or 143), 1 if reading
failed (also at a stored batch that cannot be decoded, after the records before it,
unless --skip-corrupt), 2 for bad arguments.
";

/// Read records from a topic and print them.
#[derive(Debug, Args)]
#[command(after_help = format!("{GROUP_END}\n\n{EXAMPLES}"))]
pub struct ConsumeArgs {
    /// Topic to read (several only with --group).
    #[arg(required = true, value_name = "TOPIC")]
    topics: Vec<String>,
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Where to start: beginning, end, an OFFSET, or @TIMESTAMP (ms since the Unix epoch).
    /// With --group: only for partitions the group has no committed offset for.
    #[arg(long, short = 'o', default_value = "beginning", value_parser = parse_start, value_name = "beginning|end|OFFSET|@TIMESTAMP")]
    from: Start,
    /// Read only this partition (repeatable) [default: all].
    #[arg(long, short = 'p', conflicts_with = "group")]
    partition: Vec<u32>,
    /// Consume as a member of this consumer group: the broker assigns this command a
    /// share of the partitions, it resumes from the group's committed offsets, commits
    /// what it prints, and leaves the group when it exits.
    #[arg(long, short = 'g', value_name = "GROUP")]
    group: Option<String>,
    /// Stop after this many records.
    #[arg(long, short = 'c', value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Keep waiting for new records at the end of the log.
    #[arg(long, short = 'F')]
    follow: bool,
    /// With --group, without --follow: how long to wait for partitions with records left
    /// that members which stopped answering still hold (a consumer that crashed without
    /// leaving keeps them until its session ends) before failing; 0s fails as soon as
    /// such a member is recognised.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    wait: Duration,
    /// Output format: text prints values, json one object per record with topic,
    /// partition, offset, timestamp, key, value and headers.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// How keys, values and header values are printed: text (UTF-8; invalid bytes are
    /// replaced, with a warning) or base64.
    #[arg(long, value_enum, default_value_t = Encoding::Text)]
    encoding: Encoding,
    /// Text format: print `key<SEP>value`.
    #[arg(long, short = 'K')]
    print_keys: bool,
    /// Separator between key and value for --print-keys.
    #[arg(long, default_value = "\t", value_name = "SEP")]
    key_separator: String,
    /// Read on past a stored batch that cannot be decoded (a corrupt batch): its records
    /// are skipped, with a warning on stderr naming their offsets. Without it the
    /// command prints the records before the batch and fails there.
    #[arg(long)]
    skip_corrupt: bool,
    /// Which records to read: read-uncommitted (all, as Kafka's default) or
    /// read-committed (only those of committed transactions, up to the first
    /// transaction still open: without --follow the command stops there).
    #[arg(long, value_enum, default_value_t = Isolation::ReadUncommitted)]
    isolation: Isolation,
}

/// `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    /// Every record, those of open and aborted transactions included.
    ReadUncommitted,
    /// Only records of committed transactions and records outside transactions.
    ReadCommitted,
}

impl From<Isolation> for IsolationLevel {
    fn from(isolation: Isolation) -> IsolationLevel {
        match isolation {
            Isolation::ReadUncommitted => IsolationLevel::ReadUncommitted,
            Isolation::ReadCommitted => IsolationLevel::ReadCommitted,
        }
    }
}

/// `--from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Beginning,
    End,
    Offset(i64),
    Timestamp(i64),
}

fn parse_start(text: &str) -> Result<Start, String> {
    let bad = || {
        format!(
            "{text:?} is not a start position: use beginning, end, an offset (e.g. 42) or \
             @TIMESTAMP in ms since the epoch (e.g. @1700000000000)"
        )
    };
    match text {
        "beginning" | "earliest" | "start" => Ok(Start::Beginning),
        "end" | "latest" => Ok(Start::End),
        _ => {
            if let Some(ms) = text.strip_prefix('@') {
                let ms: i64 = ms.parse().map_err(|_| bad())?;
                if ms < 0 {
                    return Err(bad());
                }
                Ok(Start::Timestamp(ms))
            } else {
                let offset: i64 = text.parse().map_err(|_| bad())?;
                if offset < 0 {
                    return Err(bad());
                }
                Ok(Start::Offset(offset))
            }
        }
    }
}

/// `--encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Encoding {
    /// UTF-8 text.
    Text,
    /// Standard base64 (with padding).
    Base64,
}

/// `weir consume`, checked.
#[derive(Debug)]
pub struct ConsumeConfig {
    /// Without a group: exactly one.
    topics: Vec<String>,
    group: Option<String>,
    brokers: Vec<String>,
    timeouts: Timeouts,
    tls: Option<weir_client::ClientTls>,
    from: Start,
    partitions: Option<Vec<u32>>,
    count: Option<u64>,
    follow: bool,
    wait: Duration,
    format: Format,
    encoding: Encoding,
    key_separator: Option<String>,
    skip_corrupt: bool,
    isolation: IsolationLevel,
}

impl ConsumeArgs {
    /// Checks the arguments and builds the typed configuration.
    pub fn into_config(mut self) -> anyhow::Result<ConsumeConfig> {
        if self.topics.iter().any(String::is_empty) {
            return Err(UsageError("the topic name is empty".to_owned()).into());
        }
        let mut seen = std::collections::HashSet::new();
        self.topics.retain(|t| seen.insert(t.clone()));
        if self.topics.len() > 1 && self.group.is_none() {
            return Err(
                UsageError("several topics can only be consumed with --group".to_owned()).into(),
            );
        }
        if let Some(group) = &self.group
            && let Err(error) = weir_client::group::check_group_id(group)
        {
            return Err(UsageError(format!("--group: {error}")).into());
        }
        if self.print_keys && self.format == Format::Json {
            return Err(UsageError(
                "--print-keys is for --format text; JSON always has the key".to_owned(),
            )
            .into());
        }
        self.partition.sort_unstable();
        self.partition.dedup();
        Ok(ConsumeConfig {
            topics: self.topics,
            group: self.group,
            brokers: self.brokers.list(),
            timeouts: self.brokers.timeouts(),
            tls: self.brokers.tls()?,
            from: self.from,
            partitions: (!self.partition.is_empty()).then_some(self.partition),
            count: self.count,
            follow: self.follow,
            wait: self.wait,
            format: self.format,
            encoding: self.encoding,
            key_separator: self.print_keys.then_some(self.key_separator),
            skip_corrupt: self.skip_corrupt,
            isolation: self.isolation.into(),
        })
    }
}

/// Runs `weir consume`.
pub async fn run(config: ConsumeConfig) -> anyhow::Result<()> {
    let admin = Admin::connect_with(
        &config.brokers,
        weir_client::ConnectOptions {
            timeouts: config.timeouts,
            tls: config.tls.clone(),
        },
    )
    .await
    .context("connecting to the broker")?;
    if let Some(group) = &config.group {
        return run_group(&config, group, &admin).await;
    }
    let topic_name = &config.topics[0];
    let topic = admin
        .describe_topic(topic_name)
        .await
        .with_context(|| format!("looking up topic {topic_name}"))?;
    let all = topic.partitions.len() as u32;
    let partitions: Vec<u32> = match &config.partitions {
        Some(wanted) => {
            if let Some(&p) = wanted.iter().find(|&&p| p >= all) {
                anyhow::bail!(
                    "topic {} has no partition {p} (it has {all}: 0..={})",
                    topic_name,
                    all.saturating_sub(1)
                );
            }
            wanted.clone()
        }
        None => (0..all).collect(),
    };
    // The end of the log, fixed now: without --follow the command stops there.
    let ends: HashMap<u32, i64> = if config.follow {
        HashMap::new()
    } else {
        let queries: Vec<(u32, OffsetQuery)> = partitions
            .iter()
            .map(|&p| (p, OffsetQuery::Latest))
            .collect();
        admin
            .list_offsets_isolated(topic_name, &queries, config.isolation)
            .await
            .with_context(|| format!("looking up the end of topic {topic_name}"))?
            .into_iter()
            .map(|o| (o.partition, o.offset))
            .collect()
    };

    let mut consumer = Consumer::connect(ConsumerConfig {
        brokers: config.brokers.clone(),
        // An offset below the log start (deleted by retention) starts at the log start.
        auto_offset_reset: OffsetReset::Earliest,
        timeouts: config.timeouts,
        tls: config.tls.clone(),
        isolation: config.isolation,
        ..ConsumerConfig::default()
    })
    .await
    .context("connecting to the broker")?;
    let assignment: Vec<(&str, u32)> = partitions
        .iter()
        .map(|&p| (topic_name.as_str(), p))
        .collect();
    consumer.assign(&assignment);
    let seek = match config.from {
        Start::Beginning => SeekTo::Beginning,
        Start::End => SeekTo::End,
        Start::Offset(o) => SeekTo::Offset(o),
        Start::Timestamp(ms) => SeekTo::Timestamp(ms),
    };
    // Partitions still to read up to their end (without --follow).
    let mut open: Vec<u32> = Vec::with_capacity(partitions.len());
    for &p in &partitions {
        consumer
            .seek(topic_name, p, seek)
            .await
            .with_context(|| format!("finding the start of {topic_name}/{p}"))?;
        let position = consumer.position(topic_name, p).unwrap_or(0);
        if config.follow || ends.get(&p).is_some_and(|&end| position < end) {
            open.push(p);
        }
    }

    let mut printer = Printer::new(&config);
    let mut printed: u64 = 0;
    while !open.is_empty() && config.count.is_none_or(|c| printed < c) {
        let records = match consumer.poll(POLL_MAX_RECORDS, POLL_TIMEOUT).await {
            Ok(records) => records,
            Err(error @ ClientError::CorruptBatch { .. }) => {
                let (topic, partition, next_offset) =
                    past_corrupt_batch(config.skip_corrupt, error)?;
                consumer
                    .seek(&topic, partition, SeekTo::Offset(next_offset))
                    .await
                    .with_context(|| format!("moving {topic}/{partition} to {next_offset}"))?;
                Vec::new()
            }
            Err(error) => {
                return Err(error).with_context(|| format!("reading topic {topic_name}"));
            }
        };
        for record in &records {
            if !config.follow
                && ends
                    .get(&record.partition)
                    .is_some_and(|&e| record.offset >= e)
            {
                continue; // past the end fixed at start
            }
            printer.print(record)?;
            printed += 1;
            if config.count.is_some_and(|c| printed >= c) {
                break;
            }
        }
        printer.flush()?;
        if !config.follow {
            open.retain(|&p| {
                let end = ends.get(&p).copied().unwrap_or(0);
                consumer.position(topic_name, p).unwrap_or(0) < end
            });
        }
    }
    printer.flush()?;
    Ok(())
}

/// `weir consume --group`: see the module docs and [`GROUP_END`].
async fn run_group(config: &ConsumeConfig, group: &str, admin: &Admin) -> anyhow::Result<()> {
    // Subscribing to a topic that does not exist is allowed (it may be created later),
    // but from the command line it is most likely a typo.
    for topic in &config.topics {
        admin
            .describe_topic(topic)
            .await
            .with_context(|| format!("looking up topic {topic}"))?;
    }
    let reset = match config.from {
        Start::Beginning => OffsetReset::Earliest,
        Start::End => OffsetReset::Latest,
        // Positioned by the command itself (see `unpositioned` below).
        Start::Offset(_) | Start::Timestamp(_) => OffsetReset::None,
    };
    let mut consumer = GroupConsumer::connect(GroupConsumerConfig {
        brokers: config.brokers.clone(),
        group_id: group.to_owned(),
        client_id: GROUP_CLIENT_ID.to_owned(),
        auto_offset_reset: reset,
        auto_commit: true,
        auto_commit_interval: GROUP_COMMIT_INTERVAL,
        timeouts: config.timeouts,
        tls: config.tls.clone(),
        isolation: config.isolation,
        ..GroupConsumerConfig::default()
    })
    .await
    .context("connecting to the broker")?;
    consumer
        .subscribe(config.topics.iter().cloned())
        .context("subscribing")?;

    // Ctrl-C (or SIGTERM, from a supervisor) ends the loop between polls, so the command
    // can commit and leave; a second one exits at once.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let mut stop = StopSignals::listen().context("listening for SIGTERM and Ctrl-C")?;
    let signals = tokio::spawn(async move {
        stop.recv().await;
        flag.store(true, Ordering::SeqCst);
        std::process::exit(stop.recv().await.exit_code());
    });
    let result = group_loop(config, group, admin, &mut consumer, &interrupted).await;
    // What was printed and nothing more: positions were moved back over anything that
    // did not reach stdout (see `group_loop`).
    let closed = consumer
        .close()
        .await
        .with_context(|| format!("committing the offsets of group {group} before leaving it"));
    signals.abort();
    result.and(closed)
}

async fn group_loop(
    config: &ConsumeConfig,
    group: &str,
    admin: &Admin,
    consumer: &mut GroupConsumer,
    interrupted: &AtomicBool,
) -> anyhow::Result<()> {
    let start = match config.from {
        Start::Beginning => SeekTo::Beginning,
        Start::End => SeekTo::End,
        Start::Offset(o) => SeekTo::Offset(o),
        Start::Timestamp(ms) => SeekTo::Timestamp(ms),
    };
    let mut printer = Printer::new(config);
    let mut printed: u64 = 0;
    let mut end = EndOfLog::new(config.wait, config.isolation);
    let mut out_of_range_retries = 0;
    while config.count.is_none_or(|c| printed < c) && !interrupted.load(Ordering::SeqCst) {
        // Never more than --count needs: every record returned is printed, so the
        // positions committed on exit are exactly what was printed.
        let max = config.count.map_or(POLL_MAX_RECORDS, |c| {
            (c - printed).min(POLL_MAX_RECORDS as u64) as usize
        });
        let records = match consumer.poll(max, POLL_TIMEOUT).await {
            Ok(records) => records,
            Err(ClientError::OutOfRange(_)) if out_of_range_retries < MAX_OUT_OF_RANGE_RETRIES => {
                // A committed offset (or --from) outside a partition's log, for example
                // after retention deleted it: continue from the nearest valid offset.
                out_of_range_retries += 1;
                for tp in consumer.assignment() {
                    let Some(position) = consumer.position(&tp.topic, tp.partition) else {
                        continue;
                    };
                    let valid = clamp_to_log(admin, &tp, position, config.isolation).await?;
                    if valid != position {
                        eprintln!(
                            "warning: {tp}: offset {position} is outside the partition's log; \
                             continuing from {valid}"
                        );
                        consumer
                            .seek(&tp.topic, tp.partition, SeekTo::Offset(valid))
                            .await
                            .with_context(|| format!("moving {tp} to {valid}"))?;
                    }
                }
                continue;
            }
            Err(ClientError::InvalidArgument(_)) if !consumer.unpositioned().is_empty() => {
                // No committed offset and --from OFFSET|@TIMESTAMP: start there (an
                // offset outside a partition's log is clamped to it).
                for tp in consumer.unpositioned() {
                    let to = match start {
                        SeekTo::Offset(offset) => SeekTo::Offset(
                            clamp_to_log(admin, &tp, offset, config.isolation).await?,
                        ),
                        other => other,
                    };
                    consumer
                        .seek(&tp.topic, tp.partition, to)
                        .await
                        .with_context(|| format!("finding the start of {tp}"))?;
                }
                continue;
            }
            Err(error @ ClientError::CorruptBatch { .. }) => {
                let (topic, partition, next_offset) =
                    past_corrupt_batch(config.skip_corrupt, error)?;
                consumer
                    .seek(&topic, partition, SeekTo::Offset(next_offset))
                    .await
                    .with_context(|| format!("moving {topic}/{partition} to {next_offset}"))?;
                continue;
            }
            Err(error) => {
                return Err(error).with_context(|| format!("consuming as group {group}"));
            }
        };
        if let Err(error) = print_all(&mut printer, &records) {
            // Whatever is in this batch may not have reached the reader: move back to
            // its first record of each partition, so it is not committed as printed.
            let mut first: HashMap<TopicPartition, i64> = HashMap::new();
            for record in &records {
                first
                    .entry(TopicPartition::new(record.topic.clone(), record.partition))
                    .or_insert(record.offset);
            }
            for (tp, offset) in first {
                consumer
                    .seek(&tp.topic, tp.partition, SeekTo::Offset(offset))
                    .await?;
            }
            return Err(error);
        }
        printed += records.len() as u64;
        if !records.is_empty() {
            out_of_range_retries = 0;
        }
        if !config.follow
            && end
                .reached(admin, group, &config.topics, consumer, !records.is_empty())
                .await?
        {
            break;
        }
    }
    Ok(())
}

/// A stored batch that cannot be decoded (`error`, a [`ClientError::CorruptBatch`]),
/// met after the records before it were printed: with `--skip-corrupt`, a warning and
/// the topic, partition and offset to read on from; without, the error, saying how to
/// get past it.
fn past_corrupt_batch(skip: bool, error: ClientError) -> anyhow::Result<(String, u32, i64)> {
    let ClientError::CorruptBatch {
        topic,
        partition,
        offset,
        next_offset,
        reason,
    } = error
    else {
        return Err(error.into());
    };
    if !skip {
        anyhow::bail!(
            "{topic}/{partition}: the records at offsets {offset}..{next_offset} cannot be \
             read: their stored batch cannot be decoded ({reason}); the records before \
             them were printed\n  hint: rerun with --skip-corrupt to skip them (with a \
             warning), or read on from --partition {partition} --from {next_offset}"
        );
    }
    eprintln!(
        "warning: {topic}/{partition}: skipped the records at offsets {offset}..{next_offset}: \
         their stored batch cannot be decoded ({reason})"
    );
    Ok((topic, partition, next_offset))
}

fn print_all(printer: &mut Printer, records: &[ConsumerRecord]) -> anyhow::Result<()> {
    for record in records {
        printer.print(record)?;
    }
    printer.flush()?;
    Ok(())
}

/// `offset` moved into `[log start, end]` of the partition (the end: the high watermark,
/// or under read committed the last stable offset).
async fn clamp_to_log(
    admin: &Admin,
    tp: &TopicPartition,
    offset: i64,
    isolation: IsolationLevel,
) -> anyhow::Result<i64> {
    let found = admin
        .list_offsets_isolated(
            &tp.topic,
            &[
                (tp.partition, OffsetQuery::Earliest),
                (tp.partition, OffsetQuery::Latest),
            ],
            isolation,
        )
        .await
        .with_context(|| format!("looking up the offsets of {tp}"))?;
    match found.as_slice() {
        [start, end] => Ok(offset.clamp(start.offset, end.offset.max(start.offset))),
        _ => anyhow::bail!("the broker's answer has no offsets for {tp}"),
    }
}

/// The high watermarks of some partitions (under read committed, their last stable
/// offsets), one lookup per topic.
async fn high_watermarks(
    admin: &Admin,
    partitions: &[TopicPartition],
    isolation: IsolationLevel,
) -> anyhow::Result<HashMap<TopicPartition, i64>> {
    let mut by_topic: HashMap<&str, Vec<(u32, OffsetQuery)>> = HashMap::new();
    for tp in partitions {
        by_topic
            .entry(&tp.topic)
            .or_default()
            .push((tp.partition, OffsetQuery::Latest));
    }
    let mut out = HashMap::with_capacity(partitions.len());
    for (topic, queries) in by_topic {
        for found in admin
            .list_offsets_isolated(topic, &queries, isolation)
            .await
            .with_context(|| format!("looking up the end of topic {topic}"))?
        {
            out.insert(TopicPartition::new(topic, found.partition), found.offset);
        }
    }
    Ok(out)
}

/// Formats records onto a buffered stdout (also `weir queue consume`'s).
pub(crate) struct Printer {
    out: std::io::BufWriter<std::io::Stdout>,
    format: Format,
    encoding: Encoding,
    key_separator: Option<String>,
    warned_invalid_utf8: bool,
}

/// A record as `--format json` prints it.
#[derive(Debug, Serialize)]
struct RecordJson<'a> {
    topic: &'a str,
    partition: u32,
    offset: i64,
    timestamp: i64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<HeaderJson<'a>>,
}

#[derive(Debug, Serialize)]
struct HeaderJson<'a> {
    key: &'a str,
    value: Option<String>,
}

impl Printer {
    fn new(config: &ConsumeConfig) -> Printer {
        Printer::with(config.format, config.encoding, config.key_separator.clone())
    }

    /// A printer of `format`; text prints `key<SEP>value` when `key_separator` is set.
    pub(crate) fn with(
        format: Format,
        encoding: Encoding,
        key_separator: Option<String>,
    ) -> Printer {
        Printer {
            out: std::io::BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, std::io::stdout()),
            format,
            encoding,
            key_separator,
            warned_invalid_utf8: false,
        }
    }

    pub(crate) fn print(&mut self, record: &ConsumerRecord) -> anyhow::Result<()> {
        match self.format {
            Format::Json => {
                let json = RecordJson {
                    topic: &record.topic,
                    partition: record.partition,
                    offset: record.offset,
                    timestamp: record.timestamp,
                    key: record.key.as_deref().map(|k| self.encode(k)),
                    value: record.value.as_deref().map(|v| self.encode(v)),
                    headers: record
                        .headers
                        .iter()
                        .map(|h| HeaderJson {
                            key: &h.key,
                            value: h.value.as_deref().map(|v| self.encode(v)),
                        })
                        .collect(),
                };
                serde_json::to_writer(&mut self.out, &json)?;
                self.out.write_all(b"\n")?;
            }
            Format::Text => {
                if let Some(sep) = self.key_separator.take() {
                    if let Some(key) = &record.key {
                        self.write_field(key)?;
                    }
                    self.out.write_all(sep.as_bytes())?;
                    self.key_separator = Some(sep);
                }
                if let Some(value) = &record.value {
                    self.write_field(value)?;
                }
                self.out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    /// Text output writes bytes as they are (a terminal or a file gets what was
    /// produced); base64 encodes them.
    fn write_field(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.encoding {
            Encoding::Text => self.out.write_all(bytes),
            Encoding::Base64 => self.out.write_all(
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .as_bytes(),
            ),
        }
    }

    fn encode(&mut self, bytes: &[u8]) -> String {
        match self.encoding {
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
            Encoding::Text => match std::str::from_utf8(bytes) {
                Ok(text) => text.to_owned(),
                Err(_) => {
                    if !self.warned_invalid_utf8 {
                        self.warned_invalid_utf8 = true;
                        eprintln!(
                            "warning: some keys or values are not valid UTF-8 and were printed \
                             with replacement characters; use --encoding base64 to get the bytes"
                        );
                    }
                    String::from_utf8_lossy(bytes).into_owned()
                }
            },
        }
    }

    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        assert_eq!(parse_start("beginning"), Ok(Start::Beginning));
        assert_eq!(parse_start("end"), Ok(Start::End));
        assert_eq!(parse_start("42"), Ok(Start::Offset(42)));
        assert_eq!(
            parse_start("@1700000000000"),
            Ok(Start::Timestamp(1_700_000_000_000))
        );
        for bad in ["", "-1", "@", "@x", "@-5", "tomorrow", "1.5"] {
            assert!(parse_start(bad).is_err(), "{bad:?}");
        }
    }
}
