//! `twinset bench daemonset`: the time from Apply to every daemon pod Running and
//! Ready, seen through the Watch stream.

use super::{ms, running_and_ready};
use crate::args::BenchArgs;
use crate::client::Client;
use anyhow::{bail, Context};
use futures::StreamExt as _;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use twinset_proto::v1::{ApplyRequest, DeleteRequest, ListRequest, ObjectKey, Pod, WatchRequest};

/// How many runs when `--runs` is not given.
const DEFAULT_RUNS: usize = 10;

/// Runs the scenario and prints one line per run and a summary.
pub async fn run(client: &mut Client, args: &BenchArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.filename)
        .with_context(|| format!("reading {}", args.filename))?;
    let objects = crate::manifests::decode(&args.filename, &text)?;
    let ds = match objects.as_slice() {
        [o] if o.as_daemon_set().is_some() => o.clone(),
        _ => bail!("{}: expected exactly one DaemonSet", args.filename),
    };
    let (namespace, name) = (ds.namespace().to_string(), ds.name().to_string());
    let ns = if namespace.is_empty() {
        "default".to_string()
    } else {
        namespace
    };

    let nodes = super::node_count(client).await?;

    let mut times = Vec::new();
    for run in 1..=args.runs.unwrap_or(DEFAULT_RUNS) {
        let owned = |p: &Pod| {
            p.metadata
                .as_ref()
                .is_some_and(|m| m.name.starts_with(&format!("{name}-")))
        };
        let rv = client
            .cluster
            .list(ListRequest {
                kind: "Pod".into(),
                namespace: ns.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| client.error(s))?
            .into_inner()
            .resource_version;
        let mut watch = client
            .cluster
            .watch(WatchRequest {
                kind: "Pod".into(),
                namespace: ns.clone(),
                resource_version: rv,
                ..Default::default()
            })
            .await
            .map_err(|s| client.error(s))?
            .into_inner();

        let start = Instant::now();
        client
            .cluster
            .apply(ApplyRequest {
                object: Some(ds.clone()),
                dry_run: false,
                create_only: false,
            })
            .await
            .map_err(|s| client.error(s))?;
        let mut ready = BTreeSet::new();
        while ready.len() < nodes {
            let ev = tokio::time::timeout(Duration::from_secs(60), watch.next())
                .await
                .context("no pod became Ready within 60 s")?
                .context("the watch ended")?
                .map_err(|s| client.error(s))?;
            let Some(pod) = ev.object.and_then(|o| o.into_pod()) else {
                continue;
            };
            if !owned(&pod) {
                continue;
            }
            let pod_name = pod
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            if ev.r#type != "DELETED" && running_and_ready(&pod) {
                ready.insert(pod_name);
            } else {
                ready.remove(&pod_name);
            }
        }
        let took = start.elapsed();
        println!("run {run}: {:.1} ms", took.as_secs_f64() * 1000.0);
        times.push(took);

        client
            .cluster
            .delete(DeleteRequest {
                key: Some(ObjectKey {
                    kind: "DaemonSet".into(),
                    namespace: ns.clone(),
                    name: name.clone(),
                }),
                propagation_policy: "Background".into(),
                grace_period_seconds: None,
            })
            .await
            .map_err(|s| client.error(s))?;
        // Wait until the set's pods are gone before the next run.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = client
                .cluster
                .list(ListRequest {
                    kind: "Pod".into(),
                    namespace: ns.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|s| client.error(s))?
                .into_inner()
                .items
                .into_iter()
                .filter_map(|o| o.into_pod())
                .filter(|p| owned(p))
                .count();
            if left == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("{left} pod(s) of {name} still present 60 s after the delete");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if times.is_empty() {
        bail!("no runs (--runs 0)");
    }
    times.sort();
    let median = if times.len() % 2 == 1 {
        ms(times[times.len() / 2])
    } else {
        (ms(times[times.len() / 2 - 1]) + ms(times[times.len() / 2])) / 2.0
    };
    println!(
        "apply -> {nodes} daemon pods Running+Ready over {} runs: median {median:.1} ms, min {:.1} ms, max {:.1} ms",
        times.len(),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    Ok(())
}
