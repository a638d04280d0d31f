//! [`ProducerConfig`]: every producer setting, its default and why.

use std::time::Duration;

use weir_batch::Compression;

use crate::connection::{ClientTls, DEFAULT_BROKER};
use crate::error::ClientError;

/// Default time a batch waits for more records before it is sent. A few milliseconds
/// lets batches fill under load while adding little latency when idle.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);
/// Default batch size (before compression): 256 KiB. Per-batch costs (a request frame,
/// a broker append, an index entry) are paid about 2,400 times less often than per 100 B
/// record at this size, so they vanish next to per-byte costs; it stays well under the
/// broker's 1 MiB message limit and a 4 MiB HTTP/2 stream window (several batches in
/// flight fit in one window), and a busy partition fills it in about 1.5 ms at 1.5 M
/// records/s, so linger rarely matters under load. Kafka's 16 KiB would cost 16x the
/// per-batch work for the same records.
pub const DEFAULT_BATCH_BYTES: usize = 256 * 1024;
/// Default batches in flight per partition. Five, as Kafka's
/// `max.in.flight.requests.per.connection`: enough to keep a partition busy across a
/// round trip. Order is kept with retries on (see the `producer` module docs).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 5;
/// Default times a failed batch is sent again (retriable errors only): with the backoff
/// below about 7.5 s of retrying, enough to outlast a leader failover after a broker
/// crash (its 2 s session timeout, an election, the new leader taking over).
pub const DEFAULT_RETRIES: u32 = 10;
/// Default wait before the first retry; doubled for each later one.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Default ceiling of the doubling retry backoff (Kafka's `retry.backoff.max.ms`).
pub const DEFAULT_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Default time the broker has to answer one request before the stream is considered
/// broken and its requests retried.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default memory for records waiting to be sent or acknowledged. When it is used up,
/// `send` waits (backpressure) instead of buffering more.
pub const DEFAULT_BUFFER_MEMORY_BYTES: usize = 64 * 1024 * 1024;
/// Largest `buffer_memory` accepted: memory is counted in a semaphore's `u32` permits.
pub const MAX_BUFFER_MEMORY_BYTES: usize = u32::MAX as usize;
/// Largest `max_in_flight` accepted.
pub const MAX_IN_FLIGHT_LIMIT: usize = 32;
/// Most produce requests outstanding on the stream at once, over all partitions; bounds
/// the request queue between the sender task and the HTTP/2 connection.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 256;
/// How long cached topic metadata (partition counts) is used before it is fetched again,
/// so partitions added to a topic are found (Kafka's `metadata.max.age.ms`).
pub const METADATA_MAX_AGE: Duration = Duration::from_secs(300);

/// When the broker acknowledges a produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Do not wait for the append: delivery results carry offset -1 and errors are lost.
    None,
    /// After the partition leader appended the records.
    #[default]
    Leader,
    /// After every in-sync replica has them (durable per the flush policy on one node).
    All,
}

