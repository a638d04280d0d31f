//! Authentication of gRPC calls, carried to the core: the `authorization` header (an
//! API token, `Bearer weir_...`, or a user and password as call credentials, `Basic
//! base64(user:password)` as HTTP basic; send it over TLS only) is checked by
//! `weir_broker::authn` (passwords against the users' SCRAM credentials, off the runtime
//! threads and cached once verified, so a client that sends its password with every
//! call pays PBKDF2 once; the audit line; the delay of a refusal), and its refusal
//! becomes a status in `status.rs` as every core error does (UNAUTHENTICATED, or
//! UNAVAILABLE when the broker has too many password checks at once). [`AuthLayer`]
//! runs before every client service: a proven user is an [`AuthenticatedUser`] in the
//! request's extensions, which `grpc_context` makes the principal. A call without the
//! header over a TLS connection whose client certificate was verified has the
//! certificate's principal checked by the core instead
//! (`weir_broker::listener_kit::authenticate_certificate`, as the Kafka and AMQP
//! listeners do for each connection), so its audit line and any refusal are the core's.
//! Where authentication is required, a call with neither credentials nor a verified
//! client certificate is UNAUTHENTICATED too.
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

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use weir_broker::{BrokerError, Listener, Reason, RequestContext};

use crate::status::broker_status;

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
        let presented = match precheck(&self.core, &request) {
            Ok(None) => return Box::pin(self.inner.call(request)),
            Ok(Some(presented)) => presented,
            Err(err) => return Box::pin(std::future::ready(Ok(broker_status(err).into_http()))),
        };
        // The service polled ready is the one called (tower's rule), a clone left in its
        // place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let core = self.core.clone();
        Box::pin(async move {
            // The core decides: a password off the runtime threads (cached once
            // verified), a token by one SHA-256, a certificate's principal; audited.
            let listener = request
                .extensions()
                .get::<Listener>()
                .copied()
                .unwrap_or(Listener::GRPC);
            let ctx = RequestContext::anonymous(listener, peer_addr(request.extensions()));
            let authenticated = match presented {
                Presented::Header(header) => {
                    core.authentication()
                        .authenticate_header(&ctx, &header)
                        .await
                }
                Presented::Certificate(principal) => {
                    weir_broker::listener_kit::authenticate_certificate(&core, &ctx, principal)
                        .await
                }
            };
            match authenticated {
                Ok(who) => {
                    request.extensions_mut().insert(AuthenticatedUser {
                        by_token: who.by_token(),
                        name: who.user,
                    });
                    inner.call(request).await
                }
                Err(err) => Ok(broker_status(err).into_http()),
            }
        })
    }
}

/// What a call presented for the core to check.
#[derive(Debug)]
enum Presented {
    /// Its `authorization` header.
    Header(String),
    /// No header, and a verified client certificate naming this principal.
    Certificate(String),
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

/// What the call needs before its service runs: nothing (`None`: unchecked paths, a
/// broker calling the internal services, an anonymous call where that is allowed), its
/// `authorization` header or its client certificate checked by the core (`Some`), or a
/// refusal.
fn precheck<B>(
    core: &weir_broker::Broker,
    request: &::http::Request<B>,
) -> Result<Option<Presented>, BrokerError> {
    let path = request.uri().path();
    if UNCHECKED_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return Ok(None);
    }
    let authentication = core.authentication();
    if path.starts_with(INTERNAL_PREFIX) {
        // Only a broker calls these (every broker presents its certificate when it dials
        // another, and its principal is a super user).
        let certificate = tls_principal(request.extensions());
        authentication.check_internal_caller(certificate.as_deref())?;
        return Ok(None);
    }
    if let Some(value) = request.headers().get(::http::header::AUTHORIZATION) {
        return Ok(Some(Presented::Header(
            value.to_str().unwrap_or_default().to_owned(),
        )));
    }
    match tls_principal(request.extensions()) {
        Some(principal) => Ok(Some(Presented::Certificate(principal))),
        None if authentication.required(Listener::GRPC) => Err(BrokerError::new(
            Reason::AuthenticationFailed,
            "this broker requires authentication: give a user (--user or WEIR_USER, with \
             WEIR_PASSWORD) or a client certificate",
        )),
        None => Ok(None),
    }
}
