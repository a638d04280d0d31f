//! Exchanges and bindings (docs/amqp.md § Exchanges and bindings): `exchange.declare`
//! (passive too), `exchange.delete`, `queue.bind`, `queue.unbind`, `exchange.bind`,
//! `exchange.unbind`, and the check of a
//! publish's exchange, over the core's `weir_broker::exchanges` (replicated metadata:
//! every broker routes by the same bindings). What RabbitMQ answers itself, before any
//! state is looked at (the default exchange, the reserved `amq.` prefix, an unknown
//! type), is answered here with its codes; the rest is the core's.

use amq_protocol::protocol::exchange;
use amq_protocol::types::{AMQPValue, FieldTable};
use weir_broker::exchanges::{
    self, Binding, Exchange, ExchangeBinding, ExchangeType, RESERVED_PREFIX,
};
use weir_broker::{Reason, RequestContext};

use crate::Shared;
use crate::errors::{
    ACCESS_REFUSED, COMMAND_INVALID, NOT_FOUND, PRECONDITION_FAILED, Reply, from_broker,
};
use crate::properties::argument_texts;
use crate::queues;

/// The default exchange's name as the core knows it (`amq.default` is another name of
/// `""`, as in RabbitMQ).
pub fn canonical(name: &str) -> &str {
    if name == "amq.default" { "" } else { name }
}

/// Whether `name` is the default exchange.
pub fn is_default(name: &str) -> bool {
    canonical(name).is_empty()
}

/// The 404 for an exchange that does not exist.
pub fn not_found(name: &str) -> Reply {
    Reply::channel(NOT_FOUND, format!("no exchange '{name}' in vhost '/'"))
}

/// Whether a `basic.publish` may go to `name`: it must exist (404) and not be internal
/// (403).
pub fn check_publish(shared: &Shared, name: &str) -> Result<(), Reply> {
    let on = |reply: Reply| reply.on(60, 40);
    if is_default(name) {
        return Ok(());
    }
    match exchanges::lookup(&shared.broker, name) {
        None => Err(on(not_found(name))),
        Some(e) if e.internal => Err(on(Reply::channel(
            ACCESS_REFUSED,
            format!("cannot publish to internal exchange '{name}' in vhost '/'"),
        ))),
        Some(_) => Ok(()),
    }
}

/// `exchange.declare`.
pub async fn declare(
    shared: &Shared,
    ctx: &RequestContext,
    method: &exchange::Declare,
) -> Result<(), Reply> {
    let on = |reply: Reply| reply.on(40, 10);
    let name = canonical(method.exchange.as_str());
    if method.passive {
        if name.is_empty() {
            return Ok(());
        }
        return exchanges::describe(&shared.broker, ctx, name)
            .map(|_| ())
            .map_err(|e| match e.reason {
                Reason::NotFound => on(not_found(name)),
                _ => on(from_broker(&e)),
            });
    }
    let kind_name = method.kind.as_str();
    let Some(kind) = ExchangeType::from_name(kind_name) else {
        // RabbitMQ closes the connection for an unknown type.
        return Err(on(Reply::connection(
            COMMAND_INVALID,
            format!(
                "unknown exchange type '{kind_name}' (Weir serves direct, fanout, topic and headers)"
            ),
        )));
    };
    if name.is_empty() {
        // The default exchange exists as it is; declaring it is answered as RabbitMQ's
        // clients expect of a redeclare.
        return Ok(());
    }
    let arguments = arguments(&method.arguments).map_err(on)?;
    let wanted = Exchange {
        name: name.to_owned(),
        kind,
        durable: method.durable,
        auto_delete: method.auto_delete,
        internal: method.internal,
        arguments,
    };
    if exchanges::predeclared(name).is_none() && name.starts_with(RESERVED_PREFIX) {
        return Err(on(Reply::channel(
            ACCESS_REFUSED,
            format!(
                "exchange name '{name}' contains reserved prefix '{RESERVED_PREFIX}*' (the \
                 server's: {})",
                exchanges::PREDECLARED
                    .iter()
                    .filter(|(n, _)| !n.is_empty())
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )));
    }
    if let Err(e) = exchanges::validate_exchange_name(name) {
        return Err(on(Reply::channel(PRECONDITION_FAILED, e.to_string())));
    }
    exchanges::declare(&shared.broker, ctx, wanted)
        .await
        .map_err(|e| match e.reason {
            Reason::StateConflict => on(Reply::channel(
                PRECONDITION_FAILED,
                format!(
                    "inequivalent arg for exchange '{name}' in vhost '/': {}",
                    e.message
                ),
            )),
            _ => on(from_broker(&e)),
        })
}

/// `exchange.delete`: a missing exchange is deleted already (as RabbitMQ answers).
pub async fn delete(
    shared: &Shared,
    ctx: &RequestContext,
    method: &exchange::Delete,
) -> Result<(), Reply> {
    let on = |reply: Reply| reply.on(40, 20);
    let name = canonical(method.exchange.as_str());
    if exchanges::predeclared(name).is_some() {
        return Err(on(Reply::channel(
            ACCESS_REFUSED,
            format!("operation not permitted on predeclared exchange '{name}'"),
        )));
    }
    exchanges::delete(&shared.broker, ctx, name, method.if_unused)
        .await
        .map_err(|e| match e.reason {
            Reason::StateConflict => on(Reply::channel(
                PRECONDITION_FAILED,
                format!("exchange '{name}' in vhost '/' in use"),
            )),
            _ => on(from_broker(&e)),
        })
}

/// Which of `queue.bind` and `queue.unbind` a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingChange {
    Bind,
    Unbind,
}

