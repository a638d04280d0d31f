//! Requests over the transport limit (`max_request_bytes`) answered as
//! RESOURCE_EXHAUSTED. tonic refuses such a message as its length prefix arrives, before
//! buffering it, but with OUT_OF_RANGE and its own text; OUT_OF_RANGE means "bad offset"
//! to a Weir client, and a size limit is a resource limit a user acts on by sending
//! smaller requests. [`OversizeLayer`] rewrites the answer of unary and server-streaming
//! calls (refused before the handler runs); a client stream (ProduceStream) reads the
//! error itself and maps it with [`request_too_large`].

use tonic::{Code, Status};
use weir_broker::{BrokerError, Reason};

use crate::status::broker_status;

/// How tonic's decoder starts the message of an over-size refusal (tonic 0.14).
const TONIC_TOO_LARGE: &str = "decoded message length too large";

/// `status` as RESOURCE_EXHAUSTED naming the limit, if it is tonic's refusal of a
/// message over `limit_bytes`; `None` for any other status.
pub(crate) fn request_too_large(status: &Status, limit_bytes: usize) -> Option<Status> {
    if status.code() != Code::OutOfRange || !status.message().contains(TONIC_TOO_LARGE) {
        return None;
    }
    // "... found {len} bytes, the limit is: {limit} bytes"
    let found = status
        .message()
        .split("found ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or("?");
    let reason = Reason::RequestTooLarge {
        request_bytes: found.parse().unwrap_or(0),
        max: limit_bytes,
    };
    Some(broker_status(BrokerError::new(
        reason,
        format!(
            "the request is {found} bytes, over this broker's limit of {limit_bytes} bytes \
             (max_request_bytes): send fewer or smaller records per request"
        ),
    )))
}

/// A tower layer over the gRPC router: see the module docs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OversizeLayer {
    pub(crate) limit_bytes: usize,
}

impl<S> tower::Layer<S> for OversizeLayer {
    type Service = OversizeService<S>;

    fn layer(&self, inner: S) -> OversizeService<S> {
        OversizeService {
            inner,
            limit_bytes: self.limit_bytes,
        }
    }
}

/// See [`OversizeLayer`].
#[derive(Debug, Clone)]
pub(crate) struct OversizeService<S> {
    inner: S,
    limit_bytes: usize,
}

impl<S, Req, B> tower::Service<Req> for OversizeService<S>
where
    S: tower::Service<Req, Response = ::http::Response<B>>,
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

    fn call(&mut self, request: Req) -> Self::Future {
        let limit_bytes = self.limit_bytes;
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            // A refused request is answered "trailers-only": the status is in the headers.
            if let Some(refused) = Status::from_header_map(response.headers())
                && let Some(status) = request_too_large(&refused, limit_bytes)
            {
                let headers = response.headers_mut();
                headers.remove("grpc-status-details-bin");
                if let Err(e) = status.add_header(headers) {
                    tracing::warn!(error = %e, "could not rewrite an over-size refusal");
                }
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn tonic_refusal_becomes_resource_exhausted_naming_the_limit() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 5000 bytes, the limit is: 4096 bytes",
        );
        let status = request_too_large(&tonic, 4096).expect("mapped");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("5000 bytes"),
            "{}",
            status.message()
        );
        assert!(
            status.message().contains("4096 bytes"),
            "{}",
            status.message()
        );
        let info = status
            .get_error_details()
            .error_info()
            .cloned()
            .expect("info");
        assert_eq!(info.reason, "REQUEST_TOO_LARGE");
        assert_eq!(info.metadata["request_bytes"], "5000");
        assert_eq!(info.metadata["max_request_bytes"], "4096");
    }

    #[test]
    fn other_out_of_range_statuses_are_left_alone() {
        let offset = Status::out_of_range("offset 7 is past the high watermark");
        assert!(request_too_large(&offset, 4096).is_none());
    }
}
