//! Fencing: a node cut off from the control plane stops the replicas of StatefulSets
//! whose policy is `twinset.io/on-node-lost: Replace`, before the control plane
//! recreates them elsewhere, so one identity never runs twice.
//!
//! The lease: each acknowledged heartbeat moves the deadline to its *send* time plus
//! `--fence-after` (the control plane counts from when it received it, which is later,
//! so the node always acts first). The deadline lives in memory and in
//! `<data dir>/fence/lease`, as CLOCK_BOOTTIME milliseconds, for the watchdog.
//!
//! Who guarantees what:
//! - the agent, while alive, stops a fenced pod through the pod worker's own
//!   termination path (SIGTERM, `--fence-grace`, SIGKILL), never restarts it, reports
//!   it Failed with reason `Fenced` and an event once it reaches the control plane;
//! - the watchdog (`twinset fence-watchdog`, a separate process the agent starts, which
//!   outlives it) reads the lease and the process list of every fenced pod
//!   (`fence/pods/<uid>`) and does the same stop when the deadline passes, whether the
//!   agent is alive, hung or dead;
//! - `fence/fenced/<uid>` marks a pod fenced for good (written before the first signal
//!   by whichever acts first): no agent, new or old, starts that pod again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::procfs::ProcId;

/// The fence folder under the agent's data dir.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("fence")
}

/// Milliseconds of CLOCK_BOOTTIME: the one clock the agent and the watchdog share
/// (monotonic, and it keeps counting through a suspend).
pub fn boot_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(t) => (t.tv_sec() as u64) * 1000 + (t.tv_nsec() as u64) / 1_000_000,
        Err(_) => 0,
    }
}

/// What the lease file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The agent that wrote it.
    pub agent: ProcId,
    /// CLOCK_BOOTTIME milliseconds after which fenced pods must stop (0: lapsed).
    pub deadline_ms: u64,
    /// How long a stopping pod gets between SIGTERM and SIGKILL.
    pub grace_ms: u64,
}

impl Lease {
    /// The file's text.
    pub fn format(&self) -> String {
        format!(
            "v1 {} {} {} {}\n",
            self.agent.pid, self.agent.start_time, self.deadline_ms, self.grace_ms
        )
    }

    /// Reads the file's text (None when it is not a lease).
    pub fn parse(text: &str) -> Option<Lease> {
        let mut f = text.split_whitespace();
        if f.next()? != "v1" {
            return None;
        }
        let lease = Lease {
            agent: ProcId {
                pid: f.next()?.parse().ok()?,
                start_time: f.next()?.parse().ok()?,
            },
            deadline_ms: f.next()?.parse().ok()?,
            grace_ms: f.next()?.parse().ok()?,
        };
        f.next().is_none().then_some(lease)
    }

    /// Reads `<fence dir>/lease`.
    pub fn read(fence_dir: &Path) -> Option<Lease> {
        Lease::parse(&std::fs::read_to_string(fence_dir.join("lease")).ok()?)
    }
}

/// Writes `text` to `path` through a temporary file and a rename (a reader sees the old
/// or the new text, never half of one).
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)
}

/// The process groups of a fenced pod's containers, one `pid start_ticks` per line.
pub fn format_processes(procs: &[ProcId]) -> String {
    procs
        .iter()
        .map(|p| format!("{} {}\n", p.pid, p.start_time))
        .collect()
}

/// Reads [`format_processes`]' text (bad lines are skipped).
pub fn parse_processes(text: &str) -> Vec<ProcId> {
    text.lines()
        .filter_map(|l| {
            let (pid, ticks) = l.trim().split_once(' ')?;
            Some(ProcId {
                pid: pid.parse().ok()?,
                start_time: ticks.parse().ok()?,
            })
        })
        .collect()
}

/// The agent's side of fencing: the lease, and the files the watchdog reads.
#[derive(Debug)]
pub struct Fence {
    dir: PathBuf,
    after: Duration,
    grace: Duration,
    /// Whether a watchdog guards the pods (only then does the node say it fences).
    guarded: bool,
    /// When the lease lapses (None: lapsed, no acknowledged heartbeat yet).
    deadline: watch::Sender<Option<Instant>>,
    /// Serialises lease file writes.
    write: Mutex<()>,
}

