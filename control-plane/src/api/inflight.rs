//! Bounds on Cluster-service requests in flight, as kube-apiserver's
//! `--max-requests-inflight` and `--max-mutating-requests-inflight`: a unary call that
//! finds its budget spent is refused at once with RESOURCE_EXHAUSTED and the API server's
//! 429 text ("Too many requests, please try again later."), never queued.
//!
//! Why this gives agents fairness: only the Cluster service (what clients call) is
//! wrapped; the Nodes service (agents' heartbeats, status reports, assignment streams)
//! has no such bound and is never counted. Every write waits in the durable store's one
//! bounded queue (1024 writes, `store/durable.rs`); with at most 200 (the default)
//! mutating client requests in flight, clients can never fill it, so a heartbeat's,
//! status report's or controller's write always finds room and no node goes Unknown
//! because clients flood the API. Watch and Logs are long-running and bounded elsewhere
//! (`slots.rs` for Watch), so they are not counted here.

use super::gate::{Gate, Gated};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::http::Request;
use tonic::Status;

/// kube-apiserver's default `--max-requests-inflight`.
pub const DEFAULT_MAX_REQUESTS_INFLIGHT: usize = 400;
/// kube-apiserver's default `--max-mutating-requests-inflight`.
pub const DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT: usize = 200;
/// The API server's message for a request refused by these bounds (HTTP 429).
pub const TOO_MANY_REQUESTS: &str = "Too many requests, please try again later.";

/// Which budget a Cluster method spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Apply, Update, Delete, Scale, Evict: `--max-mutating-requests-inflight`.
    Mutating,
    /// Get, List (and any other unary read): `--max-requests-inflight`.
    ReadOnly,
    /// Watch and Logs streams: not counted (Watch has its own slots).
    LongRunning,
}

/// The class of a call by its gRPC path (`/twinset.v1.Cluster/Apply`).
pub fn classify(path: &str) -> Class {
    match path.rsplit('/').next().unwrap_or("") {
        "Apply" | "Update" | "Delete" | "Scale" | "Evict" => Class::Mutating,
        "Watch" | "Logs" => Class::LongRunning,
        _ => Class::ReadOnly,
    }
}

/// The two budgets, shared by every connection.
#[derive(Clone, Debug)]
pub struct InFlight {
    read_only: Arc<Semaphore>,
    mutating: Arc<Semaphore>,
}

/// Why a call was refused (it maps to RESOURCE_EXHAUSTED with [`TOO_MANY_REQUESTS`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{TOO_MANY_REQUESTS}")]
pub struct TooManyRequests;

impl From<TooManyRequests> for Status {
    fn from(_: TooManyRequests) -> Status {
        Status::resource_exhausted(TOO_MANY_REQUESTS)
    }
}

impl InFlight {
    /// Budgets of `max_read_only` and `max_mutating` calls at once; a bound of 0 is
    /// refused by the caller (the flags), here it would refuse every call of its class.
    pub fn new(max_read_only: usize, max_mutating: usize) -> InFlight {
        InFlight {
            read_only: Arc::new(Semaphore::new(max_read_only)),
            mutating: Arc::new(Semaphore::new(max_mutating)),
        }
    }

    /// A place in `class`'s budget, held until the permit drops (None for long-running
    /// calls, which are not counted), or the refusal when the budget is spent.
    pub fn admit(&self, class: Class) -> Result<Option<OwnedSemaphorePermit>, TooManyRequests> {
        let budget = match class {
            Class::LongRunning => return Ok(None),
            Class::ReadOnly => &self.read_only,
            Class::Mutating => &self.mutating,
        };
        budget
            .clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| TooManyRequests)
    }

    /// Wraps `service` (the Cluster server) so each call is admitted first.
    pub fn wrap<S>(&self, service: S) -> InFlightService<S> {
        Gated::new(self.clone(), service)
    }
}

impl Gate for InFlight {
    type Pass = Option<OwnedSemaphorePermit>;

