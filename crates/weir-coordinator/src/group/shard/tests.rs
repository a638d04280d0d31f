//! Tests of one `__consumer_offsets` partition's groups (`group/shard.rs`): records
//! applied, replays, commit admission.

use super::*;
use crate::group::records::OffsetValue;

fn commit(st: &mut ShardState, offset: i64, committed: i64) {
    let key = records::offset_key("g", "t", 0);
    let value = records::offset_value(&OffsetValue {
        offset: committed,
        commit_timestamp_ms: 1,
        metadata: String::new(),
        topic_id: String::new(),
        leader_epoch: -1,
    });
    apply_record(st, &key, Some(&value), offset, Instant::now(), None).unwrap();
}

fn committed(st: &ShardState) -> Option<i64> {
    st.groups
        .get("g")
        .and_then(|e| e.offsets.get("t"))
        .and_then(|p| p.get(&0))
        .map(|s| s.offset)
}

#[test]
fn a_classic_record_replays_into_its_group_and_its_tombstone_forgets_it() {
    let member = |id: &str, instance: Option<&str>| records::ClassicMemberValue {
        member_id: id.into(),
        group_instance_id: instance.map(str::to_string),
        client_id: "c".into(),
        client_host: "127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        metadata: Bytes::from_static(b"subscription"),
        assignment: Bytes::from(format!("for {id}")),
    };
    let value = ClassicValue {
        generation: 3,
        protocol_type: "consumer".into(),
        protocol_name: "range".into(),
        leader: "m-1".into(),
        members: vec![member("m-1", None), member("m-2", Some("i-2"))],
    };
    let key = records::classic_key("g");
    let mut st = ShardState::default();
    let mut replayed = ReplayedMembers::new();
    let bytes = records::classic_value(&value);
    apply_record(
        &mut st,
        &key,
        Some(&bytes),
        0,
        Instant::now(),
        Some(&mut replayed),
    )
    .unwrap();
    let e = &st.groups["g"];
    assert_eq!(e.classic.stored(), Some(value.clone()));
    assert_eq!(
        (e.classic.state(), e.classic.generation(), e.member_count()),
        (ClassicState::Stable, 3, 2)
    );
    assert_eq!(e.state(), GroupState::Stable);
    // What was replayed is what the log has: nothing to write.
    st.mark_persisted();
    assert!(!st.membership_changed("g", &Scope::All));
    // The coordinator's own writes do not touch memory (it changed first).
    apply_record(&mut st, &key, None, 1, Instant::now(), None).unwrap();
    assert_eq!(st.groups["g"].classic.generation(), 3);
    // A replayed tombstone forgets the group's classic state; the group tombstone
    // after it removes the group.
    apply_record(&mut st, &key, None, 2, Instant::now(), Some(&mut replayed)).unwrap();
    assert_eq!(st.groups["g"].classic.generation(), 0);
    apply_record(
        &mut st,
        &records::group_key("g"),
        None,
        3,
        Instant::now(),
        Some(&mut replayed),
    )
    .unwrap();
    assert!(st.groups.is_empty());
    // An undecodable classic value is a corrupt record.
    assert!(
        apply_record(
            &mut st,
            &key,
            Some(&bytes[..5]),
            4,
            Instant::now(),
            Some(&mut replayed)
        )
        .is_err()
    );
}

