//! Server-side assignors: given the members of a group (each with the topics it
//! subscribes to and its current target), the partitions of those topics, compute each
//! member's target assignment.
//!
//! - `uniform` (the default): balanced and sticky. Every member keeps the partitions it
//!   has as far as balance allows; with identical subscriptions the counts differ by at
//!   most one and the fewest partitions move (Kafka's uniform homogeneous assignor).
//!   With different subscriptions it keeps what it can, places free partitions on the
//!   least-loaded eligible member, then moves partitions from more loaded to less
//!   loaded eligible members until no such move narrows the gap.
//! - `range`: per topic, contiguous ranges over the members subscribed to it, sorted by
//!   member id (the first `partitions % members` get one more).
//! - `round-robin`: every partition by (topic, partition) to the next member, in member
//!   id order, that subscribes to its topic.
//!
//! A partition only ever goes to a member subscribed to its topic, and to one member.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// One partition of a topic.
pub type TopicPartition = (Arc<str>, u32);
/// A set of partitions.
pub type Assignment = BTreeSet<TopicPartition>;

/// A server-side assignor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assignor {
    /// Balanced and sticky.
    #[default]
    Uniform,
    /// Contiguous ranges per topic.
    Range,
    /// Partitions dealt out in turn.
    RoundRobin,
}

impl Assignor {
    /// Every assignor, by name.
    pub const ALL: [Assignor; 3] = [Assignor::Uniform, Assignor::Range, Assignor::RoundRobin];

    /// The name clients use.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
            Assignor::RoundRobin => "round-robin",
        }
    }
}

impl fmt::Display for Assignor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Assignor {
    type Err = String;

    fn from_str(s: &str) -> Result<Assignor, String> {
        Assignor::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                format!("unknown assignor {s:?}; the assignors are uniform, range and round-robin")
            })
    }
}

/// What an assignor knows of one member.
#[derive(Debug, Clone, Copy)]
pub struct MemberSpec<'a> {
    pub id: &'a Arc<str>,
    /// Subscribed topics that exist (a subset of the keys of `partitions`).
    pub topics: &'a BTreeSet<Arc<str>>,
    /// The member's current target (for stickiness).
    pub current: &'a Assignment,
}

/// Each member's target: every member of `members` has an entry. `partitions` maps each
/// subscribed topic to its partition count.
pub fn assign(
    assignor: Assignor,
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Arc<str>, u32>,
) -> BTreeMap<Arc<str>, Assignment> {
    let mut members: Vec<MemberSpec<'_>> = members.to_vec();
    members.sort_by(|a, b| a.id.cmp(b.id));
    let sets = match assignor {
        Assignor::Uniform => uniform(&members, partitions),
        Assignor::Range => range(&members, partitions),
        Assignor::RoundRobin => round_robin(&members, partitions),
    };
    members.iter().map(|m| m.id.clone()).zip(sets).collect()
}

/// Whether `m` may have partition `tp` of a topic with `partitions` partitions.
fn eligible(m: &MemberSpec<'_>, tp: &TopicPartition, partitions: &BTreeMap<Arc<str>, u32>) -> bool {
    m.topics.contains(&tp.0) && partitions.get(&tp.0).is_some_and(|count| tp.1 < *count)
}

/// Every partition of every topic some member subscribes to, by (topic, partition).
fn subscribed_partitions(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Arc<str>, u32>,
) -> Vec<TopicPartition> {
    let topics: BTreeSet<&Arc<str>> = members.iter().flat_map(|m| m.topics.iter()).collect();
    topics
        .into_iter()
        .filter_map(|t| partitions.get(t).map(|count| (t, *count)))
        .flat_map(|(t, count)| (0..count).map(move |p| (t.clone(), p)))
        .collect()
}

