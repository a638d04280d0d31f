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
//! Authentication by password is here too, free of I/O and of any protocol's framing:
//! [`scram`] (SCRAM-SHA-256 and SCRAM-SHA-512 as Kafka speaks them: the stored
//! credentials, the server's and the client's side of an exchange) and [`sasl`] (the
//! error every exchange returns, PLAIN messages, HTTP `Basic` credentials, and a bounded
//! cache of password checks for listeners that receive a password with each request),
//! and [`token`], API tokens' text (made, parsed, their secret's digest compared).
//! The listeners feed them bytes and keep the credentials where they please.
//!
//! Architecture invariant: this crate knows no other Weir crate, and TLS, TCP and URIs
//! but never a protocol above them (no tonic, axum or Kafka type): each server adapts
//! [`tls::TlsIncoming`] itself. It stores nothing (credentials are handed to it by the
//! caller).

pub mod certs;
pub mod dial;
pub mod sasl;
pub mod scram;
pub mod tls;
pub mod token;
