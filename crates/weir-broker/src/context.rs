//! Who is asking: the [`RequestContext`] every operation of the core takes, so checks
//! that depend on the caller (authorisation, quotas) are made once, here, for every
//! protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weir_cluster::controller::records::listener_names;

/// The protocol a listener speaks: a name, and the listener whose address its clients
/// are told for a broker that lacks the listener they came in on. A protocol crate
/// defines its own (`Protocol { name: "amqp", default_listener: "amqp" }`); the core
/// knows only [`Protocol::INTERNAL`], the broker acting for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protocol {
    pub name: &'static str,
    /// The listener name a broker without the request's listener is advertised at, for
    /// this protocol's clients: an external listener's clients are told a broker's
    /// ordinary address of the same protocol when it has no external one.
    pub default_listener: &'static str,
}

impl Protocol {
    pub const GRPC: Protocol = Protocol {
        name: "grpc",
        default_listener: listener_names::CLIENT,
    };
    pub const KAFKA: Protocol = Protocol {
        name: "kafka",
        default_listener: listener_names::KAFKA,
    };
    /// The admin HTTP listener (metrics, health, the console); the console names
    /// brokers by their gRPC client addresses.
    pub const HTTP: Protocol = Protocol {
        name: "http",
        default_listener: listener_names::CLIENT,
    };
    /// The broker itself (upkeep, the group coordinator's own writes): never a client.
    pub const INTERNAL: Protocol = Protocol {
        name: "internal",
        default_listener: listener_names::CLIENT,
    };
}

/// The listener a request arrived on, as data: its name (the key of its address in a
/// broker's advertised [`Endpoints`](weir_cluster::controller::records::Endpoints)) and
/// its protocol. Names are `'static` because listeners are made once, at start, from the
/// configuration's fixed set (`weir-server`'s `ServerConfig::listeners`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listener {
    pub name: &'static str,
    pub protocol: Protocol,
}

impl Listener {
    /// The gRPC client listener (`--listen`).
    pub const GRPC: Listener = Listener {
        name: listener_names::CLIENT,
        protocol: Protocol::GRPC,
    };
    /// The gRPC external listener (`--external-listen`).
    pub const GRPC_EXTERNAL: Listener = Listener {
        name: listener_names::EXTERNAL,
        protocol: Protocol::GRPC,
    };
    /// The listener of replication and controller traffic between brokers
    /// (`--internal-listen`; the client listener's port when not given).
    pub const GRPC_INTERNAL: Listener = Listener {
        name: listener_names::INTERNAL,
        protocol: Protocol::GRPC,
    };
    /// The Kafka protocol listener (`--kafka-listen`).
    pub const KAFKA: Listener = Listener {
        name: listener_names::KAFKA,
        protocol: Protocol::KAFKA,
    };
    /// The external Kafka protocol listener (`--kafka-external-listen`).
    pub const KAFKA_EXTERNAL: Listener = Listener {
        name: listener_names::KAFKA_EXTERNAL,
        protocol: Protocol::KAFKA,
    };
    /// The admin HTTP listener (`--admin-listen`).
    pub const HTTP: Listener = Listener {
        name: "admin",
        protocol: Protocol::HTTP,
    };
    /// The broker itself (upkeep, the group coordinator's own writes).
    pub const INTERNAL: Listener = Listener {
        name: "broker",
        protocol: Protocol::INTERNAL,
    };

    /// Whether this is the broker acting for itself rather than a client's listener.
    pub fn is_internal(self) -> bool {
        self.protocol == Protocol::INTERNAL
    }
}

/// The authenticated identity behind a request: a user who proved who they are (SASL,
/// a password, or a client certificate), or nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    User(String),
}

impl Principal {
    /// The name the anonymous principal has in ACLs (`User:ANONYMOUS`, as in Kafka).
    pub const ANONYMOUS_NAME: &'static str = "ANONYMOUS";
}

impl std::fmt::Display for Principal {
    /// As ACLs name it: `User:alice`, or `User:ANONYMOUS`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anonymous => write!(f, "User:{}", Principal::ANONYMOUS_NAME),
            Principal::User(name) => write!(f, "User:{name}"),
        }
    }
}

/// What the core knows of a request's origin.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub listener: Listener,
    /// The client's address, where the transport knows it.
    pub peer: Option<SocketAddr>,
    /// The client's own name for itself (Kafka's `client.id`), if it sent one.
    pub client_id: Option<String>,
    pub principal: Principal,
    /// Whether the principal was proved by an API token (which may not make tokens).
    pub authenticated_by_token: bool,
    /// How long quotas held this request back, in milliseconds (Kafka's
    /// `throttle_time_ms`); shared by the context's clones.
    throttle_ms: Arc<AtomicU64>,
    /// How long the request-time quota held the request back before it ran, in
    /// milliseconds, not yet set against a byte-rate hold: a request is held for the
    /// larger of the two, not their sum.
    request_hold_ms: Arc<AtomicU64>,
    /// Time the request's handling spent on the broker's threads so far, in nanoseconds
    /// ([`crate::quotas::Measured`]).
    thread_time_ns: Arc<AtomicU64>,
}

impl RequestContext {
    /// An anonymous request from `peer` on `listener`.
    pub fn anonymous(listener: Listener, peer: Option<SocketAddr>) -> RequestContext {
        RequestContext {
            listener,
            peer,
            client_id: None,
            principal: Principal::Anonymous,
            authenticated_by_token: false,
            throttle_ms: Arc::default(),
            request_hold_ms: Arc::default(),
            thread_time_ns: Arc::default(),
        }
    }

    /// Records that the request-time quota held the request back for `delay` before it
    /// ran.
    pub(crate) fn add_request_hold(&self, delay: std::time::Duration) {
        self.add_throttle(delay);
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.request_hold_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// The request-time hold not yet set against a byte-rate hold; set against it now.
    pub(crate) fn take_request_hold(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.request_hold_ms.swap(0, Ordering::Relaxed))
    }

    /// Adds `spent` to the request's time on the broker's threads.
    pub(crate) fn add_thread_time(&self, spent: std::time::Duration) {
        let ns = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.thread_time_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The request's time on the broker's threads so far.
    pub fn thread_time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.thread_time_ns.load(Ordering::Relaxed))
    }

    /// Takes the thread time measured so far, leaving none (what is counted against a
    /// quota is counted once).
    pub(crate) fn take_thread_time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.thread_time_ns.swap(0, Ordering::Relaxed))
    }

    /// Records that a quota held the request back for `delay`.
    pub fn add_throttle(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.throttle_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// How long quotas held the request back so far, in milliseconds, as Kafka's
    /// responses carry it.
    pub fn throttle_ms(&self) -> i32 {
        i32::try_from(self.throttle_ms.load(Ordering::Relaxed)).unwrap_or(i32::MAX)
    }

    /// With the client's id.
    pub fn with_client_id(mut self, client_id: Option<String>) -> RequestContext {
        self.client_id = client_id;
        self
    }
}
