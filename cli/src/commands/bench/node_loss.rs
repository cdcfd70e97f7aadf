//! `twinset bench node-loss`: how long a StatefulSet replica is without a home when its
//! node dies. Against a local cluster (`twinset up -d`, its cluster file found by
//! `--data-dir`, default `~/.twinset/cluster`) with the control plane's and agents'
//! default timings: one replica of a set annotated `twinset.io/on-node-lost: Replace`
//! (with a claim), its node's agent SIGKILLed, and from that instant, timed from the
//! Watch stream: the pod not Ready (the node Unknown), the replacement created, and the
//! replacement Running and Ready on another node. The killed agent is started again
//! (same command line, environment and log) before the next run, and the cluster file
//! updated so `twinset down` stops it.

use super::{ms, running_and_ready, Stats};
use crate::args::BenchArgs;
use crate::client::Client;
use crate::cluster_files::{self, ClusterFile};
use anyhow::{bail, Context};
use futures::StreamExt as _;
use std::path::Path;
use std::time::{Duration, Instant};
use twinset_proto::v1::{ApplyRequest, DeleteRequest, ObjectKey, Pod, WatchRequest};

const NAME: &str = "bench-lost";
const DEFAULT_RUNS: usize = 5;

fn manifest(namespace: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {NAME}
  namespace: {namespace}
  annotations:
    twinset.io/on-node-lost: Replace
spec:
  serviceName: {NAME}
  replicas: 1
  selector:
    matchLabels:
      app: {NAME}
  template:
    metadata:
      labels:
        app: {NAME}
    spec:
      containers:
      - name: main
        image: twinset/sleep:latest
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

fn uid(pod: &Pod) -> &str {
    pod.metadata.as_ref().map_or("", |m| m.uid.as_str())
}

fn node(pod: &Pod) -> &str {
    pod.spec.as_ref().map_or("", |s| s.node_name.as_str())
}

fn armed(pod: &Pod) -> bool {
    twinset_proto::fencing::fence_armed(pod)
}

/// One run's figures, each from the SIGKILL.
struct Run {
    not_ready: Duration,
    created: Duration,
    ready: Duration,
}

/// Runs the scenario.
pub async fn run(client: &mut Client, args: &BenchArgs) -> anyhow::Result<()> {
    let runs = args.runs.unwrap_or(DEFAULT_RUNS);
    if runs == 0 {
        bail!("no runs (--runs 0)");
    }
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => cluster_files::default_data_dir()?,
    };
    let Some(mut file) = cluster_files::read_cluster_file(&data_dir)? else {
        bail!(
            "no local cluster at {} (start one with `twinset up -d`, or pass --data-dir)",
            data_dir.display()
        );
    };
    let ns = args.namespace.clone();
    for obj in twinset_proto::manifest::decode(&manifest(&ns))? {
        client
            .cluster
            .apply(ApplyRequest {
                object: Some(obj),
                dry_run: false,
                create_only: false,
            })
            .await
            .map_err(|s| client.error(s))?;
    }
    println!("node lost → replica Ready elsewhere, {runs} runs, default timings");
    let mut results = Vec::new();
    let mut outcome = Ok(());
    for i in 1..=runs {
        match one(client, &ns, &mut file, args.timeout).await {
            Ok(r) => {
                println!(
                    "run {i}: not Ready {:.0} ms, replacement created {:.0} ms, Ready elsewhere {:.0} ms",
                    ms(r.not_ready),
                    ms(r.created),
                    ms(r.ready)
                );
                results.push(r);
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    let _ = client
        .cluster
        .delete(DeleteRequest {
            key: Some(ObjectKey {
                kind: "StatefulSet".into(),
                namespace: ns.clone(),
                name: NAME.into(),
            }),
            propagation_policy: "Background".into(),
            ..Default::default()
        })
        .await;
    outcome?;
    for (what, pick) in [
        (
            "pod not Ready",
            (|r: &Run| r.not_ready) as fn(&Run) -> Duration,
        ),
        ("replacement created", |r: &Run| r.created),
        ("replica Ready elsewhere", |r: &Run| r.ready),
    ] {
        let samples: Vec<Duration> = results.iter().map(pick).collect();
        if let Some(s) = Stats::of(&samples) {
            println!(
                "{what}: {}, min {:.0} ms, max {:.0} ms",
                s.line(),
                ms(s.min),
                ms(s.max)
            );
        }
    }
    Ok(())
}

/// Waits for the replica Running, Ready and fenced, kills its node's agent, times the
/// replacement, and starts the agent again.
async fn one(
    client: &mut Client,
    ns: &str,
    file: &mut ClusterFile,
    timeout: Duration,
) -> anyhow::Result<Run> {
    let pod_name = format!("{NAME}-0");
    let selector = format!("app={NAME}");
    let listed = super::list(client, "Pod", ns, &selector).await?;
    let ready_now = listed
        .items
        .iter()
        .filter_map(|o| o.as_pod())
        .find(|p| super::pod_name(p) == pod_name && running_and_ready(p) && armed(p))
        .cloned();
    let mut stream = client
        .cluster
        .watch(WatchRequest {
            kind: "Pod".into(),
            namespace: ns.to_string(),
            resource_version: listed.resource_version.clone(),
            label_selector: selector,
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    let deadline = Instant::now() + timeout;
    // The replica Running, Ready and armed (its agent fences it).
    let victim = loop {
        if let Some(p) = &ready_now {
            break p.clone();
        }
        let Some(p) = next_pod(&mut stream, deadline)
            .await
            .context("waiting for the replica")?
        else {
            continue;
        };
        if super::pod_name(&p) == pod_name && running_and_ready(&p) && armed(&p) {
            break p;
        }
    };
    let lost = node(&victim).to_string();
    let old_uid = uid(&victim).to_string();
    let Some(entry) = file.processes.iter().position(|e| e.name == lost) else {
        bail!("node {lost} is not an agent of the cluster file");
    };
    let agent = file.processes[entry].clone();
    let restart = Respawn::read(agent.pid).context("reading the agent's command line")?;

    crate::procs::signal_pid(agent.pid, nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    let mut not_ready = None;
    let mut created = None;
    let ready = loop {
        let Some(p) = next_pod(&mut stream, deadline)
            .await
            .context("waiting for the replacement")?
        else {
            continue;
        };
        if super::pod_name(&p) != pod_name {
            continue;
        }
        if uid(&p) == old_uid {
            if not_ready.is_none() && !running_and_ready(&p) {
                not_ready = Some(killed.elapsed());
            }
            continue;
        }
        created.get_or_insert_with(|| killed.elapsed());
        if running_and_ready(&p) && node(&p) != lost {
            break killed.elapsed();
        }
    };
    let pid = restart.spawn(&agent.log)?;
    file.processes[entry].pid = pid;
    file.processes[entry].start_time = crate::procs::stat(pid).map_or(0, |s| s.start_time);
    cluster_files::write_cluster_file(file)?;
    wait_node_ready(client, &lost, timeout).await?;
    Ok(Run {
        not_ready: not_ready.unwrap_or(ready),
        created: created.unwrap_or(ready),
        ready,
    })
}

/// The next pod event of `stream`, by `deadline`.
async fn next_pod(
    stream: &mut tonic::Streaming<twinset_proto::v1::WatchEvent>,
    deadline: Instant,
) -> anyhow::Result<Option<Pod>> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, stream.next()).await {
        Ok(Some(Ok(ev))) => Ok(ev.object.and_then(|o| o.into_pod())),
        Ok(Some(Err(st))) => bail!("watch: {st}"),
        Ok(None) => bail!("the watch ended"),
        Err(_) => bail!("timed out"),
    }
}

/// Waits until `node` is Ready again (its restarted agent registered).
async fn wait_node_ready(client: &mut Client, node: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let nodes = super::list(client, "Node", "", "").await?;
        let ready = nodes.items.iter().filter_map(|o| o.as_node()).any(|n| {
            n.metadata.as_ref().is_some_and(|m| m.name == node)
                && twinset_control_plane::controllers::node_lifecycle::ready_status(n) == "True"
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("node {node} not Ready again after its agent restarted");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A process's command line, environment and working dir, to start it again.
struct Respawn {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: std::path::PathBuf,
}

impl Respawn {
    fn read(pid: i32) -> anyhow::Result<Respawn> {
        let argv = twinset_node_agent::procfs::cmdline(pid);
        if argv.is_empty() {
            bail!("process {pid} has no command line (is it running?)");
        }
        let env = twinset_node_agent::procfs::environ(pid as u32).unwrap_or_default();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))?;
        Ok(Respawn { argv, env, cwd })
    }

    /// Starts it again in a process group of its own, its output appended to `log`.
    fn spawn(&self, log: &Path) -> anyhow::Result<i32> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = tokio::process::Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .env_clear()
            .envs(self.env.iter().cloned())
            .current_dir(&self.cwd)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {:?} again", self.argv))?;
        let pid = child.id().context("the restarted agent has no pid")? as i32;
        // Reaped here while the bench runs; afterwards it is the init process's.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(pid)
    }
}
