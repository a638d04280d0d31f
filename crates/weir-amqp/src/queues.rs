//! Queues as topics and share groups (docs/amqp.md § The mapping): `queue.declare`
//! creates the topic (one partition) whose share group, named after the queue, reads it
//! from its first record; `queue.delete` and `queue.purge`; the message count the
//! declare, delete and get answers carry.

use std::collections::BTreeMap;
use std::time::Duration;

use amq_protocol::protocol::queue;
use amq_protocol::types::{AMQPValue, FieldTable};
use weir_broker::exchanges::{self, QueueDeclaration};
use weir_broker::offsets::{self, OffsetSpec};
use weir_broker::shares::{self, GroupSettings, StartReset, StartTarget};
use weir_broker::{Reason, RequestContext, topics};

use crate::Shared;
use crate::errors::{
    ACCESS_REFUSED, NOT_FOUND, PRECONDITION_FAILED, RESOURCE_LOCKED, Reply, from_broker,
};
use crate::properties::argument_texts;
use crate::vhost::Vhost;

/// The prefix of names the server gives (`queue.declare` with an empty name), which
/// clients may not declare themselves (as in RabbitMQ).
const SERVER_NAMED_PREFIX: &str = "amq.";

/// How long a declare waits for a new queue's partition to take produces (its leader
/// elected) before answering anyway.
const NEW_QUEUE_READY_WAIT: Duration = Duration::from_secs(5);

/// The queue types a declare may name (every Weir queue is replicated and durable, so
/// `classic` and `quorum` are both what it is).
const SERVED_QUEUE_TYPES: [&str; 2] = ["classic", "quorum"];
/// Longest `x-message-ttl` (and per-message `expiration` delay kept): the share groups'
/// longest delay, 7 days.
pub const MAX_MESSAGE_TTL_MS: u64 = shares::MAX_MESSAGE_TTL_MS;
/// Highest `x-delivery-limit`: a message is delivered at most this many times plus one.
pub const MAX_DELIVERY_LIMIT: u64 = shares::MAX_DELIVERY_COUNT_LIMIT as u64 - 1;
/// Highest `x-max-length` (RabbitMQ takes any non-negative integer; the share group
/// counts in offsets).
pub const MAX_QUEUE_LENGTH: u64 = shares::MAX_LENGTH;

/// What a queue does once `x-max-length` ready messages wait in it (`x-overflow`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overflow {
    /// The oldest ready messages are dropped (dead-lettered with reason `maxlen` where
    /// the queue has a dead-letter exchange): RabbitMQ's default. The share group does it.
    #[default]
    DropHead,
    /// A publish into the full queue is refused: nacked under confirms, dropped
    /// otherwise. This listener does it, before the produce.
    RejectPublish,
}

/// What a queue's arguments set, once checked ([`check_arguments`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueArguments {
    pub message_ttl_ms: Option<u64>,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    /// `x-delivery-limit`: unsuccessful deliveries allowed before a message is
    /// dead-lettered (RabbitMQ's quorum queues' meaning: delivered at most limit + 1 times).
    pub delivery_limit: Option<u64>,
    /// `x-expires`: the queue is deleted once unused this long (this listener's clock).
    pub expires_ms: Option<u64>,
    /// `x-max-length`: most ready messages (delivered, unacknowledged ones not counted).
    pub max_length: Option<u64>,
    /// `x-overflow`: what the bound does.
    pub overflow: Overflow,
}

impl QueueArguments {
    /// Whether the queue's share group needs settings of its own.
    fn configures(&self) -> bool {
        self.message_ttl_ms.is_some()
            || self.dead_letter_exchange.is_some()
            || self.delivery_limit.is_some()
            || self.max_length.is_some()
    }

    /// The share group's settings these arguments make.
    fn settings(&self) -> GroupSettings {
        GroupSettings {
            delivery_count_limit: self
                .delivery_limit
                .map(|n| u16::try_from(n + 1).unwrap_or(u16::MAX)),
            message_ttl_ms: self.message_ttl_ms,
            dead_letter_exchange: self.dead_letter_exchange.clone(),
            dead_letter_routing_key: self.dead_letter_routing_key.clone(),
            // The share group drops the head; a queue that refuses publishes instead is
            // bounded here, at the publish ([`publish_refusal`]).
            max_length: self
                .max_length
                .filter(|_| self.overflow == Overflow::DropHead),
            ..GroupSettings::default()
        }
    }
}

