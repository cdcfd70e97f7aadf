//! Stopping a pod: the one termination path (SIGTERM to every container's process
//! group, SIGKILL to what is left after the grace period, waiting for the exits) and
//! the one teardown (cgroups, record, logs, IP and folder). The pod worker uses both
//! when its pod is deleted, unassigned or the agent stops; the supervisor uses both
//! for pods an earlier agent left that are no longer assigned here.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::{records, Shared, SHUTDOWN_GRACE};
use crate::runtime::{Runtime, Started};
use crate::state::PodRecord;

/// How long to wait for processes to vanish after SIGKILL.
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// Container processes being stopped.
pub trait Group: Send {
    /// The pids (process groups) still running.
    fn running(&self) -> Vec<u32>;
    /// Waits for the next exit and takes note of it; resolves false at once when no
    /// exit can come.
    fn next_exit(&mut self) -> BoxFuture<'_, bool>;
}

/// Stops `group`: SIGTERM to each running process group, SIGKILL to what is left
/// after `grace`, then up to [`KILL_WAIT`] for the exits.
pub async fn terminate<G: Group + ?Sized>(runtime: &dyn Runtime, group: &mut G, grace: Duration) {
    for pid in group.running() {
        runtime.signal(pid, Signal::SIGTERM);
    }
    wait_exits_until(group, Instant::now() + grace).await;
    let left = group.running();
    if left.is_empty() {
        return;
    }
    tracing::info!(?grace, "grace period over; killing");
    for pid in left {
        runtime.signal(pid, Signal::SIGKILL);
    }
    wait_exits_until(group, Instant::now() + KILL_WAIT).await;
    if !group.running().is_empty() {
        tracing::warn!("container processes did not exit after SIGKILL");
    }
}

async fn wait_exits_until<G: Group + ?Sized>(group: &mut G, deadline: Instant) {
    while !group.running().is_empty() {
        tokio::select! {
            more = group.next_exit() => {
                if !more {
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// What [`teardown`] removes besides the pod's cgroups, network, record and logs entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    /// Everything goes (its IP and folder too): the pod is gone from this node.
    Nothing,
    /// Its IP and folder stay (the agent stops, the pod may come back).
    IpAndFolder,
}

/// Removes what a stopped pod leaves: its cgroups (killing any straggler), its network,
/// its record, its logs entry and, unless `leave` says so, its IP and folder.
pub async fn teardown(ctx: &Shared, uid: &str, namespace: &str, name: &str, leave: Leave) {
    let rt = Arc::clone(&ctx.runtime);
    let owned = uid.to_string();
    match tokio::task::spawn_blocking(move || rt.cleanup_pod(&owned)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "pod cgroup cleanup failed"),
        Err(e) => tracing::warn!(error = %e, "pod cgroup cleanup task failed"),
    }
    records::forget(ctx, uid);
    records::unregister_logs(ctx, namespace, name, uid);
    // No process of the pod is left in its network namespace: it goes in any case (a pod
    // that comes back gets a new one, with the IP it kept).
    if let Err(e) = ctx.network.detach(uid).await {
        tracing::warn!(error = %e, "cannot remove the pod's network");
    }
    if leave == Leave::Nothing {
        records::release_ip(ctx, uid);
        let dir = records::pod_dir(ctx, namespace, name, uid);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove pod logs");
            }
        }
    }
}

/// Processes an earlier agent started, adopted to be stopped.
struct Adopted {
    /// Per process: its pid while it runs.
    pids: Vec<Option<u32>>,
    exits: FuturesUnordered<BoxFuture<'static, usize>>,
}

impl Adopted {
    fn new(started: Vec<Started>) -> Self {
        let mut a = Adopted {
            pids: Vec::new(),
            exits: FuturesUnordered::new(),
        };
        for (i, s) in started.into_iter().enumerate() {
            a.pids.push(Some(s.pid));
            let rx = s.exit;
            a.exits.push(Box::pin(async move {
                // A dropped sender (the agent is leaving) ends the wait too.
                let _ = rx.await;
                i
            }));
        }
        a
    }
}

impl Group for Adopted {
    fn running(&self) -> Vec<u32> {
        self.pids.iter().flatten().copied().collect()
    }

    fn next_exit(&mut self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            match self.exits.next().await {
                Some(i) => {
                    self.pids[i] = None;
                    true
                }
                None => false,
            }
        })
    }
}

/// Stops the processes of a pod recorded by an earlier agent and no longer assigned
/// (those still alive are adopted through the runtime, then terminated with the
/// shutdown grace period), and removes everything it left.
pub async fn stop_orphan(ctx: Arc<Shared>, rec: PodRecord) {
    tracing::info!(namespace = %rec.namespace, name = %rec.name, uid = %rec.uid, "stopping a pod that is no longer assigned");
    let started: Vec<Started> = rec
        .containers
        .iter()
        .filter_map(|(name, c)| ctx.runtime.adopt(&rec.uid, name, c.pid, c.start_ticks))
        .collect();
    let mut group = Adopted::new(started);
    terminate(ctx.runtime.as_ref(), &mut group, SHUTDOWN_GRACE).await;
    teardown(&ctx, &rec.uid, &rec.namespace, &rec.name, Leave::Nothing).await;
    // Its processes are gone: the watchdog has nothing left to guard of it.
    ctx.fence.forget(&rec.uid);
}
