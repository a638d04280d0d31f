//! One lazily connected `tonic` channel per peer address, shared by every call and
//! session a client makes to that peer (HTTP/2 multiplexes them on one connection).
//!
//! Channels are cached by the address string, never by a resolved socket address: a
//! channel resolves the name again every time it reconnects, so a peer that moved (a
//! restarted container gets a new IP; a stopped one's name stops resolving) is found
//! at its new address, and a name that does not resolve fails that attempt only.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use tonic::transport::{Channel, Endpoint};

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
}

impl fmt::Debug for PeerChannels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("PeerChannels")
            .field("addresses", &channels.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PeerChannels {
    /// The channel to `address` (`host:port`, or a `http://` URI), created on first use;
    /// it connects on its first call and reconnects (resolving the name again) after a
    /// failure. Must run inside the tokio runtime.
    pub(crate) fn channel(&self, address: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = endpoint(address)?.connect_lazy();
        if channels.len() >= MAX_PEER_CHANNELS {
            channels.clear();
        }
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
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