/// Longest `x-expires` (RabbitMQ's bound too: its timers take at most 2^32 - 1 ms).
pub const MAX_QUEUE_EXPIRES_MS: u64 = u32::MAX as u64;
/// How often the listener looks for queues unused past their `x-expires`.
pub const EXPIRES_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Most queues one check deletes (the rest wait for the next).
pub const MAX_EXPIRED_QUEUES_PER_CHECK: usize = 100;

/// A queue declared with `x-expires` through this listener: deleted once unused that
/// long (no consumer, no `basic.get`, no redeclare), with the rights of the connection
/// that declared it.
#[derive(Debug, Clone)]
pub struct Expiring {
    pub expires_ms: u64,
    pub last_used: tokio::time::Instant,
    pub ctx: RequestContext,
    pub vhost: Vhost,
}

/// Queue `name` was used now (declared, read, a consumer left it).
pub fn touch(shared: &Shared, name: &str) {
    if let Some(e) = shared.expiring.lock().expect("expiring").get_mut(name) {
        e.last_used = tokio::time::Instant::now();
    }
}

/// Deletes, every [`EXPIRES_CHECK_INTERVAL`], the queues unused past their `x-expires`
/// (at most [`MAX_EXPIRED_QUEUES_PER_CHECK`] a time), until `stopping` or the listener
/// is gone.
pub async fn expire_unused_queues(
    shared: std::sync::Weak<Shared>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EXPIRES_CHECK_INTERVAL) => {}
            _ = stopping.changed() => return,
        }
        if *stopping.borrow() {
            return;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = tokio::time::Instant::now();
        let due: Vec<(String, RequestContext, Vhost)> = shared
            .expiring
            .lock()
            .expect("expiring")
            .iter()
            .filter(|(name, e)| {
                now.duration_since(e.last_used) >= Duration::from_millis(e.expires_ms)
                    && consumer_count(&shared, name) == 0
            })
            .take(MAX_EXPIRED_QUEUES_PER_CHECK)
            .map(|(name, e)| (name.clone(), e.ctx.clone(), e.vhost.clone()))
            .collect();
        for (name, ctx, vhost) in due {
            let method = queue::Delete {
                queue: vhost.local(&name).into(),
                if_unused: true,
                if_empty: false,
                nowait: false,
            };
            match delete(&shared, &ctx, &vhost, &method).await {
                Ok(_) => {
                    tracing::info!(queue = name, "queue deleted: unused past its x-expires");
                    shared.expiring.lock().expect("expiring").remove(&name);
                }
                // In use again (a consumer came between), or the core cannot now: the
                // next check looks again.
                Err(reply) => {
                    tracing::debug!(queue = name, error = %reply.text, "expiring a queue failed")
                }
            }
        }
    }
}

/// What this broker remembers of a queue declared through it: the connection that
/// declared it exclusive (deleted with it, and locked to others). Its flags and
/// arguments are in the cluster's metadata (`weir_broker::exchanges::queue_declaration`).
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub owner: Option<String>,
}

/// The answer to a declare: the queue's name in the vhost (server-named or as asked),
/// its message and consumer counts.
#[derive(Debug)]
pub struct DeclareOk {
    pub queue: String,
    pub message_count: u32,
    pub consumer_count: u32,
}

/// A new server-generated queue name, `amq.gen-` and 32 hex digits.
pub fn server_name() -> String {
    format!("{SERVER_NAMED_PREFIX}gen-{}", uuid::Uuid::new_v4().simple())
}

/// Whether `name` is a topic this broker knows.
pub fn exists(shared: &Shared, name: &str) -> bool {
    shared.broker.registry().topic(name).is_ok()
}

