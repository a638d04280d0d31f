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
use weir_broker::shares::{self, StartReset, StartTarget};
use weir_broker::{Reason, RequestContext, topics};

use crate::Shared;
use crate::errors::{
    ACCESS_REFUSED, NOT_FOUND, PRECONDITION_FAILED, RESOURCE_LOCKED, Reply, from_broker,
};
use crate::properties::argument_texts;

/// The prefix of names the server gives (`queue.declare` with an empty name), which
/// clients may not declare themselves (as in RabbitMQ).
const SERVER_NAMED_PREFIX: &str = "amq.";

/// How long a declare waits for a new queue's partition to take produces (its leader
/// elected) before answering anyway.
const NEW_QUEUE_READY_WAIT: Duration = Duration::from_secs(5);

/// The arguments a declare may carry in this stage: `x-queue-type` only (every Weir
/// queue is replicated and durable, so `classic` and `quorum` are both what it is).
const SERVED_QUEUE_TYPES: [&str; 2] = ["classic", "quorum"];

/// What this broker remembers of a queue declared through it: the connection that
/// declared it exclusive (deleted with it, and locked to others). Its flags and
/// arguments are in the cluster's metadata (`weir_broker::exchanges::queue_declaration`).
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub owner: Option<String>,
}

/// The answer to a declare: the queue's name (server-named or as asked), its message and
/// consumer counts.
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

/// `queue.declare`; `connection` names the declaring connection (exclusive queues).
pub async fn declare(
    shared: &Shared,
    ctx: &RequestContext,
    connection: &str,
    method: &queue::Declare,
) -> Result<DeclareOk, Reply> {
    let on = |reply: Reply| reply.on(50, 10);
    let mut name = method.queue.as_str().to_owned();
    if method.passive {
        if name.is_empty() || !exists(shared, &name) {
            return Err(on(not_found(&name)));
        }
        return Ok(DeclareOk {
            message_count: message_count(shared, ctx, &name).await,
            consumer_count: consumer_count(shared, &name),
            queue: name,
        });
    }
    if name.is_empty() {
        name = server_name();
    } else if name.starts_with(SERVER_NAMED_PREFIX) {
        return Err(on(Reply::channel(
            ACCESS_REFUSED,
            format!(
                "queue name '{name}' contains reserved prefix '{SERVER_NAMED_PREFIX}*' \
                 (the broker names such queues: declare with an empty name)"
            ),
        )));
    }
    check_arguments(&method.arguments).map_err(on)?;
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
                "cannot obtain exclusive access to locked queue '{name}' in vhost '/': \
                 another connection declared it exclusive"
            ),
        )));
    }
    let inequivalent = |what: &str| {
        on(Reply::channel(
            PRECONDITION_FAILED,
            format!("{what} for queue '{name}' in vhost '/'"),
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
                            "queue name '{name}' cannot be a Weir queue: a queue is the topic of \
                         its name, and {}",
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
                format!("queue '{name}' in vhost '/': {}", e.message),
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
    Ok(DeclareOk {
        message_count: if created {
            0
        } else {
            message_count(shared, ctx, &name).await
        },
        consumer_count: consumer_count(shared, &name),
        queue: name,
    })
}

/// Refuses every argument but the served ones, so a client that asks for a dead-letter
/// exchange or a TTL learns at once that it does not have one.
fn check_arguments(arguments: &FieldTable) -> Result<(), Reply> {
    for (key, value) in arguments {
        let served = key.as_str() == "x-queue-type"
            && match value {
                AMQPValue::LongString(s) => SERVED_QUEUE_TYPES
                    .iter()
                    .any(|t| t.as_bytes() == s.as_bytes()),
                AMQPValue::ShortString(s) => SERVED_QUEUE_TYPES.contains(&s.as_str()),
                _ => false,
            };
        if !served {
            return Err(Reply::channel(
                PRECONDITION_FAILED,
                format!(
                    "queue argument '{}' = {value:?} is not served by Weir yet (docs/amqp.md \
                     § Not served yet); x-queue-type classic or quorum is",
                    key.as_str()
                ),
            ));
        }
    }
    Ok(())
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

/// `queue.delete`: the share group's state and the topic. A queue that does not exist is
/// deleted already (as RabbitMQ answers).
pub async fn delete(
    shared: &Shared,
    ctx: &RequestContext,
    method: &queue::Delete,
) -> Result<u32, Reply> {
    let on = |reply: Reply| reply.on(50, 40);
    let name = method.queue.as_str();
    if !exists(shared, name) {
        return Ok(0);
    }
    if method.if_unused && consumer_count(shared, name) > 0 {
        return Err(on(Reply::channel(
            PRECONDITION_FAILED,
            format!("queue '{name}' in vhost '/' in use"),
        )));
    }
    let count = message_count(shared, ctx, name).await;
    if method.if_empty && count > 0 {
        return Err(on(Reply::channel(
            PRECONDITION_FAILED,
            format!("queue '{name}' in vhost '/' is not empty"),
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
    Ok(count)
}

/// `queue.purge`: the share group starts at the partition's end, so nothing produced so
/// far is delivered (the records stay in the topic for Kafka readers). Refused (406)
/// while a consumer holds a message.
pub async fn purge(
    shared: &Shared,
    ctx: &RequestContext,
    method: &queue::Purge,
) -> Result<u32, Reply> {
    let on = |reply: Reply| reply.on(50, 30);
    let name = method.queue.as_str();
    if !exists(shared, name) {
        return Err(on(not_found(name)));
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

/// The consumers this listener runs on queue `name`.
pub fn consumer_count(shared: &Shared, name: &str) -> u32 {
    shared
        .consumers
        .lock()
        .expect("consumers")
        .get(name)
        .copied()
        .unwrap_or(0)
}

/// The 404 for a queue that does not exist.
pub fn not_found(name: &str) -> Reply {
    Reply::channel(NOT_FOUND, format!("no queue '{name}' in vhost '/'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_served_queue_types_pass_the_argument_check() {
        let mut table = FieldTable::default();
        table.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        assert!(check_arguments(&table).is_ok());
        table.insert("x-message-ttl".into(), AMQPValue::LongInt(1000));
        let refused = check_arguments(&table).unwrap_err();
        assert_eq!(refused.code, PRECONDITION_FAILED);
        assert!(refused.text.contains("x-message-ttl"), "{}", refused.text);
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
