//! Who may do what over REST, from the caller's verified certificate: administrators
//! anything; nodes what Kubernetes' Node authorizer allows a kubelet to read — nodes,
//! namespaces and services, and only the pods bound to them (by name, or listed and
//! watched with `fieldSelector=spec.nodeName=<node>`); everyone else nothing. Pure: the
//! one check that needs the object (a node's GET of a pod) is returned for the caller to
//! make once it has it.

use twinset_proto::tls::server::{Identity, PeerInfo};
use twinset_proto::Kind;

use super::path::{Route, Target};
use super::status::ApiError;
use super::Query;

/// What a request may go on to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anything the route serves.
    Full,
    /// A node's GET of a pod: answered only if the pod is bound to `node`.
    PodOf(String),
}

/// The decision for `peer` doing `method` on `route`.
pub fn decide(
    peer: Option<&PeerInfo>,
    method: &http::Method,
    path: &str,
    route: &Route,
    q: &Query,
) -> Result<Access, ApiError> {
    let peer = authenticated(peer)?;
    match &peer.identity {
        Identity::Admin(_) => Ok(Access::Full),
        Identity::Anonymous => Err(ApiError::unauthorized()),
        Identity::Node(node) => node_access(node, &peer.identity, method, path, route, q),
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

/// The caller, if it presented an unexpired client certificate of the cluster CA; 401
/// otherwise.
pub fn authenticated(peer: Option<&PeerInfo>) -> Result<&PeerInfo, ApiError> {
    match peer {
        Some(p)
            if p.identity != Identity::Anonymous
                && p.expired(chrono::Utc::now().timestamp()).is_none() =>
        {
            Ok(p)
        }
        _ => Err(ApiError::unauthorized()),
    }
}

/// The Kubernetes verb of a request (`get`, `list`, `watch`, `create`, …).
fn verb(method: &http::Method, t: &Target, q: &Query) -> &'static str {
    match *method {
        http::Method::GET if q.flag("watch") => "watch",
        http::Method::GET if t.name.is_none() => "list",
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "access",
    }
}

/// What the Node authorizer lets `node` do.
fn node_access(
    node: &str,
    identity: &Identity,
    method: &http::Method,
    path: &str,
    route: &Route,
    q: &Query,
) -> Result<Access, ApiError> {
    let t = match route {
        // Discovery is open to every authenticated caller.
        Route::CoreVersions | Route::Groups | Route::Resources { .. }
            if method == http::Method::GET =>
        {
            return Ok(Access::Full)
        }
        Route::Object(t) => t,
        _ => {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "User \"{}\" cannot {} {path}",
                    identity.user(),
                    method.as_str().to_lowercase()
                ),
            ))
        }
    };
    let verb = verb(method, t, q);
    let reads = matches!(verb, "get" | "list" | "watch") && t.subresource.is_none();
    let allowed = match t.kind {
        Kind::Node | Kind::Namespace | Kind::Service if reads => Some(Access::Full),
        Kind::Pod if reads && verb == "get" => Some(Access::PodOf(node.to_string())),
        Kind::Pod if reads && selects_node(q.get("fieldSelector").unwrap_or_default(), node) => {
            Some(Access::Full)
        }
        _ => None,
    };
    allowed.ok_or_else(|| forbidden(identity, verb, t))
}

/// Whether a field selector limits pods to `node`'s.
fn selects_node(selector: &str, node: &str) -> bool {
    selector.split(',').any(|term| {
        let term = term.trim();
        term == format!("spec.nodeName={node}") || term == format!("spec.nodeName=={node}")
    })
}

