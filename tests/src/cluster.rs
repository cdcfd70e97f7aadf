//! A throw-away multi-process cluster: one `twinset control-plane` and N
//! `twinset agent` processes on loopback, each in its own process group, with a
//! private temp dir. Dropping it kills every process it started and every pod
//! process its agents started, and reaps them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use twinset_proto::v1::cluster_client::ClusterClient;

use crate::json::{self, PodView};
use crate::output::Output;
use crate::procs::{self, ProcId};
use crate::wait::{timeout, wait_for};
use crate::watch::PodWatch;
use crate::{binary, dns, Table};

/// Environment variable carried by every process a test starts (and inherited by
/// pods unless the agent clears their environment), so stray processes can be found.
pub const MARKER_ENV: &str = "TWINSET_TEST_ID";

/// The guide's DaemonSet manifest, relative to the repository root.
pub const GUIDE_DAEMONSET: &str = "deploy/examples/daemonset.yaml";

/// The guide's StatefulSet manifest (MySQL), relative to the repository root.
pub const GUIDE_STATEFULSET: &str = "deploy/examples/statefulset.yaml";

/// How long one CLI invocation may take before the test fails.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique id for one test cluster (marker value, log prefix).
pub fn unique_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// How a test cluster is started ([`Cluster::start_with`]).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Run the control plane's DNS server (`--dns-listen`) on a loopback address of its
    /// own (see [`dns::pick_listen_addr`]) and, when it is on port 53, point the agents
    /// at it (`--cluster-dns IP`) so that isolated pods resolve through it.
    pub dns: bool,
    /// Extra flags given to every agent started by [`Cluster::start_with`].
    pub agent_flags: Vec<String>,
    /// Extra flags given to the control plane (each time it starts), e.g. `--event-ttl`.
    pub control_plane_flags: Vec<String>,
    /// The network namespace (a name under `/run/netns`) the control plane and every CLI
    /// command of [`Cluster::run`] run in, entered with `nsenter --net` (a lab machine,
    /// see [`crate::netlab`]); None: the test's own.
    pub netns: Option<String>,
    /// The control plane's `--listen` address; None: `127.0.0.1:0`.
    pub listen: Option<String>,
    /// The control plane's `--dns-listen` address, used instead of a loopback one picked
    /// by `dns` (agents get `--cluster-dns IP` when it is on port 53).
    pub dns_listen: Option<SocketAddr>,
    /// The cluster's pod range (`--cluster-cidr`) and each node's share of it
    /// (`--node-cidr-prefix`); None: a loopback range of the cluster's own cut into /27s.
    pub pod_range: Option<(String, u8)>,
}

impl Options {
    /// Options with the cluster DNS server on.
    pub fn with_dns() -> Options {
        Options {
            dns: true,
            ..Options::default()
        }
    }
}

/// The restart back-off every agent gets unless a test's extra flags give one: 200 ms
/// doubling to 5 s (the kubelet's 10 s to 5 min, shortened 50- and 60-fold), reset after a
/// run of 10 s.
/// Each flag with its other names.
pub const AGENT_BACKOFF: [(&[&str], &str); 3] = [
    (&["--restart-backoff-base", "--restart-delay"], "200ms"),
    (&["--restart-backoff-max"], "5s"),
    (&["--restart-backoff-reset"], "10s"),
];

/// Whether `flags` give the flag called any of `names` (`--flag value` or `--flag=value`).
fn gives_flag(flags: &[impl AsRef<str>], names: &[&str]) -> bool {
    flags.iter().map(AsRef::as_ref).any(|f| {
        names
            .iter()
            .any(|n| f == *n || f.strip_prefix(n).is_some_and(|rest| rest.starts_with('=')))
    })
}

/// A long-running process started by the harness.
struct Daemon {
    child: Child,
}

/// A running test cluster. See the module docs.
pub struct Cluster {
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    bin: PathBuf,
    test_id: String,
    addr: String,
    control_plane: Option<Daemon>,
    cp_runs: usize,
    agents: BTreeMap<String, Daemon>,
    log_files: Vec<PathBuf>,
    seen: Mutex<BTreeSet<ProcId>>,
    manifests: AtomicUsize,
    dns: Option<SocketAddr>,
    pod_range: String,
    node_prefix: u8,
    control_plane_flags: Vec<String>,
    netns: Option<String>,
    listen: String,
    /// The join token agents start with, once made.
    token: Option<String>,
}

