//! Administering users, ACLs and client quotas, for every protocol (Kafka's AlterUserScramCredentials,
//! DescribeUserScramCredentials, CreateAcls, DescribeAcls, DeleteAcls; Weir's gRPC admin
//! calls behind `weir user` and `weir acl`; client quotas: Kafka's AlterClientQuotas and
//! DescribeClientQuotas, gRPC's AlterQuotas and ListQuotas behind `weir quota`). Changing
//! users or ACLs needs Alter on the cluster, reading them Describe; quotas need
//! AlterConfigs and DescribeConfigs, as in Kafka. Credentials come in as a salted password (the
//! password itself never reaches the broker over these calls) and are stored as SCRAM's
//! stored and server keys.

use weir_cluster::security::{AclBinding, AclFilter, QuotaEntity, StoredCredential};
use weir_cluster::security::{Operation, validate_user_name};
use weir_security::scram::{ScramCredential, ScramMechanism};

use weir_cluster::node::refusal;

use crate::quotas::QuotaFilter;
use crate::{Broker, BrokerError, Reason, RequestContext};

/// One user as listed: its name and, per mechanism, the iterations of its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserListing {
    pub user: String,
    pub mechanisms: Vec<(String, u32)>,
}

/// A new credential for `user`, from the salted password a client derived.
#[derive(Clone)]
pub struct CredentialUpsert {
    pub user: String,
    pub mechanism: String,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

impl std::fmt::Debug for CredentialUpsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The salted password is as good as the password to SCRAM.
        f.debug_struct("CredentialUpsert")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Sets a user's SCRAM credential (creating the user).
pub async fn upsert_credential(
    broker: &Broker,
    ctx: &RequestContext,
    upsert: CredentialUpsert,
) -> Result<(), BrokerError> {
    broker.authorize_cluster(ctx, Operation::Alter)?;
    validate_user_name(&upsert.user).map_err(BrokerError::invalid)?;
    let mechanism = ScramMechanism::from_name(&upsert.mechanism).ok_or_else(|| {
        BrokerError::invalid(format!(
            "unknown SCRAM mechanism {:?} (use SCRAM-SHA-256 or SCRAM-SHA-512)",
            upsert.mechanism
        ))
    })?;
    let credential = ScramCredential::from_salted_password(
        mechanism,
        upsert.salt,
        upsert.iterations,
        &upsert.salted_password,
    )
    .map_err(|e| BrokerError::invalid(e.to_string()))?;
    broker
        .registry()
        .cluster()
        .upsert_scram_credential(upsert.user, stored(&credential))
        .await?;
    Ok(())
}

/// Removes a user's credential for `mechanism`, or the user; the mechanisms removed.
pub async fn delete_credential(
    broker: &Broker,
    ctx: &RequestContext,
    user: &str,
    mechanism: Option<&str>,
) -> Result<Vec<String>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::Alter)?;
    Ok(broker
        .registry()
        .cluster()
        .delete_scram_credential(user.to_owned(), mechanism.map(str::to_owned))
        .await?)
}

/// The users named (every user for `None`); a named user that does not exist is
/// NOT_FOUND in its place.
pub fn describe_users(
    broker: &Broker,
    ctx: &RequestContext,
    users: Option<&[String]>,
) -> Result<Vec<Result<UserListing, BrokerError>>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::Describe)?;
    let image = broker.registry().cluster().image();
    let listing = |user: &str| UserListing {
        user: user.to_owned(),
        mechanisms: ScramMechanism::ALL
            .iter()
            .filter_map(|m| {
                image
                    .credential(user, m.name())
                    .map(|c| (m.name().to_owned(), c.iterations))
            })
            .collect(),
    };
    Ok(match users {
        None => image.users().map(|(user, _)| Ok(listing(user))).collect(),
        Some(names) => names
            .iter()
            .map(|name| match image.users().any(|(user, _)| user == name) {
                true => Ok(listing(name)),
                false => Err(BrokerError::new(
                    Reason::NotFound,
                    format!("there is no user {name:?}"),
                )),
            })
            .collect(),
    })
}

