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
//!
//! Request-time quotas (`request_percentage`: the share of one thread's time an
//! entity's requests may take, 100 = one whole thread) count what each request really
//! costs the broker: [`Measured`] sums the durations of each poll of the request's
//! handling future, which is time on the broker's threads and leaves out every await
//! (a long poll, a replication ack, a byte-rate hold). That time is counted when the
//! request is done ([`Quotas::account`]); an entity over its quota has its next request
//! held back before it runs ([`Quotas::admit`], by the same formula), which on Kafka
//! happens in the connection's in-order phase, so a throttled connection reads nothing
//! meanwhile. A request held by both kinds of quota is held for the longer, not the
//! sum: the byte-rate hold takes off what the request-time hold already waited.
//! Exempt: the internal listener and the admin HTTP listener, super users (the brokers,
//! `Broker::admit_request`), and on Kafka what the connection answers itself
//! (ApiVersions, SASL), so a throttled client can always connect and authenticate.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use weir_cluster::TopicRegistry;
use weir_cluster::controller::MetadataOffset;
use weir_cluster::security::{
    CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, QuotaEntity, REQUEST_PERCENTAGE,
};

use crate::context::{Principal, Protocol, RequestContext};

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
    /// Bytes produced per second.
    Produce,
    /// Bytes fetched per second.
    Fetch,
    /// Time on the broker's threads, counted in microseconds per second.
    Request,
}

/// A quota of one percent of a thread's time, in the microseconds per second a
/// request-time quota's rate is measured in.
const MICROS_PER_PERCENT: u64 = 10_000;

impl QuotaKind {
    const ALL: [QuotaKind; 3] = [QuotaKind::Produce, QuotaKind::Fetch, QuotaKind::Request];

    fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
            QuotaKind::Request => REQUEST_PERCENTAGE,
        }
    }

    /// The label of its metric series.
    pub fn name(self) -> &'static str {
        match self {
            QuotaKind::Produce => "produce",
            QuotaKind::Fetch => "fetch",
            QuotaKind::Request => "request",
        }
    }

    /// The rate a configured value allows, in the unit the rate is measured in (bytes
    /// per second; microseconds of thread time per second for a request percentage).
    fn allowed(self, value: u64) -> u64 {
        match self {
            QuotaKind::Request => value.saturating_mul(MICROS_PER_PERCENT),
            QuotaKind::Produce | QuotaKind::Fetch => value,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's handling future, timed: the duration of each poll is added to its
    /// context's thread time ([`RequestContext::thread_time`]). Only polls count, so an
    /// await that parks the request (a long poll, a replication ack, a quota's hold)
    /// costs nothing; work the request hands to another task (a partition's append
    /// queue) is that task's. Time the thread lost to the operating system during a
    /// poll is counted, as Kafka counts a request handler thread's wall time.
    #[must_use = "futures do nothing unless polled"]
    pub struct Measured<F> {
        #[pin]
        inner: F,
        ctx: RequestContext,
    }
}

impl<F: Future> Measured<F> {
    /// `inner`, with its polls timed into `ctx`.
    pub fn new(ctx: &RequestContext, inner: F) -> Measured<F> {
        Measured {
            inner,
            ctx: ctx.clone(),
        }
    }
}

impl<F: Future> Future for Measured<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let started = Instant::now();
        let poll = this.inner.poll(cx);
        this.ctx.add_thread_time(started.elapsed());
        poll
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

impl QuotaIndex {
    /// The entity whose quota of `kind` applies to the request, and that quota: the most
    /// specific entity that has this key (Kafka's precedence, per key: a user's produce
    /// quota does not shadow the default user's request quota).
    fn applicable(&self, ctx: &RequestContext, kind: QuotaKind) -> Option<(QuotaEntity, u64)> {
        let user = match &ctx.principal {
            Principal::User(name) => name.as_str(),
            Principal::Anonymous => Principal::ANONYMOUS_NAME,
        };
        QuotaEntity::candidates(Some(user), ctx.client_id.as_deref())
            .into_iter()
            .find_map(|entity| {
                let quota = *self.quotas.get(&(entity.clone(), kind))?;
                Some((entity, quota))
            })
    }
}

/// Bytes in each of the last windows.
#[derive(Debug, Clone)]
struct Rate {
    /// (window start, bytes), oldest first; at most `QuotaWindows::count`.
    windows: Vec<(Instant, u64)>,
    /// Requests held back, and for how long in all.
    throttled: u64,
    throttle_time: Duration,
    /// Everything counted, in the rate's unit (bytes; microseconds of thread time).
    total: u64,
}

impl Rate {
    fn new(config: QuotaWindows) -> Rate {
        Rate {
            windows: Vec::with_capacity(config.count),
            throttled: 0,
            throttle_time: Duration::ZERO,
            total: 0,
        }
    }

    /// Adds `bytes` now; the bytes per second over the windows kept.
    fn record(&mut self, config: QuotaWindows, now: Instant, bytes: u64) -> (f64, Duration) {
        self.total = self.total.saturating_add(bytes);
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

/// How a [`QuotaFilter`] matches one part of an entity (Kafka's DescribeClientQuotas
/// match types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaMatch {
    /// This name.
    Exact(String),
    /// The default entity (every name without a quota of its own).
    Default,
    /// Any name, or the default: the entity has this part.
    Any,
}

/// Which quota entities to describe: each part given must match; with `strict`, an
/// entity must have no part the filter does not name (Kafka's `strict`). The empty,
/// loose filter selects every entity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaFilter {
    pub user: Option<QuotaMatch>,
    pub client_id: Option<QuotaMatch>,
    pub strict: bool,
}

impl QuotaFilter {
    /// Whether `entity` is selected.
    pub fn matches(&self, entity: &QuotaEntity) -> bool {
        use weir_cluster::security::EntityName;
        let part = |filter: &Option<QuotaMatch>, part: &Option<EntityName>| match (filter, part) {
            (None, None) => true,
            (None, Some(_)) => !self.strict,
            (Some(_), None) => false,
            (Some(QuotaMatch::Any), Some(_)) => true,
            (Some(QuotaMatch::Default), Some(name)) => *name == EntityName::Default,
            (Some(QuotaMatch::Exact(want)), Some(name)) => {
                matches!(name, EntityName::Name(n) if n == want)
            }
        };
        part(&self.user, &entity.user) && part(&self.client_id, &entity.client_id)
    }
}

/// One entity's figures, for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaUse {
    pub entity: String,
    pub kind: QuotaKind,
    /// As configured: bytes per second, or a percentage of one thread.
    pub quota: u64,
    pub throttled: u64,
    pub throttle_time: Duration,
    /// Counted against it: bytes, or microseconds of thread time.
    pub total: u64,
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
        // Whatever the request-time quota already held the request for counts.
        let delay = delay.saturating_sub(ctx.take_request_hold());
        if !delay.is_zero() {
            ctx.add_throttle(delay);
            tokio::time::sleep(delay).await;
        }
    }

    /// Holds a request back, before it runs, while its entity is over its
    /// `request_percentage` (see the module docs); the delay is added to the context.
    pub async fn admit(&self, registry: &TopicRegistry, ctx: &RequestContext) {
        let delay = self.record(registry, ctx, QuotaKind::Request, 0, Instant::now());
        if !delay.is_zero() {
            ctx.add_request_hold(delay);
            tokio::time::sleep(delay).await;
        }
    }

    /// Counts the thread time the request's handling took (measured by [`Measured`])
    /// against its entity's `request_percentage`.
    pub fn account(&self, registry: &TopicRegistry, ctx: &RequestContext) {
        let spent = ctx.take_thread_time();
        let micros = u64::try_from(spent.as_micros()).unwrap_or(u64::MAX);
        // The delay falls on the entity's next request, in `admit`.
        self.record_counted(
            registry,
            ctx,
            QuotaKind::Request,
            micros,
            Instant::now(),
            false,
        );
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
        self.record_counted(registry, ctx, kind, bytes, now, true)
    }

    /// Adds `bytes` (or microseconds) to the rate of the entity whose quota of `kind`
    /// applies to the request; the delay that brings it back to the quota. A delay
    /// that will be waited (`holds`) is counted in the entity's throttle figures.
    fn record_counted(
        &self,
        registry: &TopicRegistry,
        ctx: &RequestContext,
        kind: QuotaKind,
        bytes: u64,
        now: Instant,
        holds: bool,
    ) -> Duration {
        if ctx.listener.is_internal() || ctx.listener.protocol == Protocol::HTTP {
            return Duration::ZERO;
        }
        let index = self.current(registry);
        if index.quotas.is_empty() {
            return Duration::ZERO;
        }
        let Some((entity, quota)) = index.applicable(ctx, kind) else {
            return Duration::ZERO;
        };
        let mut rates = self.rates.lock().expect("quota rates lock");
        let config = self.windows;
        let rate = rates
            .entry((entity, kind))
            .or_insert_with(|| Rate::new(config));
        let (measured, span) = rate.record(config, now, bytes);
        let delay = throttle_for(measured, kind.allowed(quota), span);
        if holds && !delay.is_zero() {
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
            for kind in QuotaKind::ALL {
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
                    total: rate.total,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.entity, a.kind.name()).cmp(&(&b.entity, b.kind.name())));
        out
    }
}