/// `queue.bind` or `queue.unbind` (`queue` is the queue's name, the channel's last when
/// the method left it empty): the same look-ups and checks, then the core adds or removes
/// the binding.
pub async fn change_binding(
    shared: &Shared,
    ctx: &RequestContext,
    change: BindingChange,
    queue: &str,
    exchange: &str,
    routing_key: &str,
    arguments: &FieldTable,
) -> Result<(), Reply> {
    let method = match change {
        BindingChange::Bind => 20,
        BindingChange::Unbind => 50,
    };
    let on = |reply: Reply| reply.on(50, method);
    let binding = binding(shared, queue, exchange, routing_key, arguments).map_err(on)?;
    let changed = match change {
        BindingChange::Bind => exchanges::bind(&shared.broker, ctx, binding).await,
        BindingChange::Unbind => exchanges::unbind(&shared.broker, ctx, binding).await,
    };
    changed.map_err(|e| on(from_broker(&e)))
}

/// `exchange.bind` or `exchange.unbind` (RabbitMQ's exchange-to-exchange bindings):
/// what `source` routes under `routing_key` goes on to `destination`. Neither may be the
/// default exchange (403, as RabbitMQ), both must exist (404); then the core adds or
/// removes the binding.
pub async fn change_exchange_binding(
    shared: &Shared,
    ctx: &RequestContext,
    change: BindingChange,
    destination: &str,
    source: &str,
    routing_key: &str,
    arguments: &FieldTable,
) -> Result<(), Reply> {
    let method = match change {
        BindingChange::Bind => 30,
        BindingChange::Unbind => 40,
    };
    let on = |reply: Reply| reply.on(40, method);
    let (destination, source) = (canonical(destination), canonical(source));
    if destination.is_empty() || source.is_empty() {
        return Err(on(Reply::channel(
            ACCESS_REFUSED,
            "operation not permitted on the default exchange",
        )));
    }
    for name in [source, destination] {
        if exchanges::lookup(&shared.broker, name).is_none() {
            return Err(on(not_found(name)));
        }
    }
    let binding = ExchangeBinding {
        source: source.to_owned(),
        destination: destination.to_owned(),
        routing_key: routing_key.to_owned(),
        arguments: argument_texts(arguments),
    };
    let changed = match change {
        BindingChange::Bind => exchanges::bind_exchange(&shared.broker, ctx, binding).await,
        BindingChange::Unbind => exchanges::unbind_exchange(&shared.broker, ctx, binding).await,
    };
    changed.map_err(|e| on(from_broker(&e)))
}

/// The binding a `queue.bind`/`unbind` names, once its queue and exchange are found.
fn binding(
    shared: &Shared,
    queue: &str,
    exchange: &str,
    routing_key: &str,
    arguments: &FieldTable,
) -> Result<Binding, Reply> {
    let exchange = canonical(exchange);
    if exchange.is_empty() {
        return Err(Reply::channel(
            ACCESS_REFUSED,
            "operation not permitted on the default exchange",
        ));
    }
    if !queues::exists(shared, queue) {
        return Err(queues::not_found(queue));
    }
    if exchanges::lookup(&shared.broker, exchange).is_none() {
        return Err(not_found(exchange));
    }
    Ok(Binding {
        exchange: exchange.to_owned(),
        queue: queue.to_owned(),
        routing_key: routing_key.to_owned(),
        arguments: argument_texts(arguments),
    })
}

/// A declare's arguments as text. An `alternate-exchange` must be a string (RabbitMQ
/// ignores another type with a warning; Weir refuses it, so the client learns it has
/// none); it need not exist yet, as in RabbitMQ (routing skips one that does not).
fn arguments(table: &FieldTable) -> Result<std::collections::BTreeMap<String, String>, Reply> {
    let alternate = table
        .into_iter()
        .find(|(name, _)| name.as_str() == exchanges::ALTERNATE_EXCHANGE);
    if let Some((_, value)) = alternate
        && !matches!(value, AMQPValue::LongString(_) | AMQPValue::ShortString(_))
    {
        return Err(Reply::channel(
            PRECONDITION_FAILED,
            format!(
                "invalid arg '{}' for exchange: {{unacceptable_type,{value:?}}} (an exchange \
                 name as a string)",
                exchanges::ALTERNATE_EXCHANGE
            ),
        ));
    }
    Ok(argument_texts(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_exchange_has_two_names() {
        assert!(is_default("") && is_default("amq.default"));
        assert!(!is_default("logs") && !is_default("amq.direct"));
    }

    #[test]
    fn an_alternate_exchange_is_a_name_and_nothing_else() {
        let mut table = FieldTable::default();
        table.insert("x-custom".into(), AMQPValue::LongInt(1));
        assert_eq!(arguments(&table).unwrap()["x-custom"], "1");
        table.insert(
            "alternate-exchange".into(),
            AMQPValue::LongString("ae".into()),
        );
        assert_eq!(arguments(&table).unwrap()["alternate-exchange"], "ae");
        table.insert("alternate-exchange".into(), AMQPValue::LongInt(1));
        let refused = arguments(&table).unwrap_err();
        assert_eq!(refused.code, PRECONDITION_FAILED);
    }
}
