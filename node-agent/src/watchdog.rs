//! `twinset fence-watchdog`: the process that keeps the fence promise when the agent
//! cannot (SIGKILLed, crashed, hung). One per data dir (it holds
//! `fence/watchdog.lock`); it looks every 50 ms at the lease and at the process groups
//! of the fenced pods ([`crate::fence`]), and once the lease has lapsed marks each pod
//! fenced, sends SIGTERM, and SIGKILL after the lease's grace. It ends when no fenced
//! pod is left and both the agent that wrote the lease and the one that started it are
//! gone.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::fence::{self, Act, Lease};
use crate::procfs::ProcId;

const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Runs the watchdog of `data_dir` until nothing is left to guard. Returns at once when
/// another watchdog holds the lock.
pub fn run(data_dir: &Path) -> std::io::Result<()> {
    let dir = fence::dir(data_dir);
    std::fs::create_dir_all(dir.join("pods"))?;
    std::fs::create_dir_all(dir.join("fenced"))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("watchdog.lock"))?;
    let _held = match nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(h) => h,
        Err(_) => return Ok(()),
    };
    say(&format!(
        "watching {} (pid {})",
        dir.display(),
        std::process::id()
    ));
    // The agent that started it counts as alive until it has written a lease of its own.
    let parent = ProcId::of(nix::unistd::getppid().as_raw());
    let mut termed: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let lease = Lease::read(&dir);
        let pods = fenced_pods(&dir);
        let alive: BTreeMap<String, usize> = pods
            .iter()
            .map(|(uid, procs)| (uid.clone(), procs.iter().filter(|p| p.is_alive()).count()))
            .collect();
        let now = fence::boot_ms();
        for act in fence::decide(now, lease.as_ref(), &alive, &termed) {
            match act {
                Act::Term(uid) => {
                    let mark = dir.join("fenced").join(&uid);
                    if !mark.exists() {
                        let _ = std::fs::write(
                            &mark,
                            "stopped by the fence watchdog: no acknowledged heartbeat within fence-after",
                        );
                    }
                    say(&format!("lease lapsed: SIGTERM to pod {uid}"));
                    signal_all(&pods[&uid], Signal::SIGTERM);
                    termed.insert(uid, now);
                }
                Act::Kill(uid) => {
                    say(&format!("grace over: SIGKILL to pod {uid}"));
                    signal_all(&pods[&uid], Signal::SIGKILL);
                }
                Act::Done(uid) => {
                    if termed.remove(&uid).is_some() {
                        say(&format!("pod {uid} stopped"));
                    }
                    let _ = std::fs::remove_file(dir.join("pods").join(&uid));
                }
            }
        }
        let agent_alive = lease.is_some_and(|l| l.agent.is_alive())
            || parent.is_some_and(|p| p.pid > 1 && p.is_alive());
        if pods.is_empty() && !agent_alive {
            say("no agent and no fenced pod left; exiting");
            return Ok(());
        }
        std::thread::sleep(LOOK_EVERY);
    }
}

fn say(msg: &str) {
    eprintln!("{} fence-watchdog: {msg}", twinset_proto::time::now());
}

/// Every fenced pod's recorded process groups, by uid.
fn fenced_pods(dir: &Path) -> BTreeMap<String, Vec<ProcId>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir.join("pods")) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(e.path()) {
            out.insert(name, fence::parse_processes(&text));
        }
    }
    out
}

/// Signals each process group whose leader is still the recorded process.
fn signal_all(procs: &[ProcId], sig: Signal) {
    for p in procs {
        if p.pid > 1 && p.is_alive() {
            let _ = killpg(Pid::from_raw(p.pid), sig);
        }
    }
}
