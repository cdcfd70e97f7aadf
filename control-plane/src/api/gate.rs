//! One wrapper for everything that decides, before a call runs, whether it may run: the
//! authorization of [`super::authz`] and the in-flight bounds of [`super::inflight`].
//! A refused call is answered at once with the gate's status and never reaches the
//! service; an admitted one keeps what the gate handed out (a slot) until its reply.

use futures::future::{BoxFuture, Either};
use std::task::{Context, Poll};
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tonic::Status;

/// Admits or refuses a call from its request head (path, extensions).
pub trait Gate: Clone + Send + 'static {
    /// Held while the admitted call runs (a permit, or nothing).
    type Pass: Send + 'static;

    /// The pass for this call, or the status that refuses it.
    fn admit<B>(&self, request: &Request<B>) -> Result<Self::Pass, Status>;
}

/// A service behind a [`Gate`]; keeps the wrapped service's name, so it is routed as
/// that service itself.
#[derive(Clone, Debug)]
pub struct Gated<S, G> {
    inner: S,
    gate: G,
}

impl<S, G> Gated<S, G> {
    /// `service` behind `gate`.
    pub fn new(gate: G, service: S) -> Self {
        Gated {
            inner: service,
            gate,
        }
    }
}

impl<S: NamedService, G> NamedService for Gated<S, G> {
    const NAME: &'static str = S::NAME;
}

impl<S, G, ReqBody, ResBody> tower::Service<Request<ReqBody>> for Gated<S, G>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    S::Error: Send + 'static,
    G: Gate,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<
        BoxFuture<'static, Result<Self::Response, Self::Error>>,
        std::future::Ready<Result<Self::Response, Self::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self.gate.admit(&request) {
            Err(status) => Either::Right(std::future::ready(Ok(status.into_http()))),
            Ok(pass) => {
                let response = self.inner.call(request);
                Either::Left(Box::pin(async move {
                    let response = response.await;
                    // A unary reply is whole once it is here: the call is done.
                    drop(pass);
                    response
                }))
            }
        }
    }
}
