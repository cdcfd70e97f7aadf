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
/// `node`, got as an agent gets it: a token from the admin, then Bootstrap.Join with a
/// CSR. The node's key is kept under `<data>/test-keys/` so that a second channel for
/// the same node joins with the same (pinned) key.
pub async fn node_channel(data: &Path, addr: &str, node: &str) -> Channel {
    use twinset_proto::v1::{bootstrap_client::BootstrapClient, CreateTokenRequest, JoinRequest};
    let server = format!("https://{addr}");
    let keys = data.join("test-keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key_file = keys.join(format!("{node}.key"));
    let key = match std::fs::read_to_string(&key_file) {
        Ok(pem) => rcgen::KeyPair::from_pem(&pem).unwrap(),
        Err(_) => {
            let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            std::fs::write(&key_file, k.serialize_pem()).unwrap();
            k
        }
    };
    let token = ClusterClient::new(admin_channel(data, addr).await)
        .create_token(CreateTokenRequest {
            ttl_seconds: 600,
            uses: 1,
            node: node.into(),
            description: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let ca_pem = std::fs::read_to_string(data.join("pki").join("ca.crt")).unwrap();
    let anonymous = twinset_proto::tls::ClientCredentials {
        ca_pem: ca_pem.clone(),
        identity: None,
    };
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let joined = BootstrapClient::new(
        twinset_proto::tls::connect(&server, &anonymous)
            .await
            .unwrap(),
    )
    .join(JoinRequest {
        token,
        node_name: node.into(),
        csr_der: csr.der().to_vec(),
    })
    .await
    .unwrap_or_else(|e| panic!("joining as {node}: {e}"))
    .into_inner();
    let creds = twinset_proto::tls::ClientCredentials {
        ca_pem,
        identity: Some((joined.certificate_pem, key.serialize_pem())),
    };
    twinset_proto::tls::connect(&server, &creds).await.unwrap()
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
    Cluster {
        token,
        task,
        channel,
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
