//! `twinset bench SCENARIO`: repeatable measurements against a running cluster
//! (`twinset up -d`), timed from the Watch stream rather than by polling, so the
//! figures are the cluster's latency and not the client's. Scenarios:
//! - `daemonset`: apply → every daemon pod Running and Ready ([`daemonset`]);
//! - `sts-ordered`: the OrderedReady per-ordinal step of a StatefulSet ([`statefulset`]);
//! - `sts-parallel`: a Parallel StatefulSet, apply → every pod Running ([`statefulset`]);
//! - `writes`: durable writes/s and latency by client count, with and without idle and
//!   stalled watchers ([`writes`]);
//! - `pod-network`: the bridge pod network's per-pod setup and teardown, on this machine
//!   in a network namespace of its own, no cluster needed ([`podnet`]);
//! - `ds-rollout`: a DaemonSet rolling update across every node, its total time and the
//!   controller's overhead per node ([`ds_rollout`]);
//! - `node-loss`: a `Replace` StatefulSet replica's node SIGKILLed → the replica Ready
//!   on another node ([`node_loss`]);
//! - `rest`: the Kubernetes REST API beside gRPC on the same port — a Table list of
//!   1000 pods as kubectl asks for it and a watch delivering 1000 events ([`rest`]).

mod daemonset;
mod ds_rollout;
mod node_loss;
mod podnet;
mod rest;
mod statefulset;
mod writes;

use crate::args::BenchArgs;
use crate::client::Client;
use crate::commands::Ctx;
use anyhow::bail;
use std::time::{Duration, Instant};
use twinset_proto::v1::{ListRequest, Pod};

/// The scenarios `bench` knows, as the user names them.
pub const SCENARIOS: &[&str] = &[
    "daemonset",
    "ds-rollout",
    "sts-ordered",
    "sts-parallel",
    "writes",
    "pod-network",
    "rest",
    "node-loss",
];

/// Runs the chosen scenario and prints one line per run and a summary.
pub async fn run(ctx: &Ctx, args: BenchArgs) -> anyhow::Result<()> {
    if !SCENARIOS.contains(&args.scenario.as_str()) {
        bail!(
            "unknown bench scenario {:?} (available: {})",
            args.scenario,
            SCENARIOS.join(", ")
        );
    }
    if args.scenario == "pod-network" {
        return podnet::run(&args);
    }
    let mut client = ctx.client().await?;
    match args.scenario.as_str() {
        "daemonset" => daemonset::run(&mut client, &args).await,
        "ds-rollout" => ds_rollout::run(&mut client, &args).await,
        "sts-ordered" => statefulset::ordered(&mut client, &args).await,
        "writes" => writes::run(&mut client, &args).await,
        "rest" => rest::run(&mut client, &args).await,
        "node-loss" => node_loss::run(&mut client, &args).await,
        _ => statefulset::parallel(&mut client, &args).await,
    }
}

/// How many nodes the cluster has (an error when none: nothing would run).
async fn node_count(client: &mut Client) -> anyhow::Result<usize> {
    let nodes = list(client, "Node", "", "").await?.items.len();
    if nodes == 0 {
        bail!("the cluster has no nodes");
    }
    Ok(nodes)
}

/// One List call (`selector` a label selector, "" for all).
async fn list(
    client: &mut Client,
    kind: &str,
    namespace: &str,
    selector: &str,
) -> anyhow::Result<twinset_proto::v1::ListResponse> {
    Ok(client
        .cluster
        .list(ListRequest {
            kind: kind.into(),
            namespace: namespace.to_string(),
            label_selector: selector.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner())
}

/// Whether a pod is Running with condition Ready=True.
fn running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase == "Running"
            && s.conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

/// Whether a pod reports phase Running (its process has started).
fn running(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| s.phase == "Running")
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("")
}

/// Milliseconds, for printing.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Summary statistics of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stats {
    /// How many samples.
    n: usize,
    /// The median (mean of the middle two for an even count).
    median: Duration,
    /// The 99th percentile, nearest rank.
    p99: Duration,
    /// The smallest sample.
    min: Duration,
    /// The largest sample.
    max: Duration,
}

impl Stats {
    /// The statistics of `samples`; None when there are none.
    fn of(samples: &[Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort();
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2
        };
        // Nearest rank: the smallest sample with at least 99% of the samples at or below it.
        let rank = (n * 99).div_ceil(100).max(1);
        Some(Self {
            n,
            median,
            p99: s[rank - 1],
            min: s[0],
            max: s[n - 1],
        })
    }

    /// `median 1.2 ms, p99 3.4 ms (n=49)`.
    fn line(&self) -> String {
        format!(
            "median {:.1} ms, p99 {:.1} ms (n={})",
            ms(self.median),
            ms(self.p99),
            self.n
        )
    }
}

/// Waits until no pod in `ns` matches `selector`, polling the list (the bench's
/// clean-up between runs, not part of any figure).
async fn wait_pods_gone(
    client: &mut Client,
    ns: &str,
    selector: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = client
            .cluster
            .list(ListRequest {
                kind: "Pod".into(),
                namespace: ns.to_string(),
                label_selector: selector.to_string(),
                ..Default::default()
            })
            .await
            .map_err(|s| client.error(s))?
            .into_inner()
            .items
            .len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{left} pod(s) matching {selector} still present {} s after the delete",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn stats_median_and_nearest_rank_p99() {
        assert_eq!(Stats::of(&[]), None);
        let one = Stats::of(&[d(5)]);
        assert_eq!(one.map(|s| (s.median, s.p99)), Some((d(5), d(5))));
        let s = Stats::of(&[d(4), d(1), d(3), d(2)]);
        assert_eq!(
            s.map(|s| (s.median, s.p99, s.min, s.max)),
            Some((d(2) + d(1) / 2, d(4), d(1), d(4)))
        );
        // 200 samples 1..=200 ms: rank ceil(0.99 * 200) = 198.
        let many: Vec<Duration> = (1..=200).map(d).collect();
        let s = Stats::of(&many);
        assert_eq!(s.map(|s| s.p99), Some(d(198)));
        assert_eq!(
            s.map(|s| s.line()).as_deref(),
            Some("median 100.5 ms, p99 198.0 ms (n=200)")
        );
    }

    #[test]
    fn unknown_scenario_names_the_known_ones() {
        assert_eq!(
            SCENARIOS.join(", "),
            "daemonset, ds-rollout, sts-ordered, sts-parallel, writes, pod-network, rest, node-loss"
        );
    }
}
