//! Container runtimes: how a container's process is started, watched, signalled and
//! cleaned up. The pod worker only talks to the [`Runtime`] trait, so other runtimes
//! (docker, later) slot in beside the process runtime, and its unit tests use a fake
//! (`fake`, test builds only). What a child does between fork and exec is a
//! [`sandbox::Plan`] of [`sandbox::Syscall`]s; the only unsafe code is in `sys`.

pub mod cgroup;
pub mod exec;
#[cfg(test)]
pub mod fake;
pub mod process;
pub mod sandbox;
mod sys;

/// The `/proc` reader (it moved to [`crate::procfs`], shared with the CLI and tests).
pub use crate::procfs;

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::Signal;
use tokio::sync::oneshot;

pub use cgroup::Limits;
pub use sandbox::{BindMount, Isolation, Sandbox};

/// Errors starting or cleaning up a container.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container resolved to an empty command line.
    #[error("container {0} has no command to run")]
    NoCommand(String),
    /// A file the runtime needs (log file, working directory) could not be prepared.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the file is for.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// fork/exec failed.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Cgroup cleanup failed.
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    /// The container's sandbox could not be prepared.
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    /// A sandbox was asked for but this runtime cannot isolate pods.
    #[error("cannot isolate the container: {0}")]
    NotIsolated(String),
}

/// Everything needed to start one container's process.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The pod's uid (names its cgroup).
    pub pod_uid: String,
    /// The container's name.
    pub container: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The complete environment (nothing is inherited from the agent).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub working_dir: PathBuf,
    /// stdout and stderr go here, opened read-write and appending: the container's
    /// log FIFO ([`crate::logs::Registry::open_output`]).
    pub log_path: PathBuf,
    /// The container's own limits.
    pub limits: Limits,
    /// The pod's limits (sum over its containers).
    pub pod_limits: Limits,
    /// Private mount and UTS namespaces for the process (None: it shares the node's).
    /// Only given when [`Runtime::isolation`] is available.
    pub sandbox: Option<Sandbox>,
}

/// How a container's main process ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, when it exited normally.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// Its cgroup recorded an OOM kill while it ran.
    pub oom_killed: bool,
}

impl Exit {
    /// Exit status unknown: the process was adopted, so it is not our child.
    pub fn unknown(&self) -> bool {
        self.code.is_none() && self.signal.is_none()
    }

    /// Whether it succeeded (exit code 0).
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.oom_killed
    }

    /// The exit code Kubernetes reports: the code, or 128 + signal.
    pub fn reported_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 255,
        }
    }
}

/// A running container's process.
#[derive(Debug)]
pub struct Started {
    /// Its pid (also its process group id).
    pub pid: u32,
    /// Its start time in clock ticks (identifies it across pid reuse).
    pub start_ticks: u64,
    /// Resolves once it has exited and been reaped.
    pub exit: oneshot::Receiver<Exit>,
    /// Set when its limits could not be enforced, saying why.
    pub limits_warning: Option<String>,
}

/// A command to run inside a running container (an exec probe).
#[derive(Clone, Debug)]
pub struct ExecRequest {
    /// The container's main process (whose namespaces the command enters).
    pub pid: u32,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The complete environment (the container's).
    pub env: Vec<(String, String)>,
    /// Working directory (the container's).
    pub working_dir: PathBuf,
    /// Time limit: the command is killed when it is over.
    pub timeout: Duration,
}

/// How an [`ExecRequest`] ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code (None: killed by a signal, or timed out).
    pub code: Option<i32>,
    /// It ran past its time limit and was killed.
    pub timed_out: bool,
    /// Its stdout and stderr (the first [`EXEC_OUTPUT_LIMIT`] bytes of each, lossy UTF-8).
    pub output: String,
}

/// How much of an exec's output is kept (the kubelet keeps 10 KiB).
pub const EXEC_OUTPUT_LIMIT: usize = 10 * 1024;

/// A container runtime.
pub trait Runtime: Send + Sync {
    /// Starts a container's process.
    fn start(&self, launch: &Launch) -> Result<Started, RuntimeError>;
    /// Takes over a container process started by an earlier agent, if `pid` is still
    /// the process that started at `start_ticks`.
    fn adopt(&self, pod_uid: &str, container: &str, pid: u32, start_ticks: u64) -> Option<Started>;
    /// Sends `signal` to the container's whole process group.
    fn signal(&self, pid: u32, signal: Signal);
    /// Kills whatever is left of the pod and removes its cgroups.
    fn cleanup_pod(&self, pod_uid: &str) -> Result<(), RuntimeError>;
    /// Whether containers can get a [`Sandbox`] (and if not, why).
    fn isolation(&self) -> &Isolation;
    /// The environment the container process `pid` was started with (the exec
    /// probes' environment of a container adopted after an agent restart).
    fn environ(&self, pid: u32) -> Option<Vec<(String, String)>>;
    /// Runs a command in a running container, as exec probes do: with its
    /// environment and working directory and, when pods are isolated, in its mount
    /// and UTS namespaces; killed (and reaped) at its time limit.
    fn exec(&self, request: ExecRequest) -> BoxFuture<'static, Result<ExecOutput, RuntimeError>>;
    /// The IPv4 addresses some socket on the host holds now: a loopback pod address one
    /// of them holds is skipped, so a leftover process never makes a new pod fail.
    fn bound_ipv4(&self) -> std::collections::BTreeSet<std::net::Ipv4Addr>;
}
