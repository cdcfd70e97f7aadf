//! Request counts and latencies of the whole API port, as one tower layer around the
//! server's routes ([`RequestsLayer`]), so no service or REST handler records anything
//! itself. What a request is (pure, [`classify`]): a gRPC call is named by its service
//! and method from the API's descriptor set (health and reflection too), a REST request
//! by kube-apiserver's verb, resource and subresource; anything else by a fixed name, so
//! no caller can grow the label sets.
//!
//! The latency is the time to the response head (for a stream, until it opens). The
//! count carries the outcome: the HTTP status class of a REST request, and the gRPC
//! status code of a call, read from the head when the call is refused at once, else from
//! the trailers at the end of the response body (a body dropped before them, a client
//! gone, counts as Cancelled).

use super::metrics;
use crate::rest::path::{self, Route};
use crate::rest::Query;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::Code;

/// A gRPC call's series: its service and method.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcCall {
    /// The full service name (`twinset.v1.Cluster`), or `unknown`.
    pub service: &'static str,
    /// The method (`Apply`), or `unknown`.
    pub method: &'static str,
}

/// A gRPC call's count: [`GrpcCall`] and the status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcResult {
    /// The full service name.
    pub service: &'static str,
    /// The method.
    pub method: &'static str,
    /// The gRPC status code's name (`OK`, `NotFound`, …).
    pub code: &'static str,
}

/// A REST request's series: kube-apiserver's verb, resource and subresource.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestCall {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, or `other`.
    pub verb: &'static str,
    /// The resource (`pods`), or for other paths `discovery`, `version`, `health`,
    /// `metrics`, `unknown`.
    pub resource: &'static str,
    /// `status`, `scale`, `log`, `eviction`, `other`, or empty.
    pub subresource: &'static str,
}

/// A REST request's count: [`RestCall`] and the HTTP status class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestResult {
    /// The verb.
    pub verb: &'static str,
    /// The resource.
    pub resource: &'static str,
    /// The subresource.
    pub subresource: &'static str,
    /// `2xx`, `4xx`, `5xx`, ….
    pub code: &'static str,
}

/// What a request is, for its series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// A gRPC call.
    Grpc(GrpcCall),
    /// A REST request.
    Rest(RestCall),
}

const UNKNOWN_CALL: GrpcCall = GrpcCall {
    service: "unknown",
    method: "unknown",
};

/// Every gRPC method the server answers, by path (`/twinset.v1.Cluster/Apply`): those of
/// the API's descriptor set, gRPC health and reflection.
static GRPC_METHODS: LazyLock<HashMap<String, (String, String)>> = LazyLock::new(|| {
    use prost::Message as _;
    let mut methods = HashMap::new();
    let mut add = |service: String, method: String| {
        methods.insert(format!("/{service}/{method}"), (service, method));
    };
    match prost_types::FileDescriptorSet::decode(twinset_proto::FILE_DESCRIPTOR_SET) {
        Ok(set) => {
            for file in set.file {
                for service in &file.service {
                    let full = format!("{}.{}", file.package(), service.name());
                    for method in &service.method {
                        add(full.clone(), method.name().to_string());
                    }
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "the API's descriptor set does not decode; gRPC calls are counted as unknown")
        }
    }
    add("grpc.health.v1.Health".into(), "Check".into());
    add("grpc.health.v1.Health".into(), "Watch".into());
    add(
        "grpc.reflection.v1.ServerReflection".into(),
        "ServerReflectionInfo".into(),
    );
    methods
});

fn grpc_call(path: &str) -> GrpcCall {
    let methods: &'static HashMap<String, (String, String)> = &GRPC_METHODS;
    methods
        .get(path)
        .map_or(UNKNOWN_CALL, |(service, method)| GrpcCall {
            service,
            method,
        })
}

/// The name of a gRPC status code, as gRPC spells it in its own metrics.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// What a request is, from its head: gRPC when its content type says so.
pub fn classify(method: &Method, uri: &http::Uri, headers: &HeaderMap) -> Call {
    let grpc = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if grpc {
        return Call::Grpc(grpc_call(uri.path()));
    }
    Call::Rest(rest_call(method, uri.path(), uri.query()))
}

fn rest_call(method: &Method, path: &str, query: Option<&str>) -> RestCall {
    let other = |resource| RestCall {
        verb: match *method {
            Method::GET | Method::HEAD => "get",
            _ => "other",
        },
        resource,
        subresource: "",
    };
    let route = match path {
        "/version" => return other("version"),
        "/healthz" | "/readyz" | "/livez" => return other("health"),
        twinset_proto::metrics::PATH => return other("metrics"),
        _ => path::parse(path),
    };
    let target = match route {
        Ok(Route::Object(t)) => t,
        Ok(Route::CoreVersions | Route::Groups | Route::Resources { .. }) => {
            return other("discovery")
        }
        Err(_) => return other("unknown"),
    };
    let watch = Query::parse(query).flag("watch");
    let named = target.name.is_some();
    let verb = match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    let subresource = match target.subresource.as_deref() {
        None => "",
        Some("status") => "status",
        Some("scale") => "scale",
        Some("log") => "log",
        Some("eviction") => "eviction",
        Some(_) => "other",
    };
    RestCall {
        verb,
        resource: target.kind.resource(),
        subresource,
    }
}

/// The tower layer counting and timing every request of the server.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestsLayer;

impl<S> tower::Layer<S> for RequestsLayer {
    type Service = Requests<S>;

    fn layer(&self, inner: S) -> Requests<S> {
        Requests { inner }
    }
}

/// The service [`RequestsLayer`] wraps around the server's routes.
#[derive(Clone, Debug)]
pub struct Requests<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for Requests<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let call = classify(request.method(), request.uri(), request.headers());
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move { Ok(record(call, response.await?, started.elapsed())) })
    }
}

