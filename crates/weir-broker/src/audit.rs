//! The audit log: one line per authentication failure and per authorisation denial,
//! with principal, peer address, resource and operation, at most
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
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    written: u32,
    suppressed: u64,
}

impl Default for AuditLog {
    fn default() -> AuditLog {
        AuditLog {
            state: Mutex::new(Window {
                started: Instant::now(),
                written: 0,
                suppressed: 0,
            }),
        }
    }
}

impl AuditLog {
    /// Whether a line may be written now, and how many were held back before it.
    fn admit(&self) -> Option<u64> {
        let mut window = self.state.lock().expect("audit log mutex");
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

    /// A failed authentication of `user` (as claimed) with `mechanism`.
    pub fn authentication_failed(
        &self,
        ctx: &RequestContext,
        user: Option<&str>,
        mechanism: &str,
        reason: &str,
    ) {
        if let Some(suppressed) = self.admit() {
            tracing::warn!(
                target: "weir::audit",
                user = user.unwrap_or("-"),
                peer = %peer(ctx),
                listener = ?ctx.listener,
                mechanism,
                reason,
                suppressed_before = suppressed,
                "authentication failed"
            );
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
