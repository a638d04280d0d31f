//! Producer ids for idempotent producers (Kafka's `InitProducerId`; `docs/replication.md`
//! § Idempotent producers). The metadata is the one place ids come from, so two brokers
//! never hand out the same one:
//! - a broker takes a block of [`PRODUCER_ID_BLOCK_SIZE`] ids at a time and hands them to
//!   producers without a name, one each, with epoch 0 (Kafka's `ProducerIdsBlock`);
//! - a producer with a name (Kafka's `transactional.id`) is recorded by name: starting it
//!   again gives the same id at the next epoch, which fences the older instance at every
//!   partition it writes to next. When the epoch would pass `i16::MAX` it gets a new id.

use super::image::MetadataImage;
use super::records::{BrokerEpoch, MetadataRecord};
use super::requests::{
    ControllerError, ControllerReply, MAX_NAMED_PRODUCERS, MAX_PRODUCER_NAME_CHARS, Outcome,
};
use crate::partition::BrokerId;

/// Ids a broker takes at a time (Kafka's block size).
pub const PRODUCER_ID_BLOCK_SIZE: u32 = 1000;

/// The next block of ids for `node`, which must be registered at `broker_epoch`.
pub(super) fn allocate_block(
    image: &MetadataImage,
    node: BrokerId,
    broker_epoch: BrokerEpoch,
) -> Result<Outcome, ControllerError> {
    let current = image.broker(node).map(|b| b.broker_epoch);
    if current != Some(broker_epoch) {
        return Err(ControllerError::StaleBrokerEpoch {
            node,
            given: broker_epoch,
            current,
        });
    }
    let first = image.producer_ids.next;
    Ok(Outcome {
        records: vec![MetadataRecord::ProducerIdsAllocated {
            node,
            first,
            count: PRODUCER_ID_BLOCK_SIZE,
        }],
        reply: ControllerReply::ProducerIds {
            first,
            count: PRODUCER_ID_BLOCK_SIZE,
        },
    })
}

/// The id and epoch of the producer named `name` as it starts again (or for the first
/// time).
pub(super) fn init_named(image: &MetadataImage, name: String) -> Result<Outcome, ControllerError> {
    if name.is_empty() || name.chars().count() > MAX_PRODUCER_NAME_CHARS {
        return Err(ControllerError::InvalidProducerName(name));
    }
    let (producer_id, producer_epoch) = match image.producer_ids.named.get(&name) {
        Some(&(id, epoch)) if epoch < i16::MAX => (id, epoch + 1),
        Some(_) => (image.producer_ids.next, 0),
        None if image.producer_ids.named.len() >= MAX_NAMED_PRODUCERS => {
            return Err(ControllerError::TooManyNamedProducers);
        }
        None => (image.producer_ids.next, 0),
    };
    Ok(Outcome {
        records: vec![MetadataRecord::ProducerInitialized {
            name,
            producer_id,
            producer_epoch,
        }],
        reply: ControllerReply::ProducerInitialized {
            producer_id,
            producer_epoch,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::test_support::{empty_image, endpoints};

    fn image_with_broker() -> MetadataImage {
        let mut image = empty_image();
        image
            .apply(&MetadataRecord::BrokerRegistered {
                node: 1,
                incarnation: "i".into(),
                broker_epoch: 1,
                endpoints: endpoints(1),
                rack: None,
            })
            .unwrap();
        image
    }

    fn commit(
        image: &mut MetadataImage,
        decide: impl FnOnce(&MetadataImage) -> Result<Outcome, ControllerError>,
    ) -> ControllerReply {
        let outcome = decide(image).unwrap();
        for record in &outcome.records {
            image.apply(record).unwrap();
        }
        outcome.reply
    }

    #[test]
    fn blocks_and_named_producers_never_share_an_id() {
        let mut image = image_with_broker();
        let a = commit(&mut image, |i| allocate_block(i, 1, 1));
        let named = commit(&mut image, |i| init_named(i, "orders".into()));
        let b = commit(&mut image, |i| allocate_block(i, 1, 1));
        assert_eq!(
            a,
            ControllerReply::ProducerIds {
                first: 0,
                count: 1000
            }
        );
        assert_eq!(
            named,
            ControllerReply::ProducerInitialized {
                producer_id: 1000,
                producer_epoch: 0
            }
        );
        assert_eq!(
            b,
            ControllerReply::ProducerIds {
                first: 1001,
                count: 1000
            }
        );
    }

    #[test]
    fn a_named_producer_that_starts_again_keeps_its_id_at_the_next_epoch() {
        let mut image = image_with_broker();
        commit(&mut image, |i| init_named(i, "p".into()));
        let again = commit(&mut image, |i| init_named(i, "p".into()));
        assert_eq!(
            again,
            ControllerReply::ProducerInitialized {
                producer_id: 0,
                producer_epoch: 1
            }
        );
        // Past the last epoch: a new id.
        image
            .apply(&MetadataRecord::ProducerInitialized {
                name: "p".into(),
                producer_id: 0,
                producer_epoch: i16::MAX,
            })
            .unwrap();
        let fresh = commit(&mut image, |i| init_named(i, "p".into()));
        assert_eq!(
            fresh,
            ControllerReply::ProducerInitialized {
                producer_id: 1,
                producer_epoch: 0
            }
        );
    }

    #[test]
    fn bad_names_and_stale_brokers_are_refused() {
        let image = image_with_broker();
        assert!(matches!(
            init_named(&image, String::new()),
            Err(ControllerError::InvalidProducerName(_))
        ));
        assert!(matches!(
            init_named(&image, "x".repeat(MAX_PRODUCER_NAME_CHARS + 1)),
            Err(ControllerError::InvalidProducerName(_))
        ));
        assert!(matches!(
            allocate_block(&image, 1, 7),
            Err(ControllerError::StaleBrokerEpoch { .. })
        ));
        assert!(matches!(
            allocate_block(&image, 2, 1),
            Err(ControllerError::StaleBrokerEpoch { current: None, .. })
        ));
    }

    #[test]
    fn the_ids_survive_a_snapshot() {
        let mut image = image_with_broker();
        commit(&mut image, |i| allocate_block(i, 1, 1));
        commit(&mut image, |i| init_named(i, "p".into()));
        let json = serde_json::to_vec(&image).unwrap();
        let back: MetadataImage = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, image);
        let again = commit(&mut back.clone(), |i| init_named(i, "p".into()));
        assert_eq!(
            again,
            ControllerReply::ProducerInitialized {
                producer_id: 1000,
                producer_epoch: 1
            }
        );
    }
}
