//! Redis Streams through the redis crate: `XADD key * v <payload>` in pipelines on one
//! multiplexed connection (several pipelines in flight), `XREAD COUNT n BLOCK ms` on a
//! connection of its own to read back, and the AOF for durability.
//!
//! What an ack means here (Redis 7.0 AOF, set with `CONFIG SET appendfsync` before each
//! run, on a server started with `appendonly yes`):
//! - `leader`: `appendfsync everysec`. Before replying, each event-loop iteration
//!   `write(2)`s the commands it ran to the AOF (the OS page cache); a background thread
//!   fsyncs once a second. An OS crash or power loss can lose about the last second of
//!   acknowledged records (up to 2 s when an fsync stalls and Redis postpones the write).
//! - `durable`: `appendfsync always`. Each event-loop iteration writes and fdatasyncs the
//!   AOF before any of its replies go out: a group commit per iteration, so every
//!   acknowledged record is on disk.
//!
//! Redis rewrites the AOF in the background when it doubles (`auto-aof-rewrite-percentage`);
//! `run-peers.sh` turns that off so no rewrite (a fork and a full copy of the data set)
//! lands in the middle of a measurement, and the results record the setting.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};

use super::{Endpoint, MAX_RECORDS_PER_POLL, Peer, Producer, Subscription};
use crate::result::{Acks, Durability};

/// Client library and version, from Cargo.lock at build time.
const CLIENT: &str = concat!("redis-rs ", env!("WEIR_PEER_BENCH_REDIS_VERSION"));

/// The field each stream entry carries its payload in.
const FIELD: &str = "v";

/// How long one command or pipeline may take before the client gives up on it: long
/// enough for a pipeline of 1 KiB records behind an fsync on a slow disk, and for a
/// blocked XREAD (whose BLOCK is shorter, see [`MAX_BLOCK`]).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest BLOCK an XREAD asks for, well inside [`RESPONSE_TIMEOUT`].
const MAX_BLOCK: Duration = Duration::from_secs(10);

/// Pipelines a multiplexed connection queues before a sender waits: above any window the
/// command line allows, so the window is the workload's, not the client's.
const PIPELINE_BUFFER: usize = 4096;

/// A connection to a Redis server.
#[derive(Debug)]
pub struct RedisStreams {
    client: redis::Client,
    config: AsyncConnectionConfig,
    con: MultiplexedConnection,
    version: String,
}

impl RedisStreams {
    pub async fn connect(endpoint: Endpoint) -> anyhow::Result<RedisStreams> {
        let url = format!("redis://{}/", endpoint.addr);
        let client = redis::Client::open(url.as_str())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(endpoint.request_timeout))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_pipeline_buffer_size(PIPELINE_BUFFER);
        let mut con = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .with_context(|| format!("connecting to redis-server at {url}"))?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut con)
            .await?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown")
            .trim()
            .to_owned();
        Ok(RedisStreams {
            client,
            config,
            con,
            version,
        })
    }

    async fn config_get(&self, name: &str) -> anyhow::Result<String> {
        let mut con = self.con.clone();
        // CONFIG GET answers [name, value].
        let pair: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(&mut con)
            .await?;
        pair.into_iter()
            .nth(1)
            .with_context(|| format!("CONFIG GET {name} returned no value"))
    }

    async fn config_set(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let mut con = self.con.clone();
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async::<()>(&mut con)
            .await
            .with_context(|| format!("CONFIG SET {name} {value}"))
    }
}

impl Peer for RedisStreams {
    type Producer = RedisProducer;
    type Subscription = RedisSubscription;

    fn server(&self) -> String {
        format!("redis-server {}", self.version)
    }

    fn client(&self) -> String {
        CLIENT.to_owned()
    }

    async fn set_durability(&mut self, durability: Durability) -> anyhow::Result<Acks> {
        // Without the AOF nothing reaches the disk before a snapshot: no ack would mean
        // what the table says. A server started by run-peers.sh already has it on.
        if self.config_get("appendonly").await? != "yes" {
            self.config_set("appendonly", "yes").await?;
        }
        let fsync = match durability {
            Durability::Leader => "everysec",
            Durability::Durable => "always",
        };
        self.config_set("appendfsync", fsync).await?;
        ensure!(
            self.config_get("appendfsync").await? == fsync,
            "redis-server did not take appendfsync {fsync}"
        );
        let rewrite = self.config_get("auto-aof-rewrite-percentage").await?;
        let rewrite = if rewrite == "0" {
            "automatic AOF rewrite off".to_owned()
        } else {
            format!("automatic AOF rewrite at +{rewrite}%")
        };
        let meaning = match durability {
            Durability::Leader => format!(
                "Redis AOF, appendfsync everysec: the reply follows a write(2) of the command \
                 to the AOF (OS page cache); a background fsync runs once a second, so an OS \
                 crash can lose about the last 1-2 s of acked records; {rewrite}"
            ),
            Durability::Durable => format!(
                "Redis AOF, appendfsync always: each event-loop iteration writes and \
                 fdatasyncs the AOF before sending any of its replies (a group commit per \
                 iteration); {rewrite}"
            ),
        };
        Ok(Acks {
            durability,
            fsync_before_ack: durability == Durability::Durable,
            meaning,
        })
    }

