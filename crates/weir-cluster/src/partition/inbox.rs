//! How events from the broker's loops over its partitions reach one partition's state
//! machine: the metadata's registrations, timer ticks, the session lease, the answers to
//! its fetches and ISR proposals.
//!
//! The state machine runs under the log's read guard (it looks at the log's offsets), and
//! the guard waits while the log's write side is held or wanted: a log being reopened
//! after a failure, reconfigured or closed, behind reads that may sit in blocking I/O on a
//! failing disk. Those loops serve every partition of the broker one after the other, so
//! awaiting the guard in them let one busy log hold up the metadata, the ticks and the
//! fetch answers of all the others (an hour of faults saw every coordinator of a broker
//! wait 30 s for its leadership that way). So an event is posted, not awaited: handled at
//! once when the guard is free and nothing posted earlier still waits, otherwise queued
//! in the partition's inbox and handled, in order, by a task that waits for the guard.
//!
//! The inbox stays small without a limit of its own: a tick, the lease and the
//! registration each keep only their latest (a newer registration supersedes an older
//! one, as the state machine would have it anyway), and a follower has at most one fetch
//! and one ISR proposal out, whose answers it waits for before it sends another.

use std::collections::VecDeque;
use std::sync::Arc;

use weir_log::Log;

use super::Shared;
use crate::controller::records::PartitionRegistration;
use crate::replication::Event;

/// Events waiting for the log's guard, oldest first, and whether a task is handling them.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    queue: VecDeque<Event>,
    draining: bool,
}

impl Inbox {
    /// Queues `event` behind those waiting, keeping one tick, one lease event and the
    /// newest registration.
    fn push(&mut self, event: Event) {
        match &event {
            Event::Tick if self.queue.iter().any(|e| matches!(e, Event::Tick)) => return,
            Event::LeaseLapsed | Event::LeaseRenewed => self
                .queue
                .retain(|e| !matches!(e, Event::LeaseLapsed | Event::LeaseRenewed)),
            Event::Registration(new) => {
                let newer_queued = self.queue.iter().any(|e| {
                    matches!(e, Event::Registration(old)
                        if (old.leader_epoch, old.partition_epoch)
                            > (new.leader_epoch, new.partition_epoch))
                });
                if newer_queued {
                    return;
                }
                self.queue.retain(|e| !matches!(e, Event::Registration(_)));
            }
            _ => {}
        }
        self.queue.push_back(event);
    }
}

impl Shared {
    /// Hands `event` to the state machine without waiting: at once if the log's guard is
    /// free and nothing posted before waits; otherwise it waits in the inbox (module
    /// docs). Events posted one after the other are handled in that order.
    pub(super) fn post(self: &Arc<Self>, event: Event) {
        let guard = {
            let mut inbox = self.inbox.lock().expect("inbox mutex");
            let free = match inbox.draining {
                true => None,
                false => self.log.clone().try_read_owned().ok(),
            };
            match free {
                Some(guard) => guard,
                None => {
                    inbox.push(event);
                    if !inbox.draining {
                        inbox.draining = true;
                        tokio::spawn(drain(self.clone()));
                    }
                    return;
                }
            }
        };
        self.handle_posted(guard.as_ref(), event);
    }

    /// Hands a registration to the state machine once the log's guard is had. Events
    /// still in the inbox may be handled after it: a registration older than one the
    /// state machine acts on is ignored by it, so the newest one wins either way.
    pub(super) async fn handle_waiting(self: &Arc<Self>, registration: PartitionRegistration) {
        let guard = self.read_guard().await;
        self.handle_posted(guard.as_ref(), Event::Registration(registration));
    }

    fn handle_posted(self: &Arc<Self>, log: Option<&Log>, event: Event) {
        match (log, event) {
            (Some(log), event) => {
                self.drive(log, event);
            }
            // The log is closed while it is reopened after a failure: what the metadata
            // says now is taken up once it is open again. The rest is moot by then.
            (None, Event::Registration(reg)) => self.replica().remember_registration(reg),
            (None, _) => {}
        }
    }

    /// How many posted events wait in the inbox for the log's guard.
    #[cfg(test)]
    pub(super) fn posted_waiting(&self) -> usize {
        self.inbox.lock().expect("inbox mutex").queue.len()
    }
}

/// Waits for the log's guard, then handles the inbox's events in order until it is empty.
async fn drain(shared: Arc<Shared>) {
    let guard = shared.read_guard().await;
    loop {
        let event = {
            let mut inbox = shared.inbox.lock().expect("inbox mutex");
            match inbox.queue.pop_front() {
                Some(event) => event,
                None => {
                    inbox.draining = false;
                    return;
                }
            }
        };
        shared.handle_posted(guard.as_ref(), event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(leader_epoch: i32) -> Event {
        Event::Registration(PartitionRegistration {
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader: 1,
            leader_epoch,
            partition_epoch: leader_epoch,
            reassignment: None,
        })
    }

    fn kinds(inbox: &Inbox) -> Vec<String> {
        inbox
            .queue
            .iter()
            .map(|e| match e {
                Event::Registration(r) => format!("registration {}", r.leader_epoch),
                Event::Tick => "tick".into(),
                Event::LeaseLapsed => "lapsed".into(),
                Event::LeaseRenewed => "renewed".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_waiting_inbox_keeps_one_tick_the_last_lease_event_and_the_newest_registration() {
        let mut inbox = Inbox::default();
        inbox.push(registration(3));
        inbox.push(Event::Tick);
        inbox.push(Event::LeaseLapsed);
        inbox.push(Event::Tick);
        inbox.push(registration(5));
        // Late: older than the one queued.
        inbox.push(registration(4));
        inbox.push(Event::LeaseRenewed);
        assert_eq!(
            kinds(&inbox),
            ["tick", "registration 5", "renewed"].map(String::from)
        );
    }
}
