//! Users and ACLs, as a broker asks the controller to change them (the image each
//! broker follows answers reads: `MetadataImage::credential`, `acls`).

use super::{ClusterNode, refusal};
use crate::controller::group_configs::GroupConfigBounds;
use crate::controller::{ControllerReply, ControllerRequest};
use crate::error::ClusterError;
use crate::partition::BrokerId;
use crate::security::{AclBinding, AclFilter, QuotaEntity, StoredCredential};

impl ClusterNode {
    /// Sets `user`'s SCRAM credential for its mechanism, creating the user.
    pub async fn upsert_scram_credential(
        &self,
        user: String,
        credential: StoredCredential,
    ) -> Result<(), ClusterError> {
        match self
            .call(ControllerRequest::UpsertScramCredential { user, credential })
            .await?
        {
            ControllerReply::CredentialUpserted => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Removes `user`'s credential for `mechanism`, or the user for `None`; the
    /// mechanisms removed.
    pub async fn delete_scram_credential(
        &self,
        user: String,
        mechanism: Option<String>,
    ) -> Result<Vec<String>, ClusterError> {
        match self
            .call(ControllerRequest::DeleteScramCredential { user, mechanism })
            .await?
        {
            ControllerReply::CredentialsDeleted(mechanisms) => Ok(mechanisms),
            other => Err(unexpected(other)),
        }
    }

    /// Adds ACL bindings (all, or none if one is invalid).
    pub async fn create_acls(&self, acls: Vec<AclBinding>) -> Result<(), ClusterError> {
        match self.call(ControllerRequest::CreateAcls { acls }).await? {
            ControllerReply::AclsCreated => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Removes the bindings each filter selects; what each removed.
    pub async fn delete_acls(
        &self,
        filters: Vec<AclFilter>,
    ) -> Result<Vec<Vec<AclBinding>>, ClusterError> {
        match self.call(ControllerRequest::DeleteAcls { filters }).await? {
            ControllerReply::AclsDeleted(deleted) => Ok(deleted),
            other => Err(unexpected(other)),
        }
    }
}

impl ClusterNode {
    /// Sets (or removes, for `None`) quota keys of entities, all or none.
    pub async fn alter_client_quotas(
        &self,
        alterations: Vec<(QuotaEntity, String, Option<u64>)>,
    ) -> Result<(), ClusterError> {
        match self
            .call(ControllerRequest::AlterClientQuotas { alterations })
            .await?
        {
            ControllerReply::ClientQuotasAltered => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

impl ClusterNode {
    /// Changes dynamic broker configs of broker `broker` (`None`: the cluster's
    /// default), all or none; `replace` removes the keys not named.
    pub async fn alter_broker_configs(
        &self,
        broker: Option<BrokerId>,
        changes: Vec<(String, Option<String>)>,
        replace: bool,
    ) -> Result<(), ClusterError> {
        match self
            .call(ControllerRequest::AlterBrokerConfigs {
                broker,
                changes,
                replace,
            })
            .await?
        {
            ControllerReply::BrokerConfigsAltered => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

impl ClusterNode {
    /// Changes consumer group configs of group `group`
    /// (`crate::controller::group_configs`), all or none, checked against `bounds`;
    /// `replace` removes the keys not named. Returns once the change is committed.
    pub async fn alter_group_configs(
        &self,
        group: &str,
        changes: Vec<(String, Option<String>)>,
        replace: bool,
        bounds: GroupConfigBounds,
    ) -> Result<(), ClusterError> {
        match self
            .call(ControllerRequest::AlterGroupConfigs {
                group: group.to_string(),
                changes,
                replace,
                bounds,
            })
            .await?
        {
            ControllerReply::GroupConfigsAltered => Ok(()),
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
