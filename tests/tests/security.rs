//! TLS and identities against the real binaries: a plain-text client gets no answer; a
//! node's own certificate (from its data dir) cannot call the Cluster service; agents
//! with bad join tokens are refused with a clear message and nothing is stored; a second
//! machine with a fresh key cannot take over a live node's name until the node is deleted;
//! an operator's CA (`--tls-ca-cert/--tls-ca-key`) signs everything, and another CA is
//! refused on a cluster that has one; a node's certificate speaks only for its own node
//! and the pods bound to it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::Code;
use twinset_e2e::cluster::run_command;
use twinset_e2e::{Cluster, Options, Output};
use twinset_proto::tls::ClientCredentials;
use twinset_proto::v1::{self, cluster_client::ClusterClient, nodes_client::NodesClient};

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
    let creds = c.node_credentials("node1");
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
    let first = c.store_revision();

    let out = join_once(&c, "intruder", &wrong_secret, "bad-secret");
    assert!(out.failed().contains("is not valid"), "wrong secret: {out}");
    let out = join_once(&c, "intruder", &other_ca, "bad-ca");
    assert!(
        out.failed().contains("does not match the token"),
        "another CA: {out}"
    );
    let out = join_once(&c, "intruder", "not-a-token", "garbage");
    assert!(out.failed().contains("--token"), "garbage: {out}");
    assert_eq!(c.store_revision(), first, "a refused join stores nothing");
    // A token for another node name.
    let for_other = c.run_ok(&["token", "create", "--ttl", "1h", "--node", "node9"]);
    let before = c.store_revision();
    let out = join_once(&c, "intruder", for_other.trim(), "other-node");
    assert!(
        out.failed()
            .contains("is for node \"node9\", not \"intruder\""),
        "another node's token: {out}"
    );
    assert_eq!(c.store_revision(), before, "a refused join stores nothing");
    // An expired token (a TTL of one second, once `token list` shows it expired).
    let short = c.run_ok(&["token", "create", "--ttl", "1s"]);
    let short_id = short
        .trim()
        .rsplit_once("::")
        .expect("TS1<hash>::id.secret")
        .1;
    let short_id = short_id.split('.').next().unwrap_or_default().to_string();
    twinset_e2e::wait_for("the 1 s token to expire", twinset_e2e::timeout(), || {
        let t = c.table(&["token", "list"]);
        match t.row(&short_id) {
            Some(r) if t.cell(r, "TTL") == "<expired>" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let before = c.store_revision();
    let out = join_once(&c, "intruder", short.trim(), "expired");
    assert!(
        out.failed()
            .contains(&format!("token {short_id} has expired")),
        "expired: {out}"
    );

    assert_eq!(c.store_revision(), before, "a refused join stores nothing");
    for dir in ["bad-secret", "bad-ca", "garbage", "other-node", "expired"] {
        assert!(
            !c.dir().join(dir).join("pki").join("node.key").exists(),
            "{dir}: a refused agent keeps no key"
        );
    }
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

// Operator CA

/// A CA made outside the cluster (rcgen, ECDSA P-256), as an operator would bring it:
/// `<dir>/<name>.crt` and `<name>.key`; returns the two paths and the certificate's DER.
fn operator_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a CA key");
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("a CA certificate");
    let (crt, key_file) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&crt, cert.pem()).expect("write the CA certificate");
    std::fs::write(&key_file, key.serialize_pem()).expect("write the CA key");
    (crt, key_file, cert.der().to_vec())
}

/// The one certificate of a PEM text, as DER.
fn der_of(pem: &str, what: &str) -> Vec<u8> {
    let certs = twinset_proto::tls::certs(pem, what).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(certs.len(), 1, "{what}: one certificate");
    certs[0].to_vec()
}

fn ca_flags(crt: &Path, key: &Path) -> Vec<String> {
    vec![
        "--tls-ca-cert".into(),
        crt.to_string_lossy().into_owned(),
        "--tls-ca-key".into(),
        key.to_string_lossy().into_owned(),
    ]
}

#[test]
fn an_operators_ca_signs_the_server_the_admin_and_the_nodes() {
    let outside = tempfile::tempdir().expect("temp dir");
    let (crt, key, ca_der) = operator_ca(outside.path(), "lab-ca");
    let mut c = Cluster::start_with(
        1,
        Options {
            control_plane_flags: ca_flags(&crt, &key),
            ..Options::default()
        },
    );
    // Copied into the data dir, the key private.
    let pki = c.dir().join("cp").join("pki");
    let stored = std::fs::read_to_string(pki.join("ca.crt")).expect("pki/ca.crt");
    assert_eq!(der_of(&stored, "pki/ca.crt"), ca_der);
    let mode = std::fs::metadata(pki.join("ca.key"))
        .expect("pki/ca.key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "pki/ca.key is private");

    // The admin's kubeconfig trusts the operator's CA (and the CLI works with it).
    let k = c.target().credentials;
    assert_eq!(der_of(&k.ca_pem, "admin.kubeconfig CA"), ca_der);

    // A join token pins it, and the node that joined trusts it and holds a certificate
    // the control plane (which trusts only the operator's CA) accepts.
    let token = c.join_token();
    let parsed = twinset_proto::token::Token::parse(&token).expect("a join token");
    assert_eq!(parsed.ca_hash(), twinset_proto::token::sha256_hex(&ca_der));
    let creds = c.node_credentials("node1");
    assert_eq!(der_of(&creds.ca_pem, "node1 pki/ca.crt"), ca_der);
    let server = c.server();
    let first = runtime().block_on(async move {
        let channel = twinset_proto::tls::connect(&server, &creds)
            .await
            .expect("node1's certificate chains to the operator's CA");
        let mut stream = NodesClient::new(channel)
            .watch_assignments(v1::WatchAssignmentsRequest {
                node_name: "node1".into(),
                ..Default::default()
            })
            .await
            .expect("node1 may watch its own assignments")
            .into_inner();
        stream.message().await
    });
    let first = first
        .expect("the assignment stream")
        .expect("a first message");
    assert_eq!(first.r#type, "SNAPSHOT");

    // A restart with the same files keeps the cluster (and its node) as it was.
    c.kill_control_plane();
    c.restart_control_plane();
    c.wait_nodes_ready(&["node1".to_string()]);
    let again = std::fs::read_to_string(pki.join("ca.crt")).expect("pki/ca.crt");
    assert_eq!(der_of(&again, "pki/ca.crt"), ca_der);
}

/// Runs `twinset control-plane` on the cluster's data dir with `extra` flags, expecting
/// it to refuse to start.
fn control_plane_refuses(c: &Cluster, extra: &[String]) -> Output {
    let data = c.dir().join("cp");
    let mut args: Vec<String> = [
        "control-plane",
        "--data-dir",
        &data.to_string_lossy(),
        "--listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().cloned());
    let mut cmd = c.command();
    cmd.args(&args);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_command(cmd, &argv, None);
    assert!(!out.success(), "the control plane started: {out}");
    out
}

/// Every file under `dir` with its contents.
fn files_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap_or_default()))
        .collect();
    out.sort();
    out
}

#[test]
fn another_ca_half_a_ca_or_the_wrong_key_is_refused_and_nothing_changes() {
    let mut c = Cluster::control_plane_only();
    let outside = tempfile::tempdir().expect("temp dir");
    let (crt, key, other_der) = operator_ca(outside.path(), "other-ca");
    c.kill_control_plane();
    let pki = c.dir().join("cp").join("pki");
    let before = files_of(&pki);
    let kubeconfig = std::fs::read(c.kubeconfig()).expect("admin.kubeconfig");

    // A different CA than the one the data dir holds.
    let out = control_plane_refuses(&c, &ca_flags(&crt, &key));
    let said = out.stderr.clone();
    assert!(
        said.contains(&format!("--tls-ca-cert {}", crt.display()))
            && said.contains(&twinset_proto::token::sha256_hex(&other_der))
            && said.contains("is not this cluster's CA")
            && said.contains("signed the nodes' certificates"),
        "{out}"
    );

    // One flag without the other.
    let half = ca_flags(&crt, &key);
    let out = control_plane_refuses(&c, &half[..2]);
    assert!(out.stderr.contains("--tls-ca-key"), "{out}");
    let out = control_plane_refuses(&c, &half[2..]);
    assert!(out.stderr.contains("--tls-ca-cert"), "{out}");

    // A key that is not the certificate's.
    let (_, stranger_key, _) = operator_ca(outside.path(), "stranger");
    let out = control_plane_refuses(&c, &ca_flags(&crt, &stranger_key));
    assert!(
        out.stderr.contains(&stranger_key.display().to_string())
            && out.stderr.contains("not the key of"),
        "{out}"
    );

    // Nothing changed: the same CA files, the same admin kubeconfig, and the control
    // plane starts again without the flags.
    assert_eq!(files_of(&pki), before, "pki/ changed");
    assert_eq!(
        std::fs::read(c.kubeconfig()).expect("admin.kubeconfig"),
        kubeconfig,
        "admin.kubeconfig changed"
    );
    c.restart_control_plane();
}

// Node authorization

/// The env of the sleep DaemonSets below (the builder needs one entry).
const SLEEP_ENV: &str = "        - name: ROLE\n          value: \"victim\"\n";

#[test]
fn a_node_certificate_speaks_only_for_its_own_node_and_pods() {
    let c = Cluster::start(2);
    let out = c.apply(&twinset_e2e::sleep_daemonset(
        "forgery", "default", SLEEP_ENV,
    ));
    assert!(out.success(), "{out}");
    let pods = c.wait_running("default", "forgery-", 2);
    let theirs = pods
        .iter()
        .find(|p| p.node == "node2")
        .cloned()
        .unwrap_or_else(|| panic!("no pod on node2: {pods:?}"));
    let creds = c.node_credentials("node1");
    let server = c.server();
    let forged_status = v1::PodStatus {
        phase: "Failed".into(),
        message: "forged by node1".into(),
        ..Default::default()
    };
    let forged_event = v1::Event {
        r#type: "Warning".into(),
        reason: "Forged".into(),
        message: "forged by node1".into(),
        ..Default::default()
    };
    let report = |node: &str| v1::ReportStatusRequest {
        node_name: node.into(),
        namespace: "default".into(),
        pod_name: theirs.name.clone(),
        pod_uid: theirs.uid.clone(),
        status: Some(forged_status.clone()),
        events: vec![forged_event.clone()],
        ..Default::default()
    };
    let (as_node1, as_node2) = (report("node1"), report("node2"));
    let daemonset = twinset_proto::manifest::decode(&twinset_e2e::sleep_daemonset(
        "planted", "default", SLEEP_ENV,
    ))
    .expect("a DaemonSet manifest")
    .remove(0);
    let refusals = runtime().block_on(async move {
        let channel = twinset_proto::tls::connect(&server, &creds)
            .await
            .expect("node1's own certificate is valid");
        let mut nodes = NodesClient::new(channel.clone());
        let watch = nodes
            .watch_assignments(v1::WatchAssignmentsRequest {
                node_name: "node2".into(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .expect_err("node1 may not watch node2's assignments");
        let pod_elsewhere = nodes
            .report_status(as_node1)
            .await
            .map(|_| ())
            .expect_err("node1 may not report for a pod bound to node2");
        let other_node = nodes
            .report_status(as_node2)
            .await
            .map(|_| ())
            .expect_err("node1 may not report as node2");
        let apply = ClusterClient::new(channel)
            .apply(v1::ApplyRequest {
                object: Some(daemonset),
                dry_run: false,
                create_only: false,
            })
            .await
            .map(|_| ())
            .expect_err("node1 may not apply a DaemonSet");
        [watch, pod_elsewhere, other_node, apply]
    });
    let [watch, pod_elsewhere, other_node, apply] = refusals;
    for s in [&watch, &pod_elsewhere, &other_node, &apply] {
        assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    }
    assert_eq!(
        watch.message(),
        "User \"system:node:node1\" cannot watch assignments for node \"node2\""
    );
    assert_eq!(
        pod_elsewhere.message(),
        format!(
            "User \"system:node:node1\" cannot report status for pod default/{}: \
             it is bound to node \"node2\", not \"node1\"",
            theirs.name
        )
    );
    assert_eq!(
        other_node.message(),
        "User \"system:node:node1\" cannot report pod status for node \"node2\""
    );
    assert_eq!(
        apply.message(),
        "User \"system:node:node1\" cannot call twinset.v1.Cluster/Apply"
    );

    // Nothing of it was taken: node2's pod runs on as node2 reports it, with none of the
    // forged events, and no DaemonSet was made.
    let now = c
        .pods_named("default", &theirs.name)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        now.len() == 1 && now[0].uid == theirs.uid && now[0].is_running_ready(),
        "node2's pod changed: {now:?}"
    );
    let pod = c
        .get_json(&["pod", &theirs.name, "-n", "default"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        twinset_e2e::json::str_at(&pod, "/status/message"),
        "forged by node1",
        "{pod}"
    );
    let forged: Vec<_> = c
        .events("default")
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|e| twinset_e2e::json::str_at(e, "/reason") == "Forged")
        .collect();
    assert!(forged.is_empty(), "forged events were recorded: {forged:?}");
    let ds = c.run(&["get", "ds", "planted", "-n", "default"]);
    assert!(!ds.success(), "a DaemonSet was applied: {ds}");

    // Each refusal is logged with the user.
    let log = c.dir().join("logs").join("control-plane.1.stderr");
    let log = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused") && l.contains("system:node:node1"))
        .collect();
    for want in [
        "watch assignments",
        "status report for a pod of another node",
        "report pod status",
        "twinset.v1.Cluster/Apply",
    ] {
        assert!(
            refused.iter().any(|l| l.contains(want)),
            "no refusal of {want:?} logged: {refused:#?}"
        );
    }
}

// NodeAgent endpoint

#[test]
fn an_agents_endpoint_answers_only_the_control_plane() {
    use twinset_proto::tls::server::{AgentDialer, ServerCert};
    use twinset_proto::v1::node_agent_client::NodeAgentClient;

    let c = Cluster::start(2);
    // A pod on node2 whose log the control plane fetches from node2's agent.
    c.apply(&twinset_e2e::shell_pod(
        "talker",
        "node2",
        "echo hello from node2; exec sleep 3600",
    ))
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
    let ClientCredentials {
        ca_pem: ca,
        identity: Some((cert, key)),
    } = c.node_credentials("node1")
    else {
        panic!("node1's credentials have no certificate");
    };
    let node1 = ServerCert::new(&cert, &key).expect("node1's certificate");
    let address = format!("127.0.0.1:{}", c.daemon_port("node2"));
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

// Plain text for debugging: only on loopback, only when asked for.

#[test]
fn insecure_listen_serves_plain_text_only_on_loopback_and_says_so() {
    // Another address than loopback: refused at start, before anything listens.
    let c = Cluster::control_plane_only();
    let data = c.dir().join("cp-public");
    let data = data.to_string_lossy();
    let args = [
        "control-plane",
        "--data-dir",
        &data,
        "--listen",
        "127.0.0.1:0",
        "--insecure-listen",
        "0.0.0.0:0",
    ];
    let mut cmd = c.command();
    cmd.args(args);
    let out = run_command(cmd, &args, None);
    assert!(
        out.failed().contains(
            "--insecure-listen 0.0.0.0:0: plain text is served only on a loopback address"
        ),
        "{out}"
    );

    // On loopback: the API answers in plain text there, as an administrator, and the
    // control plane warns about it; the TLS port is unchanged.
    let options = twinset_e2e::cluster::Options {
        control_plane_flags: vec!["--insecure-listen".into(), "127.0.0.1:0".into()],
        ..Default::default()
    };
    let c = Cluster::control_plane_only_with(&options);
    let at = twinset_e2e::wait_for("the insecure address", twinset_e2e::timeout(), || {
        std::fs::read_to_string(c.dir().join("cp").join("insecure-address"))
            .map_err(|e| e.to_string())
            .and_then(|s| (!s.is_empty()).then_some(s).ok_or("empty".into()))
    });
    let (listed, heartbeat) = runtime().block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{at}"))
            .unwrap()
            .connect()
            .await
            .expect("plain text on the insecure listener");
        let listed = ClusterClient::new(channel.clone())
            .list(v1::ListRequest {
                kind: "Namespace".into(),
                ..Default::default()
            })
            .await;
        let heartbeat = v1::nodes_client::NodesClient::new(channel)
            .heartbeat(v1::HeartbeatRequest {
                node_name: "node1".into(),
                ..Default::default()
            })
            .await;
        (listed, heartbeat)
    });
    let names: Vec<String> = listed
        .expect("an administrator may list")
        .into_inner()
        .items
        .iter()
        .map(|o| o.meta().name.clone())
        .collect();
    assert!(names.contains(&"default".to_string()), "{names:?}");
    // It acts as an administrator, never as a node.
    let e = heartbeat.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("system:insecure-listen"), "{e:?}");
    assert!(
        c.logs().contains("serving the API in PLAIN TEXT"),
        "no warning logged:\n{}",
        c.logs()
    );
}

// Revocation

#[test]
fn deleting_a_node_makes_its_certificate_useless_at_once() {
    let c = Cluster::start(2);
    let creds = c.node_credentials("node1");
    let server = c.server();
    let heartbeat = move || {
        let (server, creds) = (server.clone(), creds.clone());
        runtime().block_on(async move {
            let channel = twinset_proto::tls::connect(&server, &creds)
                .await
                .expect("the certificate still chains to the CA");
            v1::nodes_client::NodesClient::new(channel)
                .heartbeat(v1::HeartbeatRequest {
                    node_name: "node1".into(),
                    ..Default::default()
                })
                .await
        })
    };
    heartbeat().expect("node1's certificate works while node1 exists");

    c.run_ok(&["delete", "node", "node1"]);
    let e = heartbeat().unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert_eq!(
        e.message(),
        "the certificate of \"system:node:node1\" is no longer valid: node \"node1\" was \
         deleted (join again with a token from `twinset token create`)"
    );
    // node1's own agent, still running, is refused the same way and cannot bring the
    // node back; node2 is untouched.
    twinset_e2e::wait_for("node1's agent refused", twinset_e2e::timeout(), || {
        let log = std::fs::read_to_string(c.dir().join("logs").join("agent-node1.stderr"))
            .map_err(|e| e.to_string())?;
        log.contains("is no longer valid")
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    let names: Vec<String> = c
        .nodes()
        .expect("nodes")
        .iter()
        .map(|n| twinset_e2e::json::str_at(n, "/metadata/name").to_string())
        .collect();
    assert_eq!(names, ["node2"]);
    c.wait_nodes_ready(&["node2".to_string()]);
}

// Upgrade: a node that joined before agents served TLS

#[test]
fn an_agent_without_a_serving_certificate_gets_one_when_it_starts() {
    let mut c = Cluster::start(1);
    c.kill_agent("node1");
    let data = c.node_dir("node1");
    let serving = data.join("pki").join("node-serving.crt");
    std::fs::remove_file(&serving).expect("the agent had a serving certificate");
    c.spawn_agent_at("node1", &data, &[]);
    let pem = twinset_e2e::wait_for(
        "the restarted agent's serving certificate",
        twinset_e2e::timeout(),
        || std::fs::read_to_string(&serving).map_err(|e| e.to_string()),
    );
    c.wait_nodes_ready(&["node1".to_string()]);
    let facts = twinset_proto::certs::facts(&pem, "node-serving.crt").unwrap();
    assert_eq!(facts.common_name, "system:node:node1");
    // The control plane reaches the endpoint with it.
    c.apply(&twinset_e2e::shell_pod(
        "talker",
        "node1",
        "echo upgraded; exec sleep 3600",
    ))
    .ok();
    twinset_e2e::wait_for(
        "logs through the new certificate",
        twinset_e2e::timeout(),
        || match c.run(&["logs", "talker"]).result()? {
            "upgraded\n" => Ok(()),
            other => Err(format!("logs: {other:?}")),
        },
    );
}
