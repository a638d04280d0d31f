//! TLS of the broker's listeners and of the channels it dials, from the configuration
//! (`tls_*`, with `kafka_tls_*` and `admin_tls_*` overriding it for their listeners):
//! one [`ServerTls`] per kind of listener, since each offers its own application
//! protocols (gRPC: `h2`; admin HTTP: `h2` and `http/1.1`; Kafka: none), each reloaded
//! from its files by its own watcher; and the [`TlsDialer`] for peers.
//!
//! The handshakes are weir-security's (`incoming`, `accept`): plaintext refused with one
//! rate-limited line, slow handshakes on their own tasks. tonic's own server TLS is not
//! used: it cannot reload a certificate.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_security::dial::TlsDialer;
use weir_security::tls::{ALPN_H2, ServerTls};

use crate::config::ServerConfig;

/// ALPN protocols of the admin HTTP listener (axum serves both).
const ALPN_ADMIN: [&[u8]; 2] = [ALPN_H2, b"http/1.1"];

/// The TLS of each listener (`None`: plaintext) and of the channels to peers.
#[derive(Debug, Default)]
pub(crate) struct BrokerTls {
    /// The gRPC client, external and internal listeners.
    pub(crate) grpc: Option<Arc<ServerTls>>,
    pub(crate) admin: Option<Arc<ServerTls>>,
    pub(crate) kafka: Option<Arc<ServerTls>>,
    /// How this broker dials other brokers (and its own client listener).
    pub(crate) peers: Option<TlsDialer>,
    /// The principal this broker's own certificate names (`tls_cert`): what it is known
    /// by when it calls other brokers.
    pub(crate) node_principal: Option<String>,
}

impl BrokerTls {
    /// Loads every certificate the configuration names; an error names the file and
    /// what is wrong with it.
    pub(crate) fn load(config: &ServerConfig) -> anyhow::Result<BrokerTls> {
        let grpc = match config.tls()? {
            Some(files) => Some(
                ServerTls::load("grpc", files, &[ALPN_H2])
                    .context("TLS for the gRPC listeners (--tls-cert)")?,
            ),
            None => None,
        };
        let admin = match config.admin_tls()? {
            Some(files) => Some(
                ServerTls::load("admin", files, &ALPN_ADMIN)
                    .context("TLS for the admin HTTP listener")?,
            ),
            None => None,
        };
        let kafka = match config.kafka_tls()? {
            Some(files) => {
                Some(ServerTls::load("kafka", files, &[]).context("TLS for the Kafka listeners")?)
            }
            None => None,
        };
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
            grpc,
            admin,
            kafka,
            peers,
            node_principal,
        })
    }

    /// Watches each listener's files (and SIGHUP) until `stopping`.
    pub(crate) fn watch(&self, stopping: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        [&self.grpc, &self.admin, &self.kafka]
            .into_iter()
            .flatten()
            .map(|tls| tls.watch(stopping.clone()))
            .collect()
    }
}
