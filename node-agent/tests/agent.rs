//! The agent against a fake control plane that implements the generated `Nodes`
//! service: registration, assignments, status reports, logs, deletion, restarts,
//! adoption after an agent restart, claim volumes that outlive their pods, (as root)
//! an OOM kill under a memory limit and the pod's own hostname and /etc/hosts, and
//! the guide's MySQL (when mariadb-server is installed), and probes: readiness gating
//! the pod's Ready condition, a failed liveness probe restarting its container, and
//! the mysql:8 image's own readiness probe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use twinset_proto::v1::{
    self,
    node_agent_client::NodeAgentClient,
    nodes_server::{Nodes, NodesServer},
    Assignment, Container, ExecAction, ObjectMeta, PersistentVolumeClaimVolumeSource, Pod, PodSpec,
    Probe, ReportStatusRequest, ResourceRequirements, Volume, VolumeMount,
};

const DEADLINE: Duration = Duration::from_secs(20);
const POD_CIDR: &str = "127.77.1.0/24";

#[derive(Clone)]
struct Fake {
    pods: Arc<watch::Sender<Vec<Pod>>>,
    reports: Arc<Mutex<Vec<ReportStatusRequest>>>,
    notify: Arc<Notify>,
    node: Arc<Mutex<Option<v1::Node>>>,
    /// Revisions the agent asked to resume from, one per WatchAssignments call.
    watches: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn new() -> Self {
        Fake {
            pods: Arc::new(watch::channel(Vec::new()).0),
            reports: Arc::default(),
            notify: Arc::new(Notify::new()),
            node: Arc::default(),
            watches: Arc::default(),
        }
    }

    fn set_pods(&self, pods: Vec<Pod>) {
        self.pods.send_replace(pods);
    }

    /// Waits (up to the deadline) for a report of pod `uid` that satisfies `pred`.
    async fn wait_report(
        &self,
        uid: &str,
        what: &str,
        pred: impl Fn(&ReportStatusRequest) -> bool,
    ) -> ReportStatusRequest {
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self
                .reports
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|r| r.pod_uid == uid && pred(r))
            {
                return r.clone();
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                let seen: Vec<_> = self
                    .reports
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|r| r.pod_uid == uid)
                    .cloned()
                    .collect();
                panic!("timed out waiting for {what}; reports for {uid}: {seen:#?}");
            }
        }
    }
}

type AssignmentStream = Pin<Box<dyn Stream<Item = Result<Assignment, Status>> + Send>>;

#[tonic::async_trait]
impl Nodes for Fake {
    async fn register(
        &self,
        req: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        let mut node = req
            .into_inner()
            .node
            .ok_or_else(|| Status::invalid_argument("no node"))?;
        let spec = node.spec.get_or_insert_with(Default::default);
        if spec.pod_cidr.is_empty() {
            spec.pod_cidr = POD_CIDR.into();
        }
        *self.node.lock().unwrap() = Some(node.clone());
        Ok(Response::new(v1::RegisterResponse { node: Some(node) }))
    }

    async fn heartbeat(
        &self,
        _: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        Ok(Response::new(v1::HeartbeatResponse::default()))
    }

    type WatchAssignmentsStream = AssignmentStream;

    async fn watch_assignments(
        &self,
        req: Request<v1::WatchAssignmentsRequest>,
    ) -> Result<Response<AssignmentStream>, Status> {
        self.watches
            .lock()
            .unwrap()
            .push(req.into_inner().resource_version);
        let rx = self.pods.subscribe();
        let stream = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let pods = rx.borrow_and_update().clone();
            let a = Assignment {
                r#type: "SNAPSHOT".into(),
                pods,
                resource_version: "1".into(),
                claims: Vec::new(),
                more: false,
                lost_claims: Vec::new(),
            };
            Some((Ok(a), (rx, false)))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report_status(
        &self,
        req: Request<ReportStatusRequest>,
    ) -> Result<Response<v1::ReportStatusResponse>, Status> {
        self.reports.lock().unwrap().push(req.into_inner());
        self.notify.notify_waiters();
        Ok(Response::new(v1::ReportStatusResponse {}))
    }

    async fn renew_certificate(
        &self,
        _req: Request<v1::RenewCertificateRequest>,
    ) -> Result<Response<v1::RenewCertificateResponse>, Status> {
        // Its certificates outlive every test; renewal is tested against the real one.
        Err(Status::unimplemented(
            "the fake control plane renews nothing",
        ))
    }
}

struct Cluster {
    fake: Fake,
    addr: String,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    acceptor: tokio::task::JoinHandle<()>,
    conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Cluster {
    async fn start() -> Self {
        Self::start_at("127.0.0.1:0", Fake::new()).await
    }

    async fn start_at(addr: &str, fake: Fake) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = CancellationToken::new();
        // TLS as the real control plane serves it, with this test process's CA.
        let ca = test_ca();
        let issued = ca
            .issue_server(
                &["127.0.0.1".into(), "localhost".into()],
                Duration::from_secs(3600),
            )
            .unwrap();
        let cert =
            twinset_control_plane::tls::ServerCert::new(&issued.cert_pem, &issued.key_pem).unwrap();
        let tls = tokio_rustls::TlsAcceptor::from(
            twinset_control_plane::tls::server_config(ca.cert_pem(), cert).unwrap(),
        );
        // Accept connections ourselves and keep a duplicate of each socket, so that
        // kill() can cut them as a dying process would.
        let conns: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let (tx, rx) =
            tokio::sync::mpsc::channel::<std::io::Result<twinset_control_plane::tls::TlsConn>>(16);
        let kept = Arc::clone(&conns);
        let acceptor = tokio::spawn(async move {
            while let Ok((sock, remote)) = listener.accept().await {
                let _ = sock.set_nodelay(true);
                let std_sock = sock.into_std().unwrap();
                kept.lock().unwrap().push(std_sock.try_clone().unwrap());
                let sock = tokio::net::TcpStream::from_std(std_sock).unwrap();
                let Ok(conn) = twinset_control_plane::tls::accept(&tls, sock, remote).await else {
                    continue;
                };
                if tx.send(Ok(conn)).await.is_err() {
                    return;
                }
            }
        });
        let (svc, s) = (fake.clone(), stop.clone());
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(NodesServer::new(svc))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                    s.cancelled_owned(),
                )
                .await
        });
        Cluster {
            fake,
            addr,
            stop,
            server,
            acceptor,
            conns,
        }
    }

    /// The control plane dies: the listener and every connection go at once.
    async fn kill(self) -> String {
        self.acceptor.abort();
        let _ = self.acceptor.await;
        self.server.abort();
        let _ = self.server.await;
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        self.addr
    }
}