impl Fence {
    /// The fence of the agent whose data dir is `data_dir`, picking up a lease an earlier
    /// agent left that has not lapsed yet.
    pub fn open(data_dir: &Path, after: Duration, grace: Duration, guarded: bool) -> Fence {
        let dir = dir(data_dir);
        for sub in ["pods", "fenced"] {
            if let Err(e) = std::fs::create_dir_all(dir.join(sub)) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot create the fence folder");
            }
        }
        let now_ms = boot_ms();
        let deadline = Lease::read(&dir)
            .filter(|l| l.deadline_ms > now_ms)
            .map(|l| Instant::now() + Duration::from_millis(l.deadline_ms - now_ms));
        Fence {
            dir,
            after,
            grace,
            guarded,
            deadline: watch::Sender::new(deadline),
            write: Mutex::new(()),
        }
    }

    /// `--fence-after`.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// The kill grace of a fenced pod.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// How long after the last acknowledged heartbeat every fenced pod is gone, when a
    /// watchdog guards them (None: the node does not promise to fence).
    pub fn within(&self) -> Option<Duration> {
        self.guarded.then_some(self.after + self.grace)
    }

    /// A heartbeat sent at `sent` was acknowledged: the lease runs to `sent + after`.
    /// Once lapsed it stays lapsed for the pods fenced meanwhile (their marks), but new
    /// and unfenced pods may run again.
    pub fn renew(&self, sent: Instant) {
        let deadline = sent + self.after;
        let moved = self.deadline.send_if_modified(|d| {
            if d.is_some_and(|cur| cur >= deadline) {
                return false;
            }
            *d = Some(deadline);
            true
        });
        if moved {
            self.write_lease(Some(deadline));
        }
    }

    fn write_lease(&self, deadline: Option<Instant>) {
        let Some(agent) = ProcId::of(std::process::id() as i32) else {
            return;
        };
        let now = Instant::now();
        let deadline_ms = deadline
            .map(|d| boot_ms() + d.saturating_duration_since(now).as_millis() as u64)
            .unwrap_or(0);
        let lease = Lease {
            agent,
            deadline_ms,
            grace_ms: self.grace.as_millis() as u64,
        };
        let _held = self.write.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = write_atomic(&self.dir.join("lease"), &lease.format()) {
            tracing::warn!(error = %e, "cannot write the fence lease");
        }
    }

    /// Changes of the deadline.
    pub fn subscribe(&self) -> watch::Receiver<Option<Instant>> {
        self.deadline.subscribe()
    }

    /// When the lease lapses (None: lapsed already, or never held).
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.borrow()
    }

    /// Whether the lease has lapsed at `now`.
    pub fn lapsed(&self, now: Instant) -> bool {
        self.deadline().is_none_or(|d| now >= d)
    }

    fn mark_path(&self, uid: &str) -> Option<PathBuf> {
        safe_uid(uid).then(|| self.dir.join("fenced").join(uid))
    }

    /// Marks pod `uid` fenced for good, saying why.
    pub fn mark(&self, uid: &str, why: &str) {
        if let Some(p) = self.mark_path(uid) {
            if let Err(e) = write_atomic(&p, why) {
                tracing::warn!(uid, error = %e, "cannot mark a pod fenced");
            }
        }
    }

    /// Why pod `uid` was fenced, if it was.
    pub fn fenced(&self, uid: &str) -> Option<String> {
        std::fs::read_to_string(self.mark_path(uid)?).ok()
    }

    /// Records the process groups of pod `uid`'s running containers for the watchdog.
    pub fn record_processes(&self, uid: &str, procs: &[ProcId]) {
        if !safe_uid(uid) {
            return;
        }
        let path = self.dir.join("pods").join(uid);
        if let Err(e) = write_atomic(&path, &format_processes(procs)) {
            tracing::warn!(uid, error = %e, "cannot record a fenced pod's processes");
        }
    }

    /// The pods this fence holds anything of (a process list or a mark).
    pub fn known(&self) -> BTreeSet<String> {
        ["pods", "fenced"]
            .iter()
            .flat_map(|sub| uids_in(&self.dir.join(sub)))
            .collect()
    }

    /// Pod `uid` is gone from this node: its process list and mark go.
    pub fn forget(&self, uid: &str) {
        if !safe_uid(uid) {
            return;
        }
        let _ = std::fs::remove_file(self.dir.join("pods").join(uid));
        let _ = std::fs::remove_file(self.dir.join("fenced").join(uid));
    }

    /// Starts the watchdog `program fence-watchdog --data-dir <data>` unless one runs
    /// (it holds `fence/watchdog.lock`); the child is reaped by a task of its own.
    pub fn ensure_watchdog(&self, program: &Path, data_dir: &Path) {
        if watchdog_running(&self.dir) {
            return;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("watchdog.log"));
        let mut cmd = tokio::process::Command::new(program);
        cmd.arg("fence-watchdog")
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            // Its own process group: a signal to the agent's group (a terminal's ^C, a
            // service manager) does not reach it, and it outlives the agent.
            .process_group(0);
        match log {
            Ok(f) => cmd.stderr(f),
            Err(_) => cmd.stderr(std::process::Stdio::null()),
        };
        match cmd.spawn() {
            Ok(mut child) => {
                tracing::info!(pid = child.id(), "fence watchdog started");
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
            }
            Err(e) => {
                tracing::error!(program = %program.display(), error = %e, "cannot start the fence watchdog; fenced pods are stopped only while the agent runs")
            }
        }
    }
}

