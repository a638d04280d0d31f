//! Producer ids for idempotent producers, as this broker hands them out: one id at a
//! time from the block the controller allocated it, a new block when it runs out, and
//! named producers straight from the controller (`controller::producer_ids`).

use std::sync::Mutex;

use super::{ClusterNode, refusal};
use crate::controller::{ControllerReply, ControllerRequest};
use crate::error::ClusterError;

/// The ids left of this broker's current block.
#[derive(Debug, Default)]
pub(super) struct IdBlock {
    /// `next..end` are free.
    ids: Mutex<(i64, i64)>,
    /// Held while a new block is asked for, so one request goes at a time.
    refill: tokio::sync::Mutex<()>,
}

impl IdBlock {
    fn take(&self) -> Option<i64> {
        let mut ids = self.ids.lock().expect("producer id mutex");
        (ids.0 < ids.1).then(|| {
            ids.0 += 1;
            ids.0 - 1
        })
    }
}

impl ClusterNode {
    /// A producer id and epoch for an idempotent producer (Kafka's `InitProducerId`).
    /// Without a name: a new id at epoch 0. With one: the id that name had, at its next
    /// epoch (fencing the instance that had it), or a new one.
    pub async fn init_producer_id(&self, name: Option<String>) -> Result<(i64, i16), ClusterError> {
        if let Some(name) = name {
            return match self.call(ControllerRequest::InitProducer { name }).await? {
                ControllerReply::ProducerInitialized {
                    producer_id,
                    producer_epoch,
                } => Ok((producer_id, producer_epoch)),
                ControllerReply::Refused(e) => Err(refusal(e)),
                other => Err(unexpected(&other)),
            };
        }
        let block = &self.inner.producer_ids;
        loop {
            if let Some(id) = block.take() {
                return Ok((id, 0));
            }
            let _refill = block.refill.lock().await;
            if let Some(id) = block.take() {
                return Ok((id, 0));
            }
            let broker_epoch = self.broker_state().borrow().broker_epoch.ok_or_else(|| {
                ClusterError::ControllerUnavailable(
                    "this broker has not registered with the controller yet; retry".into(),
                )
            })?;
            let request = ControllerRequest::AllocateProducerIds {
                node: self.node(),
                broker_epoch,
            };
            match self.call(request).await? {
                ControllerReply::ProducerIds { first, count } => {
                    *block.ids.lock().expect("producer id mutex") =
                        (first, first + i64::from(count));
                }
                ControllerReply::Refused(e) => return Err(refusal(e)),
                other => return Err(unexpected(&other)),
            }
        }
    }
}

fn unexpected(reply: &ControllerReply) -> ClusterError {
    ClusterError::Quorum(format!("unexpected controller reply {reply:?}"))
}
