//! The StatefulSet scenarios of `twinset bench`, on sets of instantly ready pods
//! (`twinset/sleep:latest`, no probes, no claims, no service):
//! - `sts-ordered`: OrderedReady, N replicas (default 50). From the Watch stream it
//!   records, for each ordinal i, when pod i was first seen Running and Ready, when pod
//!   i+1 was first seen (ADDED, the object created) and first seen with phase Running
//!   (its process started and reported), and prints the median and p99 of the steps
//!   Ready(i) → Running(i+1) and Ready(i) → created(i+1).
//! - `sts-parallel`: Parallel, N replicas (default 200): apply → every pod Running, as
//!   pods per second (and → every pod Ready).
//!
//! Each run deletes the set afterwards and waits until its pods are gone.

use super::{ms, pod_name, running, running_and_ready, wait_pods_gone, Stats};
use crate::args::BenchArgs;
use crate::client::Client;
use anyhow::{bail, Context};
use futures::StreamExt as _;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use twinset_proto::v1::{
    ApplyRequest, Container, DeleteRequest, GetRequest, LabelSelector, ListRequest, Object,
    ObjectKey, ObjectMeta, PodSpec, PodTemplateSpec, StatefulSet, StatefulSetSpec, WatchRequest,
};

/// The image of the pods: a process that runs until stopped (deploy/images.yaml).
pub const IMAGE: &str = "twinset/sleep:latest";
/// The set of `sts-ordered`.
const ORDERED_NAME: &str = "bench-ordered";
/// The set of `sts-parallel`.
const PARALLEL_NAME: &str = "bench-parallel";
/// Replicas of `sts-ordered` when `--replicas` is not given.
const ORDERED_REPLICAS: u32 = 50;
/// Replicas of `sts-parallel` when `--replicas` is not given.
const PARALLEL_REPLICAS: u32 = 200;
/// Runs when `--runs` is not given.
const DEFAULT_RUNS: usize = 1;
/// How long clean-up may take (delete → pods gone).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

/// The StatefulSet a scenario applies: `replicas` pods of [`IMAGE`] under `policy`
/// (OrderedReady or Parallel), labelled `app=<name>`, a 1 s grace period so clean-up
/// is quick.
pub fn bench_set(name: &str, namespace: &str, replicas: u32, policy: &str) -> Object {
    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), name.to_string());
    Object::from(StatefulSet {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: namespace.into(),
            ..Default::default()
        }),
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: Some(LabelSelector {
                match_labels: labels.clone(),
                match_expressions: Vec::new(),
            }),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "sleep".into(),
                        image: IMAGE.into(),
                        ..Default::default()
                    }],
                    termination_grace_period_seconds: Some(1),
                    ..Default::default()
                }),
            }),
            pod_management_policy: policy.into(),
            ..Default::default()
        }),
        status: None,
    })
}

/// The ordinal of pod `pod` of set `set` (`<set>-<ordinal>`).
fn ordinal(set: &str, pod: &str) -> Option<usize> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// When each pod was first seen in each state, indexed by ordinal.
#[derive(Debug, Clone, Default)]
struct Timeline {
    created: Vec<Option<Instant>>,
    bound: Vec<Option<Instant>>,
    running: Vec<Option<Instant>>,
    ready: Vec<Option<Instant>>,
}

impl Timeline {
    fn new(n: usize) -> Self {
        Self {
            created: vec![None; n],
            bound: vec![None; n],
            running: vec![None; n],
            ready: vec![None; n],
        }
    }

    /// Records one watch event about pod `i` seen at `at`.
    fn see(&mut self, i: usize, event_type: &str, pod: &twinset_proto::v1::Pod, at: Instant) {
        if i >= self.created.len() || event_type == "DELETED" {
            return;
        }
        self.created[i].get_or_insert(at);
        if pod.spec.as_ref().is_some_and(|s| !s.node_name.is_empty()) {
            self.bound[i].get_or_insert(at);
        }
        if running(pod) {
            self.running[i].get_or_insert(at);
        }
        if running_and_ready(pod) {
            self.ready[i].get_or_insert(at);
        }
    }

