//! Security for every listener, in one place: TLS on rustls with the `ring` provider
//! ([`tls`]: server configurations reloaded from disk, plaintext refused with one log
//! line, the principal of a client certificate), the connector that dials TLS servers
//! for gRPC channels ([`dial`]), and the certificates of a development set-up
//! ([`certs`], behind `weir dev certs`).
//!
//! No protocol crate builds its own TLS: gRPC, the Kafka listener, the admin listener and
//! the brokers' own channels all take a [`tls::ServerTls`] (and a [`dial::TlsDialer`]
//! to dial out), so a certificate is loaded, checked and reloaded the same way
//! everywhere.
//!
//! Architecture invariant: this crate knows TLS, TCP and URIs, never a protocol above
//! them (no tonic, axum or Kafka type): each server adapts [`tls::TlsIncoming`] itself.

pub mod certs;
pub mod dial;
pub mod tls;
