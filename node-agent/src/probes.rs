//! Container probes, the decisions (pure; the I/O is in [`crate::prober`]): which
//! probes a container has (its own, or the image table's default readiness probe),
//! their settings with Kubernetes' defaults, what a probe action targets, and one
//! state machine per running container that says when each probe is due and what a
//! result means: the startup probe gates the other two, readiness gates the
//! container's `ready`, and liveness (or startup) failing `failureThreshold` times in
//! a row kills the container so it restarts by the restart policy.
//!
//! Timing follows the kubelet: the first probe runs `initialDelaySeconds` after the
//! container starts, then one every `periodSeconds` (counted from the previous
//! probe's start). An image-default probe runs every [`FAST_PERIOD`] until its first
//! success, so that a replica is reported Ready within ~100 ms of answering (the
//! StatefulSet's OrderedReady steps wait on it), and its failures before that first
//! success are expected (the program is starting), so they are not recorded as
//! events.

use std::time::Duration;

use tokio::time::Instant;
use twinset_proto::v1;

/// Kubernetes' default `periodSeconds`.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);
/// Kubernetes' default `timeoutSeconds`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Kubernetes' default `failureThreshold`.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// Period of an image-default probe until its first success.
pub const FAST_PERIOD: Duration = Duration::from_millis(100);

/// Event reason of a failed probe.
pub const UNHEALTHY: &str = "Unhealthy";

/// The three probes of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// startupProbe: until it succeeds the other two do not run.
    Startup,
    /// readinessProbe: gates the container's `ready`.
    Readiness,
    /// livenessProbe: failing, the container is restarted.
    Liveness,
}

impl Kind {
    /// "Startup", "Readiness", "Liveness" (as the kubelet's messages say).
    pub fn label(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Readiness => "Readiness",
            Kind::Liveness => "Liveness",
        }
    }

    /// All kinds.
    pub const ALL: [Kind; 3] = [Kind::Startup, Kind::Readiness, Kind::Liveness];
}

fn seconds(v: i32, default: Duration) -> Duration {
    match u64::try_from(v) {
        Ok(s) if s > 0 => Duration::from_secs(s),
        _ => default,
    }
}

fn count(v: i32, default: u32) -> u32 {
    match u32::try_from(v) {
        Ok(n) if n > 0 => n,
        _ => default,
    }
}

/// A probe's timing and thresholds, with Kubernetes' defaults for unset (zero) fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Wait after the container starts before the first probe (default 0).
    pub initial_delay: Duration,
    /// Between probes (default 10 s).
    pub period: Duration,
    /// One probe's time limit (default 1 s).
    pub timeout: Duration,
    /// Consecutive successes that make a failed probe pass (default 1; always 1 for
    /// liveness and startup, as the API server requires).
    pub success_threshold: u32,
    /// Consecutive failures that make a passing probe fail (default 3).
    pub failure_threshold: u32,
    /// Probe every [`FAST_PERIOD`] until the first success, and keep the failures
    /// before it quiet (image-default probes).
    pub fast_start: bool,
}

impl Settings {
    /// The settings of `probe` used as a `kind` probe.
    pub fn of(probe: &v1::Probe, kind: Kind) -> Settings {
        let success_threshold = match kind {
            Kind::Readiness => count(probe.success_threshold, 1),
            Kind::Liveness | Kind::Startup => 1,
        };
        Settings {
            initial_delay: Duration::from_secs(
                u64::try_from(probe.initial_delay_seconds).unwrap_or(0),
            ),
            period: seconds(probe.period_seconds, DEFAULT_PERIOD),
            timeout: seconds(probe.timeout_seconds, DEFAULT_TIMEOUT),
            success_threshold,
            failure_threshold: count(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD),
            fast_start: false,
        }
    }
}

/// One probe of a container: what it does and when.
#[derive(Clone, Debug, PartialEq)]
pub struct Defined {
    /// The probe as written (its action).
    pub probe: v1::Probe,
    /// Its timing.
    pub settings: Settings,
}

