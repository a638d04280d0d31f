//! RabbitMQ features beyond the tutorials, through pika (`tests/amqp/*.py`, driven as
//! `amqp` drives the tutorials): queue length limits (`x-max-length` with `drop-head` and
//! `reject-publish`), exchange-to-exchange bindings and alternate exchanges,
//! `basic.recover`.

use serde_json::Value;

use crate::amqp::{amqp_broker, assert_death, strings_of, tutorial};

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
