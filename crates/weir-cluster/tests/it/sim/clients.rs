//! The clients: `acks=all` producers and a consumer that follows leaders by epoch,
//! reporting what they were told to the checker.

use weir_cluster::controller::records::NO_LEADER;

use super::checker::Verdict;
use super::net::{Addr, Msg};
use super::world::*;

impl World {
    /// Where a client sends a partition's requests: the leader the committed metadata
    /// names, and now and then a random broker (a client with stale metadata).
    pub(crate) fn leader_for(&mut self, partition: u32) -> Option<Addr> {
        if self.rng.chance(0.1) {
            return Some(self.rng.range(1, self.cfg.brokers as u64) as Addr);
        }
        let reg = self.image.partition(self.topic_id.as_ref()?, partition)?;
        (reg.leader != NO_LEADER).then_some(reg.leader)
    }

    pub(crate) fn producer_tick(&mut self, client: Addr) {
        if !self.producing || self.topic_id.is_none() {
            return;
        }
        let now = self.now;
        let producer = self.producers.get_mut(&client).expect("producer");
        producer
            .outstanding
            .retain(|_, (_, _, sent)| now - *sent < PRODUCE_TIMEOUT_MS);
        if producer.outstanding.len() >= 4 {
            return;
        }
        let partition = self.rng.range(0, self.cfg.partitions as u64 - 1) as u32;
        let Some(leader) = self.leader_for(partition) else {
            return;
        };
        let producer = self.producers.get_mut(&client).expect("producer");
        producer.next_request += 1;
        let request_id = producer.next_request;
        let value = format!("c{client}-{request_id}");
        producer
            .outstanding
            .insert(request_id, (partition, value.clone(), now));
        self.send(
            client,
            leader,
            None,
            Msg::Produce {
                partition,
                request_id,
                value,
            },
        );
    }

    pub(crate) fn consumer_tick(&mut self) {
        if self.topic_id.is_none() {
            return;
        }
        let partition = self.rng.range(0, self.cfg.partitions as u64 - 1) as u32;
        let Some(leader) = self.leader_for(partition) else {
            return;
        };
        let now = self.now;
        let c = &mut self.consumer;
        if c.in_flight
            .get(&partition)
            .is_some_and(|(_, sent)| now - sent < PRODUCE_TIMEOUT_MS)
        {
            return;
        }
        c.next_request += 1;
        let request_id = c.next_request;
        c.in_flight.insert(partition, (request_id, now));
        let offset = *c.next_offset.entry(partition).or_default();
        self.send(
            CONSUMER,
            leader,
            None,
            Msg::Read {
                partition,
                offset,
                request_id,
            },
        );
    }

    pub(crate) fn client_receive(&mut self, client: Addr, from: Addr, msg: Msg) -> Verdict {
        match msg {
            Msg::ProduceAnswer {
                partition,
                request_id,
                result,
            } => {
                let producer = self.producers.get_mut(&client).expect("producer");
                let Some((p, value, _)) = producer.outstanding.remove(&request_id) else {
                    return Ok(()); // timed out already, or a duplicate
                };
                assert_eq!(p, partition);
                if let Ok(offset) = result {
                    self.log(format!("client {client} acked {value} at p{partition} offset {offset} by node {from}"));
                    self.checker.acknowledged(partition, offset, &value)?;
                    if !self.faults_on {
                        *self.acked_after_heal.entry(partition).or_default() += 1;
                    }
                }
                Ok(())
            }
            Msg::ReadAnswer {
                partition,
                request_id,
                leader_epoch,
                records,
                high_watermark,
            } => {
                let c = &mut self.consumer;
                if c.in_flight.get(&partition).map(|(id, _)| *id) != Some(request_id) {
                    return Ok(()); // late or duplicated
                }
                c.in_flight.remove(&partition);
                let max_epoch = c.max_epoch.entry(partition).or_insert(-1);
                if leader_epoch < *max_epoch {
                    return Ok(()); // a deposed leader: a consumer that tracks epochs ignores it
                }
                *max_epoch = leader_epoch;
                let max_hw = c.max_hw.entry(partition).or_insert(0);
                if high_watermark < *max_hw {
                    return Err(format!(
                        "consumer: partition {partition} HW went back from {max_hw} to {high_watermark} (leader epoch {leader_epoch}, node {from})"
                    ));
                }
                *max_hw = high_watermark;
                let next = c.next_offset.entry(partition).or_default();
                for (offset, value) in records {
                    if offset > *next {
                        return Err(format!(
                            "consumer: partition {partition} skipped from {next} to {offset}"
                        ));
                    }
                    if offset == *next {
                        *next += 1;
                    }
                    self.checker.consumed(partition, offset, &value)?;
                }
                Ok(())
            }
            Msg::ReadRefused {
                partition,
                request_id,
            } => {
                let c = &mut self.consumer;
                if c.in_flight.get(&partition).map(|(id, _)| *id) == Some(request_id) {
                    c.in_flight.remove(&partition);
                }
                Ok(())
            }
            other => panic!("client {client} got {other:?}"),
        }
    }
}