/// `queue.declare` in `vhost`; `connection` names the declaring connection (exclusive
/// queues).
pub async fn declare(
    shared: &Shared,
    ctx: &RequestContext,
    vhost: &Vhost,
    connection: &str,
    method: &queue::Declare,
) -> Result<DeclareOk, Reply> {
    let on = |reply: Reply| reply.on(50, 10);
    let mut local = method.queue.as_str().to_owned();
    if method.passive {
        let name = vhost.queue(&local);
        if local.is_empty() || !exists(shared, &name) {
            return Err(on(not_found(vhost, &local)));
        }
        return Ok(DeclareOk {
            message_count: message_count(shared, ctx, &name).await,
            consumer_count: consumer_count(shared, &name),
            queue: local,
        });
    }
    if local.is_empty() {
        local = server_name();
    } else if local.starts_with(SERVER_NAMED_PREFIX) {
        return Err(on(Reply::channel(
            ACCESS_REFUSED,
            format!(
                "queue name '{local}' contains reserved prefix '{SERVER_NAMED_PREFIX}*' \
                 (the broker names such queues: declare with an empty name)"
            ),
        )));
    }
    let described = vhost.describe("queue", &local);
    let name = vhost.queue(&local);
    let arguments = check_arguments(&described, vhost, &method.arguments).map_err(on)?;
    let wanted = QueueDeclaration {
        name: name.clone(),
        durable: method.durable,
        exclusive: method.exclusive,
        auto_delete: method.auto_delete,
        arguments: argument_texts(&method.arguments),
    };
    let owner = method.exclusive.then(|| connection.to_owned());
    if let Some(known) = shared.declared.lock().expect("declared").get(&name)
        && let Some(owner) = &known.owner
        && owner != connection
    {
        return Err(on(Reply::channel(
            RESOURCE_LOCKED,
            format!(
                "cannot obtain exclusive access to locked {described}: another connection \
                 declared it exclusive"
            ),
        )));
    }
    let inequivalent = |what: &str| {
        on(Reply::channel(
            PRECONDITION_FAILED,
            format!("{what} for {described}"),
        ))
    };
    let known = exchanges::queue_declaration(&shared.broker, &name);
    if let Some(what) = known.as_ref().and_then(|k| k.difference(&wanted)) {
        return Err(inequivalent(&what));
    }
    // Declared as asked already (a redeclare, as clients make before each use): no
    // controller call.
    let recorded = known.is_some() && exists(shared, &name);
    let created =
        match topics::create_topic(&shared.broker, ctx, &name, 1, 0, BTreeMap::new()).await {
            Ok(_) => true,
            Err(e) if e.reason == Reason::TopicAlreadyExists => false,
            Err(e) => {
                let mut reply = from_broker(&e);
                if matches!(e.reason, Reason::InvalidTopicName | Reason::InvalidRequest) {
                    reply = Reply::channel(
                        PRECONDITION_FAILED,
                        format!(
                            "queue name '{local}' cannot be a Weir queue: a queue is the topic \
                             '{name}', and {}",
                            e.message
                        ),
                    );
                }
                return Err(on(reply));
            }
        };
    if created {
        wait_writable(shared, ctx, &name).await;
    }
    // The share group takes the arguments' settings before the declaration is recorded,
    // so a recorded declaration always has them (a declare that fails here is retried
    // whole).
    if !recorded && arguments.configures() {
        shares::configure(&shared.broker, ctx, &name, arguments.settings(), true)
            .await
            .map_err(|e| on(from_broker(&e)))?;
        shares::attach(&shared.broker, ctx, &name, &name)
            .await
            .map_err(|e| on(from_broker(&e)))?;
    }
    let declared = if recorded {
        Ok(())
    } else {
        exchanges::declare_queue(&shared.broker, ctx, wanted).await
    };
    match declared {
        Ok(()) => {}
        Err(e) if e.reason == Reason::StateConflict => {
            return Err(on(Reply::channel(
                PRECONDITION_FAILED,
                format!("{described}: {}", e.message),
            )));
        }
        Err(e) => return Err(on(from_broker(&e))),
    }
    shared
        .declared
        .lock()
        .expect("declared")
        .entry(name.clone())
        .or_insert(Declared { owner });
    if let Some(expires_ms) = arguments.expires_ms {
        shared.expiring.lock().expect("expiring").insert(
            name.clone(),
            Expiring {
                expires_ms,
                last_used: tokio::time::Instant::now(),
                ctx: ctx.clone(),
                vhost: vhost.clone(),
            },
        );
    }
    Ok(DeclareOk {
        message_count: if created {
            0
        } else {
            message_count(shared, ctx, &name).await
        },
        consumer_count: consumer_count(shared, &name),
        queue: local,
    })
}

