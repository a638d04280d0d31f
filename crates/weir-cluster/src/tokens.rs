//! API tokens as the metadata log keeps them (`docs/security.md` § API tokens): an id,
//! the user who owns it (its principal when the token is presented), when it was made
//! and expires, a description, and the SHA-256 of its secret, never the secret. The
//! controller's side is `controller/tokens.rs`; making, checking and listing them is
//! weir-broker's (`tokens.rs`, `authn.rs`), the token's text weir-security's.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::security::validate_user_name;

/// Most tokens the cluster keeps (expired ones count until revoked).
pub const MAX_TOKENS: usize = 10_000;
/// Most tokens one user owns.
pub const MAX_TOKENS_PER_USER: usize = 100;
/// The longest description, in UTF-8 bytes.
pub const MAX_TOKEN_DESCRIPTION_BYTES: usize = 256;
/// A token id: this many lowercase hex characters (64 random bits: ids are listed,
/// not secret; the controller refuses one in use).
pub const TOKEN_ID_CHARS: usize = 16;
/// The length of a SHA-256 digest, in bytes.
pub const SHA256_BYTES: usize = 32;

/// One API token. `Debug` leaves out the digest.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    pub id: String,
    /// The user it authenticates as (`User:OWNER`).
    pub owner: String,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When it stops being accepted (milliseconds since the Unix epoch); never for `None`.
    pub expires_ms: Option<i64>,
    pub description: String,
    /// SHA-256 of the secret.
    pub secret_sha256: Vec<u8>,
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredToken")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("created_ms", &self.created_ms)
            .field("expires_ms", &self.expires_ms)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl StoredToken {
    /// Why this token cannot be stored, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.len() != TOKEN_ID_CHARS
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "a token id is {TOKEN_ID_CHARS} lowercase hex characters, not {:?}",
                self.id
            ));
        }
        validate_user_name(&self.owner)?;
        if self.description.len() > MAX_TOKEN_DESCRIPTION_BYTES {
            return Err(format!(
                "the description is {} bytes, more than {MAX_TOKEN_DESCRIPTION_BYTES}",
                self.description.len()
            ));
        }
        if self.description.chars().any(char::is_control) {
            return Err("the description has a control character".into());
        }
        if self.secret_sha256.len() != SHA256_BYTES {
            return Err(format!(
                "the secret's digest must have {SHA256_BYTES} bytes, not {}",
                self.secret_sha256.len()
            ));
        }
        if self.expires_ms.is_some_and(|e| e <= self.created_ms) {
            return Err("a token must expire after it is made".into());
        }
        Ok(())
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_ms.is_some_and(|e| now_ms >= e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str, owner: &str) -> StoredToken {
        StoredToken {
            id: id.into(),
            owner: owner.into(),
            created_ms: 1_000,
            expires_ms: Some(2_000),
            description: "ci".into(),
            secret_sha256: vec![9; SHA256_BYTES],
        }
    }

    #[test]
    fn tokens_are_checked_before_they_are_stored() {
        let good = token("0123456789abcdef", "alice");
        assert_eq!(good.validate(), Ok(()));
        assert!(!good.expired(1_999) && good.expired(2_000));
        let bad = |t: StoredToken, needle: &str| {
            let err = t.validate().unwrap_err();
            assert!(err.contains(needle), "{err}");
        };
        bad(token("0123456789ABCDEF", "alice"), "hex");
        bad(token("0123", "alice"), "hex");
        bad(token("0123456789abcdef", ""), "user name");
        bad(
            StoredToken {
                description: "x".repeat(MAX_TOKEN_DESCRIPTION_BYTES + 1),
                ..good.clone()
            },
            "description",
        );
        bad(
            StoredToken {
                description: "a\nb".into(),
                ..good.clone()
            },
            "control",
        );
        bad(
            StoredToken {
                secret_sha256: vec![1; 31],
                ..good.clone()
            },
            "digest",
        );
        bad(
            StoredToken {
                expires_ms: Some(1_000),
                ..good.clone()
            },
            "expire after",
        );
        let debug = format!("{good:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("9, 9"),
            "{debug}"
        );
    }
}
