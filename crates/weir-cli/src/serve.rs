//! `weir serve`: run a broker. Settings come from defaults, then a TOML file
//! (`--config` / `WEIR_CONFIG`), then environment variables, then flags: each layer
//! overrides the one before it.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use weir_server::ServerConfig;

const EXAMPLES: &str = "\
Examples:
  weir serve
      Broker on 127.0.0.1:9292 (gRPC) and 127.0.0.1:9293 (HTTP /metrics, /health),
      data in ./weir-data.
  weir serve --data-dir /var/lib/weir --listen 0.0.0.0:9292
      Serve other hosts too.
  WEIR_LISTEN=127.0.0.1:0 weir serve --admin-listen off
      Any free port, no HTTP endpoint.
  weir serve --config weir.toml
      Settings from a file, e.g.:
        data_dir = \"/var/lib/weir\"
        listen = \"0.0.0.0:9292\"
        admin_listen = \"0.0.0.0:9293\"
        broker_id = 0
        # consumer groups (defaults shown)
        offsets_partitions = 16            # fixed once __consumer_offsets exists
        group_session_timeout_ms = 45000   # a silent member is removed after this
        group_heartbeat_interval_ms = 3000
        offsets_retention_minutes = 10080  # offsets of a group empty this long are deleted

Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=weir=debug) to change the level.
SIGTERM or Ctrl-C stops the broker gracefully (exit status 0).";

/// Run a broker.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ServeArgs {
    /// TOML file with server settings (keys as in weir_server::ServerConfig).
    #[arg(long, env = "WEIR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for topics, logs and metadata [default: ./weir-data].
    #[arg(long, env = "WEIR_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:9292, loopback only].
    #[arg(long, env = "WEIR_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Admin HTTP listen address for /metrics and /health, or "off"
    /// [default: 127.0.0.1:9293].
    #[arg(long, env = "WEIR_ADMIN_LISTEN", value_name = "ADDR|off")]
    admin_listen: Option<String>,
    /// This broker's id [default: 0].
    #[arg(long, env = "WEIR_BROKER_ID", value_name = "ID")]
    broker_id: Option<i32>,
}

impl ServeArgs {
    /// The typed configuration: file, then env and flags (clap already prefers a flag
    /// to its environment variable).
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => ServerConfig::default(),
        };
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(admin) = self.admin_listen {
            config.admin_listen = match admin.as_str() {
                "off" | "none" | "" => None,
                addr => Some(addr.parse().with_context(|| {
                    format!("--admin-listen {addr:?} is not an address or \"off\"")
                })?),
            };
        }
        if let Some(id) = self.broker_id {
            config.broker_id = id;
        }
        Ok(config)
    }
}

/// Runs the broker until SIGTERM or Ctrl-C, then shuts down gracefully.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in log files or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let server = weir_server::start(config).await?;
        server.wait(shutdown_signal()).await
    })
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