/// RabbitMQ's name for a field's type, as its argument errors give it.
fn type_name(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) => "shortstr",
        AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}

/// An integer argument's value; any other type is not one.
fn integer(value: &AMQPValue) -> Option<i128> {
    Some(match value {
        AMQPValue::ShortShortInt(v) => i128::from(*v),
        AMQPValue::ShortShortUInt(v) => i128::from(*v),
        AMQPValue::ShortInt(v) => i128::from(*v),
        AMQPValue::ShortUInt(v) => i128::from(*v),
        AMQPValue::LongInt(v) => i128::from(*v),
        AMQPValue::LongUInt(v) => i128::from(*v),
        AMQPValue::LongLongInt(v) => i128::from(*v),
        _ => return None,
    })
}

/// A string argument's value; any other type is not one.
fn string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Checks a declare's arguments as RabbitMQ does (406 PRECONDITION_FAILED "invalid arg
/// ..." naming the argument and why, in its words) and returns what they set, the
/// dead-letter exchange as the core names it in `vhost`. `queue` describes the queue
/// ("queue 'q' in vhost '/'"). Arguments Weir does not serve are refused by name, so a
/// client that asks for one learns at once that it does not have it; arguments RabbitMQ
/// does not know are ignored, as it does.
pub fn check_arguments(
    queue: &str,
    vhost: &Vhost,
    arguments: &FieldTable,
) -> Result<QueueArguments, Reply> {
    let invalid = |key: &str, why: String| {
        Reply::channel(
            PRECONDITION_FAILED,
            format!("invalid arg '{key}' for {queue}: {why}"),
        )
    };
    let unacceptable = |key: &str, value: &AMQPValue| {
        invalid(key, format!("{{unacceptable_type,{}}}", type_name(value)))
    };
    let non_negative = |key: &str, value: &AMQPValue, max: u64| -> Result<u64, Reply> {
        let n = integer(value).ok_or_else(|| unacceptable(key, value))?;
        if n < 0 {
            return Err(invalid(key, format!("{{value_negative,{n}}}")));
        }
        if n > i128::from(max) {
            return Err(invalid(key, format!("{{value_too_large,{n},{max}}}")));
        }
        Ok(n as u64)
    };
    let mut out = QueueArguments::default();
    for (key, value) in arguments {
        let key = key.as_str();
        match key {
            "x-queue-type" => {
                let kind = string(value).ok_or_else(|| unacceptable(key, value))?;
                if !SERVED_QUEUE_TYPES.contains(&kind.as_str()) {
                    return Err(invalid(
                        key,
                        format!(
                            "queue type '{kind}' is not served by Weir (classic and quorum are: \
                             every Weir queue is a replicated log)"
                        ),
                    ));
                }
            }
            "x-message-ttl" => {
                out.message_ttl_ms = Some(non_negative(key, value, MAX_MESSAGE_TTL_MS)?);
            }
            "x-delivery-limit" => {
                out.delivery_limit = Some(non_negative(key, value, MAX_DELIVERY_LIMIT)?);
            }
            "x-dead-letter-exchange" => {
                let name = string(value).ok_or_else(|| unacceptable(key, value))?;
                out.dead_letter_exchange = Some(vhost.exchange(&name).into_owned());
            }
            "x-dead-letter-routing-key" => {
                let rk = string(value).ok_or_else(|| unacceptable(key, value))?;
                out.dead_letter_routing_key = Some(rk);
            }
            "x-expires" => {
                let ms = non_negative(key, value, MAX_QUEUE_EXPIRES_MS)?;
                if ms == 0 {
                    return Err(invalid(key, "{value_zero,0}".to_owned()));
                }
                out.expires_ms = Some(ms);
            }
            "x-max-length" => {
                out.max_length = Some(non_negative(key, value, MAX_QUEUE_LENGTH)?);
            }
            "x-overflow" => {
                let how = string(value).ok_or_else(|| unacceptable(key, value))?;
                out.overflow = match how.as_str() {
                    "drop-head" => Overflow::DropHead,
                    "reject-publish" => Overflow::RejectPublish,
                    "reject-publish-dlx" => {
                        return Err(Reply::channel(
                            PRECONDITION_FAILED,
                            "queue argument 'x-overflow' = 'reject-publish-dlx' is not served \
                             by Weir yet: a refused publish is not dead-lettered \
                             ('drop-head' and 'reject-publish' are served; docs/amqp.md \
                             § Queue length limits)",
                        ));
                    }
                    // RabbitMQ's words for any other value.
                    _ => return Err(invalid(key, "invalid_overflow".to_owned())),
                };
            }
            "x-max-length-bytes" => {
                return Err(Reply::channel(
                    PRECONDITION_FAILED,
                    format!(
                        "queue argument 'x-max-length-bytes' = {value:?} is not served by Weir: \
                         a queue's share group counts its ready messages, not their bytes \
                         (x-max-length is served; docs/amqp.md § Queue length limits)"
                    ),
                ));
            }
            "x-max-priority"
            | "x-single-active-consumer"
            | "x-queue-mode"
            | "x-queue-master-locator"
            | "x-queue-leader-locator"
            | "x-dead-letter-strategy"
            | "x-stream-max-segment-size-bytes"
            | "x-max-age"
            | "x-initial-cluster-size"
            | "x-quorum-initial-group-size"
            | "x-delivery-limit-strategy" => {
                return Err(Reply::channel(
                    PRECONDITION_FAILED,
                    format!(
                        "queue argument '{key}' = {value:?} is not served by Weir yet \
                         (docs/amqp.md § Not served yet)"
                    ),
                ));
            }
            // RabbitMQ ignores arguments it does not know, and so does Weir (they are
            // still kept with the declaration and compared on a redeclare).
            _ => {}
        }
    }
    if out.dead_letter_routing_key.is_some() && out.dead_letter_exchange.is_none() {
        return Err(invalid(
            "x-dead-letter-routing-key",
            "routing_key_but_no_dlx_defined".to_owned(),
        ));
    }
    Ok(out)
}

