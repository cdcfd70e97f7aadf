//! The Kubernetes REST API, served on the gRPC port (one address for every client, as
//! kube-apiserver's 6443; the admin kubeconfig works as `KUBECONFIG` unchanged): gRPC
//! requests (`content-type: application/grpc`) go to the tonic services, everything else
//! comes here. Callers are who their verified client certificate says, as on gRPC;
//! anonymous callers get 401 except on `/version` and the health paths.
//!
//! Each handler is a thin translation onto the Cluster service the gRPC API uses
//! ([`read`]), so both refuse and answer alike; paths are parsed by [`path`] (pure),
//! discovery documents come from the kind table ([`discovery`]), errors are Kubernetes
//! `Status` objects ([`status`]).

pub mod discovery;
pub mod openapi;
pub mod path;
mod read;
pub mod status;
pub mod table;
mod verbs;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use twinset_proto::tls::server::{Identity, PeerInfo};
use twinset_proto::Kind;

use crate::api::cluster::ClusterService;
use path::Route;
use status::ApiError;

/// The query parameters of a request (the last value of each).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query(BTreeMap<String, String>);

impl Query {
    /// Parses a query string (`a=1&b=x%20y`).
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Whether `key` is set to a true value (`1`, `true`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("1" | "true"))
    }
}

/// What the handlers share.
struct Rest {
    cluster: Arc<ClusterService>,
}

/// The REST routes, over `cluster` (the same service instance gRPC callers reach).
pub fn router(cluster: Arc<ClusterService>) -> axum::Router {
    let rest = Arc::new(Rest { cluster });
    axum::Router::new()
        .route("/version", any(version))
        .route("/healthz", any(healthy))
        .route("/readyz", any(healthy))
        .route("/livez", any(healthy))
        .route("/api", any(handle))
        .route("/api/{*rest}", any(handle))
        .route("/apis", any(handle))
        .route("/apis/{*rest}", any(handle))
        .route("/openapi/{*rest}", any(openapi::handle))
        .with_state(rest)
}

/// What answers a path nothing else serves: gRPC's UNIMPLEMENTED for a gRPC call (as
/// tonic does), a Kubernetes 404 Status for anything else.
pub async fn fallback(req: Request) -> Response {
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented("")
            .into_http::<()>()
            .into_parts();
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    ApiError::not_found_path(req.uri().path()).into_response()
}

async fn version() -> Response {
    read::ok(&discovery::version())
}

async fn healthy() -> Response {
    Response::builder()
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(axum::body::Body::from("ok"))
        .unwrap_or_default()
}

/// Who may use the API: administrators; nodes and other certificates are refused (403),
/// callers without a valid client certificate are not authenticated (401).
fn admit(peer: Option<&PeerInfo>, method: &http::Method, path: &str) -> Result<(), ApiError> {
    let Some(peer) = peer else {
        return Err(ApiError::unauthorized());
    };
    if peer.expired(chrono::Utc::now().timestamp()).is_some() {
        return Err(ApiError::unauthorized());
    }
    match &peer.identity {
        Identity::Admin(_) => Ok(()),
        Identity::Anonymous => Err(ApiError::unauthorized()),
        other => Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "User \"{}\" cannot {} {path}",
                other.user(),
                method.as_str().to_lowercase()
            ),
        )),
    }
}

/// [`admit`] for `req`, a refusal logged; the caller's `PeerInfo` if admitted.
fn admit_request(req: &Request) -> Result<Option<PeerInfo>, ApiError> {
    let peer = req.extensions().get::<PeerInfo>().cloned();
    let (method, path) = (req.method(), req.uri().path());
    match admit(peer.as_ref(), method, path) {
        Ok(()) => Ok(peer),
        Err(e) => {
            tracing::warn!(
                user = %peer.as_ref().map_or("system:anonymous".to_string(), |p| p.identity.user()),
                %method,
                %path,
                "refused: {}",
                e.message
            );
            Err(e)
        }
    }
}

async fn handle(State(rest): State<Arc<Rest>>, req: Request) -> Response {
    let peer = match admit_request(&req) {
        Ok(peer) => peer,
        Err(refused) => return refused.into_response(),
    };
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let query = Query::parse(req.uri().query());
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let table = table::requested(&accept, query.get("includeObject"));
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("{}: limit is {MAX_BODY}", crate::api::REQUEST_TOO_LARGE),
            )
            .into_response()
        }
    };
    let call = Call {
        peer,
        method: &method,
        path: &path,
        q: &query,
        table,
        body: &body,
    };
    match serve(&rest, call).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The largest request body read (the store's own limit on objects is checked by the
/// service, with the API server's message).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// One REST call, parsed.
struct Call<'a> {
    peer: Option<PeerInfo>,
    method: &'a http::Method,
    path: &'a str,
    q: &'a Query,
    table: Option<table::TableRequest>,
    body: &'a [u8],
}

fn not_served(method: &http::Method, path: &str) -> ApiError {
    ApiError::not_implemented(format!(
        "{method} {path} is not served over REST yet; use the twinset CLI or the gRPC API"
    ))
}

