//! Reassignment plans for `weir cluster decommission` and `weir cluster rebalance`: pure
//! functions from the cluster's partitions and brokers to the moves that get them where
//! they should be (`docs/replication.md` § Reassignment). Submitting and waiting is
//! `partition.rs`.

use std::collections::BTreeMap;

/// One partition as a plan sees it: where its replicas are (or are going).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub topic: String,
    pub partition: u32,
    /// The replicas it has, or will have once a move in progress completes; the preferred
    /// leader first.
    pub replicas: Vec<i32>,
}

/// One move of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: u32,
    pub from: Vec<i32>,
    pub to: Vec<i32>,
}

/// Replicas held per broker: every broker in `brokers` (those that can take replicas),
/// plus any other broker a partition names.
fn loads(partitions: &[Placed], brokers: &[i32]) -> BTreeMap<i32, usize> {
    let mut load: BTreeMap<i32, usize> = brokers.iter().map(|b| (*b, 0)).collect();
    for p in partitions {
        for r in &p.replicas {
            *load.entry(*r).or_default() += 1;
        }
    }
    load
}

/// The least-loaded broker of `brokers` that `replicas` does not hold (lowest id on a
/// tie).
fn least_loaded(load: &BTreeMap<i32, usize>, brokers: &[i32], replicas: &[i32]) -> Option<i32> {
    brokers
        .iter()
        .copied()
        .filter(|b| !replicas.contains(b))
        .min_by_key(|b| (load.get(b).copied().unwrap_or(0), *b))
}

/// Moves every replica on `leaving` to the least-loaded broker of `brokers` (which must
/// not include it) that does not hold the partition yet, in `leaving`'s place in the
/// list, so the leaderships it was preferred for go to its replacements. Fails, naming
/// the partition, if some partition has a copy on every other broker already.
pub fn decommission(
    partitions: &[Placed],
    brokers: &[i32],
    leaving: i32,
) -> Result<Vec<Move>, String> {
    let brokers: Vec<i32> = brokers.iter().copied().filter(|b| *b != leaving).collect();
    let mut load = loads(partitions, &brokers);
    let mut moves = Vec::new();
    for p in partitions.iter().filter(|p| p.replicas.contains(&leaving)) {
        let Some(to) = least_loaded(&load, &brokers, &p.replicas) else {
            return Err(format!(
                "partition {} of topic {} cannot leave broker {leaving}: every other broker \
                 ({brokers:?}) holds a copy already; add a broker or lower its replication",
                p.partition, p.topic
            ));
        };
        *load.entry(to).or_default() += 1;
        if let Some(l) = load.get_mut(&leaving) {
            *l -= 1;
        }
        let target = p
            .replicas
            .iter()
            .map(|b| if *b == leaving { to } else { *b })
            .collect();
        moves.push(Move {
            topic: p.topic.clone(),
            partition: p.partition,
            from: p.replicas.clone(),
            to: target,
        });
    }
    Ok(moves)
}

/// Moves replicas from the most to the least loaded of `brokers` until no two differ by
/// more than one replica, one replica per move, keeping each moved replica's place in
/// its list (so the preferred leaderships spread with the replicas). Replicas on
/// brokers not in `brokers` (fenced, gone) move first. Partitions are taken in the order
/// given, so the same cluster gets the same plan.
pub fn rebalance(partitions: &[Placed], brokers: &[i32]) -> Vec<Move> {
    let mut current: Vec<Vec<i32>> = partitions.iter().map(|p| p.replicas.clone()).collect();
    let mut load = loads(partitions, brokers);
    // Each step moves one replica and lowers the spread or the replicas held outside
    // `brokers`; this bounds the loop even for inputs that cannot balance.
    let bound = partitions.iter().map(|p| p.replicas.len()).sum::<usize>() + 1;
    for _ in 0..bound {
        let outside = load
            .iter()
            .filter(|(b, n)| !brokers.contains(b) && **n > 0)
            .map(|(b, _)| *b)
            .next();
        let from = match outside {
            Some(b) => b,
            None => {
                let Some((&max_b, &max)) = brokers
                    .iter()
                    .map(|b| (b, &load[b]))
                    .max_by_key(|(b, n)| (**n, std::cmp::Reverse(**b)))
                else {
                    break;
                };
                let min = brokers.iter().map(|b| load[b]).min().unwrap_or(0);
                if max <= min + 1 {
                    break;
                }
                max_b
            }
        };
        let step = current.iter().enumerate().find_map(|(i, replicas)| {
            let at = replicas.iter().position(|b| *b == from)?;
            let to = least_loaded(&load, brokers, replicas)?;
            let gains = outside.is_some() || load[&to] + 1 < load[&from];
            gains.then_some((i, at, to))
        });
        let Some((i, at, to)) = step else { break };
        current[i][at] = to;
        *load.get_mut(&from).expect("loaded") -= 1;
        *load.entry(to).or_default() += 1;
    }
    partitions
        .iter()
        .zip(current)
        .filter(|(p, to)| p.replicas != *to)
        .map(|(p, to)| Move {
            topic: p.topic.clone(),
            partition: p.partition,
            from: p.replicas.clone(),
            to,
        })
        .collect()
}

