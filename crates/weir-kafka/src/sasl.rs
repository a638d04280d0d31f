//! SASL on a Kafka connection (KIP-43 and KIP-152): SaslHandshake v1 picks a mechanism,
//! then SaslAuthenticate requests carry the exchange, framed as Kafka requests. The
//! connection answers them itself, in order, as it answers ApiVersions: they change
//! who the connection is, so no other request may run beside them.
//!
//! This file only carries bytes: the core decides (`weir_broker::authn`: which
//! mechanisms a connection is offered, SCRAM-SHA-256/512 always and PLAIN only over
//! TLS; the exchange; the password checks, their cap and the delay of a refusal; the
//! audit line), and its reasons become Kafka codes in `handlers/errors.rs`
//! (SASL_AUTHENTICATION_FAILED, one text for a wrong password and an unknown user;
//! UNSUPPORTED_SASL_MECHANISM; ILLEGAL_SASL_STATE; REQUEST_TIMED_OUT, retriable, when
//! the broker has too many password checks at once). After any failure the connection
//! is closed after the answer, as Kafka does. On a listener that requires
//! authentication, any request but ApiVersions, SaslHandshake and SaslAuthenticate
//! before it succeeds closes the connection (a client certificate that named a
//! principal counts as authenticated).

use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use weir_broker::RequestContext;
use weir_broker::authn::{Authenticated, Exchange, Mechanism, Step};
use weir_broker::{BrokerError, Reason};

use crate::frame::Request;
use crate::handler::{ConnectionInfo, HandlerError, Response};
use crate::handlers::errors::code;

/// How long a connection whose authentication failed stays open after the answer
/// (Kafka's `connection.failed.authentication.delay.ms`).
pub const FAILED_AUTHENTICATION_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// The answer of [`SaslAuthority::certificate`], to be awaited.
pub type CertificateFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Authenticated, BrokerError>> + Send + 'a>,
>;

/// The answer of [`SaslAuthority::step`], to be awaited.
pub type StepFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Step, BrokerError>> + Send + 'a>>;

/// What a listener's SASL needs from the broker: the core's authentication, for this
/// listener's connections.
pub trait SaslAuthority: Send + Sync {
    /// Whether a client must authenticate before anything but ApiVersions and SASL.
    fn required(&self) -> bool;
    /// Starts an exchange of the mechanism a SaslHandshake named.
    fn start(&self, info: &ConnectionInfo, mechanism: &str) -> Result<Exchange, BrokerError>;
    /// Feeds a SaslAuthenticate's bytes to the exchange.
    fn step<'a>(
        &'a self,
        info: &'a ConnectionInfo,
        exchange: &'a mut Exchange,
        message: &'a [u8],
    ) -> StepFuture<'a>;
    /// What a verified client certificate naming `principal` proves, asked by the
    /// listener kit as the connection is admitted (`KafkaBroker`'s: the core's
    /// `listener_kit::authenticate_certificate`, audited there; a refusal closes the
    /// connection).
    fn certificate<'a>(
        &'a self,
        ctx: &'a RequestContext,
        principal: String,
    ) -> CertificateFuture<'a>;
}

/// Where a connection's SASL exchange stands.
#[derive(Debug, Default)]
pub enum SaslState {
    /// No handshake yet.
    #[default]
    Start,
    /// A handshake chose a mechanism; its exchange goes on.
    Exchange(Box<Exchange>),
    /// Authenticated as this user.
    Done(String),
}

/// What the connection does after a SASL answer.
#[derive(Debug)]
pub enum After {
    /// Go on reading requests.
    Continue,
    /// The connection is now this user's.
    Authenticated(String),
    /// Authentication failed: write the answer, then close.
    Close,
}

