//! Running a command inside a running container of the process runtime (exec
//! probes). The command gets the container's environment and working directory and,
//! when pods are isolated, joins the container's mount and UTS namespaces (setns on
//! `/proc/<pid>/ns/{mnt,uts}`), so it sees the container's volumes at their
//! mountPaths, its `/etc/hosts` and its hostname. It does not join the container's
//! cgroup (its resources are not charged to the container) — a short probe command
//! does not need it. It runs as a process group of its own, killed whole at its time
//! limit (or when the caller gives up) and always reaped.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sched::CloneFlags;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::sandbox::{Isolation, Plan};
use super::sys;
use super::{ExecOutput, ExecRequest, RuntimeError, EXEC_OUTPUT_LIMIT};

/// How long the output is still read after the command ended or was killed (a
/// process that left the group may hold the pipes open).
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// Kills the command's process group if the exec is abandoned midway.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
}

/// The namespace `ns` of `pid` when it is not the agent's own.
fn foreign_namespace(pid: u32, ns: &str) -> io::Result<Option<File>> {
    let theirs = format!("/proc/{pid}/ns/{ns}");
    let ours = std::fs::read_link(format!("/proc/self/ns/{ns}"))?;
    if std::fs::read_link(&theirs)? == ours {
        return Ok(None);
    }
    File::open(&theirs).map(Some)
}

async fn drain(r: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut r) = r else {
        return kept;
    };
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = EXEC_OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

fn spawn_error(program: &str, source: io::Error) -> RuntimeError {
    RuntimeError::Spawn {
        program: program.to_string(),
        source,
    }
}

/// Runs `req`, entering the container's namespaces when pods are isolated (through
/// the isolation's [`Syscall`]).
pub fn exec(
    isolation: &Isolation,
    req: ExecRequest,
) -> BoxFuture<'static, Result<ExecOutput, RuntimeError>> {
    let sys = match isolation {
        Isolation::Available(sys) => Some(Arc::clone(sys)),
        Isolation::Unavailable(_) => None,
    };
    Box::pin(async move {
        let program = req
            .argv
            .first()
            .cloned()
            .ok_or_else(|| RuntimeError::NoCommand("exec".into()))?;
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&req.argv[1..])
            .env_clear()
            .envs(req.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // Held open until the child has forked; O_CLOEXEC, so the command does not keep them.
        let mut namespaces: Vec<File> = Vec::new();
        match sys {
            Some(sys) => {
                let mut joins: Vec<(RawFd, CloneFlags)> = Vec::new();
                // Network and UTS first: after the mount namespace, /proc paths may mean
                // another thing.
                for (name, flags) in [
                    ("net", CloneFlags::CLONE_NEWNET),
                    ("uts", CloneFlags::CLONE_NEWUTS),
                    ("mnt", CloneFlags::CLONE_NEWNS),
                ] {
                    let ns = foreign_namespace(req.pid, name).map_err(|e| {
                        spawn_error(
                            &program,
                            io::Error::new(
                                e.kind(),
                                format!("cannot enter the container's {name} namespace: {e}"),
                            ),
                        )
                    })?;
                    if let Some(f) = ns {
                        joins.push((f.as_raw_fd(), flags));
                        namespaces.push(f);
                    }
                }
                let plan = Plan::enter(&joins, &req.working_dir).map_err(|e| {
                    spawn_error(&program, io::Error::new(io::ErrorKind::InvalidInput, e))
                })?;
                sys::before_exec(&mut cmd, plan, sys);
            }
            None => {
                cmd.current_dir(&req.working_dir);
            }
        }
        let mut child = cmd.spawn().map_err(|e| spawn_error(&program, e))?;
        drop(namespaces);
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        let mut guard = GroupGuard(pgid);
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let wait = async {
            let status = tokio::time::timeout(req.timeout, child.wait()).await;
            // The command is its process group: whatever it left behind goes too.
            if let Some(p) = pgid {
                let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
            }
            match status {
                Ok(s) => s.map(Some),
                Err(_) => child.wait().await.map(|_| None),
            }
        };
        let output = async {
            tokio::time::timeout(req.timeout + DRAIN_GRACE, async {
                tokio::join!(drain(out), drain(err))
            })
            .await
            .unwrap_or_default()
        };
        let (status, (mut o, e)) = tokio::join!(wait, output);
        guard.0 = None;
        let status = status.map_err(|e| spawn_error(&program, e))?;
        o.extend_from_slice(&e);
        Ok(ExecOutput {
            code: status.and_then(|s| s.code()),
            timed_out: status.is_none(),
            output: String::from_utf8_lossy(&o).into_owned(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn req(argv: &[&str], timeout: Duration) -> ExecRequest {
        ExecRequest {
            pid: std::process::id(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![
                ("PATH".into(), crate::env::DEFAULT_PATH.into()),
                ("WHO".into(), "probe".into()),
            ],
            working_dir: PathBuf::from("/tmp"),
            timeout,
        }
    }

    #[tokio::test]
    async fn runs_with_the_env_and_working_dir_and_keeps_output() {
        let out = exec(
            &Isolation::Available(Arc::new(super::super::sandbox::LinuxSyscall)),
            req(
                &["sh", "-c", "echo $WHO in $(pwd); echo oops >&2; exit 3"],
                Duration::from_secs(5),
            ),
        )
        .await
        .unwrap();
        assert_eq!(out.code, Some(3));
        assert!(!out.timed_out);
        assert_eq!(out.output, "probe in /tmp\noops\n");
    }

    #[tokio::test]
    async fn a_command_over_its_time_limit_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let t = std::time::Instant::now();
        let out = exec(
            &Isolation::Unavailable("test".into()),
            req(&["sh", "-c", &script], Duration::from_millis(300)),
        )
        .await
        .unwrap();
        assert!(out.timed_out && out.code.is_none(), "{out:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(5);
        // A zombie until init reaps it counts as gone.
        while crate::procfs::start_ticks(pid).is_some() {
            assert!(std::time::Instant::now() < end, "grandchild survived");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_an_error() {
        let e = exec(
            &Isolation::Unavailable("test".into()),
            req(&["/nonexistent/probe"], Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/probe"), "{e}");
    }
}
