//! The message browser (`/console/topics/{topic}/partitions/{p}`): a partition's records
//! from an offset, the end, or a timestamp, filtered by key or by a substring of the
//! value, with key, value and headers shown as text, pretty JSON or hex; and a form that
//! produces a test record. Reads go through the core's ListOffsets and Fetch, the
//! record through its Produce, as any client's would.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use maud::html;
use serde::Deserialize;
use weir_batch::{
    BatchHeader, Compression, DecodedRecord, HEADER_BYTES, Header, Record, decode_records,
};
use weir_broker::fetch::{self, FetchRequest, PartitionFetch, TopicFetch};
use weir_broker::offsets::{self, OffsetSpec};
use weir_broker::produce::{self, Acks, PartitionProduce, ProduceData, ProduceRequest};
use weir_broker::{BrokerError, Reason};

use crate::error::PageError;
use crate::layout::{self, Section};
use crate::pages::{Caller, PageResult, parse_partition, query_value, read_only};
use crate::records::{self, Format};
use crate::{Console, units};

/// Records a page shows when the query does not say.
pub const DEFAULT_RECORDS_PER_PAGE: usize = 20;
/// Most records one page shows.
pub const MAX_RECORDS_PER_PAGE: usize = 200;
/// Most bytes of batches one page reads looking for records that match its filters; the
/// page then offers to go on from where it stopped.
pub const MAX_SCAN_BYTES: usize = 32 * 1024 * 1024;
/// Bytes asked of one fetch.
const FETCH_BYTES: usize = 1024 * 1024;
/// Most headers a produced test record may have.
pub const MAX_HEADERS_PER_RECORD: usize = 64;

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadFrom {
    Offset,
    End,
    Start,
    Timestamp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BrowseQuery {
    /// `offset`, `end`, `start` or `timestamp`; without it, `offset` if an offset is
    /// given, else `end`.
    from: String,
    offset: String,
    timestamp: String,
    key: String,
    value: String,
    format: String,
    limit: String,
}

/// The query, checked.
#[derive(Debug)]
struct Browse {
    from: ReadFrom,
    offset: Option<i64>,
    timestamp: Option<i64>,
    key: String,
    value: String,
    format: Format,
    limit: usize,
}

fn parse_query(q: &BrowseQuery) -> Result<Browse, PageError> {
    let offset = match q.offset.trim() {
        "" => None,
        text => Some(
            text.parse::<i64>()
                .ok()
                .filter(|o| *o >= 0)
                .ok_or_else(|| {
                    PageError::BadInput(format!(
                        "offset {text:?} is not an offset (a whole number, 0 or more)"
                    ))
                })?,
        ),
    };
    let timestamp = match q.timestamp.trim() {
        "" => None,
        text => Some(units::parse_timestamp(text).ok_or_else(|| {
            PageError::BadInput(format!(
                "timestamp {text:?} is neither YYYY-MM-DDTHH:MM[:SS] (UTC) nor milliseconds since 1970"
            ))
        })?),
    };
    let from = match q.from.as_str() {
        "" if offset.is_some() => ReadFrom::Offset,
        "" | "end" => ReadFrom::End,
        "offset" => ReadFrom::Offset,
        "start" => ReadFrom::Start,
        "timestamp" => ReadFrom::Timestamp,
        other => {
            return Err(PageError::BadInput(format!(
                "from={other:?}: read from offset, end, start or timestamp"
            )));
        }
    };
    if from == ReadFrom::Offset && offset.is_none() {
        return Err(PageError::BadInput(
            "reading from an offset needs the offset".into(),
        ));
    }
    if from == ReadFrom::Timestamp && timestamp.is_none() {
        return Err(PageError::BadInput(
            "reading from a timestamp needs the timestamp".into(),
        ));
    }
    let format = Format::parse(&q.format).ok_or_else(|| {
        PageError::BadInput(format!("format {:?}: show as text, json or hex", q.format))
    })?;
    let limit = match q.limit.trim() {
        "" => DEFAULT_RECORDS_PER_PAGE,
        text => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_RECORDS_PER_PAGE).contains(n))
            .ok_or_else(|| {
                PageError::BadInput(format!(
                    "limit {text:?}: show 1 to {MAX_RECORDS_PER_PAGE} records"
                ))
            })?,
    };
    Ok(Browse {
        from,
        offset,
        timestamp,
        key: q.key.clone(),
        value: q.value.clone(),
        format,
        limit,
    })
}

