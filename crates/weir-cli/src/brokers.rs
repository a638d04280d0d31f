//! `--brokers`, `--timeout`, `--connect-timeout` and the TLS options `--tls-ca`,
//! `--tls-cert`, `--tls-key` (shared by every client command) and the hints added to
//! client errors so that a person can act on them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use weir_client::ClientError;
use weir_client::connection::{BrokerFailure, ClientTls, ConnectOptions, FailureReason, Timeouts};
use weir_security::dial::TlsDialer;

use crate::UsageError;
use crate::output::parse_duration;

/// The broker address used when neither `--brokers` nor `WEIR_BROKERS` is set.
pub const DEFAULT_BROKERS: &str = weir_client::connection::DEFAULT_BROKER;
/// `--timeout`'s default: `weir_client::connection::DEFAULT_REQUEST_TIMEOUT`.
const DEFAULT_TIMEOUT: &str = "30s";
/// `--connect-timeout`'s default: `weir_client::connection::DEFAULT_CONNECT_TIMEOUT`.
const DEFAULT_CONNECT_TIMEOUT: &str = "3s";
/// What to try when an address answered, but not with gRPC.
const NOT_GRPC_HINT: &str = "is this the broker's client port (default 9292), not its HTTP port?";

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
    /// How long a broker may take to answer a request (e.g. 30s, 500ms, 2m) before the
    /// command fails, naming the broker.
    #[arg(
        long,
        env = "WEIR_TIMEOUT",
        value_name = "DURATION",
        default_value = DEFAULT_TIMEOUT,
        value_parser = parse_timeout,
        global = true
    )]
    pub timeout: Duration,
    /// How long connecting to a broker may take: the TCP connection, then the broker's
    /// first answer (a port that accepts connections and never answers fails after this).
    #[arg(
        long,
        env = "WEIR_CONNECT_TIMEOUT",
        value_name = "DURATION",
        default_value = DEFAULT_CONNECT_TIMEOUT,
        value_parser = parse_timeout,
        global = true
    )]
    pub connect_timeout: Duration,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// TLS to the brokers: a CA file turns it on.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Speak TLS to the brokers, trusting the CAs in this PEM file (the CA that signed
    /// the brokers' certificates); addresses may then be written https://HOST:PORT
    /// [default: plaintext].
    #[arg(long, env = "WEIR_TLS_CA", value_name = "FILE", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) to present to brokers that ask for one (mutual TLS):
    /// its common name is the client's principal. Needs --tls-key and --tls-ca.
    #[arg(long, env = "WEIR_TLS_CERT", value_name = "FILE", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "WEIR_TLS_KEY", value_name = "FILE", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Authenticate every call as this user (a user made with `weir user create`); the
    /// password comes from WEIR_PASSWORD, else a prompt. Needs TLS (--tls-ca): a password
    /// never travels in clear.
    #[arg(long, env = "WEIR_USER", value_name = "NAME", global = true)]
    pub user: Option<String>,
    /// Authenticate every call with this API token (`weir token create`), as its owner;
    /// instead of --user. Needs TLS (--tls-ca). Prefer WEIR_TOKEN: a flag shows in the
    /// process list.
    #[arg(
        long,
        env = "WEIR_TOKEN",
        value_name = "TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The password once read: a command that connects more than once asks once.
    #[arg(skip)]
    password: std::sync::OnceLock<String>,
}

/// The password of `--user`: WEIR_PASSWORD, else asked for on the terminal.
fn password(user: &str) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("WEIR_PASSWORD") {
        return Ok(password);
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(UsageError(format!(
            "--user {user} needs a password: set WEIR_PASSWORD (stdin is not a terminal to ask on)"
        ))
        .into());
    }
    Ok(rpassword::prompt_password(format!(
        "password for {user}: "
    ))?)
}

/// A CA file and, for mutual TLS, a certificate and its key.
type TlsFiles<'a> = (&'a Path, Option<(&'a Path, &'a Path)>);