    fn count(v: &[Option<Instant>]) -> usize {
        v.iter().filter(|t| t.is_some()).count()
    }

    /// The steps `from[i]` → `to[i+1]` for every i where both are known; a step that
    /// went backwards (which OrderedReady forbids) counts as zero.
    fn steps(from: &[Option<Instant>], to: &[Option<Instant>]) -> Vec<Duration> {
        from.iter()
            .zip(to.iter().skip(1))
            .filter_map(|(a, b)| Some(b.as_ref()?.saturating_duration_since(*a.as_ref()?)))
            .collect()
    }
}

/// Deletes a set left over from an interrupted run and waits for its pods to go.
async fn remove_leftover(client: &mut Client, ns: &str, name: &str) -> anyhow::Result<()> {
    let key = ObjectKey {
        kind: "StatefulSet".into(),
        namespace: ns.to_string(),
        name: name.to_string(),
    };
    let exists = match client.cluster.get(GetRequest { key: Some(key) }).await {
        Ok(r) => r.into_inner().object.is_some(),
        Err(s) if s.code() == tonic::Code::NotFound => false,
        Err(s) => return Err(client.error(s)),
    };
    if exists {
        eprintln!("deleting statefulset {ns}/{name} left from an earlier run");
        delete_set(client, ns, name).await?;
    }
    Ok(())
}

/// Deletes the set (its pods go with it) and waits until they are gone.
async fn delete_set(client: &mut Client, ns: &str, name: &str) -> anyhow::Result<()> {
    let req = DeleteRequest {
        key: Some(ObjectKey {
            kind: "StatefulSet".into(),
            namespace: ns.to_string(),
            name: name.to_string(),
        }),
        propagation_policy: "Background".into(),
        grace_period_seconds: None,
    };
    match client.cluster.delete(req).await {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::NotFound => {}
        Err(s) => return Err(client.error(s)),
    }
    wait_pods_gone(client, ns, &format!("app={name}"), CLEANUP_TIMEOUT).await
}

