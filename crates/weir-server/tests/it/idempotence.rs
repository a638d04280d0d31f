//! The idempotent producer through the gRPC API, as a client in another language uses
//! it: InitProducerId, then plain records carrying producer id, epoch and sequence. A
//! retry is stored once and answered with the original offsets; a gap and a fenced
//! epoch are refused with their reasons and nothing appended; the state survives a
//! restart.

use crate::common;

use common::*;
use tonic::Code;
use weir_proto::v1::*;

/// Plain records `values` from producer (`id`, `epoch`) starting at `sequence`.
fn numbered(values: &[&str], id: i64, epoch: i32, sequence: i32) -> PartitionRecords {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    PartitionRecords {
        producer_id: Some(id),
        producer_epoch: epoch,
        base_sequence: sequence,
        ..plain(0, &values, Compression::None)
    }
}

async fn init(c: &mut Clients, name: &str) -> (i64, i32) {
    let r = c
        .producer
        .init_producer_id(InitProducerIdRequest {
            producer_name: name.into(),
        })
        .await
        .expect("init producer id")
        .into_inner();
    (r.producer_id, r.producer_epoch)
}

/// Produces `values` from producer (`id`, `epoch`) at `sequence`, acks=all; the
/// partition's result.
async fn send(
    c: &mut Clients,
    values: &[&str],
    id: i64,
    epoch: i32,
    sequence: i32,
) -> PartitionProduceResult {
    let request = request("t", vec![numbered(values, id, epoch, sequence)], Acks::All);
    c.produce(request).await.results.remove(0)
}

async fn values(c: &mut Clients) -> Vec<String> {
    c.fetch_all("t", 0, 0)
        .await
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_retried_produce_is_stored_once_and_gaps_and_fenced_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = connect(server.addr).await;
    c.create("t", 1, &[]).await;

    let (a, epoch) = init(&mut c, "").await;
    let (b, _) = init(&mut c, "").await;
    assert_ne!(a, b, "every producer without a name gets its own id");
    assert_eq!(epoch, 0);

    let first = send(&mut c, &["a0", "a1"], a, 0, 0).await;
    assert_eq!(first.error, None);
    let retry = send(&mut c, &["a0", "a1"], a, 0, 0).await;
    assert_eq!(retry.error, None);
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (first.base_offset, first.last_offset),
        "a retry is answered with the original offsets"
    );

    let gap = send(&mut c, &["a5"], a, 0, 5).await;
    let error = gap.error.clone().expect("a gap is refused");
    assert_eq!(error.code, Code::FailedPrecondition as i32);
    assert_eq!(error.reason, "OUT_OF_ORDER_SEQUENCE");
    assert!(error.message.contains("expected 2"), "{}", error.message);

    // A named producer that starts again fences its older instance.
    let (named, e0) = init(&mut c, "orders-writer").await;
    let ok = send(&mut c, &["n0"], named, e0, 0).await;
    assert_eq!(ok.error, None);
    let (again, e1) = init(&mut c, "orders-writer").await;
    assert_eq!((again, e1), (named, e0 + 1));
    let newer = send(&mut c, &["n1"], named, e1, 0).await;
    assert_eq!(newer.error, None);
    let zombie = send(&mut c, &["z"], named, e0, 1).await;
    let error = zombie.error.clone().expect("fenced");
    assert_eq!(error.reason, "PRODUCER_FENCED");

    // A bad name is refused before anything is written.
    let long = c
        .producer
        .init_producer_id(InitProducerIdRequest {
            producer_name: "x".repeat(256),
        })
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);

    assert_eq!(values(&mut c).await, ["a0", "a1", "n0", "n1"]);

    // After a restart the partition still recognises the retry.
    drop(c);
    server.shutdown().await.unwrap();
    let server = start(dir.path()).await;
    let mut c = connect(server.addr).await;
    let retry = send(&mut c, &["a0", "a1"], a, 0, 0).await;
    assert_eq!(retry.error, None);
    assert_eq!(retry.base_offset, first.base_offset);
    let next = send(&mut c, &["a2"], a, 0, 2).await;
    assert_eq!(next.error, None);
    assert_eq!(values(&mut c).await, ["a0", "a1", "n0", "n1", "a2"]);
    // Ids handed out before the restart are not handed out again.
    let (c_id, _) = init(&mut c, "").await;
    assert!(c_id != a && c_id != b && c_id != named, "{c_id}");
    server.shutdown().await.unwrap();
}
