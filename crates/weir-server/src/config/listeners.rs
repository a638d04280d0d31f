//! Listeners as data: what each one binds, advertises, encrypts and offers for
//! authentication, the checks across them, and `host:port` parsing.

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};

use weir_broker::{Listener, Protocol};
use weir_security::tls::TlsFiles;

use super::{MAX_HOST_CHARS, ServerConfigError};

/// One listener the broker serves, as data: what [`ServerConfig::listeners`](super::ServerConfig::listeners) makes of
/// the settings, and what `weir_server::start` binds and serves through its protocol's
/// registration (`docs/ARCHITECTURE.md` § How to add a listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Its name (the key of its address in the broker's advertised endpoints) and
    /// protocol.
    pub listener: Listener,
    /// The address it binds; port 0 picks a free port.
    pub bind: SocketAddr,
    /// What clients are told to reach it at.
    pub advertised: Advertised,
    /// TLS on its connections; `None`: plaintext.
    pub tls: Option<TlsFiles>,
    /// On an IPv4 loopback address, listen on the same port of `::1` too, so
    /// `localhost` reaches it whichever address it resolves to first.
    pub also_ipv6_loopback: bool,
    /// The ways its clients may prove who they are (SASL mechanism names and the
    /// like; `mTLS` where TLS verifies client certificates).
    pub authentication: Vec<&'static str>,
    /// What it is called in messages ("the Kafka listen address").
    pub setting: &'static str,
}

impl ListenerSpec {
    /// The `host:port` its clients are told, given the address it bound and the client
    /// listener's advertised address; `None` for a listener not advertised.
    pub fn advertised_address(&self, bound: SocketAddr, client: &str) -> Option<String> {
        match &self.advertised {
            Advertised::Not => None,
            Advertised::Given(setting) => {
                Some(advertised_address(setting.as_deref(), bound).to_string())
            }
            Advertised::BoundOrClient if bound.ip().is_unspecified() => Some(client.to_owned()),
            Advertised::BoundOrClient => Some(bound.to_string()),
        }
    }
}

/// What a listener's clients are told to reach it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advertised {
    /// Nothing: it is not in the broker's advertised endpoints (the admin HTTP
    /// listener).
    Not,
    /// This `host:port` (an `*_advertise` setting), or `None`: derived from the bound
    /// address (see [`ServerConfig::advertised_address`](super::ServerConfig::advertised_address)).
    Given(Option<String>),
    /// Its bound address, or, bound to all interfaces, the client listener's advertised
    /// address (the internal listener, which other brokers dial).
    BoundOrClient,
}

/// The ways clients of `listener` authenticate: its protocol's, and a client
/// certificate where its TLS verifies them.
pub(super) fn authentication_of(listener: Listener, tls: Option<&TlsFiles>) -> Vec<&'static str> {
    let mut mechanisms: Vec<&'static str> = match listener {
        Listener::GRPC_INTERNAL => Vec::new(),
        Listener { protocol, .. } if protocol == Protocol::KAFKA => {
            vec!["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
        }
        Listener { protocol, .. } if protocol == weir_amqp::PROTOCOL => vec!["PLAIN", "AMQPLAIN"],
        // A user's password (HTTP basic) or an API token (bearer).
        _ => vec!["basic", "bearer"],
    };
    if tls.is_some_and(|files| files.client_ca.is_some()) {
        mechanisms.push("mTLS");
    }
    mechanisms
}

/// The checks that concern listeners together: every advertised address is `host:port`,
/// and no two listeners bind the same fixed address.
pub(super) fn validate_listeners(listeners: &[ListenerSpec]) -> Result<(), ServerConfigError> {
    for spec in listeners {
        if let Advertised::Given(Some(advertise)) = &spec.advertised {
            parse_host_port(advertise).map_err(|reason| ServerConfigError::BadAdvertise {
                value: advertise.clone(),
                reason,
            })?;
        }
    }
    // Port 0 picks a free port per listener, so only fixed ports can clash.
    let fixed: Vec<&ListenerSpec> = listeners.iter().filter(|s| s.bind.port() != 0).collect();
    for (i, first) in fixed.iter().enumerate() {
        if let Some(second) = fixed[i + 1..].iter().find(|other| other.bind == first.bind) {
            return Err(ServerConfigError::ListenClash {
                addr: first.bind,
                first: first.setting,
                second: second.setting,
            });
        }
    }
    Ok(())
}

/// `setting` if given, else what a client can dial of `bound` (see
/// [`ServerConfig::advertised_address`](super::ServerConfig::advertised_address)).
pub(super) fn advertised_address(setting: Option<&str>, bound: SocketAddr) -> AdvertisedAddress {
    if let Some((host, port)) = setting.and_then(|a| parse_host_port(a).ok()) {
        return AdvertisedAddress {
            host: host.to_owned(),
            port,
        };
    }
    let host = if bound.ip().is_unspecified() {
        match hostname() {
            Ok(name) => name,
            Err(error) => {
                tracing::warn!(%error, "cannot read this machine's host name; advertising localhost (set --advertise)");
                "localhost".to_owned()
            }
        }
    } else {
        bound.ip().to_string()
    };
    AdvertisedAddress {
        host,
        port: bound.port(),
    }
}

/// Where clients are told to reach this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedAddress {
    /// A host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl fmt::Display for AdvertisedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6) and checks both parts: a host name of
/// letters, digits, '-', '.' and '_', or an IP address; a port from 1 to 65535 (port 0
/// cannot be dialled).
pub fn parse_host_port(value: &str) -> Result<(&str, u16), String> {
    if value.contains("://") {
        return Err("give HOST:PORT without a scheme such as http://".into());
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((host, port)) = rest.split_once("]:") else {
            return Err("an IPv6 address in brackets must be followed by :PORT".into());
        };
        let ip = host
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        if ip.is_unspecified() {
            return Err("[::] cannot be dialled; give an address peers can reach".into());
        }
        (host, port)
    } else {
        let Some((host, port)) = value.rsplit_once(':') else {
            return Err("no port".into());
        };
        if host.contains(':') {
            return Err("an IPv6 address needs brackets, as in [::1]:9292".into());
        }
        if host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_unspecified())
        {
            return Err("0.0.0.0 cannot be dialled; give an address peers can reach".into());
        }
        if host.is_empty() {
            return Err("no host".into());
        }
        if host.len() > MAX_HOST_CHARS {
            return Err(format!(
                "the host is {} characters; the limit is {MAX_HOST_CHARS}",
                host.len()
            ));
        }
        if let Some(ch) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(format!("the host {host:?} has the character {ch:?}"));
        }
        (host, port)
    };
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be dialled; give the port peers connect to".into()),
        Ok(port) => Ok((host, port)),
        Err(_) => Err(format!("the port {port:?} is not a number from 1 to 65535")),
    }
}

/// This machine's host name (`gethostname`).
#[cfg(unix)]
pub(super) fn hostname() -> std::io::Result<String> {
    // POSIX caps host names at 255 bytes; one more for the terminator.
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes, the length passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A name that fills the buffer may come back without its terminator.
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok("") => Err(std::io::Error::other("the host name is empty")),
        Ok(name) => Ok(name.to_owned()),
        Err(_) => Err(std::io::Error::other("the host name is not UTF-8")),
    }
}

#[cfg(not(unix))]
pub(super) fn hostname() -> std::io::Result<String> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no gethostname on this platform",
    ))
}
