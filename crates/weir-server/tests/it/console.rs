//! The web console (`weir-console`) on a real broker's admin listener, spoken to as a
//! browser would (HTTP/1.1, form posts): each page's status and what a user reads on it
//! (the topic, the record at offset 5, the group's lag), record keys and values escaped,
//! forms that create a topic and refuse a destructive action without confirmation, and
//! the error pages of bad input.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_proto::v1::groups_client::GroupsClient;
use weir_proto::v1::*;

/// An HTTP answer: status code, head (status line and headers), body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 request (`Connection: close`); `form` is sent url-encoded as a POST.
async fn http(
    addr: SocketAddr,
    path: &str,
    form: Option<&[(&str, &str)]>,
    origin: Option<&str>,
) -> Answer {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (method, body, content_type) = match form {
        None => ("GET", String::new(), ""),
        Some(fields) => (
            "POST",
            fields
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&"),
            "Content-Type: application/x-www-form-urlencoded\r\n",
        ),
    };
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{content_type}\
         Content-Length: {}\r\n{origin}\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    http(addr, path, None, None).await
}

async fn post(addr: SocketAddr, path: &str, form: &[(&str, &str)]) -> Answer {
    http(addr, path, Some(form), None).await
}

/// The CSRF token of the forms on `path`.
async fn token(addr: SocketAddr, path: &str) -> String {
    let page = get(addr, path).await;
    let at = page
        .body
        .find("name=\"csrf\" value=\"")
        .expect("a form with a token")
        + 19;
    page.body[at..at + 32].to_owned()
}

/// The text of the element with `id`, tags stripped (enough for the cells we read).
fn text_of(body: &str, id: &str) -> String {
    let at = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {body}"));
    let start = body[at..].find('>').unwrap() + at + 1;
    let end = body[start..].find("</").unwrap() + start;
    body[start..end].to_owned()
}

