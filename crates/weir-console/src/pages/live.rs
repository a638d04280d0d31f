//! Live charts (`/console/live`) of the broker's own metrics, no Prometheus needed:
//! bytes and records in and out per topic and in all, requests per second and their
//! mean latency; and the server-sent events (`/console/events`) that carry each new
//! sample to every open page.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use maud::html;
use serde::Serialize;
use tokio_stream::wrappers::WatchStream;
use weir_broker::LATENCY_BUCKETS_SECONDS;

use crate::error::PageError;
use crate::history::Step;
use crate::layout::{self, Section};
use crate::pages::Caller;
use crate::{Console, chart, units};
use weir_broker::security::{Operation, ResourceType};

/// Most server-sent event streams open at once (each holds a task and a connection).
pub const MAX_EVENT_STREAMS: usize = 64;

pub(crate) async fn page(State(c): State<Arc<Console>>, caller: Caller) -> Response {
    let latest = c.history.latest().unwrap_or_default();
    let latency = c.core.metrics().latency();
    let charts = [
        ("all:bytes_in", "Bytes in per second", "B/s"),
        ("all:bytes_out", "Bytes out per second", "B/s"),
        ("all:records_in", "Records in per second", "rec/s"),
        ("all:records_out", "Records out per second", "rec/s"),
        ("rpc:calls", "Requests per second", "req/s"),
        ("rpc:latency_ms", "Mean request latency (ms)", "ms"),
    ];
    let now = latest.series();
    let body = html! {
        h1 { "Live" }
        p.note {
            "Sampled every " (crate::SAMPLE_INTERVAL.as_secs()) " s from this broker's own counters; the last "
            (crate::HISTORY_SAMPLES * crate::SAMPLE_INTERVAL.as_secs() as usize / 60) " minutes are kept in memory. "
            span #live-status role="status" { "Updates need JavaScript; reload to refresh." }
        }
        div.charts {
            @for (series, label, unit) in charts {
                figure {
                    @let values = c.history.series(series);
                    @let peak = values.iter().copied().fold(0.0_f64, f64::max);
                    figcaption {
                        (label) ": "
                        strong data-live=(series) data-unit=(unit) { (units::rate(now.get(series).copied().unwrap_or(0.0), unit)) }
                        span.peak { " · peak " span data-peak=(series) data-unit=(unit) { (units::rate(peak, unit)) } }
                    }
                    (chart::chart(series, label, &values))
                }
            }
        }
        h2 { "Topics" }
        div.scroll {
            table #live-topics {
                thead {
                    tr {
                        th scope="col" { "Topic" }
                        th scope="col" class="num" { "Bytes in/s" }
                        th scope="col" { "" }
                        th scope="col" class="num" { "Bytes out/s" }
                        th scope="col" { "" }
                    }
                }
                tbody {
                    @for (topic, rates) in latest.topics.iter().filter(|(t, _)| may_see(&c, &caller, ResourceType::Topic, t)) {
                        @let bytes_in = format!("topic:{topic}:bytes_in");
                        @let bytes_out = format!("topic:{topic}:bytes_out");
                        tr {
                            th scope="row" { a href=(format!("/console/topics/{topic}")) { (topic) } }
                            td.num data-live=(bytes_in) data-unit="B/s" { (units::rate(rates.bytes_in, "B/s")) }
                            td { (chart::sparkline(&bytes_in, &format!("bytes in per second to {topic}"), &c.history.series(&bytes_in))) }
                            td.num data-live=(bytes_out) data-unit="B/s" { (units::rate(rates.bytes_out, "B/s")) }
                            td { (chart::sparkline(&bytes_out, &format!("bytes out per second of {topic}"), &c.history.series(&bytes_out))) }
                        }
                    }
                }
            }
        }
        h2 { "Request latency since the broker started" }
        div.scroll {
            table #latency {
                thead {
                    tr {
                        th scope="col" { "Request" }
                        th scope="col" class="num" { "Count" }
                        th scope="col" class="num" { "Mean" }
                        th scope="col" class="num" { "p50 at most" }
                        th scope="col" class="num" { "p99 at most" }
                    }
                }
                tbody {
                    @for rpc in &latency {
                        tr {
                            th scope="row" { (rpc.rpc) }
                            td.num { (units::count(rpc.count as i64)) }
                            td.num { (if rpc.count > 0 { format!("{:.2} ms", rpc.sum_seconds / rpc.count as f64 * 1000.0) } else { "—".into() }) }
                            td.num { (quantile(&rpc.buckets, rpc.count, 0.5)) }
                            td.num { (quantile(&rpc.buckets, rpc.count, 0.99)) }
                        }
                    }
                }
            }
        }
    };
    layout::respond("Live", Some(Section::Live), body)
}

