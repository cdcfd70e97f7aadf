//! `twinset fence-watchdog`: the process that keeps the fence promise when the agent
//! cannot (SIGKILLed, crashed, hung). One per data dir (it holds
//! `fence/watchdog.lock`); it looks every 50 ms at the lease and at the processes of the
//! fenced pods (their recorded process groups and their cgroups, [`crate::fence`]), and
//! once the lease has lapsed marks each pod fenced, sends SIGTERM, and SIGKILL after the
//! lease's grace. It ends when no fenced pod is left and both the agent that wrote the
//! lease and the one that started it are gone.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::fence::{self, Act, Lease};
use crate::procfs::ProcId;
use crate::runtime::cgroup::{detect, Cgroups};

const LOOK_EVERY: Duration = Duration::from_millis(50);
/// The watchdog's log (its stderr, `fence/watchdog.log`, which the agent opens for it)
/// is kept to two files of about this size: past it, the file becomes
/// `watchdog.log.1` (replacing the older one) and stderr moves to a new file.
const LOG_MAX: u64 = 1 << 20;

/// Where the log is, once [`run`] knows.
static LOG: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

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
    let _ = LOG.set(dir.join("watchdog.log"));
    let cgroups = detect(Path::new("/sys/fs/cgroup"));
    say(&format!(
        "watching {} (pid {}; {})",
        dir.display(),
        std::process::id(),
        cgroups.describe()
    ));
    // The agent that started it counts as alive until it has written a lease of its own.
    let parent = ProcId::of(nix::unistd::getppid().as_raw());
    let mut termed: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let (lease, guarded) = look(&dir, &*cgroups, fence::boot_ms(), &mut termed);
        let agent_alive = lease.is_some_and(|l| l.agent.is_alive())
            || parent.is_some_and(|p| p.pid > 1 && p.is_alive());
        if guarded == 0 && !agent_alive {
            say("no agent and no fenced pod left; exiting");
            return Ok(());
        }
        std::thread::sleep(LOOK_EVERY);
    }
}

/// One look at `dir` (the fence folder) at `now` (CLOCK_BOOTTIME ms): acts on what
/// [`fence::decide`] says. A pod's processes are its recorded process groups and
/// whatever is in its cgroups, so a process that left its group (setsid) is stopped
/// too. Returns the lease read and how many pods are still guarded.
fn look(
    dir: &Path,
    cgroups: &dyn Cgroups,
    now: u64,
    termed: &mut BTreeMap<String, u64>,
) -> (Option<Lease>, usize) {
    let lease = Lease::read(dir);
    let pods = fenced_pods(dir);
    let in_cgroups: BTreeMap<&String, Vec<i32>> = pods
        .keys()
        .map(|uid| {
            let live = cgroups
                .pids(uid)
                .into_iter()
                .filter(|&pid| ProcId::of(pid).is_some())
                .collect();
            (uid, live)
        })
        .collect();
    let alive: BTreeMap<String, usize> = pods
        .iter()
        .map(|(uid, procs)| {
            let groups = procs.iter().filter(|p| p.is_alive()).count();
            (uid.clone(), groups + in_cgroups[uid].len())
        })
        .collect();
    let mut guarded = pods.len();
    for act in fence::decide(now, lease.as_ref(), &alive, termed) {
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
                signal_all(&pods[&uid], &in_cgroups[&uid], Signal::SIGTERM);
                termed.insert(uid, now);
            }
            Act::Kill(uid) => {
                say(&format!("grace over: SIGKILL to pod {uid}"));
                signal_all(&pods[&uid], &in_cgroups[&uid], Signal::SIGKILL);
            }
            Act::Done(uid) => {
                if termed.remove(&uid).is_some() {
                    say(&format!("pod {uid} stopped"));
                }
                let _ = std::fs::remove_file(dir.join("pods").join(&uid));
                guarded -= 1;
            }
        }
    }
    (lease, guarded)
}

fn say(msg: &str) {
    if let Some(log) = LOG.get() {
        rotate_log(log, LOG_MAX);
    }
    eprintln!("{} fence-watchdog: {msg}", twinset_proto::time::now());
}

