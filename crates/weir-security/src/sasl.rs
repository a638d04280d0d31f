//! What every password-based authentication shares: the error of a SASL exchange
//! ([`SaslError`]), the limits checked before a message is parsed, PLAIN messages
//! (RFC 4616), HTTP `Basic` credentials (RFC 7617, also what gRPC clients send as call
//! credentials), and [`PasswordCache`], the cache that spares a listener the PBKDF2
//! of a password it checked already, whether it verified or not.
//!
//! Nothing here does I/O or knows a protocol's framing: the Kafka listener hands over the
//! bytes of a `SaslAuthenticate` request, the HTTP and gRPC listeners a header value.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::scram::ScramCredential;

/// The largest SASL message (or `authorization` header value) accepted, in bytes: checked
/// before anything is parsed. The longest legitimate message, a SCRAM client-final with a
/// SHA-512 proof or a PLAIN message at the user and password limits, is well under it.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// The longest user name, in UTF-8 bytes (after SCRAM's `=2C`/`=3D` are decoded). Bytes,
/// not characters, so the limit bounds memory whatever the script; 256 bytes is 64
/// characters of any script and 256 of ASCII. Kafka has no limit of its own.
pub const MAX_USER_BYTES: usize = 256;

/// The longest password, in UTF-8 bytes. PBKDF2 hashes a long password once per
/// derivation, so this bounds work and memory, not security.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a SASL exchange (or a password-carrying header) did not authenticate anyone.
///
/// The texts are what a client sees (the Kafka listener puts them in the
/// `SaslAuthenticate` response's error message), so none of them says whether a user
/// exists: an unknown user and a wrong password are both [`AuthenticationFailed`].
///
/// [`AuthenticationFailed`]: SaslError::AuthenticationFailed
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The message does not follow the mechanism's syntax (or is over a limit); the text
    /// says what was wrong.
    #[error("malformed SASL message: {0}")]
    Malformed(String),
    /// Wrong password or unknown user (one error for both, Kafka's text).
    #[error(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
    )]
    AuthenticationFailed {
        /// `SCRAM-SHA-256`, `SCRAM-SHA-512` or `PLAIN`.
        mechanism: &'static str,
    },
    /// A well-formed request for something Weir does not do: channel binding, delegation
    /// tokens, acting as another user, mandatory extensions.
    #[error("unsupported SASL request: {0}")]
    Unsupported(String),
    /// A step of the exchange called before the one it follows, after the exchange ended,
    /// or after it failed (a failed exchange cannot be resumed: start a new one).
    #[error("SASL exchange step out of order (or after the exchange ended or failed)")]
    OutOfOrder,
    /// Client side only: the server's final message does not prove it holds the user's
    /// credential (a server that is not the one the credential was set on).
    #[error(
        "the server's SCRAM signature does not verify with SASL mechanism {mechanism}: it does not hold this user's credential"
    )]
    ServerNotAuthenticated {
        /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
        mechanism: &'static str,
    },
}

/// Refuses a message over [`MAX_MESSAGE_BYTES`], before it is parsed.
pub(crate) fn check_message_len(what: &str, message: &[u8]) -> Result<(), SaslError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(SaslError::Malformed(format!(
            "{what} is {} bytes, more than the limit of {MAX_MESSAGE_BYTES}",
            message.len()
        )));
    }
    Ok(())
}

