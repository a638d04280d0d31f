//! `weir healthcheck`: asks a broker's standard gRPC health service (`grpc.health.v1`)
//! whether it serves, and says so in the exit status. For container `HEALTHCHECK`s and
//! probes where there is no shell and no other tool: the image holds only this binary.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use weir_security::dial::TlsDialer;

use crate::UsageError;
use crate::brokers::TlsArgs;

const EXAMPLES: &str = "\
Examples:
  weir healthcheck
      Exit 0 if the broker on 127.0.0.1:9292 serves, 1 if not (printing why).
  weir healthcheck --address 127.0.0.1:19292 --timeout-ms 500
  weir healthcheck --address localhost:9292 --tls-ca certs/ca.pem
      A broker serving TLS (weir serve --tls-cert ...): the address must be a name its
      certificate is valid for.
  HEALTHCHECK CMD [\"/weir\", \"healthcheck\"]
      In a Dockerfile (exec form: the image has no shell).

A broker reports SERVING from the moment it accepts requests until it starts to shut down
(SIGTERM), then NOT_SERVING while it moves its leaderships away.";

/// Most a health check may wait, so a probe's own timeout stays in charge.
const MAX_TIMEOUT_MS: u64 = 60_000;

/// Check that a broker serves (exit 0) or not (exit 1).
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct HealthcheckArgs {
    /// The broker's gRPC address, HOST:PORT.
    #[arg(
        long,
        env = "WEIR_HEALTHCHECK_ADDRESS",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9292"
    )]
    address: String,
    /// The service to ask about; empty for the broker as a whole.
    #[arg(long, value_name = "NAME", default_value = "")]
    service: String,
    /// Give up after this long (connecting and asking), 1 to 60000.
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    timeout_ms: u64,
    #[command(flatten)]
    tls: TlsArgs,
}

pub async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    weir_server::parse_host_port(&args.address)
        .map_err(|e| UsageError(format!("--address {:?}: {e}", args.address)))?;
    if !(1..=MAX_TIMEOUT_MS).contains(&args.timeout_ms) {
        return Err(UsageError(format!(
            "--timeout-ms {} is out of range: give 1 to {MAX_TIMEOUT_MS}",
            args.timeout_ms
        ))
        .into());
    }
    let timeout = Duration::from_millis(args.timeout_ms);
    let tls = args.tls.dialer()?;
    let status = tokio::time::timeout(timeout, ask(&args.address, &args.service, tls))
        .await
        .with_context(|| {
            format!(
                "{} did not answer a health check within {} ms",
                args.address, args.timeout_ms
            )
        })??;
    match status {
        ServingStatus::Serving => {
            println!("SERVING");
            Ok(())
        }
        other => bail!("{} reports {}", args.address, other.as_str_name()),
    }
}

async fn ask(
    address: &str,
    service: &str,
    tls: Option<TlsDialer>,
) -> anyhow::Result<ServingStatus> {
    // `http` with TLS too: the dialler sets it up beneath the channel.
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .with_context(|| format!("{address:?} is not a usable address"))?;
    let channel = match tls {
        Some(tls) => endpoint.connect_with_connector(tls).await,
        None => endpoint.connect().await,
    };
    let channel = channel.with_context(|| format!("connecting to {address}"))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .with_context(|| format!("health check of {address}"))?
        .into_inner();
    Ok(ServingStatus::try_from(answer.status).unwrap_or(ServingStatus::Unknown))
}
