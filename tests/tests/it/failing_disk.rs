//! A broker whose disk fails its fsyncs (issue 42, item 3), on real processes: three
//! `weir serve` brokers, node 3's data directory on `weir-faultfs` (this crate's FUSE
//! file system over a directory of the test's), a topic of 3 partitions, replication
//! factor 3, `min.insync.replicas=2`, and the harness's load (two `acks=all` producers,
//! two consumers). Once node 3 leads a partition, the mount is switched to fail every
//! fsync with EIO. Checked:
//!
//! - node 3 takes its data directory offline and exits by itself with status 3, its log
//!   saying FATAL (`docs/operations.md` § A failing disk);
//! - every partition it led is led by another broker within `MOVE_BOUND`, and writes are
//!   acknowledged there again;
//! - healed and restarted, node 3 recovers from what its disk holds, catches up and is
//!   back in every ISR;
//! - at the end every acknowledged record reads back, in order, none doubled, none
//!   changed (the checker): nothing node 3 could not make durable was acknowledged
//!   without being durable on the others.
//!
//! FUSE needs /dev/fuse and root (or fusermount3): without them the test prints why and
//! passes.
//!
//! And a follower whose disk fills (issue 42, item 2), each node's data directory on a
//! tmpfs of its own (`weir_tests::tmpfs`, root too): under the same load, a follower of
//! every partition has its tmpfs filled; writes go on (the leaders take it out of their
//! ISRs); once space is freed it catches up by itself, with no restart, and is back in
//! every ISR with the leaders' logs; the checker's verdict as above. The soak found a
//! follower that never fetched again after a refused append.
//!
//! And a `write.direct` topic on a file system that takes `O_DIRECT` at open and refuses
//! the I/O itself with `EINVAL` (`weir-faultfs` opens its backing file with the flags it
//! is given, then writes from its own unaligned buffer, as other passthrough FUSE file
//! systems do): one broker on it, the topic written, the broker killed mid-load and started,
//! written again; every acknowledged record reads back (the checker), the broker having
//! gone over to the page cache for those segments and said so. Before, its produces
//! failed.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;
use weir_tests::binary::weir_binary;
use weir_tests::checker::{self, Report};
use weir_tests::cluster::{Cluster, ClusterConfig};
use weir_tests::faultfs::{self, FaultFs, FaultMode};
use weir_tests::wait::{bounded, wait_for};
use weir_tests::workload::{Workload, WorkloadConfig};

const TOPIC: &str = "failing-disk";
const PARTITIONS: u32 = 3;
/// The broker whose data directory is on the failing file system.
const FAILING: i32 = 3;
/// Hard bound of the whole test.
const TEST_LIMIT: Duration = Duration::from_secs(180);
/// Longest the failing broker may take to exit once its fsyncs fail: its next flush
/// fails at once; the controlled shutdown waits at most 5 s for the controller.
const EXIT_BOUND: Duration = Duration::from_secs(30);
/// Longest a partition it led may take to be led by another broker after the switch.
const MOVE_BOUND: Duration = Duration::from_secs(30);
/// Longest the cluster may take to be whole again once the broker is restarted.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// The exit status of `weir serve` whose data directory went offline
/// (`EXIT_DATA_DIR_OFFLINE` in weir-cli's main.rs).
const EXIT_DATA_DIR_OFFLINE: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_fsyncs_fail_stops_and_its_leaderships_move() -> anyhow::Result<()> {
    failing(FaultMode::FsyncEio).await
}

// A disk that fails writes too (`FaultMode::WriteEio`) stops the broker the same way
// (node 3 exited 3 after 5.1 s, its leadership moved, writes went on), but on the
// healed mount each start stopped again, on the next index file of a partition it had
// led ("cannot open its log: I/O error on ...00000000000000000000.index", then on its
// `.timeindex`): most likely writes of mapped index pages that failed in the background,
// which Linux reports (EIO) once to the next process syncing each file. Opening an index
// does not rebuild it from the log on such an error yet, so that case is not a test yet
// (docs/operations.md § A failing disk).

async fn failing(mode: FaultMode) -> anyhow::Result<()> {
    serially(fuse_unavailable(), run(mode)).await
}

/// Runs `test` alone among this binary's cluster tests, within [`TEST_LIMIT`], once the
/// `weir` binary is built; prints why and passes if it cannot be had (`unavailable`).
async fn serially(
    unavailable: Option<String>,
    test: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    if let Some(reason) = unavailable {
        println!("SKIPPED: {reason}");
        return Ok(());
    }
    weir_tests::init_client_logs();
    let _serial = weir_tests::exclusive().await;
    tokio::task::spawn_blocking(weir_binary).await??;
    bounded(TEST_LIMIT, test).await
}

fn fuse_unavailable() -> Option<String> {
    faultfs::unavailable().map(|reason| format!("FUSE cannot be had here: {reason}"))
}

