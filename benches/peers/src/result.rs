//! The result of one run of one workload against one system, as one JSON object: what
//! `--format json` prints, what `report` reads back and merges into one table.
//!
//! The schema is meant to be written by other programs too (Weir's `weir bench --format
//! json`): `report` needs the fields without a default, ignores fields it does not know,
//! and keys its table on `system` and on the workload's `(workload, record_bytes,
//! durability)`. See `benches/peers/README.md` for the field-by-field description.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context as _, ensure};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Identifies the schema, so a reader can tell a result line from any other JSON.
pub const SCHEMA: &str = "weir-peer-bench/1";

/// Largest results file read: far more than any run writes.
const MAX_RESULTS_FILE_BYTES: u64 = 64 << 20;

/// Decimal megabyte: throughput is rated the way disks and networks are.
pub const MB: f64 = 1e6;

/// What a workload measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Records acknowledged per second, producing as fast as acks allow.
    Produce,
    /// Records read back per second, from the start of a stream.
    Consume,
    /// End-to-end latency at a fixed rate.
    Latency,
    /// The highest rate a search of short `latency` probes found the system to hold with
    /// p99 at most a bound (`settings.p99_bound_ms`): `records_per_sec` is that rate,
    /// `latency` the probe that held at it. Written by `benches/run-peers.sh` from its
    /// probes (see `benches/peers/README.md`).
    LatencyCeiling,
    /// A work queue: records taken by `settings.consumers` consumers and acknowledged one
    /// by one, per second (RabbitMQ's classic queues through `queue`; Weir's share groups
    /// through `weir bench queue`).
    Queue,
}

impl Workload {
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Produce => "produce",
            Workload::Consume => "consume",
            Workload::Latency => "latency",
            Workload::LatencyCeiling => "latency-ceiling",
            Workload::Queue => "queue",
        }
    }
}

/// What a producer's acknowledgement is asked to wait for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// The leader has the record (in memory or the OS page cache); fsync happens later or
    /// never. Comparable to Weir's acks=leader without fsync per message.
    Leader,
    /// The record is on stable storage (fsynced, in group commits) before the ack.
    Durable,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Leader => "leader",
            Durability::Durable => "durable",
        }
    }
}

/// What an acknowledgement meant in a run: asked for, given, and in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acks {
    /// What the run asked for.
    pub durability: Durability,
    /// Whether an ack really waited for an fsync of the record. `false` under
    /// `durability: durable` means the system offers no such ack and the run measured the
    /// closest one it has.
    pub fsync_before_ack: bool,
    /// Exactly what the ack waited for, and when the data reaches the disk.
    pub meaning: String,
}

/// Latency percentiles of a fixed-rate run, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Target rate, records per second.
    pub rate_per_sec: f64,
    /// Seconds measured (after the warm-up).
    pub measured_secs: f64,
    /// Seconds at the start whose records were sent but not measured.
    pub warmup_secs: f64,
    /// Records sent (warm-up included).
    pub sent: u64,
    /// Records the consumer received, each once (warm-up included).
    pub received: u64,
    /// Records received more than once.
    #[serde(default)]
    pub duplicates: u64,
    /// End to end: from the record's intended send time to its arrival at the consumer.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// From the intended send time to the producer's ack, where the system has one.
    #[serde(default)]
    pub ack_p50_ms: Option<f64>,
    #[serde(default)]
    pub ack_p99_ms: Option<f64>,
    /// How late the load generator sent records after their intended time (its own
    /// share of the figures above), 99th percentile.
    #[serde(default)]
    pub send_lag_p99_ms: Option<f64>,
}

/// One run of one workload against one system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The system measured: `nats`, `redis`, `rabbitmq`, `weir`.
    pub system: String,
    /// Server name and version, as the server reports it.
    pub server: String,
    /// Client library and version.
    pub client: String,
    pub workload: Workload,
    /// Bytes of each record's payload (value), not counting keys, headers or framing.
    pub record_bytes: u64,
    /// Records measured (for `latency`: sent, warm-up included).
    pub records: u64,
    /// Acks asked for and what they meant (`produce` and `latency`).
    #[serde(default)]
    pub acks: Option<Acks>,
    /// Wall-clock seconds the measured part took.
    pub seconds: f64,
    pub records_per_sec: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
    #[serde(default)]
    pub latency: Option<LatencyStats>,
    /// Knobs of the run (batch sizes, windows, server settings), for the record.
    #[serde(default)]
    pub settings: BTreeMap<String, serde_json::Value>,
}

impl BenchResult {
    /// The durability a result's workload ran at, if it has one.
    pub fn durability(&self) -> Option<Durability> {
        self.acks.as_ref().map(|a| a.durability)
    }
}

/// Reads the result lines of a file of JSON lines: lines that are not JSON objects with
/// `"schema": "weir-peer-bench/1"` (blank lines, other tools' output) are skipped; a line
/// that has the schema but not its fields is an error.
pub fn read_results(path: &Path) -> anyhow::Result<Vec<BenchResult>> {
    let size = fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    ensure!(
        size <= MAX_RESULTS_FILE_BYTES,
        "{} is {size} bytes, more than the {MAX_RESULTS_FILE_BYTES} a results file may be",
        path.display()
    );
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_results(&text).with_context(|| format!("in {}", path.display()))
}

/// The result lines of some JSON lines (see [`read_results`]).
pub fn parse_results(text: &str) -> anyhow::Result<Vec<BenchResult>> {
    let mut results = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if value.get("schema").and_then(|s| s.as_str()) != Some(SCHEMA) {
            continue;
        }
        let result = serde_json::from_value(value)
            .with_context(|| format!("line {} is not a {SCHEMA} result", i + 1))?;
        results.push(result);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_line_from_another_program_parses() {
        let line = r#"{"schema":"weir-peer-bench/1","system":"weir","server":"weir 0.1.0",
            "client":"weir-client 0.1.0","workload":"produce","record_bytes":100,
            "records":10,"seconds":1.0,"records_per_sec":10.0,"mb_per_sec":0.001,
            "acks":{"durability":"leader","fsync_before_ack":false,"meaning":"in memory"},
            "something_new":42}"#;
        let r: BenchResult = serde_json::from_str(line).unwrap();
        assert_eq!(r.system, "weir");
        assert_eq!(r.durability(), Some(Durability::Leader));
        assert!(r.latency.is_none());
        assert!(r.settings.is_empty());
    }

    #[test]
    fn results_files_skip_other_lines() {
        let text = "[weir-peer-bench] progress\n\n{\"other\":1}\n\
            {\"schema\":\"weir-peer-bench/1\",\"system\":\"redis\",\"server\":\"s\",\
            \"client\":\"c\",\"workload\":\"consume\",\"record_bytes\":1024,\
            \"records\":5,\"seconds\":1.0,\"records_per_sec\":5.0,\"mb_per_sec\":0.005}\n";
        let results = parse_results(text).unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].workload, Workload::Consume);
        assert!(parse_results("{\"schema\":\"weir-peer-bench/1\"}").is_err());
    }
}
