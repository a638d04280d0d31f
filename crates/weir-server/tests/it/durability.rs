//! The durable-ack path end to end: a whole broker on a `FaultyStorage`, producers
//! sending `acks=all` through the real gRPC API, and a simulated power loss that drops
//! every byte not fsynced. A broker restarted on what is left must hold every record it
//! acknowledged, at the offset it gave, in order. This is the test that notices a missing
//! fsync anywhere between the produce handler and the disk (weir-log's own fault tests
//! stop at the log).

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, connect, plain};
use weir_cluster::LogStorage;
use weir_log::storage::{FaultPlan, FaultyStorage};
use weir_proto::v1::*;

const TOPIC: &str = "durable";
const PARTITIONS: u32 = 3;
/// Producers sending concurrently, each to every partition in turn.
const PRODUCERS: usize = 4;
/// Records per produce request.
const BATCH: usize = 5;

/// What one producer had acknowledged: (partition, base offset) -> the values.
type Acked = BTreeMap<(u32, i64), Vec<String>>;

/// A broker on `dir` whose log files go through `storage`.
async fn start_on(dir: &std::path::Path, storage: &FaultyStorage) -> weir_server::RunningServer {
    let mut config = common::config(dir);
    config.log_storage = LogStorage(Arc::new(storage.clone()));
    weir_server::start(config).await.expect("server starts")
}

/// `values` to `partition` of the topic, acknowledged once durable on every replica.
fn acks_all(partition: u32, values: &[String]) -> ProduceRequest {
    ProduceRequest {
        topic: TOPIC.into(),
        partitions: vec![plain(partition, values, Compression::None)],
        acks: Acks::All as i32,
        timeout_ms: 2_000,
        transactional_id: String::new(),
    }
}

/// Every record of `partition`: offset -> value.
async fn stored(clients: &mut common::Clients, partition: u32) -> BTreeMap<i64, String> {
    clients
        .fetch_all(TOPIC, partition, 0)
        .await
        .into_iter()
        .map(|r| {
            (
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            )
        })
        .collect()
}

async fn produce_until_refused(addr: std::net::SocketAddr, producer: usize) -> Acked {
    let mut clients = connect(addr).await;
    let mut acked = Acked::new();
    for round in 0.. {
        let partition = (round % PARTITIONS as usize) as u32;
        let values: Vec<String> = (0..BATCH)
            .map(|i| format!("p{producer}-r{round}-{i}"))
            .collect();
        let Ok(response) = clients.producer.produce(acks_all(partition, &values)).await else {
            return acked;
        };
        let result = &response.get_ref().results[0];
        if result.error.is_some() {
            return acked;
        }
        acked.insert((partition, result.base_offset), values);
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_loss_under_a_broker_loses_no_acknowledged_record() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let storage = FaultyStorage::new(FaultPlan::default());
        let server = start_on(dir.path(), &storage).await;
        let mut clients = connect(server.addr).await;
        // The default flush policy, group-commit: acks=all waits for the fsync.
        clients.create(TOPIC, PARTITIONS, &[]).await;

        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| tokio::spawn(produce_until_refused(server.addr, p)))
            .collect();
        // Let acknowledgements pile up, then pull the plug mid-stream: every byte not
        // fsynced is gone, and every later write or sync fails.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        storage.crash(|_, _| 0).unwrap();
        let mut acked = Acked::new();
        for p in producers {
            acked.extend(p.await.unwrap());
        }
        let acked_records: usize = acked.values().map(Vec::len).sum();
        assert!(acked_records > 100, "only {acked_records} acknowledged");
        // The process dies: its shutdown can flush nothing (the storage is dead).
        let _ = tokio::time::timeout(Duration::from_secs(20), server.shutdown()).await;

        let server = common::start(dir.path()).await;
        let mut clients = connect(server.addr).await;
        for partition in 0..PARTITIONS {
            let stored: BTreeMap<i64, String> = stored(&mut clients, partition).await;
            // Dense from 0: nothing missing in the middle.
            assert!(
                stored.keys().copied().eq(0..stored.len() as i64),
                "partition {partition}: offsets have gaps"
            );
            for ((p, base), values) in acked.iter().filter(|((p, _), _)| *p == partition) {
                for (i, value) in values.iter().enumerate() {
                    let offset = base + i as i64;
                    assert_eq!(
                        stored.get(&offset),
                        Some(value),
                        "partition {p}: acknowledged record at offset {offset} lost or changed \
                         after the power loss ({} records left)",
                        stored.len()
                    );
                }
            }
        }
        server.shutdown().await.unwrap();
    })
    .await;
}

/// A disk that keeps failing its fsyncs (docs/operations.md § A failing disk): the
/// failed log cannot be cut durably to its durable point, so the data directory goes
/// offline and the broker stops by itself, `wait` ending with `DataDirOffline` (the
/// `weir serve` binary exits 3 on it). Nothing is acknowledged once the syncs fail, and a
/// broker restarted on the healed disk holds every record acknowledged before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_keeps_failing_stops_the_broker_with_its_data_directory_offline() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let storage = FaultyStorage::new(FaultPlan::default());
        let server = start_on(dir.path(), &storage).await;
        let addr = server.addr;
        let mut clients = connect(addr).await;
        clients.create(TOPIC, 1, &[]).await;
        let mut acked = Vec::new();
        for round in 0..20 {
            let values = vec![format!("before-{round}")];
            let response = clients
                .produce(common::request(
                    TOPIC,
                    vec![plain(0, &values, Compression::None)],
                    Acks::All,
                ))
                .await;
            assert!(response.results[0].error.is_none(), "{response:?}");
            acked.extend(values);
        }
        let stopped = tokio::spawn(server.wait(std::future::pending()));

        storage.fail_syncs(true);
        let after = acks_all(0, &["after".to_string()]);
        if let Ok(response) = clients.producer.produce(after).await {
            let result = &response.get_ref().results[0];
            assert!(
                result.error.is_some(),
                "acknowledged on a disk whose fsyncs fail"
            );
        }
        let ended = tokio::time::timeout(Duration::from_secs(20), stopped)
            .await
            .expect("the broker stops by itself")
            .unwrap();
        let err = ended.expect_err("stopping for an offline data directory is an error");
        let offline = err
            .downcast_ref::<weir_server::DataDirOffline>()
            .unwrap_or_else(|| panic!("not DataDirOffline: {err:#}"));
        assert_eq!(offline.data_dir, dir.path());
        assert!(offline.reason.contains(TOPIC), "{offline}");

        storage.fail_syncs(false);
        let server = common::start(dir.path()).await;
        let mut clients = connect(server.addr).await;
        let stored: Vec<String> = stored(&mut clients, 0).await.into_values().collect();
        assert_eq!(
            &stored[..acked.len()],
            &acked[..],
            "acknowledged records kept, in order"
        );
        server.shutdown().await.unwrap();
    })
    .await;
}