/// Starts watching the set's pods from now, then applies the set; returns the stream
/// and the instant just before Apply.
async fn watch_and_apply(
    client: &mut Client,
    set: &Object,
) -> anyhow::Result<(tonic::Streaming<twinset_proto::v1::WatchEvent>, Instant)> {
    let ns = set.namespace().to_string();
    let selector = format!("app={}", set.name());
    let rv = client
        .cluster
        .list(ListRequest {
            kind: "Pod".into(),
            namespace: ns.clone(),
            label_selector: selector.clone(),
            ..Default::default()
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .resource_version;
    let watch = client
        .cluster
        .watch(WatchRequest {
            kind: "Pod".into(),
            namespace: ns,
            label_selector: selector,
            resource_version: rv,
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    let start = Instant::now();
    client
        .cluster
        .apply(ApplyRequest {
            object: Some(set.clone()),
            dry_run: false,
            create_only: false,
        })
        .await
        .map_err(|s| client.error(s))?;
    Ok((watch, start))
}

/// Follows the watch until `done(timeline)` holds, recording every pod event.
async fn follow(
    client: &Client,
    watch: &mut tonic::Streaming<twinset_proto::v1::WatchEvent>,
    set: &str,
    timeline: &mut Timeline,
    deadline: tokio::time::Instant,
    done: impl Fn(&Timeline) -> bool,
) -> anyhow::Result<()> {
    while !done(timeline) {
        let ev = match tokio::time::timeout_at(deadline, watch.next()).await {
            Ok(Some(item)) => item.map_err(|s| client.error(s))?,
            Ok(None) => bail!("the watch ended"),
            Err(_) => bail!(
                "timed out: {} of {} pods created, {} Running, {} Ready",
                Timeline::count(&timeline.created),
                timeline.created.len(),
                Timeline::count(&timeline.running),
                Timeline::count(&timeline.ready)
            ),
        };
        let at = Instant::now();
        let Some(pod) = ev.object.and_then(|o| o.into_pod()) else {
            continue;
        };
        if let Some(i) = ordinal(set, pod_name(&pod)) {
            timeline.see(i, &ev.r#type, &pod, at);
        }
    }
    Ok(())
}

fn replicas(args: &BenchArgs, default: u32) -> anyhow::Result<u32> {
    let n = args.replicas.unwrap_or(default);
    if n == 0 {
        bail!("--replicas must be at least 1");
    }
    Ok(n)
}

/// `bench sts-ordered`.
pub async fn ordered(client: &mut Client, args: &BenchArgs) -> anyhow::Result<()> {
    let n = replicas(args, ORDERED_REPLICAS)?;
    if n < 2 {
        bail!("sts-ordered needs --replicas of at least 2 (it measures steps between ordinals)");
    }
    let ns = args.namespace.clone();
    let set = bench_set(ORDERED_NAME, &ns, n, "OrderedReady");
    remove_leftover(client, &ns, ORDERED_NAME).await?;
    let (mut to_running, mut to_created, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    let runs = args.runs.unwrap_or(DEFAULT_RUNS);
    for run in 1..=runs {
        let (mut watch, start) = watch_and_apply(client, &set).await?;
        let deadline = tokio::time::Instant::now() + args.timeout;
        let mut t = Timeline::new(n as usize);
        let result = follow(client, &mut watch, ORDERED_NAME, &mut t, deadline, |t| {
            t.ready.iter().all(Option::is_some)
        })
        .await;
        drop(watch);
        let cleanup = delete_set(client, &ns, ORDERED_NAME).await;
        result.with_context(|| format!("run {run}"))?;
        cleanup?;
        let total = t
            .ready
            .iter()
            .flatten()
            .max()
            .map(|last| last.saturating_duration_since(start))
            .unwrap_or_default();
        let running_steps = Timeline::steps(&t.ready, &t.running);
        let created_steps = Timeline::steps(&t.ready, &t.created);
        println!(
            "run {run}: apply -> {n} pods Running+Ready in {:.1} ms; Ready(i) -> Running(i+1): {}; Ready(i) -> created(i+1): {}",
            ms(total),
            Stats::of(&running_steps).map(|s| s.line()).unwrap_or_default(),
            Stats::of(&created_steps).map(|s| s.line()).unwrap_or_default(),
        );
        totals.push(total);
        to_running.extend(running_steps);
        to_created.extend(created_steps);
    }
    let (Some(r), Some(c), Some(tot)) = (
        Stats::of(&to_running),
        Stats::of(&to_created),
        Stats::of(&totals),
    ) else {
        bail!("no runs (--runs 0)");
    };
    println!(
        "OrderedReady step over {runs} run(s) of {n} replicas: pod i Ready -> pod i+1 Running: {}, max {:.1} ms; pod i Ready -> pod i+1 created: {}; apply -> all Ready: median {:.1} ms",
        r.line(),
        ms(r.max),
        c.line(),
        ms(tot.median),
    );
    Ok(())
}

/// `bench sts-parallel`.
pub async fn parallel(client: &mut Client, args: &BenchArgs) -> anyhow::Result<()> {
    let n = replicas(args, PARALLEL_REPLICAS)?;
    let ns = args.namespace.clone();
    let set = bench_set(PARALLEL_NAME, &ns, n, "Parallel");
    remove_leftover(client, &ns, PARALLEL_NAME).await?;
    let mut rates = Vec::new();
    let runs = args.runs.unwrap_or(DEFAULT_RUNS);
    for run in 1..=runs {
        let (mut watch, start) = watch_and_apply(client, &set).await?;
        let deadline = tokio::time::Instant::now() + args.timeout;
        let mut t = Timeline::new(n as usize);
        let result = async {
            follow(client, &mut watch, PARALLEL_NAME, &mut t, deadline, |t| {
                t.running.iter().all(Option::is_some)
            })
            .await?;
            let all_running = start.elapsed();
            follow(client, &mut watch, PARALLEL_NAME, &mut t, deadline, |t| {
                t.ready.iter().all(Option::is_some)
            })
            .await?;
            anyhow::Ok((all_running, start.elapsed()))
        }
        .await;
        drop(watch);
        let cleanup = delete_set(client, &ns, PARALLEL_NAME).await;
        let (all_running, all_ready) = result.with_context(|| format!("run {run}"))?;
        cleanup?;
        let rate = f64::from(n) / all_running.as_secs_f64().max(f64::EPSILON);
        // Where the time goes: the control plane's part (objects created, pods bound to
        // nodes) and the agents' part (processes started and reported Running).
        let last = |v: &[Option<Instant>]| {
            v.iter()
                .flatten()
                .max()
                .map_or(0.0, |t| ms(t.saturating_duration_since(start)))
        };
        println!(
            "run {run}: apply -> {n} pods Running in {:.1} ms ({rate:.0} pods/s); all Ready in {:.1} ms; last pod created at {:.1} ms, last bound at {:.1} ms",
            ms(all_running),
            ms(all_ready),
            last(&t.created),
            last(&t.bound)
        );
        rates.push(rate);
    }
    if rates.is_empty() {
        bail!("no runs (--runs 0)");
    }
    rates.sort_by(f64::total_cmp);
    let median = if rates.len() % 2 == 1 {
        rates[rates.len() / 2]
    } else {
        (rates[rates.len() / 2 - 1] + rates[rates.len() / 2]) / 2.0
    };
    println!(
        "Parallel over {} run(s) of {n} replicas: apply -> all Running: median {median:.0} pods/s, min {:.0}, max {:.0}",
        rates.len(),
        rates[0],
        rates[rates.len() - 1]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{Pod, PodCondition, PodStatus};

    #[test]
    fn ordinals_of_the_set_only() {
        assert_eq!(ordinal("bench-ordered", "bench-ordered-12"), Some(12));
        assert_eq!(ordinal("bench-ordered", "bench-ordered-x"), None);
        assert_eq!(ordinal("bench", "bench-ordered-1"), None);
        assert_eq!(ordinal("bench-ordered", "other-1"), None);
    }

    #[test]
    fn set_is_valid_and_as_asked() -> anyhow::Result<()> {
        let set = bench_set("bench-ordered", "default", 50, "OrderedReady");
        twinset_proto::validate::validate(&set)?;
        let spec = set
            .as_stateful_set()
            .and_then(|s| s.spec.clone())
            .unwrap_or_default();
        assert_eq!(spec.replicas, Some(50));
        assert_eq!(spec.pod_management_policy, "OrderedReady");
        assert!(spec.service_name.is_empty());
        assert!(spec.volume_claim_templates.is_empty());
        Ok(())
    }

    fn pod(phase: &str, ready: bool) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: phase.into(),
                conditions: vec![PodCondition {
                    r#type: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn timeline_keeps_first_sightings_and_measures_steps() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Timeline::new(3);
        t.see(0, "ADDED", &pod("Pending", false), at(0));
        t.see(0, "MODIFIED", &pod("Running", false), at(5));
        t.see(0, "MODIFIED", &pod("Running", true), at(6));
        t.see(1, "ADDED", &pod("Pending", false), at(8));
        t.see(1, "MODIFIED", &pod("Running", true), at(16));
        t.see(1, "MODIFIED", &pod("Running", true), at(30));
        t.see(2, "DELETED", &pod("Running", true), at(31));
        t.see(7, "ADDED", &pod("Running", true), at(31));
        assert_eq!(t.ready[1], Some(at(16)));
        assert_eq!(t.created[2], None);
        assert_eq!(
            Timeline::steps(&t.ready, &t.running),
            vec![Duration::from_millis(10)]
        );
        assert_eq!(
            Timeline::steps(&t.ready, &t.created),
            vec![Duration::from_millis(2)]
        );
        t.see(2, "ADDED", &pod("Running", true), at(40));
        assert_eq!(
            Timeline::steps(&t.ready, &t.running),
            vec![Duration::from_millis(10), Duration::from_millis(24)]
        );
    }
}
