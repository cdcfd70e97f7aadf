//! Processes of a local cluster: reading /proc (parent, process group, start
//! time), signalling process groups, and stopping a cluster in order — agents
//! first (they stop their pods), then the control plane, then any pod process
//! that outlived its agent.
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What /proc says about one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// Start time in clock ticks since boot: with the pid, it names a process uniquely.
    pub start_time: u64,
    /// Exited but not yet reaped.
    pub zombie: bool,
}

/// Parses the text of `/proc/<pid>/stat`.
pub fn parse_stat(pid: i32, text: &str) -> Option<ProcInfo> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcInfo {
        pid,
        zombie: *fields.first()? == "Z" || *fields.first()? == "X",
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Reads `/proc/<pid>/stat`; None when the process does not exist.
pub fn stat(pid: i32) -> Option<ProcInfo> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
}

/// Whether the process `pid` that started at `start_time` still runs (not a zombie, not a reused pid).
pub fn alive(pid: i32, start_time: u64) -> bool {
    stat(pid).is_some_and(|p| !p.zombie && (start_time == 0 || p.start_time == start_time))
}

/// Every live descendant of `root` (children, grandchildren, ...).
pub fn descendants(root: i32) -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut by_parent: BTreeMap<i32, Vec<ProcInfo>> = BTreeMap::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(info) = stat(pid) {
            by_parent.entry(info.ppid).or_default().push(info);
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![root];
    let mut seen = BTreeSet::new();
    while let Some(p) = queue.pop() {
        if let Some(children) = by_parent.get(&p) {
            for c in children {
                if seen.insert(c.pid) {
                    if !c.zombie {
                        out.push(*c);
                    }
                    queue.push(c.pid);
                }
            }
        }
    }
    out
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
        signal_group(p.pgrp, Signal::SIGTERM);
        signal_pid(p.pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for p in &survivors {
        let gone = tokio::select! {
            gone = poll_gone(|| alive(p.pid, p.start_time), deadline) => gone,
            () = force.cancelled() => false,
        };
        if !gone {
            signal_group(p.pgrp, Signal::SIGKILL);
            signal_pid(p.pid, Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_comm() {
        let text = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        let p = parse_stat(1234, text);
        assert_eq!(
            p,
            Some(ProcInfo {
                pid: 1234,
                ppid: 1,
                pgrp: 1234,
                start_time: 98765,
                zombie: false
            })
        );
    }

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