/// The probes of one container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeSet {
    /// startupProbe.
    pub startup: Option<Defined>,
    /// readinessProbe (the container's own, else the image's default).
    pub readiness: Option<Defined>,
    /// livenessProbe.
    pub liveness: Option<Defined>,
}

impl ProbeSet {
    /// The probes of container `c`. `image_readiness` is the image table's default
    /// readiness probe, used when the container has none of its own (like an image's
    /// HEALTHCHECK); the caller passes it only when the container runs the image's
    /// own program (no `command` of its own), which is what the default describes.
    pub fn for_container(c: &v1::Container, image_readiness: Option<&v1::Probe>) -> ProbeSet {
        let define = |p: &Option<v1::Probe>, kind| {
            p.as_ref().map(|p| Defined {
                probe: p.clone(),
                settings: Settings::of(p, kind),
            })
        };
        let readiness = define(&c.readiness_probe, Kind::Readiness).or_else(|| {
            image_readiness.map(|p| {
                let mut settings = Settings::of(p, Kind::Readiness);
                settings.fast_start = true;
                Defined {
                    probe: p.clone(),
                    settings,
                }
            })
        });
        ProbeSet {
            startup: define(&c.startup_probe, Kind::Startup),
            readiness,
            liveness: define(&c.liveness_probe, Kind::Liveness),
        }
    }

    /// The `kind` probe, if defined.
    pub fn get(&self, kind: Kind) -> Option<&Defined> {
        match kind {
            Kind::Startup => self.startup.as_ref(),
            Kind::Readiness => self.readiness.as_ref(),
            Kind::Liveness => self.liveness.as_ref(),
        }
    }

    /// Whether the container has no probe at all.
    pub fn is_empty(&self) -> bool {
        self.startup.is_none() && self.readiness.is_none() && self.liveness.is_none()
    }
}

/// What one probe attempt does, resolved against the container and the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run a command in the container: exit status 0 passes.
    Exec {
        /// Program and arguments.
        command: Vec<String>,
    },
    /// Open a TCP connection: connecting passes.
    Tcp {
        /// Host (default the pod IP).
        host: String,
        /// Port.
        port: u16,
    },
    /// HTTP/1.1 GET: a status from 200 to 399 passes.
    Http {
        /// Host (default the pod IP).
        host: String,
        /// Port.
        port: u16,
        /// Path (default `/`).
        path: String,
    },
}

impl Action {
    /// `host:port` (IPv6 addresses bracketed).
    pub fn address(host: &str, port: u16) -> String {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }
}

/// A port given as a number or as the name of one of the container's ports.
fn port(p: Option<&v1::IntOrString>, c: &v1::Container) -> Result<u16, String> {
    use v1::int_or_string::Value;
    let value = p.and_then(|p| p.value.as_ref());
    let n = match value {
        Some(Value::IntVal(n)) => *n,
        Some(Value::StrVal(s)) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => c
                .ports
                .iter()
                .find(|cp| cp.name == *s)
                .map(|cp| cp.container_port)
                .ok_or_else(|| format!("port {s:?} is not a port of container {}", c.name))?,
        },
        None => return Err("the probe has no port".into()),
    };
    u16::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid port {n}"))
}

/// The action of `probe` for container `c` of a pod at `pod_ip`, or why it cannot
/// run (the attempt then fails with that message).
pub fn action(probe: &v1::Probe, c: &v1::Container, pod_ip: &str) -> Result<Action, String> {
    let host = |h: &str| {
        if h.is_empty() {
            pod_ip.to_string()
        } else {
            h.to_string()
        }
    };
    match (&probe.exec, &probe.tcp_socket, &probe.http_get) {
        (Some(e), None, None) => {
            if e.command.is_empty() {
                Err("the exec probe has no command".into())
            } else {
                Ok(Action::Exec {
                    command: e.command.clone(),
                })
            }
        }
        (None, Some(t), None) => Ok(Action::Tcp {
            host: host(&t.host),
            port: port(t.port.as_ref(), c)?,
        }),
        (None, None, Some(h)) => {
            if !h.scheme.is_empty() && !h.scheme.eq_ignore_ascii_case("HTTP") {
                return Err(format!(
                    "httpGet scheme {} is not supported by this agent (only HTTP)",
                    h.scheme
                ));
            }
            let path = if h.path.is_empty() {
                "/".to_string()
            } else if h.path.starts_with('/') {
                h.path.clone()
            } else {
                format!("/{}", h.path)
            };
            Ok(Action::Http {
                host: host(&h.host),
                port: port(h.port.as_ref(), c)?,
                path,
            })
        }
        (None, None, None) => Err("the probe has no handler (exec, tcpSocket or httpGet)".into()),
        _ => Err("the probe has more than one handler".into()),
    }
}

