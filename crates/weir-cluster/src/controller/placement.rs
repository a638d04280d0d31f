//! Where new partitions' replicas go (`docs/replication.md` § Placement): brokers ordered
//! rack by rack, interleaved, and each partition takes `replication_factor` consecutive
//! brokers of that order, starting one further along than the partition before. The
//! first replica is the preferred leader, so leaders and replicas spread evenly.

use std::collections::BTreeMap;

use crate::partition::BrokerId;

/// The placement order of `brokers` (id and rack): one broker of each rack in turn
/// (`r1:a, r2:a, r3:a, r1:b, ...`), racks by name and brokers by id within a rack, so
/// consecutive entries sit in different racks while racks are balanced. Brokers without
/// a rack form one rack of their own.
pub fn broker_order<'a>(
    brokers: impl IntoIterator<Item = (BrokerId, Option<&'a str>)>,
) -> Vec<BrokerId> {
    let mut racks: BTreeMap<Option<&str>, Vec<BrokerId>> = BTreeMap::new();
    for (node, rack) in brokers {
        racks.entry(rack).or_default().push(node);
    }
    for nodes in racks.values_mut() {
        nodes.sort_unstable();
    }
    let deepest = racks.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|i| {
            racks
                .values()
                .filter_map(move |nodes| nodes.get(i).copied())
        })
        .collect()
}

/// The replicas of partition `partition`: `order[(start + partition + j) mod b]` for
/// `j in 0..replication_factor`. The caller has checked that `replication_factor` is
/// between 1 and `order.len()`.
pub fn replicas(
    order: &[BrokerId],
    start: usize,
    partition: u32,
    replication_factor: usize,
) -> Vec<BrokerId> {
    assert!(
        (1..=order.len()).contains(&replication_factor),
        "replication factor {replication_factor} over {} brokers",
        order.len()
    );
    let b = order.len();
    let first = (start % b + partition as usize % b) % b;
    (0..replication_factor)
        .map(|j| order[(first + j) % b])
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn racks_interleave_and_brokers_without_one_form_a_rack() {
        let order = broker_order([
            (5, Some("r2")),
            (1, Some("r1")),
            (4, Some("r2")),
            (2, Some("r1")),
            (3, Some("r1")),
            (6, None),
        ]);
        assert_eq!(order, vec![6, 1, 4, 2, 5, 3]);
        assert_eq!(
            broker_order([(3, None), (1, None), (2, None)]),
            vec![1, 2, 3]
        );
        assert!(broker_order([]).is_empty());
    }

    #[test]
    fn three_brokers_three_hundred_partitions_spread_evenly() {
        let order = broker_order([(0, None), (1, None), (2, None)]);
        for start in 0..3 {
            let mut leads = BTreeMap::<BrokerId, usize>::new();
            let mut holds = BTreeMap::<BrokerId, usize>::new();
            for p in 0..300 {
                let replicas = replicas(&order, start, p, 3);
                assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3);
                *leads.entry(replicas[0]).or_default() += 1;
                for r in replicas {
                    *holds.entry(r).or_default() += 1;
                }
            }
            assert_eq!(leads, [(0, 100), (1, 100), (2, 100)].into());
            assert_eq!(holds, [(0, 300), (1, 300), (2, 300)].into());
        }
    }

    #[test]
    fn uneven_counts_stay_within_one_leadership_and_the_replication_factor() {
        // 10 partitions over 4 brokers: leaderships differ by at most one; a broker
        // holds the leaderships of itself and the rf-1 brokers before it, so holdings
        // differ by at most the replication factor (exactly equal when b divides P).
        let order = broker_order((0..4).map(|b| (b, None)));
        for rf in 1..=4 {
            let mut leads = BTreeMap::<BrokerId, usize>::new();
            let mut holds = BTreeMap::<BrokerId, usize>::new();
            for p in 0..10 {
                let replicas = replicas(&order, 3, p, rf);
                *leads.entry(replicas[0]).or_default() += 1;
                for r in replicas {
                    *holds.entry(r).or_default() += 1;
                }
            }
            let spread = |m: &BTreeMap<BrokerId, usize>| {
                m.values().max().unwrap() - m.values().min().unwrap()
            };
            assert_eq!((leads.len(), holds.values().sum::<usize>()), (4, 10 * rf));
            assert!(spread(&leads) <= 1, "{leads:?}");
            assert!(spread(&holds) <= rf, "rf {rf}: {holds:?}");
        }
    }

    #[test]
    fn with_two_racks_every_partition_spans_both() {
        let racks: BTreeMap<BrokerId, &str> =
            [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "a"), (6, "b")].into();
        let order = broker_order(racks.iter().map(|(b, r)| (*b, Some(*r))));
        for start in 0..6 {
            for p in 0..60 {
                let replicas = replicas(&order, start, p, 2);
                let spanned: BTreeSet<_> = replicas.iter().map(|b| racks[b]).collect();
                assert_eq!(
                    spanned.len(),
                    2,
                    "partition {p} start {start}: {replicas:?}"
                );
            }
        }
    }

    #[test]
    fn the_start_rotates_the_preferred_leader() {
        let order = [10, 20, 30];
        assert_eq!(replicas(&order, 0, 0, 2), vec![10, 20]);
        assert_eq!(replicas(&order, 1, 0, 2), vec![20, 30]);
        assert_eq!(replicas(&order, 1, 1, 2), vec![30, 10]);
        assert_eq!(replicas(&order, 4, 0, 3), vec![20, 30, 10]);
    }
}
