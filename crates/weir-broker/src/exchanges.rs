//! Exchanges and bindings for every protocol (AMQP's today; docs/amqp.md § Exchanges and
//! bindings): declared, deleted, bound and unbound through the controller, so every
//! broker sees them, and [`route`], which queues (topics) a message published to an
//! exchange goes to. The matchers are `exchanges/matching.rs`.
//!
//! Authorisation (the ACL resources, written down in docs/amqp.md § Connections):
//! - declaring an exchange is Create on the cluster (an exchange is cluster-wide, as a
//!   topic Create on the cluster allows any name); a passive declare (looking one up)
//!   is Describe on the cluster;
//! - deleting one is Alter on the cluster;
//! - binding a queue to an exchange and unbinding it is Write on the queue's topic (a
//!   binding makes messages flow into it);
//! - publishing needs no more than the produce to each routed queue, Write on its topic.

mod matching;

use std::collections::BTreeSet;

use weir_cluster::controller::MetadataImage;
use weir_cluster::security::Operation;

pub use matching::{X_MATCH, X_MATCH_VALUES, headers_match, topic_matches};
pub use weir_cluster::exchanges::{
    ExchangeType, MAX_ARGUMENT_NAME_BYTES, MAX_ARGUMENT_VALUE_BYTES, MAX_ARGUMENTS, MAX_BINDINGS,
    MAX_BINDINGS_PER_EXCHANGE, MAX_EXCHANGE_NAME_BYTES, MAX_EXCHANGES, MAX_ROUTING_KEY_BYTES,
    PREDECLARED, RESERVED_PREFIX, StoredBinding as Binding, StoredExchange as Exchange,
    StoredQueue as QueueDeclaration, predeclared, validate_exchange_name,
};

use crate::{Broker, BrokerError, Reason, RequestContext};

/// The exchange `name` as it stands (predeclared or declared), if it exists. No
/// authorisation: the caller's (a passive declare asks [`describe`]).
pub fn lookup(broker: &Broker, name: &str) -> Option<Exchange> {
    predeclared(name).or_else(|| broker.registry().cluster().image().exchange(name).cloned())
}

/// The exchange `name` for a passive declare: Describe on the cluster, NOT_FOUND if it
/// does not exist.
pub fn describe(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
) -> Result<Exchange, BrokerError> {
    broker.authorize_cluster(ctx, Operation::Describe)?;
    lookup(broker, name).ok_or_else(|| unknown_exchange(name))
}

/// Declares `exchange`; nothing changes if it exists with the same settings, a conflict
/// (STATE_CONFLICT) if with others. Returns once this broker's metadata has it.
pub async fn declare(
    broker: &Broker,
    ctx: &RequestContext,
    exchange: Exchange,
) -> Result<(), BrokerError> {
    broker.authorize_cluster(ctx, Operation::Create)?;
    if exchange.kind == ExchangeType::Headers
        && let Some(mode) = exchange.arguments.get(X_MATCH)
    {
        check_x_match(mode)?;
    }
    Ok(broker
        .registry()
        .cluster()
        .declare_exchange(exchange)
        .await?)
}

/// Deletes the exchange `name` and its bindings (nothing if it does not exist);
/// `if_unused`: a conflict while it has bindings. The predeclared exchanges cannot be
/// deleted (INVALID_REQUEST).
pub async fn delete(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    if_unused: bool,
) -> Result<(), BrokerError> {
    broker.authorize_cluster(ctx, Operation::Alter)?;
    Ok(broker
        .registry()
        .cluster()
        .delete_exchange(name.to_owned(), if_unused)
        .await?)
}

/// Binds a queue to an exchange (NOT_FOUND if either does not exist); binding twice is
/// binding once.
pub async fn bind(
    broker: &Broker,
    ctx: &RequestContext,
    binding: Binding,
) -> Result<(), BrokerError> {
    broker.authorize_topic(ctx, Operation::Write, &binding.queue)?;
    if let Some(exchange) = lookup(broker, &binding.exchange)
        && exchange.kind == ExchangeType::Headers
        && let Some(mode) = binding.arguments.get(X_MATCH)
    {
        check_x_match(mode)?;
    }
    Ok(broker.registry().cluster().bind(binding).await?)
}

