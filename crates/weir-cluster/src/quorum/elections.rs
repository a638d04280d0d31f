//! What a voter remembers of elections so that its broker's lease can outlast a
//! controller failover (docs/replication.md § Stepping aside when cut off).
//!
//! A broker's leaders step aside once a session timeout has passed since the last
//! heartbeat the controller answered was sent. When the active controller dies, the next
//! one is elected and activated 1.2-1.6 s later; with heartbeats every 250 ms (as they
//! were then) and a 2 s session, a slower election made healthy brokers step aside
//! because another node failed. A voter's vote closes that gap safely:
//!
//! - When this voter grants candidate C its vote, it notes the time (after granting);
//!   C notes when the grant reached it, which is later, as when it last heard from this
//!   voter, and once active counts this broker's session from no earlier than that.
//! - When this voter campaigns and wins, it notes when it sent the first request that was
//!   granted; each voter that granted it noted the request's arrival, later, as heard.
//! - Once this voter sees the leader it voted for (or itself) elected while its lease
//!   still runs, a quorum has left every older term, so no older controller can commit a
//!   fence any more, and none could before (a fence needs the lease to have run out
//!   first). The new controller cannot fence before a session after the time noted
//!   above: the lease may count from it ([`Quorum::elected_at`](super::Quorum::elected_at)).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::partition::BrokerId;

/// When each other voter last reached this one: its request arrived (as a leader's
/// replication or heartbeat, or a candidate's vote request) or its granted vote came
/// back. A new active controller counts broker sessions from it.
pub(crate) type Heard = Arc<Mutex<BTreeMap<BrokerId, Instant>>>;

/// Records `at` as the last time `node` was heard from, unless a later one is noted.
pub(crate) fn note_heard(heard: &Heard, node: BrokerId, at: Instant) {
    let mut heard = heard.lock().unwrap_or_else(|p| p.into_inner());
    let last = heard.entry(node).or_insert(at);
    *last = (*last).max(at);
}

/// This voter's part in the latest elections it took part in.
#[derive(Debug, Default)]
pub(crate) struct Ballots {
    /// The last vote it granted: the term, the candidate, and when (just after granting).
    granted: Option<(u64, BrokerId, Instant)>,
    /// Its own latest campaign: the term, and when it sent the earliest vote request that
    /// was granted.
    campaign: Option<(u64, Instant)>,
}

pub(crate) type SharedBallots = Arc<Mutex<Ballots>>;

impl Ballots {
    /// This voter granted `candidate` its vote for `term`; called after the grant.
    pub(crate) fn granted(&mut self, term: u64, candidate: BrokerId) {
        self.granted = Some((term, candidate, Instant::now()));
    }

    /// A vote request this voter sent at `sent`, campaigning for `term`, was granted.
    pub(crate) fn request_granted(&mut self, term: u64, sent: Instant) {
        self.campaign = match self.campaign {
            Some((t, earliest)) if t == term => Some((t, earliest.min(sent))),
            _ => Some((term, sent)),
        };
    }

    /// When the election of `leader` for `term` started to vouch for this voter (see the
    /// module docs); `None` if this voter neither voted for it nor is it.
    pub(crate) fn vouched(&self, me: BrokerId, term: u64, leader: BrokerId) -> Option<Instant> {
        if leader == me {
            return self.campaign.filter(|(t, _)| *t == term).map(|(_, at)| at);
        }
        self.granted
            .filter(|(t, candidate, _)| *t == term && *candidate == leader)
            .map(|(_, _, at)| at)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_vote_vouches_only_for_the_candidate_and_term_it_went_to() {
        let mut ballots = Ballots::default();
        assert_eq!(ballots.vouched(1, 3, 2), None);
        ballots.granted(3, 2);
        assert!(ballots.vouched(1, 3, 2).is_some());
        assert_eq!(ballots.vouched(1, 3, 3), None, "another leader");
        assert_eq!(ballots.vouched(1, 4, 2), None, "a later term");
    }

    #[test]
    fn a_campaign_counts_from_its_earliest_granted_request() {
        let mut ballots = Ballots::default();
        let first = Instant::now();
        let later = first + Duration::from_millis(30);
        ballots.request_granted(5, later);
        ballots.request_granted(5, first);
        assert_eq!(ballots.vouched(1, 5, 1), Some(first));
        ballots.request_granted(6, later);
        assert_eq!(
            ballots.vouched(1, 6, 1),
            Some(later),
            "a new campaign starts over"
        );
        assert_eq!(ballots.vouched(1, 5, 1), None);
    }

    #[test]
    fn heard_keeps_the_latest_time() {
        let heard = Heard::default();
        let early = Instant::now();
        let late = early + Duration::from_millis(5);
        note_heard(&heard, 2, late);
        note_heard(&heard, 2, early);
        assert_eq!(heard.lock().unwrap().get(&2), Some(&late));
    }
}
