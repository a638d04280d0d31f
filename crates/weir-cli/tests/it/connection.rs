//! The real `weir` binary against addresses that are not a working broker: a port that
//! accepts connections and never answers, no broker at all, and the broker's HTTP port
//! given as its client port. Each fails in bounded time with one sentence naming the
//! address and what to try.

use crate::common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{Broker, finish, stderr, weir_command};

/// A port on 127.0.0.1 that accepts TCP connections and never sends a byte, as a
/// stopped broker process (SIGSTOP) or a proxy with nothing behind it looks.
fn silent_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for socket in listener.incoming() {
            open.push(socket);
        }
    });
    address
}

#[test]
fn a_port_that_accepts_and_never_answers_fails_in_seconds_naming_it() {
    let silent = silent_port();
    let started = Instant::now();
    let output = finish(
        weir_command(&["topic", "list", "--brokers", &silent]),
        &["topic", "list"],
    );
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    // The default connect timeout (3 s), not HTTP/2 keep-alive giving up after 50 s.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let text = stderr(&output);
    assert_eq!(
        text,
        format!(
            "error: broker {silent} accepted the connection but did not answer within 3 s; is \
             it a Weir broker's client port, and is the broker running (not stopped or \
             overloaded)? --connect-timeout (WEIR_CONNECT_TIMEOUT) waits longer\n"
        )
    );

    // The timeouts are flags with environment variables, as --brokers is.
    let mut command = weir_command(&["consume", "t", "--brokers", &silent]);
    command.env("WEIR_CONNECT_TIMEOUT", "500ms");
    let output = finish(command, &["consume", "t"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr(&output).contains("did not answer within 500 ms"),
        "{}",
        stderr(&output)
    );
    for bad in [
        &["topic", "list", "--timeout", "0s"][..],
        &["topic", "list", "--connect-timeout", "soon"],
    ] {
        let output = finish(weir_command(bad), bad);
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {output:?}");
    }
    let help = finish(weir_command(&["produce", "--help"]), &["produce", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--timeout <DURATION>") && help.contains("WEIR_CONNECT_TIMEOUT"),
        "{help}"
    );
}

#[test]
fn no_broker_and_the_http_port_are_each_one_sentence_with_what_to_try() {
    // Nothing listens on a port that was free a moment ago.
    let free = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let output = finish(
        weir_command(&["topic", "list", "--brokers", &free]),
        &["topic", "list"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "error: could not connect to broker {free}: connection refused; is `weir serve` \
             running there? --brokers (or WEIR_BROKERS) names the brokers\n"
        )
    );

    // The broker's HTTP (metrics and health) port instead of its client port.
    let broker = Broker::start(weir_server::ServerConfig {
        kafka_listen: None,
        admin_listen: Some("127.0.0.1:0".parse().expect("address")),
        ..Default::default()
    });
    let http = broker
        .server
        .as_ref()
        .and_then(|s| s.admin_addr)
        .expect("an HTTP port")
        .to_string();
    let output = finish(
        weir_command(&["consume", "t", "--brokers", &http]),
        &["consume", "t"],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!(
            "error: {http} answered, but not with gRPC (HTTP 404"
        )) && text
            .ends_with(": is this the broker's client port (default 9292), not its HTTP port?\n"),
        "{text}"
    );

    // In a list, each is named with what went wrong, and the one that answers is used.
    let list = format!("{free},{http}");
    let output = finish(
        weir_command(&["topic", "list", "--brokers", &list]),
        &["topic", "list"],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains(&format!("{free}: connection refused"))
            && text.contains(&format!("{http}: answered, but not with gRPC")),
        "{text}"
    );
    let list = format!("{free},{}", broker.addr);
    let output = finish(
        weir_command(&["topic", "list", "--brokers", &list]),
        &["topic", "list"],
    );
    assert!(output.status.success(), "{output:?}");
}
