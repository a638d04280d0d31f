//! The topics (`/console/topics`): the list with live rates, creating one; a topic's
//! page (`/console/topics/{topic}`): its partitions (leader, replicas, ISR, offsets,
//! segments), configs, and the forms that grow it, change its configs (previewed first:
//! the core checks the change without making it) or delete it (after typing its name).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Redirect, Response};
use axum::{Form, response::IntoResponse};
use maud::html;
use serde::Deserialize;
use weir_broker::{Reason, cluster_reports, configs, metadata, replicas, topics};

use crate::error::PageError;
use crate::layout::{self, Section};
use crate::pages::{Caller, DeleteForm, Deletion, PageResult, ids, read_only, segment};
use crate::{Console, chart, units};

/// Most topics the list shows (by name); the others are reached by their URL.
pub const MAX_LISTED_TOPICS: usize = 1000;

/// The topic keys the list shows beside each topic.
const LISTED_KEYS: [&str; 3] = ["retention.ms", "retention.bytes", "cleanup.policy"];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ListQuery {
    /// Show internal topics too.
    internal: Option<String>,
}

pub(crate) async fn list(
    State(c): State<Arc<Console>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Response {
    let result = render_list(&c, q.internal.is_some(), &caller).await;
    c.finish(result)
}

async fn render_list(c: &Console, internal: bool, caller: &Caller) -> PageResult {
    let ctx = caller.context();
    let listed = metadata::topics(&c.core, ctx, None, false, internal).await;
    let disk = cluster_reports::cluster_disk(&c.core, ctx).await;
    let latest = c.history.latest().unwrap_or_default();
    let body = html! {
        h1 { "Topics" }
        p {
            @if internal {
                a href="/console/topics" { "Hide internal topics" }
            } @else {
                a href="/console/topics?internal=1" { "Show internal topics" }
            }
        }
        @for m in &disk.missing {
            p.warning role="status" { "Sizes on disk leave out broker " (m.node) ": " (m.why) }
        }
        div.scroll {
            table #topics {
                caption.visually-hidden { "Topics" }
                thead {
                    tr {
                        th scope="col" { "Topic" }
                        th scope="col" class="num" { "Partitions" }
                        th scope="col" class="num" { "Replicas" }
                        th scope="col" class="num" { "On disk, all replicas" }
                        th scope="col" class="num" { "In" }
                        th scope="col" class="num" { "Out" }
                        th scope="col" { "Bytes in, last minutes" }
                        @for key in LISTED_KEYS { th scope="col" { (key) } }
                    }
                }
                tbody {
                    @for t in listed.iter().filter_map(|t| t.outcome.as_ref().ok()).take(MAX_LISTED_TOPICS) {
                        @let rates = latest.topics.get(&t.name).copied().unwrap_or_default();
                        @let entries = configs::describe_topic_config(&c.core, ctx, &t.name).unwrap_or_default();
                        tr {
                            th scope="row" { a href=(format!("/console/topics/{}", t.name)) { (t.name) } }
                            td.num { (t.partitions.len()) }
                            td.num { (t.partitions.first().map_or(0, |p| p.replicas.len())) }
                            td.num { (units::bytes(disk.topic_bytes(&t.name))) }
                            td.num {
                                span data-live=(format!("topic:{}:records_in", t.name)) data-unit="rec/s" { (units::rate(rates.records_in, "rec/s")) }
                                br;
                                span data-live=(format!("topic:{}:bytes_in", t.name)) data-unit="B/s" { (units::rate(rates.bytes_in, "B/s")) }
                            }
                            td.num {
                                span data-live=(format!("topic:{}:records_out", t.name)) data-unit="rec/s" { (units::rate(rates.records_out, "rec/s")) }
                                br;
                                span data-live=(format!("topic:{}:bytes_out", t.name)) data-unit="B/s" { (units::rate(rates.bytes_out, "B/s")) }
                            }
                            td {
                                @let series = format!("topic:{}:bytes_in", t.name);
                                (chart::sparkline(&series, &format!("bytes in per second to {}", t.name), &c.history.series(&series)))
                            }
                            @for key in LISTED_KEYS {
                                td { (entries.iter().find(|e| e.name == key).map_or("—", |e| e.value.as_str())) }
                            }
                        }
                    }
                }
            }
        }
        @if listed.is_empty() {
            p { "No topics yet." }
        }
        @if listed.len() > MAX_LISTED_TOPICS {
            p.note { "The first " (MAX_LISTED_TOPICS) " of " (listed.len()) " topics are listed; open another by its address, /console/topics/NAME." }
        }
        h2 #create { "Create a topic" }
        @if !caller.may_change() { (read_only()) }
        @if caller.may_change() { form.stack method="post" action="/console/topics" {
            (c.csrf_field())
            label for="name" { "Name" }
            input #name name="name" required pattern="[a-zA-Z0-9._-]+" maxlength="249"
                autocomplete="off" aria-describedby="name-help";
            small #name-help { "Letters, digits, '.', '_' and '-'." }
            label for="partitions" { "Partitions (empty: the broker's default)" }
            input #partitions name="partitions" type="number" min="1" inputmode="numeric";
            label for="replication_factor" { "Replication factor (empty: the broker's default)" }
            input #replication_factor name="replication_factor" type="number" min="1" inputmode="numeric";
            label for="retention_ms" { "retention.ms (empty: the default)" }
            input #retention_ms name="retention_ms" type="number" min="-1" inputmode="numeric";
            button type="submit" { "Create topic" }
        } }
    };
    Ok(layout::respond("Topics", Some(Section::Topics), body))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CreateForm {
    csrf: String,
    name: String,
    partitions: String,
    replication_factor: String,
    retention_ms: String,
}

/// A count from a form: empty is 0 (the default).
fn optional_count(text: &str, what: &str) -> Result<u32, PageError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse::<u32>()
        .map_err(|_| PageError::BadInput(format!("{what} {text:?} is not a whole number")))
}

