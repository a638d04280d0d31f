//! Connections to brokers: address parsing and one tuned tonic [`Channel`].
//!
//! Every client (producer, consumer, admin) talks over a channel built here, so the
//! settings that decide throughput live in one place: TCP_NODELAY (Nagle's algorithm
//! stalls small pipelined requests for tens of milliseconds), HTTP/2 windows much larger
//! than the 64 KiB default (which caps one stream at a window per round trip), and
//! message-size limits large enough for a full batch request or fetch response.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::ClientError;

/// The broker address used when none is given.
pub const DEFAULT_BROKER: &str = "127.0.0.1:9292";
/// HTTP/2 flow-control window of each stream: a produce or consume stream may have this
/// much unacknowledged data on the wire, several batches at the default batch size.
pub const STREAM_WINDOW_BYTES: u32 = 4 * 1024 * 1024;
/// HTTP/2 flow-control window of the whole connection, shared by its streams.
pub const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// Largest gRPC message the client sends or accepts: a produce request carries one
/// batch per partition, a fetch response up to 50 MiB by the broker's default, and a
/// single batch may reach `weir_batch::MAX_BATCH_BYTES` (64 MiB).
pub const MAX_MESSAGE_BYTES: usize = weir_batch::MAX_BATCH_BYTES + 1024 * 1024;
/// Long-lived streams (one `Consume` per followed partition) this client opens on one
/// connection before it opens another to the same broker. A broker allows 256
/// concurrent streams per connection (`weir_server::MAX_CONCURRENT_STREAMS_PER_CONNECTION`)
/// and a stream past that waits until another ends, which for a `Consume` stream may
/// be never; half the limit leaves room for the unary requests (metadata, offset
/// lookups, commits) that share the first connection.
pub const MAX_STREAMS_PER_CONNECTION: usize = 128;
/// How long establishing a TCP connection to a broker may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of HTTP/2 keep-alive pings, which find a dead connection on an idle client.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a keep-alive ping may go unanswered before the connection is dropped.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Turns `host:port` or `http://host:port` into a URI with a scheme.
pub fn broker_uri(address: &str) -> String {
    let address = address.trim();
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// Builds the tuned endpoint for one broker address.
fn endpoint(address: &str) -> Result<Endpoint, ClientError> {
    let uri = broker_uri(address);
    let endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|e| ClientError::Config(format!("bad broker address {address:?}: {e}")))?;
    Ok(endpoint
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT))
}

/// The addresses in `brokers`, each entry split at commas (`"a:1,b:2"` is two), blanks
/// dropped; [`DEFAULT_BROKER`] if none is left.
pub fn bootstrap_addresses(brokers: &[String]) -> Vec<String> {
    let addresses: Vec<String> = brokers
        .iter()
        .flat_map(|entry| entry.split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if addresses.is_empty() {
        vec![DEFAULT_BROKER.to_owned()]
    } else {
        addresses
    }
}

/// Connects to the first broker in `brokers` that answers, in order (entries may be
/// comma-separated lists). An empty list means [`DEFAULT_BROKER`].
///
/// The channel reconnects by itself after a connection drops (to the same broker); a
/// request made while it is down fails with [`ClientError::Unavailable`].
pub async fn connect(brokers: &[String]) -> Result<Channel, ClientError> {
    Ok(connect_first(brokers).await?.1)
}

/// [`connect`], also returning the address that answered. Each address that did not is
/// logged (warn) with why, and named in the error if none answered.
pub async fn connect_first(brokers: &[String]) -> Result<(String, Channel), ClientError> {
    let addresses = bootstrap_addresses(brokers);
    let mut failed: Vec<(String, Arc<tonic::transport::Error>)> = Vec::new();
    for address in &addresses {
        match endpoint(address)?.connect().await {
            Ok(channel) => {
                for (failed_address, error) in &failed {
                    tracing::warn!(address = %failed_address, error = %chain(&**error), connected = %address, "broker did not answer; connected to a later one in the list");
                }
                return Ok((address.clone(), channel));
            }
            Err(source) => {
                tracing::debug!(address = %address, error = %chain(&source), "broker connection failed");
                failed.push((address.clone(), Arc::new(source)));
            }
        }
    }
    let tried: Vec<String> = failed.iter().map(|(a, _)| a.clone()).collect();
    let (address, source) = failed.pop().expect("the address list is not empty");
    Err(ClientError::Connect {
        address,
        tried,
        source,
    })
}

/// `error` and its causes, `: `-separated (a transport error's own text is only
/// "transport error"), repeated messages dropped.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let message = c.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = c.source();
    }
    text
}

/// A channel to `address` that connects on first use (and reconnects after a drop):
/// connections to brokers learnt from metadata, so that a dead one costs a failed
/// request (retried elsewhere) rather than a wait here.
pub fn lazy(address: &str) -> Result<Channel, ClientError> {
    Ok(endpoint(address)?.connect_lazy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheme_is_added_only_when_missing() {
        assert_eq!(broker_uri("127.0.0.1:9292"), "http://127.0.0.1:9292");
        assert_eq!(broker_uri(" localhost:1 "), "http://localhost:1");
        assert_eq!(broker_uri("http://b:9292"), "http://b:9292");
        assert_eq!(broker_uri("https://b:9292"), "https://b:9292");
    }

    #[test]
    fn a_bad_address_is_a_config_error() {
        assert!(matches!(endpoint("not a uri"), Err(ClientError::Config(_))));
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_a_connect_error() {
        // Port 1 on loopback: nothing listens there, the connect is refused at once.
        let error = connect(&["127.0.0.1:1".to_owned()]).await.unwrap_err();
        assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
        assert!(error.is_retriable());
    }

    #[test]
    fn entries_may_be_comma_separated_lists() {
        let given = vec![" a:1, b:2 ".to_owned(), String::new(), "c:3".to_owned()];
        assert_eq!(bootstrap_addresses(&given), ["a:1", "b:2", "c:3"]);
        assert_eq!(bootstrap_addresses(&[]), [DEFAULT_BROKER]);
        assert_eq!(bootstrap_addresses(&[",".to_owned()]), [DEFAULT_BROKER]);
    }

    #[tokio::test]
    async fn every_unreachable_broker_is_named() {
        let error = connect(&["127.0.0.1:1,127.0.0.1:2".to_owned()])
            .await
            .unwrap_err();
        let ClientError::Connect { address, tried, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(address, "127.0.0.1:2");
        assert_eq!(tried, &["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(
            error.to_string(),
            "cannot connect to any broker of 127.0.0.1:1, 127.0.0.1:2"
        );
    }
}
