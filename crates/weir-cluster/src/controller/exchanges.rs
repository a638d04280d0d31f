//! Exchanges and bindings, as the active controller records them (`crate::exchanges`
//! holds the data and its rules) and as their records apply to the image. Every
//! request is checked against the limits before a record is written; deleting an
//! exchange deletes its bindings first, deleting a queue (a topic) its bindings
//! (`topics.rs` calls [`unbind_queue`]), and an `auto_delete` exchange goes with its
//! last binding, as RabbitMQ does (`exchange_bindings.rs` makes those records, with the
//! exchange-to-exchange bindings').

use super::apply::ImageError;
use super::exchange_bindings::removal;
use super::image::MetadataImage;
use super::records::MetadataRecord;
use super::requests::{ControllerError, ControllerReply, Outcome};
use crate::exchanges::{
    ExchangeError, MAX_BINDINGS, MAX_BINDINGS_PER_EXCHANGE, MAX_EXCHANGES, RESERVED_PREFIX,
    StoredBinding, StoredExchange, StoredQueue, is_default_exchange, predeclared,
};

/// The reply to every exchange request: done once the image has applied the records
/// before `through` (its `next_offset` reached it).
pub(super) fn done(image: &MetadataImage, records: Vec<MetadataRecord>) -> Outcome {
    let through = image.next_offset() + records.len() as i64;
    Outcome {
        records,
        reply: ControllerReply::ExchangesChanged { through },
    }
}

pub(super) fn refused(e: ExchangeError) -> ControllerError {
    ControllerError::Exchange(e)
}

/// Declares `exchange`: nothing to write if it exists with the same settings, refused if
/// with others. A predeclared name is answered by its own settings.
pub(super) fn declare_exchange(
    image: &MetadataImage,
    exchange: StoredExchange,
) -> Result<Outcome, ControllerError> {
    exchange.validate().map_err(refused)?;
    let existing = predeclared(&exchange.name).or_else(|| image.exchange(&exchange.name).cloned());
    if let Some(existing) = existing {
        if let Some(what) = existing.difference(&exchange) {
            return Err(refused(ExchangeError::Inequivalent {
                name: exchange.name,
                what,
            }));
        }
        return Ok(done(image, Vec::new()));
    }
    if exchange.name.starts_with(RESERVED_PREFIX) {
        return Err(refused(ExchangeError::Predeclared {
            name: exchange.name,
            what: format!("names starting with '{RESERVED_PREFIX}' are reserved for the server"),
        }));
    }
    if image.exchange_count() >= MAX_EXCHANGES {
        return Err(refused(ExchangeError::TooMany(format!(
            "the cluster has {MAX_EXCHANGES} exchanges, its limit; delete some first"
        ))));
    }
    Ok(done(
        image,
        vec![MetadataRecord::ExchangeDeclared { exchange }],
    ))
}

/// Deletes the exchange `name` and its bindings; nothing to do if it does not exist (as
/// RabbitMQ answers). `if_unused`: refused while it has bindings.
pub(super) fn delete_exchange(
    image: &MetadataImage,
    name: &str,
    if_unused: bool,
) -> Result<Outcome, ControllerError> {
    if predeclared(name).is_some() {
        return Err(refused(ExchangeError::Predeclared {
            name: name.to_owned(),
            what: "it cannot be deleted".into(),
        }));
    }
    if image.exchange(name).is_none() {
        return Ok(done(image, Vec::new()));
    }
    let bindings = image.binding_count(name);
    if if_unused && bindings > 0 {
        return Err(refused(ExchangeError::InUse {
            name: name.to_owned(),
            bindings,
        }));
    }
    Ok(done(
        image,
        removal(image, Vec::new(), Vec::new(), Some(name)),
    ))
}