/// Producer settings. Start from [`ProducerConfig::default`] and change what you need.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Bootstrap broker addresses, `host:port` or `http://host:port` (an entry may be a
    /// comma-separated list); the first reachable is used, and the cluster's other
    /// brokers are learnt from it.
    pub brokers: Vec<String>,
    /// How long a batch waits for more records before it is sent.
    pub linger: Duration,
    /// Send a partition's open batch at once when the partition has no request in
    /// flight, instead of lingering (as Nagle's algorithm does for TCP): a record sent
    /// to an idle partition leaves immediately, and records arriving while a request is
    /// in flight are batched until its answer comes back (or `linger` runs out). Lowest
    /// latency at moderate rates; under load partitions are rarely idle, so batches stay
    /// large. Off by default, since at low rates it sends many small batches where a long
    /// `linger` was meant to gather them (for compression, say). `weir bench e2e` turns
    /// it on.
    pub send_when_idle: bool,
    /// A batch is closed before a record would take it past this many bytes
    /// (uncompressed); one record larger than this goes alone in its own batch.
    pub batch_bytes: usize,
    /// Batches in flight per partition, at least 1.
    pub max_in_flight: usize,
    /// Codec applied to each batch on the client.
    pub compression: Compression,
    /// When the broker answers; `Acks::All` by default (as Kafka 3.0+), so a record is
    /// acknowledged only once every in-sync replica has it.
    pub acks: Acks,
    /// Times a batch that failed with a retriable error is sent again.
    pub retries: u32,
    /// Wait before the first retry of a batch; doubles per retry.
    pub retry_backoff: Duration,
    /// Ceiling of the retry backoff.
    pub retry_backoff_max: Duration,
    /// Time the broker has to answer a request.
    pub request_timeout: Duration,
    /// Time connecting to a broker may take (TCP, then its first answer).
    pub connect_timeout: Duration,
    /// TLS to the brokers (`None`: plaintext); see [`crate::connection`].
    pub tls: Option<ClientTls>,
    /// Bytes of records buffered or in flight before `send` waits.
    pub buffer_memory: usize,
    /// Idempotent produce (on by default, as in Kafka 3.0+): the producer gets a
    /// producer id from the cluster and numbers its records per partition, so a batch
    /// it retries (after a lost answer, a broken connection or a leader change) is
    /// stored once. Needs `max_in_flight` at most [`MAX_IDEMPOTENT_IN_FLIGHT`].
    pub idempotence: bool,
    /// A name that stays with this producer across restarts (Kafka's
    /// `transactional.id`): a new instance under the same name fences the older one,
    /// whose writes are then refused (`ClientError::ProducerFenced`). `None`: a fresh
    /// producer id per instance. Only with `idempotence`.
    pub producer_name: Option<String>,
    /// A transactional producer's transactional id (Kafka's `transactional.id`), for
    /// [`TransactionalProducer`](crate::TransactionalProducer): 1 to 255 characters, with
    /// `idempotence` and `acks` all, not with `producer_name`.
    pub transactional_id: Option<String>,
    /// How long a transaction may stay open before its coordinator aborts it (Kafka's
    /// `transaction.timeout.ms`), at most the broker's `transaction.max.timeout.ms`.
    pub transaction_timeout: Duration,
}

/// `transaction_timeout`'s default, as Kafka producers'.
pub const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Most batches in flight per partition with idempotence: the partition leader
/// recognises a retry among the producer's last 5 batches.
pub const MAX_IDEMPOTENT_IN_FLIGHT: usize = 5;

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            brokers: vec![DEFAULT_BROKER.to_owned()],
            linger: DEFAULT_LINGER,
            send_when_idle: false,
            batch_bytes: DEFAULT_BATCH_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            compression: Compression::None,
            acks: Acks::All,
            retries: DEFAULT_RETRIES,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            retry_backoff_max: DEFAULT_RETRY_BACKOFF_MAX,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: crate::connection::DEFAULT_CONNECT_TIMEOUT,
            tls: None,
            buffer_memory: DEFAULT_BUFFER_MEMORY_BYTES,
            idempotence: true,
            producer_name: None,
            transactional_id: None,
            transaction_timeout: DEFAULT_TRANSACTION_TIMEOUT,
        }
    }
}

