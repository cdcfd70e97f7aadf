//! The daemon endpoint's TLS: NodeAgent is served only over TLS with the node's serving
//! certificate (from a swappable cell, so a renewed certificate is used from the next
//! handshake on), every caller must present a certificate of the cluster CA, and only
//! the control plane's may call (it proxies `twinset logs`); a node's certificate, an
//! admin's or any other is refused with PERMISSION_DENIED naming it, and logged. The
//! same port serves `/metrics` to administrators and the control plane
//! ([`metrics_access`]).

use crate::join::NodeCredentials;
use std::sync::Arc;
use tonic::Status;
use twinset_proto::tls::server::{server_config_for, ClientAuth, Identity, PeerInfo, ServerCert};
use twinset_proto::tls::TlsError;

/// The cell holding the node's serving certificate and key, what the endpoint serves.
pub fn serving_cert(creds: &NodeCredentials) -> Result<Arc<ServerCert>, TlsError> {
    ServerCert::new(&creds.serving_cert_pem, &creds.key_pem)
}

/// The endpoint's TLS configuration: the certificate in `cell`, a client certificate of
/// the CA of `creds` required — unless `metrics_open` (`--metrics-open`) lets clients
/// without one in to read `/metrics` (every NodeAgent method still refuses them).
pub fn tls_config(
    creds: &NodeCredentials,
    cell: Arc<ServerCert>,
    metrics_open: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let client_auth = if metrics_open {
        ClientAuth::Optional
    } else {
        ClientAuth::Required
    };
    server_config_for(&creds.ca_pem, cell, client_auth)
}

/// Who may read the agent's `/metrics`: administrators and the control plane, or anyone
/// with `--metrics-open`.
pub fn metrics_access(open: bool) -> twinset_proto::metrics::Access {
    twinset_proto::metrics::Access {
        open,
        readers: twinset_proto::metrics::Readers::AdminsAndControlPlane,
    }
}

/// Whether `identity` may call `method` (`twinset.v1.NodeAgent/Logs`): only the control
/// plane may.
pub fn decide(identity: &Identity, method: &str) -> Result<(), Status> {
    match identity {
        Identity::ControlPlane => Ok(()),
        Identity::Anonymous => Err(Status::unauthenticated(format!(
            "a client certificate of the cluster CA is required to call {method}"
        ))),
        other => Err(Status::permission_denied(format!(
            "User \"{}\" cannot call {method}",
            other.user()
        ))),
    }
}

/// [`decide`] for a request, from the identity its connection carries; a refusal is
/// logged. Every NodeAgent method calls this first.
pub fn admit<T>(request: &tonic::Request<T>, method: &str) -> Result<(), Status> {
    let peer = request.extensions().get::<PeerInfo>();
    let identity = peer.map_or(Identity::Anonymous, |p| p.identity.clone());
    decide(&identity, method).inspect_err(|status| {
        tracing::warn!(
            user = %identity.user(),
            remote = ?peer.map(|p| p.remote),
            method,
            "refused: {}",
            status.message()
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const LOGS: &str = "twinset.v1.NodeAgent/Logs";

    #[test]
    fn only_the_control_plane_may_call() {
        assert!(decide(&Identity::ControlPlane, LOGS).is_ok());
        let e = decide(&Identity::Node("node2".into()), LOGS).unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert_eq!(
            e.message(),
            "User \"system:node:node2\" cannot call twinset.v1.NodeAgent/Logs"
        );
        let e = decide(&Identity::Admin("admin".into()), LOGS).unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        let e = decide(&Identity::Anonymous, LOGS).unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        // A request with no connection identity (not over the TLS listener) is refused.
        let e = admit(&tonic::Request::new(()), LOGS).unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
}