impl TlsArgs {
    /// The CA file and the client identity the options name: `None` without
    /// `--tls-ca`. A certificate without its key (or without a CA) is a usage error.
    fn files(&self) -> anyhow::Result<Option<TlsFiles<'_>>> {
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => {
                return Err(UsageError(
                    "a client certificate needs both --tls-cert and --tls-key (WEIR_TLS_CERT, \
                     WEIR_TLS_KEY)"
                        .to_owned(),
                )
                .into());
            }
        };
        match &self.tls_ca {
            Some(ca) => Ok(Some((ca.as_path(), identity))),
            None if identity.is_some() => Err(UsageError(
                "--tls-cert and --tls-key need --tls-ca (WEIR_TLS_CA): the CA that signed the \
                 brokers' certificates"
                    .to_owned(),
            )
            .into()),
            None => Ok(None),
        }
    }

    /// The TLS the options ask for, with its files read (see [`Self::files`]); a file
    /// that cannot be used is an error naming it.
    pub fn client_tls(&self) -> anyhow::Result<Option<ClientTls>> {
        let tls = match self.files()? {
            Some((ca, identity)) => ClientTls::from_files(ca, identity)?,
            None if self.user.is_some() => {
                return Err(UsageError(
                    "--user needs TLS (--tls-ca or WEIR_TLS_CA): a password is never sent in clear"
                        .to_owned(),
                )
                .into());
            }
            None if self.token.is_some() => {
                return Err(UsageError(
                    "--token needs TLS (--tls-ca or WEIR_TLS_CA): a token is never sent in clear"
                        .to_owned(),
                )
                .into());
            }
            None => return Ok(None),
        };
        if let Some(token) = &self.token {
            if self.user.is_some() {
                return Err(UsageError(
                    "give --user (WEIR_USER) or --token (WEIR_TOKEN), not both".to_owned(),
                )
                .into());
            }
            return Ok(Some(
                tls.with_token(token)
                    .map_err(|e| UsageError(e.to_string()))?,
            ));
        }
        Ok(Some(match &self.user {
            Some(user) => {
                if self.password.get().is_none() {
                    let _ = self.password.set(password(user)?);
                }
                let password = self.password.get().expect("set above");
                tls.with_user(user, password)?
            }
            None => tls,
        }))
    }

    /// [`Self::client_tls`] as a dialler, for a plain tonic channel.
    pub fn dialer(&self) -> anyhow::Result<Option<TlsDialer>> {
        match self.files()? {
            Some((ca, identity)) => Ok(Some(TlsDialer::from_files(ca, identity)?)),
            None => Ok(None),
        }
    }
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

    /// `--connect-timeout` and `--timeout`.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.connect_timeout,
            request: self.timeout,
        }
    }

    /// The TLS options (see [`TlsArgs::client_tls`]).
    pub fn tls(&self) -> anyhow::Result<Option<ClientTls>> {
        self.tls.client_tls()
    }

    /// [`Self::timeouts`] and [`Self::tls`].
    pub fn connect_options(&self) -> anyhow::Result<ConnectOptions> {
        Ok(ConnectOptions {
            timeouts: self.timeouts(),
            tls: self.tls()?,
        })
    }
}

/// A duration above zero.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("a timeout must be above zero".to_owned()),
        d => Ok(d),
    }
}

/// Whether a connection failed in its TLS handshake (rustls' own words): a CA that
/// does not match, or a broker that does not speak TLS.
fn is_tls_failure(why: &str) -> bool {
    [
        "certificate",
        "corrupt message",
        "tls handshake",
        "peer is incompatible",
    ]
    .iter()
    .any(|word| why.to_ascii_lowercase().contains(word))
}