/// Answers a SaslHandshake or SaslAuthenticate request.
pub async fn answer(
    authority: &dyn SaslAuthority,
    info: &ConnectionInfo,
    state: &mut SaslState,
    request: &Request,
) -> Result<(Response, After), HandlerError> {
    let version = request.api_version;
    match request.api_key {
        ApiKey::SaslHandshake => {
            let request: SaslHandshakeRequest = request.decode_body()?;
            let error_code = match &*state {
                SaslState::Start => match authority.start(info, request.mechanism.as_str()) {
                    Ok(exchange) => {
                        *state = SaslState::Exchange(Box::new(exchange));
                        0
                    }
                    Err(err) => code(&err.reason),
                },
                _ => code(&Reason::IllegalAuthenticationState),
            };
            let response = SaslHandshakeResponse::default()
                .with_error_code(error_code)
                .with_mechanisms(
                    weir_broker::authn::sasl_mechanisms(info.tls)
                        .iter()
                        .map(|m| StrBytes::from_static_str(m))
                        .collect(),
                );
            let after = match error_code {
                0 => After::Continue,
                _ => After::Close,
            };
            Ok((Response::encode(&response, version)?, after))
        }
        ApiKey::SaslAuthenticate => {
            let request: SaslAuthenticateRequest = request.decode_body()?;
            let (response, after) = authenticate(authority, info, state, &request.auth_bytes).await;
            Ok((Response::encode(&response, version)?, after))
        }
        other => unreachable!("{other:?} is not a SASL api"),
    }
}

/// One SaslAuthenticate step.
async fn authenticate(
    authority: &dyn SaslAuthority,
    info: &ConnectionInfo,
    state: &mut SaslState,
    token: &[u8],
) -> (SaslAuthenticateResponse, After) {
    let ok = |bytes: Vec<u8>| SaslAuthenticateResponse::default().with_auth_bytes(bytes.into());
    match std::mem::take(state) {
        SaslState::Exchange(mut exchange) => {
            match authority.step(info, &mut exchange, token).await {
                Ok(Step::Continue(challenge)) => {
                    *state = SaslState::Exchange(exchange);
                    (ok(challenge), After::Continue)
                }
                Ok(Step::Done {
                    authenticated,
                    message,
                }) => {
                    *state = SaslState::Done(authenticated.user.clone());
                    (ok(message), After::Authenticated(authenticated.user))
                }
                Err(err) => {
                    let response = SaslAuthenticateResponse::default()
                        .with_error_code(code(&err.reason))
                        .with_error_message(Some(StrBytes::from_string(err.message)));
                    (response, After::Close)
                }
            }
        }
        other @ (SaslState::Start | SaslState::Done(_)) => {
            *state = other;
            let response = SaslAuthenticateResponse::default()
                .with_error_code(code(&Reason::IllegalAuthenticationState))
                .with_error_message(Some(StrBytes::from_static_str(
                    "SaslAuthenticate without a SaslHandshake choosing a mechanism first",
                )));
            (response, After::Close)
        }
    }
}

/// Whether `api_key` may be sent before the connection has authenticated.
pub fn allowed_before_authentication(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
    )
}

/// The authority of a handler without users (its SASL is off): no mechanism is offered.
#[derive(Debug)]
pub struct NoUsers;

impl SaslAuthority for NoUsers {
    fn required(&self) -> bool {
        false
    }

    fn start(&self, info: &ConnectionInfo, mechanism: &str) -> Result<Exchange, BrokerError> {
        tracing::info!(peer = %info.peer, mechanism, "SASL handshake refused: this listener has no users");
        Err(BrokerError::new(
            Reason::UnsupportedMechanism,
            "this listener has no users",
        ))
    }

    fn step<'a>(
        &'a self,
        _info: &'a ConnectionInfo,
        _exchange: &'a mut Exchange,
        _message: &'a [u8],
    ) -> StepFuture<'a> {
        Box::pin(std::future::ready(Err(BrokerError::new(
            Reason::IllegalAuthenticationState,
            "this listener has no users",
        ))))
    }

    /// Without a core (a listener's own tests) the name TLS verified stands as it is.
    fn certificate<'a>(
        &'a self,
        _ctx: &'a RequestContext,
        principal: String,
    ) -> CertificateFuture<'a> {
        Box::pin(std::future::ready(Ok(Authenticated {
            user: principal,
            mechanism: Mechanism::Certificate,
        })))
    }
}
