//! Waiting on a condition with a deadline: the only way these tests wait for the cluster
//! (no sleeping for a guessed time), and the hard bound around a whole test.

use std::future::Future;
use std::time::Duration;

use anyhow::bail;
use tokio::time::Instant;

/// How often a condition is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// Probes until `probe` returns `Some`, for at most `limit`; the error names `what`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// Runs a whole test body under a hard bound: past `limit` the test fails (and the
/// cluster it owns is dropped, killing its processes and printing their logs).
///
/// The `weir` binary under test is built first, outside the bound: after a change to the
/// broker that build takes minutes, which a test's bound was never meant to hold (a
/// test run right after a change timed out in it). A failed build is reported where the
/// test starts a node.
pub async fn bounded<T>(limit: Duration, body: impl Future<Output = T>) -> T {
    let _ = tokio::task::spawn_blocking(crate::binary::weir_binary).await;
    match tokio::time::timeout(limit, body).await {
        Ok(out) => out,
        Err(_) => panic!("test timed out after {limit:?}"),
    }
}
