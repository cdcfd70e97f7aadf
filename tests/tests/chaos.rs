//! Chaos (issue 13): for over two minutes, random SIGKILLs and restarts of agents and of
//! the control plane and partitions of agents behind a cuttable proxy, while a
//! `twinset.io/on-node-lost: Replace` StatefulSet scales between 1 and 6 and a DaemonSet
//! rolls to new templates; then everything is healed and the cluster must converge to
//! the spec within a bound.
//!
//! Checked throughout: a pod watcher (resuming across control-plane restarts) never sees
//! two live pods of one name, and a sampler of `/proc` never finds two live processes of
//! one StatefulSet identity on the machine (a fenced replica's process is dead before
//! its replacement's starts).
//!
//! The actions and their delays come from a seeded PRNG: the seed is printed at the
//! start and in every failure message, and `TWINSET_CHAOS_SEED=N` replays the same
//! sequence of actions (the timing of the cluster's own reactions still differs from run
//! to run). `TWINSET_CHAOS_SECS` changes the length of the chaos phase (default 130 s).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use twinset_e2e::cluster::Options;
use twinset_e2e::json::{self, PodView};
use twinset_e2e::procs::{self, ProcId};
use twinset_e2e::proxy::Proxy;
use twinset_e2e::wait::try_wait_for;
use twinset_e2e::Cluster;

const NS: &str = "chaos";
const NODES: usize = 4;
/// The nodes whose agents reach the control plane through a proxy (partitions).
const PROXIED: [&str; 2] = ["node3", "node4"];
const AGENT_FLAGS: [&str; 4] = ["--fence-after", "1500ms", "--fence-grace", "1s"];
/// How long the healed cluster may take to reach the spec.
const CONVERGE_WITHIN: Duration = Duration::from_secs(90);
/// How long the converged cluster must stay converged (past node-grace + replace-after).
const STEADY_FOR: Duration = Duration::from_secs(6);
/// How long one CLI command may keep failing while the control plane is away.
const CLI_DEADLINE: Duration = Duration::from_secs(45);
/// At most this many faults (agent down, partition, control plane down) at once.
const MAX_FAULTS: usize = 2;

fn options() -> Options {
    Options {
        control_plane_flags: ["--node-grace", "2s", "--replace-after", "3500ms"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        agent_flags: AGENT_FLAGS.iter().map(|s| s.to_string()).collect(),
        ..Options::default()
    }
}

/// splitmix64: small, deterministic, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.between(lo, hi))
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next() as usize % items.len()]
    }
}

fn seed() -> u64 {
    match std::env::var("TWINSET_CHAOS_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("TWINSET_CHAOS_SEED={s:?}: {e}")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

fn chaos_for() -> Duration {
    let secs = std::env::var("TWINSET_CHAOS_SECS")
        .ok()
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .unwrap_or_else(|e| panic!("TWINSET_CHAOS_SECS={s:?}: {e}"))
        })
        .unwrap_or(130);
    Duration::from_secs(secs)
}

/// The StatefulSet: `replicas` replicas with a claim each, replaced when their node is
/// lost; every process carries the run's id, so the sampler finds only this run's.
fn statefulset(run: &str, replicas: u64) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: {NS}
  annotations:
    twinset.io/on-node-lost: Replace
spec:
  serviceName: db
  replicas: {replicas}
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: db
        image: busybox
        command: [sleep, '100000']
        env:
        - name: CHAOS_RUN
          value: '{run}'
        - name: POD_UID
          valueFrom:
            fieldRef:
              fieldPath: metadata.uid
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Mi
"
    )
}

/// The DaemonSet at template version `version` (its env changes with it).
fn daemonset(version: u64) -> String {
    format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: nodelog
  namespace: {NS}
spec:
  selector:
    matchLabels:
      app: nodelog
  template:
    metadata:
      labels:
        app: nodelog
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: log
        image: busybox
        command: [sleep, '100000']
        env:
        - name: VERSION
          value: 'v{version}'
"
    )
}

// ------------------------------------------------------------------ the sampler

/// One live process of a StatefulSet identity.
#[derive(Clone, Debug)]
struct Replica {
    proc: ProcId,
    uid: String,
    node: String,
}

