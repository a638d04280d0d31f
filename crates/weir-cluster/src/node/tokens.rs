//! API tokens, as a broker asks the controller to make and revoke them (the image each
//! broker follows answers reads: `MetadataImage::token`, `tokens`).

use super::{ClusterNode, refusal};
use crate::controller::{ControllerReply, ControllerRequest};
use crate::error::ClusterError;
use crate::tokens::StoredToken;

impl ClusterNode {
    /// Records `token` (made by the caller, its secret kept by the caller only).
    pub async fn create_token(&self, token: StoredToken) -> Result<(), ClusterError> {
        match self.call(ControllerRequest::CreateToken { token }).await? {
            ControllerReply::TokenCreated => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Revokes the token `id`; the token as it was.
    pub async fn revoke_token(&self, id: String) -> Result<StoredToken, ClusterError> {
        match self.call(ControllerRequest::RevokeToken { id }).await? {
            ControllerReply::TokenRevoked(token) => Ok(token),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(reply: ControllerReply) -> ClusterError {
    match reply {
        ControllerReply::Refused(e) => refusal(e),
        other => ClusterError::Quorum(format!("unexpected controller reply {other:?}")),
    }
}
