//! `weir topic create`: the broker's partition limit, checked by the CLI and stated in
//! `--help`, and `--if-not-exists`.

use crate::common;

use common::{Broker, finish, json_lines, stderr, weir_command};

#[test]
fn topic_create_states_the_brokers_partition_limit_and_can_be_run_again() {
    let help = finish(
        weir_command(&["topic", "create", "--help"]),
        &["topic", "create", "--help"],
    );
    let help = String::from_utf8_lossy(&help.stdout);
    let limit = weir_server::MAX_PARTITIONS_PER_TOPIC;
    assert!(
        help.contains(&format!("Number of partitions, 1 to {limit}"))
            && help.contains("--if-not-exists"),
        "{help}"
    );
    let above = (limit + 1).to_string();
    for args in [
        &["topic", "create", "t", "--partitions", &above][..],
        &["topic", "create", "t", "--partitions", "4294967295"],
        &["topic", "add-partitions", "t", "--total", &above],
    ] {
        // Refused before anything is sent: no broker is needed.
        let output = finish(weir_command(args), args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(
            stderr(&output).contains(&format!("1..={limit}")),
            "{}",
            stderr(&output)
        );
    }

    let broker = Broker::start(weir_server::ServerConfig {
        kafka_listen: None,
        admin_listen: None,
        ..Default::default()
    });
    broker.ok(&["topic", "create", "events", "--partitions", "2"], "");
    // Again: an error without --if-not-exists...
    let output = broker.run(&["topic", "create", "events", "--partitions", "2"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("already exists"));
    // ...success with it, saying so; a note when the topic differs from what was asked.
    let output = broker.run(&[
        "topic",
        "create",
        "events",
        "--partitions",
        "2",
        "--if-not-exists",
    ]);
    assert!(output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty());
    assert_eq!(
        stderr(&output),
        "note: topic events exists already; nothing changed\n"
    );
    let output = broker.run(&[
        "topic",
        "create",
        "events",
        "--partitions",
        "3",
        "--config",
        "retention.ms=1000",
        "--if-not-exists",
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let text = stderr(&output);
    assert!(
        text.contains("2 partitions, not 3") && text.contains("retention.ms="),
        "{text}"
    );
    let topic = &json_lines(&String::from_utf8_lossy(&output.stdout))[0];
    assert_eq!(topic["name"], "events");
    assert_eq!(topic["partitions"].as_array().expect("partitions").len(), 2);
}
