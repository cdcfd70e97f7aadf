//! deploy/LAB.md on one machine: a control plane started as the guide says (on loopback,
//! with the harness's own pod range so that clusters side by side never share a pod IP,
//! and a short node grace), a join token
//! made with `twinset token create --ttl 2h --uses 3` through the admin kubeconfig, and
//! three agents joining with it. The cluster runs the guide's DaemonSet and StatefulSet
//! (real MariaDB replicas), the token is then used up, a plain-text client of the control
//! plane or of any agent's daemon endpoint gets no data, and the agents keep their key and
//! certificate, never the token.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use twinset_e2e::cluster::{find_files, run_command};
use twinset_e2e::json::PodView;
use twinset_e2e::{sql, timeout, wait_for, Cluster, Output, Table, GUIDE_STATEFULSET};
use twinset_proto::token::{sha256_hex, Token};
use twinset_proto::v1::{self, cluster_client::ClusterClient};

const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// `twinset ARGS` as LAB.md runs it on the control plane host: with
/// `TWINSET_CONFIG=<data>/admin.kubeconfig` and nothing else.
fn admin(c: &Cluster, args: &[&str]) -> Output {
    let mut cmd = c.command();
    cmd.env("TWINSET_CONFIG", c.kubeconfig()).args(args);
    run_command(cmd, args, None)
}

/// LAB.md §2–3: the control plane (`--data-dir D --listen ADDR`), a token for three
/// machines, and three agents joining with it (`--server https://… --token T
/// --node-name N --data-dir … --listen …`); waits until the three nodes are Ready.
/// Returns the cluster and the token.
fn start_lab() -> (Cluster, String) {
    let mut c = Cluster::control_plane_only();
    let made = admin(
        &c,
        &[
            "token",
            "create",
            "--ttl",
            "2h",
            "--uses",
            "3",
            "--description",
            "lab machines",
        ],
    );
    let token = made.ok().trim().to_string();
    let parsed = Token::parse(&token).unwrap_or_else(|e| panic!("{token:?}: {e}"));
    // The token pins the CA the control plane made in its data dir.
    let ca = std::fs::read_to_string(c.dir().join("cp").join("pki").join("ca.crt"))
        .expect("the control plane's pki/ca.crt");
    let ca_der = twinset_proto::tls::certs(&ca, "pki/ca.crt").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.ca_hash(), sha256_hex(&ca_der[0]), "{token}");

    let listed = admin(&c, &["token", "list"]);
    let t = Table::parse(listed.ok());
    let row = t
        .row(parsed.id())
        .unwrap_or_else(|| panic!("token {} not listed: {listed}", parsed.id()));
    assert_eq!(t.cell(row, "USAGES"), "3", "{listed}");
    assert_eq!(t.cell(row, "DESCRIPTION"), "lab machines", "{listed}");
    assert_ne!(t.cell(row, "EXPIRES"), "<never>", "{listed}");
    assert!(
        !listed.stdout.contains(&token),
        "token list shows the secret: {listed}"
    );

    c.use_join_token(&token);
    for n in NODES {
        c.spawn_agent(n, &[]);
    }
    c.wait_nodes_ready(&NODES.map(String::from));
    (c, token)
}

/// True when a plain-text (h2c) gRPC client of `addr` got an answer from the control
/// plane's Cluster service.
fn plain_text_client_got_data(addr: &str) -> Result<bool, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let server = format!("http://{addr}");
    rt.block_on(async move {
        let endpoint = tonic::transport::Endpoint::from_shared(server)
            .map_err(|e| e.to_string())?
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(5));
        let Ok(channel) = endpoint.connect().await else {
            return Ok(false);
        };
        let answer = ClusterClient::new(channel)
            .list(v1::ListRequest {
                kind: "Node".into(),
                ..Default::default()
            })
            .await;
        Ok(answer.is_ok())
    })
}