/// A certificate of this process's CA for the control plane (the agents' only caller).
fn control_plane_cert() -> Arc<twinset_control_plane::tls::ServerCert> {
    let issued = test_ca()
        .issue_server(&["127.0.0.1".into()], Duration::from_secs(3600))
        .unwrap();
    twinset_control_plane::tls::ServerCert::new(&issued.cert_pem, &issued.key_pem).unwrap()
}

/// A TLS channel to node n1's agent on `port`, presenting `cert`.
async fn agent_channel(
    cert: &Arc<twinset_control_plane::tls::ServerCert>,
    port: i32,
) -> tonic::transport::Channel {
    twinset_control_plane::tls::AgentDialer::new(test_ca().cert_pem(), cert.clone())
        .unwrap()
        .connect("n1", &format!("127.0.0.1:{port}"), Duration::from_secs(5))
        .await
        .unwrap()
}

struct Agent {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), twinset_node_agent::Error>>,
}

/// This test process's cluster CA (its files are removed at once; the key stays in memory).
fn test_ca() -> &'static twinset_control_plane::pki::ClusterCa {
    static CA: std::sync::OnceLock<twinset_control_plane::pki::ClusterCa> =
        std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        twinset_control_plane::pki::ClusterCa::load_or_create(dir.path()).unwrap()
    })
}

