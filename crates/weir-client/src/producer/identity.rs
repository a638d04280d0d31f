//! The idempotent producer's identity: a producer id and epoch from the cluster
//! (`InitProducerId`), asked for when the producer starts and again whenever a numbered
//! batch failed for good (see the accumulator's `poisoned`).

use std::time::{Duration, Instant};

use weir_proto::v1 as pb;
use weir_proto::v1::producer_client::ProducerClient;

use super::accumulator::{Accumulator, Identity};
use crate::cluster::Cluster;
use crate::error::ClientError;

/// Asks any broker for an identity (the one that answered last first, hedged: see
/// `crate::any_broker`), each for at most `timeout` (a paused broker never answers).
/// Returns the first answer, or the first error retrying elsewhere cannot help.
pub(crate) async fn init(
    cluster: &Cluster,
    name: Option<&str>,
    timeout: Duration,
) -> Result<Identity, ClientError> {
    let request = pb::InitProducerIdRequest {
        producer_name: name.unwrap_or_default().to_owned(),
    };
    let response = cluster
        .ask_any_broker("a producer id", |channel| {
            let request = request.clone();
            async move {
                let mut client = ProducerClient::new(channel);
                match tokio::time::timeout(timeout, client.init_producer_id(request)).await {
                    Ok(answer) => Ok(answer?.into_inner()),
                    Err(_) => Err(ClientError::DeadlineExceeded(format!(
                        "no answer to InitProducerId within {timeout:?}"
                    ))),
                }
            }
        })
        .await?;
    let epoch = i16::try_from(response.producer_epoch).map_err(|_| ClientError::Rpc {
        code: tonic::Code::Internal,
        message: format!(
            "the broker gave producer epoch {}, which does not fit an int16",
            response.producer_epoch
        ),
    })?;
    Ok(Identity {
        producer_id: response.producer_id,
        epoch,
    })
}

/// Gets an identity for `accumulator`, retrying with its backoff while the cluster
/// cannot answer. Batches wait for it meanwhile; after `request_timeout` of failures the
/// waiting ones fail with the last error (later ones wait again), as batches without a
/// leader do. An error retrying cannot help (an old broker without `InitProducerId`, a
/// bad producer name) fails the producer for good.
pub(crate) async fn acquire(accumulator: &Accumulator, cluster: &Cluster) {
    let config = accumulator.config();
    let mut failing_since: Option<Instant> = None;
    let mut attempt = 0;
    loop {
        match init(
            cluster,
            config.producer_name.as_deref(),
            config.request_timeout,
        )
        .await
        {
            Ok(identity) => {
                tracing::debug!(
                    producer_id = identity.producer_id,
                    epoch = identity.epoch,
                    "producer identity"
                );
                accumulator.set_identity(identity);
                return;
            }
            Err(error) if !error.is_retriable() => {
                tracing::warn!(%error, "cannot get a producer id; the producer stops");
                accumulator.fail_fatal(error);
                return;
            }
            Err(error) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= config.request_timeout {
                    accumulator.fail_unsent(&ClientError::Unavailable(format!(
                        "no producer id for {:?} (request_timeout): {error}",
                        config.request_timeout
                    )));
                    failing_since = None;
                }
                attempt += 1;
                tokio::time::sleep(config.backoff(attempt).max(Duration::from_millis(10))).await;
            }
        }
    }
}
