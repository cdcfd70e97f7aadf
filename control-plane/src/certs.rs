//! The control plane's own certificates: the server certificate, renewed at about 70 %
//! of its lifetime (with jitter) and swapped into the listener with no restart (the next
//! handshake uses it; open connections go on), and the list `twinset certs check` shows:
//! the CA, the server and admin certificates, and every node certificate recorded on
//! the nodes ([`crate::join::issued`]).

use crate::join::issued;
use crate::pki::{ClusterCa, Issued};
use crate::store::Store;
use crate::tls::ServerCert;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twinset_proto::certs::{draw_jitter, facts, now_secs, renew_in, retry_in};
use twinset_proto::v1::CertificateInfo;
use twinset_proto::Kind;

/// The certificates the control plane holds, and the cell the listener reads its
/// certificate from.
pub struct OwnCerts {
    ca: Arc<ClusterCa>,
    sans: Vec<String>,
    server_ttl: Duration,
    cell: Arc<ServerCert>,
    server: Mutex<Issued>,
    admin: CertificateInfo,
}

impl std::fmt::Debug for OwnCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnCerts")
            .field("sans", &self.sans)
            .finish()
    }
}

/// A certificate as listed.
fn info(name: &str, pem: &str, holder: &str) -> CertificateInfo {
    match facts(pem, name) {
        Ok(f) => CertificateInfo {
            name: name.into(),
            subject: f.common_name,
            serial: f.serial,
            not_after: issued::rfc3339(f.not_after),
            holder: holder.into(),
        },
        Err(e) => CertificateInfo {
            name: name.into(),
            subject: format!("<unreadable: {e}>"),
            holder: holder.into(),
            ..Default::default()
        },
    }
}

impl OwnCerts {
    /// Issues a server certificate for `sans` (valid for `server_ttl`) and keeps it, with
    /// the admin certificate just written to `admin.kubeconfig`.
    pub fn new(
        ca: Arc<ClusterCa>,
        sans: Vec<String>,
        server_ttl: Duration,
        admin: &Issued,
    ) -> Result<Arc<OwnCerts>, crate::Error> {
        let server = ca.issue_server(&sans, server_ttl)?;
        let cell = ServerCert::new(&server.cert_pem, &server.key_pem)?;
        Ok(Arc::new(OwnCerts {
            admin: info("admin", &admin.cert_pem, "admin.kubeconfig"),
            ca,
            sans,
            server_ttl,
            cell,
            server: Mutex::new(server),
        }))
    }

    /// The cell the listener (and the control plane's client side) reads from.
    pub fn cell(&self) -> Arc<ServerCert> {
        self.cell.clone()
    }

    fn server(&self) -> Issued {
        self.server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Issues a new server certificate and uses it from the next handshake on.
    pub fn renew_server(&self) -> Result<Issued, crate::Error> {
        let new = self.ca.issue_server(&self.sans, self.server_ttl)?;
        self.cell.replace(&new.cert_pem, &new.key_pem)?;
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = new.clone();
        Ok(new)
    }

    /// Renews the server certificate at about 70 % of each lifetime until `token` fires.
    pub async fn rotate(self: Arc<Self>, token: CancellationToken) {
        loop {
            let current = self.server();
            let wait = match facts(&current.cert_pem, "the server certificate") {
                Ok(f) => renew_in(&f, now_secs(), draw_jitter()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the server certificate; renewing now");
                    Duration::ZERO
                }
            };
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match self.renew_server() {
                Ok(new) => tracing::info!(
                    serial = %new.serial,
                    not_after = %issued::rfc3339(new.not_after.unix_timestamp()),
                    "server certificate renewed"
                ),
                Err(e) => {
                    let retry = retry_in(current.not_after.unix_timestamp(), now_secs());
                    tracing::warn!(error = %e, ?retry, "cannot renew the server certificate");
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                }
            }
        }
    }

    /// Every certificate the control plane issued or holds: the CA, the server and admin
    /// certificates, then each node's, by node name.
    pub fn list(&self, store: &dyn Store) -> Vec<CertificateInfo> {
        let mut out = vec![
            info("ca", self.ca.cert_pem(), "control plane"),
            info("server", &self.server().cert_pem, "control plane"),
            self.admin.clone(),
        ];
        let (nodes, _) = store.list(Kind::Node, None);
        for n in nodes.iter().filter_map(|o| o.as_node()) {
            out.extend(issued::recorded(n));
        }
        out
    }
}
