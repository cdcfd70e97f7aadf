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

mod authz;
pub mod discovery;
pub mod openapi;
pub mod path;
mod read;
pub mod status;
pub mod table;
mod update;
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
    /// How often watches that allow bookmarks get one.
    bookmark_every: std::time::Duration,
}

/// The REST routes, over `cluster` (the same service instance gRPC callers reach);
/// watches that allow bookmarks get one every `bookmark_every`.
pub fn router(cluster: Arc<ClusterService>, bookmark_every: std::time::Duration) -> axum::Router {
    let rest = Arc::new(Rest {
        cluster,
        bookmark_every,
    });
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

/// Admits any caller with a valid client certificate of the cluster CA (discovery and
/// the OpenAPI documents are for every authenticated user, as kube-apiserver's
/// system:discovery role); others get 401, logged.
fn admit_request(req: &Request) -> Result<Option<PeerInfo>, ApiError> {
    let peer = req.extensions().get::<PeerInfo>().cloned();
    let (method, path) = (req.method(), req.uri().path());
    if authz::authenticated(peer.as_ref()).is_ok() {
        return Ok(peer);
    }
    tracing::warn!(
        user = %peer.as_ref().map_or("system:anonymous".to_string(), |p| p.identity.user()),
        %method,
        %path,
        "refused: not authenticated"
    );
    Err(ApiError::unauthorized())
}

async fn handle(State(rest): State<Arc<Rest>>, req: Request) -> Response {
    let peer = req.extensions().get::<PeerInfo>().cloned();
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let query = Query::parse(req.uri().query());
    let admitted = path::parse(&path)
        .map_err(|e| match &peer {
            // Who is not authenticated learns nothing of what exists.
            Some(p) if p.identity != Identity::Anonymous => e,
            _ => status::ApiError::unauthorized(),
        })
        .and_then(|route| {
            let access = authz::decide(peer.as_ref(), &method, &path, &route, &query)?;
            if let Some(Identity::Node(node)) = peer.as_ref().map(|p| &p.identity) {
                // A deleted node's (or a re-joined node's old) certificate is refused.
                let probe = read::on_behalf(peer.as_ref(), ());
                crate::api::authz::require_node(&probe, rest.cluster.store(), node, "read")
                    .map_err(ApiError::from)?;
            }
            Ok((route, access))
        });
    let (route, access) = match admitted {
        Ok(ok) => ok,
        Err(e) => {
            tracing::warn!(
                user = %peer.as_ref().map_or("system:anonymous".to_string(), |p| p.identity.user()),
                %method,
                %path,
                "refused: {}",
                e.message
            );
            return e.into_response();
        }
    };
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (content_type, user_agent) = {
        let header = |name: http::header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        (
            header(http::header::CONTENT_TYPE),
            header(http::header::USER_AGENT),
        )
    };
    let table = table::requested(&accept, query.get("includeObject"));
    let limit = rest.cluster.max_request_bytes();
    let body = match axum::body::to_bytes(req.into_body(), crate::decode_limit(limit)).await {
        Ok(b) => b,
        // In the words of the service's own check (and of gRPC's transport refusal), so
        // a body over the bound reads the same as an object over the limit.
        Err(_) => {
            return ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("{}: limit is {limit}", crate::api::REQUEST_TOO_LARGE),
            )
            .into_response()
        }
    };
    let call = Call {
        peer,
        access,
        route,
        method: &method,
        path: &path,
        q: &query,
        table,
        content_type: &content_type,
        user_agent: &user_agent,
        body: &body,
    };
    match serve(&rest, call).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// One REST call, parsed.
struct Call<'a> {
    peer: Option<PeerInfo>,
    access: authz::Access,
    route: Route,
    method: &'a http::Method,
    path: &'a str,
    q: &'a Query,
    table: Option<table::TableRequest>,
    content_type: &'a str,
    user_agent: &'a str,
    body: &'a [u8],
}

fn not_served(method: &http::Method, path: &str) -> ApiError {
    ApiError::not_implemented(format!(
        "{method} {path} is not served over REST yet; use the twinset CLI or the gRPC API"
    ))
}

