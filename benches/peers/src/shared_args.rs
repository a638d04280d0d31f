//! The command-line options the workloads share: which peer, where (loopback only), how
//! long a run may take, how results are printed; and the parsers of record sizes and
//! stream names, which check their bounds before any work starts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Args;

use crate::output::Format;
use crate::peer::{Endpoint, PeerKind};

/// Largest record this bench sends: NATS refuses payloads over its `max_payload` (1 MB by
/// default) and RabbitMQ's stream client frames are 1 MiB.
pub const MAX_RECORD_BYTES: u64 = 512 << 10;

/// Longest a stream name may be.
const MAX_STREAM_NAME: usize = 64;

/// Longest a whole run may be given.
const MAX_TIMEOUT_SECS: u64 = 3600;

/// How long connecting and each control request (create, delete, info) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Which peer to drive and how.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// The peer to measure.
    #[arg(long, value_enum, env = "WEIR_PEER")]
    pub peer: PeerKind,

    /// Address the peer listens on. Loopback only: this bench loads servers on this
    /// machine and refuses any other address.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), value_parser = parse_loopback_host)]
    pub host: IpAddr,

    /// Port of the peer (NATS client port, Redis port, RabbitMQ stream port, Kafka
    /// listener). Default: the one run-peers.sh uses for that peer (17422 NATS, 17479
    /// Redis, 17452 RabbitMQ, 17409 Kafka).
    #[arg(long)]
    pub port: Option<u16>,

    /// The name results carry in `system`. Default: the peer's (`nats`, `redis`,
    /// `rabbitmq`, `kafka`); name the broker behind `--peer kafka` (`weir-kafka`, `tansu`).
    #[arg(long, value_parser = parse_stream_name)]
    pub system: Option<String>,

    /// `--peer kafka`: the broker fsyncs records before it answers acks=all (Weir's
    /// default, flush.policy=group-commit). Recorded in the result's `acks`; not checked.
    #[arg(long)]
    pub fsync_before_ack: bool,

    /// `--peer kafka`: a config the topics this run creates are created with, as
    /// `key=value` (repeatable; e.g. `write.direct=true` for a Weir broker). Refused for
    /// other peers, whose streams have no such configs.
    #[arg(long = "topic-config", value_parser = parse_topic_config)]
    pub topic_configs: Vec<(String, String)>,

    /// The run fails, rather than hangs, if it has not finished after this many seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout_secs: u64,

    /// Output format of the result (progress always goes to stderr).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

impl ConnectArgs {
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: SocketAddr::new(self.host, self.port.unwrap_or(self.peer.default_port())),
            request_timeout: REQUEST_TIMEOUT,
        }
    }

    /// The name results carry in `system`.
    pub fn system(&self) -> &str {
        self.system.as_deref().unwrap_or(self.peer.name())
    }

    /// What the command line says of a Kafka-wire broker.
    #[cfg(feature = "kafka")]
    pub fn broker_facts(&self) -> crate::peer::kafka_wire::BrokerFacts {
        crate::peer::kafka_wire::BrokerFacts {
            system: self.system().to_owned(),
            fsync_before_ack: self.fsync_before_ack,
            topic_configs: self.topic_configs.clone(),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// Longest `key=value` a `--topic-config` may be.
const MAX_TOPIC_CONFIG: usize = 256;

/// Parses a `--topic-config key=value`.
pub fn parse_topic_config(s: &str) -> Result<(String, String), String> {
    if s.len() > MAX_TOPIC_CONFIG {
        return Err(format!("longer than {MAX_TOPIC_CONFIG} bytes"));
    }
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

/// Parses a host for a bench: an IP address (or `localhost`) on loopback only.
pub fn parse_loopback_host(s: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = match s {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => s
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address (or `localhost`)"))?,
    };
    if ip.is_loopback() {
        Ok(ip)
    } else {
        Err(format!(
            "{ip} is not a loopback address: this bench only loads servers on this machine (127.0.0.0/8 or ::1)"
        ))
    }
}

/// Parses a record size: `100`, `100B`, `1KiB`, `1 KiB`, `4k` (k = KiB), up to
/// [`MAX_RECORD_BYTES`].
pub fn parse_record_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as 100, 1KiB or 64KiB"))?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        other => return Err(format!("unknown size unit `{other}` (use B, KiB or MiB)")),
    };
    let bytes = number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{s}` is too large"))?;
    if bytes == 0 || bytes > MAX_RECORD_BYTES {
        return Err(format!(
            "record size must be 1 B to {} KiB, not {bytes} B",
            MAX_RECORD_BYTES >> 10
        ));
    }
    Ok(bytes)
}

/// Parses a stream name: letters, digits, `-` and `_`, which every peer accepts as a
/// stream name and NATS as a subject.
pub fn parse_stream_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= MAX_STREAM_NAME
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "stream names are 1 to {MAX_STREAM_NAME} letters, digits, `-` or `_`, not `{s}`"
        ))
    }
}

/// The stream `produce` writes and `consume` reads back by default, one per record size.
pub fn default_stream(record_bytes: u64) -> String {
    format!("weir-bench-{record_bytes}b")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts() {
        assert!(parse_loopback_host("127.0.0.1").is_ok());
        assert!(parse_loopback_host("127.1.2.3").is_ok());
        assert!(parse_loopback_host("::1").is_ok());
        assert!(parse_loopback_host("localhost").is_ok());
        assert!(parse_loopback_host("10.0.0.1").is_err());
        assert!(parse_loopback_host("192.168.1.1").is_err());
        assert!(parse_loopback_host("0.0.0.0").is_err());
        assert!(parse_loopback_host("example.com").is_err());
    }

    #[test]
    fn record_sizes() {
        assert_eq!(parse_record_bytes("100"), Ok(100));
        assert_eq!(parse_record_bytes("100B"), Ok(100));
        assert_eq!(parse_record_bytes("1KiB"), Ok(1024));
        assert_eq!(parse_record_bytes("1 KiB"), Ok(1024));
        assert_eq!(parse_record_bytes("4k"), Ok(4096));
        assert!(parse_record_bytes("0").is_err());
        assert!(parse_record_bytes("1MiB").is_err());
        assert!(parse_record_bytes("1x").is_err());
        assert!(parse_record_bytes("").is_err());
    }

    #[test]
    fn stream_names() {
        assert!(parse_stream_name("weir-bench-100b").is_ok());
        assert!(parse_stream_name("a.b").is_err());
        assert!(parse_stream_name("").is_err());
        assert!(parse_stream_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn topic_configs() {
        assert_eq!(
            parse_topic_config("write.direct=true"),
            Ok(("write.direct".to_owned(), "true".to_owned()))
        );
        assert_eq!(
            parse_topic_config("cleanup.policy=compact,delete"),
            Ok(("cleanup.policy".to_owned(), "compact,delete".to_owned()))
        );
        assert!(parse_topic_config("write.direct").is_err());
        assert!(parse_topic_config("=true").is_err());
        assert!(parse_topic_config(&format!("k={}", "x".repeat(300))).is_err());
    }
}
