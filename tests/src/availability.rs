//! How long writers waited during a fault, from the times the workload's writes were
//! acknowledged: per partition, the longest gap between successive acknowledgements
//! around and inside a window (the fault, its healing and the recovery). The workload
//! writes every partition at a steady rate, so outside faults a gap is a few
//! milliseconds; a gap of seconds is time the partition took no writes (a leader to
//! elect, a client to notice and resend).
//!
//! Pure: no I/O, no clock.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// The longest wait for an acknowledgement in one partition during a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Partition index.
    pub partition: u32,
    /// The longest time between two successive acknowledgements (or between the last one
    /// and the end of the window, if none followed).
    pub longest: Duration,
    /// The acknowledgement that started it (the window's start if the partition had none
    /// before).
    pub after: Instant,
    /// No acknowledgement followed before the end of the window: the partition was still
    /// not taking writes when it ended.
    pub open: bool,
}

/// Per partition `0..partitions`, the longest gap between successive acknowledgements
/// that overlaps `from..to`. `acks` holds `(partition, acknowledged at)` in any order.
/// The gap that spans `from` counts whole (from the last acknowledgement before it), and
/// so does the one that spans `to` (up to the first acknowledgement after it).
pub fn longest_gaps(
    acks: &[(u32, Instant)],
    partitions: u32,
    from: Instant,
    to: Instant,
) -> Vec<Gap> {
    times_by_partition(acks, partitions)
        .into_iter()
        .map(|(partition, times)| {
            let mut gap = Gap {
                partition,
                longest: Duration::ZERO,
                after: gap_start(&times, from),
                open: false,
            };
            // The earliest of equal inner gaps, but a gap still open at `to` over any.
            each_gap(partition, &times, from, to, |s| {
                if s.length() > gap.longest || (s.open && s.length() >= gap.longest) {
                    gap = Gap {
                        partition,
                        longest: s.length(),
                        after: s.from,
                        open: s.open,
                    };
                }
            });
            gap
        })
        .collect()
}

/// The acknowledgement the first gap overlapping `from..` starts at: the last one at or
/// before `from`, or `from` itself if there is none.
fn gap_start(times: &[Instant], from: Instant) -> Instant {
    match times.partition_point(|&t| t <= from) {
        0 => from,
        first => times[first - 1],
    }
}

/// Calls `f` with every gap between successive acknowledgements in `times` (sorted) that
/// ends after `from` and begins before `to`: the first from [`gap_start`], the last up to
/// the first acknowledgement at or after `to`, or, if none came, up to `to` itself, open.
fn each_gap(
    partition: u32,
    times: &[Instant],
    from: Instant,
    to: Instant,
    mut f: impl FnMut(Silence),
) {
    let mut previous = gap_start(times, from);
    for &at in &times[times.partition_point(|&t| t <= from)..] {
        f(Silence {
            partition,
            from: previous,
            to: at,
            open: false,
        });
        if at >= to {
            return;
        }
        previous = at;
    }
    if to > previous {
        f(Silence {
            partition,
            from: previous,
            to,
            open: true,
        });
    }
}

/// The acknowledgement times of each partition `0..partitions`, in order.
fn times_by_partition(acks: &[(u32, Instant)], partitions: u32) -> BTreeMap<u32, Vec<Instant>> {
    let mut by_partition: BTreeMap<u32, Vec<Instant>> =
        (0..partitions).map(|p| (p, Vec::new())).collect();
    for &(partition, at) in acks {
        if let Some(times) = by_partition.get_mut(&partition) {
            times.push(at);
        }
    }
    for times in by_partition.values_mut() {
        times.sort_unstable();
    }
    by_partition
}

/// A stretch of one partition without acknowledgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silence {
    /// Partition index.
    pub partition: u32,
    /// The acknowledgement it began after (or the window's start, if none came before).
    pub from: Instant,
    /// The acknowledgement that ended it (or the window's end, if none came: then open).
    pub to: Instant,
    /// No acknowledgement ended it before the window's end.
    pub open: bool,
}

impl Silence {
    /// How long it lasted.
    pub fn length(&self) -> Duration {
        self.to - self.from
    }
}

/// Every silence of at least `min` per partition `0..partitions` that ends after `from`
/// and begins before `to`: the one spanning `from` counts from the acknowledgement before
/// it, one still going at `to` ends there, open. `acks` as for [`longest_gaps`].
pub fn silences(
    acks: &[(u32, Instant)],
    partitions: u32,
    from: Instant,
    to: Instant,
    min: Duration,
) -> Vec<Silence> {
    let mut found = Vec::new();
    for (partition, times) in times_by_partition(acks, partitions) {
        each_gap(partition, &times, from, to, |s| {
            if s.length() >= min {
                found.push(s);
            }
        });
    }
    found
}

