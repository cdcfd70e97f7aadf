//! Who may call which service, decided from the caller's verified certificate alone
//! ([`crate::tls::PeerInfo`]): administrators call Cluster; nodes call Nodes (and the
//! handlers then allow each node only itself and its pods); anyone may join and ask for
//! health. A refusal is UNAUTHENTICATED (no certificate) or PERMISSION_DENIED (the wrong
//! one), names the user and what it tried, and is logged.

use super::gate::{Gate, Gated};
use crate::tls::{Identity, PeerInfo};
use tonic::codegen::http::Request;
use tonic::Status;

/// Which callers a service admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Administrators only (the Cluster service, reflection).
    Admins,
    /// Nodes only (the Nodes service); administrators are refused too, so that nothing
    /// but an agent can report for a node.
    Nodes,
    /// Anyone, with or without a certificate (joining, health).
    Anyone,
}

/// The decision for `identity` calling `path` (`/twinset.v1.Cluster/Apply`).
pub fn decide(audience: Audience, identity: &Identity, path: &str) -> Result<(), Status> {
    let allowed = match audience {
        Audience::Anyone => true,
        Audience::Admins => matches!(identity, Identity::Admin(_)),
        Audience::Nodes => matches!(identity, Identity::Node(_)),
    };
    if allowed {
        return Ok(());
    }
    let what = path.trim_start_matches('/');
    Err(match identity {
        Identity::Anonymous => Status::unauthenticated(format!(
            "a client certificate of the cluster CA is required to call {what}"
        )),
        other => Status::permission_denied(format!("User \"{}\" cannot call {what}", other.user())),
    })
}

/// The identity of a request's caller; a request that came in without one (the test
/// harness's in-process servers) is anonymous.
pub fn identity<T>(request: &tonic::Request<T>) -> Identity {
    request
        .extensions()
        .get::<PeerInfo>()
        .map_or(Identity::Anonymous, |p| p.identity.clone())
}

/// The remote address of a request's connection (TLS or plain).
pub fn peer_addr<T>(request: &tonic::Request<T>) -> Option<std::net::SocketAddr> {
    request
        .extensions()
        .get::<PeerInfo>()
        .map(|p| p.remote)
        .or_else(|| request.remote_addr())
}

/// `message` as a request from `node`'s certificate would arrive (for in-process callers
/// of the services, such as tests, that have no TLS connection).
pub fn as_node<T>(node: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.extensions_mut().insert(PeerInfo {
        remote: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        identity: Identity::Node(node.to_string()),
    });
    r
}

/// A node's request about `node`: allowed only for that node's own certificate.
pub fn require_node<T>(request: &tonic::Request<T>, node: &str, what: &str) -> Result<(), Status> {
    match identity(request) {
        Identity::Node(n) if n == node => Ok(()),
        other => {
            tracing::warn!(user = %other.user(), node, what, "refused: not this node's certificate");
            Err(Status::permission_denied(format!(
                "User \"{}\" cannot {what} for node \"{node}\"",
                other.user()
            )))
        }
    }
}

/// A service admitting only its [`Audience`].
pub type Authorized<S> = Gated<S, Audience>;

impl Gate for Audience {
    type Pass = ();

    fn admit<B>(&self, request: &Request<B>) -> Result<(), Status> {
        let (identity, remote) = request
            .extensions()
            .get::<PeerInfo>()
            .map_or((Identity::Anonymous, None), |p| {
                (p.identity.clone(), Some(p.remote))
            });
        decide(*self, &identity, request.uri().path()).inspect_err(|status| {
            tracing::warn!(
                user = %identity.user(),
                remote = ?remote,
                path = request.uri().path(),
                "refused: {}",
                status.message()
            );
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_audience_admits_only_its_callers() {
        let admin = Identity::Admin("admin".into());
        let node = Identity::Node("node1".into());
        let path = "/twinset.v1.Cluster/Apply";
        assert!(decide(Audience::Admins, &admin, path).is_ok());
        let e = decide(Audience::Admins, &node, path).unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert_eq!(
            e.message(),
            "User \"system:node:node1\" cannot call twinset.v1.Cluster/Apply"
        );
        let e = decide(Audience::Admins, &Identity::Anonymous, path).unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        assert!(decide(Audience::Nodes, &node, "/twinset.v1.Nodes/Heartbeat").is_ok());
        assert_eq!(
            decide(Audience::Nodes, &admin, "/twinset.v1.Nodes/Heartbeat")
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
        assert_eq!(
            decide(Audience::Nodes, &Identity::ControlPlane, "/x")
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
        for who in [
            Identity::Anonymous,
            admin,
            node,
            Identity::Other("x".into()),
        ] {
            assert!(decide(Audience::Anyone, &who, "/twinset.v1.Bootstrap/Join").is_ok());
        }
    }

    #[test]
    fn a_node_may_speak_only_for_itself() {
        let mut r = tonic::Request::new(());
        r.extensions_mut().insert(PeerInfo {
            remote: "127.0.0.1:1".parse().unwrap(),
            identity: Identity::Node("node1".into()),
        });
        assert!(require_node(&r, "node1", "watch assignments").is_ok());
        let e = require_node(&r, "node2", "watch assignments").unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert_eq!(
            e.message(),
            "User \"system:node:node1\" cannot watch assignments for node \"node2\""
        );
    }

    #[test]
    fn certificate_subjects_map_to_identities() {
        let orgs = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Identity::of("system:node:n1", &orgs(&["system:nodes"])),
            Identity::Node("n1".into())
        );
        // A node name without the nodes group is not a node.
        assert_eq!(
            Identity::of("system:node:n1", &orgs(&[])),
            Identity::Other("system:node:n1".into())
        );
        assert_eq!(
            Identity::of("admin", &orgs(&["system:masters"])),
            Identity::Admin("admin".into())
        );
        assert_eq!(
            Identity::of(crate::pki::SERVER_CN, &orgs(&[])),
            Identity::ControlPlane
        );
    }
}
