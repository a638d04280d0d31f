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
//!
//! A dialler made from files reads them again before a connection when they changed:
//! a broker whose certificate was renewed presents the new one to the peers it
//! reconnects to, as its listeners do to new clients (files that do not load keep the
//! last good configuration, and say why once).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::tls::{ALPN_H2, Stamps, TlsError, client_config, stamps_of};

/// Connects to TLS servers with one client configuration (see the module docs). Cheap
/// to clone: clones share the configuration.
#[derive(Clone)]
pub struct TlsDialer {
    config: Arc<RwLock<Arc<ClientConfig>>>,
    /// Where the configuration came from, if from files: read again when they change.
    files: Option<Arc<DialerFiles>>,
}

struct DialerFiles {
    ca: PathBuf,
    identity: Option<(PathBuf, PathBuf)>,
    loaded: Mutex<Stamps>,
}

impl DialerFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.ca.as_path()).chain(
            self.identity
                .iter()
                .flat_map(|(cert, key)| [cert.as_path(), key.as_path()]),
        )
    }

    fn load(&self) -> Result<ClientConfig, TlsError> {
        let identity = self
            .identity
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()));
        client_config(&self.ca, identity, &[ALPN_H2])
    }
}

impl std::fmt::Debug for TlsDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsDialer")
            .field("ca", &self.files.as_ref().map(|files| &files.ca))
            .field(
                "client_certificate",
                &self.config().client_auth_cert_resolver.has_certs(),
            )
            .finish()
    }
}

impl TlsDialer {
    /// A dialler that trusts the CAs in `ca` and, with `identity` (certificate and key
    /// files), presents a client certificate; it offers ALPN `h2`.
    pub fn from_files(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<TlsDialer, TlsError> {
        let files = DialerFiles {
            ca: ca.to_owned(),
            identity: identity.map(|(cert, key)| (cert.to_owned(), key.to_owned())),
            loaded: Mutex::new(Vec::new()),
        };
        let stamps = stamps_of(files.paths());
        let config = files.load()?;
        *files.loaded.lock().unwrap_or_else(|p| p.into_inner()) = stamps;
        Ok(TlsDialer {
            config: Arc::new(RwLock::new(Arc::new(config))),
            files: Some(Arc::new(files)),
        })
    }

    /// A dialler with `config` as it is (its ALPN protocols included), never reloaded.
    pub fn new(config: ClientConfig) -> TlsDialer {
        TlsDialer {
            config: Arc::new(RwLock::new(Arc::new(config))),
            files: None,
        }
    }

    fn config(&self) -> Arc<ClientConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The configuration for a connection made now: read again from the files if they
    /// changed since the last look.
    fn current(&self) -> Arc<ClientConfig> {
        let Some(files) = &self.files else {
            return self.config();
        };
        let now = stamps_of(files.paths());
        let mut loaded = files.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if *loaded != now {
            // Loaded or not, the files are not read again until they change: a bad file
            // is reported once.
            *loaded = now;
            match files.load() {
                Ok(config) => {
                    *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
                    tracing::info!(
                        ca = %files.ca.display(),
                        "TLS client configuration reloaded: new connections use it"
                    );
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "reloading the TLS client configuration failed: the last good one stays"
                ),
            }
        }
        drop(loaded);
        self.config()
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
        TlsConnector::from(self.current()).connect(name, tcp).await
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

    #[tokio::test]
    async fn a_renewed_client_certificate_is_presented_on_the_next_connection() {
        let dir = tempfile::tempdir().unwrap();
        certs::generate(&[]).unwrap().write(dir.path()).unwrap();
        let files = TlsFiles {
            cert: dir.path().join("node.pem"),
            key: dir.path().join("node-key.pem"),
            client_ca: Some(dir.path().join("ca.pem")),
        };
        let tls = ServerTls::load("test", files, &[ALPN_H2]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut principals = Vec::new();
            for _ in 0..3 {
                let (stream, _) = listener.accept().await.unwrap();
                let stream = accept(&tls, stream).await.unwrap();
                principals.push(peer_principal(&stream));
            }
            principals
        });
        let (cert, key) = (dir.path().join("me.pem"), dir.path().join("me-key.pem"));
        std::fs::copy(dir.path().join("client.pem"), &cert).unwrap();
        std::fs::copy(dir.path().join("client-key.pem"), &key).unwrap();
        let dialer =
            TlsDialer::from_files(&dir.path().join("ca.pem"), Some((&cert, &key))).unwrap();
        dialer.connect("127.0.0.1", port).await.unwrap();

        // Renewed by the same CA (a node certificate, which may be a client's too).
        let ca_key = std::fs::read_to_string(dir.path().join("ca-key.pem")).unwrap();
        let renewed = certs::renew_node(&ca_key, &[]).unwrap();
        std::fs::write(&key, &renewed.key).unwrap();
        std::fs::write(&cert, format!("{}\n", renewed.cert)).unwrap();
        dialer.connect("127.0.0.1", port).await.unwrap();

        // A broken file: the last good configuration stays.
        std::fs::write(&key, "not a key").unwrap();
        dialer.connect("127.0.0.1", port).await.unwrap();
        let principals = server.await.unwrap();
        let names: Vec<_> = principals.iter().map(Option::as_deref).collect();
        assert_eq!(names, [Some("client"), Some("node"), Some("node")]);
    }
}
