//! `weir consume`: read a topic's partitions from a starting point and print the records,
//! as text (the value, optionally `key<sep>value`) or JSON (one object per record).
//!
//! Without `--follow` the command stops at the end of the log as it was when it started:
//! the high watermark of each partition is looked up first (ListOffsets latest), and a
//! partition is done once its position reaches that offset. `--count N` stops after N
//! records, whichever comes first.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use clap::{Args, ValueEnum};
use serde::Serialize;
use weir_client::{
    Admin, Consumer, ConsumerConfig, ConsumerRecord, OffsetQuery, OffsetReset, SeekTo,
};

use crate::UsageError;
use crate::brokers::BrokerArgs;
use crate::output::Format;

/// Most records taken from the consumer per poll.
const POLL_MAX_RECORDS: usize = 8192;
/// How long one poll waits for records; between polls the command checks whether it is
/// done, so this bounds how late it notices.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);
/// Stdout buffer; flushed after every poll so followers see records promptly.
const OUTPUT_BUFFER_BYTES: usize = 256 * 1024;

const EXAMPLES: &str = "\
Examples:
  weir consume events
      Every record from the beginning, then exit at the end of the log.
  weir consume events --from end --follow
      Only new records, until interrupted.
  weir consume events --from 42 --partition 0 --count 10 --format json
  weir consume events --from @1700000000000      (ms since the epoch)
  weir consume events --format json --encoding base64     (binary keys and values)
  weir consume events --print-keys --key-separator '='";

/// Read records from a topic and print them.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Where to start: beginning, end, an OFFSET, or @TIMESTAMP (ms since the Unix epoch).
    #[arg(long, short = 'o', default_value = "beginning", value_parser = parse_start, value_name = "beginning|end|OFFSET|@TIMESTAMP")]
    from: Start,
    /// Read only this partition (repeatable) [default: all].
    #[arg(long, short = 'p')]
    partition: Vec<u32>,
    /// Stop after this many records.
    #[arg(long, short = 'c', value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Keep waiting for new records at the end of the log.
    #[arg(long, short = 'F')]
    follow: bool,
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
    topic: String,
    brokers: Vec<String>,
    from: Start,
    partitions: Option<Vec<u32>>,
    count: Option<u64>,
    follow: bool,
    format: Format,
    encoding: Encoding,
    key_separator: Option<String>,
}

impl ConsumeArgs {
    /// Checks the arguments and builds the typed configuration.
    pub fn into_config(mut self) -> anyhow::Result<ConsumeConfig> {
        if self.topic.is_empty() {
            return Err(UsageError("the topic name is empty".to_owned()).into());
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
            topic: self.topic,
            brokers: self.brokers.list(),
            from: self.from,
            partitions: (!self.partition.is_empty()).then_some(self.partition),
            count: self.count,
            follow: self.follow,
            format: self.format,
            encoding: self.encoding,
            key_separator: self.print_keys.then_some(self.key_separator),
        })
    }
}

/// Runs `weir consume`.
pub async fn run(config: ConsumeConfig) -> anyhow::Result<()> {
    let admin = Admin::connect(&config.brokers)
        .await
        .context("connecting to the broker")?;
    let topic = admin
        .describe_topic(&config.topic)
        .await
        .with_context(|| format!("looking up topic {}", config.topic))?;
    let all = topic.partitions.len() as u32;
    let partitions: Vec<u32> = match &config.partitions {
        Some(wanted) => {
            if let Some(&p) = wanted.iter().find(|&&p| p >= all) {
                anyhow::bail!(
                    "topic {} has no partition {p} (it has {all}: 0..={})",
                    config.topic,
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
            .list_offsets(&config.topic, &queries)
            .await
            .with_context(|| format!("looking up the end of topic {}", config.topic))?
            .into_iter()
            .map(|o| (o.partition, o.offset))
            .collect()
    };

    let mut consumer = Consumer::connect(ConsumerConfig {
        brokers: config.brokers.clone(),
        // An offset below the log start (deleted by retention) starts at the log start.
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    })
    .await
    .context("connecting to the broker")?;
    let assignment: Vec<(&str, u32)> = partitions
        .iter()
        .map(|&p| (config.topic.as_str(), p))
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
            .seek(&config.topic, p, seek)
            .await
            .with_context(|| format!("finding the start of {}/{p}", config.topic))?;
        let position = consumer.position(&config.topic, p).unwrap_or(0);
        if config.follow || ends.get(&p).is_some_and(|&end| position < end) {
            open.push(p);
        }
    }

    let mut printer = Printer::new(&config);
    let mut printed: u64 = 0;
    while !open.is_empty() && config.count.is_none_or(|c| printed < c) {
        let records = consumer
            .poll(POLL_MAX_RECORDS, POLL_TIMEOUT)
            .await
            .with_context(|| format!("reading topic {}", config.topic))?;
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
                consumer.position(&config.topic, p).unwrap_or(0) < end
            });
        }
    }
    printer.flush()?;
    Ok(())
}

/// Formats records onto a buffered stdout.
struct Printer {
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
        Printer {
            out: std::io::BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, std::io::stdout()),
            format: config.format,
            encoding: config.encoding,
            key_separator: config.key_separator.clone(),
            warned_invalid_utf8: false,
        }
    }

    fn print(&mut self, record: &ConsumerRecord) -> anyhow::Result<()> {
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

    fn flush(&mut self) -> std::io::Result<()> {
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
