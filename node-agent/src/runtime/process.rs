//! The process runtime: each container is a process group of its own (setsid),
//! started with a clean environment, stdout/stderr appended to its log file, placed in
//! its cgroup before it execs, isolated (as root) in its pod's sandbox, and reaped by
//! a task that reports how it ended.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::procfs;

use super::cgroup::Cgroups;
use super::sandbox::{self, Isolation, LinuxSyscall, Plan, Syscall};
use super::sys;
use super::{ExecOutput, ExecRequest, Exit, Launch, Runtime, RuntimeError, Started};

/// How often an adopted process's liveness is polled when pidfds are not available.
const POLL: Duration = Duration::from_millis(500);

/// Resolves once the process `pid` that started at `ticks` has exited (it is not our
/// child: one adopted after an agent restart). Uses a pidfd (readable on exit) when
/// the kernel has them, else polls `/proc`.
pub async fn wait_gone(pid: u32, ticks: u64) {
    if let Some(afd) = sys::pidfd(pid) {
        // The pid may have been reused between the check and pidfd_open.
        if !procfs::is_same_alive(pid, ticks) {
            return;
        }
        let _ = afd.readable().await;
        return;
    }
    while procfs::is_same_alive(pid, ticks) {
        tokio::time::sleep(POLL).await;
    }
}

/// Runs containers as local process groups.
pub struct ProcessRuntime {
    cgroups: Arc<dyn Cgroups>,
    isolation: Isolation,
    /// The system calls a child makes before exec (the isolation's when pods are
    /// isolated, else the real ones).
    sys: Arc<dyn Syscall>,
    tracker: TaskTracker,
    /// Cancelled only when the agent leaves for good: reaper tasks stop waiting.
    reapers_stop: CancellationToken,
}

impl ProcessRuntime {
    /// A runtime using `cgroups` and (when available) `isolation`, whose reaper
    /// tasks live on `tracker` until their process exits or `reapers_stop` is
    /// cancelled.
    pub fn new(
        cgroups: Arc<dyn Cgroups>,
        isolation: Isolation,
        tracker: TaskTracker,
        reapers_stop: CancellationToken,
    ) -> Self {
        let sys: Arc<dyn Syscall> = match &isolation {
            Isolation::Available(sys) => Arc::clone(sys),
            Isolation::Unavailable(_) => Arc::new(LinuxSyscall),
        };
        ProcessRuntime {
            cgroups,
            isolation,
            sys,
            tracker,
            reapers_stop,
        }
    }

