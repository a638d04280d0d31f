//! Authentication, decided here once for every listener. A listener carries bytes: the
//! Kafka adapter the messages of a SASL exchange ([`Authentication::start`] and
//! [`Authentication::step`]: PLAIN in one step, SCRAM-SHA-256/512 as weir-security's
//! state machine, the core doing no I/O), gRPC and the console an `authorization`
//! header ([`Authentication::authenticate_header`]: HTTP basic, or a bearer API token),
//! and any listener one set of [`Credentials`] ([`Authentication::authenticate`]: a
//! user and password, an API token, the principal of a verified client certificate). It
//! gets back the [`Authenticated`] user or a [`BrokerError`] whose [`Reason`] it maps to
//! its protocol as it maps every other (gRPC status, Kafka error code, HTTP status).
//!
//! What every mechanism shares is here and nowhere else: whether a listener requires
//! authentication ([`Authentication::required`]), one audit line per attempt
//! ([`AuditLog::authentication`]: listener, peer, mechanism, principal, outcome), one
//! cache of password checks with its cap on PBKDF2s ([`PasswordChecks`]), and one delay
//! before any refusal is answered ([`FAILED_AUTHENTICATION_DELAY`]). A new protocol's
//! mechanism (AMQP's PLAIN and AMQPLAIN, Redis's AUTH, SQS's SigV4) is a
//! [`Mechanism`] variant and, if it is not a user and password or a token, a
//! [`Credentials`] variant checked in [`Authentication::authenticate`].

mod exchange;
mod passwords;
#[cfg(test)]
mod tests;

use std::time::Duration;

use weir_security::sasl::{PasswordCheck, SaslError};
use weir_security::scram::{ScramCredential, ScramMechanism};
use weir_security::token::{Authorization, PresentedToken, parse_authorization};

use crate::audit::{AuditLog, Outcome};
use crate::authz::SecurityConfig;
use crate::context::{Listener, Principal, Protocol, RequestContext};
use crate::error::{BrokerError, Reason};

pub use exchange::{Exchange, Step, sasl_mechanisms};
pub use passwords::{
    MAX_CONCURRENT_PASSWORD_CHECKS, MAX_WAITING_PASSWORD_CHECKS, PASSWORD_CHECK_WAIT,
    PasswordChecks,
};

/// How long any refused authentication is held before it is answered (as Kafka's
/// `connection.failed.authentication.delay.ms` delays the close): a guesser waits, the
/// broker only keeps a timer.
pub const FAILED_AUTHENTICATION_DELAY: Duration = Duration::from_millis(200);

/// The message of a password check refused for being one too many at once.
const BUSY: &str = "this broker is checking too many passwords at once; retry shortly (a \
                    client that keeps its password cached by the broker is not held up)";

/// How a client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// SASL PLAIN (RFC 4616): a user and password in one message.
    Plain,
    /// SASL SCRAM-SHA-256 or SCRAM-SHA-512 (RFC 5802, 7677): a challenge and response;
    /// the password never crosses the wire.
    Scram(ScramMechanism),
    /// HTTP `Basic` credentials (RFC 7617): gRPC call credentials and the console.
    Basic,
    /// AMQP 0-9-1's AMQPLAIN: a user and password in a field table (RabbitMQ's clients).
    AmqPlain,
    /// An API token (`weir_<id>_<secret>`), as `Bearer` credentials.
    Bearer,
    /// A client certificate the TLS handshake verified, naming the principal.
    Certificate,
}

impl Mechanism {
    /// The name in audit lines (and SASL's name for the SASL mechanisms).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
            Mechanism::Basic => "BASIC",
            Mechanism::AmqPlain => "AMQPLAIN",
            Mechanism::Bearer => "BEARER",
            Mechanism::Certificate => "CERTIFICATE",
        }
    }
}

/// What a client presented, in one piece.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user and password, sent with `mechanism` ([`Mechanism::Plain`] or
    /// [`Mechanism::Basic`]; a new protocol's password mechanism names itself here).
    Password {
        mechanism: Mechanism,
        user: String,
        password: String,
    },
    /// An API token.
    Token(PresentedToken),
    /// The principal of a client certificate the TLS handshake verified.
    Certificate(String),
}

impl std::fmt::Debug for Credentials {
    /// Never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password {
                mechanism, user, ..
            } => f
                .debug_struct("Password")
                .field("mechanism", mechanism)
                .field("user", user)
                .finish_non_exhaustive(),
            Credentials::Token(token) => f.debug_tuple("Token").field(token).finish(),
            Credentials::Certificate(p) => f.debug_tuple("Certificate").field(p).finish(),
        }
    }
}

