//! Where share groups' dead-letter copies are produced: the `DeadLetterSink` the share
//! coordinator calls. A copy goes to the leader of its dead-letter partition through the
//! public Produce call, as any client's would (`acks=all`), over the advertised client
//! address the metadata gives for that broker, this one included: one path whoever leads.
//! A group with a dead-letter exchange (an AMQP queue's `x-dead-letter-exchange`) has
//! each copy routed as an AMQP publish to that exchange would be, by this broker's
//! metadata, and produced to every queue it routes to the same way; it is done once every
//! queue holds it.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Endpoint;
use weir_cluster::TopicRegistry;
use weir_cluster::share::{DLQ_GROUP, DeadLetterSink, DeadLetterTarget, SinkFuture};
use weir_cluster::storage::Record;
use weir_proto::v1::producer_client::ProducerClient;
use weir_proto::v1::{self as pb, Acks, ProduceRequest};
use weir_security::dial::TlsDialer;

use weir_grpc::internal::peers;

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
                transactional_id: String::new(),
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

impl GrpcDeadLetters {
    /// Routes each copy through `exchange` (with `routing_key`, or its own) and produces
    /// it to every queue that takes it, partition 0, as an AMQP publish. A copy routed
    /// nowhere, or through an exchange that does not exist, is dropped (RabbitMQ drops
    /// it too). Each copy is stamped with the time it is routed, so the next queue's TTL
    /// counts from there.
    async fn route(
        &self,
        exchange: &str,
        routing_key: Option<&str>,
        records: Vec<Record>,
    ) -> Result<(), String> {
        let image = self.registry.cluster().image();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut by_queue: std::collections::BTreeMap<String, Vec<Record>> = Default::default();
        for mut record in records {
            let queue = record
                .headers
                .iter()
                .rev()
                .find(|h| h.key == DLQ_GROUP)
                .and_then(|h| h.value.as_deref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            let key = weir_amqp::properties::dead_letter_headers(
                &mut record.headers,
                exchange,
                routing_key,
                &queue,
            );
            record.timestamp = now;
            let texts: Vec<(String, Option<String>)> = record
                .headers
                .iter()
                .map(|h| {
                    let text = h
                        .value
                        .as_deref()
                        .map(|v| String::from_utf8_lossy(v).into_owned());
                    (h.key.clone(), text)
                })
                .collect();
            let queues = match weir_broker::exchanges::route_in(&image, exchange, &key, &texts) {
                Ok(queues) => queues,
                Err(e) => {
                    tracing::debug!(exchange, error = %e.message, "dead letter dropped: its exchange does not route");
                    Vec::new()
                }
            };
            for queue in queues {
                by_queue.entry(queue).or_default().push(record.clone());
            }
        }
        for (queue, records) in by_queue {
            self.produce(&queue, 0, records).await?;
        }
        Ok(())
    }
}

impl DeadLetterSink for GrpcDeadLetters {
    fn send<'a>(&'a self, target: &'a DeadLetterTarget, records: Vec<Record>) -> SinkFuture<'a> {
        match target {
            DeadLetterTarget::Topic { topic, partition } => {
                Box::pin(self.produce(topic, *partition, records))
            }
            DeadLetterTarget::Exchange {
                exchange,
                routing_key,
            } => Box::pin(self.route(exchange, routing_key.as_deref(), records)),
        }
    }
}
