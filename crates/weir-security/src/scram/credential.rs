//! A user's stored SCRAM credential: what the broker keeps instead of the password.

use std::fmt;

use subtle::ConstantTimeEq;

use super::{
    MAX_ITERATIONS, MAX_PASSWORD_BYTES, MAX_SALT_BYTES, MIN_ITERATIONS, SALT_BYTES, ScramError,
    ScramMechanism, salted_password,
};
use crate::sasl::random_bytes;

/// A SCRAM credential (RFC 5802 §3): the salt and iteration count a client derives its
/// keys with, `StoredKey = H(ClientKey)` that checks the client's proof, and `ServerKey`
/// that signs the server's final message. Enough to authenticate a client, not to
/// impersonate one (the client key is not derivable from it), and nothing gives back the
/// password but guessing it through PBKDF2.
///
/// Debug prints neither key.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("salt_bytes", &self.salt.len())
            .field("iterations", &self.iterations)
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

fn check_iterations(iterations: u32) -> Result<(), ScramError> {
    if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        Ok(())
    } else {
        Err(ScramError::Iterations { iterations })
    }
}

/// What a client sends to set a user's credential without sending the password (Kafka's
/// `AlterUserScramCredentials` upsertion, Weir's `UpsertUser`): a new random salt and
/// `SaltedPassword = Hi(password, salt, iterations)`, from which the broker derives the
/// credential ([`ScramCredential::from_salted_password`]).
///
/// Debug prints neither the salted password (as good as the password to SCRAM) nor the
/// salt.
#[derive(Clone, PartialEq, Eq)]
pub struct SaltedPassword {
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub salted_password: Vec<u8>,
}

impl fmt::Debug for SaltedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaltedPassword")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl SaltedPassword {
    /// `password` salted with a new random salt of [`SALT_BYTES`]. The password must be
    /// non-empty and within [`MAX_PASSWORD_BYTES`]; `iterations` within
    /// [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`] (Kafka's range).
    pub fn new(
        mechanism: ScramMechanism,
        password: &str,
        iterations: u32,
    ) -> Result<Self, ScramError> {
        if password.is_empty() {
            return Err(ScramError::EmptyPassword);
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(ScramError::PasswordTooLong {
                bytes: password.len(),
            });
        }
        check_iterations(iterations)?;
        let mut salt = vec![0; SALT_BYTES];
        random_bytes(&mut salt);
        let salted_password = salted_password(mechanism, password, &salt, iterations);
        Ok(Self {
            mechanism,
            salt,
            iterations,
            salted_password,
        })
    }
}

impl ScramCredential {
    /// The credential of `password` with a new random salt of [`SALT_BYTES`]. The
    /// password must be non-empty and within [`MAX_PASSWORD_BYTES`]; `iterations` within
    /// [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`] (Kafka's range).
    pub fn new(
        mechanism: ScramMechanism,
        password: &str,
        iterations: u32,
    ) -> Result<Self, ScramError> {
        let salted = SaltedPassword::new(mechanism, password, iterations)?;
        Self::from_salted_password(mechanism, salted.salt, iterations, &salted.salted_password)
    }