/// [`rebalance`] topic by topic, so each topic's replicas (and preferred leaders) spread
/// over every broker, not just the cluster's total.
pub fn rebalance_topics(partitions: &[Placed], brokers: &[i32]) -> Vec<Move> {
    let mut topics: BTreeMap<&str, Vec<Placed>> = BTreeMap::new();
    for p in partitions {
        topics.entry(&p.topic).or_default().push(p.clone());
    }
    topics
        .values()
        .flat_map(|parts| rebalance(parts, brokers))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(partition: u32, replicas: &[i32]) -> Placed {
        Placed {
            topic: "t".into(),
            partition,
            replicas: replicas.to_vec(),
        }
    }

    fn load_after(partitions: &[Placed], moves: &[Move]) -> BTreeMap<i32, usize> {
        let mut after: Vec<Placed> = partitions.to_vec();
        for m in moves {
            let p = after
                .iter_mut()
                .find(|p| p.partition == m.partition)
                .unwrap();
            assert_eq!(p.replicas, m.from);
            p.replicas = m.to.clone();
        }
        loads(&after, &[])
    }

    #[test]
    fn decommission_moves_every_replica_off_the_broker_in_its_place() {
        let parts: Vec<Placed> = (0..6)
            .map(|p| placed(p, &[[1, 2, 3][p as usize % 3], [2, 3, 1][p as usize % 3]]))
            .collect();
        let moves = decommission(&parts, &[1, 2, 3, 4], 3).unwrap();
        assert_eq!(moves.len(), 4, "{moves:?}");
        for m in &moves {
            assert!(!m.to.contains(&3));
            let at = m.from.iter().position(|b| *b == 3).unwrap();
            for (j, (from, to)) in m.from.iter().zip(&m.to).enumerate() {
                assert_eq!(from == to, j != at, "only broker 3's place changes: {m:?}");
            }
        }
        let load = load_after(&parts, &moves);
        assert_eq!(load.get(&3), None);
        // 12 replicas over 1, 2 and 4: the new broker takes most of them.
        assert_eq!(load.values().sum::<usize>(), 12);
        assert!(load[&4] >= 3, "{load:?}");
    }

    #[test]
    fn decommission_fails_when_no_broker_can_take_a_replica() {
        let parts = vec![placed(0, &[1, 2, 3])];
        let err = decommission(&parts, &[1, 2, 3], 2).unwrap_err();
        assert!(err.contains("partition 0 of topic t"), "{err}");
    }

    #[test]
    fn rebalance_spreads_replicas_onto_a_new_broker_within_one() {
        let parts: Vec<Placed> = (0..12)
            .map(|p| {
                let r = [1, 2, 3];
                let s = p as usize;
                placed(p, &[r[s % 3], r[(s + 1) % 3], r[(s + 2) % 3]])
            })
            .collect();
        let moves = rebalance(&parts, &[1, 2, 3, 4]);
        let load = load_after(&parts, &moves);
        assert_eq!(load.values().sum::<usize>(), 36);
        assert_eq!(
            load.values().max().unwrap() - load.values().min().unwrap(),
            0
        );
        assert_eq!(load[&4], 9, "{load:?}");
        for m in &moves {
            let mut to = m.to.clone();
            to.sort();
            to.dedup();
            assert_eq!(to.len(), 3, "distinct replicas: {m:?}");
        }
        // Balanced already: nothing to do.
        let mut after = parts.clone();
        for m in &moves {
            after[m.partition as usize].replicas = m.to.clone();
        }
        assert_eq!(rebalance(&after, &[1, 2, 3, 4]), vec![]);
    }

    #[test]
    fn rebalance_topics_spreads_each_topic() {
        let mut parts = vec![placed(0, &[1, 2]), placed(1, &[2, 1])];
        parts.extend((0..2).map(|p| Placed {
            topic: "u".into(),
            partition: p,
            replicas: vec![3, 4],
        }));
        // Balanced over the cluster (two each), not per topic.
        assert_eq!(rebalance(&parts, &[1, 2, 3, 4]), vec![]);
        let moves = rebalance_topics(&parts, &[1, 2, 3, 4]);
        for topic in ["t", "u"] {
            let mine: Vec<Placed> = parts.iter().filter(|p| p.topic == topic).cloned().collect();
            let theirs: Vec<Move> = moves.iter().filter(|m| m.topic == topic).cloned().collect();
            let load = load_after(&mine, &theirs);
            assert_eq!(load.len(), 4, "{topic}: {load:?}");
        }
    }

    #[test]
    fn rebalance_moves_replicas_off_brokers_that_cannot_hold_them() {
        let parts = vec![placed(0, &[1, 9]), placed(1, &[9, 2])];
        let moves = rebalance(&parts, &[1, 2, 3]);
        let load = load_after(&parts, &moves);
        assert_eq!(load.get(&9), None, "{moves:?}");
        assert_eq!(load.values().sum::<usize>(), 4);
    }
}