/// A pod range of the cluster's own: 127.A.B.0/24 cut into /27s (8 nodes of 29 pods).
/// Test clusters run side by side on this machine, and two pods must never share a
/// loopback IP (a client could reach the other cluster's pod); the default range would
/// give every cluster the same addresses. Seeded by the test process's pid (nextest runs
/// each test in a process of its own) plus a counter for clusters within one process.
fn own_pod_range() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let seed = (std::process::id() as usize).wrapping_add(n.wrapping_mul(4099)) & 0x3FFF;
    format!("127.{}.{}.0/24", 64 + (seed >> 8), seed & 0xFF)
}

impl Cluster {
    /// Starts a control plane and agents `node1..=nodeN`, and waits until every node
    /// is Ready. `nodes == 0` gives a control plane alone (a quiet store: nothing
    /// writes in the background, so revisions only move when a test writes).
    pub fn start(nodes: usize) -> Cluster {
        Cluster::start_with(nodes, Options::default())
    }

    /// As [`Cluster::start`], with [`Options`] (cluster DNS, extra agent flags).
    pub fn start_with(nodes: usize, options: Options) -> Cluster {
        let mut c = Cluster::control_plane_only_with(&options);
        let names: Vec<String> = (1..=nodes).map(|i| format!("node{i}")).collect();
        let extra: Vec<&str> = options.agent_flags.iter().map(String::as_str).collect();
        for n in &names {
            c.spawn_agent(n, &extra);
        }
        c.wait_nodes_ready(&names);
        c
    }

    /// Starts only the control plane (agents can be added with [`Cluster::add_agent`]).
    pub fn control_plane_only() -> Cluster {
        Cluster::control_plane_only_with(&Options::default())
    }

