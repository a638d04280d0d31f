//! The classic group's state machine, event by event, and under random events
//! (proptest) with its invariants checked after each.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use proptest::prelude::*;

use super::*;

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

fn config(delay_ms: u64) -> ClassicConfig {
    ClassicConfig {
        initial_rebalance_delay: Duration::from_millis(delay_ms),
        max_members: 10,
    }
}

fn join_req(member_id: &str, protocols: &[&str]) -> JoinGroup {
    JoinGroup {
        group_id: "g".into(),
        member_id: member_id.into(),
        client_id: "c".into(),
        client_host: "127.0.0.1".into(),
        group_instance_id: None,
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("{member_id}:{p}"))))
            .collect(),
        require_known_member_id: true,
    }
}

fn sync_req(member_id: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncGroup {
    SyncGroup {
        group_id: "g".into(),
        member_id: member_id.into(),
        generation,
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
            .collect(),
    }
}

/// Joins a new member (MEMBER_ID_REQUIRED, then with its id); returns its id and
/// the replies of the second join.
fn join_new(
    g: &mut ClassicGroup,
    name: &str,
    waiter: Waiter,
    now: Instant,
    cfg: &ClassicConfig,
) -> Vec<Reply> {
    let first = g.join(join_req("", &["range"]), waiter, name.into(), now, cfg);
    assert_eq!(
        first,
        vec![Reply::Join(
            waiter,
            Ok(JoinOutcome::MemberIdRequired {
                member_id: name.into()
            })
        )]
    );
    g.join(
        join_req(name, &["range"]),
        waiter + 1,
        String::new(),
        now,
        cfg,
    )
}

fn joined(reply: &Reply) -> &JoinAnswer {
    match reply {
        Reply::Join(_, Ok(JoinOutcome::Joined(a))) => a,
        other => panic!("not a join answer: {other:?}"),
    }
}

#[test]
fn a_new_member_gets_its_id_first_then_leads_the_first_generation() {
    let (t0, cfg) = (Instant::now(), config(0));
    let mut g = ClassicGroup::new();
    let replies = join_new(&mut g, "a", 1, t0, &cfg);
    assert_eq!(replies.len(), 1);
    let a = joined(&replies[0]);
    assert_eq!((a.generation, a.leader.as_str()), (1, "a"));
    assert_eq!(a.protocol_name.as_deref(), Some("range"));
    assert_eq!(a.members, vec![("a".into(), None, Bytes::from("a:range"))]);
    assert_eq!(g.state(), ClassicState::CompletingRebalance);
    // The leader's SyncGroup carries the assignment and completes the rebalance.
    let replies = g.sync(sync_req("a", 1, &[("a", "all of it")]), 3, t0);
    assert_eq!(
        replies,
        vec![Reply::Sync(
            3,
            Ok(SyncAnswer {
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignment: Bytes::from("all of it"),
            })
        )]
    );
    assert_eq!(g.state(), ClassicState::Stable);
    assert_eq!(g.heartbeat("a", None, 1, t0), Ok(()));
    g.check_invariants().unwrap();
}

#[test]
fn the_initial_delay_puts_members_started_together_in_one_generation() {
    let (t0, cfg) = (Instant::now(), config(3000));
    let mut g = ClassicGroup::new();
    assert!(join_new(&mut g, "a", 1, t0, &cfg).is_empty());
    let t1 = t0 + Duration::from_secs(1);
    assert!(join_new(&mut g, "b", 3, t1, &cfg).is_empty());
    // At the first deadline a member had arrived: wait once more.
    assert!(g.tick(t0 + Duration::from_secs(3), &cfg).is_empty());
    assert_eq!(g.state(), ClassicState::PreparingRebalance);
    let replies = g.tick(t0 + Duration::from_secs(6), &cfg);
    assert_eq!(replies.len(), 2);
    let answers: Vec<&JoinAnswer> = replies.iter().map(joined).collect();
    assert!(answers.iter().all(|a| a.generation == 1 && a.leader == "a"));
    let leader = answers.iter().find(|a| a.member_id == "a").unwrap();
    assert_eq!(leader.members.len(), 2);
    assert!(
        answers
            .iter()
            .find(|a| a.member_id == "b")
            .unwrap()
            .members
            .is_empty()
    );
}

#[test]
fn followers_wait_for_the_leaders_assignment_and_heartbeats_say_rebalance() {
    let (t0, cfg) = (Instant::now(), config(0));
    let mut g = ClassicGroup::new();
    join_new(&mut g, "a", 1, t0, &cfg);
    g.sync(sync_req("a", 1, &[("a", "p0 p1")]), 3, t0);
    // b joins a stable group: a is told to rejoin on its next heartbeat.
    assert!(join_new(&mut g, "b", 4, t0, &cfg).is_empty());
    assert_eq!(
        g.heartbeat("a", None, 1, t0),
        Err(ClassicError::RebalanceInProgress)
    );
    assert_eq!(
        g.check_commit("a", 1, t0),
        Ok(()),
        "a commits what it consumed before it rejoins"
    );
    let replies = g.join(join_req("a", &["range"]), 6, String::new(), t0, &cfg);
    assert_eq!(replies.len(), 2);
    assert!(replies.iter().all(|r| joined(r).generation == 2));
    // The follower's sync waits for the leader's.
    assert!(g.sync(sync_req("b", 2, &[]), 7, t0).is_empty());
    assert_eq!(
        g.check_commit("b", 2, t0),
        Err(ClassicError::RebalanceInProgress)
    );
    assert_eq!(
        g.heartbeat("b", None, 1, t0),
        Err(ClassicError::IllegalGeneration {
            given: 1,
            current: 2
        })
    );
    let replies = g.sync(sync_req("a", 2, &[("a", "p0"), ("b", "p1")]), 8, t0);
    let mut got: Vec<(Waiter, Bytes)> = replies
        .into_iter()
        .map(|r| match r {
            Reply::Sync(w, Ok(a)) => (w, a.assignment),
            other => panic!("{other:?}"),
        })
        .collect();
    got.sort();
    assert_eq!(got, vec![(7, Bytes::from("p1")), (8, Bytes::from("p0"))]);
    assert_eq!(
        g.heartbeat("zed", None, 2, t0),
        Err(ClassicError::UnknownMember)
    );
    g.check_invariants().unwrap();
}

#[test]
fn a_member_that_does_not_rejoin_is_removed_at_the_rebalance_timeout() {
    let (t0, cfg) = (Instant::now(), config(0));
    let mut g = ClassicGroup::new();
    join_new(&mut g, "a", 1, t0, &cfg);
    g.sync(sync_req("a", 1, &[]), 3, t0);
    join_new(&mut g, "b", 4, t0, &cfg);
    // a keeps heartbeating but never rejoins (a consumer stuck in processing).
    let t1 = t0 + Duration::from_secs(5);
    assert_eq!(
        g.heartbeat("a", None, 1, t1),
        Err(ClassicError::RebalanceInProgress)
    );
    let replies = g.tick(t0 + REBALANCE, &cfg);
    assert_eq!(replies.len(), 1);
    let b = joined(&replies[0]);
    assert_eq!((b.member_id.as_str(), b.generation), ("b", 2));
    assert_eq!(b.leader, "b", "the leader left; b leads");
    assert!(!g.has_member("a"));
    assert_eq!(
        g.heartbeat("a", None, 1, t1),
        Err(ClassicError::UnknownMember)
    );
}

#[test]
fn a_silent_member_is_removed_after_its_session_and_the_rest_rebalance() {
    let (t0, cfg) = (Instant::now(), config(0));
    let mut g = ClassicGroup::new();
    join_new(&mut g, "a", 1, t0, &cfg);
    join_new(&mut g, "b", 3, t0, &cfg);
    let replies = g.join(join_req("a", &["range"]), 5, String::new(), t0, &cfg);
    assert_eq!(replies.len(), 2);
    g.sync(sync_req("b", 2, &[]), 6, t0);
    g.sync(sync_req("a", 2, &[]), 7, t0);
    assert_eq!(g.state(), ClassicState::Stable);
    // a heartbeats; b crashed.
    let t1 = t0 + Duration::from_secs(6);
    assert_eq!(g.heartbeat("a", None, 2, t1), Ok(()));
    assert!(g.tick(t0 + SESSION, &cfg).is_empty());
    assert!(!g.has_member("b"));
    assert_eq!(g.state(), ClassicState::PreparingRebalance);
    assert_eq!(
        g.heartbeat("a", None, 2, t1),
        Err(ClassicError::RebalanceInProgress)
    );
    let replies = g.join(join_req("a", &["range"]), 8, String::new(), t1, &cfg);
    assert_eq!(joined(&replies[0]).generation, 3);
}

#[test]
fn the_protocol_is_one_every_member_supports() {
    let (t0, cfg) = (Instant::now(), config(0));
    let mut g = ClassicGroup::new();
    let both = join_req("", &["range", "roundrobin"]);
    g.join(both.clone(), 1, "a".into(), t0, &cfg);
    let mut a = both.clone();
    a.member_id = "a".into();
    g.join(a.clone(), 2, String::new(), t0, &cfg);
    g.sync(sync_req("a", 1, &[]), 3, t0);
    // Only "sticky": nothing in common.
    let replies = g.join(join_req("", &["sticky"]), 4, "x".into(), t0, &cfg);
    assert!(matches!(
        &replies[..],
        [Reply::Join(4, Err(ClassicError::InconsistentProtocol(_)))]
    ));
    let mut other_type = join_req("", &["range"]);
    other_type.protocol_type = "connect".into();
    assert!(matches!(
        &g.join(other_type, 5, "y".into(), t0, &cfg)[..],
        [Reply::Join(5, Err(ClassicError::InconsistentProtocol(_)))]
    ));
    // b prefers roundrobin; a prefers range: one vote each, the tie goes to
    // "range" (first by name).
    g.join(
        join_req("", &["roundrobin", "range"]),
        6,
        "b".into(),
        t0,
        &cfg,
    );
    g.join(
        join_req("b", &["roundrobin", "range"]),
        7,
        String::new(),
        t0,
        &cfg,
    );
    let replies = g.join(a, 8, String::new(), t0, &cfg);
    assert_eq!(joined(&replies[0]).protocol_name.as_deref(), Some("range"));
    // A third member that only knows roundrobin tips it.
    g.sync(sync_req("a", 2, &[]), 9, t0);
    g.join(join_req("", &["roundrobin"]), 10, "c".into(), t0, &cfg);
    let mut replies = g.join(join_req("c", &["roundrobin"]), 11, String::new(), t0, &cfg);
    replies.extend(g.join(
        join_req("a", &["range", "roundrobin"]),
        12,
        String::new(),
        t0,
        &cfg,
    ));
    replies.extend(g.join(
        join_req("b", &["roundrobin", "range"]),
        13,
        String::new(),
        t0,
        &cfg,
    ));
    assert_eq!(replies.len(), 3);
    assert!(
        replies
            .iter()
            .all(|r| joined(r).protocol_name.as_deref() == Some("roundrobin"))
    );
    g.check_invariants().unwrap();
}

#[test]
fn leaving_rebalances_the_others_and_unknown_members_are_refused() {
    let (t0, cfg) = (Instant::now(), config(0));
    let mut g = ClassicGroup::new();
    join_new(&mut g, "a", 1, t0, &cfg);
    g.sync(sync_req("a", 1, &[]), 3, t0);
    let mut replies = Vec::new();
    assert_eq!(
        g.leave("ghost", None, t0, &cfg, &mut replies),
        Err(ClassicError::UnknownMember)
    );
    // A member id issued and never used may leave too.
    g.join(join_req("", &["range"]), 4, "p".into(), t0, &cfg);
    assert_eq!(g.leave("p", None, t0, &cfg, &mut replies), Ok(()));
    assert_eq!(g.leave("a", None, t0, &cfg, &mut replies), Ok(()));
    assert!(replies.is_empty());
    assert_eq!(g.state(), ClassicState::Empty);
    assert_eq!(
        g.generation(),
        2,
        "the empty group is a generation of its own"
    );
    assert!(!g.is_active());
    assert_eq!(g.check_commit("a", 1, t0), Err(ClassicError::UnknownMember));
}

#[test]
fn a_member_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let (t0, cfg) = (Instant::now(), config(0));
    let mut g = ClassicGroup::new();
    join_new(&mut g, "a", 1, t0, &cfg);
    join_new(&mut g, "b", 3, t0, &cfg);
    g.join(join_req("a", &["range"]), 5, String::new(), t0, &cfg);
    // The leader syncs; b never does (but heartbeats).
    g.sync(sync_req("a", 2, &[("a", "x"), ("b", "y")]), 6, t0);
    for t in [9, 18, 27] {
        let t = t0 + Duration::from_secs(t);
        assert_eq!(g.heartbeat("b", None, 2, t), Ok(()));
        assert_eq!(g.heartbeat("a", None, 2, t), Ok(()));
        assert!(g.tick(t, &cfg).is_empty());
    }
    g.tick(t0 + REBALANCE, &cfg);
    assert!(!g.has_member("b"));
    assert_eq!(g.state(), ClassicState::PreparingRebalance);
}