/// Checks a user name's length (empty or over [`MAX_USER_BYTES`] is malformed).
pub(crate) fn check_user(user: &str) -> Result<(), SaslError> {
    if user.is_empty() {
        return Err(SaslError::Malformed("empty user name".into()));
    }
    if user.len() > MAX_USER_BYTES {
        return Err(SaslError::Malformed(format!(
            "user name is {} bytes, more than the limit of {MAX_USER_BYTES}",
            user.len()
        )));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<(), SaslError> {
    if password.is_empty() {
        return Err(SaslError::Malformed("empty password".into()));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(SaslError::Malformed(format!(
            "password is {} bytes, more than the limit of {MAX_PASSWORD_BYTES}",
            password.len()
        )));
    }
    Ok(())
}

/// The refusal of an authorization identity other than the authenticated user (SCRAM's
/// `a=`, PLAIN's authzid): Weir has no impersonation, like Kafka.
pub(crate) fn authzid_mismatch() -> SaslError {
    SaslError::Unsupported(
        "the authorization id differs from the user name (acting as another user is not supported)"
            .into(),
    )
}

/// A SASL PLAIN message, parsed. Debug does not print the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The authorization identity, if the client sent a non-empty one (always the user:
    /// [`parse_plain`] refuses any other).
    pub authzid: Option<String>,
    pub user: String,
    pub password: String,
}

impl fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses a SASL PLAIN message (RFC 4616): `[authzid] NUL user NUL password`, UTF-8,
/// exactly two NULs, user and password non-empty and within [`MAX_USER_BYTES`] and
/// [`MAX_PASSWORD_BYTES`]; an authzid, if not empty, must be the user (no impersonation).
/// PLAIN sends the password in the clear: listeners offer it over TLS only. The password
/// is taken as its UTF-8 bytes, without SASLprep (as Kafka does).
pub fn parse_plain(message: &[u8]) -> Result<PlainCredentials, SaslError> {
    check_message_len("PLAIN message", message)?;
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        let nuls = message.iter().filter(|&&b| b == 0).count();
        return Err(SaslError::Malformed(format!(
            "a PLAIN message is authzid, NUL, user, NUL, password: found {nuls} NUL bytes, not 2"
        )));
    };
    let text = |what: &str, bytes: &[u8]| {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| SaslError::Malformed(format!("PLAIN {what} is not UTF-8")))
    };
    let authzid = text("authzid", authzid)?;
    let user = text("user name", user)?;
    let password = text("password", password)?;
    check_user(&user)?;
    check_password(&password)?;
    let authzid = if authzid.is_empty() {
        None
    } else if authzid == user {
        Some(authzid)
    } else {
        return Err(authzid_mismatch());
    };
    Ok(PlainCredentials {
        authzid,
        user,
        password,
    })
}

/// The PLAIN message a client sends: no authzid, `NUL user NUL password`.
pub fn plain_message(user: &str, password: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(user.len() + password.len() + 2);
    message.push(0);
    message.extend_from_slice(user.as_bytes());
    message.push(0);
    message.extend_from_slice(password.as_bytes());
    message
}

/// Standard base64 that accepts a value with or without its `=` padding (clients differ).
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `authorization` header value of the `Basic` scheme for `user` and `password`
/// (what [`parse_basic_auth`] reads): how a client sends call credentials.
pub fn basic_auth_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Parses an HTTP `authorization` header value of the `Basic` scheme (RFC 7617):
/// `Basic base64(user:password)`, the scheme name in any case. Returns the user and the
/// password, split at the first `:` (a password may contain `:`, a user name cannot).
/// Both must be non-empty, UTF-8, without control characters, and within
/// [`MAX_USER_BYTES`] and [`MAX_PASSWORD_BYTES`]; the header value within
/// [`MAX_MESSAGE_BYTES`].
pub fn parse_basic_auth(header_value: &str) -> Result<(String, String), SaslError> {
    check_message_len("authorization header", header_value.as_bytes())?;
    let value = header_value.trim();
    let (scheme, encoded) = value.split_once(' ').ok_or_else(|| {
        SaslError::Malformed("an authorization header is `Basic <base64 of user:password>`".into())
    })?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(SaslError::Unsupported(format!(
            "authorization scheme {scheme:?} (only Basic is accepted)"
        )));
    }
    let decoded = BASIC_BASE64
        .decode(encoded.trim_start())
        .map_err(|e| SaslError::Malformed(format!("Basic credentials are not base64: {e}")))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| SaslError::Malformed("Basic credentials are not UTF-8".into()))?;
    let (user, password) = decoded.split_once(':').ok_or_else(|| {
        SaslError::Malformed("Basic credentials are `user:password`: no `:` found".into())
    })?;
    if user.chars().chain(password.chars()).any(char::is_control) {
        return Err(SaslError::Malformed(
            "Basic credentials contain a control character".into(),
        ));
    }
    check_user(user)?;
    check_password(password)?;
    Ok((user.to_owned(), password.to_owned()))
}