/// The fault a silence is laid to, by index into `starts` (the faults' start times, in
/// order), with how many faults started during it: the first fault that started during
/// it (the partition took writes until just before), or, if none did, the last one that
/// started before it (the silence came with its healing or after). `None` before the
/// first fault.
pub fn blame(silence: &Silence, starts: &[Instant]) -> Option<(usize, usize)> {
    let first_inside = starts.partition_point(|&s| s <= silence.from);
    let inside = starts[first_inside..]
        .iter()
        .take_while(|&&s| s < silence.to)
        .count();
    if inside > 0 {
        Some((first_inside, inside))
    } else {
        first_inside.checked_sub(1).map(|i| (i, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    /// Acknowledgements of `partition` every 10 ms over `from_ms..to_ms`.
    fn steady(start: Instant, partition: u32, from_ms: u64, to_ms: u64) -> Vec<(u32, Instant)> {
        (from_ms..to_ms)
            .step_by(10)
            .map(|ms| (partition, at(start, ms)))
            .collect()
    }

    #[test]
    fn a_hole_inside_the_window_is_its_longest_gap() {
        let t = Instant::now();
        let mut acks = steady(t, 0, 0, 1000);
        acks.extend(steady(t, 0, 3000, 4000));
        acks.extend(steady(t, 1, 0, 4000));
        let gaps = longest_gaps(&acks, 2, at(t, 500), at(t, 3500));
        assert_eq!(gaps[0].longest, Duration::from_millis(2010));
        assert_eq!(gaps[0].after, at(t, 990));
        assert!(!gaps[0].open);
        assert_eq!(gaps[1].longest, Duration::from_millis(10));
    }

    #[test]
    fn a_gap_spanning_the_window_start_counts_from_the_last_ack_before_it() {
        let t = Instant::now();
        let mut acks = steady(t, 0, 0, 1000);
        acks.extend(steady(t, 0, 2000, 3000));
        let gaps = longest_gaps(&acks, 1, at(t, 1500), at(t, 2500));
        assert_eq!(gaps[0].longest, Duration::from_millis(1010));
        assert_eq!(gaps[0].after, at(t, 990));
    }

    #[test]
    fn a_gap_spanning_the_window_end_counts_up_to_the_first_ack_after_it() {
        let t = Instant::now();
        let mut acks = steady(t, 0, 0, 1000);
        acks.extend(steady(t, 0, 3000, 4000));
        let gaps = longest_gaps(&acks, 1, at(t, 100), at(t, 2000));
        assert_eq!(gaps[0].longest, Duration::from_millis(2010));
        assert!(!gaps[0].open);
    }

    #[test]
    fn a_partition_still_silent_at_the_window_end_has_an_open_gap() {
        let t = Instant::now();
        let acks = steady(t, 0, 0, 1000);
        let gaps = longest_gaps(&acks, 2, at(t, 500), at(t, 5000));
        assert_eq!(gaps[0].longest, Duration::from_millis(4010));
        assert!(gaps[0].open);
        // Never acknowledged at all: the whole window.
        assert_eq!(gaps[1].longest, Duration::from_millis(4500));
        assert_eq!(gaps[1].after, at(t, 500));
        assert!(gaps[1].open);
    }

    #[test]
    fn acknowledgements_of_other_partitions_and_out_of_order_are_handled() {
        let t = Instant::now();
        let mut acks = steady(t, 0, 0, 2000);
        acks.push((7, at(t, 1000)));
        acks.reverse();
        let gaps = longest_gaps(&acks, 1, at(t, 0), at(t, 1990));
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].longest, Duration::from_millis(10));
    }

    #[test]
    fn silences_are_every_stretch_without_acknowledgements_of_at_least_min() {
        let t = Instant::now();
        let mut acks = steady(t, 0, 0, 1000);
        acks.extend(steady(t, 0, 1500, 2000));
        acks.extend(steady(t, 0, 4000, 4500));
        acks.extend(steady(t, 1, 0, 3000));
        let found = silences(&acks, 2, at(t, 0), at(t, 5000), Duration::from_millis(400));
        let mut found: Vec<_> = found
            .iter()
            .map(|s| (s.partition, s.length().as_millis(), s.open))
            .collect();
        found.sort_unstable();
        assert_eq!(
            found,
            vec![
                (0, 510, false),
                (0, 510, true),
                (0, 2010, false),
                (1, 2010, true)
            ]
        );
    }

    #[test]
    fn a_silence_is_laid_to_the_first_fault_that_began_during_it() {
        let t = Instant::now();
        let silence = |from, to| Silence {
            partition: 0,
            from: at(t, from),
            to: at(t, to),
            open: false,
        };
        let starts = [at(t, 1000), at(t, 4000), at(t, 5000), at(t, 9000)];
        // Writes stopped just before the second fault, and two more began meanwhile.
        assert_eq!(blame(&silence(3990, 8000), &starts), Some((1, 2)));
        // None began during it: the one before (its healing, or what followed).
        assert_eq!(blame(&silence(2000, 3000), &starts), Some((0, 0)));
        // Before any fault.
        assert_eq!(blame(&silence(100, 900), &starts), None);
        assert_eq!(blame(&silence(100, 1500), &starts), Some((0, 1)));
    }
}
