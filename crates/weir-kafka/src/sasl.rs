//! SASL on a Kafka connection (KIP-43 and KIP-152): SaslHandshake v1 picks a mechanism,
//! then SaslAuthenticate requests carry the exchange, framed as Kafka requests. The
//! connection answers them itself, in order, as it answers ApiVersions: they change
//! who the connection is, so no other request may run beside them.
//!
//! Mechanisms: SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, weir-security's exchange), and
//! PLAIN only on a TLS connection (the password crosses the wire; its PBKDF2 runs off the
//! runtime threads under the broker's cap, and a broker with too many checks at once
//! answers REQUEST_TIMED_OUT, retriable, and closes). A failed
//! authentication is answered with SASL_AUTHENTICATION_FAILED, written to the audit log,
//! and the connection is closed after the answer, as Kafka does. On a listener that
//! requires authentication, any request but ApiVersions, SaslHandshake and
//! SaslAuthenticate before it succeeds closes the connection (a client certificate that
//! named a principal counts as authenticated).

use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use weir_security::sasl::{PasswordCheck, SaslError, parse_plain};
use weir_security::scram::{ScramCredential, ScramMechanism, ScramServer};

use crate::frame::Request;
use crate::handler::{ConnectionInfo, HandlerError, Response};

/// Kafka's UNSUPPORTED_SASL_MECHANISM error code.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// Kafka's ILLEGAL_SASL_STATE error code.
pub const ILLEGAL_SASL_STATE: i16 = 34;
/// Kafka's SASL_AUTHENTICATION_FAILED error code.
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
/// How long a connection whose authentication failed stays open after the answer
/// (Kafka's `connection.failed.authentication.delay.ms`).
pub const FAILED_AUTHENTICATION_DELAY: std::time::Duration = std::time::Duration::from_millis(100);
/// The PLAIN mechanism's name.
pub const PLAIN: &str = "PLAIN";

/// The answer of [`SaslAuthority::verify_password`], to be awaited.
pub type PasswordFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = PasswordCheck> + Send + 'a>>;

/// Kafka's REQUEST_TIMED_OUT error code: the answer when the broker has too many password
/// checks running or waiting. Clients treat it as retriable (Java's is a
/// `RetriableException`, not an `AuthenticationException`, so it reconnects rather than
/// failing the application; librdkafka reconnects after any SASL error).
pub const REQUEST_TIMED_OUT: i16 = 7;

/// What a listener's SASL needs from the broker: its rules and the users' credentials.
pub trait SaslAuthority: Send + Sync {
    /// Whether a client must authenticate before anything but ApiVersions and SASL.
    fn required(&self) -> bool;
    /// `user`'s stored credential for `mechanism`, if the user has one.
    fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;
    /// Whether `password` is `user`'s (PLAIN): a check that may wait for a turn on the
    /// blocking pool, or find the broker too busy (`weir_broker::authn`).
    fn verify_password<'a>(&'a self, user: &'a str, password: &'a str) -> PasswordFuture<'a>;
    /// Writes the audit line of a failed authentication.
    fn failed(&self, info: &ConnectionInfo, user: Option<&str>, mechanism: &str, reason: &str);
}

