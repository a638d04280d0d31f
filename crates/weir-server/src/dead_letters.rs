//! Where share groups' dead-letter copies are produced: the `DeadLetterSink` the share
//! coordinator calls. A copy goes to the leader of its dead-letter partition through the
//! public Produce call, as any client's would (`acks=all`), over the advertised client
//! address the metadata gives for that broker, this one included: one path whoever leads.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Endpoint;
use weir_cluster::TopicRegistry;
use weir_cluster::share::{DeadLetterSink, SinkFuture};
use weir_cluster::storage::Record;
use weir_proto::v1::producer_client::ProducerClient;
use weir_proto::v1::{self as pb, Acks, ProduceRequest};
use weir_security::dial::TlsDialer;

use crate::internal::peers;

/// Longest a dead-letter produce takes, connecting included.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Produces dead-letter copies to each partition's leader.
#[derive(Debug)]
pub(crate) struct GrpcDeadLetters {
    pub(crate) registry: Arc<TopicRegistry>,
    /// How the leader is dialled: TLS when the brokers' listeners speak it.
    pub(crate) tls: Option<TlsDialer>,
}

impl GrpcDeadLetters {
    async fn produce(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<(), String> {
        let t = self.registry.topic(topic).map_err(|e| e.to_string())?;
        let leader = t
            .registrations()
            .get(partition as usize)
            .map_or(-1, |r| r.leader);
        let image = self.registry.cluster().image();
        let address = image
            .broker(leader)
            .map(|b| b.endpoints.client().to_owned())
            .ok_or_else(|| format!("{topic} partition {partition} has no leader now"))?;
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(DEAD_LETTER_TIMEOUT)
            .timeout(DEAD_LETTER_TIMEOUT);
        let channel = peers::connect(endpoint, self.tls.as_ref())
            .await
            .map_err(|e| format!("connecting to broker {leader} at {address}: {e}"))?;
        let records = records
            .into_iter()
            .map(|r| pb::Record {
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|h| pb::RecordHeader {
                        key: h.key,
                        value: h.value,
                    })
                    .collect(),
                timestamp_ms: Some(r.timestamp),
            })
            .collect();
        let answer = ProducerClient::new(channel)
            .produce(ProduceRequest {
                topic: topic.to_string(),
                partitions: vec![pb::PartitionRecords {
                    partition,
                    data: Some(pb::partition_records::Data::Records(pb::RecordList {
                        records,
                    })),
                    ..Default::default()
                }],
                acks: Acks::All as i32,
                timeout_ms: DEAD_LETTER_TIMEOUT.as_millis() as u32,
            })
            .await
            .map_err(|s| format!("broker {leader}: {}", s.message()))?
            .into_inner();
        match answer.results.first().and_then(|r| r.error.as_ref()) {
            None => Ok(()),
            Some(e) => Err(format!("broker {leader}: {}", e.message)),
        }
    }
}

impl DeadLetterSink for GrpcDeadLetters {
    fn send<'a>(&'a self, topic: &'a str, partition: u32, records: Vec<Record>) -> SinkFuture<'a> {
        Box::pin(self.produce(topic, partition, records))
    }
}