pub(crate) async fn create(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    caller: Caller,
    Form(form): Form<CreateForm>,
) -> Response {
    let result = async {
        c.check_post(&headers, &caller, &form.csrf)?;
        let name = form.name.trim();
        let partitions = optional_count(&form.partitions, "the partition count")?;
        let replication_factor =
            optional_count(&form.replication_factor, "the replication factor")?;
        let mut configs = BTreeMap::new();
        if !form.retention_ms.trim().is_empty() {
            configs.insert(
                "retention.ms".to_owned(),
                form.retention_ms.trim().to_owned(),
            );
        }
        topics::create_topic(
            &c.core,
            caller.context(),
            name,
            partitions,
            replication_factor,
            configs,
        )
        .await?;
        tracing::info!(topic = name, partitions, "topic created from the console");
        Ok(Redirect::to(&format!("/console/topics/{name}")).into_response())
    }
    .await;
    c.finish(result)
}

pub(crate) async fn detail(
    State(c): State<Arc<Console>>,
    caller: Caller,
    Path(topic): Path<String>,
) -> Response {
    let result = render_detail(&c, &topic, &caller).await;
    c.finish(result)
}

async fn render_detail(c: &Console, name: &str, caller: &Caller) -> PageResult {
    let ctx = caller.context();
    let view = metadata::topics(&c.core, ctx, Some(&[name.to_owned()]), false, true)
        .await
        .pop()
        .map(|t| t.outcome)
        .ok_or_else(|| PageError::NotFound(format!("no topic {name}")))??;
    let hosted: BTreeMap<u32, replicas::HostedReplica> =
        replicas::topic_replicas(&c.core, ctx, name)
            .await?
            .into_iter()
            .map(|r| (r.partition, r))
            .collect();
    // A user who may describe the topic but not its configs (Kafka's DescribeConfigs is an
    // ACL of its own) sees the page without them.
    let entries = match configs::describe_topic_config(&c.core, ctx, name) {
        Ok(entries) => Some(entries),
        Err(e) if matches!(e.reason, Reason::NotAuthorized { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let me = c.core.node_id();
    let body = html! {
        h1 { "Topic " (view.name) }
        dl.facts {
            div { dt { "Topic id" } dd { code { (view.topic_id) } } }
            div { dt { "Partitions" } dd { (view.partitions.len()) } }
            div { dt { "Internal" } dd { @if view.internal { "yes" } @else { "no" } } }
            div {
                dt { "Bytes in / out per second" }
                dd {
                    @let bytes_in = format!("topic:{}:bytes_in", view.name);
                    @let bytes_out = format!("topic:{}:bytes_out", view.name);
                    (chart::sparkline(&bytes_in, "bytes in per second", &c.history.series(&bytes_in)))
                    " "
                    (chart::sparkline(&bytes_out, "bytes out per second", &c.history.series(&bytes_out)))
                }
            }
        }
        h2 { "Partitions" }
        p.note { "Offsets, segments and sizes are this broker's replicas (broker " (me) "); a partition it does not host shows its leader." }
        div.scroll {
            table #partitions {
                thead {
                    tr {
                        th scope="col" { "Partition" }
                        th scope="col" { "Leader" }
                        th scope="col" { "Replicas" }
                        th scope="col" { "In sync" }
                        th scope="col" { "Offline" }
                        th scope="col" class="num" { "Log start" }
                        th scope="col" class="num" { "High watermark" }
                        th scope="col" class="num" { "Log end" }
                        th scope="col" class="num" { "Segments" }
                        th scope="col" class="num" { "Size" }
                    }
                }
                tbody {
                    @for p in &view.partitions {
                        tr {
                            th scope="row" {
                                a href=(format!("/console/topics/{}/partitions/{}", view.name, p.partition)) { (p.partition) }
                            }
                            td { @if p.leader < 0 { span.badge.bad { "none" } } @else { (p.leader) } }
                            td { (ids(&p.replicas)) }
                            td {
                                (ids(&p.isr))
                                @if p.isr.len() < p.replicas.len() { " " span.badge.warn { "under-replicated" } }
                            }
                            td { (ids(&p.offline)) }
                            @match hosted.get(&p.partition) {
                                Some(r) => {
                                    @match &r.offsets {
                                        Ok(o) => {
                                            td.num { (o.log_start_offset) }
                                            td.num { (o.high_watermark) }
                                            td.num { (o.log_end_offset) }
                                        }
                                        Err(e) => { td colspan="3" { (e.reason.name()) } }
                                    }
                                    @match &r.disk {
                                        Ok(d) => {
                                            td.num { (d.segments) }
                                            td.num { (units::bytes(d.bytes)) }
                                        }
                                        Err(e) => { td colspan="2" { (e.reason.name()) } }
                                    }
                                }
                                None => {
                                    td colspan="5" { "not on this broker: ask broker " (p.leader) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !view.internal && !caller.may_change() { (read_only()) }
        @if !view.internal && caller.may_change() {
            h2 { "Add partitions" }
            form.inline method="post" action=(format!("/console/topics/{}/partitions", view.name)) {
                (c.csrf_field())
                label for="count" { "New partition count" }
                input #count name="count" type="number" min=(view.partitions.len() + 1)
                    value=(view.partitions.len() + 1) required inputmode="numeric";
                button type="submit" { "Add partitions" }
            }
        }
        h2 { "Configs" }
        @if let Some(entries) = &entries {
            div.scroll {
                table #configs {
                    thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } th scope="col" { "Source" } th scope="col" { "What it does" } } }
                    tbody {
                        @for e in entries {
                            tr {
                                th scope="row" { code { (e.name) } }
                                td { code { (e.value) } }
                                td { @if e.is_default { "default" } @else { strong { "set" } } }
                                td { (e.documentation) }
                            }
                        }
                    }
                }
            }
            @if !view.internal && caller.may_change() {
                h3 { "Change a config" }
                form.inline method="post" action=(format!("/console/topics/{}/configs", view.name)) {
                    (c.csrf_field())
                    label for="key" { "Key" }
                    select #key name="key" {
                        @for e in entries { option value=(e.name) { (e.name) } }
                    }
                    label for="value" { "Value" }
                    input #value name="value" autocomplete="off";
                    button type="submit" name="action" value="set" { "Set" }
                    button type="submit" name="action" value="reset" { "Reset to default" }
                }
            }
        } @else {
            p.note #configs-hidden { "Your ACLs do not let you describe this topic's configs (DescribeConfigs)." }
        }
        @if !view.internal && caller.may_change() {
            h2 { "Delete" }
            p {
                a.danger href=(format!("/console/topics/{}/delete", view.name)) { "Delete topic " (view.name) "…" }
            }
        }
    };
    Ok(layout::respond(
        &format!("Topic {}", view.name),
        Some(Section::Topics),
        body,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct GrowForm {
    csrf: String,
    count: String,
}

pub(crate) async fn grow(
    State(c): State<Arc<Console>>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    caller: Caller,
    Form(form): Form<GrowForm>,
) -> Response {
    let result = async {
        c.check_post(&headers, &caller, &form.csrf)?;
        let count = form.count.trim().parse::<u32>().map_err(|_| {
            PageError::BadInput(format!(
                "the partition count {:?} is not a whole number",
                form.count
            ))
        })?;
        topics::create_partitions(&c.core, caller.context(), &topic, count).await?;
        Ok(Redirect::to(&format!("/console/topics/{topic}")).into_response())
    }
    .await;
    c.finish(result)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConfigForm {
    csrf: String,
    key: String,
    value: String,
    action: String,
    /// `yes` once the preview was seen; without it the change is only previewed.
    confirm: String,
}

pub(crate) async fn alter_config(
    State(c): State<Arc<Console>>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    caller: Caller,
    Form(form): Form<ConfigForm>,
) -> Response {
    let result = async {
        c.check_post(&headers, &caller, &form.csrf)?;
        let key = form.key.trim().to_owned();
        let (set, reset) = match form.action.as_str() {
            "reset" => (BTreeMap::new(), vec![key.clone()]),
            _ => (
                BTreeMap::from([(key.clone(), form.value.trim().to_owned())]),
                Vec::new(),
            ),
        };
        let ctx = caller.context();
        let confirmed = form.confirm == "yes";
        // Unconfirmed, the core checks the change and makes none: the preview shows what
        // it would be (a shorter retention deletes records at the next check).
        let before = configs::describe_topic_config(&c.core, ctx, &topic)?;
        let after =
            configs::alter_topic_config(&c.core, ctx, &topic, &set, &reset, !confirmed).await?;
        if confirmed {
            tracing::info!(topic, key, "topic config changed from the console");
            return Ok(Redirect::to(&format!("/console/topics/{topic}#configs")).into_response());
        }
        let value_of = |entries: &[configs::ConfigEntry]| {
            entries
                .iter()
                .find(|e| e.name == key)
                .map(|e| e.value.clone())
                .unwrap_or_default()
        };
        let body = html! {
            h1 { "Change " (key) " of " (topic) "?" }
            p.warning role="status" { "Nothing has changed yet." }
            dl.facts {
                div { dt { "Now" } dd #config-now { code { (value_of(&before)) } } }
                div { dt { "After the change" } dd #config-after { code { (value_of(&after)) } } }
            }
            @if key.starts_with("retention") || key == "cleanup.policy" {
                p.warning { "A shorter retention, or compaction, deletes records at the next retention check; they cannot be brought back." }
            }
            form.stack method="post" action=(format!("/console/topics/{topic}/configs")) {
                (c.csrf_field())
                input type="hidden" name="key" value=(key);
                input type="hidden" name="value" value=(form.value.trim());
                input type="hidden" name="action" value=(form.action);
                input type="hidden" name="confirm" value="yes";
                button.danger type="submit" { "Apply the change" }
            }
            p { a href=(format!("/console/topics/{topic}#configs")) { "Cancel" } }
        };
        Ok(layout::respond(&format!("Change {key}"), Some(Section::Topics), body))
    }
    .await;
    c.finish(result)
}

/// The deletion of `topic`, confirmed by typing its name.
fn deletion(topic: &str) -> Deletion<'_> {
    Deletion {
        kind: "topic",
        name_kind: "name",
        name: topic,
        action: format!("/console/topics/{}/delete", segment(topic)),
        cancel: format!("/console/topics/{}", segment(topic)),
    }
}

pub(crate) async fn confirm_delete(
    State(c): State<Arc<Console>>,
    caller: Caller,
    Path(topic): Path<String>,
) -> Response {
    let result = async {
        // An unknown topic is a 404 here already, not after typing its name.
        c.core.topic(caller.context(), &topic)?;
        let warning = html! {
            "This deletes every record of " strong { (topic) } " on every broker. It cannot be undone."
        };
        Ok(deletion(&topic).page(&c, &caller, Section::Topics, warning))
    }
    .await;
    c.finish(result)
}

pub(crate) async fn delete(
    State(c): State<Arc<Console>>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    caller: Caller,
    Form(form): Form<DeleteForm>,
) -> Response {
    let result = async {
        deletion(&topic).check(&c, &headers, &caller, &form)?;
        topics::delete_topic(&c.core, caller.context(), &topic).await?;
        tracing::info!(topic, "topic deleted from the console");
        Ok(Redirect::to("/console/topics").into_response())
    }
    .await;
    c.finish(result)
}