/// Gives the agent of `data_dir` a certificate for node n1, as joining would.
fn provision(data_dir: &Path) {
    use twinset_node_agent::join::{pki_dir, NodeCredentials};
    let dir = pki_dir(data_dir);
    if NodeCredentials::load(&dir).unwrap().is_some() {
        return;
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let cert = test_ca()
        .sign_node_csr(csr.der(), "n1", Duration::from_secs(3600))
        .unwrap();
    let serving = test_ca()
        .sign_node_serving(csr.der(), "n1", Duration::from_secs(3600))
        .unwrap();
    NodeCredentials {
        key_pem: key.serialize_pem(),
        cert_pem: cert.cert_pem,
        serving_cert_pem: serving.cert_pem,
        ca_pem: test_ca().cert_pem().to_string(),
    }
    .save(&dir)
    .unwrap();
}

impl Agent {
    fn start(cluster: &Cluster, data_dir: &Path, keep_pods: bool) -> Agent {
        provision(data_dir);
        let mut config = twinset_node_agent::Config::new(cluster.addr.clone(), "n1", data_dir);
        config.image_table =
            Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images.yaml"));
        config.restart_backoff = twinset_node_agent::container::Backoff::new(
            Duration::from_millis(50),
            Duration::from_secs(5),
            Duration::from_secs(10),
        )
        .unwrap();
        config.heartbeat = Duration::from_millis(200);
        config.stop_pods_on_shutdown = !keep_pods;
        let stop = CancellationToken::new();
        let task = tokio::spawn(twinset_node_agent::run(config, stop.clone()));
        Agent { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(40), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn container(name: &str, command: &[&str]) -> Container {
    Container {
        name: name.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn pod(name: &str, uid: &str, policy: &str, containers: Vec<Container>) -> Pod {
    Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            uid: uid.into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers,
            restart_policy: policy.into(),
            node_name: "n1".into(),
            termination_grace_period_seconds: Some(5),
            ..Default::default()
        }),
        status: None,
    }
}

fn deleting(mut p: Pod) -> Pod {
    if let Some(m) = p.metadata.as_mut() {
        m.deletion_timestamp = twinset_proto::time::now();
        m.deletion_grace_period_seconds = Some(2);
    }
    p
}

fn phase(r: &ReportStatusRequest) -> &str {
    r.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("")
}

fn container_status(r: &ReportStatusRequest) -> v1::ContainerStatus {
    r.status
        .as_ref()
        .and_then(|s| s.container_statuses.first().cloned())
        .unwrap_or_default()
}

fn recorded_pid(data_dir: &Path, uid: &str, container: &str) -> Option<u32> {
    let snap = twinset_node_agent::state::read(data_dir).ok()?;
    snap.pods.get(uid)?.containers.get(container).map(|c| c.pid)
}

fn alive(pid: u32) -> bool {
    twinset_node_agent::runtime::procfs::start_ticks(pid).is_some()
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !f() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// How to leave out the tests that need root or MariaDB (README, `.config/nextest.toml`).
const UNPRIVILEGED_HINT: &str =
    "run as root, or leave these tests out: cargo nextest run --workspace --profile unprivileged";

/// Fails the test unless it runs as root, saying what root is needed for (tests that
/// cannot do their work fail rather than pass without it). Such tests are named `root_*`.
fn require_root(needed_for: &str) {
    assert!(is_root(), "needs root ({needed_for}); {UNPRIVILEGED_HINT}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_runs_reports_serves_logs_and_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await;
    let agent = Agent::start(&cluster, dir.path(), false);
    let p = pod(
        "web",
        "uid-web",
        "Always",
        vec![container(
            "app",
            &[
                "sh",
                "-c",
                "echo hello $POD_NAME $POD_NAMESPACE $NODE_NAME $POD_IP $HOSTNAME; exec sleep 1000",
            ],
        )],
    );
    // Let the agent register and open its stream first, so the time below is the hot path.
    wait_until("registration", || {
        cluster.fake.node.lock().unwrap().is_some()
    })
    .await;
    tokio::task::yield_now().await;
    let t0 = std::time::Instant::now();
    cluster.fake.set_pods(vec![p.clone()]);
    let running = cluster
        .fake
        .wait_report("uid-web", "Running", |r| phase(r) == "Running")
        .await;
    eprintln!("assignment -> Running reported: {:?}", t0.elapsed());
    // More pods: each gets its own IP.
    let mut ips = vec![running.status.clone().unwrap().pod_ip];
    for i in 0..3 {
        let q = pod(
            &format!("q{i}"),
            &format!("uid-q{i}"),
            "Always",
            vec![container("c", &["sleep", "1000"])],
        );
        let mut all = cluster.fake.pods.borrow().clone();
        all.push(q);
        cluster.fake.set_pods(all);
        let r = cluster
            .fake
            .wait_report(&format!("uid-q{i}"), "Running", |r| phase(r) == "Running")
            .await;
        ips.push(r.status.unwrap().pod_ip);
    }
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ips.len(), "{ips:?}");
    let status = running.status.clone().unwrap();
    assert!(status.pod_ip.starts_with("127.77.1."), "{status:?}");
    assert_eq!(status.host_ip, "127.0.0.1");
    assert!(status
        .conditions
        .iter()
        .any(|c| c.r#type == "Ready" && c.status == "True"));
    assert!(
        running.events.iter().any(|e| e.reason == "Started")
            || cluster
                .fake
                .reports
                .lock()
                .unwrap()
                .iter()
                .any(|r| r.events.iter().any(|e| e.reason == "Started"))
    );

    // The registered node carries the daemon endpoint; logs come through it.
    let node = cluster.fake.node.lock().unwrap().clone().unwrap();
    let labels = node.metadata.clone().unwrap().labels;
    assert_eq!(labels["kubernetes.io/hostname"], "n1");
    let port = node
        .status
        .unwrap()
        .daemon_endpoints
        .unwrap()
        .kubelet_endpoint
        .unwrap()
        .port;
    // Over TLS, as the control plane calls it: its certificate, the agent's checked for n1.
    let mut logs = NodeAgentClient::new(agent_channel(&control_plane_cert(), port).await);
    let want = format!("hello web default n1 {} web\n", status.pod_ip);
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let req = v1::LogsRequest {
            namespace: "default".into(),
            pod: "web".into(),
            ..Default::default()
        };
        let mut stream = logs.logs(req).await.unwrap().into_inner();
        let mut text = Vec::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            text.extend(chunk.data);
        }
        if String::from_utf8_lossy(&text) == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "log was {:?}",
            String::from_utf8_lossy(&text)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let missing = logs
        .logs(v1::LogsRequest {
            namespace: "default".into(),
            pod: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // The node's own certificate (any but the control plane's) is refused, naming it.
    let pki = twinset_node_agent::join::pki_dir(dir.path());
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).unwrap();
    let node_cert =
        twinset_control_plane::tls::ServerCert::new(&read("node.crt"), &read("node.key")).unwrap();
    let denied = NodeAgentClient::new(agent_channel(&node_cert, port).await)
        .logs(v1::LogsRequest {
            namespace: "default".into(),
            pod: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        denied.message(),
        "User \"system:node:n1\" cannot call twinset.v1.NodeAgent/Logs"
    );
    // The dialer presents what its cell holds at each handshake: swapping in the node's
    // certificate is refused on a new connection, swapping back is accepted again.
    let cell = control_plane_cert();
    let dialer =
        twinset_control_plane::tls::AgentDialer::new(test_ca().cert_pem(), cell.clone()).unwrap();
    let addr = format!("127.0.0.1:{port}");
    let call = |channel| async {
        NodeAgentClient::new(channel)
            .logs(v1::LogsRequest {
                namespace: "default".into(),
                pod: "web".into(),
                ..Default::default()
            })
            .await
            .map(|_| ())
    };
    cell.replace(&read("node.crt"), &read("node.key")).unwrap();
    let swapped = call(dialer.connect("n1", &addr, DEADLINE).await.unwrap()).await;
    assert_eq!(swapped.unwrap_err().code(), tonic::Code::PermissionDenied);
    let issued = test_ca()
        .issue_server(&["127.0.0.1".into()], Duration::from_secs(3600))
        .unwrap();
    cell.replace(&issued.cert_pem, &issued.key_pem).unwrap();
    call(dialer.connect("n1", &addr, DEADLINE).await.unwrap())
        .await
        .expect("the control plane's certificate again");
    // The agent's certificate names n1 only: dialled as another node, it is not trusted.
    let err = dialer.connect("n2", &addr, DEADLINE).await.unwrap_err();
    let cause = twinset_control_plane::api::logs::why_not_connected(&err);
    assert!(
        cause.contains("certificate not valid for name \"n2\""),
        "n1's agent passed for n2, or failed for another reason: {cause}"
    );
    // Plain text gets no answer.
    let plain = async {
        NodeAgentClient::connect(format!("http://127.0.0.1:{port}"))
            .await?
            .logs(v1::LogsRequest {
                pod: "web".into(),
                ..Default::default()
            })
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    assert!(
        tokio::time::timeout(DEADLINE, plain)
            .await
            .unwrap()
            .is_err(),
        "a plain-text client got logs"
    );

    let pid = recorded_pid(dir.path(), "uid-web", "app").expect("pid recorded");
    let q0 = recorded_pid(dir.path(), "uid-q0", "c").expect("pid recorded");
    assert!(alive(pid) && alive(q0));
    // web is deleted gracefully; q0..q2 vanish from the assignments: all stop.
    cluster.fake.set_pods(vec![deleting(p)]);
    cluster
        .fake
        .wait_report("uid-web", "terminated", |r| r.terminated)
        .await;
    assert!(!alive(pid), "process {pid} still alive after deletion");
    wait_until("unassigned pod stopped", || !alive(q0)).await;
    wait_until("unassigned pod forgotten", || {
        recorded_pid(dir.path(), "uid-q0", "c").is_none()
    })
    .await;
    assert!(recorded_pid(dir.path(), "uid-web", "app").is_none());
    agent.stop().await;
    cluster.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_missing_from_table_waits_and_crashing_container_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await;
    let agent = Agent::start(&cluster, dir.path(), false);
    let missing = pod(
        "m",
        "uid-m",
        "Always",
        vec![Container {
            name: "c".into(),
            image: "nope:1".into(),
            ..Default::default()
        }],
    );
    let crash = pod(
        "k",
        "uid-k",
        "Always",
        vec![container("c", &["sh", "-c", "exit 3"])],
    );
    let done = pod("d", "uid-d", "Never", vec![container("c", &["true"])]);
    let monitor = pod(
        "mon",
        "uid-mon",
        "Always",
        vec![Container {
            name: "c".into(),
            image: "datadog/agent:latest".into(),
            ..Default::default()
        }],
    );
    cluster.fake.set_pods(vec![missing, crash, done, monitor]);

    let r = cluster
        .fake
        .wait_report("uid-m", "ImageNotInTable", |r| {
            container_status(r)
                .state
                .and_then(|s| s.waiting)
                .is_some_and(|w| w.reason == "ImageNotInTable")
        })
        .await;
    assert_eq!(phase(&r), "Pending");
    let msg = container_status(&r).state.unwrap().waiting.unwrap().message;
    assert!(
        msg.contains("nope:1") && msg.contains("images.yaml"),
        "{msg}"
    );

    let r = cluster
        .fake
        .wait_report("uid-k", "two restarts", |r| {
            container_status(r).restart_count >= 2
        })
        .await;
    let last = container_status(&r).last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_str()), (3, "Error"));
    assert_eq!(phase(&r), "Running");

    let r = cluster
        .fake
        .wait_report("uid-d", "Succeeded", |r| phase(r) == "Succeeded")
        .await;
    let t = container_status(&r).state.unwrap().terminated.unwrap();
    assert_eq!(t.reason, "Completed");

    cluster
        .fake
        .wait_report("uid-mon", "Running", |r| phase(r) == "Running")
        .await;
    wait_until("a monitor line", || {
        let t = log_of(dir.path(), "mon", "uid-mon", "c");
        t.starts_with("node-monitor node=n1 pod=mon load=") && t.contains("mem_available_kb=")
    })
    .await;

    agent.stop().await;
    cluster.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_agent_adopts_running_pods() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await;
    let p = pod(
        "a",
        "uid-a",
        "Always",
        vec![container("c", &["sleep", "1000"])],
    );
    cluster.fake.set_pods(vec![p.clone()]);
    let agent = Agent::start(&cluster, dir.path(), true);
    let first = cluster
        .fake
        .wait_report("uid-a", "Running", |r| phase(r) == "Running")
        .await;
    let pid = recorded_pid(dir.path(), "uid-a", "c").unwrap();
    agent.stop().await;
    assert!(alive(pid), "pod process should outlive the agent");

    cluster.fake.reports.lock().unwrap().clear();
    let agent = Agent::start(&cluster, dir.path(), false);
    let again = cluster
        .fake
        .wait_report("uid-a", "Running again", |r| phase(r) == "Running")
        .await;
    assert_eq!(
        recorded_pid(dir.path(), "uid-a", "c"),
        Some(pid),
        "adopted, not restarted"
    );
    assert_eq!(again.status.unwrap().pod_ip, first.status.unwrap().pod_ip);
    assert_eq!(
        container_status(&cluster.fake.reports.lock().unwrap().last().unwrap().clone())
            .restart_count,
        0
    );

    // The adopted process is watched: deleting the pod stops it.
    cluster.fake.set_pods(vec![deleting(p)]);
    cluster
        .fake
        .wait_report("uid-a", "terminated", |r| r.terminated)
        .await;
    assert!(!alive(pid));
    agent.stop().await;
    cluster.stop.cancel();
}

fn memory_cgroup(uid: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup/memory/twinset").join(uid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_only_memory_limit_kills_with_oomkilled() {
    require_root("memory limits are cgroups, which only root may create");
    assert!(
        Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists()
            || Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        "needs a cgroup v1 memory controller or cgroup v2 mounted at /sys/fs/cgroup; {UNPRIVILEGED_HINT}"
    );
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await;
    let agent = Agent::start(&cluster, dir.path(), false);
    let mut c = container("hog", &["sh", "-c", "head -c 400000000 /dev/zero | tail"]);
    let mut limits = BTreeMap::new();
    limits.insert("memory".to_string(), "128Mi".to_string());
    limits.insert("cpu".to_string(), "500m".to_string());
    c.resources = Some(ResourceRequirements {
        limits,
        requests: BTreeMap::new(),
    });
    let p = pod("hog", "uid-oom", "Never", vec![c]);
    cluster.fake.set_pods(vec![p.clone()]);
    let r = cluster
        .fake
        .wait_report("uid-oom", "OOMKilled", |r| {
            container_status(r)
                .state
                .and_then(|s| s.terminated)
                .is_some_and(|t| t.reason == "OOMKilled")
        })
        .await;
    let t = container_status(&r).state.unwrap().terminated.unwrap();
    assert_eq!(t.exit_code, 137);
    assert_eq!(phase(&r), "Failed");
    if memory_cgroup("uid-oom").exists() {
        let limit = std::fs::read_to_string(memory_cgroup("uid-oom").join("memory.limit_in_bytes"))
            .unwrap();
        assert_eq!(limit.trim(), "134217728");
        let quota =
            std::fs::read_to_string("/sys/fs/cgroup/cpu/twinset/uid-oom/hog/cpu.cfs_quota_us")
                .unwrap();
        assert_eq!(quota.trim(), "50000");
    }
    cluster.fake.set_pods(vec![deleting(p)]);
    cluster
        .fake
        .wait_report("uid-oom", "terminated", |r| r.terminated)
        .await;
    assert!(!memory_cgroup("uid-oom").exists(), "pod cgroup removed");
    agent.stop().await;
    cluster.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_survive_a_control_plane_outage_and_the_agent_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await;
    let agent = Agent::start(&cluster, dir.path(), false);
    let p = pod(
        "s",
        "uid-s",
        "Always",
        vec![container("c", &["sleep", "1000"])],
    );
    cluster.fake.set_pods(vec![p.clone()]);
    cluster
        .fake
        .wait_report("uid-s", "Running", |r| phase(r) == "Running")
        .await;
    let pid = recorded_pid(dir.path(), "uid-s", "c").unwrap();

    let addr = cluster.kill().await;
    // Long enough for several reconnect attempts to fail.
    let fake = Fake::new();
    let end = tokio::time::Instant::now() + Duration::from_millis(500);
    while tokio::time::Instant::now() < end {
        assert!(alive(pid), "pod died with the control plane");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Back on the same address: the agent resumes from its last revision.
    fake.set_pods(vec![p.clone()]);
    let cluster = Cluster::start_at(&addr, fake).await;
    wait_until("watch resumed", || {
        cluster
            .fake
            .watches
            .lock()
            .unwrap()
            .iter()
            .any(|rv| rv == "1")
    })
    .await;
    assert!(alive(pid));
    assert_eq!(
        recorded_pid(dir.path(), "uid-s", "c"),
        Some(pid),
        "not restarted"
    );
    let q = pod(
        "t",
        "uid-t",
        "Always",
        vec![container("c", &["sleep", "1000"])],
    );
    cluster.fake.set_pods(vec![p, q]);
    cluster
        .fake
        .wait_report("uid-t", "Running", |r| phase(r) == "Running")
        .await;
    assert!(
        cluster.fake.node.lock().unwrap().is_none(),
        "no re-registration"
    );
    agent.stop().await;
    assert!(!alive(pid), "agent shutdown stops its pods");
    cluster.stop.cancel();
}

/// `p` with a volume `name` backed by claim `claim`, mounted at `path` in every container.
fn with_claim(mut p: Pod, name: &str, claim: &str, path: &str) -> Pod {
    let spec = p.spec.as_mut().unwrap();
    spec.volumes.push(Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: false,
        }),
        ..Default::default()
    });
    for c in &mut spec.containers {
        c.volume_mounts.push(VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            read_only: false,
            sub_path: String::new(),
        });
    }
    p
}

fn log_of(data_dir: &Path, pod: &str, uid: &str, container: &str) -> String {
    let dir = data_dir.join("pods").join(format!("default_{pod}_{uid}"));
    twinset_node_agent::logs::read_kept(&dir, container)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Whether the report's pod has condition Ready=True.
fn pod_ready(r: &ReportStatusRequest) -> bool {
    r.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

/// An exec probe running `script` with `sh -c`, every second.
fn sh_probe(script: &str, failure_threshold: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: vec!["sh".into(), "-c".into(), script.into()],
        }),
        period_seconds: 1,
        failure_threshold,
        ..Default::default()
    }
}

/// The container's TMPDIR, as its first log line `tmp=...` says.
async fn tmpdir_of(data_dir: &Path, pod: &str, uid: &str) -> PathBuf {
    wait_until("the container printed its TMPDIR", || {
        log_of(data_dir, pod, uid, "c").contains('\n')
    })
    .await;
    let log = log_of(data_dir, pod, uid, "c");
    let line = log.lines().next().unwrap_or_default();
    PathBuf::from(
        line.strip_prefix("tmp=")
            .unwrap_or_else(|| panic!("log: {log}")),
    )
}

fn events_of(fake: &Fake, uid: &str) -> Vec<v1::Event> {
    fake.reports
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.pod_uid == uid)
        .flat_map(|r| r.events.clone())
        .collect()
}

/// A claim volume at /data outlives its pod: the pod writes a file, is deleted and
/// recreated under the same name with a new uid, and finds the file again. As root the
/// pod also has its own hostname and /etc/hosts; without root it finds the volume
/// through TWINSET_MOUNT_DATA and is told that its mount is not isolated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_volume_outlives_its_pod_and_the_pod_has_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await;
    let agent = Agent::start(&cluster, dir.path(), false);
    // Works isolated or not: TWINSET_MOUNT_DATA is /data when isolated, else the
    // claim's folder on the node.
    let script = "echo \"host=$(hostname) env=$HOSTNAME\"; \
                  grep \"$POD_IP\" /etc/hosts || echo 'no pod line in /etc/hosts'; \
                  echo \"seen=$(cat \"$TWINSET_MOUNT_DATA/f\" 2>/dev/null | tr '\\n' ,)\"; \
                  echo \"run by $POD_NAME\" >> \"$TWINSET_MOUNT_DATA/f\"; \
                  echo written; exec sleep 1000";
    let first = with_claim(
        pod(
            "db-0",
            "uid-db-0a",
            "Always",
            vec![container("c", &["sh", "-c", script])],
        ),
        "data",
        "data-db-0",
        "/data",
    );
    cluster.fake.set_pods(vec![first.clone()]);
    let r = cluster
        .fake
        .wait_report("uid-db-0a", "Running", |r| phase(r) == "Running")
        .await;
    let pod_ip = r.status.unwrap().pod_ip;
    wait_until("the first pod wrote its file", || {
        log_of(dir.path(), "db-0", "uid-db-0a", "c").contains("written")
    })
    .await;
    let claim_dir = dir.path().join("volumes/default/data-db-0");
    assert_eq!(
        std::fs::read_to_string(claim_dir.join("f")).unwrap(),
        "run by db-0\n"
    );
    let log = log_of(dir.path(), "db-0", "uid-db-0a", "c");
    let isolated = is_root()
        && !events_of(&cluster.fake, "uid-db-0a")
            .iter()
            .any(|e| e.reason == "MountNotIsolated");
    if isolated {
        assert!(log.contains("host=db-0 env=db-0\n"), "{log}");
        assert!(log.contains(&format!("{pod_ip}\tdb-0\n")), "{log}");
    } else {
        let e = events_of(&cluster.fake, "uid-db-0a")
            .into_iter()
            .find(|e| e.reason == "MountNotIsolated")
            .expect("a MountNotIsolated event");
        assert_eq!(e.r#type, "Warning");
        assert!(
            e.message.contains("TWINSET_MOUNT_DATA") && e.message.contains("data-db-0"),
            "{}",
            e.message
        );
        assert!(log.contains("env=db-0\n"), "{log}");
    }

    // Deleted: the pod goes, its claim folder stays.
    cluster.fake.set_pods(vec![deleting(first)]);
    cluster
        .fake
        .wait_report("uid-db-0a", "terminated", |r| r.terminated)
        .await;
    assert!(claim_dir.join("f").is_file(), "claim folder kept");
    assert!(!dir.path().join("pods/default_db-0_uid-db-0a").exists());

    // Recreated with a new uid: same claim, same data.
    let second = with_claim(
        pod(
            "db-0",
            "uid-db-0b",
            "Always",
            vec![container("c", &["sh", "-c", script])],
        ),
        "data",
        "data-db-0",
        "/data",
    );
    cluster.fake.set_pods(vec![second.clone()]);
    wait_until("the second pod read the file", || {
        log_of(dir.path(), "db-0", "uid-db-0b", "c").contains("written")
    })
    .await;
    let log = log_of(dir.path(), "db-0", "uid-db-0b", "c");
    assert!(log.contains("seen=run by db-0,\n"), "{log}");
    assert_eq!(
        std::fs::read_to_string(claim_dir.join("f")).unwrap(),
        "run by db-0\nrun by db-0\n"
    );
    cluster.fake.set_pods(vec![deleting(second)]);
    cluster
        .fake
        .wait_report("uid-db-0b", "terminated", |r| r.terminated)
        .await;
    agent.stop().await;

    // An agent restart keeps it too.
    let agent = Agent::start(&cluster, dir.path(), false);
    wait_until("a fresh snapshot applied", || {
        cluster.fake.watches.lock().unwrap().len() >= 2
    })
    .await;
    assert!(
        claim_dir.join("f").is_file(),
        "claim folder kept across agent restarts"
    );
    agent.stop().await;
    cluster.stop.cancel();
}

/// A readiness probe (exec, in the container's environment) keeps the pod unready
/// while it fails — with `Unhealthy` events — and the first success is reported at
/// once as Ready=True.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_probe_gates_the_ready_condition() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await;
    let agent = Agent::start(&cluster, dir.path(), false);
    let mut c = container("c", &["sh", "-c", "echo tmp=$TMPDIR; exec sleep 1000"]);
    c.readiness_probe = Some(sh_probe("test -f \"$TMPDIR/ready\"", 3));
    cluster
        .fake
        .set_pods(vec![pod("rp", "uid-rp", "Always", vec![c])]);

    let r = cluster
        .fake
        .wait_report("uid-rp", "Running", |r| phase(r) == "Running")
        .await;
    assert!(!pod_ready(&r));
    let s = container_status(&r);
    assert_eq!((s.ready, s.started), (false, Some(true)));
    let r = cluster
        .fake
        .wait_report("uid-rp", "a failed readiness probe", |r| {
            r.events.iter().any(|e| e.reason == "Unhealthy")
        })
        .await;
    let e = r.events.iter().find(|e| e.reason == "Unhealthy").unwrap();
    assert_eq!(e.r#type, "Warning");
    assert!(
        e.message
            .starts_with("Readiness probe failed: command \"sh -c test -f"),
        "{}",
        e.message
    );
    assert!(
        !cluster
            .fake
            .reports
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.pod_uid == "uid-rp" && pod_ready(r)),
        "Ready before the probe passed"
    );

    let tmp = tmpdir_of(dir.path(), "rp", "uid-rp").await;
    std::fs::write(tmp.join("ready"), "").unwrap();
    let t = std::time::Instant::now();
    let r = cluster.fake.wait_report("uid-rp", "Ready", pod_ready).await;
    // The next probe (within its 1 s period) sees the file and is reported at once.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(container_status(&r).ready);

    // Failing again (failureThreshold 3) makes it unready.
    std::fs::remove_file(tmp.join("ready")).unwrap();
    let r = cluster
        .fake
        .wait_report("uid-rp", "unready again", |r| {
            !pod_ready(r) && phase(r) == "Running"
        })
        .await;
    assert_eq!(
        container_status(&r).restart_count,
        0,
        "readiness never restarts"
    );

    agent.stop().await;
    cluster.stop.cancel();
}