/// What a server at `addr` sends back to the HTTP/2 preface and an empty SETTINGS frame
/// sent in clear, until it closes the connection.
fn raw_plain_text_reply(addr: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .expect("send the HTTP/2 preface");
    // An empty SETTINGS frame, as a client sends next.
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .expect("send SETTINGS");
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    reply
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    find_files(dir, |_| true, 8)
        .into_iter()
        .filter(|p| {
            std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn a_lab_cluster_joins_with_one_token_and_speaks_only_tls() {
    let (c, token) = start_lab();
    c.run_guide_daemonset(NODES.len());

    // The token allowed three joins: a fourth machine is refused, and says why.
    let data = c.dir().join("node4");
    let args = [
        "agent",
        "--server",
        &c.server(),
        "--token",
        &token,
        "--node-name",
        "node4",
        "--data-dir",
        &data.to_string_lossy(),
        "--listen",
        "127.0.0.1:0",
    ];
    let mut cmd = c.command();
    cmd.args(args);
    let fourth = run_command(cmd, &args, None);
    let id = Token::parse(&token).expect("token").id().to_string();
    assert!(
        fourth
            .failed()
            .contains(&format!("token {id} has been used up")),
        "{fourth}"
    );
    assert!(
        !data.join("pki").join("node.crt").exists(),
        "a refused machine got a certificate"
    );
    let nodes: Vec<String> = c
        .nodes()
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|n| twinset_e2e::json::str_at(n, "/metadata/name").to_string())
        .collect();
    assert_eq!(nodes, NODES, "only the three machines joined");
    let listed = admin(&c, &["token", "list"]);
    let t = Table::parse(listed.ok());
    let row = t
        .row(&id)
        .unwrap_or_else(|| panic!("token {id} no longer listed: {listed}"));
    assert_eq!(t.cell(row, "USAGES"), "0", "{listed}");

    // Every connection is TLS: a plain-text client gets an error, not data.
    let got = plain_text_client_got_data(c.addr()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!got, "the control plane answered a plain-text gRPC client");
    let reply = raw_plain_text_reply(c.addr());
    // A TLS alert record (content type 21), then the connection closes.
    assert_eq!(
        reply.first(),
        Some(&0x15),
        "the control plane answered plain text with something other than a TLS alert: {:02x?}",
        &reply[..reply.len().min(32)]
    );
    // So does each agent's daemon endpoint (TLS only): a TLS alert or a closed
    // connection, never an HTTP/2 frame.
    for n in NODES {
        let addr = format!("127.0.0.1:{}", c.daemon_port(n));
        let reply = raw_plain_text_reply(&addr);
        assert!(
            reply.is_empty() || reply[0] == 0x15,
            "{n}'s daemon endpoint {addr} answered plain text with something other than a \
             TLS alert: {:02x?}",
            &reply[..reply.len().min(32)]
        );
    }

    // Each agent keeps its own key (owner only), its certificate and the CA, and no token.
    let (_, secret) = token.rsplit_once('.').expect("TS1<hash>::id.secret");
    for n in NODES {
        let dir = c.node_dir(n);
        let pki = dir.join("pki");
        let key = pki.join("node.key");
        let mode = std::fs::metadata(&key)
            .unwrap_or_else(|e| panic!("{}: {e}", key.display()))
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{} is readable by others",
            key.display()
        );
        for f in ["node.crt", "ca.crt"] {
            assert!(pki.join(f).is_file(), "{n} has no pki/{f}");
        }
        let leaks = files_containing(&dir, secret);
        assert!(leaks.is_empty(), "{n} stored the token's secret: {leaks:?}");
    }
}

#[test]
fn mariadb_a_lab_cluster_runs_the_guides_daemonset_and_statefulset() {
    assert!(
        sql::server_installed(),
        "mariadbd not found: install Debian's mariadb-server (apt-get install mariadb-server mariadb-client)"
    );
    let (c, _token) = start_lab();
    let monitors = c.run_guide_daemonset(NODES.len());
    let on: Vec<&str> = monitors.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(on, NODES, "one node-monitor per machine");

    let out = c.apply_repo_file(GUIDE_STATEFULSET);
    assert!(
        out.ok().contains("statefulset.apps/mysql-db created"),
        "{out}"
    );
    let pods = c.wait_sts_ready("database", "mysql-db", 3);
    let mut on: Vec<&str> = pods.iter().map(|p| p.node.as_str()).collect();
    on.sort();
    assert_eq!(on, NODES, "one replica per machine");
    // Each replica is a real database server, answering at its pod IP.
    for p in &pods {
        let answer = sql_ok(p, "SELECT 1");
        assert_eq!(answer, "1", "{}", p.name);
    }
}

/// Runs SQL at a pod's IP, waiting until the server answers.
fn sql_ok(pod: &PodView, query: &str) -> String {
    wait_for(
        &format!("MariaDB in {} ({}:3306) to run {query:?}", pod.name, pod.ip),
        timeout(),
        || sql::query(&pod.ip, query),
    )
}