/// Binds a queue to an exchange; nothing to write if the binding exists.
pub(super) fn bind(
    image: &MetadataImage,
    binding: StoredBinding,
) -> Result<Outcome, ControllerError> {
    if binding_exists(image, &binding)? {
        return Ok(done(image, Vec::new()));
    }
    if image.binding_count(&binding.exchange) >= MAX_BINDINGS_PER_EXCHANGE {
        return Err(refused(ExchangeError::TooMany(format!(
            "exchange {:?} has {MAX_BINDINGS_PER_EXCHANGE} bindings, its limit",
            binding.exchange
        ))));
    }
    if image.total_bindings() >= MAX_BINDINGS {
        return Err(refused(ExchangeError::TooMany(format!(
            "the cluster has {MAX_BINDINGS} bindings, its limit; remove some first"
        ))));
    }
    Ok(done(
        image,
        vec![MetadataRecord::BindingCreated { binding }],
    ))
}

/// Removes a binding; nothing to write if there is no such binding (as RabbitMQ
/// answers), refused if its exchange or queue does not exist.
pub(super) fn unbind(
    image: &MetadataImage,
    binding: StoredBinding,
) -> Result<Outcome, ControllerError> {
    if !binding_exists(image, &binding)? {
        return Ok(done(image, Vec::new()));
    }
    Ok(done(image, removal(image, vec![binding], Vec::new(), None)))
}

/// Whether `binding` exists, once it is checked and both its ends are found (what bind
/// and unbind both ask first).
fn binding_exists(image: &MetadataImage, binding: &StoredBinding) -> Result<bool, ControllerError> {
    binding.validate().map_err(refused)?;
    if predeclared(&binding.exchange).is_none() && image.exchange(&binding.exchange).is_none() {
        return Err(refused(ExchangeError::UnknownExchange(
            binding.exchange.clone(),
        )));
    }
    if image.topic(&binding.queue).is_none() {
        return Err(refused(ExchangeError::UnknownQueue(binding.queue.clone())));
    }
    Ok(image.bindings(&binding.exchange).any(|b| b == binding))
}

/// Records the declaration of a queue whose topic exists: nothing to write if it is
/// declared as asked, refused if with other settings.
pub(super) fn declare_queue(
    image: &MetadataImage,
    queue: StoredQueue,
) -> Result<Outcome, ControllerError> {
    queue.validate().map_err(refused)?;
    if image.topic(&queue.name).is_none() {
        return Err(refused(ExchangeError::UnknownQueue(queue.name)));
    }
    if let Some(existing) = image.queue_declaration(&queue.name) {
        return match existing.difference(&queue) {
            Some(what) => Err(refused(ExchangeError::QueueInequivalent {
                name: queue.name,
                what,
            })),
            None => Ok(done(image, Vec::new())),
        };
    }
    Ok(done(image, vec![MetadataRecord::QueueDeclared { queue }]))
}

/// The records that remove the bindings to `queue` (a topic being deleted), the
/// auto-delete exchanges left without a binding, and the queue's declaration.
pub(super) fn unbind_queue(image: &MetadataImage, queue: &str) -> Vec<MetadataRecord> {
    let bindings = image.bindings_to(queue).cloned().collect();
    let mut records = removal(image, bindings, Vec::new(), None);
    if image.queue_declaration(queue).is_some() {
        records.push(MetadataRecord::QueueDeclarationDeleted {
            name: queue.to_owned(),
        });
    }
    records
}