    fn admit<B>(&self, request: &Request<B>) -> Result<Self::Pass, Status> {
        // The inherent admit: the class's budget.
        InFlight::admit(self, classify(request.uri().path())).map_err(Status::from)
    }
}

/// A service whose calls are admitted by [`InFlight`] first.
pub type InFlightService<S> = Gated<S, InFlight>;

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;
    use std::convert::Infallible;
    use std::task::{Context, Poll};
    use tokio::sync::oneshot;
    use tonic::codegen::http::Response;

    #[test]
    fn methods_are_classed_as_the_api_server_does() {
        for m in ["Apply", "Update", "Delete", "Scale", "Evict"] {
            assert_eq!(
                classify(&format!("/twinset.v1.Cluster/{m}")),
                Class::Mutating
            );
        }
        for m in ["Get", "List"] {
            assert_eq!(
                classify(&format!("/twinset.v1.Cluster/{m}")),
                Class::ReadOnly
            );
        }
        for m in ["Watch", "Logs"] {
            assert_eq!(
                classify(&format!("/twinset.v1.Cluster/{m}")),
                Class::LongRunning
            );
        }
    }

    #[test]
    fn budgets_count_and_refuse_each_class_apart() {
        let limits = InFlight::new(1, 2);
        let w1 = limits.admit(Class::Mutating).unwrap();
        let _w2 = limits.admit(Class::Mutating).unwrap();
        assert_eq!(limits.admit(Class::Mutating).unwrap_err(), TooManyRequests);
        // Reads have their own budget; long-running calls are never counted.
        let r1 = limits.admit(Class::ReadOnly).unwrap();
        assert!(limits.admit(Class::ReadOnly).is_err());
        for _ in 0..10 {
            assert!(limits.admit(Class::LongRunning).unwrap().is_none());
        }
        // A finished call gives its place back.
        drop(w1);
        assert!(limits.admit(Class::Mutating).is_ok());
        drop(r1);
        assert!(limits.admit(Class::ReadOnly).is_ok());
        let s = Status::from(TooManyRequests);
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(s.message(), "Too many requests, please try again later.");
    }

    /// A service whose calls finish when the test says so.
    #[derive(Clone)]
    struct Held(Arc<std::sync::Mutex<Vec<oneshot::Sender<()>>>>);

    impl tower::Service<Request<()>> for Held {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = BoxFuture<'static, Result<Response<String>, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            let (tx, rx) = oneshot::channel();
            self.0.lock().unwrap().push(tx);
            Box::pin(async move {
                let _ = rx.await;
                Ok(Response::new("done".to_string()))
            })
        }
    }

    fn call(path: &str) -> Request<()> {
        Request::builder().uri(path).body(()).unwrap()
    }

    #[tokio::test]
    async fn calls_over_the_bound_are_refused_at_once_and_places_return() {
        use tower::Service;
        let held = Held(Arc::default());
        let mut svc = InFlight::new(5, 1).wrap(held.clone());
        let first = tokio::spawn(svc.call(call("/twinset.v1.Cluster/Apply")));
        tokio::task::yield_now().await;
        let refused = svc.call(call("/twinset.v1.Cluster/Update")).await.unwrap();
        let status = Status::from_header_map(refused.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.message(), TOO_MANY_REQUESTS);
        assert_eq!(held.0.lock().unwrap().len(), 1, "a refused call never runs");
        // Reads are not held up by the writes' budget.
        let read = tokio::spawn(svc.call(call("/twinset.v1.Cluster/List")));
        tokio::task::yield_now().await;
        for tx in held.0.lock().unwrap().drain(..) {
            tx.send(()).unwrap();
        }
        assert_eq!(first.await.unwrap().unwrap().body(), "done");
        assert_eq!(read.await.unwrap().unwrap().body(), "done");
        // The write's place is back.
        let again = tokio::spawn(svc.call(call("/twinset.v1.Cluster/Apply")));
        loop {
            if let Some(tx) = held.0.lock().unwrap().pop() {
                tx.send(()).unwrap();
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(again.await.unwrap().unwrap().body(), "done");
    }
}