/// Whether `probe` names exactly one handler (for checking the image table).
pub fn check(probe: &v1::Probe) -> Result<(), String> {
    let handlers = [
        probe.exec.is_some(),
        probe.tcp_socket.is_some(),
        probe.http_get.is_some(),
    ];
    match handlers.iter().filter(|h| **h).count() {
        1 => Ok(()),
        0 => Err("the probe has no handler (exec, tcpSocket or httpGet)".into()),
        _ => Err("the probe has more than one handler".into()),
    }
}

/// The result of one probe attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Success,
    /// It failed, saying why (command output, connection error, HTTP status).
    Failure(String),
}

/// What the pod worker must do after a probe result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Record a Warning `Unhealthy` event with this message
    /// ("Readiness probe failed: …").
    Unhealthy(String),
    /// Kill the container (it restarts by the restart policy); the message is the
    /// Normal `Killing` event's ("Container x failed liveness probe, will be restarted").
    Kill(String),
}

#[derive(Clone, Debug)]
struct Tracker {
    settings: Settings,
    /// When the next attempt is due (None: not scheduled — gated or finished).
    next_due: Option<Instant>,
    /// Start of the attempt in flight.
    in_flight: Option<Instant>,
    successes: u32,
    failures: u32,
    ever_succeeded: bool,
}

impl Tracker {
    fn new(settings: Settings) -> Self {
        Tracker {
            settings,
            next_due: None,
            in_flight: None,
            successes: 0,
            failures: 0,
            ever_succeeded: false,
        }
    }

    /// An image-default probe before its first success: fast and quiet.
    fn starting(&self) -> bool {
        self.settings.fast_start && !self.ever_succeeded
    }

    fn period(&self) -> Duration {
        if self.starting() {
            FAST_PERIOD.min(self.settings.period)
        } else {
            self.settings.period
        }
    }
}

/// The probe state of one running container (one run: a restart starts afresh).
#[derive(Clone, Debug)]
pub struct ContainerProbes {
    container: String,
    /// When the initial delays are counted from.
    delays_from: Instant,
    startup: Option<Tracker>,
    readiness: Option<Tracker>,
    liveness: Option<Tracker>,
    started: bool,
    ready: bool,
    killing: bool,
}

impl ContainerProbes {
    /// The probes of container `container`, whose process started at `started`
    /// (for a process adopted after an agent restart, pass the adoption time and
    /// `adopted`: its initial delays are long over).
    pub fn new(container: &str, set: &ProbeSet, started: Instant, adopted: bool) -> Self {
        let tracker = |kind: Kind| set.get(kind).map(|d| Tracker::new(d.settings.clone()));
        let mut p = ContainerProbes {
            container: container.to_string(),
            delays_from: started,
            startup: tracker(Kind::Startup),
            readiness: tracker(Kind::Readiness),
            liveness: tracker(Kind::Liveness),
            started: false,
            ready: false,
            killing: false,
        };
        if adopted {
            for t in p.trackers_mut() {
                t.settings.initial_delay = Duration::ZERO;
            }
        }
        match p.startup.as_mut() {
            Some(s) => s.next_due = Some(started + s.settings.initial_delay),
            None => p.on_started(started),
        }
        p
    }

