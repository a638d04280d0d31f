//! Client quotas, as Kafka enforces them: bytes per second a principal (and client id)
//! may produce (`producer_byte_rate`) and fetch (`consumer_byte_rate`), set in the
//! metadata (`weir quota`, Kafka's AlterClientQuotas) for a user, a client id, a user's
//! client id, or their defaults; the most specific entity that has the key applies
//! ([`QuotaEntity::candidates`]).
//!
//! Each entity with a quota has a rate over the last [`QuotaWindows::count`] windows of
//! [`QuotaWindows::length`] (Kafka's `quota.window.num` and `quota.window.size.seconds`:
//! 11 of 1 s by default). A request that takes it over its quota is held back, here in the
//! core for every protocol, for as long as the rate needs to come back to the quota
//! (Kafka's formula: `(rate - quota) / quota × the measured span`, at most
//! [`MAX_THROTTLE`]); the delay is recorded in the request's context so each adapter
//! tells its client (Kafka's `throttle_time_ms`). A Kafka produce is held in the
//! connection's in-order phase, so the connection reads nothing meanwhile, as Kafka
//! mutes a throttled channel; a fetch or a gRPC answer comes late.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use weir_cluster::TopicRegistry;
use weir_cluster::controller::MetadataOffset;
use weir_cluster::security::{CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, QuotaEntity};

use crate::context::{Listener, Principal, RequestContext};

/// The default length of one window of a quota's rate (Kafka's
/// `quota.window.size.seconds`).
pub const QUOTA_WINDOW: Duration = Duration::from_secs(1);
/// The default number of windows a quota's rate is measured over (Kafka's
/// `quota.window.num`).
pub const QUOTA_WINDOWS: usize = 11;

/// How a quota's rate is measured: over the last `count` windows of `length`, and over
/// at least `count - 1` of them (so a new entity's first window is not read as a burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaWindows {
    pub length: Duration,
    pub count: usize,
}

impl Default for QuotaWindows {
    fn default() -> QuotaWindows {
        QuotaWindows {
            length: QUOTA_WINDOW,
            count: QUOTA_WINDOWS,
        }
    }
}
/// Longest a request is held back (a client's request timeout is 30 s by default).
pub const MAX_THROTTLE: Duration = Duration::from_secs(5);

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    Produce,
    Fetch,
}

impl QuotaKind {
    fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
        }
    }

    /// The label of its metric series.
    pub fn name(self) -> &'static str {
        match self {
            QuotaKind::Produce => "produce",
            QuotaKind::Fetch => "fetch",
        }
    }
}

/// The quotas in force and each throttled entity's rate.
#[derive(Debug, Default)]
pub struct Quotas {
    windows: QuotaWindows,
    /// `None` until the first request with a quota configured anywhere is seen.
    index: RwLock<Option<Arc<QuotaIndex>>>,
    rates: Mutex<HashMap<(QuotaEntity, QuotaKind), Rate>>,
}

/// The quotas of one metadata image, by entity.
#[derive(Debug)]
struct QuotaIndex {
    version: MetadataOffset,
    quotas: HashMap<(QuotaEntity, QuotaKind), u64>,
}

/// Bytes in each of the last windows.
#[derive(Debug, Clone)]
struct Rate {
    /// (window start, bytes), oldest first; at most `QuotaWindows::count`.
    windows: Vec<(Instant, u64)>,
    /// Requests held back, and for how long in all.
    throttled: u64,
    throttle_time: Duration,
}

impl Rate {
    fn new(config: QuotaWindows) -> Rate {
        Rate {
            windows: Vec::with_capacity(config.count),
            throttled: 0,
            throttle_time: Duration::ZERO,
        }
    }

    /// Adds `bytes` now; the bytes per second over the windows kept.
    fn record(&mut self, config: QuotaWindows, now: Instant, bytes: u64) -> (f64, Duration) {
        match self.windows.last_mut() {
            Some((start, sum)) if now.duration_since(*start) < config.length => *sum += bytes,
            _ => {
                if self.windows.len() >= config.count {
                    self.windows.remove(0);
                }
                self.windows.push((now, bytes));
            }
        }
        let total: u64 = self.windows.iter().map(|(_, b)| b).sum();
        // As Kafka: over at least the full span less one window, so a new entity's
        // first second is not read as a burst.
        let span = now
            .duration_since(self.windows[0].0)
            .max(config.length * (config.count.max(2) as u32 - 1));
        (total as f64 / span.as_secs_f64(), span)
    }
}

/// The delay that brings `rate` back to `quota` over `span` (Kafka's formula).
fn throttle_for(rate: f64, quota: u64, span: Duration) -> Duration {
    let quota = quota as f64;
    if rate <= quota {
        return Duration::ZERO;
    }
    span.mul_f64((rate - quota) / quota).min(MAX_THROTTLE)
}

/// One entity's figures, for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaUse {
    pub entity: String,
    pub kind: QuotaKind,
    pub quota: u64,
    pub throttled: u64,
    pub throttle_time: Duration,
}

impl Quotas {
    /// Quotas whose rates are measured over `windows`.
    pub fn new(windows: QuotaWindows) -> Quotas {
        Quotas {
            windows,
            ..Quotas::default()
        }
    }

    /// Counts `bytes` against the request's quota of `kind`, and holds the request back
    /// if that takes it over (see the module docs); the delay is added to the context.
    pub async fn enforce(
        &self,
        registry: &TopicRegistry,
        ctx: &RequestContext,
        kind: QuotaKind,
        bytes: usize,
    ) {
        let delay = self.record(registry, ctx, kind, bytes as u64, Instant::now());
        if !delay.is_zero() {
            ctx.add_throttle(delay);
            tokio::time::sleep(delay).await;
        }
    }

