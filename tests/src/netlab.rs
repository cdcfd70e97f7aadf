//! A lab of "machines" on one host, as root: each machine is a network namespace joined
//! by a veth to a LAN bridge that lives in a namespace of its own. The LAN has a /24 of
//! its own and no namespace has a default route, so nothing a test starts can reach
//! anything outside the lab. The control plane runs in machine 0 (listening on its LAN
//! IP; the CLI runs there too) and agents `node1..` in machines `1..`, joined with a
//! token made by `twinset token create`.
//!
//! Namespaces are named `tsl-<pid>-<n>-…` (unique per test process), made with `ip netns`
//! (the tests may run `ip`; the product never does), and processes enter them with
//! `nsenter --net`, which keeps the host's mounts and /sys (the agent needs cgroups).
//! Dropping the lab kills every process of its cluster, lazily unmounts the network
//! namespace pins left under the agents' data dirs (`<data>/netns/*`) and deletes its
//! namespaces. Namespaces of test processes that died without cleaning up are swept
//! when a lab is built.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;

use crate::cluster::{run_command_with, Options};
use crate::output::Output;
use crate::{procs, Cluster};

/// Where `ip netns` keeps its namespace files.
const NETNS_DIR: &str = "/run/netns";
/// The prefix of every namespace a lab makes.
const PREFIX: &str = "tsl-";
/// How long one `ip`/`nsenter` command of the harness may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// How the lab's cluster is started ([`NetLab::start`]).
#[derive(Clone, Debug, Default)]
pub struct LabOptions {
    /// Agents run with `--pod-network bridge --node-ip <their LAN IP>`, the cluster range
    /// is a routable 10.X.0.0/16 of the lab's own cut into /24s, and the control plane
    /// routes the pods' ranges (`--pod-routes`). Otherwise agents use the default
    /// loopback mode and listen on their LAN IP.
    pub bridge: bool,
    /// The control plane serves cluster DNS on `<its LAN IP>:53` and agents point their
    /// pods at it (`--cluster-dns`).
    pub dns: bool,
    /// Extra flags for every agent.
    pub agent_flags: Vec<String>,
}

/// One machine of the lab.
#[derive(Clone, Debug)]
pub struct Machine {
    /// Its network namespace (a name under `/run/netns`).
    pub netns: String,
    /// Its LAN address (on its `eth0`, a /24).
    pub ip: Ipv4Addr,
}

/// A lab of machines. See the module docs.
pub struct NetLab {
    /// `tsl-<pid>-<n>`: the prefix of its namespaces.
    id: String,
    lan: String,
    machines: Vec<Machine>,
    cluster_cidr: String,
    options: LabOptions,
    /// Dropped before the namespaces are deleted (see `Drop`).
    cluster: Option<Cluster>,
}

static LABS: AtomicUsize = AtomicUsize::new(0);

