//! The pod worker: one task per pod that owns its containers' processes. It starts
//! (or adopts) them, restarts them by the restart policy after a back-off, reports
//! every status change at once, and on deletion stops them ([`stop`]: SIGTERM to each
//! process group, SIGKILL after the grace period), removes the pod's cgroups, IP and
//! state, then reports the pod terminated.
//!
//! The worker is a thin shell around pure parts: [`launch`] plans each container's
//! start, [`crate::container`] holds each container's state and its transitions,
//! [`probing`] runs the probes ([`crate::probes`] decides, [`crate::prober`] does the
//! I/O): readiness gates the container's `ready`, and a failed liveness or startup
//! probe kills the container (SIGTERM, SIGKILL after the grace period) so that it
//! restarts by the restart policy. Processes are only touched through the
//! [`Runtime`]; the agent's stores only through [`records`].

pub mod fencing;
pub mod launch;
pub mod probing;
pub mod records;
pub mod stop;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
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

use crate::container::{reason, Backoff, ContainerRun, Stage};
use crate::env;
use crate::events::{self, pod_event, Severity};
use crate::identity;
use crate::images::{self, ImageTable};
use crate::ipam::Ipam;
use crate::logs::{self, Registry};
use crate::network::{Mode, PodAttach};
use crate::prober::ExecTarget;
use crate::probes::{self, Effect, ProbeSet};
use crate::reporter::{Report, ReporterHandle};
use crate::runtime::{Exit, Runtime, Started};
use crate::state::{ContainerRecord, PodRecord, StateDir};
use crate::status::{self, StatusInput};
use crate::volumes::{self, ClaimUse, Claims};
use launch::{LaunchPlan, NodeFacts, NotStarted, PodFacts};
use probing::{NewRun, PodProbes};
use stop::Leave;

/// Default terminationGracePeriodSeconds.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Longest grace given to a pod when the agent itself stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What every pod worker shares.
pub struct Shared {
    /// This node's name.
    pub node_name: String,
    /// This node's address (hostIP).
    pub host_ip: String,
    /// This node's hostname (what hostNetwork pods see; empty when unknown: they
    /// then get the pod's).
    pub node_hostname: String,
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
    /// The fence lease and its files ([`crate::fence`]).
    pub fence: Arc<crate::fence::Fence>,
    /// Status reports go here.
    pub reporter: ReporterHandle,
    /// Pods whose logs can be read.
    pub logs: Registry,
    /// How restarts of a dead container are spaced (and tries at a pod's network).
    pub backoff: Backoff,
    /// The agent is stopping.
    pub shutdown: CancellationToken,
    /// Whether pods are stopped when the agent stops (else they keep running and a
    /// restarted agent adopts them).
    pub stop_pods_on_shutdown: bool,
    /// The claims' folders on this node.
    pub claims: Arc<Claims>,
    /// The cluster DNS server pods resolve through (their `/etc/resolv.conf`).
    pub cluster_dns: Option<IpAddr>,
    /// The pod network (each pod's own namespace in bridge mode).
    pub network: Arc<dyn crate::network::PodNetwork>,
}

/// What the agent should do with a pod, as the latest assignment says.
#[derive(Clone, Debug)]
pub enum Desired {
    /// Run it (a deletionTimestamp means: stop it gracefully, then report it terminated).
    Run(Box<Pod>),
    /// It is no longer assigned here: stop it.
    Gone,
}

/// How often a pod waiting for an earlier pod of its name looks again.
const PREDECESSOR_POLL: Duration = Duration::from_millis(100);
/// How much longer than its grace period an earlier pod's stop may take.
const PREDECESSOR_SLACK: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finish {
    Deleted,
    Gone,
    Shutdown,
}

/// The status of a pod's Ready condition ("" without one).
fn ready_of(status: Option<&v1::PodStatus>) -> &str {
    status
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
        .map_or("", |c| c.status.as_str())
}

/// Whether the pod has a deletion timestamp.
pub fn is_deleting(pod: &Pod) -> bool {
    pod.metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty())
}

/// The grace period of a pod: its deletion grace period, else its
/// terminationGracePeriodSeconds, else [`DEFAULT_GRACE`].
pub fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .as_ref()
        .and_then(|m| m.deletion_grace_period_seconds)
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds));
    match secs {
        Some(s) => Duration::from_secs(u64::try_from(s).unwrap_or(0)),
        None => DEFAULT_GRACE,
    }
}

