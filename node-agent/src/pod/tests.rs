//! The pod worker and the supervisor against the fake runtime, under paused time: no
//! process is started, and every delay (back-off, probe periods, grace periods) is
//! checked to the tick.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use twinset_proto::v1::{self, Pod};

use super::{Desired, Shared};
use crate::container::Backoff;
use crate::images::ImageTable;
use crate::ipam::Ipam;
use crate::logs::Registry;
use crate::reporter::{Report, ReporterHandle};
use crate::runtime::fake::{Call, FakeRuntime};
use crate::runtime::Exit;
use crate::state::{ContainerRecord, PodRecord, StateDir};
use crate::supervisor::Supervisor;
use crate::volumes::Claims;

const RESTART_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(4);
const RESET_AFTER: Duration = Duration::from_secs(60);
const UID: &str = "uid-1";

struct Setup {
    _dir: tempfile::TempDir,
    rt: Arc<FakeRuntime>,
    ctx: Arc<Shared>,
    reports: mpsc::UnboundedReceiver<Report>,
}

fn setup() -> Setup {
    setup_with(FakeRuntime::new(), Arc::new(crate::network::Loopback))
}

fn setup_with(rt: FakeRuntime, network: Arc<dyn crate::network::PodNetwork>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let rt = Arc::new(rt);
    let (reporter, reports) = ReporterHandle::channel();
    // The agent's stores, as the agent opens them (see lib.rs).
    let journal = StateDir::open(data).unwrap();
    let mut ipam = Ipam::open(journal.clone()).unwrap();
    ipam.set_cidr("10.9.0.0/24").unwrap();
    let ctx = Arc::new(Shared {
        node_name: "n1".into(),
        host_ip: "127.0.0.1".into(),
        node_hostname: "node-host".into(),
        data_dir: data.to_path_buf(),
        runtime: rt.clone(),
        images: ImageTable::load_or_empty(&data.join("no-images.yaml")),
        ipam: Mutex::new(ipam),
        state: journal,
        fence: Arc::new(crate::fence::Fence::open(
            data,
            Duration::from_secs(3),
            Duration::from_secs(2),
            true,
        )),
        reporter,
        logs: Registry::default(),
        backoff: Backoff::new(RESTART_DELAY, MAX_DELAY, RESET_AFTER).unwrap(),
        shutdown: CancellationToken::new(),
        stop_pods_on_shutdown: false,
        claims: Claims::open(&data.join("volumes")),
        cluster_dns: None,
        network,
    });
    Setup {
        _dir: dir,
        rt,
        ctx,
        reports,
    }
}

