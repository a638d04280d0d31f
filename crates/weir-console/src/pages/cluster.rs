//! The cluster page (`/console/`): the brokers (addresses, rack, alive or fenced,
//! partitions led and hosted, each broker's disk), the active controller, and the
//! partitions that are under-replicated or offline.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use maud::html;
use weir_broker::metadata::listener_names;
use weir_broker::{cluster_reports, metadata};

use crate::layout::{self, Section};
use crate::pages::{Caller, PageResult, ids};
use crate::{Console, units};

/// Most under-replicated or offline partitions listed (the counts are whole).
pub const MAX_LISTED_PARTITIONS: usize = 100;

pub(crate) async fn page(State(c): State<Arc<Console>>, caller: Caller) -> Response {
    let result = render(&c, &caller).await;
    c.finish(result)
}

async fn render(c: &Console, caller: &Caller) -> PageResult {
    let ctx = caller.context();
    let cluster = metadata::cluster(&c.core, ctx, &c.this_broker);
    let topics: Vec<metadata::TopicView> = metadata::topics(&c.core, ctx, None, false, true)
        .await
        .into_iter()
        .filter_map(|t| t.outcome.ok())
        .collect();
    let disk = cluster_reports::cluster_disk(&c.core, ctx).await;
    let me = c.core.node_id();
    let partitions: Vec<(&str, &metadata::PartitionView)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.as_str(), p)))
        .collect();
    let under: Vec<_> = partitions
        .iter()
        .filter(|(_, p)| p.leader >= 0 && p.isr.len() < p.replicas.len())
        .collect();
    let offline: Vec<_> = partitions.iter().filter(|(_, p)| p.leader < 0).collect();
    let alive = cluster.brokers.iter().filter(|b| !b.fenced).count();
    let user_topics = topics.iter().filter(|t| !t.internal).count();
    let controller = if cluster.controller_id < 0 {
        "none known".to_owned()
    } else {
        format!("broker {}", cluster.controller_id)
    };
    let body = html! {
        h1 { "Cluster" }
        dl.facts {
            div { dt { "Cluster id" } dd { code { (cluster.cluster_id) } } }
            div { dt { "Version" } dd { "Weir " (env!("CARGO_PKG_VERSION")) } }
            div { dt { "Active controller" } dd #controller { (controller) } }
            div { dt { "Brokers alive" } dd #brokers-alive { (alive) " of " (cluster.brokers.len()) } }
            div { dt { "Topics" } dd { (user_topics) " (and " (topics.len() - user_topics) " internal)" } }
            div { dt { "Partitions" } dd { (partitions.len()) } }
            div { dt { "Under-replicated" } dd #under-replicated { (under.len()) } }
            div { dt { "Offline" } dd #offline { (offline.len()) } }
        }
        h2 { "Brokers" }
        div.scroll {
            table #brokers {
                caption.visually-hidden { "Brokers of the cluster" }
                thead {
                    tr {
                        th scope="col" { "Id" }
                        th scope="col" { "Client address" }
                        th scope="col" { "Kafka address" }
                        th scope="col" { "Internal address" }
                        th scope="col" { "Rack" }
                        th scope="col" { "State" }
                        th scope="col" { "Controller voter" }
                        th scope="col" class="num" { "Leads" }
                        th scope="col" class="num" { "Hosts" }
                        th scope="col" class="num" { "Disk used" }
                    }
                }
                tbody {
                    @for b in &cluster.brokers {
                        @let led = partitions.iter().filter(|(_, p)| p.leader == b.node_id).count();
                        @let hosted = partitions.iter().filter(|(_, p)| p.replicas.contains(&b.node_id)).count();
                        tr {
                            th scope="row" {
                                (b.node_id)
                                @if b.node_id == me { " (this broker)" }
                                @if b.node_id == cluster.controller_id { " (controller)" }
                            }
                            @for name in [listener_names::CLIENT, listener_names::KAFKA, listener_names::INTERNAL] {
                                td { @if let Some(address) = b.endpoints.get(name) { code { (address) } } @else { "—" } }
                            }
                            td { (b.rack.as_deref().unwrap_or("—")) }
                            td {
                                @if b.fenced { span.badge.bad { "fenced" } } @else { span.badge.good { "alive" } }
                            }
                            td { @if b.voter { "yes" } @else { "no" } }
                            td.num { (led) }
                            td.num { (hosted) }
                            td.num {
                                @if let Some(d) = disk.brokers.get(&b.node_id) {
                                    (units::bytes(d.bytes())) " in " (d.replicas()) " replicas"
                                } @else {
                                    @let why = disk.missing.iter().find(|m| m.node == b.node_id).map_or("not asked", |m| m.why.as_str());
                                    span title=(why) { "—" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Partitions needing attention" }
        @if under.is_empty() && offline.is_empty() {
            p #healthy { "Every partition has a leader and all its replicas in sync." }
        } @else {
            div.scroll {
                table #attention {
                    thead {
                        tr {
                            th scope="col" { "Partition" }
                            th scope="col" { "Problem" }
                            th scope="col" { "Leader" }
                            th scope="col" { "Replicas" }
                            th scope="col" { "In sync" }
                            th scope="col" { "Offline replicas" }
                        }
                    }
                    tbody {
                        @for (topic, p) in offline.iter().chain(under.iter()).take(MAX_LISTED_PARTITIONS) {
                            tr {
                                th scope="row" {
                                    a href=(format!("/console/topics/{topic}")) { (topic) "/" (p.partition) }
                                }
                                td { @if p.leader < 0 { span.badge.bad { "offline" } } @else { span.badge.warn { "under-replicated" } } }
                                td { @if p.leader < 0 { "none" } @else { (p.leader) } }
                                td { (ids(&p.replicas)) }
                                td { (ids(&p.isr)) }
                                td { (ids(&p.offline)) }
                            }
                        }
                    }
                }
            }
            @if under.len() + offline.len() > MAX_LISTED_PARTITIONS {
                p { "The first " (MAX_LISTED_PARTITIONS) " are listed." }
            }
        }
    };
    Ok(layout::respond("Cluster", Some(Section::Cluster), body))
}