    /// The credential of a password already salted by the client: Kafka's
    /// `AlterUserScramCredentials` sends the salt and `SaltedPassword`, never the
    /// password. The salt must be 1 to [`MAX_SALT_BYTES`] bytes and the salted password
    /// [`ScramMechanism::key_len`] bytes.
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: Vec<u8>,
        iterations: u32,
        salted_password: &[u8],
    ) -> Result<Self, ScramError> {
        check_iterations(iterations)?;
        if salt.is_empty() || salt.len() > MAX_SALT_BYTES {
            return Err(ScramError::Salt { bytes: salt.len() });
        }
        if salted_password.len() != mechanism.key_len() {
            return Err(ScramError::SaltedPasswordLength {
                mechanism: mechanism.name(),
                expected: mechanism.key_len(),
                actual: salted_password.len(),
            });
        }
        Ok(Self {
            mechanism,
            stored_key: mechanism.hash(&mechanism.client_key(salted_password)),
            server_key: mechanism.server_key(salted_password),
            salt,
            iterations,
        })
    }

    /// Whether `password` is the password of this credential: derives its stored key
    /// (one PBKDF2, milliseconds) and compares in constant time. For listeners that
    /// receive the password itself (PLAIN, HTTP basic, gRPC call credentials); see
    /// [`crate::sasl::PasswordCache`] to check once per client instead of per request.
    /// A password over [`MAX_PASSWORD_BYTES`] or a credential with an iteration count
    /// outside 1..=[`MAX_ITERATIONS`] never verifies.
    pub fn verify_password(&self, password: &str) -> bool {
        if password.len() > MAX_PASSWORD_BYTES || !(1..=MAX_ITERATIONS).contains(&self.iterations) {
            return false;
        }
        let m = self.mechanism;
        let salted = salted_password(m, password, &self.salt, self.iterations);
        let stored_key = m.hash(&m.client_key(&salted));
        bool::from(stored_key.ct_eq(&self.stored_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::DEFAULT_ITERATIONS;

    #[test]
    fn salted_passwords_make_the_credential_of_their_password() {
        let salted =
            SaltedPassword::new(ScramMechanism::Sha512, "pencil", DEFAULT_ITERATIONS).unwrap();
        assert_eq!(salted.salt.len(), SALT_BYTES);
        let again =
            SaltedPassword::new(ScramMechanism::Sha512, "pencil", DEFAULT_ITERATIONS).unwrap();
        assert_ne!(salted.salt, again.salt, "a new salt each time");
        let credential = ScramCredential::from_salted_password(
            salted.mechanism,
            salted.salt.clone(),
            salted.iterations,
            &salted.salted_password,
        )
        .unwrap();
        assert!(credential.verify_password("pencil"));
        assert!(!credential.verify_password("pen"));
        let shown = format!("{salted:?}");
        assert!(!shown.contains("salt"), "{shown}");
        assert_eq!(
            SaltedPassword::new(ScramMechanism::Sha256, "", DEFAULT_ITERATIONS),
            Err(ScramError::EmptyPassword)
        );
        assert_eq!(
            SaltedPassword::new(ScramMechanism::Sha256, "x", 1),
            Err(ScramError::Iterations { iterations: 1 })
        );
    }

    #[test]
    fn new_credentials_verify_their_password_only() {
        for m in ScramMechanism::ALL {
            let c = ScramCredential::new(m, "pencil", MIN_ITERATIONS).unwrap();
            assert_eq!(c.mechanism, m);
            assert_eq!(c.salt.len(), SALT_BYTES);
            assert_eq!(c.stored_key.len(), m.key_len());
            assert_eq!(c.server_key.len(), m.key_len());
            assert!(c.verify_password("pencil"));
            assert!(!c.verify_password("Pencil"));
            assert!(!c.verify_password(""));
            let again = ScramCredential::new(m, "pencil", MIN_ITERATIONS).unwrap();
            assert_ne!(c.salt, again.salt, "every credential has its own salt");
        }
    }

    #[test]
    fn from_salted_password_equals_new_for_the_same_salt() {
        for m in ScramMechanism::ALL {
            let c = ScramCredential::new(m, "pencil", DEFAULT_ITERATIONS).unwrap();
            let salted = salted_password(m, "pencil", &c.salt, c.iterations);
            let same =
                ScramCredential::from_salted_password(m, c.salt.clone(), c.iterations, &salted)
                    .unwrap();
            assert_eq!(same, c);
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        let m = ScramMechanism::Sha512;
        assert_eq!(
            ScramCredential::new(m, "pw", MIN_ITERATIONS - 1),
            Err(ScramError::Iterations { iterations: 4095 })
        );
        assert!(ScramCredential::new(m, "pw", MAX_ITERATIONS + 1).is_err());
        assert_eq!(
            ScramCredential::new(m, "", MIN_ITERATIONS),
            Err(ScramError::EmptyPassword)
        );
        assert!(matches!(
            ScramCredential::new(m, &"p".repeat(MAX_PASSWORD_BYTES + 1), MIN_ITERATIONS),
            Err(ScramError::PasswordTooLong { .. })
        ));
        assert_eq!(
            ScramCredential::from_salted_password(m, vec![1], MIN_ITERATIONS, &[0; 32]),
            Err(ScramError::SaltedPasswordLength {
                mechanism: "SCRAM-SHA-512",
                expected: 64,
                actual: 32
            })
        );
        assert_eq!(
            ScramCredential::from_salted_password(m, vec![], MIN_ITERATIONS, &[0; 64]),
            Err(ScramError::Salt { bytes: 0 })
        );
        assert!(
            ScramCredential::from_salted_password(
                m,
                vec![0; MAX_SALT_BYTES + 1],
                MIN_ITERATIONS,
                &[0; 64]
            )
            .is_err()
        );
    }

    #[test]
    fn debug_does_not_print_keys() {
        let c = ScramCredential::new(ScramMechanism::Sha256, "pencil", MIN_ITERATIONS).unwrap();
        let debug = format!("{c:?}");
        assert!(
            debug.contains("<redacted>") && debug.contains("4096"),
            "{debug}"
        );
        assert!(!debug.contains(&format!("{:?}", c.stored_key)), "{debug}");
        assert!(!debug.contains(&format!("{:?}", c.server_key)), "{debug}");
    }

    #[test]
    fn a_corrupt_iteration_count_never_verifies() {
        let mut c = ScramCredential::new(ScramMechanism::Sha256, "pw", MIN_ITERATIONS).unwrap();
        c.iterations = 0;
        assert!(!c.verify_password("pw"));
        c.iterations = u32::MAX;
        assert!(!c.verify_password("pw"));
    }
}
