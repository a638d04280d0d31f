//! Exchanges and bindings for every protocol (AMQP's today; docs/amqp.md § Exchanges and
//! bindings): declared, deleted, bound and unbound through the controller, so every
//! broker sees them, and [`route`], which queues (topics) a message published to an
//! exchange goes to. The matchers are `exchanges/matching.rs`.
//!
//! Authorisation (the ACL resources, written down in docs/amqp.md § Exchanges and
//! bindings). An exchange's name is in the topics' namespace (a virtual host `V`'s are
//! all `V.…`, as its queues' topics are), so each operation is allowed by the cluster
//! operation, or by the topic operation on the exchange's name, as creating a topic is:
//! - declaring an exchange is Create on the cluster or on the topic of its name; a
//!   passive declare (looking one up) Describe on either;
//! - deleting one is Alter on the cluster or Delete on the topic of its name;
//! - binding a queue to an exchange and unbinding it is Write on the queue's topic (a
//!   binding makes messages flow into it);
//! - binding an exchange to an exchange and unbinding it is Create on the cluster, or on
//!   the topics of both names, as declaring both would be;
//! - publishing needs no more than the produce to each routed queue, Write on its topic.
//!
//! So a PREFIXED ACL on `V.` gives a user vhost `V` whole, and nothing of another's.

mod matching;

use std::collections::{BTreeMap, BTreeSet};

use weir_cluster::controller::MetadataImage;
use weir_cluster::security::Operation;

pub use matching::{X_MATCH, X_MATCH_VALUES, headers_match, topic_matches};
pub use weir_cluster::exchanges::{
    ALTERNATE_EXCHANGE, DEFAULT_EXCHANGE_ALIAS, ExchangeType, MAX_ARGUMENT_NAME_BYTES,
    MAX_ARGUMENT_VALUE_BYTES, MAX_ARGUMENTS, MAX_BINDINGS, MAX_BINDINGS_PER_EXCHANGE,
    MAX_EXCHANGE_NAME_BYTES, MAX_EXCHANGES, MAX_ROUTING_KEY_BYTES, MAX_VHOST_NAME_BYTES,
    PREDECLARED, RESERVED_PREFIX, StoredBinding as Binding, StoredExchange as Exchange,
    StoredExchangeBinding as ExchangeBinding, StoredQueue as QueueDeclaration,
    default_exchange_namespace, is_default_exchange, is_vhost_name, predeclared, predeclared_kind,
    validate_exchange_name,
};

use crate::{Broker, BrokerError, Reason, RequestContext};

/// The exchange `name` as it stands (predeclared or declared), if it exists. No
/// authorisation: the caller's (a passive declare asks [`describe`]).
pub fn lookup(broker: &Broker, name: &str) -> Option<Exchange> {
    predeclared(name).or_else(|| broker.registry().cluster().image().exchange(name).cloned())
}

/// Whether the exchange `name` is internal (published to only through bindings), if it
/// exists; copies nothing (every publish asks it).
pub fn internal(broker: &Broker, name: &str) -> Option<bool> {
    if predeclared_kind(name).is_some() {
        return Some(false);
    }
    broker
        .registry()
        .cluster()
        .image()
        .exchange(name)
        .map(|e| e.internal)
}

/// The exchange `name` for a passive declare: Describe on the cluster or the topic of its
/// name, NOT_FOUND if it does not exist.
pub fn describe(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
) -> Result<Exchange, BrokerError> {
    broker.authorize_cluster_or_topic(ctx, Operation::Describe, Operation::Describe, name)?;
    lookup(broker, name).ok_or_else(|| unknown_exchange(name))
}

