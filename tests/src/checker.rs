//! The checker: what producers, consumers and a final read saw, and the anomalies in it,
//! in the spirit of Jepsen's queue checker but for a log (every record has a place).
//!
//! A [`History`] holds every value a producer attempted (values are unique), every
//! acknowledged `(partition, offset, value)`, every record each consumer polled, in poll
//! order, and a final read of every partition from offset 0 taken after the cluster was
//! healed. [`check`] finds:
//!
//! - **lost**: an acknowledged value that the final read does not hold;
//! - **duplicates**: a value seen at two places (acknowledged at one offset and read at
//!   another, or read at two offsets);
//! - **inconsistent**: an offset seen holding different values (in an acknowledgement,
//!   a consumer's read, the final read);
//! - **vanished**: an offset a consumer read that the final read does not have: a record
//!   a consumer saw disappeared (offsets never move and the log has no holes a consumer
//!   could have read);
//! - **non-monotonic**: a consumer polled an offset of a partition at or below the one
//!   it polled before (one anomaly per jump back, not per record read again);
//! - **skipped**: a consumer jumped over offsets the final read holds;
//! - **unexpected**: a value read that no producer attempted;
//! - and, for information, attempted values that were never acknowledged but are in the
//!   log (a failed or timed-out produce that was committed anyway: allowed).
//!
//! Pure: no I/O, no clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// Examples printed per anomaly kind.
const EXAMPLES: usize = 10;

/// One record at its place in a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    /// Partition index.
    pub partition: u32,
    /// Offset in the partition.
    pub offset: i64,
    /// The value (values are unique per run).
    pub value: String,
}

impl Record {
    /// A record.
    pub fn new(partition: u32, offset: i64, value: impl Into<String>) -> Record {
        Record {
            partition,
            offset,
            value: value.into(),
        }
    }

    fn position(&self) -> (u32, i64) {
        (self.partition, self.offset)
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}={:?}", self.partition, self.offset, self.value)
    }
}

/// Everything a run observed.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Every value a producer tried to write, acknowledged or not.
    pub attempted: Vec<String>,
    /// Every acknowledged write, with the place the broker gave it.
    pub acknowledged: Vec<Record>,
    /// Per consumer, every record it polled, in poll order.
    pub consumed: Vec<Vec<Record>>,
    /// Every partition read from offset 0 after healing.
    pub final_read: Vec<Record>,
}

/// Where an observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A producer's acknowledgement.
    Ack,
    /// Consumer `n`'s poll.
    Consumer(usize),
    /// The final read.
    Final,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Ack => write!(f, "ack"),
            Source::Consumer(n) => write!(f, "consumer {n}"),
            Source::Final => write!(f, "final read"),
        }
    }
}

/// A value seen at more than one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The value.
    pub value: String,
    /// Every place it was seen, `(partition, offset)`, sorted.
    pub positions: Vec<(u32, i64)>,
}

/// An offset seen holding different values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconsistent {
    /// Partition index.
    pub partition: u32,
    /// Offset.
    pub offset: i64,
    /// The values, each with the first source that saw it.
    pub values: Vec<(Source, String)>,
}

/// A consumer's poll that went backwards in a partition, or jumped over records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadStep {
    /// Which consumer.
    pub consumer: usize,
    /// Partition index.
    pub partition: u32,
    /// The offset polled before (-1 before the first).
    pub previous: i64,
    /// The offset polled next.
    pub next: i64,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Values attempted.
    pub attempted: usize,
    /// Writes acknowledged.
    pub acknowledged: usize,
    /// Records polled per consumer.
    pub consumed: Vec<usize>,
    /// Records in the final read.
    pub final_records: usize,
    /// Acknowledged writes the final read does not hold.
    pub lost: Vec<Record>,
    /// Values seen at more than one place.
    pub duplicates: Vec<Duplicate>,
    /// Offsets seen with different values.
    pub inconsistent: Vec<Inconsistent>,
    /// Records a consumer read at offsets the final read does not have.
    pub vanished: Vec<(usize, Record)>,
    /// Polls that went backwards.
    pub non_monotonic: Vec<BadStep>,
    /// Polls that jumped over records the final read holds.
    pub skipped: Vec<BadStep>,
    /// Values read that no producer attempted.
    pub unexpected: Vec<(Source, Record)>,
    /// Attempted, never acknowledged, yet in the final read (allowed: informational).
    pub unacknowledged_present: usize,
}

impl Report {
    /// No anomaly (the informational count aside).
    pub fn is_valid(&self) -> bool {
        self.anomalies() == 0
    }

