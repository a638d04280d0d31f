//! The server's side of one SCRAM exchange: client-first in, server-first out;
//! client-final in, the authenticated user and server-final out.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use subtle::ConstantTimeEq;

use super::message::{self, ClientFirst};
use super::{DEFAULT_ITERATIONS, NONCE_BYTES, SALT_BYTES, ScramCredential, ScramMechanism};
use crate::sasl::{SaslError, check_message_len, process_secret, random_bytes, random_nonce};

/// What [`ScramServer::step`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// The server-first message: send it and wait for the client-final one.
    Continue(Vec<u8>),
    /// Authenticated: `user` is the principal; send `server_final` (it proves to the
    /// client that this server holds its credential).
    Done { user: String, server_final: Vec<u8> },
}

/// One SCRAM exchange, server side. Make one per authentication; a step called out of
/// order, or after a failure, fails with [`SaslError::OutOfOrder`].
///
/// An unknown user is not told apart from a wrong password: the exchange goes on with a
/// fake credential (a salt derived from the user name and a per-process secret, so a
/// client asking twice sees the same salt, and [`DEFAULT_ITERATIONS`]) and fails at the
/// client-final message with the same [`SaslError::AuthenticationFailed`]. What remains
/// observable is the iteration count, if a real user's differs from the default.
pub struct ScramServer {
    mechanism: ScramMechanism,
    server_nonce: String,
    claimed_user: Option<String>,
    state: State,
}

enum State {
    Initial,
    /// Server-first sent, waiting for client-final.
    FirstSent(Box<Exchange>),
    Done,
    Failed,
}

/// What the client-final message is checked against.
struct Exchange {
    user: String,
    credential: ScramCredential,
    /// False if `credential` is the fake one of an unknown user.
    known: bool,
    gs2_header: String,
    /// `client-first-message-bare "," server-first-message ","`: the AuthMessage before
    /// the client-final message.
    auth_message_start: String,
    /// Client nonce and server nonce.
    nonce: String,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Initial => "initial",
            State::FirstSent(_) => "server-first sent",
            State::Done => "done",
            State::Failed => "failed",
        };
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .field("claimed_user", &self.claimed_user)
            .field("state", &state)
            .finish()
    }
}

impl ScramServer {
    /// A new exchange with a random server nonce of [`NONCE_BYTES`].
    pub fn new(mechanism: ScramMechanism) -> Self {
        Self::with_nonce(mechanism, random_nonce(NONCE_BYTES))
    }

    /// An exchange whose server nonce is `server_nonce` (printable ASCII, no `,`): for
    /// RFC test vectors and the fuzz target, which must replay an exchange exactly. A
    /// fixed nonce lets a recorded exchange be replayed: never use it to authenticate.
    #[doc(hidden)]
    pub fn with_nonce_for_tests(mechanism: ScramMechanism, server_nonce: &str) -> Self {
        Self::with_nonce(mechanism, server_nonce.to_owned())
    }

