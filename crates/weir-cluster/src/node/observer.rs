//! An observer broker's metadata (`docs/replication.md` § 1, Observers): a broker
//! outside the voter set runs no Raft. It pulls committed metadata records from the
//! active controller (`FetchMetadata`, long-polled) and applies them to an image of its
//! own, in log order, exactly as a voter's state machine does; when it is further
//! behind than the records the controller keeps, it gets the whole image instead.
//!
//! Everything an observer knows is committed (a voter serves only what it applied, and
//! only the active controller answers), so its image is a prefix of every voter's: it
//! may lag, never fork. It keeps no copy on disk: a restarted observer starts from an
//! empty image and fetches the whole image again, so until a controller answers it
//! hosts and serves nothing (its partition directories wait untouched, see
//! `registry/mod.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{CallError, ControllerChannel};
use crate::controller::MetadataImage;
use crate::controller::records::MetadataOffset;
use crate::partition::BrokerId;
use crate::quorum::MetadataDelta;

/// How long the controller may hold a caught-up observer's fetch before answering with
/// nothing new; a change is answered at once.
pub const OBSERVER_FETCH_WAIT: Duration = Duration::from_millis(500);
/// First pause after a fetch that failed or found no controller; doubled per failure.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between fetch attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The image an observer follows and the active controller it follows it from.
#[derive(Debug)]
pub(super) struct Observer {
    image: watch::Sender<Arc<MetadataImage>>,
    /// The voter that last answered a fetch as the active controller (or that a voter
    /// named as such); `None` while unknown.
    controller: Mutex<Option<BrokerId>>,
    stop: watch::Sender<bool>,
}

/// Why a fetched delta could not be applied.
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error("the controller sent records from offset {got}, but offset {expected} was asked for")]
    WrongOffset {
        got: MetadataOffset,
        expected: MetadataOffset,
    },
    #[error("record at offset {offset} does not apply: {reason}")]
    Refused {
        offset: MetadataOffset,
        reason: String,
    },
}

impl Observer {
    pub(super) fn new() -> Observer {
        Observer {
            image: watch::Sender::new(Arc::new(MetadataImage::new())),
            controller: Mutex::new(None),
            stop: watch::Sender::new(false),
        }
    }

    pub(super) fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    pub(super) fn controller(&self) -> Option<BrokerId> {
        *self.controller.lock().expect("not poisoned")
    }

    pub(super) fn set_controller(&self, controller: Option<BrokerId>) {
        *self.controller.lock().expect("not poisoned") = controller;
    }

    /// Stops the fetch loop.
    pub(super) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Applies what a fetch from `from` brought: records in order (all or none), or a
    /// whole image that is not older than the one held.
    fn apply(&self, from: MetadataOffset, delta: MetadataDelta) -> Result<(), ApplyError> {
        match delta {
            MetadataDelta::Records {
                first_offset,
                records,
            } => {
                if first_offset != from {
                    return Err(ApplyError::WrongOffset {
                        got: first_offset,
                        expected: from,
                    });
                }
                if records.is_empty() {
                    return Ok(());
                }
                let mut image = (*self.image()).clone();
                for record in &records {
                    image.apply(record).map_err(|e| ApplyError::Refused {
                        offset: image.next_offset(),
                        reason: e.to_string(),
                    })?;
                }
                self.image.send_replace(Arc::new(image));
            }
            MetadataDelta::Image(image) => {
                if image.next_offset() >= self.image().next_offset() {
                    self.image.send_replace(image);
                }
            }
        }
        Ok(())
    }
}

