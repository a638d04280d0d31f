//! Per-listener connection counters: connections accepted, open now, and turned away
//! by reason. The budget holds one [`ListenerCounts`] for the broker (every listener
//! the kit serves counts into it), rendered on `/metrics` beside the budget's own
//! broker-wide figures (`weir_client_connections`, `weir_refused_connections_total`,
//! whose names do not change).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// Why the kit turned a connection away (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// The broker was at `max_connections`.
    MaxConnections,
    /// The broker was cut off from its cluster.
    CutOff,
    /// TLS was not set up: plaintext to a TLS listener, a failed or timed-out handshake.
    Tls,
    /// The core refused the client certificate's principal.
    Certificate,
}

impl Refusal {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::CutOff => "cut_off",
            Refusal::Tls => "tls",
            Refusal::Certificate => "certificate",
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Counts {
    accepted: u64,
    open: u64,
    refused: BTreeMap<Refusal, u64>,
}

/// The counters of every listener the kit serves, by listener name.
#[derive(Debug, Default)]
pub struct ListenerCounts {
    by_listener: Mutex<BTreeMap<&'static str, Counts>>,
}

impl ListenerCounts {
    fn with(&self, listener: &'static str, f: impl FnOnce(&mut Counts)) {
        f(self
            .by_listener
            .lock()
            .expect("listener counts lock")
            .entry(listener)
            .or_default());
    }

    /// Counts a connection turned away from `listener`.
    pub fn refused(&self, listener: &'static str, why: Refusal) {
        self.with(listener, |c| *c.refused.entry(why).or_default() += 1);
    }

    /// Counts a connection handed to `listener`'s protocol; open until the guard drops.
    pub fn opened(self: &Arc<Self>, listener: &'static str) -> OpenConnection {
        self.with(listener, |c| {
            c.accepted += 1;
            c.open += 1;
        });
        OpenConnection {
            counts: self.clone(),
            listener,
        }
    }

    /// (accepted, open now, refused for `why`) of `listener`.
    pub fn of(&self, listener: &'static str, why: Refusal) -> (u64, u64, u64) {
        let by_listener = self.by_listener.lock().expect("listener counts lock");
        by_listener.get(listener).map_or((0, 0, 0), |c| {
            (
                c.accepted,
                c.open,
                c.refused.get(&why).copied().unwrap_or(0),
            )
        })
    }

    /// The counters in Prometheus text format (nothing before a listener counted).
    pub fn render(&self, out: &mut String) {
        let by_listener = self
            .by_listener
            .lock()
            .expect("listener counts lock")
            .clone();
        if by_listener.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "# HELP weir_listener_connections_accepted_total Connections a listener handed to its protocol.\n\
             # TYPE weir_listener_connections_accepted_total counter"
        );
        for (listener, c) in &by_listener {
            let _ = writeln!(
                out,
                "weir_listener_connections_accepted_total{{listener=\"{listener}\"}} {}",
                c.accepted
            );
        }
        let _ = writeln!(
            out,
            "# HELP weir_listener_connections_open Connections of a listener open now.\n\
             # TYPE weir_listener_connections_open gauge"
        );
        for (listener, c) in &by_listener {
            let _ = writeln!(
                out,
                "weir_listener_connections_open{{listener=\"{listener}\"}} {}",
                c.open
            );
        }
        let _ = writeln!(
            out,
            "# HELP weir_listener_connections_refused_total Connections a listener accepted and closed at once, by reason.\n\
             # TYPE weir_listener_connections_refused_total counter"
        );
        for (listener, c) in &by_listener {
            for (why, n) in &c.refused {
                let _ = writeln!(
                    out,
                    "weir_listener_connections_refused_total{{listener=\"{listener}\",reason=\"{}\"}} {n}",
                    why.label()
                );
            }
        }
    }
}

/// A connection counted open; counted closed when dropped.
#[derive(Debug)]
pub struct OpenConnection {
    counts: Arc<ListenerCounts>,
    listener: &'static str,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.counts.with(self.listener, |c| c.open -= 1);
    }
}
