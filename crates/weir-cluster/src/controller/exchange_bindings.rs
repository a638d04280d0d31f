//! Exchange-to-exchange bindings (RabbitMQ's `exchange.bind`, `crate::exchanges`
//! `StoredExchangeBinding`), as the active controller records them and as their records
//! apply to the image: both exchanges must exist, a binding made twice is made once, and
//! they count against the same limits as queue bindings. [`removal`] makes the records of
//! every unbinding and exchange deletion: an exchange goes with the bindings it is the
//! source or destination of, and an `auto_delete` source with its last binding, down the
//! chain, as RabbitMQ does.

use std::collections::BTreeSet;

use super::apply::ImageError;
use super::exchanges::{done, refused};
use super::image::MetadataImage;
use super::records::MetadataRecord;
use super::requests::{ControllerError, Outcome};
use crate::exchanges::{
    ExchangeError, MAX_BINDINGS, MAX_BINDINGS_PER_EXCHANGE, StoredBinding, StoredExchangeBinding,
    is_default_exchange, predeclared,
};

/// Binds `destination` to `source`; nothing to write if the binding exists.
pub(super) fn bind_exchange(
    image: &MetadataImage,
    binding: StoredExchangeBinding,
) -> Result<Outcome, ControllerError> {
    if exchange_binding_exists(image, &binding)? {
        return Ok(done(image, Vec::new()));
    }
    if image.binding_count(&binding.source) >= MAX_BINDINGS_PER_EXCHANGE {
        return Err(refused(ExchangeError::TooMany(format!(
            "exchange {:?} has {MAX_BINDINGS_PER_EXCHANGE} bindings, its limit",
            binding.source
        ))));
    }
    if image.total_bindings() >= MAX_BINDINGS {
        return Err(refused(ExchangeError::TooMany(format!(
            "the cluster has {MAX_BINDINGS} bindings, its limit; remove some first"
        ))));
    }
    Ok(done(
        image,
        vec![MetadataRecord::ExchangeBindingCreated { binding }],
    ))
}

/// Removes an exchange-to-exchange binding; nothing to write if there is none, refused if
/// either exchange does not exist.
pub(super) fn unbind_exchange(
    image: &MetadataImage,
    binding: StoredExchangeBinding,
) -> Result<Outcome, ControllerError> {
    if !exchange_binding_exists(image, &binding)? {
        return Ok(done(image, Vec::new()));
    }
    Ok(done(image, removal(image, Vec::new(), vec![binding], None)))
}

fn exists(image: &MetadataImage, name: &str) -> bool {
    predeclared(name).is_some() || image.exchange(name).is_some()
}

/// Whether `binding` exists, once it is checked and both its exchanges are found.
fn exchange_binding_exists(
    image: &MetadataImage,
    binding: &StoredExchangeBinding,
) -> Result<bool, ControllerError> {
    binding.validate().map_err(refused)?;
    for name in [&binding.source, &binding.destination] {
        if !exists(image, name) {
            return Err(refused(ExchangeError::UnknownExchange(name.clone())));
        }
    }
    Ok(image
        .exchange_bindings(&binding.source)
        .any(|b| b == binding))
}

