//! TLS of the broker's listeners and of the channels it dials, from the configuration
//! (`tls_*`, with `kafka_tls_*` and `admin_tls_*` overriding it for their listeners):
//! a [`ServerTls`] per protocol and set of files, since each protocol offers its own
//! application protocols (its registration's ALPN: gRPC `h2`; admin HTTP `h2` and
//! `http/1.1`; Kafka none), each reloaded from its files by its own watcher; and the
//! [`TlsDialer`] for peers.
//!
//! The handshakes are weir-security's (`incoming`, `accept`): plaintext refused with one
//! rate-limited line, slow handshakes on their own tasks. tonic's own server TLS is not
//! used: it cannot reload a certificate.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_broker::Protocol;
use weir_security::dial::TlsDialer;
use weir_security::tls::{ServerTls, TlsFiles};

use crate::config::{ListenerSpec, ServerConfig};
use crate::listeners;

/// The TLS of each listener (`None`: plaintext) and of the channels to peers.
#[derive(Debug, Default)]
pub(crate) struct BrokerTls {
    /// Each TLS listener's, by listener name. Listeners of one protocol with the same
    /// files share one (and its reload watcher).
    listeners: Vec<(&'static str, Arc<ServerTls>)>,
    /// How this broker dials other brokers (and its own client listener).
    pub(crate) peers: Option<TlsDialer>,
    /// The principal this broker's own certificate names (`tls_cert`): what it is known
    /// by when it calls other brokers.
    pub(crate) node_principal: Option<String>,
}

impl BrokerTls {
    /// Loads every certificate the configuration names, for each listener of `specs`
    /// with the application protocols its protocol's registration offers; an error
    /// names the file and what is wrong with it.
    pub(crate) fn load(config: &ServerConfig, specs: &[ListenerSpec]) -> anyhow::Result<BrokerTls> {
        let mut loaded: Vec<(Protocol, TlsFiles, Arc<ServerTls>)> = Vec::new();
        let mut listeners = Vec::new();
        for spec in specs {
            let Some(files) = &spec.tls else { continue };
            let protocol = spec.listener.protocol;
            let shared = loaded
                .iter()
                .find(|(p, f, _)| *p == protocol && f == files)
                .map(|(_, _, tls)| tls.clone());
            let tls = match shared {
                Some(tls) => tls,
                None => {
                    let alpn = listeners::registration(protocol)?.alpn;
                    let tls = ServerTls::load(protocol.name, files.clone(), alpn)
                        .with_context(|| format!("TLS for {}", spec.setting))?;
                    loaded.push((protocol, files.clone(), tls.clone()));
                    tls
                }
            };
            listeners.push((spec.listener.name, tls));
        }
        let peers = match config.peer_tls()? {
            Some(files) => Some(
                TlsDialer::from_files(&files.ca, Some((&files.cert, &files.key)))
                    .context("TLS to other brokers (--tls-ca with --tls-cert and --tls-key)")?,
            ),
            None => None,
        };
        let node_principal = match config.tls()? {
            Some(files) => weir_security::tls::read_certificates(&files.cert)?
                .first()
                .and_then(weir_security::tls::principal_of),
            None => None,
        };
        Ok(BrokerTls {
            listeners,
            peers,
            node_principal,
        })
    }

    /// The TLS of the listener `name`; `None`: plaintext.
    pub(crate) fn of(&self, name: &str) -> Option<Arc<ServerTls>> {
        self.listeners
            .iter()
            .find(|(listener, _)| *listener == name)
            .map(|(_, tls)| tls.clone())
    }

    /// Watches each listener's files (and SIGHUP) until `stopping`, once per shared
    /// configuration.
    pub(crate) fn watch(&self, stopping: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut watched: Vec<&Arc<ServerTls>> = Vec::new();
        for (_, tls) in &self.listeners {
            if !watched.iter().any(|w| Arc::ptr_eq(w, tls)) {
                watched.push(tls);
            }
        }
        watched
            .into_iter()
            .map(|tls| tls.watch(stopping.clone()))
            .collect()
    }

    /// Whether the listener `name` has TLS (for the start's log line).
    pub(crate) fn is_on(&self, name: &str) -> bool {
        self.of(name).is_some()
    }
}