impl ProducerConfig {
    /// Checks the settings against their limits.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |what: String| Err(ClientError::Config(what));
        if self.max_in_flight == 0 || self.max_in_flight > MAX_IN_FLIGHT_LIMIT {
            return bad(format!(
                "max_in_flight must be 1..={MAX_IN_FLIGHT_LIMIT}, not {}",
                self.max_in_flight
            ));
        }
        if self.batch_bytes <= weir_batch::HEADER_BYTES
            || self.batch_bytes > weir_batch::MAX_BATCH_BYTES
        {
            return bad(format!(
                "batch_bytes must be {}..={}, not {}",
                weir_batch::HEADER_BYTES + 1,
                weir_batch::MAX_BATCH_BYTES,
                self.batch_bytes
            ));
        }
        if self.buffer_memory < self.batch_bytes || self.buffer_memory > MAX_BUFFER_MEMORY_BYTES {
            return bad(format!(
                "buffer_memory must be batch_bytes ({})..={MAX_BUFFER_MEMORY_BYTES}, not {}",
                self.batch_bytes, self.buffer_memory
            ));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return bad("request_timeout and connect_timeout must be above zero".to_owned());
        }
        if self.idempotence && self.max_in_flight > MAX_IDEMPOTENT_IN_FLIGHT {
            return bad(format!(
                "max_in_flight must be at most {MAX_IDEMPOTENT_IN_FLIGHT} with idempotence, not {}",
                self.max_in_flight
            ));
        }
        if let Some(name) = &self.producer_name {
            if !self.idempotence {
                return bad("producer_name needs idempotence".to_owned());
            }
            if name.is_empty() || name.chars().count() > 255 {
                return bad("producer_name must have 1 to 255 characters".to_owned());
            }
        }
        if let Some(id) = &self.transactional_id {
            if !self.idempotence || self.acks != Acks::All {
                return bad("transactional_id needs idempotence and acks all".to_owned());
            }
            if self.producer_name.is_some() {
                return bad("transactional_id and producer_name exclude each other".to_owned());
            }
            if id.is_empty() || id.chars().count() > 255 {
                return bad("transactional_id must have 1 to 255 characters".to_owned());
            }
            if self.transaction_timeout.is_zero()
                || self.transaction_timeout.as_millis() > u128::from(u32::MAX)
            {
                return bad(format!(
                    "transaction_timeout must be above zero and fit u32 milliseconds, not {:?}",
                    self.transaction_timeout
                ));
            }
        }
        Ok(())
    }

    /// The wait before retry number `attempt` (1 for the first retry): `retry_backoff`
    /// doubled per earlier retry, at most `retry_backoff_max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16);
        self.retry_backoff
            .saturating_mul(1 << doublings)
            .min(self.retry_backoff_max.max(self.retry_backoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        ProducerConfig::default().validate().unwrap();
    }

    #[test]
    fn limits_are_enforced() {
        let config = |f: fn(&mut ProducerConfig)| {
            let mut c = ProducerConfig::default();
            f(&mut c);
            c.validate()
        };
        assert!(config(|c| c.max_in_flight = 0).is_err());
        assert!(config(|c| c.max_in_flight = MAX_IN_FLIGHT_LIMIT + 1).is_err());
        assert!(config(|c| c.batch_bytes = 10).is_err());
        assert!(config(|c| c.batch_bytes = weir_batch::MAX_BATCH_BYTES + 1).is_err());
        assert!(config(|c| c.buffer_memory = c.batch_bytes - 1).is_err());
        assert!(config(|c| c.request_timeout = Duration::ZERO).is_err());
        assert!(config(|c| c.max_in_flight = MAX_IDEMPOTENT_IN_FLIGHT + 1).is_err());
        assert!(
            config(|c| {
                c.idempotence = false;
                c.max_in_flight = MAX_IDEMPOTENT_IN_FLIGHT + 1;
            })
            .is_ok()
        );
        assert!(config(|c| c.producer_name = Some(String::new())).is_err());
        let txn = |f: fn(&mut ProducerConfig)| {
            let mut c = ProducerConfig {
                transactional_id: Some("t".into()),
                ..ProducerConfig::default()
            };
            f(&mut c);
            c.validate()
        };
        assert!(txn(|_| {}).is_ok());
        assert!(txn(|c| c.idempotence = false).is_err());
        assert!(txn(|c| c.acks = Acks::Leader).is_err());
        assert!(txn(|c| c.producer_name = Some("p".into())).is_err());
        assert!(txn(|c| c.transactional_id = Some("x".repeat(256))).is_err());
        assert!(txn(|c| c.transaction_timeout = Duration::ZERO).is_err());
        assert!(
            config(|c| {
                c.idempotence = false;
                c.producer_name = Some("p".into());
            })
            .is_err()
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let c = ProducerConfig {
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1000),
            ..ProducerConfig::default()
        };
        let waits: Vec<u128> = (1..=6).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(c.backoff(u32::MAX).as_millis(), 1000);
    }
}
