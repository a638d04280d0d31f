//! The share consumer against a real broker on 127.0.0.1:0.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Result;
use weir_client::{
    AckKind, AckMode, Admin, Producer, ProducerConfig, ProducerRecord, ShareConsumer,
    ShareConsumerConfig, ShareStart,
};

/// `close` says the member leaves, so the broker gives back at once even the records it
/// handed to this member id that the application never saw (here: a second consumer
/// with the same member id, dropped without closing, stands for a fetch whose answer was
/// lost). Without it they would wait for their 30 s locks.
#[tokio::test]
async fn close_gives_back_at_once_what_the_member_holds_unseen() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let running = weir_server::start(weir_server::ServerConfig {
        kafka_listen: None,
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        admin_listen: None,
        ..Default::default()
    })
    .await?;
    let brokers = vec![running.addr.to_string()];
    Admin::connect(&brokers)
        .await?
        .create_topic("jobs", 1, 0, HashMap::new())
        .await?;
    let producer = Producer::connect(ProducerConfig {
        brokers: brokers.clone(),
        ..ProducerConfig::default()
    })
    .await?;
    let mut deliveries = Vec::new();
    for i in 0..10 {
        deliveries.push(
            producer
                .send(ProducerRecord::new("jobs", format!("job-{i}")))
                .await?,
        );
    }
    for d in deliveries {
        d.await?;
    }

    let config = |member: &str| ShareConsumerConfig {
        brokers: brokers.clone(),
        member_id: Some(member.to_string()),
        start: ShareStart::Earliest,
        ack_mode: AckMode::Explicit,
        max_records: 4,
        ..ShareConsumerConfig::new("workers", ["jobs"])
    };
    let mut a = ShareConsumer::connect(config("worker-a")).await?;
    let first = a.poll(Duration::from_secs(10)).await?;
    assert_eq!(offsets(&first), [0, 1, 2, 3]);
    for r in &first {
        a.acknowledge(r, AckKind::Accept)?;
    }
    a.commit().await?;
    let mut ghost = ShareConsumer::connect(config("worker-a")).await?;
    assert_eq!(
        offsets(&ghost.poll(Duration::from_secs(10)).await?),
        [4, 5, 6, 7]
    );
    drop(ghost);
    a.close().await?;

    // Another member gets 4..=7 again (second delivery) and 8, 9, long before the locks
    // would have run out.
    let mut b = ShareConsumer::connect(ShareConsumerConfig {
        max_records: 10,
        ..config("worker-b")
    })
    .await?;
    let started = Instant::now();
    let mut got = BTreeMap::new();
    while got.len() < 6 && started.elapsed() < Duration::from_secs(10) {
        for r in b.poll(Duration::from_secs(1)).await? {
            got.insert(r.offset, r.delivery_count);
            b.acknowledge(&r, AckKind::Accept)?;
        }
    }
    b.close().await?;
    assert_eq!(
        got,
        BTreeMap::from([(4, 2), (5, 2), (6, 2), (7, 2), (8, 1), (9, 1)]),
        "after {:?}",
        started.elapsed()
    );
    running.shutdown().await?;
    Ok(())
}

fn offsets(records: &[weir_client::ShareRecord]) -> Vec<i64> {
    records.iter().map(|r| r.offset).collect()
}
