//! One container's lifecycle on the agent: waiting → running → terminated, restarts
//! with a doubling delay, restart count and last state. Pure state: the pod worker
//! drives it with what the runtime reports, and it renders the `ContainerStatus`.

use std::time::Duration;

use tokio::time::Instant;
use twinset_proto::v1;

use crate::runtime::Exit;

/// Longest delay between restarts of a crashing container.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(300);
/// A container that ran this long without crashing gets its restart delay reset.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// Waiting reasons and terminated reasons the agent reports.
pub mod reason {
    /// Not started yet.
    pub const CONTAINER_CREATING: &str = "ContainerCreating";
    /// Waiting out the delay before a restart.
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    /// The container's env or resources cannot be used.
    pub const CREATE_CONFIG_ERROR: &str = "CreateContainerConfigError";
    /// Exited 0.
    pub const COMPLETED: &str = "Completed";
    /// Exited non-zero or by a signal.
    pub const ERROR: &str = "Error";
    /// Killed by the kernel for exceeding its memory limit.
    pub const OOM_KILLED: &str = "OOMKilled";
    /// fork/exec failed.
    pub const START_ERROR: &str = "StartError";
    /// Exit status not observable (adopted after an agent restart).
    pub const UNKNOWN: &str = "Unknown";
}

/// How a container run ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Termination {
    /// Exit code (128 + signal when killed).
    pub exit_code: i32,
    /// The signal that killed it, or 0.
    pub signal: i32,
    /// Completed, Error, OOMKilled, StartError, Unknown.
    pub reason: String,
    /// Details.
    pub message: String,
    /// When the run started.
    pub started_at: String,
    /// When it ended.
    pub finished_at: String,
}

impl Termination {
    fn to_proto(&self) -> v1::ContainerStateTerminated {
        v1::ContainerStateTerminated {
            exit_code: self.exit_code,
            signal: self.signal,
            reason: self.reason.clone(),
            message: self.message.clone(),
            started_at: self.started_at.clone(),
            finished_at: self.finished_at.clone(),
            container_id: String::new(),
        }
    }

    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.exit_code == 0 && self.reason == reason::COMPLETED
    }
}

/// The state of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Not running: not started yet, or waiting for a restart, or unable to start.
    Waiting {
        /// Why.
        reason: String,
        /// Details.
        message: String,
    },
    /// Its process runs.
    Running {
        /// Pid (and process group id).
        pid: u32,
        /// Process start time in clock ticks.
        start_ticks: u64,
        /// When it started (RFC 3339).
        started_at: String,
    },
    /// It ended and will not be restarted (or the pod is stopping).
    Terminated(Termination),
}

/// One container of a pod, as the agent tracks it.
#[derive(Clone, Debug)]
pub struct ContainerRun {
    /// Container name.
    pub name: String,
    /// Image as written in the spec.
    pub image: String,
    /// Current state.
    pub state: State,
    /// The previous run's end.
    pub last: Option<Termination>,
    /// How many times it was restarted.
    pub restart_count: i32,
    /// Bumped on every start, to tell a stale exit notification from the current one.
    pub generation: u64,
    /// When a pending restart is due.
    pub restart_at: Option<Instant>,
    has_run: bool,
    crash_streak: u32,
    running_since: Option<Instant>,
}

impl ContainerRun {
    /// A container that has not started yet.
    pub fn new(name: &str, image: &str) -> Self {
        ContainerRun {
            name: name.to_string(),
            image: image.to_string(),
            state: State::Waiting {
                reason: reason::CONTAINER_CREATING.into(),
                message: String::new(),
            },
            last: None,
            restart_count: 0,
            generation: 0,
            restart_at: None,
            has_run: false,
            crash_streak: 0,
            running_since: None,
        }
    }

