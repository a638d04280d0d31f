//! The samples behind the console's charts. The broker keeps counters, not history: a
//! background task reads its traffic counters, request latencies and each group's lag
//! every [`SAMPLE_INTERVAL`] into a ring of [`HISTORY_SAMPLES`], and the pages turn
//! consecutive samples into rates. Server-sent events tell open pages of each new sample.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use weir_broker::{Broker, Listener, RequestContext, TopicTraffic, groups};

/// How often the counters are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// Samples kept: ten minutes at [`SAMPLE_INTERVAL`].
pub const HISTORY_SAMPLES: usize = 300;
/// Most topics one sample keeps (by name); the others are not charted.
pub const MAX_SAMPLED_TOPICS: usize = 1000;
/// Most groups whose lag one sample keeps (by id); the others are not charted.
pub const MAX_SAMPLED_GROUPS: usize = 200;

/// The counters at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub at_ms: i64,
    pub traffic: BTreeMap<String, TopicTraffic>,
    /// Each group's total lag (records).
    pub group_lag: BTreeMap<String, i64>,
    /// Requests answered since the broker started, over every RPC, and their seconds.
    pub calls: u64,
    pub call_seconds: f64,
}

/// One topic's rates between two samples, per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct TopicRates {
    pub records_in: f64,
    pub bytes_in: f64,
    pub records_out: f64,
    pub bytes_out: f64,
}

impl TopicRates {
    /// The rate named `field` (`records_in`, `bytes_in`, `records_out`, `bytes_out`).
    pub(crate) fn field(&self, field: &str) -> f64 {
        match field {
            "records_in" => self.records_in,
            "bytes_in" => self.bytes_in,
            "records_out" => self.records_out,
            _ => self.bytes_out,
        }
    }
}

/// What happened between two samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Step {
    pub at_ms: i64,
    pub topics: BTreeMap<String, TopicRates>,
    pub all: TopicRates,
    pub group_lag: BTreeMap<String, i64>,
    pub calls_per_second: f64,
    /// Mean latency of the requests answered in the step; 0 when there were none.
    pub mean_latency_ms: f64,
}

impl Step {
    /// Every value by its series name, as the charts and live numbers name them:
    /// `topic:NAME:FIELD`, `all:FIELD`, `group:ID:lag`, `rpc:calls`, `rpc:latency_ms`.
    pub(crate) fn series(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for field in ["records_in", "bytes_in", "records_out", "bytes_out"] {
            out.insert(format!("all:{field}"), self.all.field(field));
            for (topic, rates) in &self.topics {
                out.insert(format!("topic:{topic}:{field}"), rates.field(field));
            }
        }
        for (group, lag) in &self.group_lag {
            out.insert(format!("group:{group}:lag"), *lag as f64);
        }
        out.insert("rpc:calls".into(), self.calls_per_second);
        out.insert("rpc:latency_ms".into(), self.mean_latency_ms);
        out
    }
}

/// The ring of samples.
#[derive(Debug)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Sample>>,
    /// The number of samples taken so far; moves with each.
    taken: watch::Sender<u64>,
}

impl Default for History {
    fn default() -> History {
        History {
            samples: Mutex::new(VecDeque::with_capacity(HISTORY_SAMPLES)),
            taken: watch::Sender::new(0),
        }
    }
}

impl History {
    pub(crate) fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().expect("history lock");
        if samples.len() == HISTORY_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
        drop(samples);
        self.taken.send_modify(|n| *n += 1);
    }

    /// Tells of each new sample.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.taken.subscribe()
    }

    /// The latest step, if two samples were taken.
    pub(crate) fn latest(&self) -> Option<Step> {
        let samples = self.samples.lock().expect("history lock");
        let n = samples.len();
        (n >= 2).then(|| step(&samples[n - 2], &samples[n - 1]))
    }

    /// The series `name` (see [`Step::series`]) over the steps, oldest first; 0 where a
    /// step lacks it. A topic's or a group's series is read from its own counters only, so
    /// a page with a sparkline per topic costs samples x topics, not samples x topics².
    pub(crate) fn series(&self, name: &str) -> Vec<f64> {
        let samples = self.samples.lock().expect("history lock");
        let pairs = samples.iter().zip(samples.iter().skip(1));
        if let Some((topic, field)) = name
            .strip_prefix("topic:")
            .and_then(|rest| rest.rsplit_once(':'))
        {
            return pairs
                .map(|(a, b)| {
                    let before = a.traffic.get(topic).copied().unwrap_or_default();
                    let now = b.traffic.get(topic).copied().unwrap_or_default();
                    topic_rates(&before, &now, seconds_between(a, b)).field(field)
                })
                .collect();
        }
        if let Some(group) = name
            .strip_prefix("group:")
            .and_then(|rest| rest.strip_suffix(":lag"))
        {
            return pairs
                .map(|(_, b)| b.group_lag.get(group).copied().unwrap_or(0) as f64)
                .collect();
        }
        pairs
            .map(|(a, b)| step(a, b).series().get(name).copied().unwrap_or(0.0))
            .collect()
    }
}

fn seconds_between(a: &Sample, b: &Sample) -> f64 {
    ((b.at_ms - a.at_ms) as f64 / 1000.0).max(0.001)
}