    /// Starts only the control plane, with [`Options`].
    pub fn control_plane_only_with(options: &Options) -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix("twinset-e2e-")
            .tempdir()
            .expect("create temp dir");
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("home")).expect("create home");
        std::fs::create_dir_all(dir.join("logs")).expect("create logs dir");
        let mut c = Cluster {
            tmp: Some(tmp),
            dir,
            bin: binary::twinset_bin(),
            test_id: unique_id(),
            addr: String::new(),
            control_plane: None,
            cp_runs: 0,
            agents: BTreeMap::new(),
            log_files: Vec::new(),
            seen: Mutex::new(BTreeSet::new()),
            manifests: AtomicUsize::new(0),
            dns: options
                .dns_listen
                .or_else(|| options.dns.then(dns::pick_listen_addr)),
            pod_range: options
                .pod_range
                .as_ref()
                .map_or_else(own_pod_range, |(r, _)| r.clone()),
            node_prefix: options.pod_range.as_ref().map_or(27, |(_, p)| *p),
            control_plane_flags: options.control_plane_flags.clone(),
            netns: options.netns.clone(),
            listen: options
                .listen
                .clone()
                .unwrap_or_else(|| "127.0.0.1:0".into()),
            token: None,
        };
        c.start_control_plane(None);
        c
    }

    /// The temp dir holding every data dir, log and manifest of this cluster.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The control plane's address as `HOST:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The control plane's address as `https://HOST:PORT` (what TWINSET_SERVER holds).
    pub fn server(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The control plane's admin kubeconfig (what TWINSET_CONFIG holds for the CLI).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("cp").join("admin.kubeconfig")
    }

    /// The server and the admin credentials, for gRPC clients of the test.
    pub fn target(&self) -> crate::Target {
        let path = self.kubeconfig();
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let k = twinset_proto::kubeconfig::Kubeconfig::parse(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        crate::Target {
            server: self.server(),
            credentials: k.credentials,
        }
    }

    /// Node `node`'s credentials from its data dir (`pki/ca.crt`, `node.crt`,
    /// `node.key`), as an intruder on that machine would find them.
    pub fn node_credentials(&self, node: &str) -> twinset_proto::tls::ClientCredentials {
        let pki = self.node_dir(node).join("pki");
        let read = |f: &str| {
            std::fs::read_to_string(pki.join(f)).unwrap_or_else(|e| panic!("{node} {f}: {e}"))
        };
        twinset_proto::tls::ClientCredentials {
            ca_pem: read("ca.crt"),
            identity: Some((read("node.crt"), read("node.key"))),
        }
    }

    /// The join token this cluster's agents start with (made on first use: no expiry,
    /// no limit on uses).
    pub fn join_token(&mut self) -> String {
        if let Some(t) = &self.token {
            return t.clone();
        }
        let token = self.grpc(|mut c| async move {
            c.create_token(twinset_proto::v1::CreateTokenRequest {
                description: "e2e harness".into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("create a join token: {e:?}"))
            .into_inner()
            .token
        });
        self.token = Some(token.clone());
        token
    }

    /// Makes the agents started from now on join with `token` (one made with `twinset
    /// token create`, as LAB.md does) instead of the harness's own.
    pub fn use_join_token(&mut self, token: &str) {
        self.token = Some(token.to_string());
    }

    /// The cluster DNS server's address (`--dns-listen`), when started with one.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns
    }

    /// The data dir of the agent of `node` (`--data-dir`).
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }

    /// Where the agent of `node` keeps the directory of claim `claim` of `namespace`:
    /// `<agent data dir>/volumes/<namespace>/<claim>/`.
    pub fn volume_dir(&self, node: &str, namespace: &str, claim: &str) -> PathBuf {
        self.node_dir(node)
            .join("volumes")
            .join(namespace)
            .join(claim)
    }

    /// The value of [`MARKER_ENV`] for this cluster.
    pub fn test_id(&self) -> &str {
        &self.test_id
    }

    /// The pid of the running control plane.
    pub fn control_plane_pid(&self) -> Option<i32> {
        self.control_plane.as_ref().map(|d| d.child.id() as i32)
    }

    /// The pid of a running agent.
    pub fn agent_pid(&self, node: &str) -> Option<i32> {
        self.agents.get(node).map(|d| d.child.id() as i32)
    }

    /// A command for the twinset binary with the harness environment (private HOME,
    /// test marker, RUST_LOG, no inherited TWINSET_* settings).
    pub fn command(&self) -> Command {
        base_command(&self.bin, &self.dir.join("home"), &self.test_id)
    }

    /// As [`Cluster::command`], run in the network namespace `netns` (a name under
    /// `/run/netns`) when given.
    pub fn command_in(&self, netns: Option<&str>) -> Command {
        base_command_in(&self.bin, &self.dir.join("home"), &self.test_id, netns)
    }

    /// The command the CLI verbs of [`Cluster::run`] use: in the control plane's network
    /// namespace ([`Options::netns`]), with the server and admin kubeconfig set.
    pub fn cli_command(&self) -> Command {
        let mut cmd = self.command_in(self.netns.as_deref());
        cmd.env("TWINSET_SERVER", self.server())
            .env("TWINSET_CONFIG", self.kubeconfig());
        cmd
    }

    fn spawn_daemon(&mut self, name: &str, netns: Option<&str>, args: &[String]) -> Daemon {
        let cmd = self.command_in(netns);
        let (child, logs) = spawn_logged(cmd, &self.dir.join("logs"), name, args);
        self.log_files.extend(logs);
        Daemon { child }
    }

    /// Starts the control plane: on port 0 the first time (reading the bound address
    /// from `<data-dir>/address`), on `addr` when given (a restart keeps its address).
    fn start_control_plane(&mut self, addr: Option<String>) {
        self.cp_runs += 1;
        let data = self.dir.join("cp");
        let addr_file = data.join("address");
        let _ = std::fs::remove_file(&addr_file);
        let listen = addr.clone().unwrap_or_else(|| self.listen.clone());
        let mut args: Vec<String> = [
            "control-plane",
            "--data-dir",
            &data.to_string_lossy(),
            "--listen",
            &listen,
            "--cluster-cidr",
            &self.pod_range,
            "--node-cidr-prefix",
            &self.node_prefix.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(d) = self.dns {
            args.push("--dns-listen".into());
            args.push(d.to_string());
        }
        // A short grace keeps node-loss tests quick; a test may give its own.
        if !gives_flag(&self.control_plane_flags, &["--node-grace"]) {
            args.extend(["--node-grace".to_string(), "2s".to_string()]);
        }
        args.extend(self.control_plane_flags.iter().cloned());
        let name = format!("control-plane.{}", self.cp_runs);
        let netns = self.netns.clone();
        let d = self.spawn_daemon(&name, netns.as_deref(), &args);
        // Owned by the cluster from the start, so a failed start is still cleaned up.
        let cp = self.control_plane.insert(d);
        let found = wait_for("the control plane to listen", timeout(), || {
            if let Ok(Some(status)) = cp.child.try_wait() {
                return Ok(Err(format!("control plane exited early with {status}")));
            }
            if let Some(a) = &addr {
                return Ok(Ok(a.clone()));
            }
            let text = std::fs::read_to_string(&addr_file)
                .map_err(|e| format!("{}: {e}", addr_file.display()))?;
            let a = text.trim().to_string();
            a.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("address file holds {text:?}: {e}"))?;
            Ok(Ok(a))
        });
        match found {
            Ok(a) => self.addr = a,
            // Drop prints every process log while the test panics.
            Err(e) => panic!("{e}"),
        }
        let answered = crate::wait::try_wait_for(timeout(), || {
            self.run(&["get", "ns", "-o", "name"]).result().map(|_| ())
        });
        if let Err(last) = answered {
            let pid = self.control_plane_pid().unwrap_or(0);
            panic!(
                "timed out after {:?} waiting for the control plane (pid {pid}) to answer `get ns`; last seen: {last}\nits threads:\n{}",
                timeout(),
                procs::threads_report(pid)
            );
        }
    }

    /// Starts an agent process for `node` (no waiting). `extra` adds flags such as
    /// `--labels a=b` or `--taints k=v:NoSchedule`.
    pub fn spawn_agent(&mut self, node: &str, extra: &[&str]) {
        let data = self.dir.join(node);
        self.spawn_agent_at(node, &data, extra);
    }

    /// As [`Cluster::spawn_agent`], with the data dir `data` (a re-installed machine).
    pub fn spawn_agent_at(&mut self, node: &str, data: &Path, extra: &[&str]) {
        self.spawn_agent_placed(node, data, None, Some("127.0.0.1:0"), None, extra);
    }

    /// As [`Cluster::spawn_agent`], reaching the control plane at `server` (a proxy the
    /// test controls) instead of its own address.
    pub fn spawn_agent_via(&mut self, node: &str, server: &str, extra: &[&str]) {
        let data = self.dir.join(node);
        self.spawn_agent_placed(node, &data, None, Some("127.0.0.1:0"), Some(server), extra);
    }

    /// Starts an agent process for `node` (no waiting) in the network namespace `netns`
    /// (a name under `/run/netns`: a lab machine), with `--listen listen` when given
    /// (else the agent picks its daemon endpoint's address itself).
    pub fn spawn_agent_in(
        &mut self,
        node: &str,
        netns: &str,
        listen: Option<&str>,
        extra: &[&str],
    ) {
        let data = self.dir.join(node);
        self.spawn_agent_placed(node, &data, Some(netns), listen, None, extra);
    }

    fn spawn_agent_placed(
        &mut self,
        node: &str,
        data: &Path,
        netns: Option<&str>,
        listen: Option<&str>,
        server: Option<&str>,
        extra: &[&str],
    ) {
        let token = self.join_token();
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--server".into(),
            server.map_or_else(|| self.server(), str::to_string),
            "--token".into(),
            token,
            "--node-name".into(),
            node.into(),
            "--data-dir".into(),
            data.to_string_lossy().into_owned(),
            "--heartbeat".into(),
            "200ms".into(),
        ];
        // A short restart back-off keeps crash-loop tests quick; a test may give its own.
        for (names, value) in AGENT_BACKOFF {
            if !gives_flag(extra, names) {
                args.extend([names[0].to_string(), value.to_string()]);
            }
        }
        if let Some(l) = listen {
            args.push("--listen".into());
            args.push(l.into());
        }
        if let Some(d) = self.dns.filter(|d| d.port() == 53) {
            args.push("--cluster-dns".into());
            args.push(d.ip().to_string());
        }
        let table = binary::repo_root().join("deploy").join("images.yaml");
        if table.is_file() {
            args.push("--image-table".into());
            args.push(table.to_string_lossy().into_owned());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let d = self.spawn_daemon(&format!("agent-{node}"), netns, &args);
        self.agents.insert(node.to_string(), d);
    }

    /// Starts an agent for `node` and waits until its node is Ready.
    pub fn add_agent(&mut self, node: &str, extra: &[&str]) {
        self.spawn_agent(node, extra);
        self.wait_nodes_ready(&[node.to_string()]);
    }

    /// SIGKILLs the control plane's process group and reaps it.
    pub fn kill_control_plane(&mut self) {
        if let Some(mut d) = self.control_plane.take() {
            procs::kill_group(d.child.id() as i32);
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }

    /// Starts the control plane again on the same data dir and address.
    pub fn restart_control_plane(&mut self) {
        assert!(
            self.control_plane.is_none(),
            "the control plane is still running"
        );
        let addr = self.addr.clone();
        self.start_control_plane(Some(addr));
    }

    /// SIGKILLs one agent's process group and reaps it (its pods keep running).
    pub fn kill_agent(&mut self, node: &str) {
        if let Some(mut d) = self.agents.remove(node) {
            let pid = d.child.id() as i32;
            self.remember(procs::descendants(&[pid]).iter().map(|s| s.id()));
            procs::kill_group(pid);
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }

    fn remember(&self, ids: impl IntoIterator<Item = ProcId>) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.extend(ids);
        }
    }

    // ------------------------------------------------------------------ the CLI

    /// Runs `twinset ARGS` against this cluster (TWINSET_SERVER set) and collects its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    /// Runs `twinset ARGS` with `stdin` fed to it.
    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.cli_command();
        cmd.args(args);
        run_command(cmd, args, stdin)
    }

    /// Runs `twinset ARGS`, panicking with its output unless it succeeds; returns stdout.
    #[track_caller]
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        if !out.success() {
            panic!("command failed: {out}");
        }
        out.stdout
    }

    /// Writes `content` to a new file in the cluster's temp dir and returns its path.
    pub fn write_manifest(&self, content: &str) -> PathBuf {
        let n = self.manifests.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join("manifests");
        std::fs::create_dir_all(&dir).expect("create manifests dir");
        let p = dir.join(format!("m{n}.yaml"));
        std::fs::write(&p, content).expect("write manifest");
        p
    }

    /// `twinset apply -f <file with content>`.
    pub fn apply(&self, content: &str) -> Output {
        let p = self.write_manifest(content);
        self.run(&["apply", "-f", &p.to_string_lossy()])
    }

    /// `twinset apply -f <path>` on a file of the repository (e.g. `deploy/examples/daemonset.yaml`).
    pub fn apply_repo_file(&self, rel: &str) -> Output {
        let p = binary::repo_root().join(rel);
        self.run(&["apply", "-f", &p.to_string_lossy()])
    }

    /// Runs `get ARGS -o json` and parses the answer; `Err` on failure (for probes).
    pub fn get_json(&self, args: &[&str]) -> Result<Value, String> {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-o", "json"]);
        let mut full = vec!["get"];
        full.extend(a);
        let out = self.run(&full);
        let stdout = out.result()?;
        serde_json::from_str(stdout)
            .map_err(|e| format!("`get {args:?} -o json` printed invalid JSON ({e}): {stdout}"))
    }

    /// The port of the daemon endpoint node `node` reported
    /// (`status.daemonEndpoints.kubeletEndpoint.port`); panics when it reports none.
    pub fn daemon_port(&self, node: &str) -> u16 {
        let n = self
            .get_json(&["node", node])
            .unwrap_or_else(|e| panic!("get node {node}: {e}"));
        let port = n["status"]["daemonEndpoints"]["kubeletEndpoint"]["port"]
            .as_u64()
            .unwrap_or_else(|| panic!("node {node} reports no daemon endpoint port: {n}"));
        u16::try_from(port).unwrap_or_else(|_| panic!("node {node} reports port {port}"))
    }

    /// Every pod in `ns`, from `get pods -n NS -o json`.
    pub fn pods(&self, ns: &str) -> Result<Vec<PodView>, String> {
        let v = self.get_json(&["pods", "-n", ns])?;
        Ok(json::items(&v).iter().map(PodView::from_json).collect())
    }

    /// Pods in `ns` whose name starts with `prefix`.
    pub fn pods_named(&self, ns: &str, prefix: &str) -> Result<Vec<PodView>, String> {
        Ok(self
            .pods(ns)?
            .into_iter()
            .filter(|p| p.name.starts_with(prefix))
            .collect())
    }

    /// Waits until exactly `count` pods named `prefix*` in `ns` exist and all are
    /// Running and Ready; returns them sorted by node name.
    pub fn wait_running(&self, ns: &str, prefix: &str, count: usize) -> Vec<PodView> {
        let what = format!("{count} Running+Ready pods {prefix}* in {ns}");
        wait_for(&what, timeout(), || {
            let mut pods = self.pods_named(ns, prefix)?;
            if pods.len() == count && pods.iter().all(PodView::is_running_ready) {
                pods.sort_by(|a, b| a.node.cmp(&b.node));
                Ok(pods)
            } else {
                Err(json::summary(&pods))
            }
        })
    }

    /// Applies the guide's DaemonSet (`deploy/examples/daemonset.yaml`), checks the
    /// kubectl message, and waits until `nodes` node-monitor pods are Running+Ready.
    pub fn run_guide_daemonset(&self, nodes: usize) -> Vec<PodView> {
        let out = self.apply_repo_file(GUIDE_DAEMONSET);
        assert_eq!(
            out.ok().trim(),
            "daemonset.apps/node-monitor created",
            "{out}"
        );
        self.wait_running("kube-system", "node-monitor-", nodes)
    }

    /// Waits until the StatefulSet `ns/name` reports `ready` ready replicas of `ready`
    /// desired and its pods `name-*` are exactly that many, all Running+Ready; returns
    /// them sorted by name.
    pub fn wait_sts_ready(&self, ns: &str, name: &str, ready: usize) -> Vec<PodView> {
        let what = format!("StatefulSet {ns}/{name} to have {ready} ready replicas");
        wait_for(&what, timeout(), || {
            let sts = self.get_json(&["sts", name, "-n", ns])?;
            let desired = json::int_at(&sts, "/spec/replicas").unwrap_or(1);
            let have = json::int_at(&sts, "/status/readyReplicas").unwrap_or(0);
            let mut pods = self.pods_named(ns, &format!("{name}-"))?;
            pods.sort_by(|a, b| a.name.cmp(&b.name));
            if desired == ready as i64
                && have == ready as i64
                && pods.len() == ready
                && pods.iter().all(PodView::is_running_ready)
            {
                Ok(pods)
            } else {
                Err(format!(
                    "spec.replicas={desired} status.readyReplicas={have}; pods: {}",
                    json::summary(&pods)
                ))
            }
        })
    }

    /// Every Event object in `ns`, from `get events -n NS -o json`.
    pub fn events(&self, ns: &str) -> Result<Vec<Value>, String> {
        Ok(json::items(&self.get_json(&["events", "-n", ns])?))
    }

    /// Every node object, from `get nodes -o json`.
    pub fn nodes(&self) -> Result<Vec<Value>, String> {
        Ok(json::items(&self.get_json(&["nodes"])?))
    }

    /// Waits until each named node exists with condition Ready=True.
    pub fn wait_nodes_ready(&self, names: &[String]) {
        let what = format!("nodes {names:?} to be Ready");
        // An agent that exited cannot come back: fail at once instead of at the deadline.
        let outcome = wait_for(&what, timeout(), || {
            for (name, d) in &self.agents {
                if names.contains(name)
                    && !procs::ProcId::of(d.child.id() as i32).is_some_and(|p| p.is_alive())
                {
                    return Ok(Err(format!(
                        "agent {name} exited while waiting for {what}; see its log"
                    )));
                }
            }
            let nodes = self.nodes()?;
            let ready: BTreeSet<&str> = nodes
                .iter()
                .filter(|n| {
                    n.pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|c| {
                            json::str_at(c, "/type") == "Ready"
                                && json::str_at(c, "/status") == "True"
                        })
                })
                .map(|n| json::str_at(n, "/metadata/name"))
                .collect();
            if names.iter().all(|n| ready.contains(n.as_str())) {
                Ok(Ok(()))
            } else {
                Err(format!("ready: {ready:?}"))
            }
        });
        if let Err(e) = outcome {
            panic!("{e}");
        }
    }

    /// Parses a `get` table.
    pub fn table(&self, args: &[&str]) -> Table {
        Table::parse(&self.run_ok(args))
    }

    // ---------------------------------------------------------------- processes

    /// True when `pid` belongs to this cluster: it descends from one of its agents or
    /// the control plane, carries the test marker, or uses files of the temp dir.
    fn belongs(&self, pid: i32) -> bool {
        let roots: BTreeSet<i32> = self.root_pids().into_iter().collect();
        let mut p = pid;
        for _ in 0..64 {
            if roots.contains(&p) {
                return true;
            }
            match procs::stat(p) {
                Some(s) if s.ppid > 1 => p = s.ppid,
                _ => break,
            }
        }
        procs::environ(pid)
            .get(MARKER_ENV)
            .is_some_and(|v| v == &self.test_id)
            || procs::references_dir(pid, &self.dir)
    }

    fn root_pids(&self) -> Vec<i32> {
        self.control_plane
            .iter()
            .chain(self.agents.values())
            .map(|d| d.child.id() as i32)
            .collect()
    }

    /// The main process of a pod's (first) container: the top-most live process of this
    /// cluster whose environment has POD_NAME and POD_NAMESPACE of the pod.
    pub fn pod_process(&self, namespace: &str, pod: &str) -> Result<ProcId, String> {
        let candidates: Vec<procs::Stat> = procs::all()
            .into_iter()
            .filter(|s| s.state != 'Z' && s.pid != std::process::id() as i32)
            .filter(|s| {
                let env = procs::environ(s.pid);
                env.get("POD_NAME").is_some_and(|v| v == pod)
                    && env.get("POD_NAMESPACE").is_some_and(|v| v == namespace)
            })
            .filter(|s| self.belongs(s.pid))
            .collect();
        let pids: BTreeSet<i32> = candidates.iter().map(|s| s.pid).collect();
        let top: Vec<&procs::Stat> = candidates
            .iter()
            .filter(|s| !pids.contains(&s.ppid))
            .collect();
        self.remember(candidates.iter().map(procs::Stat::id));
        match top.as_slice() {
            [one] => Ok(one.id()),
            [] => Err(format!(
                "no process with POD_NAME={pod} POD_NAMESPACE={namespace}"
            )),
            many => Err(format!(
                "{} top-level processes for pod {namespace}/{pod}: {:?}",
                many.len(),
                many.iter().map(|s| s.pid).collect::<Vec<_>>()
            )),
        }
    }

    /// Waits until a pod's process can be found, and returns it.
    pub fn wait_pod_process(&self, namespace: &str, pod: &str) -> ProcId {
        wait_for(
            &format!("the process of pod {namespace}/{pod}"),
            timeout(),
            || self.pod_process(namespace, pod),
        )
    }

    /// The environment of a process (for POD_IP, NODE_NAME, ... checks).
    pub fn environ(&self, p: ProcId) -> BTreeMap<String, String> {
        procs::environ(p.pid)
    }

    // ---------------------------------------------------------------- gRPC

    /// Runs an async block with a gRPC client connected to the control plane, on a
    /// fresh current-thread runtime.
    pub fn grpc<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce(ClusterClient<tonic::transport::Channel>) -> Fut,
        Fut: Future<Output = T>,
    {
        if let Some(ns) = &self.netns {
            panic!(
                "gRPC from the test process cannot reach a control plane in network namespace \
                 {ns}: use the CLI (Cluster::run), which runs there"
            );
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let target = self.target();
        rt.block_on(async move {
            let client = target.cluster().await.unwrap_or_else(|e| panic!("{e}"));
            f(client).await
        })
    }

    /// Starts a [`PodWatch`] following every pod event of this cluster from now on.
    pub fn watch_pods(&self) -> PodWatch {
        PodWatch::start(&self.target())
    }

    /// As [`Cluster::watch_pods`], resuming across control-plane restarts
    /// ([`PodWatch::start_resuming`]).
    pub fn watch_pods_resuming(&self) -> PodWatch {
        PodWatch::start_resuming(&self.target())
    }

    /// The store's current revision, read through `List` (its `resource_version`).
    pub fn store_revision(&self) -> u64 {
        self.grpc(|mut c| async move {
            let resp = c
                .list(twinset_proto::v1::ListRequest {
                    kind: "Namespace".into(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("List namespaces: {e}"))
                .into_inner();
            resp.resource_version.parse::<u64>().unwrap_or_else(|e| {
                panic!("List resource_version {:?}: {e}", resp.resource_version)
            })
        })
    }

    // ---------------------------------------------------------------- teardown

    /// The tail of every process log and pod log of this cluster, for failure output.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in &self.log_files {
            s.push_str(&tail_file(f, 150));
        }
        for f in find_files(&self.dir, |p| p.extension().is_some_and(|e| e == "log"), 4) {
            s.push_str(&tail_file(&f, 30));
        }
        s
    }

    /// Kills every process of the cluster and reaps what it can. Idempotent.
    pub fn shutdown(&mut self) {
        let mut roots: Vec<Daemon> = self.control_plane.take().into_iter().collect();
        roots.extend(std::mem::take(&mut self.agents).into_values());
        let root_pids: Vec<i32> = roots.iter().map(|d| d.child.id() as i32).collect();
        let seen: Vec<ProcId> = self
            .seen
            .lock()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        kill_all(&self.dir, &self.test_id, &root_pids, &seen);
        for mut d in roots {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            eprintln!(
                "===== twinset e2e cluster {} ({}) logs =====\n{}",
                self.test_id,
                self.dir.display(),
                self.logs()
            );
        }
        self.shutdown();
        if failed && std::env::var_os("TWINSET_E2E_KEEP").is_some() {
            if let Some(t) = self.tmp.take() {
                eprintln!("kept {}", t.keep().display());
            }
        }
    }
}

