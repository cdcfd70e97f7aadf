//! TLS and identities against the real binaries: a plain-text client gets no answer; a
//! node's own certificate (from its data dir) cannot call the Cluster service; agents
//! with bad join tokens are refused with a clear message and nothing is stored; a second
//! machine with a fresh key cannot take over a live node's name until the node is deleted.

use std::time::Duration;
use tonic::Code;
use twinset_e2e::cluster::run_command;
use twinset_e2e::{Cluster, Output};
use twinset_proto::tls::ClientCredentials;
use twinset_proto::v1::{self, cluster_client::ClusterClient};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `twinset agent` for `node` with `token` in a fresh data dir until it exits.
fn join_once(c: &Cluster, node: &str, token: &str, dir: &str) -> Output {
    let data = c.dir().join(dir);
    let data = data.to_string_lossy();
    let args = [
        "agent",
        "--server",
        &c.server(),
        "--token",
        token,
        "--node-name",
        node,
        "--data-dir",
        &data,
        "--listen",
        "127.0.0.1:0",
    ];
    let mut cmd = c.command();
    cmd.args(args);
    run_command(cmd, &args, None)
}

#[test]
fn a_plain_text_client_gets_no_answer() {
    let c = Cluster::control_plane_only();
    let server = format!("http://{}", c.addr());
    let answered = runtime().block_on(async move {
        let Ok(endpoint) = tonic::transport::Endpoint::from_shared(server) else {
            return false;
        };
        let endpoint = endpoint.timeout(Duration::from_secs(5));
        match endpoint.connect().await {
            Err(_) => false,
            Ok(ch) => ClusterClient::new(ch)
                .list(v1::ListRequest {
                    kind: "Node".into(),
                    ..Default::default()
                })
                .await
                .is_ok(),
        }
    });
    assert!(!answered, "the control plane answered a plain-text client");
}