/// kube-apiserver's refusal: `pods is forbidden: User "system:node:n1" cannot list
/// resource "pods" in API group "" at the cluster scope`.
pub fn forbidden(identity: &Identity, verb: &str, t: &Target) -> ApiError {
    let resource = t.kind.group_resource();
    let what = match &t.subresource {
        Some(sub) => format!("{}/{sub}", t.kind.resource()),
        None => t.kind.resource().to_string(),
    };
    let subject = match &t.name {
        Some(n) => format!("{resource} \"{n}\""),
        None => resource,
    };
    let scope = match &t.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    ApiError::new(
        403,
        "Forbidden",
        format!(
            "{subject} is forbidden: User \"{}\" cannot {verb} resource \"{what}\" in API group \"{}\" {scope}",
            identity.user(),
            t.kind.group()
        ),
    )
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

    fn ask(
        identity: Identity,
        method: http::Method,
        path: &str,
        query: &str,
    ) -> Result<Access, ApiError> {
        let later = chrono::Utc::now().timestamp() + 3600;
        let route = super::super::path::parse(path).unwrap();
        decide(
            Some(&peer(identity, later)),
            &method,
            path,
            &route,
            &Query::parse(Some(query)),
        )
    }

    #[test]
    fn administrators_may_do_anything_and_strangers_nothing() {
        let admin = Identity::Admin("admin".into());
        assert_eq!(
            ask(admin, http::Method::DELETE, "/api/v1/nodes/n1", ""),
            Ok(Access::Full)
        );
        let route = super::super::path::parse("/api").unwrap();
        let get = http::Method::GET;
        assert_eq!(
            decide(None, &get, "/api", &route, &Query::default())
                .unwrap_err()
                .code,
            401
        );
        let expired = peer(Identity::Admin("admin".into()), 1);
        assert_eq!(
            decide(Some(&expired), &get, "/api", &route, &Query::default())
                .unwrap_err()
                .code,
            401
        );
        let other = ask(Identity::Other("x".into()), get, "/api/v1/pods", "").unwrap_err();
        assert_eq!(other.message, "User \"x\" cannot get /api/v1/pods");
    }

    #[test]
    fn nodes_read_what_a_kubelet_may() {
        let n = || Identity::Node("n1".into());
        let get = || http::Method::GET;
        for path in [
            "/api",
            "/apis",
            "/api/v1",
            "/api/v1/nodes",
            "/api/v1/nodes/n2",
            "/api/v1/services",
            "/api/v1/namespaces/db",
        ] {
            assert_eq!(ask(n(), get(), path, ""), Ok(Access::Full), "{path}");
        }
        assert_eq!(
            ask(n(), get(), "/api/v1/namespaces/db/pods/p", ""),
            Ok(Access::PodOf("n1".into()))
        );
        assert_eq!(
            ask(
                n(),
                get(),
                "/api/v1/pods",
                "fieldSelector=spec.nodeName%3Dn1"
            ),
            Ok(Access::Full)
        );
        assert_eq!(
            ask(
                n(),
                get(),
                "/api/v1/pods",
                "watch=1&fieldSelector=metadata.namespace%3Ddb,spec.nodeName%3D%3Dn1"
            ),
            Ok(Access::Full)
        );
        let all = ask(n(), get(), "/api/v1/pods", "").unwrap_err();
        assert_eq!(
            (all.code, all.message.as_str()),
            (403, "pods is forbidden: User \"system:node:n1\" cannot list resource \"pods\" in API group \"\" at the cluster scope")
        );
        let other = ask(
            n(),
            get(),
            "/api/v1/pods",
            "fieldSelector=spec.nodeName%3Dn2",
        )
        .unwrap_err();
        assert_eq!(other.code, 403);
        let ds = ask(
            n(),
            get(),
            "/apis/apps/v1/namespaces/kube-system/daemonsets",
            "",
        )
        .unwrap_err();
        assert_eq!(
            ds.message,
            "daemonsets.apps is forbidden: User \"system:node:n1\" cannot list resource \"daemonsets\" in API group \"apps\" in the namespace \"kube-system\""
        );
        let del = ask(n(), http::Method::DELETE, "/api/v1/nodes/n1", "").unwrap_err();
        assert_eq!(
            del.message,
            "nodes \"n1\" is forbidden: User \"system:node:n1\" cannot delete resource \"nodes\" in API group \"\" at the cluster scope"
        );
        let log = ask(n(), get(), "/api/v1/namespaces/db/pods/p/log", "").unwrap_err();
        assert_eq!(log.code, 403);
    }
}
