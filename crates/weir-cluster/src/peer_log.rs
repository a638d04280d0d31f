//! Logging a peer that cannot be reached without burying the log: the first failure of a
//! streak is logged at once, then at most one line per [`PEER_LOG_INTERVAL`] with how
//! many failures there were, and one line when the peer answers again. A cut-off voter
//! is retried every 100 ms; before, each retry was a WARN line (about 1,200 a minute per
//! peer), and the lines that mattered scrolled away.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::partition::BrokerId;

/// Longest time between two lines about one peer's ongoing failures.
pub const PEER_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// The failures to reach one peer since it last answered.
#[derive(Debug, Clone, Copy)]
struct Streak {
    since: Instant,
    failures: u64,
    /// Failures counted in the last line logged.
    logged_failures: u64,
    logged_at: Instant,
}

/// The streaks of failures to reach each peer over one kind of traffic (`what`: "quorum
/// RPCs", "replication fetch sessions", ...).
#[derive(Debug)]
pub struct PeerLog {
    what: &'static str,
    streaks: Mutex<BTreeMap<BrokerId, Streak>>,
}

impl PeerLog {
    pub fn new(what: &'static str) -> PeerLog {
        PeerLog {
            what,
            streaks: Mutex::new(BTreeMap::new()),
        }
    }

    /// A call to `peer` failed with `error`: logged if it starts a streak, or if the last
    /// line about this streak is [`PEER_LOG_INTERVAL`] old.
    pub fn failed(&self, peer: BrokerId, error: &dyn Display) {
        self.failed_at(peer, error, Instant::now());
    }

    /// A call to `peer` was answered: logged if it ends a streak.
    pub fn answered(&self, peer: BrokerId) {
        self.answered_at(peer, Instant::now());
    }

    fn failed_at(&self, peer: BrokerId, error: &dyn Display, now: Instant) {
        let mut streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
        let Some(streak) = streaks.get_mut(&peer) else {
            streaks.insert(
                peer,
                Streak {
                    since: now,
                    failures: 1,
                    logged_failures: 1,
                    logged_at: now,
                },
            );
            tracing::warn!(peer, what = self.what, %error, "peer unreachable");
            return;
        };
        streak.failures += 1;
        if now.duration_since(streak.logged_at) >= PEER_LOG_INTERVAL {
            tracing::warn!(
                peer,
                what = self.what,
                %error,
                failures = streak.failures,
                since_last_line = streak.failures - streak.logged_failures,
                unreachable_for_s = now.duration_since(streak.since).as_secs(),
                "peer still unreachable"
            );
            streak.logged_failures = streak.failures;
            streak.logged_at = now;
        }
    }

    fn answered_at(&self, peer: BrokerId, now: Instant) {
        let mut streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(streak) = streaks.remove(&peer) {
            tracing::info!(
                peer,
                what = self.what,
                failures = streak.failures,
                unreachable_for_ms = now.duration_since(streak.since).as_millis() as u64,
                "peer reachable again"
            );
        }
    }

    /// The failures of the current streak to `peer` (0: none).
    #[cfg(test)]
    fn failures(&self, peer: BrokerId) -> u64 {
        let streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
        streaks.get(&peer).map_or(0, |s| s.failures)
    }

    /// Failures counted in the last line logged about `peer`.
    #[cfg(test)]
    fn logged(&self, peer: BrokerId) -> u64 {
        let streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
        streaks.get(&peer).map_or(0, |s| s.logged_failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_is_logged_when_it_starts_every_interval_while_it_lasts_and_when_it_ends() {
        let log = PeerLog::new("quorum RPCs");
        let start = Instant::now();
        // Ten failures a second for a minute: the first and one every 30 s are logged.
        let mut lines = 0;
        for tick in 0..600u64 {
            let before = log.logged(2);
            log.failed_at(
                2,
                &"connection refused",
                start + Duration::from_millis(tick * 100),
            );
            if log.logged(2) != before {
                lines += 1;
            }
        }
        assert_eq!(log.failures(2), 600);
        assert_eq!(lines, 2, "the first failure, and one 30 s later");
        // Another peer's streak is its own.
        log.failed_at(3, &"timed out", start);
        assert_eq!(log.failures(3), 1);
        log.answered_at(2, start + Duration::from_secs(61));
        assert_eq!(log.failures(2), 0, "the streak ended");
        log.answered_at(2, start + Duration::from_secs(62));
        log.failed_at(2, &"connection refused", start + Duration::from_secs(63));
        assert_eq!(log.logged(2), 1, "a new streak is logged at once");
    }
}
