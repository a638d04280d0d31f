//! Exchanges and bindings, as a broker asks the controller to change them: each call
//! returns once this broker's image holds the change, so a publish right after a bind
//! on the same broker is routed by it (the image answers reads:
//! `MetadataImage::exchange`, `bindings`).

use std::time::Duration;

use super::{ClusterNode, refusal};
use crate::controller::{ControllerReply, ControllerRequest};
use crate::error::ClusterError;
use crate::exchanges::{StoredBinding, StoredExchange, StoredExchangeBinding, StoredQueue};

/// Longest a change waits to reach this broker's image after the controller committed
/// it.
const APPLY_WAIT: Duration = Duration::from_secs(15);

impl ClusterNode {
    /// Declares an exchange (nothing changes if it exists as asked).
    pub async fn declare_exchange(&self, exchange: StoredExchange) -> Result<(), ClusterError> {
        self.exchange_change(ControllerRequest::DeclareExchange { exchange })
            .await
    }

    /// Deletes an exchange and its bindings (nothing if there is none).
    pub async fn delete_exchange(&self, name: String, if_unused: bool) -> Result<(), ClusterError> {
        self.exchange_change(ControllerRequest::DeleteExchange { name, if_unused })
            .await
    }

    /// Binds a queue to an exchange.
    pub async fn bind(&self, binding: StoredBinding) -> Result<(), ClusterError> {
        self.exchange_change(ControllerRequest::Bind { binding })
            .await
    }

    /// Removes a binding.
    pub async fn unbind(&self, binding: StoredBinding) -> Result<(), ClusterError> {
        self.exchange_change(ControllerRequest::Unbind { binding })
            .await
    }

    /// Binds an exchange to an exchange.
    pub async fn bind_exchange(&self, binding: StoredExchangeBinding) -> Result<(), ClusterError> {
        self.exchange_change(ControllerRequest::BindExchange { binding })
            .await
    }

    /// Removes an exchange-to-exchange binding.
    pub async fn unbind_exchange(
        &self,
        binding: StoredExchangeBinding,
    ) -> Result<(), ClusterError> {
        self.exchange_change(ControllerRequest::UnbindExchange { binding })
            .await
    }

    /// Records a queue's declaration (flags and arguments).
    pub async fn declare_queue(&self, queue: StoredQueue) -> Result<(), ClusterError> {
        self.exchange_change(ControllerRequest::DeclareQueue { queue })
            .await
    }

    async fn exchange_change(&self, request: ControllerRequest) -> Result<(), ClusterError> {
        let through = match self.call(request).await? {
            ControllerReply::ExchangesChanged { through } => through,
            ControllerReply::Refused(e) => return Err(refusal(e)),
            other => {
                return Err(ClusterError::Quorum(format!(
                    "unexpected controller reply {other:?}"
                )));
            }
        };
        let mut images = self.subscribe();
        let reached = images.wait_for(|image| image.next_offset() >= through);
        match tokio::time::timeout(APPLY_WAIT, reached).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ClusterError::ControllerUnavailable(
                "the change was committed but has not reached this broker's metadata yet".into(),
            )),
        }
    }
}