/// The records that remove `queue_bindings` and `exchange_bindings`, and with
/// `delete` that exchange (every binding it is the source or destination of first), then
/// each `auto_delete` exchange left without a binding it is the source of: deleted too,
/// with the exchange bindings it is the destination of, and so on down the chain (as
/// RabbitMQ deletes an auto-delete exchange with its last binding). Every binding is
/// deleted before its exchanges, so each record applies to the image the ones before
/// leave.
pub(super) fn removal(
    image: &MetadataImage,
    queue_bindings: Vec<StoredBinding>,
    exchange_bindings: Vec<StoredExchangeBinding>,
    delete: Option<&str>,
) -> Vec<MetadataRecord> {
    let mut gone_queue: BTreeSet<StoredBinding> = queue_bindings.into_iter().collect();
    let mut gone_exchange: BTreeSet<StoredExchangeBinding> =
        exchange_bindings.into_iter().collect();
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    if let Some(name) = delete {
        gone_queue.extend(image.bindings(name).cloned());
        gone_exchange.extend(image.exchange_bindings(name).cloned());
        gone_exchange.extend(image.exchange_bindings_to(name).cloned());
        deleted.insert(name.to_owned());
    }
    let mut records: Vec<MetadataRecord> = gone_queue
        .iter()
        .map(|binding| MetadataRecord::BindingDeleted {
            binding: binding.clone(),
        })
        .chain(
            gone_exchange
                .iter()
                .map(|binding| MetadataRecord::ExchangeBindingDeleted {
                    binding: binding.clone(),
                }),
        )
        .collect();
    if let Some(name) = delete {
        records.push(MetadataRecord::ExchangeDeleted {
            name: name.to_owned(),
        });
    }
    let mut candidates: Vec<String> = gone_queue
        .iter()
        .map(|b| b.exchange.clone())
        .chain(gone_exchange.iter().map(|b| b.source.clone()))
        .collect();
    while let Some(name) = candidates.pop() {
        if deleted.contains(&name) || !image.exchange(&name).is_some_and(|e| e.auto_delete) {
            continue;
        }
        let left = image.bindings(&name).any(|b| !gone_queue.contains(b))
            || image
                .exchange_bindings(&name)
                .any(|b| !gone_exchange.contains(b));
        if left {
            continue;
        }
        for binding in image.exchange_bindings_to(&name) {
            if gone_exchange.insert(binding.clone()) {
                records.push(MetadataRecord::ExchangeBindingDeleted {
                    binding: binding.clone(),
                });
                candidates.push(binding.source.clone());
            }
        }
        records.push(MetadataRecord::ExchangeDeleted { name: name.clone() });
        deleted.insert(name);
    }
    records
}