/// A classic group's records, replayed after any step of a rebalance, give back the
/// group as it was at that step: its rebalance record while it is between generations
/// (issued ids, joined members, the generation told at the join's end), and once it
/// settles the tombstone then the classic record.
#[test]
fn a_classic_rebalance_replays_at_every_step() {
    use crate::group::classic::{ClassicConfig, JoinGroup, SyncGroup};
    let now = Instant::now();
    let cfg = ClassicConfig {
        initial_rebalance_delay: Duration::ZERO,
        max_members: 10,
    };
    let join = |member: &str| JoinGroup {
        group_id: "g".into(),
        member_id: member.into(),
        client_id: "c".into(),
        client_host: "127.0.0.1".into(),
        group_instance_id: None,
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: vec![
            ("range".into(), Bytes::from(format!("{member} range"))),
            ("roundrobin".into(), Bytes::from(format!("{member} rr"))),
        ],
        require_known_member_id: true,
    };
    let sync = |member: &str, assignments: Vec<(String, Bytes)>| SyncGroup {
        group_id: "g".into(),
        member_id: member.into(),
        generation: 1,
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments,
    };
    // Ids issued to a and b; both join; b syncs; the leader's assignment.
    let step = |i: usize, g: &mut ClassicGroup| match i {
        0 => drop(g.join(join(""), 1, "a".into(), now, &cfg)),
        1 => drop(g.join(join(""), 2, "b".into(), now, &cfg)),
        2 => drop(g.join(join("a"), 3, String::new(), now, &cfg)),
        3 => drop(g.join(join("b"), 4, String::new(), now, &cfg)),
        4 => drop(g.sync(sync("b", Vec::new()), 5, now)),
        _ => {
            let assignments = vec![("a".into(), "p0".into()), ("b".into(), "p1".into())];
            drop(g.sync(sync("a", assignments), 6, now))
        }
    };
    let mut st = ShardState::default();
    let mut log: Vec<(Bytes, Option<Bytes>)> = Vec::new();
    let mut states = Vec::new();
    for i in 0..6 {
        step(i, &mut entry(&mut st, "g", now).classic);
        log.extend(st.membership_records("g", &Scope::All));
        let e = &st.groups["g"];
        states.push(e.classic.state());
        let mut replayed = ShardState::default();
        let mut members = ReplayedMembers::new();
        for (offset, (key, value)) in log.iter().enumerate() {
            let value = value.as_deref();
            apply_record(
                &mut replayed,
                key,
                value,
                offset as i64,
                now,
                Some(&mut members),
            )
            .unwrap();
        }
        let r = &replayed.groups["g"].classic;
        assert_eq!(
            r.rebalance_record(),
            e.classic.rebalance_record(),
            "{states:?}"
        );
        assert_eq!(r.stored(), e.classic.stored(), "{states:?}");
        assert_eq!(r.state(), e.classic.state());
    }
    use ClassicState::*;
    assert_eq!(
        states,
        [
            Empty,
            Empty,
            PreparingRebalance,
            CompletingRebalance,
            CompletingRebalance,
            Stable
        ]
    );
    // Settled: the last write was the rebalance tombstone, then the classic record.
    let keys: Vec<_> = log[log.len() - 2..]
        .iter()
        .map(|(k, v)| (records::decode_key(k).unwrap().unwrap(), v.is_some()))
        .collect();
    assert_eq!(
        keys,
        [
            (RecordKey::ClassicRebalance { group: "g".into() }, false),
            (RecordKey::Classic { group: "g".into() }, true)
        ]
    );
}

