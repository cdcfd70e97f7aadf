//! Looking at processes through /proc: liveness by pid and start time, process
//! trees, environments (to find a pod's process by its POD_NAME), and cgroups.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Processes and their `/proc/<pid>/stat` fields, read by the agent's one parser.
pub use twinset_node_agent::procfs::{all, cmdline, descendants, stat, ProcId, Stat};

/// The environment of a process as key/value pairs (empty when unreadable).
pub fn environ(pid: i32) -> BTreeMap<String, String> {
    u32::try_from(pid)
        .ok()
        .and_then(twinset_node_agent::procfs::environ)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// True when the process's cwd, command line or any open file lies under `dir`
/// (how processes of one test cluster are recognised even after their parent died).
pub fn references_dir(pid: i32, dir: &Path) -> bool {
    let under = |p: &Path| p.starts_with(dir);
    if std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|p| under(&p)) {
        return true;
    }
    let d = dir.to_string_lossy();
    if cmdline(pid).iter().any(|a| a.contains(d.as_ref())) {
        return true;
    }
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|p| under(&p)) {
                return true;
            }
        }
    }
    false
}

/// Sends SIGKILL to a whole process group, never to the caller's own group.
pub fn kill_group(pgid: i32) {
    if pgid > 1 && pgid != nix::unistd::getpgrp().as_raw() {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// Sends a signal to one process.
pub fn signal(pid: i32, sig: Signal) -> nix::Result<()> {
    kill(Pid::from_raw(pid), sig)
}

/// The cgroup memberships of a process: (controllers, path) per line of
/// `/proc/<pid>/cgroup`, e.g. ("memory", "/twinset/pod-x") or ("", "/") for v2.
pub fn cgroups(pid: i32) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let ctrl = parts.next()?;
            let path = parts.next()?;
            Some((ctrl.to_string(), path.to_string()))
        })
        .collect()
}

/// Where a controller's interface file for a process lives, trying the v1 mount
/// (`/sys/fs/cgroup/<controller>/<path>/<file>`), then the v2 tree
/// (`/sys/fs/cgroup/unified/<path>/<file>` on hybrid hosts, `/sys/fs/cgroup/<path>/<file>`).
pub fn cgroup_file(pid: i32, controller: &str, v1_file: &str, v2_file: &str) -> Option<PathBuf> {
    let groups = cgroups(pid);
    for (ctrls, path) in &groups {
        if ctrls.split(',').any(|c| c == controller) {
            let p = Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(path.trim_start_matches('/'))
                .join(v1_file);
            if p.exists() {
                return Some(p);
            }
        }
    }
    for (ctrls, path) in &groups {
        if ctrls.is_empty() {
            for base in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
                let p = Path::new(base)
                    .join(path.trim_start_matches('/'))
                    .join(v2_file);
                if p.exists() {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// Directories of the cgroups a process is in that differ from the caller's own
/// (the pod's cgroups, with their per-pod parents), for cleanup after the process is
/// killed. Removing them is safe: rmdir refuses a cgroup that still has members.
pub fn own_cgroup_dirs(pid: i32) -> Vec<PathBuf> {
    let mine: BTreeSet<(String, String)> = cgroups(std::process::id() as i32).into_iter().collect();
    let mut out = Vec::new();
    for (ctrls, path) in cgroups(pid) {
        if mine.contains(&(ctrls.clone(), path.clone()))
            || path == "/"
            || ctrls.starts_with("name=")
        {
            continue;
        }
        // The cgroup and its ancestors down to two levels (e.g. `twinset/<pod>/<container>`
        // and `twinset/<pod>`), never a shared top-level directory such as `twinset`.
        let rel = Path::new(path.trim_start_matches('/'));
        let levels: Vec<&Path> = rel
            .ancestors()
            .filter(|a| a.components().count() >= 2)
            .collect();
        let bases: Vec<PathBuf> = if ctrls.is_empty() {
            vec![PathBuf::from("/sys/fs/cgroup/unified")]
        } else {
            ctrls
                .split(',')
                .map(|c| Path::new("/sys/fs/cgroup").join(c))
                .collect()
        };
        for base in &bases {
            out.extend(levels.iter().map(|l| base.join(l)));
        }
    }
    out
}

/// What each thread of a process is doing, for a failure message about a hung process:
/// `gdb`'s backtraces when gdb is installed, else each thread's name, state and wait
/// channel from /proc.
pub fn threads_report(pid: i32) -> String {
    let gdb = std::process::Command::new("gdb")
        .args([
            "-batch",
            "-p",
            &pid.to_string(),
            "-ex",
            "thread apply all bt",
        ])
        .stdin(std::process::Stdio::null())
        .output();
    if let Ok(out) = gdb {
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("Thread") {
            return text.into_owned();
        }
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("no /proc/{pid}/task");
    };
    tasks
        .flatten()
        .map(|t| {
            let read = |f: &str| {
                std::fs::read_to_string(t.path().join(f))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            format!(
                "{} {} wchan={} stat={}",
                t.file_name().to_string_lossy(),
                read("comm"),
                read("wchan"),
                read("stat")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
