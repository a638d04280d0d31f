//! TLS for the listeners and for dialling out, on rustls with the `ring` provider.
//!
//! - [`ServerTls`] holds a listener's server configuration, built from PEM files (a
//!   certificate chain, its key, and optionally the CAs that client certificates must
//!   chain to), and rebuilds it when the files change on disk or the process gets SIGHUP
//!   ([`ServerTls::watch`]). Each connection takes the configuration current when it
//!   arrives, so a reload affects new connections only and never fails one in flight; a
//!   reload that fails (a half-written file, a key that does not match) keeps the last
//!   good configuration and logs why.
//! - [`accept`] refuses a client that speaks plaintext to a TLS listener: the first byte
//!   of a TLS connection is a handshake record (22); anything else is logged once per
//!   [`PLAINTEXT_LOG_INTERVAL`] (with how many there were) and closed, where a handshake
//!   error would leave the client waiting or reading garbage. [`incoming`] runs it for
//!   every connection of a listener, each handshake on its own task, for servers that
//!   take a stream of connections (tonic, axum).
//! - With client CAs configured (mutual TLS), a client certificate is verified if the
//!   client presents one, and names the connection's principal ([`principal_of`]); a
//!   client without one may still connect and authenticate another way (SCRAM), as
//!   Kafka's `ssl.client.auth=requested`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
/// A server-side TLS connection, as [`accept`] hands it over (re-exported so a listener
/// can name it without depending on tokio-rustls).
pub use tokio_rustls::server::TlsStream;

/// How often [`ServerTls::watch`] looks at the files for a change.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// How long a client has, from the connection, to send its first byte and finish the
/// handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest time between two log lines about plaintext clients of one listener.
pub const PLAINTEXT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 22;

/// Application protocols a listener offers in the handshake: gRPC needs `h2`.
pub const ALPN_H2: &[u8] = b"h2";

/// The PEM files of a listener's TLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the listener's own certificate first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CAs that client certificates must chain to (mutual TLS); `None`: no client
    /// certificates are asked for.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}: {why}", path.display())]
    Read { path: PathBuf, why: io::Error },
    #[error("{}: {why}", path.display())]
    Pem { path: PathBuf, why: String },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("the certificate {} and key {} do not make a TLS identity: {why}", cert.display(), key.display())]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        why: rustls::Error,
    },
    #[error("the client CA file {}: {why}", path.display())]
    ClientCa { path: PathBuf, why: String },
    #[error("TLS configuration")]
    Config(#[from] rustls::Error),
}

/// ring's provider with AES-128-GCM first: as safe as AES-256 for TLS (both are TLS 1.3's
/// mandatory suites), and a quarter fewer rounds per block on the data path, where every
/// byte a consumer reads is encrypted (BENCHMARKS.md § TLS on the data path). Servers
/// pick by their own order, so every Weir listener and dialler negotiates it.
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as suite;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        suite::TLS13_AES_128_GCM_SHA256,
        suite::TLS13_AES_256_GCM_SHA384,
        suite::TLS13_CHACHA20_POLY1305_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(provider)
}

