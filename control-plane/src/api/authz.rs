//! Who may call which service, decided from the caller's verified certificate alone
//! ([`crate::tls::PeerInfo`]): administrators call Cluster; nodes call Nodes (and the
//! handlers then allow each node only itself and its pods); anyone may join and ask for
//! health. A refusal is UNAUTHENTICATED (no certificate) or PERMISSION_DENIED (the wrong
//! one), names the user and what it tried, and is logged.

use super::gate::{Gate, Gated};
use crate::join::pin;
use crate::store::Store;
use crate::tls::{Identity, PeerCert, PeerInfo};
use tonic::codegen::http::Request;
use tonic::Status;
use twinset_proto::Kind;

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

/// The SHA-256 (hex) of the public key of a request's client certificate.
pub fn peer_key<T>(request: &tonic::Request<T>) -> Option<String> {
    request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.cert.as_ref())
        .map(|c| c.key_sha256.clone())
}

/// `message` as a request from `node`'s certificate with the public key `key_sha256`
/// would arrive (for in-process callers of the services, such as tests, that have no
/// TLS connection).
pub fn as_node<T>(node: &str, key_sha256: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.extensions_mut().insert(PeerInfo {
        remote: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        identity: Identity::Node(node.to_string()),
        cert: Some(PeerCert {
            key_sha256: key_sha256.to_string(),
            not_after: i64::MAX,
        }),
    });
    r
}

/// A node's request about `node`: allowed only for that node's own certificate, and only
/// while the node exists and is pinned to that certificate's key — so deleting a node (or
/// re-joining it with another key) makes its old certificate useless at once, even on a
/// connection opened before.
pub fn require_node<T>(
    request: &tonic::Request<T>,
    store: &dyn Store,
    node: &str,
    what: &str,
) -> Result<(), Status> {
    let peer = request.extensions().get::<PeerInfo>();
    let identity = peer.map_or(Identity::Anonymous, |p| p.identity.clone());
    let refused = match &identity {
        Identity::Node(n) if n == node => {
            let key = peer
                .and_then(|p| p.cert.as_ref())
                .map(|c| c.key_sha256.as_str());
            let stored = store.get(Kind::Node, "", node).and_then(|o| o.into_node());
            match (key, stored) {
                (Some(key), Some(n)) if pin::key_matches_pin(Some(&n), key) => return Ok(()),
                (_, None) => Status::unauthenticated(format!(
                    "the certificate of \"{}\" is no longer valid: node \"{node}\" was deleted \
                     (join again with a token from `twinset token create`)",
                    identity.user()
                )),
                _ => Status::unauthenticated(format!(
                    "the certificate of \"{}\" is no longer valid: node \"{node}\" is joined \
                     with another key",
                    identity.user()
                )),
            }
        }
        other => Status::permission_denied(format!(
            "User \"{}\" cannot {what} for node \"{node}\"",
            other.user()
        )),
    };
    tracing::warn!(user = %identity.user(), node, what, "refused: {}", refused.message());
    Err(refused)
}

/// A service admitting only its [`Audience`].
pub type Authorized<S> = Gated<S, Audience>;

impl Gate for Audience {
    type Pass = ();

    fn admit<B>(&self, request: &Request<B>) -> Result<(), Status> {
        let peer = request.extensions().get::<PeerInfo>();
        let (identity, remote) = peer.map_or((Identity::Anonymous, None), |p| {
            (p.identity.clone(), Some(p.remote))
        });
        let now = chrono::Utc::now().timestamp();
        let expired = peer.and_then(|p| p.expired(now));
        let decided = match expired {
            // Anyone may still join or ask for health, but not with an expired certificate
            // as its credential.
            Some(why) if *self != Audience::Anyone => Err(Status::unauthenticated(why)),
            _ => decide(*self, &identity, request.uri().path()),
        };
        decided.inspect_err(|status| {
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
        // Nodes may not evict (as they may not delete): the Cluster service is admins'.
        let evict = "/twinset.v1.Cluster/Evict";
        assert!(decide(Audience::Admins, &admin, evict).is_ok());
        assert_eq!(
            decide(Audience::Admins, &node, evict).unwrap_err().code(),
            Code::PermissionDenied
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

    #[tokio::test]
    async fn a_node_may_speak_only_for_itself_while_it_is_pinned_to_its_key() {
        use crate::store::memory::MemoryStore;
        let store = MemoryStore::new(10);
        let now = twinset_proto::time::now();
        let mut node1 = twinset_proto::v1::Object::from(pin::joined_node("node1", "k1", &now));
        node1.set_type_meta();
        store.create(node1).await.unwrap();
        let r = as_node("node1", "k1", ());
        assert!(require_node(&r, &store, "node1", "watch assignments").is_ok());
        let e = require_node(&r, &store, "node2", "watch assignments").unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert_eq!(
            e.message(),
            "User \"system:node:node1\" cannot watch assignments for node \"node2\""
        );
        // Another key for the same name (a re-joined machine): the old one is revoked.
        let e = require_node(&as_node("node1", "k2", ()), &store, "node1", "x").unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        assert!(e.message().contains("joined with another key"), "{e:?}");
        // A deleted node: its certificate is useless at once.
        store.delete(Kind::Node, "", "node1", None).await.unwrap();
        let e = require_node(&r, &store, "node1", "post a heartbeat").unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        assert_eq!(
            e.message(),
            "the certificate of \"system:node:node1\" is no longer valid: node \"node1\" was \
             deleted (join again with a token from `twinset token create`)"
        );
    }

    #[test]
    fn an_expired_certificate_is_refused_on_an_open_connection() {
        let mut peer = PeerInfo {
            remote: "127.0.0.1:1".parse().unwrap(),
            identity: Identity::Admin("admin".into()),
            cert: Some(PeerCert {
                key_sha256: "k".into(),
                not_after: 1_000,
            }),
        };
        assert_eq!(peer.expired(999), None);
        assert_eq!(
            peer.expired(1_000).as_deref(),
            Some("the client certificate of \"admin\" expired at 1970-01-01T00:16:40Z")
        );
        peer.cert = None;
        assert_eq!(peer.expired(i64::MAX), None, "anonymous: nothing to expire");
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