impl NetLab {
    /// Builds `machines` machine namespaces (machine 0 for the control plane) on a LAN
    /// bridge, with addresses and `lo` up, and checks that no namespace has a default
    /// route. Panics (after cleaning up) when not root or when `ip` fails.
    pub fn build(machines: usize) -> NetLab {
        crate::require_root("network namespaces, veths and bridges of the lab");
        for tool in ["ip", "nsenter"] {
            assert!(
                crate::dns::which(tool).is_some(),
                "`{tool}` not found: install iproute2 and util-linux"
            );
        }
        assert!((1..=200).contains(&machines), "{machines} machines");
        static SWEEP: Once = Once::new();
        SWEEP.call_once(NetLab::sweep_leftovers);

        let pid = std::process::id() as usize;
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        // A LAN /24 in 10.248.0.0/14 and a pod range 10.X.0.0/16 per lab, from the pid
        // (nextest runs each test in a process of its own) and a counter within it. Labs
        // never share a namespace, so a collision would be harmless, but it keeps the
        // addresses in logs of parallel tests apart.
        let seed = pid.wrapping_mul(4).wrapping_add(n) % 1024;
        let lan_net = [10u8, 248 + (seed / 256) as u8, (seed % 256) as u8];
        let cluster_cidr = format!("10.{}.0.0/16", 100 + pid.wrapping_add(n) % 100);
        let id = format!("{PREFIX}{pid}-{n}");
        let mut lab = NetLab {
            lan: format!("{id}-lan"),
            id,
            machines: Vec::new(),
            cluster_cidr,
            options: LabOptions::default(),
            cluster: None,
        };
        ip(&["netns", "add", &lab.lan]);
        ipn(&lab.lan, &["link", "set", "lo", "up"]);
        ipn(&lab.lan, &["link", "add", "br0", "type", "bridge"]);
        ipn(&lab.lan, &["link", "set", "br0", "up"]);
        for i in 0..machines {
            let netns = format!("{}-m{i}", lab.id);
            let ip_addr = Ipv4Addr::new(lan_net[0], lan_net[1], lan_net[2], 10 + i as u8);
            ip(&["netns", "add", &netns]);
            lab.machines.push(Machine {
                netns: netns.clone(),
                ip: ip_addr,
            });
            let port = format!("m{i}");
            ipn(
                &lab.lan,
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &netns,
                ],
            );
            ipn(&lab.lan, &["link", "set", &port, "master", "br0", "up"]);
            ipn(&netns, &["link", "set", "lo", "up"]);
            ipn(
                &netns,
                &["addr", "add", &format!("{ip_addr}/24"), "dev", "eth0"],
            );
            ipn(&netns, &["link", "set", "eth0", "up"]);
        }
        for ns in lab.namespaces() {
            let default = ipn(&ns, &["route", "show", "default"]);
            assert!(
                default.trim().is_empty(),
                "namespace {ns} has a default route: {default}"
            );
        }
        lab
    }

    /// Builds a lab of `machines` and starts its cluster ([`NetLab::start`]).
    pub fn start_with(machines: usize, options: LabOptions) -> NetLab {
        let mut lab = NetLab::build(machines);
        lab.start(options);
        lab
    }

    /// Starts the control plane in machine 0 on `<its LAN IP>:0` and an agent `node<i>`
    /// in each machine `i >= 1`, joined with one `twinset token create` token, and waits
    /// until every node is Ready.
    pub fn start(&mut self, options: LabOptions) {
        assert!(self.cluster.is_none(), "the lab's cluster runs already");
        let m0 = self.machines[0].clone();
        let mut cp_flags = Vec::new();
        if options.bridge && options.dns {
            cp_flags.push("--pod-routes".to_string());
        }
        let cluster_options = Options {
            netns: Some(m0.netns.clone()),
            listen: Some(format!("{}:0", m0.ip)),
            dns_listen: options.dns.then(|| SocketAddr::from((m0.ip, 53))),
            pod_range: options.bridge.then(|| (self.cluster_cidr.clone(), 24)),
            control_plane_flags: cp_flags,
            ..Options::default()
        };
        self.options = options;
        let c = self
            .cluster
            .insert(Cluster::control_plane_only_with(&cluster_options));
        // No limit on uses: a restarted agent (same data dir) may present it again.
        let token = c.run_ok(&["token", "create", "--description", "netlab machines"]);
        c.use_join_token(token.trim());
        let nodes: Vec<String> = (1..self.machines.len()).map(node_name).collect();
        for i in 1..self.machines.len() {
            self.spawn_agent(i);
        }
        self.cluster().wait_nodes_ready(&nodes);
    }

    /// Starts the agent of machine `i` (again, after [`NetLab::kill_agent`]), no waiting.
    pub fn spawn_agent(&mut self, i: usize) {
        let m = self.machines[i].clone();
        let mut flags: Vec<String> = Vec::new();
        let listen = if self.options.bridge {
            flags.extend([
                "--pod-network".into(),
                "bridge".into(),
                "--node-ip".into(),
                m.ip.to_string(),
            ]);
            None
        } else {
            Some(format!("{}:0", m.ip))
        };
        flags.extend(self.options.agent_flags.iter().cloned());
        let extra: Vec<&str> = flags.iter().map(String::as_str).collect();
        let c = self
            .cluster
            .as_mut()
            .expect("the lab's cluster is not started");
        c.spawn_agent_in(&node_name(i), &m.netns, listen.as_deref(), &extra);
    }

    /// SIGKILLs the agent of machine `i` (its pods keep running).
    pub fn kill_agent(&mut self, i: usize) {
        self.cluster_mut().kill_agent(&node_name(i));
    }

    /// The lab's cluster (CLI verbs run in machine 0).
    pub fn cluster(&self) -> &Cluster {
        self.cluster
            .as_ref()
            .expect("the lab's cluster is not started")
    }

    /// The lab's cluster, mutably.
    pub fn cluster_mut(&mut self) -> &mut Cluster {
        self.cluster
            .as_mut()
            .expect("the lab's cluster is not started")
    }

    /// The machines, machine 0 first.
    pub fn machines(&self) -> &[Machine] {
        &self.machines
    }

    /// Machine `i`'s network namespace name.
    pub fn netns(&self, i: usize) -> &str {
        &self.machines[i].netns
    }

    /// Machine `i`'s LAN IP.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.machines[i].ip
    }

    /// The cluster's pod range in bridge mode (`--cluster-cidr`).
    pub fn cluster_cidr(&self) -> &str {
        &self.cluster_cidr
    }

    /// The data dir of machine `i`'s agent.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.cluster().node_dir(&node_name(i))
    }

    /// `ip -n <machine i> ARGS`, panicking unless it succeeds; returns its stdout.
    pub fn ip_in(&self, i: usize, args: &[&str]) -> String {
        ipn(&self.machines[i].netns, args)
    }

    /// Deletes the namespaces of labs whose test process no longer runs (`tsl-<pid>-…`
    /// with no process `<pid>`), killing what still runs in them. Done once per test
    /// process when its first lab is built.
    pub fn sweep_leftovers() {
        let Ok(rd) = std::fs::read_dir(NETNS_DIR) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                eprintln!("removing network namespace {name} left by dead test process {pid}");
                delete_netns(&name);
            }
        }
    }

    /// The prefix of the lab's namespace names (`tsl-<pid>-<n>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The namespaces of the lab with [`NetLab::id`] `id` that exist under `/run/netns`.
    pub fn namespaces_left(id: &str) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(NETNS_DIR) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{id}-")))
            .collect()
    }

    /// The names of machine `i`'s network links (`ip -n M -o link show`).
    pub fn links(&self, i: usize) -> Vec<String> {
        self.ip_in(i, &["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_string())
            .collect()
    }

    /// Runs `program ARGS` in machine `i`'s network namespace (nsenter), within a
    /// deadline, and returns its output.
    pub fn run_in(&self, i: usize, program: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={NETNS_DIR}/{}", self.machines[i].netns))
            .arg("--")
            .arg(program)
            .args(args)
            .env(crate::cluster::MARKER_ENV, self.cluster_marker());
        let line = format!("[machine {i}] {program} {}", args.join(" "));
        run_command_with(cmd, &line, None, COMMAND_TIMEOUT)
    }

    /// Runs `f` on a thread of its own inside machine `i`'s network namespace (a client
    /// of the test: connect, bind), and returns its result.
    pub fn in_machine<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&Path::new(NETNS_DIR).join(&self.machines[i].netns), f)
    }

    fn cluster_marker(&self) -> String {
        self.cluster
            .as_ref()
            .map(|c| c.test_id().to_string())
            .unwrap_or_default()
    }

    fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.lan.clone())
            .chain(self.machines.iter().map(|m| m.netns.clone()))
            .collect()
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        if let Some(c) = self.cluster.as_mut() {
            c.shutdown();
            unmount_under(c.dir());
        }
        // Prints the logs when the test failed, and removes the temp dir.
        self.cluster = None;
        for ns in self.namespaces() {
            delete_netns(&ns);
        }
    }
}

