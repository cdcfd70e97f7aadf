//! What the control plane and the agents share to serve Prometheus metrics at
//! [`PATH`]: who may read them ([`decide`], pure), the text encoding (Prometheus text
//! format 0.0.4, [`encode`]) and the axum route that answers beside the gRPC services
//! on the same TLS port ([`router`]). Each binary keeps its own metrics and registry.

use crate::tls::server::{Identity, PeerInfo};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Where metrics are served.
pub const PATH: &str = "/metrics";

/// Buckets (seconds) for the latency of a request, a reconcile or a store write: 1 ms to
/// 60 s, about three per decade.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets (seconds) for a pod's start, which includes process start-up and probes:
/// 50 ms to 10 minutes.
pub const START_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// The pod phases, each always reported (a phase with no pods as 0).
pub const POD_PHASES: [&str; 5] = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];

/// The phase label of a pod whose status says `phase`: "" (nothing reported yet) is
/// Pending, as kubectl shows it; anything unrecognised is Unknown, so the label stays
/// one of [`POD_PHASES`].
pub fn phase_label(phase: &str) -> &'static str {
    match phase {
        "" => "Pending",
        p => POD_PHASES
            .into_iter()
            .find(|known| *known == p)
            .unwrap_or("Unknown"),
    }
}

/// Which certificates may read the metrics when they are not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readers {
    /// Administrators only (the control plane's own metrics).
    Admins,
    /// Administrators and the control plane (an agent's metrics).
    AdminsAndControlPlane,
}

/// Who may read `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// `--metrics-open`: any TLS client, with or without a client certificate.
    pub open: bool,
    /// Who may read otherwise.
    pub readers: Readers,
}

/// Why a caller may not read the metrics: 401 without a usable certificate, 403 for a
/// certificate that is not a reader's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 401 or 403.
    pub status: StatusCode,
    /// What the caller is told.
    pub message: String,
}

/// Whether the caller on `peer` may read the metrics at `now` (seconds since the epoch).
/// Without `--metrics-open` a reader's certificate is needed, and it must not have
/// expired since its connection opened.
pub fn decide(access: Access, peer: Option<&PeerInfo>, now: i64) -> Result<(), Refusal> {
    if access.open {
        return Ok(());
    }
    let unauthorized = |message: String| Refusal {
        status: StatusCode::UNAUTHORIZED,
        message,
    };
    let Some(peer) = peer else {
        return Err(unauthorized("Unauthorized".into()));
    };
    if let Some(why) = peer.expired(now) {
        return Err(unauthorized(why));
    }
    match (&peer.identity, access.readers) {
        (Identity::Admin(_), _) => Ok(()),
        (Identity::ControlPlane, Readers::AdminsAndControlPlane) => Ok(()),
        (Identity::Anonymous, _) => Err(unauthorized("Unauthorized".into())),
        (other, _) => Err(Refusal {
            status: StatusCode::FORBIDDEN,
            message: format!("User \"{}\" cannot get {PATH}", other.user()),
        }),
    }
}

/// The registry's metrics in the Prometheus text format (version 0.0.4).
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

struct Served {
    registry: Arc<Registry>,
    access: Access,
}

/// The route answering `GET /metrics` with `registry`'s metrics to the callers `access`
/// admits; a refusal is logged and answered in plain text.
pub fn router(registry: Arc<Registry>, access: Access) -> axum::Router {
    axum::Router::new()
        .route(PATH, axum::routing::get(metrics))
        .with_state(Arc::new(Served { registry, access }))
}

async fn metrics(State(served): State<Arc<Served>>, req: Request) -> Response {
    let peer = req.extensions().get::<PeerInfo>();
    if let Err(refusal) = decide(served.access, peer, chrono::Utc::now().timestamp()) {
        tracing::warn!(
            user = %peer.map_or(Identity::Anonymous, |p| p.identity.clone()).user(),
            remote = ?peer.map(|p| p.remote),
            path = PATH,
            "refused: {}",
            refusal.message
        );
        return (refusal.status, refusal.message).into_response();
    }
    match encode(&served.registry) {
        Ok(text) => (
            [(http::header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::server::PeerCert;
    use prometheus_client::metrics::counter::Counter;

    fn peer(identity: Identity, not_after: i64) -> PeerInfo {
        PeerInfo {
            remote: "127.0.0.1:5000".parse().unwrap(),
            identity,
            cert: Some(PeerCert {
                key_sha256: String::new(),
                not_after,
            }),
        }
    }

    const CLOSED: Access = Access {
        open: false,
        readers: Readers::Admins,
    };
    const AGENT: Access = Access {
        open: false,
        readers: Readers::AdminsAndControlPlane,
    };

    #[test]
    fn only_readers_certificates_may_read_unless_open() {
        let admin = peer(Identity::Admin("admin".into()), 100);
        let cp = peer(Identity::ControlPlane, 100);
        let node = peer(Identity::Node("n1".into()), 100);
        assert!(decide(CLOSED, Some(&admin), 10).is_ok());
        assert!(decide(AGENT, Some(&admin), 10).is_ok());
        assert!(decide(AGENT, Some(&cp), 10).is_ok());
        let e = decide(CLOSED, Some(&cp), 10).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(
            e.message,
            "User \"twinset-control-plane\" cannot get /metrics"
        );
        let e = decide(AGENT, Some(&node), 10).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.message, "User \"system:node:n1\" cannot get /metrics");
        let anonymous = PeerInfo {
            cert: None,
            ..peer(Identity::Anonymous, 0)
        };
        assert_eq!(
            decide(CLOSED, Some(&anonymous), 10).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            decide(AGENT, None, 10).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        // An admin certificate that expired since its connection opened.
        let e = decide(CLOSED, Some(&admin), 100).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(e.message.contains("expired"), "{}", e.message);
        // --metrics-open: anyone.
        let open = Access {
            open: true,
            ..CLOSED
        };
        assert!(decide(open, Some(&anonymous), 10).is_ok());
        assert!(decide(open, None, 10).is_ok());
        assert!(decide(open, Some(&node), 10).is_ok());
    }

    #[test]
    fn phase_labels_are_bounded() {
        assert_eq!(phase_label(""), "Pending");
        assert_eq!(phase_label("Running"), "Running");
        assert_eq!(phase_label("Succeeded"), "Succeeded");
        assert_eq!(phase_label("Exploded"), "Unknown");
    }

    #[test]
    fn the_registry_is_encoded_as_prometheus_text() {
        let mut registry = Registry::default();
        let c = Counter::<u64>::default();
        registry.register("twinset_things", "Things seen", c.clone());
        c.inc_by(3);
        assert_eq!(
            encode(&registry).unwrap(),
            "# HELP twinset_things_total Things seen.\n\
             # TYPE twinset_things_total counter\n\
             twinset_things_total 3\n"
        );
    }
}
