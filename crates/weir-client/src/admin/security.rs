//! Users (SCRAM credentials, salted here), ACL bindings and client quotas, as the
//! `Admin` service's security calls take them (the types are in [`crate::security`]).

use weir_proto::v1 as pb;

use super::Admin;
use crate::error::ClientError;
use crate::security::{AclBinding, AclFilter, QuotaEntity, ScramMechanism, UserInfo};

impl Admin {
    /// Sets `user`'s SCRAM credential for `mechanism` to `password`, creating the user
    /// (`UpsertUser`). The salted password is derived here with a new random salt and
    /// `iterations` (4096 to 16384; `weir_security::scram::DEFAULT_ITERATIONS` is a
    /// good choice), so the password itself never leaves this process; the salted
    /// password does, so use TLS. [`ClientError::Config`] for an empty or too long
    /// password or iterations out of range (nothing sent); the broker's
    /// [`ClientError::InvalidArgument`] for a bad user name; `PERMISSION_DENIED` without
    /// ALTER on the cluster.
    pub async fn upsert_user(
        &self,
        user: &str,
        password: &str,
        mechanism: ScramMechanism,
        iterations: u32,
    ) -> Result<(), ClientError> {
        let salted = weir_security::scram::SaltedPassword::new(mechanism, password, iterations)
            .map_err(|e| ClientError::Config(e.to_string()))?;
        self.admin
            .clone()
            .upsert_user(pb::UpsertUserRequest {
                user: user.to_owned(),
                mechanism: mechanism.name().to_owned(),
                iterations,
                salt: salted.salt.into(),
                salted_password: salted.salted_password.into(),
            })
            .await?;
        Ok(())
    }

    /// Removes `user`'s credential for `mechanism`, or for `None` every credential and
    /// so the user (`DeleteUser`); the mechanisms removed. [`ClientError::NotFound`] if
    /// there is no such user or credential.
    pub async fn delete_user(
        &self,
        user: &str,
        mechanism: Option<ScramMechanism>,
    ) -> Result<Vec<String>, ClientError> {
        Ok(self
            .admin
            .clone()
            .delete_user(pb::DeleteUserRequest {
                user: user.to_owned(),
                mechanism: mechanism.map(|m| m.name().to_owned()),
            })
            .await?
            .into_inner()
            .mechanisms)
    }

    /// The users named, in that order (each with its own result: a user that does not
    /// exist is [`ClientError::NotFound`] in its place), or for an empty `users` every
    /// user, sorted by name (`ListUsers`).
    pub async fn list_users(&self, users: &[String]) -> Result<Vec<UserInfo>, ClientError> {
        Ok(self
            .admin
            .clone()
            .list_users(pb::ListUsersRequest {
                users: users.to_vec(),
            })
            .await?
            .into_inner()
            .users
            .into_iter()
            .map(UserInfo::from_proto)
            .collect())
    }

    /// Adds ACL bindings, all or none (`CreateAcls`); bindings that exist already are
    /// left as they are. [`ClientError::InvalidArgument`] naming a bad binding.
    pub async fn create_acls(&self, acls: &[AclBinding]) -> Result<(), ClientError> {
        self.admin
            .clone()
            .create_acls(pb::CreateAclsRequest {
                acls: acls.iter().map(AclBinding::to_proto).collect(),
            })
            .await?;
        Ok(())
    }

    /// The ACL bindings `filter` selects, sorted (`ListAcls`).
    pub async fn list_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, ClientError> {
        self.admin
            .clone()
            .list_acls(pb::ListAclsRequest {
                filter: Some(filter.to_proto()),
            })
            .await?
            .into_inner()
            .acls
            .into_iter()
            .map(AclBinding::from_proto)
            .collect()
    }

    /// Removes the ACL bindings each filter selects (`DeleteAcls`); per filter, in
    /// order, the bindings it removed (a binding two filters select is reported under
    /// the first). The default filter selects every binding.
    pub async fn delete_acls(
        &self,
        filters: &[AclFilter],
    ) -> Result<Vec<Vec<AclBinding>>, ClientError> {
        self.admin
            .clone()
            .delete_acls(pb::DeleteAclsRequest {
                filters: filters.iter().map(AclFilter::to_proto).collect(),
            })
            .await?
            .into_inner()
            .results
            .into_iter()
            .map(|r| r.removed.into_iter().map(AclBinding::from_proto).collect())
            .collect()
    }

    /// Sets (`Some`) or removes (`None`) client quota keys (`producer_byte_rate`,
    /// `consumer_byte_rate`, in bytes per second), all or none (`AlterQuotas`).
    pub async fn alter_quotas(
        &self,
        alterations: &[(QuotaEntity, &str, Option<u64>)],
    ) -> Result<(), ClientError> {
        self.admin
            .clone()
            .alter_quotas(pb::AlterQuotasRequest {
                alterations: alterations
                    .iter()
                    .map(|(entity, key, value)| pb::QuotaAlteration {
                        entity: Some(entity.to_proto()),
                        key: (*key).to_owned(),
                        value: *value,
                    })
                    .collect(),
            })
            .await?;
        Ok(())
    }

    /// Every entity with a quota, with its keys and bytes per second, sorted.
    pub async fn list_quotas(&self) -> Result<Vec<(QuotaEntity, Vec<(String, u64)>)>, ClientError> {
        let mut entries: Vec<(QuotaEntity, Vec<(String, u64)>)> = self
            .admin
            .clone()
            .list_quotas(pb::ListQuotasRequest {})
            .await?
            .into_inner()
            .entries
            .into_iter()
            .map(|e| {
                let mut values: Vec<(String, u64)> = e.values.into_iter().collect();
                values.sort();
                (
                    QuotaEntity::from_proto(e.entity.unwrap_or_default()),
                    values,
                )
            })
            .collect();
        entries.sort();
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{ConnectOptions, lazy};
    use weir_security::scram::{MAX_ITERATIONS, MAX_PASSWORD_BYTES, MIN_ITERATIONS};

    #[tokio::test]
    async fn a_password_or_iterations_out_of_bounds_is_refused_before_anything_is_sent() {
        // A broker address that records whether anything connected to it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).expect("non-blocking");
        let address = listener.local_addr().expect("its address").to_string();
        let admin = Admin::from_channel(
            lazy(&address, &ConnectOptions::default()).expect("a lazy channel"),
        );
        let too_long = "p".repeat(MAX_PASSWORD_BYTES + 1);
        for (password, iterations, says) in [
            ("", MIN_ITERATIONS, "empty"),
            (too_long.as_str(), MIN_ITERATIONS, "limit"),
            ("secret", MIN_ITERATIONS - 1, "out of range"),
            ("secret", MAX_ITERATIONS + 1, "out of range"),
        ] {
            let refused = admin
                .upsert_user("alice", password, ScramMechanism::Sha256, iterations)
                .await;
            assert!(
                matches!(&refused, Err(ClientError::Config(message)) if message.contains(says)),
                "{iterations} iterations, {} bytes: {refused:?}",
                password.len()
            );
        }
        assert_eq!(
            listener.accept().map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "the client connected to the broker"
        );
    }
}