/// The pod uids with a file in `folder` (`pods/` or `fenced/`); files being written
/// (`.tmp`) and anything else that is not a uid are left out.
pub fn uids_in(folder: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| safe_uid(name))
        .collect()
}

/// A uid is a file name here: only [A-Za-z0-9-], as the control plane makes them.
fn safe_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// True while a watchdog holds `<fence dir>/watchdog.lock`.
pub fn watchdog_running(fence_dir: &Path) -> bool {
    let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(fence_dir.join("watchdog.lock"))
    else {
        return false;
    };
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(held) => {
            drop(held);
            false
        }
        Err(_) => true,
    }
}

/// What the watchdog does for one fenced pod at one look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    /// Mark it fenced and SIGTERM its process groups.
    Term(String),
    /// SIGKILL what is left of its process groups.
    Kill(String),
    /// Its processes are gone: drop its process list.
    Done(String),
}

/// The watchdog's decision (pure): at `now_ms`, with `lease`, the fenced pods' live
/// process groups (`alive`: uid → how many still run) and when each was first sent
/// SIGTERM (`termed`).
pub fn decide(
    now_ms: u64,
    lease: Option<&Lease>,
    alive: &BTreeMap<String, usize>,
    termed: &BTreeMap<String, u64>,
) -> Vec<Act> {
    let deadline = lease.map_or(0, |l| l.deadline_ms);
    let grace = lease.map_or(0, |l| l.grace_ms);
    let mut acts = Vec::new();
    for (uid, n) in alive {
        match termed.get(uid) {
            _ if *n == 0 && (now_ms >= deadline || termed.contains_key(uid)) => {
                acts.push(Act::Done(uid.clone()))
            }
            None if now_ms >= deadline => acts.push(Act::Term(uid.clone())),
            Some(at) if now_ms >= at + grace => acts.push(Act::Kill(uid.clone())),
            _ => {}
        }
    }
    acts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_text_round_trips() {
        let l = Lease {
            agent: ProcId {
                pid: 42,
                start_time: 7,
            },
            deadline_ms: 123_456,
            grace_ms: 2000,
        };
        assert_eq!(Lease::parse(&l.format()), Some(l));
        assert_eq!(Lease::parse("v1 1 2 3"), None);
        assert_eq!(Lease::parse("v2 1 2 3 4"), None);
        assert_eq!(Lease::parse("v1 1 2 3 4 5"), None);
        let procs = vec![
            ProcId {
                pid: 10,
                start_time: 99,
            },
            ProcId {
                pid: 11,
                start_time: 100,
            },
        ];
        assert_eq!(parse_processes(&format_processes(&procs)), procs);
        assert_eq!(parse_processes("x y\n10 99\n\n"), procs[..1].to_vec());
    }

    fn lease(deadline_ms: u64) -> Lease {
        Lease {
            agent: ProcId {
                pid: 1,
                start_time: 1,
            },
            deadline_ms,
            grace_ms: 500,
        }
    }

    #[test]
    fn the_watchdog_terms_at_the_deadline_and_kills_after_the_grace() {
        let alive: BTreeMap<String, usize> = [("a".to_string(), 1)].into();
        let none = BTreeMap::new();
        assert!(decide(999, Some(&lease(1000)), &alive, &none).is_empty());
        assert_eq!(
            decide(1000, Some(&lease(1000)), &alive, &none),
            vec![Act::Term("a".into())]
        );
        assert_eq!(
            decide(1000, None, &alive, &none),
            vec![Act::Term("a".into())],
            "no lease at all is a lapsed lease"
        );
        let termed: BTreeMap<String, u64> = [("a".to_string(), 1000)].into();
        assert!(decide(1499, Some(&lease(1000)), &alive, &termed).is_empty());
        assert_eq!(
            decide(1500, Some(&lease(1000)), &alive, &termed),
            vec![Act::Kill("a".into())]
        );
        // A renewal after the first SIGTERM does not save the pod: it is fenced.
        assert_eq!(
            decide(1500, Some(&lease(9000)), &alive, &termed),
            vec![Act::Kill("a".into())]
        );
        let gone: BTreeMap<String, usize> = [("a".to_string(), 0)].into();
        assert_eq!(
            decide(1200, Some(&lease(1000)), &gone, &termed),
            vec![Act::Done("a".into())]
        );
        assert!(
            decide(500, Some(&lease(1000)), &gone, &none).is_empty(),
            "a pod between container runs keeps its list while the lease holds"
        );
    }

    #[tokio::test]
    async fn the_lease_only_moves_forward_and_is_written_for_the_watchdog() {
        let tmp = tempfile::tempdir().unwrap();
        let f = Fence::open(
            tmp.path(),
            Duration::from_secs(3),
            Duration::from_secs(2),
            true,
        );
        assert!(f.lapsed(Instant::now()), "no acknowledged heartbeat yet");
        assert_eq!(f.within(), Some(Duration::from_secs(5)));
        let sent = Instant::now();
        f.renew(sent);
        assert!(!f.lapsed(Instant::now()));
        assert_eq!(f.deadline(), Some(sent + Duration::from_secs(3)));
        f.renew(sent - Duration::from_secs(1));
        assert_eq!(
            f.deadline(),
            Some(sent + Duration::from_secs(3)),
            "an older heartbeat's late ack does not pull it back"
        );
        let l = Lease::read(&dir(tmp.path())).unwrap();
        let left = l.deadline_ms.saturating_sub(boot_ms());
        assert!((2000..=3000).contains(&left), "{left} ms left");
        assert_eq!(l.grace_ms, 2000);
        assert_eq!(l.agent.pid, std::process::id() as i32);
        // A new agent picks the lease up.
        let again = Fence::open(
            tmp.path(),
            Duration::from_secs(3),
            Duration::from_secs(2),
            true,
        );
        assert!(!again.lapsed(Instant::now()));
        f.mark("u-1", "why");
        assert_eq!(again.fenced("u-1").as_deref(), Some("why"));
        assert_eq!(f.fenced("../x"), None);
        again.forget("u-1");
        assert_eq!(f.fenced("u-1"), None);
        let unguarded = Fence::open(
            tmp.path(),
            Duration::from_secs(3),
            Duration::from_secs(2),
            false,
        );
        assert_eq!(unguarded.within(), None);
    }
}