    /// [`Quotas::enforce`] without the wait: the delay due.
    fn record(
        &self,
        registry: &TopicRegistry,
        ctx: &RequestContext,
        kind: QuotaKind,
        bytes: u64,
        now: Instant,
    ) -> Duration {
        if matches!(ctx.listener, Listener::Internal | Listener::Http) {
            return Duration::ZERO;
        }
        let index = self.current(registry);
        if index.quotas.is_empty() {
            return Duration::ZERO;
        }
        let user = match &ctx.principal {
            Principal::User(name) => name.as_str(),
            Principal::Anonymous => Principal::ANONYMOUS_NAME,
        };
        let found = QuotaEntity::candidates(Some(user), ctx.client_id.as_deref())
            .into_iter()
            .find_map(|entity| {
                let quota = *index.quotas.get(&(entity.clone(), kind))?;
                Some((entity, quota))
            });
        let Some((entity, quota)) = found else {
            return Duration::ZERO;
        };
        let mut rates = self.rates.lock().expect("quota rates lock");
        let config = self.windows;
        let rate = rates
            .entry((entity, kind))
            .or_insert_with(|| Rate::new(config));
        let (measured, span) = rate.record(config, now, bytes);
        let delay = throttle_for(measured, quota, span);
        if !delay.is_zero() {
            rate.throttled += 1;
            rate.throttle_time += delay;
        }
        delay
    }

    /// The quotas for the image now applied, rebuilt when they changed.
    fn current(&self, registry: &TopicRegistry) -> Arc<QuotaIndex> {
        let image = registry.cluster().image();
        if let Some(index) = self.index.read().expect("quota index lock").as_ref()
            && index.version == image.quotas_version()
        {
            return index.clone();
        }
        let mut quotas = HashMap::new();
        for (entity, keys) in image.quotas() {
            for kind in [QuotaKind::Produce, QuotaKind::Fetch] {
                if let Some(value) = keys.get(kind.key()) {
                    quotas.insert((entity.clone(), kind), *value);
                }
            }
        }
        let fresh = Arc::new(QuotaIndex {
            version: image.quotas_version(),
            quotas,
        });
        *self.index.write().expect("quota index lock") = Some(fresh.clone());
        fresh
    }

    /// Every entity with a quota in force that requests were counted against.
    pub fn usage(&self) -> Vec<QuotaUse> {
        let index = self.index.read().expect("quota index lock").clone();
        let Some(index) = index else {
            return Vec::new();
        };
        let rates = self.rates.lock().expect("quota rates lock");
        let mut out: Vec<QuotaUse> = rates
            .iter()
            .filter_map(|((entity, kind), rate)| {
                Some(QuotaUse {
                    entity: entity.to_string(),
                    kind: *kind,
                    quota: *index.quotas.get(&(entity.clone(), *kind))?,
                    throttled: rate.throttled,
                    throttle_time: rate.throttle_time,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.entity, a.kind.name()).cmp(&(&b.entity, b.kind.name())));
        out
    }
}

impl Quotas {
    /// The quota series in Prometheus text format: each entity's quota, and the requests
    /// it held back and for how long.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let usage = self.usage();
        let mut out = String::new();
        type Field = fn(&QuotaUse) -> f64;
        let families: [(&str, &str, &str, Field); 3] = [
            (
                "weir_quota_bytes_per_second",
                "gauge",
                "The quota in force, per entity and kind.",
                |u| u.quota as f64,
            ),
            (
                "weir_quota_throttled_requests_total",
                "counter",
                "Requests a quota held back, per entity and kind.",
                |u| u.throttled as f64,
            ),
            (
                "weir_quota_throttle_seconds_total",
                "counter",
                "Time requests were held back by a quota, per entity and kind.",
                |u| u.throttle_time.as_secs_f64(),
            ),
        ];
        for (name, kind, help, field) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for u in &usage {
                let _ = writeln!(
                    out,
                    "{name}{{entity=\"{}\",kind=\"{}\"}} {}",
                    u.entity.replace('\\', "\\\\").replace('"', "\\\""),
                    u.kind.name(),
                    field(u)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_over_its_quota_is_held_back_in_proportion() {
        let start = Instant::now();
        let config = QuotaWindows::default();
        let mut rate = Rate::new(config);
        // 1 MB in the first window: measured over the minimum span of 10 s.
        let (measured, span) = rate.record(config, start, 1_000_000);
        assert_eq!(span, Duration::from_secs(10));
        assert!((measured - 100_000.0).abs() < 1.0, "{measured}");
        assert_eq!(throttle_for(measured, 100_000, span), Duration::ZERO);
        // Twice the quota: held back one span (capped).
        let (measured, span) = rate.record(config, start + Duration::from_millis(500), 1_000_000);
        assert!((measured - 200_000.0).abs() < 1.0, "{measured}");
        assert_eq!(throttle_for(measured, 100_000, span), MAX_THROTTLE);
        // 10% over: a tenth of the span.
        assert_eq!(
            throttle_for(110_000.0, 100_000, Duration::from_secs(10)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn old_windows_fall_out_of_the_rate() {
        let start = Instant::now();
        let config = QuotaWindows::default();
        let mut rate = Rate::new(config);
        rate.record(config, start, 5_000_000);
        let mut now = start;
        for _ in 0..QUOTA_WINDOWS {
            now += QUOTA_WINDOW;
            rate.record(config, now, 0);
        }
        let (measured, _) = rate.record(config, now, 0);
        assert_eq!(measured, 0.0, "the burst is older than the windows kept");
    }
}