/// Where a connection's SASL exchange stands.
#[derive(Debug, Default)]
pub enum SaslState {
    /// No handshake yet.
    #[default]
    Start,
    /// A handshake chose PLAIN: one SaslAuthenticate carries the credentials.
    Plain,
    /// A handshake chose SCRAM; the exchange has `ScramServer`'s state.
    Scram(ScramMechanism, Box<ScramServer>),
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

/// The mechanisms offered on `info`'s connection: PLAIN only over TLS.
pub fn mechanisms(info: &ConnectionInfo) -> Vec<&'static str> {
    let mut offered: Vec<&'static str> = ScramMechanism::ALL.iter().map(|m| m.name()).collect();
    if info.tls {
        offered.push(PLAIN);
    }
    offered
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
            let offered = mechanisms(info);
            let chosen = request.mechanism.as_str();
            let error_code = match (&*state, chosen) {
                (SaslState::Start, PLAIN) if offered.contains(&PLAIN) => {
                    *state = SaslState::Plain;
                    0
                }
                (SaslState::Start, name) => match ScramMechanism::from_name(name) {
                    Some(mechanism) => {
                        *state = SaslState::Scram(mechanism, Box::new(ScramServer::new(mechanism)));
                        0
                    }
                    None => UNSUPPORTED_SASL_MECHANISM,
                },
                _ => ILLEGAL_SASL_STATE,
            };
            let response = SaslHandshakeResponse::default()
                .with_error_code(error_code)
                .with_mechanisms(
                    offered
                        .iter()
                        .map(|m| StrBytes::from_static_str(m))
                        .collect(),
                );
            let after = match error_code {
                0 => After::Continue,
                _ => {
                    authority.failed(info, None, chosen, "mechanism not offered on this listener");
                    After::Close
                }
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
    let failed = |state: &mut SaslState, user: Option<&str>, mechanism: &str, err: &SaslError| {
        authority.failed(info, user, mechanism, &err.to_string());
        *state = SaslState::Start;
        let response = SaslAuthenticateResponse::default()
            .with_error_code(SASL_AUTHENTICATION_FAILED)
            .with_error_message(Some(StrBytes::from_string(err.to_string())));
        (response, After::Close)
    };
    match std::mem::take(state) {
        SaslState::Plain => match parse_plain(token) {
            Ok(credentials) => {
                match authority
                    .verify_password(&credentials.user, &credentials.password)
                    .await
                {
                    PasswordCheck::Verified => {
                        *state = SaslState::Done(credentials.user.clone());
                        (ok(Vec::new()), After::Authenticated(credentials.user))
                    }
                    PasswordCheck::Refused => failed(
                        state,
                        Some(&credentials.user),
                        PLAIN,
                        &SaslError::AuthenticationFailed { mechanism: PLAIN },
                    ),
                    PasswordCheck::Busy => {
                        let why = "the broker is checking too many passwords at once; retry";
                        authority.failed(info, Some(&credentials.user), PLAIN, why);
                        let response = SaslAuthenticateResponse::default()
                            .with_error_code(REQUEST_TIMED_OUT)
                            .with_error_message(Some(StrBytes::from_static_str(why)));
                        (response, After::Close)
                    }
                }
            }
            Err(err) => failed(state, None, PLAIN, &err),
        },
        SaslState::Scram(mechanism, mut server) => {
            if server.claimed_user().is_none() {
                let lookup = |user: &str| authority.credential(user, mechanism);
                match server.client_first(token, lookup) {
                    Ok(server_first) => {
                        *state = SaslState::Scram(mechanism, server);
                        (ok(server_first), After::Continue)
                    }
                    Err(err) => failed(state, server.claimed_user(), mechanism.name(), &err),
                }
            } else {
                match server.client_final(token) {
                    Ok((user, server_final)) => {
                        *state = SaslState::Done(user.clone());
                        (ok(server_final), After::Authenticated(user))
                    }
                    Err(err) => failed(state, server.claimed_user(), mechanism.name(), &err),
                }
            }
        }
        other @ (SaslState::Start | SaslState::Done(_)) => {
            *state = other;
            let response = SaslAuthenticateResponse::default()
                .with_error_code(ILLEGAL_SASL_STATE)
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

/// The authority of a handler without users (its SASL is off): every attempt fails.
#[derive(Debug)]
pub struct NoUsers;

impl SaslAuthority for NoUsers {
    fn required(&self) -> bool {
        false
    }

    fn credential(&self, _user: &str, _mechanism: ScramMechanism) -> Option<ScramCredential> {
        None
    }

    fn verify_password<'a>(&'a self, _user: &'a str, _password: &'a str) -> PasswordFuture<'a> {
        Box::pin(std::future::ready(PasswordCheck::Refused))
    }

    fn failed(&self, info: &ConnectionInfo, user: Option<&str>, mechanism: &str, reason: &str) {
        tracing::info!(peer = %info.peer, user, mechanism, reason, "SASL authentication failed: this listener has no users");
    }
}
