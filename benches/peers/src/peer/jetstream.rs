//! NATS JetStream through async-nats: a file-storage stream of one replica whose only
//! subject is the stream's name; publishes with acks awaited asynchronously; reads with an
//! ephemeral pull consumer (no acks) that keeps large pull requests in flight.
//!
//! What an ack means here (nats-server 2.9, read from its `server/filestore.go` and
//! `server/stream.go`): the file store writes each message to the stream's current block
//! file with a `write(2)` before the server sends the ack ("flush in place"), so an ack
//! means the OS page cache has it. The store fsyncs its blocks every 2 minutes (the sync
//! interval a stream's file store gets in 2.9, not configurable) and when it closes a
//! block file. nats-server 2.9 has no setting that syncs before acking: the `jetstream {
//! sync_interval: always }` option arrived in 2.10 (2.9.10 rejects it as an unknown
//! field). So both durabilities are measured with the same acks and the `durable` results
//! say so.

use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::{FutureExt as _, StreamExt as _};

use super::{Endpoint, MAX_RECORDS_PER_POLL, Peer, Producer, Subscription};
use crate::result::{Acks, Durability};

/// Client library and version, from Cargo.lock at build time.
const CLIENT: &str = concat!("async-nats ", env!("WEIR_PEER_BENCH_ASYNC_NATS_VERSION"));

/// How long an unused ephemeral consumer outlives its client on the server.
const CONSUMER_INACTIVE_THRESHOLD: Duration = Duration::from_secs(60);

/// Payload bytes one pull request may ask for: a cap on what one request buffers in the
/// client, on top of the record count.
const MAX_PULL_BYTES: usize = 64 << 20;

/// What every JetStream ack means, whatever was asked (see the module documentation).
const ACKS_MEAN: &str = "JetStream file store (nats-server 2.9): the ack follows a write(2) \
    of the message to the stream's block file, so the OS page cache has it; the store \
    fsyncs every 2 min (the 2.9 stream sync interval, not configurable) and when a block \
    file closes. 2.9 has no fsync-before-ack setting (sync_interval: always is 2.10+).";

/// A connection to a nats-server with JetStream enabled.
#[derive(Debug)]
pub struct JetStream {
    client: async_nats::Client,
    endpoint: Endpoint,
}

impl JetStream {
    pub async fn connect(endpoint: Endpoint) -> anyhow::Result<JetStream> {
        let url = format!("nats://{}", endpoint.addr);
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(endpoint.request_timeout)
            .request_timeout(Some(endpoint.request_timeout))
            // A bench that loses its server should fail, not wait for it to come back.
            .max_reconnects(0)
            .connect(&url)
            .await
            .with_context(|| format!("connecting to nats-server at {url}"))?;
        Ok(JetStream { client, endpoint })
    }

    /// A JetStream context whose publishes may have `window_records` acks outstanding
    /// before `publish` waits.
    fn context(&self, window_records: usize) -> jetstream::Context {
        jetstream::ContextBuilder::new()
            .timeout(self.endpoint.request_timeout)
            .max_ack_inflight(window_records.max(1))
            .backpressure_on_inflight(true)
            .build(self.client.clone())
    }
}

impl Peer for JetStream {
    type Producer = JetStreamProducer;
    type Subscription = JetStreamSubscription;

    fn server(&self) -> String {
        format!("nats-server {}", self.client.server_info().version)
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
        let js = self.context(1);
        match js.delete_stream(name).await {
            Ok(_) => {}
            Err(e) if is_stream_not_found(e.kind()) => {}
            Err(e) => return Err(e).with_context(|| format!("deleting stream {name}")),
        }
        js.create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![name.to_owned()],
            storage: stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating stream {name}"))?;
        Ok(())
    }

    async fn stream_len(&self, name: &str) -> anyhow::Result<Option<u64>> {
        match self.context(1).get_stream(name).await {
            Ok(stream) => Ok(Some(stream.get_info().await?.state.messages)),
            Err(e) if is_stream_not_found(e.kind()) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("looking up stream {name}")),
        }
    }

    async fn producer(
        &self,
        name: &str,
        window_records: usize,
    ) -> anyhow::Result<JetStreamProducer> {
        Ok(JetStreamProducer {
            js: self.context(window_records),
            subject: name.into(),
        })
    }

    async fn subscribe(
        &self,
        name: &str,
        fetch_records: usize,
    ) -> anyhow::Result<JetStreamSubscription> {
        let js = self.context(1);
        let stream = js
            .get_stream(name)
            .await
            .with_context(|| format!("looking up stream {name}"))?;
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::All,
                // Reading back a log: nothing to acknowledge, as with Kafka-style fetches.
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: CONSUMER_INACTIVE_THRESHOLD,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating a pull consumer on {name}"))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(fetch_records)
            .max_bytes_per_batch(MAX_PULL_BYTES)
            .messages()
            .await
            .with_context(|| format!("starting to pull from {name}"))?;
        Ok(JetStreamSubscription { messages })
    }
}

fn is_stream_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Publishes to one stream's subject.
#[derive(Debug)]
pub struct JetStreamProducer {
    js: jetstream::Context,
    subject: async_nats::Subject,
}

impl Producer for JetStreamProducer {
    fn append(
        &self,
        records: Vec<Bytes>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
        let js = self.js.clone();
        let subject = self.subject.clone();
        async move {
            // Publish the whole batch first, then collect its acks: the publishes of this
            // batch and the acks of earlier ones overlap.
            let mut acks = Vec::with_capacity(records.len());
            for record in records {
                acks.push(js.publish(subject.clone(), record).await?);
            }
            for ack in acks {
                ack.await?;
            }
            Ok(())
        }
    }
}

/// An ephemeral pull consumer's message stream.
pub struct JetStreamSubscription {
    messages: consumer::pull::Stream,
}

// The client's stream holds no Debug.
impl std::fmt::Debug for JetStreamSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSubscription")
            .finish_non_exhaustive()
    }
}

impl Subscription for JetStreamSubscription {
    async fn next_batch<F>(&mut self, wait: Duration, mut visit: F) -> anyhow::Result<usize>
    where
        F: FnMut(&[u8]) + Send,
    {
        let first = match tokio::time::timeout(wait, self.messages.next()).await {
            Err(_elapsed) => return Ok(0),
            Ok(None) => bail!("the JetStream consumer's message stream ended"),
            Ok(Some(message)) => message?,
        };
        visit(&first.payload);
        let mut n = 1;
        // Then whatever has already arrived, without waiting.
        while n < MAX_RECORDS_PER_POLL {
            match self.messages.next().now_or_never() {
                None => break,
                Some(None) => bail!("the JetStream consumer's message stream ended"),
                Some(Some(message)) => {
                    visit(&message?.payload);
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}
