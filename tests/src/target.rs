//! Where a test's gRPC clients connect and with what: the control plane's `https://`
//! address and the admin credentials from its `admin.kubeconfig`.

use twinset_proto::tls::ClientCredentials;
use twinset_proto::v1::cluster_client::ClusterClient;

/// A control plane and the admin credentials to call it with (cheap to clone into tasks).
#[derive(Clone, Debug)]
pub struct Target {
    /// `https://HOST:PORT`.
    pub server: String,
    /// The cluster CA and the admin certificate.
    pub credentials: ClientCredentials,
}

impl Target {
    /// A TLS channel to the control plane.
    pub async fn channel(&self) -> Result<tonic::transport::Channel, String> {
        twinset_proto::tls::connect(&self.server, &self.credentials)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.server))
    }

    /// A Cluster client over TLS, as the admin.
    pub async fn cluster(&self) -> Result<ClusterClient<tonic::transport::Channel>, String> {
        Ok(ClusterClient::new(self.channel().await?))
    }
}
