//! The fault schedule: crashes (with torn tails), pauses, link cuts, network
//! partitions (one-way or two-way, between any two groups of nodes), controller
//! failover; and healing all of it.

use std::collections::BTreeMap;

use super::net::{Addr, CONTROLLER, Faults};
use super::rng::Rng;
use super::world::*;

impl World {
    pub(crate) fn inject_fault(&mut self) {
        let brokers: Vec<Addr> = (1..=self.cfg.brokers).collect();
        self.faults += 1;
        match self.rng.range(0, 11) {
            0 | 1 => {
                let id = self.rng.pick(&brokers);
                if !self.nodes[&id].up {
                    return;
                }
                let torn = self.rng.chance(0.5);
                let seed = self.rng.next_u64();
                let mut local = Rng::new(seed);
                let partitions = self.cfg.partitions;
                self.nodes
                    .get_mut(&id)
                    .expect("node")
                    .crash(
                        partitions,
                        |unsynced| {
                            if torn { local.range(0, unsynced) } else { 0 }
                        },
                    );
                self.log(format!("node {id} crashes (torn tail: {torn})"));
                let down = self.rng.range(100, 4_000);
                self.schedule(down, Ev::Restart(id));
            }
            2 | 3 => {
                let id = self.rng.pick(&brokers);
                if !self.nodes[&id].up || self.nodes[&id].paused {
                    return;
                }
                self.nodes.get_mut(&id).expect("node").paused = true;
                self.log(format!("node {id} pauses"));
                let pause = self.rng.range(100, 4_000);
                self.schedule(pause, Ev::Resume(id));
            }
            4..=6 => {
                let mut ends: Vec<Addr> = brokers.clone();
                ends.push(CONTROLLER);
                let a = self.rng.pick(&ends);
                let b = self.rng.pick(&ends);
                if a == b {
                    return;
                }
                self.net.cut_one_way(a, b);
                self.net.cut_one_way(b, a);
                self.log(format!("link {a}-{b} cut"));
                let cut = self.rng.range(200, 5_000);
                self.schedule(
                    cut,
                    Ev::Heal {
                        links: vec![(a, b), (b, a)],
                        what: format!("link {a}-{b}"),
                    },
                );
            }
            8 | 9 => {
                // The brokers and the controller split into two non-empty groups: every
                // link between them is cut, both ways or only from one group to the
                // other (a one-way loss: requests get through, answers do not, or the
                // reverse).
                let mut ends: Vec<Addr> = vec![CONTROLLER];
                ends.extend(&brokers);
                let mask = self.rng.range(1, (1 << ends.len()) - 2);
                let in_a = |i: usize| mask & (1 << i) != 0;
                let side_a: Vec<Addr> = (0..ends.len())
                    .filter(|&i| in_a(i))
                    .map(|i| ends[i])
                    .collect();
                let side_b: Vec<Addr> = (0..ends.len())
                    .filter(|&i| !in_a(i))
                    .map(|i| ends[i])
                    .collect();
                let two_way = self.rng.chance(0.5);
                let mut links = Vec::new();
                for &a in &side_a {
                    for &b in &side_b {
                        links.push((a, b));
                        if two_way {
                            links.push((b, a));
                        }
                    }
                }
                for &(from, to) in &links {
                    self.net.cut_one_way(from, to);
                }
                let what = if two_way {
                    format!("partition {side_a:?} | {side_b:?}")
                } else {
                    format!("one-way partition {side_a:?} -/-> {side_b:?}")
                };
                self.log(format!("{what} cut"));
                let cut = self.rng.range(200, 6_000);
                self.schedule(cut, Ev::Heal { links, what });
            }
            7 => {
                // What the new controller's voter last heard of each broker over the
                // quorum: anything from never to now, so live brokers are sometimes
                // fenced early, which must cost availability only.
                let mut heard = BTreeMap::new();
                for &b in &brokers {
                    if self.rng.chance(0.5) {
                        heard.insert(b, self.now.saturating_sub(self.rng.range(0, 4_000)));
                    }
                }
                self.controller.activate(&self.image, self.now, &heard);
                self.activated_at = self.now;
                self.log(format!("controller fails over, last heard {heard:?}"));
            }
            _ => {}
        }
    }

    pub(crate) fn heal(&mut self) {
        self.faults_on = false;
        self.net.heal_all();
        self.net.faults = Faults::default();
        for node in self.nodes.values_mut() {
            node.paused = false;
            if !node.up {
                node.restart(self.now);
            }
        }
        self.log("all healed".to_string());
    }
}
