//! A simulated broker's behaviour: messages in, its replicas' state machines
//! driven, their commands carried out against its real logs.

use std::collections::VecDeque;

use bytes::Bytes;
use weir_cluster::controller::records::{MetadataRecord, NO_LEADER};
use weir_cluster::replication::{
    Command, Event, FetchAnswer, FetchError, Replica, ReplicaConfig, Role,
};
use weir_log::{Compression, Record, RecordBatchBuilder, decode_records};

use super::checker::Verdict;
use super::net::{Addr, CONTROLLER, Envelope, Msg};
use super::node::{Parked, Waiter};
use super::world::*;

impl World {
    pub(crate) fn deliver(&mut self, env: Envelope) -> Verdict {
        if env.to == CONTROLLER {
            self.controller_receive(env.from, env.msg);
            return Ok(());
        }
        if env.to >= 100 {
            return self.client_receive(env.to, env.from, env.msg);
        }
        let node = &self.nodes[&env.to];
        if !node.up || env.to_incarnation.is_some_and(|i| i != node.incarnation) {
            return Ok(()); // the process it was for is gone
        }
        if node.paused {
            // Sits in the socket buffer until the process runs again.
            self.schedule(NODE_TICK_MS, Ev::Deliver(env));
            return Ok(());
        }
        self.check_lease(env.to)?;
        self.node_receive(env.to, env.from, env.msg)
    }

    pub(crate) fn node_tick(&mut self, id: Addr) -> Verdict {
        let node = &self.nodes[&id];
        if !node.up || node.paused {
            return Ok(());
        }
        let inc = node.incarnation;
        self.check_lease(id)?;
        let node = &self.nodes[&id];
        if self.now.saturating_sub(node.last_heartbeat_ms) >= HEARTBEAT_MS {
            self.nodes.get_mut(&id).expect("node").last_heartbeat_ms = self.now;
            let node = &self.nodes[&id];
            let sent_ms = self.now;
            let msg = match node.broker_epoch {
                None => Msg::Register {
                    incarnation: inc,
                    sent_ms,
                },
                Some(broker_epoch) => Msg::Heartbeat {
                    incarnation: inc,
                    broker_epoch,
                    // The offset of the last record applied (-1: none).
                    metadata_offset: node.image.next_offset() - 1,
                    sent_ms,
                },
            };
            self.send(id, CONTROLLER, None, msg);
        }
        // Long polls that ran out of time are answered empty.
        let now = self.now;
        let mut expired = Vec::new();
        for (p, parked) in &mut self.nodes.get_mut(&id).expect("node").parked {
            parked.retain(|x| {
                if x.until_ms <= now {
                    expired.push((*p, x.clone()));
                    false
                } else {
                    true
                }
            });
        }
        for (p, parked) in expired {
            self.send_fetch_data(id, p, parked.to, parked.answer, false);
        }
        let partitions: Vec<u32> = self.nodes[&id].replicas.keys().copied().collect();
        for p in partitions {
            self.replica_event(id, p, Event::Tick)?;
        }
        Ok(())
    }