/// A `weir-faultfs` mount in a new temporary directory. Drop the mount first: it is
/// undone before its directory is removed.
fn mount() -> anyhow::Result<(FaultFs, tempfile::TempDir)> {
    let dir = tempfile::Builder::new().prefix("weir-faultfs-").tempdir()?;
    let (backing, mountpoint) = (dir.path().join("backing"), dir.path().join("mnt"));
    std::fs::create_dir_all(&backing)?;
    std::fs::create_dir_all(&mountpoint)?;
    let binary = Path::new(env!("CARGO_BIN_EXE_weir-faultfs"));
    Ok((FaultFs::mount(binary, &backing, &mountpoint)?, dir))
}

async fn run(mode: FaultMode) -> anyhow::Result<()> {
    // `_dir` is dropped last: the mount is undone (by `fs`) before its directory goes.
    let (mut fs, _dir) = mount()?;
    // Dropped before `fs`: the brokers stop before their file system goes.
    let mut cluster = Cluster::start(ClusterConfig {
        data_dirs: vec![(FAILING, fs.mountpoint().join(format!("node-{FAILING}")))],
        ..ClusterConfig::default()
    })
    .await?;
    cluster.create_topic(TOPIC, PARTITIONS, 3, 2).await?;
    let workload = Workload::start(cluster.bootstrap(), WorkloadConfig::new(TOPIC, PARTITIONS));
    workload.wait_acked(200, Duration::from_secs(30)).await?;
    // Placement spreads three leaders over three brokers: node 3 leads one.
    let led = wait_for(
        Duration::from_secs(20),
        &format!("node {FAILING} to lead a partition of {TOPIC}"),
        || async {
            let mut led = Vec::new();
            for partition in 0..PARTITIONS {
                if cluster.leader(TOPIC, partition).await.ok()? == FAILING {
                    led.push(partition);
                }
            }
            (!led.is_empty()).then_some(led)
        },
    )
    .await?;
    let before = workload.acked();

    fs.set(mode)?;
    let switched_at = Instant::now();
    println!("node {FAILING} (leader of {TOPIC}/{led:?}): its disk is now {mode:?}");

    let status = cluster
        .wait_exit(FAILING, EXIT_BOUND)
        .await
        .with_context(|| cluster.log_tail(FAILING, 60))?;
    println!(
        "node {FAILING} exited with {status} {:.0} ms after the switch",
        switched_at.elapsed().as_secs_f64() * 1e3
    );
    let log = cluster.log(FAILING)?;
    if status.code() != Some(EXIT_DATA_DIR_OFFLINE) || !log.contains("FATAL") {
        bail!(
            "node {FAILING} exited with {status}, not {EXIT_DATA_DIR_OFFLINE} after a FATAL line; its log ends:\n{}",
            cluster.log_tail(FAILING, 60)
        );
    }
    for &partition in &led {
        let leader = wait_for(
            MOVE_BOUND.saturating_sub(switched_at.elapsed()),
            &format!("a leader of {TOPIC}/{partition} other than node {FAILING}"),
            || async {
                let leader = cluster.leader(TOPIC, partition).await.ok()?;
                (leader > 0 && leader != FAILING).then_some(leader)
            },
        )
        .await?;
        let moved_at = Instant::now();
        // Writes are acknowledged on the new leader.
        wait_for(
            MOVE_BOUND,
            &format!("an acknowledged write to {TOPIC}/{partition} on node {leader}"),
            || {
                let acked = workload
                    .ack_times()
                    .iter()
                    .any(|&(p, at)| p == partition && at > moved_at);
                std::future::ready(acked.then_some(()))
            },
        )
        .await?;
        println!(
            "{TOPIC}/{partition}: led by node {leader}, writes acknowledged there, {:.0} ms after the switch",
            switched_at.elapsed().as_secs_f64() * 1e3
        );
    }
    println!(
        "acknowledged while node {FAILING} failed and stopped: {}",
        workload.acked() - before
    );

    fs.set(FaultMode::Ok)?;
    let healed_at = Instant::now();
    cluster.restart(FAILING).await?;
    cluster.wait_healthy(TOPIC, RECOVERY_TIMEOUT).await?;
    println!(
        "node {FAILING} healed, restarted and back in every ISR {:.0} ms later",
        healed_at.elapsed().as_secs_f64() * 1e3
    );

    assert_verdict(&verdict(&cluster, workload, TOPIC).await?);
    cluster.finish();
    drop(fs);
    Ok(())
}

/// Once healed: writes go through again; then the load stops, the replicas converge, every
/// partition is read back and the whole history is checked.
async fn verdict(cluster: &Cluster, workload: Workload, topic: &str) -> anyhow::Result<Report> {
    workload
        .wait_progress(50, RECOVERY_TIMEOUT)
        .await
        .context("writes after healing")?;
    let (mut history, errors) = workload.stop().await;
    cluster.wait_quiet(topic, RECOVERY_TIMEOUT).await?;
    history.final_read = cluster.read_all(topic).await?;
    let report = checker::check(&history);
    println!("{report}");
    println!("client errors: {errors:?}");
    Ok(report)
}