    fn trackers_mut(&mut self) -> impl Iterator<Item = &mut Tracker> {
        [&mut self.startup, &mut self.readiness, &mut self.liveness]
            .into_iter()
            .flatten()
    }

    fn tracker_mut(&mut self, kind: Kind) -> Option<&mut Tracker> {
        match kind {
            Kind::Startup => self.startup.as_mut(),
            Kind::Readiness => self.readiness.as_mut(),
            Kind::Liveness => self.liveness.as_mut(),
        }
    }

    /// The startup probe passed (or there is none): readiness and liveness begin.
    fn on_started(&mut self, now: Instant) {
        self.started = true;
        let from = self.delays_from;
        for t in [&mut self.readiness, &mut self.liveness]
            .into_iter()
            .flatten()
        {
            t.next_due = Some((from + t.settings.initial_delay).max(now));
        }
        self.ready = self.readiness.is_none();
    }

    /// Whether the startup probe has passed (or there is none): the container's
    /// `started`.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether the container is ready: started, its readiness probe (if any) passing,
    /// and not being killed by a failed probe.
    pub fn ready(&self) -> bool {
        self.ready && !self.killing
    }

    /// Whether a failed probe had the container killed (no more probes this run).
    pub fn killing(&self) -> bool {
        self.killing
    }

    /// When the next probe is due (None: nothing to run until a result comes in).
    pub fn next_due(&self) -> Option<Instant> {
        if self.killing {
            return None;
        }
        [&self.startup, &self.readiness, &self.liveness]
            .into_iter()
            .flatten()
            .filter(|t| t.in_flight.is_none())
            .filter_map(|t| t.next_due)
            .min()
    }

    /// The probes due at `now`, marked in flight: the caller runs each and hands its
    /// result to [`ContainerProbes::record`].
    pub fn take_due(&mut self, now: Instant) -> Vec<Kind> {
        if self.killing {
            return Vec::new();
        }
        let mut due = Vec::new();
        for kind in Kind::ALL {
            if let Some(t) = self.tracker_mut(kind) {
                if t.in_flight.is_none() && t.next_due.is_some_and(|d| d <= now) {
                    t.in_flight = Some(now);
                    t.next_due = None;
                    due.push(kind);
                }
            }
        }
        due
    }