    pub(crate) fn node_receive(&mut self, id: Addr, from: Addr, msg: Msg) -> Verdict {
        match msg {
            Msg::Registered {
                broker_epoch,
                sent_ms,
            } => {
                let node = self.nodes.get_mut(&id).expect("node");
                if node.broker_epoch.is_none() {
                    node.broker_epoch = Some(broker_epoch);
                    node.last_heartbeat_ms = 0; // heartbeat at the next tick
                    self.log(format!("node {id} registered, broker epoch {broker_epoch}"));
                    self.renew_lease(id, sent_ms)?;
                }
                Ok(())
            }
            Msg::HeartbeatReply {
                from_offset,
                records,
                accepted,
            } => {
                // The real broker learns of both on separate paths (the heartbeat's
                // answer, the metadata log), in either order.
                let renew_first = self.rng.chance(0.5);
                match accepted {
                    Ok(sent_ms) if renew_first => {
                        self.renew_lease(id, sent_ms)?;
                        self.apply_metadata(id, from_offset, records)
                    }
                    Ok(sent_ms) => {
                        self.apply_metadata(id, from_offset, records)?;
                        self.renew_lease(id, sent_ms)
                    }
                    Err(stale_epoch) => {
                        // Refused: no renewal; a stale registration registers again.
                        let node = self.nodes.get_mut(&id).expect("node");
                        if node.broker_epoch == Some(stale_epoch) {
                            node.broker_epoch = None;
                            self.log(format!(
                                "node {id}: broker epoch {stale_epoch} is stale, registers again"
                            ));
                        }
                        self.apply_metadata(id, from_offset, records)
                    }
                }
            }
            Msg::Fetch { partition, request } => {
                if self.nodes[&id].replicas.contains_key(&partition) {
                    self.replica_event(id, partition, Event::Fetch(request))
                } else {
                    let answer = FetchAnswer::Error {
                        fetch_id: request.fetch_id,
                        error: FetchError::NotLeader,
                    };
                    self.send(
                        id,
                        from,
                        None,
                        Msg::FetchAnswer {
                            partition,
                            answer,
                            batches: Bytes::new(),
                        },
                    );
                    Ok(())
                }
            }
            Msg::FetchAnswer {
                partition,
                answer,
                batches,
            } => self.replica_event(id, partition, Event::FetchAnswered { answer, batches }),
            Msg::AlterIsrAnswer { partition, answer } => {
                self.replica_event(id, partition, Event::AlterIsrAnswered(answer))
            }
            Msg::Produce {
                partition,
                request_id,
                value,
            } => self.produce(id, from, partition, request_id, value),
            Msg::Read {
                partition,
                offset,
                request_id,
            } => {
                self.read(id, from, partition, offset, request_id);
                Ok(())
            }
            other => panic!("node {id} got {other:?}"),
        }
    }

    pub(crate) fn apply_metadata(
        &mut self,
        id: Addr,
        from_offset: i64,
        records: Vec<MetadataRecord>,
    ) -> Verdict {
        let node = self.nodes.get_mut(&id).expect("node");
        if from_offset != node.image.next_offset() || records.is_empty() {
            return Ok(()); // a late or duplicated answer
        }
        for record in &records {
            node.image.apply(record).map_err(|e| {
                format!("node {id}: metadata record {record:?} does not apply: {e}")
            })?;
        }
        let Some(topic_id) = self.topic_id.clone() else {
            return Ok(());
        };
        let Some(broker_epoch) = node.broker_epoch else {
            return Ok(());
        };
        for p in 0..self.cfg.partitions {
            let node = self.nodes.get_mut(&id).expect("node");
            let Some(reg) = node.image.partition(&topic_id, p).cloned() else {
                continue;
            };
            if !reg.replicas.contains(&id) {
                continue;
            }
            if !node.replicas.contains_key(&p) {
                let mut config = ReplicaConfig::new(id, broker_epoch);
                config.min_insync_replicas = 2;
                // The follower's two ways (the simulation's answers are small): sync
                // before the next fetch, sync while it is out, or by answer size.
                config.pipeline_min_bytes = match self.seed % 3 {
                    0 => usize::MAX,
                    1 => 0,
                    _ => 200,
                };
                let hw = node.logs[&p].high_watermark_checkpoint().unwrap_or(0);
                node.replicas.insert(p, Replica::new(config, hw));
            }
            self.replica_event(id, p, Event::Registration(reg))?;
            // A replica opened while the session has lapsed steps aside too.
            if self.nodes[&id].lease_lapsed {
                self.replica_event(id, p, Event::LeaseLapsed)?;
            }
        }
        Ok(())
    }