/// Waits (bounded) until the new queue's partition answers on its leader here, so a
/// publish right after the declare is not refused while the leader is being elected.
async fn wait_writable(shared: &Shared, ctx: &RequestContext, name: &str) {
    let deadline = tokio::time::Instant::now() + NEW_QUEUE_READY_WAIT;
    loop {
        let ready = matches!(
            offsets::list_offsets(&shared.broker, ctx, name, &[(0, OffsetSpec::Latest)]).await,
            Ok(answers) if answers.iter().all(Result::is_ok)
        );
        if ready || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `queue.delete` in `vhost`: the share group's state and the topic. A queue that does
/// not exist is deleted already (as RabbitMQ answers).
pub async fn delete(
    shared: &Shared,
    ctx: &RequestContext,
    vhost: &Vhost,
    method: &queue::Delete,
) -> Result<u32, Reply> {
    let on = |reply: Reply| reply.on(50, 40);
    let local = method.queue.as_str();
    let qualified = vhost.queue(local);
    let name = qualified.as_str();
    if !exists(shared, name) {
        return Ok(0);
    }
    if method.if_unused && consumer_count(shared, name) > 0 {
        return Err(on(Reply::channel(
            PRECONDITION_FAILED,
            format!("{} in use", vhost.describe("queue", local)),
        )));
    }
    let count = message_count(shared, ctx, name).await;
    if method.if_empty && count > 0 {
        return Err(on(Reply::channel(
            PRECONDITION_FAILED,
            format!("{} is not empty", vhost.describe("queue", local)),
        )));
    }
    match shares::delete_anywhere(&shared.broker, ctx, name, None).await {
        Ok(_) => {}
        Err(e) if e.reason == Reason::UnknownGroup => {}
        Err(e) => return Err(on(from_broker(&e))),
    }
    match topics::delete_topic(&shared.broker, ctx, name).await {
        Ok(()) => {}
        Err(e) if e.reason == Reason::UnknownTopic => {}
        Err(e) => return Err(on(from_broker(&e))),
    }
    shared.declared.lock().expect("declared").remove(name);
    shared.expiring.lock().expect("expiring").remove(name);
    Ok(count)
}

/// `queue.purge`: the share group starts at the partition's end, so nothing produced so
/// far is delivered (the records stay in the topic for Kafka readers). Refused (406)
/// while a consumer holds a message.
pub async fn purge(
    shared: &Shared,
    ctx: &RequestContext,
    vhost: &Vhost,
    method: &queue::Purge,
) -> Result<u32, Reply> {
    let on = |reply: Reply| reply.on(50, 30);
    let qualified = vhost.queue(method.queue.as_str());
    let name = qualified.as_str();
    if !exists(shared, name) {
        return Err(on(not_found(vhost, method.queue.as_str())));
    }
    let count = message_count(shared, ctx, name).await;
    let reset = StartReset {
        topic: name.to_owned(),
        partition: 0,
        to: StartTarget::Latest,
    };
    let answers = shares::reset_anywhere(&shared.broker, ctx, name, vec![reset])
        .await
        .map_err(|e| on(from_broker(&e)))?;
    for answer in answers {
        answer.map_err(|e| on(from_broker(&e)))?;
    }
    Ok(count)
}

/// The records of queue `name` its share group has not finished (ready and
/// unacknowledged together); 0 when it cannot be told.
pub async fn message_count(shared: &Shared, ctx: &RequestContext, name: &str) -> u32 {
    let count = match shares::describe(&shared.broker, ctx, name).await {
        Ok(view) => view
            .partitions
            .iter()
            .map(|p| (p.high_watermark - p.start).max(0))
            .sum::<i64>(),
        // No state yet: the group starts at the log start.
        Err(_) => {
            let specs = [(0, OffsetSpec::Earliest), (0, OffsetSpec::Latest)];
            match offsets::list_offsets(&shared.broker, ctx, name, &specs).await {
                Ok(found) => match (&found[0], &found[1]) {
                    (Ok(earliest), Ok(latest)) => (latest.offset - earliest.offset).max(0),
                    _ => 0,
                },
                Err(_) => 0,
            }
        }
    };
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// The consumers this broker's AMQP listeners run on queue `name` (each counted among
/// the share group's members while it lives: `ShareMembers::attach`).
pub fn consumer_count(shared: &Shared, name: &str) -> u32 {
    u32::try_from(shared.broker.share_members().attached(name)).unwrap_or(u32::MAX)
}

/// The 404 for a queue of `vhost` that does not exist (`local`: its name there).
pub fn not_found(vhost: &Vhost, local: &str) -> Reply {
    Reply::channel(NOT_FOUND, format!("no {}", vhost.describe("queue", local)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`check_arguments`] for queue `queue` of the root vhost.
    fn check(queue: &str, arguments: &FieldTable) -> Result<QueueArguments, Reply> {
        let root = Vhost::root();
        check_arguments(&root.describe("queue", queue), &root, arguments)
    }

    #[test]
    fn a_vhosts_dead_letter_exchange_is_its_own() {
        let v = Vhost::named("sales").unwrap();
        let dlx = |name: &str| {
            let t = table(&[("x-dead-letter-exchange", AMQPValue::LongString(name.into()))]);
            check_arguments(&v.describe("queue", "q"), &v, &t)
                .unwrap()
                .dead_letter_exchange
        };
        assert_eq!(dlx(""), Some("sales.amq.default".into()));
        assert_eq!(dlx("dead"), Some("sales.dead".into()));
        let t = table(&[("x-message-ttl", AMQPValue::LongInt(-1))]);
        let refused = check_arguments(&v.describe("queue", "q"), &v, &t).unwrap_err();
        assert_eq!(
            refused.text,
            "invalid arg 'x-message-ttl' for queue 'q' in vhost 'sales': {value_negative,-1}"
        );
    }

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut table = FieldTable::default();
        for (k, v) in entries {
            table.insert((*k).into(), v.clone());
        }
        table
    }

    #[test]
    fn the_served_arguments_are_read_and_the_others_refused_by_name() {
        let args = check(
            "delay",
            &table(&[
                ("x-queue-type", AMQPValue::LongString("quorum".into())),
                ("x-message-ttl", AMQPValue::LongInt(1000)),
                (
                    "x-dead-letter-exchange",
                    AMQPValue::LongString("amq.default".into()),
                ),
                (
                    "x-dead-letter-routing-key",
                    AMQPValue::LongString("work".into()),
                ),
                ("x-delivery-limit", AMQPValue::ShortShortUInt(2)),
            ]),
        )
        .unwrap();
        assert_eq!(
            args,
            QueueArguments {
                message_ttl_ms: Some(1000),
                dead_letter_exchange: Some(String::new()),
                dead_letter_routing_key: Some("work".into()),
                delivery_limit: Some(2),
                expires_ms: None,
                max_length: None,
                overflow: Overflow::DropHead,
            }
        );
        assert_eq!(args.settings().delivery_count_limit, Some(3));
        let refused =
            check("q", &table(&[("x-max-priority", AMQPValue::LongInt(10))])).unwrap_err();
        assert_eq!(refused.code, PRECONDITION_FAILED);
        assert!(refused.text.contains("x-max-priority"), "{}", refused.text);
    }

    #[test]
    fn argument_types_and_values_are_checked_in_rabbitmqs_words() {
        let text = |entries: &[(&str, AMQPValue)]| {
            let refused = check("delay", &table(entries)).unwrap_err();
            assert_eq!(refused.code, PRECONDITION_FAILED);
            refused.text
        };
        assert_eq!(
            text(&[("x-message-ttl", AMQPValue::LongString("1000".into()))]),
            "invalid arg 'x-message-ttl' for queue 'delay' in vhost '/': \
             {unacceptable_type,longstr}"
        );
        assert_eq!(
            text(&[("x-message-ttl", AMQPValue::LongInt(-1))]),
            "invalid arg 'x-message-ttl' for queue 'delay' in vhost '/': {value_negative,-1}"
        );
        assert_eq!(
            text(&[("x-dead-letter-exchange", AMQPValue::LongInt(1))]),
            "invalid arg 'x-dead-letter-exchange' for queue 'delay' in vhost '/': \
             {unacceptable_type,signedint}"
        );
        assert_eq!(
            text(&[(
                "x-dead-letter-routing-key",
                AMQPValue::LongString("k".into())
            )]),
            "invalid arg 'x-dead-letter-routing-key' for queue 'delay' in vhost '/': \
             routing_key_but_no_dlx_defined"
        );
        assert!(
            text(&[("x-message-ttl", AMQPValue::LongLongInt(i64::MAX))])
                .contains("value_too_large")
        );
    }

    #[test]
    fn a_length_bound_drops_the_head_in_the_share_group_or_rejects_at_the_publish() {
        let drop = check("q", &table(&[("x-max-length", AMQPValue::LongInt(3))])).unwrap();
        assert_eq!(drop.overflow, Overflow::DropHead);
        assert_eq!(drop.settings().max_length, Some(3));
        let reject = check(
            "q",
            &table(&[
                ("x-max-length", AMQPValue::LongInt(3)),
                ("x-overflow", AMQPValue::LongString("reject-publish".into())),
            ]),
        )
        .unwrap();
        assert_eq!(reject.overflow, Overflow::RejectPublish);
        // The listener bounds it; the group still gets windows, so it can be counted.
        assert_eq!(reject.settings().max_length, None);
        assert!(reject.configures());
        let refused = check(
            "q",
            &table(&[("x-overflow", AMQPValue::LongString("sideways".into()))]),
        )
        .unwrap_err();
        assert_eq!(
            refused.text,
            "invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"
        );
        for unserved in [
            (
                "x-overflow",
                AMQPValue::LongString("reject-publish-dlx".into()),
            ),
            ("x-max-length-bytes", AMQPValue::LongInt(1024)),
        ] {
            let refused = check("q", &table(std::slice::from_ref(&unserved))).unwrap_err();
            assert_eq!(refused.code, PRECONDITION_FAILED);
            assert!(refused.text.contains("not served"), "{}", refused.text);
        }
    }

    #[test]
    fn server_names_are_topic_names_with_the_reserved_prefix() {
        let name = server_name();
        assert!(name.starts_with("amq.gen-") && name.len() == 40, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        );
    }
}
