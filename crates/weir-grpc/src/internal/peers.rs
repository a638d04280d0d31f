//! One lazily connected `tonic` channel per peer address, shared by every call and
//! session a client makes to that peer (HTTP/2 multiplexes them on one connection).
//!
//! Channels are cached by the address string, never by a resolved socket address: a
//! channel resolves the name again every time it reconnects, so a peer that moved (a
//! restarted container gets a new IP; a stopped one's name stops resolving) is found
//! at its new address, and a name that does not resolve fails that attempt only.
//!
//! With TLS on (`tls_cert`), every channel to a peer dials with a [`TlsDialer`] that
//! trusts the cluster's CA (`tls_ca`) and presents this broker's certificate; the peer's
//! internal and client listeners then speak TLS only.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use tonic::transport::{Channel, Endpoint};
use weir_security::dial::TlsDialer;

use super::{PEER_CONNECT_TIMEOUT, PEER_KEEPALIVE_INTERVAL, PEER_KEEPALIVE_TIMEOUT};
use crate::{CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES};

/// Peer addresses one client keeps a channel for. A cluster has far fewer brokers; past
/// this, the cache starts over (addresses from metadata that churn, not a working set).
pub const MAX_PEER_CHANNELS: usize = 1024;

/// The channels of one client (fetch sessions, controller calls and quorum RPCs each
/// keep their own, so Raft heartbeats never queue behind replication batches on one
/// connection).
#[derive(Default)]
pub(crate) struct PeerChannels {
    channels: Mutex<HashMap<String, Channel>>,
    /// `None`: plaintext.
    tls: Option<TlsDialer>,
}

impl fmt::Debug for PeerChannels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("PeerChannels")
            .field("addresses", &channels.keys().collect::<Vec<_>>())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PeerChannels {
    /// Channels that dial with `tls`, or in plaintext.
    pub(crate) fn new(tls: Option<TlsDialer>) -> PeerChannels {
        PeerChannels {
            channels: Mutex::default(),
            tls,
        }
    }

    /// The channel to `address` (`host:port`, or a `http://` URI), created on first use;
    /// it connects on its first call and reconnects (resolving the name again) after a
    /// failure. Must run inside the tokio runtime.
    pub(crate) fn channel(&self, address: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = connect_lazy(endpoint(address)?, self.tls.as_ref());
        if channels.len() >= MAX_PEER_CHANNELS {
            channels.clear();
        }
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }
}

/// A channel over `endpoint` that connects on first use, with TLS if `tls` is given.
pub(crate) fn connect_lazy(endpoint: Endpoint, tls: Option<&TlsDialer>) -> Channel {
    match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(tls.clone()),
        None => endpoint.connect_lazy(),
    }
}

/// [`connect_lazy`], connecting now.
pub async fn connect(
    endpoint: Endpoint,
    tls: Option<&TlsDialer>,
) -> Result<Channel, tonic::transport::Error> {
    match tls {
        Some(tls) => endpoint.connect_with_connector(tls.clone()).await,
        None => endpoint.connect().await,
    }
}

/// How the broker connects to a peer: like its public listener's settings (HTTP/2
/// windows sized for MiB batches, `TCP_NODELAY`), plus a connect timeout and keep-alive
/// pings.
fn endpoint(address: &str) -> Result<Endpoint, tonic::transport::Error> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    Ok(Endpoint::from_shared(uri)?
        .tcp_nodelay(true)
        .connect_timeout(PEER_CONNECT_TIMEOUT)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(crate::MAX_FRAME_BYTES)
        .http2_keep_alive_interval(PEER_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(PEER_KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}
