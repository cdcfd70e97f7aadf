//! `twinset bench pod-network`: the bridge pod network's per-pod setup (namespace pinned,
//! veth, addresses, routes) and teardown, measured on this machine as root inside a
//! network namespace of the benchmark's own (only `lo` in it, no route out), so nothing of
//! the host's network is touched and no packet leaves. Needs no cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use twinset_node_agent::network::{netlink::BridgeNetwork, NodeBridge, PodAttach, PodNetwork};
use twinset_proto::Cidr;

use super::{ms, Stats};
use crate::args::BenchArgs;

/// The range the benchmark's pods get addresses from (inside its own namespace).
const RANGE: &str = "10.77.0.0/24";

/// One run's figures.
struct Run {
    attach: Vec<Duration>,
    detach: Vec<Duration>,
    /// All pods attached concurrently: the wall time.
    parallel: Duration,
}

/// Runs the scenario: `--runs` rounds of `--replicas` pods (default 200, at most 250, one
/// /24) attached one at a time, detached one at a time, then attached all at once.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("bench pod-network needs root: it makes network namespaces, veths and a bridge");
    }
    let pods = args.replicas.unwrap_or(200) as usize;
    if pods == 0 || pods > 250 {
        bail!("--replicas must be between 1 and 250 for pod-network (one /24)");
    }
    let runs = args.runs.unwrap_or(3).max(1);
    // Net namespaces are per thread: this thread (and the runtime on it) lives in a
    // namespace of its own, dropped when it ends.
    let handle = std::thread::spawn(move || -> anyhow::Result<Vec<Run>> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .context("unshare(CLONE_NEWNET)")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(rounds(pods, runs))
    });
    let results = handle
        .join()
        .map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))??;
    let all = |f: fn(&Run) -> &Vec<Duration>| -> Vec<Duration> {
        results.iter().flat_map(|r| f(r).iter().copied()).collect()
    };
    for (i, r) in results.iter().enumerate() {
        println!(
            "run {}: attach {}; detach {}; {pods} at once {:.0} ms ({:.0} pods/s)",
            i + 1,
            Stats::of(&r.attach).map(|s| s.line()).unwrap_or_default(),
            Stats::of(&r.detach).map(|s| s.line()).unwrap_or_default(),
            ms(r.parallel),
            pods as f64 / r.parallel.as_secs_f64()
        );
    }
    if let Some(s) = Stats::of(&all(|r| &r.attach)) {
        println!(
            "per-pod network setup over {} pods: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            s.n,
            ms(s.median),
            ms(s.p99),
            ms(s.max)
        );
    }
    if let Some(s) = Stats::of(&all(|r| &r.detach)) {
        println!(
            "per-pod network teardown: p50 {:.2} ms, p99 {:.2} ms",
            ms(s.median),
            ms(s.p99)
        );
    }
    Ok(())
}

async fn rounds(pods: usize, runs: usize) -> anyhow::Result<Vec<Run>> {
    let dir = std::env::temp_dir().join(format!("twinset-bench-podnet-{}", std::process::id()));
    let result = measure(&dir, pods, runs).await;
    // Pins left by a failed run are detached with the namespace; the folder goes too.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(dir: &std::path::Path, pods: usize, runs: usize) -> anyhow::Result<Vec<Run>> {
    let net = Arc::new(BridgeNetwork::new(dir, "bench"));
    let range = Cidr::parse(RANGE).map_err(|e| anyhow::anyhow!("{RANGE}: {e:?}"))?;
    net.prepare_node(&NodeBridge {
        name: net.bridge().to_string(),
        range,
    })
    .await?;
    let pod = |i: usize| PodAttach {
        uid: format!("bench-{i}"),
        ip: range
            .pod_addresses()
            .nth(i)
            .expect("a /24 has 253 pod addresses"),
        range,
    };
    let mut out = Vec::new();
    for _ in 0..runs {
        let mut run = Run {
            attach: Vec::with_capacity(pods),
            detach: Vec::with_capacity(pods),
            parallel: Duration::ZERO,
        };
        for i in 0..pods {
            let t = Instant::now();
            net.attach(&pod(i)).await?;
            run.attach.push(t.elapsed());
        }
        for i in 0..pods {
            let t = Instant::now();
            net.detach(&pod(i).uid).await?;
            run.detach.push(t.elapsed());
        }
        let t = Instant::now();
        let all: Vec<PodAttach> = (0..pods).map(pod).collect();
        futures::future::try_join_all(all.iter().map(|p| net.attach(p))).await?;
        run.parallel = t.elapsed();
        futures::future::try_join_all(all.iter().map(|p| net.detach(&p.uid))).await?;
        out.push(run);
    }
    if !net.attached().await?.is_empty() {
        bail!("pods were left attached after the benchmark");
    }
    Ok(out)
}