/// A failing liveness probe kills the container, which restarts (restartCount 1) with
/// the kubelet's events; once the probe passes again it stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_liveness_probe_restarts_the_container() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await;
    let agent = Agent::start(&cluster, dir.path(), false);
    // Each run marks itself alive; the test removes the mark once.
    let mut c = container(
        "c",
        &[
            "sh",
            "-c",
            "echo tmp=$TMPDIR; touch \"$TMPDIR/alive\"; exec sleep 1000",
        ],
    );
    c.liveness_probe = Some(sh_probe("test -f \"$TMPDIR/alive\"", 2));
    cluster
        .fake
        .set_pods(vec![pod("lp", "uid-lp", "Always", vec![c])]);
    let r = cluster
        .fake
        .wait_report("uid-lp", "Running and ready", pod_ready)
        .await;
    assert_eq!(container_status(&r).restart_count, 0);
    let tmp = tmpdir_of(dir.path(), "lp", "uid-lp").await;
    wait_until("the container marked itself alive", || {
        tmp.join("alive").is_file()
    })
    .await;
    std::fs::remove_file(tmp.join("alive")).unwrap();

    let r = cluster
        .fake
        .wait_report("uid-lp", "restarted and ready", |r| {
            container_status(r).restart_count == 1 && pod_ready(r)
        })
        .await;
    let last = container_status(&r).last_state.unwrap().terminated.unwrap();
    assert_eq!(
        (last.reason.as_str(), last.signal),
        ("Error", 15),
        "{last:?}"
    );
    let events = events_of(&cluster.fake, "uid-lp");
    let find = |reason: &str, text: &str| {
        events
            .iter()
            .any(|e| e.reason == reason && e.message.contains(text))
    };
    assert!(find("Unhealthy", "Liveness probe failed: "), "{events:#?}");
    assert!(
        find(
            "Killing",
            "Container c failed liveness probe, will be restarted"
        ),
        "{events:#?}"
    );
    assert_eq!(
        events.iter().filter(|e| e.reason == "Killing").count(),
        1,
        "killed once"
    );

    agent.stop().await;
    cluster.stop.cancel();
}

