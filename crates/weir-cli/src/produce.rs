//! `weir produce`: one record per input line, from stdin or `--file`, with an optional
//! key (`--key-separator`), headers, partition, acks and compression. Records go through
//! the batching producer (keyed records land where Kafka's clients would put them);
//! outcomes are checked as they arrive, and any failed record fails the command.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use weir_client::{
    Acks, Compression, DeliveryFuture, Header, Producer, ProducerConfig, ProducerRecord,
};

use crate::UsageError;
use crate::brokers::BrokerArgs;
use crate::output::parse_key_value;

/// Input buffer: big enough that reading stdin costs a few syscalls per megabyte.
const INPUT_BUFFER_BYTES: usize = 1024 * 1024;

const EXAMPLES: &str = "\
Examples:
  echo hello | weir produce events
  printf 'user-1:paid\\nuser-2:shipped\\n' | weir produce events --key-separator :
      Keyed: the same key always lands in the same partition.
  weir produce events --file orders.txt --header source=import --acks all --compression zstd
  seq 3 | weir produce events --partition 0 --verbose
      Prints where each record was written: partition and offset.
  weir produce events --file orders.txt --producer-name orders-import
      A second run under the same name fences the first if it is still writing.";

/// Produce records: one per line of stdin (or --file).
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ProduceArgs {
    /// Topic to write to.
    topic: String,
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Read lines from this file instead of stdin.
    #[arg(long, short = 'f', value_name = "PATH")]
    file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value (lines without SEP get no key).
    #[arg(long, short = 'k', value_name = "SEP")]
    key_separator: Option<String>,
    /// A header added to every record, KEY=VALUE (repeatable).
    #[arg(long, short = 'H', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    header: Vec<(String, String)>,
    /// Write every record to this partition instead of choosing by key.
    #[arg(long, short = 'p')]
    partition: Option<u32>,
    /// When the broker acknowledges: none, leader or all (the default, as in Kafka 3.0+).
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// Compression of each batch.
    #[arg(long, short = 'z', value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Print the partition and offset of each record on stdout, in input order.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Turn off idempotence (on by default: a batch retried after a lost answer or a
    /// leader change is stored once). Off, a retry may store records twice.
    #[arg(long)]
    no_idempotence: bool,
    /// A name that stays with this producer across runs (Kafka's transactional.id): a
    /// new run under the same name fences an older one still writing.
    #[arg(long, value_name = "NAME", conflicts_with = "no_idempotence")]
    producer_name: Option<String>,
}

/// `--acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    /// Do not wait for the broker (offsets are unknown, errors are lost).
    #[value(alias = "0")]
    None,
    /// After the partition leader appended the records.
    #[value(alias = "1")]
    Leader,
    /// After every in-sync replica has them (durable per the topic's flush.policy).
    #[value(alias = "-1")]
    All,
}

impl From<AcksArg> for Acks {
    fn from(acks: AcksArg) -> Acks {
        match acks {
            AcksArg::None => Acks::None,
            AcksArg::Leader => Acks::Leader,
            AcksArg::All => Acks::All,
        }
    }
}

/// `--compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(compression: CompressionArg) -> Compression {
        match compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

/// `weir produce`, checked.
#[derive(Debug)]
pub struct ProduceConfig {
    topic: String,
    producer: ProducerConfig,
    input: Option<PathBuf>,
    key_separator: Option<Vec<u8>>,
    headers: Vec<Header>,
    partition: Option<u32>,
    verbose: bool,
}

impl ProduceArgs {
    /// Checks the arguments and builds the typed configuration.
    pub fn into_config(self) -> anyhow::Result<ProduceConfig> {
        if self.topic.is_empty() {
            return Err(UsageError("the topic name is empty".to_owned()).into());
        }
        if self.key_separator.as_deref() == Some("") {
            return Err(UsageError("--key-separator must not be empty".to_owned()).into());
        }
        if self.verbose && self.acks == AcksArg::None {
            return Err(UsageError(
                "--verbose needs offsets, which --acks none does not return".to_owned(),
            )
            .into());
        }
        let producer = ProducerConfig {
            brokers: self.brokers.list(),
            acks: self.acks.into(),
            compression: self.compression.into(),
            idempotence: !self.no_idempotence,
            producer_name: self.producer_name,
            connect_timeout: self.brokers.connect_timeout,
            request_timeout: self.brokers.timeout,
            tls: self.brokers.tls()?,
            ..ProducerConfig::default()
        };
        producer.validate()?;
        Ok(ProduceConfig {
            topic: self.topic,
            producer,
            input: self.file,
            key_separator: self.key_separator.map(String::into_bytes),
            headers: self
                .header
                .into_iter()
                .map(|(key, value)| Header {
                    key,
                    value: Some(Bytes::from(value)),
                })
                .collect(),
            partition: self.partition,
            verbose: self.verbose,
        })
    }
}

