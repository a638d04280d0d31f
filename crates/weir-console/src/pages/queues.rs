//! AMQP queues and exchanges (docs/amqp.md), as RabbitMQ's management page shows them:
//! the list (`/console/queues`) of every declared queue with its features, ready and
//! unacknowledged messages and consumers, and of every exchange with its type and
//! bindings; a queue's page (`/console/queues/{queue}`): its declaration, counts and the
//! bindings that route to it; an exchange's page (`/console/exchanges/{exchange}`, the
//! default one as `amq.default`): what it routes to and what routes to it.
//!
//! A queue is a topic and the share group that reads it: its counts come from the group's
//! share coordinator, here or asked of it (`cluster_reports::queue_counts`), its
//! consumers are the group's members (AMQP consumers counted among them by the broker
//! serving each), and its page links to both.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use weir_broker::cluster_reports;
use weir_broker::exchanges::{self, Binding, ExchangeBinding, ExchangeOverview, QueueDeclaration};
use weir_broker::shares::ShareCounts;

use crate::error::PageError;
use crate::layout::{self, Section};
use crate::pages::{Caller, PageResult, segment};
use crate::{Console, units};

/// Most queues the list counts messages of (the rest are listed without counts).
pub const MAX_COUNTED_QUEUES: usize = 200;

/// The name the default exchange (`""`) goes by in links and tables, as RabbitMQ's.
const DEFAULT_EXCHANGE: &str = "amq.default";

/// Queue arguments and the abbreviations RabbitMQ's management page shows them by.
const ARGUMENT_ABBREVIATIONS: [(&str, &str); 8] = [
    ("x-message-ttl", "TTL"),
    ("x-expires", "Exp"),
    ("x-max-length", "Lim"),
    ("x-overflow", "Ovfl"),
    ("x-dead-letter-exchange", "DLX"),
    ("x-dead-letter-routing-key", "DLK"),
    ("x-delivery-limit", "DlvLim"),
    ("x-queue-type", "Type"),
];

fn exchange_display(name: &str) -> &str {
    if name.is_empty() {
        "(AMQP default)"
    } else {
        name
    }
}

fn exchange_link(name: &str) -> Markup {
    let path = if name.is_empty() {
        DEFAULT_EXCHANGE
    } else {
        name
    };
    html! { a href=(format!("/console/exchanges/{}", segment(path))) { (exchange_display(name)) } }
}

fn queue_link(name: &str) -> Markup {
    html! { a href=(format!("/console/queues/{}", segment(name))) { (name) } }
}

/// A queue's flags and arguments, abbreviated as RabbitMQ's list shows them (the full
/// text in each title).
fn queue_features(q: &QueueDeclaration) -> Markup {
    let flags = [
        (q.durable, "D", "durable"),
        (q.exclusive, "Excl", "exclusive"),
        (q.auto_delete, "AD", "auto-delete"),
    ];
    html! {
        @for (set, short, long) in flags {
            @if set { abbr.feature title=(long) { (short) } " " }
        }
        @for (key, value) in &q.arguments {
            @let short = ARGUMENT_ABBREVIATIONS.iter().find(|(k, _)| k == key).map_or(key.as_str(), |(_, s)| *s);
            abbr.feature title=(format!("{key}: {value}")) { (short) } " "
        }
    }
}

fn exchange_features(o: &ExchangeOverview) -> Markup {
    let e = &o.exchange;
    let flags = [
        (e.durable, "D", "durable"),
        (e.auto_delete, "AD", "auto-delete"),
        (e.internal, "I", "internal"),
    ];
    html! {
        @for (set, short, long) in flags {
            @if set { abbr.feature title=(long) { (short) } " " }
        }
        @for (key, value) in &e.arguments {
            abbr.feature title=(format!("{key}: {value}")) { (if key == exchanges::ALTERNATE_EXCHANGE { "AE" } else { key.as_str() }) } " "
        }
    }
}

fn arguments(arguments: &BTreeMap<String, String>) -> Markup {
    html! {
        @if arguments.is_empty() { "—" }
        @for (key, value) in arguments {
            div { code { (key) } " = " code { (value) } }
        }
    }
}

/// The counts as table cells: ready, unacknowledged, total (dashes when unknown, with why
/// in the title).
fn count_cells(counts: Option<&Result<ShareCounts, String>>) -> Markup {
    match counts {
        Some(Ok(c)) => html! {
            td.num { (units::count(c.ready as i64)) @if c.delayed > 0 { " (" (c.delayed) " delayed)" } }
            td.num { (units::count(c.unacked as i64)) }
            td.num { (units::count((c.ready + c.unacked) as i64)) }
        },
        Some(Err(why)) => html! {
            @for _ in 0..3 { td.num { span title=(why) { "—" } } }
        },
        None => html! {
            @for _ in 0..3 { td.num { span title=(format!("only the first {MAX_COUNTED_QUEUES} queues are counted")) { "—" } } }
        },
    }
}

