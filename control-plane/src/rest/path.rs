//! What a REST path addresses (pure): the discovery documents, or a resource — kind,
//! namespace, name, subresource — in the URL layout of kube-apiserver
//! (`/api/v1/namespaces/NS/pods/NAME/log`, `/apis/apps/v1/daemonsets`, …).

use twinset_proto::Kind;

use super::status::ApiError;

/// The groups and versions served: the core group, apps, and autoscaling (for Scale).
pub const GROUP_VERSIONS: [(&str, &str); 3] = [("", "v1"), ("apps", "v1"), ("autoscaling", "v1")];

/// A path the REST API answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: the other groups.
    Groups,
    /// `/api/v1`, `/apis/apps/v1`: the resources of one group version.
    Resources {
        /// The group ("" for core).
        group: String,
        /// The version.
        version: String,
    },
    /// A resource, a collection of it, or a subresource.
    Object(Target),
}

/// A resource path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The kind.
    pub kind: Kind,
    /// The namespace (None: all namespaces, or a cluster-scoped kind).
    pub namespace: Option<String>,
    /// The object's name (None: the collection).
    pub name: Option<String>,
    /// The subresource (`status`, `scale`, `log`).
    pub subresource: Option<String>,
}

fn not_found(path: &str) -> ApiError {
    ApiError::not_found_path(path)
}

/// The kind served as `resource` in `group`.
fn kind_of(group: &str, resource: &str) -> Option<Kind> {
    Kind::ALL
        .into_iter()
        .find(|k| k.group() == group && k.resource() == resource)
}

/// What `path` addresses, or a 404 Status.
pub fn parse(path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found(path)),
    };
    if !GROUP_VERSIONS.contains(&(group, version)) {
        return Err(not_found(path));
    }
    let resources = || Route::Resources {
        group: group.to_string(),
        version: version.to_string(),
    };
    // `namespaces/NS/RESOURCE…` addresses inside a namespace; anything else is a
    // top-level resource (all namespaces, or a cluster-scoped kind such as nodes, or
    // a namespace itself: `namespaces/NS`).
    let (namespace, rest) = match rest {
        [] => return Ok(resources()),
        ["namespaces", ns, resource, tail @ ..] if !ns.is_empty() => {
            (Some(ns.to_string()), (*resource, tail))
        }
        [resource, tail @ ..] => (None, (*resource, tail)),
    };
    let (resource, tail) = rest;
    let kind = kind_of(group, resource).ok_or_else(|| not_found(path))?;
    if namespace.is_some() && !kind.namespaced() {
        return Err(not_found(path));
    }
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => (Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(not_found(path)),
    };
    if name.as_deref() == Some("") {
        return Err(not_found(path));
    }
    Ok(Route::Object(Target {
        kind,
        namespace,
        name,
        subresource,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: Kind, ns: Option<&str>, name: Option<&str>, sub: Option<&str>) -> Route {
        Route::Object(Target {
            kind,
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    }

    #[test]
    fn paths_address_what_kube_apiserver_does() {
        let cases = [
            ("/api", Route::CoreVersions),
            ("/apis", Route::Groups),
            (
                "/apis/apps/v1",
                Route::Resources {
                    group: "apps".into(),
                    version: "v1".into(),
                },
            ),
            ("/api/v1/pods", target(Kind::Pod, None, None, None)),
            (
                "/api/v1/namespaces/kube-system/pods",
                target(Kind::Pod, Some("kube-system"), None, None),
            ),
            (
                "/api/v1/namespaces/db/pods/mysql-db-0/log",
                target(Kind::Pod, Some("db"), Some("mysql-db-0"), Some("log")),
            ),
            (
                "/api/v1/namespaces/kube-system",
                target(Kind::Namespace, None, Some("kube-system"), None),
            ),
            (
                "/api/v1/nodes/node1",
                target(Kind::Node, None, Some("node1"), None),
            ),
            (
                "/apis/apps/v1/daemonsets",
                target(Kind::DaemonSet, None, None, None),
            ),
            (
                "/apis/apps/v1/namespaces/database/statefulsets/mysql-db/scale",
                target(
                    Kind::StatefulSet,
                    Some("database"),
                    Some("mysql-db"),
                    Some("scale"),
                ),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(parse(path).unwrap(), want, "{path}");
        }
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for path in [
            "/",
            "/api/v2/pods",
            "/apis/apps/v2/daemonsets",
            "/apis/batch/v1/jobs",
            "/api/v1/daemonsets",
            "/apis/apps/v1/pods",
            "/api/v1/namespaces/x/nodes",
            "/api/v1/bootstraptokens",
            "/api/v1/namespaces/x/pods/a/b/c",
        ] {
            let e = parse(path).unwrap_err();
            assert_eq!(e.code, 404, "{path}");
        }
    }
}