/// Records the latency of `call` and, once its outcome is known, its count.
fn record<B>(call: Call, response: Response<B>, took: Duration) -> Response<tonic::body::Body>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    let m = metrics();
    match call {
        Call::Rest(c) => {
            m.rest_latency.get_or_create(&c).observe(took.as_secs_f64());
            m.rest_requests
                .get_or_create(&RestResult {
                    verb: c.verb,
                    resource: c.resource,
                    subresource: c.subresource,
                    code: status_class(response.status()),
                })
                .inc();
            response.map(tonic::body::Body::new)
        }
        Call::Grpc(c) => {
            m.grpc_latency.get_or_create(&c).observe(took.as_secs_f64());
            // Refused at once: the status is in the head ("trailers only").
            let mut pending = Some(c);
            if let Some(status) = tonic::Status::from_header_map(response.headers()) {
                count_grpc(c, status.code());
                pending = None;
            }
            response.map(|inner| {
                tonic::body::Body::new(Counted {
                    inner: tonic::body::Body::new(inner),
                    pending,
                })
            })
        }
    }
}

fn count_grpc(c: GrpcCall, code: Code) {
    metrics()
        .grpc_requests
        .get_or_create(&GrpcResult {
            service: c.service,
            method: c.method,
            code: code_name(code),
        })
        .inc();
}