/// As root, an exec probe runs in the pod's mount and UTS namespaces: it sees the
/// claim bind-mounted at its mountPath (empty on the node) and the pod's hostname.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_only_exec_probe_runs_in_the_pods_namespaces() {
    require_root("pods get their own mount and UTS namespaces only as root");
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await;
    let agent = Agent::start(&cluster, dir.path(), false);
    let mnt = dir.path().join("mnt");
    let mut c = container("c", &["sh", "-c", "touch \"$DATA/ok\"; exec sleep 1000"]);
    c.env.push(v1::EnvVar {
        name: "DATA".into(),
        value: mnt.display().to_string(),
        value_from: None,
    });
    c.readiness_probe = Some(sh_probe(
        "test -f \"$DATA/ok\" && test \"$(hostname)\" = ns-probe",
        3,
    ));
    let p = with_claim(
        pod("ns-probe", "uid-nsp", "Always", vec![c]),
        "data",
        "data-ns-probe",
        &mnt.display().to_string(),
    );
    cluster.fake.set_pods(vec![p]);
    cluster
        .fake
        .wait_report("uid-nsp", "Running", |r| phase(r) == "Running")
        .await;
    if let Some(e) = events_of(&cluster.fake, "uid-nsp")
        .into_iter()
        .find(|e| e.reason == "MountNotIsolated")
    {
        agent.stop().await;
        cluster.stop.cancel();
        panic!(
            "root, but this machine cannot give pods mount and UTS namespaces of their own \
             (CAP_SYS_ADMIN and unshare are needed): {}; {UNPRIVILEGED_HINT}",
            e.message
        );
    }
    cluster
        .fake
        .wait_report("uid-nsp", "Ready", pod_ready)
        .await;
    assert!(
        !mnt.join("ok").exists(),
        "the file is only in the pod's mount namespace"
    );
    agent.stop().await;
    cluster.stop.cancel();
}