/// Declares `exchange`; nothing changes if it exists with the same settings, a conflict
/// (STATE_CONFLICT) if with others. Returns once this broker's metadata has it.
pub async fn declare(
    broker: &Broker,
    ctx: &RequestContext,
    exchange: Exchange,
) -> Result<(), BrokerError> {
    broker.authorize_cluster_or_topic(ctx, Operation::Create, Operation::Create, &exchange.name)?;
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
    broker.authorize_cluster_or_topic(ctx, Operation::Alter, Operation::Delete, name)?;
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

/// Whether the request may bind or unbind `binding`: Create on the cluster, or on the
/// topics of both its exchanges' names.
fn authorize_exchange_binding(
    broker: &Broker,
    ctx: &RequestContext,
    binding: &ExchangeBinding,
) -> Result<(), BrokerError> {
    for name in [&binding.source, &binding.destination] {
        broker.authorize_cluster_or_topic(ctx, Operation::Create, Operation::Create, name)?;
    }
    Ok(())
}

/// Binds the exchange `binding.destination` to `binding.source` (NOT_FOUND if either
/// does not exist); binding twice is binding once.
pub async fn bind_exchange(
    broker: &Broker,
    ctx: &RequestContext,
    binding: ExchangeBinding,
) -> Result<(), BrokerError> {
    authorize_exchange_binding(broker, ctx, &binding)?;
    if let Some(exchange) = lookup(broker, &binding.source)
        && exchange.kind == ExchangeType::Headers
        && let Some(mode) = binding.arguments.get(X_MATCH)
    {
        check_x_match(mode)?;
    }
    Ok(broker.registry().cluster().bind_exchange(binding).await?)
}

/// Removes an exchange-to-exchange binding (NOT_FOUND if either exchange does not
/// exist; nothing if the binding does not).
pub async fn unbind_exchange(
    broker: &Broker,
    ctx: &RequestContext,
    binding: ExchangeBinding,
) -> Result<(), BrokerError> {
    authorize_exchange_binding(broker, ctx, &binding)?;
    Ok(broker.registry().cluster().unbind_exchange(binding).await?)
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

/// Every queue declaration the caller may describe (Describe on the queue's topic), in
/// name order: what the console lists as queues.
pub fn queue_declarations(broker: &Broker, ctx: &RequestContext) -> Vec<QueueDeclaration> {
    broker
        .registry()
        .cluster()
        .image()
        .queue_declarations()
        .filter(|q| {
            broker
                .authorize_topic(ctx, Operation::Describe, &q.name)
                .is_ok()
        })
        .cloned()
        .collect()
}

/// One exchange with what it routes to: the console's exchange pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeOverview {
    pub exchange: Exchange,
    /// Predeclared (exists in every cluster, without a record).
    pub predeclared: bool,
    /// Its bindings to queues, in order.
    pub bindings: Vec<Binding>,
    /// Its bindings to other exchanges (it is their source), in order.
    pub to_exchanges: Vec<ExchangeBinding>,
    /// The bindings of other exchanges to it (it is their destination).
    pub from_exchanges: Vec<ExchangeBinding>,
}

/// Every exchange, the predeclared ones first, with its bindings: Describe on the
/// cluster, as a passive declare of each is.
pub fn overview(
    broker: &Broker,
    ctx: &RequestContext,
) -> Result<Vec<ExchangeOverview>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::Describe)?;
    let image = broker.registry().cluster().image();
    let predeclared = PREDECLARED.iter().filter_map(|(name, _)| predeclared(name));
    let declared = image.exchanges().cloned();
    Ok(predeclared
        .map(|e| (e, true))
        .chain(declared.map(|e| (e, false)))
        .map(|(exchange, predeclared)| ExchangeOverview {
            bindings: image.bindings(&exchange.name).cloned().collect(),
            to_exchanges: image.exchange_bindings(&exchange.name).cloned().collect(),
            from_exchanges: image
                .exchange_bindings_to(&exchange.name)
                .cloned()
                .collect(),
            exchange,
            predeclared,
        })
        .collect())
}

/// Every binding to the queue `queue` (its topic's name), of every exchange, in order:
/// Describe on the cluster, as [`overview`]. The default exchange's binding of every
/// queue, under its own name, is not stored and not listed.
pub fn bindings_to(
    broker: &Broker,
    ctx: &RequestContext,
    queue: &str,
) -> Result<Vec<Binding>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::Describe)?;
    let image = broker.registry().cluster().image();
    let mut bindings: Vec<Binding> = image.bindings_to(queue).cloned().collect();
    bindings.sort();
    Ok(bindings)
}

/// How many bindings the exchange `name` has.
pub fn binding_count(broker: &Broker, name: &str) -> usize {
    broker.registry().cluster().image().binding_count(name)
}

/// The queues a message published to `exchange` with `routing_key` and `headers` (name
/// and value as text) goes to, each once, in name order; none is a message nobody
/// receives. The default exchange (`""`) routes to the queue named by the routing key;
/// the others by their type over their bindings, to queues and to exchanges, which route
/// it again as if it were published to them (each exchange once per publish: a cycle
/// ends where it comes back); an exchange whose bindings match nothing hands the message
/// to its `alternate-exchange`, if it names one that exists. NOT_FOUND if `exchange` does
/// not exist. Only queues that exist are named (a binding goes with its queue, this only
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
    let kind_of =
        |name: &str| predeclared_kind(name).or_else(|| image.exchange(name).map(|e| e.kind));
    if kind_of(exchange).is_none() {
        return Err(unknown_exchange(exchange));
    }
    let matches = |kind: ExchangeType, key: &str, arguments: &BTreeMap<String, String>| match kind {
        ExchangeType::Direct => key == routing_key,
        ExchangeType::Fanout => true,
        ExchangeType::Topic => topic_matches(key, routing_key),
        ExchangeType::Headers => headers_match(arguments, headers),
    };
    let mut queues: BTreeSet<&str> = BTreeSet::new();
    let mut visited: BTreeSet<&str> = BTreeSet::from([exchange]);
    let mut pending: Vec<&str> = vec![exchange];
    while let Some(name) = pending.pop() {
        if let Some(namespace) = default_exchange_namespace(name) {
            // A default exchange: the queue named by the routing key, in its namespace
            // (vhost `V`'s default exchange `V.amq.default` routes `q` to `V.q`).
            if let Some(topic) = image.topic(&format!("{namespace}{routing_key}")) {
                queues.insert(topic.name.as_str());
            }
            continue;
        }
        let Some(kind) = kind_of(name) else {
            // A destination or alternate exchange that does not exist routes nothing.
            continue;
        };
        let mut routed = false;
        for b in image.bindings(name) {
            if matches(kind, &b.routing_key, &b.arguments) {
                routed = true;
                if image.topic(&b.queue).is_some() {
                    queues.insert(b.queue.as_str());
                }
            }
        }
        for b in image.exchange_bindings(name) {
            if matches(kind, &b.routing_key, &b.arguments) {
                routed = true;
                if visited.insert(b.destination.as_str()) {
                    pending.push(b.destination.as_str());
                }
            }
        }
        if !routed
            && let Some(alternate) = image
                .exchange(name)
                .and_then(|e| e.arguments.get(ALTERNATE_EXCHANGE))
            && visited.insert(alternate.as_str())
        {
            pending.push(alternate.as_str());
        }
    }
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
