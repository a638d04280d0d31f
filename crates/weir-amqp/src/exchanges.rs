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
use crate::vhost::Vhost;

/// The default exchange's name as the core knows it (`amq.default` is another name of
/// `""`, as in RabbitMQ).
pub fn canonical(name: &str) -> &str {
    if name == "amq.default" { "" } else { name }
}

/// Whether `name` is the default exchange.
pub fn is_default(name: &str) -> bool {
    canonical(name).is_empty()
}

/// The 404 for an exchange of `vhost` that does not exist (`local`: its name there).
pub fn not_found(vhost: &Vhost, local: &str) -> Reply {
    Reply::channel(
        NOT_FOUND,
        format!("no {}", vhost.describe("exchange", local)),
    )
}

/// Whether a `basic.publish` in `vhost` may go to its exchange `local`: it must exist
/// (404) and not be internal (403).
pub fn check_publish(shared: &Shared, vhost: &Vhost, local: &str) -> Result<(), Reply> {
    let on = |reply: Reply| reply.on(60, 40);
    if is_default(local) {
        return Ok(());
    }
    match exchanges::internal(&shared.broker, &vhost.exchange(local)) {
        None => Err(on(not_found(vhost, local))),
        Some(true) => Err(on(Reply::channel(
            ACCESS_REFUSED,
            format!(
                "cannot publish to internal {}",
                vhost.describe("exchange", local)
            ),
        ))),
        Some(false) => Ok(()),
    }
}

