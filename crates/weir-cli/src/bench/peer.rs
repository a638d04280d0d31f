//! `--report-schema peer`: the report as one JSON line in the `weir-peer-bench/1` schema
//! (benches/peers/README.md), so that `weir-peer-bench report` puts Weir in a column next
//! to its peers. Rows are keyed on `(workload, record_bytes, durability)`: `produce` and
//! `consume` keep their names, `e2e` is the peers' `latency`; `--acks leader` is
//! durability `leader` and `--acks all` is `durable`, with `fsync_before_ack` read from
//! the topic's `flush.policy` as the broker applies it on one node.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};
use weir_client::Admin;

use super::{BenchConfig, Kind, Report};
use crate::produce::AcksArg;

/// The schema `weir-peer-bench report` reads.
const SCHEMA: &str = "weir-peer-bench/1";
/// The topic setting that decides when appends reach the disk.
const FLUSH_POLICY: &str = "flush.policy";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The topic's flush policy in effect.
pub(super) async fn flush_policy(admin: &Admin, topic: &str) -> anyhow::Result<String> {
    let entries = admin
        .describe_topic_config(topic)
        .await
        .with_context(|| format!("reading the configuration of topic {topic}"))?;
    entries
        .into_iter()
        .find(|e| e.name == FLUSH_POLICY)
        .map(|e| e.value)
        .with_context(|| format!("topic {topic} reports no {FLUSH_POLICY}"))
}

#[derive(Debug, Serialize)]
struct Line {
    schema: &'static str,
    system: &'static str,
    server: String,
    client: String,
    workload: &'static str,
    record_bytes: usize,
    records: u64,
    acks: Option<Acks>,
    seconds: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    latency: Option<Latency>,
    settings: BTreeMap<&'static str, Value>,
}

#[derive(Debug, Serialize)]
struct Acks {
    durability: &'static str,
    fsync_before_ack: bool,
    meaning: String,
}

#[derive(Debug, Serialize)]
struct Latency {
    rate_per_sec: f64,
    measured_secs: f64,
    warmup_secs: f64,
    sent: u64,
    received: u64,
    duplicates: u64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    ack_p50_ms: Option<f64>,
    ack_p99_ms: Option<f64>,
    send_lag_p99_ms: Option<f64>,
}

/// What an ack means under `acks` and the topic's flush policy, on one node: whether it
/// waits for an fsync of the records, and in words.
fn acks(acks: AcksArg, flush_policy: &str) -> Option<Acks> {
    let (durability, flag, waits) = match acks {
        AcksArg::None => return None,
        AcksArg::Leader => (
            "leader",
            "leader",
            "the leader appended the records (page cache)",
        ),
        AcksArg::All => (
            "durable",
            "all",
            "every in-sync replica (one node: the leader) has them",
        ),
    };
    let (fsync_before_ack, disk) = match (acks, flush_policy) {
        (_, "every-append") => (true, "each produce is fsynced before its answer".to_owned()),
        (AcksArg::All, "group-commit") => (
            true,
            "the ack waits for an fdatasync covering the records, shared with the appends \
             written meanwhile (group commit)"
                .to_owned(),
        ),
        (_, "group-commit") => (
            false,
            "group-commit fsyncs follow without being waited for: an OS crash can lose \
             acknowledged records"
                .to_owned(),
        ),
        (_, "none") => (false, "never fsynced on the append path".to_owned()),
        (_, other) => (false, format!("fsync per {other}, not waited for")),
    };
    Some(Acks {
        durability,
        fsync_before_ack,
        meaning: format!("acks={flag}, flush.policy={flush_policy}: {waits}; {disk}"),
    })
}

/// Prints the report as a `weir-peer-bench/1` line.
pub(super) fn print(
    report: &Report,
    config: &BenchConfig,
    flush_policy: &str,
) -> anyhow::Result<()> {
    let line = line(report, config, flush_policy);
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &line)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

fn line(report: &Report, config: &BenchConfig, flush_policy: &str) -> Line {
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| {
        (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
    };
    let (workload, acks) = match config.kind {
        Kind::Produce => ("produce", acks(config.acks, flush_policy)),
        Kind::Consume => ("consume", None),
        Kind::E2e { .. } => ("latency", acks(config.acks, flush_policy)),
    };
    let latency = report.e2e.as_ref().map(|e| Latency {
        rate_per_sec: report.rate.unwrap_or_default() as f64,
        measured_secs: (report.elapsed_secs - e.warmup.as_secs_f64()).max(0.0),
        warmup_secs: e.warmup.as_secs_f64(),
        sent: e.sent,
        received: e.received,
        duplicates: e.duplicates,
        p50_ms: report.latency_p50_ms.unwrap_or_default(),
        p99_ms: report.latency_p99_ms.unwrap_or_default(),
        p999_ms: report.latency_p999_ms.unwrap_or_default(),
        max_ms: report.latency_max_ms.unwrap_or_default(),
        ack_p50_ms: ms(&e.ack, 0.5),
        ack_p99_ms: ms(&e.ack, 0.99),
        send_lag_p99_ms: ms(&e.send_lag, 0.99),
    });
    let mut settings = BTreeMap::from([
        ("topic", json!(report.topic)),
        ("partitions", json!(report.partitions)),
        ("flush_policy", json!(flush_policy)),
    ]);
    if !matches!(config.kind, Kind::Consume) {
        let producer = &config.producer;
        settings.extend([
            ("acks", json!(report.acks)),
            ("compression", json!(report.compression)),
            ("linger_ms", json!(producer.linger.as_millis() as u64)),
            ("send_when_idle", json!(producer.send_when_idle)),
            ("batch_bytes", json!(producer.batch_bytes)),
            ("max_in_flight_per_partition", json!(producer.max_in_flight)),
            ("idempotence", json!(producer.idempotence)),
        ]);
    }
    if matches!(config.kind, Kind::Produce) {
        settings.insert(
            "ack_latency_p99_ms",
            json!(report.latency_p99_ms.unwrap_or_default()),
        );
        // Like the peers' clients, records go to the producer in batches (send_all calls
        // of about a batch's worth) unless --per-record; ack latency is then per call.
        if config.per_record {
            settings.insert("send", json!("per-record"));
        } else {
            settings.insert("send", json!("send_all"));
            settings.insert(
                "records_per_call",
                json!(super::produce::chunk_records(config)),
            );
        }
    }
    Line {
        schema: SCHEMA,
        system: "weir",
        server: format!("weir {VERSION}"),
        client: format!("weir-client {VERSION}"),
        workload,
        record_bytes: report.record_bytes,
        records: report.e2e.as_ref().map_or(report.records, |e| e.sent),
        acks,
        seconds: report.elapsed_secs,
        records_per_sec: report.records_per_sec,
        mb_per_sec: report.mb_per_sec,
        latency,
        settings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_all_under_group_commit_waits_for_the_fsync() {
        let durable = acks(AcksArg::All, "group-commit").unwrap();
        assert_eq!(durable.durability, "durable");
        assert!(durable.fsync_before_ack);
        let leader = acks(AcksArg::Leader, "group-commit").unwrap();
        assert_eq!(leader.durability, "leader");
        assert!(!leader.fsync_before_ack);
        assert!(
            acks(AcksArg::Leader, "every-append")
                .unwrap()
                .fsync_before_ack
        );
        assert!(!acks(AcksArg::All, "interval:100").unwrap().fsync_before_ack);
        assert!(!acks(AcksArg::All, "none").unwrap().fsync_before_ack);
        assert!(acks(AcksArg::None, "group-commit").is_none());
    }
}
