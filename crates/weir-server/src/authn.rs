//! Authentication of gRPC calls: an API token (`authorization: Bearer weir_...`, one
//! SHA-256 to check, its owner the principal) or a user and password as call
//! credentials (the
//! `authorization: Basic base64(user:password)` header, as HTTP basic; send it over TLS
//! only), checked against the users' SCRAM credentials in the metadata (verified
//! passwords are cached, so a client that sends its password with every call pays
//! PBKDF2 once). [`AuthLayer`] runs before every client service: a good password puts
//! an [`AuthenticatedUser`] in the request's extensions, which `grpc_context` makes the
//! principal; a wrong one is UNAUTHENTICATED, with an audit line. Where authentication
//! is required, a call with neither credentials nor a verified client certificate is
//! UNAUTHENTICATED too.
//!
//! The health and reflection services are not checked. The internal services
//! (`weir.internal.v1`: replication, controller, quorum), where they share the client
//! listener, answer on a secured broker only callers whose certificate names a super
//! user: the brokers, which present theirs when they dial each other (a broker's own
//! certificate's principal is a super user, which also serves the calls brokers make to
//! client services: share group forwards, dead-letter copies). The same layer runs on a
//! separate `--internal-listen`, which has only the internal services.

use std::net::SocketAddr;
use std::sync::Arc;

use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use weir_broker::{Listener, RequestContext};
use weir_security::sasl::PasswordCheck;
use weir_security::token::{Authorization, parse_authorization};

/// The user a call authenticated as with its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthenticatedUser {
    pub(crate) name: String,
    /// By an API token (which may not make tokens), not a password.
    pub(crate) by_token: bool,
}

/// Paths the layer lets through unchecked: health and reflection.
const UNCHECKED_PREFIXES: [&str; 2] = ["/grpc.health.", "/grpc.reflection."];

/// The brokers' own services (replication, controller, quorum), on the client listener
/// unless `--internal-listen` gives them their own.
pub(crate) const INTERNAL_PREFIX: &str = "/weir.internal.";

/// A tower layer over the client gRPC router: see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct AuthLayer {
    pub(crate) core: Arc<weir_broker::Broker>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            core: self.core.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Debug, Clone)]
pub(crate) struct AuthService<S> {
    inner: S,
    core: Arc<weir_broker::Broker>,
}

impl<S, ReqB, B> tower::Service<::http::Request<ReqB>> for AuthService<S>
where
    S: tower::Service<::http::Request<ReqB>, Response = ::http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    B: Default + Send + 'static,
{
    type Response = ::http::Response<B>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<::http::Response<B>, S::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: ::http::Request<ReqB>) -> Self::Future {
        match authenticate(&self.core, &mut request) {
            Ok(None) => Box::pin(self.inner.call(request)),
            Ok(Some(password)) => {
                // The service polled ready is the one called (tower's rule), a clone
                // left in its place.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let core = self.core.clone();
                Box::pin(async move {
                    match check_password(&core, password).await {
                        Ok(user) => {
                            request.extensions_mut().insert(user);
                            inner.call(request).await
                        }
                        Err(status) => Ok(status.into_http()),
                    }
                })
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

/// A user and password a call carries, to be checked.
struct PasswordClaim {
    ctx: RequestContext,
    user: String,
    password: String,
}

/// Checks a call's password off the runtime threads (`weir_broker::authn`).
async fn check_password(
    core: &weir_broker::Broker,
    claim: PasswordClaim,
) -> Result<AuthenticatedUser, Status> {
    let PasswordClaim {
        ctx,
        user,
        password,
    } = claim;
    match weir_broker::security_admin::check_password(core, &user, &password).await {
        PasswordCheck::Verified => Ok(AuthenticatedUser {
            name: user,
            by_token: false,
        }),
        PasswordCheck::Refused => {
            core.authorizer().audit().authentication_failed(
                &ctx,
                Some(&user),
                "BASIC",
                "wrong password or unknown user",
            );
            Err(Status::unauthenticated(format!(
                "authentication failed for user {user:?}: wrong password or unknown user"
            )))
        }
        PasswordCheck::Busy => Err(busy()),
    }
}

/// The answer when too many password checks run or wait: retriable.
pub(crate) fn busy() -> Status {
    Status::unavailable(
        "this broker is checking too many passwords at once; retry shortly (a client that \
         keeps its password cached by the broker is not held up)",
    )
}

/// The principal a verified client certificate names, on a TLS connection.
pub(crate) fn tls_principal(extensions: &::http::Extensions) -> Option<String> {
    let info = extensions.get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    weir_security::tls::principal_of(certs.first()?)
}

/// The client's address, plaintext or TLS.
pub(crate) fn peer_addr(extensions: &::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
}

/// Checks the call's credentials where that is cheap, recording the user in its
/// extensions; a password is handed back to be checked off the runtime threads.
fn authenticate<B>(
    core: &weir_broker::Broker,
    request: &mut ::http::Request<B>,
) -> Result<Option<PasswordClaim>, Status> {
    let path = request.uri().path();
    if UNCHECKED_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return Ok(None);
    }
    let security = core.authorizer().config();
    if path.starts_with(INTERNAL_PREFIX) {
        // Only a broker calls these: on a secured broker, a caller whose certificate
        // names a super user (every broker presents its own when it dials another, and
        // its principal is one).
        let broker = tls_principal(request.extensions())
            .is_some_and(|p| security.super_users.contains(&format!("User:{p}")));
        if (security.require_authentication || security.authorization) && !broker {
            return Err(Status::unauthenticated(
                "the brokers' internal services answer only brokers, which present their \
                 certificates",
            ));
        }
        return Ok(None);
    }
    let header = request
        .headers()
        .get(::http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let Some(header) = header else {
        if security.require_authentication && tls_principal(request.extensions()).is_none() {
            return Err(Status::unauthenticated(
                "this broker requires authentication: give a user (--user or WEIR_USER, \
                 with WEIR_PASSWORD) or a client certificate",
            ));
        }
        return Ok(None);
    };
    let peer = peer_addr(request.extensions());
    let ctx = RequestContext::anonymous(Listener::Grpc, peer);
    let credentials = parse_authorization(&header).map_err(|e| {
        core.authorizer()
            .audit()
            .authentication_failed(&ctx, None, "-", &e.to_string());
        Status::unauthenticated(format!("bad authorization header: {e}"))
    })?;
    match credentials {
        Authorization::Basic { user, password } => Ok(Some(PasswordClaim {
            ctx,
            user,
            password,
        })),
        Authorization::Bearer(token) => match weir_broker::authn::check_token(core, &token) {
            Ok(name) => {
                request.extensions_mut().insert(AuthenticatedUser {
                    name,
                    by_token: true,
                });
                Ok(None)
            }
            Err(refused) => {
                core.authorizer().audit().authentication_failed(
                    &ctx,
                    refused.owner.as_deref(),
                    "BEARER",
                    &format!("token {}: {}", token.id, refused.reason),
                );
                Err(Status::unauthenticated(format!(
                    "API token {} is not accepted: unknown, revoked or expired",
                    token.id
                )))
            }
        },
    }
}
