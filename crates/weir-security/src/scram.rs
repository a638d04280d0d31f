//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka implements them
//! (KIP-84): the mechanisms and their limits (here), the stored credential
//! ([`credential`]: salt, iterations, stored key and server key, never the password), the
//! server's side of one exchange ([`server`]), the client's ([`client`]), and the
//! messages' syntax (`message`).
//!
//! Kafka's dialect, which this follows: no channel binding (`p=` is refused, `n` and `y`
//! are accepted), an authorization id only if it is the user, extensions after the nonce
//! (Kafka's `tokenauth=true` asks for a delegation token, which Weir does not have, and is
//! refused; others are ignored), and passwords taken as their UTF-8 bytes without
//! SASLprep (Kafka does not SASLprep either, so the same password gives the same
//! credential as on a Kafka broker).

pub mod client;
pub mod credential;
pub(crate) mod message;
pub mod server;

use std::num::NonZeroU32;

use ring::{digest, hmac, pbkdf2};

pub use crate::sasl::{MAX_MESSAGE_BYTES, MAX_PASSWORD_BYTES, MAX_USER_BYTES};
pub use client::ScramClient;
pub use credential::{SaltedPassword, ScramCredential};
pub use server::{ScramServer, ServerStep};

/// The fewest iterations a credential may have: Kafka's minimum (and RFC 7677's).
pub const MIN_ITERATIONS: u32 = 4096;
/// The most iterations a credential may have, Kafka's maximum. A client refuses a server
/// asking for more, so a server cannot make it spin.
pub const MAX_ITERATIONS: u32 = 16384;
/// Iterations of new credentials unless the caller asks otherwise (and of the fake
/// credential an unknown user is shown).
pub const DEFAULT_ITERATIONS: u32 = 8192;
/// Salt length of the credentials [`ScramCredential::new`] makes.
pub const SALT_BYTES: usize = 32;
/// The longest salt accepted (from `AlterUserScramCredentials` or a server-first
/// message).
pub const MAX_SALT_BYTES: usize = 256;
/// Random bytes in each side's nonce (sent base64, 32 characters).
pub const NONCE_BYTES: usize = 24;

/// A SCRAM mechanism: which hash derives and proves the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// Every mechanism, in the order a broker lists them.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name: `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism named `name`, exactly as [`name`](Self::name) spells it (SASL
    /// mechanism names are upper case; Kafka matches them exactly too).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Length of the hash, and so of every key, signature and proof, in bytes.
    pub fn key_len(self) -> usize {
        self.digest().output_len()
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }

    /// `HMAC(key, data)`.
    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data)
            .as_ref()
            .to_vec()
    }

    /// `H(data)`.
    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    /// `ClientKey = HMAC(SaltedPassword, "Client Key")`.
    fn client_key(self, salted_password: &[u8]) -> Vec<u8> {
        self.mac(salted_password, b"Client Key")
    }

    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    fn server_key(self, salted_password: &[u8]) -> Vec<u8> {
        self.mac(salted_password, b"Server Key")
    }
}

/// Why a credential could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error(
        "{iterations} SCRAM iterations is out of range: between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
    )]
    Iterations { iterations: u32 },
    #[error("empty password")]
    EmptyPassword,
    #[error("password is {bytes} bytes, more than the limit of {MAX_PASSWORD_BYTES}")]
    PasswordTooLong { bytes: usize },
    #[error("salt is {bytes} bytes: a SCRAM salt is 1 to {MAX_SALT_BYTES} bytes")]
    Salt { bytes: usize },
    #[error("a {mechanism} salted password is {expected} bytes, not {actual}")]
    SaltedPasswordLength {
        mechanism: &'static str,
        expected: usize,
        actual: usize,
    },
}

/// `SaltedPassword = Hi(password, salt, iterations)`: PBKDF2 with the mechanism's HMAC,
/// over the password's UTF-8 bytes (no SASLprep, as Kafka). [`ScramMechanism::key_len`]
/// bytes.
///
/// Panics if `iterations` is 0 (PBKDF2 needs one; every caller here checks the range
/// first).
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let iterations = NonZeroU32::new(iterations).expect("SCRAM iterations are at least 1");
    let mut out = vec![0; mechanism.key_len()];
    pbkdf2::derive(
        mechanism.pbkdf2(),
        iterations,
        salt,
        password.as_bytes(),
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_round_trip() {
        for m in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(ScramMechanism::Sha256.name(), "SCRAM-SHA-256");
        assert_eq!(ScramMechanism::Sha512.name(), "SCRAM-SHA-512");
        assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
        assert_eq!(ScramMechanism::from_name("SCRAM-SHA-1"), None);
        assert_eq!(ScramMechanism::from_name("PLAIN"), None);
        assert_eq!(ScramMechanism::Sha256.key_len(), 32);
        assert_eq!(ScramMechanism::Sha512.key_len(), 64);
    }
}
