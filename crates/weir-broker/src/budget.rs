//! The broker-wide memory budget: what all clients together may hold of the broker,
//! whatever protocol they speak. Each listener bounds one connection
//! (`weir-kafka`'s in-flight limits, gRPC's windows and stream count); [`Budget`] bounds
//! their sum. It is a set of counting semaphores the adapters take from:
//!
//! - a connection slot per client connection ([`Budget::try_connection`]): at the cap a
//!   new connection is closed at once; never waited for, so an accept loop never stalls;
//! - request bytes ([`Budget::request_bytes`]) from the moment a request's length is
//!   known until its answer is written: a connection that would pass the budget waits,
//!   so TCP (or HTTP/2 flow control) makes its client wait too;
//! - a consume-stream slot per open server-streaming read ([`Budget::consume_stream`]):
//!   at the cap a new stream is refused with [`Reason::TooMany`] (retriable).
//!
//! A permit gives its share back when dropped, so a connection task or a call that ends
//! any way at all releases what it held. Refusals are counted for `/metrics` and logged
//! at most once per [`REFUSAL_LOG_INTERVAL`] per kind.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{BrokerError, Reason};
use crate::listener_kit::ListenerCounts;

// The defaults: requests held about three times over (tonic's buffer, the decoded
// request, the packed batch) come to 3 x 128 MiB, and 512 connections x ~64 KiB. Consume
// streams are counted, not their bytes: Weir's consumer opens one per partition, so the
// default admits a consumer of a thousand partitions; a stream holds up to 12 MiB at its
// default 1 MiB `max_bytes` only while its consumer does not read, so a small node lowers
// the cap (docs/ARCHITECTURE.md § Memory under overload has the whole sum).

/// Default cap on client connections over every client listener together (gRPC client
/// and external, Kafka and external Kafka).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default cap on bytes of requests read and not yet answered, over every connection.
pub const DEFAULT_MAX_IN_FLIGHT_REQUEST_BYTES: usize = 128 * 1024 * 1024;
/// Default cap on open consume streams (gRPC `Consume`).
pub const DEFAULT_MAX_CONSUME_STREAMS: usize = 1024;
/// Most one kind of refusal is logged: once per this interval (with the count since).
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The largest single acquisition tokio's semaphore takes (`acquire_many` counts in
/// `u32`); a budget above it still works, one request just cannot reserve more.
const MAX_ONE_ACQUISITION: usize = u32::MAX as usize;

/// The three caps, as configured (`weir serve --max-connections`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLimits {
    pub max_connections: usize,
    pub max_in_flight_request_bytes: usize,
    pub max_consume_streams: usize,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        BudgetLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_in_flight_request_bytes: DEFAULT_MAX_IN_FLIGHT_REQUEST_BYTES,
            max_consume_streams: DEFAULT_MAX_CONSUME_STREAMS,
        }
    }
}

impl BudgetLimits {
    /// No cap a machine could reach: what a listener gets when no budget is given.
    pub fn unlimited() -> BudgetLimits {
        BudgetLimits {
            max_connections: Semaphore::MAX_PERMITS,
            max_in_flight_request_bytes: Semaphore::MAX_PERMITS,
            max_consume_streams: Semaphore::MAX_PERMITS,
        }
    }

    /// Each cap is at least 1 and at most what a semaphore counts.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("max_connections", self.max_connections),
            (
                "max_in_flight_request_bytes",
                self.max_in_flight_request_bytes,
            ),
            ("max_consume_streams", self.max_consume_streams),
        ] {
            if value == 0 || value > Semaphore::MAX_PERMITS {
                return Err(format!(
                    "{name} is {value}; it must be in 1..={}",
                    Semaphore::MAX_PERMITS
                ));
            }
        }
        Ok(())
    }
}

/// The broker-wide budget: see the module docs.
#[derive(Debug)]
pub struct Budget {
    limits: BudgetLimits,
    connections: Arc<Semaphore>,
    request_bytes: Arc<Semaphore>,
    consume_streams: Arc<Semaphore>,
    refused_connections: Refusals,
    refused_streams: Refusals,
    /// Requests that had to wait for room in the request-byte budget.
    request_waits: AtomicU64,
    /// Per-listener connection counters of the listeners the listener kit serves.
    listener_counts: Arc<ListenerCounts>,
}

impl Default for Budget {
    /// No caps ([`BudgetLimits::unlimited`]).
    fn default() -> Self {
        Budget::new(BudgetLimits::unlimited())
    }
}

