//! Share sessions (KIP-932): the partitions a share consumer fetches from this broker,
//! kept between its ShareFetch requests so that each request names only what changed.
//!
//! A session is keyed by group and member. Epoch 0 opens one (replacing any the member
//! had), each later request carries the next epoch (1, 2, ... wrapping back to 1), and
//! epoch -1 closes it. A request whose epoch is not the next one is refused with
//! INVALID_SHARE_SESSION_EPOCH; one for a member without a session with
//! SHARE_SESSION_NOT_FOUND, and the client opens a new one. Sessions are per listener and
//! in memory: a restarted broker knows none, and its clients open new ones.
//!
//! The table takes the time as an argument; it reads no clock.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;

/// Most share sessions one listener keeps (Kafka's `group.share.max.share.sessions`
/// default is 2,000 per broker).
pub const MAX_SHARE_SESSIONS: usize = 10_000;
/// Most partitions one session may fetch from.
pub const MAX_SHARE_SESSION_PARTITIONS: usize = 10_000;
/// A session unused this long is dropped when room is needed (a member that has not
/// fetched for a share-group session timeout has left its group).
pub const SHARE_SESSION_IDLE: Duration = Duration::from_secs(45);

/// The epoch that opens a session.
pub const OPEN_EPOCH: i32 = 0;
/// The epoch that closes a session.
pub const CLOSE_EPOCH: i32 = -1;

/// A partition as a session names it: topic name and partition number.
pub type SessionPartition = (String, u32);

#[derive(Debug)]
struct Session {
    /// The epoch the next request must carry.
    next_epoch: i32,
    partitions: BTreeSet<SessionPartition>,
    last_used: Instant,
}

/// Why a request's session epoch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionError {
    pub code: ResponseError,
    pub message: String,
}

/// The share sessions of one listener.
#[derive(Debug, Default)]
pub struct ShareSessions {
    sessions: Mutex<HashMap<(String, String), Session>>,
}

impl ShareSessions {
    /// Applies one request's session part at `now`: opens, continues or closes the
    /// member's session, adds `added` and removes `forgotten`. Answers the partitions the
    /// request fetches from (none when it closes the session).
    pub fn update(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
        added: impl IntoIterator<Item = SessionPartition>,
        forgotten: impl IntoIterator<Item = SessionPartition>,
        now: Instant,
    ) -> Result<BTreeSet<SessionPartition>, SessionError> {
        let key = (group_id.to_string(), member_id.to_string());
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match epoch {
            CLOSE_EPOCH => {
                sessions.remove(&key);
                return Ok(BTreeSet::new());
            }
            OPEN_EPOCH => {
                if !sessions.contains_key(&key) && sessions.len() >= MAX_SHARE_SESSIONS {
                    sessions.retain(|_, s| now.duration_since(s.last_used) < SHARE_SESSION_IDLE);
                    if sessions.len() >= MAX_SHARE_SESSIONS {
                        return Err(SessionError {
                            code: ResponseError::ShareSessionLimitReached,
                            message: format!(
                                "this listener holds {MAX_SHARE_SESSIONS} share sessions, its limit"
                            ),
                        });
                    }
                }
                sessions.insert(
                    key.clone(),
                    Session {
                        next_epoch: 1,
                        partitions: BTreeSet::new(),
                        last_used: now,
                    },
                );
            }
            _ => {}
        }
        let Some(session) = sessions.get_mut(&key) else {
            return Err(SessionError {
                code: ResponseError::ShareSessionNotFound,
                message: format!(
                    "member {member_id:?} of share group {group_id:?} has no share session on this broker; open one with epoch 0"
                ),
            });
        };
        if epoch != OPEN_EPOCH && epoch != session.next_epoch {
            return Err(SessionError {
                code: ResponseError::InvalidShareSessionEpoch,
                message: format!(
                    "share session epoch {epoch} is not the next one ({})",
                    session.next_epoch
                ),
            });
        }
        let mut partitions = session.partitions.clone();
        partitions.extend(added);
        for p in forgotten {
            partitions.remove(&p);
        }
        if partitions.len() > MAX_SHARE_SESSION_PARTITIONS {
            return Err(SessionError {
                code: ResponseError::InvalidRequest,
                message: format!(
                    "a share session fetches from at most {MAX_SHARE_SESSION_PARTITIONS} partitions"
                ),
            });
        }
        if epoch != OPEN_EPOCH {
            session.next_epoch = session.next_epoch.checked_add(1).unwrap_or(1);
        }
        session.partitions = partitions.clone();
        session.last_used = now;
        Ok(partitions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(topic: &str, partition: u32) -> SessionPartition {
        (topic.to_string(), partition)
    }

    #[test]
    fn a_session_opens_grows_shrinks_and_closes() {
        let s = ShareSessions::default();
        let t = Instant::now();
        let opened = s
            .update("g", "m", 0, [p("a", 0), p("a", 1)], [], t)
            .unwrap();
        assert_eq!(opened, BTreeSet::from([p("a", 0), p("a", 1)]));
        // The next request names only what changed.
        let next = s.update("g", "m", 1, [p("b", 0)], [p("a", 0)], t).unwrap();
        assert_eq!(next, BTreeSet::from([p("a", 1), p("b", 0)]));
        assert_eq!(s.update("g", "m", 2, [], [], t).unwrap(), next);
        assert!(s.update("g", "m", -1, [], [], t).unwrap().is_empty());
        let gone = s.update("g", "m", 3, [], [], t).unwrap_err();
        assert_eq!(gone.code, ResponseError::ShareSessionNotFound);
    }

    #[test]
    fn an_epoch_out_of_turn_is_refused_and_changes_nothing() {
        let s = ShareSessions::default();
        let t = Instant::now();
        s.update("g", "m", 0, [p("a", 0)], [], t).unwrap();
        let err = s.update("g", "m", 5, [p("b", 0)], [], t).unwrap_err();
        assert_eq!(err.code, ResponseError::InvalidShareSessionEpoch);
        assert_eq!(
            s.update("g", "m", 1, [], [], t).unwrap(),
            BTreeSet::from([p("a", 0)])
        );
        // Reopening starts again from epoch 1.
        s.update("g", "m", 0, [p("c", 0)], [], t).unwrap();
        assert_eq!(
            s.update("g", "m", 1, [], [], t).unwrap(),
            BTreeSet::from([p("c", 0)])
        );
    }

    #[test]
    fn sessions_are_per_member() {
        let s = ShareSessions::default();
        let t = Instant::now();
        s.update("g", "m1", 0, [p("a", 0)], [], t).unwrap();
        let err = s.update("g", "m2", 1, [], [], t).unwrap_err();
        assert_eq!(err.code, ResponseError::ShareSessionNotFound);
    }
}
