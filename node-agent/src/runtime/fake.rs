//! A fake [`Runtime`] for unit tests of the pod worker and the supervisor: no process
//! is started. Each call is recorded with the (paused) time it happened; a test ends
//! a "process" with [`FakeRuntime::exit`], marks processes an earlier agent left as
//! adoptable, makes exec probes fail, and lets a container ignore SIGTERM. SIGTERM
//! (unless ignored) and SIGKILL end a process as the signal would.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use futures::future::BoxFuture;
use nix::sys::signal::Signal;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::{ExecOutput, ExecRequest, Exit, Isolation, Launch, Runtime, RuntimeError, Started};

/// A call the worker made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `start`: the container got this pid.
    Start {
        /// The container.
        container: String,
        /// Its new pid.
        pid: u32,
    },
    /// `adopt` found the process alive.
    Adopt {
        /// The container.
        container: String,
        /// Its pid.
        pid: u32,
    },
    /// `signal`.
    Signal {
        /// The process group.
        pid: u32,
        /// The signal.
        signal: Signal,
    },
    /// `exec` (a probe).
    Exec {
        /// The container's process.
        pid: u32,
    },
    /// `cleanup_pod`.
    Cleanup {
        /// The pod.
        pod_uid: String,
    },
}

struct Proc {
    container: String,
    exit: oneshot::Sender<Exit>,
}

#[derive(Default)]
struct Inner {
    next_pid: u32,
    procs: HashMap<u32, Proc>,
    /// Processes an earlier agent started that are still alive: pid → start ticks.
    leftovers: HashMap<u32, u64>,
    launches: Vec<Launch>,
    unhealthy: HashSet<String>,
    stubborn: HashSet<String>,
    /// Addresses "other processes on the host" hold.
    held: std::collections::BTreeSet<std::net::Ipv4Addr>,
}