/// The node name of machine `i`'s agent.
pub fn node_name(i: usize) -> String {
    format!("node{i}")
}

/// Runs `f` on a new thread that has entered the network namespace at `path` (a pinned
/// namespace file or `/proc/<pid>/ns/net`); the caller's own thread is left as it is.
pub fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> T {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Connects to `addr` (deadline 3 s) and returns what the server sent before closing.
pub fn fetch(addr: SocketAddr) -> Result<String, String> {
    use std::io::Read;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    Ok(out)
}

/// Tries to listen on `ip:port`; the error's kind when it cannot.
pub fn try_bind(ip: Ipv4Addr, port: u16) -> Result<(), std::io::Error> {
    TcpListener::bind((ip, port)).map(drop)
}

/// The inode of a process's network namespace (`/proc/<pid>/ns/net`).
pub fn netns_inode(pid: i32) -> Option<u64> {
    file_inode(Path::new(&format!("/proc/{pid}/ns/net")))
}

/// The inode of a file such as a namespace pin or `/proc/<pid>/ns/net` (two paths name
/// one namespace when their inodes are equal).
pub fn file_inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Mount points (from /proc/self/mountinfo) under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount_path(s: &str) -> PathBuf {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Some(Ok(v)) = s.get(i + 1..i + 4).map(|o| u8::from_str_radix(o, 8)) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(String::from_utf8_lossy(&out).into_owned())
}

/// Lazily unmounts every mount under `dir`, deepest first (network namespace pins).
fn unmount_under(dir: &Path) {
    let mut mounts = mounts_under(dir);
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for m in mounts {
        if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("warning: unmount {}: {e}", m.display());
        }
    }
}

/// Kills every process in network namespace `ns` (they all belong to the lab that made
/// it) and deletes it.
fn delete_netns(ns: &str) {
    let me = std::process::id() as i32;
    for _ in 0..50 {
        let out = run_ip(&["netns", "pids", ns]);
        let pids: Vec<i32> = out
            .stdout
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| *p != me)
            .collect();
        if pids.is_empty() {
            break;
        }
        for p in pids {
            let _ = procs::signal(p, nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run_ip(&["netns", "del", ns]);
    if !out.success() {
        eprintln!("warning: could not delete network namespace {ns}: {out}");
    }
}

fn run_ip(args: &[&str]) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run_command_with(
        cmd,
        &format!("ip {}", args.join(" ")),
        None,
        COMMAND_TIMEOUT,
    )
}

/// `ip ARGS`, panicking unless it succeeds; returns stdout.
fn ip(args: &[&str]) -> String {
    let out = run_ip(args);
    assert!(out.success(), "{out}");
    out.stdout
}

/// `ip -n NS ARGS`.
fn ipn(ns: &str, args: &[&str]) -> String {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    ip(&full)
}
