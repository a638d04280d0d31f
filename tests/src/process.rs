//! A broker process as the load tests look at it from outside: its resident memory
//! (`/proc/PID/status`) and a plain gRPC channel to it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Channel, Endpoint};

/// A memory figure of process `pid` in KiB: `field` is a `/proc/PID/status` key such as
/// `VmRSS:` or `VmHWM:`.
pub fn rss_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed line")?
        .parse()?)
}

/// A plaintext gRPC channel to `addr`, connected within 2 s.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?)
}
