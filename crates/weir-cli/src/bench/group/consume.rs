//! `weir bench group-consume`: read throughput of a consumer group, one member against
//! `--members`, each record checked. The topic is filled to `--count` records first if
//! it holds fewer (not timed). For each run a fresh group forms at the end of the log
//! (`auto_offset_reset` latest, so nothing is read while partitions move); once it is
//! settled every member seeks its partitions to the log start and the clock starts. The
//! run ends when every offset between log start and high watermark of every partition
//! has arrived. Offsets are tracked as ranges per partition, so a record delivered twice
//! is counted as a duplicate, and one never delivered stalls the run until
//! `--stall-timeout` fails it. Throughput counts key and value bytes delivered.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::watch;
use weir_client::{
    Admin, ConsumerRecord, GroupConsumer, GroupConsumerConfig, OffsetQuery, OffsetReset, Producer,
    ProducerConfig, SeekTo,
};

use super::{
    Board, ConsumeConfig, POLL_MAX_RECORDS, POLL_WAIT, Tracker, delete_groups, join_member, print,
    run_id, spawn_member, wait_settled,
};
use crate::bench::{
    BYTES_PER_MB, BenchConfig, Kind, Progress, ReportSchema, Stop, ensure_topic_named,
};
use crate::produce::{AcksArg, CompressionArg};

/// How often the main task looks at the tally (the end time itself is taken by the
/// member that completes it).
const CHECK_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug, Serialize)]
struct ConsumeReport {
    scenario: &'static str,
    topic: String,
    partitions: u32,
    /// Records in the topic (log start to high watermark), each read by every run.
    records: u64,
    runs: Vec<GroupRun>,
    /// Records per second of the larger group over the single member.
    speedup: f64,
    /// Goal: the larger group reads at least as fast as one member, nothing lost.
    goal_met: bool,
}

#[derive(Debug, Serialize)]
struct GroupRun {
    members: u32,
    group_id: String,
    /// From the first subscribe until the group was settled (not in the throughput).
    formation_ms: f64,
    /// Distinct records delivered (equal to the topic's records: the run waits for all).
    records: u64,
    /// Records delivered more than once.
    duplicates: u64,
    /// Key and value bytes of every record delivered.
    bytes: u64,
    elapsed_secs: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    /// Records each member delivered, and partitions it held.
    records_per_member: Vec<u64>,
    partitions_per_member: Vec<usize>,
}

/// Offsets of one partition seen so far, as disjoint, non-adjacent half-open ranges.
#[derive(Debug, Default)]
struct Seen(BTreeMap<i64, i64>);

impl Seen {
    /// Adds `[start, end)`; returns how many of its offsets were not seen before.
    fn insert(&mut self, start: i64, end: i64) -> u64 {
        if start >= end {
            return 0;
        }
        // The first range that may overlap or touch: the last one starting at or before
        // `start`, if it reaches it.
        let from = self
            .0
            .range(..=start)
            .next_back()
            .filter(|&(_, &e)| e >= start)
            .map_or(start, |(&s, _)| s);
        let touching: Vec<(i64, i64)> = self.0.range(from..=end).map(|(&s, &e)| (s, e)).collect();
        let (mut merged_start, mut merged_end, mut overlap) = (start, end, 0u64);
        for (s, e) in touching {
            overlap += (e.min(end) - s.max(start)).max(0) as u64;
            merged_start = merged_start.min(s);
            merged_end = merged_end.max(e);
            self.0.remove(&s);
        }
        self.0.insert(merged_start, merged_end);
        (end - start) as u64 - overlap
    }
}

/// What the members of one run delivered, shared between them.
#[derive(Debug)]
struct Tally {
    /// Per partition: `[log start, high watermark)` when the run began.
    ranges: Vec<(i64, i64)>,
    seen: Vec<Seen>,
    expected: u64,
    distinct: u64,
    duplicates: u64,
    /// Records outside the ranges (written after the run began).
    outside: u64,
    /// When the last missing record arrived.
    finished_at: Option<Instant>,
}

