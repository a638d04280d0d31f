//! API tokens as the active controller records them (`crate::tokens` holds the data and
//! its rules): made for an existing user within [`MAX_TOKENS`] and
//! [`MAX_TOKENS_PER_USER`], revoked by id, and revoked with their owner when the user's
//! last credential is deleted.

use super::image::MetadataImage;
use super::records::MetadataRecord;
use super::requests::{ControllerError, ControllerReply, Outcome};
use crate::tokens::{MAX_TOKENS, MAX_TOKENS_PER_USER, StoredToken};

/// Makes `token`; the owner's tokens expired by its `created_ms` are revoked first, so
/// they do not count against the limits.
pub(super) fn create_token(
    image: &MetadataImage,
    token: StoredToken,
) -> Result<Outcome, ControllerError> {
    token.validate().map_err(ControllerError::InvalidToken)?;
    if !image.security.users.contains_key(&token.owner) {
        return Err(ControllerError::UnknownCredential {
            user: token.owner,
            what: "credentials (there is no such user; a token is owned by a user)".into(),
        });
    }
    let tokens = &image.security.tokens;
    if tokens.contains_key(&token.id) {
        return Err(ControllerError::InvalidToken(format!(
            "the id {} is in use",
            token.id
        )));
    }
    let expired: Vec<&StoredToken> = tokens
        .values()
        .filter(|t| t.owner == token.owner && t.expired(token.created_ms))
        .collect();
    let owned = tokens.values().filter(|t| t.owner == token.owner).count() - expired.len();
    if owned >= MAX_TOKENS_PER_USER {
        return Err(ControllerError::TooManyTokens {
            what: format!("user {:?}", token.owner),
            max: MAX_TOKENS_PER_USER,
        });
    }
    if tokens.len() - expired.len() >= MAX_TOKENS {
        return Err(ControllerError::TooManyTokens {
            what: "the cluster".into(),
            max: MAX_TOKENS,
        });
    }
    let mut records: Vec<MetadataRecord> = expired
        .iter()
        .map(|t| MetadataRecord::TokenRevoked { id: t.id.clone() })
        .collect();
    records.push(MetadataRecord::TokenCreated { token });
    Ok(Outcome {
        records,
        reply: ControllerReply::TokenCreated,
    })
}

/// Revokes the token `id`.
pub(super) fn revoke_token(image: &MetadataImage, id: String) -> Result<Outcome, ControllerError> {
    let Some(token) = image.security.tokens.get(&id) else {
        return Err(ControllerError::UnknownToken { id });
    };
    Ok(Outcome {
        records: vec![MetadataRecord::TokenRevoked { id }],
        reply: ControllerReply::TokenRevoked(token.clone()),
    })
}

/// `outcome` of deleting `user`'s credentials, with the user's tokens revoked if it
/// deletes the last of them (the user is gone).
pub(super) fn revoked_with_user(
    image: &MetadataImage,
    user: &str,
    mut outcome: Outcome,
) -> Outcome {
    let credentials = image.security.users.get(user).map_or(0, |c| c.len());
    let deleted = outcome
        .records
        .iter()
        .filter(|r| matches!(r, MetadataRecord::ScramCredentialDeleted { .. }))
        .count();
    if deleted >= credentials {
        outcome.records.extend(
            image
                .security
                .tokens
                .values()
                .filter(|t| t.owner == user)
                .map(|t| MetadataRecord::TokenRevoked { id: t.id.clone() }),
        );
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::test_support::CLUSTER;
    use crate::security::StoredCredential;
    use crate::tokens::SHA256_BYTES;

    fn image_with(users: &[&str]) -> MetadataImage {
        let mut image = MetadataImage::new();
        image
            .apply(&MetadataRecord::ClusterCreated {
                cluster_id: CLUSTER.into(),
            })
            .unwrap();
        for user in users {
            for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
                image
                    .apply(&MetadataRecord::ScramCredentialUpserted {
                        user: (*user).into(),
                        credential: StoredCredential {
                            mechanism: mechanism.into(),
                            salt: vec![7; 32],
                            iterations: 8192,
                            stored_key: vec![1; 32],
                            server_key: vec![2; 32],
                        },
                    })
                    .unwrap();
            }
        }
        image
    }

    fn apply(image: &mut MetadataImage, outcome: &Outcome) {
        for record in &outcome.records {
            image.apply(record).unwrap();
        }
    }

    fn token(n: u64, owner: &str, created_ms: i64, expires_ms: Option<i64>) -> StoredToken {
        StoredToken {
            id: format!("{n:016x}"),
            owner: owner.into(),
            created_ms,
            expires_ms,
            description: String::new(),
            secret_sha256: vec![3; SHA256_BYTES],
        }
    }

    #[test]
    fn tokens_are_made_for_users_revoked_and_go_with_their_owner() {
        let mut image = image_with(&["alice", "bob"]);
        let err = create_token(&image, token(1, "carol", 10, None)).unwrap_err();
        assert!(err.to_string().contains("no such user"), "{err}");
        for (n, owner) in [(1, "alice"), (2, "alice"), (3, "bob")] {
            let outcome = create_token(&image, token(n, owner, 10, None)).unwrap();
            apply(&mut image, &outcome);
        }
        assert_eq!(image.tokens().count(), 3);
        let err = create_token(&image, token(1, "bob", 10, None)).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");

        let outcome = revoke_token(&image, token(3, "", 0, None).id).unwrap();
        apply(&mut image, &outcome);
        assert!(image.token(&format!("{:016x}", 3)).is_none());
        let err = revoke_token(&image, format!("{:016x}", 3)).unwrap_err();
        assert!(
            matches!(err, ControllerError::UnknownToken { .. }),
            "{err:?}"
        );

        // One of alice's two credentials: her tokens stay; the last: they go with her.
        let outcome = super::super::security::delete_credential(
            &image,
            "alice".into(),
            Some("SCRAM-SHA-256".into()),
        )
        .unwrap();
        let outcome = revoked_with_user(&image, "alice", outcome);
        assert_eq!(outcome.records.len(), 1);
        apply(&mut image, &outcome);
        let outcome =
            super::super::security::delete_credential(&image, "alice".into(), None).unwrap();
        let outcome = revoked_with_user(&image, "alice", outcome);
        assert_eq!(outcome.records.len(), 3, "{:?}", outcome.records);
        apply(&mut image, &outcome);
        assert_eq!(image.tokens().count(), 0);
    }

    #[test]
    fn a_user_holds_at_most_its_limit_and_expired_tokens_make_room() {
        let mut image = image_with(&["alice"]);
        for n in 0..MAX_TOKENS_PER_USER as u64 {
            let outcome = create_token(&image, token(n, "alice", 10, Some(20 + n as i64))).unwrap();
            apply(&mut image, &outcome);
        }
        let err = create_token(&image, token(1_000, "alice", 15, None)).unwrap_err();
        assert!(
            matches!(err, ControllerError::TooManyTokens { .. }),
            "{err:?}"
        );
        // At 25, the tokens expiring at 20..=25 are revoked with the new one.
        let outcome = create_token(&image, token(1_000, "alice", 25, None)).unwrap();
        assert_eq!(outcome.records.len(), 7);
        apply(&mut image, &outcome);
        assert_eq!(image.tokens().count(), MAX_TOKENS_PER_USER - 5);
    }
}
