//! RabbitMQ streams through rabbitmq-stream-client (the stream protocol, not AMQP): a
//! stream on one node, a producer whose publishes are confirmed asynchronously, and a
//! consumer from the first offset whose flow control (credits, one per chunk) the client
//! runs.
//!
//! The client is the 0.4 line: from 0.5 on it opens every connection with
//! ExchangeCommandVersions, a RabbitMQ 3.11 command that Debian's 3.10 answers by closing
//! the connection.
//!
//! What a confirm means here (RabbitMQ 3.10, osiris 1.3): the stream's writer confirms
//! a message once its chunk is written to the segment file and, in a cluster, once a
//! quorum of replicas has it. Osiris never fsyncs its segments (its modules import no
//! `file:sync`/`file:datasync`): durability rests on replication, and on one node a
//! confirm means the OS page cache has the message. There is no fsync-before-confirm
//! setting, so both durabilities are measured with the same confirms and the `durable`
//! results say so.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use futures_util::{FutureExt as _, StreamExt as _};
use rabbitmq_stream_client::error::StreamDeleteError;
use rabbitmq_stream_client::types::{Message, OffsetSpecification, ResponseCode};
use rabbitmq_stream_client::{Client, ClientOptions, Consumer, Environment, NoDedup};
use tokio::sync::Notify;

use super::{Endpoint, MAX_RECORDS_PER_POLL, Peer, Producer, Subscription};
use crate::result::{Acks, Durability};

/// Client library and version, from Cargo.lock at build time.
const CLIENT: &str = concat!(
    "rabbitmq-stream-client ",
    env!("WEIR_PEER_BENCH_RABBITMQ_STREAM_CLIENT_VERSION")
);

/// Payload bytes sent in one `batch_send`, which the 0.4 client sends as one publish
/// frame: well under the 1 MiB frames the server accepts by default.
const MAX_PUBLISH_BYTES: usize = 512 << 10;

/// What every confirm means, whatever was asked (see the module documentation).
const ACKS_MEAN: &str = "RabbitMQ stream (3.10, osiris 1.3), one node: the confirm follows \
    the write of the message's chunk to the segment file, so the OS page cache has it; \
    osiris never fsyncs (durability comes from replication to other nodes), and there is \
    no fsync-before-confirm setting.";

/// A connection to a RabbitMQ node with the stream plugin.
pub struct RabbitStream {
    env: Environment,
    version: String,
}

// Environment holds no Debug; say what the connection is instead.
impl std::fmt::Debug for RabbitStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitStream")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl RabbitStream {
    pub async fn connect(endpoint: Endpoint) -> anyhow::Result<RabbitStream> {
        let host = endpoint.addr.ip().to_string();
        let port = endpoint.addr.port();
        let connect = async {
            // The environment does not tell the server's version; one plain client does.
            let client =
                Client::connect(ClientOptions::builder().host(&host).port(port).build()).await?;
            let version = client
                .server_properties()
                .await
                .get("version")
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned());
            client.close().await?;
            let env = Environment::builder()
                .host(&host)
                .port(port)
                .build()
                .await?;
            anyhow::Ok(RabbitStream { env, version })
        };
        tokio::time::timeout(endpoint.request_timeout, connect)
            .await
            .map_err(|_| anyhow!("no answer from RabbitMQ at {}", endpoint.addr))?
            .with_context(|| format!("connecting to RabbitMQ's stream port at {}", endpoint.addr))
    }
}

impl Peer for RabbitStream {
    type Producer = RabbitProducer;
    type Subscription = RabbitSubscription;

    fn server(&self) -> String {
        format!("rabbitmq-server {}", self.version)
    }

    fn client(&self) -> String {
        CLIENT.to_owned()
    }

    async fn set_durability(&mut self, durability: Durability) -> anyhow::Result<Acks> {
        Ok(Acks {
            durability,
            fsync_before_ack: false,
            meaning: ACKS_MEAN.to_owned(),
        })
    }

    async fn recreate_stream(&self, name: &str) -> anyhow::Result<()> {
        match self.env.delete_stream(name).await {
            Ok(()) => {}
            Err(StreamDeleteError::Delete {
                status: ResponseCode::StreamDoesNotExist,
                ..
            }) => {}
            Err(e) => return Err(e).with_context(|| format!("deleting stream {name}")),
        }
        self.env
            .stream_creator()
            .create(name)
            .await
            .with_context(|| format!("creating stream {name}"))
    }