/// The bucket bound under which a `q` share of `count` calls fell, from non-cumulative
/// `buckets` (an upper bound on the quantile: the histogram has no finer grain).
fn quantile(buckets: &[u64; LATENCY_BUCKETS_SECONDS.len()], count: u64, q: f64) -> String {
    if count == 0 {
        return "—".into();
    }
    let wanted = (count as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (bound, n) in LATENCY_BUCKETS_SECONDS.iter().zip(buckets) {
        seen += n;
        if seen >= wanted {
            return format!("{} ms", bound * 1000.0);
        }
    }
    format!(
        "over {} ms",
        LATENCY_BUCKETS_SECONDS[LATENCY_BUCKETS_SECONDS.len() - 1] * 1000.0
    )
}

/// One server-sent event: the latest step's values by series name.
#[derive(Debug, Serialize)]
struct Update {
    at_ms: i64,
    series: std::collections::BTreeMap<String, f64>,
}

/// The samples of `step` that `caller` may see: the broker's totals, and the topics and
/// groups her ACLs let her describe.
fn update(c: &Console, caller: &Caller, step: &Step) -> Update {
    let mut series = step.series();
    series.retain(|key, _| {
        let mut parts = key.splitn(2, ':');
        let (kind, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        // "topic:NAME:FIELD" and "group:NAME:lag": NAME may hold ':' itself.
        let name = rest.rsplit_once(':').map_or(rest, |(name, _)| name);
        match kind {
            "topic" => may_see(c, caller, ResourceType::Topic, name),
            "group" => may_see(c, caller, ResourceType::Group, name),
            _ => true,
        }
    });
    Update {
        at_ms: step.at_ms,
        series,
    }
}

/// Whether `caller` may describe the topic or group `name`.
fn may_see(c: &Console, caller: &Caller, kind: ResourceType, name: &str) -> bool {
    c.core
        .may(caller.context(), Operation::Describe, kind, name)
}

/// Releases a stream's place when the stream ends.
struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) async fn events(State(c): State<Arc<Console>>, caller: Caller) -> Response {
    let open = c.event_streams.fetch_add(1, Ordering::SeqCst);
    let slot = StreamSlot(c.event_streams.clone());
    if open >= MAX_EVENT_STREAMS {
        return PageError::Refused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("{MAX_EVENT_STREAMS} live pages are open already; close one"),
        }
        .into_response();
    }
    let history = c.history.clone();
    let mut stopping = c.core.shutdown_signal();
    let console = c.clone();
    let stream = WatchStream::from_changes(history.subscribe())
        .take_until(async move { weir_broker::until_stopping(&mut stopping).await })
        .filter_map(move |_| {
            let _slot = &slot;
            // Filtered here, before the future: it may not borrow the closure's captures.
            let update = history
                .latest()
                .map(|step| update(&console, &caller, &step));
            async move {
                let json = serde_json::to_string(&update?).ok()?;
                let event = Event::default().event("sample").data(json);
                Some(Ok::<Event, Infallible>(event))
            }
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_the_bucket_bounds_they_fall_under() {
        let mut buckets = [0; LATENCY_BUCKETS_SECONDS.len()];
        assert_eq!(quantile(&buckets, 0, 0.5), "—");
        buckets[0] = 98; // <= 0.5 ms
        buckets[4] = 2; // <= 10 ms
        assert_eq!(quantile(&buckets, 100, 0.5), "0.5 ms");
        assert_eq!(quantile(&buckets, 100, 0.99), "10 ms");
        assert_eq!(quantile(&buckets, 101, 0.999), "over 10000 ms");
    }
}
