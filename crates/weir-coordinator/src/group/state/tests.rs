//! Tests of the KIP-848 membership and reconciliation state machine (`group/state.rs`).

use super::*;
use proptest::prelude::*;

fn config() -> GroupConfig {
    GroupConfig {
        session_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_secs(1),
        pending_heartbeat_interval: Duration::from_millis(100),
        rebalance_timeout: Duration::from_secs(30),
        ..GroupConfig::default()
    }
}

fn topics(list: &[(&str, u32)], version: u64) -> TopicsSnapshot {
    TopicsSnapshot {
        version,
        partitions: list.iter().map(|(t, n)| (Arc::from(*t), *n)).collect(),
    }
}

fn subscribe(names: &[&str]) -> Option<Subscription> {
    Some(Subscription::Topics(
        names.iter().map(|t| Arc::from(*t)).collect(),
    ))
}

/// A request; an empty id when joining gets a fresh one, as the coordinator gives.
fn req(id: &str, epoch: i32, owned: &Assignment) -> MemberRequest {
    let member_id = if id.is_empty() && epoch == 0 {
        uuid::Uuid::new_v4().to_string()
    } else {
        id.to_string()
    };
    MemberRequest {
        member_id,
        member_epoch: epoch,
        client_id: "c".into(),
        client_host: "h".into(),
        subscription: None,
        assignor: None,
        owned: owned.clone(),
        session_timeout: None,
    }
}

fn set(map: &TopicPartitions) -> Assignment {
    map.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (Arc::from(t.as_str()), *p)))
        .collect()
}

#[test]
fn a_partition_moves_only_after_release() {
    let cfg = config();
    let t = topics(&[("t", 2)], 1);
    let now = Instant::now();
    let mut g = Group::new("g");
    let mut join = req("", 0, &Assignment::new());
    join.subscription = subscribe(&["t"]);
    let a = g.heartbeat(join.clone(), &t, now, &cfg).unwrap().outcome;
    assert_eq!(a.member_epoch, 1);
    assert_eq!(a.assignment.as_ref().unwrap()["t"], vec![0, 1]);
    let a_owned = set(a.assignment.as_ref().unwrap());
    // B joins: the target gives it one partition, still owned by A.
    join.member_id = "b".into();
    let b = g.heartbeat(join, &t, now, &cfg).unwrap().outcome;
    assert_eq!(b.member_epoch, 2);
    assert_eq!(b.assignment.as_ref().unwrap().len(), 0, "nothing free yet");
    assert_eq!(b.heartbeat_interval, cfg.pending_heartbeat_interval);
    assert_eq!(g.state(), GroupState::Assigning);
    // A heartbeats owning both: it must revoke one, keeping epoch 1.
    let a2 = g
        .heartbeat(req(&a.member_id, 1, &a_owned), &t, now, &cfg)
        .unwrap()
        .outcome;
    assert_eq!(a2.member_epoch, 1);
    assert_eq!(a2.assignment.as_ref().unwrap()["t"].len(), 1);
    // B still gets nothing: A has not released.
    let b2 = g
        .heartbeat(req(&b.member_id, 2, &Assignment::new()), &t, now, &cfg)
        .unwrap()
        .outcome;
    assert!(b2.assignment.unwrap().is_empty());
    g.check_invariants().unwrap();
    // A releases: epoch advances; B then gets the partition.
    let a_kept = set(a2.assignment.as_ref().unwrap());
    let later = now + cfg.join_window;
    let a3 = g
        .heartbeat(req(&a.member_id, 1, &a_kept), &t, later, &cfg)
        .unwrap()
        .outcome;
    assert_eq!(a3.member_epoch, 2);
    assert_eq!(a3.heartbeat_interval, cfg.heartbeat_interval);
    let b3 = g
        .heartbeat(req(&b.member_id, 2, &Assignment::new()), &t, later, &cfg)
        .unwrap()
        .outcome;
    assert_eq!(b3.assignment.unwrap()["t"].len(), 1);
    assert_eq!(g.state(), GroupState::Stable);
    g.check_invariants().unwrap();
}