fn range(members: &[MemberSpec<'_>], partitions: &BTreeMap<Arc<str>, u32>) -> Vec<Assignment> {
    let mut out = vec![Assignment::new(); members.len()];
    for (topic, count) in partitions {
        let subscribers: Vec<usize> = (0..members.len())
            .filter(|i| members[*i].topics.contains(topic))
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let n = subscribers.len() as u32;
        let (base, extra) = (count / n, count % n);
        let mut next = 0;
        for (rank, member) in subscribers.into_iter().enumerate() {
            let take = base + u32::from((rank as u32) < extra);
            out[member].extend((next..next + take).map(|p| (topic.clone(), p)));
            next += take;
        }
    }
    out
}

fn round_robin(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Arc<str>, u32>,
) -> Vec<Assignment> {
    let mut out = vec![Assignment::new(); members.len()];
    let mut cursor = 0;
    for tp in subscribed_partitions(members, partitions) {
        // Some member subscribes to tp's topic, so this finds one within a full turn.
        for step in 0..members.len() {
            let i = (cursor + step) % members.len();
            if members[i].topics.contains(&tp.0) {
                out[i].insert(tp);
                cursor = i + 1;
                break;
            }
        }
    }
    out
}

fn uniform(members: &[MemberSpec<'_>], partitions: &BTreeMap<Arc<str>, u32>) -> Vec<Assignment> {
    if members.is_empty() {
        return Vec::new();
    }
    let homogeneous = members.windows(2).all(|w| w[0].topics == w[1].topics);
    if homogeneous {
        uniform_homogeneous(members, partitions)
    } else {
        uniform_heterogeneous(members, partitions)
    }
}

/// Sticky retention shared by both uniform variants: each member keeps its current
/// partitions that are still valid for it and not already kept by another member.
fn retain_current(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Arc<str>, u32>,
) -> (Vec<Assignment>, BTreeSet<TopicPartition>) {
    let mut taken = BTreeSet::new();
    let out = members
        .iter()
        .map(|m| {
            m.current
                .iter()
                .filter(|tp| eligible(m, tp, partitions) && taken.insert((*tp).clone()))
                .cloned()
                .collect()
        })
        .collect();
    (out, taken)
}

/// Identical subscriptions: quotas `P / N` and, for `P % N` members, one more. The
/// members holding the most keep the larger quotas, so the partitions that move are
/// exactly the excess over quota: the minimum.
fn uniform_homogeneous(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Arc<str>, u32>,
) -> Vec<Assignment> {
    let all = subscribed_partitions(members, partitions);
    let (mut out, _) = retain_current(members, partitions);
    let n = members.len();
    let (base, extra) = (all.len() / n, all.len() % n);
    let mut by_load: Vec<usize> = (0..n).collect();
    by_load.sort_by(|a, b| out[*b].len().cmp(&out[*a].len()).then(a.cmp(b)));
    let mut quota = vec![base; n];
    for i in by_load.into_iter().take(extra) {
        quota[i] += 1;
    }
    for (set, q) in out.iter_mut().zip(&quota) {
        while set.len() > *q {
            set.pop_last();
        }
    }
    let kept: BTreeSet<&TopicPartition> = out.iter().flatten().collect();
    let free: Vec<TopicPartition> = all
        .iter()
        .filter(|tp| !kept.contains(tp))
        .cloned()
        .collect();
    // Deal the free partitions out in turn to the members below quota, which spreads
    // each topic over the members.
    let mut cursor = 0;
    for tp in free {
        loop {
            let i = cursor % n;
            cursor += 1;
            if out[i].len() < quota[i] {
                out[i].insert(tp);
                break;
            }
        }
    }
    out
}

/// Different subscriptions: keep, fill the least loaded, then narrow the gaps.
fn uniform_heterogeneous(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Arc<str>, u32>,
) -> Vec<Assignment> {
    let (mut out, taken) = retain_current(members, partitions);
    let mut subscribers: HashMap<&Arc<str>, Vec<usize>> = HashMap::new();
    for (i, m) in members.iter().enumerate() {
        for t in m.topics.iter().filter(|t| partitions.contains_key(*t)) {
            subscribers.entry(t).or_default().push(i);
        }
    }
    let mut free: Vec<TopicPartition> = subscribed_partitions(members, partitions)
        .into_iter()
        .filter(|tp| !taken.contains(tp))
        .collect();
    // Partitions with the fewest candidates first: they have the least choice.
    free.sort_by_key(|tp| subscribers.get(&tp.0).map_or(0, Vec::len));
    for tp in free {
        let Some(candidates) = subscribers.get(&tp.0) else {
            continue;
        };
        let best = candidates
            .iter()
            .copied()
            .min_by_key(|i| (out[*i].len(), *i))
            .expect("a subscribed topic has a subscriber");
        out[best].insert(tp);
    }
    // Move one partition at a time from a member to an eligible one holding at least two
    // fewer. Each move lowers the sum of squared counts, so this ends.
    loop {
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by_key(|i| (out[*i].len(), *i));
        let mut moved = None;
        'search: for &to in &order {
            for &from in order.iter().rev() {
                if out[from].len() <= out[to].len() + 1 {
                    break;
                }
                if let Some(tp) = out[from]
                    .iter()
                    .rev()
                    .find(|tp| eligible(&members[to], tp, partitions))
                {
                    moved = Some((from, to, tp.clone()));
                    break 'search;
                }
            }
        }
        let Some((from, to, tp)) = moved else {
            break;
        };
        out[from].remove(&tp);
        out[to].insert(tp);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        ids: Vec<Arc<str>>,
        topics: Vec<BTreeSet<Arc<str>>>,
        current: Vec<Assignment>,
        partitions: BTreeMap<Arc<str>, u32>,
    }

    impl Fixture {
        fn new(partitions: &[(&str, u32)]) -> Fixture {
            Fixture {
                ids: Vec::new(),
                topics: Vec::new(),
                current: Vec::new(),
                partitions: partitions
                    .iter()
                    .map(|(t, n)| (Arc::from(*t), *n))
                    .collect(),
            }
        }

        fn member(&mut self, id: &str, topics: &[&str]) {
            self.ids.push(Arc::from(id));
            self.topics
                .push(topics.iter().map(|t| Arc::from(*t)).collect());
            self.current.push(Assignment::new());
        }

        fn remove(&mut self, id: &str) {
            let i = self.ids.iter().position(|m| &**m == id).unwrap();
            self.ids.remove(i);
            self.topics.remove(i);
            self.current.remove(i);
        }

        /// Runs the assignor, stores the result as the current targets, and returns how
        /// many partitions changed member.
        fn run(&mut self, assignor: Assignor) -> usize {
            let before: HashMap<TopicPartition, Arc<str>> = self
                .ids
                .iter()
                .zip(&self.current)
                .flat_map(|(id, set)| set.iter().map(move |tp| (tp.clone(), id.clone())))
                .collect();
            let specs: Vec<MemberSpec<'_>> = (0..self.ids.len())
                .map(|i| MemberSpec {
                    id: &self.ids[i],
                    topics: &self.topics[i],
                    current: &self.current[i],
                })
                .collect();
            let result = assign(assignor, &specs, &self.partitions);
            let mut seen = BTreeSet::new();
            for (i, id) in self.ids.iter().enumerate() {
                for tp in &result[id] {
                    assert!(
                        self.topics[i].contains(&tp.0),
                        "{id} not subscribed to {tp:?}"
                    );
                    assert!(seen.insert(tp.clone()), "{tp:?} assigned twice");
                }
            }
            // Every partition with a subscriber is assigned.
            for (t, n) in &self.partitions {
                if self.topics.iter().any(|s| s.contains(t)) {
                    for p in 0..*n {
                        assert!(seen.contains(&(t.clone(), p)), "{t}-{p} unassigned");
                    }
                }
            }
            let mut moved = 0;
            for (i, id) in self.ids.iter().enumerate() {
                self.current[i] = result[id].clone();
                moved += self.current[i]
                    .iter()
                    .filter(|tp| before.get(*tp).is_some_and(|owner| owner != id))
                    .count();
            }
            moved
        }

        fn counts(&self) -> Vec<usize> {
            self.current.iter().map(BTreeSet::len).collect()
        }
    }

    #[test]
    fn uniform_is_balanced_and_moves_the_minimum() {
        let mut f = Fixture::new(&[("a", 7), ("b", 5)]);
        f.member("m1", &["a", "b"]);
        assert_eq!(f.run(Assignor::Uniform), 0);
        assert_eq!(f.counts(), vec![12]);
        f.member("m2", &["a", "b"]);
        assert_eq!(f.run(Assignor::Uniform), 6, "half moves to the newcomer");
        assert_eq!(f.counts(), vec![6, 6]);
        f.member("m3", &["a", "b"]);
        assert_eq!(f.run(Assignor::Uniform), 4);
        assert_eq!(f.counts(), vec![4, 4, 4]);
        f.member("m4", &["a", "b"]);
        f.member("m5", &["a", "b"]);
        // 12 over 5: quotas 3,3,2,2,2; the three holders of 4 give 1, 1 and 2.
        assert_eq!(f.run(Assignor::Uniform), 4);
        let mut counts = f.counts();
        counts.sort();
        assert_eq!(counts, vec![2, 2, 2, 3, 3]);
        // Removing a member moves only its partitions.
        let gone = f.current[1].len();
        f.remove("m2");
        assert_eq!(
            f.run(Assignor::Uniform),
            0,
            "nothing moved between survivors"
        );
        assert_eq!(f.counts().iter().sum::<usize>(), 12);
        assert!(
            f.counts().iter().all(|c| *c == 3),
            "{:?} ({gone})",
            f.counts()
        );
        // Rerunning with no change moves nothing.
        assert_eq!(f.run(Assignor::Uniform), 0);
    }

    #[test]
    fn uniform_handles_different_subscriptions() {
        let mut f = Fixture::new(&[("a", 4), ("b", 4), ("c", 2)]);
        f.member("m1", &["a", "b", "c"]);
        f.member("m2", &["a"]);
        f.member("m3", &["b", "c"]);
        f.run(Assignor::Uniform);
        let counts = f.counts();
        assert!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
            "{counts:?}"
        );
        // m2 only gets partitions of a.
        assert!(f.current[1].iter().all(|tp| &*tp.0 == "a"));
        // Unsubscribed topics go nowhere; a topic only m2 wants is all m2's.
        let mut f = Fixture::new(&[("a", 3), ("z", 2)]);
        f.member("m1", &["a"]);
        f.member("m2", &["z"]);
        f.run(Assignor::Uniform);
        assert_eq!(f.counts(), vec![3, 2]);
    }

    #[test]
    fn range_gives_contiguous_ranges_per_topic() {
        let mut f = Fixture::new(&[("a", 5), ("b", 2)]);
        f.member("m2", &["a", "b"]);
        f.member("m1", &["a"]);
        f.run(Assignor::Range);
        let a = |i: usize| -> Vec<u32> {
            f.current[i]
                .iter()
                .filter(|tp| &*tp.0 == "a")
                .map(|tp| tp.1)
                .collect()
        };
        // Sorted by id: m1 first gets 0..3, m2 3..5 and all of b.
        assert_eq!(a(1), vec![0, 1, 2]);
        assert_eq!(a(0), vec![3, 4]);
        assert_eq!(f.current[0].iter().filter(|tp| &*tp.0 == "b").count(), 2);
    }

    #[test]
    fn round_robin_deals_in_turn_skipping_unsubscribed() {
        let mut f = Fixture::new(&[("a", 3), ("b", 3)]);
        f.member("m1", &["a", "b"]);
        f.member("m2", &["a"]);
        f.run(Assignor::RoundRobin);
        let list = |i: usize| -> Vec<(String, u32)> {
            f.current[i]
                .iter()
                .map(|(t, p)| (t.to_string(), *p))
                .collect()
        };
        assert_eq!(
            list(0),
            vec![
                ("a".into(), 0),
                ("a".into(), 2),
                ("b".into(), 0),
                ("b".into(), 1),
                ("b".into(), 2)
            ]
        );
        assert_eq!(list(1), vec![("a".into(), 1)]);
    }

    #[test]
    fn assignor_names_parse() {
        for a in Assignor::ALL {
            assert_eq!(a.name().parse::<Assignor>().unwrap(), a);
        }
        assert!(
            "sticky"
                .parse::<Assignor>()
                .unwrap_err()
                .contains("uniform")
        );
    }
}