/// Nothing lost, doubled, changed or made up; consumers read in order, nothing skipped.
fn assert_verdict(report: &Report) {
    assert!(report.is_safe(), "{report}");
    assert!(report.skipped.is_empty(), "{report}");
    assert!(report.non_monotonic.is_empty(), "{report}");
}

/// Each node's tmpfs in the full-disk test: room for the test's writes many times over.
const FOLLOWER_DISK_BYTES: u64 = 256 << 20;
/// The node whose disk fills in the full-disk test: a follower of the partitions it does
/// not lead (what it leads refuses writes until space is freed, as a single node's does).
const FILLED: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_disk_fills_catches_up_by_itself_when_space_returns() -> anyhow::Result<()>
{
    serially(weir_tests::tmpfs::unavailable(), follower_disk_fills()).await
}

async fn follower_disk_fills() -> anyhow::Result<()> {
    let topic = "follower-disk-full";
    let cluster = Cluster::start(ClusterConfig {
        disk_bytes: Some(FOLLOWER_DISK_BYTES),
        ..ClusterConfig::default()
    })
    .await?;
    cluster.create_topic(topic, PARTITIONS, 3, 2).await?;
    cluster.wait_healthy(topic, RECOVERY_TIMEOUT).await?;
    let workload = Workload::start(cluster.bootstrap(), WorkloadConfig::new(topic, PARTITIONS));
    workload.wait_acked(200, Duration::from_secs(30)).await?;
    let mut followed = Vec::new();
    for partition in 0..PARTITIONS {
        if cluster.leader(topic, partition).await? != FILLED {
            followed.push(partition);
        }
    }
    cluster.fill_disk(FILLED)?;
    let filled_at = Instant::now();
    println!("node {FILLED}'s disk is full; it follows {topic}/{followed:?}");
    // The leaders go on without it: writes are acknowledged on every partition it
    // follows, with it out of the ISR.
    for &partition in &followed {
        wait_for(
            RECOVERY_TIMEOUT,
            &format!("{topic}/{partition}'s ISR without node {FILLED}"),
            || async {
                let described = cluster.describe(topic).await.ok()?;
                let p = described
                    .partitions
                    .iter()
                    .find(|p| p.partition == partition)?;
                (!p.isr.contains(&FILLED)).then_some(())
            },
        )
        .await?;
    }
    let shrunk_at = Instant::now();
    workload.wait_progress(200, RECOVERY_TIMEOUT).await?;
    println!(
        "node {FILLED} left the ISRs {:.1} s after its disk filled; writes went on",
        shrunk_at.duration_since(filled_at).as_secs_f64()
    );

    cluster.free_disk(FILLED)?;
    let freed_at = Instant::now();
    // No restart: it catches up by itself and rejoins every ISR.
    cluster
        .wait_healthy(topic, RECOVERY_TIMEOUT)
        .await
        .with_context(|| {
            format!(
                "node {FILLED} did not rejoin the ISRs after space was freed:\n{}",
                cluster.log_tail(FILLED, 40)
            )
        })?;
    println!(
        "space freed: node {FILLED} back in every ISR {:.1} s later, without a restart",
        freed_at.elapsed().as_secs_f64()
    );
    assert_verdict(&verdict(&cluster, workload, topic).await?);
    cluster.finish();
    Ok(())
}

/// The broker whose data directory is on `weir-faultfs` in the direct-write test.
const ONLY: i32 = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_written_topic_on_a_file_system_refusing_direct_io_goes_through_the_page_cache()
-> anyhow::Result<()> {
    serially(fuse_unavailable(), direct_refused()).await
}

async fn direct_refused() -> anyhow::Result<()> {
    let topic = "direct-refused";
    let (fs, _dir) = mount()?;
    let mut cluster = Cluster::start(ClusterConfig {
        nodes: 1,
        data_dirs: vec![(ONLY, fs.mountpoint().join(format!("node-{ONLY}")))],
        ..ClusterConfig::default()
    })
    .await?;
    cluster
        .probe()
        .create_topic_with(topic, PARTITIONS, 1, &[("write.direct", "true")])
        .await?;
    let workload = Workload::start(cluster.bootstrap(), WorkloadConfig::new(topic, PARTITIONS));
    workload
        .wait_acked(200, Duration::from_secs(30))
        .await
        .with_context(|| cluster.log_tail(ONLY, 40))?;
    // Killed and started again: each segment is recovered from what was synced, opened
    // for direct I/O again and refused again.
    cluster.kill(ONLY)?;
    cluster.restart(ONLY).await?;
    cluster.wait_healthy(topic, RECOVERY_TIMEOUT).await?;
    let report = verdict(&cluster, workload, topic).await?;
    let log = cluster.log(ONLY)?;
    assert!(
        log.contains("refused a direct write or read"),
        "no warning that the segments went over to the page cache:\n{}",
        cluster.log_tail(ONLY, 40)
    );
    assert_verdict(&report);
    cluster.finish();
    drop(fs);
    Ok(())
}