impl MetadataImage {
    /// Applies an exchange-to-exchange binding record: one made twice, naming an exchange
    /// that does not exist, or removed when it is not there, is refused.
    pub(super) fn apply_exchange_binding_record(
        &mut self,
        record: &MetadataRecord,
    ) -> Result<(), ImageError> {
        let inconsistent = |what: String| Err(ImageError::Inconsistent(what));
        match record {
            MetadataRecord::ExchangeBindingCreated { binding } => {
                for name in [&binding.source, &binding.destination] {
                    let declared = self.exchanges.exchanges.contains_key(name)
                        || (predeclared(name).is_some() && !is_default_exchange(name));
                    if !declared {
                        return inconsistent(format!(
                            "an exchange binding naming exchange {name:?}, not there"
                        ));
                    }
                }
                let state = &mut self.exchanges;
                if !state
                    .exchange_bindings
                    .entry(binding.source.clone())
                    .or_default()
                    .insert(binding.clone())
                {
                    return inconsistent(format!("exchange binding {binding:?} made twice"));
                }
                state.binding_count += 1;
            }
            MetadataRecord::ExchangeBindingDeleted { binding } => {
                let state = &mut self.exchanges;
                let removed = state
                    .exchange_bindings
                    .get_mut(&binding.source)
                    .is_some_and(|set| set.remove(binding));
                if !removed {
                    return inconsistent(format!(
                        "exchange binding {binding:?} is not there to delete"
                    ));
                }
                if state.exchange_bindings[&binding.source].is_empty() {
                    state.exchange_bindings.remove(&binding.source);
                }
                state.binding_count -= 1;
            }
            other => unreachable!("not an exchange binding record: {other:?}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::controller::test_support::Harness;
    use crate::controller::{ControllerError, ControllerRequest};
    use crate::exchanges::{ExchangeType, StoredExchange};

    fn declare(h: &mut Harness, name: &str, auto_delete: bool) {
        h.handle(ControllerRequest::DeclareExchange {
            exchange: StoredExchange {
                name: name.into(),
                kind: ExchangeType::Fanout,
                durable: true,
                auto_delete,
                internal: false,
                arguments: BTreeMap::new(),
            },
        });
    }

    fn e2e(source: &str, destination: &str) -> StoredExchangeBinding {
        StoredExchangeBinding {
            source: source.into(),
            destination: destination.into(),
            routing_key: String::new(),
            arguments: BTreeMap::new(),
        }
    }

    fn refusal(h: &mut Harness, binding: StoredExchangeBinding) -> ExchangeError {
        match h.refused(ControllerRequest::BindExchange { binding }) {
            ControllerError::Exchange(e) => e,
            other => panic!("not an exchange refusal: {other:?}"),
        }
    }

    #[test]
    fn exchange_bindings_are_made_once_and_go_with_either_exchange() {
        let mut h = Harness::new();
        h.live(1, None);
        for name in ["a", "b", "c"] {
            declare(&mut h, name, false);
        }
        let (records, _) = h.handle(ControllerRequest::BindExchange {
            binding: e2e("a", "b"),
        });
        assert_eq!(records.len(), 1);
        let (records, _) = h.handle(ControllerRequest::BindExchange {
            binding: e2e("a", "b"),
        });
        assert!(records.is_empty(), "twice is once: {records:?}");
        assert_eq!(h.image.binding_count("a"), 1);
        assert_eq!(h.image.total_bindings(), 1);
        assert!(matches!(
            refusal(&mut h, e2e("a", "nope")),
            ExchangeError::UnknownExchange(name) if name == "nope"
        ));
        assert!(matches!(
            refusal(&mut h, e2e("", "a")),
            ExchangeError::Predeclared { .. }
        ));
        // The destination deleted takes the binding with it.
        let (records, _) = h.handle(ControllerRequest::DeleteExchange {
            name: "b".into(),
            if_unused: true,
        });
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(h.image.exchange_bindings("a").count(), 0);
        assert_eq!(h.image.total_bindings(), 0);
        // A source is in use while it has one; a snapshot keeps them.
        h.handle(ControllerRequest::BindExchange {
            binding: e2e("a", "c"),
        });
        assert!(matches!(
            h.refused(ControllerRequest::DeleteExchange {
                name: "a".into(),
                if_unused: true
            }),
            ControllerError::Exchange(ExchangeError::InUse { bindings: 1, .. })
        ));
        let json = serde_json::to_string(&h.image).unwrap();
        let back: MetadataImage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h.image);
        assert_eq!(back.total_bindings(), 1);
        let (records, _) = h.handle(ControllerRequest::UnbindExchange {
            binding: e2e("a", "c"),
        });
        assert_eq!(records.len(), 1);
        // A record that does not fit the image is refused.
        let mut image = h.image.clone();
        let gone = MetadataRecord::ExchangeBindingDeleted {
            binding: e2e("a", "c"),
        };
        assert!(image.apply(&gone).is_err());
    }

    #[test]
    fn an_auto_delete_source_goes_with_its_last_binding_down_the_chain() {
        let mut h = Harness::new();
        h.live(1, None);
        h.create_topic("q1", 1, 1);
        declare(&mut h, "w", false);
        declare(&mut h, "x", true);
        declare(&mut h, "y", true);
        for (source, destination) in [("w", "x"), ("x", "y")] {
            h.handle(ControllerRequest::BindExchange {
                binding: e2e(source, destination),
            });
        }
        let to_queue = StoredBinding {
            exchange: "y".into(),
            queue: "q1".into(),
            routing_key: String::new(),
            arguments: BTreeMap::new(),
        };
        h.handle(ControllerRequest::Bind {
            binding: to_queue.clone(),
        });
        // y loses its last binding: it goes, with x -> y; then x has none left and goes,
        // with w -> x; w is not auto-delete and stays.
        let (records, _) = h.handle(ControllerRequest::Unbind { binding: to_queue });
        assert_eq!(records.len(), 5, "{records:?}");
        assert!(h.image.exchange("y").is_none());
        assert!(h.image.exchange("x").is_none());
        assert!(h.image.exchange("w").is_some());
        assert_eq!(h.image.total_bindings(), 0);
    }
}
