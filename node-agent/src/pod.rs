//! The pod worker: one task per pod that owns its containers' processes. It starts
//! (or adopts) them, restarts them by the restart policy, reports every status change
//! at once, and on deletion stops them (SIGTERM to each process group, SIGKILL after
//! the grace period), removes the pod's cgroups, IP and state, then reports the pod
//! terminated. Before each container starts it prepares the container's volumes and,
//! when the runtime can isolate pods, its sandbox (bind mounts, the pod's own
//! `/etc/hosts` and `/etc/resolv.conf`, and its hostname). While a container runs,
//! the worker runs its probes ([`crate::probes`] decides, [`crate::prober`] does the
//! I/O): readiness gates the container's `ready` (reported at once when it changes),
//! and a failed liveness or startup probe kills the container (SIGTERM, SIGKILL after
//! the grace period) so that it restarts by the restart policy.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use nix::sys::signal::Signal;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use twinset_proto::v1::{self, Pod};

use crate::container::{reason, ContainerRun};
use crate::env::{self, Placement};
use crate::events::{self, pod_event, Severity};
use crate::identity;
use crate::images::ImageTable;
use crate::ipam::Ipam;
use crate::logs::{self, PodLogs, Registry};
use crate::prober::{self, ExecTarget};
use crate::probes::{self, ContainerProbes, Effect, Kind, Outcome, ProbeSet};
use crate::reporter::{Report, ReporterHandle};
use crate::runtime::{BindMount, Exit, Launch, Limits, Runtime, Sandbox, Started};
use crate::state::{ContainerRecord, PodRecord, StateDir};
use crate::status::{self, StatusInput};
use crate::volumes::{self, ClaimUse, Claims, PlannedMount};

/// Default terminationGracePeriodSeconds.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Longest grace given to a pod when the agent itself stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for processes to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// What every pod worker shares.
pub struct Shared {
    /// This node's name.
    pub node_name: String,
    /// This node's address (hostIP).
    pub host_ip: String,
    /// The agent's data directory.
    pub data_dir: PathBuf,
    /// The container runtime.
    pub runtime: Arc<dyn Runtime>,
    /// The image table.
    pub images: ImageTable,
    /// Pod IP allocation.
    pub ipam: Mutex<Ipam>,
    /// Persisted pod state.
    pub state: StateDir,
    /// Status reports go here.
    pub reporter: ReporterHandle,
    /// Pods whose logs can be read.
    pub logs: Registry,
    /// Base delay before restarting a dead container.
    pub restart_delay: Duration,
    /// The agent is stopping.
    pub shutdown: CancellationToken,
    /// Whether pods are stopped when the agent stops (else they keep running and a
    /// restarted agent adopts them).
    pub stop_pods_on_shutdown: bool,
    /// The claims' folders on this node.
    pub claims: Arc<Claims>,
    /// The cluster DNS server pods resolve through (their `/etc/resolv.conf`).
    pub cluster_dns: Option<IpAddr>,
}

/// What the agent should do with a pod, as the latest assignment says.
#[derive(Clone, Debug)]
pub enum Desired {
    /// Run it (a deletionTimestamp means: stop it gracefully, then report it terminated).
    Run(Box<Pod>),
    /// It is no longer assigned here: stop it.
    Gone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finish {
    Deleted,
    Gone,
    Shutdown,
}

/// Whether the pod has a deletion timestamp.
pub fn is_deleting(pod: &Pod) -> bool {
    pod.metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty())
}

type ExitFuture = BoxFuture<'static, (usize, u64, Exit)>;
type ProbeFuture = BoxFuture<'static, (usize, u64, Kind, Outcome)>;

/// The probes of one container run.
struct Probing {
    /// The run (container generation) they belong to.
    generation: u64,
    /// The container spec (named ports).
    spec: v1::Container,
    set: ProbeSet,
    state: ContainerProbes,
    target: ExecTarget,
}

