//! Logging a broker the client cannot reach without burying the application's log: the
//! first failure of a streak is a WARN line at once, then at most one line per
//! [`OUTAGE_LOG_INTERVAL`] counting the failures since, and one INFO line when the broker
//! answers again. A producer retries a broker that is down every few milliseconds;
//! before, each retry was a WARN line (ten in the first seconds of one broker's SIGKILL).
//! The brokers log the peers they cannot reach the same way (weir-cluster's
//! `peer_log.rs`); the client keeps its own because it depends on no broker crate.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{LazyLock, Mutex};
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

/// Bootstrap addresses that did not answer, across every connection this process makes:
/// when each was last logged, and the failures since. Reconnecting clients (a group
/// member finding its coordinator again, a consumer refreshing metadata) go through the
/// bootstrap list each time; a dead first address was a WARN line per attempt, several a
/// second in the soak's logs.
static UNANSWERED: LazyLock<Mutex<HashMap<String, (Instant, u64)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Bootstrap address `address` did not answer: `Some(failures)` (this one included, since
/// the last line about it) when it is to be logged now, the first time or once
/// [`OUTAGE_LOG_INTERVAL`] has passed since the last line; `None` to count it only.
pub(crate) fn bootstrap_unanswered(address: &str) -> Option<u64> {
    bootstrap_unanswered_at(address, Instant::now())
}

fn bootstrap_unanswered_at(address: &str, now: Instant) -> Option<u64> {
    let mut seen = UNANSWERED.lock().unwrap_or_else(|p| p.into_inner());
    match seen.get_mut(address) {
        Some((logged_at, failures)) if now.duration_since(*logged_at) < OUTAGE_LOG_INTERVAL => {
            *failures += 1;
            None
        }
        Some((logged_at, failures)) => {
            let count = *failures + 1;
            *logged_at = now;
            *failures = 0;
            Some(count)
        }
        None => {
            // Bounded: one entry per bootstrap address a process was ever given.
            seen.insert(address.to_owned(), (now, 0));
            Some(1)
        }
    }
}

/// Bootstrap address `address` answered: its next failure is logged at once.
pub(crate) fn bootstrap_answered(address: &str) {
    UNANSWERED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(address);
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

    #[test]
    fn an_unanswered_bootstrap_address_is_logged_once_per_interval_with_a_count() {
        let address = "192.0.2.1:9292 (outage test)";
        let start = Instant::now();
        assert_eq!(bootstrap_unanswered_at(address, start), Some(1));
        for i in 1..=5 {
            let at = start + Duration::from_millis(100 * i);
            assert_eq!(bootstrap_unanswered_at(address, at), None, "counted only");
        }
        let later = start + OUTAGE_LOG_INTERVAL + Duration::from_secs(1);
        assert_eq!(
            bootstrap_unanswered_at(address, later),
            Some(6),
            "five counted, and this one"
        );
        bootstrap_answered(address);
        assert_eq!(
            bootstrap_unanswered_at(address, later),
            Some(1),
            "a new streak"
        );
    }
}
