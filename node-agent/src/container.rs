//! One container's lifecycle on the agent: waiting → running → terminated → back-off
//! → running, restarts with a doubling delay, restart count and last state, and the
//! SIGKILL timer of a failed probe. Pure state in one typed place: the state is
//! private and changes only through the transitions of [`ContainerRun::stage`], each
//! offered only in the state it starts from (a container cannot "exit" unless it
//! runs, nor back off unless it ended). The pod worker drives it with what the
//! runtime reports, and it renders the `ContainerStatus`.

use std::time::Duration;

use tokio::time::Instant;
use twinset_proto::v1;

use crate::runtime::Exit;

/// How the restarts of a crashing container are spaced, as the kubelet spaces them: the
/// first waits `base`, each further one twice the last, up to `max`; a run that lasted
/// `reset` or longer starts the doubling over. Only [`Backoff::new`] makes one, so a
/// zero base or a maximum below the base never reaches a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    reset: Duration,
}

/// A restart back-off that makes no sense, named by the agent's flags.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackoffError {
    /// A zero base would restart a crashing container in a tight loop.
    #[error("--restart-backoff-base must be longer than 0 (a zero delay restarts a crashing container in a tight loop)")]
    ZeroBase,
    /// The cap is below the first delay.
    #[error("--restart-backoff-max {max:?} is shorter than --restart-backoff-base {base:?}")]
    MaxBelowBase {
        /// The base asked for.
        base: Duration,
        /// The maximum asked for.
        max: Duration,
    },
    /// A zero reset period would forget every crash at once.
    #[error("--restart-backoff-reset must be longer than 0 (a zero period would never let the delay grow)")]
    ZeroReset,
}

impl Backoff {
    /// The kubelet's: 10 s doubling to 5 min, reset after 10 min of running.
    pub const KUBELET: Backoff = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(300),
        reset: Duration::from_secs(600),
    };

    /// A back-off of `base` doubling to `max`, reset by a run of `reset`; refuses a zero
    /// base or reset and a maximum below the base.
    pub fn new(base: Duration, max: Duration, reset: Duration) -> Result<Self, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if max < base {
            return Err(BackoffError::MaxBelowBase { base, max });
        }
        if reset.is_zero() {
            return Err(BackoffError::ZeroReset);
        }
        Ok(Backoff { base, max, reset })
    }

    /// The first delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// How long a run must last for the delay to start over.
    pub fn reset(&self) -> Duration {
        self.reset
    }

    /// The delay after `streak` earlier back-offs in a row: base × 2^streak, capped.
    pub fn delay(&self, streak: u32) -> Duration {
        let factor = 1u32.checked_shl(streak.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

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

/// The state of a container. Read it with [`ContainerRun::state`]; it changes only
/// through the transitions of [`ContainerRun::stage`], each offered only in the
/// state it starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Not running and no restart timer: not started yet, or unable to start, or (when
    /// the pod stops) a restart that will not happen.
    Waiting {
        /// Why.
        reason: String,
        /// Details.
        message: String,
    },
    /// Waiting out the delay before a restart (CrashLoopBackOff).
    BackOff {
        /// Details (the kubelet's "back-off 10s restarting failed container=...").
        message: String,
        /// When the restart is due.
        until: Instant,
    },
    /// Its process runs.
    Running(Running),
    /// It ended and will not be restarted (or not yet: see [`Ended::back_off`]).
    Terminated(Termination),
}

/// A running container's process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// Pid (and process group id).
    pub pid: u32,
    /// Process start time in clock ticks.
    pub start_ticks: u64,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// This run's number (bumped on every start): tells a stale exit or probe result
    /// from the current run's.
    pub generation: u64,
    /// When it started (or was adopted), for the backoff reset.
    since: Instant,
    /// A SIGKILL due after a failed probe's SIGTERM.
    pub kill_at: Option<Instant>,
}

