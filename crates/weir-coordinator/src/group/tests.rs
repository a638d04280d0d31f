//! Tests of the group module's types and rules (`group/mod.rs`).

use super::*;

#[test]
fn group_ids_hash_like_java() {
    // Values from Java: "".hashCode() == 0, "a" == 97, "hello" == 99162322,
    // "polygenelubricants" == Integer.MIN_VALUE (wrapping arithmetic).
    assert_eq!(java_string_hash(""), 0);
    assert_eq!(java_string_hash("a"), 97);
    assert_eq!(java_string_hash("hello"), 99_162_322);
    assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    assert_eq!(partition_for_group("polygenelubricants", 16), 0);
    assert_eq!(partition_for_group("hello", 50), 99_162_322 % 50);
    // A negative hash ("my-group".hashCode() == -1906497762): abs first.
    assert_eq!(java_string_hash("my-group"), -1_906_497_762);
    assert_eq!(partition_for_group("my-group", 16), 1_906_497_762 % 16);
}

#[test]
fn any_non_empty_group_id_up_to_the_limit_is_accepted_as_kafka_does() {
    let longest = "x".repeat(MAX_GROUP_ID_BYTES);
    for good in [
        "orders.v1_x-2",
        "roundrobin,range",
        "a b/c?d#e%f\\\"g",
        "ü 日本 🦀",
        "\n",
        &longest,
    ] {
        assert!(validate_group_id(good).is_ok(), "{good:?}");
    }
    // Too long in bytes though not in characters; the message shows a cut that
    // stays on a character boundary.
    let long = "é".repeat(MAX_GROUP_ID_BYTES / 2 + 1);
    for bad in ["", &"x".repeat(MAX_GROUP_ID_BYTES + 1), &long] {
        match validate_group_id(bad) {
            Err(GroupError::InvalidGroupId { group_id, reason }) => {
                assert!(group_id.len() <= MAX_GROUP_ID_BYTES, "{group_id}");
                assert!(
                    reason.contains("empty") || reason.contains("249"),
                    "{reason}"
                );
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn default_config_is_valid_and_bad_ones_are_refused() {
    GroupConfig::default().validate().unwrap();
    let bad = GroupConfig {
        heartbeat_interval: Duration::from_secs(45),
        ..GroupConfig::default()
    };
    assert!(bad.validate().is_err());
    let bad = GroupConfig {
        offsets_partitions: 0,
        ..GroupConfig::default()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn group_overrides_read_and_write_kafkas_config_text() {
    let own = GroupOverrides::from_configs([
        (CONSUMER_SESSION_TIMEOUT_MS, "50000"),
        (CONSUMER_HEARTBEAT_INTERVAL_MS, " 2000 "),
    ])
    .unwrap();
    assert_eq!(own.session_timeout, Some(Duration::from_secs(50)));
    assert_eq!(own.heartbeat_interval, Some(Duration::from_secs(2)));
    let text = own.to_configs();
    assert_eq!(text[CONSUMER_SESSION_TIMEOUT_MS], "50000");
    assert_eq!(text[CONSUMER_HEARTBEAT_INTERVAL_MS], "2000");
    let back = GroupOverrides::from_configs(text.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(back, Ok(own));
    assert!(GroupOverrides::default().to_configs().is_empty());
    for bad in ["0", "-5", "1.5", "soon", "", "2147483648"] {
        let e = GroupOverrides::from_configs([(CONSUMER_SESSION_TIMEOUT_MS, bad)]).unwrap_err();
        assert!(e.contains(CONSUMER_SESSION_TIMEOUT_MS), "{e}");
    }
    let e = GroupOverrides::from_configs([("share.record.lock.duration.ms", "100")]);
    assert!(e.unwrap_err().contains("not a consumer group config"));
}

#[test]
fn group_overrides_are_checked_against_the_coordinators_bounds() {
    let config = GroupConfig::default();
    let secs = |s: u64| Some(Duration::from_secs(s));
    let ok = GroupOverrides {
        session_timeout: secs(50),
        heartbeat_interval: None,
    };
    ok.validate(&config).unwrap();
    assert_eq!(ok.apply(&config).session_timeout, Duration::from_secs(50));
    assert_eq!(
        ok.apply(&config).heartbeat_interval,
        config.heartbeat_interval
    );
    for (bad, names) in [
        (
            GroupOverrides {
                session_timeout: secs(61),
                heartbeat_interval: None,
            },
            "group.consumer.max.session.timeout.ms (60000)",
        ),
        (
            GroupOverrides {
                session_timeout: Some(Duration::from_millis(999)),
                heartbeat_interval: None,
            },
            "group.consumer.min.session.timeout.ms (1000)",
        ),
        (
            GroupOverrides {
                session_timeout: None,
                heartbeat_interval: secs(16),
            },
            "group.consumer.max.heartbeat.interval.ms (15000)",
        ),
        (
            GroupOverrides {
                session_timeout: secs(5),
                heartbeat_interval: secs(5),
            },
            "consumer.session.timeout.ms (5000) must be greater than \
             consumer.heartbeat.interval.ms (5000)",
        ),
        // The coordinator's heartbeat interval (3 s) counts for a group that sets
        // only its session timeout.
        (
            GroupOverrides {
                session_timeout: secs(2),
                heartbeat_interval: None,
            },
            "(2000) must be greater than consumer.heartbeat.interval.ms (3000)",
        ),
    ] {
        let message = bad.validate(&config).unwrap_err();
        assert!(message.contains(names), "{message}");
    }
}
