//! Refusals of the transport, said in the API's codes and words. tonic turns a request it
//! cannot decode into INTERNAL (gRPC's code for a server fault) and one over its size
//! limit into OUT_OF_RANGE with its own wording; clients would read the first as a server
//! bug and the second as "watch too old". This layer rewrites both before they leave:
//! INVALID_ARGUMENT for an undecodable request, and the API server's 413 message
//! (`Request entity too large: limit is N`, RESOURCE_EXHAUSTED) for an oversize one.

use super::REQUEST_TOO_LARGE;
use futures::future::BoxFuture;
use std::task::{Context, Poll};
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::{Code, Status};

/// What tonic's protobuf codec says before the decoder's own error.
const UNDECODABLE: &str = "failed to decode Protobuf message";
/// What tonic's framing says of a message over the receive limit.
const OVERSIZE: &str = "Error, decoded message length too large";

/// The status a transport refusal is sent as, or None when `status` is not one.
/// `max_request_bytes` is the limit users are told about (the service's own check).
pub fn rewritten(status: &Status, max_request_bytes: usize) -> Option<Status> {
    let message = status.message();
    match status.code() {
        Code::Internal if message.starts_with(UNDECODABLE) => {
            let detail = message[UNDECODABLE.len()..].trim_start_matches([':', ' ']);
            Some(Status::invalid_argument(if detail.is_empty() {
                "the request is not a valid twinset.v1 message".to_string()
            } else {
                format!("the request is not a valid twinset.v1 message: {detail}")
            }))
        }
        Code::OutOfRange if message.starts_with(OVERSIZE) => Some(Status::resource_exhausted(
            format!("{REQUEST_TOO_LARGE}: limit is {max_request_bytes}"),
        )),
        _ => None,
    }
}

/// A tower layer applying [`rewritten`] to every response of the server.
#[derive(Clone, Copy, Debug)]
pub struct RefusalsLayer {
    /// The request limit users are told about.
    pub max_request_bytes: usize,
}

impl<S> tower::Layer<S> for RefusalsLayer {
    type Service = Refusals<S>;

    fn layer(&self, inner: S) -> Refusals<S> {
        Refusals {
            inner,
            max_request_bytes: self.max_request_bytes,
        }
    }
}

/// The service [`RefusalsLayer`] wraps around the server's routes.
#[derive(Clone, Debug)]
pub struct Refusals<S> {
    inner: S,
    max_request_bytes: usize,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for Refusals<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let response = self.inner.call(request);
        let limit = self.max_request_bytes;
        Box::pin(async move {
            let mut response = response.await?;
            rewrite(response.headers_mut(), limit);
            Ok(response)
        })
    }
}

/// Rewrites a refusal sent as headers only (how tonic answers a request it could not
/// read); any other response passes untouched.
fn rewrite(headers: &mut HeaderMap, max_request_bytes: usize) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let Some(better) = rewritten(&status, max_request_bytes) else {
        return;
    };
    headers.remove("grpc-message");
    headers.remove("grpc-status-details-bin");
    if let Err(e) = better.add_header(headers) {
        tracing::warn!(error = %e, "cannot rewrite a transport refusal");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_requests_are_invalid_arguments() {
        let s = Status::internal(
            "failed to decode Protobuf message: ApplyRequest.object: invalid wire type",
        );
        let r = rewritten(&s, 10).unwrap();
        assert_eq!(r.code(), Code::InvalidArgument);
        assert_eq!(
            r.message(),
            "the request is not a valid twinset.v1 message: ApplyRequest.object: invalid wire type"
        );
    }

    #[test]
    fn oversize_requests_read_as_the_api_servers_413() {
        let s = Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
        );
        let r = rewritten(&s, 1_572_864).unwrap();
        assert_eq!(r.code(), Code::ResourceExhausted);
        assert_eq!(r.message(), "Request entity too large: limit is 1572864");
    }

    #[test]
    fn other_statuses_pass() {
        for s in [
            Status::internal("store: disk full"),
            Status::out_of_range("too old resource version: 5"),
            Status::invalid_argument("failed to decode Protobuf message"),
        ] {
            assert!(rewritten(&s, 1).is_none(), "{s:?}");
        }
    }

    #[test]
    fn headers_are_rewritten_in_place() {
        let mut headers = HeaderMap::new();
        Status::internal("failed to decode Protobuf message: bad")
            .add_header(&mut headers)
            .unwrap();
        rewrite(&mut headers, 1);
        let s = Status::from_header_map(&headers).unwrap();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.message(),
            "the request is not a valid twinset.v1 message: bad"
        );
    }
}