    /// A `kind` probe attempt ended with `outcome` at `now`: schedules the next one
    /// and says what to do.
    pub fn record(&mut self, kind: Kind, outcome: Outcome, now: Instant) -> Vec<Effect> {
        let container = self.container.clone();
        let killing = self.killing;
        let Some(t) = self.tracker_mut(kind) else {
            return Vec::new();
        };
        let Some(launched) = t.in_flight.take() else {
            return Vec::new();
        };
        if killing {
            return Vec::new();
        }
        let mut effects = Vec::new();
        let passed;
        let failed;
        match outcome {
            Outcome::Success => {
                t.successes = t.successes.saturating_add(1);
                t.failures = 0;
                t.ever_succeeded = true;
                passed = t.successes >= t.settings.success_threshold;
                failed = false;
            }
            Outcome::Failure(why) => {
                t.failures = t.failures.saturating_add(1);
                t.successes = 0;
                if !t.starting() {
                    effects.push(Effect::Unhealthy(format!(
                        "{} probe failed: {why}",
                        kind.label()
                    )));
                }
                passed = false;
                failed = t.failures >= t.settings.failure_threshold;
            }
        }
        // The next attempt: one period after this one started (at once if it took
        // longer); a passed startup probe does not run again.
        t.next_due = Some((launched + t.period()).max(now));
        match kind {
            Kind::Startup if passed => {
                t.next_due = None;
                self.on_started(now);
            }
            Kind::Readiness if passed => self.ready = true,
            Kind::Readiness if failed => self.ready = false,
            Kind::Startup | Kind::Liveness if failed => {
                self.killing = true;
                effects.push(Effect::Kill(format!(
                    "Container {container} failed {} probe, will be restarted",
                    kind.label().to_lowercase()
                )));
            }
            _ => {}
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: i32) -> v1::Probe {
        v1::Probe {
            tcp_socket: Some(v1::TcpSocketAction {
                port: Some(twinset_proto::IntOrString::int(port)),
                host: String::new(),
            }),
            ..Default::default()
        }
    }

    fn with(mut p: v1::Probe, f: impl FnOnce(&mut v1::Probe)) -> v1::Probe {
        f(&mut p);
        p
    }

    fn container() -> v1::Container {
        v1::Container {
            name: "app".into(),
            ..Default::default()
        }
    }

    fn fail() -> Outcome {
        Outcome::Failure("dial tcp 127.0.0.1:80: connect: connection refused".into())
    }

    /// Runs every probe due now with `outcome` for `kind` (others pass), returning
    /// the effects.
    fn step(p: &mut ContainerProbes, kind: Kind, outcome: Outcome) -> Vec<Effect> {
        let now = Instant::now();
        let mut effects = Vec::new();
        for k in p.take_due(now) {
            let o = if k == kind {
                outcome.clone()
            } else {
                Outcome::Success
            };
            effects.extend(p.record(k, o, now));
        }
        effects
    }

    async fn to_next(p: &ContainerProbes) {
        let due = p.next_due().expect("a probe is due");
        tokio::time::advance(due.saturating_duration_since(Instant::now())).await;
    }

    #[test]
    fn defaults_follow_kubernetes() {
        let s = Settings::of(&tcp(80), Kind::Readiness);
        assert_eq!(
            s,
            Settings {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
                fast_start: false,
            }
        );
        let p = with(tcp(80), |p| {
            p.initial_delay_seconds = 5;
            p.period_seconds = 2;
            p.timeout_seconds = 3;
            p.success_threshold = 2;
            p.failure_threshold = 1;
        });
        let s = Settings::of(&p, Kind::Readiness);
        assert_eq!(
            (
                s.initial_delay.as_secs(),
                s.period.as_secs(),
                s.timeout.as_secs()
            ),
            (5, 2, 3)
        );
        assert_eq!((s.success_threshold, s.failure_threshold), (2, 1));
        assert_eq!(Settings::of(&p, Kind::Liveness).success_threshold, 1);
    }

    #[test]
    fn the_image_default_applies_only_without_a_probe_of_its_own() {
        let image = with(tcp(3306), |p| p.period_seconds = 1);
        let set = ProbeSet::for_container(&container(), Some(&image));
        let r = set.readiness.clone().unwrap();
        assert!(r.settings.fast_start);
        assert_eq!(r.settings.period, Duration::from_secs(1));
        let mut own = container();
        own.readiness_probe = Some(tcp(8080));
        let set = ProbeSet::for_container(&own, Some(&image));
        assert_eq!(set.readiness.unwrap().probe, tcp(8080));
        assert!(ProbeSet::for_container(&container(), None).is_empty());
    }

    #[test]
    fn actions_resolve_ports_and_hosts() {
        let mut c = container();
        c.ports.push(v1::ContainerPort {
            name: "mysql".into(),
            container_port: 3306,
            ..Default::default()
        });
        let named = v1::Probe {
            tcp_socket: Some(v1::TcpSocketAction {
                port: Some(twinset_proto::IntOrString::string("mysql")),
                host: String::new(),
            }),
            ..Default::default()
        };
        assert_eq!(
            action(&named, &c, "127.128.0.2"),
            Ok(Action::Tcp {
                host: "127.128.0.2".into(),
                port: 3306
            })
        );
        let http = v1::Probe {
            http_get: Some(v1::HttpGetAction {
                path: "healthz".into(),
                port: Some(twinset_proto::IntOrString::int(8080)),
                host: "localhost".into(),
                scheme: String::new(),
            }),
            ..Default::default()
        };
        assert_eq!(
            action(&http, &c, "127.128.0.2"),
            Ok(Action::Http {
                host: "localhost".into(),
                port: 8080,
                path: "/healthz".into()
            })
        );
        let https = with(http.clone(), |p| {
            p.http_get.as_mut().unwrap().scheme = "HTTPS".into()
        });
        assert!(action(&https, &c, "ip").unwrap_err().contains("HTTPS"));
        let unknown = with(named.clone(), |p| {
            p.tcp_socket.as_mut().unwrap().port = Some(twinset_proto::IntOrString::string("web"))
        });
        assert!(action(&unknown, &c, "ip").unwrap_err().contains("\"web\""));
        assert!(action(&v1::Probe::default(), &c, "ip").is_err());
        assert!(check(&v1::Probe::default()).is_err());
        let two = with(named, |p| p.http_get = http.http_get.clone());
        assert!(check(&two).is_err());
        assert_eq!(Action::address("::1", 80), "[::1]:80");
    }

    #[tokio::test(start_paused = true)]
    async fn no_probes_means_ready_once_running() {
        let p = ContainerProbes::new("app", &ProbeSet::default(), Instant::now(), false);
        assert!(p.started() && p.ready());
        assert_eq!(p.next_due(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_thresholds_and_initial_delay() {
        let mut c = container();
        c.readiness_probe = Some(with(tcp(80), |p| {
            p.initial_delay_seconds = 2;
            p.period_seconds = 5;
            p.success_threshold = 2;
            p.failure_threshold = 2;
        }));
        let t0 = Instant::now();
        let mut p = ContainerProbes::new("app", &ProbeSet::for_container(&c, None), t0, false);
        assert!(p.started() && !p.ready());
        assert_eq!(p.next_due(), Some(t0 + Duration::from_secs(2)));
        assert!(
            p.take_due(t0).is_empty(),
            "nothing before the initial delay"
        );

        to_next(&p).await;
        assert_eq!(step(&mut p, Kind::Readiness, Outcome::Success), vec![]);
        assert!(!p.ready(), "successThreshold 2");
        assert_eq!(p.next_due(), Some(t0 + Duration::from_secs(7)));
        to_next(&p).await;
        step(&mut p, Kind::Readiness, Outcome::Success);
        assert!(p.ready());

        to_next(&p).await;
        let e = step(&mut p, Kind::Readiness, fail());
        assert_eq!(
            e,
            vec![Effect::Unhealthy(
                "Readiness probe failed: dial tcp 127.0.0.1:80: connect: connection refused".into()
            )]
        );
        assert!(p.ready(), "failureThreshold 2");
        to_next(&p).await;
        step(&mut p, Kind::Readiness, fail());
        assert!(!p.ready());
        assert!(!p.killing(), "readiness never kills");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_probe_is_not_overlapped_and_the_next_follows_at_once() {
        let mut c = container();
        c.readiness_probe = Some(with(tcp(80), |p| p.period_seconds = 1));
        let t0 = Instant::now();
        let mut p = ContainerProbes::new("app", &ProbeSet::for_container(&c, None), t0, false);
        assert_eq!(p.take_due(t0), vec![Kind::Readiness]);
        assert_eq!(p.next_due(), None, "one attempt at a time");
        tokio::time::advance(Duration::from_millis(1500)).await;
        let now = Instant::now();
        p.record(Kind::Readiness, fail(), now);
        assert_eq!(p.next_due(), Some(now));
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_kills_after_the_failure_threshold_and_only_once() {
        let mut c = container();
        c.liveness_probe = Some(with(tcp(80), |p| p.period_seconds = 1));
        let mut p = ContainerProbes::new(
            "app",
            &ProbeSet::for_container(&c, None),
            Instant::now(),
            false,
        );
        assert!(p.ready(), "no readiness probe");
        for _ in 0..2 {
            let e = step(&mut p, Kind::Liveness, fail());
            assert!(
                matches!(e.as_slice(), [Effect::Unhealthy(m)] if m.starts_with("Liveness probe failed: "))
            );
            to_next(&p).await;
        }
        // A success in between resets the count.
        step(&mut p, Kind::Liveness, Outcome::Success);
        to_next(&p).await;
        for _ in 0..2 {
            step(&mut p, Kind::Liveness, fail());
            to_next(&p).await;
        }
        let e = step(&mut p, Kind::Liveness, fail());
        assert_eq!(
            e[1],
            Effect::Kill("Container app failed liveness probe, will be restarted".into())
        );
        assert!(p.killing() && !p.ready());
        assert_eq!(p.next_due(), None);
        assert!(p
            .take_due(Instant::now() + Duration::from_secs(60))
            .is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn startup_gates_readiness_and_liveness() {
        let mut c = container();
        c.startup_probe = Some(with(tcp(80), |p| {
            p.period_seconds = 1;
            p.failure_threshold = 30;
        }));
        c.readiness_probe = Some(with(tcp(80), |p| p.initial_delay_seconds = 3));
        c.liveness_probe = Some(tcp(80));
        let t0 = Instant::now();
        let mut p = ContainerProbes::new("app", &ProbeSet::for_container(&c, None), t0, false);
        assert!(!p.started() && !p.ready());
        for _ in 0..4 {
            assert_eq!(p.take_due(Instant::now()), vec![Kind::Startup]);
            let e = p.record(Kind::Startup, fail(), Instant::now());
            assert!(
                matches!(e.as_slice(), [Effect::Unhealthy(m)] if m.starts_with("Startup probe failed"))
            );
            to_next(&p).await;
        }
        // Started at t0+4s: liveness at once, readiness at its initial delay (t0+3s,
        // already past) — both now.
        assert_eq!(p.take_due(Instant::now()), vec![Kind::Startup]);
        p.record(Kind::Startup, Outcome::Success, Instant::now());
        assert!(p.started() && !p.ready());
        assert_eq!(
            p.take_due(Instant::now()),
            vec![Kind::Readiness, Kind::Liveness]
        );
        p.record(Kind::Readiness, Outcome::Success, Instant::now());
        p.record(Kind::Liveness, Outcome::Success, Instant::now());
        assert!(p.ready());
        // The startup probe is done for this run.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            p.take_due(Instant::now()),
            vec![Kind::Readiness, Kind::Liveness]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_startup_probe_kills() {
        let mut c = container();
        c.startup_probe = Some(with(tcp(80), |p| p.failure_threshold = 2));
        let mut p = ContainerProbes::new(
            "app",
            &ProbeSet::for_container(&c, None),
            Instant::now(),
            false,
        );
        step(&mut p, Kind::Startup, fail());
        to_next(&p).await;
        let e = step(&mut p, Kind::Startup, fail());
        assert_eq!(
            e.last(),
            Some(&Effect::Kill(
                "Container app failed startup probe, will be restarted".into()
            ))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn image_default_probes_fast_and_quietly_until_its_first_success() {
        let image = with(tcp(3306), |p| p.period_seconds = 1);
        let t0 = Instant::now();
        let mut p = ContainerProbes::new(
            "mysql",
            &ProbeSet::for_container(&container(), Some(&image)),
            t0,
            false,
        );
        for i in 0..5 {
            assert_eq!(p.take_due(Instant::now()), vec![Kind::Readiness]);
            let e = p.record(Kind::Readiness, fail(), Instant::now());
            assert_eq!(e, vec![], "quiet before the first success");
            assert_eq!(p.next_due(), Some(t0 + FAST_PERIOD * (i + 1)));
            to_next(&p).await;
        }
        step(&mut p, Kind::Readiness, Outcome::Success);
        assert!(p.ready());
        let now = Instant::now();
        assert_eq!(p.next_due(), Some(now + Duration::from_secs(1)));
        // After it, failures count and are reported as usual.
        to_next(&p).await;
        let e = step(&mut p, Kind::Readiness, fail());
        assert_eq!(e.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_adopted_container_skips_the_initial_delay() {
        let mut c = container();
        c.readiness_probe = Some(with(tcp(80), |p| p.initial_delay_seconds = 30));
        let now = Instant::now();
        let p = ContainerProbes::new("app", &ProbeSet::for_container(&c, None), now, true);
        assert_eq!(p.next_due(), Some(now));
    }
}