/// Whether `program` is on the containers' PATH.
fn installed(program: &str) -> bool {
    twinset_node_agent::env::DEFAULT_PATH
        .split(':')
        .any(|d| Path::new(d).join(program).is_file())
}

/// The guide's `mysql:8`: MariaDB initialises the claim mounted at /var/lib/mysql on
/// first start, answers at POD_IP:3306, and stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_mysql_image_runs_on_the_pod_ip_with_its_data_on_the_claim() {
    for program in ["mariadbd", "mariadb"] {
        assert!(
            installed(program),
            "needs MariaDB: {program} is not on the containers' PATH ({}); install it with \
             apt-get install mariadb-server mariadb-client, or {UNPRIVILEGED_HINT}",
            twinset_node_agent::env::DEFAULT_PATH
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await;
    let agent = Agent::start(&cluster, dir.path(), false);
    wait_until("registration", || {
        cluster.fake.node.lock().unwrap().is_some()
    })
    .await;
    let mut p = pod(
        "mysql-db-0",
        "uid-mysql-0",
        "Always",
        vec![Container {
            name: "mysql".into(),
            image: "mysql:8".into(),
            ..Default::default()
        }],
    );
    p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(30);
    let p = with_claim(
        p,
        "mysql-storage",
        "mysql-storage-mysql-db-0",
        "/var/lib/mysql",
    );
    let t0 = std::time::Instant::now();
    cluster.fake.set_pods(vec![p.clone()]);
    let r = cluster
        .fake
        .wait_report("uid-mysql-0", "Running", |r| phase(r) == "Running")
        .await;
    let running = t0.elapsed();
    let ip = r.status.clone().unwrap().pod_ip;
    // The image's readiness probe (mariadb-admin ping): Ready only once it answers.
    let first_running = cluster
        .fake
        .reports
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.pod_uid == "uid-mysql-0" && phase(r) == "Running")
        .cloned()
        .unwrap();
    assert!(!pod_ready(&first_running), "Ready as soon as it started");
    // When the port first accepts (polled), to see how soon after it Ready comes.
    let addr: std::net::SocketAddr = format!("{ip}:3306").parse().unwrap();
    let listening = std::thread::spawn(move || {
        let end = std::time::Instant::now() + Duration::from_secs(90);
        while std::time::Instant::now() < end {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    });
    cluster
        .fake
        .wait_report("uid-mysql-0", "Ready", pod_ready)
        .await;
    let ready = t0.elapsed();
    let listening = listening.join().unwrap().expect("port 3306 never opened");
    assert!(
        listening <= ready,
        "Ready at {ready:?}, port open at {listening:?}"
    );
    eprintln!(
        "mysql:8 port 3306 open -> Ready reported: {:?}",
        ready - listening
    );
    let select = |ip: &str| {
        std::process::Command::new("mariadb")
            .args([
                "-h",
                ip,
                "-P",
                "3306",
                "-u",
                "root",
                "--connect-timeout=2",
                "-N",
                "-e",
                "select 1",
            ])
            .output()
    };
    // Ready means it answers: the first try succeeds.
    let o = select(&ip).unwrap();
    assert!(
        o.status.success(),
        "Ready but no answer at {ip}:3306: {}; log: {}",
        String::from_utf8_lossy(&o.stderr),
        log_of(dir.path(), "mysql-db-0", "uid-mysql-0", "mysql")
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1");
    eprintln!(
        "mysql:8 first start: assignment -> Running {running:?}, -> Ready {ready:?}, -> SELECT 1 answered {:?}",
        t0.elapsed()
    );
    assert!(
        !events_of(&cluster.fake, "uid-mysql-0")
            .iter()
            .any(|e| e.reason == "Unhealthy"),
        "the image probe's failures while MariaDB starts are not events"
    );
    let claim_dir = dir.path().join("volumes/default/mysql-storage-mysql-db-0");
    assert!(
        claim_dir.join("mysql").is_dir(),
        "data directory initialised on the claim"
    );

    // SIGTERM (exec: it reaches mariadbd itself) stops it cleanly within the grace
    // period: a clean shutdown removes the pid file, a SIGKILL would leave it.
    assert!(claim_dir.join("mariadbd.pid").is_file());
    let mut d = deleting(p);
    d.metadata.as_mut().unwrap().deletion_grace_period_seconds = Some(30);
    let t1 = std::time::Instant::now();
    cluster.fake.set_pods(vec![d]);
    cluster
        .fake
        .wait_report("uid-mysql-0", "terminated", |r| r.terminated)
        .await;
    eprintln!("mysql:8 SIGTERM -> stopped: {:?}", t1.elapsed());
    assert!(
        !claim_dir.join("mariadbd.pid").exists(),
        "mariadbd did not shut down cleanly"
    );
    assert!(select(&ip).map(|o| !o.status.success()).unwrap_or(true));
    agent.stop().await;
    cluster.stop.cancel();
}