/// Three members joining at the same moment: the first takes every partition, and
/// without the join window it would keep them for a whole heartbeat interval before
/// hearing of the others.
#[test]
fn members_that_join_together_hear_of_each_other_within_the_pending_interval() {
    let cfg = config();
    let t = topics(&[("t", 3)], 1);
    let start = Instant::now();
    let ms = Duration::from_millis;
    let mut g = Group::new("g");
    let mut join = req("a", 0, &Assignment::new());
    join.subscription = subscribe(&["t"]);
    let a = g.heartbeat(join.clone(), &t, start, &cfg).unwrap().outcome;
    assert_eq!(a.assignment.as_ref().unwrap()["t"].len(), 3);
    assert_eq!(
        a.heartbeat_interval, cfg.pending_heartbeat_interval,
        "settled, but others may be joining"
    );
    let a_owned = set(a.assignment.as_ref().unwrap());
    join.member_id = "b".into();
    let b = g
        .heartbeat(join.clone(), &t, start + ms(30), &cfg)
        .unwrap()
        .outcome;
    join.member_id = "c".into();
    let c = g.heartbeat(join, &t, start + ms(60), &cfg).unwrap().outcome;
    assert!(b.assignment.unwrap().is_empty() && c.assignment.unwrap().is_empty());

    // A's next heartbeat, one pending interval after its join, hears of them.
    let at = start + cfg.pending_heartbeat_interval;
    let a2 = g
        .heartbeat(req("a", a.member_epoch, &a_owned), &t, at, &cfg)
        .unwrap()
        .outcome;
    let a_kept = set(a2.assignment.as_ref().unwrap());
    assert_eq!(a_kept.len(), 1, "two partitions revoked");
    let a3 = g
        .heartbeat(req("a", a2.member_epoch, &a_kept), &t, at, &cfg)
        .unwrap()
        .outcome;
    // B and C heartbeat a pending interval after their joins and get theirs.
    let at = start + ms(60) + cfg.pending_heartbeat_interval;
    let b2 = g
        .heartbeat(req("b", b.member_epoch, &Assignment::new()), &t, at, &cfg)
        .unwrap()
        .outcome;
    let c2 = g
        .heartbeat(req("c", c.member_epoch, &Assignment::new()), &t, at, &cfg)
        .unwrap()
        .outcome;
    assert_eq!(b2.assignment.as_ref().unwrap()["t"].len(), 1);
    assert_eq!(c2.assignment.as_ref().unwrap()["t"].len(), 1);
    assert_eq!(g.state(), GroupState::Stable);
    g.check_invariants().unwrap();

    // Once the window after the last join is over, settled members heartbeat at the
    // full interval again.
    let after = start + ms(60) + cfg.join_window;
    let a4 = g
        .heartbeat(req("a", a3.member_epoch, &a_kept), &t, after, &cfg)
        .unwrap()
        .outcome;
    assert_eq!(a4.heartbeat_interval, cfg.heartbeat_interval);
}

/// What tells a member that stopped answering (a consumer that crashed without
/// leaving) from a live one: the time since it was last heard from, against the
/// heartbeat interval it was told and its session timeout.
#[test]
fn described_members_say_when_they_were_last_heard_from() {
    let cfg = config();
    let t = topics(&[("t", 1)], 1);
    let start = Instant::now();
    let mut g = Group::new("g");
    let mut join = req("a", 0, &Assignment::new());
    join.subscription = subscribe(&["t"]);
    let a = g.heartbeat(join, &t, start, &cfg).unwrap().outcome;
    let owned = set(a.assignment.as_ref().unwrap());
    let later = start + cfg.join_window;
    let a2 = g
        .heartbeat(req("a", a.member_epoch, &owned), &t, later, &cfg)
        .unwrap()
        .outcome;
    let described = g.describe_members(later + Duration::from_secs(4));
    assert_eq!(described[0].since_heartbeat, Duration::from_secs(4));
    assert_eq!(described[0].session_timeout, cfg.session_timeout);
    assert_eq!(described[0].heartbeat_interval, a2.heartbeat_interval);
    assert_eq!(described[0].heartbeat_interval, cfg.heartbeat_interval);
    // A clock before the last heartbeat (a test's, or a coordinator's load) is no time.
    assert_eq!(g.describe_members(start)[0].since_heartbeat, Duration::ZERO);
}