impl Credentials {
    /// The mechanism the credentials came by.
    pub fn mechanism(&self) -> Mechanism {
        match self {
            Credentials::Password { mechanism, .. } => *mechanism,
            Credentials::Token(_) => Mechanism::Bearer,
            Credentials::Certificate(_) => Mechanism::Certificate,
        }
    }
}

/// A client that proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The user: the principal is `User:<user>`.
    pub user: String,
    pub mechanism: Mechanism,
}

impl Authenticated {
    /// Whether an API token proved it (such a request may not make tokens).
    pub fn by_token(&self) -> bool {
        self.mechanism == Mechanism::Bearer
    }

    /// Makes `ctx` this user's.
    pub fn apply(&self, ctx: &mut RequestContext) {
        ctx.principal = Principal::User(self.user.clone());
        ctx.authenticated_by_token = self.by_token();
    }
}

/// What authentication reads of the cluster's metadata: the users' SCRAM credentials
/// and the API tokens. The broker's comes from its metadata image; tests give their own.
pub trait Accounts: Send + Sync {
    /// `user`'s stored credential for `mechanism`, if the user has one.
    fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;
    /// The owner of the presented token, or why it is refused.
    fn token_owner(&self, token: &PresentedToken) -> Result<String, TokenRefused>;
}

impl Accounts for crate::Broker {
    fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        crate::security_admin::credential(self, user, mechanism)
    }

    fn token_owner(&self, token: &PresentedToken) -> Result<String, TokenRefused> {
        check_token(self, token)
    }
}

impl crate::Broker {
    /// Authentication against this broker's users and tokens (see the module docs).
    pub fn authentication(&self) -> Authentication<'_> {
        let authorizer = self.authorizer();
        Authentication {
            accounts: self,
            config: authorizer.config(),
            passwords: authorizer.passwords(),
            audit: authorizer.audit(),
            failed_delay: FAILED_AUTHENTICATION_DELAY,
        }
    }
}

/// Authentication as one broker decides it: its accounts, security settings, password
/// checks and audit log. Borrowed from the broker ([`crate::Broker::authentication`]).
pub struct Authentication<'a> {
    pub(crate) accounts: &'a dyn Accounts,
    pub(crate) config: &'a SecurityConfig,
    pub(crate) passwords: &'a PasswordChecks,
    pub(crate) audit: &'a AuditLog,
    pub(crate) failed_delay: Duration,
}