/// The stored credential of `user` for SASL `mechanism`, for authenticating a client.
pub fn credential(
    broker: &Broker,
    user: &str,
    mechanism: ScramMechanism,
) -> Option<ScramCredential> {
    let image = broker.registry().cluster().image();
    let stored = image.credential(user, mechanism.name())?;
    Some(ScramCredential {
        mechanism,
        salt: stored.salt.clone(),
        iterations: stored.iterations,
        stored_key: stored.stored_key.clone(),
        server_key: stored.server_key.clone(),
    })
}

/// A credential as the metadata log stores it.
pub fn stored(credential: &ScramCredential) -> StoredCredential {
    StoredCredential {
        mechanism: credential.mechanism.name().to_owned(),
        salt: credential.salt.clone(),
        iterations: credential.iterations,
        stored_key: credential.stored_key.clone(),
        server_key: credential.server_key.clone(),
    }
}

/// Adds ACL bindings (all or none).
pub async fn create_acls(
    broker: &Broker,
    ctx: &RequestContext,
    acls: Vec<AclBinding>,
) -> Result<(), BrokerError> {
    broker.authorize_cluster(ctx, Operation::Alter)?;
    Ok(broker.registry().cluster().create_acls(acls).await?)
}

/// The bindings `filter` selects.
pub fn describe_acls(
    broker: &Broker,
    ctx: &RequestContext,
    filter: &AclFilter,
) -> Result<Vec<AclBinding>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::Describe)?;
    let image = broker.registry().cluster().image();
    Ok(image
        .acls()
        .filter(|a| filter.matches(a))
        .cloned()
        .collect())
}

/// Removes what each filter selects; what each removed.
pub async fn delete_acls(
    broker: &Broker,
    ctx: &RequestContext,
    filters: Vec<AclFilter>,
) -> Result<Vec<Vec<AclBinding>>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::Alter)?;
    Ok(broker.registry().cluster().delete_acls(filters).await?)
}

/// Alterations of quota keys: (entity, key, value; `None` removes the key).
pub type QuotaAlterations = Vec<(QuotaEntity, String, Option<u64>)>;

/// Sets (or removes, for `None`) quota keys of entities; needs AlterConfigs on the
/// cluster, as in Kafka. Each of `entries` is checked alone against the quotas in force
/// and made all or none (a gRPC AlterQuotas is one entry; a Kafka AlterClientQuotas has
/// one per entity, each answered on its own); the entries that pass are written
/// together, unless `validate_only`, which writes nothing. The outcome of each entry.
pub async fn alter_quotas(
    broker: &Broker,
    ctx: &RequestContext,
    entries: Vec<QuotaAlterations>,
    validate_only: bool,
) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::AlterConfigs)?;
    let image = broker.registry().cluster().image();
    let checked: Vec<Result<(), BrokerError>> = entries
        .iter()
        .map(|entry| {
            image
                .check_quota_alterations(entry)
                .map_err(|e| BrokerError::from(refusal(e)))
        })
        .collect();
    let passed: QuotaAlterations = entries
        .into_iter()
        .zip(&checked)
        .filter(|(_, c)| c.is_ok())
        .flat_map(|(entry, _)| entry)
        .collect();
    if validate_only || passed.is_empty() {
        return Ok(checked);
    }
    // Written together: the controller checks them again, whole (another change may have
    // come between), and a refusal then answers every entry that passed.
    let written = broker
        .registry()
        .cluster()
        .alter_client_quotas(passed)
        .await
        .map_err(BrokerError::from);
    Ok(checked
        .into_iter()
        .map(|c| c.and(written.clone()))
        .collect())
}

/// An entity's quota keys and their values (bytes per second; whole percent for
/// `request_percentage`).
pub type QuotaValues = Vec<(String, u64)>;

/// Every entity with a quota that `filter` selects, and its keys; needs DescribeConfigs
/// on the cluster.
pub fn describe_quotas(
    broker: &Broker,
    ctx: &RequestContext,
    filter: &QuotaFilter,
) -> Result<Vec<(QuotaEntity, QuotaValues)>, BrokerError> {
    broker.authorize_cluster(ctx, Operation::DescribeConfigs)?;
    let image = broker.registry().cluster().image();
    Ok(image
        .quotas()
        .filter(|(entity, _)| filter.matches(entity))
        .map(|(entity, keys)| {
            (
                entity.clone(),
                keys.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            )
        })
        .collect())
}