#[test]
fn a_node_certificate_cannot_call_the_cluster_service() {
    let c = Cluster::start(1);
    let pki = c.node_dir("node1").join("pki");
    let read =
        |f: &str| std::fs::read_to_string(pki.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let creds = ClientCredentials {
        ca_pem: read("ca.crt"),
        identity: Some((read("node.crt"), read("node.key"))),
    };
    let server = c.server();
    let refused = runtime().block_on(async move {
        let channel = twinset_proto::tls::connect(&server, &creds)
            .await
            .expect("the node's certificate is valid");
        ClusterClient::new(channel)
            .list(v1::ListRequest {
                kind: "Pod".into(),
                ..Default::default()
            })
            .await
            .expect_err("a node may not list the cluster's pods")
    });
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(
        refused.message(),
        "User \"system:node:node1\" cannot call twinset.v1.Cluster/List"
    );
}

#[test]
fn bad_join_tokens_are_refused_and_nothing_is_stored() {
    let mut c = Cluster::control_plane_only();
    let good = c.join_token();
    let (head, secret) = good.rsplit_once('.').expect("id.secret");
    // The last character of the secret changed.
    let last = if secret.ends_with('a') { 'b' } else { 'a' };
    let wrong_secret = format!("{head}.{}{last}", &secret[..secret.len() - 1]);
    // The same id and secret for another CA.
    let (_, rest) = good.split_once("::").expect("TS1<hash>::");
    let other_ca = format!("TS1{}::{rest}", "0".repeat(64));
    let before = c.store_revision();

    let out = join_once(&c, "intruder", &wrong_secret, "bad-secret");
    assert!(out.failed().contains("is not valid"), "wrong secret: {out}");
    let out = join_once(&c, "intruder", &other_ca, "bad-ca");
    assert!(
        out.failed().contains("does not match the token"),
        "another CA: {out}"
    );
    let out = join_once(&c, "intruder", "not-a-token", "garbage");
    assert!(out.failed().contains("--token"), "garbage: {out}");

    assert_eq!(c.store_revision(), before, "a refused join stores nothing");
    assert!(
        !c.dir().join("bad-ca").join("pki").join("node.key").exists(),
        "nothing kept after a CA mismatch"
    );
}

#[test]
fn a_fresh_key_cannot_take_over_a_live_nodes_name_until_it_is_deleted() {
    let mut c = Cluster::start(1);
    let token = c.join_token();
    let out = join_once(&c, "node1", &token, "reinstalled");
    assert!(
        out.failed().contains("already joined with another key"),
        "{out}"
    );
    // The operator releases the name: the old agent goes, the node is deleted, and the
    // re-installed machine joins with its new key.
    c.kill_agent("node1");
    c.run_ok(&["delete", "node", "node1"]);
    let data = c.dir().join("reinstalled-2");
    c.spawn_agent_at("node1", &data, &[]);
    c.wait_nodes_ready(&["node1".to_string()]);
    assert!(data.join("pki").join("node.crt").is_file());
}

// NodeAgent endpoint

/// The daemon endpoint port node `node` reported (status.daemonEndpoints).
fn daemon_port(c: &Cluster, node: &str) -> u16 {
    let n = c
        .get_json(&["node", node])
        .unwrap_or_else(|e| panic!("get node {node}: {e}"));
    let port = n["status"]["daemonEndpoints"]["kubeletEndpoint"]["port"]
        .as_u64()
        .unwrap_or_else(|| panic!("node {node} reports no daemon endpoint port: {n}"));
    u16::try_from(port).expect("a port")
}

#[test]
fn an_agents_endpoint_answers_only_the_control_plane() {
    use twinset_proto::tls::server::{AgentDialer, ServerCert};
    use twinset_proto::v1::node_agent_client::NodeAgentClient;

    let c = Cluster::start(2);
    // A pod on node2 whose log the control plane fetches from node2's agent.
    c.apply(
        "apiVersion: v1
kind: Pod
metadata:
  name: talker
  namespace: default
spec:
  nodeName: node2
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [\"sh\", \"-c\", \"echo hello from node2; exec sleep 3600\"]
",
    )
    .ok();
    twinset_e2e::wait_for(
        "`logs talker` to show its line",
        twinset_e2e::timeout(),
        || match c.run(&["logs", "talker"]).result()? {
            "hello from node2\n" => Ok(()),
            other => Err(format!("logs: {other:?}")),
        },
    );

    // node1's own key and certificate, as an intruder on node1 would find them.
    let pki = c.node_dir("node1").join("pki");
    let read =
        |f: &str| std::fs::read_to_string(pki.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let ca = read("ca.crt");
    let node1 = ServerCert::new(&read("node.crt"), &read("node.key")).expect("node1's certificate");
    let address = format!("127.0.0.1:{}", daemon_port(&c, "node2"));
    let request = || v1::LogsRequest {
        namespace: "default".into(),
        pod: "talker".into(),
        ..Default::default()
    };

    let (refused, plain) = runtime().block_on(async {
        // TLS checked as the control plane checks it (node2's serving certificate for
        // the name node2), presenting node1's certificate.
        let channel = AgentDialer::new(&ca, node1)
            .expect("a client configuration")
            .connect("node2", &address, Duration::from_secs(5))
            .await
            .expect("node2's agent serves TLS with its serving certificate");
        let refused = NodeAgentClient::new(channel)
            .logs(request())
            .await
            .expect_err("node1 may not read node2's logs");
        // Plain text.
        let plain = async {
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
                .timeout(Duration::from_secs(5));
            NodeAgentClient::new(endpoint.connect().await?)
                .logs(request())
                .await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        }
        .await;
        (refused, plain)
    });
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(
        refused.message(),
        "User \"system:node:node1\" cannot call twinset.v1.NodeAgent/Logs"
    );
    assert!(plain.is_err(), "node2's agent answered a plain-text client");

    // The control plane's own certificate is still accepted: logs work as before.
    assert_eq!(c.run_ok(&["logs", "talker"]), "hello from node2\n");
}
