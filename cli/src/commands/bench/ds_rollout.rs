//! `twinset bench ds-rollout`: a DaemonSet rolling update of an instantly ready daemon
//! (`twinset/sleep:latest`) across every node, at `--max-unavailable` (default 10 %).
//! Timed from the Watch stream: the total (apply of the new template → every node runs
//! a Ready pod of it and no old pod is left), and the controller's overhead — the time
//! during which no node had work in flight (an old pod being stopped: deletion asked →
//! pod gone; a new pod starting: created → Ready), i.e. the rollout waited on the control
//! plane (the controller reacting, the store committing, the watch delivering) — divided
//! by the number of nodes.

use super::{list, ms, node_count, running_and_ready, wait_pods_gone, Stats};
use crate::args::BenchArgs;
use crate::client::Client;
use anyhow::{bail, Context};
use futures::StreamExt as _;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use twinset_proto::v1::{
    ApplyRequest, Container, DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, DeleteRequest,
    EnvVar, IntOrString, LabelSelector, Object, ObjectKey, ObjectMeta, Pod, PodSpec,
    PodTemplateSpec, RollingUpdateDaemonSet, WatchRequest,
};

/// The set the scenario rolls.
const NAME: &str = "bench-rollout";
/// Runs when `--runs` is not given.
const DEFAULT_RUNS: usize = 3;
/// The label the controller writes the template hash into.
const HASH_LABEL: &str = "controller-revision-hash";