/// The live (not zombie) top-level processes of this run's replicas, by pod name.
/// `cache` remembers what each process is (its environment does not change), so only
/// new processes have their environment read.
fn scan(run: &str, cache: &mut BTreeMap<ProcId, Option<(String, Replica)>>) -> Scan {
    let all: Vec<procs::Stat> = procs::all().into_iter().filter(|s| !s.zombie()).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut ours: Vec<(procs::Stat, String, Replica)> = Vec::new();
    for s in &all {
        let id = s.id();
        seen.insert(id);
        let entry = cache.entry(id).or_insert_with(|| {
            let env = procs::environ(s.pid);
            if env.get("CHAOS_RUN").map(String::as_str) != Some(run)
                || env.get("POD_NAMESPACE").map(String::as_str) != Some(NS)
            {
                return None;
            }
            let name = env.get("POD_NAME")?.clone();
            Some((
                name,
                Replica {
                    proc: id,
                    uid: env.get("POD_UID").cloned().unwrap_or_default(),
                    node: env.get("NODE_NAME").cloned().unwrap_or_default(),
                },
            ))
        });
        if let Some((name, r)) = entry {
            ours.push((*s, name.clone(), r.clone()));
        }
    }
    cache.retain(|id, _| seen.contains(id));
    let mut by_name: BTreeMap<String, Vec<Replica>> = BTreeMap::new();
    for (s, name, r) in &ours {
        // A child of another process of the same pod is not the pod's own process.
        let nested = ours.iter().any(|(p, n, _)| p.pid == s.ppid && n == name);
        if !nested {
            by_name.entry(name.clone()).or_default().push(r.clone());
        }
    }
    Scan { by_name }
}

struct Scan {
    by_name: BTreeMap<String, Vec<Replica>>,
}

#[derive(Default)]
struct SamplerState {
    samples: u64,
    /// The most processes of one identity seen in one sample (1 is right).
    max_per_identity: usize,
    /// The most replica processes seen in one sample.
    max_total: usize,
    /// Two processes of one identity seen together, confirmed by a second look.
    violation: Option<String>,
    /// Overlaps seen once but gone at the second look (a scan is not atomic).
    unconfirmed: u64,
    slowest_scan: Duration,
}