pub(crate) async fn page(
    State(c): State<Arc<Console>>,
    caller: Caller,
    Path((topic, partition)): Path<(String, String)>,
    Query(q): Query<BrowseQuery>,
) -> Response {
    let result = async {
        let partition = parse_partition(&partition)?;
        let browse = parse_query(&q)?;
        render(&c, &topic, partition, &browse, &caller).await
    }
    .await;
    c.finish(result)
}

/// What a page read.
struct Found {
    records: Vec<DecodedRecord>,
    /// Where the next page starts.
    next: i64,
    /// The scan stopped at [`MAX_SCAN_BYTES`] before the high watermark.
    scan_cut: bool,
}

fn matches(record: &DecodedRecord, key: &str, value: &str) -> bool {
    let contains = |field: &Option<Bytes>, needle: &str| {
        needle.is_empty()
            || field
                .as_ref()
                .is_some_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
    };
    contains(&record.key, key) && contains(&record.value, value)
}

/// Reads from `start` up to the high watermark `hw` until `limit` records match.
async fn read(
    c: &Console,
    topic: &str,
    partition: u32,
    start: i64,
    hw: i64,
    browse: &Browse,
    caller: &Caller,
) -> Result<Found, PageError> {
    let ctx = caller.context();
    let mut found = Found {
        records: Vec::new(),
        next: start,
        scan_cut: false,
    };
    let mut scanned = 0;
    while found.records.len() < browse.limit && found.next < hw {
        if scanned >= MAX_SCAN_BYTES {
            found.scan_cut = true;
            break;
        }
        let request = FetchRequest {
            max_wait: std::time::Duration::ZERO,
            min_bytes: 1,
            max_bytes: FETCH_BYTES,
            topics: vec![TopicFetch {
                topic: topic.to_owned(),
                partitions: vec![PartitionFetch {
                    partition,
                    offset: found.next,
                    max_bytes: FETCH_BYTES,
                    current_leader_epoch: None,
                }],
            }],
            // The console decodes the records it shows.
            read_to: fetch::ReadTo::Memory,
            // An operator browsing sees every record, as a read_uncommitted reader.
            isolation: fetch::Isolation::ReadUncommitted,
        };
        let mut answer = fetch::fetch(&c.core, ctx, &request).await?;
        let result = answer
            .pop()
            .ok_or_else(|| BrokerError::new(Reason::Internal, "a fetch answered nothing"))?
            .outcome?
            .pop()
            .ok_or_else(|| BrokerError::new(Reason::Internal, "a fetch answered no partition"))?;
        let Some(data) = result.data? else { break };
        if data.records.is_empty() {
            break;
        }
        scanned += data.records.len();
        let before = found.next;
        for batch in data.batches() {
            // Reads are whole batches; a short tail would be no batch at all.
            if batch.len() < HEADER_BYTES {
                break;
            }
            let header = BatchHeader::parse(&batch);
            // A transaction marker is not a record.
            if !fetch::is_visible(&header, &[]) {
                found.next = found.next.max(header.last_offset() + 1);
                continue;
            }
            let decoded = decode_records(&batch).map_err(|e| {
                BrokerError::new(
                    Reason::CorruptData { batch: None },
                    format!(
                        "partition {topic}/{partition}: the batch at offset {} cannot be decoded: {e}",
                        header.base_offset
                    ),
                )
            })?;
            for record in decoded {
                if record.offset < found.next || found.records.len() >= browse.limit {
                    continue;
                }
                if matches(&record, &browse.key, &browse.value) {
                    found.next = record.offset + 1;
                    found.records.push(record);
                }
            }
            if found.records.len() >= browse.limit {
                break;
            }
            found.next = found.next.max(header.last_offset() + 1);
        }
        if found.next <= before {
            // Nothing moved us on (should not happen): stop rather than spin.
            break;
        }
    }
    Ok(found)
}