/// Follows the active controller's metadata until [`Observer::stop`]: asks the
/// controller it knows of, or each voter in turn while it knows none, and follows a
/// voter's "not the controller, ask that one".
pub(super) async fn run(
    observer: Arc<Observer>,
    voters: Vec<(BrokerId, String)>,
    channel: Arc<dyn ControllerChannel>,
) {
    let mut stop = observer.stop.subscribe();
    let mut turn = 0usize;
    let mut backoff = MIN_BACKOFF;
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        let target = observer.controller().unwrap_or_else(|| {
            turn += 1;
            voters[turn % voters.len()].0
        });
        let address = voters
            .iter()
            .find(|(id, _)| *id == target)
            .map(|(_, a)| a.clone())
            .expect("the controller is a voter");
        let from = observer.image().next_offset();
        let fetched = tokio::select! {
            fetched = channel.fetch_metadata(address.clone(), from, OBSERVER_FETCH_WAIT) => fetched,
            _ = stop.changed() => return,
        };
        let failed = match fetched {
            Ok(delta) => {
                observer.set_controller(Some(target));
                match observer.apply(from, delta) {
                    Ok(()) => false,
                    Err(e) => {
                        tracing::error!(controller = target, %address, error = %e, "a metadata fetch did not apply; fetching again");
                        true
                    }
                }
            }
            Err(CallError::NotController { leader }) => {
                // Only a named other voter is worth asking at once; none named means an
                // election is under way.
                let leader = leader.filter(|l| *l != target && voters.iter().any(|(v, _)| v == l));
                observer.set_controller(leader);
                leader.is_none()
            }
            Err(CallError::Unreachable(reason)) => {
                tracing::debug!(voter = target, %address, %reason, "metadata fetch failed");
                observer.set_controller(None);
                true
            }
        };
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = MIN_BACKOFF;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::controller::records::{Endpoints, MetadataRecord};
    use crate::controller::{ControllerReply, ControllerRequest};
    use crate::replication::BoxFuture;

    fn history() -> Vec<MetadataRecord> {
        let mut records = vec![MetadataRecord::ClusterCreated {
            cluster_id: "c-1".into(),
        }];
        for node in 1..=3 {
            records.push(MetadataRecord::BrokerRegistered {
                node,
                incarnation: format!("i-{node}"),
                broker_epoch: records.len() as i64,
                endpoints: Endpoints::new(format!("b{node}:9292"), format!("b{node}:9293")),
                rack: None,
            });
        }
        records
    }

    fn image_of(records: &[MetadataRecord]) -> MetadataImage {
        let mut image = MetadataImage::new();
        for r in records {
            image.apply(r).unwrap();
        }
        image
    }

    /// Voter 1 names voter 2 as the controller, voter 2 serves the history two records
    /// a fetch, voter 3 is down.
    struct Voters {
        history: Vec<MetadataRecord>,
        fetches: AtomicUsize,
    }

    impl ControllerChannel for Voters {
        fn call(
            &self,
            _address: String,
            _request: ControllerRequest,
        ) -> BoxFuture<'_, Result<ControllerReply, CallError>> {
            Box::pin(async { Err(CallError::Unreachable("not in this test".into())) })
        }

        fn fetch_metadata(
            &self,
            address: String,
            from: MetadataOffset,
            wait: Duration,
        ) -> BoxFuture<'_, Result<MetadataDelta, CallError>> {
            Box::pin(async move {
                assert_eq!(wait, OBSERVER_FETCH_WAIT);
                self.fetches.fetch_add(1, Ordering::SeqCst);
                match address.as_str() {
                    "v1" => Err(CallError::NotController { leader: Some(2) }),
                    "v2" => {
                        let from = from as usize;
                        let records: Vec<_> =
                            self.history.iter().skip(from).take(2).cloned().collect();
                        if records.is_empty() {
                            // Caught up: the controller holds the fetch.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok(MetadataDelta::Records {
                            first_offset: from as MetadataOffset,
                            records,
                        })
                    }
                    _ => Err(CallError::Unreachable("connection refused".into())),
                }
            })
        }
    }

    #[tokio::test]
    async fn an_observer_finds_the_controller_and_applies_its_records_in_order() {
        let observer = Arc::new(Observer::new());
        let channel = Arc::new(Voters {
            history: history(),
            fetches: AtomicUsize::new(0),
        });
        let voters = vec![(1, "v1".into()), (2, "v2".into()), (3, "v3".into())];
        let task = tokio::spawn(run(observer.clone(), voters, channel.clone()));
        let mut images = observer.subscribe();
        let want = image_of(&history());
        tokio::time::timeout(Duration::from_secs(5), images.wait_for(|i| **i == want))
            .await
            .expect("caught up")
            .unwrap();
        assert_eq!(observer.controller(), Some(2));
        observer.stop();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops")
            .unwrap();
        let fetches = channel.fetches.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(channel.fetches.load(Ordering::SeqCst), fetches, "stopped");
    }

    #[test]
    fn records_from_another_offset_or_that_do_not_apply_change_nothing() {
        let observer = Observer::new();
        let history = history();
        observer
            .apply(
                0,
                MetadataDelta::Records {
                    first_offset: 0,
                    records: history[..2].to_vec(),
                },
            )
            .unwrap();
        let before = observer.image();
        assert_eq!(before.next_offset(), 2);

        let err = observer
            .apply(
                2,
                MetadataDelta::Records {
                    first_offset: 3,
                    records: history[3..].to_vec(),
                },
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApplyError::WrongOffset {
                    got: 3,
                    expected: 2
                }
            ),
            "{err}"
        );
        // The second record does not apply (a broker fenced at an epoch it never had):
        // the first is not kept either.
        let err = observer
            .apply(
                2,
                MetadataDelta::Records {
                    first_offset: 2,
                    records: vec![
                        history[2].clone(),
                        MetadataRecord::BrokerFenced {
                            node: 9,
                            broker_epoch: 99,
                        },
                    ],
                },
            )
            .unwrap_err();
        assert!(
            matches!(err, ApplyError::Refused { offset: 3, .. }),
            "{err}"
        );
        assert_eq!(observer.image(), before);

        // A whole image replaces a smaller one, never a larger one.
        observer
            .apply(0, MetadataDelta::Image(Arc::new(image_of(&history))))
            .unwrap();
        assert_eq!(observer.image().next_offset(), 4);
        observer
            .apply(0, MetadataDelta::Image(Arc::new(image_of(&history[..1]))))
            .unwrap();
        assert_eq!(observer.image().next_offset(), 4);
    }
}
