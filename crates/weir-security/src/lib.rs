//! Security for every listener, in one place: TLS on rustls with the `ring` provider
//! ([`tls`]: server configurations reloaded from disk, plaintext refused with one log
//! line, the principal of a client certificate) and the certificates of a development
//! set-up ([`certs`], behind `weir dev certs`).
//!
//! No protocol crate builds its own TLS: gRPC, the Kafka listener, the admin listener and
//! the brokers' own channels all take a [`tls::ServerTls`] (and a [`tls::client_config`]
//! to dial out), so a certificate is loaded, checked and reloaded the same way
//! everywhere.

pub mod certs;
pub mod tls;