/// One pod's worker.
pub struct PodWorker {
    ctx: Arc<Shared>,
    pod: Pod,
    uid: String,
    namespace: String,
    name: String,
    dir: PathBuf,
    pod_ip: String,
    containers: Vec<ContainerRun>,
    exits: FuturesUnordered<ExitFuture>,
    /// Per container: the probes of its current run (None: not running, or no probes).
    probing: Vec<Option<Probing>>,
    /// Probe attempts in flight.
    probe_runs: FuturesUnordered<ProbeFuture>,
    /// Per container: a SIGKILL due (generation, when) after a failed probe's SIGTERM.
    kill_at: Vec<Option<(u64, Instant)>>,
    conditions: Vec<v1::PodCondition>,
    start_time: String,
    events: Vec<v1::Event>,
    last_sent: Option<v1::PodStatus>,
    limits_warned: bool,
    /// Containers already told that their mounts are not isolated.
    isolation_warned: BTreeSet<String>,
    /// The hostname its containers see.
    hostname: String,
    /// Its hold on its claims' folders, released once its processes are gone.
    claims: Option<ClaimUse>,
    record: PodRecord,
    desired: watch::Receiver<Desired>,
}

/// Runs a pod until it is deleted, unassigned, or the agent stops. `adopt` is the
/// state an earlier agent recorded for it; `claims` its hold on its claims' folders.
pub async fn run(
    ctx: Arc<Shared>,
    pod: Pod,
    adopt: Option<PodRecord>,
    desired: watch::Receiver<Desired>,
    claims: ClaimUse,
) {
    let meta = pod.metadata.clone().unwrap_or_default();
    let span = tracing::info_span!(
        "pod",
        kind = "Pod",
        namespace = %meta.namespace,
        name = %meta.name,
        uid = %meta.uid,
        node = %ctx.node_name
    );
    let mut worker = PodWorker::new(ctx, pod, desired);
    worker.claims = Some(claims);
    worker.main(adopt).instrument(span).await;
}

impl PodWorker {
    fn new(ctx: Arc<Shared>, pod: Pod, desired: watch::Receiver<Desired>) -> Self {
        let meta = pod.metadata.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let dir = logs::pod_dir(&ctx.data_dir, &meta.namespace, &meta.name, &meta.uid);
        let containers: Vec<ContainerRun> = spec
            .containers
            .iter()
            .map(|c| ContainerRun::new(&c.name, &c.image))
            .collect();
        let n = containers.len();
        let start_time = if status.start_time.is_empty() {
            twinset_proto::time::now()
        } else {
            status.start_time
        };
        PodWorker {
            record: PodRecord {
                uid: meta.uid.clone(),
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                containers: Default::default(),
            },
            ctx,
            uid: meta.uid,
            namespace: meta.namespace,
            name: meta.name,
            dir,
            pod_ip: String::new(),
            containers,
            exits: FuturesUnordered::new(),
            probing: (0..n).map(|_| None).collect(),
            probe_runs: FuturesUnordered::new(),
            kill_at: vec![None; n],
            conditions: status.conditions,
            start_time,
            events: Vec::new(),
            last_sent: None,
            limits_warned: false,
            isolation_warned: BTreeSet::new(),
            hostname: String::new(),
            claims: None,
            desired,
            pod,
        }
    }

    fn spec(&self) -> v1::PodSpec {
        self.pod.spec.clone().unwrap_or_default()
    }

    fn meta(&self) -> v1::ObjectMeta {
        self.pod.metadata.clone().unwrap_or_default()
    }

    fn event(
        &mut self,
        severity: Severity,
        reason: &str,
        message: String,
        container: Option<&str>,
    ) {
        let e = pod_event(
            &self.meta(),
            &self.ctx.node_name,
            severity,
            reason,
            message,
            container,
        );
        self.events.push(e);
    }

    async fn main(mut self, adopt: Option<PodRecord>) {
        self.setup();
        let deleting = is_deleting(&self.pod);
        self.start_all(adopt.as_ref(), !deleting);
        self.report(false);
        let finish = if deleting {
            Finish::Deleted
        } else {
            self.supervise().await
        };
        self.finish(finish).await;
    }

