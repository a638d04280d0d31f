//! The broker's metrics and their Prometheus text rendering, hand-rolled: a few
//! counters per topic and one latency histogram per RPC do not justify an exporter
//! crate and its dependencies. Updates happen once per request (never per record), so
//! one mutex per family is cheap.
//!
//! Label values are topic names and RPC names, whose characters (`[a-zA-Z0-9._-]`)
//! need no escaping in the text format, and group ids, which may hold any character and
//! are escaped ([`label`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use std::sync::atomic::{AtomicU64, Ordering};

use weir_cluster::TopicRegistry;
use weir_cluster::group::GroupCoordinator;

use crate::budget::Budget;

/// Upper bounds (seconds) of the request-latency histogram buckets.
pub const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default, Clone, Copy)]
struct Traffic {
    records_in: u64,
    bytes_in: u64,
    records_out: u64,
    bytes_out: u64,
    undecodable_batches: u64,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Counts per bucket (not cumulative; summed when rendered).
    buckets: [u64; LATENCY_BUCKETS_SECONDS.len()],
    count: u64,
    sum: f64,
}

/// One topic's traffic counters since the broker started (or the topic was created).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TopicTraffic {
    pub records_in: u64,
    pub bytes_in: u64,
    pub records_out: u64,
    pub bytes_out: u64,
}

/// One RPC's latency histogram since the broker started.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcLatency {
    pub rpc: &'static str,
    /// Calls per bucket of [`LATENCY_BUCKETS_SECONDS`] (not cumulative); calls over the
    /// last bound are in `count` only.
    pub buckets: [u64; LATENCY_BUCKETS_SECONDS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

/// The broker's counters and histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    traffic: Mutex<BTreeMap<String, Traffic>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    in_flight: Mutex<BTreeMap<&'static str, i64>>,
    offset_commits: AtomicU64,
    /// The broker-wide budget whose gauges are rendered with the rest, once set.
    budget: OnceLock<Arc<Budget>>,
}

/// Records a request's latency when dropped.
#[derive(Debug)]
pub struct RpcTimer {
    metrics: Arc<Metrics>,
    rpc: &'static str,
    started: Instant,
}

impl Drop for RpcTimer {
    fn drop(&mut self) {
        *self
            .metrics
            .in_flight
            .lock()
            .expect("metrics lock")
            .entry(self.rpc)
            .or_default() -= 1;
        let seconds = self.started.elapsed().as_secs_f64();
        let mut latency = self.metrics.latency.lock().expect("metrics lock");
        let h = latency.entry(self.rpc).or_default();
        if let Some(i) = LATENCY_BUCKETS_SECONDS.iter().position(|b| seconds <= *b) {
            h.buckets[i] += 1;
        }
        h.count += 1;
        h.sum += seconds;
    }
}

impl Metrics {
    /// Starts timing one call of `rpc`.
    pub fn rpc_timer(self: &Arc<Self>, rpc: &'static str) -> RpcTimer {
        *self
            .in_flight
            .lock()
            .expect("metrics lock")
            .entry(rpc)
            .or_default() += 1;
        RpcTimer {
            metrics: self.clone(),
            rpc,
            started: Instant::now(),
        }
    }

    /// Counts records appended to `topic`.
    pub fn produced(&self, topic: &str, records: u64, bytes: u64) {
        let mut traffic = self.traffic.lock().expect("metrics lock");
        let t = traffic.entry(topic.to_string()).or_default();
        t.records_in += records;
        t.bytes_in += bytes;
    }

    /// Counts records sent to consumers of `topic`.
    pub fn consumed(&self, topic: &str, records: u64, bytes: u64) {
        let mut traffic = self.traffic.lock().expect("metrics lock");
        let t = traffic.entry(topic.to_string()).or_default();
        t.records_out += records;
        t.bytes_out += bytes;
    }

    /// Counts a stored batch of `topic` that a decoded read could not decode.
    pub fn undecodable_batch(&self, topic: &str) {
        let mut traffic = self.traffic.lock().expect("metrics lock");
        traffic
            .entry(topic.to_string())
            .or_default()
            .undecodable_batches += 1;
    }

    /// Counts committed partition offsets.
    pub fn count_commits(&self, partitions: u64) {
        self.offset_commits.fetch_add(partitions, Ordering::Relaxed);
    }

    /// Renders `budget`'s connections, in-flight bytes, streams and refusals with the
    /// rest (once; later calls are ignored).
    pub fn set_budget(&self, budget: Arc<Budget>) {
        let _ = self.budget.set(budget);
    }

    /// Drops a deleted topic's series.
    pub fn forget_topic(&self, topic: &str) {
        self.traffic.lock().expect("metrics lock").remove(topic);
    }

    /// Every topic's traffic counters now, by topic.
    pub fn traffic(&self) -> BTreeMap<String, TopicTraffic> {
        let traffic = self.traffic.lock().expect("metrics lock");
        traffic
            .iter()
            .map(|(topic, t)| {
                let counters = TopicTraffic {
                    records_in: t.records_in,
                    bytes_in: t.bytes_in,
                    records_out: t.records_out,
                    bytes_out: t.bytes_out,
                };
                (topic.clone(), counters)
            })
            .collect()
    }