/// A per-process random secret, for values that must be stable within a process and
/// unpredictable outside it (the fake salt of unknown SCRAM users, the cache keys of
/// [`PasswordCache`]). Panics if the system has no randomness: nothing about
/// authentication can be done safely without it.
pub(crate) fn process_secret() -> &'static hmac::Key {
    static SECRET: OnceLock<hmac::Key> = OnceLock::new();
    SECRET.get_or_init(|| {
        hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .expect("the system's random number generator works")
    })
}

/// Fills `out` from the system's random number generator (see [`process_secret`] on
/// failure).
pub(crate) fn random_bytes(out: &mut [u8]) {
    SystemRandom::new()
        .fill(out)
        .expect("the system's random number generator works");
}

/// `len` random bytes in standard base64: printable, and no `,`, as SCRAM nonces must be.
pub(crate) fn random_nonce(len: usize) -> String {
    let mut bytes = vec![0; len];
    random_bytes(&mut bytes);
    general_purpose::STANDARD.encode(bytes)
}

/// How many verified passwords [`PasswordCache`] remembers; the oldest is forgotten
/// first. 1024 clients' worth: more only costs one PBKDF2 per request for the rest.
pub const VERIFIED_PASSWORDS_CAPACITY: usize = 1024;

/// How many failed password checks [`PasswordCache`] remembers; the oldest is forgotten
/// first. A client retrying one wrong password in a loop (a stale secret in a
/// deployment) costs one entry; a flood of distinct guesses only pushes out older
/// failures, which costs nothing but a PBKDF2 each (bounded by the caller's cap on
/// concurrent checks).
pub const FAILED_PASSWORDS_CAPACITY: usize = 4096;

/// How long a failed password check is remembered. Short, so a password set anew by
/// another path (a credential replaced with the same salt is the one way a key can
/// stay the same) is not refused for long; long enough that a client retrying a wrong
/// password every few milliseconds costs one PBKDF2 a minute.
pub const FAILED_PASSWORD_TTL: Duration = Duration::from_secs(60);

/// What the cache knows of a password check (see [`PasswordCache::lookup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// This exact check succeeded before.
    Verified,
    /// This exact check failed within [`FAILED_PASSWORD_TTL`].
    Failed,
    /// Not known: the PBKDF2 has to run.
    Unknown,
}

/// The outcome of a password check as a listener answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The password is the user's.
    Verified,
    /// Wrong password or unknown user (one answer for both).
    Refused,
    /// Too many password checks are running or waiting: nothing was decided, the client
    /// may retry (gRPC UNAVAILABLE, HTTP 503).
    Busy,
}

/// A cache of password checks, for listeners that receive the password with every
/// request (gRPC call credentials, HTTP basic) or on every connection (SASL PLAIN), where
/// a PBKDF2 per request (milliseconds at 8192 iterations) would be the request's main
/// cost, and a client sending a wrong password in a loop would burn the broker's cores.
/// Thread-safe.
///
/// Successes are kept up to [`VERIFIED_PASSWORDS_CAPACITY`], failures up to
/// [`FAILED_PASSWORDS_CAPACITY`] for [`FAILED_PASSWORD_TTL`]. An entry is a keyed hash
/// (HMAC-SHA-256 under a per-process random key) of the user, the credential's
/// mechanism, salt, iterations and stored key, and the password: a changed or deleted
/// credential misses both sets (so an entry is as good as cleared when the user's
/// credentials change), and another password misses. The trade-off: while an entry
/// lives, someone who can read the process's memory (its key included) can test guesses
/// at the cost of one HMAC instead of a PBKDF2; the passwords themselves are not kept.
pub struct PasswordCache {
    capacity: usize,
    failed_capacity: usize,
    failed_ttl: Duration,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    set: HashSet<[u8; 32]>,
    /// Insertion order, oldest first.
    order: VecDeque<[u8; 32]>,
    /// Failed checks and when each was recorded.
    failed: HashMap<[u8; 32], Instant>,
    /// Insertion order of `failed`, oldest first (an entry recorded again is found
    /// twice; the stale one is skipped when it comes out).
    failed_order: VecDeque<([u8; 32], Instant)>,
}