#[test]
fn epochs_are_fenced_except_a_lost_answer() {
    let cfg = config();
    let t = topics(&[("t", 2)], 1);
    let now = Instant::now();
    let mut g = Group::new("g");
    let mut join = req("m1", 0, &Assignment::new());
    join.subscription = subscribe(&["t"]);
    let a = g.heartbeat(join, &t, now, &cfg).unwrap().outcome;
    assert_eq!((a.member_id.as_str(), a.member_epoch), ("m1", 1));
    let owned = set(a.assignment.as_ref().unwrap());
    assert!(matches!(
        g.heartbeat(req("m1", 2, &owned), &t, now, &cfg),
        Err(GroupError::FencedMember {
            given: 2,
            current: 1,
            ..
        })
    ));
    assert!(matches!(
        g.heartbeat(req("zz", 1, &owned), &t, now, &cfg),
        Err(GroupError::UnknownMember { .. })
    ));
    // Topic grows: epoch 2; the answer "lost", the member retries with epoch 1 and
    // owns a subset of its assignment: accepted.
    let t2 = topics(&[("t", 3)], 2);
    let r = g
        .heartbeat(req("m1", 1, &owned), &t2, now, &cfg)
        .unwrap()
        .outcome;
    assert_eq!(r.member_epoch, 2);
    let r = g
        .heartbeat(req("m1", 1, &owned), &t2, now, &cfg)
        .unwrap()
        .outcome;
    assert_eq!((r.member_epoch, r.assignment.unwrap()["t"].len()), (2, 3));
    // Owning a partition it was never given with the previous epoch: fenced.
    let mut bogus = owned.clone();
    bogus.insert((Arc::from("other"), 0));
    assert!(matches!(
        g.heartbeat(req("m1", 1, &bogus), &t2, now, &cfg),
        Err(GroupError::FencedMember { .. })
    ));
    assert!(matches!(
        g.heartbeat(req("m1", -2, &owned), &t2, now, &cfg),
        Err(GroupError::InvalidRequest(_))
    ));
}

#[test]
fn sessions_expire_and_free_partitions() {
    let cfg = config();
    let t = topics(&[("t", 4)], 1);
    let now = Instant::now();
    let mut g = Group::new("g");
    let mut join = req("a", 0, &Assignment::new());
    join.subscription = subscribe(&["t"]);
    g.heartbeat(join.clone(), &t, now, &cfg).unwrap();
    join.member_id = "b".into();
    join.session_timeout = Some(Duration::from_secs(20));
    g.heartbeat(join, &t, now, &cfg).unwrap();
    assert!(g.expire(now + Duration::from_secs(9), &t).is_empty());
    let epoch = g.epoch();
    assert_eq!(
        g.expire(now + Duration::from_secs(10), &t),
        vec!["a".to_string()]
    );
    assert_eq!(g.epoch(), epoch + 1);
    let epoch = g.member_epoch("b").unwrap();
    let r = g
        .heartbeat(req("b", epoch, &Assignment::new()), &t, now, &cfg)
        .unwrap()
        .outcome;
    assert_eq!(r.assignment.unwrap()["t"], vec![0, 1, 2, 3]);
    g.check_invariants().unwrap();
}

#[test]
fn leaving_is_idempotent_and_rejoining_releases() {
    let cfg = config();
    let t = topics(&[("t", 2)], 1);
    let now = Instant::now();
    let mut g = Group::new("g");
    let mut join = req("a", 0, &Assignment::new());
    join.subscription = subscribe(&["t"]);
    g.heartbeat(join.clone(), &t, now, &cfg).unwrap();
    let epoch = g.epoch();
    // Rejoin with epoch 0 and the same subscription: no bump, same partitions.
    let r = g.heartbeat(join, &t, now, &cfg).unwrap();
    assert!(!r.bumped);
    assert_eq!(r.outcome.assignment.unwrap()["t"], vec![0, 1]);
    assert_eq!(g.epoch(), epoch);
    let left = g
        .heartbeat(req("a", -1, &Assignment::new()), &t, now, &cfg)
        .unwrap();
    assert!(left.bumped && left.outcome.assignment.is_none());
    assert_eq!(g.state(), GroupState::Empty);
    let again = g
        .heartbeat(req("a", -1, &Assignment::new()), &t, now, &cfg)
        .unwrap();
    assert!(!again.bumped);
    g.check_invariants().unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Join(usize, u8),
    Heartbeat(usize),
    /// Heartbeat but keep owning what was revoked (a slow consumer).
    HeartbeatLate(usize),
    Crash(usize),
    Leave(usize),
    Grow(u8),
    Tick(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6usize, 0..4u8).prop_map(|(m, s)| Op::Join(m, s)),
        (0..6usize).prop_map(Op::Heartbeat),
        (0..6usize).prop_map(Op::Heartbeat),
        (0..6usize).prop_map(Op::HeartbeatLate),
        (0..6usize).prop_map(Op::Crash),
        (0..6usize).prop_map(Op::Leave),
        (0..3u8).prop_map(Op::Grow),
        (0..3000u16).prop_map(Op::Tick),
    ]
}