/// Every certificate in the PEM file at `path`, in order; at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in the PEM file at `path`.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        why: format!("no private key (PKCS#8, PKCS#1 or SEC1): {e}"),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|why| TlsError::Read {
        path: path.to_owned(),
        why,
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::ClientCa {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// A server configuration from `files`, offering `alpn`.
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    let certs = read_certificates(&files.cert)?;
    let key = read_private_key(&files.key)?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::ClientCa {
                        path: ca.clone(),
                        why: e.to_string(),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|why| TlsError::Identity {
            cert: files.cert.clone(),
            key: files.key.clone(),
            why,
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // The server's order of suites (AES-128-GCM first, see `provider`), not the client's:
    // librdkafka and Java clients list AES-256 first.
    config.ignore_client_order = true;
    Ok(config)
}

/// A client configuration that trusts the CAs in `ca` (not the system's: a Weir cluster
/// has its own CA) and, with `identity` (certificate and key files), presents a client
/// certificate.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certificates(cert)?, read_private_key(key)?)
            .map_err(|why| TlsError::Identity {
                cert: cert.to_owned(),
                key: key.to_owned(),
                why,
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// What the files looked like when last loaded: a change to any reloads.
pub(crate) type Stamps = Vec<Option<(SystemTime, u64)>>;

fn stamps(files: &TlsFiles) -> Stamps {
    stamps_of(
        [
            Some(files.cert.as_path()),
            Some(files.key.as_path()),
            files.client_ca.as_deref(),
        ]
        .into_iter()
        .flatten(),
    )
}

/// The modification time and length of each of `paths` (`None` for one that cannot be
/// read).
pub(crate) fn stamps_of<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Stamps {
    paths
        .into_iter()
        .map(|path| {
            std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// A listener's TLS configuration, reloaded from its files (see the module docs).
#[derive(Debug)]
pub struct ServerTls {
    /// What the logs call this listener ("kafka", "grpc", ...).
    name: &'static str,
    files: TlsFiles,
    alpn: Vec<&'static [u8]>,
    current: RwLock<Arc<ServerConfig>>,
    loaded: Mutex<Stamps>,
    plaintext: Mutex<PlaintextLog>,
}

#[derive(Debug)]
struct PlaintextLog {
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl ServerTls {
    /// Loads `files` for the listener `name`, offering `alpn`; an error says which file
    /// is wrong and how.
    pub fn load(
        name: &'static str,
        files: TlsFiles,
        alpn: &[&'static [u8]],
    ) -> Result<Arc<ServerTls>, TlsError> {
        let loaded = stamps(&files);
        let config = server_config(&files, alpn)?;
        Ok(Arc::new(ServerTls {
            name,
            files,
            alpn: alpn.to_vec(),
            current: RwLock::new(Arc::new(config)),
            loaded: Mutex::new(loaded),
            plaintext: Mutex::new(PlaintextLog {
                logged_at: None,
                unlogged: 0,
            }),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The configuration for a connection arriving now.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rebuilds the configuration from the files; on an error the current one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps_before = stamps(&self.files);
        let config = server_config(&self.files, &self.alpn)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = stamps_before;
        Ok(())
    }

    /// [`Self::reload`]s if a file changed since the last load: whether it did.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamps(&self.files);
        if *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) == now {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }

    /// Reloads on a file change (looked for every [`RELOAD_CHECK_INTERVAL`]) and on
    /// SIGHUP, until `stopping` turns true; each reload or failed reload is one log line.
    pub fn watch(self: &Arc<Self>, mut stopping: watch::Receiver<bool>) -> JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut hangups =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut ticks = tokio::time::interval(RELOAD_CHECK_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A file that fails to load is reported once, not every tick.
            let mut failing = false;
            loop {
                let forced = tokio::select! {
                    _ = ticks.tick() => false,
                    Some(()) = async { hangups.as_mut()?.recv().await } => true,
                    changed = stopping.changed() => {
                        if changed.is_err() || *stopping.borrow() {
                            return;
                        }
                        continue;
                    }
                };
                let outcome = match forced {
                    true => tls.reload().map(|()| true),
                    false => tls.reload_if_changed(),
                };
                match outcome {
                    Ok(true) => {
                        failing = false;
                        tracing::info!(
                            listener = tls.name,
                            cert = %tls.files.cert.display(),
                            "TLS certificate reloaded: new connections use it"
                        );
                    }
                    Ok(false) => {}
                    Err(e) if !failing || forced => {
                        failing = true;
                        tracing::warn!(
                            listener = tls.name,
                            error = %e,
                            "reloading the TLS certificate failed: the last good one stays"
                        );
                    }
                    Err(_) => {}
                }
            }
        })
    }

    fn log_plaintext(&self, peer: Option<std::net::SocketAddr>) {
        let mut log = self.plaintext.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if log
            .logged_at
            .is_some_and(|at| now.duration_since(at) < PLAINTEXT_LOG_INTERVAL)
        {
            log.unlogged += 1;
            return;
        }
        tracing::warn!(
            listener = self.name,
            peer = ?peer,
            more_since_last_line = log.unlogged,
            "a client spoke plaintext to a TLS listener: closed (configure the client for TLS)"
        );
        log.logged_at = Some(now);
        log.unlogged = 0;
    }
}

/// Why a TLS connection was not set up.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("the client spoke plaintext to a TLS listener")]
    Plaintext,
    #[error("the client closed the connection before a handshake")]
    Closed,
    #[error("no TLS handshake within {HANDSHAKE_TIMEOUT:?}")]
    TimedOut,
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
}

/// Sets up TLS on an accepted connection with the configuration current now, refusing
/// plaintext (logged, rate-limited, by the listener's [`ServerTls`]).
pub async fn accept(
    tls: &ServerTls,
    stream: TcpStream,
) -> Result<TlsStream<TcpStream>, AcceptError> {
    let peer = stream.peer_addr().ok();
    let handshake = async {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) => return Err(AcceptError::Closed),
            Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
                tls.log_plaintext(peer);
                return Err(AcceptError::Plaintext);
            }
            Ok(_) => {}
            Err(e) => return Err(AcceptError::Handshake(e)),
        }
        TlsAcceptor::from(tls.config())
            .accept(stream)
            .await
            .map_err(AcceptError::Handshake)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or(Err(AcceptError::TimedOut))
}

/// Most TLS handshakes one [`incoming`] runs at once: past it, connections wait in the
/// listen backlog until a handshake ends (each ends within [`HANDSHAKE_TIMEOUT`]).
pub const MAX_CONCURRENT_HANDSHAKES: usize = 256;

/// Connections that finished their handshake and wait for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// Pause after `accept` failed for want of a resource (out of file descriptors, say)
/// before the next, as axum and hyper do: at once, it would fail again.
const ACCEPT_RETRY: Duration = Duration::from_secs(1);

/// The connections of a TLS listener, each [`accept`]ed (TLS set up, plaintext refused)
/// before it is handed on: a stream for tonic's `serve_with_incoming_shutdown`, or
/// [`TlsIncoming::next`] for other servers. Handshakes run on their own tasks, at most
/// [`MAX_CONCURRENT_HANDSHAKES`] at once, so a slow or silent client never holds up the
/// next. Dropping it stops accepting and closes the listener.
#[derive(Debug)]
pub struct TlsIncoming {
    accepted: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
    local_addr: io::Result<std::net::SocketAddr>,
}

/// [`TlsIncoming`] over `listener`, with the configuration `tls` holds when each
/// connection arrives. Accepted connections get `TCP_NODELAY`.
pub fn incoming(tls: Arc<ServerTls>, listener: tokio::net::TcpListener) -> TlsIncoming {
    let local_addr = listener.local_addr();
    let (ready, accepted) = tokio::sync::mpsc::channel(ACCEPTED_QUEUE);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                permit = handshakes.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                () = ready.closed() => return,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    // One connection that went away before it was accepted.
                    Err(e) if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) => continue,
                    Err(e) => {
                        tracing::warn!(listener = tls.name, error = %e, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                        continue;
                    }
                },
                () = ready.closed() => return,
            };
            let _ = stream.set_nodelay(true);
            let (tls, ready) = (tls.clone(), ready.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match accept(&tls, stream).await {
                    Ok(stream) => {
                        let _ = ready.send((stream, peer)).await;
                    }
                    // Plaintext was logged by `accept`; the others are the client's
                    // business (a wrong CA, a port scan) and would flood the log.
                    Err(e) => {
                        tracing::debug!(listener = tls.name, %peer, error = %e, "TLS connection not set up")
                    }
                }
            });
        }
    });
    TlsIncoming {
        accepted,
        local_addr,
    }
}

