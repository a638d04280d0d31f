//! Consumer groups and share groups (`/console/groups`): the list with each group's
//! total lag; a group's page (`/console/groups/{group}`): state, protocol, members and
//! what each holds, committed offset and lag per partition, a sparkline of its lag; an
//! empty group's offsets reset (previewed first, then confirmed by typing its id) and
//! its deletion (confirmed the same way). A share group's page
//! (`/console/share-groups/{group}`): members, and each share-partition's window (start,
//! end, records available, delayed, acquired and awaiting their dead-letter copy).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use weir_broker::groups::{
    self, GroupDescription, GroupProtocol, GroupState, OffsetReset, ResetSpec,
};
use weir_broker::{cluster_reports, share_admin, shares};

use crate::error::PageError;
use crate::layout::{self, Section};
use crate::pages::{Caller, DeleteForm, Deletion, PageResult, read_only, segment};
use crate::{Console, chart, units};

/// Most groups the list describes for their lag (the rest are listed without it).
pub const MAX_DESCRIBED_GROUPS: usize = 200;

fn protocol(p: &GroupProtocol) -> String {
    match p {
        GroupProtocol::Consumer => "consumer (KIP-848)".into(),
        GroupProtocol::Classic {
            state,
            protocol_type,
        } => {
            let kind = if protocol_type.is_empty() {
                "offsets only"
            } else {
                protocol_type
            };
            format!("classic, {kind}, {}", state.kafka_name())
        }
    }
}

fn total_lag(d: &GroupDescription) -> i64 {
    d.offsets.iter().filter_map(|o| o.lag).sum()
}

fn assignment(partitions: &std::collections::BTreeMap<String, Vec<u32>>) -> Markup {
    html! {
        @if partitions.is_empty() { "nothing" }
        @for (topic, ps) in partitions {
            div { (topic) ": " (crate::pages::ids(&ps.iter().map(|p| *p as i32).collect::<Vec<_>>())) }
        }
    }
}

pub(crate) async fn list(State(c): State<Arc<Console>>, caller: Caller) -> Response {
    let result = render_list(&c, &caller).await;
    c.finish(result)
}