/// Runs `weir produce`.
pub async fn run(config: ProduceConfig) -> anyhow::Result<()> {
    let input: Box<dyn AsyncRead + Unpin + Send> = match &config.input {
        Some(path) => Box::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdin()),
    };
    let producer = Producer::connect(config.producer.clone())
        .await
        .context("connecting to the broker")?;
    // Fails early, naming the topic, if it does not exist.
    let partitions = producer
        .partitions(&config.topic)
        .await
        .with_context(|| format!("looking up topic {}", config.topic))?;
    if let Some(p) = config.partition
        && p >= partitions
    {
        anyhow::bail!(
            "topic {} has no partition {p} (it has {partitions}: 0..={})",
            config.topic,
            partitions - 1
        );
    }
    let topic: std::sync::Arc<str> = config.topic.as_str().into();
    let mut reader = BufReader::with_capacity(INPUT_BUFFER_BYTES, input);
    let mut line = Vec::new();
    let mut outcomes = Outcomes::new(config.verbose);
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .await
            .context("reading input")?;
        if read == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let (key, value) = split_key(&line, config.key_separator.as_deref());
        let record = ProducerRecord {
            topic: topic.clone(),
            partition: config.partition,
            key: key.map(Bytes::copy_from_slice),
            value: Some(Bytes::copy_from_slice(value)),
            headers: config.headers.clone(),
            timestamp: None,
        };
        let delivery = producer
            .send(record)
            .await
            .with_context(|| format!("producing to topic {}", config.topic))?;
        outcomes.push(delivery)?;
    }
    producer.flush().await;
    outcomes.finish().await?;
    producer.close().await;
    Ok(())
}

/// Splits a line into key and value at the first separator; no separator, no key.
fn split_key<'a>(line: &'a [u8], separator: Option<&[u8]>) -> (Option<&'a [u8]>, &'a [u8]) {
    let Some(sep) = separator else {
        return (None, line);
    };
    match line.windows(sep.len()).position(|w| w == sep) {
        Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
        None => (None, line),
    }
}

/// Delivery outcomes, checked in send order as they complete so that memory stays
/// bounded by what is in flight.
struct Outcomes {
    pending: VecDeque<DeliveryFuture>,
    verbose: bool,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Outcomes {
    fn new(verbose: bool) -> Outcomes {
        Outcomes {
            pending: VecDeque::new(),
            verbose,
            out: std::io::BufWriter::new(std::io::stdout()),
        }
    }

    fn push(&mut self, delivery: DeliveryFuture) -> anyhow::Result<()> {
        self.pending.push_back(delivery);
        while let Some(result) = self.pending.front().and_then(DeliveryFuture::try_result) {
            self.pending.pop_front();
            self.report(result)?;
        }
        Ok(())
    }

    async fn finish(mut self) -> anyhow::Result<()> {
        while let Some(delivery) = self.pending.pop_front() {
            let result = delivery.wait().await;
            self.report(result)?;
        }
        self.out.flush()?;
        Ok(())
    }

    fn report(
        &mut self,
        result: Result<weir_client::RecordMetadata, weir_client::ClientError>,
    ) -> anyhow::Result<()> {
        let metadata = result.context("a record was not written")?;
        if self.verbose {
            writeln!(
                self.out,
                "{}/{}@{}",
                metadata.topic, metadata.partition, metadata.offset
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_splits_at_the_first_separator() {
        assert_eq!(
            split_key(b"k:v:w", Some(b":")),
            (Some(&b"k"[..]), &b"v:w"[..])
        );
        assert_eq!(split_key(b"no key", Some(b":")), (None, &b"no key"[..]));
        assert_eq!(
            split_key(b"k::v", Some(b"::")),
            (Some(&b"k"[..]), &b"v"[..])
        );
        assert_eq!(split_key(b":v", Some(b":")), (Some(&b""[..]), &b"v"[..]));
        assert_eq!(split_key(b"k:v", None), (None, &b"k:v"[..]));
    }
}