    /// The records themselves are right: nothing acknowledged lost, nothing doubled,
    /// changed, taken back or made up (consumers' order aside).
    pub fn is_safe(&self) -> bool {
        self.lost.is_empty()
            && self.duplicates.is_empty()
            && self.inconsistent.is_empty()
            && self.vanished.is_empty()
            && self.unexpected.is_empty()
    }

    /// How many anomalies of every kind.
    pub fn anomalies(&self) -> usize {
        self.lost.len()
            + self.duplicates.len()
            + self.inconsistent.len()
            + self.vanished.len()
            + self.non_monotonic.len()
            + self.skipped.len()
            + self.unexpected.len()
    }
}

fn examples<T>(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    items: &[T],
    show: impl Fn(&T) -> String,
) -> fmt::Result {
    writeln!(f, "  {name}: {}", items.len())?;
    for item in items.iter().take(EXAMPLES) {
        writeln!(f, "    {}", show(item))?;
    }
    if items.len() > EXAMPLES {
        writeln!(f, "    ... and {} more", items.len() - EXAMPLES)?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checker: {} attempted, {} acknowledged, {} in the final read, consumed {:?}; {}",
            self.attempted,
            self.acknowledged,
            self.final_records,
            self.consumed,
            if self.is_valid() {
                "no anomalies".to_owned()
            } else {
                format!("{} ANOMALIES", self.anomalies())
            }
        )?;
        examples(
            f,
            "lost (acknowledged, not in the final read)",
            &self.lost,
            |r| r.to_string(),
        )?;
        examples(
            f,
            "duplicates (one value at two places)",
            &self.duplicates,
            |d| format!("{:?} at {:?}", d.value, d.positions),
        )?;
        examples(
            f,
            "inconsistent (one offset, different values)",
            &self.inconsistent,
            |i| {
                let values: Vec<String> = i
                    .values
                    .iter()
                    .map(|(s, v)| format!("{s}: {v:?}"))
                    .collect();
                format!("{}@{}: {}", i.partition, i.offset, values.join(", "))
            },
        )?;
        examples(
            f,
            "vanished (read by a consumer, not in the final log)",
            &self.vanished,
            |(c, r)| format!("consumer {c}: {r}"),
        )?;
        examples(f, "non-monotonic polls", &self.non_monotonic, |s| {
            format!(
                "consumer {} partition {}: {} then {}",
                s.consumer, s.partition, s.previous, s.next
            )
        })?;
        examples(f, "skipped records", &self.skipped, |s| {
            format!(
                "consumer {} partition {}: {} then {}",
                s.consumer, s.partition, s.previous, s.next
            )
        })?;
        examples(
            f,
            "unexpected values (never attempted)",
            &self.unexpected,
            |(s, r)| format!("{s}: {r}"),
        )?;
        write!(
            f,
            "  unacknowledged but present (allowed): {}",
            self.unacknowledged_present
        )
    }
}