    async fn recreate_stream(&self, key: &str) -> anyhow::Result<()> {
        // XADD creates the stream; an empty stream and no key read the same with XREAD.
        let mut con = self.con.clone();
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut con)
            .await?;
        Ok(())
    }

    async fn stream_len(&self, key: &str) -> anyhow::Result<Option<u64>> {
        let mut con = self.con.clone();
        let exists: bool = redis::cmd("EXISTS").arg(key).query_async(&mut con).await?;
        if !exists {
            return Ok(None);
        }
        let len: u64 = redis::cmd("XLEN").arg(key).query_async(&mut con).await?;
        Ok(Some(len))
    }

    async fn producer(&self, key: &str, _window_records: usize) -> anyhow::Result<RedisProducer> {
        Ok(RedisProducer {
            con: self.con.clone(),
            key: key.to_owned(),
        })
    }

    async fn subscribe(
        &self,
        key: &str,
        fetch_records: usize,
    ) -> anyhow::Result<RedisSubscription> {
        // A blocked XREAD holds up every later command on its connection: give the reader
        // its own.
        let con = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .context("opening the reader's connection")?;
        Ok(RedisSubscription {
            con,
            key: key.to_owned(),
            count: fetch_records.clamp(1, MAX_RECORDS_PER_POLL),
            last_id: "0-0".to_owned(),
        })
    }
}

/// Appends with pipelined XADDs.
#[derive(Debug)]
pub struct RedisProducer {
    con: MultiplexedConnection,
    key: String,
}

impl Producer for RedisProducer {
    fn append(
        &self,
        records: Vec<Bytes>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
        let mut pipe = redis::pipe();
        for record in &records {
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("*")
                .arg(FIELD)
                .arg(record.as_ref())
                .ignore();
        }
        let mut con = self.con.clone();
        async move {
            // Fails if any XADD in the pipeline failed.
            pipe.query_async::<()>(&mut con).await?;
            Ok(())
        }
    }
}

/// Reads a stream with XREAD from the last id seen.
#[derive(Debug)]
pub struct RedisSubscription {
    con: MultiplexedConnection,
    key: String,
    count: usize,
    last_id: String,
}

impl Subscription for RedisSubscription {
    async fn next_batch<F>(&mut self, wait: Duration, mut visit: F) -> anyhow::Result<usize>
    where
        F: FnMut(&[u8]) + Send,
    {
        // BLOCK 0 would wait forever.
        let block_ms = wait.clamp(Duration::from_millis(1), MAX_BLOCK).as_millis() as u64;
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(self.count)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(&self.last_id)
            .query_async(&mut self.con)
            .await?;
        let entries = match xread_entries(reply)? {
            Some(entries) => entries,
            None => return Ok(0),
        };
        let mut last_id = None;
        let n = entries.len();
        for entry in entries {
            let (id, payload) = stream_entry(entry)?;
            visit(&payload);
            last_id = Some(id);
        }
        if let Some(id) = last_id {
            self.last_id = id;
        }
        Ok(n)
    }
}

/// The entries of a one-stream XREAD reply (RESP2: `[[key, [entry, ...]]]`), `None` when
/// BLOCK ran out (a nil reply).
fn xread_entries(reply: Value) -> anyhow::Result<Option<Vec<Value>>> {
    let streams = match reply {
        Value::Nil => return Ok(None),
        Value::Array(streams) => streams,
        other => bail!("unexpected XREAD reply: {other:?}"),
    };
    let Some(Value::Array(key_and_entries)) = streams.into_iter().next() else {
        return Ok(None);
    };
    match key_and_entries.into_iter().nth(1) {
        Some(Value::Array(entries)) => Ok(Some(entries)),
        other => bail!("unexpected XREAD stream reply: {other:?}"),
    }
}

/// The id and payload of one stream entry (`[id, [field, value]]`).
fn stream_entry(entry: Value) -> anyhow::Result<(String, Vec<u8>)> {
    let Value::Array(parts) = entry else {
        bail!("unexpected stream entry: {entry:?}");
    };
    let mut parts = parts.into_iter();
    let id = match parts.next() {
        Some(Value::BulkString(id)) => String::from_utf8(id).context("stream entry id")?,
        other => bail!("unexpected stream entry id: {other:?}"),
    };
    let payload = match parts.next() {
        Some(Value::Array(fields)) => match fields.into_iter().nth(1) {
            Some(Value::BulkString(payload)) => payload,
            other => bail!("unexpected stream entry value: {other:?}"),
        },
        other => bail!("unexpected stream entry fields: {other:?}"),
    };
    Ok((id, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn parses_an_xread_reply() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"key"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk(b"1-0"),
                    Value::Array(vec![bulk(b"v"), bulk(b"a")]),
                ]),
                Value::Array(vec![
                    bulk(b"1-1"),
                    Value::Array(vec![bulk(b"v"), bulk(b"bc")]),
                ]),
            ]),
        ])]);
        let entries = xread_entries(reply).unwrap().unwrap();
        let parsed: Vec<_> = entries
            .into_iter()
            .map(|e| stream_entry(e).unwrap())
            .collect();
        assert_eq!(
            parsed,
            vec![
                ("1-0".to_owned(), b"a".to_vec()),
                ("1-1".to_owned(), b"bc".to_vec())
            ]
        );
        assert!(xread_entries(Value::Nil).unwrap().is_none());
        assert!(xread_entries(Value::Int(3)).is_err());
    }
}