/// What to try after none of `failures` could be connected to, by what went wrong.
fn connect_hint(failures: &[BrokerFailure]) -> String {
    let several = failures.len() > 1;
    let first = failures.first().map(|f| &f.reason);
    let alike = failures
        .iter()
        .all(|f| std::mem::discriminant(&f.reason) == std::mem::discriminant(&failures[0].reason));
    let there = if several { "at one of them" } else { "there" };
    match first {
        Some(FailureReason::NotGrpc(_)) if alike => NOT_GRPC_HINT.to_owned(),
        Some(FailureReason::Silent(_)) if alike => "is it a Weir broker's client port, and is \
            the broker running (not stopped or overloaded)? --connect-timeout \
            (WEIR_CONNECT_TIMEOUT) waits longer"
            .to_owned(),
        Some(FailureReason::ConnectTimedOut(_)) if alike => "is the address right, and \
            reachable from here (no firewall in the way)? --connect-timeout \
            (WEIR_CONNECT_TIMEOUT) waits longer"
            .to_owned(),
        Some(FailureReason::ConnectFailed(why)) if alike && is_tls_failure(why) => {
            "does the broker speak TLS, and does --tls-ca (WEIR_TLS_CA) name the CA that \
             signed its certificate?"
                .to_owned()
        }
        Some(FailureReason::ConnectFailed(_)) if alike => {
            "is the address right? --brokers (or WEIR_BROKERS) sets it".to_owned()
        }
        // A TLS listener closes a plaintext connection before answering.
        Some(FailureReason::Broken(_)) if alike => format!(
            "is `weir serve` running {there}? If the brokers speak TLS, give --tls-ca \
             (WEIR_TLS_CA)"
        ),
        _ => format!(
            "is `weir serve` running {there}? --brokers (or WEIR_BROKERS) names the brokers"
        ),
    }
}

/// The error's message (with its causes) plus, for the client errors people meet most,
/// what to do about it. A broker that could not be reached, or did not answer, is one
/// sentence: what happened, naming the broker, and what to try.
pub fn explain(error: &anyhow::Error) -> String {
    let message = format!("{error:#}");
    for cause in error.chain() {
        match cause.downcast_ref::<ClientError>() {
            // What the command was doing when it connected adds nothing.
            Some(connect @ ClientError::Connect { failures }) => {
                let separator = match failures.first().map(|f| &f.reason) {
                    Some(FailureReason::NotGrpc(_)) => ":",
                    _ => ";",
                };
                return format!("{connect}{separator} {}", connect_hint(failures));
            }
            Some(not_grpc @ ClientError::NotGrpc(_)) => {
                return format!("{not_grpc}: {NOT_GRPC_HINT}");
            }
            Some(ClientError::DeadlineExceeded(_)) => {
                return format!(
                    "{message}; is the broker overloaded or stopped? --timeout (WEIR_TIMEOUT) \
                     waits longer"
                );
            }
            _ => {}
        }
    }
    let hint = error
        .chain()
        .find_map(|cause| match cause.downcast_ref::<ClientError>()? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_that_did_not_answer_a_request_is_one_sentence_with_what_to_try() {
        let error = anyhow::Error::from(ClientError::DeadlineExceeded(
            "broker a:1 did not answer within 30 s".to_owned(),
        ))
        .context("listing topics");
        assert_eq!(
            explain(&error),
            "listing topics: deadline exceeded: broker a:1 did not answer within 30 s; is the \
             broker overloaded or stopped? --timeout (WEIR_TIMEOUT) waits longer"
        );
    }

    #[test]
    fn timeouts_are_durations_above_zero() {
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_timeout("0s").is_err());
        // The defaults in --help are the client's.
        assert_eq!(
            parse_timeout(DEFAULT_TIMEOUT),
            Ok(weir_client::connection::DEFAULT_REQUEST_TIMEOUT)
        );
        assert_eq!(
            parse_timeout(DEFAULT_CONNECT_TIMEOUT),
            Ok(weir_client::connection::DEFAULT_CONNECT_TIMEOUT)
        );
    }
}
