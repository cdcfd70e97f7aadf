//! Renewing the node certificate before it expires, with no restart: at about 70 % of its
//! lifetime (with jitter) the agent sends a CSR signed with the key it joined with over
//! its existing mTLS connection (Nodes.RenewCertificate), checks what comes back (this
//! node, this key, the same CA), writes it under `<data>/pki/`, swaps a channel that
//! presents it into [`NodeConnection`], and the new serving certificate into the daemon
//! endpoint. Pods, the assignment stream and the process go on.

use crate::connection::{Client, NodeConnection};
use crate::join::{self, NodeCredentials};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twinset_proto::certs::{draw_jitter, facts, now_secs, renew_in, retry_in};
use twinset_proto::tls::server::ServerCert;
use twinset_proto::v1::RenewCertificateRequest;

/// New certificates for `creds`' key from the control plane over `connection`: a CSR
/// signed with the key the node joined with, Nodes.RenewCertificate, checks (this node,
/// this key, the same CA), then the files under `dir`. Returns the new credentials.
pub async fn renew(
    connection: &NodeConnection,
    node: &str,
    dir: &Path,
    creds: &NodeCredentials,
) -> Result<NodeCredentials, String> {
    let key = rcgen::KeyPair::from_pem(&creds.key_pem).map_err(|e| format!("the node key: {e}"))?;
    let csr = join::csr(&key, node).map_err(|e| e.to_string())?;
    let answer = Client::new(connection.clone())
        .renew_certificate(RenewCertificateRequest {
            node_name: node.to_string(),
            csr_der: csr,
        })
        .await
        .map_err(|s| format!("the control plane refused: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    if answer.ca_pem.trim() != creds.ca_pem.trim() {
        return Err("the control plane answered with another CA".into());
    }
    let new = NodeCredentials {
        cert_pem: answer.certificate_pem,
        serving_cert_pem: answer.serving_certificate_pem,
        ..creds.clone()
    };
    new.check(node)?;
    new.save(dir).map_err(|e| e.to_string())?;
    Ok(new)
}

/// What the renewal task works with.
pub struct Renewal {
    /// The node's name.
    pub node: String,
    /// The control plane's address.
    pub server: String,
    /// Where the credentials are kept.
    pub dir: PathBuf,
    /// The credentials in use.
    pub creds: NodeCredentials,
    /// The connection every part of the agent calls through.
    pub connection: NodeConnection,
    /// The daemon endpoint's serving certificate cell.
    pub serving: Arc<ServerCert>,
}

impl Renewal {
    /// Renews the node certificate at about 70 % of each lifetime until `token` fires.
    pub async fn run(mut self, token: CancellationToken) {
        loop {
            let wait = match facts(&self.creds.cert_pem, "the node certificate") {
                Ok(f) => renew_in(&f, now_secs(), draw_jitter()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the node certificate; renewing now");
                    Duration::ZERO
                }
            };
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let retry = match self.renew_once().await {
                Ok(()) => continue,
                Err(e) => {
                    let not_after = facts(&self.creds.cert_pem, "the node certificate")
                        .map(|f| f.not_after)
                        .unwrap_or_default();
                    let left = not_after as f64 - now_secs();
                    if left <= 0.0 {
                        tracing::error!(
                            error = %e,
                            "the node certificate has expired and cannot be renewed: delete the \
                             node (twinset delete node) and join again with a token"
                        );
                    } else {
                        tracing::warn!(error = %e, seconds_left = left as u64, "cannot renew the node certificate; will retry");
                    }
                    retry_in(not_after, now_secs())
                }
            };
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(retry) => {}
            }
        }
    }

    /// One renewal: [`renew`], then the new serving certificate and channel.
    async fn renew_once(&mut self) -> Result<(), String> {
        let new = renew(&self.connection, &self.node, &self.dir, &self.creds).await?;
        self.serving
            .replace(&new.serving_cert_pem, &new.key_pem)
            .map_err(|e| format!("the new serving certificate: {e}"))?;
        let channel = crate::credentials::connect(&self.server, &new).map_err(|e| e.to_string())?;
        self.connection.replace(channel);
        if let Ok(f) = facts(&new.cert_pem, "the node certificate") {
            tracing::info!(
                serial = %f.serial,
                not_after = f.not_after,
                "node certificate renewed; new connections present it"
            );
        }
        self.creds = new;
        Ok(())
    }
}