/// A consumer protocol subscription (version 3) to `topics`, then `tail` (the owned
/// partitions, generation and rack, which the broker does not read).
fn subscription(topics: &[&str], tail: &[u8]) -> Bytes {
    let mut b = vec![0, 3];
    b.extend((topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend((t.len() as i16).to_be_bytes());
        b.extend(t.as_bytes());
    }
    b.extend(tail);
    Bytes::from(b)
}

fn static_join(instance: &str, member_id: &str, metadata: Bytes) -> JoinGroup {
    JoinGroup {
        group_instance_id: Some(instance.into()),
        protocols: vec![("range".into(), metadata)],
        ..join_req(member_id, &["range"])
    }
}

/// Static members a (instance "ia", the leader) and b ("ib"), Stable in generation 2
/// with assignments "for a" and "for b".
fn stable_static_pair(t0: Instant, cfg: &ClassicConfig) -> ClassicGroup {
    let mut g = ClassicGroup::new();
    let sub = || subscription(&["t"], &[]);
    // Static members are not asked to join again with an id.
    let first = g.join(static_join("ia", "", sub()), 1, "a".into(), t0, cfg);
    assert_eq!(joined(&first[0]).generation, 1);
    assert!(
        g.join(static_join("ib", "", sub()), 2, "b".into(), t0, cfg)
            .is_empty()
    );
    let replies = g.join(static_join("ia", "a", sub()), 3, String::new(), t0, cfg);
    assert_eq!(replies.len(), 2);
    let leader = replies
        .iter()
        .map(joined)
        .find(|a| a.member_id == "a")
        .unwrap();
    assert_eq!(leader.generation, 2);
    assert!(
        leader
            .members
            .contains(&("b".into(), Some("ib".into()), sub()))
    );
    let assignments = [("a", "for a"), ("b", "for b")];
    g.sync(sync_req("a", 2, &assignments), 4, t0);
    g.sync(sync_req("b", 2, &[]), 5, t0);
    assert_eq!(g.state(), ClassicState::Stable);
    g
}

#[test]
fn a_restarted_static_member_takes_its_place_without_a_rebalance() {
    let (t0, cfg) = (Instant::now(), config(0));
    let mut g = stable_static_pair(t0, &cfg);
    // b restarts: no member id, its instance id, the same topics (other owned
    // partitions and generation in the metadata's tail).
    let replies = g.join(
        static_join("ib", "", subscription(&["t"], &[0, 0, 0, 0])),
        10,
        "b2".into(),
        t0,
        &cfg,
    );
    let answer = joined(&replies[0]);
    assert_eq!(
        (
            answer.member_id.as_str(),
            answer.generation,
            answer.leader.as_str()
        ),
        ("b2", 2, "a")
    );
    assert!(answer.members.is_empty() && !answer.skip_assignment);
    assert_eq!(g.state(), ClassicState::Stable);
    // a sees no rebalance; the old b is fenced; the new b gets the old assignment.
    assert_eq!(g.heartbeat("a", Some("ia"), 2, t0), Ok(()));
    assert_eq!(
        g.heartbeat("b", Some("ib"), 2, t0),
        Err(ClassicError::FencedInstanceId {
            instance_id: "ib".into()
        })
    );
    assert_eq!(
        g.heartbeat("b", None, 2, t0),
        Err(ClassicError::UnknownMember)
    );
    let synced = g.sync(sync_req("b2", 2, &[]), 11, t0);
    assert!(
        matches!(&synced[0], Reply::Sync(11, Ok(a)) if a.assignment == "for b"),
        "{synced:?}"
    );
    // The leader restarts: it is told it leads, and that the assignment stays.
    let replies = g.join(
        static_join("ia", "", subscription(&["t"], &[])),
        12,
        "a2".into(),
        t0,
        &cfg,
    );
    let answer = joined(&replies[0]);
    assert_eq!(
        (answer.leader.as_str(), answer.skip_assignment),
        ("a2", true)
    );
    assert_eq!(answer.members.len(), 2);
    assert_eq!(g.state(), ClassicState::Stable);
    assert_eq!(g.generation(), 2);
    g.check_invariants().unwrap();
}

#[test]
fn a_static_member_that_comes_back_with_other_topics_starts_a_rebalance() {
    let (t0, cfg) = (Instant::now(), config(0));
    let mut g = stable_static_pair(t0, &cfg);
    let replies = g.join(
        static_join("ib", "", subscription(&["t", "u"], &[])),
        10,
        "b2".into(),
        t0,
        &cfg,
    );
    assert!(replies.is_empty(), "{replies:?}");
    assert_eq!(g.state(), ClassicState::PreparingRebalance);
    assert_eq!(
        g.heartbeat("a", Some("ia"), 2, t0),
        Err(ClassicError::RebalanceInProgress)
    );
    let replies = g.join(
        static_join("ia", "a", subscription(&["t"], &[])),
        11,
        String::new(),
        t0,
        &cfg,
    );
    assert_eq!(replies.len(), 2);
    assert!(replies.iter().map(joined).all(|a| a.generation == 3));
}

#[test]
fn a_static_member_leaves_by_its_instance_id() {
    let (t0, cfg) = (Instant::now(), config(0));
    let mut g = stable_static_pair(t0, &cfg);
    let mut replies = Vec::new();
    assert_eq!(
        g.leave("a", Some("ib"), t0, &cfg, &mut replies),
        Err(ClassicError::FencedInstanceId {
            instance_id: "ib".into()
        })
    );
    assert_eq!(
        g.leave("", Some("nobody"), t0, &cfg, &mut replies),
        Err(ClassicError::UnknownMember)
    );
    assert_eq!(g.leave("", Some("ib"), t0, &cfg, &mut replies), Ok(()));
    assert!(!g.has_member("b"));
    assert_eq!(g.state(), ClassicState::PreparingRebalance);
}

#[test]
fn a_restored_group_keeps_its_generation_members_and_assignments() {
    let (t0, cfg) = (Instant::now(), config(0));
    assert_eq!(ClassicGroup::new().stored(), None);
    let g = stable_static_pair(t0, &cfg);
    let stored = g.stored().expect("a stable group is stored");
    assert_eq!(stored.generation, 2);
    assert_eq!(stored.leader, "a");
    // A new coordinator loads it later: the same group, sessions from the load.
    let t1 = t0 + Duration::from_secs(30);
    let mut r = ClassicGroup::restore(stored.clone(), t1).unwrap();
    assert_eq!(r.stored(), Some(stored));
    assert_eq!((r.state(), r.generation()), (ClassicState::Stable, 2));
    assert_eq!(r.heartbeat("a", Some("ia"), 2, t1), Ok(()));
    assert_eq!(r.check_commit("b", 2, t1), Ok(()));
    let synced = r.sync(sync_req("b", 2, &[]), 1, t1);
    assert!(
        matches!(&synced[0], Reply::Sync(1, Ok(a)) if a.assignment == "for b"),
        "{synced:?}"
    );
    assert_eq!(
        r.heartbeat("b", Some("ia"), 2, t1),
        Err(ClassicError::FencedInstanceId {
            instance_id: "ia".into()
        })
    );
    // b stops heartbeating: its session, restarted at the load, ends; a rebalance
    // under way is not stored (the last generation stays the record).
    let t2 = t1 + SESSION - Duration::from_millis(1);
    assert_eq!(r.heartbeat("a", None, 2, t2), Ok(()));
    r.tick(t1 + SESSION, &cfg);
    assert!(!r.has_member("b"));
    assert_eq!(r.state(), ClassicState::PreparingRebalance);
    assert_eq!(r.stored(), None);
    // a leaves too: the group is stored empty, with its generation.
    let mut replies = Vec::new();
    r.leave("a", None, t2, &cfg, &mut replies).unwrap();
    let empty = r.stored().expect("an empty group is stored");
    assert!(empty.members.is_empty());
    assert_eq!(empty.generation, 3);
    let back = ClassicGroup::restore(empty.clone(), t2).unwrap();
    assert_eq!((back.state(), back.generation()), (ClassicState::Empty, 3));
    assert_eq!(back.stored(), Some(empty));
}

#[test]
fn a_group_taken_over_mid_rebalance_goes_on_with_its_members_ids_and_generation() {
    let (t0, cfg) = (Instant::now(), config(0));
    // Each move: a new coordinator restores the group from its records (the classic
    // record, then the rebalance record if there is one, as a replay applies them).
    let take_over = |g: &ClassicGroup, at: Instant| {
        let mut r = match g.stored() {
            Some(stored) => ClassicGroup::restore(stored, at).unwrap(),
            None => ClassicGroup::new(),
        };
        if let Some(rebalance) = g.rebalance_record() {
            r = ClassicGroup::restore_rebalance(rebalance, at).unwrap();
        }
        r.check_invariants().unwrap();
        r
    };
    let mut g = ClassicGroup::new();
    join_new(&mut g, "a", 1, t0, &cfg);
    g.sync(sync_req("a", 1, &[("a", "all")]), 3, t0);
    assert_eq!(
        (g.state(), g.rebalance_record()),
        (ClassicState::Stable, None)
    );

    // c is issued its id; the coordinator moves before c joins with it.
    let first = g.join(join_req("", &["range"]), 4, "c".into(), t0, &cfg);
    assert!(matches!(
        &first[0],
        Reply::Join(4, Ok(JoinOutcome::MemberIdRequired { .. }))
    ));
    let record = g.rebalance_record().expect("an issued id is recorded");
    assert_eq!(record.pending, vec![("c".to_string(), 10_000)]);
    // The classic record alone (Kafka's) would not know c.
    let mut kafka = ClassicGroup::restore(g.stored().unwrap(), t0).unwrap();
    assert_eq!(
        kafka.join(join_req("c", &["range"]), 5, String::new(), t0, &cfg),
        vec![Reply::Join(5, Err(ClassicError::UnknownMember))]
    );
    let t1 = t0 + Duration::from_secs(1);
    let mut g = take_over(&g, t1);
    assert!(
        g.join(join_req("c", &["range"]), 5, String::new(), t1, &cfg)
            .is_empty()
    );
    assert_eq!(g.state(), ClassicState::PreparingRebalance);
    assert_eq!(
        g.heartbeat("a", None, 1, t1),
        Err(ClassicError::RebalanceInProgress)
    );

    // It moves again while c waits in its join: both members join the new coordinator
    // and the join phase ends at once, not after a's or c's session.
    let t2 = t1 + Duration::from_secs(1);
    let mut g = take_over(&g, t2);
    assert_eq!(g.state(), ClassicState::PreparingRebalance);
    assert!(
        g.join(join_req("c", &["range"]), 6, String::new(), t2, &cfg)
            .is_empty()
    );
    let replies = g.join(join_req("a", &["range"]), 7, String::new(), t2, &cfg);
    assert_eq!(replies.len(), 2, "{replies:?}");
    let lead = replies
        .iter()
        .find(|r| r.waiter() == 7)
        .map(joined)
        .unwrap();
    assert_eq!((lead.generation, lead.leader.as_str()), (2, "a"));
    assert_eq!(lead.members.len(), 2);

    // And again before the leader's SyncGroup: the members sync the generation they
    // were told of with the next coordinator.
    let t3 = t2 + Duration::from_secs(1);
    let mut g = take_over(&g, t3);
    assert_eq!(
        (g.state(), g.generation()),
        (ClassicState::CompletingRebalance, 2)
    );
    assert!(g.sync(sync_req("c", 2, &[]), 8, t3).is_empty());
    let synced = g.sync(sync_req("a", 2, &[("a", "p0"), ("c", "p1")]), 9, t3);
    assert!(
        synced
            .iter()
            .any(|r| matches!(r, Reply::Sync(8, Ok(a)) if a.assignment == "p1")),
        "{synced:?}"
    );
    assert_eq!(g.state(), ClassicState::Stable);
    assert_eq!(g.rebalance_record(), None);
    assert_eq!(g.stored().map(|s| s.generation), Some(2));
}

#[test]
fn a_lost_join_answer_is_answered_again_with_the_same_generation() {
    let (t0, cfg) = (Instant::now(), config(0));
    let mut g = ClassicGroup::new();
    let first = join_new(&mut g, "a", 1, t0, &cfg);
    let again = g.join(join_req("a", &["range"]), 3, String::new(), t0, &cfg);
    assert_eq!(joined(&again[0]).generation, joined(&first[0]).generation);
    assert_eq!(joined(&again[0]).members, joined(&first[0]).members);
}

// The property test: clients as Kafka clients behave (join, sync, heartbeat,
// commit, leave, crash), in random order with time passing; the state machine
// against a model of what the clients were told.

#[derive(Debug, Clone)]
enum Op {
    Join(usize),
    Sync(usize),
    Heartbeat(usize),
    Commit(usize),
    Leave(usize),
    /// The client stops without leaving (it may start again with Join).
    Crash(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..4usize;
    prop_oneof![
        3 => c.clone().prop_map(Op::Join),
        3 => c.clone().prop_map(Op::Sync),
        3 => c.clone().prop_map(Op::Heartbeat),
        1 => c.clone().prop_map(Op::Commit),
        1 => c.clone().prop_map(Op::Leave),
        1 => c.prop_map(Op::Crash),
        2 => (1..15_000u64).prop_map(Op::Advance),
    ]
}

#[derive(Debug, Default, Clone)]
struct Client {
    member_id: String,
    generation: i32,
    /// A leader's member list for its generation.
    leads: Option<Vec<String>>,
    join_waiting: Option<Waiter>,
    sync_waiting: Option<Waiter>,
    crashed: bool,
    /// Bumped by each crash: answers to an earlier life's requests reach nobody.
    life: u32,
}

/// What the model remembers of each generation: its leader and protocol, the
/// members told they are in it, and what the leader assigned.
#[derive(Debug, Default)]
struct Generation {
    leader: String,
    protocol: Option<String>,
    members: BTreeSet<String>,
    leader_list: Option<BTreeSet<String>>,
    assigned: Option<BTreeMap<String, Bytes>>,
}

struct Model {
    group: ClassicGroup,
    clients: Vec<Client>,
    /// Parked requests: the client and the life that sent them.
    outstanding: HashMap<Waiter, (usize, u32)>,
    answered: HashSet<Waiter>,
    generations: BTreeMap<i32, Generation>,
    next_waiter: Waiter,
    now: Instant,
    cfg: ClassicConfig,
    highest_generation: i32,
}

impl Model {
    fn waiter(&mut self, client: usize) -> Waiter {
        self.next_waiter += 1;
        let life = self.clients[client].life;
        self.outstanding.insert(self.next_waiter, (client, life));
        self.next_waiter
    }

    fn deliver(&mut self, replies: Vec<Reply>) -> Result<(), TestCaseError> {
        for reply in replies {
            let w = reply.waiter();
            prop_assert!(self.answered.insert(w), "waiter {} answered twice", w);
            let (c, life) = self
                .outstanding
                .remove(&w)
                .ok_or_else(|| TestCaseError::fail(format!("no waiter {w}")))?;
            let client = &mut self.clients[c];
            if client.life != life {
                // Its connection is gone with the process that sent it.
                continue;
            }
            match reply {
                Reply::Join(_, result) => {
                    if client.join_waiting == Some(w) {
                        client.join_waiting = None;
                    }
                    match result {
                        Ok(JoinOutcome::MemberIdRequired { member_id }) => {
                            client.member_id = member_id;
                        }
                        Ok(JoinOutcome::Joined(a)) => {
                            prop_assert!(a.generation >= client.generation);
                            client.member_id = a.member_id.clone();
                            client.generation = a.generation;
                            let g = self.generations.entry(a.generation).or_default();
                            if g.members.is_empty() {
                                g.leader = a.leader.clone();
                                g.protocol = a.protocol_name.clone();
                            }
                            prop_assert_eq!(&g.leader, &a.leader);
                            prop_assert_eq!(&g.protocol, &a.protocol_name);
                            g.members.insert(a.member_id.clone());
                            if a.leader == a.member_id {
                                let list: BTreeSet<String> =
                                    a.members.iter().map(|(m, _, _)| m.clone()).collect();
                                if let Some(before) = &g.leader_list {
                                    prop_assert_eq!(before, &list);
                                }
                                g.leader_list = Some(list.clone());
                                client.leads = Some(list.into_iter().collect());
                            } else {
                                prop_assert!(a.members.is_empty());
                                client.leads = None;
                            }
                        }
                        Err(ClassicError::UnknownMember) => {
                            client.member_id.clear();
                            client.generation = -1;
                        }
                        Err(_) => {}
                    }
                }
                Reply::Sync(_, result) => {
                    if client.sync_waiting == Some(w) {
                        client.sync_waiting = None;
                    }
                    if let Ok(answer) = result {
                        let g = self
                            .generations
                            .get(&client.generation)
                            .ok_or_else(|| TestCaseError::fail("sync of no generation"))?;
                        let assigned = g
                            .assigned
                            .as_ref()
                            .ok_or_else(|| TestCaseError::fail("a sync before the leader's"))?;
                        let expected = assigned.get(&client.member_id).cloned().unwrap_or_default();
                        prop_assert_eq!(answer.assignment, expected);
                    }
                }
            }
        }
        Ok(())
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        let now = self.now;
        let cfg = self.cfg;
        match op {
            Op::Join(c) => {
                let cl = &self.clients[c];
                if cl.join_waiting.is_some() || cl.sync_waiting.is_some() {
                    return Ok(());
                }
                let w = self.waiter(c);
                let cl = &mut self.clients[c];
                cl.crashed = false;
                cl.join_waiting = Some(w);
                let mut req = join_req(&cl.member_id, &["range", "roundrobin"]);
                req.member_id = cl.member_id.clone();
                let replies = self.group.join(req, w, format!("m{w}"), now, &cfg);
                self.deliver(replies)?;
            }
            Op::Sync(c) => {
                let cl = &self.clients[c];
                if cl.crashed
                    || cl.member_id.is_empty()
                    || cl.join_waiting.is_some()
                    || cl.sync_waiting.is_some()
                {
                    return Ok(());
                }
                let assignments: Vec<(String, Bytes)> = cl
                    .leads
                    .iter()
                    .flatten()
                    .map(|m| (m.clone(), Bytes::from(format!("{m}@{}", cl.generation))))
                    .collect();
                let generation = cl.generation;
                let member_id = cl.member_id.clone();
                let w = self.waiter(c);
                self.clients[c].sync_waiting = Some(w);
                // The model records the leader's assignment if the group takes it.
                let leading = self.group.state() == ClassicState::CompletingRebalance
                    && self.group.generation() == generation
                    && self.group.leader.as_deref() == Some(member_id.as_str());
                if leading {
                    let g = self.generations.entry(generation).or_default();
                    g.assigned = Some(assignments.iter().cloned().collect());
                }
                let req = SyncGroup {
                    group_id: "g".into(),
                    member_id,
                    generation,
                    group_instance_id: None,
                    protocol_type: None,
                    protocol_name: None,
                    assignments,
                };
                let replies = self.group.sync(req, w, now);
                self.deliver(replies)?;
            }
            Op::Heartbeat(c) => {
                let cl = &self.clients[c];
                if cl.crashed || cl.member_id.is_empty() {
                    return Ok(());
                }
                if let Err(ClassicError::UnknownMember) =
                    self.group
                        .heartbeat(&cl.member_id, None, cl.generation, now)
                {
                    let cl = &mut self.clients[c];
                    cl.member_id.clear();
                    cl.generation = -1;
                }
            }
            Op::Commit(c) => {
                let cl = &self.clients[c];
                if cl.crashed || cl.member_id.is_empty() {
                    return Ok(());
                }
                let id = cl.member_id.clone();
                let gen_ = cl.generation;
                if self.group.check_commit(&id, gen_, now).is_ok() {
                    // Accepted only from a member of the current generation.
                    prop_assert_eq!(gen_, self.group.generation());
                    prop_assert!(self.group.has_member(&id));
                }
            }
            Op::Leave(c) => {
                let cl = &self.clients[c];
                if cl.crashed || cl.member_id.is_empty() {
                    return Ok(());
                }
                let id = cl.member_id.clone();
                let mut replies = Vec::new();
                let _ = self.group.leave(&id, None, now, &cfg, &mut replies);
                self.deliver(replies)?;
                let cl = &mut self.clients[c];
                cl.member_id.clear();
                cl.generation = -1;
            }
            Op::Crash(c) => {
                let cl = &mut self.clients[c];
                cl.crashed = true;
                cl.life += 1;
                cl.member_id.clear();
                cl.generation = -1;
                cl.leads = None;
                cl.join_waiting = None;
                cl.sync_waiting = None;
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(ms);
                let replies = self.group.tick(self.now, &cfg);
                self.deliver(replies)?;
            }
        }
        self.group.check_invariants().map_err(TestCaseError::fail)?;
        // What a coordinator writes gives the same group back on load.
        if let Some(stored) = self.group.stored() {
            let back =
                ClassicGroup::restore(stored.clone(), self.now).map_err(TestCaseError::fail)?;
            prop_assert_eq!(back.stored(), Some(stored));
        }
        prop_assert!(self.group.generation() >= self.highest_generation);
        self.highest_generation = self.group.generation();
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn clients_are_told_one_consistent_story_and_every_request_is_answered(
        ops in proptest::collection::vec(op(), 1..120),
        delay in prop_oneof![Just(0u64), Just(3000u64)],
    ) {
        let mut m = Model {
            group: ClassicGroup::new(),
            clients: vec![Client { generation: -1, ..Client::default() }; 4],
            outstanding: HashMap::new(),
            answered: HashSet::new(),
            generations: BTreeMap::new(),
            next_waiter: 0,
            now: Instant::now(),
            cfg: config(delay),
            highest_generation: 0,
        };
        for op in ops {
            m.step(op)?;
        }
        // Every member stops: within the timeouts every parked request is answered
        // and the group empties.
        for c in 0..4 {
            m.step(Op::Crash(c))?;
        }
        for _ in 0..20 {
            m.step(Op::Advance(10_000))?;
        }
        prop_assert!(m.outstanding.is_empty(), "unanswered: {:?}", m.outstanding);
        prop_assert_eq!(m.group.state(), ClassicState::Empty);
        prop_assert_eq!(m.group.member_count(), 0);
        // Each generation's leader was told exactly the members told they are in it.
        for (generation, g) in &m.generations {
            if let Some(list) = &g.leader_list {
                prop_assert!(
                    g.members.is_subset(list),
                    "generation {}: {:?} told, leader saw {:?}", generation, g.members, list
                );
            }
        }
    }
}