/// A `twinset` command with the harness environment.
/// Starts `cmd ARGS` in its own process group with its output in
/// `<logs>/<name>.stdout|stderr`; returns the child and the two log paths.
pub fn spawn_logged<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
    mut cmd: Command,
    logs: &Path,
    name: &str,
    args: &[S],
) -> (Child, [PathBuf; 2]) {
    let out = logs.join(format!("{name}.stdout"));
    let err = logs.join(format!("{name}.stderr"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("create log"))
        .stderr(File::create(&err).expect("create log"))
        .process_group(0);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?} {args:?}: {e}", cmd.get_program()));
    (child, [out, err])
}

pub fn base_command(bin: &Path, home: &Path, test_id: &str) -> Command {
    base_command_in(bin, home, test_id, None)
}

/// As [`base_command`], entering the network namespace `netns` (a name under
/// `/run/netns`) first with `nsenter --net`, which then runs the binary in place (same
/// pid, same mounts and /sys, so cgroups work as on the host).
pub fn base_command_in(bin: &Path, home: &Path, test_id: &str, netns: Option<&str>) -> Command {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg("--").arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.env("HOME", home)
        .env(MARKER_ENV, test_id)
        // Plain log files: failure output shows them as text, without colour codes.
        .env("NO_COLOR", "1")
        .env_remove("TWINSET_SERVER")
        .env_remove("TWINSET_CONFIG");
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    cmd
}

