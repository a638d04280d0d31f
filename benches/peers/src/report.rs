//! `report`: merges result lines from any number of files (this bench's `--format json`
//! output, and anything else written to the same schema, such as `weir bench --format
//! json`) into one table: a column per system, a group of rows per workload, and under it
//! what an ack meant on each system.
//!
//! A workload is keyed on `(workload, record_bytes, durability)`; when a system has
//! several results for one, the last line read wins, so rerunning appends and reports
//! the latest figures. A `latency-ceiling` line (the result of `run-peers.sh`'s search)
//! is one more group: the highest rate each system held with p99 within the bound.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::ensure;
use clap::Args;

use crate::output::{Format, Table, emit, grouped, millis, record_size};
use crate::result::{BenchResult, Durability, Workload, read_results};

/// Marks a figure whose acks do not wait for an fsync although `durable` was asked.
const NOT_FSYNCED: &str = "†";

/// Marks a latency run whose producer fell behind its schedule: the peer did not absorb
/// the rate, and the percentiles include the queue that built up.
const FELL_BEHIND: &str = "‡";

/// Generator lag (99th percentile) above which a latency run counts as fallen behind: far
/// above the pacer's tick and a scheduling hiccup, well below the queueing it flags.
const FELL_BEHIND_LAG_MS: f64 = 50.0;

/// Options of `report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Files of JSON result lines; other lines in them are skipped.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,

    /// `json` prints the merged results as one JSON array.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// One row of a workload's group: its name, and how to read it from a result.
type Metric = (String, fn(&BenchResult) -> Option<String>);

fn metric(name: impl Into<String>, read: fn(&BenchResult) -> Option<String>) -> Metric {
    (name.into(), read)
}

/// A number from a result's `settings`.
fn setting(r: &BenchResult, key: &str) -> Option<f64> {
    r.settings.get(key).and_then(|v| v.as_f64())
}

/// The `settings` key of a `latency-ceiling` line: the p99 bound of its search, ms.
const CEILING_BOUND_KEY: &str = "p99_bound_ms";
/// The `settings` key of a `latency-ceiling` line: the lowest probed rate above the
/// ceiling that did not hold (absent when every probe held, up to the search's top).
const CEILING_NOT_HELD_KEY: &str = "lowest_rate_not_held";

/// What identifies a workload across systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Case {
    workload: Workload,
    record_bytes: u64,
    durability: Option<Durability>,
    /// Consumers of a run that says how many it had (`settings.consumers`: `queue`, and
    /// consumer groups reported beside it).
    consumers: Option<u64>,
}

/// The `settings` key of the consumers a run had.
const CONSUMERS_KEY: &str = "consumers";

impl Case {
    fn of(r: &BenchResult) -> Case {
        Case {
            workload: r.workload,
            record_bytes: r.record_bytes,
            durability: r.durability(),
            consumers: r.settings.get(CONSUMERS_KEY).and_then(|v| v.as_u64()),
        }
    }

    fn label(&self) -> String {
        let mut label = format!(
            "{} {}",
            self.workload.as_str().replace('-', " "),
            record_size(self.record_bytes)
        );
        if let Some(c) = self.consumers {
            label.push_str(&format!(", {c} consumer{}", if c == 1 { "" } else { "s" }));
        }
        if let Some(d) = self.durability {
            label.push_str(&format!(", acks {}", d.as_str()));
        }
        label
    }