impl Quotas {
    /// The quota series in Prometheus text format: each entity's quota, and the requests
    /// it held back and for how long; for request-time quotas, the thread time counted.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let usage = self.usage();
        let mut out = String::new();
        type Field = fn(&QuotaUse) -> Option<f64>;
        let families: [(&str, &str, &str, Field); 5] = [
            (
                "weir_quota_bytes_per_second",
                "gauge",
                "The byte-rate quota in force, per entity and kind.",
                |u| (u.kind != QuotaKind::Request).then_some(u.quota as f64),
            ),
            (
                "weir_quota_request_percentage",
                "gauge",
                "The request-time quota in force (percent of one thread), per entity.",
                |u| (u.kind == QuotaKind::Request).then_some(u.quota as f64),
            ),
            (
                "weir_quota_request_thread_seconds_total",
                "counter",
                "Time requests of an entity with a request-time quota spent on the broker's threads.",
                |u| (u.kind == QuotaKind::Request).then_some(u.total as f64 / 1e6),
            ),
            (
                "weir_quota_throttled_requests_total",
                "counter",
                "Requests a quota held back, per entity and kind.",
                |u| Some(u.throttled as f64),
            ),
            (
                "weir_quota_throttle_seconds_total",
                "counter",
                "Time requests were held back by a quota, per entity and kind.",
                |u| Some(u.throttle_time.as_secs_f64()),
            ),
        ];
        for (name, kind, help, field) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for u in &usage {
                let Some(value) = field(u) else { continue };
                let _ = writeln!(
                    out,
                    "{name}{{entity=\"{}\",kind=\"{}\"}} {value}",
                    u.entity.replace('\\', "\\\\").replace('"', "\\\""),
                    u.kind.name(),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Listener;

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

    #[test]
    fn request_quotas_take_the_most_specific_entity_with_the_key() {
        use weir_cluster::security::EntityName;
        let name = |n: &str| Some(EntityName::Name(n.into()));
        let entity = |user, client_id| QuotaEntity { user, client_id };
        let index = QuotaIndex {
            version: MetadataOffset::default(),
            quotas: HashMap::from([
                ((entity(name("alice"), None), QuotaKind::Produce), 1000),
                (
                    (entity(Some(EntityName::Default), None), QuotaKind::Request),
                    20,
                ),
                ((entity(name("alice"), name("etl")), QuotaKind::Request), 5),
                (
                    (entity(None, Some(EntityName::Default)), QuotaKind::Request),
                    70,
                ),
            ]),
        };
        let ctx = |user: Option<&str>, client_id: Option<&str>| {
            let mut ctx = RequestContext::anonymous(Listener::KAFKA, None)
                .with_client_id(client_id.map(str::to_owned));
            if let Some(user) = user {
                ctx.principal = Principal::User(user.into());
            }
            ctx
        };
        let found = |c: &RequestContext| index.applicable(c, QuotaKind::Request);
        // Alice's produce quota does not shadow the default user's request quota.
        assert_eq!(
            found(&ctx(Some("alice"), Some("web"))),
            Some((entity(Some(EntityName::Default), None), 20))
        );
        // Her etl client's own quota is more specific.
        assert_eq!(
            found(&ctx(Some("alice"), Some("etl"))),
            Some((entity(name("alice"), name("etl")), 5))
        );
        // Anonymous requests are the user ANONYMOUS, which the default user covers.
        assert_eq!(found(&ctx(None, None)).map(|(_, q)| q), Some(20));
        assert_eq!(
            index.applicable(&ctx(Some("bob"), None), QuotaKind::Fetch),
            None
        );
    }

    #[test]
    fn a_request_percentage_is_held_to_its_share_of_a_thread() {
        let config = QuotaWindows::default();
        let start = Instant::now();
        let mut rate = Rate::new(config);
        // 10 s of windows; 2 s of thread time in them: 20% of a thread.
        let (measured, span) = rate.record(config, start, 2_000_000);
        assert!((measured - 200_000.0).abs() < 1.0, "{measured}");
        let allowed = QuotaKind::Request.allowed(20);
        assert_eq!(allowed, 200_000);
        assert_eq!(throttle_for(measured, allowed, span), Duration::ZERO);
        // 10% allowed: twice over, held back the longest.
        assert_eq!(
            throttle_for(measured, QuotaKind::Request.allowed(10), span),
            MAX_THROTTLE
        );
        // 1% more than 20%: a twentieth of the span.
        assert_eq!(
            throttle_for(210_000.0, allowed, Duration::from_secs(10)),
            Duration::from_millis(500)
        );
    }

    /// Busy for `busy` of thread time.
    fn spin(busy: Duration) {
        let started = Instant::now();
        while started.elapsed() < busy {
            std::hint::spin_loop();
        }
    }

    #[tokio::test]
    async fn measured_counts_the_polls_and_not_the_awaits() {
        let ctx = RequestContext::anonymous(Listener::KAFKA, None);
        let started = Instant::now();
        Measured::new(&ctx, async {
            spin(Duration::from_millis(30));
            tokio::time::sleep(Duration::from_millis(300)).await;
            spin(Duration::from_millis(30));
        })
        .await;
        let wall = started.elapsed();
        let measured = ctx.thread_time();
        assert!(wall >= Duration::from_millis(360), "{wall:?}");
        // The two spins, not the sleep (and some slack for a loaded machine).
        assert!(measured >= Duration::from_millis(60), "{measured:?}");
        assert!(measured < Duration::from_millis(250), "{measured:?}");
        // Accounting takes it: counted once.
        assert_eq!(ctx.take_thread_time(), measured);
        assert_eq!(ctx.thread_time(), Duration::ZERO);
    }

    #[test]
    fn a_byte_rate_hold_takes_off_what_the_request_hold_waited() {
        let ctx = RequestContext::anonymous(Listener::KAFKA, None);
        ctx.add_request_hold(Duration::from_millis(300));
        assert_eq!(ctx.throttle_ms(), 300);
        // The first byte-rate hold sets it off; later ones (a stream's) do not.
        assert_eq!(ctx.take_request_hold(), Duration::from_millis(300));
        assert_eq!(ctx.take_request_hold(), Duration::ZERO);
    }

    #[test]
    fn quota_filters_match_exact_default_any_and_strict() {
        use weir_cluster::security::EntityName;
        let name = |n: &str| Some(EntityName::Name(n.into()));
        let entity = |user, client_id| QuotaEntity { user, client_id };
        let entities = [
            entity(name("alice"), None),
            entity(name("alice"), name("etl")),
            entity(Some(EntityName::Default), None),
            entity(None, name("etl")),
            entity(None, Some(EntityName::Default)),
        ];
        let selected = |filter: QuotaFilter| -> Vec<usize> {
            (0..entities.len())
                .filter(|&i| filter.matches(&entities[i]))
                .collect()
        };
        assert_eq!(selected(QuotaFilter::default()), vec![0, 1, 2, 3, 4]);
        let alice = QuotaFilter {
            user: Some(QuotaMatch::Exact("alice".into())),
            ..QuotaFilter::default()
        };
        assert_eq!(selected(alice.clone()), vec![0, 1]);
        assert_eq!(
            selected(QuotaFilter {
                strict: true,
                ..alice
            }),
            vec![0]
        );
        let default_user = QuotaFilter {
            user: Some(QuotaMatch::Default),
            ..QuotaFilter::default()
        };
        assert_eq!(selected(default_user), vec![2]);
        let any_client = QuotaFilter {
            client_id: Some(QuotaMatch::Any),
            ..QuotaFilter::default()
        };
        assert_eq!(selected(any_client.clone()), vec![1, 3, 4]);
        assert_eq!(
            selected(QuotaFilter {
                strict: true,
                ..any_client
            }),
            vec![3, 4]
        );
    }
}