async fn render_list(c: &Console, caller: &Caller) -> PageResult {
    let ctx = caller.context();
    let me = c.core.node_id();
    // Every broker's groups; before this broker has joined its cluster there is no
    // coordinator: say so.
    let listed = cluster_reports::cluster_groups(&c.core, ctx).await;
    // Each group is described by its coordinator: here, or asked of that broker.
    let mut lags: BTreeMap<String, i64> = BTreeMap::new();
    if let Ok(listed) = &listed {
        let described: Vec<(String, i32)> = listed
            .consumer
            .iter()
            .take(MAX_DESCRIBED_GROUPS)
            .map(|g| (g.group.group_id.clone(), g.coordinator))
            .collect();
        for d in cluster_reports::describe_groups_anywhere(&c.core, ctx, &described).await {
            lags.insert(d.group_id.clone(), total_lag(&d));
        }
    }
    let body = html! {
        h1 { "Consumer groups" }
        @match &listed {
            Err(e) => { p.warning role="status" { (e.message) } }
            Ok(listed) => {
                p.note { "The groups of every broker of the cluster, each with the broker that coordinates it." }
                @for m in &listed.missing {
                    p.warning role="status" { "Broker " (m.node) " is not listed: " (m.why) }
                }
                @if listed.consumer.is_empty() {
                    p #no-groups { "No consumer groups yet." }
                } @else {
                    div.scroll {
                        table #groups {
                            thead {
                                tr {
                                    th scope="col" { "Group" }
                                    th scope="col" { "State" }
                                    th scope="col" { "Protocol" }
                                    th scope="col" class="num" { "Members" }
                                    th scope="col" class="num" { "Coordinator" }
                                    th scope="col" class="num" { "Total lag" }
                                    th scope="col" { "Lag, last minutes" }
                                }
                            }
                            tbody {
                                @for entry in &listed.consumer {
                                    @let g = &entry.group;
                                    @let series = format!("group:{}:lag", g.group_id);
                                    tr {
                                        th scope="row" { a href=(format!("/console/groups/{}", segment(&g.group_id))) { (g.group_id) } }
                                        td { (g.state.as_str()) }
                                        td { (protocol(&g.protocol)) }
                                        td.num { (g.members) }
                                        td.num { (entry.coordinator) @if entry.coordinator == me { " (this broker)" } }
                                        td.num.lag data-live=(series) data-unit="count" {
                                            @match lags.get(&g.group_id).copied() {
                                                Some(lag) => (units::count(lag)),
                                                None if entry.coordinator != me => {
                                                    span title=(format!("Broker {} did not describe it", entry.coordinator)) { "—" }
                                                }
                                                None => "—",
                                            }
                                        }
                                        td { (chart::sparkline(&series, &format!("lag of group {}", g.group_id), &c.history.series(&series))) }
                                    }
                                }
                            }
                        }
                    }
                }
                h2 { "Share groups" }
                @if listed.share.is_empty() {
                    p #no-share-groups { "No share groups yet." }
                } @else {
                    div.scroll {
                        table #share-groups {
                            thead {
                                tr {
                                    th scope="col" { "Share group" }
                                    th scope="col" { "State" }
                                    th scope="col" class="num" { "Members" }
                                    th scope="col" class="num" { "State held by" }
                                }
                            }
                            tbody {
                                @for entry in &listed.share {
                                    @let g = &entry.listing;
                                    tr {
                                        th scope="row" { a href=(format!("/console/share-groups/{}", segment(&g.group_id))) { (g.group_id) } }
                                        td { (g.state.name()) }
                                        td.num { (g.members) }
                                        td.num {
                                            @match entry.state_held_by {
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
            }
        }
    };
    Ok(layout::respond("Groups", Some(Section::Groups), body))
}

pub(crate) async fn detail(
    State(c): State<Arc<Console>>,
    caller: Caller,
    Path(group): Path<String>,
) -> Response {
    let result = render_detail(&c, &group, &caller).await;
    c.finish(result)
}

async fn render_detail(c: &Console, group: &str, caller: &Caller) -> PageResult {
    let (d, coordinator) =
        cluster_reports::describe_group_anywhere(&c.core, caller.context(), group).await?;
    // Changes run at the coordinator; a group coordinated elsewhere is shown here and
    // changed on that broker's console.
    let elsewhere = (coordinator != c.core.node_id()).then_some(coordinator);
    let series = format!("group:{group}:lag");
    let lag = total_lag(&d);
    let base = format!("/console/groups/{}", segment(group));
    let mut topics: Vec<&str> = d.offsets.iter().map(|o| o.topic.as_str()).collect();
    topics.dedup();
    let body = html! {
        nav aria-label="Breadcrumb" { a href="/console/groups" { "Groups" } " › " (group) }
        h1 { "Group " (group) }
        dl.facts {
            div { dt { "State" } dd #state { (d.state.as_str()) } }
            div { dt { "Protocol" } dd { (protocol(&d.protocol)) } }
            div { dt { "Epoch" } dd { (d.group_epoch) } }
            div { dt { "Assignor" } dd { (if d.assignor.is_empty() { "—" } else { &d.assignor }) } }
            div { dt { "Members" } dd { (d.members.len()) } }
            div { dt { "Coordinator" } dd #coordinator { "broker " (coordinator) @if elsewhere.is_none() { " (this broker)" } } }
            div { dt { "Total lag" } dd #total-lag data-live=(series) data-unit="count" { (units::count(lag)) } }
            div { dt { "Lag, last minutes" } dd { (chart::sparkline(&series, &format!("lag of group {group}"), &c.history.series(&series))) } }
        }
        h2 { "Members" }
        @if d.members.is_empty() {
            p { "No members." }
        } @else {
            div.scroll {
                table #members {
                    thead {
                        tr {
                            th scope="col" { "Member" }
                            th scope="col" { "Client" }
                            th scope="col" { "Host" }
                            th scope="col" { "Epoch" }
                            th scope="col" { "Holds" }
                            th scope="col" { "Last heard" }
                        }
                    }
                    tbody {
                        @for m in &d.members {
                            tr {
                                th scope="row" { code { (m.member_id) } }
                                td { (m.client_id) }
                                td { (m.client_host) }
                                td { (m.member_epoch) }
                                td { (assignment(&m.assignment)) }
                                td { (format!("{:.1} s ago", m.since_heartbeat.as_secs_f64())) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Offsets" }
        @if d.offsets.is_empty() {
            p { "No committed offsets." }
        } @else {
            div.scroll {
                table #offsets {
                    thead {
                        tr {
                            th scope="col" { "Topic" }
                            th scope="col" class="num" { "Partition" }
                            th scope="col" class="num" { "Committed" }
                            th scope="col" class="num" { "High watermark" }
                            th scope="col" class="num" { "Lag" }
                            th scope="col" { "Owner" }
                        }
                    }
                    tbody {
                        @for o in &d.offsets {
                            tr {
                                th scope="row" { a href=(format!("/console/topics/{}", o.topic)) { (o.topic) } }
                                td.num { (o.partition) }
                                td.num {
                                    @match o.committed_offset {
                                        Some(off) => a href=(format!("/console/topics/{}/partitions/{}?from=offset&offset={off}", o.topic, o.partition)) { (off) },
                                        None => "none",
                                    }
                                }
                                td.num { (o.high_watermark.map_or("—".into(), |h| h.to_string())) }
                                td.num.lag { (o.lag.map_or("—".into(), units::count)) }
                                td { @if let Some(m) = &o.member_id { code { (m) } } @else { "—" } }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Reset offsets" }
        @if let Some(node) = elsewhere {
            p.note #changed-elsewhere { "Broker " (node) " coordinates this group: reset its offsets or delete it on that broker's console." }
        } @else if !caller.may_change() {
            (read_only())
        } @else if d.state == GroupState::Empty {
            form.stack method="post" action=(format!("{base}/reset")) {
                (c.csrf_field())
                (reset_fields(&topics))
                button type="submit" { "Preview the reset" }
            }
        } @else {
            p.note { "Offsets can be reset only while the group has no members (it is " (d.state.as_str()) ")." }
        }
        @if elsewhere.is_none() {
            h2 { "Delete" }
            @if caller.may_change() { p { a.danger href=(format!("{base}/delete")) { "Delete group " (group) "…" } } }
        }
    };
    Ok(layout::respond(
        &format!("Group {group}"),
        Some(Section::Groups),
        body,
    ))
}

/// The fields of a reset: which topic, to where.
fn reset_fields(topics: &[&str]) -> Markup {
    html! {
        label for="topic" { "Topic" }
        select #topic name="topic" {
            option value="" selected { "every topic of the group" }
            @for t in topics { option value=(t) { (t) } }
        }
        fieldset {
            legend { "Move the committed offsets to" }
            @for (value, label) in [("earliest", "the earliest offset"), ("latest", "the latest offset (skip everything)"), ("timestamp", "the first offset at or after a timestamp"), ("offset", "an offset")] {
                label.choice { input type="radio" name="to" value=(value) checked[value == "earliest"]; " " (label) }
            }
        }
        label for="reset-value" { "Timestamp (UTC, YYYY-MM-DDTHH:MM) or offset" }
        input #reset-value name="value" autocomplete="off";
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ResetForm {
    csrf: String,
    topic: String,
    to: String,
    value: String,
    /// The group id typed to confirm; without it the reset is only previewed.
    confirm: String,
}

fn reset_spec(form: &ResetForm) -> Result<ResetSpec, PageError> {
    let value = form.value.trim();
    match form.to.as_str() {
        "earliest" => Ok(ResetSpec::Earliest),
        "latest" => Ok(ResetSpec::Latest),
        "timestamp" => units::parse_timestamp(value)
            .map(ResetSpec::Timestamp)
            .ok_or_else(|| PageError::BadInput(format!("timestamp {value:?} is neither YYYY-MM-DDTHH:MM[:SS] (UTC) nor milliseconds since 1970"))),
        "offset" => value
            .parse::<i64>()
            .ok()
            .filter(|o| *o >= 0)
            .map(ResetSpec::Offset)
            .ok_or_else(|| PageError::BadInput(format!("offset {value:?} is not an offset (a whole number, 0 or more)"))),
        other => Err(PageError::BadInput(format!(
            "reset to {other:?}: choose earliest, latest, timestamp or offset"
        ))),
    }
}

pub(crate) async fn reset(
    State(c): State<Arc<Console>>,
    Path(group): Path<String>,
    headers: HeaderMap,
    caller: Caller,
    Form(form): Form<ResetForm>,
) -> Response {
    let result = async {
        c.check_post(&headers, &caller, &form.csrf)?;
        let spec = reset_spec(&form)?;
        let ctx = caller.context();
        let d = groups::describe_group(&c.core, ctx, &group).await?;
        let mut topics: Vec<&str> = d.offsets.iter().map(|o| o.topic.as_str()).collect();
        topics.dedup();
        let targets: Vec<(String, Option<Vec<u32>>)> = if form.topic.is_empty() {
            topics.iter().map(|t| ((*t).to_owned(), None)).collect()
        } else {
            vec![(form.topic.clone(), None)]
        };
        let confirmed = form.confirm == group;
        let plan = groups::reset_offsets(&c.core, ctx, &group, targets, spec, !confirmed).await?;
        if confirmed {
            tracing::info!(
                group,
                partitions = plan.len(),
                "group offsets reset from the console"
            );
            return Ok(
                Redirect::to(&format!("/console/groups/{}", segment(&group))).into_response(),
            );
        }
        Ok(preview(&c, &group, &form, &plan))
    }
    .await;
    c.finish(result)
}

/// The planned reset, nothing changed yet, and the form that confirms it.
fn preview(c: &Console, group: &str, form: &ResetForm, plan: &[OffsetReset]) -> Response {
    let body = html! {
        h1 { "Reset the offsets of " (group) "?" }
        p.warning role="status" { "Nothing has changed yet. This is what the reset would do:" }
        div.scroll {
            table #reset-plan {
                thead { tr { th scope="col" { "Topic" } th scope="col" class="num" { "Partition" } th scope="col" class="num" { "Committed now" } th scope="col" class="num" { "After the reset" } } }
                tbody {
                    @for r in plan {
                        tr {
                            th scope="row" { (r.topic) }
                            td.num { (r.partition) }
                            td.num { (r.previous.map_or("none".into(), |p| p.to_string())) }
                            td.num { (r.new) }
                        }
                    }
                }
            }
        }
        form.stack method="post" action=(format!("/console/groups/{}/reset", segment(group))) {
            (c.csrf_field())
            // Exactly the reset previewed: to change it, go back and preview another.
            input type="hidden" name="topic" value=(form.topic);
            input type="hidden" name="to" value=(form.to);
            input type="hidden" name="value" value=(form.value);
            label for="confirm" { "Type the group's id to confirm" }
            input #confirm name="confirm" required autocomplete="off";
            button.danger type="submit" { "Reset offsets" }
        }
        p { a href=(format!("/console/groups/{}", segment(group))) { "Cancel" } }
    };
    layout::respond(&format!("Reset {group}"), Some(Section::Groups), body)
}

/// The deletion of `group`, confirmed by typing its id.
fn deletion(group: &str) -> Deletion<'_> {
    Deletion {
        kind: "group",
        name_kind: "id",
        name: group,
        action: format!("/console/groups/{}/delete", segment(group)),
        cancel: format!("/console/groups/{}", segment(group)),
    }
}

pub(crate) async fn confirm_delete(
    State(c): State<Arc<Console>>,
    caller: Caller,
    Path(group): Path<String>,
) -> Response {
    let result = async {
        groups::describe_group(&c.core, caller.context(), &group).await?;
        let warning = html! {
            "This deletes the group and its committed offsets. A group with members cannot be deleted."
        };
        Ok(deletion(&group).page(&c, &caller, Section::Groups, warning))
    }
    .await;
    c.finish(result)
}

pub(crate) async fn delete(
    State(c): State<Arc<Console>>,
    Path(group): Path<String>,
    headers: HeaderMap,
    caller: Caller,
    Form(form): Form<DeleteForm>,
) -> Response {
    let result = async {
        deletion(&group).check(&c, &headers, &caller, &form)?;
        groups::delete_group(&c.core, caller.context(), &group).await?;
        tracing::info!(group, "group deleted from the console");
        Ok(Redirect::to("/console/groups").into_response())
    }
    .await;
    c.finish(result)
}

pub(crate) async fn share_detail(
    State(c): State<Arc<Console>>,
    caller: Caller,
    Path(group): Path<String>,
) -> Response {
    let result = async {
        let ctx = caller.context();
        let d = share_admin::describe_group(&c.core, ctx, &group).await?;
        // The windows live at the group's share coordinator, which may be another
        // broker than its group coordinator: then the page says so instead of failing.
        let windows = shares::describe(&c.core, ctx, &group).await;
        let body = html! {
            nav aria-label="Breadcrumb" { a href="/console/groups" { "Groups" } " › " (group) }
            h1 { "Share group " (group) }
            dl.facts {
                div { dt { "State" } dd { (d.state.name()) } }
                div { dt { "Epoch" } dd { (d.epoch) } }
                div { dt { "Assignor" } dd { (d.assignor) } }
                div { dt { "Members" } dd { (d.members.len()) } }
            }
            h2 { "Members" }
            @if d.members.is_empty() { p { "No members." } } @else {
                div.scroll {
                    table #share-members {
                        thead { tr { th scope="col" { "Member" } th scope="col" { "Client" } th scope="col" { "Host" } th scope="col" { "Subscribed" } th scope="col" { "Assigned" } } }
                        tbody {
                            @for m in &d.members {
                                tr {
                                    th scope="row" { code { (m.member_id) } }
                                    td { (m.client_id) }
                                    td { (m.client_host) }
                                    td { (m.topics.join(", ")) }
                                    td { (assignment(&m.assignment)) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Partitions" }
            @match &windows {
                Err(e) => { p.note role="status" { "Records in flight are shown by the group's share coordinator: " (e.message) } }
                Ok(view) if view.partitions.is_empty() => { p { "No state yet." } }
                Ok(view) => {
                    div.scroll {
                        table #share-partitions {
                            thead {
                                tr {
                                    th scope="col" { "Partition" }
                                    th scope="col" class="num" { "Start" }
                                    th scope="col" class="num" { "End" }
                                    th scope="col" class="num" { "High watermark" }
                                    th scope="col" class="num" { "Available" }
                                    th scope="col" class="num" { "Delayed" }
                                    th scope="col" class="num" { "Acquired" }
                                    th scope="col" class="num" { "Awaiting dead-letter copy" }
                                    th scope="col" class="num" { "Oldest unfinished" }
                                }
                            }
                            tbody {
                                @for p in &view.partitions {
                                    tr {
                                        th scope="row" {
                                            a href=(format!("/console/topics/{}/partitions/{}?from=offset&offset={}", p.topic, p.partition, p.start)) { (p.topic) "/" (p.partition) }
                                        }
                                        td.num { (p.start) }
                                        td.num { (p.end) }
                                        td.num { (if p.high_watermark < 0 { "—".into() } else { p.high_watermark.to_string() }) }
                                        td.num { (p.counts.available) }
                                        td.num { (p.counts.delayed) }
                                        td.num { (p.counts.acquired) }
                                        td.num { (p.counts.archived_pending) }
                                        td.num { (p.oldest_unfinished_age_ms.map_or("—".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0))) }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(dlq) = &view.settings.dead_letter_topic {
                        p { "Dead-lettered records go to " a href=(format!("/console/topics/{dlq}")) { (dlq) } "." }
                    }
                }
            }
            p { a href="/console/groups" { "Back to the groups" } }
        };
        Ok(layout::respond(&format!("Share group {group}"), Some(Section::Groups), body))
    }
    .await;
    c.finish(result)
}
