//! Users' SCRAM credentials and ACL bindings, as the active controller records them
//! (`crate::security` holds the data and its rules; `docs/security.md`). Every request
//! is checked whole before a record is written: a CreateAcls with one bad binding adds
//! none.

use std::collections::BTreeSet;

use super::image::MetadataImage;
use super::records::MetadataRecord;
use super::requests::{ControllerError, ControllerReply, Outcome};
use crate::error::ConfigError;
use crate::partition::BrokerId;
use crate::security::{
    AclBinding, AclFilter, MAX_ACLS, MAX_ACLS_PER_REQUEST, MAX_QUOTA_ENTITIES, MAX_QUOTA_VALUE,
    MAX_USERS, QUOTA_KEYS, QuotaEntity, REQUEST_PERCENTAGE, StoredCredential, validate_user_name,
};

/// Sets `user`'s credential for its mechanism.
pub(super) fn upsert_credential(
    image: &MetadataImage,
    user: String,
    credential: StoredCredential,
) -> Result<Outcome, ControllerError> {
    let invalid = |reason: String| ControllerError::InvalidCredential {
        user: user.clone(),
        reason,
    };
    validate_user_name(&user).map_err(invalid)?;
    credential.validate().map_err(invalid)?;
    let users = &image.security.users;
    if !users.contains_key(&user) && users.len() >= MAX_USERS {
        return Err(ControllerError::TooManyUsers);
    }
    Ok(Outcome {
        records: vec![MetadataRecord::ScramCredentialUpserted { user, credential }],
        reply: ControllerReply::CredentialUpserted,
    })
}

/// Removes `user`'s credential for `mechanism`, or every credential it has.
pub(super) fn delete_credential(
    image: &MetadataImage,
    user: String,
    mechanism: Option<String>,
) -> Result<Outcome, ControllerError> {
    let credentials = image.security.users.get(&user);
    let mechanisms: Vec<String> = match (&mechanism, credentials) {
        (None, Some(credentials)) => credentials.keys().cloned().collect(),
        (Some(m), Some(credentials)) if credentials.contains_key(m) => vec![m.clone()],
        (Some(m), _) => {
            return Err(ControllerError::UnknownCredential {
                user,
                what: format!("{m} credential"),
            });
        }
        (None, None) => {
            return Err(ControllerError::UnknownCredential {
                user,
                what: "credentials (there is no such user)".into(),
            });
        }
    };
    Ok(Outcome {
        records: mechanisms
            .iter()
            .map(|mechanism| MetadataRecord::ScramCredentialDeleted {
                user: user.clone(),
                mechanism: mechanism.clone(),
            })
            .collect(),
        reply: ControllerReply::CredentialsDeleted(mechanisms),
    })
}

/// Adds the bindings not there yet.
pub(super) fn create_acls(
    image: &MetadataImage,
    acls: Vec<AclBinding>,
) -> Result<Outcome, ControllerError> {
    if acls.len() > MAX_ACLS_PER_REQUEST {
        return Err(ControllerError::TooManyAclsInRequest { given: acls.len() });
    }
    for acl in &acls {
        acl.validate()
            .map_err(|reason| ControllerError::InvalidAcl {
                acl: acl.to_string(),
                reason,
            })?;
    }
    let existing = &image.security.acls;
    let new: BTreeSet<AclBinding> = acls
        .into_iter()
        .filter(|acl| !existing.contains(acl))
        .collect();
    if existing.len() + new.len() > MAX_ACLS {
        return Err(ControllerError::TooManyAcls {
            requested: existing.len() + new.len(),
        });
    }
    Ok(Outcome {
        records: new
            .into_iter()
            .map(|acl| MetadataRecord::AclCreated { acl })
            .collect(),
        reply: ControllerReply::AclsCreated,
    })
}

