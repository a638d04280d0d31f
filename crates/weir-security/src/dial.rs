//! Dialling a TLS server for an HTTP/2 (gRPC) client: [`TlsDialer`] is a connector (a
//! `tower` service from a URI to a connection) that opens TCP with `TCP_NODELAY`, sets
//! up TLS with a [`client_config`](crate::tls::client_config) offering ALPN `h2`, and
//! checks the server's certificate against the host name of the URI.
//!
//! tonic's own client TLS would build its configuration from PEM bytes on every
//! endpoint and cannot take a rustls configuration made here; with this connector a
//! channel uses exactly the trust and identity that the broker and the CLI load through
//! this crate. The channel's URI keeps the `http` scheme: the connector, not tonic,
//! owns TLS (tonic refuses an `https` URI unless it does the TLS itself).

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::tls::{ALPN_H2, TlsError, client_config};

/// Connects to TLS servers with one client configuration (see the module docs). Cheap
/// to clone.
#[derive(Clone)]
pub struct TlsDialer {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsDialer")
            .field(
                "client_certificate",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .finish()
    }
}

impl TlsDialer {
    /// A dialler that trusts the CAs in `ca` and, with `identity` (certificate and key
    /// files), presents a client certificate; it offers ALPN `h2`.
    pub fn from_files(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<TlsDialer, TlsError> {
        Ok(TlsDialer::new(client_config(ca, identity, &[ALPN_H2])?))
    }

    /// A dialler with `config` as it is (its ALPN protocols included).
    pub fn new(config: ClientConfig) -> TlsDialer {
        TlsDialer {
            config: Arc::new(config),
        }
    }

    /// Connects to `host:port` (an IPv6 address with or without brackets) and sets up
    /// TLS, checking the certificate against `host`.
    pub async fn connect(&self, host: &str, port: u16) -> io::Result<TlsStream<TcpStream>> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} is not a host name TLS can check: {e}"),
            )
        })?;
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
    }
}

impl tower_service::Service<http::Uri> for TlsDialer {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} has no host"))
            })?;
            let port = uri.port_u16().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} has no port"))
            })?;
            dialer.connect(host, port).await.map(TokioIo::new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs;
    use crate::tls::{ServerTls, TlsFiles, accept, peer_principal};

    #[tokio::test]
    async fn the_dialler_checks_the_host_name_and_presents_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        certs::generate(&[]).unwrap().write(dir.path()).unwrap();
        let files = TlsFiles {
            cert: dir.path().join("node.pem"),
            key: dir.path().join("node-key.pem"),
            client_ca: Some(dir.path().join("ca.pem")),
        };
        let tls = ServerTls::load("test", files, &[ALPN_H2]).unwrap();
        // The second listener is at an address the node certificate does not name.
        let named = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let unnamed = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let ports = [
            named.local_addr().unwrap().port(),
            unnamed.local_addr().unwrap().port(),
        ];
        let server = tokio::spawn(async move {
            let mut principals = Vec::new();
            for listener in [named, unnamed] {
                let (stream, _) = listener.accept().await.unwrap();
                principals.push(accept(&tls, stream).await.ok().map(|s| {
                    let alpn = s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                    (peer_principal(&s), alpn)
                }));
            }
            principals
        });
        let dialer = TlsDialer::from_files(
            &dir.path().join("ca.pem"),
            Some((
                &dir.path().join("client.pem"),
                &dir.path().join("client-key.pem"),
            )),
        )
        .unwrap();
        dialer.connect("[127.0.0.1]", ports[0]).await.unwrap();
        let err = dialer.connect("127.0.0.2", ports[1]).await.unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
        let principals = server.await.unwrap();
        assert_eq!(
            principals[0],
            Some((Some("client".to_owned()), Some(ALPN_H2.to_vec())))
        );
        assert_eq!(principals[1], None);
    }
}