/// `exchange.declare` in `vhost`.
pub async fn declare(
    shared: &Shared,
    ctx: &RequestContext,
    vhost: &Vhost,
    method: &exchange::Declare,
) -> Result<(), Reply> {
    let on = |reply: Reply| reply.on(40, 10);
    let name = canonical(method.exchange.as_str());
    let qualified = vhost.exchange(name);
    if method.passive {
        if name.is_empty() {
            return Ok(());
        }
        return exchanges::describe(&shared.broker, ctx, &qualified)
            .map(|_| ())
            .map_err(|e| match e.reason {
                Reason::NotFound => on(not_found(vhost, name)),
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
    let arguments = arguments(vhost, &method.arguments).map_err(on)?;
    let wanted = Exchange {
        name: qualified.to_string(),
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
    if let Err(e) = exchanges::validate_exchange_name(&qualified) {
        return Err(on(Reply::channel(PRECONDITION_FAILED, e.to_string())));
    }
    exchanges::declare(&shared.broker, ctx, wanted)
        .await
        .map_err(|e| match e.reason {
            Reason::StateConflict => on(Reply::channel(
                PRECONDITION_FAILED,
                format!(
                    "inequivalent arg for {}: {}",
                    vhost.describe("exchange", name),
                    e.message
                ),
            )),
            _ => on(from_broker(&e)),
        })
}

/// `exchange.delete` in `vhost`: a missing exchange is deleted already (as RabbitMQ
/// answers).
pub async fn delete(
    shared: &Shared,
    ctx: &RequestContext,
    vhost: &Vhost,
    method: &exchange::Delete,
) -> Result<(), Reply> {
    let on = |reply: Reply| reply.on(40, 20);
    let name = canonical(method.exchange.as_str());
    let qualified = vhost.exchange(name);
    if exchanges::predeclared(&qualified).is_some() {
        return Err(on(Reply::channel(
            ACCESS_REFUSED,
            format!("operation not permitted on predeclared exchange '{name}'"),
        )));
    }
    exchanges::delete(&shared.broker, ctx, &qualified, method.if_unused)
        .await
        .map_err(|e| match e.reason {
            Reason::StateConflict => on(Reply::channel(
                PRECONDITION_FAILED,
                format!("{} in use", vhost.describe("exchange", name)),
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

/// `queue.bind` or `queue.unbind` in `vhost` (`queue` is the queue's name there, the
/// channel's last when the method left it empty): the same look-ups and checks, then the
/// core adds or removes the binding.
#[allow(clippy::too_many_arguments)] // a method's fields, and where it runs
pub async fn change_binding(
    shared: &Shared,
    ctx: &RequestContext,
    vhost: &Vhost,
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
    let binding = binding(shared, vhost, queue, exchange, routing_key, arguments).map_err(on)?;
    let changed = match change {
        BindingChange::Bind => exchanges::bind(&shared.broker, ctx, binding).await,
        BindingChange::Unbind => exchanges::unbind(&shared.broker, ctx, binding).await,
    };
    changed.map_err(|e| on(from_broker(&e)))
}

/// `exchange.bind` or `exchange.unbind` (RabbitMQ's exchange-to-exchange bindings):
/// what `source` routes under `routing_key` goes on to `destination`. Neither may be the
/// default exchange (403, as RabbitMQ), both must exist (404); then the core adds or
/// removes the binding. The names are `vhost`'s.
#[allow(clippy::too_many_arguments)] // a method's fields, and where it runs
pub async fn change_exchange_binding(
    shared: &Shared,
    ctx: &RequestContext,
    vhost: &Vhost,
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
        if exchanges::lookup(&shared.broker, &vhost.exchange(name)).is_none() {
            return Err(on(not_found(vhost, name)));
        }
    }
    let binding = ExchangeBinding {
        source: vhost.exchange(source).into_owned(),
        destination: vhost.exchange(destination).into_owned(),
        routing_key: routing_key.to_owned(),
        arguments: argument_texts(arguments),
    };
    let changed = match change {
        BindingChange::Bind => exchanges::bind_exchange(&shared.broker, ctx, binding).await,
        BindingChange::Unbind => exchanges::unbind_exchange(&shared.broker, ctx, binding).await,
    };
    changed.map_err(|e| on(from_broker(&e)))
}

/// The binding a `queue.bind`/`unbind` in `vhost` names, once its queue and exchange are
/// found.
fn binding(
    shared: &Shared,
    vhost: &Vhost,
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
    let (qualified_queue, qualified_exchange) =
        (vhost.queue(queue), vhost.exchange(exchange).into_owned());
    if !queues::exists(shared, &qualified_queue) {
        return Err(queues::not_found(vhost, queue));
    }
    if exchanges::lookup(&shared.broker, &qualified_exchange).is_none() {
        return Err(not_found(vhost, exchange));
    }
    Ok(Binding {
        exchange: qualified_exchange,
        queue: qualified_queue,
        routing_key: routing_key.to_owned(),
        arguments: argument_texts(arguments),
    })
}

/// A declare's arguments as text. An `alternate-exchange` must be a string (RabbitMQ
/// ignores another type with a warning; Weir refuses it, so the client learns it has
/// none), `vhost`'s exchange of that name; it need not exist yet, as in RabbitMQ
/// (routing skips one that does not).
fn arguments(
    vhost: &Vhost,
    table: &FieldTable,
) -> Result<std::collections::BTreeMap<String, String>, Reply> {
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
    let mut texts = argument_texts(table);
    if let Some(alternate) = texts.get_mut(exchanges::ALTERNATE_EXCHANGE) {
        *alternate = vhost.exchange(alternate).into_owned();
    }
    Ok(texts)
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
        let root = Vhost::root();
        assert_eq!(arguments(&root, &table).unwrap()["x-custom"], "1");
        table.insert(
            "alternate-exchange".into(),
            AMQPValue::LongString("ae".into()),
        );
        assert_eq!(
            arguments(&root, &table).unwrap()["alternate-exchange"],
            "ae"
        );
        let sales = Vhost::named("sales").unwrap();
        assert_eq!(
            arguments(&sales, &table).unwrap()["alternate-exchange"],
            "sales.ae"
        );
        table.insert("alternate-exchange".into(), AMQPValue::LongInt(1));
        let refused = arguments(&root, &table).unwrap_err();
        assert_eq!(refused.code, PRECONDITION_FAILED);
    }
}
