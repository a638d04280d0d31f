//! Produces forwarded to a partition's leader on another broker: the `ProduceForwarder`
//! the broker core calls for adapters whose clients do not route by leader (AMQP's
//! publishes, `weir_broker::produce::submit_anywhere`). It calls the leader's public
//! Producer service over its advertised client address, as a gRPC producer would, with
//! the batch the core packed.
//!
//! The forwarded call runs as the forwarding broker, not as the client: the core
//! authorised the client before forwarding, as share forwarding does.

use std::time::Duration;

use tonic::transport::Channel;
use weir_broker::produce::{Acks, Appended, ForwardedProduce, ProduceForwarder};
use weir_broker::shares::ForwardFuture;
use weir_broker::{BrokerError, Reason};
use weir_cluster::controller::records::Endpoints;
use weir_proto::v1::producer_client::ProducerClient;
use weir_proto::v1::{self as pb};
use weir_security::dial::TlsDialer;

use crate::internal::peers::PeerChannels;
use crate::share_forward::{remote_error, remote_partition_error};

/// How long a forwarded produce may take beyond its own timeout (connecting, the way
/// there and back).
const CALL_SLACK: Duration = Duration::from_secs(5);

/// Forwards over gRPC, one lazily connected channel per leader address.
#[derive(Debug)]
pub struct GrpcProduceForwarder {
    channels: PeerChannels,
}

impl GrpcProduceForwarder {
    /// A forwarder that dials leaders with `tls`, or in plaintext.
    pub fn new(tls: Option<TlsDialer>) -> GrpcProduceForwarder {
        GrpcProduceForwarder {
            channels: PeerChannels::new(tls),
        }
    }

    fn client(
        &self,
        leader: i32,
        endpoints: &Endpoints,
    ) -> Result<ProducerClient<Channel>, BrokerError> {
        let address = endpoints.client();
        let channel = self.channels.channel(address).map_err(|e| {
            BrokerError::new(
                Reason::Internal,
                format!("broker {leader} advertises {address:?}, not an address: {e}"),
            )
        })?;
        Ok(ProducerClient::new(channel))
    }

    async fn forward(
        &self,
        (leader, endpoints): (i32, &Endpoints),
        produce: ForwardedProduce,
    ) -> Result<Appended, BrokerError> {
        let who = format!("the partition's leader, broker {leader}");
        let mut request = tonic::Request::new(pb::ProduceRequest {
            topic: produce.topic,
            partitions: vec![pb::PartitionRecords {
                partition: produce.partition,
                data: Some(pb::partition_records::Data::Batches(produce.batch)),
                ..Default::default()
            }],
            acks: match produce.acks {
                Acks::None => pb::Acks::None,
                Acks::Leader => pb::Acks::Leader,
                Acks::All => pb::Acks::All,
            } as i32,
            timeout_ms: u32::try_from(produce.timeout.as_millis()).unwrap_or(u32::MAX),
        });
        request.set_timeout(produce.timeout + CALL_SLACK);
        let answer = self
            .client(leader, endpoints)?
            .produce(request)
            .await
            .map_err(|status| remote_error(&who, status))?
            .into_inner();
        let result = answer.results.into_iter().next().ok_or_else(|| {
            BrokerError::new(Reason::Internal, format!("{who} answered no partition"))
        })?;
        match result.error {
            None => Ok(Appended {
                base_offset: result.base_offset,
                last_offset: result.last_offset,
                log_append_time_ms: result.log_append_time_ms,
            }),
            Some(e) => Err(remote_partition_error(&who, e)),
        }
    }
}

impl ProduceForwarder for GrpcProduceForwarder {
    fn produce<'a>(
        &'a self,
        leader: (i32, &'a Endpoints),
        produce: ForwardedProduce,
    ) -> ForwardFuture<'a, Appended> {
        Box::pin(self.forward(leader, produce))
    }
}