/// One client connection's slot; given back when dropped.
#[derive(Debug)]
pub struct ConnectionPermit(#[allow(dead_code)] OwnedSemaphorePermit);

/// A request's bytes in the budget; given back when dropped.
#[derive(Debug)]
pub struct RequestBytesPermit(#[allow(dead_code)] OwnedSemaphorePermit);

/// An open consume stream's slot; given back when dropped.
#[derive(Debug)]
pub struct StreamPermit(#[allow(dead_code)] OwnedSemaphorePermit);

impl Budget {
    pub fn new(limits: BudgetLimits) -> Budget {
        Budget {
            limits,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            request_bytes: Arc::new(Semaphore::new(limits.max_in_flight_request_bytes)),
            consume_streams: Arc::new(Semaphore::new(limits.max_consume_streams)),
            refused_connections: Refusals::default(),
            refused_streams: Refusals::default(),
            request_waits: AtomicU64::new(0),
            listener_counts: Arc::default(),
        }
    }

    /// The per-listener connection counters (accepted, open, refused by reason) the
    /// listener kit keeps, rendered with the budget's figures.
    pub fn listener_counts(&self) -> &Arc<ListenerCounts> {
        &self.listener_counts
    }

    pub fn limits(&self) -> BudgetLimits {
        self.limits
    }

    /// A slot for a connection just accepted on `listener` (for the log line), or
    /// `None` at the cap: the caller closes the connection at once.
    pub fn try_connection(&self, listener: &'static str) -> Option<ConnectionPermit> {
        match self.connections.clone().try_acquire_owned() {
            Ok(permit) => Some(ConnectionPermit(permit)),
            Err(_) => {
                if let Some(since) = self.refused_connections.count() {
                    tracing::warn!(
                        listener,
                        max_connections = self.limits.max_connections,
                        refused_since_last_line = since,
                        "refusing client connections: the broker is at max_connections \
                         (--max-connections); existing connections are served"
                    );
                }
                None
            }
        }
    }

    /// Room for a request of `bytes`, waiting until there is. A request larger than the
    /// whole budget takes all of it (it waits for every other request to be answered,
    /// and cannot wait forever): the protocol's own request limit is what refuses it.
    pub async fn request_bytes(self: &Arc<Self>, bytes: usize) -> RequestBytesPermit {
        let wanted = self.clamp(bytes);
        if let Ok(permit) = self.request_bytes.clone().try_acquire_many_owned(wanted) {
            return RequestBytesPermit(permit);
        }
        self.request_waits.fetch_add(1, Ordering::Relaxed);
        let permit = self
            .request_bytes
            .clone()
            .acquire_many_owned(wanted)
            .await
            .expect("the budget's semaphores are never closed");
        RequestBytesPermit(permit)
    }

    /// [`Budget::request_bytes`] without waiting: `None` if there is no room now.
    pub fn try_request_bytes(&self, bytes: usize) -> Option<RequestBytesPermit> {
        self.request_bytes
            .clone()
            .try_acquire_many_owned(self.clamp(bytes))
            .ok()
            .map(RequestBytesPermit)
    }

    fn clamp(&self, bytes: usize) -> u32 {
        bytes
            .min(self.limits.max_in_flight_request_bytes)
            .min(MAX_ONE_ACQUISITION) as u32
    }

    /// A slot for a new consume stream; at the cap, [`Reason::TooMany`] naming the
    /// limit (a client retries later, or reads through a stream it has).
    pub fn consume_stream(&self) -> Result<StreamPermit, BrokerError> {
        match self.consume_streams.clone().try_acquire_owned() {
            Ok(permit) => Ok(StreamPermit(permit)),
            Err(_) => {
                let max = self.limits.max_consume_streams;
                if let Some(since) = self.refused_streams.count() {
                    tracing::warn!(
                        max_consume_streams = max,
                        refused_since_last_line = since,
                        "refusing consume streams: the broker is at max_consume_streams \
                         (--max-consume-streams)"
                    );
                }
                Err(BrokerError::new(
                    Reason::TooMany,
                    format!(
                        "this broker has {max} consume streams open, its limit \
                         (max_consume_streams): retry later, or close streams you do not read"
                    ),
                ))
            }
        }
    }

    /// Client connections open now.
    pub fn connections(&self) -> usize {
        self.limits.max_connections - self.connections.available_permits()
    }

    /// Bytes of requests read and not yet answered now.
    pub fn in_flight_request_bytes(&self) -> usize {
        self.limits.max_in_flight_request_bytes - self.request_bytes.available_permits()
    }

    /// Consume streams open now.
    pub fn consume_streams(&self) -> usize {
        self.limits.max_consume_streams - self.consume_streams.available_permits()
    }

    /// Connections closed at the cap, since the start.
    pub fn refused_connections(&self) -> u64 {
        self.refused_connections.total.load(Ordering::Relaxed)
    }

    /// Requests that waited for room in the budget (or wait now), since the start.
    pub fn request_waits(&self) -> u64 {
        self.request_waits.load(Ordering::Relaxed)
    }

    /// Consume streams refused at the cap, since the start.
    pub fn refused_consume_streams(&self) -> u64 {
        self.refused_streams.total.load(Ordering::Relaxed)
    }

    /// The gauges and counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let gauges: [(&str, &str, usize, usize); 3] = [
            (
                "weir_client_connections",
                "Client connections open now, over every client listener (gRPC and Kafka).",
                self.connections(),
                self.limits.max_connections,
            ),
            (
                "weir_in_flight_request_bytes",
                "Bytes of client requests read and not yet answered, over every connection.",
                self.in_flight_request_bytes(),
                self.limits.max_in_flight_request_bytes,
            ),
            (
                "weir_consume_streams",
                "Consume streams open now.",
                self.consume_streams(),
                self.limits.max_consume_streams,
            ),
        ];
        for (name, help, now, max) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {now}"
            );
            let _ = writeln!(
                out,
                "# HELP {name}_max The broker's limit on {name}.\n# TYPE {name}_max gauge\n{name}_max {max}"
            );
        }
        let counters: [(&str, &str, u64); 3] = [
            (
                "weir_refused_connections_total",
                "Client connections closed at once because the broker was at max_connections.",
                self.refused_connections(),
            ),
            (
                "weir_refused_consume_streams_total",
                "Consume streams refused because the broker was at max_consume_streams.",
                self.refused_consume_streams(),
            ),
            (
                "weir_request_budget_waits_total",
                "Requests that waited for room in max_in_flight_request_bytes before being read.",
                self.request_waits.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, n) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {n}"
            );
        }
        self.listener_counts.render(out);
    }
}