/// Waiting reasons a change of the pod (or the image table) may fix: such a
/// container is started again when its pod changes.
const RETRY_ON_CHANGE: [&str; 2] = [images::IMAGE_NOT_IN_TABLE, reason::CREATE_CONFIG_ERROR];

type ExitFuture = BoxFuture<'static, (usize, u64, Exit)>;

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
    probes: PodProbes,
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
    /// While stopping: report each exit at once (a deletion shows its progress).
    report_exits: bool,
    /// Its pinned network namespace (bridge mode).
    netns: Option<PathBuf>,
    /// Why its network could not be made (bridge mode): its containers cannot start.
    sandbox_error: Option<String>,
    /// When the network is tried again after a failure, and the back-off after that.
    sandbox_retry: Option<(Instant, u32)>,
    /// When its assignment reached the agent, until its start is recorded (None once
    /// recorded, and for a pod adopted from an earlier agent, which started then).
    assigned_at: Option<Instant>,
    /// Its place in the pods-per-phase metric.
    phase: crate::metrics::PhaseSlot,
    /// Why it was fenced ([`crate::fence`]); it never starts again.
    fenced: Option<String>,
    /// The process groups last written to the watchdog's list (None: no list).
    fence_recorded: Option<Vec<crate::procfs::ProcId>>,
    /// The fence lease's deadline, to retry a start that waits for it.
    fence_rx: watch::Receiver<Option<Instant>>,
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
        let dir = records::pod_dir(&ctx, &meta.namespace, &meta.name, &meta.uid);
        let containers: Vec<ContainerRun> = spec
            .containers
            .iter()
            .map(|c| ContainerRun::new(&c.name, &c.image))
            .collect();
        let n = containers.len();
        let fence_rx = ctx.fence.subscribe();
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
            probes: PodProbes::new(n),
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
            report_exits: false,
            netns: None,
            sandbox_error: None,
            sandbox_retry: None,
            assigned_at: Some(Instant::now()),
            phase: crate::metrics::PhaseSlot::default(),
            fenced: None,
            fence_recorded: None,
            fence_rx,
        }
    }

    fn spec(&self) -> &v1::PodSpec {
        static EMPTY: std::sync::OnceLock<v1::PodSpec> = std::sync::OnceLock::new();
        self.pod
            .spec
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(v1::PodSpec::default))
    }

    fn event(
        &mut self,
        severity: Severity,
        reason: &str,
        message: String,
        container: Option<&str>,
    ) {
        let meta = self.pod.metadata.clone().unwrap_or_default();
        let e = pod_event(
            &meta,
            &self.ctx.node_name,
            severity,
            reason,
            message,
            container,
        );
        self.events.push(e);
    }

    async fn main(mut self, adopt: Option<PodRecord>) {
        if adopt.is_some() {
            self.assigned_at = None;
        } else if let Some(finish) = self.wait_for_predecessor().await {
            self.finish(finish).await;
            return;
        }
        self.setup();
        self.attach_network().await;
        let deleting = is_deleting(&self.pod);
        self.start_all(adopt.as_ref(), !deleting);
        if self.fenced_now().is_some() && self.containers.iter().any(ContainerRun::is_running) {
            // Fenced while an earlier agent was stopping it: finish the job.
            let grace = self.ctx.fence.grace();
            self.terminate(grace, true).await;
        }
        self.report(false);
        let finish = if deleting {
            Finish::Deleted
        } else {
            self.supervise().await
        };
        self.finish(finish).await;
    }

    /// An earlier pod of this name (another uid: force-deleted, or deleted while this
    /// agent was away) whose recorded processes are still being stopped here.
    fn predecessor(&self) -> Option<String> {
        self.ctx.state.find_uid(|r| {
            r.namespace == self.namespace
                && r.name == self.name
                && r.uid != self.uid
                && !r.containers.is_empty()
        })
    }

    /// Keeps one live pod per name on this node: waits, before anything of this pod is
    /// set up, until an earlier pod of the same name has stopped (its record goes once
    /// its processes are gone). A record that outlives this pod's grace period plus
    /// [`PREDECESSOR_SLACK`] is not waited on longer (its stop always ends by then).
    /// Returns how the worker ends when the pod is deleted or the agent stops meanwhile.
    async fn wait_for_predecessor(&mut self) -> Option<Finish> {
        let mut earlier = self.predecessor()?;
        tracing::info!(
            earlier = %earlier,
            "waiting for the earlier pod of this name to stop before starting"
        );
        let shutdown = self.ctx.shutdown.clone();
        let give_up = Instant::now() + grace_period(&self.pod) + PREDECESSOR_SLACK;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Some(Finish::Shutdown),
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        return Some(Finish::Shutdown);
                    }
                    let d = self.desired.borrow_and_update().clone();
                    match d {
                        Desired::Gone => return Some(Finish::Gone),
                        Desired::Run(pod) => {
                            self.pod = *pod;
                            if is_deleting(&self.pod) {
                                return Some(Finish::Deleted);
                            }
                        }
                    }
                }
                _ = tokio::time::sleep(PREDECESSOR_POLL) => {}
            }
            match self.predecessor() {
                None => return None,
                Some(uid) => earlier = uid,
            }
            if Instant::now() >= give_up {
                tracing::warn!(
                    earlier = %earlier,
                    "the earlier pod of this name is still recorded past its grace; starting"
                );
                return None;
            }
        }
    }

    /// The pod's hostname, IP, folder, logs entry and record.
    fn setup(&mut self) {
        let host_network = self.spec().host_network;
        self.hostname = if host_network && !self.ctx.node_hostname.is_empty() {
            self.ctx.node_hostname.clone()
        } else {
            identity::hostname(&self.pod)
        };
        if host_network {
            self.pod_ip = self.ctx.host_ip.clone();
        } else {
            self.allocate_ip();
        }
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot create the pod's log folder");
        }
        let names = self
            .spec()
            .containers
            .iter()
            .map(|c| c.name.clone())
            .collect();
        records::register_logs(
            &self.ctx,
            &self.namespace,
            &self.name,
            &self.uid,
            self.dir.clone(),
            names,
        );
        records::save(&self.ctx, &self.record);
    }

    /// The pod's IP: its own (kept across agent restarts) or a new one. In bridge mode
    /// a pod without one cannot start (its sandbox waits); in loopback mode it falls back
    /// to the node's address, saying so.
    fn allocate_ip(&mut self) {
        match records::allocate_ip(&self.ctx, &self.uid) {
            Ok((ip, skipped)) => {
                if !skipped.is_empty() {
                    let msg = format!(
                        "skipped pod IP {} held by another process on the node; using {ip}",
                        skipped.join(", ")
                    );
                    tracing::warn!("{msg}");
                    self.event(Severity::Warning, "PodIPInUse", msg, None);
                }
                self.pod_ip = ip;
            }
            Err(e) if self.ctx.network.mode() == Mode::Bridge => {
                self.sandbox_error = Some(format!("no pod IP: {e}"));
            }
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

    /// Bridge mode: makes (or, after an agent restart, finds) the pod's own network
    /// namespace and veth. A failure is kept: its containers wait, saying why.
    async fn attach_network(&mut self) {
        if self.ctx.network.mode() != Mode::Bridge
            || self.spec().host_network
            || self.sandbox_error.is_some()
        {
            return;
        }
        let range = match self.ctx.ipam.lock() {
            Ok(ipam) => ipam.cidr(),
            Err(poisoned) => poisoned.into_inner().cidr(),
        };
        let (Some(range), Ok(ip)) = (range, self.pod_ip.parse()) else {
            self.sandbox_error = Some(format!("no pod range for pod IP {:?}", self.pod_ip));
            return;
        };
        let attach = PodAttach {
            uid: self.uid.clone(),
            ip,
            range,
        };
        match self.ctx.network.attach(&attach).await {
            Ok(Some(a)) => self.netns = Some(a.netns),
            Ok(None) => {
                self.sandbox_error = Some("the pod network made no namespace".into());
            }
            Err(e) => self.sandbox_error = Some(e.to_string()),
        }
        self.plan_sandbox_retry();
    }

    /// After a failed network setup: logs it and sets when it is tried again (the restart
    /// back-off of a crashing container: its base doubling up to its max).
    fn plan_sandbox_retry(&mut self) {
        let Some(why) = &self.sandbox_error else {
            self.sandbox_retry = None;
            return;
        };
        tracing::warn!(error = %why, "cannot create the pod's network");
        let tries = self.sandbox_retry.map_or(0, |(_, n)| n);
        let delay = self.ctx.backoff.delay(tries);
        self.sandbox_retry = Some((Instant::now() + delay, tries.saturating_add(1)));
    }

    /// Tries the pod's network again when its retry is due; once it is made, the
    /// containers that waited for it start.
    async fn retry_sandbox(&mut self) {
        match self.sandbox_retry {
            Some((at, _)) if at <= Instant::now() => {}
            _ => return,
        }
        self.sandbox_error = None;
        if self.pod_ip.is_empty() {
            self.allocate_ip();
        }
        if self.sandbox_error.is_none() {
            self.attach_network().await;
        } else {
            self.plan_sandbox_retry();
        }
        if self.sandbox_error.is_some() {
            return;
        }
        tracing::info!("the pod's network is made");
        for i in 0..self.containers.len() {
            if let Stage::Idle(idle) = self.containers[i].stage() {
                if idle.waits_on(&[reason::CONTAINER_CREATING]) {
                    self.start_container(i);
                }
            }
        }
    }

    fn start_all(&mut self, adopt: Option<&PodRecord>, start_new: bool) {
        if !self.spec().init_containers.is_empty() {
            for i in 0..self.containers.len() {
                self.cannot_start(
                    i,
                    NotStarted {
                        reason: "InitContainersNotSupported".into(),
                        event: "InitContainersNotSupported".into(),
                        message: "init containers are not supported by this agent yet".into(),
                    },
                );
            }
            return;
        }
        for i in 0..self.containers.len() {
            let name = self.containers[i].name().to_string();
            if let Some(rec) = adopt.and_then(|r| r.containers.get(&name)) {
                if self.adopt(i, rec) {
                    continue;
                }
            }
            if start_new {
                self.start_container(i);
            }
        }
        records::save(&self.ctx, &self.record);
    }

    /// Takes over container `i`'s process an earlier agent recorded as `rec`, if it
    /// is still that process.
    fn adopt(&mut self, i: usize, rec: &ContainerRecord) -> bool {
        let name = self.containers[i].name().to_string();
        let Some(started) = self
            .ctx
            .runtime
            .adopt(&self.uid, &name, rec.pid, rec.start_ticks)
        else {
            return false;
        };
        let Stage::Idle(idle) = self.containers[i].stage() else {
            return false;
        };
        tracing::info!(container = %name, pid = rec.pid, "adopted running container");
        records::resume_output(&self.ctx, &self.dir, &name);
        let gen = idle.adopted(
            rec.pid,
            rec.start_ticks,
            rec.started_at.clone(),
            rec.restart_count,
            Instant::now(),
        );
        self.watch_exit(i, gen, started);
        self.record.containers.insert(name, rec.clone());
        // Its environment as it was started (the probes' exec env).
        let env = self
            .ctx
            .runtime
            .environ(rec.pid)
            .unwrap_or_else(|| vec![("PATH".to_string(), env::DEFAULT_PATH.to_string())]);
        self.begin_probing(i, gen, rec.pid, env, true);
        true
    }

    fn watch_exit(&mut self, i: usize, gen: u64, started: Started) {
        let rx = started.exit;
        self.exits.push(Box::pin(
            async move { (i, gen, rx.await.unwrap_or_default()) },
        ));
    }

    /// Container `i` cannot start: it waits (news are logged and recorded as events).
    fn cannot_start(&mut self, i: usize, why: NotStarted) {
        let name = self.containers[i].name().to_string();
        let Stage::Idle(idle) = self.containers[i].stage() else {
            return;
        };
        if idle.cannot_start(&why.reason, &why.message) {
            tracing::warn!(container = %name, reason = %why.reason, "{}", why.message);
            self.event(Severity::Warning, &why.event, why.message, Some(&name));
        }
    }

    /// Plans container `i`'s start and does the file-system work it needs; the run's
    /// output comes last, so a start that cannot happen leaves no run behind.
    fn prepare(&mut self, i: usize) -> Result<(LaunchPlan, logs::Output), NotStarted> {
        if let Some(why) = self.fence_gate() {
            return Err(why);
        }
        if let Some(why) = &self.sandbox_error {
            return Err(NotStarted::sandbox(format!(
                "Failed to create pod sandbox: {why}"
            )));
        }
        let isolated = self.ctx.runtime.isolation().available();
        let node = NodeFacts {
            node_name: &self.ctx.node_name,
            host_ip: &self.ctx.host_ip,
            data_dir: &self.ctx.data_dir,
            isolated,
            images: &self.ctx.images,
        };
        let pod = PodFacts {
            pod: &self.pod,
            dir: &self.dir,
            pod_ip: &self.pod_ip,
            hostname: &self.hostname,
            netns: self.netns.as_deref(),
        };
        let mut plan = launch::plan(&node, &pod, i)?;
        volumes::prepare(&plan.mounts).map_err(|e| NotStarted::mount(e.to_string()))?;
        if let Some(sandbox) = plan.launch.sandbox.as_mut() {
            let files =
                identity::write_pod_files(&self.dir, &self.pod, &self.pod_ip, self.ctx.cluster_dns)
                    .map_err(|e| {
                        NotStarted::mount(format!(
                            "cannot write the pod's /etc files under {}: {e}",
                            self.dir.display()
                        ))
                    })?;
            launch::add_pod_files(sandbox, files);
        } else {
            self.warn_not_isolated(&plan);
        }
        if let Some(tmp) = &plan.tmp_dir {
            std::fs::create_dir_all(tmp)
                .map_err(|e| NotStarted::config(format!("cannot create {}: {e}", tmp.display())))?;
        }
        let output =
            records::open_output(&self.ctx, &self.dir, &plan.launch.container).map_err(|e| {
                NotStarted::config(format!(
                    "cannot set up the log of container {}: {e}",
                    plan.launch.container
                ))
            })?;
        launch::set_output(&mut plan, output.path());
        Ok((plan, output))
    }

    fn start_container(&mut self, i: usize) {
        // `_output` holds the run's log FIFO open until the runtime has started it.
        // One hop off the async workers for all of the start's file work (the helpers it
        // calls then run inline), not one per step.
        let (plan, _output) = match crate::blocking::file_work(|| self.prepare(i)) {
            Ok(p) => p,
            Err(why) => return self.cannot_start(i, why),
        };
        let name = plan.launch.container.clone();
        let now = twinset_proto::time::now();
        let result = self.ctx.runtime.start(&plan.launch);
        let Stage::Idle(idle) = self.containers[i].stage() else {
            return;
        };
        match result {
            Ok(started) => {
                let gen = idle.started(
                    started.pid,
                    started.start_ticks,
                    now.clone(),
                    Instant::now(),
                );
                let rec = ContainerRecord {
                    pid: started.pid,
                    start_ticks: started.start_ticks,
                    started_at: now,
                    restart_count: self.containers[i].restart_count(),
                };
                tracing::info!(container = %name, pid = started.pid, "container started");
                if let Some(why) = started.limits_warning.clone() {
                    if !self.limits_warned {
                        self.limits_warned = true;
                        let msg =
                            format!("resources.limits of container {name} are not enforced: {why}");
                        tracing::warn!("{msg}");
                        self.event(
                            Severity::Warning,
                            events::RESOURCE_LIMITS_NOT_ENFORCED,
                            msg,
                            Some(&name),
                        );
                    }
                }
                self.event(
                    Severity::Normal,
                    "Started",
                    format!("Started container {name}"),
                    Some(&name),
                );
                let pid = started.pid;
                self.watch_exit(i, gen, started);
                self.record.containers.insert(name, rec);
                records::save(&self.ctx, &self.record);
                self.begin_probing(i, gen, pid, plan.launch.env, false);
            }
            Err(e) => {
                tracing::warn!(container = %name, error = %e, "container failed to start");
                idle.start_failed(e.to_string(), &now);
                self.event(
                    Severity::Warning,
                    "Failed",
                    format!("Error: {e}"),
                    Some(&name),
                );
                self.maybe_schedule_restart(i);
            }
        }
    }

    /// Says once per container that its mounts are not isolated and where it finds
    /// them instead.
    fn warn_not_isolated(&mut self, plan: &LaunchPlan) {
        let container = plan.launch.container.as_str();
        if plan.mounts.is_empty() || self.isolation_warned.contains(container) {
            return;
        }
        let why = self
            .ctx
            .runtime
            .isolation()
            .reason()
            .unwrap_or("isolation unavailable")
            .to_string();
        if let Some(msg) = launch::not_isolated_message(container, &plan.mounts, &why) {
            self.isolation_warned.insert(container.to_string());
            tracing::warn!("{msg}");
            self.event(
                Severity::Warning,
                events::MOUNT_NOT_ISOLATED,
                msg,
                Some(container),
            );
        }
    }

    fn maybe_schedule_restart(&mut self, i: usize) {
        let policy = self.spec().restart_policy.clone();
        let pod_ref = format!("{}_{}({})", self.name, self.namespace, self.uid);
        if self.fenced_now().is_some() {
            return;
        }
        let Stage::Terminated(ended) = self.containers[i].stage() else {
            return;
        };
        if !ended.wants_restart(&policy) {
            return;
        }
        let delay = ended.back_off(&self.ctx.backoff, &pod_ref, Instant::now());
        let name = self.containers[i].name().to_string();
        tracing::info!(container = %name, ?delay, "container will restart");
        let msg = format!("Back-off restarting failed container {name} in pod {pod_ref}");
        self.event(Severity::Warning, "BackOff", msg, Some(&name));
    }

    fn on_exit(&mut self, i: usize, gen: u64, exit: Exit, may_restart: bool) {
        let Some(c) = self.containers.get_mut(i) else {
            return;
        };
        let name = c.name().to_string();
        let Stage::Running(active) = c.stage() else {
            return;
        };
        if active.process().generation != gen {
            return;
        }
        active.exited(&exit, &twinset_proto::time::now(), Instant::now());
        self.probes.end(i);
        tracing::info!(container = %name, ?exit, "container exited");
        self.record.containers.remove(&name);
        records::save(&self.ctx, &self.record);
        if may_restart {
            self.maybe_schedule_restart(i);
        }
    }

    /// Restarts whose back-off is over, and SIGKILLs due after a failed probe.
    fn timers_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.containers.len() {
            match self.containers[i].stage() {
                Stage::Idle(idle) if idle.restart_due(now) => {
                    crate::metrics::container_restarted();
                    self.start_container(i)
                }
                Stage::Running(active) => {
                    let pid = active.process().pid;
                    if active.take_kill_due(now) {
                        tracing::info!(container = %self.containers[i].name(), "grace period over; killing");
                        self.ctx.runtime.signal(pid, Signal::SIGKILL);
                    }
                }
                _ => {}
            }
        }
    }

    /// Containers that could not start for a reason a spec or table change may fix.
    fn retry_waiting(&mut self) {
        self.retry_waiting_on(&RETRY_ON_CHANGE);
        self.retry_waiting_on(&[fencing::LEASE_LAPSED]);
    }

    /// Starts the containers waiting for one of `reasons`.
    fn retry_waiting_on(&mut self, reasons: &[&str]) {
        for i in 0..self.containers.len() {
            if let Stage::Idle(idle) = self.containers[i].stage() {
                if idle.waits_on(reasons) {
                    self.start_container(i);
                }
            }
        }
    }

    async fn supervise(&mut self) -> Finish {
        let shutdown = self.ctx.shutdown.clone();
        loop {
            self.probes
                .launch_due(Instant::now(), &self.ctx.runtime, &self.pod_ip);
            let next = self
                .containers
                .iter()
                .filter_map(ContainerRun::wake_at)
                .chain(self.probes.next_due())
                .chain(self.sandbox_retry.map(|(at, _)| at))
                .chain(self.fence_due())
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
                            // The control plane turned the pod not Ready while the
                            // node was silent: say again what it is.
                            if ready_of(pod.status.as_ref()) != ready_of(self.last_sent.as_ref()) {
                                self.last_sent = None;
                            }
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
                attempt = self.probes.next_result() => {
                    if let Some((i, name, effects)) = self.probes.record(attempt, Instant::now()) {
                        self.apply_probe_effects(i, &name, effects);
                    }
                }
                changed = self.fence_rx.changed() => {
                    if changed.is_ok() {
                        self.retry_waiting_on(&[fencing::LEASE_LAPSED]);
                    }
                }
                _ = wake => {
                    self.timers_due();
                    self.retry_sandbox().await;
                    self.fence_if_lapsed().await;
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
        let Some(spec) = self.spec().containers.get(i).cloned() else {
            self.probes.end(i);
            return;
        };
        let set = ProbeSet::for_container(&spec, self.ctx.images.default_readiness(&spec));
        let target = ExecTarget {
            pid,
            env,
            working_dir: launch::working_dir(&spec),
        };
        self.probes.begin(
            i,
            NewRun {
                generation: gen,
                spec,
                set,
                target,
                since: Instant::now(),
                adopted,
            },
        );
    }

    fn apply_probe_effects(&mut self, i: usize, name: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Unhealthy(msg) => {
                    tracing::info!(container = %name, "{msg}");
                    self.event(Severity::Warning, probes::UNHEALTHY, msg, Some(name));
                }
                Effect::Kill(msg) => self.kill_for_probe(i, msg),
            }
        }
    }

    /// A failed liveness or startup probe: SIGTERM now, SIGKILL after the grace
    /// period; the exit then restarts the container by the restart policy.
    fn kill_for_probe(&mut self, i: usize, msg: String) {
        let grace = grace_period(&self.pod);
        let name = self.containers[i].name().to_string();
        let Stage::Running(active) = self.containers[i].stage() else {
            return;
        };
        let pid = active.process().pid;
        active.kill_at(Instant::now() + grace);
        tracing::info!(container = %name, "{msg}");
        self.event(Severity::Normal, "Killing", msg, Some(&name));
        self.ctx.runtime.signal(pid, Signal::SIGTERM);
    }

    /// Stops every container: no restart or probe kill is due any more, each gets
    /// a Killing event, then the one termination path.
    async fn terminate(&mut self, grace: Duration, report: bool) {
        for c in &mut self.containers {
            match c.stage() {
                Stage::Idle(idle) => idle.cancel_restart(),
                Stage::Running(active) => active.cancel_kill(),
                Stage::Terminated(_) => {}
            }
        }
        for i in 0..self.containers.len() {
            if self.containers[i].is_running() {
                let name = self.containers[i].name().to_string();
                self.event(
                    Severity::Normal,
                    "Killing",
                    format!("Stopping container {name}"),
                    Some(&name),
                );
            }
        }
        self.report_exits = report;
        let runtime = Arc::clone(&self.ctx.runtime);
        stop::terminate(runtime.as_ref(), self, grace).await;
    }

    async fn finish(mut self, how: Finish) {
        if how == Finish::Shutdown && !self.ctx.stop_pods_on_shutdown {
            tracing::debug!("agent stopping; pod left running");
            return;
        }
        let grace = match how {
            Finish::Shutdown => grace_period(&self.pod).min(SHUTDOWN_GRACE),
            _ => grace_period(&self.pod),
        };
        tracing::info!(?how, ?grace, "stopping pod");
        self.terminate(grace, how == Finish::Deleted).await;
        // Its processes are gone: a claim deleted meanwhile may go now.
        self.claims.take();
        let leave = match how {
            Finish::Shutdown => Leave::IpAndFolder,
            Finish::Deleted | Finish::Gone => Leave::Nothing,
        };
        stop::teardown(&self.ctx, &self.uid, &self.namespace, &self.name, leave).await;
        if how != Finish::Shutdown {
            self.ctx.fence.forget(&self.uid);
        }
        if how == Finish::Deleted {
            self.report(true);
        }
        tracing::info!("pod stopped");
    }

    fn compute_status(&self) -> v1::PodStatus {
        let now = twinset_proto::time::now();
        let spec = self.spec();
        let mut status = status::build(&StatusInput {
            restart_policy: &spec.restart_policy,
            containers: self
                .containers
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut s = c.to_status();
                    // Probes decide `started` and `ready` of a running container.
                    self.probes.gate(i, &mut s);
                    s
                })
                .collect(),
            previous_conditions: &self.conditions,
            host_ip: &self.ctx.host_ip,
            pod_ip: &self.pod_ip,
            start_time: &self.start_time,
            now: &now,
            qos_class: status::qos_class(spec),
        });
        self.fence_status(&mut status, &now);
        status
    }

    fn report(&mut self, terminated: bool) {
        self.sync_fence_files();
        let status = self.compute_status();
        self.phase.set(&status.phase);
        if crate::metrics::all_running(&status, self.containers.len()) {
            if let Some(at) = self.assigned_at.take() {
                crate::metrics::pod_started(at.elapsed());
            }
        }
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

impl stop::Group for PodWorker {
    fn running(&self) -> Vec<u32> {
        self.containers
            .iter()
            .filter_map(ContainerRun::pid)
            .collect()
    }

    fn next_exit(&mut self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            match self.exits.next().await {
                Some((i, gen, exit)) => {
                    self.on_exit(i, gen, exit, false);
                    if self.report_exits {
                        self.report(false);
                    }
                    true
                }
                None => false,
            }
        })
    }
}