    /// The broker's lease timer (`watch_lease`): once more than the session timeout has
    /// passed since the last answered heartbeat was sent, every replica steps aside
    /// (`LeaseLapsed`), unless the broker is alone in its image. Called before anything
    /// else the broker does (a timer due at or before an event fires first; a resumed
    /// process's first), so no action slips in after the deadline.
    pub(crate) fn check_lease(&mut self, id: Addr) -> Verdict {
        let lease_ms = self.lease_ms();
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("node");
        if node.lease_lapsed || node.lease_waived || !node.lease_expired(now, lease_ms) {
            return Ok(());
        }
        // Alone in the cluster, nobody could take over: stepping aside helps no client.
        if !node.image.brokers().any(|b| b.node != id) {
            node.lease_waived = true;
            return Ok(());
        }
        node.lease_lapsed = true;
        self.lapses += 1;
        let from = node.lease_from;
        let partitions: Vec<u32> = node.replicas.keys().copied().collect();
        self.log(format!(
            "node {id} lease lapsed (last answered heartbeat sent at {from}): its leaders step aside"
        ));
        for p in partitions {
            self.replica_event(id, p, Event::LeaseLapsed)?;
        }
        Ok(())
    }

    /// The controller answered a heartbeat or registration sent at `sent_ms`: the lease
    /// counts from there, and the replicas lead again if it holds.
    pub(crate) fn renew_lease(&mut self, id: Addr, sent_ms: u64) -> Verdict {
        let lease_ms = self.lease_ms();
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("node");
        node.lease_from = node.lease_from.max(sent_ms);
        node.lease_waived = false;
        // An answer to a heartbeat sent more than a lease ago renews nothing: the timer
        // fires again at once (`watch_lease` computes the deadline from the renewal).
        if !node.lease_lapsed || node.lease_expired(now, lease_ms) {
            return Ok(());
        }
        node.lease_lapsed = false;
        let partitions: Vec<u32> = node.replicas.keys().copied().collect();
        self.log(format!(
            "node {id} lease renewed (heartbeat sent at {sent_ms} answered)"
        ));
        for p in partitions {
            self.replica_event(id, p, Event::LeaseRenewed)?;
        }
        Ok(())
    }

    /// The epoch a replica leads at, stepped aside or not.
    pub(crate) fn held_leadership(&self, id: Addr, partition: u32) -> Option<i32> {
        let node = &self.nodes[&id];
        match node.replicas.get(&partition)?.role() {
            Role::Leader { leader_epoch } => Some(leader_epoch),
            Role::Follower {
                leader: NO_LEADER,
                leader_epoch,
            } if node.lease_lapsed => Some(leader_epoch),
            _ => None,
        }
    }

    /// Check (b): a broker neither appends nor answers as a leader once its lease ran
    /// out.
    pub(crate) fn check_lease_held(&self, id: Addr, partition: u32, what: &str) -> Verdict {
        let node = &self.nodes[&id];
        let lease_ms = self.lease_ms();
        if node.lease_expired(self.now, lease_ms) {
            return Err(format!(
                "node {id} p{partition} {what} with its lease lapsed: the last heartbeat the controller answered was sent at {} ms, {} ms ago (lease {lease_ms} ms; stepped aside: {})",
                node.lease_from,
                self.now - node.lease_from,
                node.lease_lapsed
            ));
        }
        Ok(())
    }

