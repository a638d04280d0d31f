//! RabbitMQ features beyond the tutorials, through pika (`tests/amqp/*.py`, driven as
//! `amqp` drives the tutorials): queue length limits (`x-max-length` with `drop-head` and
//! `reject-publish`), exchange-to-exchange bindings and alternate exchanges,
//! `basic.recover`, flow control (`connection.blocked`), one queue shared by pika and
//! Kafka clients, headers included both ways, the console's queue and exchange pages
//! over what pika declared and holds, and virtual hosts as namespaces (with ACLs too).

use serde_json::Value;

use crate::amqp::{amqp_broker, amqp_port, assert_death, strings_of, tutorial};
use crate::common::Broker;

#[test]
fn pika_max_length_drops_the_head_or_rejects_publishes_as_rabbitmq() {
    let (_broker, port) = amqp_broker();
    let result = &tutorial("max_length.py", port, &[]);

    // drop-head: the newest three stay, in order, and a get right after the confirms
    // sees the oldest of them; the seven oldest are dead-lettered in order, reason maxlen.
    assert_eq!(result["first_get"], "m7", "{result}");
    assert_eq!(
        result["capped"],
        serde_json::json!(["m7", "m8", "m9"]),
        "{result}"
    );
    let dead = result["dead"].as_array().expect("dead");
    assert_eq!(
        strings_of(&result["dead"], "body"),
        (0..7).map(|i| format!("m{i}")).collect::<Vec<_>>(),
        "{result}"
    );
    for m in dead {
        assert_eq!(m["routing_key"], "capped", "{m}");
        assert_death(m, "capped", "maxlen", "", "capped");
    }

    // Only ready messages count: the held a0 stays and is not counted, so only a1 goes.
    assert_eq!(
        result["window"],
        serde_json::json!(["a0", "a2", "a3"]),
        "{result}"
    );

    // reject-publish: two fit, the rest are nacked, the unconfirmed one dropped; a held
    // message does not count, so r5 fits once r0 is taken.
    let outcomes = &result["outcomes"];
    for (body, outcome) in [
        ("r0", "ack"),
        ("r1", "ack"),
        ("r2", "nack"),
        ("r3", "nack"),
        ("r4", "nack"),
        ("r5", "ack"),
    ] {
        assert_eq!(outcomes[body], outcome, "{body}: {outcomes}");
    }
    assert_eq!(result["bounded_count"], 2, "{result}");
    assert_eq!(
        result["bounded"],
        serde_json::json!(["r0", "r1", "r5"]),
        "{result}"
    );

    // Refused as RabbitMQ refuses them (its words), or as not served, by name; nothing
    // is declared.
    let refusals = &result["refusals"];
    let expect = [
        (
            "length_as_string",
            "invalid arg 'x-max-length' for queue 'bad0' in vhost '/': {unacceptable_type,longstr}",
        ),
        (
            "length_negative",
            "invalid arg 'x-max-length' for queue 'bad1' in vhost '/': {value_negative,-1}",
        ),
        (
            "overflow_unknown",
            "invalid arg 'x-overflow' for queue 'bad2' in vhost '/': invalid_overflow",
        ),
        (
            "overflow_as_number",
            "invalid arg 'x-overflow' for queue 'bad3' in vhost '/': {unacceptable_type,",
        ),
        (
            "reject_publish_dlx",
            "'reject-publish-dlx' is not served by Weir yet",
        ),
        ("length_bytes", "'x-max-length-bytes' = "),
    ];
    for (case, text) in expect {
        let refusal = &refusals[case];
        assert_eq!(refusal["code"], 406, "{case}: {refusal}");
        assert!(
            refusal["text"].as_str().unwrap_or("").contains(text),
            "{case}: {refusal}"
        );
        assert_eq!(refusal["declared"], Value::Bool(false), "{case}: {refusal}");
    }
}