/// A pod with one container `app` (a command, restartPolicy Always) whose liveness
/// probe runs `check` every 10 s and fails at the first failure; grace 30 s.
fn pod() -> Pod {
    let probe = v1::Probe {
        exec: Some(v1::ExecAction {
            command: vec!["check".into()],
        }),
        period_seconds: 10,
        failure_threshold: 1,
        ..Default::default()
    };
    Pod {
        metadata: Some(v1::ObjectMeta {
            name: "web".into(),
            namespace: "default".into(),
            uid: UID.into(),
            ..Default::default()
        }),
        spec: Some(v1::PodSpec {
            containers: vec![v1::Container {
                name: "app".into(),
                command: vec!["serve".into(), "--port=8080".into()],
                liveness_probe: Some(probe),
                ..Default::default()
            }],
            restart_policy: "Always".into(),
            termination_grace_period_seconds: Some(30),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn deleting(mut p: Pod) -> Pod {
    let m = p.metadata.as_mut().unwrap();
    m.deletion_timestamp = "2026-01-01T00:00:00Z".into();
    m.deletion_grace_period_seconds = Some(30);
    p
}

fn app(r: &Report) -> Option<v1::ContainerStatus> {
    r.status.as_ref()?.container_statuses.first().cloned()
}

fn running(r: &Report) -> bool {
    app(r).is_some_and(|c| c.state.is_some_and(|s| s.running.is_some()))
}

fn waiting_reason(r: &Report) -> Option<String> {
    app(r)?.state?.waiting.map(|w| w.reason)
}

fn has_event(r: &Report, reason: &str) -> bool {
    r.events.iter().any(|e| e.reason == reason)
}

/// Reports until one satisfies `pred` (every report is also checked to belong to
/// the pod).
async fn report_where(
    reports: &mut mpsc::UnboundedReceiver<Report>,
    what: &str,
    pred: impl Fn(&Report) -> bool,
) -> Report {
    loop {
        let r = tokio::time::timeout(Duration::from_secs(3600), reports.recv())
            .await
            .unwrap_or_else(|_| panic!("no report {what} within an hour"))
            .unwrap_or_else(|| panic!("reports ended before one {what}"));
        assert_eq!(r.uid, UID);
        if pred(&r) {
            return r;
        }
    }
}

fn is_start(c: &Call) -> bool {
    matches!(c, Call::Start { .. })
}

fn pid_of(c: &Call) -> u32 {
    match c {
        Call::Start { pid, .. } | Call::Adopt { pid, .. } => *pid,
        c => panic!("not a start: {c:?}"),
    }
}

fn signal_to(pid: u32, signal: Signal) -> impl Fn(&Call) -> bool {
    move |c| *c == Call::Signal { pid, signal }
}

fn spawn_worker(
    s: &Setup,
    pod: Pod,
    adopt: Option<PodRecord>,
) -> (watch::Sender<Desired>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Desired::Run(Box::new(pod.clone())));
    let claims = s.ctx.claims.acquire([]);
    let task = tokio::spawn(super::run(Arc::clone(&s.ctx), pod, adopt, rx, claims));
    (tx, task)
}

#[tokio::test(start_paused = true)]
async fn start_crash_backoff_liveness_kill_delete_grace_sigkill_terminated() {
    let mut s = setup();
    let t0 = Instant::now();
    let (desired, task) = spawn_worker(&s, pod(), None);

    // Start.
    let (at, call) = s.rt.next_call(is_start).await;
    assert_eq!(at, t0, "started at once");
    let p1 = pid_of(&call);
    let launch = s.rt.launches().pop().unwrap();
    assert_eq!(launch.argv, ["serve", "--port=8080"]);
    assert_eq!(launch.pod_uid, UID);
    let r = report_where(&mut s.reports, "running", running).await;
    assert!(has_event(&r, "Started"));
    let status = r.status.clone().unwrap();
    assert_eq!(status.pod_ip, "10.9.0.2", "a pod IP from the node's range");
    assert_eq!(status.phase, "Running");
    // The liveness probe runs at once (no initial delay), and then every 10 s.
    let (at, _) = s.rt.next_call(|c| *c == Call::Exec { pid: p1 }).await;
    assert_eq!(at, t0);
    let (at, _) = s.rt.next_call(|c| *c == Call::Exec { pid: p1 }).await;
    assert_eq!(at - t0, Duration::from_secs(10));

    // Crash: it waits out the back-off (the base delay), then restarts.
    let crashed = Instant::now();
    s.rt.exit(
        p1,
        Exit {
            code: Some(1),
            signal: None,
            oom_killed: false,
        },
    );
    let r = report_where(&mut s.reports, "backing off", |r| {
        waiting_reason(r).as_deref() == Some("CrashLoopBackOff")
    })
    .await;
    assert!(has_event(&r, "BackOff"));
    let c = app(&r).unwrap();
    assert_eq!(c.last_state.unwrap().terminated.unwrap().exit_code, 1);
    assert_eq!(c.restart_count, 0);
    let (at, call) = s.rt.next_call(is_start).await;
    assert_eq!(at - crashed, RESTART_DELAY, "restarted after the back-off");
    let p2 = pid_of(&call);
    let restarted = at;
    let r = report_where(&mut s.reports, "running again", running).await;
    assert_eq!(app(&r).unwrap().restart_count, 1);
    // The new run is probed afresh: at once.
    let (at, _) = s.rt.next_call(|c| *c == Call::Exec { pid: p2 }).await;
    assert_eq!(at, restarted);

    // Liveness failure: SIGTERM at the failed probe, the exit restarts it after the
    // doubled back-off.
    s.rt.set_unhealthy("app", true);
    let (failed_at, _) = s.rt.next_call(|c| *c == Call::Exec { pid: p2 }).await;
    assert_eq!(failed_at - restarted, Duration::from_secs(10));
    let (at, _) = s.rt.next_call(signal_to(p2, Signal::SIGTERM)).await;
    assert_eq!(at, failed_at, "killed at the failed probe");
    let r = report_where(&mut s.reports, "killing event", |r| has_event(r, "Killing")).await;
    let killing = r.events.iter().find(|e| e.reason == "Killing").unwrap();
    assert!(
        killing.message.contains("failed liveness probe"),
        "{}",
        killing.message
    );
    assert!(r.events.iter().any(|e| e.reason == "Unhealthy"));
    s.rt.set_unhealthy("app", false);
    let (at, call) = s.rt.next_call(is_start).await;
    assert_eq!(at - failed_at, 2 * RESTART_DELAY, "doubled back-off");
    let p3 = pid_of(&call);
    let r = report_where(&mut s.reports, "running after the kill", running).await;
    let c = app(&r).unwrap();
    assert_eq!(c.restart_count, 2);
    assert_eq!(
        c.last_state.unwrap().terminated.unwrap().exit_code,
        143,
        "ended by SIGTERM"
    );

    // Delete: SIGTERM, ignored; SIGKILL exactly at the end of the grace period;
    // then the pod is reported terminated and its cgroups cleaned up.
    s.rt.ignore_sigterm("app", true);
    desired.send_replace(Desired::Run(Box::new(deleting(pod()))));
    let (term_at, _) = s.rt.next_call(signal_to(p3, Signal::SIGTERM)).await;
    let (kill_at, _) = s.rt.next_call(signal_to(p3, Signal::SIGKILL)).await;
    assert_eq!(kill_at - term_at, Duration::from_secs(30), "grace period");
    let r = report_where(&mut s.reports, "terminated", |r| r.terminated).await;
    let c = app(&r).unwrap();
    let t = c.state.unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.signal), (137, 9));
    let (_, call) = s.rt.next_call(|c| matches!(c, Call::Cleanup { .. })).await;
    assert_eq!(
        call,
        Call::Cleanup {
            pod_uid: UID.into()
        }
    );
    task.await.unwrap();
    assert!(!s.rt.is_running(p3));
    assert!(s.ctx.state.load_all().is_empty(), "its record is gone");
    assert!(
        s.ctx.ipam.lock().unwrap().get(UID).is_none(),
        "its IP is released"
    );
    let starts = s.rt.calls().iter().filter(|(_, c)| is_start(c)).count();
    assert_eq!(starts, 3);
}

fn record(pid: u32, ticks: u64) -> PodRecord {
    PodRecord {
        uid: UID.into(),
        namespace: "default".into(),
        name: "web".into(),
        containers: BTreeMap::from([(
            "app".to_string(),
            ContainerRecord {
                pid,
                start_ticks: ticks,
                started_at: "2026-01-01T00:00:00Z".into(),
                restart_count: 3,
            },
        )]),
    }
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_adopts_a_running_pod() {
    let mut s = setup();
    s.rt.leave_running(4242, 77);
    s.ctx.state.save(&record(4242, 77)).unwrap();
    let tracker = TaskTracker::new();
    let mut sup = Supervisor::new(Arc::clone(&s.ctx), tracker.clone(), s.ctx.state.load_all());
    let t0 = Instant::now();
    sup.snapshot(vec![pod()]);

    let (at, call) = s.rt.next_call(|c| !matches!(c, Call::Exec { .. })).await;
    assert_eq!(
        call,
        Call::Adopt {
            container: "app".into(),
            pid: 4242
        }
    );
    assert_eq!(at, t0);
    let r = report_where(&mut s.reports, "running", running).await;
    let c = app(&r).unwrap();
    assert_eq!(c.restart_count, 3, "the recorded restart count");
    assert_eq!(
        c.state.unwrap().running.unwrap().started_at,
        "2026-01-01T00:00:00Z"
    );
    // Its probes run against the adopted process at once (its delays are over).
    let (at, _) = s.rt.next_call(|c| *c == Call::Exec { pid: 4242 }).await;
    assert_eq!(at, t0);
    assert!(
        s.rt.calls().iter().all(|(_, c)| !is_start(c)),
        "nothing was started again"
    );
    assert_eq!(s.ctx.state.load_all(), vec![record(4242, 77)]);

    // Its exit status is not observable: Unknown, then a restart by the policy.
    let gone = Instant::now();
    s.rt.exit(4242, Exit::default());
    let (at, _) = s.rt.next_call(is_start).await;
    assert_eq!(at - gone, RESTART_DELAY);
    let r = report_where(&mut s.reports, "restarted", running).await;
    let c = app(&r).unwrap();
    assert_eq!(c.restart_count, 4);
    assert_eq!(c.last_state.unwrap().terminated.unwrap().reason, "Unknown");

    s.ctx.shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

/// A pod whose name an earlier pod (another uid, e.g. force-deleted) still holds on
/// this node starts only once that one's record is gone; a record that outlives the
/// grace period plus the slack is not waited on for ever.
#[tokio::test(start_paused = true)]
async fn a_pod_starts_only_once_the_earlier_pod_of_its_name_has_stopped() {
    let s = setup();
    let mut earlier = record(4242, 77);
    earlier.uid = "uid-0".into();
    s.ctx.state.save(&earlier).unwrap();
    let (_desired, _task) = spawn_worker(&s, pod(), None);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        s.rt.calls().iter().all(|(_, c)| !is_start(c)),
        "started while the earlier pod of its name still ran"
    );
    let stopped = Instant::now();
    s.ctx.state.remove("uid-0").unwrap();
    let (at, _) = s.rt.next_call(is_start).await;
    assert!(
        at - stopped <= Duration::from_millis(100),
        "{:?}",
        at - stopped
    );

    // A record that is never removed: waited on for the grace (30 s) + 10 s, no more.
    let s = setup();
    s.ctx.state.save(&earlier).unwrap();
    let t0 = Instant::now();
    let (_desired, _task) = spawn_worker(&s, pod(), None);
    let (at, _) = s.rt.next_call(is_start).await;
    let waited = at - t0;
    assert!(
        (Duration::from_secs(40)..=Duration::from_millis(40_100)).contains(&waited),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_recorded_pod_no_longer_assigned_is_stopped_by_the_same_path() {
    let s = setup();
    s.rt.leave_running(4242, 77);
    s.rt.ignore_sigterm("app", true);
    s.ctx.state.save(&record(4242, 77)).unwrap();
    // It was fenced while no agent ran: the watchdog's records of it are still there.
    s.ctx.fence.record_processes(UID, &[]);
    s.ctx.fence.mark(UID, "stopped by the fence watchdog");
    let dir = crate::logs::pod_dir(&s.ctx.data_dir, "default", "web", UID);
    std::fs::create_dir_all(&dir).unwrap();
    let tracker = TaskTracker::new();
    let mut sup = Supervisor::new(Arc::clone(&s.ctx), tracker.clone(), s.ctx.state.load_all());
    sup.snapshot(vec![]);
    assert!(
        s.ctx.fence.fenced(UID).is_some(),
        "kept while its processes may still run"
    );

    let (_, call) = s.rt.next_call(|_| true).await;
    assert_eq!(
        call,
        Call::Adopt {
            container: "app".into(),
            pid: 4242
        }
    );
    let (term_at, _) = s.rt.next_call(signal_to(4242, Signal::SIGTERM)).await;
    let (kill_at, _) = s.rt.next_call(signal_to(4242, Signal::SIGKILL)).await;
    assert_eq!(kill_at - term_at, super::SHUTDOWN_GRACE);
    s.rt.next_call(|c| matches!(c, Call::Cleanup { .. })).await;
    tracker.close();
    tracker.wait().await;
    assert!(s.ctx.state.load_all().is_empty());
    assert!(!dir.exists(), "its folder is removed");
    assert!(s.rt.calls().iter().all(|(_, c)| !is_start(c)));
    assert!(s.ctx.fence.known().is_empty(), "its fence records are gone");
}

/// Fence records of a pod that is neither assigned, run nor recorded here (an agent
/// died between a pod's end and forgetting it) go at the next snapshot; those of a pod
/// still assigned stay.
#[tokio::test(start_paused = true)]
async fn a_snapshot_forgets_the_fence_records_of_pods_no_longer_here() {
    let s = setup();
    s.ctx.fence.record_processes("gone-uid", &[]);
    s.ctx.fence.mark("gone-uid", "fenced");
    s.ctx.fence.mark(UID, "fenced");
    let tracker = TaskTracker::new();
    let mut sup = Supervisor::new(Arc::clone(&s.ctx), tracker.clone(), Vec::new());
    sup.snapshot(vec![pod()]);
    assert_eq!(
        s.ctx.fence.known().into_iter().collect::<Vec<_>>(),
        vec![UID.to_string()]
    );
    s.ctx.shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_recorded_process_is_started_again_and_shutdown_leaves_pods_running() {
    let mut s = setup();
    // Recorded, but not alive any more: a new process starts.
    let (desired, task) = spawn_worker(&s, pod(), Some(record(4242, 77)));
    let (_, call) = s.rt.next_call(|c| !matches!(c, Call::Exec { .. })).await;
    let pid = pid_of(&call);
    assert!(is_start(&call));
    report_where(&mut s.reports, "running", running).await;
    // The agent stops without stopping its pods: the process keeps running, its
    // record stays for the next agent.
    s.ctx.shutdown.cancel();
    task.await.unwrap();
    drop(desired);
    assert!(s.rt.is_running(pid));
    assert!(s
        .rt
        .calls()
        .iter()
        .all(|(_, c)| !matches!(c, Call::Signal { .. } | Call::Cleanup { .. })));
    let rec = s.ctx.state.load_all();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].containers["app"].pid, pid);
}

#[tokio::test(start_paused = true)]
async fn a_deleted_pod_whose_processes_exit_on_sigterm_is_not_killed() {
    let mut s = setup();
    let (desired, task) = spawn_worker(&s, pod(), None);
    let (_, call) = s.rt.next_call(is_start).await;
    let pid = pid_of(&call);
    report_where(&mut s.reports, "running", running).await;
    let t = Instant::now();
    desired.send_replace(Desired::Run(Box::new(deleting(pod()))));
    let r = report_where(&mut s.reports, "terminated", |r| r.terminated).await;
    assert_eq!(Instant::now(), t, "no wait once the processes are gone");
    let term = app(&r).unwrap().state.unwrap().terminated.unwrap();
    assert_eq!(term.exit_code, 143);
    task.await.unwrap();
    assert!(!s.rt.calls().iter().any(|(_, c)| *c
        == Call::Signal {
            pid,
            signal: Signal::SIGKILL
        }));
}

#[test]
fn grace_periods() {
    let mut p = pod();
    assert_eq!(super::grace_period(&p), Duration::from_secs(30));
    p.spec.as_mut().unwrap().termination_grace_period_seconds = None;
    assert_eq!(super::grace_period(&p), super::DEFAULT_GRACE);
    let p = deleting(p);
    assert_eq!(super::grace_period(&p), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_pod_address_another_process_holds_is_skipped_with_an_event() {
    let mut s = setup();
    // A leftover process on the host holds the first pod address.
    s.rt.hold_address(std::net::Ipv4Addr::new(10, 9, 0, 2), true);
    let (desired, task) = spawn_worker(&s, pod(), None);
    s.rt.next_call(is_start).await;
    let seen = report_where(&mut s.reports, "the PodIPInUse event", |r| {
        has_event(r, "PodIPInUse")
    })
    .await;
    let r = if running(&seen) {
        seen.clone()
    } else {
        report_where(&mut s.reports, "running", running).await
    };
    assert_eq!(r.status.clone().unwrap().pod_ip, "10.9.0.3");
    let ev = seen
        .events
        .iter()
        .find(|e| e.reason == "PodIPInUse")
        .unwrap();
    assert_eq!(
        ev.message,
        "skipped pod IP 10.9.0.2 held by another process on the node; using 10.9.0.3"
    );
    assert_eq!(ev.r#type, "Warning");
    drop(desired);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn bridge_mode_runs_containers_in_the_pods_namespace_and_removes_it_with_the_pod() {
    let net = Arc::new(crate::network::fake::FakeNetwork::default());
    let mut s = setup_with(FakeRuntime::isolated(), net.clone());
    let (desired, task) = spawn_worker(&s, pod(), None);
    s.rt.next_call(is_start).await;
    let r = report_where(&mut s.reports, "running", running).await;
    assert_eq!(r.status.clone().unwrap().pod_ip, "10.9.0.2");
    let attached = net.attached_now();
    let a = attached.get(UID).expect("the pod's network is attached");
    assert_eq!(a.ip, std::net::Ipv4Addr::new(10, 9, 0, 2));
    assert_eq!(a.range.to_string(), "10.9.0.0/24");
    let launch = s.rt.launches().pop().unwrap();
    assert_eq!(
        launch.sandbox.unwrap().netns,
        Some(crate::network::fake::FakeNetwork::netns(UID)),
        "the container joins the pod's namespace"
    );
    desired.send_replace(Desired::Run(Box::new(deleting(pod()))));
    report_where(&mut s.reports, "terminated", |r| r.terminated).await;
    task.await.unwrap();
    assert!(
        net.attached_now().is_empty(),
        "deleting the pod removes its network"
    );
    assert_eq!(
        s.ctx.ipam.lock().unwrap().get(UID),
        None,
        "and frees its IP"
    );
}

#[tokio::test(start_paused = true)]
async fn a_pod_whose_network_cannot_be_made_waits_as_container_creating_until_a_retry_makes_it() {
    let net = Arc::new(crate::network::fake::FakeNetwork::default());
    net.fail_attach("Operation not permitted (os error 1)");
    let mut s = setup_with(FakeRuntime::isolated(), net.clone());
    let (desired, task) = spawn_worker(&s, pod(), None);
    let r = report_where(&mut s.reports, "FailedCreatePodSandBox", |r| {
        has_event(r, "FailedCreatePodSandBox")
    })
    .await;
    assert_eq!(waiting_reason(&r).as_deref(), Some("ContainerCreating"));
    let ev = r
        .events
        .iter()
        .find(|e| e.reason == "FailedCreatePodSandBox")
        .unwrap();
    assert_eq!(
        ev.message,
        "Failed to create pod sandbox: add veth for pod uid-1: Operation not permitted (os error 1)"
    );
    assert!(
        !s.rt.calls().iter().any(|(_, c)| is_start(c)),
        "no container runs outside its pod's network"
    );
    // Tried again after the restart delay, then twice that: once the network can be
    // made, the container starts in it.
    let t0 = Instant::now();
    tokio::time::sleep(RESTART_DELAY * 2).await;
    assert!(!s.rt.calls().iter().any(|(_, c)| is_start(c)));
    net.heal();
    let (at, _) = s.rt.next_call(is_start).await;
    assert_eq!(
        at - t0,
        RESTART_DELAY * 3,
        "retries at 1× then 2× the delay"
    );
    report_where(&mut s.reports, "running", running).await;
    assert!(net.attached_now().contains_key(UID));
    let launch = s.rt.launches().pop().unwrap();
    assert_eq!(
        launch.sandbox.unwrap().netns,
        Some(crate::network::fake::FakeNetwork::netns(UID))
    );
    drop(desired);
    task.abort();
}

/// [`pod`] without its probe, under `policy`.
fn bare_pod(policy: &str) -> Pod {
    let mut p = pod();
    let spec = p.spec.as_mut().unwrap();
    spec.restart_policy = policy.into();
    spec.containers[0].liveness_probe = None;
    p
}

fn exit_code(code: i32) -> Exit {
    Exit {
        code: Some(code),
        signal: None,
        oom_killed: false,
    }
}

fn phase(r: &Report) -> Option<String> {
    r.status.as_ref().map(|s| s.phase.clone())
}

/// Under each restart policy, a bare pod's container that exits with each code is
/// restarted (after the base delay) or not, and the pod's phase says which.
#[tokio::test(start_paused = true)]
async fn restart_policies_decide_restarts_and_the_pods_phase() {
    let cases = [
        ("Always", 0, true, "Running"),
        ("Always", 1, true, "Running"),
        ("OnFailure", 0, false, "Succeeded"),
        ("OnFailure", 1, true, "Running"),
        ("Never", 0, false, "Succeeded"),
        ("Never", 1, false, "Failed"),
    ];
    for (policy, code, restarts, want_phase) in cases {
        let what = format!("restartPolicy {policy}, exit {code}");
        let mut s = setup();
        let (desired, task) = spawn_worker(&s, bare_pod(policy), None);
        let (_, call) = s.rt.next_call(is_start).await;
        report_where(&mut s.reports, "running", running).await;
        let exited = Instant::now();
        s.rt.exit(pid_of(&call), exit_code(code));
        let r = report_where(&mut s.reports, "terminated or backing off", |r| !running(r)).await;
        assert_eq!(phase(&r).as_deref(), Some(want_phase), "{what}");
        let c = app(&r).unwrap();
        if restarts {
            let w = c.state.unwrap().waiting.unwrap();
            assert_eq!(w.reason, "CrashLoopBackOff", "{what}");
            assert_eq!(c.last_state.unwrap().terminated.unwrap().exit_code, code);
            let (at, _) = s.rt.next_call(is_start).await;
            assert_eq!(
                at - exited,
                RESTART_DELAY,
                "{what}: restarted after the base"
            );
            let r = report_where(&mut s.reports, "running again", running).await;
            assert_eq!(app(&r).unwrap().restart_count, 1, "{what}");
        } else {
            let t = c.state.unwrap().terminated.unwrap();
            assert_eq!(t.exit_code, code, "{what}");
            assert_eq!(t.reason, if code == 0 { "Completed" } else { "Error" });
            assert_eq!(c.restart_count, 0, "{what}");
            // Long past every back-off: nothing started again.
            tokio::time::sleep(RESET_AFTER * 2).await;
            let starts = s.rt.calls().iter().filter(|(_, c)| is_start(c)).count();
            assert_eq!(starts, 1, "{what}: not restarted");
        }
        drop(desired);
        task.abort();
    }
}

/// Process `pid` exits 1; returns how long until the restart, whose pid replaces it.
async fn crash_and_restart(s: &Setup, pid: &mut u32) -> Duration {
    let crashed = Instant::now();
    s.rt.exit(*pid, exit_code(1));
    let (at, call) = s.rt.next_call(is_start).await;
    *pid = pid_of(&call);
    at - crashed
}

/// A crash-looping container restarts after 1×, 2×, 4× the base, then the max; a run
/// as long as the reset period brings the delay back to the base.
#[tokio::test(start_paused = true)]
async fn restarts_back_off_doubling_to_the_max_and_reset_after_a_long_run() {
    let mut s = setup();
    let (desired, task) = spawn_worker(&s, bare_pod("Always"), None);
    let (_, call) = s.rt.next_call(is_start).await;
    let mut pid = pid_of(&call);
    let mut gaps = Vec::new();
    for _ in 0..5 {
        gaps.push(crash_and_restart(&s, &mut pid).await);
    }
    assert_eq!(gaps, [1, 2, 4, 4, 4].map(|n| n * RESTART_DELAY));
    let r = report_where(&mut s.reports, "the fifth restart", |r| {
        running(r) && app(r).unwrap().restart_count == 5
    })
    .await;
    assert!(running(&r));

    // A good run of the reset period, then a crash: the base again, then doubling.
    tokio::time::sleep(RESET_AFTER).await;
    let mut gaps = Vec::new();
    for _ in 0..2 {
        gaps.push(crash_and_restart(&s, &mut pid).await);
    }
    assert_eq!(gaps, [RESTART_DELAY, 2 * RESTART_DELAY]);
    drop(desired);
    task.abort();
}

/// [`bare_pod`] of a StatefulSet whose policy on node loss is Replace.
fn replace_pod() -> Pod {
    let mut p = bare_pod("Always");
    let m = p.metadata.as_mut().unwrap();
    m.annotations.insert(
        twinset_proto::fencing::ON_NODE_LOST_ANNOTATION.into(),
        "Replace".into(),
    );
    m.owner_references.push(v1::OwnerReference {
        kind: "StatefulSet".into(),
        name: "web".into(),
        uid: "set-uid".into(),
        controller: Some(true),
        ..Default::default()
    });
    p
}

fn fence_armed(r: &Report) -> bool {
    twinset_proto::fencing::armed_in(r.status.as_ref())
}

/// A Replace replica waits for the lease, runs armed while heartbeats are acknowledged,
/// and once they stop for fence-after is stopped (SIGTERM, the fence grace, SIGKILL),
/// marked, reported Failed/Fenced, and never started again, even when the lease comes
/// back.
#[tokio::test(start_paused = true)]
async fn a_replace_replica_is_fenced_when_its_lease_lapses_and_never_restarts() {
    let mut s = setup();
    s.rt.ignore_sigterm("app", true);
    let (desired, task) = spawn_worker(&s, replace_pod(), None);
    // No acknowledged heartbeat yet: it does not start.
    let r = report_where(&mut s.reports, "waiting for the lease", |r| {
        waiting_reason(r).as_deref() == Some(super::fencing::LEASE_LAPSED)
    })
    .await;
    assert!(!fence_armed(&r) || !running(&r));
    assert!(s.rt.calls().iter().all(|(_, c)| !is_start(c)));

    // A heartbeat is acknowledged: it starts, armed.
    let acked = Instant::now();
    s.ctx.fence.renew(acked);
    let (_, call) = s.rt.next_call(is_start).await;
    let pid = pid_of(&call);
    let r = report_where(&mut s.reports, "running armed", |r| {
        running(r) && fence_armed(r)
    })
    .await;
    assert_eq!(phase(&r).as_deref(), Some("Running"));
    // Renewed in time: still running past the first deadline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.ctx.fence.renew(Instant::now());
    let renewed = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        s.rt.is_running(pid),
        "fenced although the lease was renewed"
    );

    // No more acknowledgements: SIGTERM at fence-after (3 s) from the last one's send
    // time, SIGKILL after the fence grace (2 s) since it ignores SIGTERM.
    let (at, _) = s.rt.next_call(signal_to(pid, Signal::SIGTERM)).await;
    assert_eq!(at - renewed, Duration::from_secs(3));
    let (at_kill, _) = s.rt.next_call(signal_to(pid, Signal::SIGKILL)).await;
    assert_eq!(at_kill - at, Duration::from_secs(2));
    let r = report_where(&mut s.reports, "Failed, Fenced", |r| {
        r.status
            .as_ref()
            .is_some_and(|st| st.phase == "Failed" && st.reason == "Fenced")
    })
    .await;
    assert!(!fence_armed(&r));
    assert!(
        s.ctx.fence.fenced(UID).is_some(),
        "the pod is marked fenced"
    );

    // The lease comes back and the pod changes: it never starts again.
    s.ctx.fence.renew(Instant::now());
    desired.send_replace(Desired::Run(Box::new(replace_pod())));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let starts = s.rt.calls().iter().filter(|(_, c)| is_start(c)).count();
    assert_eq!(starts, 1, "a fenced pod was started again");
    task.abort();
}

/// A pod without the Replace policy keeps running through any silence (static
/// stability), and carries no fence condition; nor is a DaemonSet's pod ever fenced,
/// whatever its annotations say.
#[tokio::test(start_paused = true)]
async fn a_wait_pod_is_never_fenced() {
    let mut daemon = replace_pod();
    daemon.metadata.as_mut().unwrap().owner_references[0].kind = "DaemonSet".into();
    for p in [bare_pod("Always"), daemon] {
        never_fenced(p).await;
    }
}

async fn never_fenced(p: Pod) {
    let mut s = setup();
    let (_desired, task) = spawn_worker(&s, p, None);
    let (_, call) = s.rt.next_call(is_start).await;
    let r = report_where(&mut s.reports, "running", running).await;
    assert!(!fence_armed(&r));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(s.rt.is_running(pid_of(&call)));
    assert!(s
        .rt
        .calls()
        .iter()
        .all(|(_, c)| !matches!(c, Call::Signal { .. })));
    task.abort();
}