async fn produce_values(c: &mut Clients, topic: &str, partition: u32, values: &[&str]) {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    c.produce(request(
        topic,
        vec![plain(partition, &values, Compression::None)],
        Acks::All,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_page_shows_this_broker_and_metrics_and_health_still_answer() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let admin = server.admin_addr.unwrap();
        let root = get(admin, "/").await;
        assert_eq!(root.status, 303);
        assert_eq!(root.header("location"), Some("/console/"));
        // The broker registers itself and elects itself controller just after it starts.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let page = loop {
            let page = get(admin, "/console/").await;
            assert_eq!(page.status, 200, "{}", page.body);
            if text_of(&page.body, "controller") == "broker 0" && page.body.contains("alive") {
                break page;
            }
            assert!(tokio::time::Instant::now() < deadline, "{}", page.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(page.body.contains("(this broker)"), "{}", page.body);
        assert!(page.body.contains("alive"));
        assert_eq!(text_of(&page.body, "controller"), "broker 0");
        assert_eq!(text_of(&page.body, "offline"), "0");
        assert!(page.body.contains("<nav aria-label=\"Console sections\">"));
        let (status, metrics) = http_get(admin, "/metrics").await;
        assert!(status.contains("200"), "{status}");
        assert!(metrics.contains("weir_under_replicated_partitions"));
        let (status, _) = http_get(admin, "/health").await;
        assert!(status.contains("200"), "{status}");
        let css = get(admin, "/console/assets/console.css").await;
        assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
        let js = get(admin, "/console/assets/console.js").await;
        assert!(js.body.contains("EventSource"));
        // A page asked for by another host name (DNS rebinding) is refused; the metrics
        // endpoint, which Prometheus reaches by any name, is not the console's to refuse.
        for (path, status) in [
            ("/console/", "403"),
            ("/console/topics", "403"),
            ("/metrics", "200"),
        ] {
            let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
            s.write_all(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).await.unwrap();
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{path}: {answer}"
            );
        }
        let by_name = http(admin, "/console/", None, None).await;
        assert_eq!(by_name.status, 200);
        let missing = get(admin, "/console/nothing-here").await;
        assert_eq!(missing.status, 404);
        assert!(
            missing
                .body
                .contains("there is no page at /console/nothing-here")
        );
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_pages_list_topics_and_partitions_and_bad_input_is_a_clear_error() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let admin = server.admin_addr.unwrap();
        let mut c = connect(server.addr).await;
        c.create("orders", 3, &[("retention.ms", "3600000")]).await;
        c.create("audit", 1, &[]).await;
        produce_values(&mut c, "orders", 1, &["a", "b", "c"]).await;

        let list = get(admin, "/console/topics").await;
        assert_eq!(list.status, 200);
        assert!(list.body.contains("href=\"/console/topics/orders\""), "{}", list.body);
        assert!(list.body.contains("href=\"/console/topics/audit\""));
        assert!(list.body.contains("3600000"), "retention.ms is listed");
        assert!(!list.body.contains("__consumer_offsets"));
        let all = get(admin, "/console/topics?internal=1").await;
        assert!(all.body.contains("__consumer_offsets"));

        let detail = get(admin, "/console/topics/orders").await;
        assert_eq!(detail.status, 200);
        for p in 0..3 {
            assert!(
                detail
                    .body
                    .contains(&format!("href=\"/console/topics/orders/partitions/{p}\"")),
                "{}",
                detail.body
            );
        }
        // Partition 1: log start 0, high watermark and log end 3, one segment.
        assert!(
            detail.body.contains(
                "<td class=\"num\">0</td><td class=\"num\">3</td><td class=\"num\">3</td><td class=\"num\">1</td>"
            ),
            "{}",
            detail.body
        );

        let unknown = get(admin, "/console/topics/nope").await;
        assert_eq!(unknown.status, 404);
        assert!(unknown.body.contains("UNKNOWN_TOPIC"), "{}", unknown.body);
        let bad = get(admin, "/console/topics/orders/partitions/abc").await;
        assert_eq!(bad.status, 400);
        assert!(bad.body.contains("is not a partition number"));
        let no_partition = get(admin, "/console/topics/orders/partitions/9").await;
        assert_eq!(no_partition.status, 404, "{}", no_partition.body);
        let past_end = get(admin, "/console/topics/orders/partitions/1?offset=10").await;
        assert_eq!(past_end.status, 400, "{}", past_end.body);
        assert!(past_end.body.contains("OFFSET_OUT_OF_RANGE"));
        let bad_offset = get(admin, "/console/topics/orders/partitions/1?offset=-3").await;
        assert_eq!(bad_offset.status, 400);
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_browser_finds_the_record_at_offset_5_and_shows_scripts_as_text() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let admin = server.admin_addr.unwrap();
        let mut c = connect(server.addr).await;
        c.create("orders", 2, &[]).await;
        let values: Vec<String> = (0..10).map(|i| format!("order-{i}")).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        produce_values(&mut c, "orders", 0, &values).await;
        // A record whose key and value are markup (plain() keys it k-<value>).
        produce_values(&mut c, "orders", 0, &["<script>alert(1)</script>"]).await;
        produce_values(&mut c, "orders", 0, &[r#"{"id":7,"items":[1,2]}"#]).await;

        let page = get(
            admin,
            "/console/topics/orders/partitions/0?offset=5&limit=3",
        )
        .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(text_of(&page.body, "shown-from"), "5");
        let first = page
            .body
            .find("id=\"offset-5\"")
            .expect("the record at offset 5");
        assert!(page.body[first..].contains("order-5"));
        assert!(page.body.contains("id=\"offset-7\""));
        assert!(!page.body.contains("id=\"offset-8\""), "limit 3");
        assert!(page.body.contains("k-order-5"), "the key");
        assert!(page.body.contains(">hv<"), "the header value");
        assert!(
            page.body.contains("offset=8&amp;"),
            "a Newer link from offset 8"
        );

        let escaped = get(
            admin,
            "/console/topics/orders/partitions/0?offset=10&limit=1",
        )
        .await;
        assert_eq!(escaped.status, 200);
        assert!(!escaped.body.contains("<script>alert"), "{}", escaped.body);
        assert!(
            escaped
                .body
                .contains("&lt;script&gt;alert(1)&lt;/script&gt;")
        );
        assert!(
            escaped.body.contains("k-&lt;script&gt;"),
            "the key is escaped too"
        );

        let json = get(
            admin,
            "/console/topics/orders/partitions/0?offset=11&format=json",
        )
        .await;
        assert!(json.body.contains("&quot;items&quot;: ["), "{}", json.body);
        let hex = get(
            admin,
            "/console/topics/orders/partitions/0?offset=0&limit=1&format=hex",
        )
        .await;
        assert!(hex.body.contains("6f 72 64 65 72 2d 30"), "{}", hex.body);

        let filtered = get(
            admin,
            "/console/topics/orders/partitions/0?from=start&value=order-8",
        )
        .await;
        assert!(filtered.body.contains("id=\"offset-8\""));
        assert!(!filtered.body.contains("id=\"offset-7\""));
        assert!(!filtered.body.contains("id=\"offset-9\""));
        let by_key = get(
            admin,
            "/console/topics/orders/partitions/0?from=start&key=k-order-3",
        )
        .await;
        assert!(by_key.body.contains("id=\"offset-3\""));
        assert!(!by_key.body.contains("id=\"offset-4\""));

        let end = get(
            admin,
            "/console/topics/orders/partitions/0?from=end&limit=2",
        )
        .await;
        assert_eq!(text_of(&end.body, "shown-from"), "10");
        let by_time = get(
            admin,
            "/console/topics/orders/partitions/0?from=timestamp&timestamp=0",
        )
        .await;
        assert_eq!(text_of(&by_time.body, "shown-from"), "0");
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_create_a_topic_and_produce_and_destructive_actions_need_confirmation() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let admin = server.admin_addr.unwrap();
        let mut c = connect(server.addr).await;
        let csrf = token(admin, "/console/topics").await;

        let forged = post(
            admin,
            "/console/topics",
            &[("name", "forged"), ("csrf", "x")],
        )
        .await;
        assert_eq!(forged.status, 403);
        let other_site = http(
            admin,
            "/console/topics",
            Some(&[("name", "forged"), ("csrf", &csrf)]),
            Some("http://evil.example"),
        )
        .await;
        assert_eq!(other_site.status, 403);

        let created = post(
            admin,
            "/console/topics",
            &[
                ("csrf", &csrf),
                ("name", "payments"),
                ("partitions", "4"),
                ("replication_factor", ""),
                ("retention_ms", ""),
            ],
        )
        .await;
        assert_eq!(created.status, 303, "{}", created.body);
        assert_eq!(created.header("location"), Some("/console/topics/payments"));
        let described = c
            .admin
            .describe_topic(DescribeTopicRequest {
                name: "payments".into(),
                ..Default::default()
            })
            .await
            .expect("the topic exists")
            .into_inner();
        assert_eq!(described.topic.unwrap().partitions.len(), 4);
        let again = post(
            admin,
            "/console/topics",
            &[("csrf", &csrf), ("name", "payments")],
        )
        .await;
        assert_eq!(again.status, 409);
        assert!(again.body.contains("TOPIC_ALREADY_EXISTS"));
        let bad_name = post(
            admin,
            "/console/topics",
            &[("csrf", &csrf), ("name", "a b")],
        )
        .await;
        assert_eq!(bad_name.status, 400, "{}", bad_name.body);

        let grown = post(
            admin,
            "/console/topics/payments/partitions",
            &[("csrf", &csrf), ("count", "6")],
        )
        .await;
        assert_eq!(grown.status, 303, "{}", grown.body);
        let change = [
            ("csrf", csrf.as_str()),
            ("key", "retention.ms"),
            // A value no key has by default (file.delete.delay.ms is 60000), so the page
            // shows it only if the change was made.
            ("value", "61234"),
            ("action", "set"),
        ];
        let preview = post(admin, "/console/topics/payments/configs", &change).await;
        assert_eq!(preview.status, 200, "{}", preview.body);
        assert_eq!(text_of(&preview.body, "config-after"), "<code>61234");
        assert!(
            !get(admin, "/console/topics/payments")
                .await
                .body
                .contains("<code>61234</code>"),
            "a preview changes nothing"
        );
        let bad = post(
            admin,
            "/console/topics/payments/configs",
            &[
                ("csrf", &csrf),
                ("key", "retention.ms"),
                ("value", "soon"),
                ("action", "set"),
            ],
        )
        .await;
        assert_eq!(
            bad.status, 400,
            "an invalid value is refused at the preview"
        );
        let confirmed = [change.as_slice(), &[("confirm", "yes")]].concat();
        let set = post(admin, "/console/topics/payments/configs", &confirmed).await;
        assert_eq!(set.status, 303, "{}", set.body);
        let detail = get(admin, "/console/topics/payments").await;
        assert!(
            detail
                .body
                .contains("/console/topics/payments/partitions/5\"")
        );
        assert!(
            detail.body.contains("<code>61234</code>"),
            "{}",
            detail.body
        );

        let produced = post(
            admin,
            "/console/topics/payments/partitions/2/records",
            &[
                ("csrf", &csrf),
                ("key", "<b>k</b>"),
                ("value", "paid"),
                ("headers", "trace: abc\nsource: console"),
            ],
        )
        .await;
        assert_eq!(produced.status, 303, "{}", produced.body);
        let location = produced.header("location").unwrap().to_owned();
        assert!(location.contains("offset=0"), "{location}");
        let shown = get(admin, location.split('#').next().unwrap()).await;
        assert!(shown.body.contains("paid"));
        assert!(shown.body.contains("&lt;b&gt;k&lt;/b&gt;"));
        assert!(
            shown.body.contains(">trace<") && shown.body.contains(">abc<"),
            "{}",
            shown.body
        );

        let confirm = get(admin, "/console/topics/payments/delete").await;
        assert_eq!(confirm.status, 200);
        assert!(confirm.body.contains("Type the topic's name to confirm"));
        let unconfirmed = post(admin, "/console/topics/payments/delete", &[("csrf", &csrf)]).await;
        assert_eq!(unconfirmed.status, 400);
        let mistyped = post(
            admin,
            "/console/topics/payments/delete",
            &[("csrf", &csrf), ("confirm", "payment")],
        )
        .await;
        assert_eq!(mistyped.status, 400);
        assert_eq!(
            get(admin, "/console/topics/payments").await.status,
            200,
            "still there"
        );
        let deleted = post(
            admin,
            "/console/topics/payments/delete",
            &[("csrf", &csrf), ("confirm", "payments")],
        )
        .await;
        assert_eq!(deleted.status, 303, "{}", deleted.body);
        assert_eq!(get(admin, "/console/topics/payments").await.status, 404);
        server.shutdown().await.unwrap();
    })
    .await;
}

async fn committed(client: &mut GroupsClient<tonic::transport::Channel>, group: &str) -> Vec<i64> {
    client
        .fetch_offsets(FetchOffsetsRequest {
            group_id: group.into(),
            topics: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .offsets
        .iter()
        .map(|o| o.offset)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_pages_show_lag_and_reset_and_delete_only_when_confirmed() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let admin = server.admin_addr.unwrap();
        let mut c = connect(server.addr).await;
        c.create("orders", 1, &[]).await;
        let values: Vec<String> = (0..10).map(|i| format!("order-{i}")).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        produce_values(&mut c, "orders", 0, &values).await;
        let mut groups = GroupsClient::new(c.channel.clone());
        groups
            .commit_offsets(CommitOffsetsRequest {
                group_id: "billing".into(),
                member_id: String::new(),
                member_epoch: -1,
                topics: vec![TopicOffsetCommit {
                    topic: "orders".into(),
                    partitions: vec![PartitionOffsetCommit {
                        partition: 0,
                        offset: 4,
                        metadata: String::new(),
                    }],
                }],
            })
            .await
            .expect("committed");

        let list = get(admin, "/console/groups").await;
        assert_eq!(list.status, 200, "{}", list.body);
        assert!(
            list.body.contains("href=\"/console/groups/billing\""),
            "{}",
            list.body
        );
        assert!(
            list.body.contains("data-unit=\"count\">6<"),
            "the lag: {}",
            list.body
        );
        let page = get(admin, "/console/groups/billing").await;
        assert_eq!(page.status, 200);
        assert_eq!(text_of(&page.body, "total-lag"), "6");
        assert_eq!(text_of(&page.body, "state"), "empty");
        assert!(
            page.body.contains("offset=4\">4</a>"),
            "committed offset links to the browser"
        );
        assert!(page.body.contains("Preview the reset"));
        assert_eq!(get(admin, "/console/groups/nobody").await.status, 404);

        let csrf = token(admin, "/console/groups/billing").await;
        let preview = post(
            admin,
            "/console/groups/billing/reset",
            &[
                ("csrf", &csrf),
                ("topic", ""),
                ("to", "earliest"),
                ("value", ""),
            ],
        )
        .await;
        assert_eq!(preview.status, 200, "{}", preview.body);
        assert!(preview.body.contains("Nothing has changed yet"));
        assert!(
            preview
                .body
                .contains("<input type=\"hidden\" name=\"to\" value=\"earliest\">"),
            "the confirmation carries exactly the reset previewed: {}",
            preview.body
        );
        assert!(
            preview
                .body
                .contains("<td class=\"num\">4</td><td class=\"num\">0</td>"),
            "{}",
            preview.body
        );
        assert_eq!(
            committed(&mut groups, "billing").await,
            vec![4],
            "a preview changes nothing"
        );
        let bad = post(
            admin,
            "/console/groups/billing/reset",
            &[
                ("csrf", &csrf),
                ("to", "offset"),
                ("value", "x"),
                ("confirm", "billing"),
            ],
        )
        .await;
        assert_eq!(bad.status, 400);
        let reset = post(
            admin,
            "/console/groups/billing/reset",
            &[
                ("csrf", &csrf),
                ("topic", "orders"),
                ("to", "offset"),
                ("value", "7"),
                ("confirm", "billing"),
            ],
        )
        .await;
        assert_eq!(reset.status, 303, "{}", reset.body);
        assert_eq!(committed(&mut groups, "billing").await, vec![7]);

        let unconfirmed = post(admin, "/console/groups/billing/delete", &[("csrf", &csrf)]).await;
        assert_eq!(unconfirmed.status, 400);
        assert_eq!(committed(&mut groups, "billing").await, vec![7]);
        let deleted = post(
            admin,
            "/console/groups/billing/delete",
            &[("csrf", &csrf), ("confirm", "billing")],
        )
        .await;
        assert_eq!(deleted.status, 303, "{}", deleted.body);
        assert_eq!(get(admin, "/console/groups/billing").await.status, 404);
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_charts_and_events_carry_new_samples() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let admin = server.admin_addr.unwrap();
        let mut c = connect(server.addr).await;
        c.create("orders", 1, &[]).await;
        produce_values(&mut c, "orders", 0, &["a", "b"]).await;
        let page = get(admin, "/console/live").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("data-series=\"all:bytes_in\""));
        assert!(
            page.body.contains("Produce"),
            "the latency table names the RPCs"
        );

        // The event stream: the first sample comes within two sample intervals.
        let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
        s.write_all(format!("GET /console/events HTTP/1.1\r\nHost: {admin}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut seen = Vec::new();
        let found = tokio::time::timeout(Duration::from_secs(15), async {
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "the stream ended");
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen);
                if text.contains("event: sample") && text.contains("topic:orders:bytes_in") {
                    return text.into_owned();
                }
            }
        })
        .await
        .expect("a sample event within 15 s");
        assert!(found.contains("text/event-stream"), "{found}");
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_group_is_listed_beside_the_consumer_groups_with_its_records_in_flight() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let admin = server.admin_addr.unwrap();
        let mut c = connect(server.addr).await;
        c.create("tasks", 1, &[]).await;
        c.create("tasks-dlq", 1, &[]).await;
        produce_values(&mut c, "tasks", 0, &["t0", "t1", "t2", "t3", "t4"]).await;
        let mut queues = weir_proto::v1::queues_client::QueuesClient::new(c.channel.clone());
        queues
            .configure_share_group(ConfigureShareGroupRequest {
                group_id: "workers".into(),
                dead_letter_topic: Some("tasks-dlq".into()),
                ..Default::default()
            })
            .await
            .expect("configured");
        // One worker holds two records.
        let held = queues
            .share_fetch(ShareFetchRequest {
                group_id: "workers".into(),
                member_id: "w1".into(),
                topics: vec!["tasks".into()],
                max_records: 2,
                max_wait_ms: 1000,
                start: ShareStart::Earliest as i32,
                acknowledgements: vec![],
                partitions: vec![],
            })
            .await
            .expect("fetched")
            .into_inner();
        let _ = held;

        let list = get(admin, "/console/groups").await;
        assert_eq!(list.status, 200);
        assert!(list.body.contains("href=\"/console/share-groups/workers\""), "{}", list.body);
        let page = get(admin, "/console/share-groups/workers").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let row = &page.body[page.body.find("id=\"share-partitions\"").expect("the windows")..];
        // Start 0; 2 acquired, the other 3 available; the dead-letter topic named.
        assert!(
            row.contains(
                "<td class=\"num\">3</td><td class=\"num\">0</td><td class=\"num\">2</td><td class=\"num\">0</td>"
            ),
            "{row}"
        );
        assert!(page.body.contains("href=\"/console/topics/tasks-dlq\""));
        assert_eq!(get(admin, "/console/share-groups/nobody").await.status, 404);
        server.shutdown().await.unwrap();
    })
    .await;
}