#[test]
fn pika_exchange_to_exchange_bindings_and_alternate_exchanges_route_as_rabbitmq() {
    let (_broker, port) = amqp_broker();
    let result = &tutorial("exchange_bindings.py", port, &[]);
    let json = |v: &[&str]| serde_json::json!(v);

    // Through the chain: to the queues at the end of each matching path, in order.
    assert_eq!(result["chain"]["orders.eu"], json(&["eu 1"]), "{result}");
    assert_eq!(
        result["chain"]["audit"],
        json(&["eu 1", "us 1", "invoice 1"]),
        "{result}"
    );
    // Unbound: that path is gone, the other stays.
    assert_eq!(result["unbound"]["orders.eu"], json(&[]), "{result}");
    assert_eq!(result["unbound"]["audit"], json(&["eu 2"]), "{result}");
    // A cycle and a diamond deliver once per queue; the mandatory publish is routed.
    assert_eq!(result["cycle_outcome"], "ok", "{result}");
    assert_eq!(result["once"]["ring"], json(&["round"]), "{result}");
    assert_eq!(result["once"]["joined"], json(&["diamond"]), "{result}");
    // A source is in use; deleted, its bindings go, and the other path still routes.
    assert_eq!(result["in_use"]["code"], 406, "{result}");
    assert_eq!(result["after_delete"], json(&["after delete"]), "{result}");

    // Alternate exchange: the unroutable message goes there and counts as routed (no
    // return); one whose alternate does not exist is returned.
    let outcomes = &result["alternate_outcomes"];
    assert_eq!(outcomes["known"], "ok", "{outcomes}");
    assert_eq!(outcomes["unknown"], "ok", "{outcomes}");
    assert_eq!(outcomes["missing_alternate"], "returned", "{outcomes}");
    assert_eq!(result["alternate"]["known"], json(&["known 1"]), "{result}");
    assert_eq!(result["alternate"]["lost"], json(&["lost 1"]), "{result}");

    let refusals = &result["refusals"];
    for (case, code, text) in [
        (
            "default_source",
            403,
            "operation not permitted on the default exchange",
        ),
        (
            "default_destination",
            403,
            "operation not permitted on the default exchange",
        ),
        ("missing_source", 404, "no exchange 'nope' in vhost '/'"),
        (
            "missing_destination",
            404,
            "no exchange 'nope' in vhost '/'",
        ),
        (
            "alternate_not_a_name",
            406,
            "invalid arg 'alternate-exchange'",
        ),
    ] {
        assert_eq!(refusals[case]["code"], code, "{case}: {refusals}");
        assert!(
            refusals[case]["text"].as_str().unwrap_or("").contains(text),
            "{case}: {refusals}"
        );
    }
}