impl Tally {
    fn new(ranges: &[(i64, i64)]) -> Tally {
        Tally {
            ranges: ranges.to_vec(),
            seen: ranges.iter().map(|_| Seen::default()).collect(),
            expected: ranges.iter().map(|&(s, e)| (e - s).max(0) as u64).sum(),
            distinct: 0,
            duplicates: 0,
            outside: 0,
            finished_at: None,
        }
    }

    /// Counts a poll's records: runs of consecutive offsets of one partition, one range
    /// insertion each.
    fn add(&mut self, records: &[ConsumerRecord]) {
        let mut i = 0;
        while i < records.len() {
            let partition = records[i].partition;
            let start = records[i].offset;
            let mut end = start + 1;
            let mut j = i + 1;
            while j < records.len() && records[j].partition == partition && records[j].offset == end
            {
                end += 1;
                j += 1;
            }
            self.add_run(partition, start, end);
            i = j;
        }
        if self.distinct >= self.expected && self.finished_at.is_none() {
            self.finished_at = Some(Instant::now());
        }
    }

    fn add_run(&mut self, partition: u32, start: i64, end: i64) {
        let Some(&(low, high)) = self.ranges.get(partition as usize) else {
            self.outside += (end - start) as u64;
            return;
        };
        let (s, e) = (start.max(low), end.min(high));
        let inside = (e - s).max(0) as u64;
        self.outside += (end - start) as u64 - inside;
        if inside > 0 {
            let new = self.seen[partition as usize].insert(s, e);
            self.distinct += new;
            self.duplicates += inside - new;
        }
    }
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the scenario.
pub(super) async fn run(config: &ConsumeConfig) -> anyhow::Result<()> {
    let admin = Admin::connect_with(
        &config.brokers,
        weir_client::ConnectOptions {
            timeouts: config.timeouts,
            tls: config.tls.clone(),
        },
    )
    .await
    .context("connecting to the broker")?;
    let partitions = ensure_topic_named(
        &admin,
        &config.topic,
        config.partitions,
        &config.topic_configs,
    )
    .await?;
    let mut ranges = log_ranges(&admin, &config.topic, partitions).await?;
    let available: u64 = ranges.iter().map(|&(s, e)| (e - s).max(0) as u64).sum();
    if available < config.count {
        fill(config, partitions, config.count - available).await?;
        ranges = filled_ranges(config, &admin, partitions).await?;
    }
    let records: u64 = ranges.iter().map(|&(s, e)| (e - s).max(0) as u64).sum();

    let id = run_id();
    let mut runs = Vec::new();
    for members in [1, config.members] {
        let group_id = format!("weir-bench-consume-{id}-{members}");
        runs.push(consume_with(config, &admin, members, &ranges, group_id).await?);
    }
    let groups: Vec<String> = runs.iter().map(|r| r.group_id.clone()).collect();
    delete_groups(&admin, &groups).await;

    let speedup = runs[1].records_per_sec / runs[0].records_per_sec.max(f64::MIN_POSITIVE);
    let report = ConsumeReport {
        scenario: "group-consume",
        topic: config.topic.clone(),
        partitions,
        records,
        goal_met: speedup >= 1.0 && runs.iter().all(|r| r.records == records),
        speedup,
        runs,
    };
    print(config.format, &report, &text(&report))
}

/// Produces `missing` records of `--record-size` (not timed), as `bench consume` does.
pub(super) async fn fill(
    config: &ConsumeConfig,
    partitions: u32,
    missing: u64,
) -> anyhow::Result<()> {
    let producer_config = ProducerConfig {
        brokers: config.brokers.clone(),
        acks: AcksArg::Leader.into(),
        connect_timeout: config.timeouts.connect,
        request_timeout: config.timeouts.request,
        tls: config.tls.clone(),
        ..ProducerConfig::default()
    };
    let fill = BenchConfig {
        kind: Kind::Consume,
        brokers: config.brokers.clone(),
        timeouts: config.timeouts,
        tls: config.tls.clone(),
        topic: config.topic.clone(),
        partitions,
        topic_configs: config.topic_configs.clone(),
        record_bytes: config.record_bytes,
        stop: Stop::Count(missing),
        producer: producer_config.clone(),
        per_record: false,
        transaction_records: None,
        chunk_records: None,
        acks: AcksArg::Leader,
        compression: CompressionArg::None,
        format: config.format,
        report_schema: ReportSchema::Weir,
    };
    let producer = Producer::connect(producer_config)
        .await
        .context("connecting the producer")?;
    let progress = Progress::start("filling the topic", Some(missing));
    let filled =
        crate::bench::produce::send(&fill, &producer, Stop::Count(missing), &progress, None).await;
    progress.finish();
    producer.close().await;
    filled.map(|_| ())
}

/// The log ranges once the fill is visible: its acknowledgements (acks=leader) come
/// before the high watermark passes them (it is the durable end under group commit), so
/// the ranges are read until they hold `config.count` records, for at most the stall
/// timeout.
pub(super) async fn filled_ranges(
    config: &ConsumeConfig,
    admin: &Admin,
    partitions: u32,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let deadline = Instant::now() + config.stall_timeout;
    loop {
        let ranges = log_ranges(admin, &config.topic, partitions).await?;
        let records: u64 = ranges.iter().map(|&(s, e)| (e - s).max(0) as u64).sum();
        if records >= config.count || Instant::now() >= deadline {
            return Ok(ranges);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `[log start, high watermark)` of every partition.
pub(super) async fn log_ranges(
    admin: &Admin,
    topic: &str,
    partitions: u32,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let query =
        |q: OffsetQuery| -> Vec<(u32, OffsetQuery)> { (0..partitions).map(|p| (p, q)).collect() };
    let starts = admin
        .list_offsets(topic, &query(OffsetQuery::Earliest))
        .await
        .with_context(|| format!("looking up the start of topic {topic}"))?;
    let ends = admin
        .list_offsets(topic, &query(OffsetQuery::Latest))
        .await
        .with_context(|| format!("looking up the end of topic {topic}"))?;
    let mut ranges = vec![(0, 0); partitions as usize];
    for s in starts {
        if let Some(r) = ranges.get_mut(s.partition as usize) {
            r.0 = s.offset;
        }
    }
    for e in ends {
        if let Some(r) = ranges.get_mut(e.partition as usize) {
            r.1 = e.offset;
        }
    }
    Ok(ranges)
}

/// What one member delivered.
#[derive(Debug, Default)]
struct MemberStats {
    records: u64,
    bytes: u64,
    partitions: usize,
}

/// One run: `members` members of the fresh group `group_id` read everything.
async fn consume_with(
    config: &ConsumeConfig,
    admin: &Admin,
    members: u32,
    ranges: &[(i64, i64)],
    group_id: String,
) -> anyhow::Result<GroupRun> {
    let slots = members as usize;
    let partitions = ranges.len() as u32;
    let board = Arc::new(watch::Sender::new(Board::new(slots)));
    let tally = Arc::new(Mutex::new(Tally::new(ranges)));
    let ranges: Arc<[(i64, i64)]> = ranges.into();
    let (start, started_rx) = watch::channel(false);
    let (stop, stopped_rx) = watch::channel(false);

    let forming = Instant::now();
    let mut tasks = Vec::with_capacity(slots);
    for slot in 0..slots {
        let mut consumer = GroupConsumer::connect(GroupConsumerConfig {
            brokers: config.brokers.clone(),
            timeouts: config.timeouts,
            tls: config.tls.clone(),
            group_id: group_id.clone(),
            client_id: format!("weir-bench-member-{slot}"),
            auto_offset_reset: OffsetReset::Latest,
            ..GroupConsumerConfig::default()
        })
        .await
        .with_context(|| format!("connecting member {slot}"))?;
        consumer.set_rebalance_listener(Tracker::listener(slot, &config.topic, &board));
        consumer
            .subscribe([config.topic.as_str()])
            .with_context(|| format!("subscribing member {slot}"))?;
        let member = Member {
            slot,
            topic: config.topic.clone(),
            ranges: ranges.clone(),
            tally: tally.clone(),
            start: started_rx.clone(),
            stop: stopped_rx.clone(),
        };
        tasks.push(spawn_member(&board, member.run(consumer)));
    }
    let active: Vec<usize> = (0..slots).collect();
    wait_settled(
        &board,
        admin,
        &group_id,
        &active,
        partitions,
        config.settle_timeout,
        &format!("forming a group of {members}"),
    )
    .await?;
    let formation = forming.elapsed();

    let expected = lock(&tally).expected;
    let progress = Progress::start(&format!("{members} member(s) consuming"), Some(expected));
    let started = Instant::now();
    let _ = start.send(true);
    let mut last = (0u64, Instant::now());
    let finished_at = loop {
        tokio::time::sleep(CHECK_INTERVAL).await;
        let (distinct, finished_at) = {
            let t = lock(&tally);
            (t.distinct, t.finished_at)
        };
        progress.done.store(distinct, Ordering::Relaxed);
        if let Some(at) = finished_at {
            break at;
        }
        if let Some(failure) = board.borrow().failure.clone() {
            progress.finish();
            anyhow::bail!("{members} member(s): a member failed: {failure}");
        }
        if distinct != last.0 {
            last = (distinct, Instant::now());
        } else if last.1.elapsed() >= config.stall_timeout {
            progress.finish();
            let outside = lock(&tally).outside;
            anyhow::bail!(
                "{members} member(s): no new record for {:?} after {distinct} of {expected} \
                 ({outside} records beyond the high watermarks the run began with); members \
                 hold {}",
                config.stall_timeout,
                board.borrow().summary()
            );
        }
    };
    progress.finish();
    let _ = stop.send(true);
    let mut stats = Vec::with_capacity(slots);
    for (slot, task) in tasks.into_iter().enumerate() {
        stats.push(join_member(slot, task).await?);
    }

    let elapsed = finished_at.duration_since(started);
    let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let t = lock(&tally);
    let bytes: u64 = stats.iter().map(|s| s.bytes).sum();
    Ok(GroupRun {
        members,
        group_id,
        formation_ms: formation.as_secs_f64() * 1e3,
        records: t.distinct,
        duplicates: t.duplicates,
        bytes,
        elapsed_secs: elapsed.as_secs_f64(),
        records_per_sec: t.distinct as f64 / secs,
        mb_per_sec: bytes as f64 / BYTES_PER_MB / secs,
        records_per_member: stats.iter().map(|s| s.records).collect(),
        partitions_per_member: stats.iter().map(|s| s.partitions).collect(),
    })
}

/// One member's part of a run.
struct Member {
    slot: usize,
    topic: String,
    ranges: Arc<[(i64, i64)]>,
    tally: Arc<Mutex<Tally>>,
    start: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
}

impl Member {
    async fn run(mut self, mut consumer: GroupConsumer) -> anyhow::Result<MemberStats> {
        let slot = self.slot;
        // Forming: positions are at the log end, so nothing arrives while partitions move.
        loop {
            tokio::select! {
                biased;
                _ = self.start.wait_for(|go| *go) => break,
                polled = consumer.poll(POLL_MAX_RECORDS, POLL_WAIT) => {
                    let polled = polled.with_context(|| format!("member {slot} polling"))?;
                    anyhow::ensure!(
                        polled.is_empty(),
                        "member {slot} read records while the group formed: is another \
                         producer writing to {}?",
                        self.topic
                    );
                }
            }
        }
        // Measured: from the log start of every partition it holds.
        let held = consumer.assignment();
        for tp in &held {
            let (log_start, _) = self.ranges[tp.partition as usize];
            consumer
                .seek(&tp.topic, tp.partition, SeekTo::Offset(log_start))
                .await
                .with_context(|| format!("member {slot} seeking {tp}"))?;
        }
        let mut stats = MemberStats {
            partitions: held.len(),
            ..MemberStats::default()
        };
        loop {
            tokio::select! {
                biased;
                _ = self.stop.wait_for(|stop| *stop) => break,
                polled = consumer.poll(POLL_MAX_RECORDS, POLL_WAIT) => {
                    let records = polled.with_context(|| format!("member {slot} polling"))?;
                    if records.is_empty() {
                        continue;
                    }
                    stats.records += records.len() as u64;
                    stats.bytes += records
                        .iter()
                        .map(|r| {
                            (r.key.as_ref().map_or(0, |k| k.len())
                                + r.value.as_ref().map_or(0, |v| v.len())) as u64
                        })
                        .sum::<u64>();
                    lock(&self.tally).add(&records);
                }
            }
        }
        consumer
            .close()
            .await
            .with_context(|| format!("closing member {slot}"))?;
        Ok(stats)
    }
}

fn text(r: &ConsumeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "group-consume: {} records in {} ({} partitions), read by 1 member, then by {}",
        r.records, r.topic, r.partitions, r.runs[1].members
    );
    for run in &r.runs {
        let _ = writeln!(
            out,
            "  {:>2} member(s): {:.0} records/s, {:.1} MB/s ({:.2} s); duplicates {}; group settled in {:.0} ms",
            run.members,
            run.records_per_sec,
            run.mb_per_sec,
            run.elapsed_secs,
            run.duplicates,
            run.formation_ms
        );
        if run.members > 1 {
            let shares: Vec<String> = run
                .records_per_member
                .iter()
                .zip(&run.partitions_per_member)
                .map(|(records, parts)| format!("{records} ({parts} partitions)"))
                .collect();
            let _ = writeln!(out, "      per member: {}", shares.join(", "));
        }
    }
    let _ = writeln!(
        out,
        "  {} members / 1 member: {:.2}x; goal (>= 1x, every record once): {}",
        r.runs[1].members,
        r.speedup,
        if r.goal_met { "met" } else { "NOT met" }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_ranges_count_new_offsets_and_merge() {
        let mut seen = Seen::default();
        assert_eq!(seen.insert(10, 20), 10);
        assert_eq!(seen.insert(20, 25), 5); // adjacent: merged
        assert_eq!(seen.0.len(), 1);
        assert_eq!(seen.insert(15, 30), 5); // 15..25 seen already
        assert_eq!(seen.insert(0, 5), 5);
        assert_eq!(seen.insert(40, 50), 10);
        assert_eq!(seen.0.len(), 3);
        assert_eq!(seen.insert(0, 60), 60 - 5 - 20 - 10); // fills every gap
        assert_eq!(seen.0.into_iter().collect::<Vec<_>>(), vec![(0, 60)]);
    }

    fn record(partition: u32, offset: i64) -> ConsumerRecord {
        ConsumerRecord {
            topic: "t".into(),
            partition,
            offset,
            timestamp: 0,
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }

    #[test]
    fn a_tally_finishes_when_every_offset_arrived_once() {
        let mut tally = Tally::new(&[(0, 3), (5, 7)]);
        assert_eq!(tally.expected, 5);
        tally.add(&[record(0, 0), record(0, 1), record(1, 5)]);
        assert_eq!((tally.distinct, tally.finished_at.is_some()), (3, false));
        // 0/1 again (a duplicate), then the rest, plus one beyond the range.
        tally.add(&[record(0, 1), record(0, 2), record(1, 6), record(1, 7)]);
        assert_eq!(tally.distinct, 5);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.outside, 1);
        assert!(tally.finished_at.is_some());
    }
}