/// The fake runtime.
pub struct FakeRuntime {
    isolation: Isolation,
    inner: Mutex<Inner>,
    calls: watch::Sender<Vec<(Instant, Call)>>,
    /// How many calls [`FakeRuntime::next_call`] has looked at.
    cursor: Mutex<usize>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRuntime {
    /// A runtime that cannot isolate pods; pids start at 1000.
    pub fn new() -> Self {
        FakeRuntime {
            isolation: Isolation::Unavailable("fake runtime".into()),
            inner: Mutex::new(Inner {
                next_pid: 1000,
                ..Default::default()
            }),
            calls: watch::channel(Vec::new()).0,
            cursor: Mutex::new(0),
        }
    }

    /// A runtime that isolates pods (its system calls are only recorded).
    pub fn isolated() -> Self {
        FakeRuntime {
            isolation: Isolation::Available(std::sync::Arc::new(
                super::sandbox::tests::Recording::default(),
            )),
            ..Self::new()
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    fn record(&self, call: Call) {
        let now = Instant::now();
        self.calls.send_modify(|c| c.push((now, call)));
    }

    /// A process an earlier agent started (`pid`, started at `start_ticks`) is alive.
    pub fn leave_running(&self, pid: u32, start_ticks: u64) {
        self.inner().leftovers.insert(pid, start_ticks);
    }

    /// The process `pid` ends as `exit`.
    pub fn exit(&self, pid: u32, exit: Exit) {
        let proc = self.inner().procs.remove(&pid);
        if let Some(p) = proc {
            let _ = p.exit.send(exit);
        }
    }

    /// Makes `ip` look held by another process on the host (or free again).
    pub fn hold_address(&self, ip: std::net::Ipv4Addr, held: bool) {
        let mut i = self.inner();
        if held {
            i.held.insert(ip);
        } else {
            i.held.remove(&ip);
        }
    }

    /// Exec probes in `container` fail (exit 1) while `unhealthy`.
    pub fn set_unhealthy(&self, container: &str, unhealthy: bool) {
        let mut i = self.inner();
        if unhealthy {
            i.unhealthy.insert(container.to_string());
        } else {
            i.unhealthy.remove(container);
        }
    }

    /// `container`'s processes ignore SIGTERM while `stubborn`.
    pub fn ignore_sigterm(&self, container: &str, stubborn: bool) {
        let mut i = self.inner();
        if stubborn {
            i.stubborn.insert(container.to_string());
        } else {
            i.stubborn.remove(container);
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<(Instant, Call)> {
        self.calls.borrow().clone()
    }

    /// Every launch started so far.
    pub fn launches(&self) -> Vec<Launch> {
        self.inner().launches.clone()
    }

    /// Whether `pid` runs.
    pub fn is_running(&self, pid: u32) -> bool {
        self.inner().procs.contains_key(&pid)
    }

    /// Waits for the next call (after the last one this returned) that `matches`,
    /// returning when it happened and the call.
    pub async fn next_call(&self, matches: impl Fn(&Call) -> bool) -> (Instant, Call) {
        let mut rx = self.calls.subscribe();
        loop {
            {
                let calls = rx.borrow_and_update();
                let mut cursor = self.cursor.lock().unwrap();
                while *cursor < calls.len() {
                    let (at, call) = &calls[*cursor];
                    *cursor += 1;
                    if matches(call) {
                        return (*at, call.clone());
                    }
                }
            }
            rx.changed()
                .await
                .expect("the fake runtime outlives its calls");
        }
    }

    fn spawn(&self, container: &str, pid: u32) -> Started {
        let (tx, rx) = oneshot::channel();
        self.inner().procs.insert(
            pid,
            Proc {
                container: container.to_string(),
                exit: tx,
            },
        );
        Started {
            pid,
            start_ticks: u64::from(pid) * 10,
            exit: rx,
            limits_warning: None,
        }
    }
}

impl Runtime for FakeRuntime {
    fn start(&self, launch: &Launch) -> Result<Started, RuntimeError> {
        if launch.argv.is_empty() {
            return Err(RuntimeError::NoCommand(launch.container.clone()));
        }
        let pid = {
            let mut i = self.inner();
            i.launches.push(launch.clone());
            i.next_pid += 1;
            i.next_pid
        };
        let started = self.spawn(&launch.container, pid);
        self.record(Call::Start {
            container: launch.container.clone(),
            pid,
        });
        Ok(started)
    }

    fn adopt(
        &self,
        _pod_uid: &str,
        container: &str,
        pid: u32,
        start_ticks: u64,
    ) -> Option<Started> {
        if self.inner().leftovers.get(&pid) != Some(&start_ticks) {
            return None;
        }
        self.inner().leftovers.remove(&pid);
        let mut started = self.spawn(container, pid);
        started.start_ticks = start_ticks;
        self.record(Call::Adopt {
            container: container.to_string(),
            pid,
        });
        Some(started)
    }

    fn signal(&self, pid: u32, signal: Signal) {
        self.record(Call::Signal { pid, signal });
        let ends = {
            let i = self.inner();
            match i.procs.get(&pid) {
                Some(p) => signal == Signal::SIGKILL || !i.stubborn.contains(&p.container),
                None => false,
            }
        };
        if ends {
            self.exit(
                pid,
                Exit {
                    code: None,
                    signal: Some(signal as i32),
                    oom_killed: false,
                },
            );
        }
    }

    fn cleanup_pod(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        self.record(Call::Cleanup {
            pod_uid: pod_uid.to_string(),
        });
        Ok(())
    }

    fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    fn bound_ipv4(&self) -> std::collections::BTreeSet<std::net::Ipv4Addr> {
        self.inner().held.clone()
    }

    fn environ(&self, _pid: u32) -> Option<Vec<(String, String)>> {
        Some(vec![("PATH".into(), crate::env::DEFAULT_PATH.into())])
    }

    fn exec(&self, request: ExecRequest) -> BoxFuture<'static, Result<ExecOutput, RuntimeError>> {
        self.record(Call::Exec { pid: request.pid });
        let unhealthy = {
            let i = self.inner();
            i.procs
                .get(&request.pid)
                .is_some_and(|p| i.unhealthy.contains(&p.container))
        };
        Box::pin(async move {
            Ok(ExecOutput {
                code: Some(if unhealthy { 1 } else { 0 }),
                timed_out: false,
                output: if unhealthy {
                    "not healthy".into()
                } else {
                    String::new()
                },
            })
        })
    }
}
