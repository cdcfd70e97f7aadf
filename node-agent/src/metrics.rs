//! The agent's Prometheus metrics, served at `/metrics` on the daemon endpoint
//! (`twinset_proto::metrics` decides who may read them and encodes them): how long its
//! pods take to start, its pods per phase, its containers' restarts. The instruments are
//! process-wide, as a Prometheus client's are; the pod workers record into them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::time::Duration;
use twinset_proto::metrics::{phase_label, POD_PHASES, START_BUCKETS};
use twinset_proto::v1;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

/// Every instrument of the agent.
#[derive(Debug)]
struct Metrics {
    pod_start: Histogram,
    pods: Family<PhaseLabel, Gauge>,
    restarts: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let pods: Family<PhaseLabel, Gauge> = Family::default();
    // Every phase is shown, 0 when no pod is in it.
    for phase in POD_PHASES {
        pods.get_or_create(&PhaseLabel { phase }).set(0);
    }
    Metrics {
        pod_start: Histogram::new(START_BUCKETS),
        pods,
        restarts: Counter::default(),
    }
});

/// What `/metrics` shows.
pub fn registry() -> Registry {
    let m = &*METRICS;
    let mut r = Registry::default();
    r.register(
        "twinset_agent_pod_start_duration_seconds",
        "Time from a pod's assignment reaching the agent to all its containers running",
        m.pod_start.clone(),
    );
    r.register(
        "twinset_agent_pods",
        "Pods on this node by phase",
        m.pods.clone(),
    );
    r.register(
        "twinset_agent_container_restarts",
        "Containers restarted by their pod's restart policy",
        m.restarts.clone(),
    );
    r
}

/// Records a pod that took `took` from its assignment to all containers running.
pub fn pod_started(took: Duration) {
    METRICS.pod_start.observe(took.as_secs_f64());
}

/// Records a container restarted by its pod's restart policy.
pub fn container_restarted() {
    METRICS.restarts.inc();
}

/// Whether every container of a pod with `containers` containers is running in `status`.
pub fn all_running(status: &v1::PodStatus, containers: usize) -> bool {
    containers > 0
        && status.container_statuses.len() == containers
        && status
            .container_statuses
            .iter()
            .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

/// A pod's place in the pods-per-phase gauge: counted in one phase at a time, and no
/// more once dropped (its worker ended).
#[derive(Debug, Default)]
pub struct PhaseSlot {
    current: Option<&'static str>,
}

impl PhaseSlot {
    /// Counts the pod in `phase` (its status's phase; see `phase_label`).
    pub fn set(&mut self, phase: &str) {
        let phase = phase_label(phase);
        if self.current == Some(phase) {
            return;
        }
        self.leave();
        METRICS.pods.get_or_create(&PhaseLabel { phase }).inc();
        self.current = Some(phase);
    }

    fn leave(&mut self) {
        if let Some(phase) = self.current.take() {
            METRICS.pods.get_or_create(&PhaseLabel { phase }).dec();
        }
    }
}

impl Drop for PhaseSlot {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_phase(phase: &'static str) -> i64 {
        METRICS.pods.get_or_create(&PhaseLabel { phase }).get()
    }

    #[test]
    fn a_pod_is_counted_in_one_phase_until_its_worker_ends() {
        // Other tests' workers count too: compare differences.
        let (pending, running) = (in_phase("Pending"), in_phase("Running"));
        let mut slot = PhaseSlot::default();
        slot.set("");
        assert_eq!(in_phase("Pending"), pending + 1);
        slot.set("Running");
        slot.set("Running");
        assert_eq!(in_phase("Pending"), pending);
        assert_eq!(in_phase("Running"), running + 1);
        drop(slot);
        assert_eq!(in_phase("Running"), running);
        let text = twinset_proto::metrics::encode(&registry()).unwrap();
        assert!(
            text.contains("twinset_agent_pods{phase=\"Succeeded\"} "),
            "{text}"
        );
        assert!(text.contains("# TYPE twinset_agent_pod_start_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE twinset_agent_container_restarts_total counter\n"));
    }

    #[test]
    fn a_pod_has_started_when_all_its_containers_run() {
        let state = |running: bool| v1::ContainerStatus {
            state: Some(v1::ContainerState {
                running: running.then(v1::ContainerStateRunning::default),
                waiting: (!running).then(v1::ContainerStateWaiting::default),
                ..Default::default()
            }),
            ..Default::default()
        };
        let status = |states: Vec<bool>| v1::PodStatus {
            container_statuses: states.into_iter().map(state).collect(),
            ..Default::default()
        };
        assert!(all_running(&status(vec![true, true]), 2));
        assert!(!all_running(&status(vec![true, false]), 2));
        assert!(!all_running(&status(vec![true]), 2));
        assert!(!all_running(&status(vec![]), 0));
    }
}
