//! Where a share coordinator reads data partitions it hosts no replica of: the
//! `RemoteLog` it calls. A read goes to the partition's leader through the public
//! Fetch and ListOffsets calls, as any consumer's would (committed records only, raw
//! batches as stored), over the advertised client address the metadata gives for that
//! broker.
//!
//! A read runs as this broker, not as the share consumer it serves: when authorisation
//! arrives, the consumer's right to read the topic is checked before the coordinator
//! reads for it (in the broker core's share fetch), never here.

use std::sync::Arc;
use std::time::Duration;

use tonic::Code;
use weir_cluster::PartitionOffsets;
use weir_cluster::TopicRegistry;
use weir_cluster::share::{RemoteBatches, RemoteFuture, RemoteLog, RemoteReadError};
use weir_proto::v1::consumer_client::ConsumerClient;
use weir_proto::v1::{self as pb, offset_spec};
use weir_security::dial::TlsDialer;

use crate::internal::peers::PeerChannels;

/// Longest one read of a remote partition takes, connecting included: the group's
/// requests wait behind it.
const REMOTE_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads partitions at their leaders over gRPC, one lazily connected channel per broker.
#[derive(Debug)]
pub struct GrpcRemoteLog {
    registry: Arc<TopicRegistry>,
    channels: PeerChannels,
}

impl GrpcRemoteLog {
    /// Reads that dial leaders with `tls`, or in plaintext.
    pub fn new(registry: Arc<TopicRegistry>, tls: Option<TlsDialer>) -> GrpcRemoteLog {
        GrpcRemoteLog {
            registry,
            channels: PeerChannels::new(tls),
        }
    }

    /// A client of the leader of `topic`/`partition`, as this broker's metadata knows it.
    fn leader(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<ConsumerClient<tonic::transport::Channel>, RemoteReadError> {
        let failed = RemoteReadError::Failed;
        let t = self
            .registry
            .topic(topic)
            .map_err(|e| failed(e.to_string()))?;
        let leader = t
            .registrations()
            .get(partition as usize)
            .map_or(-1, |r| r.leader);
        let address = self
            .registry
            .cluster()
            .image()
            .broker(leader)
            .map(|b| b.endpoints.client().to_owned())
            .ok_or_else(|| failed(format!("it has no leader now (broker {leader})")))?;
        let channel = self
            .channels
            .channel(&address)
            .map_err(|e| failed(format!("broker {leader} at {address:?}: {e}")))?;
        Ok(ConsumerClient::new(channel))
    }

    async fn offsets_at_leader(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<PartitionOffsets, RemoteReadError> {
        let query = |position: pb::OffsetPosition| pb::PartitionOffsetQuery {
            partition,
            spec: Some(pb::OffsetSpec {
                spec: Some(offset_spec::Spec::Position(position as i32)),
            }),
        };
        let mut request = tonic::Request::new(pb::ListOffsetsRequest {
            topic: topic.to_string(),
            partitions: vec![
                query(pb::OffsetPosition::Earliest),
                query(pb::OffsetPosition::Latest),
            ],
            isolation: pb::IsolationLevel::ReadUncommitted as i32,
        });
        request.set_timeout(REMOTE_READ_TIMEOUT);
        let answer = self
            .leader(topic, partition)?
            .list_offsets(request)
            .await
            .map_err(|s| RemoteReadError::Failed(s.message().to_string()))?
            .into_inner();
        let found = |i: usize| match answer.results.get(i) {
            Some(r) if r.error.is_none() => Ok(r.offset),
            Some(r) => Err(RemoteReadError::Failed(
                r.error
                    .as_ref()
                    .map_or_else(String::new, |e| e.message.clone()),
            )),
            None => Err(RemoteReadError::Failed(
                "the leader answered no offsets".into(),
            )),
        };
        let (log_start_offset, high_watermark) = (found(0)?, found(1)?);
        Ok(PartitionOffsets {
            log_start_offset,
            high_watermark,
            log_end_offset: high_watermark,
        })
    }

    async fn read_at_leader(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<RemoteBatches, RemoteReadError> {
        let max_bytes = u32::try_from(max_bytes).unwrap_or(u32::MAX);
        let mut request = tonic::Request::new(pb::FetchRequest {
            topic: topic.to_string(),
            partitions: vec![pb::PartitionFetch {
                partition,
                offset,
                max_bytes,
            }],
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes,
            format: pb::RecordFormat::Batches as i32,
            // Kafka's default `share.isolation.level`: share groups read uncommitted.
            isolation: pb::IsolationLevel::ReadUncommitted as i32,
        });
        request.set_timeout(REMOTE_READ_TIMEOUT);
        let answer = self
            .leader(topic, partition)?
            .fetch(request)
            .await
            .map_err(|s| RemoteReadError::Failed(s.message().to_string()))?
            .into_inner();
        let result =
            answer.results.into_iter().next().ok_or_else(|| {
                RemoteReadError::Failed("the leader answered no partition".into())
            })?;
        match result.error {
            None => Ok(RemoteBatches {
                records: result.batches,
                next_offset: result.next_offset,
            }),
            Some(e) if e.code == Code::OutOfRange as i32 => Err(RemoteReadError::OutOfRange),
            Some(e) => Err(RemoteReadError::Failed(e.message)),
        }
    }
}

impl RemoteLog for GrpcRemoteLog {
    fn offsets<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
    ) -> RemoteFuture<'a, Result<PartitionOffsets, RemoteReadError>> {
        Box::pin(self.offsets_at_leader(topic, partition))
    }

    fn read<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
    ) -> RemoteFuture<'a, Result<RemoteBatches, RemoteReadError>> {
        Box::pin(self.read_at_leader(topic, partition, offset, max_bytes))
    }
}