    /// The rows this workload shows; `bound_ms` is the p99 bound of a `latency-ceiling`
    /// group (read from its first result).
    fn metrics(&self, bound_ms: Option<f64>) -> Vec<Metric> {
        fn records_per_sec(r: &BenchResult) -> Option<String> {
            Some(grouped(r.records_per_sec.round() as u64))
        }
        fn mb_per_sec(r: &BenchResult) -> Option<String> {
            Some(format!("{:.1}", r.mb_per_sec))
        }
        match self.workload {
            Workload::Produce => vec![
                metric("records/s", records_per_sec),
                metric("MB/s", mb_per_sec),
            ],
            Workload::Consume => vec![
                metric("MB/s", mb_per_sec),
                metric("records/s", records_per_sec),
            ],
            Workload::Queue => vec![
                metric("records/s acknowledged", records_per_sec),
                metric("MB/s", mb_per_sec),
            ],
            Workload::LatencyCeiling => vec![
                metric(
                    format!(
                        "highest rate with p99 <= {}, records/s",
                        bound_ms.map_or("the bound".to_owned(), |b| format!("{b} ms"))
                    ),
                    |r| {
                        let held = r.records_per_sec.round() as u64;
                        let not_held = setting(r, CEILING_NOT_HELD_KEY).map(|f| f.round() as u64);
                        Some(match (held, not_held) {
                            // Not even the lowest probe held.
                            (0, Some(n)) => format!("< {}", grouped(n)),
                            (0, None) => "-".to_owned(),
                            // Every probe held: the search's top, not the system's.
                            (h, None) => format!(">= {}", grouped(h)),
                            (h, Some(_)) => grouped(h),
                        })
                    },
                ),
                metric("p50 / p99 ms at that rate", |r| {
                    r.latency
                        .as_ref()
                        .map(|l| format!("{} / {}", millis(l.p50_ms), millis(l.p99_ms)))
                }),
                metric("lowest rate not held, records/s", |r| {
                    setting(r, CEILING_NOT_HELD_KEY).map(|f| grouped(f.round() as u64))
                }),
            ],
            Workload::Latency => vec![
                metric("rate, records/s", |r| {
                    r.latency
                        .as_ref()
                        .map(|l| grouped(l.rate_per_sec.round() as u64))
                }),
                metric("p50 ms", |r| r.latency.as_ref().map(|l| millis(l.p50_ms))),
                metric("p99 ms", |r| r.latency.as_ref().map(|l| millis(l.p99_ms))),
                metric("p99.9 ms", |r| {
                    r.latency.as_ref().map(|l| millis(l.p999_ms))
                }),
                metric("max ms", |r| r.latency.as_ref().map(|l| millis(l.max_ms))),
                metric("ack p99 ms", |r| {
                    r.latency.as_ref().and_then(|l| l.ack_p99_ms).map(millis)
                }),
                metric("generator lag p99 ms", |r| {
                    r.latency
                        .as_ref()
                        .and_then(|l| l.send_lag_p99_ms)
                        .map(|lag| {
                            let mark = if lag > FELL_BEHIND_LAG_MS {
                                FELL_BEHIND
                            } else {
                                ""
                            };
                            format!("{}{mark}", millis(lag))
                        })
                }),
                metric("lost / duplicated", |r| {
                    r.latency.as_ref().map(|l| {
                        format!(
                            "{} / {}",
                            grouped(l.sent.saturating_sub(l.received)),
                            grouped(l.duplicates)
                        )
                    })
                }),
            ],
        }
    }
}

/// The latest result of each system for each workload, in the order first seen.
#[derive(Debug, Default)]
struct Merged {
    systems: Vec<String>,
    cases: Vec<Case>,
    results: BTreeMap<(String, Case), BenchResult>,
}

impl Merged {
    fn add(&mut self, r: BenchResult) {
        let case = Case::of(&r);
        if !self.systems.contains(&r.system) {
            self.systems.push(r.system.clone());
        }
        if !self.cases.contains(&case) {
            self.cases.push(case);
        }
        self.results.insert((r.system.clone(), case), r);
    }

    fn get(&self, system: &str, case: Case) -> Option<&BenchResult> {
        self.results.get(&(system.to_owned(), case))
    }