/// A group's own `consumer.session.timeout.ms` and `consumer.heartbeat.interval.ms`
/// (which the shell passes with each heartbeat) are what its members are told and
/// what they are expired by; a group without them runs with the coordinator's;
/// removing them gives the group the coordinator's again at its members' next
/// heartbeat. A group config record of a development build in the log is skipped.
#[test]
fn a_groups_own_session_timeout_is_the_one_its_members_are_expired_by() {
    use crate::group::state::{MemberRequest, Subscription};
    let config = GroupConfig::default();
    let secs = Duration::from_secs;
    let topics = TopicsSnapshot {
        version: 1,
        partitions: BTreeMap::from([(Arc::from("t"), 2)]),
    };
    let join = |id: &str| MemberRequest {
        member_id: id.into(),
        member_epoch: 0,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        subscription: Some(Subscription::Topics(BTreeSet::from([Arc::from("t")]))),
        assignor: None,
        owned: Assignment::new(),
        session_timeout: None,
    };
    let start = Instant::now();
    let mut st = ShardState::default();
    let own = GroupOverrides {
        session_timeout: Some(secs(10)),
        heartbeat_interval: Some(secs(2)),
    };
    own.validate(&config).unwrap();
    // A key-type-5 record (any value, even one that does not decode) changes nothing
    // and fails nothing.
    let key = records::config_key("short");
    for value in [None, Some(&[0u8, 1, 0, 0][..]), Some(&[0xff; 3][..])] {
        apply_record(&mut st, &key, value, 5, start, None).unwrap();
    }
    assert!(st.groups.is_empty());

    let own_of = |group: &str| match group {
        "short" => own,
        _ => GroupOverrides::default(),
    };
    let mut answers = Vec::new();
    for group in ["short", "default"] {
        let cfg = own_of(group).apply(&config);
        let e = entry(&mut st, group, start);
        let joined = e.group.heartbeat(join("m"), &topics, start, &cfg).unwrap();
        // After the join window, a settled member is told the group's interval.
        let at = start + config.join_window;
        let stay = MemberRequest {
            member_epoch: joined.outcome.member_epoch,
            subscription: None,
            owned: joined
                .outcome
                .assignment
                .unwrap()
                .into_iter()
                .flat_map(|(t, ps)| {
                    let t: Arc<str> = Arc::from(t);
                    ps.into_iter().map(move |p| (t.clone(), p))
                })
                .collect(),
            ..join("m")
        };
        answers.push(e.group.heartbeat(stay, &topics, at, &cfg).unwrap().outcome);
    }
    assert_eq!(
        (answers[0].session_timeout, answers[0].heartbeat_interval),
        (secs(10), secs(2))
    );
    assert_eq!(
        (answers[1].session_timeout, answers[1].heartbeat_interval),
        (config.session_timeout, config.heartbeat_interval)
    );
    // Heard from last at start + join window: the short group's member is gone 10 s
    // later, the other one's is not.
    let last = start + config.join_window;
    let expire = |st: &mut ShardState, group: &str, at: Instant| {
        st.groups.get_mut(group).unwrap().group.expire(at, &topics)
    };
    assert!(expire(&mut st, "short", last + secs(9)).is_empty());
    assert_eq!(expire(&mut st, "short", last + secs(10)), vec!["m"]);
    assert!(expire(&mut st, "default", last + secs(10)).is_empty());
    assert_eq!(
        expire(&mut st, "default", last + config.session_timeout),
        vec!["m"]
    );

    // Removed: the coordinator's settings again, from the next join.
    let cfg = GroupOverrides::default().apply(&config);
    let e = entry(&mut st, "short", start);
    let again = e.group.heartbeat(join("n"), &topics, last, &cfg).unwrap();
    assert_eq!(again.outcome.session_timeout, config.session_timeout);
}

#[test]
fn records_applied_out_of_order_keep_the_newest_in_the_log() {
    let mut st = ShardState::default();
    // Acknowledgements can arrive out of log order: the record at 10 wins over 5.
    commit(&mut st, 10, 100);
    commit(&mut st, 5, 50);
    assert_eq!(committed(&st), Some(100));
    // A tombstone older than the value leaves it.
    let key = records::offset_key("g", "t", 0);
    apply_record(&mut st, &key, None, 7, Instant::now(), None).unwrap();
    assert_eq!(committed(&st), Some(100));
    // A group tombstone at 20 removes what came before it...
    apply_record(
        &mut st,
        &records::group_key("g"),
        None,
        20,
        Instant::now(),
        None,
    )
    .unwrap();
    assert_eq!(committed(&st), None);
    assert_eq!(st.groups.len(), 0);
    // ...and an older commit acknowledged after it does not bring the group back,
    commit(&mut st, 15, 150);
    assert_eq!(committed(&st), None);
    // while a newer one does.
    commit(&mut st, 25, 250);
    assert_eq!(committed(&st), Some(250));
    assert_eq!(st.groups.len(), 1);
    // Group records never lower the epoch.
    let group = |epoch| {
        records::group_value(&GroupValue {
            epoch,
            assignor: "range".into(),
        })
    };
    apply_record(
        &mut st,
        &records::group_key("g"),
        Some(&group(7)),
        30,
        Instant::now(),
        None,
    )
    .unwrap();
    apply_record(
        &mut st,
        &records::group_key("g"),
        Some(&group(3)),
        31,
        Instant::now(),
        None,
    )
    .unwrap();
    let g = &st.groups["g"].group;
    assert_eq!((g.epoch(), g.assignor()), (7, Assignor::Range));
    // Unknown key types are skipped; malformed values are errors.
    apply_record(&mut st, &[0, 77], None, 32, Instant::now(), None).unwrap();
    assert!(
        apply_record(
            &mut st,
            &records::group_key("g"),
            Some(&[0, 1]),
            33,
            Instant::now(),
            None
        )
        .is_err()
    );
}

fn txn_commit(st: &mut ShardState, producer_id: i64, offset: i64, committed: i64) {
    let key = records::offset_key("g", "t", 0);
    let value = records::offset_value(&OffsetValue {
        offset: committed,
        commit_timestamp_ms: 1,
        metadata: String::new(),
        topic_id: String::new(),
        leader_epoch: -1,
    });
    apply_txn_record(st, producer_id, &key, Some(&value), offset).unwrap();
}

