//! The listeners this broker serves, as data: each [`ListenerSpec`] of the configuration
//! is bound ([`bind`]), advertised under its name ([`endpoints`]), and served through
//! its protocol's [`Registration`] in [`PROTOCOLS`], the one table of what protocols
//! the broker speaks. `docs/ARCHITECTURE.md` § How to add a listener.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_broker::metadata::{Endpoints, listener_names};
use weir_broker::{Listener, Protocol};
use weir_security::tls::{ALPN_H2, ServerTls};

use crate::config::ListenerSpec;
use crate::http;
use weir_grpc::{Broker, GrpcServices};

/// One protocol the broker speaks: the application protocols its TLS offers, and how a
/// bound listener of it is served.
pub(crate) struct Registration {
    pub(crate) protocol: Protocol,
    /// ALPN protocols its TLS offers (none for a protocol that does not negotiate).
    pub(crate) alpn: &'static [&'static [u8]],
    /// Serves a bound listener until the broker stops: a task per socket, each ending
    /// with the listener's error, if it failed.
    pub(crate) serve: fn(&Serving, BoundListener) -> Vec<JoinHandle<anyhow::Result<()>>>,
}

/// Every protocol the broker serves. A new one is its crate (its `Protocol`, its
/// handler and its accept loop) and a line here.
pub(crate) const PROTOCOLS: [Registration; 4] = [
    Registration {
        protocol: Protocol::GRPC,
        alpn: &[ALPN_H2],
        serve: |serving, bound| serving.grpc.serve(bound.listener, bound.sockets, bound.tls),
    },
    Registration {
        protocol: Protocol::KAFKA,
        alpn: &[],
        serve: serve_kafka,
    },
    Registration {
        protocol: Protocol::HTTP,
        alpn: &[ALPN_H2, b"http/1.1"],
        serve: serve_admin_http,
    },
    Registration {
        protocol: weir_amqp::PROTOCOL,
        alpn: &[],
        serve: serve_amqp,
    },
];

/// The registration of `protocol`; an error for a protocol nothing serves (a bug: the
/// configuration made a listener of it).
pub(crate) fn registration(protocol: Protocol) -> anyhow::Result<&'static Registration> {
    PROTOCOLS
        .iter()
        .find(|r| r.protocol == protocol)
        .with_context(|| format!("no registration serves the {} protocol", protocol.name))
}

/// What serving a listener takes: the broker, the gRPC services (made once for every
/// gRPC listener), and the signal that it stops.
pub(crate) struct Serving {
    pub(crate) broker: Arc<Broker>,
    pub(crate) grpc: GrpcServices,
    pub(crate) stopping: watch::Receiver<bool>,
}

/// A listener bound to its address.
pub(crate) struct BoundListener {
    pub(crate) listener: Listener,
    /// Its sockets: one, or two where it listens on `::1` besides IPv4 loopback.
    pub(crate) sockets: Vec<TcpListener>,
    /// The address it got (port 0 picks one).
    pub(crate) addr: SocketAddr,
    /// What its clients are told to reach this broker at; `None`: not advertised.
    pub(crate) advertised: Option<String>,
    /// TLS on its connections; `None`: plaintext.
    pub(crate) tls: Option<Arc<ServerTls>>,
}

/// Binds every listener of `specs`, with the TLS `tls_of` gives each, and works out what
/// each advertises (the internal listener may advertise the client listener's address,
/// so that comes once all are bound).
pub(crate) async fn bind(
    specs: &[ListenerSpec],
    tls_of: impl Fn(&ListenerSpec) -> Option<Arc<ServerTls>>,
) -> anyhow::Result<Vec<BoundListener>> {
    let mut bound = Vec::with_capacity(specs.len());
    for spec in specs {
        let (sockets, addr) = bind_sockets(spec).await?;
        bound.push((spec, sockets, addr));
    }
    let client = specs
        .iter()
        .zip(&bound)
        .find(|(spec, _)| spec.listener == Listener::GRPC)
        .and_then(|(spec, (_, _, addr))| spec.advertised_address(*addr, ""))
        .context("the configuration has no gRPC client listener")?;
    Ok(bound
        .into_iter()
        .map(|(spec, sockets, addr)| BoundListener {
            listener: spec.listener,
            sockets,
            addr,
            advertised: spec.advertised_address(addr, &client),
            tls: tls_of(spec),
        })
        .collect())
}

