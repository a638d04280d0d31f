//! SASL exchanges as the core runs them: the listener names a mechanism
//! ([`Authentication::start`]), then feeds each client message to
//! [`Authentication::step`] and sends back what it returns, until a [`Step::Done`] or an
//! error. PLAIN is one step (a password check, [`Authentication::authenticate`]);
//! SCRAM-SHA-256/512 two, weir-security's `ScramServer` doing the arithmetic, the
//! credential read from the broker's accounts. No I/O, no framing: Kafka's
//! SaslHandshake/SaslAuthenticate and, next, AMQP's Start-Ok/Secure-Ok carry the same
//! bytes.

use weir_security::sasl::parse_plain;
use weir_security::scram::{ScramMechanism, ScramServer};

use super::{Authenticated, Authentication, Credentials, Mechanism};
use crate::audit::Outcome;
use crate::context::RequestContext;
use crate::error::{BrokerError, Reason};

/// The SASL mechanisms offered on a connection: SCRAM always, PLAIN only over TLS (its
/// password crosses the wire).
pub fn sasl_mechanisms(tls: bool) -> Vec<&'static str> {
    let mut offered: Vec<&'static str> = ScramMechanism::ALL.iter().map(|m| m.name()).collect();
    if tls {
        offered.push(Mechanism::Plain.name());
    }
    offered
}

/// One SASL exchange in progress. Make one per authentication
/// ([`Authentication::start`]); it is over after a [`Step::Done`] or an error.
#[derive(Debug)]
pub struct Exchange {
    mechanism: Mechanism,
    state: State,
}

#[derive(Debug)]
enum State {
    /// PLAIN: the one message is still to come.
    Plain,
    /// SCRAM: `ScramServer` knows which message is next.
    Scram(Box<ScramServer>),
    /// Done or failed: a new exchange is needed.
    Over,
}

/// What a step of an exchange gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge and feed the client's answer to the next step.
    Continue(Vec<u8>),
    /// Authenticated; send `message` (SCRAM's server-final, which proves to the client
    /// that the broker holds its credential; empty for PLAIN).
    Done {
        authenticated: Authenticated,
        message: Vec<u8>,
    },
}

impl Exchange {
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// An exchange whose SCRAM server nonce is fixed: for RFC test vectors only.
    #[cfg(test)]
    pub(crate) fn scram_with_nonce(mechanism: ScramMechanism, nonce: &str) -> Exchange {
        Exchange {
            mechanism: Mechanism::Scram(mechanism),
            state: State::Scram(Box::new(ScramServer::with_nonce_for_tests(
                mechanism, nonce,
            ))),
        }
    }
}

impl Authentication<'_> {
    /// Starts an exchange of the SASL mechanism `name` on a connection (`tls`: whether
    /// it is encrypted). A mechanism not offered there ([`sasl_mechanisms`]) is
    /// [`Reason::UnsupportedMechanism`], audited.
    pub fn start(
        &self,
        ctx: &RequestContext,
        name: &str,
        tls: bool,
    ) -> Result<Exchange, BrokerError> {
        let state = match name {
            "PLAIN" if tls => Some((Mechanism::Plain, State::Plain)),
            _ => ScramMechanism::from_name(name).map(|m| {
                (
                    Mechanism::Scram(m),
                    State::Scram(Box::new(ScramServer::new(m))),
                )
            }),
        };
        match state {
            Some((mechanism, state)) => Ok(Exchange { mechanism, state }),
            None => {
                self.audit.authentication(
                    ctx,
                    name,
                    None,
                    Outcome::Refused("mechanism not offered on this listener"),
                );
                Err(BrokerError::new(
                    Reason::UnsupportedMechanism,
                    format!(
                        "SASL mechanism {name:?} is not offered here; offered: {}",
                        sasl_mechanisms(tls).join(", ")
                    ),
                ))
            }
        }
    }

    /// Feeds the client's next `message` to `exchange`. An error ends the exchange:
    /// [`Reason::AuthenticationFailed`] (wrong credentials, a malformed message, a step
    /// out of order; audited, answered after the delay), [`Reason::Busy`] (PLAIN's
    /// password check could not run now), [`Reason::IllegalAuthenticationState`] (the
    /// exchange was over already).
    pub async fn step(
        &self,
        ctx: &RequestContext,
        exchange: &mut Exchange,
        message: &[u8],
    ) -> Result<Step, BrokerError> {
        let mechanism = exchange.mechanism;
        match std::mem::replace(&mut exchange.state, State::Over) {
            State::Plain => {
                let credentials = match parse_plain(message) {
                    Ok(c) => c,
                    Err(err) => {
                        let why = err.to_string();
                        return Err(self.refused(ctx, mechanism, None, &why, why.clone()).await);
                    }
                };
                let authenticated = self
                    .authenticate(
                        ctx,
                        Credentials::Password {
                            mechanism,
                            user: credentials.user,
                            password: credentials.password,
                        },
                    )
                    .await?;
                Ok(Step::Done {
                    authenticated,
                    message: Vec::new(),
                })
            }
            State::Scram(mut server) => {
                let scram = server.mechanism();
                let step = server.step(message, |user| self.accounts.credential(user, scram));
                match step {
                    Ok(weir_security::scram::ServerStep::Continue(challenge)) => {
                        exchange.state = State::Scram(server);
                        Ok(Step::Continue(challenge))
                    }
                    Ok(weir_security::scram::ServerStep::Done { user, server_final }) => {
                        Ok(Step::Done {
                            authenticated: self.accepted(ctx, mechanism, user),
                            message: server_final,
                        })
                    }
                    Err(err) => {
                        let why = err.to_string();
                        Err(self
                            .refused(ctx, mechanism, server.claimed_user(), &why, why.clone())
                            .await)
                    }
                }
            }
            State::Over => Err(BrokerError::new(
                Reason::IllegalAuthenticationState,
                "the SASL exchange is over (it succeeded or failed): start a new one",
            )),
        }
    }
}