/// Runs a prepared twinset command to completion (deadline: one minute), feeding `stdin`.
pub fn run_command(cmd: Command, args: &[&str], stdin: Option<&str>) -> Output {
    run_command_with(
        cmd,
        &format!("twinset {}", args.join(" ")),
        stdin,
        CLI_TIMEOUT,
    )
}

/// Runs a prepared command to completion within `limit`, feeding `stdin`; `line`
/// names it in messages.
pub fn run_command_with(
    mut cmd: Command,
    line: &str,
    stdin: Option<&str>,
    limit: Duration,
) -> Output {
    let line = line.to_string();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{line}`: {e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let read = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = read(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    );
    let err_t = read(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{line}` did not finish within {limit:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("wait for `{line}`: {e}"),
        }
    };
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Output {
        cmd: line,
        status,
        stdout,
        stderr,
    }
}

/// Kills every process that belongs to a test: the roots and their descendants,
/// processes seen earlier, and any process carrying the marker or using files under
/// `dir`. Repeats until none is left (a dying supervisor may still fork), then removes
/// the pod cgroups those processes were in.
pub fn kill_all(dir: &Path, test_id: &str, roots: &[i32], seen: &[ProcId]) {
    let me = std::process::id() as i32;
    let my_group = nix::unistd::getpgrp().as_raw();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut cgroup_dirs: BTreeSet<PathBuf> = BTreeSet::new();
    loop {
        let mut victims: BTreeMap<i32, procs::Stat> = BTreeMap::new();
        for pid in roots {
            if let Some(s) = procs::stat(*pid) {
                victims.insert(*pid, s);
            }
        }
        for s in procs::descendants(roots) {
            victims.insert(s.pid, s);
        }
        for id in seen {
            if id.is_alive() {
                if let Some(s) = procs::stat(id.pid) {
                    victims.insert(id.pid, s);
                }
            }
        }
        for s in procs::all() {
            if s.pid == me || s.state == 'Z' || victims.contains_key(&s.pid) {
                continue;
            }
            if procs::environ(s.pid)
                .get(MARKER_ENV)
                .is_some_and(|v| v == test_id)
                || procs::references_dir(s.pid, dir)
            {
                victims.insert(s.pid, s);
            }
        }
        victims.retain(|pid, s| *pid != me && s.state != 'Z');
        if victims.is_empty() {
            break;
        }
        for s in victims.values() {
            cgroup_dirs.extend(procs::own_cgroup_dirs(s.pid));
        }
        if std::env::var_os("TWINSET_E2E_DEBUG").is_some() {
            eprintln!(
                "debug: kill_all({test_id}) victims {:?} cgroups {cgroup_dirs:?}",
                victims.keys()
            );
        }
        for s in victims.values() {
            if s.pgid == s.pid && s.pgid != my_group {
                procs::kill_group(s.pgid);
            }
            let _ = procs::signal(s.pid, nix::sys::signal::Signal::SIGKILL);
        }
        if Instant::now() > deadline {
            eprintln!(
                "warning: processes of test {test_id} still alive after 10s: {:?}",
                victims.keys()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Deepest first; rmdir only succeeds on empty cgroups, so nothing in use is touched.
    // A killed process keeps its cgroup busy until it is reaped by init: retry briefly.
    let mut dirs: Vec<PathBuf> = cgroup_dirs.into_iter().collect();
    dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dirs.is_empty() {
        dirs.retain(|d| match std::fs::remove_dir(d) {
            Ok(()) => false,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        });
        if dirs.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if std::env::var_os("TWINSET_E2E_DEBUG").is_some() {
        eprintln!("debug: kill_all({test_id}) left cgroups {dirs:?}");
    }
    if !dirs.is_empty() {
        eprintln!("warning: could not remove pod cgroups of test {test_id}: {dirs:?}");
    }
}

fn tail_file(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    format!(
        "----- {} (last {} of {} lines) -----\n{}\n",
        path.display(),
        all.len() - start,
        all.len(),
        all[start..].join("\n")
    )
}

/// Files under `dir` (to `depth` levels) matching `pred`.
pub fn find_files(dir: &Path, pred: impl Fn(&Path) -> bool + Copy, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() && depth > 0 {
            out.extend(find_files(&p, pred, depth - 1));
        } else if ft.is_file() && pred(&p) {
            out.push(p);
        }
    }
    out
}