    fn render(&self) -> String {
        let mut headers = vec!["workload".to_owned(), "metric".to_owned()];
        headers.extend(self.systems.iter().cloned());
        let mut table = Table::new(headers, 2);
        let mut any_unsynced = false;
        let any_behind = self.results.values().any(|r| {
            r.workload == Workload::Latency
                && r.latency
                    .as_ref()
                    .and_then(|l| l.send_lag_p99_ms)
                    .is_some_and(|lag| lag > FELL_BEHIND_LAG_MS)
        });
        for &case in &self.cases {
            let bound_ms = self
                .systems
                .iter()
                .find_map(|s| self.get(s, case))
                .and_then(|r| setting(r, CEILING_BOUND_KEY));
            for (i, (metric, read)) in case.metrics(bound_ms).into_iter().enumerate() {
                let mut row = vec![if i == 0 { case.label() } else { String::new() }, metric];
                for system in &self.systems {
                    let cell = match self.get(system, case) {
                        None => "-".to_owned(),
                        Some(r) => {
                            let mut cell = read(r).unwrap_or_else(|| "-".to_owned());
                            let unsynced = r.acks.as_ref().is_some_and(|a| {
                                a.durability == Durability::Durable && !a.fsync_before_ack
                            });
                            if unsynced && i == 0 {
                                cell.push_str(NOT_FSYNCED);
                                any_unsynced = true;
                            }
                            cell
                        }
                    };
                    row.push(cell);
                }
                table.row(row);
            }
        }
        let mut out = table.render();
        if any_unsynced {
            out.push_str(&format!(
                "\n{NOT_FSYNCED} acks asked to be durable, but this system has no ack that \
                 waits for an fsync:\n  measured with its nearest (see below).\n"
            ));
        }
        if any_behind {
            out.push_str(&format!(
                "{}{FELL_BEHIND} the producer fell behind its schedule (generator lag p99 over \
                 {FELL_BEHIND_LAG_MS} ms):\n  the system did not absorb this rate with a consumer \
                 running, and the percentiles include the queue.\n",
                if any_unsynced { "" } else { "\n" }
            ));
        }
        out.push_str("\nWhat an ack meant, and what was measured:\n");
        for system in &self.systems {
            let mine: Vec<&BenchResult> = self
                .results
                .iter()
                .filter(|((s, _), _)| s == system)
                .map(|(_, r)| r)
                .collect();
            if let Some(r) = mine.first() {
                out.push_str(&format!("  {system}: {}, client {}\n", r.server, r.client));
            }
            let mut meanings: BTreeMap<Durability, &str> = BTreeMap::new();
            for r in &mine {
                if let Some(a) = &r.acks {
                    meanings.insert(a.durability, &a.meaning);
                }
            }
            for (durability, meaning) in meanings {
                out.push_str(&format!("    acks {}: {meaning}\n", durability.as_str()));
            }
        }
        out
    }
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let mut merged = Merged::default();
    for path in &args.files {
        for r in read_results(path)? {
            merged.add(r);
        }
    }
    ensure!(
        !merged.results.is_empty(),
        "no result lines in {}",
        args.files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let all: Vec<&BenchResult> = merged.results.values().collect();
    emit(args.format, &merged.render(), &all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{Acks, LatencyStats, SCHEMA};

    fn result(
        system: &str,
        workload: Workload,
        durability: Option<Durability>,
        mb: f64,
    ) -> BenchResult {
        BenchResult {
            schema: SCHEMA.to_owned(),
            system: system.to_owned(),
            server: format!("{system}-server 1.0"),
            client: "client 1.0".to_owned(),
            workload,
            record_bytes: 1024,
            records: 1000,
            acks: durability.map(|durability| Acks {
                durability,
                fsync_before_ack: system == "redis",
                meaning: format!("{system} meaning"),
            }),
            seconds: 1.0,
            records_per_sec: 1000.0,
            mb_per_sec: mb,
            latency: None,
            settings: BTreeMap::new(),
        }
    }

    #[test]
    fn merges_systems_side_by_side_and_the_last_result_wins() {
        let mut m = Merged::default();
        m.add(result(
            "nats",
            Workload::Produce,
            Some(Durability::Durable),
            1.0,
        ));
        m.add(result(
            "redis",
            Workload::Produce,
            Some(Durability::Durable),
            2.0,
        ));
        m.add(result(
            "redis",
            Workload::Produce,
            Some(Durability::Durable),
            3.0,
        ));
        m.add(result("weir", Workload::Consume, None, 4.0));
        let text = m.render();
        let lines: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(header, ["workload", "metric", "nats", "redis", "weir"]);
        assert!(lines[1].contains("produce 1 KiB, acks durable") && lines[1].contains("1,000†"));
        assert!(lines[2].contains("MB/s") && lines[2].contains("3.0") && !lines[2].contains("2.0"));
        assert!(lines[3].contains("consume 1 KiB") && lines[3].ends_with("4.0"));
        assert!(text.contains("acks durable: nats meaning"));
        assert!(text.contains(NOT_FSYNCED));
        assert!(!text.contains(FELL_BEHIND));
    }

    #[test]
    fn flags_latency_runs_that_fell_behind() {
        let mut m = Merged::default();
        for (system, lag_ms) in [("nats", 400.0), ("redis", 0.2)] {
            let mut r = result(system, Workload::Latency, Some(Durability::Leader), 1.0);
            r.latency = Some(LatencyStats {
                rate_per_sec: 1000.0,
                measured_secs: 20.0,
                warmup_secs: 2.0,
                sent: 22_000,
                received: 22_000,
                duplicates: 0,
                p50_ms: 1.0,
                p99_ms: 2.0,
                p999_ms: 3.0,
                max_ms: 4.0,
                ack_p50_ms: None,
                ack_p99_ms: None,
                send_lag_p99_ms: Some(lag_ms),
            });
            m.add(r);
        }
        let text = m.render();
        let lag_row = text.lines().find(|l| l.contains("generator lag")).unwrap();
        let cells: Vec<&str> = lag_row.split_whitespace().collect();
        assert_eq!(cells[cells.len() - 2..], ["400‡", "0.200"]);
        assert!(text.contains("fell behind its schedule"));
    }

    #[test]
    fn shows_each_systems_latency_ceiling_as_its_own_row() {
        let mut m = Merged::default();
        for (system, held, not_held) in [
            ("weir", 9375.0, Some(10_000.0)),
            ("redis", 0.0, Some(1000.0)),
            ("nats", 1_280_000.0, None),
        ] {
            let mut r = result(
                system,
                Workload::LatencyCeiling,
                Some(Durability::Durable),
                1.0,
            );
            r.records_per_sec = held;
            r.settings
                .insert(CEILING_BOUND_KEY.to_owned(), serde_json::json!(10.0));
            if let Some(n) = not_held {
                r.settings
                    .insert(CEILING_NOT_HELD_KEY.to_owned(), serde_json::json!(n));
            }
            m.add(r);
        }
        let text = m.render();
        let row = text
            .lines()
            .find(|l| l.contains("highest rate with p99 <= 10 ms, records/s"))
            .unwrap();
        assert!(row.starts_with("latency ceiling 1 KiB, acks durable"));
        assert!(row.contains("9,375") && row.contains("< 1,000") && row.contains(">= 1,280,000"));
        let not_held = text
            .lines()
            .find(|l| l.contains("lowest rate not held"))
            .unwrap();
        assert!(not_held.contains("10,000") && not_held.trim_end().ends_with('-'));
        assert!(!text.contains(FELL_BEHIND));
    }
}