/// Moves `log` to `log.1` and stderr to a new `log` when stderr is that file and has
/// reached `max` bytes. Nothing happens when stderr is anything else.
fn rotate_log(log: &Path, max: u64) {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return;
    };
    let (Ok(ours), Ok(named)) = (std::fs::File::from(fd).metadata(), std::fs::metadata(log)) else {
        return;
    };
    if ours.dev() != named.dev() || ours.ino() != named.ino() || ours.len() < max {
        return;
    }
    let mut older = log.as_os_str().to_owned();
    older.push(".1");
    if std::fs::rename(log, &older).is_err() {
        return;
    }
    if let Ok(fresh) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = nix::unistd::dup2_stderr(&fresh);
    }
}

/// Every fenced pod's recorded process groups, by uid.
fn fenced_pods(dir: &Path) -> BTreeMap<String, Vec<ProcId>> {
    let pods = dir.join("pods");
    fence::uids_in(&pods)
        .into_iter()
        .filter_map(|uid| {
            let text = std::fs::read_to_string(pods.join(&uid)).ok()?;
            Some((uid, fence::parse_processes(&text)))
        })
        .collect()
}

/// Signals each process group whose leader is still the recorded process, and each
/// process found in the pod's cgroups.
fn signal_all(groups: &[ProcId], in_cgroups: &[i32], sig: Signal) {
    for p in groups {
        if p.pid > 1 && p.is_alive() {
            let _ = killpg(Pid::from_raw(p.pid), sig);
        }
    }
    for &pid in in_cgroups {
        if pid > 1 {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cgroup::{CgroupFs, Layout};
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    /// A child killed and reaped however the test ends.
    struct Reaped(std::process::Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_process_that_left_its_group_is_stopped_through_the_pods_cgroup() {
        let data = tempfile::tempdir().unwrap();
        let dir = fence::dir(data.path());
        std::fs::create_dir_all(dir.join("pods")).unwrap();
        std::fs::create_dir_all(dir.join("fenced")).unwrap();
        // The pod's recorded process group is gone; what is left runs in a group of its
        // own (as after setsid), so only the pod's cgroup knows of it.
        std::fs::write(dir.join("pods").join("uid-1"), "").unwrap();
        let mut escaped = Reaped(
            std::process::Command::new("sleep")
                .arg("600")
                .process_group(0)
                .spawn()
                .expect("sleep (coreutils) is needed"),
        );
        let root = tempfile::tempdir().unwrap();
        let leaf = root.path().join("twinset").join("uid-1").join("app");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(leaf.join("cgroup.procs"), format!("{}\n", escaped.0.id())).unwrap();
        let cgroups = CgroupFs::new(Layout::V2 {
            root: root.path().to_path_buf(),
        });
        let me = ProcId::of(std::process::id() as i32).unwrap();
        let lease = Lease {
            agent: me,
            deadline_ms: 1_000,
            grace_ms: 100,
        };
        std::fs::write(dir.join("lease"), lease.format()).unwrap();
        let mut termed = BTreeMap::new();

        // Before the deadline: guarded, untouched.
        assert_eq!(look(&dir, &cgroups, 999, &mut termed), (Some(lease), 1));
        assert!(escaped.0.try_wait().unwrap().is_none(), "stopped too early");
        assert!(termed.is_empty());

        // At the deadline: marked fenced and sent SIGTERM through the cgroup.
        assert_eq!(look(&dir, &cgroups, 1_000, &mut termed), (Some(lease), 1));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = escaped.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the escaped process was not signalled through the pod's cgroup"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "{status:?}");
        assert!(dir.join("fenced").join("uid-1").exists());
        assert_eq!(termed.get("uid-1"), Some(&1_000));

        // Nothing of it is left: the pod is done and no longer guarded.
        assert_eq!(look(&dir, &cgroups, 1_050, &mut termed), (Some(lease), 0));
        assert!(termed.is_empty());
        assert!(!dir.join("pods").join("uid-1").exists());
    }
}