impl fmt::Debug for PasswordCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .field("failed", &self.failed_len())
            .finish()
    }
}

impl Default for PasswordCache {
    fn default() -> Self {
        Self::new()
    }
}

impl PasswordCache {
    /// An empty cache with the default capacities and TTL.
    pub fn new() -> Self {
        Self::with_limits(
            VERIFIED_PASSWORDS_CAPACITY,
            FAILED_PASSWORDS_CAPACITY,
            FAILED_PASSWORD_TTL,
        )
    }

    pub(crate) fn with_limits(capacity: usize, failed_capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            failed_capacity: failed_capacity.max(1),
            failed_ttl: ttl,
            entries: Mutex::default(),
        }
    }

    /// Whether `password` is `user`'s password under `credential` (which the caller
    /// looked up for `user`): from the cache if this exact check was made before, else
    /// by [`ScramCredential::verify_password`] on this thread, remembering the outcome.
    /// Async callers use [`Self::lookup`], run the PBKDF2 off their runtime, then
    /// [`Self::record`].
    pub fn verify(&self, user: &str, credential: &ScramCredential, password: &str) -> bool {
        match self.lookup(user, credential, password) {
            Cached::Verified => return true,
            Cached::Failed => return false,
            Cached::Unknown => {}
        }
        // The PBKDF2 runs without the lock, so checks of different users run in parallel.
        let ok = credential.verify_password(password);
        self.record(user, credential, password, ok);
        ok
    }

    /// What is known of this check, without running it.
    pub fn lookup(&self, user: &str, credential: &ScramCredential, password: &str) -> Cached {
        let key = cache_key(user, credential, password);
        let mut entries = self.lock();
        if entries.set.contains(&key) {
            return Cached::Verified;
        }
        match entries.failed.get(&key) {
            Some(at) if at.elapsed() < self.failed_ttl => Cached::Failed,
            Some(_) => {
                entries.failed.remove(&key);
                Cached::Unknown
            }
            None => Cached::Unknown,
        }
    }

    /// Remembers the outcome of a check made by [`ScramCredential::verify_password`].
    pub fn record(&self, user: &str, credential: &ScramCredential, password: &str, ok: bool) {
        let key = cache_key(user, credential, password);
        let mut entries = self.lock();
        if ok {
            entries.failed.remove(&key);
            if entries.set.insert(key) {
                entries.order.push_back(key);
                while entries.order.len() > self.capacity {
                    if let Some(oldest) = entries.order.pop_front() {
                        entries.set.remove(&oldest);
                    }
                }
            }
            return;
        }
        let now = Instant::now();
        entries.failed.insert(key, now);
        entries.failed_order.push_back((key, now));
        // Past the capacity, or expired: forget from the oldest. An order entry whose
        // key was recorded again later (a newer time in the map) is only dropped.
        while let Some(&(oldest, at)) = entries.failed_order.front() {
            let over = entries.failed.len() > self.failed_capacity;
            let expired = at.elapsed() >= self.failed_ttl;
            let stale = entries.failed.get(&oldest) != Some(&at);
            if !(over || expired || stale) {
                break;
            }
            entries.failed_order.pop_front();
            if !stale {
                entries.failed.remove(&oldest);
            }
        }
    }

    /// How many verified passwords are remembered.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many failed checks are remembered (expired ones included until they are
    /// pushed out).
    pub fn failed_len(&self) -> usize {
        self.lock().failed.len()
    }

    /// Forgets every check (e.g. when credentials are reloaded wholesale; a changed
    /// credential misses anyway).
    pub fn clear(&self) {
        let mut entries = self.lock();
        *entries = Entries::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic elsewhere while holding the lock leaves the sets consistent (each
        // mutation is a single insert or remove), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn cache_key(user: &str, credential: &ScramCredential, password: &str) -> [u8; 32] {
    let mut ctx = hmac::Context::with_key(process_secret());
    // Length-prefixed fields, so no two different inputs hash the same bytes.
    let mut field = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    };
    field(user.as_bytes());
    field(credential.mechanism.name().as_bytes());
    field(&credential.salt);
    field(&credential.iterations.to_be_bytes());
    field(&credential.stored_key);
    field(password.as_bytes());
    let tag = ctx.sign();
    let mut key = [0; 32];
    key.copy_from_slice(tag.as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::{MIN_ITERATIONS, ScramMechanism};

    #[test]
    fn plain_parses_with_and_without_authzid() {
        let c = parse_plain(b"\0alice\0s3cret").unwrap();
        assert_eq!(c.authzid, None);
        assert_eq!(c.user, "alice");
        assert_eq!(c.password, "s3cret");
        let c = parse_plain(b"alice\0alice\0pass:word\xc3\xa9").unwrap();
        assert_eq!(c.authzid.as_deref(), Some("alice"));
        assert_eq!(c.password, "pass:word\u{e9}");
        assert_eq!(
            parse_plain(&plain_message("bob", "pw")).unwrap().user,
            "bob"
        );
    }

    #[test]
    fn plain_refuses_bad_messages() {
        let malformed = |m: &[u8]| {
            assert!(
                matches!(parse_plain(m), Err(SaslError::Malformed(_))),
                "{m:?} should be malformed"
            )
        };
        malformed(b"");
        malformed(b"alice");
        malformed(b"\0alice");
        malformed(b"\0alice\0pw\0extra");
        malformed(b"\0\0pw");
        malformed(b"\0alice\0");
        malformed(b"\0al\xffice\0pw");
        malformed(b"\0alice\0p\xffw");
        malformed(&plain_message(&"u".repeat(MAX_USER_BYTES + 1), "pw"));
        malformed(&plain_message("alice", &"p".repeat(MAX_PASSWORD_BYTES + 1)));
        let long = [b'x'; MAX_MESSAGE_BYTES + 1];
        match parse_plain(&long) {
            Err(SaslError::Malformed(m)) => assert!(m.contains("limit of 4096"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_plain(b"mallory\0alice\0pw"),
            Err(SaslError::Unsupported(_))
        ));
    }

    #[test]
    fn plain_debug_redacts_the_password() {
        let c = parse_plain(b"\0alice\0hunter2").unwrap();
        let debug = format!("{c:?}");
        assert!(
            debug.contains("alice") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[test]
    fn basic_auth_parses() {
        // base64("alice:pa:ss")
        let encoded = general_purpose::STANDARD.encode("alice:pa:ss");
        assert_eq!(
            parse_basic_auth(&format!("Basic {encoded}")).unwrap(),
            ("alice".to_owned(), "pa:ss".to_owned())
        );
        assert_eq!(
            parse_basic_auth(&format!("  basic   {}  ", encoded.trim_end_matches('='))).unwrap(),
            ("alice".to_owned(), "pa:ss".to_owned())
        );
        // RFC 7617's example.
        assert_eq!(
            parse_basic_auth("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap(),
            ("Aladdin".to_owned(), "open sesame".to_owned())
        );
    }

    #[test]
    fn basic_auth_refuses_bad_values() {
        let b64 = |s: &[u8]| general_purpose::STANDARD.encode(s);
        let malformed = |v: &str| {
            assert!(
                matches!(parse_basic_auth(v), Err(SaslError::Malformed(_))),
                "{v:?} should be malformed"
            )
        };
        malformed("");
        malformed("Basic");
        malformed("Basic !!!");
        malformed(&format!("Basic {}", b64(b"alice")));
        malformed(&format!("Basic {}", b64(b":pw")));
        malformed(&format!("Basic {}", b64(b"alice:")));
        malformed(&format!("Basic {}", b64(b"al\xffice:pw")));
        malformed(&format!("Basic {}", b64(b"alice:p\nw")));
        malformed(&format!("Basic {}", "A".repeat(MAX_MESSAGE_BYTES)));
        assert!(matches!(
            parse_basic_auth(&format!("Bearer {}", b64(b"alice:pw"))),
            Err(SaslError::Unsupported(_))
        ));
    }

    #[test]
    fn the_cache_keeps_successes_and_failures_and_misses_a_changed_credential() {
        let mechanism = ScramMechanism::Sha256;
        let cache = PasswordCache::new();
        let old = ScramCredential::new(mechanism, "first", MIN_ITERATIONS).unwrap();
        assert_eq!(cache.lookup("alice", &old, "wrong"), Cached::Unknown);
        assert!(!cache.verify("alice", &old, "wrong"));
        assert!(cache.is_empty(), "a failure is not a verified password");
        assert_eq!(cache.failed_len(), 1);
        assert_eq!(cache.lookup("alice", &old, "wrong"), Cached::Failed);
        assert!(!cache.verify("alice", &old, "wrong"), "a cached failure");
        assert_eq!(cache.failed_len(), 1);
        // The same wrong password for another user is another check.
        assert_eq!(cache.lookup("bob", &old, "wrong"), Cached::Unknown);

        assert!(cache.verify("alice", &old, "first"));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.lookup("alice", &old, "first"), Cached::Verified);
        assert!(cache.verify("bob", &old, "first"));
        assert_eq!(cache.len(), 2);

        // The password changed: every check under the old credential misses, so the
        // old password fails (once, then from the cache) and the new one verifies, even
        // the one that failed before.
        let new = ScramCredential::new(mechanism, "wrong", MIN_ITERATIONS).unwrap();
        assert_eq!(cache.lookup("alice", &new, "first"), Cached::Unknown);
        assert!(!cache.verify("alice", &new, "first"));
        assert_eq!(cache.lookup("alice", &new, "wrong"), Cached::Unknown);
        assert!(cache.verify("alice", &new, "wrong"));
        assert_eq!(cache.len(), 3);
        cache.clear();
        assert!(cache.is_empty());
        assert_eq!(cache.failed_len(), 0);
    }

    #[test]
    fn the_cache_forgets_the_oldest_first() {
        let cache = PasswordCache::with_limits(2, 2, FAILED_PASSWORD_TTL);
        let credential =
            ScramCredential::new(ScramMechanism::Sha256, "pw", MIN_ITERATIONS).unwrap();
        for user in ["a", "b", "c"] {
            assert!(cache.verify(user, &credential, "pw"));
            assert!(!cache.verify(user, &credential, "bad"));
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.failed_len(), 2);
        assert_eq!(cache.lookup("a", &credential, "pw"), Cached::Unknown);
        assert_eq!(cache.lookup("a", &credential, "bad"), Cached::Unknown);
        assert_eq!(cache.lookup("c", &credential, "pw"), Cached::Verified);
        assert_eq!(cache.lookup("c", &credential, "bad"), Cached::Failed);
        // A failure recorded again is not pushed out by its own older record.
        cache.record("b", &credential, "bad", false);
        cache.record("d", &credential, "bad", false);
        assert_eq!(cache.lookup("b", &credential, "bad"), Cached::Failed);
        assert_eq!(cache.lookup("c", &credential, "bad"), Cached::Unknown);
        assert_eq!(cache.failed_len(), 2);
        // A success replaces a remembered failure of the same check.
        cache.record("d", &credential, "bad", true);
        assert_eq!(cache.lookup("d", &credential, "bad"), Cached::Verified);
    }

    #[test]
    fn failures_expire() {
        let ttl = Duration::from_millis(50);
        let cache = PasswordCache::with_limits(8, 8, ttl);
        let credential =
            ScramCredential::new(ScramMechanism::Sha256, "pw", MIN_ITERATIONS).unwrap();
        assert!(!cache.verify("a", &credential, "bad"));
        assert_eq!(cache.lookup("a", &credential, "bad"), Cached::Failed);
        std::thread::sleep(ttl + Duration::from_millis(10));
        assert_eq!(cache.lookup("a", &credential, "bad"), Cached::Unknown);
        assert_eq!(
            cache.failed_len(),
            0,
            "an expired entry looked up is dropped"
        );
        // Expired entries are also dropped as new failures are recorded.
        cache.record("b", &credential, "bad", false);
        std::thread::sleep(ttl + Duration::from_millis(10));
        cache.record("c", &credential, "bad", false);
        assert_eq!(cache.failed_len(), 1);
    }
}