/// Removes what each filter selects; a binding two filters select is removed once and
/// reported under the first.
pub(super) fn delete_acls(
    image: &MetadataImage,
    filters: Vec<AclFilter>,
) -> Result<Outcome, ControllerError> {
    if filters.len() > MAX_ACLS_PER_REQUEST {
        return Err(ControllerError::TooManyAclsInRequest {
            given: filters.len(),
        });
    }
    let mut removed = BTreeSet::new();
    let mut per_filter = Vec::with_capacity(filters.len());
    for filter in &filters {
        let selected: Vec<AclBinding> = image
            .security
            .acls
            .iter()
            .filter(|acl| filter.matches(acl) && !removed.contains(*acl))
            .cloned()
            .collect();
        removed.extend(selected.iter().cloned());
        per_filter.push(selected);
    }
    Ok(Outcome {
        records: per_filter
            .iter()
            .flatten()
            .map(|acl| MetadataRecord::AclDeleted { acl: acl.clone() })
            .collect(),
        reply: ControllerReply::AclsDeleted(per_filter),
    })
}

/// Sets or removes quota keys; every alteration is checked before any is written.
pub(super) fn alter_quotas(
    image: &MetadataImage,
    alterations: Vec<(QuotaEntity, String, Option<u64>)>,
) -> Result<Outcome, ControllerError> {
    image.check_quota_alterations(&alterations)?;
    Ok(Outcome {
        records: alterations
            .into_iter()
            .map(|(entity, key, value)| MetadataRecord::ClientQuotaAltered { entity, key, value })
            .collect(),
        reply: ControllerReply::ClientQuotasAltered,
    })
}

/// Changes dynamic broker configs: every change checked first (`crate::broker_configs`);
/// with `replace`, the keys set now and not named are removed. Only what changes is
/// written.
pub(super) fn alter_broker_configs(
    image: &MetadataImage,
    broker: Option<BrokerId>,
    changes: Vec<(String, Option<String>)>,
    replace: bool,
) -> Result<Outcome, ControllerError> {
    if changes.len() > crate::broker_configs::DYNAMIC_KEYS.len() {
        return Err(ControllerError::InvalidConfig(ConfigError::Invalid(
            format!(
                "{} broker config changes in one request; there are {} dynamic keys",
                changes.len(),
                crate::broker_configs::DYNAMIC_KEYS.len()
            ),
        )));
    }
    for (key, value) in &changes {
        crate::broker_configs::check_change(key, value.as_deref())
            .map_err(ControllerError::InvalidConfig)?;
    }
    let current = image.broker_configs(broker).cloned().unwrap_or_default();
    let mut records = Vec::new();
    if replace {
        for key in current.keys() {
            if !changes.iter().any(|(k, _)| k == key) {
                records.push(MetadataRecord::BrokerConfigChanged {
                    broker,
                    key: key.clone(),
                    value: None,
                });
            }
        }
    }
    for (key, value) in changes {
        if current.get(&key) != value.as_ref() {
            records.push(MetadataRecord::BrokerConfigChanged { broker, key, value });
        }
    }
    Ok(Outcome {
        records,
        reply: ControllerReply::BrokerConfigsAltered,
    })
}

