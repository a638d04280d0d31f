//! The client's side of one SCRAM exchange, for Weir's own tools and the tests:
//! client-first out; server-first in, client-final out; server-final checked.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;

use super::message::{self, ServerFinal, escape_user};
use super::{MAX_ITERATIONS, MIN_ITERATIONS, NONCE_BYTES, ScramMechanism, salted_password};
use crate::sasl::{SaslError, check_message_len, random_nonce};

/// The gs2 header the client sends: no channel binding, no authorization id.
const GS2_HEADER: &str = "n,,";

/// One SCRAM exchange, client side. Debug does not print the password.
pub struct ScramClient {
    mechanism: ScramMechanism,
    user: String,
    password: String,
    client_nonce: String,
    state: State,
}

enum State {
    Initial,
    FirstSent {
        client_first_bare: String,
    },
    /// Client-final sent: the server-final message must carry this signature.
    FinalSent {
        server_signature: Vec<u8>,
    },
    Failed,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Initial => "initial",
            State::FirstSent { .. } => "client-first sent",
            State::FinalSent { .. } => "client-final sent",
            State::Failed => "failed",
        };
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("state", &state)
            .finish()
    }
}

impl ScramClient {
    pub fn new(mechanism: ScramMechanism, user: &str, password: &str) -> Self {
        Self::with_nonce(mechanism, user, password, random_nonce(NONCE_BYTES))
    }

    /// A client whose first nonce is `client_nonce` (printable ASCII, no `,`): for RFC
    /// test vectors and the fuzz seeds, which must be the same on every run. Never in
    /// a real client: a nonce must not repeat.
    #[doc(hidden)]
    pub fn with_nonce_for_tests(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
        client_nonce: &str,
    ) -> Self {
        Self::with_nonce(mechanism, user, password, client_nonce.to_owned())
    }

    fn with_nonce(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
        client_nonce: String,
    ) -> Self {
        Self {
            mechanism,
            user: user.to_owned(),
            password: password.to_owned(),
            client_nonce,
            state: State::Initial,
        }
    }

    /// The client-first message: `n,,n=<user>,r=<nonce>`. Calling it again starts a new
    /// exchange, with a new nonce.
    pub fn client_first(&mut self) -> Vec<u8> {
        if !matches!(self.state, State::Initial) {
            self.client_nonce = random_nonce(NONCE_BYTES);
        }
        let bare = format!("n={},r={}", escape_user(&self.user), self.client_nonce);
        let message = format!("{GS2_HEADER}{bare}");
        self.state = State::FirstSent {
            client_first_bare: bare,
        };
        message.into_bytes()
    }

    /// Takes the server-first message and returns the client-final one. Refuses a
    /// server nonce that does not extend the client's, and an iteration count outside
    /// [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`] (too few weakens the credential, too many
    /// would make the client spin); those checks come before the PBKDF2.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        let State::FirstSent { client_first_bare } =
            std::mem::replace(&mut self.state, State::Failed)
        else {
            return Err(SaslError::OutOfOrder);
        };
        check_message_len("server-first message", server_first)?;
        let text = message::text(server_first, "server-first message")?;
        let m = message::server_first(text)?;
        if m.nonce.len() <= self.client_nonce.len() || !m.nonce.starts_with(&self.client_nonce) {
            return Err(SaslError::Malformed(
                "the server's nonce (r=) does not extend the client's".into(),
            ));
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&m.iterations) {
            return Err(SaslError::Malformed(format!(
                "the server asks for {} iterations: between {MIN_ITERATIONS} and {MAX_ITERATIONS} are accepted",
                m.iterations
            )));
        }

        let mechanism = self.mechanism;
        let salted = salted_password(mechanism, &self.password, &m.salt, m.iterations);
        let client_key = mechanism.client_key(&salted);
        let stored_key = mechanism.hash(&client_key);
        let without_proof = format!("c={},r={}", STANDARD.encode(GS2_HEADER), m.nonce);
        let auth_message = format!("{client_first_bare},{text},{without_proof}");
        let client_signature = mechanism.mac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_signature =
            mechanism.mac(&mechanism.server_key(&salted), auth_message.as_bytes());
        self.state = State::FinalSent { server_signature };
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server's signature proves it holds this
    /// user's credential ([`SaslError::ServerNotAuthenticated`] if not); a server that
    /// reports an error (`e=`) gives [`SaslError::AuthenticationFailed`].
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), SaslError> {
        let State::FinalSent { server_signature } = &self.state else {
            return Err(SaslError::OutOfOrder);
        };
        check_message_len("server-final message", server_final)?;
        let text = message::text(server_final, "server-final message")?;
        let mechanism = self.mechanism.name();
        match message::server_final(text)? {
            ServerFinal::Verifier(signature) => {
                if bool::from(signature.ct_eq(server_signature)) {
                    Ok(())
                } else {
                    Err(SaslError::ServerNotAuthenticated { mechanism })
                }
            }
            ServerFinal::Error => Err(SaslError::AuthenticationFailed { mechanism }),
        }
    }
}
