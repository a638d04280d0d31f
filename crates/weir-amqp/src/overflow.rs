//! Queue length limits at the publish (docs/amqp.md § Queue length limits): a queue
//! declared with `x-max-length` and `x-overflow` `reject-publish` refuses a publish once
//! full. (`drop-head` is the share group's: it archives the oldest ready records.)

use std::sync::Arc;

use weir_broker::exchanges;
use weir_broker::shares;
use weir_broker::{BrokerError, Reason, RequestContext};

use crate::Shared;
use crate::queues::message_count;

/// A publish admitted into a queue that refuses publishes past its `x-max-length`,
/// counted with the queue's ready messages until its produce is answered (dropped then),
/// so publishes in flight at once cannot together pass the bound.
#[derive(Debug)]
pub struct InFlight {
    shared: Arc<Shared>,
    queue: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut in_flight = self.shared.in_flight.lock().expect("in_flight");
        if let Some(n) = in_flight.get_mut(&self.queue) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                in_flight.remove(&self.queue);
            }
        }
    }
}

/// Whether a publish may go into queue `name` now: `Ok(None)` for a queue without a
/// `reject-publish` bound, `Ok(Some(_))` admitted (hold it until the produce is
/// answered), an error when the queue is full: its ready messages (the share group's
/// count) and the publishes in flight into it, this one included, would be over its
/// `x-max-length`. Publishes racing on several connections each count the others, so
/// the bound is never passed (one may be refused that a moment later would fit). A
/// queue whose count cannot be told refuses too: the bound is not guessed past.
pub async fn admit_publish(
    shared: &Arc<Shared>,
    ctx: &RequestContext,
    name: &str,
) -> Result<Option<InFlight>, BrokerError> {
    let Some(declared) = exchanges::queue_declaration(&shared.broker, name) else {
        return Ok(None);
    };
    let rejects =
        declared.arguments.get("x-overflow").map(String::as_str) == Some("reject-publish");
    let Some(max) = declared
        .arguments
        .get("x-max-length")
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|_| rejects)
    else {
        return Ok(None);
    };
    let in_flight = {
        let mut counts = shared.in_flight.lock().expect("in_flight");
        let n = counts.entry(name.to_owned()).or_insert(0);
        *n += 1;
        *n
    };
    let admitted = InFlight {
        shared: shared.clone(),
        queue: name.to_owned(),
    };
    let ready = match shares::ready_count(&shared.broker, name).await? {
        Some(n) => n,
        // No state yet: every record of the topic is ready.
        None => u64::from(message_count(shared, ctx, name).await),
    };
    if ready.saturating_add(in_flight) > max {
        return Err(BrokerError::new(
            Reason::InvalidRequest,
            format!(
                "queue '{name}' is full: {ready} ready messages, x-max-length {max}, \
                 x-overflow reject-publish"
            ),
        ));
    }
    Ok(Some(admitted))
}