impl TlsIncoming {
    /// The next connection with TLS set up, and its peer's address; `None` once the
    /// accepting task ended (it does not while the runtime runs).
    pub async fn next(&mut self) -> Option<(TlsStream<TcpStream>, std::net::SocketAddr)> {
        self.accepted.recv().await
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        match &self.local_addr {
            Ok(addr) => Ok(*addr),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = io::Result<TlsStream<TcpStream>>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.accepted
            .poll_recv(cx)
            .map(|next| next.map(|(stream, _)| Ok(stream)))
    }
}

/// The principal a verified client certificate names: its subject's common name, else its
/// first DNS, email or URI subject alternative name; `None` for a certificate with
/// neither (or one that does not parse, which the verifier would have refused).
pub fn principal_of(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    if let Some(cn) = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        return Some(cn.to_owned());
    }
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
            Some((*s).to_owned())
        }
        _ => None,
    })
}

/// The principal of a TLS connection's client certificate, if it presented one.
pub fn peer_principal(stream: &TlsStream<TcpStream>) -> Option<String> {
    let (_, connection) = stream.get_ref();
    principal_of(connection.peer_certificates()?.first()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsConnector;

    /// Dev certificates written to a temporary directory.
    fn written() -> (tempfile::TempDir, certs::DevCerts) {
        let dir = tempfile::tempdir().unwrap();
        let made = certs::generate(&[]).unwrap();
        made.write(dir.path()).unwrap();
        (dir, made)
    }

    fn node_files(dir: &Path, client_ca: bool) -> TlsFiles {
        TlsFiles {
            cert: dir.join("node.pem"),
            key: dir.join("node-key.pem"),
            client_ca: client_ca.then(|| dir.join("ca.pem")),
        }
    }

    /// Serves one echo connection per accept over `tls`; each accepted connection's
    /// principal (or the accept error) is sent on the returned channel.
    async fn echo_server(
        tls: Arc<ServerTls>,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<Result<Option<String>, String>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let tls = tls.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match accept(&tls, stream).await {
                        Ok(mut stream) => {
                            let _ = tx.send(Ok(peer_principal(&stream)));
                            let mut buf = [0u8; 5];
                            if stream.read_exact(&mut buf).await.is_ok() {
                                let _ = stream.write_all(&buf).await;
                                let _ = stream.flush().await;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                });
            }
        });
        (addr, rx)
    }

    async fn round_trip(
        addr: std::net::SocketAddr,
        config: ClientConfig,
    ) -> io::Result<Vec<CertificateDer<'static>>> {
        let tcp = TcpStream::connect(addr).await?;
        let connector = TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from("localhost").unwrap();
        let mut stream = connector.connect(name, tcp).await?;
        stream.write_all(b"hello").await?;
        let mut back = [0u8; 5];
        stream.read_exact(&mut back).await?;
        assert_eq!(&back, b"hello");
        let certs = stream
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or(&[])
            .to_vec();
        Ok(certs)
    }

    #[tokio::test]
    async fn a_client_trusting_the_ca_talks_to_the_node_and_plaintext_is_refused() {
        let (dir, _) = written();
        let tls = ServerTls::load("test", node_files(dir.path(), false), &[]).unwrap();
        let (addr, mut accepted) = echo_server(tls).await;
        let client = client_config(&dir.path().join("ca.pem"), None, &[]).unwrap();
        round_trip(addr, client).await.unwrap();
        assert_eq!(accepted.recv().await.unwrap(), Ok(None));

        // Plaintext: closed without an answer, and said why.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"\x00\x00\x00\x10plaintext kafka")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?} {buf:?}");
        let refused = accepted.recv().await.unwrap().unwrap_err();
        assert!(refused.contains("plaintext"), "{refused}");
    }

    #[tokio::test]
    async fn expired_certificates_are_refused_on_both_sides() {
        let (dir, made) = written();
        // An expired node certificate: a client trusting its CA refuses it.
        let late = certs::expired(&made.ca.key, false).unwrap();
        std::fs::write(dir.path().join("late.pem"), &late.cert).unwrap();
        std::fs::write(dir.path().join("late-key.pem"), &late.key).unwrap();
        let files = TlsFiles {
            cert: dir.path().join("late.pem"),
            key: dir.path().join("late-key.pem"),
            client_ca: None,
        };
        let tls = ServerTls::load("test", files, &[]).unwrap();
        let (addr, _accepted) = echo_server(tls).await;
        let client = client_config(&dir.path().join("ca.pem"), None, &[]).unwrap();
        let err = round_trip(addr, client).await.unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");

        // An expired client certificate: the broker refuses the handshake.
        let tls = ServerTls::load("test", node_files(dir.path(), true), &[]).unwrap();
        let (addr, mut accepted) = echo_server(tls).await;
        let late = certs::expired(&made.ca.key, true).unwrap();
        std::fs::write(dir.path().join("late-client.pem"), &late.cert).unwrap();
        std::fs::write(dir.path().join("late-client-key.pem"), &late.key).unwrap();
        let identity = (
            dir.path().join("late-client.pem"),
            dir.path().join("late-client-key.pem"),
        );
        let client = client_config(
            &dir.path().join("ca.pem"),
            Some((identity.0.as_path(), identity.1.as_path())),
            &[],
        )
        .unwrap();
        let _ = round_trip(addr, client).await;
        let refused = accepted.recv().await.unwrap().unwrap_err();
        assert!(refused.contains("expired"), "{refused}");
    }

    #[tokio::test]
    async fn a_client_trusting_another_ca_is_refused() {
        let (dir, _) = written();
        let (other, _) = written();
        let tls = ServerTls::load("test", node_files(dir.path(), false), &[]).unwrap();
        let (addr, _accepted) = echo_server(tls).await;
        let client = client_config(&other.path().join("ca.pem"), None, &[]).unwrap();
        let err = round_trip(addr, client).await.unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    #[tokio::test]
    async fn a_client_certificate_names_the_principal_and_one_from_another_ca_is_refused() {
        let (dir, _) = written();
        let (other, _) = written();
        let tls = ServerTls::load("test", node_files(dir.path(), true), &[]).unwrap();
        let (addr, mut accepted) = echo_server(tls).await;
        let ca = dir.path().join("ca.pem");

        let admin = (
            dir.path().join("admin.pem"),
            dir.path().join("admin-key.pem"),
        );
        let client = client_config(&ca, Some((&admin.0, &admin.1)), &[]).unwrap();
        round_trip(addr, client).await.unwrap();
        assert_eq!(accepted.recv().await.unwrap(), Ok(Some("admin".to_owned())));

        // No certificate: allowed (it may authenticate another way), no principal.
        round_trip(addr, client_config(&ca, None, &[]).unwrap())
            .await
            .unwrap();
        assert_eq!(accepted.recv().await.unwrap(), Ok(None));

        // A certificate from another CA: the handshake fails.
        let foreign = (
            other.path().join("client.pem"),
            other.path().join("client-key.pem"),
        );
        let client = client_config(&ca, Some((&foreign.0, &foreign.1)), &[]).unwrap();
        let _ = round_trip(addr, client).await;
        let refused = accepted.recv().await.unwrap().unwrap_err();
        assert!(refused.contains("handshake"), "{refused}");
    }

    #[tokio::test]
    async fn new_files_are_used_for_new_connections_and_a_bad_file_keeps_the_last_good_one() {
        let (dir, _) = written();
        let tls = ServerTls::load("test", node_files(dir.path(), false), &[]).unwrap();
        let (addr, _accepted) = echo_server(tls.clone()).await;
        let ca = dir.path().join("ca.pem");
        let before = round_trip(addr, client_config(&ca, None, &[]).unwrap())
            .await
            .unwrap();
        assert!(!tls.reload_if_changed().unwrap(), "nothing changed");

        // A new node certificate and key (from a new CA, which the client now trusts).
        let renewed_dir = tempfile::tempdir().unwrap();
        certs::generate(&[])
            .unwrap()
            .write(renewed_dir.path())
            .unwrap();
        for file in ["node.pem", "node-key.pem"] {
            std::fs::copy(renewed_dir.path().join(file), dir.path().join(file)).unwrap();
        }
        assert!(tls.reload_if_changed().unwrap());
        let new_ca = renewed_dir.path().join("ca.pem");
        let after = round_trip(addr, client_config(&new_ca, None, &[]).unwrap())
            .await
            .unwrap();
        assert_ne!(before[0], after[0], "the reloaded certificate is served");

        // A key that is not a key: the reload fails, the last good configuration stays.
        std::fs::write(dir.path().join("node-key.pem"), "not a key").unwrap();
        assert!(tls.reload_if_changed().is_err());
        round_trip(addr, client_config(&new_ca, None, &[]).unwrap())
            .await
            .unwrap();
    }

    #[test]
    fn errors_name_the_file_that_is_wrong() {
        let (dir, _) = written();
        let missing = TlsFiles {
            cert: dir.path().join("nope.pem"),
            ..node_files(dir.path(), false)
        };
        let err = server_config(&missing, &[]).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");
        let swapped = TlsFiles {
            cert: dir.path().join("node.pem"),
            key: dir.path().join("client-key.pem"),
            client_ca: None,
        };
        let err = server_config(&swapped, &[]).unwrap_err().to_string();
        assert!(err.contains("do not make a TLS identity"), "{err}");
        let no_cert = TlsFiles {
            cert: dir.path().join("node-key.pem"),
            ..node_files(dir.path(), false)
        };
        let err = server_config(&no_cert, &[]).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