/// A gRPC response body that counts its call when the trailers pass (or, without
/// them, when it ends or is dropped).
struct Counted {
    inner: tonic::body::Body,
    /// The call, until it is counted.
    pending: Option<GrpcCall>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = tonic::Status::from_header_map(trailers)
                        .map_or(Code::Unknown, |s| s.code());
                    if let Some(c) = self.pending.take() {
                        count_grpc(c, code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(c) = self.pending.take() {
                    count_grpc(c, Code::Internal);
                }
            }
            Poll::Ready(None) => {
                if let Some(c) = self.pending.take() {
                    count_grpc(c, Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(c) = self.pending.take() {
            count_grpc(c, Code::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest(method: Method, uri: &str) -> Call {
        classify(&method, &uri.parse().unwrap(), &HeaderMap::new())
    }

    fn rc(verb: &'static str, resource: &'static str, subresource: &'static str) -> Call {
        Call::Rest(RestCall {
            verb,
            resource,
            subresource,
        })
    }

    #[test]
    fn rest_requests_are_named_as_kube_apiserver_names_them() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                rc("list", "pods", ""),
            ),
            (Method::GET, "/api/v1/pods?watch=1", rc("watch", "pods", "")),
            (
                Method::GET,
                "/apis/apps/v1/namespaces/default/daemonsets/x",
                rc("get", "daemonsets", ""),
            ),
            (
                Method::POST,
                "/apis/apps/v1/namespaces/default/daemonsets",
                rc("create", "daemonsets", ""),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/default/pods/p",
                rc("delete", "pods", ""),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/default/pods",
                rc("deletecollection", "pods", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/p/log",
                rc("get", "pods", "log"),
            ),
            (
                Method::PUT,
                "/apis/apps/v1/namespaces/d/statefulsets/s/scale",
                rc("update", "statefulsets", "scale"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/d/pods/p/exec-anything",
                rc("get", "pods", "other"),
            ),
            (Method::GET, "/apis/apps/v1", rc("get", "discovery", "")),
            (Method::GET, "/version", rc("get", "version", "")),
            (Method::GET, "/readyz", rc("get", "health", "")),
            (Method::GET, "/metrics", rc("get", "metrics", "")),
            (Method::POST, "/anything/at/all", rc("other", "unknown", "")),
            (
                Method::GET,
                "/apis/made.up/v1/things",
                rc("get", "unknown", ""),
            ),
        ];
        for (method, uri, want) in cases {
            assert_eq!(rest(method.clone(), uri), want, "{method} {uri}");
        }
    }

    #[test]
    fn grpc_calls_are_named_by_known_service_and_method_only() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        let call = |path: &str| classify(&Method::POST, &path.parse().unwrap(), &headers);
        assert_eq!(
            call("/twinset.v1.Cluster/Apply"),
            Call::Grpc(GrpcCall {
                service: "twinset.v1.Cluster",
                method: "Apply"
            })
        );
        assert_eq!(
            call("/twinset.v1.Nodes/WatchAssignments"),
            Call::Grpc(GrpcCall {
                service: "twinset.v1.Nodes",
                method: "WatchAssignments"
            })
        );
        assert_eq!(
            call("/grpc.health.v1.Health/Check"),
            Call::Grpc(GrpcCall {
                service: "grpc.health.v1.Health",
                method: "Check"
            })
        );
        assert_eq!(
            call("/twinset.v1.Cluster/Nonsense"),
            Call::Grpc(UNKNOWN_CALL)
        );
        assert_eq!(call("/evil.Service/x1"), Call::Grpc(UNKNOWN_CALL));
    }

    #[test]
    fn codes_and_classes_have_fixed_names() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::PermissionDenied), "PermissionDenied");
        assert_eq!(status_class(http::StatusCode::NOT_FOUND), "4xx");
        assert_eq!(status_class(http::StatusCode::OK), "2xx");
    }

    /// Counts of `c` with `code` so far (the instruments are process-wide).
    fn grpc_count(c: GrpcCall, code: Code) -> u64 {
        metrics()
            .grpc_requests
            .get_or_create(&GrpcResult {
                service: c.service,
                method: c.method,
                code: code_name(code),
            })
            .get()
    }

    #[tokio::test]
    async fn a_grpc_call_is_counted_with_the_code_of_its_trailers_or_its_head() {
        use http_body_util::BodyExt as _;
        let c = grpc_call("/twinset.v1.Cluster/ListTokens");
        let (ok, denied) = (
            grpc_count(c, Code::Ok),
            grpc_count(c, Code::PermissionDenied),
        );
        // A call answered in the body, its status in the trailers.
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let body = http_body_util::StreamBody::new(futures::stream::iter([
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x"))),
            Ok(Frame::trailers(trailers)),
        ]));
        let response = record(Call::Grpc(c), Response::new(body), Duration::from_millis(3));
        assert_eq!(grpc_count(c, Code::Ok), ok, "counted before its trailers");
        response.into_body().collect().await.unwrap();
        assert_eq!(grpc_count(c, Code::Ok), ok + 1);
        // A call refused at once: the status in the head.
        let refused = tonic::Status::permission_denied("no").into_http::<tonic::body::Body>();
        drop(record(Call::Grpc(c), refused, Duration::from_millis(1)));
        assert_eq!(grpc_count(c, Code::PermissionDenied), denied + 1);
        assert_eq!(grpc_count(c, Code::Ok), ok + 1);
    }
}
