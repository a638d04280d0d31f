//! The request-time quota on the gRPC client listeners: each call of a client service
//! is held back while its principal is over its `request_percentage`, then runs with
//! its handling timed (the core's `Broker::run_request`). The layer runs inside
//! [`crate::authn::AuthLayer`], so it knows the caller, and builds the call's
//! `RequestContext` (`grpc_context` hands the same one to the service, so a byte-rate
//! hold later in the call takes off what this one waited). What is measured is the
//! call's future up to its answer: a unary call's whole handling; a streaming call's
//! setup (a stream's records are governed by the byte-rate quotas as they flow). Health,
//! reflection and the brokers' internal services are exempt.

use std::sync::Arc;

/// Paths the quota does not count: health, reflection, and the brokers' own services.
const EXEMPT_PREFIXES: [&str; 3] = [
    "/grpc.health.",
    "/grpc.reflection.",
    crate::authn::INTERNAL_PREFIX,
];

/// A tower layer over the client gRPC router: see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct RequestQuotaLayer {
    pub(crate) core: Arc<weir_broker::Broker>,
}

impl<S> tower::Layer<S> for RequestQuotaLayer {
    type Service = RequestQuotaService<S>;

    fn layer(&self, inner: S) -> RequestQuotaService<S> {
        RequestQuotaService {
            inner,
            core: self.core.clone(),
        }
    }
}

/// See [`RequestQuotaLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RequestQuotaService<S> {
    inner: S,
    core: Arc<weir_broker::Broker>,
}

impl<S, ReqB, B> tower::Service<::http::Request<ReqB>> for RequestQuotaService<S>
where
    S: tower::Service<::http::Request<ReqB>, Response = ::http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
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
        let path = request.uri().path();
        if EXEMPT_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return Box::pin(self.inner.call(request));
        }
        let ctx = crate::grpc_context_of(request.extensions());
        request.extensions_mut().insert(ctx.clone());
        // tonic's services do nothing until their future is polled: the call runs after
        // the hold.
        let call = self.inner.call(request);
        let core = self.core.clone();
        Box::pin(async move { core.run_request(&ctx, call).await })
    }
}