async fn serve(rest: &Rest, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        peer,
        method,
        path,
        q,
        table,
        body,
    } = call;
    let route = path::parse(path)?;
    if method != http::Method::GET {
        return write(rest, peer, method, path, q, body, route).await;
    }
    match route {
        Route::CoreVersions => Ok(read::ok(&discovery::core_versions())),
        Route::Groups => Ok(read::ok(&discovery::groups())),
        Route::Resources { group, version } => discovery::resources(&group, &version)
            .map(|v| read::ok(&v))
            .ok_or_else(|| ApiError::not_found_path(path)),
        Route::Object(t) => {
            if let (Some(sub), Some(name)) = (t.subresource.as_deref(), t.name.as_deref()) {
                return match (t.kind, sub) {
                    (Kind::Pod, "log") => {
                        verbs::logs(&rest.cluster, peer.as_ref(), &t, name, q).await
                    }
                    (Kind::StatefulSet, "scale") => {
                        let obj = read::get(&rest.cluster, peer.as_ref(), &t, name).await?;
                        Ok(read::ok(&verbs::scale_from(obj, name)?))
                    }
                    (_, "status") => {
                        let obj = read::get(&rest.cluster, peer.as_ref(), &t, name).await?;
                        Ok(read::ok(&twinset_proto::manifest::to_value(&obj)))
                    }
                    _ => Err(ApiError::not_found_path(path)),
                };
            }
            let kind = t.kind;
            let render: read::Render = match table {
                Some(req) => Arc::new(move |objs, rv| table::table(kind, objs, rv, req)),
                None => Arc::new(|objs, _| {
                    objs.first()
                        .map(twinset_proto::manifest::to_value)
                        .unwrap_or_default()
                }),
            };
            if q.flag("watch") {
                return read::watch(Arc::clone(&rest.cluster), peer, &t, q, render).await;
            }
            match &t.name {
                Some(name) => {
                    let obj = read::get(&rest.cluster, peer.as_ref(), &t, name).await?;
                    let rv = obj.resource_version().to_string();
                    Ok(read::ok(&render(std::slice::from_ref(&obj), &rv)))
                }
                None => {
                    let (items, rv) = read::list(&rest.cluster, peer.as_ref(), &t, q).await?;
                    Ok(read::ok(&match table {
                        Some(req) => table::table(kind, &items, &rv, req),
                        None => read::list_document(kind, &items, &rv),
                    }))
                }
            }
        }
    }
}

/// The verbs other than GET.
async fn write(
    rest: &Rest,
    peer: Option<PeerInfo>,
    method: &http::Method,
    path: &str,
    q: &Query,
    body: &[u8],
    route: Route,
) -> Result<Response, ApiError> {
    let Route::Object(t) = route else {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not allowed on {path}"),
        ));
    };
    let name = t.name.clone();
    match (method, name.as_deref(), t.kind, t.subresource.as_deref()) {
        (&http::Method::POST, None, _, None) => {
            let (code, obj) = verbs::create(&rest.cluster, peer.as_ref(), &t, q, body).await?;
            Ok(status::json_response(code, &obj))
        }
        (&http::Method::DELETE, Some(name), _, None) => Ok(read::ok(
            &verbs::delete(&rest.cluster, peer.as_ref(), &t, name, q, body).await?,
        )),
        (
            &http::Method::PATCH | &http::Method::PUT,
            Some(name),
            Kind::StatefulSet,
            Some("scale"),
        ) => Ok(read::ok(
            &verbs::scale(&rest.cluster, peer.as_ref(), &t, name, body).await?,
        )),
        _ => Err(not_served(method, path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::tls::server::PeerCert;

    fn peer(identity: Identity, not_after: i64) -> PeerInfo {
        PeerInfo {
            remote: "127.0.0.1:1".parse().unwrap(),
            identity,
            cert: Some(PeerCert {
                key_sha256: "k".into(),
                not_after,
            }),
        }
    }

    #[test]
    fn only_administrators_with_a_valid_certificate_are_admitted() {
        let later = chrono::Utc::now().timestamp() + 3600;
        let get = http::Method::GET;
        assert!(admit(
            Some(&peer(Identity::Admin("admin".into()), later)),
            &get,
            "/api"
        )
        .is_ok());
        assert_eq!(admit(None, &get, "/api").unwrap_err().code, 401);
        let expired = peer(Identity::Admin("admin".into()), 1);
        assert_eq!(admit(Some(&expired), &get, "/api").unwrap_err().code, 401);
        let node = admit(
            Some(&peer(Identity::Node("n1".into()), later)),
            &get,
            "/api/v1/pods",
        )
        .unwrap_err();
        assert_eq!((node.code, node.reason), (403, "Forbidden"));
        assert_eq!(
            node.message,
            "User \"system:node:n1\" cannot get /api/v1/pods"
        );
    }

    #[test]
    fn queries_decode() {
        let q = Query::parse(Some("labelSelector=app%3Dweb&watch=1&limit=500"));
        assert_eq!(q.get("labelSelector"), Some("app=web"));
        assert!(q.flag("watch"));
        assert!(!Query::parse(None).flag("watch"));
    }
}
