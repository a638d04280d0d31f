//! The web console of a Weir broker, served on its admin HTTP listener beside `/metrics`
//! and `/health`: the cluster, topics and their partitions, a message browser, consumer
//! and share groups, AMQP queues and exchanges, and live charts, as server-rendered HTML (maud) with a little
//! hand-written JavaScript that only enhances (server-sent events redraw the charts).
//!
//! - [`router`]: the routes, under `/console` (and `/` redirecting there).
//! - `pages/`: one file per page family (cluster, topics, the message browser, groups,
//!   queues and exchanges, live charts); each handler reads through the broker core's operations, the same
//!   ones the gRPC and Kafka adapters call.
//! - `history`: the samples behind the charts (the broker keeps no history: a background
//!   task samples its counters into a bounded ring).
//! - `error`: the one place a core [`weir_broker::Reason`] becomes an HTTP status and an
//!   error page.
//! - `csrf`: the defences against other sites: every request names the console by
//!   address (DNS rebinding), and every form post carries a per-process token, comes from
//!   the same origin and through loopback.
//! - `layout`, `chart`, `records`, `units`: the page shell, SVG sparklines, record
//!   rendering (text, JSON, hex; truncated), and number formatting.
//!
//! Architecture invariant: this crate is an adapter over `weir-broker`, like the gRPC and
//! Kafka listeners: it never reaches `weir-cluster` or `weir-log` (what it needs that
//! clients do not, such as a replica's size on disk, is a read-only operation of the
//! core), and it never implements an operation itself. Record keys, values and headers
//! are untrusted: they reach a page only through maud's escaping.

mod chart;
mod csrf;
mod error;
mod history;
mod layout;
mod pages;
mod records;
mod units;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use axum::Router;
use axum::response::Redirect;
use axum::routing::{get, post};
use weir_broker::metadata::Endpoints;
use weir_broker::{Broker, Listener, RequestContext};

pub use error::status_of;
pub use history::{HISTORY_SAMPLES, MAX_SAMPLED_GROUPS, MAX_SAMPLED_TOPICS, SAMPLE_INTERVAL};
pub use pages::browse::{
    DEFAULT_RECORDS_PER_PAGE, MAX_HEADERS_PER_RECORD, MAX_RECORDS_PER_PAGE, MAX_SCAN_BYTES,
};
pub use pages::cluster::MAX_LISTED_PARTITIONS;
pub use pages::groups::MAX_DESCRIBED_GROUPS;
pub use pages::live::MAX_EVENT_STREAMS;
pub use pages::topics::MAX_LISTED_TOPICS;
pub use records::MAX_VALUE_BYTES_SHOWN;

/// What every page shares.
#[derive(Debug)]
pub(crate) struct Console {
    core: Arc<Broker>,
    /// This broker's endpoints, for the cluster view before it is registered.
    this_broker: Endpoints,
    history: Arc<history::History>,
    /// The token every form carries (`csrf`).
    csrf_token: String,
    /// Open server-sent event streams (at most [`MAX_EVENT_STREAMS`]).
    event_streams: Arc<AtomicUsize>,
}

impl Console {
    /// The context of what the console does for itself rather than for a caller: the
    /// broker's own (sampling the charts, naming the broker to ask instead).
    fn own_context(&self) -> RequestContext {
        RequestContext::anonymous(Listener::INTERNAL, None)
    }
}

/// The console's routes, for the admin HTTP listener: `/` redirects to `/console/`.
/// Starts the task that samples the broker's counters for the charts (it ends when the
/// broker starts shutting down), so call it inside a tokio runtime. `this_broker`: this
/// broker's endpoints, shown until it is registered in the cluster's metadata.
pub fn router(core: Arc<Broker>, this_broker: Endpoints) -> Router {
    let history = Arc::new(history::History::default());
    history::spawn_sampler(core.clone(), history.clone());
    let console = Arc::new(Console {
        core,
        this_broker,
        history,
        csrf_token: csrf::new_token(),
        event_streams: Arc::new(AtomicUsize::new(0)),
    });
    use pages::{assets, browse, cluster, groups, live, queues, topics};
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(cluster::page))
        .route("/console/assets/console.css", get(assets::css))
        .route("/console/assets/console.js", get(assets::js))
        .route("/console/topics", get(topics::list).post(topics::create))
        .route("/console/topics/{topic}", get(topics::detail))
        .route("/console/topics/{topic}/partitions", post(topics::grow))
        .route(
            "/console/topics/{topic}/configs",
            post(topics::alter_config),
        )
        .route(
            "/console/topics/{topic}/delete",
            get(topics::confirm_delete).post(topics::delete),
        )
        .route(
            "/console/topics/{topic}/partitions/{partition}",
            get(browse::page),
        )
        .route(
            "/console/topics/{topic}/partitions/{partition}/records",
            post(browse::produce),
        )
        .route("/console/groups", get(groups::list))
        .route("/console/groups/{group}", get(groups::detail))
        .route("/console/groups/{group}/reset", post(groups::reset))
        .route(
            "/console/groups/{group}/delete",
            get(groups::confirm_delete).post(groups::delete),
        )
        .route("/console/share-groups/{group}", get(groups::share_detail))
        .route("/console/queues", get(queues::list))
        .route("/console/queues/{queue}", get(queues::queue))
        .route("/console/exchanges/{exchange}", get(queues::exchange))
        .route("/console/live", get(live::page))
        .route("/console/events", get(live::events))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(csrf::only_address_hosts))
        .with_state(console)
}
