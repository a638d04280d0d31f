//! Logging a broker the client cannot reach without burying the application's log: the
//! first failure of a streak is a WARN line at once, then at most one line per
//! [`OUTAGE_LOG_INTERVAL`] counting the failures since, and one INFO line when the broker
//! answers again. A producer retries a broker that is down every few milliseconds;
//! before, each retry was a WARN line (ten in the first seconds of one broker's SIGKILL).
//! The brokers log the peers they cannot reach the same way (weir-cluster's
//! `peer_log.rs`); the client keeps its own because it depends on no broker crate.

use std::collections::HashMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

use crate::routing::BrokerId;

/// Longest time between two lines about one broker's ongoing failures.
pub const OUTAGE_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// The failures to reach one broker since it last answered.
#[derive(Debug, Clone, Copy)]
struct Streak {
    since: Instant,
    failures: u64,
    /// Failures counted in the last line logged.
    logged_failures: u64,
    logged_at: Instant,
}

/// What happened to a failure: the line it was logged as, if any (for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Logged {
    Started,
    Ongoing,
    Counted,
}

/// The streaks of failed calls to each broker over one kind of traffic (`what`: "produce
/// stream", ...), owned by the one task that makes those calls.
#[derive(Debug)]
pub(crate) struct Outages {
    what: &'static str,
    streaks: HashMap<BrokerId, Streak>,
}

impl Outages {
    pub(crate) fn new(what: &'static str) -> Outages {
        Outages {
            what,
            streaks: HashMap::new(),
        }
    }

    /// A call to `broker` failed with `error`: logged if it starts a streak, or if the
    /// last line about this streak is [`OUTAGE_LOG_INTERVAL`] old.
    pub(crate) fn failed(&mut self, broker: BrokerId, error: &dyn Display) {
        self.failed_at(broker, error, Instant::now());
    }

    /// A call to `broker` was answered: logged if it ends a streak.
    pub(crate) fn answered(&mut self, broker: BrokerId) {
        self.answered_at(broker, Instant::now());
    }

    fn failed_at(&mut self, broker: BrokerId, error: &dyn Display, now: Instant) -> Logged {
        let Some(streak) = self.streaks.get_mut(&broker) else {
            self.streaks.insert(
                broker,
                Streak {
                    since: now,
                    failures: 1,
                    logged_failures: 1,
                    logged_at: now,
                },
            );
            tracing::warn!(broker, what = self.what, %error, "calls to the broker failing; retried, one line per streak");
            return Logged::Started;
        };
        streak.failures += 1;
        if now.duration_since(streak.logged_at) < OUTAGE_LOG_INTERVAL {
            return Logged::Counted;
        }
        tracing::warn!(
            broker,
            what = self.what,
            %error,
            failures = streak.failures,
            since_last_line = streak.failures - streak.logged_failures,
            unreachable_for_s = now.duration_since(streak.since).as_secs(),
            "calls to the broker still failing"
        );
        streak.logged_failures = streak.failures;
        streak.logged_at = now;
        Logged::Ongoing
    }

    fn answered_at(&mut self, broker: BrokerId, now: Instant) -> Option<u64> {
        let streak = self.streaks.remove(&broker)?;
        tracing::info!(
            broker,
            what = self.what,
            failures = streak.failures,
            unreachable_for_ms = now.duration_since(streak.since).as_millis() as u64,
            "broker answering again"
        );
        Some(streak.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_is_logged_when_it_starts_every_interval_while_it_lasts_and_when_it_ends() {
        let mut outages = Outages::new("produce stream");
        let start = Instant::now();
        let error = "connection refused";
        assert_eq!(outages.failed_at(2, &error, start), Logged::Started);
        for ms in 1..100 {
            let at = start + Duration::from_millis(ms * 10);
            assert_eq!(outages.failed_at(2, &error, at), Logged::Counted);
        }
        // Another broker's streak is its own.
        assert_eq!(outages.failed_at(3, &error, start), Logged::Started);
        let later = start + OUTAGE_LOG_INTERVAL;
        assert_eq!(outages.failed_at(2, &error, later), Logged::Ongoing);
        assert_eq!(
            outages.failed_at(2, &error, later + Duration::from_millis(1)),
            Logged::Counted
        );
        assert_eq!(outages.answered_at(2, later), Some(102));
        assert_eq!(
            outages.answered_at(2, later),
            None,
            "an answer without a streak logs nothing"
        );
        // The next failure starts a new streak.
        assert_eq!(outages.failed_at(2, &error, later), Logged::Started);
    }
}