/// The DaemonSet at template `version` (an env value), rolled at `max_unavailable`.
fn bench_daemon_set(namespace: &str, version: usize, max_unavailable: &str) -> Object {
    let labels: BTreeMap<String, String> = [("app".to_string(), NAME.to_string())].into();
    let max_unavailable = match max_unavailable.parse::<i32>() {
        Ok(n) => IntOrString::int(n),
        Err(_) => IntOrString::string(max_unavailable),
    };
    Object::from(DaemonSet {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        metadata: Some(ObjectMeta {
            name: NAME.into(),
            namespace: namespace.into(),
            ..Default::default()
        }),
        spec: Some(DaemonSetSpec {
            selector: Some(LabelSelector {
                match_labels: labels.clone(),
                match_expressions: Vec::new(),
            }),
            update_strategy: Some(DaemonSetUpdateStrategy {
                r#type: "RollingUpdate".into(),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(max_unavailable),
                    max_surge: None,
                }),
            }),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    termination_grace_period_seconds: Some(1),
                    containers: vec![Container {
                        name: "main".into(),
                        image: super::statefulset::IMAGE.into(),
                        env: vec![EnvVar {
                            name: "VERSION".into(),
                            value: version.to_string(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    })
}

/// One node's work in a rollout, as instants seen on the watch.
#[derive(Debug, Default, Clone)]
struct NodeTimes {
    /// The old pod's deletion was asked (deletionTimestamp first seen).
    stop_asked: Option<Instant>,
    /// The old pod was gone (DELETED).
    stopped: Option<Instant>,
    /// The new pod was created (ADDED).
    created: Option<Instant>,
    /// The new pod was first seen Running and Ready.
    ready: Option<Instant>,
}

/// What one run measured.
#[derive(Debug)]
struct RunFigures {
    total: Duration,
    overhead: Duration,
    /// Per node: stop (asked → gone) plus start (created → Ready).
    node_work: Vec<Duration>,
}

/// The length of the union of `intervals` that lies within [`from`, `to`].
fn covered(mut intervals: Vec<(Instant, Instant)>, from: Instant, to: Instant) -> Duration {
    intervals.sort();
    let mut total = Duration::ZERO;
    let mut cursor = from;
    for (a, b) in intervals {
        let (a, b) = (a.max(cursor), b.min(to));
        if b > a {
            total += b - a;
            cursor = b;
        }
    }
    total
}

/// Runs the scenario and prints one line per run and a summary.
pub async fn run(client: &mut Client, args: &BenchArgs) -> anyhow::Result<()> {
    let ns = args.namespace.clone();
    let nodes = node_count(client).await?;
    let runs = args.runs.unwrap_or(DEFAULT_RUNS);
    if runs == 0 {
        bail!("no runs (--runs 0)");
    }
    let apply = |version: usize| ApplyRequest {
        object: Some(bench_daemon_set(&ns, version, &args.max_unavailable)),
        dry_run: false,
        create_only: false,
    };
    println!(
        "DaemonSet rolling update of {nodes} nodes, maxUnavailable {}",
        args.max_unavailable
    );
    client
        .cluster
        .apply(apply(0))
        .await
        .map_err(|s| client.error(s))?;
    let result = measure(client, args, &ns, nodes, runs, &apply).await;
    client
        .cluster
        .delete(DeleteRequest {
            key: Some(ObjectKey {
                kind: "DaemonSet".into(),
                namespace: ns.clone(),
                name: NAME.into(),
            }),
            propagation_policy: "Background".into(),
            grace_period_seconds: None,
        })
        .await
        .map_err(|s| client.error(s))?;
    wait_pods_gone(client, &ns, &format!("app={NAME}"), args.timeout).await?;
    let figures = result?;
    let totals: Vec<Duration> = figures.iter().map(|f| f.total).collect();
    let per_node: Vec<Duration> = figures
        .iter()
        .map(|f| f.overhead / u32::try_from(nodes).unwrap_or(u32::MAX))
        .collect();
    let work: Vec<Duration> = figures.iter().flat_map(|f| f.node_work.clone()).collect();
    if let (Some(t), Some(o), Some(w)) =
        (Stats::of(&totals), Stats::of(&per_node), Stats::of(&work))
    {
        println!("total rollout: {}", t.line());
        println!("controller overhead per node: {}", o.line());
        println!("node work per node (stop + start): {}", w.line());
    }
    Ok(())
}

/// Waits for the first template everywhere, then rolls `runs` times.
async fn measure(
    client: &mut Client,
    args: &BenchArgs,
    ns: &str,
    nodes: usize,
    runs: usize,
    apply: &dyn Fn(usize) -> ApplyRequest,
) -> anyhow::Result<Vec<RunFigures>> {
    let mut figures = Vec::new();
    let mut hash = settled(client, ns, nodes, None, args.timeout).await?;
    for run in 1..=runs {
        let rv = list(client, "Pod", ns, &format!("app={NAME}"))
            .await?
            .resource_version;
        let mut watch = client
            .cluster
            .watch(WatchRequest {
                kind: "Pod".into(),
                namespace: ns.to_string(),
                resource_version: rv,
                label_selector: format!("app={NAME}"),
            })
            .await
            .map_err(|s| client.error(s))?
            .into_inner();
        let start = Instant::now();
        client
            .cluster
            .apply(apply(run))
            .await
            .map_err(|s| client.error(s))?;
        // Pods by name: (node, template hash, seen Ready, terminating).
        let mut live: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut ready_new: BTreeSet<String> = BTreeSet::new();
        let mut times: BTreeMap<String, NodeTimes> = BTreeMap::new();
        let deadline = start + args.timeout;
        let end = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = tokio::time::timeout(left, watch.next())
                .await
                .with_context(|| format!("run {run}: the rollout did not finish in time"))?
                .context("the watch ended")?
                .map_err(|s| client.error(s))?;
            let at = Instant::now();
            let Some(pod) = ev.object.and_then(|o| o.into_pod()) else {
                continue;
            };
            let (name, node, pod_hash, terminating) = describe(&pod);
            let t = times.entry(node.clone()).or_default();
            let new = pod_hash != hash;
            match ev.r#type.as_str() {
                "DELETED" => {
                    live.remove(&name);
                    ready_new.remove(&name);
                    if !new {
                        t.stopped.get_or_insert(at);
                    }
                }
                kind => {
                    if new && kind == "ADDED" {
                        t.created.get_or_insert(at);
                    }
                    if !new && terminating {
                        t.stop_asked.get_or_insert(at);
                    }
                    if new && running_and_ready(&pod) && !terminating {
                        t.ready.get_or_insert(at);
                        ready_new.insert(name.clone());
                    }
                    live.insert(name, (node, pod_hash));
                }
            }
            let old_left = live.values().any(|(_, h)| *h == hash);
            if ready_new.len() >= nodes && !old_left {
                break at;
            }
        };
        let total = end - start;
        let mut busy = Vec::new();
        let mut node_work = Vec::new();
        for (node, t) in &times {
            let (Some(a), Some(b), Some(c), Some(d)) =
                (t.stop_asked, t.stopped, t.created, t.ready)
            else {
                bail!("run {run}: node {node} was not seen through every step: {t:?}");
            };
            busy.push((a, b));
            busy.push((c, d));
            node_work.push((b - a) + (d - c));
        }
        let overhead = total.saturating_sub(covered(busy, start, end));
        println!(
            "run {run}: total {:.1} ms, controller overhead {:.1} ms ({:.1} ms per node)",
            ms(total),
            ms(overhead),
            ms(overhead / u32::try_from(nodes).unwrap_or(u32::MAX))
        );
        figures.push(RunFigures {
            total,
            overhead,
            node_work,
        });
        hash = settled(client, ns, nodes, Some(&hash), args.timeout).await?;
    }
    Ok(figures)
}

/// (name, node, template hash, terminating) of a pod.
fn describe(pod: &Pod) -> (String, String, String, bool) {
    let m = pod.metadata.clone().unwrap_or_default();
    (
        m.name,
        pod.spec
            .as_ref()
            .map(|s| s.node_name.clone())
            .unwrap_or_default(),
        m.labels.get(HASH_LABEL).cloned().unwrap_or_default(),
        !m.deletion_timestamp.is_empty(),
    )
}

/// Waits until `nodes` Ready pods of one template (not `old`) run and no other pod is
/// left; returns that template's hash.
async fn settled(
    client: &mut Client,
    ns: &str,
    nodes: usize,
    old: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let pods: Vec<Pod> = list(client, "Pod", ns, &format!("app={NAME}"))
            .await?
            .items
            .into_iter()
            .filter_map(|o| o.into_pod())
            .collect();
        let hashes: BTreeSet<String> = pods.iter().map(|p| describe(p).2).collect();
        if pods.len() == nodes && pods.iter().all(running_and_ready) && hashes.len() == 1 {
            if let Some(h) = hashes
                .into_iter()
                .next()
                .filter(|h| Some(h.as_str()) != old)
            {
                return Ok(h);
            }
        }
        if Instant::now() > deadline {
            bail!("{NAME} did not settle on {nodes} Ready pods of one template in time");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_time_is_the_union_within_the_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let spans = vec![
            (at(10), at(30)),
            (at(20), at(40)),
            (at(50), at(60)),
            (at(90), at(200)),
        ];
        assert_eq!(covered(spans, at(0), at(100)), Duration::from_millis(50));
        assert_eq!(covered(Vec::new(), at(0), at(100)), Duration::ZERO);
    }

    #[test]
    fn the_set_takes_an_int_or_a_percentage() {
        let pct = bench_daemon_set("default", 1, "10%");
        let int = bench_daemon_set("default", 1, "2");
        let max = |o: &Object| {
            o.as_daemon_set()
                .and_then(|d| d.spec.clone())
                .and_then(|s| s.update_strategy)
                .and_then(|u| u.rolling_update)
                .and_then(|r| r.max_unavailable)
        };
        assert_eq!(max(&pct), Some(IntOrString::string("10%")));
        assert_eq!(max(&int), Some(IntOrString::int(2)));
    }
}