impl MetadataImage {
    /// Applies an exchange or binding record: a declare of an exchange that exists, a
    /// delete of one that does not or still has bindings, a binding made twice, of an
    /// exchange or queue that does not exist, or removed when it is not there, are
    /// refused.
    pub(super) fn apply_exchange_record(
        &mut self,
        record: &MetadataRecord,
    ) -> Result<(), ImageError> {
        let inconsistent = |what: String| Err(ImageError::Inconsistent(what));
        let state = &mut self.exchanges;
        match record {
            MetadataRecord::ExchangeDeclared { exchange } => {
                if state.exchanges.contains_key(&exchange.name) {
                    return inconsistent(format!("exchange {:?} declared twice", exchange.name));
                }
                state
                    .exchanges
                    .insert(exchange.name.clone(), exchange.clone());
            }
            MetadataRecord::ExchangeDeleted { name } => {
                if !state.exchanges.contains_key(name) {
                    return inconsistent(format!("exchange {name:?} is not there to delete"));
                }
                let exchange_bound = state.exchange_bindings.contains_key(name)
                    || state
                        .exchange_bindings
                        .values()
                        .flatten()
                        .any(|b| &b.destination == name);
                if state.bindings.contains_key(name) || exchange_bound {
                    return inconsistent(format!(
                        "exchange {name:?} is deleted with bindings left"
                    ));
                }
                state.exchanges.remove(name);
            }
            MetadataRecord::BindingCreated { binding } => {
                let exchange = &binding.exchange;
                let exists = state.exchanges.contains_key(exchange)
                    || (predeclared(exchange).is_some() && !is_default_exchange(exchange));
                if !exists {
                    return inconsistent(format!("a binding of exchange {exchange:?}, not there"));
                }
                if !self.topic_ids.contains_key(&binding.queue) {
                    return inconsistent(format!(
                        "a binding to queue {:?}, not there",
                        binding.queue
                    ));
                }
                let state = &mut self.exchanges;
                if !state
                    .bindings
                    .entry(exchange.clone())
                    .or_default()
                    .insert(binding.clone())
                {
                    return inconsistent(format!("binding {binding:?} made twice"));
                }
                state.binding_count += 1;
            }
            MetadataRecord::BindingDeleted { binding } => {
                let removed = state
                    .bindings
                    .get_mut(&binding.exchange)
                    .is_some_and(|set| set.remove(binding));
                if !removed {
                    return inconsistent(format!("binding {binding:?} is not there to delete"));
                }
                if state.bindings[&binding.exchange].is_empty() {
                    state.bindings.remove(&binding.exchange);
                }
                state.binding_count -= 1;
            }
            MetadataRecord::QueueDeclared { queue } => {
                if !self.topic_ids.contains_key(&queue.name) {
                    return inconsistent(format!(
                        "queue {:?} declared without its topic",
                        queue.name
                    ));
                }
                if self.exchanges.queues.contains_key(&queue.name) {
                    return inconsistent(format!("queue {:?} declared twice", queue.name));
                }
                self.exchanges
                    .queues
                    .insert(queue.name.clone(), queue.clone());
            }
            MetadataRecord::QueueDeclarationDeleted { name } => {
                if self.exchanges.queues.remove(name).is_none() {
                    return inconsistent(format!("queue {name:?} has no declaration to delete"));
                }
            }
            other => unreachable!("not an exchange record: {other:?}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::controller::ControllerRequest;
    use crate::controller::test_support::Harness;
    use crate::exchanges::ExchangeType;

    fn exchange(name: &str, kind: ExchangeType) -> StoredExchange {
        StoredExchange {
            name: name.into(),
            kind,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: BTreeMap::new(),
        }
    }

    fn binding(exchange: &str, queue: &str, key: &str) -> StoredBinding {
        StoredBinding {
            exchange: exchange.into(),
            queue: queue.into(),
            routing_key: key.into(),
            arguments: BTreeMap::new(),
        }
    }

    fn refusal(h: &mut Harness, request: ControllerRequest) -> ExchangeError {
        match h.refused(request) {
            ControllerError::Exchange(e) => e,
            other => panic!("not an exchange refusal: {other:?}"),
        }
    }

    #[test]
    fn exchanges_are_declared_once_compared_and_deleted_with_their_bindings() {
        let mut h = Harness::new();
        h.live(1, None);
        h.create_topic("q1", 1, 1);
        h.create_topic("q2", 1, 1);
        let logs = exchange("logs", ExchangeType::Fanout);
        let (records, _) = h.handle(ControllerRequest::DeclareExchange {
            exchange: logs.clone(),
        });
        assert_eq!(records.len(), 1);
        // The same again writes nothing; another type is refused.
        let (records, reply) = h.handle(ControllerRequest::DeclareExchange {
            exchange: logs.clone(),
        });
        assert!(records.is_empty(), "{records:?}");
        assert!(matches!(reply, ControllerReply::ExchangesChanged { .. }));
        let direct = exchange("logs", ExchangeType::Direct);
        assert!(matches!(
            refusal(
                &mut h,
                ControllerRequest::DeclareExchange { exchange: direct }
            ),
            ExchangeError::Inequivalent { .. }
        ));
        assert!(matches!(
            refusal(
                &mut h,
                ControllerRequest::DeclareExchange {
                    exchange: exchange("amq.mine", ExchangeType::Direct)
                }
            ),
            ExchangeError::Predeclared { .. }
        ));
        // The predeclared ones exist: redeclared as they are, never deleted.
        let (records, _) = h.handle(ControllerRequest::DeclareExchange {
            exchange: exchange("amq.topic", ExchangeType::Topic),
        });
        assert!(records.is_empty());
        assert!(matches!(
            refusal(
                &mut h,
                ControllerRequest::DeleteExchange {
                    name: "amq.fanout".into(),
                    if_unused: false
                }
            ),
            ExchangeError::Predeclared { .. }
        ));

        for queue in ["q1", "q2"] {
            h.handle(ControllerRequest::Bind {
                binding: binding("logs", queue, ""),
            });
        }
        // Twice is once.
        let (records, _) = h.handle(ControllerRequest::Bind {
            binding: binding("logs", "q1", ""),
        });
        assert!(records.is_empty());
        assert_eq!(h.image.binding_count("logs"), 2);
        assert!(matches!(
            refusal(
                &mut h,
                ControllerRequest::Bind {
                    binding: binding("nope", "q1", "")
                }
            ),
            ExchangeError::UnknownExchange(_)
        ));
        assert!(matches!(
            refusal(
                &mut h,
                ControllerRequest::Bind {
                    binding: binding("logs", "nope", "")
                }
            ),
            ExchangeError::UnknownQueue(_)
        ));
        assert!(matches!(
            refusal(
                &mut h,
                ControllerRequest::DeleteExchange {
                    name: "logs".into(),
                    if_unused: true
                }
            ),
            ExchangeError::InUse { bindings: 2, .. }
        ));

        // Deleting a queue deletes its bindings.
        h.handle(ControllerRequest::DeleteTopic { name: "q2".into() });
        assert_eq!(
            h.image.bindings("logs").collect::<Vec<_>>(),
            vec![&binding("logs", "q1", "")]
        );
        // Deleting the exchange deletes the rest.
        let (records, _) = h.handle(ControllerRequest::DeleteExchange {
            name: "logs".into(),
            if_unused: false,
        });
        assert_eq!(records.len(), 2, "{records:?}");
        assert!(h.image.exchange("logs").is_none());
        assert_eq!(h.image.total_bindings(), 0);
        // A missing one is deleted already.
        let (records, reply) = h.handle(ControllerRequest::DeleteExchange {
            name: "logs".into(),
            if_unused: true,
        });
        assert!(records.is_empty());
        assert!(matches!(reply, ControllerReply::ExchangesChanged { .. }));
    }

    #[test]
    fn queue_declarations_are_compared_and_go_with_their_topic() {
        let mut h = Harness::new();
        h.live(1, None);
        let queue = StoredQueue {
            name: "tasks".into(),
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: BTreeMap::new(),
        };
        assert!(matches!(
            refusal(
                &mut h,
                ControllerRequest::DeclareQueue {
                    queue: queue.clone()
                }
            ),
            ExchangeError::UnknownQueue(_)
        ));
        h.create_topic("tasks", 1, 1);
        let (records, _) = h.handle(ControllerRequest::DeclareQueue {
            queue: queue.clone(),
        });
        assert_eq!(records.len(), 1);
        let (records, _) = h.handle(ControllerRequest::DeclareQueue {
            queue: queue.clone(),
        });
        assert!(records.is_empty());
        let transient = StoredQueue {
            durable: false,
            ..queue.clone()
        };
        assert!(matches!(
            refusal(&mut h, ControllerRequest::DeclareQueue { queue: transient }),
            ExchangeError::QueueInequivalent { .. }
        ));
        h.handle(ControllerRequest::DeleteTopic {
            name: "tasks".into(),
        });
        assert!(h.image.queue_declaration("tasks").is_none());
    }

    #[test]
    fn an_auto_delete_exchange_goes_with_its_last_binding() {
        let mut h = Harness::new();
        h.live(1, None);
        h.create_topic("q1", 1, 1);
        let mut temp = exchange("temp", ExchangeType::Direct);
        temp.auto_delete = true;
        h.handle(ControllerRequest::DeclareExchange { exchange: temp });
        for key in ["a", "b"] {
            h.handle(ControllerRequest::Bind {
                binding: binding("temp", "q1", key),
            });
        }
        h.handle(ControllerRequest::Unbind {
            binding: binding("temp", "q1", "a"),
        });
        assert!(h.image.exchange("temp").is_some());
        let (records, _) = h.handle(ControllerRequest::Unbind {
            binding: binding("temp", "q1", "b"),
        });
        assert_eq!(records.len(), 2, "{records:?}");
        assert!(h.image.exchange("temp").is_none());
    }

    #[test]
    fn records_that_do_not_fit_the_image_are_refused() {
        let mut h = Harness::new();
        h.live(1, None);
        h.create_topic("q1", 1, 1);
        let mut image = h.image.clone();
        let dangling = MetadataRecord::BindingCreated {
            binding: binding("nope", "q1", ""),
        };
        assert!(image.apply(&dangling).is_err());
        let gone = MetadataRecord::BindingDeleted {
            binding: binding("amq.direct", "q1", ""),
        };
        assert!(image.apply(&gone).is_err());
        let ok = MetadataRecord::BindingCreated {
            binding: binding("amq.direct", "q1", "k"),
        };
        image.apply(&ok).unwrap();
        assert!(image.apply(&ok).is_err());
        // A snapshot keeps them, and an old snapshot without them reads as none.
        let json = serde_json::to_string(&image).unwrap();
        let back: MetadataImage = serde_json::from_str(&json).unwrap();
        assert_eq!(back.total_bindings(), 1);
        assert_eq!(back, image);
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        old.as_object_mut().unwrap().remove("exchanges");
        let back: MetadataImage = serde_json::from_value(old).unwrap();
        assert_eq!(back.total_bindings(), 0);
    }

    /// A broker of an older release (metadata level 0) cannot apply an exchange record:
    /// while one is unfenced, no exchange is declared; once it says (or a newer release
    /// of it says) it reads level 1, the same declaration goes through.
    #[test]
    fn exchanges_wait_for_every_unfenced_broker_to_read_their_metadata_level() {
        use crate::controller::records::METADATA_LEVEL;
        let mut h = Harness::new();
        h.live(1, None);
        h.live(2, None);
        let old_heartbeat = |h: &mut Harness, level: u16| {
            let epoch = h.epoch(2);
            let offset = h.image.next_offset() - 1;
            h.ok(ControllerRequest::BrokerHeartbeat {
                node: 2,
                broker_epoch: epoch,
                metadata_offset: offset,
                want_shutdown: false,
                metadata_level: level,
            })
        };
        old_heartbeat(&mut h, 0);
        let logs = exchange("logs", ExchangeType::Fanout);
        let declare = ControllerRequest::DeclareExchange {
            exchange: logs.clone(),
        };
        match h.refused(declare.clone()) {
            ControllerError::MetadataLevelTooLow { needed, behind } => {
                assert_eq!((needed, behind), (1, vec![2]));
            }
            other => panic!("{other:?}"),
        }
        assert!(h.image.exchange("logs").is_none(), "nothing written");
        old_heartbeat(&mut h, METADATA_LEVEL);
        let (records, _) = h.handle(declare);
        assert_eq!(records.len(), 1, "{records:?}");
        // A new active controller has heard nobody's level yet: it waits for the
        // heartbeats (each broker sends one every interval).
        let image = h.image.clone();
        h.controller.activate(&image, h.now, &BTreeMap::new());
        let other = ControllerRequest::DeclareExchange {
            exchange: exchange("other", ExchangeType::Direct),
        };
        match h.refused(other.clone()) {
            ControllerError::MetadataLevelTooLow { behind, .. } => assert_eq!(behind, [1, 2]),
            refusal => panic!("{refusal:?}"),
        }
        h.heartbeat(1);
        h.heartbeat(2);
        let (records, _) = h.handle(other);
        assert_eq!(records.len(), 1, "{records:?}");
    }
}