/// A refusal counter whose log line is rate-limited.
#[derive(Debug, Default)]
struct Refusals {
    total: AtomicU64,
    /// When the last line was logged, and the refusals counted since.
    logged: Mutex<(Option<Instant>, u64)>,
}

impl Refusals {
    /// Counts one refusal; `Some(refusals since the last line)` when a line is due.
    fn count(&self) -> Option<u64> {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut logged = self.logged.lock().expect("refusals lock");
        logged.1 += 1;
        let due = logged
            .0
            .is_none_or(|at| at.elapsed() >= REFUSAL_LOG_INTERVAL);
        if !due {
            return None;
        }
        let since = logged.1;
        *logged = (Some(Instant::now()), 0);
        Some(since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(connections: usize, bytes: usize, streams: usize) -> Arc<Budget> {
        Arc::new(Budget::new(BudgetLimits {
            max_connections: connections,
            max_in_flight_request_bytes: bytes,
            max_consume_streams: streams,
        }))
    }

    #[test]
    fn connections_stop_at_the_cap_and_come_back_when_dropped() {
        let budget = budget(2, 10, 1);
        let a = budget.try_connection("test").expect("first");
        let _b = budget.try_connection("test").expect("second");
        assert!(budget.try_connection("test").is_none());
        assert!(budget.try_connection("test").is_none());
        assert_eq!(budget.connections(), 2);
        assert_eq!(budget.refused_connections(), 2);
        drop(a);
        assert_eq!(budget.connections(), 1);
        assert!(budget.try_connection("test").is_some());
    }

    #[test]
    fn streams_at_the_cap_are_refused_naming_the_limit() {
        let budget = budget(1, 10, 1);
        let open = budget.consume_stream().expect("first");
        let refused = budget.consume_stream().unwrap_err();
        assert_eq!(refused.reason, Reason::TooMany);
        assert!(refused.message.contains("max_consume_streams"), "{refused}");
        drop(open);
        assert!(budget.consume_stream().is_ok());
        let mut out = String::new();
        budget.render(&mut out);
        assert!(
            out.contains("weir_refused_consume_streams_total 1"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn request_bytes_wait_for_room_and_a_huge_request_takes_the_whole_budget() {
        let budget = budget(1, 100, 1);
        let first = budget.request_bytes(60).await;
        assert_eq!(budget.in_flight_request_bytes(), 60);
        assert!(budget.try_request_bytes(60).is_none());
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.request_bytes(60).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("room freed")
            .expect("task");
        assert_eq!(budget.in_flight_request_bytes(), 60);
        drop(second);
        // Larger than the whole budget: it waits for everything else, then takes all.
        let huge = budget.request_bytes(1_000).await;
        assert_eq!(budget.in_flight_request_bytes(), 100);
        drop(huge);
        assert_eq!(budget.in_flight_request_bytes(), 0);
    }

    #[test]
    fn a_refusal_line_is_due_once_per_interval() {
        let refusals = Refusals::default();
        assert_eq!(refusals.count(), Some(1));
        assert_eq!(refusals.count(), None);
        assert_eq!(refusals.count(), None);
        assert_eq!(refusals.total.load(Ordering::Relaxed), 3);
    }
}