pub(crate) async fn list(State(c): State<Arc<Console>>, caller: Caller) -> Response {
    let result = render_list(&c, &caller).await;
    c.finish(result)
}

async fn render_list(c: &Console, caller: &Caller) -> PageResult {
    let ctx = caller.context();
    let me = c.core.node_id();
    let queues = exchanges::queue_declarations(&c.core, ctx);
    let counted: Vec<String> = queues
        .iter()
        .take(MAX_COUNTED_QUEUES)
        .map(|q| q.name.clone())
        .collect();
    let counts: BTreeMap<&str, Result<ShareCounts, String>> = counted
        .iter()
        .map(String::as_str)
        .zip(
            cluster_reports::queue_counts(&c.core, ctx, &counted)
                .await
                .into_iter()
                .map(|r| r.map_err(|e| e.message)),
        )
        .collect();
    // The consumers are the share groups' members, wherever they are coordinated.
    let listed = cluster_reports::cluster_groups(&c.core, ctx).await;
    let shares: BTreeMap<&str, (usize, Option<i32>)> = match &listed {
        Ok(listed) => listed
            .share
            .iter()
            .map(|g| {
                (
                    g.listing.group_id.as_str(),
                    (g.listing.members, g.state_held_by),
                )
            })
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    let exchanges = exchanges::overview(&c.core, ctx);
    let body = html! {
        h1 { "Queues and exchanges" }
        p.note { "AMQP queues, each a topic and the share group that reads it, and the exchanges that route to them (docs/amqp.md). Ready and unacknowledged counts come from each queue's share coordinator." }
        @if let Ok(listed) = &listed {
            @for m in &listed.missing {
                p.warning role="status" { "Broker " (m.node) " is not listed: its consumers are not counted (" (m.why) ")" }
            }
        }
        h2 { "Queues" }
        @if queues.is_empty() {
            p #no-queues { "No queues yet: an AMQP client's queue.declare makes one." }
        } @else {
            div.scroll {
                table #queues {
                    thead {
                        tr {
                            th scope="col" { "Queue" }
                            th scope="col" { "Features" }
                            th scope="col" class="num" { "Ready" }
                            th scope="col" class="num" { "Unacked" }
                            th scope="col" class="num" { "Total" }
                            th scope="col" class="num" { "Consumers" }
                            th scope="col" class="num" { "State held by" }
                        }
                    }
                    tbody {
                        @for q in &queues {
                            @let share = shares.get(q.name.as_str());
                            tr {
                                th scope="row" { (queue_link(&q.name)) }
                                td { (queue_features(q)) }
                                (count_cells(counts.get(q.name.as_str())))
                                td.num { (share.map_or(0, |s| s.0)) }
                                td.num {
                                    @match share.and_then(|s| s.1) {
                                        Some(node) => { (node) @if node == me { " (this broker)" } }
                                        None => "—",
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Exchanges" }
        @match &exchanges {
            Err(e) => { p.warning role="status" { (e.message) } }
            Ok(exchanges) => {
                div.scroll {
                    table #exchanges {
                        thead {
                            tr {
                                th scope="col" { "Exchange" }
                                th scope="col" { "Type" }
                                th scope="col" { "Features" }
                                th scope="col" class="num" { "Bindings" }
                            }
                        }
                        tbody {
                            @for o in exchanges {
                                tr {
                                    th scope="row" { (exchange_link(&o.exchange.name)) }
                                    td { (o.exchange.kind.name()) }
                                    td { (exchange_features(o)) }
                                    td.num { (o.bindings.len() + o.to_exchanges.len()) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::respond("Queues", Some(Section::Queues), body))
}

pub(crate) async fn queue(
    State(c): State<Arc<Console>>,
    caller: Caller,
    Path(queue): Path<String>,
) -> Response {
    let result = render_queue(&c, &queue, &caller).await;
    c.finish(result)
}

async fn render_queue(c: &Console, name: &str, caller: &Caller) -> PageResult {
    let ctx = caller.context();
    let declaration = exchanges::queue_declarations(&c.core, ctx)
        .into_iter()
        .find(|q| q.name == name)
        .ok_or_else(|| PageError::NotFound(format!("no queue '{name}' was declared")))?;
    let bindings = exchanges::bindings_to(&c.core, ctx, name)?;
    let counts = cluster_reports::queue_counts(&c.core, ctx, &[name.to_owned()])
        .await
        .pop()
        .map(|r| r.map_err(|e| e.message));
    let body = html! {
        nav aria-label="Breadcrumb" { a href="/console/queues" { "Queues" } " › " (name) }
        h1 { "Queue " (name) }
        dl.facts {
            div { dt { "Durable" } dd { (yes_no(declaration.durable)) } }
            div { dt { "Exclusive" } dd { (yes_no(declaration.exclusive)) } }
            div { dt { "Auto-delete" } dd { (yes_no(declaration.auto_delete)) } }
            div { dt { "Topic" } dd { a href=(format!("/console/topics/{}", segment(name))) { (name) } } }
            div { dt { "Share group" } dd { a href=(format!("/console/share-groups/{}", segment(name))) { (name) } } }
        }
        h2 { "Messages" }
        div.scroll {
            table #queue-counts {
                thead { tr { th scope="col" class="num" { "Ready" } th scope="col" class="num" { "Unacked" } th scope="col" class="num" { "Total" } } }
                tbody { tr { (count_cells(counts.as_ref())) } }
            }
        }
        p.note { "The queue's consumers are its AMQP consumers on every broker and the members of its share group (Kafka share consumers, gRPC); the share group's page shows the records in flight." }
        h2 { "Arguments" }
        p #queue-arguments { (arguments(&declaration.arguments)) }
        h2 { "Bindings" }
        div.scroll {
            table #queue-bindings {
                thead { tr { th scope="col" { "From exchange" } th scope="col" { "Routing key" } th scope="col" { "Arguments" } } }
                tbody {
                    tr { td { (exchange_link("")) } td { code { (name) } } td { "—" } }
                    @for b in &bindings {
                        tr { td { (exchange_link(&b.exchange)) } td { code { (b.routing_key) } } td { (arguments(&b.arguments)) } }
                    }
                }
            }
        }
    };
    Ok(layout::respond(
        &format!("Queue {name}"),
        Some(Section::Queues),
        body,
    ))
}

pub(crate) async fn exchange(
    State(c): State<Arc<Console>>,
    caller: Caller,
    Path(exchange): Path<String>,
) -> Response {
    let result = render_exchange(&c, &exchange, &caller).await;
    c.finish(result)
}

async fn render_exchange(c: &Console, path_name: &str, caller: &Caller) -> PageResult {
    let name = if path_name == DEFAULT_EXCHANGE {
        ""
    } else {
        path_name
    };
    let o = exchanges::overview(&c.core, caller.context())?
        .into_iter()
        .find(|o| o.exchange.name == name)
        .ok_or_else(|| PageError::NotFound(format!("no exchange '{path_name}'")))?;
    let e = &o.exchange;
    let body = html! {
        nav aria-label="Breadcrumb" { a href="/console/queues" { "Queues and exchanges" } " › " (exchange_display(name)) }
        h1 { "Exchange " (exchange_display(name)) }
        dl.facts {
            div { dt { "Type" } dd #exchange-type { (e.kind.name()) } }
            div { dt { "Durable" } dd { (yes_no(e.durable)) } }
            div { dt { "Auto-delete" } dd { (yes_no(e.auto_delete)) } }
            div { dt { "Internal" } dd { (yes_no(e.internal)) } }
            div { dt { "Predeclared" } dd { (yes_no(o.predeclared)) } }
        }
        h2 { "Arguments" }
        p { (arguments(&e.arguments)) }
        h2 { "Routes to" }
        @if name.is_empty() {
            p { "Every queue, by its name as the routing key." }
        } @else if o.bindings.is_empty() && o.to_exchanges.is_empty() {
            p #no-bindings { "No bindings: what is published to it goes nowhere" @if e.arguments.contains_key(exchanges::ALTERNATE_EXCHANGE) { " but to its alternate exchange" } "." }
        } @else {
            (binding_table("exchange-bindings", &o.bindings, &o.to_exchanges, |b| b.destination.as_str()))
        }
        @if !o.from_exchanges.is_empty() {
            h2 { "Routed to by" }
            (binding_table("exchange-sources", &[], &o.from_exchanges, |b| b.source.as_str()))
        }
    };
    Ok(layout::respond(
        &format!("Exchange {}", exchange_display(name)),
        Some(Section::Queues),
        body,
    ))
}

/// A table of bindings to queues, then to or from exchanges (`other` names the exchange
/// at the far end).
fn binding_table(
    id: &str,
    queues: &[Binding],
    exchanges: &[ExchangeBinding],
    other: impl Fn(&ExchangeBinding) -> &str,
) -> Markup {
    html! {
        div.scroll {
            table id=(id) {
                thead { tr { th scope="col" { "Queue or exchange" } th scope="col" { "Routing key" } th scope="col" { "Arguments" } } }
                tbody {
                    @for b in queues {
                        tr { td { "queue " (queue_link(&b.queue)) } td { code { (b.routing_key) } } td { (arguments(&b.arguments)) } }
                    }
                    @for b in exchanges {
                        tr { td { "exchange " (exchange_link(other(b))) } td { code { (b.routing_key) } } td { (arguments(&b.arguments)) } }
                    }
                }
            }
        }
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}