/// A simulated client: what it believes.
#[derive(Debug, Clone, Default)]
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
    alive: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_members_never_share_a_partition_and_converge(ops in proptest::collection::vec(op(), 1..80)) {
        let cfg = config();
        let names = ["a", "b", "c"];
        let mut counts = [3u32, 2, 0];
        let snapshot = |counts: &[u32; 3], version| TopicsSnapshot {
            version,
            partitions: names
                .iter()
                .zip(counts)
                .filter(|(_, n)| **n > 0)
                .map(|(t, n)| (Arc::from(*t), *n))
                .collect(),
        };
        let mut version = 1;
        let mut t = snapshot(&counts, version);
        let subscriptions: [&[&str]; 4] = [&["a"], &["a", "b"], &["b", "c"], &["a", "b", "c"]];
        let start = Instant::now();
        let mut now = start;
        let mut g = Group::new("g");
        let mut clients: Vec<Client> = vec![Client::default(); 6];
        for op in ops {
            match op {
                Op::Join(i, s) => {
                    let mut r = req("", 0, &Assignment::new());
                    r.subscription = subscribe(subscriptions[s as usize]);
                    if !clients[i].id.is_empty() && clients[i].alive {
                        r.member_id = clients[i].id.clone();
                    }
                    let out = g.heartbeat(r, &t, now, &cfg).unwrap().outcome;
                    clients[i] = Client {
                        id: out.member_id,
                        epoch: out.member_epoch,
                        owned: set(out.assignment.as_ref().unwrap()),
                        alive: true,
                    };
                }
                Op::Heartbeat(i) | Op::HeartbeatLate(i) => {
                    if !clients[i].alive { continue; }
                    let c = &clients[i];
                    match g.heartbeat(req(&c.id, c.epoch, &c.owned), &t, now, &cfg) {
                        Ok(r) => {
                            let assigned = set(r.outcome.assignment.as_ref().unwrap());
                            let c = &mut clients[i];
                            c.epoch = r.outcome.member_epoch;
                            c.owned = if matches!(op, Op::HeartbeatLate(_)) {
                                // Keeps the revoked ones for now, takes the new ones.
                                c.owned.union(&assigned).cloned().collect()
                            } else {
                                assigned
                            };
                        }
                        Err(GroupError::UnknownMember { .. }) => clients[i].alive = false,
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Crash(i) => clients[i].alive = false,
                Op::Leave(i) => {
                    if clients[i].alive {
                        g.heartbeat(req(&clients[i].id, -1, &Assignment::new()), &t, now, &cfg).unwrap();
                        clients[i].alive = false;
                    }
                }
                Op::Grow(k) => {
                    counts[k as usize] += 1;
                    version += 1;
                    t = snapshot(&counts, version);
                    g.refresh_topics(&t);
                }
                Op::Tick(ms) => {
                    now += Duration::from_millis(ms as u64 * 5);
                    for id in g.expire(now, &t) {
                        for c in clients.iter_mut().filter(|c| c.id == id) {
                            c.alive = false;
                        }
                    }
                }
            }
            prop_assert!(g.check_invariants().is_ok(), "{:?}", g.check_invariants());
            // What live clients believe they own never overlaps either: a client
            // only consumes what it was given and has not yet released.
            let mut consumed = BTreeSet::new();
            for c in clients.iter().filter(|c| c.alive && g.has_member(&c.id)) {
                for tp in &c.owned {
                    prop_assert!(consumed.insert(tp.clone()), "{tp:?} consumed twice");
                }
            }
        }
        // Crashed members' sessions end while the live ones heartbeat.
        now += cfg.session_timeout + Duration::from_secs(1);
        for c in clients.iter_mut() {
            if !c.alive || !g.has_member(&c.id) { continue; }
            let r = g.heartbeat(req(&c.id, c.epoch, &c.owned), &t, now, &cfg).unwrap();
            c.epoch = r.outcome.member_epoch;
            c.owned = set(r.outcome.assignment.as_ref().unwrap());
        }
        g.expire(now, &t);
        prop_assert!(g.check_invariants().is_ok(), "{:?}", g.check_invariants());
        // Convergence: everyone alive heartbeats promptly, owning what it was given.
        for _ in 0..6 {
            for c in clients.iter_mut() {
                if !c.alive || !g.has_member(&c.id) { continue; }
                let r = g.heartbeat(req(&c.id, c.epoch, &c.owned), &t, now, &cfg).unwrap();
                c.epoch = r.outcome.member_epoch;
                c.owned = set(r.outcome.assignment.as_ref().unwrap());
            }
        }
        prop_assert!(g.state() != GroupState::Assigning, "not converged: {:?}", g.describe_members(Instant::now()));
        let mut assigned = BTreeSet::new();
        for m in g.describe_members(Instant::now()) {
            prop_assert_eq!(m.member_epoch, g.epoch());
            prop_assert_eq!(&m.assignment, &m.target_assignment);
            for tp in set(&m.assignment) {
                prop_assert!(assigned.insert(tp));
            }
        }
        let expected: BTreeSet<TopicPartition> = g
            .subscribed_partitions()
            .map(|(t, p)| (Arc::from(t), p))
            .collect();
        prop_assert_eq!(assigned, expected);
    }
}