impl std::fmt::Debug for Authentication<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authentication")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Authentication<'_> {
    /// Whether a client of `listener` must authenticate before anything else. The admin
    /// listener's console also asks for credentials when only authorisation is on: its
    /// pages would show an anonymous visitor nothing an ACL does not grant `User:ANONYMOUS`,
    /// so it asks who she is instead of showing empty pages.
    pub fn required(&self, listener: Listener) -> bool {
        match listener.protocol {
            Protocol::HTTP => self.config.require_authentication || self.config.authorization,
            Protocol::INTERNAL => false,
            _ => self.config.require_authentication,
        }
    }

    /// Whether a caller of the brokers' internal services (replication, controller,
    /// quorum) may call them: on a secured broker only another broker, whose certificate
    /// names a super user (`certificate`: the principal of the caller's verified client
    /// certificate, if it presented one).
    pub fn check_internal_caller(&self, certificate: Option<&str>) -> Result<(), BrokerError> {
        let secured = self.config.require_authentication || self.config.authorization;
        let broker = certificate.is_some_and(|p| {
            self.config
                .super_users
                .iter()
                .any(|s| s.strip_prefix("User:") == Some(p))
        });
        if secured && !broker {
            return Err(BrokerError::new(
                Reason::AuthenticationFailed,
                "the brokers' internal services answer only brokers, which present their \
                 certificates",
            ));
        }
        Ok(())
    }

    /// Checks `credentials` presented on `ctx`'s listener: the user they prove, or an
    /// error of [`Reason::AuthenticationFailed`] (answered after
    /// [`FAILED_AUTHENTICATION_DELAY`]) or [`Reason::Busy`] (too many password checks at
    /// once: retry). Audited either way.
    pub async fn authenticate(
        &self,
        ctx: &RequestContext,
        credentials: Credentials,
    ) -> Result<Authenticated, BrokerError> {
        let mechanism = credentials.mechanism();
        match credentials {
            Credentials::Password { user, password, .. } => {
                let stored = ScramMechanism::ALL
                    .iter()
                    .filter_map(|&m| self.accounts.credential(&user, m))
                    .collect();
                match self.passwords.check(&user, stored, &password).await {
                    PasswordCheck::Verified => Ok(self.accepted(ctx, mechanism, user)),
                    PasswordCheck::Refused => {
                        let message = match mechanism {
                            // Kafka's text, which Kafka's clients show.
                            Mechanism::Plain | Mechanism::Scram(_) => {
                                SaslError::AuthenticationFailed {
                                    mechanism: mechanism.name(),
                                }
                                .to_string()
                            }
                            _ => format!(
                                "authentication failed for user {user:?}: wrong password or \
                                 unknown user"
                            ),
                        };
                        Err(self
                            .refused(
                                ctx,
                                mechanism,
                                Some(&user),
                                "wrong password or unknown user",
                                message,
                            )
                            .await)
                    }
                    PasswordCheck::Busy => {
                        self.audit.authentication(
                            ctx,
                            mechanism.name(),
                            Some(&user),
                            Outcome::Unavailable("too many password checks at once"),
                        );
                        Err(BrokerError::new(Reason::Busy, BUSY))
                    }
                }
            }
            Credentials::Token(token) => match self.accounts.token_owner(&token) {
                Ok(owner) => Ok(self.accepted(ctx, mechanism, owner)),
                Err(refused) => Err(self
                    .refused(
                        ctx,
                        mechanism,
                        refused.owner.as_deref(),
                        &format!("token {}: {}", token.id, refused.reason),
                        format!(
                            "API token {} is not accepted: unknown, revoked or expired",
                            token.id
                        ),
                    )
                    .await),
            },
            // TLS verified the chain; the name is the principal.
            Credentials::Certificate(principal) => Ok(self.accepted(ctx, mechanism, principal)),
        }
    }

    /// Checks an `authorization` header's value (`Basic` or `Bearer`, as gRPC's call
    /// credentials and the console carry them): [`authenticate`](Self::authenticate)
    /// with what it holds; one that does not parse is refused (and audited).
    pub async fn authenticate_header(
        &self,
        ctx: &RequestContext,
        header: &str,
    ) -> Result<Authenticated, BrokerError> {
        let credentials = match parse_authorization(header) {
            Ok(Authorization::Basic { user, password }) => Credentials::Password {
                mechanism: Mechanism::Basic,
                user,
                password,
            },
            Ok(Authorization::Bearer(token)) => Credentials::Token(token),
            Err(e) => {
                let why = e.to_string();
                self.audit
                    .authentication(ctx, "-", None, Outcome::Refused(&why));
                tokio::time::sleep(self.failed_delay).await;
                return Err(BrokerError::new(
                    Reason::AuthenticationFailed,
                    format!("bad authorization header: {e}"),
                ));
            }
        };
        self.authenticate(ctx, credentials).await
    }

    /// A success: audited, and the user handed back.
    fn accepted(&self, ctx: &RequestContext, mechanism: Mechanism, user: String) -> Authenticated {
        self.audit
            .authentication(ctx, mechanism.name(), Some(&user), Outcome::Authenticated);
        Authenticated { user, mechanism }
    }

    /// A refusal: audited with `why`, answered after the delay with `message` (which
    /// never says whether the user exists).
    async fn refused(
        &self,
        ctx: &RequestContext,
        mechanism: Mechanism,
        claimed: Option<&str>,
        why: &str,
        message: String,
    ) -> BrokerError {
        self.audit
            .authentication(ctx, mechanism.name(), claimed, Outcome::Refused(why));
        tokio::time::sleep(self.failed_delay).await;
        BrokerError::new(Reason::AuthenticationFailed, message)
    }
}

/// Why a presented API token was refused (the audit line's reason; the client is told
/// only that the token is not accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRefused {
    /// The owner, when the token's id names one.
    pub owner: Option<String>,
    pub reason: &'static str,
}

/// The user an API token authenticates (its owner), checked against the metadata: the
/// id must name a token (not revoked), not expired, whose secret's digest matches (in
/// constant time), owned by a user who still exists. One SHA-256: no cap needed.
fn check_token(broker: &crate::Broker, presented: &PresentedToken) -> Result<String, TokenRefused> {
    let image = broker.registry().cluster().image();
    let refused = |owner: Option<&str>, reason| TokenRefused {
        owner: owner.map(str::to_owned),
        reason,
    };
    let Some(token) = image.token(&presented.id) else {
        return Err(refused(None, "no such token (never made, or revoked)"));
    };
    if !presented.secret_matches(&token.secret_sha256) {
        return Err(refused(Some(&token.owner), "wrong token secret"));
    }
    if token.expired(crate::now_ms()) {
        return Err(refused(Some(&token.owner), "expired token"));
    }
    if !image.has_user(&token.owner) {
        return Err(refused(Some(&token.owner), "the token's owner is gone"));
    }
    Ok(token.owner.clone())
}