/// Removes a binding (NOT_FOUND if its exchange or queue does not exist; nothing if the
/// binding does not).
pub async fn unbind(
    broker: &Broker,
    ctx: &RequestContext,
    binding: Binding,
) -> Result<(), BrokerError> {
    broker.authorize_topic(ctx, Operation::Write, &binding.queue)?;
    Ok(broker.registry().cluster().unbind(binding).await?)
}

/// The declaration of queue `name` (flags and arguments), if it was declared.
pub fn queue_declaration(broker: &Broker, name: &str) -> Option<QueueDeclaration> {
    broker
        .registry()
        .cluster()
        .image()
        .queue_declaration(name)
        .cloned()
}

/// Records a queue's declaration, so a redeclare on any broker, after a restart too, is
/// compared with it (Create on the queue's topic, as declaring the queue is); a
/// conflict if it was declared with other settings.
pub async fn declare_queue(
    broker: &Broker,
    ctx: &RequestContext,
    queue: QueueDeclaration,
) -> Result<(), BrokerError> {
    broker.authorize_topic(ctx, Operation::Create, &queue.name)?;
    Ok(broker.registry().cluster().declare_queue(queue).await?)
}

/// How many bindings the exchange `name` has.
pub fn binding_count(broker: &Broker, name: &str) -> usize {
    broker.registry().cluster().image().binding_count(name)
}

/// The queues a message published to `exchange` with `routing_key` and `headers` (name
/// and value as text) goes to, each once, in name order; none is a message nobody
/// receives. The default exchange (`""`) routes to the queue named by the routing key;
/// the others by their type over their bindings. NOT_FOUND if the exchange does not
/// exist. Only queues that exist are named (a binding goes with its queue, this only
/// covers the moment between).
pub fn route(
    broker: &Broker,
    exchange: &str,
    routing_key: &str,
    headers: &[(String, Option<String>)],
) -> Result<Vec<String>, BrokerError> {
    route_in(
        &broker.registry().cluster().image(),
        exchange,
        routing_key,
        headers,
    )
}

/// [`route`] by the metadata `image` (what the share coordinator's dead-letter copies
/// are routed by, with no client request behind them).
pub fn route_in(
    image: &MetadataImage,
    exchange: &str,
    routing_key: &str,
    headers: &[(String, Option<String>)],
) -> Result<Vec<String>, BrokerError> {
    if exchange.is_empty() {
        let exists = !routing_key.is_empty() && image.topic(routing_key).is_some();
        return Ok(exists.then(|| routing_key.to_owned()).into_iter().collect());
    }
    let kind = match predeclared(exchange) {
        Some(e) => e.kind,
        None => image
            .exchange(exchange)
            .map(|e| e.kind)
            .ok_or_else(|| unknown_exchange(exchange))?,
    };
    let queues: BTreeSet<&str> = image
        .bindings(exchange)
        .filter(|b| match kind {
            ExchangeType::Direct => b.routing_key == routing_key,
            ExchangeType::Fanout => true,
            ExchangeType::Topic => topic_matches(&b.routing_key, routing_key),
            ExchangeType::Headers => headers_match(&b.arguments, headers),
        })
        .map(|b| b.queue.as_str())
        .filter(|queue| image.topic(queue).is_some())
        .collect();
    Ok(queues.into_iter().map(str::to_owned).collect())
}

/// NOT_FOUND for an exchange that does not exist.
pub fn unknown_exchange(name: &str) -> BrokerError {
    BrokerError::new(Reason::NotFound, format!("no exchange '{name}'"))
}

fn check_x_match(mode: &str) -> Result<(), BrokerError> {
    if X_MATCH_VALUES.contains(&mode) {
        return Ok(());
    }
    Err(BrokerError::invalid(format!(
        "invalid x-match value '{mode}': one of {}",
        X_MATCH_VALUES.join(", ")
    )))
}