/// One container of a pod, as the agent tracks it.
#[derive(Clone, Debug)]
pub struct ContainerRun {
    name: String,
    image: String,
    state: State,
    /// The previous run's end.
    last: Option<Termination>,
    restart_count: i32,
    generation: u64,
    has_run: bool,
    /// Back-offs in a row since the delay last started over.
    crash_streak: u32,
    /// How long the last run lasted (for the back-off's reset).
    last_run: Duration,
}

/// A container's state with the transitions that may leave it: the only way to
/// change a [`ContainerRun`].
pub enum Stage<'a> {
    /// Waiting or backing off: it may start.
    Idle(Idle<'a>),
    /// Its process runs: it may exit or be killed.
    Running(Active<'a>),
    /// It ended: it may back off before a restart.
    Terminated(Ended<'a>),
}

/// A container that is not running and has not ended: [`State::Waiting`] or
/// [`State::BackOff`].
pub struct Idle<'a>(&'a mut ContainerRun);
/// A container whose process runs: [`State::Running`].
pub struct Active<'a>(&'a mut ContainerRun);
/// A container whose run ended: [`State::Terminated`].
pub struct Ended<'a>(&'a mut ContainerRun);

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
            has_run: false,
            crash_streak: 0,
            last_run: Duration::ZERO,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// How many times it was restarted.
    pub fn restart_count(&self) -> i32 {
        self.restart_count
    }

    /// The previous run's end.
    pub fn last(&self) -> Option<&Termination> {
        self.last.as_ref()
    }

    /// The current state with the transitions it allows.
    pub fn stage(&mut self) -> Stage<'_> {
        match self.state {
            State::Waiting { .. } | State::BackOff { .. } => Stage::Idle(Idle(self)),
            State::Running(_) => Stage::Running(Active(self)),
            State::Terminated(_) => Stage::Terminated(Ended(self)),
        }
    }

    /// Its process while running.
    pub fn running(&self) -> Option<&Running> {
        match &self.state {
            State::Running(r) => Some(r),
            _ => None,
        }
    }

    /// Its pid while running.
    pub fn pid(&self) -> Option<u32> {
        self.running().map(|r| r.pid)
    }

    /// Whether its process runs.
    pub fn is_running(&self) -> bool {
        self.running().is_some()
    }

    /// When something is due for it: its restart after a back-off, or the SIGKILL
    /// after a failed probe's SIGTERM.
    pub fn wake_at(&self) -> Option<Instant> {
        match &self.state {
            State::BackOff { until, .. } => Some(*until),
            State::Running(r) => r.kill_at,
            _ => None,
        }
    }

    fn run(&mut self, pid: u32, start_ticks: u64, started_at: String, now: Instant) -> u64 {
        self.has_run = true;
        self.generation += 1;
        self.state = State::Running(Running {
            pid,
            start_ticks,
            started_at,
            generation: self.generation,
            since: now,
            kill_at: None,
        });
        self.generation
    }

    /// The `ContainerStatus` for the pod status.
    pub fn to_status(&self) -> v1::ContainerStatus {
        let waiting = |reason: &str, message: &str| v1::ContainerState {
            waiting: Some(v1::ContainerStateWaiting {
                reason: reason.to_string(),
                message: message.to_string(),
            }),
            ..Default::default()
        };
        let state = match &self.state {
            State::Waiting { reason, message } => waiting(reason, message),
            State::BackOff { message, .. } => waiting(reason::CRASH_LOOP_BACK_OFF, message),
            State::Running(r) => v1::ContainerState {
                running: Some(v1::ContainerStateRunning {
                    started_at: r.started_at.clone(),
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

impl Idle<'_> {
    /// Whether it waits out a back-off.
    pub fn backing_off(&self) -> bool {
        matches!(self.0.state, State::BackOff { .. })
    }

    /// Whether it waits out a back-off that is over at `now`.
    pub fn restart_due(&self, now: Instant) -> bool {
        matches!(self.0.state, State::BackOff { until, .. } if until <= now)
    }

    /// Whether it waits (no back-off) for a reason a spec or image table change may
    /// fix: it is worth another start when the pod changes.
    pub fn waits_on(&self, reasons: &[&str]) -> bool {
        matches!(&self.0.state, State::Waiting { reason, .. } if reasons.contains(&reason.as_str()))
    }

    /// It cannot start (waiting with `reason`); returns whether that is news.
    pub fn cannot_start(self, reason: &str, message: &str) -> bool {
        let new = State::Waiting {
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let changed = self.0.state != new;
        self.0.state = new;
        changed
    }

    /// No restart will happen (the pod stops): a back-off ends, showing as it was.
    pub fn cancel_restart(self) {
        if let State::BackOff { message, .. } = &self.0.state {
            self.0.state = State::Waiting {
                reason: reason::CRASH_LOOP_BACK_OFF.into(),
                message: message.clone(),
            };
        }
    }

    /// Its process started (a restart when it ran before). Returns the new generation.
    pub fn started(self, pid: u32, start_ticks: u64, started_at: String, now: Instant) -> u64 {
        let c = self.0;
        if c.has_run {
            c.restart_count += 1;
        }
        c.run(pid, start_ticks, started_at, now)
    }

    /// An earlier agent's process was adopted. Returns the new generation.
    pub fn adopted(
        self,
        pid: u32,
        start_ticks: u64,
        started_at: String,
        restart_count: i32,
        now: Instant,
    ) -> u64 {
        let c = self.0;
        c.restart_count = restart_count;
        c.run(pid, start_ticks, started_at, now)
    }

    /// The start failed: a terminated run with reason StartError.
    pub fn start_failed(self, message: String, now_rfc3339: &str) {
        self.0.last_run = Duration::ZERO;
        self.0.state = State::Terminated(Termination {
            exit_code: 128,
            signal: 0,
            reason: reason::START_ERROR.into(),
            message,
            started_at: now_rfc3339.to_string(),
            finished_at: now_rfc3339.to_string(),
        });
    }
}

impl Active<'_> {
    /// The running process.
    pub fn process(&self) -> &Running {
        match &self.0.state {
            State::Running(r) => r,
            // Active is only made from a Running state (ContainerRun::stage).
            _ => unreachable!("Active wraps a running container"),
        }
    }

    fn process_mut(&mut self) -> &mut Running {
        match &mut self.0.state {
            State::Running(r) => r,
            _ => unreachable!("Active wraps a running container"),
        }
    }

    /// A failed probe sent SIGTERM: SIGKILL is due at `at` unless it exits first.
    pub fn kill_at(mut self, at: Instant) {
        self.process_mut().kill_at = Some(at);
    }

    /// The SIGKILL after a failed probe is due at `now`: clears it and says so.
    pub fn take_kill_due(mut self, now: Instant) -> bool {
        let r = self.process_mut();
        if r.kill_at.is_some_and(|at| at <= now) {
            r.kill_at = None;
            return true;
        }
        false
    }

    /// No SIGKILL is due any more (the pod stops and kills on its own schedule).
    pub fn cancel_kill(mut self) {
        self.process_mut().kill_at = None;
    }

    /// Its process ended as `exit`.
    pub fn exited(self, exit: &Exit, now_rfc3339: &str, now: Instant) {
        let c = self.0;
        let State::Running(run) = &c.state else {
            unreachable!("Active wraps a running container")
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
        c.last_run = now.saturating_duration_since(run.since);
        c.state = State::Terminated(Termination {
            exit_code,
            signal: exit.signal.unwrap_or(0),
            reason: reason.to_string(),
            message,
            started_at: run.started_at.clone(),
            finished_at: now_rfc3339.to_string(),
        });
    }
}

impl Ended<'_> {
    /// How the run ended.
    pub fn termination(&self) -> &Termination {
        match &self.0.state {
            State::Terminated(t) => t,
            _ => unreachable!("Ended wraps a terminated container"),
        }
    }

    /// Whether a container that ended as it did restarts under `restart_policy`.
    pub fn wants_restart(&self, restart_policy: &str) -> bool {
        match restart_policy {
            "Never" => false,
            "OnFailure" => !self.termination().succeeded(),
            _ => true,
        }
    }

    /// Moves the terminated run to `last` and waits the back-off delay before a restart:
    /// the next of `backoff`'s doubling delays, or its base again when the run lasted
    /// its reset period. Returns the delay.
    pub fn back_off(self, backoff: &Backoff, pod: &str, now: Instant) -> Duration {
        let c = self.0;
        if c.last_run >= backoff.reset {
            c.crash_streak = 0;
        }
        let delay = backoff.delay(c.crash_streak);
        c.crash_streak = c.crash_streak.saturating_add(1);
        if let State::Terminated(t) = &c.state {
            c.last = Some(t.clone());
        }
        c.state = State::BackOff {
            message: format!(
                "back-off {} restarting failed container={} pod={pod}",
                go_duration(delay),
                c.name
            ),
            until: now + delay,
        };
        delay
    }
}

/// A duration as Go's `time.Duration.String` writes it (the kubelet's back-off message):
/// `400ms`, `1.6s`, `10s`, `5m0s`, `1h0m0s`.
fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let nanos = d.as_nanos();
    if nanos < 1_000_000_000 {
        let (unit, scale) = match nanos {
            n if n < 1_000 => ("ns", 1),
            n if n < 1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{}{unit}", decimal(nanos, scale));
    }
    let secs = d.as_secs();
    let frac = decimal(
        u128::from(secs % 60) * 1_000_000_000 + u128::from(d.subsec_nanos()),
        1_000_000_000,
    );
    match (secs / 3600, secs / 60 % 60) {
        (0, 0) => format!("{frac}s"),
        (0, m) => format!("{m}m{frac}s"),
        (h, m) => format!("{h}h{m}m{frac}s"),
    }
}

/// `value / scale` in decimal, without trailing zeros.
fn decimal(value: u128, scale: u128) -> String {
    let (whole, rest) = (value / scale, value % scale);
    if rest == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(c: &mut ContainerRun) -> Idle<'_> {
        match c.stage() {
            Stage::Idle(i) => i,
            _ => panic!("not idle"),
        }
    }

    fn active(c: &mut ContainerRun) -> Active<'_> {
        match c.stage() {
            Stage::Running(a) => a,
            _ => panic!("not running"),
        }
    }

    fn ended(c: &mut ContainerRun) -> Ended<'_> {
        match c.stage() {
            Stage::Terminated(e) => e,
            _ => panic!("not terminated"),
        }
    }

    fn failed() -> Exit {
        Exit {
            code: Some(1),
            signal: None,
            oom_killed: false,
        }
    }

    fn run_and_exit(c: &mut ContainerRun, exit: Exit) {
        let now = Instant::now();
        idle(c).started(10, 1, "t0".into(), now);
        active(c).exited(&exit, "t1", now);
    }

    const SEC: Duration = Duration::from_secs(1);

    /// 1 s doubling to 8 s, reset by a run of 20 s.
    fn backoff() -> Backoff {
        Backoff::new(SEC, 8 * SEC, 20 * SEC).unwrap()
    }

    fn termination(c: &ContainerRun) -> &Termination {
        match c.state() {
            State::Terminated(t) => t,
            s => panic!("not terminated: {s:?}"),
        }
    }

    #[test]
    fn lifecycle_and_restart_count() {
        let mut c = ContainerRun::new("app", "busybox");
        assert_eq!(
            c.to_status().state.unwrap().waiting.unwrap().reason,
            "ContainerCreating"
        );
        run_and_exit(&mut c, failed());
        assert!(ended(&mut c).wants_restart("Always"));
        assert!(ended(&mut c).wants_restart("OnFailure"));
        assert!(!ended(&mut c).wants_restart("Never"));
        let now = Instant::now();
        ended(&mut c).back_off(&backoff(), "p_ns", now);
        assert_eq!(c.wake_at(), Some(now + Duration::from_secs(1)));
        assert!(!idle(&mut c).restart_due(now));
        assert!(idle(&mut c).restart_due(now + Duration::from_secs(1)));
        let s = c.to_status();
        assert_eq!(s.state.unwrap().waiting.unwrap().reason, "CrashLoopBackOff");
        assert_eq!(s.last_state.unwrap().terminated.unwrap().reason, "Error");
        assert_eq!(s.restart_count, 0);
        let gen = idle(&mut c).started(11, 2, "t2".into(), now);
        assert_eq!(gen, 2);
        assert_eq!(c.restart_count(), 1);
        assert_eq!(c.wake_at(), None);
        assert!(c.to_status().ready);
    }

    #[test]
    fn a_probe_kill_is_due_once_and_ends_with_the_run() {
        let mut c = ContainerRun::new("app", "");
        let now = Instant::now();
        idle(&mut c).started(10, 1, "t0".into(), now);
        let at = now + Duration::from_secs(30);
        active(&mut c).kill_at(at);
        assert_eq!(c.wake_at(), Some(at));
        assert!(!active(&mut c).take_kill_due(now));
        assert!(active(&mut c).take_kill_due(at));
        assert!(!active(&mut c).take_kill_due(at), "only once");
        active(&mut c).kill_at(at);
        active(&mut c).exited(&failed(), "t1", at);
        assert_eq!(c.wake_at(), None, "the kill timer ends with the run");
    }

    #[test]
    fn a_stopping_pod_cancels_the_back_off_and_keeps_its_reason() {
        let mut c = ContainerRun::new("app", "");
        run_and_exit(&mut c, failed());
        ended(&mut c).back_off(&backoff(), "p", Instant::now());
        idle(&mut c).cancel_restart();
        assert_eq!(c.wake_at(), None);
        assert!(!idle(&mut c).backing_off());
        assert_eq!(
            c.to_status().state.unwrap().waiting.unwrap().reason,
            "CrashLoopBackOff"
        );
    }

    #[test]
    fn waiting_reasons_and_start_errors() {
        let mut c = ContainerRun::new("app", "");
        assert!(idle(&mut c).cannot_start("ImageNotInTable", "m"));
        assert!(
            !idle(&mut c).cannot_start("ImageNotInTable", "m"),
            "not news"
        );
        assert!(idle(&mut c).waits_on(&["ImageNotInTable"]));
        assert!(!idle(&mut c).waits_on(&["CreateContainerConfigError"]));
        idle(&mut c).start_failed("no such file".into(), "t");
        assert_eq!(termination(&c).reason, "StartError");
        assert_eq!(termination(&c).exit_code, 128);
        assert!(ended(&mut c).wants_restart("OnFailure"));
    }

    #[test]
    fn adoption_keeps_the_restart_count() {
        let mut c = ContainerRun::new("app", "");
        let gen = idle(&mut c).adopted(42, 7, "t".into(), 3, Instant::now());
        assert_eq!(gen, 1);
        assert_eq!(c.pid(), Some(42));
        assert_eq!(c.restart_count(), 3);
        active(&mut c).exited(&Exit::default(), "t1", Instant::now());
        assert_eq!(termination(&c).reason, "Unknown");
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
        assert!(!ended(&mut c).wants_restart("OnFailure"));
        assert!(ended(&mut c).wants_restart("Always"));
        let t = termination(&c);
        assert_eq!((t.reason.as_str(), t.exit_code), ("Completed", 0));
        ended(&mut c).back_off(&backoff(), "p", Instant::now());

        run_and_exit(
            &mut c,
            Exit {
                code: None,
                signal: Some(9),
                oom_killed: true,
            },
        );
        let t = termination(&c);
        assert_eq!(
            (t.reason.as_str(), t.exit_code, t.signal),
            ("OOMKilled", 137, 9)
        );
        ended(&mut c).back_off(&backoff(), "p", Instant::now());

        run_and_exit(
            &mut c,
            Exit {
                code: Some(137),
                signal: None,
                oom_killed: true,
            },
        );
        let t = termination(&c);
        assert_eq!((t.reason.as_str(), t.exit_code), ("OOMKilled", 137));
        ended(&mut c).back_off(&backoff(), "p", Instant::now());

        run_and_exit(
            &mut c,
            Exit {
                code: None,
                signal: Some(15),
                oom_killed: false,
            },
        );
        let t = termination(&c);
        assert_eq!((t.reason.as_str(), t.exit_code), ("Error", 143));
        ended(&mut c).back_off(&backoff(), "p", Instant::now());

        run_and_exit(&mut c, Exit::default());
        assert_eq!(termination(&c).reason, "Unknown");
    }

    #[test]
    fn delay_doubles_and_caps_at_the_configured_max() {
        let mut c = ContainerRun::new("a", "");
        let mut seen = Vec::new();
        for _ in 0..7 {
            run_and_exit(&mut c, failed());
            seen.push(ended(&mut c).back_off(&backoff(), "p", Instant::now()));
        }
        let want = [1, 2, 4, 8, 8, 8, 8].map(|n| n * SEC);
        assert_eq!(seen, want);
        assert_eq!(backoff().delay(u32::MAX), 8 * SEC, "no overflow");
        let kubelet: Vec<u64> = (0..7)
            .map(|n| Backoff::KUBELET.delay(n).as_secs())
            .collect();
        assert_eq!(kubelet, [10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn the_back_off_message_writes_the_delay_as_the_kubelet_does() {
        let mut c = ContainerRun::new("app", "");
        run_and_exit(&mut c, failed());
        let b = Backoff::new(Duration::from_millis(400), Duration::from_secs(600), SEC).unwrap();
        ended(&mut c).back_off(&b, "web_default(uid)", Instant::now());
        let message = c.to_status().state.unwrap().waiting.unwrap().message;
        assert_eq!(
            message,
            "back-off 400ms restarting failed container=app pod=web_default(uid)"
        );
        let cases = [
            (Duration::from_millis(400), "400ms"),
            (Duration::from_millis(1600), "1.6s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(80), "1m20s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_millis(90_500), "1m30.5s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::ZERO, "0s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn nonsense_back_offs_are_refused() {
        assert_eq!(
            Backoff::new(Duration::ZERO, SEC, SEC),
            Err(BackoffError::ZeroBase)
        );
        assert_eq!(
            Backoff::new(2 * SEC, SEC, SEC),
            Err(BackoffError::MaxBelowBase {
                base: 2 * SEC,
                max: SEC
            })
        );
        assert_eq!(
            Backoff::new(SEC, SEC, Duration::ZERO),
            Err(BackoffError::ZeroReset)
        );
        assert_eq!(
            BackoffError::MaxBelowBase {
                base: 2 * SEC,
                max: SEC
            }
            .to_string(),
            "--restart-backoff-max 1s is shorter than --restart-backoff-base 2s"
        );
        assert!(
            Backoff::new(SEC, SEC, SEC).is_ok(),
            "a constant delay is fine"
        );
    }

    /// Runs `c` for `ran` (paused time), it fails, and it backs off: the delay.
    async fn crash_after(c: &mut ContainerRun, ran: Duration) -> Duration {
        idle(c).started(1, 1, "t".into(), Instant::now());
        tokio::time::advance(ran).await;
        active(c).exited(&failed(), "t", Instant::now());
        ended(c).back_off(&backoff(), "p", Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_as_long_as_the_reset_period_starts_the_doubling_over() {
        let mut c = ContainerRun::new("a", "");
        let short = Duration::from_millis(10);
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(crash_after(&mut c, short).await);
        }
        assert_eq!(seen, [1, 2, 4, 8, 8].map(|n| n * SEC));
        // Just short of the reset period: still capped.
        let almost = backoff().reset() - Duration::from_millis(1);
        assert_eq!(crash_after(&mut c, almost).await, 8 * SEC);
        // A run of the whole reset period: back to the base, then doubling again.
        assert_eq!(crash_after(&mut c, backoff().reset()).await, SEC);
        assert_eq!(crash_after(&mut c, short).await, 2 * SEC);
        assert_eq!(crash_after(&mut c, short).await, 4 * SEC);
        // A start that failed right after a long run does not count as a long run.
        assert_eq!(crash_after(&mut c, 3 * backoff().reset()).await, SEC);
        idle(&mut c).start_failed("no such file".into(), "t");
        assert_eq!(
            ended(&mut c).back_off(&backoff(), "p", Instant::now()),
            2 * SEC
        );
    }
}