impl MetadataImage {
    /// Why `alterations` of quota keys cannot be made to this image, if they cannot:
    /// the controller's checks, also run by a Kafka AlterClientQuotas with
    /// `validate_only`, so a request validated is one the controller would take.
    pub fn check_quota_alterations(
        &self,
        alterations: &[(QuotaEntity, String, Option<u64>)],
    ) -> Result<(), ControllerError> {
        if alterations.len() > MAX_ACLS_PER_REQUEST {
            return Err(ControllerError::TooManyAclsInRequest {
                given: alterations.len(),
            });
        }
        let mut entities: BTreeSet<&QuotaEntity> = self.security.quotas.keys().collect();
        for (entity, key, value) in alterations {
            let invalid = |reason: String| ControllerError::InvalidQuota {
                entity: entity.to_string(),
                reason,
            };
            entity.validate().map_err(invalid)?;
            if !QUOTA_KEYS.contains(&key.as_str()) {
                return Err(invalid(format!(
                    "unknown quota key {key:?} (known: {})",
                    QUOTA_KEYS.join(", ")
                )));
            }
            match *value {
                Some(0) if key == REQUEST_PERCENTAGE => {
                    return Err(invalid(format!(
                        "{key} must be at least 1 percent (remove the quota for no limit)"
                    )));
                }
                Some(0) => {
                    return Err(invalid(format!(
                        "{key} must be at least 1 byte per second (remove the quota for no limit)"
                    )));
                }
                Some(v) if v > MAX_QUOTA_VALUE => {
                    return Err(invalid(format!("{key} must be at most {MAX_QUOTA_VALUE}")));
                }
                _ => {}
            }
            if value.is_some() {
                entities.insert(entity);
            }
        }
        if entities.len() > MAX_QUOTA_ENTITIES {
            return Err(ControllerError::InvalidQuota {
                entity: "the cluster".into(),
                reason: format!("at most {MAX_QUOTA_ENTITIES} entities may have quotas"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::{Operation, PatternType, Permission, ResourceType};

    use crate::controller::test_support::{apply_outcome as apply, empty_image as image};

    fn credential(mechanism: &str) -> StoredCredential {
        StoredCredential {
            mechanism: mechanism.into(),
            salt: vec![7; 32],
            iterations: 8192,
            stored_key: vec![1; 32],
            server_key: vec![2; 32],
        }
    }

    fn acl(topic: &str, permission: Permission) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: topic.into(),
            pattern_type: PatternType::Literal,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission,
        }
    }

    #[test]
    fn users_are_created_replaced_and_deleted_by_mechanism() {
        let mut image = image();
        for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let outcome = upsert_credential(&image, "alice".into(), credential(mechanism)).unwrap();
            apply(&mut image, &outcome);
        }
        assert_eq!(
            image.credential("alice", "SCRAM-SHA-512"),
            Some(&credential("SCRAM-SHA-512"))
        );
        assert_eq!(
            image.users().collect::<Vec<_>>(),
            vec![("alice", vec!["SCRAM-SHA-256", "SCRAM-SHA-512"])]
        );

        let outcome =
            delete_credential(&image, "alice".into(), Some("SCRAM-SHA-256".into())).unwrap();
        apply(&mut image, &outcome);
        assert_eq!(image.credential("alice", "SCRAM-SHA-256"), None);
        let outcome = delete_credential(&image, "alice".into(), None).unwrap();
        assert_eq!(
            outcome.reply,
            ControllerReply::CredentialsDeleted(vec!["SCRAM-SHA-512".into()])
        );
        apply(&mut image, &outcome);
        assert_eq!(image.users().count(), 0);
        let err = delete_credential(&image, "alice".into(), None).unwrap_err();
        assert!(err.to_string().contains("no such user"), "{err}");

        let bad = StoredCredential {
            iterations: 1,
            ..credential("SCRAM-SHA-256")
        };
        let err = upsert_credential(&image, "bob".into(), bad).unwrap_err();
        assert!(err.to_string().contains("iterations"), "{err}");
        let err = upsert_credential(&image, "".into(), credential("SCRAM-SHA-256")).unwrap_err();
        assert!(err.to_string().contains("user name"), "{err}");
    }

    #[test]
    fn acls_are_added_once_all_or_none_and_deleted_by_filter() {
        let mut image = image();
        let version = image.acls_version();
        let outcome = create_acls(
            &image,
            vec![
                acl("orders", Permission::Allow),
                acl("audit", Permission::Deny),
            ],
        )
        .unwrap();
        apply(&mut image, &outcome);
        assert_eq!(image.acls().count(), 2);
        assert_ne!(image.acls_version(), version);
        // Adding one again writes nothing.
        let outcome = create_acls(&image, vec![acl("orders", Permission::Allow)]).unwrap();
        assert!(outcome.records.is_empty());
        // One bad binding: none is added.
        let mut bad = acl("x", Permission::Allow);
        bad.host = "anywhere".into();
        let err = create_acls(&image, vec![acl("payments", Permission::Allow), bad]).unwrap_err();
        assert!(err.to_string().contains("IP address"), "{err}");

        let filters = vec![
            AclFilter {
                permission: Some(Permission::Deny),
                ..AclFilter::default()
            },
            AclFilter::default(),
        ];
        let outcome = delete_acls(&image, filters).unwrap();
        assert_eq!(
            outcome.reply,
            ControllerReply::AclsDeleted(vec![
                vec![acl("audit", Permission::Deny)],
                vec![acl("orders", Permission::Allow)]
            ])
        );
        apply(&mut image, &outcome);
        assert_eq!(image.acls().count(), 0);
    }

    #[test]
    fn quota_alterations_are_checked_whole_request_percentage_included() {
        use crate::security::{CONSUMER_BYTE_RATE, EntityName};
        let mut image = image();
        let alice = QuotaEntity {
            user: Some(EntityName::Name("alice".into())),
            client_id: None,
        };
        let set = |key: &str, value: Option<u64>| (alice.clone(), key.to_owned(), value);
        let outcome = alter_quotas(&image, vec![set(REQUEST_PERCENTAGE, Some(50))]).unwrap();
        apply(&mut image, &outcome);
        assert_eq!(image.quota(&alice, REQUEST_PERCENTAGE), Some(50));
        for (bad, why) in [
            (
                set("controller_mutation_rate", Some(5)),
                "unknown quota key",
            ),
            (set(REQUEST_PERCENTAGE, Some(0)), "at least 1 percent"),
            (
                set(CONSUMER_BYTE_RATE, Some(0)),
                "at least 1 byte per second",
            ),
            (set(CONSUMER_BYTE_RATE, Some(u64::MAX)), "at most"),
        ] {
            // One bad alteration among good ones: none is made, checked alone or whole.
            let all = vec![set(CONSUMER_BYTE_RATE, Some(1000)), bad];
            let err = image.check_quota_alterations(&all).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
            assert!(alter_quotas(&image, all).is_err());
        }
        let outcome = alter_quotas(&image, vec![set(REQUEST_PERCENTAGE, None)]).unwrap();
        apply(&mut image, &outcome);
        assert_eq!(image.quotas().count(), 0);
    }

    #[test]
    fn dynamic_broker_configs_are_checked_replaced_and_kept_in_a_snapshot() {
        let mut image = image();
        let set = |key: &str, value: &str| (key.to_string(), Some(value.to_string()));
        let outcome = alter_broker_configs(
            &image,
            Some(1),
            vec![
                set("sasl.kerberos.min.time.before.relogin", "58000"),
                set("num.io.threads", "16"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(outcome.records.len(), 2);
        apply(&mut image, &outcome);
        let broker_1 = image.broker_configs(Some(1)).unwrap();
        assert_eq!(broker_1["num.io.threads"], "16");
        assert!(image.broker_configs(None).is_none(), "the default is apart");
        // The same values again write nothing.
        let again = alter_broker_configs(&image, Some(1), vec![set("num.io.threads", "16")], false)
            .unwrap();
        assert!(again.records.is_empty(), "{:?}", again.records);
        // One bad key or value refuses the whole change.
        for bad in [
            vec![set("num.io.threads", "8"), set("log.retention.ms", "1")],
            vec![set("num.io.threads", "0")],
        ] {
            let refused = alter_broker_configs(&image, Some(1), bad, false).unwrap_err();
            assert!(
                matches!(refused, ControllerError::InvalidConfig(_)),
                "{refused:?}"
            );
        }
        // AlterConfigs replaces: a key left out is removed.
        let replaced =
            alter_broker_configs(&image, Some(1), vec![set("num.io.threads", "4")], true).unwrap();
        apply(&mut image, &replaced);
        let broker_1 = image.broker_configs(Some(1)).unwrap();
        assert_eq!(broker_1.len(), 1, "{broker_1:?}");
        assert_eq!(broker_1["num.io.threads"], "4");
        let json = serde_json::to_string(&image).unwrap();
        let back: MetadataImage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, image);
        // Removing the last key forgets the broker.
        let removed = alter_broker_configs(
            &image,
            Some(1),
            vec![("num.io.threads".into(), None)],
            false,
        )
        .unwrap();
        apply(&mut image, &removed);
        assert!(image.broker_configs(Some(1)).is_none());
    }
}