#[test]
fn pika_basic_recover_redelivers_what_the_channel_held() {
    let (_broker, port) = amqp_broker();
    let result = &tutorial("recover.py", port, &[]);
    let delivered = |v: &Value| -> Vec<(String, bool)> {
        v.as_array()
            .expect("an array")
            .iter()
            .map(|m| {
                (
                    m["body"].as_str().unwrap_or("").to_owned(),
                    m["redelivered"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    };
    let expect = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
        v.iter().map(|(b, r)| ((*b).to_owned(), *r)).collect()
    };

    // basic_get: all three first, then all three again, redelivered, in order; the
    // message published after is new.
    assert_eq!(
        delivered(&result["first"]),
        expect(&[("p0", false), ("p1", false), ("p2", false)]),
        "{result}"
    );
    assert_eq!(
        delivered(&result["again"]),
        expect(&[("p0", true), ("p1", true), ("p2", true), ("p3", false)]),
        "{result}"
    );
    assert_eq!(result["left"], 0, "{result}");

    // A consumer at its prefetch: the two it held again, then the third.
    assert_eq!(result["before_recover"], 2, "{result}");
    assert_eq!(
        delivered(&result["deliveries"]),
        expect(&[
            ("c0", false),
            ("c1", false),
            ("c0", true),
            ("c1", true),
            ("c2", false)
        ]),
        "{result}"
    );

    // requeue=false: RabbitMQ's answer, 540 on the connection.
    assert_eq!(result["refused"]["code"], 540, "{result}");
    assert!(
        result["refused"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("requeue=false"),
        "{result}"
    );
}

/// RabbitMQ's flow control: with the broker's budget of requests in flight full, a
/// publish is held (its connection not read), pika is told `connection.blocked`, and once
/// room returns `connection.unblocked`, and the publish is confirmed and stored.
#[test]
fn pika_is_blocked_while_the_broker_has_no_room_and_unblocked_after() {
    let (broker, port) = amqp_broker();
    let budget = broker.server.as_ref().expect("running").budget();
    // All of it: nothing else is in flight on this broker now.
    let held = budget
        .try_request_bytes(usize::MAX)
        .expect("the budget is free");
    let script = crate::common::repo_root().join("tests/amqp/blocked.py");
    let python = crate::common::installed("tests/python/setup.sh");
    let port = port.to_string();
    let run = std::thread::spawn(move || {
        crate::common::run_ok(&python, &[&script.to_string_lossy(), &port, "blocked"])
    });
    // Held until the publish waits for room (bounded), and a second more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while budget.request_waits() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    drop(held);
    let out = run.join().expect("the script ran");
    let result = &crate::common::json_lines(&out)[0];
    assert_eq!(result["events"][0][0], "blocked", "{result}");
    assert!(
        result["events"][0][1]
            .as_str()
            .unwrap_or_default()
            .contains("max_in_flight_request_bytes"),
        "{result}"
    );
    assert_eq!(result["events"][1][0], "unblocked", "{result}");
    assert!(
        result["publish_seconds"].as_f64().unwrap_or_default() >= 0.9,
        "the publish waited for room: {result}"
    );
    assert_eq!(result["stored"], "held", "{result}");
}

/// One queue, two protocols: what pika publishes a Kafka consumer reads as records with
/// the message's properties and headers as record headers, and what a Kafka producer
/// writes into the queue's topic pika gets with the record's headers as AMQP headers,
/// in the order they were appended.
#[test]
fn pika_and_kafka_clients_share_a_queue_headers_included() {
    let broker = crate::common::Broker::start_with_kafka(weir_server::ServerConfig {
        admin_listen: None,
        amqp_listen: Some("127.0.0.1:0".parse().expect("address")),
        ..Default::default()
    });
    let port = crate::amqp::amqp_port(&broker).to_string();
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    let python = crate::common::installed("tests/python/setup.sh");
    let amqp = crate::common::repo_root().join("tests/amqp/bridge.py");
    let amqp = amqp.to_string_lossy();
    let kafka_script = crate::common::repo_root().join("tests/kafka/cross_protocol.py");
    let kafka_script = kafka_script.to_string_lossy();
    let run = |args: &[&str]| crate::common::run_ok(&python, args);

    run(&[&amqp, "publish", &port, "bridge"]);
    let records =
        crate::common::json_lines(&run(&[&kafka_script, "consume", &kafka, "bridge", "2"]));
    assert_eq!(records.len(), 2, "{records:?}");
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["value"], format!("from pika {i}"), "{record}");
        let headers: Vec<(String, String)> = record["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_owned(),
                    h[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for (key, value) in [
            ("amqp-content-type", "application/json".to_owned()),
            ("amqp-correlation-id", format!("corr-{i}")),
            ("trace", format!("t{i}")),
            ("attempt", i.to_string()),
        ] {
            assert!(
                headers.contains(&(key.to_owned(), value.clone())),
                "{key}={value} in {headers:?}"
            );
        }
    }

    run(&[&kafka_script, "produce", &kafka, "bridge"]);
    let messages = crate::common::json_lines(&run(&[&amqp, "get", &port, "bridge", "22"]));
    let bodies: Vec<&str> = messages
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    let mut expected = vec!["from pika 0".to_owned(), "from pika 1".to_owned()];
    expected.extend((0..20).map(|i| format!("event {i}")));
    assert_eq!(bodies, expected);
    assert_eq!(
        messages[0]["content_type"], "application/json",
        "{}",
        messages[0]
    );
    assert_eq!(messages[0]["correlation_id"], "corr-0", "{}", messages[0]);
    assert_eq!(messages[0]["headers"]["trace"], "t0", "{}", messages[0]);
    assert_eq!(messages[0]["headers"]["attempt"], 0, "{}", messages[0]);
    for (i, m) in messages[2..].iter().enumerate() {
        assert_eq!(m["headers"]["source"], "kafka-python", "{m}");
        assert_eq!(m["headers"]["n"], i.to_string(), "{m}");
    }
}

/// The text of each cell of the table row of `html` that links to `href` (its `th` and
/// `td`s, tags stripped, whitespace collapsed).
pub(crate) fn row_cells(html: &str, href: &str) -> Vec<String> {
    let at = html
        .find(&format!("href=\"{href}\""))
        .unwrap_or_else(|| panic!("no link to {href} in {html}"));
    let start = html[..at].rfind("<tr>").expect("the link's row");
    let end = at + html[at..].find("</tr>").expect("the row's end");
    let row = &html[start..end];
    let mut cells = Vec::new();
    for cell in row.split("<t").skip(2) {
        let mut text = String::new();
        let mut in_tag = true;
        for ch in cell.chars() {
            match ch {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        cells.push(text.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    cells
}

#[test]
fn the_console_lists_pika_s_queues_with_their_counts_and_consumers_and_their_exchanges() {
    let broker = Broker::start(weir_server::ServerConfig {
        admin_listen: Some("127.0.0.1:0".parse().expect("address")),
        amqp_listen: Some("127.0.0.1:0".parse().expect("address")),
        ..Default::default()
    });
    let port = amqp_port(&broker);
    let admin = broker
        .server
        .as_ref()
        .and_then(|s| s.admin_addr)
        .expect("an admin listener")
        .to_string();
    let result = &tutorial("console_queues.py", port, &[&admin]);
    assert_eq!(result["held"].as_array().map(Vec::len), Some(2), "{result}");
    for name in ["list", "orders", "shop", "default"] {
        assert_eq!(result[name]["status"], 200, "{name}: {}", result[name]);
    }
    for name in ["missing_queue", "missing_exchange"] {
        assert_eq!(result[name]["status"], 404, "{name}: {}", result[name]);
    }

    // The list: queue, features, ready, unacked, total, consumers, state held by.
    let list = result["list"]["html"].as_str().expect("html");
    let orders = row_cells(list, "/console/queues/orders");
    assert_eq!(orders[0], "orders", "{orders:?}");
    assert_eq!(orders[1], "D DLX TTL", "{orders:?}");
    assert_eq!(&orders[2..6], ["3", "2", "5", "1"], "{orders:?}");
    // Nobody consumed audit: its group has no state, and all 5 are ready.
    let audit = row_cells(list, "/console/queues/audit");
    assert_eq!(&audit[1..6], ["D", "5", "0", "5", "0"], "{audit:?}");
    // Exchanges: the predeclared ones and the two declared, with their bindings.
    let shop = row_cells(list, "/console/exchanges/shop");
    assert_eq!(shop, ["shop", "topic", "D", "2"], "{shop:?}");
    let default = row_cells(list, "/console/exchanges/amq.default");
    assert_eq!(default[0], "(AMQP default)", "{default:?}");
    assert!(
        list.contains("href=\"/console/exchanges/amq.topic\""),
        "{list}"
    );

    // The queue's page: its counts, arguments, and what routes to it.
    let page = result["orders"]["html"].as_str().expect("html");
    let counts = &page[page.find("id=\"queue-counts\"").expect("counts")..];
    assert!(
        counts.contains(">3</td>") && counts.contains(">2</td>"),
        "{counts}"
    );
    assert!(
        page.contains("x-message-ttl") && page.contains("600000"),
        "{page}"
    );
    let bindings = row_cells(page, "/console/exchanges/shop");
    assert_eq!(bindings, ["shop", "order.*", "—"], "{bindings:?}");
    assert!(
        page.contains("href=\"/console/share-groups/orders\""),
        "{page}"
    );

    // The exchange's page: both queues bound; the default exchange routes by name.
    let page = result["shop"]["html"].as_str().expect("html");
    assert_eq!(
        row_cells(page, "/console/queues/orders"),
        ["queue orders", "order.*", "—"]
    );
    assert_eq!(
        row_cells(page, "/console/queues/audit"),
        ["queue audit", "#", "—"]
    );
    let page = result["default"]["html"].as_str().expect("html");
    assert!(page.contains("Every queue, by its name"), "{page}");
}

/// Virtual hosts as namespaces: `sales`, `hr` and `/` each have a queue `orders`, their
/// own `amq.topic` and default exchange (dead-lettering through it included); each reads
/// only its own messages, shown its own names (exchange, routing key, `x-death`), and a
/// Kafka reader finds vhost `sales`'s queue as the topic `sales.orders`.
#[test]
fn pika_vhosts_are_namespaces_each_reading_only_its_own() {
    let (broker, port) = amqp_broker();
    let result = tutorial("vhosts.py", port, &["isolation"]);
    for vhost in ["sales", "hr", "/"] {
        let got: Vec<(&str, &str, &str)> = result[vhost]
            .as_array()
            .unwrap_or_else(|| panic!("{vhost} in {result}"))
            .iter()
            .map(|m| {
                (
                    m["body"].as_str().unwrap(),
                    m["exchange"].as_str().unwrap(),
                    m["key"].as_str().unwrap(),
                )
            })
            .collect();
        let (direct, topic, delayed) = (
            format!("{vhost} direct"),
            format!("{vhost} topic"),
            format!("{vhost} delayed"),
        );
        assert_eq!(
            got,
            vec![
                (direct.as_str(), "", "orders"),
                (topic.as_str(), "amq.topic", "order.new"),
                (delayed.as_str(), "", "orders"),
            ],
            "{result}"
        );
    }
    assert_eq!(result["death"]["queue"], "delay", "{result}");
    assert_eq!(result["death"]["reason"], "expired", "{result}");
    assert_eq!(result["death"]["first_queue"], "delay", "{result}");
    assert_eq!(result["sales_orders_left"], 0, "{result}");
    assert_eq!(result["bad_name"]["code"], 530, "{result}");
    // The cluster's names: vhost `sales`'s queue is the topic `sales.orders`, read whole
    // by Weir's own consumer (4 messages: 3 and the one with an x-death).
    let out = broker.ok(
        &[
            "consume",
            "sales.orders",
            "--from",
            "beginning",
            "--count",
            "4",
            "--format",
            "json",
        ],
        "",
    );
    let bodies: Vec<String> = crate::common::json_lines(&out)
        .iter()
        .map(|r| r["value"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        bodies,
        ["sales direct", "sales topic", "sales delayed", "with death"],
        "{out}"
    );
}

/// With ACLs on, a vhost is what its prefix grants: anonymous clients given everything
/// prefixed `sales.` (topics and groups) open `sales` and work in it whole (an exchange
/// declared, a queue bound, a message through), are refused `hr` at `connection.open`
/// (530) and, in `/`, a queue outside the prefix (403).
#[test]
fn with_acls_a_vhost_is_what_its_prefix_grants() {
    // Authorization needs the brokers' certificates (for each other; pika stays on the
    // plaintext AMQP listener, anonymous).
    let certs = crate::common::secure::Certs::new();
    let broker = Broker::start(weir_server::ServerConfig {
        admin_listen: None,
        amqp_listen: Some("127.0.0.1:0".parse().expect("address")),
        tls_cert: Some(certs.path("node.pem")),
        tls_key: Some(certs.path("node-key.pem")),
        tls_client_ca: Some(certs.path("ca.pem")),
        authorization: true,
        admin_user: Some("admin".into()),
        admin_password: Some(weir_server::Secret("admin-secret".into())),
        ..Default::default()
    });
    let port = amqp_port(&broker);
    let ca = certs.arg("ca.pem");
    let admin = |args: &[&str]| {
        let mut command = broker.command(args);
        command.envs([
            ("WEIR_USER", "admin"),
            ("WEIR_PASSWORD", "admin-secret"),
            ("WEIR_TLS_CA", &*ca),
        ]);
        crate::common::finish(command, args)
    };
    for resource in ["--topic", "--group"] {
        crate::common::as_admin_once_ready(|| {
            admin(&[
                "acl",
                "add",
                "--principal",
                "User:ANONYMOUS",
                "--operation",
                "all",
                resource,
                "sales.",
                "--prefixed",
            ])
        });
    }
    let result = tutorial("vhosts.py", port, &["acl"]);
    assert_eq!(result["hr"]["code"], 530, "{result}");
    assert_eq!(result["sales"], serde_json::json!(["granted"]), "{result}");
    assert_eq!(result["root"]["code"], 403, "{result}");
}