    fn with_nonce(mechanism: ScramMechanism, server_nonce: String) -> Self {
        Self {
            mechanism,
            server_nonce,
            claimed_user: None,
            state: State::Initial,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// The user name the client-first message claimed, once it was decoded, whether or
    /// not the exchange then succeeded: for the audit log line of a failed attempt.
    pub fn claimed_user(&self) -> Option<&str> {
        self.claimed_user.as_deref()
    }

    /// The next step, whichever it is: [`client_first`](Self::client_first) then
    /// [`client_final`](Self::client_final). `lookup` is only called in the first.
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<ServerStep, SaslError> {
        match self.state {
            State::Initial => self.client_first(message, lookup).map(ServerStep::Continue),
            State::FirstSent(_) => {
                let (user, server_final) = self.client_final(message)?;
                Ok(ServerStep::Done { user, server_final })
            }
            State::Done | State::Failed => Err(SaslError::OutOfOrder),
        }
    }

    /// Takes the client-first message; `lookup` gives the stored credential for the user
    /// (None if unknown; a credential of another mechanism counts as unknown). Returns
    /// the server-first message.
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, SaslError> {
        // Any error leaves the exchange failed.
        let State::Initial = std::mem::replace(&mut self.state, State::Failed) else {
            return Err(SaslError::OutOfOrder);
        };
        check_message_len("client-first message", message)?;
        let text = message::text(message, "client-first message")?;
        let ClientFirst {
            gs2_header,
            bare,
            user,
            nonce: client_nonce,
        } = message::client_first(text, &mut self.claimed_user)?;

        let (credential, known) = match lookup(&user) {
            Some(c) if c.mechanism == self.mechanism => (c, true),
            _ => (fake_credential(self.mechanism, &user), false),
        };
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&credential.salt),
            credential.iterations
        );
        self.state = State::FirstSent(Box::new(Exchange {
            auth_message_start: format!("{bare},{server_first},"),
            gs2_header: gs2_header.to_owned(),
            user,
            credential,
            known,
            nonce,
        }));
        Ok(server_first.into_bytes())
    }

    /// Takes the client-final message; on success returns the authenticated user and
    /// the server-final message.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(String, Vec<u8>), SaslError> {
        let State::FirstSent(exchange) = std::mem::replace(&mut self.state, State::Failed) else {
            return Err(SaslError::OutOfOrder);
        };
        check_message_len("client-final message", message)?;
        let text = message::text(message, "client-final message")?;
        let m = message::client_final(text)?;
        if m.channel_binding != exchange.gs2_header.as_bytes() {
            return Err(SaslError::Malformed(
                "the channel binding (c=) is not the gs2 header of the client-first message".into(),
            ));
        }
        if m.nonce != exchange.nonce {
            return Err(SaslError::Malformed(
                "the nonce (r=) is not the one of the server-first message".into(),
            ));
        }
        let mechanism = self.mechanism;
        if m.proof.len() != mechanism.key_len() {
            return Err(SaslError::Malformed(format!(
                "the proof (p=) is {} bytes, not {} as {} has",
                m.proof.len(),
                mechanism.key_len(),
                mechanism.name()
            )));
        }

        // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) must be
        // StoredKey. Done for unknown users too, so both take the same time.
        let auth_message = format!("{}{}", exchange.auth_message_start, m.without_proof);
        let credential = &exchange.credential;
        let client_signature = mechanism.mac(&credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = m
            .proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let proven = mechanism.hash(&client_key).ct_eq(&credential.stored_key);
        if !(bool::from(proven) && exchange.known) {
            return Err(SaslError::AuthenticationFailed {
                mechanism: mechanism.name(),
            });
        }
        let server_signature = mechanism.mac(&credential.server_key, auth_message.as_bytes());
        self.state = State::Done;
        let server_final = format!("v={}", STANDARD.encode(server_signature));
        Ok((exchange.user, server_final.into_bytes()))
    }
}

/// The credential an unknown user is shown: a salt that is the same for the same user
/// and mechanism for the life of the process (a client retrying sees no change, as with
/// a real user), unpredictable keys, the default iteration count.
fn fake_credential(mechanism: ScramMechanism, user: &str) -> ScramCredential {
    let mut ctx = hmac::Context::with_key(process_secret());
    ctx.update(b"weir SCRAM salt of an unknown user\0");
    ctx.update(mechanism.name().as_bytes());
    ctx.update(b"\0");
    ctx.update(user.as_bytes());
    let salt = ctx.sign().as_ref()[..SALT_BYTES].to_vec();
    let mut stored_key = vec![0; mechanism.key_len()];
    random_bytes(&mut stored_key);
    let mut server_key = vec![0; mechanism.key_len()];
    random_bytes(&mut server_key);
    ScramCredential {
        mechanism,
        salt,
        iterations: DEFAULT_ITERATIONS,
        stored_key,
        server_key,
    }
}

#[cfg(test)]
mod tests;
