//! `--brokers` (shared by every client command) and the hints added to client errors so
//! that a person can act on them.

use clap::Args;
use weir_client::ClientError;

/// The broker address used when neither `--brokers` nor `WEIR_BROKERS` is set.
pub const DEFAULT_BROKERS: &str = weir_client::connection::DEFAULT_BROKER;

/// Where the broker is.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Bootstrap broker addresses (host:port), comma-separated: the first that answers is
    /// used to find the cluster's brokers, and each partition is then read from and
    /// written to its leader.
    #[arg(
        long,
        env = "WEIR_BROKERS",
        value_name = "HOST:PORT,..",
        default_value = DEFAULT_BROKERS,
        value_delimiter = ',',
        global = true
    )]
    pub brokers: Vec<String>,
}

impl BrokerArgs {
    /// The addresses, blanks dropped.
    pub fn list(&self) -> Vec<String> {
        self.brokers
            .iter()
            .map(|b| b.trim().to_owned())
            .filter(|b| !b.is_empty())
            .collect()
    }
}

/// The error's message (with its causes) plus, for the client errors people meet most,
/// what to do about it.
pub fn explain(error: &anyhow::Error) -> String {
    let message = format!("{error:#}");
    let hint = error
        .chain()
        .find_map(|cause| match cause.downcast_ref::<ClientError>()? {
            ClientError::Connect { address, tried, .. } => Some(format!(
                "is a broker running at {}? Start one with `weir serve`, or point \
                 --brokers (or WEIR_BROKERS) at one",
                if tried.len() > 1 {
                    format!("any of {}", tried.join(", "))
                } else {
                    address.clone()
                }
            )),
            ClientError::NotFound(_) => Some(
                "`weir topic list` shows the topics; `weir topic create NAME --partitions N` \
                 makes one"
                    .to_owned(),
            ),
            ClientError::Unavailable(_) => {
                Some("the broker is unreachable or not ready; try again".to_owned())
            }
            ClientError::NotLeader { .. } | ClientError::FencedLeaderEpoch(_) => Some(
                "the partition's leadership is moving between brokers; try again \
                 (`weir topic describe TOPIC` shows the leaders)"
                    .to_owned(),
            ),
            ClientError::NotEnoughReplicas(_) => Some(
                "too few replicas are in sync for acks=all: check the brokers with \
                 `weir cluster describe` and `weir topic describe TOPIC`, or produce with \
                 --acks leader"
                    .to_owned(),
            ),
            _ => None,
        });
    match hint {
        Some(hint) => format!("{message}\n  hint: {hint}"),
        None => message,
    }
}