/// Samples the replicas' processes every 100 ms on a thread of its own.
struct Sampler {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<SamplerState>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    fn start(run: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(SamplerState::default()));
        let (st, sp, run) = (state.clone(), stop.clone(), run.to_string());
        let thread = std::thread::spawn(move || {
            let mut cache = BTreeMap::new();
            while !sp.load(Ordering::SeqCst) {
                let began = Instant::now();
                let scan = scan(&run, &mut cache);
                let took = began.elapsed();
                let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                s.samples += 1;
                s.slowest_scan = s.slowest_scan.max(took);
                s.max_total = s
                    .max_total
                    .max(scan.by_name.values().map(Vec::len).sum::<usize>());
                for (name, live) in &scan.by_name {
                    s.max_per_identity = s.max_per_identity.max(live.len());
                    if live.len() < 2 {
                        continue;
                    }
                    let still: Vec<&Replica> = live.iter().filter(|r| r.proc.is_alive()).collect();
                    if still.len() < 2 {
                        s.unconfirmed += 1;
                    } else if s.violation.is_none() {
                        s.violation = Some(format!(
                            "two live processes of {NS}/{name} at once: {}",
                            still
                                .iter()
                                .map(|r| format!(
                                    "pid {} (pod uid {}, node {})",
                                    r.proc.pid, r.uid, r.node
                                ))
                                .collect::<Vec<_>>()
                                .join(" and ")
                        ));
                    }
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Sampler {
            stop,
            state,
            thread: Some(thread),
        }
    }

    fn violation(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .violation
            .clone()
    }

    fn finish(mut self) -> SamplerState {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ------------------------------------------------------------------ the chaos

#[derive(Clone, Debug, PartialEq, Eq)]
enum Fault {
    AgentDown(String),
    Cut(String),
    ControlPlaneDown,
}

#[derive(Default, Debug)]
struct Counts {
    scale: u32,
    ds_update: u32,
    agent_kill: u32,
    agent_kill_long: u32,
    partition: u32,
    partition_long: u32,
    cp_kill: u32,
    cli_retries: u32,
}

struct Chaos {
    c: Cluster,
    seed: u64,
    rng: Rng,
    proxies: BTreeMap<String, Proxy>,
    /// Faults in force and when each ends.
    faults: Vec<(Instant, Fault)>,
    counts: Counts,
    replicas: u64,
    ds_version: u64,
    log: Vec<String>,
    began: Instant,
}

impl Chaos {
    /// A failure message: the seed, the reason, and the last actions.
    fn fail(&self, why: &str) -> ! {
        let tail = self.log.len().saturating_sub(40);
        panic!(
            "chaos seed: {} (replay with TWINSET_CHAOS_SEED={})\n{why}\nlast actions:\n{}",
            self.seed,
            self.seed,
            self.log[tail..].join("\n")
        );
    }

    fn note(&mut self, what: String) {
        let line = format!("{:>6.1}s {what}", self.began.elapsed().as_secs_f64());
        eprintln!("chaos: {line}");
        self.log.push(line);
    }

    fn cp_down(&self) -> bool {
        self.faults
            .iter()
            .any(|(_, f)| *f == Fault::ControlPlaneDown)
    }

    fn faulted(&self, node: &str) -> bool {
        self.faults.iter().any(|(_, f)| match f {
            Fault::AgentDown(n) | Fault::Cut(n) => n == node,
            Fault::ControlPlaneDown => false,
        })
    }

    /// Starts the agent of `node` (through its proxy, if it has one).
    fn start_agent(&mut self, node: &str) {
        match self.proxies.get(node) {
            Some(p) => {
                let server = format!("https://{}", p.addr());
                self.c.spawn_agent_via(node, &server, &AGENT_FLAGS);
            }
            None => self.c.spawn_agent(node, &AGENT_FLAGS),
        }
    }

    /// Ends the faults whose time has come (all of them when `all`).
    fn recover(&mut self, all: bool) {
        let now = Instant::now();
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.faults)
            .into_iter()
            .partition(|(at, _)| all || *at <= now);
        self.faults = keep;
        for (_, f) in due {
            match &f {
                Fault::AgentDown(n) => self.start_agent(n),
                Fault::Cut(n) => self.proxies[n].heal(),
                Fault::ControlPlaneDown => self.c.restart_control_plane(),
            }
            self.note(format!("end {f:?}"));
        }
    }

    /// Runs a CLI command until it succeeds, ending due faults meanwhile (the control
    /// plane may be away); fails the test after [`CLI_DEADLINE`].
    fn cli(&mut self, args: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let out = self.c.run(args);
            if out.success() {
                return out.stdout;
            }
            if start.elapsed() > CLI_DEADLINE {
                self.fail(&format!("failing for {CLI_DEADLINE:?}: {out}"));
            }
            self.counts.cli_retries += 1;
            self.recover(false);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn apply(&mut self, manifest: &str) {
        let path = self.c.write_manifest(manifest);
        self.cli(&["apply", "-f", &path.to_string_lossy()]);
    }

    /// One action chosen by the PRNG.
    fn act(&mut self) {
        let roll = self.rng.between(0, 99);
        let room = self.faults.len() < MAX_FAULTS;
        match roll {
            0..=24 => self.scale(),
            25..=39 => self.roll_daemonset(),
            40..=64 if room => self.kill_agent(),
            65..=84 if room => self.partition(),
            85..=99 if room && !self.cp_down() => self.kill_control_plane(),
            _ => self.scale(),
        }
    }

    fn scale(&mut self) {
        let n = self.rng.between(1, 6);
        self.counts.scale += 1;
        self.note(format!("scale db to {n}"));
        self.replicas = n;
        self.cli(&["scale", "sts", "db", "-n", NS, &format!("--replicas={n}")]);
    }

    fn roll_daemonset(&mut self) {
        self.ds_version += 1;
        self.counts.ds_update += 1;
        self.note(format!("DaemonSet to v{}", self.ds_version));
        self.apply(&daemonset(self.ds_version));
    }

    fn kill_agent(&mut self) {
        let nodes: Vec<String> = (1..=NODES)
            .map(|i| format!("node{i}"))
            .filter(|n| !self.faulted(n))
            .collect();
        if nodes.is_empty() {
            return self.scale();
        }
        let node = self.rng.pick(&nodes).clone();
        // Half the time down longer than replace-after, so its replicas are replaced.
        let long = self.rng.between(0, 1) == 1;
        let down = if long {
            self.rng.millis(4500, 9000)
        } else {
            self.rng.millis(500, 3000)
        };
        self.counts.agent_kill += 1;
        self.counts.agent_kill_long += u32::from(long);
        self.note(format!("SIGKILL agent {node} for {down:?}"));
        self.c.kill_agent(&node);
        self.faults
            .push((Instant::now() + down, Fault::AgentDown(node)));
    }

    fn partition(&mut self) {
        let nodes: Vec<String> = PROXIED
            .iter()
            .map(|s| s.to_string())
            .filter(|n| !self.faulted(n))
            .collect();
        if nodes.is_empty() {
            return self.scale();
        }
        let node = self.rng.pick(&nodes).clone();
        let long = self.rng.between(0, 1) == 1;
        let cut = if long {
            self.rng.millis(4500, 8000)
        } else {
            self.rng.millis(800, 3000)
        };
        self.counts.partition += 1;
        self.counts.partition_long += u32::from(long);
        self.note(format!("cut {node} off for {cut:?}"));
        self.proxies[&node].cut();
        self.faults.push((Instant::now() + cut, Fault::Cut(node)));
    }

    fn kill_control_plane(&mut self) {
        let down = self.rng.millis(300, 4000);
        self.counts.cp_kill += 1;
        self.note(format!("SIGKILL the control plane for {down:?}"));
        self.c.kill_control_plane();
        self.faults
            .push((Instant::now() + down, Fault::ControlPlaneDown));
    }
}

// ------------------------------------------------------------------ convergence

fn condition_true(obj: &Value, kind: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| json::str_at(c, "/type") == kind && json::str_at(c, "/status") == "True")
}

fn container_env(pod: &PodView, name: &str) -> String {
    pod.raw
        .pointer("/spec/containers/0/env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| json::str_at(e, "/name") == name)
        .map(|e| json::str_at(e, "/value").to_string())
        .unwrap_or_default()
}

/// `Ok` once the cluster matches the spec: every node Ready; db-0..db-(n-1) Running and
/// Ready on Ready nodes, `get sts` READY n/n; the DaemonSet's 4 pods Running, Ready and
/// on template `v{version}`, its status saying so; no pod Terminating.
fn converged(c: &Cluster, replicas: u64, version: u64) -> Result<(), String> {
    let nodes = c.nodes()?;
    let ready: Vec<String> = nodes
        .iter()
        .filter(|n| condition_true(n, "Ready"))
        .map(|n| json::str_at(n, "/metadata/name").to_string())
        .collect();
    if ready.len() != NODES {
        return Err(format!("Ready nodes: {ready:?}"));
    }
    let pods = c.pods(NS)?;
    if let Some(p) = pods.iter().find(|p| p.terminating) {
        return Err(format!("{} still Terminating on {}", p.name, p.node));
    }
    let mut db: Vec<&PodView> = pods.iter().filter(|p| p.name.starts_with("db-")).collect();
    db.sort_by_key(|p| p.name[3..].parse::<u64>().unwrap_or(u64::MAX));
    let names: Vec<&str> = db.iter().map(|p| p.name.as_str()).collect();
    let want: Vec<String> = (0..replicas).map(|k| format!("db-{k}")).collect();
    if names != want {
        return Err(format!("db pods {names:?}, want {want:?}"));
    }
    if let Some(p) = db
        .iter()
        .find(|p| !p.is_running_ready() || !ready.contains(&p.node))
    {
        return Err(format!(
            "not Running+Ready on a Ready node: {}",
            json::summary(&[(*p).clone()])
        ));
    }
    let sts = c.get_json(&["sts", "db", "-n", NS])?;
    let (spec, have) = (
        json::int_at(&sts, "/spec/replicas").unwrap_or(-1),
        json::int_at(&sts, "/status/readyReplicas").unwrap_or(0),
    );
    if spec != replicas as i64 || have != replicas as i64 {
        return Err(format!("sts spec.replicas={spec} readyReplicas={have}"));
    }
    let table = c.run(&["get", "sts", "db", "-n", NS]);
    let table = table.result()?;
    let parsed = twinset_e2e::Table::parse(table);
    let shown = parsed
        .row("db")
        .map(|r| parsed.cell(r, "READY"))
        .unwrap_or_default();
    if shown != format!("{replicas}/{replicas}") {
        return Err(format!("get sts READY {shown:?}: {table}"));
    }
    let ds = c.get_json(&["ds", "nodelog", "-n", NS])?;
    let status = |f: &str| json::int_at(&ds, &format!("/status/{f}")).unwrap_or(-1);
    let generation = json::int_at(&ds, "/metadata/generation").unwrap_or(-2);
    for f in [
        "desiredNumberScheduled",
        "currentNumberScheduled",
        "updatedNumberScheduled",
        "numberReady",
        "numberAvailable",
    ] {
        if status(f) != NODES as i64 {
            return Err(format!("ds {f}={} ({})", status(f), ds["status"]));
        }
    }
    if status("observedGeneration") != generation {
        return Err(format!(
            "ds observedGeneration behind {generation}: {}",
            ds["status"]
        ));
    }
    let mut dsp: Vec<&PodView> = pods
        .iter()
        .filter(|p| p.name.starts_with("nodelog-"))
        .collect();
    dsp.sort_by(|a, b| a.node.cmp(&b.node));
    let on: Vec<&str> = dsp.iter().map(|p| p.node.as_str()).collect();
    let mut all = ready.clone();
    all.sort();
    if on != all {
        return Err(format!(
            "DaemonSet pods on {on:?}, want one on each of {all:?}"
        ));
    }
    let latest = format!("v{version}");
    if let Some(p) = dsp
        .iter()
        .find(|p| !p.is_running_ready() || container_env(p, "VERSION") != latest)
    {
        return Err(format!(
            "DaemonSet pod {} on {} ({}, VERSION={}) is not Running+Ready on {latest}",
            p.name,
            p.node,
            p.phase,
            container_env(p, "VERSION")
        ));
    }
    Ok(())
}

/// Sums the `count` of the events of `reason` in the namespace.
fn event_count(c: &Cluster, reason: &str) -> i64 {
    c.events(NS)
        .unwrap_or_default()
        .iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| json::int_at(e, "/count").unwrap_or(1).max(1))
        .sum()
}

#[test]
fn chaos_kills_and_partitions_under_scaling_and_rollouts_then_converges_with_one_process_per_identity(
) {
    let seed = seed();
    eprintln!("chaos seed: {seed} (replay with TWINSET_CHAOS_SEED={seed})");
    // Failures inside the harness (a restart that does not answer, ...) name it too.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("chaos seed: {seed} (replay with TWINSET_CHAOS_SEED={seed})");
        report(info);
    }));
    let mut rng = Rng(seed);

    let mut c = Cluster::start_with(NODES - PROXIED.len(), options());
    let target: std::net::SocketAddr = c.addr().parse().expect("control plane address");
    let mut proxies = BTreeMap::new();
    for n in PROXIED {
        let p = Proxy::start(target);
        c.spawn_agent_via(n, &format!("https://{}", p.addr()), &AGENT_FLAGS);
        proxies.insert(n.to_string(), p);
    }
    let all: Vec<String> = (1..=NODES).map(|i| format!("node{i}")).collect();
    c.wait_nodes_ready(&all);
    let run = c.test_id().to_string();

    let sampler = Sampler::start(&run);
    let replicas = rng.between(1, 6);
    c.apply(&statefulset(&run, replicas)).ok();
    c.apply(&daemonset(1)).ok();
    c.wait_sts_ready(NS, "db", replicas as usize);
    let watch = c.watch_pods_resuming();

    let mut chaos = Chaos {
        c,
        seed,
        rng,
        proxies,
        faults: Vec::new(),
        counts: Counts::default(),
        replicas,
        ds_version: 1,
        log: Vec::new(),
        began: Instant::now(),
    };
    chaos.note(format!("start: db at {replicas}, DaemonSet at v1"));
    let length = chaos_for();
    let mut next = Instant::now();
    while chaos.began.elapsed() < length {
        chaos.recover(false);
        if let Some(v) = sampler.violation() {
            chaos.fail(&v);
        }
        if let Err(e) = watch.healthy() {
            chaos.fail(&format!("pod watcher: {e}"));
        }
        if Instant::now() >= next {
            chaos.act();
            next = Instant::now() + chaos.rng.millis(1000, 3000);
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // Heal everything and wait for the spec.
    chaos.note("heal everything".into());
    chaos.recover(true);
    let healed = Instant::now();
    let (replicas, version) = (chaos.replicas, chaos.ds_version);
    let outcome = try_wait_for(CONVERGE_WITHIN, || {
        if let Some(v) = sampler.violation() {
            return Ok(Err(v));
        }
        converged(&chaos.c, replicas, version).map(Ok)
    });
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(v)) => chaos.fail(&v),
        Err(state) => chaos.fail(&format!(
            "no convergence within {CONVERGE_WITHIN:?} (db at {replicas}, DaemonSet at v{version}): {state}"
        )),
    }
    let converged_after = healed.elapsed();
    // And it stays there past node-grace + replace-after: nothing still in flight (a
    // restarted agent not yet heard from, a replacement under way) undoes it.
    let steady = Instant::now();
    while steady.elapsed() < STEADY_FOR {
        if let Err(e) = converged(&chaos.c, replicas, version) {
            chaos.fail(&format!(
                "converged after {converged_after:.1?}, then left the spec {:.1?} later: {e}",
                steady.elapsed()
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // No process of the cluster panicked.
    let logs = chaos.c.dir().join("logs");
    for entry in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("panicked at")) {
            chaos.fail(&format!("{}: {line}", entry.path().display()));
        }
    }

    // The machine agrees with the store: one process per replica, of that very pod.
    let pods = chaos.c.pods(NS).unwrap_or_else(|e| chaos.fail(&e));
    let settled = try_wait_for(Duration::from_secs(10), || {
        let scan = scan(&run, &mut BTreeMap::new());
        for p in pods.iter().filter(|p| p.name.starts_with("db-")) {
            match scan.by_name.get(&p.name).map(Vec::as_slice) {
                Some([one]) if one.uid == p.uid => {}
                other => return Err(format!("{} (uid {}): processes {other:?}", p.name, p.uid)),
            }
        }
        match scan
            .by_name
            .keys()
            .find(|n| !pods.iter().any(|p| &&p.name == n))
        {
            Some(extra) => Err(format!("a process of {extra}, which has no pod")),
            None => Ok(()),
        }
    });
    if let Err(e) = settled {
        chaos.fail(&format!("the processes do not match the pods: {e}"));
    }

    let sampled = sampler.finish();
    if let Some(v) = &sampled.violation {
        chaos.fail(v);
    }
    if let Err(e) = watch.healthy() {
        chaos.fail(&format!("pod watcher: {e}"));
    }
    let events = watch.events();
    if let Err(e) = twinset_e2e::watch::identities_unique(&watch.initial(), &events) {
        chaos.fail(&e);
    }
    let gaps = watch.gaps();
    // Identities whose pod changed inside a relist gap: the store's order there was not
    // seen (the sampler still covered the processes).
    let unseen = events
        .iter()
        .filter(|e| {
            e.kind == "RELIST-DELETED" && e.pod.namespace == NS && e.pod.name.starts_with("db-")
        })
        .count();
    let db_pods = events
        .iter()
        .filter(|e| e.kind == "ADDED" && e.pod.namespace == NS && e.pod.name.starts_with("db-"))
        .count();
    let replaced = event_count(&chaos.c, "NodeLost");
    let fenced = event_count(&chaos.c, "Fenced");
    let k = &chaos.counts;
    eprintln!(
        "chaos summary (seed {seed}): {:.0?} of chaos; scale changes {}, DaemonSet updates {}, agent kills {} ({} past replace-after), partitions {} ({} long), control-plane kills {}; CLI retries {}; \
         converged {converged_after:.1?} after healing and stayed {STEADY_FOR:?} (db at {replicas}, DaemonSet v{version}); \
         db pods created {db_pods}, NodeLost replacements {replaced}, Fenced events {fenced}; \
         watcher: {} events, {} resumes, {} relists ({unseen} db pods changed unseen inside them); \
         sampler: {} samples, max {} process(es) per identity, max {} replica processes, {} unconfirmed overlaps, slowest scan {:.1?}",
        length,
        k.scale,
        k.ds_update,
        k.agent_kill,
        k.agent_kill_long,
        k.partition,
        k.partition_long,
        k.cp_kill,
        k.cli_retries,
        events.len(),
        watch.resumes(),
        gaps.len(),
        sampled.samples,
        sampled.max_per_identity,
        sampled.max_total,
        sampled.unconfirmed,
        sampled.slowest_scan,
    );
    assert!(
        sampled.samples > length.as_secs() * 5,
        "chaos seed {seed}: only {} samples in {length:?}",
        sampled.samples
    );
}