async fn serve(rest: &Rest, call: Call<'_>) -> Result<Response, ApiError> {
    if call.method != http::Method::GET {
        let route = call.route.clone();
        return write(rest, &call, route).await;
    }
    let Call {
        peer,
        access,
        route,
        path,
        q,
        table,
        ..
    } = call;
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
                Some(req) => Arc::new(move |objs, rv| table::write(kind, objs, rv, req)),
                None => Arc::new(|objs, _| {
                    let mut out = Vec::new();
                    match objs.first() {
                        Some(o) => twinset_proto::manifest::write_json(o, &mut out),
                        None => out.extend_from_slice(b"null"),
                    }
                    out
                }),
            };
            if q.flag("watch") {
                let bookmarks = q.flag("allowWatchBookmarks").then_some(rest.bookmark_every);
                return read::watch(Arc::clone(&rest.cluster), peer, &t, q, render, bookmarks)
                    .await;
            }
            match &t.name {
                Some(name) => {
                    let obj = read::get(&rest.cluster, peer.as_ref(), &t, name).await?;
                    if let authz::Access::PodOf(node) = &access {
                        let bound = obj
                            .as_pod()
                            .and_then(|p| p.spec.as_ref())
                            .map(|s| s.node_name.as_str());
                        if bound != Some(node.as_str()) {
                            let identity = Identity::Node(node.clone());
                            let mut e = authz::forbidden(&identity, "get", &t);
                            e.message = format!(
                                "{}: no relationship found between node '{node}' and this object",
                                e.message
                            );
                            return Err(e);
                        }
                    }
                    let rv = obj.resource_version().to_string();
                    Ok(read::ok_bytes(render(std::slice::from_ref(&obj), &rv)))
                }
                None => {
                    let (items, rv) = read::list(&rest.cluster, peer.as_ref(), &t, q).await?;
                    Ok(match table {
                        Some(req) => read::ok_bytes(table::write(kind, &items, &rv, req)),
                        None => read::ok_bytes(read::list_document(kind, &items, &rv)),
                    })
                }
            }
        }
    }
}

/// The verbs other than GET.
async fn write(rest: &Rest, call: &Call<'_>, route: Route) -> Result<Response, ApiError> {
    let (method, path, q, body) = (call.method, call.path, call.q, call.body);
    let peer = call.peer.as_ref();
    let Route::Object(t) = route else {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not allowed on {path}"),
        ));
    };
    let name = t.name.clone();
    let cluster = &rest.cluster;
    match (method, name.as_deref(), t.kind, t.subresource.as_deref()) {
        (&http::Method::POST, None, _, None) => {
            let obj = verbs::create(cluster, &t, q, call.user_agent, body).await?;
            Ok(status::json_response(201, &obj))
        }
        (&http::Method::PUT, Some(name), _, None) => Ok(read::ok(
            &update::replace(cluster, &t, name, q, call.user_agent, body).await?,
        )),
        (&http::Method::PATCH, Some(name), _, None) => Ok(read::ok(
            &update::patch(
                cluster,
                peer,
                &t,
                name,
                q,
                call.user_agent,
                call.content_type,
                body,
            )
            .await?,
        )),
        (&http::Method::DELETE, Some(name), _, None) => Ok(read::ok(
            &verbs::delete(cluster, peer, &t, name, q, body).await?,
        )),
        (&http::Method::POST, Some(name), Kind::Pod, Some("eviction")) => {
            let done = verbs::evict(cluster, peer, &t, name, q, body).await?;
            Ok(status::json_response(201, &done))
        }
        (
            &http::Method::PATCH | &http::Method::PUT,
            Some(name),
            Kind::StatefulSet,
            Some("scale"),
        ) => {
            let patch = (method == http::Method::PATCH).then_some(call.content_type);
            Ok(read::ok(
                &verbs::scale(cluster, peer, &t, name, patch, body).await?,
            ))
        }
        _ => Err(not_served(method, path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        let q = Query::parse(Some("labelSelector=app%3Dweb&watch=1&limit=500"));
        assert_eq!(q.get("labelSelector"), Some("app=web"));
        assert!(q.flag("watch"));
        assert!(!Query::parse(None).flag("watch"));
    }
}
