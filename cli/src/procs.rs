//! Processes of a local cluster: what /proc says about them (through the agent's
//! one reader, `twinset_node_agent::procfs`), signalling process groups, and
//! stopping a cluster in order — agents
//! first (they stop their pods), then the control plane, then any pod process
//! that outlived its agent.
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What /proc says about one process (the agent's reader, shared).
pub use twinset_node_agent::procfs::{stat, Stat as ProcInfo};

/// Whether the process `pid` that started at `start_time` still runs (not a zombie, not a reused pid).
pub fn alive(pid: i32, start_time: u64) -> bool {
    stat(pid).is_some_and(|p| !p.zombie() && (start_time == 0 || p.start_time == start_time))
}

/// Every live descendant of `root` (children, grandchildren, ...).
pub fn descendants(root: i32) -> Vec<ProcInfo> {
    twinset_node_agent::procfs::descendants(&[root])
}

/// Sends `sig` to the process group `pgid`; a group that is gone is not an error.
pub fn signal_group(pgid: i32, sig: Signal) {
    if pgid <= 1 {
        return;
    }
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, signal = ?sig, error = %e, "signalling process group"),
    }
}

/// Sends `sig` to one process; a process that is gone is not an error.
pub fn signal_pid(pid: i32, sig: Signal) {
    if pid <= 1 {
        return;
    }
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pid, signal = ?sig, error = %e, "signalling process"),
    }
}

/// One process of a local cluster: the control plane or an agent, each the leader of
/// its own process group. `child` is set when this process started it (and reaps it).
#[derive(Debug)]
pub struct Member {
    /// `control-plane`, `node1`, ...
    pub name: String,
    /// Process id (= process group id).
    pub pid: i32,
    /// Start time from /proc, to tell a reused pid apart.
    pub start_time: u64,
    /// The child handle when `up` spawned it in this process.
    pub child: Option<tokio::process::Child>,
}

impl Member {
    /// Whether it still runs (reaping it if it is our child and has exited).
    pub fn alive(&mut self) -> bool {
        if let Some(c) = &mut self.child {
            return matches!(c.try_wait(), Ok(None));
        }
        alive(self.pid, self.start_time)
    }

    /// Waits until the process is gone or the deadline passes; true when gone.
    pub async fn wait_gone(&mut self, deadline: Instant) -> bool {
        if let Some(c) = &mut self.child {
            return tokio::time::timeout_at(deadline, c.wait()).await.is_ok();
        }
        poll_gone(|| alive(self.pid, self.start_time), deadline).await
    }
}

async fn poll_gone(mut alive: impl FnMut() -> bool, deadline: Instant) -> bool {
    loop {
        if !alive() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM to each member's process group, wait up to `grace` for all (less if `force`
/// is cancelled), then SIGKILL and reap.
async fn stop_members(members: &mut [&mut Member], grace: Duration, force: &CancellationToken) {
    for m in members.iter_mut() {
        if m.alive() {
            tracing::info!(name = %m.name, pid = m.pid, "stopping");
            signal_group(m.pid, Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    for m in members.iter_mut() {
        let gone = tokio::select! {
            gone = m.wait_gone(deadline) => gone,
            () = force.cancelled() => false,
        };
        if !gone {
            tracing::warn!(name = %m.name, pid = m.pid, "did not stop in time, killing");
            signal_group(m.pid, Signal::SIGKILL);
            m.wait_gone(Instant::now() + Duration::from_secs(5)).await;
        }
    }
}

/// Stops a local cluster: agents first (they stop their pods), then the control plane,
/// then any process that was running under an agent and outlived it (killed by group).
pub async fn stop_cluster(members: &mut [Member], grace: Duration, force: &CancellationToken) {
    // Remember every process under the agents (their pods) before they go away.
    let mut leftovers: Vec<ProcInfo> = Vec::new();
    for m in members.iter_mut() {
        if m.name != crate::cluster_files::CONTROL_PLANE && m.alive() {
            leftovers.extend(descendants(m.pid));
        }
    }
    let (mut agents, mut control): (Vec<&mut Member>, Vec<&mut Member>) = members
        .iter_mut()
        .partition(|m| m.name != crate::cluster_files::CONTROL_PLANE);
    stop_members(&mut agents, grace, force).await;
    stop_members(&mut control, grace, force).await;

    let survivors: Vec<ProcInfo> = leftovers
        .into_iter()
        .filter(|p| alive(p.pid, p.start_time))
        .collect();
    if survivors.is_empty() {
        return;
    }
    tracing::warn!(
        count = survivors.len(),
        "pod processes outlived their agent, stopping them"
    );
    for p in &survivors {
        signal_group(p.pgid, Signal::SIGTERM);
        signal_pid(p.pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for p in &survivors {
        let gone = tokio::select! {
            gone = poll_gone(|| alive(p.pid, p.start_time), deadline) => gone,
            () = force.cancelled() => false,
        };
        if !gone {
            signal_group(p.pgid, Signal::SIGKILL);
            signal_pid(p.pid, Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_found_as_descendant() -> anyhow::Result<()> {
        let me = std::process::id() as i32;
        let info = stat(me).ok_or_else(|| anyhow::anyhow!("no /proc entry for self"))?;
        assert!(alive(me, info.start_time));
        assert!(!alive(me, info.start_time + 1));
        let mut child = std::process::Command::new("sleep").arg("5").spawn()?;
        let found = descendants(me).iter().any(|p| p.pid == child.id() as i32);
        child.kill()?;
        child.wait()?;
        assert!(found);
        Ok(())
    }
}