    async fn stream_len(&self, _name: &str) -> anyhow::Result<Option<u64>> {
        // The 3.10 stream protocol has no message count (stream stats arrived in 3.11).
        Ok(None)
    }

    async fn producer(&self, name: &str, _window_records: usize) -> anyhow::Result<RabbitProducer> {
        let producer = self
            .env
            .producer()
            .build(name)
            .await
            .with_context(|| format!("creating a producer on {name}"))?;
        Ok(RabbitProducer { producer })
    }

    async fn subscribe(
        &self,
        name: &str,
        _fetch_records: usize,
    ) -> anyhow::Result<RabbitSubscription> {
        let consumer = self
            .env
            .consumer()
            .offset(OffsetSpecification::First)
            .build(name)
            .await
            .with_context(|| format!("creating a consumer on {name}"))?;
        Ok(RabbitSubscription { consumer })
    }
}

/// Publishes with asynchronous confirms.
pub struct RabbitProducer {
    producer: rabbitmq_stream_client::Producer<NoDedup>,
}

impl std::fmt::Debug for RabbitProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitProducer").finish_non_exhaustive()
    }
}

/// Confirms outstanding for one batch.
#[derive(Debug)]
struct BatchConfirms {
    remaining: AtomicUsize,
    failed: AtomicBool,
    first_failure: Mutex<Option<String>>,
    done: Notify,
}

impl BatchConfirms {
    /// Counts one confirm, or one failure (with what went wrong).
    fn confirm(&self, failure: Option<String>) {
        if let Some(failure) = failure {
            self.failed.store(true, Ordering::Release);
            let mut first = self.first_failure.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert(failure);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }
}

impl Producer for RabbitProducer {
    fn append(
        &self,
        records: Vec<Bytes>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
        let producer = self.producer.clone();
        async move {
            let batch = Arc::new(BatchConfirms {
                remaining: AtomicUsize::new(records.len()),
                failed: AtomicBool::new(false),
                first_failure: Mutex::new(None),
                done: Notify::new(),
            });
            // The client sends one batch_send as one frame: keep each under the limit.
            let per_send =
                (MAX_PUBLISH_BYTES / records.first().map_or(1, |r| r.len().max(1))).max(1);
            for chunk in records.chunks(per_send) {
                let messages = chunk
                    .iter()
                    .map(|r| Message::builder().body(r.to_vec()).build())
                    .collect();
                let confirms = Arc::clone(&batch);
                producer
                    .batch_send(messages, move |status| {
                        // The client does not export the status type; read it here.
                        confirms.confirm(match status {
                            Ok(s) if s.confirmed() => None,
                            Ok(s) => Some(format!("message not confirmed: {:?}", s.status())),
                            Err(e) => Some(e.to_string()),
                        });
                        std::future::ready(())
                    })
                    .await?;
            }
            // notify_one keeps a permit when nobody waits yet, so no confirm is missed.
            while batch.remaining.load(Ordering::Acquire) > 0 {
                batch.done.notified().await;
            }
            if batch.failed.load(Ordering::Acquire) {
                let failure = batch
                    .first_failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                bail!("publish failed: {}", failure.unwrap_or_default());
            }
            Ok(())
        }
    }
}

/// A stream consumer from the first offset.
pub struct RabbitSubscription {
    consumer: Consumer,
}

impl std::fmt::Debug for RabbitSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitSubscription").finish_non_exhaustive()
    }
}

impl Subscription for RabbitSubscription {
    async fn next_batch<F>(&mut self, wait: Duration, mut visit: F) -> anyhow::Result<usize>
    where
        F: FnMut(&[u8]) + Send,
    {
        let first = match tokio::time::timeout(wait, self.consumer.next()).await {
            Err(_elapsed) => return Ok(0),
            Ok(None) => bail!("the RabbitMQ consumer was closed"),
            Ok(Some(delivery)) => delivery?,
        };
        visit(first.message().data().unwrap_or_default());
        let mut n = 1;
        while n < MAX_RECORDS_PER_POLL {
            match self.consumer.next().now_or_never() {
                None => break,
                Some(None) => bail!("the RabbitMQ consumer was closed"),
                Some(Some(delivery)) => {
                    visit(delivery?.message().data().unwrap_or_default());
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}
