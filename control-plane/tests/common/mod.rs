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
    pub channel: Channel,
    _dir: tempfile::TempDir,
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
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Cluster {
        token,
        task,
        channel,
        _dir: dir,
    }
}

impl Cluster {
    /// A Cluster client.
    pub fn api(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
    }

    /// A Nodes client (what a fake agent uses).
    pub fn nodes(&self) -> NodesClient<Channel> {
        NodesClient::new(self.channel.clone())
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