    /// Feeds one event to a replica and carries out what it asks, and what follows.
    pub(crate) fn replica_event(&mut self, id: Addr, partition: u32, event: Event) -> Verdict {
        let mut events = VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            let node = self.nodes.get_mut(&id).expect("node");
            let Some(replica) = node.replicas.get_mut(&partition) else {
                return Ok(());
            };
            let log = &node.logs[&partition];
            let commands = replica.handle(event, self.now, log);
            for command in commands {
                self.execute(id, partition, command, &mut events)?;
            }
        }
        Ok(())
    }

    pub(crate) fn leader_epoch(&self, id: Addr, partition: u32) -> Option<i32> {
        match self.nodes[&id].replicas.get(&partition)?.role() {
            Role::Leader { leader_epoch } => Some(leader_epoch),
            _ => None,
        }
    }

    pub(crate) fn execute(
        &mut self,
        id: Addr,
        partition: u32,
        command: Command,
        events: &mut VecDeque<Event>,
    ) -> Verdict {
        let inc = self.incarnation(id);
        match command {
            Command::SendFetch { leader, request } => {
                self.send(id, leader, None, Msg::Fetch { partition, request });
            }
            Command::AnswerFetch {
                to,
                answer,
                may_wait,
            } => {
                self.send_fetch_data(id, partition, to, answer, may_wait);
            }
            Command::AppendReplicated { batches } => {
                let log = &self.nodes[&id].logs[&partition];
                log.append_replicated(&batches).map_err(|e| {
                    format!("node {id} partition {partition}: replicated append failed: {e}")
                })?;
                self.log(format!(
                    "node {id} p{partition} replicated up to {}",
                    log.offsets().log_end_offset
                ));
                events.push_back(Event::LogAppended);
                self.unpark(id, partition);
            }
            Command::Flush => {
                let node = self.nodes.get_mut(&id).expect("node");
                let scheduled = node.flush_scheduled.entry(partition).or_default();
                if !*scheduled {
                    *scheduled = true;
                    let incarnation = node.incarnation;
                    let delay = self.rng.range(0, 4);
                    self.schedule(
                        delay,
                        Ev::FlushDone {
                            node: id,
                            incarnation,
                            partition,
                        },
                    );
                }
            }
            Command::Truncate { offset } => {
                let log = &self.nodes[&id].logs[&partition];
                let end = log.offsets().log_end_offset;
                if offset > end {
                    return Err(format!(
                        "node {id} partition {partition}: asked to restart the log at {offset}, past its end {end} (no retention runs here)"
                    ));
                }
                log.truncate_to(offset)
                    .map_err(|e| format!("node {id} partition {partition}: truncate: {e}"))?;
                if offset < end {
                    self.truncations += 1;
                }
                self.log(format!(
                    "node {id} p{partition} truncated to {offset} (was {end})"
                ));
                events.push_back(Event::LogTruncated);
            }
            Command::ProposeIsr(request) => {
                let topic_id = self.topic_id.clone().expect("topic");
                let broker_epoch = self.nodes[&id].broker_epoch.expect("registered");
                self.log(format!(
                    "node {id} p{partition} proposes ISR {:?}",
                    request.new_isr
                ));
                self.send(
                    id,
                    CONTROLLER,
                    None,
                    Msg::AlterIsr {
                        topic_id,
                        partition,
                        broker_epoch,
                        request,
                    },
                );
            }
            Command::PublishHighWatermark(hw) => {
                // A leader that stepped aside still publishes what its followers commit
                // (`replication/replica.rs`), but answers no append (the driver answers
                // only while the role is leader, as `partition/driver.rs` `publish`).
                let epoch = self
                    .held_leadership(id, partition)
                    .expect("only a leader publishes");
                self.checker.publish(partition, epoch, hw)?;
                self.checker.acknowledging(partition, epoch, id)?;
                let log = &self.nodes[&id].logs[&partition];
                log.checkpoint_high_watermark(hw)
                    .map_err(|e| format!("node {id}: checkpoint HW: {e}"))?;
                let waiters = self
                    .nodes
                    .get_mut(&id)
                    .expect("node")
                    .waiters
                    .entry(partition)
                    .or_default();
                let (done, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(waiters)
                    .into_iter()
                    .partition(|w| w.leader_epoch == epoch && w.offset < hw);
                *waiters = waiting;
                if self.leader_epoch(id, partition) != Some(epoch) {
                    self.nodes
                        .get_mut(&id)
                        .expect("node")
                        .waiters
                        .entry(partition)
                        .or_default()
                        .extend(done);
                    return Ok(());
                }
                for w in done {
                    self.check_lease_held(id, partition, "answers an acks=all produce")?;
                    self.send(
                        id,
                        w.client,
                        None,
                        Msg::ProduceAnswer {
                            partition,
                            request_id: w.request_id,
                            result: Ok(w.offset),
                        },
                    );
                }
            }
            // The simulation injects no log failures (its faults are crashes, cuts and
            // lost messages), so the state machine never asks for these; the partition
            // tests and weir-server's `tests/it/durability.rs` cover them on real logs.
            Command::ReopenLog { .. } | Command::ResignLeadership { .. } => {
                return Err(format!(
                    "node {id} partition {partition}: {command:?} without a log failure"
                ));
            }
            Command::LeadershipEnded { leader_epoch } => {
                let waiters = self
                    .nodes
                    .get_mut(&id)
                    .expect("node")
                    .waiters
                    .entry(partition)
                    .or_default();
                let (failed, kept): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(waiters)
                    .into_iter()
                    .partition(|w| w.leader_epoch == leader_epoch);
                *waiters = kept;
                self.log(format!(
                    "node {id} p{partition} stops leading epoch {leader_epoch}"
                ));
                for w in failed {
                    self.send(
                        id,
                        w.client,
                        None,
                        Msg::ProduceAnswer {
                            partition,
                            request_id: w.request_id,
                            result: Err("NOT_LEADER".into()),
                        },
                    );
                }
            }
        }
        let _ = inc;
        Ok(())
    }

    /// Answers a fetch; a data answer with nothing to send is parked (long poll) when
    /// `park` is set.
    pub(crate) fn send_fetch_data(
        &mut self,
        id: Addr,
        partition: u32,
        to: Addr,
        answer: FetchAnswer,
        park: bool,
    ) {
        // A held answer goes out only while this replica still leads at the epoch it
        // was given under; after that its log may hold another leader's batches.
        if let FetchAnswer::Data {
            fetch_id,
            leader_epoch,
            ..
        } = &answer
            && self.leader_epoch(id, partition) != Some(*leader_epoch)
        {
            let answer = FetchAnswer::Error {
                fetch_id: *fetch_id,
                error: FetchError::NotLeader,
            };
            let inc = self.incarnation(to);
            self.send(
                id,
                to,
                inc,
                Msg::FetchAnswer {
                    partition,
                    answer,
                    batches: Bytes::new(),
                },
            );
            return;
        }
        let batches = match &answer {
            FetchAnswer::Data { from_offset, .. } => {
                let log = &self.nodes[&id].logs[&partition];
                if *from_offset >= log.offsets().log_end_offset {
                    if park {
                        let until_ms = self.now + FETCH_WAIT_MS;
                        let node = self.nodes.get_mut(&id).expect("node");
                        node.parked.entry(partition).or_default().push(Parked {
                            to,
                            answer,
                            until_ms,
                        });
                        return;
                    }
                    Bytes::new()
                } else {
                    match log.read(*from_offset, FETCH_MAX_BYTES, None) {
                        Ok(data) => data.records,
                        Err(e) => panic!("seed {}: node {id} read for a follower: {e}", self.seed),
                    }
                }
            }
            _ => Bytes::new(),
        };
        if std::env::var_os("WEIR_SIM_FULL_TRACE").is_some() {
            self.log(format!(
                "node {id} p{partition} answers node {to}: {answer:?} ({} bytes)",
                batches.len()
            ));
        }
        let inc = self.incarnation(to);
        self.send(
            id,
            to,
            inc,
            Msg::FetchAnswer {
                partition,
                answer,
                batches,
            },
        );
    }

    pub(crate) fn unpark(&mut self, id: Addr, partition: u32) {
        let parked = self
            .nodes
            .get_mut(&id)
            .expect("node")
            .parked
            .remove(&partition)
            .unwrap_or_default();
        for p in parked {
            self.send_fetch_data(id, partition, p.to, p.answer, true);
        }
    }

    pub(crate) fn flush_done(&mut self, id: Addr, incarnation: u64, partition: u32) -> Verdict {
        let node = &self.nodes[&id];
        if !node.up || node.incarnation != incarnation {
            return Ok(());
        }
        if node.paused {
            self.schedule(
                NODE_TICK_MS,
                Ev::FlushDone {
                    node: id,
                    incarnation,
                    partition,
                },
            );
            return Ok(());
        }
        self.check_lease(id)?;
        self.nodes
            .get_mut(&id)
            .expect("node")
            .flush_scheduled
            .insert(partition, false);
        self.nodes[&id].logs[&partition]
            .flush()
            .map_err(|e| format!("node {id} partition {partition}: flush: {e}"))?;
        self.replica_event(id, partition, Event::LogFlushed)
    }

    pub(crate) fn produce(
        &mut self,
        id: Addr,
        client: Addr,
        partition: u32,
        request_id: u64,
        value: String,
    ) -> Verdict {
        let refused = |reason: String| Msg::ProduceAnswer {
            partition,
            request_id,
            result: Err(reason),
        };
        let Some(replica) = self.nodes[&id].replicas.get(&partition) else {
            self.send(id, client, None, refused("NOT_LEADER".into()));
            return Ok(());
        };
        let epoch = match replica.check_produce(true) {
            Ok(epoch) => epoch,
            Err(refusal) => {
                self.send(id, client, None, refused(format!("{refusal:?}")));
                return Ok(());
            }
        };
        self.check_lease_held(id, partition, "appends as leader")?;
        let mut builder = RecordBatchBuilder::new(Compression::None);
        builder.push(&Record {
            value: Some(Bytes::from(value.clone())),
            timestamp: self.now as i64,
            ..Record::default()
        });
        let mut batch = builder.build().expect("build a batch").to_vec();
        let log = &self.nodes[&id].logs[&partition];
        let info = log
            .append(&mut batch, epoch)
            .map_err(|e| format!("node {id} partition {partition}: append: {e}"))?;
        self.checker.leader_append(partition, epoch, id)?;
        self.log(format!(
            "node {id} p{partition} epoch {epoch} appends {value} at {}",
            info.base_offset
        ));
        self.nodes
            .get_mut(&id)
            .expect("node")
            .waiters
            .entry(partition)
            .or_default()
            .push(Waiter {
                leader_epoch: epoch,
                offset: info.base_offset,
                client,
                request_id,
            });
        self.unpark(id, partition);
        self.replica_event(id, partition, Event::LogAppended)
    }

    pub(crate) fn read(
        &mut self,
        id: Addr,
        client: Addr,
        partition: u32,
        offset: i64,
        request_id: u64,
    ) {
        let node = &self.nodes[&id];
        let refused = Msg::ReadRefused {
            partition,
            request_id,
        };
        let Some(replica) = node.replicas.get(&partition) else {
            self.send(id, client, None, refused);
            return;
        };
        let (Role::Leader { leader_epoch }, Some(hw)) =
            (replica.role(), replica.published_high_watermark())
        else {
            self.send(id, client, None, refused);
            return;
        };
        if let Err(problem) = self.check_lease_held(id, partition, "serves a read") {
            self.verdict(Err(problem));
        }
        let log = &node.logs[&partition];
        let mut records = Vec::new();
        if offset < hw {
            match log.read(offset, 1024, Some(hw)) {
                Ok(data) => {
                    for batch in data.batches() {
                        for r in decode_records(&batch).expect("decode") {
                            if r.offset >= offset && r.offset < hw {
                                let v = String::from_utf8(r.value.expect("value").to_vec())
                                    .expect("utf-8");
                                records.push((r.offset, v));
                            }
                        }
                    }
                }
                Err(e) => panic!(
                    "seed {}: node {id} consumer read at {offset}: {e}",
                    self.seed
                ),
            }
        }
        self.send(
            id,
            client,
            None,
            Msg::ReadAnswer {
                partition,
                request_id,
                leader_epoch,
                records,
                high_watermark: hw,
            },
        );
    }
}