    fn group_kill(pid: u32) {
        if let Ok(p) = i32::try_from(pid) {
            let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
}

impl Runtime for ProcessRuntime {
    fn start(&self, l: &Launch) -> Result<Started, RuntimeError> {
        let program = l
            .argv
            .first()
            .ok_or_else(|| RuntimeError::NoCommand(l.container.clone()))?;
        // Read-write: on the log FIFO the container is a reader too, so it never gets
        // SIGPIPE while no agent drains it (see logs.rs).
        let log = OpenOptions::new()
            .read(true)
            .create(true)
            .append(true)
            .open(&l.log_path)
            .map_err(|source| RuntimeError::Io {
                what: "log file",
                path: l.log_path.clone(),
                source,
            })?;
        // Everything the child needs for its sandbox is built here, before the fork; the
        // pod's network namespace pin stays open until the child has forked.
        let mut netns: Option<std::fs::File> = None;
        let sandboxed = match (&l.sandbox, &self.isolation) {
            (None, _) => None,
            (Some(sb), Isolation::Available(_)) => {
                sandbox::prepare_targets(sb)?;
                if let Some(path) = &sb.netns {
                    let f = std::fs::File::open(path).map_err(|source| RuntimeError::Io {
                        what: "pod network namespace",
                        path: path.clone(),
                        source,
                    })?;
                    netns = Some(f);
                }
                let fd = netns.as_ref().map(AsRawFd::as_raw_fd);
                Some(Plan::build(sb, &l.working_dir, fd)?)
            }
            (Some(_), Isolation::Unavailable(why)) => {
                return Err(RuntimeError::NotIsolated(why.clone()))
            }
        };
        let log2 = log.try_clone().map_err(|source| RuntimeError::Io {
            what: "log file",
            path: l.log_path.clone(),
            source,
        })?;

        let (procs, limits_warning) = match self.cgroups.prepare(
            &l.pod_uid,
            &l.pod_limits,
            &l.container,
            &l.limits,
        ) {
            Ok(files) => (files, None),
            Err(e) if l.limits.is_empty() => {
                tracing::debug!(container = %l.container, error = %e, "running without a cgroup");
                (Vec::new(), None)
            }
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        let oom_base = self.cgroups.oom_kills(&l.pod_uid, &l.container);

        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&l.argv[1..])
            .env_clear()
            .envs(l.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(false);
        // Everything the child does between fork and exec is one plan of system calls
        // built here: its own session, joining its cgroups, then its sandbox.
        let fds: Vec<RawFd> = procs.iter().map(|f| f.as_raw_fd()).collect();
        let in_sandbox = sandboxed.is_some();
        let plan = match sandboxed {
            Some(sandbox_plan) => Plan::session(&fds).then(sandbox_plan),
            None => {
                // The chdir happens after the mounts when sandboxed (see Plan::build).
                cmd.current_dir(&l.working_dir);
                Plan::session(&fds)
            }
        };
        sys::before_exec(&mut cmd, plan, Arc::clone(&self.sys));
        let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
            // A failure may come from the namespaces, mounts or chdir as well as exec.
            program: if in_sandbox {
                format!("{program} in the pod's sandbox (namespaces, mounts, working directory)")
            } else {
                program.clone()
            },
            source,
        })?;
        drop(procs);
        drop(netns);
        let Some(pid) = child.id() else {
            // Already reaped: cannot happen before wait(), but never unwrap it.
            return Err(RuntimeError::Spawn {
                program: program.clone(),
                source: io::Error::other("child has no pid"),
            });
        };
        let start_ticks = i32::try_from(pid)
            .ok()
            .and_then(procfs::stat)
            .map(|s| s.start_time)
            .unwrap_or(0);

        let (tx, rx) = oneshot::channel();
        let cgroups = Arc::clone(&self.cgroups);
        let stop = self.reapers_stop.clone();
        let (uid, name) = (l.pod_uid.clone(), l.container.clone());
        self.tracker.spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s,
                _ = stop.cancelled() => return,
            };
            // The container is its process group: whatever it left behind goes too.
            Self::group_kill(pid);
            let mut exit = match status {
                Ok(s) => Exit {
                    code: s.code(),
                    signal: s.signal(),
                    oom_killed: false,
                },
                Err(e) => {
                    tracing::warn!(pid, error = %e, "waiting for a container process failed");
                    Exit::default()
                }
            };
            exit.oom_killed = exit.code != Some(0) && cgroups.oom_kills(&uid, &name) > oom_base;
            let _ = tx.send(exit);
        });
        Ok(Started {
            pid,
            start_ticks,
            exit: rx,
            limits_warning,
        })
    }

    fn adopt(&self, pod_uid: &str, container: &str, pid: u32, start_ticks: u64) -> Option<Started> {
        if !procfs::is_same_alive(pid, start_ticks) {
            return None;
        }
        let oom_base = self.cgroups.oom_kills(pod_uid, container);
        let (tx, rx) = oneshot::channel();
        let cgroups = Arc::clone(&self.cgroups);
        let stop = self.reapers_stop.clone();
        let (uid, name) = (pod_uid.to_string(), container.to_string());
        self.tracker.spawn(async move {
            tokio::select! {
                _ = wait_gone(pid, start_ticks) => {}
                _ = stop.cancelled() => return,
            }
            Self::group_kill(pid);
            let oom_killed = cgroups.oom_kills(&uid, &name) > oom_base;
            let _ = tx.send(Exit {
                code: None,
                signal: None,
                oom_killed,
            });
        });
        Some(Started {
            pid,
            start_ticks,
            exit: rx,
            limits_warning: None,
        })
    }

    fn signal(&self, pid: u32, signal: Signal) {
        if let Ok(p) = i32::try_from(pid) {
            if let Err(e) = killpg(Pid::from_raw(p), signal) {
                if e != nix::errno::Errno::ESRCH {
                    tracing::warn!(pid, ?signal, error = %e, "signalling a container failed");
                }
            }
        }
    }

    fn cleanup_pod(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        if !self.cgroups.available() {
            return Ok(());
        }
        // Anything still in the pod's cgroups (e.g. a process that left its group) dies
        // now; rmdir succeeds once the kernel has let go of the exiting tasks.
        let mut last = Ok(());
        for _ in 0..100 {
            for pid in self.cgroups.pids(pod_uid) {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            last = self.cgroups.remove_pod(pod_uid);
            if last.is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        last.map_err(RuntimeError::from)
    }

    fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    fn environ(&self, pid: u32) -> Option<Vec<(String, String)>> {
        procfs::environ(pid)
    }

    fn bound_ipv4(&self) -> std::collections::BTreeSet<std::net::Ipv4Addr> {
        procfs::bound_ipv4()
    }

    fn exec(
        &self,
        request: ExecRequest,
    ) -> futures::future::BoxFuture<'static, Result<ExecOutput, RuntimeError>> {
        super::exec::exec(&self.isolation, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cgroup::{CgroupFs, Layout, Limits, NoCgroups};
    use std::path::Path;

    fn launch(dir: &Path, argv: &[&str], limits: Limits) -> Launch {
        Launch {
            pod_uid: "uid-t".into(),
            container: "c".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![
                ("PATH".into(), crate::env::DEFAULT_PATH.into()),
                ("GREETING".into(), "hi".into()),
            ],
            working_dir: dir.to_path_buf(),
            log_path: dir.join("c.log"),
            limits,
            pod_limits: limits,
            sandbox: None,
        }
    }

    fn runtime(cgroups: Arc<dyn Cgroups>) -> ProcessRuntime {
        ProcessRuntime::new(
            cgroups,
            Isolation::Unavailable("test".into()),
            TaskTracker::new(),
            CancellationToken::new(),
        )
    }

    /// The session id of `pid`.
    fn session(pid: u32) -> Option<u32> {
        procfs::stat(pid as i32).and_then(|s| u32::try_from(s.session).ok())
    }

    #[tokio::test]
    async fn runs_in_its_own_session_with_env_log_and_exit_code() {
        let t = tempfile::tempdir().unwrap();
        let (mem, cpu) = (t.path().join("memory"), t.path().join("cpu"));
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::create_dir_all(&cpu).unwrap();
        let cg = Arc::new(CgroupFs::new(Layout::V1 {
            memory: mem.clone(),
            cpu,
        }));
        let rt = runtime(cg);
        let limits = Limits {
            memory_bytes: Some(1 << 30),
            cpu_millis: None,
        };
        let mut s = rt
            .start(&launch(
                t.path(),
                &[
                    "sh",
                    "-c",
                    "echo $GREETING; echo oops >&2; sleep 0.2; exit 7",
                ],
                limits,
            ))
            .unwrap();
        assert!(s.limits_warning.is_none());
        assert_eq!(
            session(s.pid),
            Some(s.pid),
            "setsid: the container leads its own session"
        );
        // The child wrote "0" (itself) into its cgroup.procs before exec.
        assert_eq!(
            std::fs::read_to_string(mem.join("twinset/uid-t/c/cgroup.procs")).unwrap(),
            "0"
        );
        let exit = tokio::time::timeout(Duration::from_secs(10), &mut s.exit)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            exit,
            Exit {
                code: Some(7),
                signal: None,
                oom_killed: false
            }
        );
        let log = std::fs::read_to_string(t.path().join("c.log")).unwrap();
        assert_eq!(log, "hi\noops\n");
        // Restarts append.
        let mut s = rt
            .start(&launch(t.path(), &["sh", "-c", "echo again"], limits))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), &mut s.exit)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("c.log")).unwrap(),
            "hi\noops\nagain\n"
        );
    }

    #[tokio::test]
    async fn signal_reaches_the_whole_group() {
        let t = tempfile::tempdir().unwrap();
        let rt = runtime(Arc::new(NoCgroups::new("test")));
        let pidfile = t.path().join("child.pid");
        let script = format!("sleep 1000 & echo $! > {}; wait", pidfile.display());
        let mut s = rt
            .start(&launch(t.path(), &["sh", "-c", &script], Limits::default()))
            .unwrap();
        assert!(s.limits_warning.is_none(), "no limits, no warning");
        let end = tokio::time::Instant::now() + Duration::from_secs(10);
        let child: u32 = loop {
            if let Some(p) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break p;
            }
            assert!(tokio::time::Instant::now() < end, "no grandchild pid");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let child_ticks = procfs::start_ticks(child).unwrap();
        rt.signal(s.pid, Signal::SIGTERM);
        let exit = tokio::time::timeout(Duration::from_secs(10), &mut s.exit)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(exit.signal, Some(15));
        assert_eq!(exit.reported_code(), 143);
        tokio::time::timeout(Duration::from_secs(10), wait_gone(child, child_ticks))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn limits_without_cgroups_warn_but_run() {
        let t = tempfile::tempdir().unwrap();
        let rt = runtime(Arc::new(NoCgroups::new("not root")));
        let limits = Limits {
            memory_bytes: Some(1 << 27),
            cpu_millis: Some(100),
        };
        let mut s = rt.start(&launch(t.path(), &["true"], limits)).unwrap();
        assert!(s
            .limits_warning
            .as_deref()
            .is_some_and(|w| w.contains("not root")));
        let exit = tokio::time::timeout(Duration::from_secs(10), &mut s.exit)
            .await
            .unwrap()
            .unwrap();
        assert!(exit.success());
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let t = tempfile::tempdir().unwrap();
        let rt = runtime(Arc::new(NoCgroups::new("test")));
        let e = rt
            .start(&launch(
                t.path(),
                &["/nonexistent/program"],
                Limits::default(),
            ))
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/program"), "{e}");
        assert!(matches!(
            rt.start(&launch(t.path(), &[], Limits::default())),
            Err(RuntimeError::NoCommand(_))
        ));
    }

    #[tokio::test]
    async fn a_sandbox_without_isolation_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let rt = runtime(Arc::new(NoCgroups::new("test")));
        let mut l = launch(t.path(), &["true"], Limits::default());
        l.sandbox = Some(sandbox::Sandbox {
            netns: None,
            hostname: Some("h".into()),
            mounts: vec![],
        });
        let e = rt.start(&l).unwrap_err();
        assert!(matches!(e, RuntimeError::NotIsolated(_)), "{e}");
    }

    #[tokio::test]
    async fn root_only_sandbox_mounts_names_and_enters_the_volume() {
        use crate::runtime::sandbox::{BindMount, LinuxSyscall, Sandbox};
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "needs root (private mount and UTS namespaces); run as root, or leave these tests \
             out: cargo nextest run --workspace --profile unprivileged"
        );
        let isolation = sandbox::detect(Arc::new(LinuxSyscall));
        if !isolation.available() {
            eprintln!("skipped: {isolation:?}");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let claim = t.path().join("claim");
        std::fs::create_dir(&claim).unwrap();
        let hosts = t.path().join("hosts");
        std::fs::write(&hosts, "127.9.9.9\tbox-0\n").unwrap();
        let target = t.path().join("mnt/data");
        let rt = ProcessRuntime::new(
            Arc::new(NoCgroups::new("test")),
            isolation,
            TaskTracker::new(),
            CancellationToken::new(),
        );
        let mut l = launch(
            t.path(),
            &[
                "sh",
                "-c",
                "hostname; pwd; echo hi > f; grep box-0 /etc/hosts",
            ],
            Limits::default(),
        );
        l.working_dir = target.clone();
        l.sandbox = Some(Sandbox {
            netns: None,
            hostname: Some("box-0".into()),
            mounts: vec![
                BindMount {
                    source: claim.clone(),
                    target: target.clone(),
                    read_only: false,
                },
                BindMount {
                    source: hosts,
                    target: "/etc/hosts".into(),
                    read_only: true,
                },
            ],
        });
        let node_hostname = nix::unistd::gethostname().unwrap();
        let mut s = rt.start(&l).unwrap();
        let exit = tokio::time::timeout(Duration::from_secs(10), &mut s.exit)
            .await
            .unwrap()
            .unwrap();
        let log = std::fs::read_to_string(t.path().join("c.log")).unwrap();
        assert!(exit.success(), "{exit:?}: {log}");
        assert_eq!(
            log,
            format!("box-0\n{}\n127.9.9.9\tbox-0\n", target.display())
        );
        assert_eq!(std::fs::read_to_string(claim.join("f")).unwrap(), "hi\n");
        assert!(
            !target.join("f").exists(),
            "the bind mount stayed in the container's namespace"
        );
        assert_eq!(nix::unistd::gethostname().unwrap(), node_hostname);
        assert!(!std::fs::read_to_string("/etc/hosts")
            .unwrap()
            .contains("127.9.9.9"));
    }

    #[tokio::test]
    async fn wait_gone_returns_when_a_process_exits() {
        let mut child = tokio::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let ticks = procfs::start_ticks(pid).unwrap();
        // Reap in the background so the process does not stay a zombie.
        let reaper = tokio::spawn(async move { child.wait().await });
        tokio::time::timeout(Duration::from_secs(10), wait_gone(pid, ticks))
            .await
            .unwrap();
        reaper.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn adopting_needs_the_same_process() {
        let rt = runtime(Arc::new(NoCgroups::new("test")));
        let me = std::process::id();
        let ticks = procfs::start_ticks(me).unwrap();
        assert!(rt.adopt("u", "c", me, ticks + 1).is_none());
        let mut child = tokio::process::Command::new("sleep")
            .arg("0.1")
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let s = rt
            .adopt("u", "c", pid, procfs::start_ticks(pid).unwrap())
            .unwrap();
        child.wait().await.unwrap();
        let exit = tokio::time::timeout(Duration::from_secs(10), s.exit)
            .await
            .unwrap()
            .unwrap();
        assert!(exit.unknown());
    }
}