    /// Every RPC's latency histogram now, by RPC name.
    pub fn latency(&self) -> Vec<RpcLatency> {
        let latency = self.latency.lock().expect("metrics lock");
        latency
            .iter()
            .map(|(rpc, h)| RpcLatency {
                rpc,
                buckets: h.buckets,
                count: h.count,
                sum_seconds: h.sum,
            })
            .collect()
    }

    /// Everything in Prometheus text format, with each partition's offsets read now.
    pub async fn render(
        &self,
        registry: &TopicRegistry,
        groups: Option<&GroupCoordinator>,
    ) -> String {
        let mut out = String::new();
        let traffic = self.traffic.lock().expect("metrics lock").clone();
        type Field = fn(&Traffic) -> u64;
        let families: [(&str, &str, Field); 5] = [
            (
                "weir_records_in_total",
                "Records appended, per topic.",
                |t| t.records_in,
            ),
            (
                "weir_bytes_in_total",
                "Batch bytes appended, per topic.",
                |t| t.bytes_in,
            ),
            (
                "weir_records_out_total",
                "Records sent to consumers, per topic.",
                |t| t.records_out,
            ),
            (
                "weir_bytes_out_total",
                "Batch bytes sent to consumers, per topic.",
                |t| t.bytes_out,
            ),
            (
                "weir_undecodable_batches_total",
                "Stored batches a decoded read (Fetch, Consume, ListOffsets) could not decode, per topic; each read that meets one counts it.",
                |t| t.undecodable_batches,
            ),
        ];
        for (name, help, field) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (topic, t) in &traffic {
                let _ = writeln!(out, "{name}{{topic=\"{topic}\"}} {}", field(t));
            }
        }
        let latency = self.latency.lock().expect("metrics lock").clone();
        let name = "weir_rpc_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Request latency per RPC (per message for streams).\n# TYPE {name} histogram"
        );
        for (rpc, h) in &latency {
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS_SECONDS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{name}_bucket{{rpc=\"{rpc}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{rpc=\"{rpc}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "{name}_sum{{rpc=\"{rpc}\"}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{rpc=\"{rpc}\"}} {}", h.count);
        }
        let in_flight = self.in_flight.lock().expect("metrics lock").clone();
        let name = "weir_rpc_in_flight";
        let _ = writeln!(
            out,
            "# HELP {name} Requests being served now, per RPC.\n# TYPE {name} gauge"
        );
        for (rpc, n) in &in_flight {
            let _ = writeln!(out, "{name}{{rpc=\"{rpc}\"}} {n}");
        }
        let mut partitions = Vec::new();
        for topic in registry.topics() {
            for p in topic.partitions() {
                if let Ok(o) = p.offsets().await {
                    let labels = format!("topic=\"{}\",partition=\"{}\"", topic.name, p.index());
                    partitions.push((labels, o));
                }
            }
        }
        type Offset = fn(&weir_cluster::PartitionOffsets) -> i64;
        let gauges: [(&str, &str, Offset); 3] = [
            (
                "weir_log_end_offset",
                "Offset the next record of a partition will get.",
                |o| o.log_end_offset,
            ),
            (
                "weir_high_watermark",
                "Offsets below this are visible to consumers.",
                |o| o.high_watermark,
            ),
            (
                "weir_log_start_offset",
                "First offset still in a partition's log.",
                |o| o.log_start_offset,
            ),
        ];
        for (name, help, field) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (labels, o) in &partitions {
                let _ = writeln!(out, "{name}{{{labels}}} {}", field(o));
            }
        }
        render_replication(&mut out, registry);
        if let Some(budget) = self.budget.get() {
            budget.render(&mut out);
        }
        if let Some(groups) = groups {
            render_groups(
                &mut out,
                groups,
                self.offset_commits.load(Ordering::Relaxed),
            );
        }
        out
    }
}

