//! The audit log: one line per authorisation denial (principal, peer address, resource
//! and operation) and per authentication (one format for every listener and mechanism:
//! listener, peer, mechanism, principal, outcome; successes at debug level), at most
//! [`AUDIT_LINES_PER_WINDOW`] lines per [`AUDIT_WINDOW`]; past that, the lines are
//! counted and the count is logged with the next line after the window turns, so a
//! client hammering a denied topic cannot fill the disk, and nothing goes unreported.
//!
//! Lines go to the `weir::audit` tracing target, so an operator can route or filter them
//! (`RUST_LOG=weir::audit=info`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::context::RequestContext;

/// Most audit lines written per [`AUDIT_WINDOW`].
pub const AUDIT_LINES_PER_WINDOW: u32 = 20;
/// The window [`AUDIT_LINES_PER_WINDOW`] counts over.
pub const AUDIT_WINDOW: Duration = Duration::from_secs(10);

/// Rate-limited audit lines.
#[derive(Debug)]
pub struct AuditLog {
    /// Denials and failed authentications.
    state: Mutex<Window>,
    /// Successful authentications (debug lines).
    successes: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    written: u32,
    suppressed: u64,
}

impl Default for Window {
    fn default() -> Window {
        Window {
            started: Instant::now(),
            written: 0,
            suppressed: 0,
        }
    }
}

impl Default for AuditLog {
    fn default() -> AuditLog {
        AuditLog {
            state: Mutex::new(Window::default()),
            successes: Mutex::new(Window::default()),
        }
    }
}

/// Whether `window` has room for a line now, and how many were held back before it.
fn admit(window: &mut Window) -> Option<u64> {
    if window.started.elapsed() >= AUDIT_WINDOW {
        window.started = Instant::now();
        window.written = 0;
    }
    if window.written >= AUDIT_LINES_PER_WINDOW {
        window.suppressed += 1;
        return None;
    }
    window.written += 1;
    Some(std::mem::take(&mut window.suppressed))
}

impl AuditLog {
    /// Whether a line may be written now, and how many were held back before it.
    fn admit(&self) -> Option<u64> {
        admit(&mut self.state.lock().expect("audit log mutex"))
    }

    /// An authorisation denial of `operation` on `resource` for the request's principal.
    pub fn denied(&self, ctx: &RequestContext, operation: &str, resource: &str) {
        if let Some(suppressed) = self.admit() {
            tracing::warn!(
                target: "weir::audit",
                principal = %ctx.principal,
                peer = %peer(ctx),
                listener = ?ctx.listener,
                operation,
                resource,
                suppressed_before = suppressed,
                "authorization denied"
            );
        }
    }

    /// One authentication's line, the same for every listener and mechanism: listener,
    /// peer, mechanism, principal (the user claimed, on a failure; `-` if none was
    /// read), outcome and, on a failure, why. Failures are warnings, counted against the
    /// window with the denials; successes are debug lines in a window of their own
    /// (`RUST_LOG=weir::audit=debug`), so a busy client that authenticates every call
    /// never crowds a refusal out, and when debug is off they cost one check of the
    /// filter.
    pub fn authentication(
        &self,
        ctx: &RequestContext,
        mechanism: &str,
        principal: Option<&str>,
        outcome: Outcome<'_>,
    ) {
        let principal = principal.map_or_else(|| "-".to_owned(), |p| format!("User:{p}"));
        match outcome {
            Outcome::Authenticated => {
                if !tracing::enabled!(target: "weir::audit", tracing::Level::DEBUG) {
                    return;
                }
                if let Some(suppressed) = self.admit_success() {
                    tracing::debug!(
                        target: "weir::audit",
                        listener = ?ctx.listener,
                        peer = %peer(ctx),
                        mechanism,
                        principal,
                        outcome = outcome.name(),
                        suppressed_before = suppressed,
                        "authenticated"
                    );
                }
            }
            Outcome::Refused(reason) | Outcome::Unavailable(reason) => {
                if let Some(suppressed) = self.admit() {
                    tracing::warn!(
                        target: "weir::audit",
                        listener = ?ctx.listener,
                        peer = %peer(ctx),
                        mechanism,
                        principal,
                        outcome = outcome.name(),
                        reason,
                        suppressed_before = suppressed,
                        "authentication failed"
                    );
                }
            }
        }
    }

    /// Whether a success line may be written now (its own window), and how many were
    /// held back before it.
    fn admit_success(&self) -> Option<u64> {
        admit(&mut self.successes.lock().expect("audit log mutex"))
    }
}

/// How an authentication ended, for its audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    Authenticated,
    /// Refused (wrong credentials, malformed, a mechanism not offered): why.
    Refused(&'a str),
    /// Not decided: the broker could not check now (too many password checks): why.
    Unavailable(&'a str),
}

impl Outcome<'_> {
    /// The `outcome` field.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Authenticated => "ok",
            Outcome::Refused(_) => "refused",
            Outcome::Unavailable(_) => "unavailable",
        }
    }
}

fn peer(ctx: &RequestContext) -> String {
    ctx.peer.map_or_else(|| "-".into(), |p| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_limit_are_counted_not_written() {
        let log = AuditLog::default();
        for _ in 0..AUDIT_LINES_PER_WINDOW {
            assert_eq!(log.admit(), Some(0));
        }
        assert_eq!(log.admit(), None);
        assert_eq!(log.admit(), None);
        log.state.lock().unwrap().started -= AUDIT_WINDOW;
        assert_eq!(
            log.admit(),
            Some(2),
            "the next line reports what was held back"
        );
    }
}