    /// Its pid while running.
    pub fn pid(&self) -> Option<u32> {
        match self.state {
            State::Running { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// Whether its process runs.
    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    /// It cannot start (waiting with `reason`); returns whether that is news.
    pub fn set_waiting(&mut self, reason: &str, message: &str) -> bool {
        let new = State::Waiting {
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let changed = self.state != new;
        self.state = new;
        self.restart_at = None;
        changed
    }

    /// Its process started (a restart when it ran before). Returns the new generation.
    pub fn on_started(
        &mut self,
        pid: u32,
        start_ticks: u64,
        started_at: String,
        now: Instant,
    ) -> u64 {
        if self.has_run {
            self.restart_count += 1;
        }
        self.has_run = true;
        self.restart_at = None;
        self.running_since = Some(now);
        self.state = State::Running {
            pid,
            start_ticks,
            started_at,
        };
        self.generation += 1;
        self.generation
    }

    /// An earlier agent's process was adopted. Returns the new generation.
    pub fn on_adopted(
        &mut self,
        pid: u32,
        start_ticks: u64,
        started_at: String,
        restart_count: i32,
        now: Instant,
    ) -> u64 {
        self.restart_count = restart_count;
        self.has_run = true;
        self.running_since = Some(now);
        self.state = State::Running {
            pid,
            start_ticks,
            started_at,
        };
        self.generation += 1;
        self.generation
    }

    /// The start failed: a terminated run with reason StartError.
    pub fn on_start_failed(&mut self, message: String, now_rfc3339: &str) {
        self.state = State::Terminated(Termination {
            exit_code: 128,
            signal: 0,
            reason: reason::START_ERROR.into(),
            message,
            started_at: now_rfc3339.to_string(),
            finished_at: now_rfc3339.to_string(),
        });
    }

    /// Its process ended as `exit`.
    pub fn on_exit(&mut self, exit: &Exit, now_rfc3339: &str, now: Instant) {
        let started_at = match &self.state {
            State::Running { started_at, .. } => started_at.clone(),
            _ => String::new(),
        };
        let (reason, message) = if exit.oom_killed {
            (
                reason::OOM_KILLED,
                "the container exceeded its memory limit".to_string(),
            )
        } else if exit.unknown() {
            (
                reason::UNKNOWN,
                "the exit status of a process adopted after an agent restart is not observable"
                    .to_string(),
            )
        } else if exit.success() {
            (reason::COMPLETED, String::new())
        } else {
            (reason::ERROR, String::new())
        };
        let exit_code = if exit.oom_killed && exit.code.is_none() {
            137
        } else {
            exit.reported_code()
        };
        if let Some(since) = self.running_since.take() {
            if now.saturating_duration_since(since) >= BACKOFF_RESET_AFTER {
                self.crash_streak = 0;
            }
        }
        self.state = State::Terminated(Termination {
            exit_code,
            signal: exit.signal.unwrap_or(0),
            reason: reason.to_string(),
            message,
            started_at,
            finished_at: now_rfc3339.to_string(),
        });
    }

    /// Whether a container that ended as it did restarts under `restart_policy`.
    pub fn wants_restart(&self, restart_policy: &str) -> bool {
        let State::Terminated(t) = &self.state else {
            return false;
        };
        match restart_policy {
            "Never" => false,
            "OnFailure" => !t.succeeded(),
            _ => true,
        }
    }

    /// The delay before the next restart: `base` doubling per consecutive crash,
    /// capped at [`MAX_RESTART_DELAY`] (never below `base`).
    pub fn next_delay(&self, base: Duration) -> Duration {
        let factor = 1u32
            .checked_shl(self.crash_streak.min(20))
            .unwrap_or(u32::MAX);
        base.saturating_mul(factor).min(MAX_RESTART_DELAY.max(base))
    }

    /// Moves the terminated run to `last` and waits `delay` (CrashLoopBackOff).
    pub fn schedule_restart(&mut self, base: Duration, pod: &str, now: Instant) -> Duration {
        let delay = self.next_delay(base);
        self.crash_streak = self.crash_streak.saturating_add(1);
        if let State::Terminated(t) = &self.state {
            self.last = Some(t.clone());
        }
        self.state = State::Waiting {
            reason: reason::CRASH_LOOP_BACK_OFF.into(),
            message: format!(
                "back-off {} restarting failed container={} pod={pod}",
                fmt_delay(delay),
                self.name
            ),
        };
        self.restart_at = Some(now + delay);
        delay
    }

    /// The `ContainerStatus` for the pod status.
    pub fn to_status(&self) -> v1::ContainerStatus {
        let state = match &self.state {
            State::Waiting { reason, message } => v1::ContainerState {
                waiting: Some(v1::ContainerStateWaiting {
                    reason: reason.clone(),
                    message: message.clone(),
                }),
                ..Default::default()
            },
            State::Running { started_at, .. } => v1::ContainerState {
                running: Some(v1::ContainerStateRunning {
                    started_at: started_at.clone(),
                }),
                ..Default::default()
            },
            State::Terminated(t) => v1::ContainerState {
                terminated: Some(t.to_proto()),
                ..Default::default()
            },
        };
        let running = self.is_running();
        v1::ContainerStatus {
            name: self.name.clone(),
            state: Some(state),
            last_state: self.last.as_ref().map(|t| v1::ContainerState {
                terminated: Some(t.to_proto()),
                ..Default::default()
            }),
            ready: running,
            restart_count: self.restart_count,
            image: self.image.clone(),
            image_id: String::new(),
            container_id: String::new(),
            started: Some(running),
        }
    }
}

fn fmt_delay(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else if s > 0 {
        format!("{s}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_and_exit(c: &mut ContainerRun, exit: Exit) {
        let now = Instant::now();
        c.on_started(10, 1, "t0".into(), now);
        c.on_exit(&exit, "t1", now);
    }

    #[test]
    fn lifecycle_and_restart_count() {
        let mut c = ContainerRun::new("app", "busybox");
        assert_eq!(
            c.to_status().state.unwrap().waiting.unwrap().reason,
            "ContainerCreating"
        );
        run_and_exit(
            &mut c,
            Exit {
                code: Some(1),
                signal: None,
                oom_killed: false,
            },
        );
        assert!(c.wants_restart("Always"));
        assert!(c.wants_restart("OnFailure"));
        assert!(!c.wants_restart("Never"));
        let now = Instant::now();
        c.schedule_restart(Duration::from_secs(1), "p_ns", now);
        let s = c.to_status();
        assert_eq!(s.state.unwrap().waiting.unwrap().reason, "CrashLoopBackOff");
        assert_eq!(s.last_state.unwrap().terminated.unwrap().reason, "Error");
        assert_eq!(s.restart_count, 0);
        c.on_started(11, 2, "t2".into(), now);
        assert_eq!(c.restart_count, 1);
        assert!(c.to_status().ready);
    }

    #[test]
    fn exit_reasons() {
        let mut c = ContainerRun::new("a", "");
        run_and_exit(
            &mut c,
            Exit {
                code: Some(0),
                signal: None,
                oom_killed: false,
            },
        );
        assert!(!c.wants_restart("OnFailure"));
        assert!(c.wants_restart("Always"));
        let State::Terminated(t) = &c.state else {
            panic!()
        };
        assert_eq!((t.reason.as_str(), t.exit_code), ("Completed", 0));

        run_and_exit(
            &mut c,
            Exit {
                code: None,
                signal: Some(9),
                oom_killed: true,
            },
        );
        let State::Terminated(t) = &c.state else {
            panic!()
        };
        assert_eq!(
            (t.reason.as_str(), t.exit_code, t.signal),
            ("OOMKilled", 137, 9)
        );

        run_and_exit(
            &mut c,
            Exit {
                code: Some(137),
                signal: None,
                oom_killed: true,
            },
        );
        let State::Terminated(t) = &c.state else {
            panic!()
        };
        assert_eq!((t.reason.as_str(), t.exit_code), ("OOMKilled", 137));

        run_and_exit(
            &mut c,
            Exit {
                code: None,
                signal: Some(15),
                oom_killed: false,
            },
        );
        let State::Terminated(t) = &c.state else {
            panic!()
        };
        assert_eq!((t.reason.as_str(), t.exit_code), ("Error", 143));

        run_and_exit(&mut c, Exit::default());
        let State::Terminated(t) = &c.state else {
            panic!()
        };
        assert_eq!(t.reason, "Unknown");
    }

    #[test]
    fn delay_doubles_and_caps() {
        let mut c = ContainerRun::new("a", "");
        let base = Duration::from_secs(1);
        let mut seen = Vec::new();
        for _ in 0..12 {
            run_and_exit(
                &mut c,
                Exit {
                    code: Some(1),
                    signal: None,
                    oom_killed: false,
                },
            );
            seen.push(c.schedule_restart(base, "p", Instant::now()).as_secs());
        }
        assert_eq!(&seen[..5], &[1, 2, 4, 8, 16]);
        assert_eq!(*seen.last().unwrap(), 300);
    }

    #[tokio::test(start_paused = true)]
    async fn long_good_run_resets_the_delay() {
        let mut c = ContainerRun::new("a", "");
        let base = Duration::from_secs(1);
        for _ in 0..3 {
            run_and_exit(
                &mut c,
                Exit {
                    code: Some(1),
                    signal: None,
                    oom_killed: false,
                },
            );
            c.schedule_restart(base, "p", Instant::now());
        }
        c.on_started(1, 1, "t".into(), Instant::now());
        tokio::time::advance(BACKOFF_RESET_AFTER).await;
        c.on_exit(
            &Exit {
                code: Some(1),
                signal: None,
                oom_killed: false,
            },
            "t",
            Instant::now(),
        );
        assert_eq!(c.schedule_restart(base, "p", Instant::now()), base);
    }
}