/// Binds `spec`'s address, and on an IPv4 loopback address the same port of `::1` too
/// where `spec` asks for it, so `localhost` works whichever address the client resolves
/// first (a machine without IPv6 gets the IPv4 listener only, with a log line).
async fn bind_sockets(spec: &ListenerSpec) -> anyhow::Result<(Vec<TcpListener>, SocketAddr)> {
    let listener = TcpListener::bind(spec.bind)
        .await
        .with_context(|| format!("binding {} to {}", spec.setting, spec.bind))?;
    let bound = listener.local_addr()?;
    let mut sockets = vec![listener];
    if spec.also_ipv6_loopback && bound.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST) {
        let v6 = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bound.port());
        match TcpListener::bind(v6).await {
            Ok(listener) => sockets.push(listener),
            Err(e) => tracing::info!(
                addr = %v6, error = %e, listener = spec.listener.name,
                "the listener is on IPv4 loopback only (localhost resolving to ::1 will not reach it)"
            ),
        }
    }
    Ok((sockets, bound))
}

/// What this broker advertises: each advertised listener's address under its name, and
/// the internal address (the client listener's when the internal services share it).
pub(crate) fn endpoints(bound: &[BoundListener]) -> Endpoints {
    let mut endpoints = Endpoints::default();
    for listener in bound {
        if let Some(address) = &listener.advertised {
            endpoints.insert(listener.listener.name, address.clone());
        }
    }
    if endpoints.get(listener_names::INTERNAL).is_none() {
        let client = endpoints.client().to_owned();
        endpoints.insert(listener_names::INTERNAL, client);
    }
    endpoints
}

/// Serves every listener of `bound` through its protocol's registration.
pub(crate) fn serve(
    serving: &Serving,
    bound: Vec<BoundListener>,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
    let mut tasks = Vec::new();
    for listener in bound {
        let registration = registration(listener.listener.protocol)?;
        tasks.extend((registration.serve)(serving, listener));
    }
    Ok(tasks)
}

/// A Kafka listener: one adapter per listener (its clients are told every broker's
/// address for this listener's name), shared by its sockets.
fn serve_kafka(serving: &Serving, bound: BoundListener) -> Vec<JoinHandle<anyhow::Result<()>>> {
    let handler = Arc::new(weir_kafka::KafkaBroker::new(
        serving.broker.core.clone(),
        bound.listener,
        bound.advertised.unwrap_or_default(),
    ));
    let options = weir_kafka::Options {
        tls: bound.tls,
        budget: serving.broker.budget.clone(),
        listener: bound.listener,
        ..Default::default()
    };
    bound
        .sockets
        .into_iter()
        .map(|socket| {
            let served = weir_kafka::serve_broker(
                socket,
                handler.clone(),
                serving.stopping.clone(),
                options.clone(),
            );
            tokio::spawn(async move {
                served.await;
                Ok(())
            })
        })
        .collect()
}

/// An AMQP 0-9-1 listener (docs/amqp.md): connections from the broker-wide budget, TLS
/// if its spec has it.
fn serve_amqp(serving: &Serving, bound: BoundListener) -> Vec<JoinHandle<anyhow::Result<()>>> {
    let options = weir_amqp::Options {
        listener: bound.listener,
        budget: serving.broker.budget.clone(),
        tls: bound.tls,
    };
    bound
        .sockets
        .into_iter()
        .map(|socket| {
            let served = weir_amqp::serve(
                socket,
                serving.broker.core.clone(),
                serving.stopping.clone(),
                options.clone(),
            );
            tokio::spawn(async move {
                served.await;
                Ok(())
            })
        })
        .collect()
}

/// The admin HTTP listener: metrics, health and the console.
fn serve_admin_http(
    serving: &Serving,
    bound: BoundListener,
) -> Vec<JoinHandle<anyhow::Result<()>>> {
    bound
        .sockets
        .into_iter()
        .map(|socket| {
            let served = http::serve(
                http::router(serving.broker.clone()),
                socket,
                bound.tls.clone(),
                serving.stopping.clone(),
            );
            tokio::spawn(async move {
                served
                    .await
                    .context("admin HTTP task failed")?
                    .context("admin HTTP server failed")
            })
        })
        .collect()
}