/// Replication health, as Kafka's gauges of the same names: the partitions this broker
/// leads with fewer in-sync replicas than replicas, and the partitions of the cluster's
/// metadata with no leader (every broker reports the same figure from its image; take
/// the max over brokers, not the sum).
fn render_replication(out: &mut String, registry: &TopicRegistry) {
    let node = registry.cluster().node();
    let under = registry
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .filter(|p| {
            // Against the target: replicas a move is adding are not missing copies
            // (Kafka counts the same way since KIP-455).
            let r = p.registration();
            r.leader == node && r.isr.len() < r.target().len()
        })
        .count();
    let offline = registry
        .cluster()
        .image()
        .partitions()
        .filter(|p| p.registration.leader < 0)
        .count();
    let cluster = registry.cluster();
    let reassigning = cluster
        .image()
        .partitions()
        .filter(|p| p.registration.reassignment.is_some())
        .count();
    let storage_full = registry
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .filter(|p| p.is_storage_full())
        .count();
    let metadata_offset = cluster.image().next_offset() - 1;
    let active_controller = usize::from(cluster.controller() == Some(node));
    for (name, help, value) in [
        (
            "weir_under_replicated_partitions",
            "Partitions this broker leads with fewer in-sync replicas than replicas.",
            under,
        ),
        (
            "weir_offline_partitions",
            "Partitions with no leader, as this broker's metadata says (the same on every broker).",
            offline,
        ),
        (
            "weir_reassigning_partitions",
            "Partitions a reassignment is moving, as this broker's metadata says (the same on every broker).",
            reassigning,
        ),
        (
            "weir_storage_full_partitions",
            "Partitions whose last append on this broker was refused because the data directory's device is full (writes resume by themselves once space is freed).",
            storage_full,
        ),
        (
            "weir_active_controller",
            "1 on the active controller (the metadata quorum's leader), 0 elsewhere; the sum over brokers is 1 when the quorum has a leader.",
            active_controller,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_metadata_offset Offset of the last metadata record this broker applied.\n# TYPE weir_metadata_offset gauge\nweir_metadata_offset {metadata_offset}"
    );
    let counters = registry.replication_counters();
    for (name, help, value) in [
        (
            "weir_leader_elections_total",
            "Leader changes of any partition seen in the metadata since this broker started.",
            counters.leader_elections,
        ),
        (
            "weir_isr_shrinks_total",
            "In-sync replica set shrinks of partitions this broker leads, since it started.",
            counters.isr_shrinks,
        ),
        (
            "weir_isr_expands_total",
            "In-sync replica set expansions of partitions this broker leads, since it started.",
            counters.isr_expands,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
}

/// `value` as a label value of Prometheus' text format: `\`, `"` and line feeds escaped
/// (group ids are any string, as in Kafka).
fn label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// Consumer group series: members, rebalances and epoch per group, lag and committed
/// offset per group and partition, and the commit counter. Group ids may hold any
/// character: they are escaped.
fn render_groups(out: &mut String, groups: &GroupCoordinator, commits: u64) {
    let name = "weir_offset_commits_total";
    let _ = writeln!(
        out,
        "# HELP {name} Partition offsets committed by consumer groups.\n# TYPE {name} counter\n{name} {commits}"
    );
    let groups_now = groups.metrics();
    type GroupField = fn(&weir_cluster::group::GroupMetrics) -> u64;
    let families: [(&str, &str, &str, GroupField); 3] = [
        (
            "weir_group_members",
            "Members of a consumer group.",
            "gauge",
            |g| g.members as u64,
        ),
        (
            "weir_group_rebalances_total",
            "Target assignment recomputations of a group since the broker started.",
            "counter",
            |g| g.rebalances,
        ),
        ("weir_group_epoch", "A group's epoch.", "gauge", |g| {
            g.group_epoch.max(0) as u64
        }),
    ];
    for (name, help, kind, field) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for g in &groups_now {
            let _ = writeln!(
                out,
                "{name}{{group=\"{}\"}} {}",
                label(&g.group_id),
                field(g)
            );
        }
    }
    let lags = groups.lags();
    type LagField = fn(&weir_cluster::group::PartitionLag) -> i64;
    let families: [(&str, &str, LagField); 2] = [
        (
            "weir_group_lag",
            "High watermark minus the group's committed offset, per partition.",
            |l| l.lag,
        ),
        (
            "weir_group_committed_offset",
            "A group's committed offset, per partition.",
            |l| l.committed_offset,
        ),
    ];
    for (name, help, field) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for l in &lags {
            let _ = writeln!(
                out,
                "{name}{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
                label(&l.group_id),
                l.topic,
                l.partition,
                field(l)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_are_escaped_as_label_values() {
        assert_eq!(label("roundrobin,range"), "roundrobin,range");
        assert_eq!(label("a b/ü"), "a b/ü");
        assert_eq!(label("say \"hi\"\\now\n"), "say \\\"hi\\\"\\\\now\\n");
    }

    #[test]
    fn the_counters_read_as_numbers_are_the_ones_rendered() {
        let metrics = Arc::new(Metrics::default());
        metrics.produced("orders", 3, 300);
        metrics.produced("orders", 2, 200);
        metrics.consumed("orders", 4, 400);
        metrics.produced("audit", 1, 10);
        drop(metrics.rpc_timer("Produce"));
        drop(metrics.rpc_timer("Produce"));
        let traffic = metrics.traffic();
        assert_eq!(
            traffic["orders"],
            TopicTraffic {
                records_in: 5,
                bytes_in: 500,
                records_out: 4,
                bytes_out: 400,
            }
        );
        assert_eq!(traffic.keys().collect::<Vec<_>>(), ["audit", "orders"]);
        let latency = metrics.latency();
        assert_eq!(latency.len(), 1);
        assert_eq!((latency[0].rpc, latency[0].count), ("Produce", 2));
        assert_eq!(latency[0].buckets.iter().sum::<u64>(), 2);
        metrics.forget_topic("orders");
        assert!(!metrics.traffic().contains_key("orders"));
    }
}
