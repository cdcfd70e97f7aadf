//! The in-process control plane the integration tests share: started on 127.0.0.1:0 in
//! a temp dir, reached over a real gRPC channel, stopped through its cancellation token.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use twinset_control_plane::{run, Config};
use twinset_proto::v1::cluster_client::ClusterClient;
use twinset_proto::v1::nodes_client::NodesClient;

/// How long any wait in these tests may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A running control plane.
pub struct Cluster {
    pub token: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), twinset_control_plane::Error>>,
    /// A channel with the admin certificate (the Cluster service).
    pub channel: Channel,
    /// A channel with a node certificate for `test-agent` (the Nodes service).
    pub nodes_channel: Channel,
    /// The control plane's address.
    pub addr: String,
    _dir: tempfile::TempDir,
}

/// A TLS channel to the control plane in `data` at `addr`, as its admin
/// (`<data>/admin.kubeconfig`).
pub async fn admin_channel(data: &Path, addr: &str) -> Channel {
    let text = std::fs::read_to_string(data.join("admin.kubeconfig")).unwrap();
    let k = twinset_proto::kubeconfig::Kubeconfig::parse(&text).unwrap();
    twinset_proto::tls::connect(&format!("https://{addr}"), &k.credentials)
        .await
        .unwrap()
}

/// A TLS channel to the control plane in `data` at `addr` with a certificate for
/// `node`, signed with the cluster CA under `<data>/pki` (as joining would give it).
pub async fn node_channel(data: &Path, addr: &str, node: &str) -> Channel {
    let ca = twinset_control_plane::pki::ClusterCa::load_or_create(&data.join("pki")).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let cert = ca
        .sign_node_csr(csr.der(), node, Duration::from_secs(3600))
        .unwrap();
    let creds = twinset_proto::tls::ClientCredentials {
        ca_pem: ca.cert_pem().to_string(),
        identity: Some((cert.cert_pem, key.serialize_pem())),
    };
    twinset_proto::tls::connect(&format!("https://{addr}"), &creds)
        .await
        .unwrap()
}

/// The contents of `path` once it exists and is not empty.
pub async fn wait_for_file(path: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.is_empty() {
                return s;
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts a control plane (a node grace long enough that fake agents need not heartbeat).
pub async fn start() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("cp"), "127.0.0.1:0".parse().unwrap());
    config.node_grace = Duration::from_secs(60);
    let token = CancellationToken::new();
    let task = tokio::spawn(run(config, token.clone()));
    let addr = wait_for_file(&dir.path().join("cp/address")).await;
    let data = dir.path().join("cp");
    let channel = admin_channel(&data, &addr).await;
    let nodes_channel = node_channel(&data, &addr, "test-agent").await;
    Cluster {
        token,
        task,
        channel,
        nodes_channel,
        addr,
        _dir: dir,
    }
}

impl Cluster {
    /// A Cluster client.
    pub fn api(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
    }

    /// A Nodes client with `node`'s own certificate (what that node's agent uses: a
    /// node may speak only for itself).
    pub async fn node(&self, node: &str) -> NodesClient<Channel> {
        NodesClient::new(node_channel(&self._dir.path().join("cp"), &self.addr, node).await)
    }

    /// A channel with `node`'s own certificate.
    pub async fn node_channel(&self, node: &str) -> Channel {
        node_channel(&self._dir.path().join("cp"), &self.addr, node).await
    }

    /// Stops the control plane and waits until it has.
    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("stops in time")
            .unwrap()
            .unwrap();
    }
}