/// Finds every anomaly in `history` (see the module docs).
pub fn check(history: &History) -> Report {
    let attempted: HashSet<&str> = history.attempted.iter().map(String::as_str).collect();
    let acknowledged: HashSet<&str> = history
        .acknowledged
        .iter()
        .map(|r| r.value.as_str())
        .collect();

    // Every observation, by place and by value.
    let mut by_position: BTreeMap<(u32, i64), Vec<(Source, &str)>> = BTreeMap::new();
    let mut by_value: HashMap<&str, Vec<(u32, i64)>> = HashMap::new();
    let sources = std::iter::once((Source::Ack, &history.acknowledged))
        .chain(
            history
                .consumed
                .iter()
                .enumerate()
                .map(|(n, reads)| (Source::Consumer(n), reads)),
        )
        .chain(std::iter::once((Source::Final, &history.final_read)));
    let mut unexpected = Vec::new();
    for (source, records) in sources {
        for record in records {
            let seen = by_position.entry(record.position()).or_default();
            if !seen.iter().any(|(_, v)| *v == record.value) {
                seen.push((source, record.value.as_str()));
            }
            let places = by_value.entry(record.value.as_str()).or_default();
            if !places.contains(&record.position()) {
                places.push(record.position());
            }
            if source != Source::Ack && !attempted.contains(record.value.as_str()) {
                unexpected.push((source, record.clone()));
            }
        }
    }

    let final_values: HashSet<&str> = history
        .final_read
        .iter()
        .map(|r| r.value.as_str())
        .collect();
    let lost: Vec<Record> = history
        .acknowledged
        .iter()
        .filter(|r| !final_values.contains(r.value.as_str()))
        .cloned()
        .collect();

    let mut duplicates: Vec<Duplicate> = by_value
        .into_iter()
        .filter(|(_, places)| places.len() > 1)
        .map(|(value, mut positions)| {
            positions.sort();
            Duplicate {
                value: value.to_owned(),
                positions,
            }
        })
        .collect();
    duplicates.sort_by(|a, b| a.positions.cmp(&b.positions));

    let inconsistent: Vec<Inconsistent> = by_position
        .into_iter()
        .filter(|(_, values)| values.len() > 1)
        .map(|((partition, offset), values)| Inconsistent {
            partition,
            offset,
            values: values.into_iter().map(|(s, v)| (s, v.to_owned())).collect(),
        })
        .collect();

    // The final log's offsets per partition, to tell vanished and skipped records.
    let mut final_offsets: HashMap<u32, Vec<i64>> = HashMap::new();
    for r in &history.final_read {
        final_offsets.entry(r.partition).or_default().push(r.offset);
    }
    for offsets in final_offsets.values_mut() {
        offsets.sort_unstable();
    }
    let holds = |partition: u32, offset: i64| {
        final_offsets
            .get(&partition)
            .is_some_and(|o| o.binary_search(&offset).is_ok())
    };
    let holds_between = |partition: u32, low: i64, high: i64| {
        final_offsets.get(&partition).is_some_and(|o| {
            let from = o.partition_point(|&x| x <= low);
            o.get(from).is_some_and(|&x| x < high)
        })
    };

    let mut vanished = Vec::new();
    let mut non_monotonic = Vec::new();
    let mut skipped = Vec::new();
    for (consumer, reads) in history.consumed.iter().enumerate() {
        let mut last: HashMap<u32, i64> = HashMap::new();
        for record in reads {
            if !holds(record.partition, record.offset) {
                vanished.push((consumer, record.clone()));
            }
            let previous = last.get(&record.partition).copied().unwrap_or(-1);
            let step = BadStep {
                consumer,
                partition: record.partition,
                previous,
                next: record.offset,
            };
            if record.offset <= previous {
                non_monotonic.push(step);
            } else if holds_between(record.partition, previous, record.offset) {
                skipped.push(step);
            }
            // Follow the consumer: after a jump back, what it reads again is checked
            // against where it jumped to (and, by value, against every other read).
            last.insert(record.partition, record.offset);
        }
    }

    let unacknowledged_present = final_values
        .iter()
        .filter(|v| attempted.contains(*v) && !acknowledged.contains(*v))
        .count();

    Report {
        attempted: history.attempted.len(),
        acknowledged: history.acknowledged.len(),
        consumed: history.consumed.iter().map(Vec::len).collect(),
        final_records: history.final_read.len(),
        lost,
        duplicates,
        inconsistent,
        vanished,
        non_monotonic,
        skipped,
        unexpected,
        unacknowledged_present,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(items: &[(u32, i64, &str)]) -> Vec<Record> {
        items
            .iter()
            .map(|&(p, o, v)| Record::new(p, o, v))
            .collect()
    }

    /// Three writes to partition 0 and one to partition 1, all acknowledged, read by two
    /// consumers and the final read exactly as written.
    fn clean() -> History {
        let log = records(&[(0, 0, "a"), (0, 1, "b"), (0, 2, "c"), (1, 0, "d")]);
        History {
            attempted: ["a", "b", "c", "d"].map(String::from).to_vec(),
            acknowledged: log.clone(),
            consumed: vec![
                log.clone(),
                records(&[(1, 0, "d"), (0, 0, "a"), (0, 1, "b")]),
            ],
            final_read: log,
        }
    }

    #[test]
    fn a_clean_history_has_no_anomalies() {
        let report = check(&clean());
        assert!(report.is_valid(), "{report}");
        assert_eq!(report.acknowledged, 4);
        assert_eq!(report.consumed, [4, 3]);
        assert_eq!(report.unacknowledged_present, 0);
    }

    #[test]
    fn an_acknowledged_write_missing_from_the_final_read_is_lost() {
        let mut h = clean();
        h.final_read.retain(|r| r.value != "c");
        h.consumed[0].retain(|r| r.value != "c");
        let report = check(&h);
        assert_eq!(report.lost, records(&[(0, 2, "c")]), "{report}");
        assert_eq!(report.anomalies(), 1, "{report}");
    }

    #[test]
    fn a_value_at_two_offsets_is_a_duplicate() {
        let mut h = clean();
        h.final_read.push(Record::new(0, 3, "a"));
        let report = check(&h);
        assert_eq!(
            report.duplicates,
            [Duplicate {
                value: "a".into(),
                positions: vec![(0, 0), (0, 3)]
            }],
            "{report}"
        );
        assert_eq!(report.anomalies(), 1, "{report}");
    }

    #[test]
    fn an_offset_read_with_two_values_is_inconsistent() {
        let mut h = clean();
        h.attempted.push("x".into());
        // Consumer 1 read "x" at 0@1, where everyone else saw "b".
        h.consumed[1][2] = Record::new(0, 1, "x");
        let report = check(&h);
        assert_eq!(report.inconsistent.len(), 1, "{report}");
        let i = &report.inconsistent[0];
        assert_eq!((i.partition, i.offset), (0, 1));
        assert_eq!(
            i.values,
            [
                (Source::Ack, "b".to_owned()),
                (Source::Consumer(1), "x".to_owned())
            ]
        );
        // "x" is also at no other place, so that is the only anomaly.
        assert_eq!(report.anomalies(), 1, "{report}");
    }

    #[test]
    fn an_acknowledgement_at_the_wrong_offset_is_inconsistent_and_a_duplicate() {
        let mut h = clean();
        // The broker answered 0@1 for "b", but the log holds it at 0@2 (and "c" at 0@1).
        h.final_read = records(&[(0, 0, "a"), (0, 1, "c"), (0, 2, "b"), (1, 0, "d")]);
        h.consumed = vec![];
        let report = check(&h);
        assert!(report.lost.is_empty(), "{report}");
        assert_eq!(report.inconsistent.len(), 2, "{report}");
        assert_eq!(report.duplicates.len(), 2, "{report}");
    }

    #[test]
    fn a_record_a_consumer_read_that_the_log_no_longer_has_vanished() {
        let mut h = clean();
        h.attempted.push("e".into());
        h.consumed[0].push(Record::new(0, 3, "e"));
        let report = check(&h);
        assert_eq!(report.vanished, [(0, Record::new(0, 3, "e"))], "{report}");
        assert_eq!(report.anomalies(), 1, "{report}");
    }

    #[test]
    fn a_poll_that_goes_back_is_non_monotonic() {
        let mut h = clean();
        h.consumed[1].push(Record::new(0, 0, "a"));
        let report = check(&h);
        assert_eq!(
            report.non_monotonic,
            [BadStep {
                consumer: 1,
                partition: 0,
                previous: 1,
                next: 0
            }],
            "{report}"
        );
        assert_eq!(report.anomalies(), 1, "{report}");
    }

    #[test]
    fn a_consumer_that_starts_over_is_one_jump_back() {
        let mut h = clean();
        // Consumer 0 reads partition 0 to the end, then again from the start.
        let again = records(&[(0, 0, "a"), (0, 1, "b"), (0, 2, "c")]);
        h.consumed[0].extend(again);
        let report = check(&h);
        assert_eq!(
            report.non_monotonic,
            [BadStep {
                consumer: 0,
                partition: 0,
                previous: 2,
                next: 0
            }],
            "{report}"
        );
        assert!(report.is_safe(), "{report}");
        assert!(!report.is_valid(), "{report}");
    }

    #[test]
    fn a_poll_that_jumps_over_a_record_skipped_it() {
        let mut h = clean();
        h.consumed[0].remove(1); // 0@0 then 0@2: 0@1 ("b") was jumped over
        let report = check(&h);
        assert_eq!(
            report.skipped,
            [BadStep {
                consumer: 0,
                partition: 0,
                previous: 0,
                next: 2
            }],
            "{report}"
        );
        assert_eq!(report.anomalies(), 1, "{report}");
    }

    #[test]
    fn a_value_nobody_wrote_is_unexpected() {
        let mut h = clean();
        h.final_read.push(Record::new(1, 1, "zzz"));
        let report = check(&h);
        assert_eq!(
            report.unexpected,
            [(Source::Final, Record::new(1, 1, "zzz"))],
            "{report}"
        );
        assert_eq!(report.anomalies(), 1, "{report}");
    }

    #[test]
    fn an_unacknowledged_write_in_the_log_is_allowed_and_counted() {
        let mut h = clean();
        h.attempted.push("e".into());
        h.attempted.push("f".into()); // failed and not written: nothing to say
        h.final_read.push(Record::new(1, 1, "e"));
        let report = check(&h);
        assert!(report.is_valid(), "{report}");
        assert_eq!(report.unacknowledged_present, 1);
    }

    #[test]
    fn the_report_names_each_anomaly() {
        let mut h = clean();
        h.final_read.retain(|r| r.value != "c");
        h.consumed.clear();
        let text = check(&h).to_string();
        assert!(text.contains("1 ANOMALIES"), "{text}");
        assert!(
            text.contains("lost (acknowledged, not in the final read): 1"),
            "{text}"
        );
        assert!(text.contains("0@2=\"c\""), "{text}");
    }
}
