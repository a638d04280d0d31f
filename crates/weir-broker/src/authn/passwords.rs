//! Password checks run so that they cannot be a CPU denial of service: a check answered
//! by the cache ([`PasswordCache`]: recent successes and failures) costs an HMAC; one
//! that needs the PBKDF2 (milliseconds at 8192 iterations, on purpose) runs on the
//! blocking pool, never on a runtime thread, at most [`MAX_CONCURRENT_PASSWORD_CHECKS`]
//! at once. A check that cannot start within [`PASSWORD_CHECK_WAIT`], or finds
//! [`MAX_WAITING_PASSWORD_CHECKS`] waiting already, is [`PasswordCheck::Busy`]
//! (retriable). (A refusal is held back by the caller, `authn::Authentication`, as
//! every refusal is.)
//!
//! A client sending wrong passwords in a loop therefore holds at most
//! [`MAX_CONCURRENT_PASSWORD_CHECKS`] blocking threads, one PBKDF2 per distinct
//! password per [`weir_security::sasl::FAILED_PASSWORD_TTL`], while clients whose
//! passwords are cached (and every client authenticated otherwise) go on at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use weir_security::sasl::{Cached, PasswordCache, PasswordCheck};
use weir_security::scram::ScramCredential;

/// Most PBKDF2 password checks running at once on this broker (on the blocking pool).
/// Two: a login storm after a restart proceeds at two cores' worth, while a flood of
/// wrong passwords leaves the runtime threads (and every other core) to the clients
/// already in. Each check of a user with both SCRAM credentials may run two PBKDF2s.
pub const MAX_CONCURRENT_PASSWORD_CHECKS: usize = 2;

/// Most password checks waiting for a turn; one more is [`PasswordCheck::Busy`] at once.
pub const MAX_WAITING_PASSWORD_CHECKS: usize = 256;

/// How long a password check waits for a turn before it is [`PasswordCheck::Busy`].
pub const PASSWORD_CHECK_WAIT: Duration = Duration::from_secs(2);

/// The password checks of one broker: the cache and the cap on PBKDF2s at once.
#[derive(Debug)]
pub struct PasswordChecks {
    cache: Arc<PasswordCache>,
    turns: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Default for PasswordChecks {
    fn default() -> Self {
        PasswordChecks::new(MAX_CONCURRENT_PASSWORD_CHECKS)
    }
}

/// Gives back a waiter's place when the wait ends, however it ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PasswordChecks {
    pub(crate) fn new(concurrent: usize) -> PasswordChecks {
        PasswordChecks {
            cache: Arc::new(PasswordCache::new()),
            turns: Arc::new(Semaphore::new(concurrent.max(1))),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The cache of checks made.
    pub fn cache(&self) -> &PasswordCache {
        &self.cache
    }

    /// Whether `password` is `user`'s by any of `credentials` (the user's, looked up by
    /// the caller; none for an unknown user). See the module docs.
    pub async fn check(
        &self,
        user: &str,
        credentials: Vec<ScramCredential>,
        password: &str,
    ) -> PasswordCheck {
        let mut unknown = Vec::new();
        for credential in credentials {
            match self.cache.lookup(user, &credential, password) {
                Cached::Verified => return PasswordCheck::Verified,
                Cached::Failed => {}
                Cached::Unknown => unknown.push(credential),
            }
        }
        if !unknown.is_empty() {
            match self.run(user, unknown, password).await {
                Some(true) => return PasswordCheck::Verified,
                Some(false) => {}
                None => return PasswordCheck::Busy,
            }
        }
        PasswordCheck::Refused
    }

    /// Runs the PBKDF2 of each credential on the blocking pool once a turn is free,
    /// recording the outcomes; `None` if no turn came.
    async fn run(
        &self,
        user: &str,
        credentials: Vec<ScramCredential>,
        password: &str,
    ) -> Option<bool> {
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING_PASSWORD_CHECKS {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let waiting = Waiting(&self.waiting);
        let turn = tokio::time::timeout(PASSWORD_CHECK_WAIT, self.turns.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        drop(waiting);
        let cache = self.cache.clone();
        let (user, password) = (user.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            for credential in credentials {
                let ok = credential.verify_password(&password);
                cache.record(&user, &credential, &password, ok);
                if ok {
                    return true;
                }
            }
            false
        })
        .await
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_security::scram::MIN_ITERATIONS;
    use weir_security::scram::ScramMechanism;

    fn credential(password: &str) -> ScramCredential {
        ScramCredential::new(ScramMechanism::Sha256, password, MIN_ITERATIONS).unwrap()
    }

    #[tokio::test]
    async fn checks_verify_refuse_and_remember() {
        let checks = PasswordChecks::new(1);
        let alice = vec![
            credential("pw"),
            ScramCredential::new(ScramMechanism::Sha512, "pw", MIN_ITERATIONS).unwrap(),
        ];
        assert_eq!(
            checks.check("alice", alice.clone(), "pw").await,
            PasswordCheck::Verified
        );
        assert_eq!(checks.cache().len(), 1, "the first credential verified");
        assert_eq!(
            checks.check("alice", alice.clone(), "bad").await,
            PasswordCheck::Refused
        );
        assert_eq!(checks.cache().failed_len(), 2, "both credentials failed");
        // An unknown user: refused without a PBKDF2 (nothing to remember).
        assert_eq!(
            checks.check("nobody", Vec::new(), "pw").await,
            PasswordCheck::Refused
        );
        assert_eq!(checks.cache().failed_len(), 2);
    }

    #[tokio::test]
    async fn cached_checks_need_no_turn_and_a_full_queue_is_busy() {
        let checks = PasswordChecks::new(1);
        let alice = vec![credential("pw")];
        assert_eq!(
            checks.check("alice", alice.clone(), "pw").await,
            PasswordCheck::Verified
        );
        assert_eq!(
            checks.check("alice", alice.clone(), "bad").await,
            PasswordCheck::Refused
        );
        // Every turn taken: cached outcomes still answer at once.
        let _held = checks.turns.clone().acquire_owned().await.unwrap();
        assert_eq!(
            checks.check("alice", alice.clone(), "pw").await,
            PasswordCheck::Verified
        );
        assert_eq!(
            checks.check("alice", alice.clone(), "bad").await,
            PasswordCheck::Refused
        );
        // A check that needs a PBKDF2 finds the queue full.
        checks
            .waiting
            .store(MAX_WAITING_PASSWORD_CHECKS, Ordering::Relaxed);
        assert_eq!(
            checks.check("alice", alice.clone(), "other").await,
            PasswordCheck::Busy
        );
        assert_eq!(
            checks.waiting.load(Ordering::Relaxed),
            MAX_WAITING_PASSWORD_CHECKS,
            "a refused waiter gives its place back"
        );
        checks.waiting.store(0, Ordering::Relaxed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_waits_too_long_for_a_turn_is_busy() {
        let checks = PasswordChecks::new(1);
        let _held = checks.turns.clone().acquire_owned().await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(
            checks.check("alice", vec![credential("pw")], "pw").await,
            PasswordCheck::Busy
        );
        assert!(started.elapsed() >= PASSWORD_CHECK_WAIT);
        assert_eq!(checks.waiting.load(Ordering::Relaxed), 0);
    }
}