async fn render(
    c: &Console,
    topic: &str,
    partition: u32,
    browse: &Browse,
    caller: &Caller,
) -> PageResult {
    let ctx = caller.context();
    let mut bounds = offsets::list_offsets(
        &c.core,
        ctx,
        topic,
        &[
            (partition, OffsetSpec::Earliest),
            (partition, OffsetSpec::Latest),
        ],
    )
    .await?
    .into_iter();
    let log_start = bounds.next().expect("two answers")?.offset;
    let hw = bounds.next().expect("two answers")?.offset;
    let start = match browse.from {
        ReadFrom::Offset => {
            let offset = browse.offset.expect("checked");
            if offset < log_start || offset > hw {
                return Err(PageError::Broker {
                    error: BrokerError::new(
                        Reason::OffsetOutOfRange {
                            log_start_offset: log_start,
                            high_watermark: hw,
                        },
                        if hw > log_start {
                            format!(
                                "partition {topic}/{partition} holds offsets {log_start} to {}; \
                                 {offset} is outside them",
                                hw - 1
                            )
                        } else {
                            format!(
                                "partition {topic}/{partition} holds no records (its next offset \
                                 is {hw}); {offset} is outside it"
                            )
                        },
                    ),
                    hint: None,
                });
            }
            offset
        }
        ReadFrom::Start => log_start,
        ReadFrom::End => (hw - browse.limit as i64).max(log_start),
        ReadFrom::Timestamp => {
            let ts = browse.timestamp.expect("checked");
            offsets::list_offsets(
                &c.core,
                ctx,
                topic,
                &[(partition, OffsetSpec::Timestamp(ts))],
            )
            .await?
            .pop()
            .expect("one answer")?
            .offset
        }
    };
    let found = read(c, topic, partition, start, hw, browse, caller).await?;
    let base = format!("/console/topics/{topic}/partitions/{partition}");
    let keep = format!(
        "&key={}&value={}&format={}&limit={}",
        query_value(&browse.key),
        query_value(&browse.value),
        browse.format.name(),
        browse.limit
    );
    let older = (start - browse.limit as i64).max(log_start);
    let from_name = match browse.from {
        ReadFrom::Offset => "offset",
        ReadFrom::End => "end",
        ReadFrom::Start => "start",
        ReadFrom::Timestamp => "timestamp",
    };
    let body = html! {
        nav aria-label="Breadcrumb" {
            a href="/console/topics" { "Topics" } " › "
            a href=(format!("/console/topics/{topic}")) { (topic) } " › "
            "partition " (partition)
        }
        h1 { "Records of " (topic) "/" (partition) }
        dl.facts {
            div { dt { "Log start" } dd #log-start { (log_start) } }
            div { dt { "High watermark" } dd #high-watermark { (hw) } }
            div { dt { "Shown from" } dd #shown-from { (start) } }
        }
        form.browse method="get" action=(base) {
            fieldset {
                legend { "Read from" }
                @for (value, label) in [("offset", "offset"), ("end", "the end"), ("start", "the start"), ("timestamp", "a timestamp")] {
                    label.choice {
                        input type="radio" name="from" value=(value) checked[from_name == value];
                        " " (label)
                    }
                }
            }
            label for="offset" { "Offset" }
            input #offset name="offset" type="number" min="0" inputmode="numeric"
                value=(browse.offset.map(|o| o.to_string()).unwrap_or_default());
            label for="timestamp" { "Timestamp (UTC)" }
            input #timestamp name="timestamp" type="datetime-local" step="1"
                value=(browse.timestamp.map(|t| units::timestamp(t).replace(' ', "T")).unwrap_or_default());
            label for="key" { "Key contains" }
            input #key name="key" value=(browse.key) autocomplete="off";
            label for="value" { "Value contains" }
            input #value name="value" value=(browse.value) autocomplete="off";
            label for="format" { "Show as" }
            select #format name="format" {
                @for f in Format::ALL {
                    option value=(f.name()) selected[f == browse.format] { (f.name()) }
                }
            }
            label for="limit" { "Records" }
            input #limit name="limit" type="number" min="1" max=(MAX_RECORDS_PER_PAGE) value=(browse.limit);
            button type="submit" { "Show" }
        }
        nav.pager aria-label="Pages of records" {
            @if start > log_start {
                a rel="prev" href=(format!("{base}?from=offset&offset={older}{keep}")) { "← Older" }
            }
            @if found.next < hw {
                a rel="next" href=(format!("{base}?from=offset&offset={}{keep}", found.next)) { "Newer →" }
            }
        }
        @if found.scan_cut {
            p.note role="status" { "Stopped after reading " (units::bytes(MAX_SCAN_BYTES as u64)) " without filling the page; Newer goes on from offset " (found.next) "." }
        }
        @if found.records.is_empty() {
            p #no-records { "No records here" @if !browse.key.is_empty() || !browse.value.is_empty() { " match the filters" } "." }
        } @else {
            div.scroll {
                table #records {
                    caption.visually-hidden { "Records" }
                    thead {
                        tr {
                            th scope="col" class="num" { "Offset" }
                            th scope="col" { "Timestamp (UTC)" }
                            th scope="col" { "Key" }
                            th scope="col" { "Value" }
                            th scope="col" { "Headers" }
                        }
                    }
                    tbody {
                        @for r in &found.records {
                            tr id=(format!("offset-{}", r.offset)) data-offset=(r.offset) {
                                th scope="row" class="num" { (r.offset) }
                                td { (units::timestamp(r.timestamp)) }
                                td.key { (shown(r.key.as_deref(), browse.format)) }
                                td.value { (shown(r.value.as_deref(), browse.format)) }
                                td {
                                    @if !r.headers.is_empty() {
                                        dl.headers {
                                            @for h in &r.headers {
                                                dt { (records::text(h.key.as_bytes())) }
                                                dd { (shown(h.value.as_deref(), Format::Text)) }
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
        h2 #produce { "Produce a test record" }
        @if !caller.may_change() { (read_only()) }
        @if caller.may_change() { form.stack method="post" action=(format!("{base}/records")) {
            (c.csrf_field())
            label for="produce-key" { "Key (empty: no key)" }
            input #produce-key name="key" autocomplete="off";
            label for="produce-value" { "Value" }
            textarea #produce-value name="value" rows="3" {}
            label for="produce-headers" { "Headers, one name: value a line" }
            textarea #produce-headers name="headers" rows="2" {}
            button type="submit" { "Produce" }
        } }
    };
    Ok(layout::respond(
        &format!("{topic}/{partition}"),
        Some(Section::Topics),
        body,
    ))
}

/// A key, value or header value as `format`, escaped by the template; `null` for none.
fn shown(bytes: Option<&[u8]>, format: Format) -> maud::Markup {
    match bytes {
        None => html! { span.null { "null" } },
        Some(b) => {
            let (text, cut) = records::render(b, format);
            html! {
                pre { (text) }
                @if cut > 0 { span.cut { "… " (units::bytes(cut as u64)) " more not shown" } }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ProduceForm {
    csrf: String,
    key: String,
    value: String,
    headers: String,
}

/// Headers from `name: value` lines (blank lines skipped).
fn parse_headers(text: &str) -> Result<Vec<Header>, PageError> {
    let mut headers = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if headers.len() == MAX_HEADERS_PER_RECORD {
            return Err(PageError::BadInput(format!(
                "a test record may have at most {MAX_HEADERS_PER_RECORD} headers"
            )));
        }
        let (name, value) = line.split_once(':').ok_or_else(|| {
            PageError::BadInput(format!("header line {line:?} is not `name: value`"))
        })?;
        headers.push(Header {
            key: name.trim().to_owned(),
            value: Some(Bytes::copy_from_slice(value.trim().as_bytes())),
        });
    }
    Ok(headers)
}

pub(crate) async fn produce(
    State(c): State<Arc<Console>>,
    Path((topic, partition)): Path<(String, String)>,
    headers: HeaderMap,
    caller: Caller,
    Form(form): Form<ProduceForm>,
) -> Response {
    let result = async {
        c.check_post(&headers, &caller, &form.csrf)?;
        let partition = parse_partition(&partition)?;
        let ctx = caller.context();
        // The topic must exist: the console does not create one on first use.
        c.core.topic(ctx, &topic)?;
        let record = Record {
            key: (!form.key.is_empty()).then(|| Bytes::from(form.key.clone().into_bytes())),
            value: Some(Bytes::from(form.value.clone().into_bytes())),
            headers: parse_headers(&form.headers)?,
            timestamp: weir_broker::now_ms(),
        };
        let request = ProduceRequest {
            topic: topic.clone(),
            acks: Acks::All,
            timeout: None,
            partitions: vec![PartitionProduce {
                partition,
                data: Ok(ProduceData::Records {
                    records: vec![record],
                    compression: Compression::None,
                    producer: None,
                    verification: None,
                }),
            }],
        };
        let pending = produce::submit(&c.core, ctx, request).await?;
        let appended = pending
            .finish()
            .await
            .pop()
            .ok_or_else(|| BrokerError::new(Reason::Internal, "a produce answered nothing"))?
            .outcome?;
        Ok(Redirect::to(&format!(
            "/console/topics/{topic}/partitions/{partition}?from=offset&offset={}#offset-{}",
            appended.base_offset, appended.base_offset
        ))
        .into_response())
    }
    .await;
    c.finish(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> BrowseQuery {
        let mut q = BrowseQuery::default();
        for (k, v) in pairs {
            let v = v.to_string();
            match *k {
                "from" => q.from = v,
                "offset" => q.offset = v,
                "timestamp" => q.timestamp = v,
                "format" => q.format = v,
                "limit" => q.limit = v,
                _ => unreachable!(),
            }
        }
        q
    }

    #[test]
    fn a_query_reads_from_an_offset_the_end_or_a_timestamp() {
        let b = parse_query(&query(&[])).unwrap();
        assert_eq!(
            (b.from, b.limit, b.format),
            (ReadFrom::End, DEFAULT_RECORDS_PER_PAGE, Format::Text)
        );
        let b = parse_query(&query(&[("offset", "5")])).unwrap();
        assert_eq!((b.from, b.offset), (ReadFrom::Offset, Some(5)));
        let b = parse_query(&query(&[
            ("from", "timestamp"),
            ("timestamp", "2025-01-01T00:00"),
        ]))
        .unwrap();
        assert_eq!(b.timestamp, Some(1_735_689_600_000));
        for bad in [
            query(&[("offset", "-1")]),
            query(&[("offset", "five")]),
            query(&[("from", "offset")]),
            query(&[("from", "timestamp")]),
            query(&[("from", "middle")]),
            query(&[("format", "xml")]),
            query(&[("limit", "0")]),
            query(&[("limit", &(MAX_RECORDS_PER_PAGE + 1).to_string())]),
        ] {
            assert!(
                matches!(parse_query(&bad), Err(PageError::BadInput(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn headers_are_name_value_lines() {
        let h = parse_headers("a: 1\n\n b :two:2 \n").unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(
            (h[1].key.as_str(), h[1].value.as_deref()),
            ("b", Some(&b"two:2"[..]))
        );
        assert!(parse_headers("no colon").is_err());
        let many = "h: v\n".repeat(MAX_HEADERS_PER_RECORD + 1);
        assert!(parse_headers(&many).is_err());
    }

    proptest::proptest! {
        /// Whatever bytes a record holds, they reach the page as text: the only markup in
        /// a rendered key or value is the template's own.
        #[test]
        fn record_bytes_never_become_markup(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            format in 0usize..3,
        ) {
            let html = shown(Some(&bytes), Format::ALL[format]).into_string();
            let data = html
                .strip_prefix("<pre>")
                .and_then(|h| h.strip_suffix("</pre>"))
                .expect("one pre element");
            proptest::prop_assert!(!data.contains('<') && !data.contains('>'), "{}", html);
        }
    }
}