    fn setup(&mut self) {
        let spec = self.spec();
        self.hostname = if spec.host_network {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| identity::hostname(&self.pod))
        } else {
            identity::hostname(&self.pod)
        };
        if spec.host_network {
            self.pod_ip = self.ctx.host_ip.clone();
        } else {
            let res = match self.ctx.ipam.lock() {
                Ok(mut ipam) => ipam.allocate(&self.uid),
                Err(poisoned) => poisoned.into_inner().allocate(&self.uid),
            };
            match res {
                Ok(ip) => self.pod_ip = ip.to_string(),
                Err(e) => {
                    self.pod_ip = self.ctx.host_ip.clone();
                    tracing::warn!(error = %e, "no pod IP; using the node's address");
                    let msg = format!(
                        "no pod IP ({e}); the pod uses the node's address {}",
                        self.ctx.host_ip
                    );
                    self.event(Severity::Warning, "PodIPUnavailable", msg, None);
                }
            }
        }
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot create the pod's log folder");
        }
        self.ctx.logs.insert(
            &self.namespace,
            &self.name,
            PodLogs {
                uid: self.uid.clone(),
                dir: self.dir.clone(),
                containers: spec.containers.iter().map(|c| c.name.clone()).collect(),
                gone: CancellationToken::new(),
            },
        );
        self.save_record();
    }

    fn save_record(&self) {
        if let Err(e) = self.ctx.state.save(&self.record) {
            tracing::warn!(error = %e, "cannot record pod state");
        }
    }

    fn start_all(&mut self, adopt: Option<&PodRecord>, start_new: bool) {
        if !self.spec().init_containers.is_empty() {
            for i in 0..self.containers.len() {
                self.wait_on(
                    i,
                    "InitContainersNotSupported",
                    "init containers are not supported by this agent yet".into(),
                );
            }
            return;
        }
        for i in 0..self.containers.len() {
            let name = self.containers[i].name.clone();
            if let Some(rec) = adopt.and_then(|r| r.containers.get(&name)) {
                if let Some(started) =
                    self.ctx
                        .runtime
                        .adopt(&self.uid, &name, rec.pid, rec.start_ticks)
                {
                    tracing::info!(container = %name, pid = rec.pid, "adopted running container");
                    if let Err(e) = self.ctx.logs.resume_output(&self.dir, &name) {
                        tracing::warn!(container = %name, error = %e, "cannot drain the adopted container's log");
                    }
                    let gen = self.containers[i].on_adopted(
                        rec.pid,
                        rec.start_ticks,
                        rec.started_at.clone(),
                        rec.restart_count,
                        Instant::now(),
                    );
                    self.watch_exit(i, gen, started);
                    self.record.containers.insert(name, rec.clone());
                    // Its environment as it was started (the probes' exec env).
                    let env = crate::runtime::procfs::environ(rec.pid).unwrap_or_else(|| {
                        vec![("PATH".to_string(), env::DEFAULT_PATH.to_string())]
                    });
                    self.begin_probing(i, gen, rec.pid, env, true);
                    continue;
                }
            }
            if start_new {
                self.start_container(i);
            }
        }
        self.save_record();
    }

    fn watch_exit(&mut self, i: usize, gen: u64, started: Started) {
        let rx = started.exit;
        self.exits.push(Box::pin(
            async move { (i, gen, rx.await.unwrap_or_default()) },
        ));
    }

    fn wait_on(&mut self, i: usize, reason: &str, message: String) {
        let name = self.containers[i].name.clone();
        if self.containers[i].set_waiting(reason, &message) {
            tracing::warn!(container = %name, reason, "{message}");
            self.event(Severity::Warning, reason, message, Some(&name));
        }
    }

    fn pod_limits(&self) -> Limits {
        let all: Vec<Limits> = self
            .spec()
            .containers
            .iter()
            .map(|c| Limits::from_resources(c.resources.as_ref()).unwrap_or_default())
            .collect();
        Limits::pod_total(&all)
    }

    fn start_container(&mut self, i: usize) {
        let Some(spec) = self.spec().containers.get(i).cloned() else {
            return;
        };
        let resolved = match self.ctx.images.resolve(&spec) {
            Ok(r) => r,
            Err(nr) => return self.wait_on(i, &nr.reason, nr.message),
        };
        let at = Placement {
            node_name: &self.ctx.node_name,
            pod_ip: &self.pod_ip,
            host_ip: &self.ctx.host_ip,
            hostname: &self.hostname,
        };
        let mut env = match env::container_env(&self.pod, &spec, &resolved.image_env, &at) {
            Ok(e) => e,
            Err(m) => return self.wait_on(i, reason::CREATE_CONFIG_ERROR, m),
        };
        let mounts = match volumes::mounts_for(&self.pod, &spec, &self.ctx.data_dir, &self.dir)
            .and_then(|m| volumes::prepare(&m).map(|()| m))
        {
            Ok(m) => m,
            Err(e) => return self.fail_mount(i, e.to_string()),
        };
        let sandbox = match self.sandbox(&mounts) {
            Ok(s) => s,
            Err(e) => return self.fail_mount(i, e),
        };
        if sandbox.is_none() {
            self.warn_not_isolated(&spec.name, &mounts);
        }
        // The container's own env wins over the volume variables.
        for (k, v) in volumes::mount_env(&mounts, sandbox.is_some()) {
            if env.get(&k).is_none() {
                env.set(&k, v);
            }
        }
        // A temporary directory of the pod's own (a container has its own /tmp; pods on
        // one machine must not meet in the host's), removed with the pod.
        if env.get("TMPDIR").is_none() {
            let tmp = self.dir.join("tmp");
            if let Err(e) = std::fs::create_dir_all(&tmp) {
                return self.wait_on(
                    i,
                    reason::CREATE_CONFIG_ERROR,
                    format!("cannot create {}: {e}", tmp.display()),
                );
            }
            env.set("TMPDIR", tmp.display().to_string());
        }
        let limits = match Limits::from_resources(spec.resources.as_ref()) {
            Ok(l) => l,
            Err(e) => return self.wait_on(i, reason::CREATE_CONFIG_ERROR, e.to_string()),
        };
        let argv: Vec<String> = resolved.argv.iter().map(|a| env::expand(a, &env)).collect();
        let probe_env = env.clone().into_vec();
        // The new instance's log FIFO, held open until the runtime has started it.
        let output = match self.ctx.logs.open_output(&self.dir, &spec.name) {
            Ok(o) => o,
            Err(e) => {
                return self.wait_on(
                    i,
                    reason::CREATE_CONFIG_ERROR,
                    format!("cannot set up the log of container {}: {e}", spec.name),
                )
            }
        };
        let launch = Launch {
            pod_uid: self.uid.clone(),
            container: spec.name.clone(),
            argv,
            env: env.into_vec(),
            working_dir: if spec.working_dir.is_empty() {
                PathBuf::from("/")
            } else {
                PathBuf::from(&spec.working_dir)
            },
            log_path: output.path().to_path_buf(),
            limits,
            pod_limits: self.pod_limits(),
            sandbox,
        };
        let now = twinset_proto::time::now();
        match self.ctx.runtime.start(&launch) {
            Ok(started) => {
                let c = &mut self.containers[i];
                let gen = c.on_started(
                    started.pid,
                    started.start_ticks,
                    now.clone(),
                    Instant::now(),
                );
                let rec = ContainerRecord {
                    pid: started.pid,
                    start_ticks: started.start_ticks,
                    started_at: now,
                    restart_count: c.restart_count,
                };
                tracing::info!(container = %spec.name, pid = started.pid, "container started");
                if let Some(why) = started.limits_warning.clone() {
                    if !self.limits_warned {
                        self.limits_warned = true;
                        let msg = format!(
                            "resources.limits of container {} are not enforced: {why}",
                            spec.name
                        );
                        tracing::warn!("{msg}");
                        self.event(
                            Severity::Warning,
                            events::RESOURCE_LIMITS_NOT_ENFORCED,
                            msg,
                            Some(&spec.name),
                        );
                    }
                }
                self.event(
                    Severity::Normal,
                    "Started",
                    format!("Started container {}", spec.name),
                    Some(&spec.name),
                );
                let pid = started.pid;
                self.watch_exit(i, gen, started);
                self.record.containers.insert(spec.name.clone(), rec);
                self.save_record();
                self.begin_probing(i, gen, pid, probe_env, false);
            }
            Err(e) => {
                tracing::warn!(container = %spec.name, error = %e, "container failed to start");
                self.containers[i].on_start_failed(e.to_string(), &now);
                self.event(
                    Severity::Warning,
                    "Failed",
                    format!("Error: {e}"),
                    Some(&spec.name),
                );
                self.maybe_schedule_restart(i);
            }
        }
    }

    /// The container's volumes cannot be prepared: it waits (a spec change retries).
    fn fail_mount(&mut self, i: usize, message: String) {
        let name = self.containers[i].name.clone();
        if self.containers[i].set_waiting(reason::CREATE_CONFIG_ERROR, &message) {
            tracing::warn!(container = %name, "{message}");
            self.event(
                Severity::Warning,
                events::FAILED_MOUNT,
                message,
                Some(&name),
            );
        }
    }

    /// The sandbox for a container with `mounts`, when the runtime can isolate pods:
    /// its volumes, the pod's `/etc/hosts` and `/etc/resolv.conf` (unless the
    /// container mounts its own there), and the pod's hostname (not with hostNetwork).
    fn sandbox(&self, mounts: &[PlannedMount]) -> Result<Option<Sandbox>, String> {
        if !self.ctx.runtime.isolation().available() {
            return Ok(None);
        }
        let files =
            identity::write_pod_files(&self.dir, &self.pod, &self.pod_ip, self.ctx.cluster_dns)
                .map_err(|e| {
                    format!(
                        "cannot write the pod's /etc files under {}: {e}",
                        self.dir.display()
                    )
                })?;
        let mut binds: Vec<BindMount> = mounts
            .iter()
            .map(|m| BindMount {
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
            })
            .collect();
        for (file, target) in [
            (files.hosts, "/etc/hosts"),
            (files.resolv_conf, "/etc/resolv.conf"),
        ] {
            let target = Path::new(target);
            if let Some(source) = file.filter(|_| !mounts.iter().any(|m| m.target == target)) {
                binds.push(BindMount {
                    source,
                    target: target.to_path_buf(),
                    read_only: false,
                });
            }
        }
        let host_network = self.spec().host_network;
        Ok(Some(Sandbox {
            hostname: (!host_network).then(|| self.hostname.clone()),
            mounts: binds,
        }))
    }

    /// Says once per container that its mounts are not isolated and where it finds
    /// them instead.
    fn warn_not_isolated(&mut self, container: &str, mounts: &[PlannedMount]) {
        if mounts.is_empty() || !self.isolation_warned.insert(container.to_string()) {
            return;
        }
        let why = self
            .ctx
            .runtime
            .isolation()
            .reason()
            .unwrap_or("isolation unavailable")
            .to_string();
        let places: Vec<String> = mounts
            .iter()
            .map(|m| {
                format!(
                    "{} is at {} (${})",
                    m.target.display(),
                    m.source.display(),
                    volumes::mount_var(&m.target)
                )
            })
            .collect();
        let msg = format!(
            "volume mounts of container {container} are not isolated ({why}): {}; the pod shares the node's hostname and /etc/hosts",
            places.join(", ")
        );
        tracing::warn!("{msg}");
        self.event(
            Severity::Warning,
            events::MOUNT_NOT_ISOLATED,
            msg,
            Some(container),
        );
    }

    fn maybe_schedule_restart(&mut self, i: usize) {
        let policy = self.spec().restart_policy;
        if !self.containers[i].wants_restart(&policy) {
            return;
        }
        let pod_ref = format!("{}_{}({})", self.name, self.namespace, self.uid);
        let delay =
            self.containers[i].schedule_restart(self.ctx.restart_delay, &pod_ref, Instant::now());
        let name = self.containers[i].name.clone();
        tracing::info!(container = %name, ?delay, "container will restart");
        let msg = format!("Back-off restarting failed container {name} in pod {pod_ref}");
        self.event(Severity::Warning, "BackOff", msg, Some(&name));
    }

    fn on_exit(&mut self, i: usize, gen: u64, exit: Exit, may_restart: bool) {
        let Some(c) = self.containers.get_mut(i) else {
            return;
        };
        if c.generation != gen || !c.is_running() {
            return;
        }
        c.on_exit(&exit, &twinset_proto::time::now(), Instant::now());
        let name = c.name.clone();
        self.probing[i] = None;
        self.kill_at[i] = None;
        tracing::info!(container = %name, ?exit, "container exited");
        self.record.containers.remove(&name);
        self.save_record();
        if may_restart {
            self.maybe_schedule_restart(i);
        }
    }

    fn restart_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.containers.len() {
            if self.containers[i].restart_at.is_some_and(|t| t <= now) {
                self.containers[i].restart_at = None;
                self.start_container(i);
            }
        }
    }

    /// Containers that could not start for a reason a spec or table change may fix.
    fn retry_waiting(&mut self) {
        for i in 0..self.containers.len() {
            let c = &self.containers[i];
            let retry = matches!(&c.state, crate::container::State::Waiting { reason: r, .. }
                if r == crate::images::IMAGE_NOT_IN_TABLE || r == reason::CREATE_CONFIG_ERROR);
            if retry && c.restart_at.is_none() {
                self.start_container(i);
            }
        }
    }

    async fn supervise(&mut self) -> Finish {
        let shutdown = self.ctx.shutdown.clone();
        loop {
            self.launch_due_probes();
            let next = self
                .containers
                .iter()
                .filter_map(|c| c.restart_at)
                .chain(self.kill_at.iter().flatten().map(|(_, at)| *at))
                .chain(
                    self.probing
                        .iter()
                        .flatten()
                        .filter_map(|p| p.state.next_due()),
                )
                .min();
            let wake = async move {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Finish::Shutdown,
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        return Finish::Shutdown;
                    }
                    let d = self.desired.borrow_and_update().clone();
                    match d {
                        Desired::Gone => return Finish::Gone,
                        Desired::Run(pod) => {
                            self.pod = *pod;
                            if is_deleting(&self.pod) {
                                return Finish::Deleted;
                            }
                            self.retry_waiting();
                        }
                    }
                }
                Some((i, gen, exit)) = self.exits.next(), if !self.exits.is_empty() => {
                    self.on_exit(i, gen, exit, true);
                }
                Some((i, gen, kind, outcome)) = self.probe_runs.next(), if !self.probe_runs.is_empty() => {
                    self.on_probe_result(i, gen, kind, outcome);
                }
                _ = wake => {
                    self.kill_due();
                    self.restart_due();
                }
            }
            self.report(false);
        }
    }

    /// Sets up the probes of container `i`'s run `gen` (process `pid`, started now or
    /// `adopted`); exec probes get `env`.
    fn begin_probing(
        &mut self,
        i: usize,
        gen: u64,
        pid: u32,
        env: Vec<(String, String)>,
        adopted: bool,
    ) {
        self.probing[i] = None;
        let Some(spec) = self.spec().containers.get(i).cloned() else {
            return;
        };
        let set = ProbeSet::for_container(&spec, self.ctx.images.default_readiness(&spec));
        if set.is_empty() {
            return;
        }
        let working_dir = if spec.working_dir.is_empty() {
            PathBuf::from("/")
        } else {
            PathBuf::from(&spec.working_dir)
        };
        let state = ContainerProbes::new(&spec.name, &set, Instant::now(), adopted);
        self.probing[i] = Some(Probing {
            generation: gen,
            spec,
            set,
            state,
            target: ExecTarget {
                pid,
                env,
                working_dir,
            },
        });
    }

    /// Starts every probe attempt that is due.
    fn launch_due_probes(&mut self) {
        let now = Instant::now();
        for (i, slot) in self.probing.iter_mut().enumerate() {
            let Some(p) = slot else {
                continue;
            };
            for kind in p.state.take_due(now) {
                let Some(def) = p.set.get(kind) else {
                    continue;
                };
                let action = probes::action(&def.probe, &p.spec, &self.pod_ip);
                let attempt = prober::run(
                    action,
                    Arc::clone(&self.ctx.runtime),
                    p.target.clone(),
                    def.settings.timeout,
                );
                let gen = p.generation;
                self.probe_runs
                    .push(Box::pin(async move { (i, gen, kind, attempt.await) }));
            }
        }
    }

    /// A probe attempt of container `i`'s run `gen` ended.
    fn on_probe_result(&mut self, i: usize, gen: u64, kind: Kind, outcome: Outcome) {
        let Some(p) = self.probing.get_mut(i).and_then(|p| p.as_mut()) else {
            return;
        };
        if p.generation != gen {
            return;
        }
        let name = p.spec.name.clone();
        let was_ready = p.state.ready();
        let effects = p.state.record(kind, outcome, Instant::now());
        let ready = p.state.ready();
        if ready != was_ready {
            tracing::info!(container = %name, ready, "readiness changed");
        }
        for effect in effects {
            match effect {
                Effect::Unhealthy(msg) => {
                    tracing::info!(container = %name, "{msg}");
                    self.event(Severity::Warning, probes::UNHEALTHY, msg, Some(&name));
                }
                Effect::Kill(msg) => self.kill_for_probe(i, gen, msg),
            }
        }
    }

    /// A failed liveness or startup probe: SIGTERM now, SIGKILL after the grace
    /// period; the exit then restarts the container by the restart policy.
    fn kill_for_probe(&mut self, i: usize, gen: u64, msg: String) {
        let Some(pid) = self.containers[i].pid() else {
            return;
        };
        let name = self.containers[i].name.clone();
        tracing::info!(container = %name, "{msg}");
        self.event(Severity::Normal, "Killing", msg, Some(&name));
        self.ctx.runtime.signal(pid, Signal::SIGTERM);
        self.kill_at[i] = Some((gen, Instant::now() + self.grace()));
    }

    /// SIGKILLs containers a failed probe stopped that outlived their grace period.
    fn kill_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.kill_at.len() {
            let Some((gen, at)) = self.kill_at[i] else {
                continue;
            };
            if at > now {
                continue;
            }
            self.kill_at[i] = None;
            let c = &self.containers[i];
            if let (true, Some(pid)) = (c.generation == gen, c.pid()) {
                tracing::info!(container = %c.name, "grace period over; killing");
                self.ctx.runtime.signal(pid, Signal::SIGKILL);
            }
        }
    }

    fn grace(&self) -> Duration {
        let secs = self
            .meta()
            .deletion_grace_period_seconds
            .or(self.spec().termination_grace_period_seconds);
        match secs {
            Some(s) => Duration::from_secs(u64::try_from(s).unwrap_or(0)),
            None => DEFAULT_GRACE,
        }
    }

    fn running(&self) -> Vec<(usize, u32)> {
        self.containers
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.pid().map(|p| (i, p)))
            .collect()
    }

    async fn wait_exits_until(&mut self, deadline: Instant, report: bool) {
        while !self.running().is_empty() {
            tokio::select! {
                Some((i, gen, exit)) = self.exits.next(), if !self.exits.is_empty() => {
                    self.on_exit(i, gen, exit, false);
                    if report {
                        self.report(false);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    async fn terminate(&mut self, grace: Duration, report: bool) {
        for c in &mut self.containers {
            c.restart_at = None;
        }
        self.kill_at.iter_mut().for_each(|k| *k = None);
        for (i, pid) in self.running() {
            let name = self.containers[i].name.clone();
            self.ctx.runtime.signal(pid, Signal::SIGTERM);
            self.event(
                Severity::Normal,
                "Killing",
                format!("Stopping container {name}"),
                Some(&name),
            );
        }
        self.wait_exits_until(Instant::now() + grace, report).await;
        let left = self.running();
        if !left.is_empty() {
            tracing::info!(?grace, "grace period over; killing");
            for (_, pid) in &left {
                self.ctx.runtime.signal(*pid, Signal::SIGKILL);
            }
            self.wait_exits_until(Instant::now() + KILL_WAIT, report)
                .await;
            if !self.running().is_empty() {
                tracing::warn!("container processes did not exit after SIGKILL");
            }
        }
    }

    async fn finish(mut self, how: Finish) {
        if how == Finish::Shutdown && !self.ctx.stop_pods_on_shutdown {
            tracing::debug!("agent stopping; pod left running");
            return;
        }
        let grace = match how {
            Finish::Shutdown => self.grace().min(SHUTDOWN_GRACE),
            _ => self.grace(),
        };
        tracing::info!(?how, ?grace, "stopping pod");
        self.terminate(grace, how == Finish::Deleted).await;
        // Its processes are gone: a claim deleted meanwhile may go now.
        self.claims.take();
        let rt = Arc::clone(&self.ctx.runtime);
        let uid = self.uid.clone();
        match tokio::task::spawn_blocking(move || rt.cleanup_pod(&uid)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "pod cgroup cleanup failed"),
            Err(e) => tracing::warn!(error = %e, "pod cgroup cleanup task failed"),
        }
        if let Err(e) = self.ctx.state.remove(&self.uid) {
            tracing::warn!(error = %e, "cannot remove pod state");
        }
        self.ctx.logs.remove(&self.namespace, &self.name, &self.uid);
        if how != Finish::Shutdown {
            let released = match self.ctx.ipam.lock() {
                Ok(mut ipam) => ipam.release(&self.uid),
                Err(poisoned) => poisoned.into_inner().release(&self.uid),
            };
            if let Err(e) = released {
                tracing::warn!(error = %e, "cannot release pod IP");
            }
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove pod logs");
                }
            }
        }
        if how == Finish::Deleted {
            self.report(true);
        }
        tracing::info!("pod stopped");
    }

    fn compute_status(&self) -> v1::PodStatus {
        let now = twinset_proto::time::now();
        let spec = self.spec();
        status::build(&StatusInput {
            restart_policy: &spec.restart_policy,
            containers: self
                .containers
                .iter()
                .zip(&self.probing)
                .map(|(c, p)| {
                    let mut s = c.to_status();
                    // Probes decide `started` and `ready` of a running container.
                    if let Some(p) = p {
                        s.started = Some(s.started == Some(true) && p.state.started());
                        s.ready = s.ready && p.state.ready();
                    }
                    s
                })
                .collect(),
            previous_conditions: &self.conditions,
            host_ip: &self.ctx.host_ip,
            pod_ip: &self.pod_ip,
            start_time: &self.start_time,
            now: &now,
            qos_class: status::qos_class(&spec),
        })
    }

    fn report(&mut self, terminated: bool) {
        let status = self.compute_status();
        if self.last_sent.as_ref() == Some(&status) && self.events.is_empty() && !terminated {
            return;
        }
        self.conditions = status.conditions.clone();
        self.last_sent = Some(status.clone());
        self.ctx.reporter.send(Report {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            status: Some(status),
            terminated,
            events: std::mem::take(&mut self.events),
        });
    }
}