/// A topic's rates between two readings of its counters `seconds` apart. A counter that
/// went down (the topic deleted and created again) counts as no traffic.
fn topic_rates(before: &TopicTraffic, now: &TopicTraffic, seconds: f64) -> TopicRates {
    let per_second = |now: u64, before: u64| now.saturating_sub(before) as f64 / seconds;
    TopicRates {
        records_in: per_second(now.records_in, before.records_in),
        bytes_in: per_second(now.bytes_in, before.bytes_in),
        records_out: per_second(now.records_out, before.records_out),
        bytes_out: per_second(now.bytes_out, before.bytes_out),
    }
}

/// The rates from `a` to `b`.
fn step(a: &Sample, b: &Sample) -> Step {
    let seconds = seconds_between(a, b);
    let mut all = TopicRates::default();
    let topics: BTreeMap<String, TopicRates> = b
        .traffic
        .iter()
        .map(|(topic, now)| {
            let before = a.traffic.get(topic).copied().unwrap_or_default();
            let rates = topic_rates(&before, now, seconds);
            all.records_in += rates.records_in;
            all.bytes_in += rates.bytes_in;
            all.records_out += rates.records_out;
            all.bytes_out += rates.bytes_out;
            (topic.clone(), rates)
        })
        .collect();
    let calls = b.calls.saturating_sub(a.calls);
    let mean_latency_ms = if calls > 0 {
        (b.call_seconds - a.call_seconds).max(0.0) / calls as f64 * 1000.0
    } else {
        0.0
    };
    Step {
        at_ms: b.at_ms,
        topics,
        all,
        group_lag: b.group_lag.clone(),
        calls_per_second: calls as f64 / seconds,
        mean_latency_ms,
    }
}

/// Reads the broker's counters now, through the core.
pub(crate) async fn take(core: &Broker) -> Sample {
    // The broker's own sampling: each page shows a caller only what she may describe.
    let ctx = RequestContext::anonymous(Listener::INTERNAL, None);
    let traffic = core
        .metrics()
        .traffic()
        .into_iter()
        .take(MAX_SAMPLED_TOPICS)
        .collect();
    let (mut calls, mut call_seconds) = (0, 0.0);
    for rpc in core.metrics().latency() {
        calls += rpc.count;
        call_seconds += rpc.sum_seconds;
    }
    let mut group_lag = BTreeMap::new();
    // Before the coordinator is up there are no groups to sample.
    if let Ok(listed) = groups::list_groups(core, &ctx) {
        let ids: Vec<String> = listed
            .into_iter()
            .take(MAX_SAMPLED_GROUPS)
            .map(|g| g.group_id)
            .collect();
        for described in groups::describe_groups(core, &ctx, &ids).await {
            let lag = described.offsets.iter().filter_map(|o| o.lag).sum();
            group_lag.insert(described.group_id, lag);
        }
    }
    Sample {
        at_ms: weir_broker::now_ms(),
        traffic,
        group_lag,
        calls,
        call_seconds,
    }
}

/// Samples `core` into `history` every [`SAMPLE_INTERVAL`] until the broker starts
/// shutting down.
pub(crate) fn spawn_sampler(core: Arc<Broker>, history: Arc<History>) {
    tokio::spawn(async move {
        let mut stopping = core.shutdown_signal();
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = weir_broker::until_stopping(&mut stopping) => return,
            }
            let sample = take(&core).await;
            history.push(sample);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, bytes_in: u64, lag: i64) -> Sample {
        let mut s = Sample {
            at_ms,
            ..Sample::default()
        };
        s.traffic.insert(
            "t".into(),
            TopicTraffic {
                bytes_in,
                ..TopicTraffic::default()
            },
        );
        s.group_lag.insert("g".into(), lag);
        s
    }

    #[test]
    fn rates_come_from_consecutive_samples_and_the_ring_is_bounded() {
        let history = History::default();
        assert!(history.latest().is_none());
        history.push(sample(0, 0, 5));
        history.push(sample(2000, 4000, 7));
        let latest = history.latest().unwrap();
        assert_eq!(latest.topics["t"].bytes_in, 2000.0);
        assert_eq!(latest.all.bytes_in, 2000.0);
        assert_eq!(latest.series()["group:g:lag"], 7.0);
        assert_eq!(history.series("topic:t:bytes_in"), [2000.0]);
        assert_eq!(history.series("all:bytes_in"), [2000.0]);
        assert_eq!(history.series("group:g:lag"), [7.0]);
        assert_eq!(history.series("topic:absent:bytes_in"), [0.0]);
        // A counter that went down (the topic was created again) is no traffic.
        history.push(sample(4000, 10, 7));
        assert_eq!(history.latest().unwrap().topics["t"].bytes_in, 0.0);
        for i in 0..HISTORY_SAMPLES as i64 * 2 {
            history.push(sample(6000 + i * 2000, 0, i));
        }
        assert_eq!(history.series("group:g:lag").len(), HISTORY_SAMPLES - 1);
        assert_eq!(
            *history.subscribe().borrow(),
            HISTORY_SAMPLES as u64 * 2 + 3
        );
    }
}
