//! API tokens' text: `weir_<id>_<secret>`, the id 16 lowercase hex characters (64
//! random bits, listed, not secret) and the secret 64 (32 random bytes). A token is
//! made once ([`NewToken::generate`]), shown once, and kept by the broker only as the
//! SHA-256 of its secret: a random 256-bit secret cannot be guessed, so it needs no
//! salt nor a slow hash, which is also why checking one costs a hash, not a PBKDF2.
//! Presented as `authorization: Bearer <token>` ([`bearer_header`]); the digest is
//! compared in constant time ([`secret_matches`]).

use std::fmt;

use ring::digest;
use subtle::ConstantTimeEq;

use crate::sasl::{SaslError, random_bytes};

/// What every token starts with (so a leaked token is recognisable to secret scanners).
pub const TOKEN_PREFIX: &str = "weir_";
/// Random bytes of a token id.
pub const TOKEN_ID_BYTES: usize = 8;
/// Random bytes of a token secret.
pub const TOKEN_SECRET_BYTES: usize = 32;
/// The length of a token's text.
pub const TOKEN_CHARS: usize = TOKEN_PREFIX.len() + 2 * TOKEN_ID_BYTES + 1 + 2 * TOKEN_SECRET_BYTES;

/// A token just made: its text (shown once), its id, and its secret's digest (what the
/// broker keeps). `Debug` leaves out the text.
pub struct NewToken {
    pub id: String,
    pub token: String,
    pub secret_sha256: [u8; 32],
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl NewToken {
    /// A new token from the system's random number generator.
    pub fn generate() -> NewToken {
        let mut id = [0; TOKEN_ID_BYTES];
        let mut secret = [0; TOKEN_SECRET_BYTES];
        random_bytes(&mut id);
        random_bytes(&mut secret);
        let id = hex(&id);
        NewToken {
            token: format!("{TOKEN_PREFIX}{id}_{}", hex(&secret)),
            id,
            secret_sha256: sha256(&secret),
        }
    }
}

/// A token as presented: its id and secret. `Debug` leaves out the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedToken {
    pub id: String,
    secret: [u8; TOKEN_SECRET_BYTES],
}

impl fmt::Debug for PresentedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PresentedToken {
    /// Whether the secret's SHA-256 is `stored` (compared in constant time).
    pub fn secret_matches(&self, stored: &[u8]) -> bool {
        bool::from(sha256(&self.secret).as_slice().ct_eq(stored))
    }
}

/// Parses a token's text: `weir_`, 16 lowercase hex characters, `_`, 64 lowercase hex.
pub fn parse_token(text: &str) -> Result<PresentedToken, SaslError> {
    let malformed = || {
        SaslError::Malformed(format!(
            "an API token is {TOKEN_PREFIX}<16 hex characters>_<64 hex characters> ({TOKEN_CHARS} characters)"
        ))
    };
    if text.len() != TOKEN_CHARS {
        return Err(malformed());
    }
    let rest = text.strip_prefix(TOKEN_PREFIX).ok_or_else(malformed)?;
    let (id, secret_hex) = rest.split_once('_').ok_or_else(malformed)?;
    let id_bytes = unhex::<TOKEN_ID_BYTES>(id).ok_or_else(malformed)?;
    let secret = unhex::<TOKEN_SECRET_BYTES>(secret_hex).ok_or_else(malformed)?;
    Ok(PresentedToken {
        id: hex(&id_bytes),
        secret,
    })
}

/// The `authorization` header value that presents `token`.
pub fn bearer_header(token: &str) -> String {
    format!("Bearer {token}")
}

/// The credentials an `authorization` header carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// `Basic`: a user and password.
    Basic { user: String, password: String },
    /// `Bearer`: an API token.
    Bearer(PresentedToken),
}

/// Parses an `authorization` header value of the `Basic` (RFC 7617) or `Bearer`
/// (RFC 6750, an API token) scheme, the scheme name in any case.
pub fn parse_authorization(header_value: &str) -> Result<Authorization, SaslError> {
    crate::sasl::check_message_len("authorization header", header_value.as_bytes())?;
    let value = header_value.trim();
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            parse_token(token.trim()).map(Authorization::Bearer)
        }
        _ => match crate::sasl::parse_basic_auth(header_value) {
            Ok((user, password)) => Ok(Authorization::Basic { user, password }),
            Err(SaslError::Unsupported(_)) => Err(SaslError::Unsupported(
                "authorization scheme (only Basic and Bearer are accepted)".into(),
            )),
            Err(e) => Err(e),
        },
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex of exactly `N` bytes.
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0; N];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_parses_back_and_matches_only_its_digest() {
        let new = NewToken::generate();
        assert_eq!(new.token.len(), TOKEN_CHARS);
        assert!(new.token.starts_with("weir_"));
        let presented = parse_token(&new.token).unwrap();
        assert_eq!(presented.id, new.id);
        assert!(presented.secret_matches(&new.secret_sha256));
        let other = NewToken::generate();
        assert_ne!(other.id, new.id);
        assert!(!presented.secret_matches(&other.secret_sha256));
        assert!(!presented.secret_matches(&new.secret_sha256[..31]));
        assert!(!format!("{new:?}{presented:?}").contains(&new.token[22..]));
        assert_eq!(
            parse_authorization(&bearer_header(&new.token)).unwrap(),
            Authorization::Bearer(presented)
        );
        assert_eq!(
            parse_authorization(&crate::sasl::basic_auth_header("alice", "pw")).unwrap(),
            Authorization::Basic {
                user: "alice".into(),
                password: "pw".into()
            }
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = NewToken::generate().token;
        let malformed = |t: &str| {
            assert!(
                matches!(parse_token(t), Err(SaslError::Malformed(_))),
                "{t:?} should be malformed"
            )
        };
        malformed("");
        malformed(&good[1..]);
        malformed(&good.replacen("weir_", "wier_", 1));
        malformed(&good.to_uppercase());
        malformed(&good.replace('_', "-"));
        malformed(&format!("{}g", &good[..good.len() - 1]));
        let mut moved = good.clone();
        moved.remove(21);
        moved.insert(22, 'a');
        malformed(&moved);
        assert!(matches!(
            parse_authorization("Digest abc"),
            Err(SaslError::Unsupported(_))
        ));
        assert!(matches!(
            parse_authorization("Bearer nope"),
            Err(SaslError::Malformed(_))
        ));
    }
}