#[test]
fn transactional_offsets_are_committed_at_the_commit_marker_only() {
    let mut st = ShardState::default();
    commit(&mut st, 0, 5);
    txn_commit(&mut st, 7, 1, 10);
    // Pending: not the group's offset, and unstable for require_stable.
    assert_eq!(committed(&st), Some(5));
    assert!(st.has_pending_txn_offset("g", "t", 0));
    assert!(!st.has_pending_txn_offset("g", "t", 1));
    // Another producer's marker changes nothing.
    assert_eq!(apply_txn_marker(&mut st, 8, true, 2, Instant::now()), 0);
    assert_eq!(committed(&st), Some(5));
    assert_eq!(apply_txn_marker(&mut st, 7, true, 3, Instant::now()), 1);
    assert_eq!(committed(&st), Some(10));
    assert!(!st.has_pending_txn_offset("g", "t", 0));
}

#[test]
fn transactional_offsets_are_dropped_at_the_abort_marker() {
    let mut st = ShardState::default();
    commit(&mut st, 0, 5);
    txn_commit(&mut st, 7, 1, 10);
    txn_commit(&mut st, 7, 2, 12);
    assert_eq!(apply_txn_marker(&mut st, 7, false, 3, Instant::now()), 0);
    assert_eq!(committed(&st), Some(5));
    assert!(st.txn_pending.is_empty());
    // The producer's next transaction starts afresh.
    txn_commit(&mut st, 7, 4, 20);
    apply_txn_marker(&mut st, 7, true, 5, Instant::now());
    assert_eq!(committed(&st), Some(20));
}

#[test]
fn a_commit_newer_than_the_transactional_offset_is_kept_at_the_marker() {
    let mut st = ShardState::default();
    txn_commit(&mut st, 7, 1, 10);
    // A plain commit written after the transactional one, before the marker.
    commit(&mut st, 2, 11);
    assert_eq!(apply_txn_marker(&mut st, 7, true, 3, Instant::now()), 0);
    assert_eq!(committed(&st), Some(11));
}

#[test]
fn a_group_tombstone_drops_its_pending_transactional_offsets() {
    let mut st = ShardState::default();
    txn_commit(&mut st, 7, 1, 10);
    apply_record(
        &mut st,
        &records::group_key("g"),
        None,
        2,
        Instant::now(),
        None,
    )
    .unwrap();
    assert!(!st.has_pending_txn_offset("g", "t", 0));
    apply_txn_marker(&mut st, 7, true, 3, Instant::now());
    assert_eq!(committed(&st), None);
}

#[test]
fn an_offset_tombstone_drops_the_pending_transactional_offsets_of_that_partition() {
    let mut st = ShardState::default();
    commit(&mut st, 0, 5);
    txn_commit(&mut st, 7, 1, 10);
    // OffsetDelete of g's t-0: its committed offset and the transaction's pending one.
    let tombstone = |st: &mut ShardState, partition, at| {
        let key = records::offset_key("g", "t", partition);
        apply_record(st, &key, None, at, Instant::now(), None).unwrap();
    };
    tombstone(&mut st, 1, 2);
    assert!(
        st.has_pending_txn_offset("g", "t", 0),
        "another partition's tombstone"
    );
    tombstone(&mut st, 0, 3);
    assert!(!st.has_pending_txn_offset("g", "t", 0));
    assert!(st.txn_pending.is_empty());
    assert_eq!(apply_txn_marker(&mut st, 7, true, 4, Instant::now()), 0);
    assert_eq!(committed(&st), None, "the marker brings nothing back");
    // A transactional commit written after the tombstone is the transaction's.
    txn_commit(&mut st, 7, 5, 12);
    tombstone(&mut st, 0, 3);
    assert!(st.has_pending_txn_offset("g", "t", 0));
    apply_txn_marker(&mut st, 7, true, 6, Instant::now());
    assert_eq!(committed(&st), Some(12));
}

#[test]
fn a_transactional_batch_holds_offset_commits_only() {
    let mut st = ShardState::default();
    let err = apply_txn_record(&mut st, 7, &records::group_key("g"), None, 0).unwrap_err();
    assert!(err.contains("not an offset commit"), "{err}");
}
