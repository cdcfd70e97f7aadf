//! The probes of a pod's running containers, as the worker runs them: one
//! [`ContainerProbes`] state machine per container run ([`crate::probes`] decides),
//! attempts started when due and run through [`crate::prober`] (exec probes through
//! the [`Runtime`]), and their results turned into effects for the worker
//! (`Unhealthy` events, kills). Results of an earlier run of a container are ignored.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use twinset_proto::v1;

use crate::prober::{self, ExecTarget};
use crate::probes::{self, ContainerProbes, Effect, Kind, Outcome, ProbeSet};
use crate::runtime::Runtime;

type ProbeFuture = BoxFuture<'static, Attempt>;

/// The result of one probe attempt of container `index`'s run `generation`.
#[derive(Debug)]
pub struct Attempt {
    /// The container's index in the pod spec.
    pub index: usize,
    /// The run it probed.
    pub generation: u64,
    /// Which probe.
    pub kind: Kind,
    /// How it went.
    pub outcome: Outcome,
}

/// A container run whose probes begin.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// The run (container generation).
    pub generation: u64,
    /// The container spec (named ports).
    pub spec: v1::Container,
    /// Its probes.
    pub set: ProbeSet,
    /// Where exec probes run.
    pub target: ExecTarget,
    /// When it started (or was adopted).
    pub since: Instant,
    /// Adopted after an agent restart (initial delays are over).
    pub adopted: bool,
}

/// The probes of one container run.
struct Probing {
    generation: u64,
    /// The container spec (named ports).
    spec: v1::Container,
    set: ProbeSet,
    state: ContainerProbes,
    target: ExecTarget,
}

/// The probes of every container of one pod.
pub struct PodProbes {
    /// Per container: the probes of its current run (None: not running, or no probes).
    slots: Vec<Option<Probing>>,
    /// Attempts in flight.
    runs: FuturesUnordered<ProbeFuture>,
}

impl PodProbes {
    /// No probes yet for `containers` containers.
    pub fn new(containers: usize) -> Self {
        PodProbes {
            slots: (0..containers).map(|_| None).collect(),
            runs: FuturesUnordered::new(),
        }
    }

    /// Sets up the probes of container `index`'s new run.
    pub fn begin(&mut self, index: usize, run: NewRun) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        *slot = None;
        if run.set.is_empty() {
            return;
        }
        let state = ContainerProbes::new(&run.spec.name, &run.set, run.since, run.adopted);
        *slot = Some(Probing {
            generation: run.generation,
            spec: run.spec,
            set: run.set,
            state,
            target: run.target,
        });
    }

    /// Container `index` stopped running: its probes end.
    pub fn end(&mut self, index: usize) {
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = None;
        }
    }

    /// When the next attempt is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.slots
            .iter()
            .flatten()
            .filter_map(|p| p.state.next_due())
            .min()
    }

    /// Starts every attempt due at `now` (targets with an empty host go to `pod_ip`).
    pub fn launch_due(&mut self, now: Instant, runtime: &Arc<dyn Runtime>, pod_ip: &str) {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(p) = slot else {
                continue;
            };
            for kind in p.state.take_due(now) {
                let Some(def) = p.set.get(kind) else {
                    continue;
                };
                let action = probes::action(&def.probe, &p.spec, pod_ip);
                let attempt = prober::run(
                    action,
                    Arc::clone(runtime),
                    p.target.clone(),
                    def.settings.timeout,
                );
                let generation = p.generation;
                self.runs.push(Box::pin(async move {
                    Attempt {
                        index,
                        generation,
                        kind,
                        outcome: attempt.await,
                    }
                }));
            }
        }
    }

    /// The next finished attempt (pending forever while none is in flight).
    pub async fn next_result(&mut self) -> Attempt {
        match self.runs.next().await {
            Some(a) => a,
            None => std::future::pending().await,
        }
    }

    /// Records an attempt's result at `now`: the container's index and name and what
    /// the worker must do, or None for a result of an earlier run.
    pub fn record(&mut self, a: Attempt, now: Instant) -> Option<(usize, String, Vec<Effect>)> {
        let p = self.slots.get_mut(a.index)?.as_mut()?;
        if p.generation != a.generation {
            return None;
        }
        let was_ready = p.state.ready();
        let effects = p.state.record(a.kind, a.outcome, now);
        let ready = p.state.ready();
        if ready != was_ready {
            tracing::info!(container = %p.spec.name, ready, "readiness changed");
        }
        Some((a.index, p.spec.name.clone(), effects))
    }

    /// Lets the probes decide `started` and `ready` of container `index`'s status.
    pub fn gate(&self, index: usize, status: &mut v1::ContainerStatus) {
        if let Some(Some(p)) = self.slots.get(index) {
            status.started = Some(status.started == Some(true) && p.state.started());
            status.ready = status.ready && p.state.ready();
        }
    }
}
