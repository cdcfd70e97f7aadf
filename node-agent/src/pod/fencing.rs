//! The pod worker's part of fencing ([`crate::fence`]): a replica of a `Replace`
//! StatefulSet runs only while the node's lease holds, is stopped (and never started
//! again) once it lapses, says in its status that it is fenced, and keeps the
//! watchdog's list of its process groups current.

use tokio::time::Instant;
use twinset_proto::fencing::{self, Policy};
use twinset_proto::v1;

use super::launch::NotStarted;
use super::PodWorker;
use crate::events::Severity;
use crate::procfs::ProcId;

/// The waiting reason of a `Replace` replica that has not started because the node has
/// no acknowledged heartbeat yet.
pub const LEASE_LAPSED: &str = "NodeLeaseLapsed";

/// The pod reason (and event reason) of a fenced pod.
pub const FENCED: &str = "Fenced";

impl PodWorker {
    /// Whether this pod is fenced when the node is cut off: a StatefulSet's replica whose
    /// policy is Replace, on a node a watchdog guards. DaemonSet and bare pods never are,
    /// whatever their annotations say.
    pub(super) fn fenceable(&self) -> bool {
        let replica = self
            .pod
            .metadata
            .as_ref()
            .and_then(|m| m.controller())
            .is_some_and(|o| o.kind == "StatefulSet");
        replica
            && self.ctx.fence.within().is_some()
            && fencing::pod_policy(&self.pod) == Policy::Replace
    }

    /// Why a container of this pod may not start now (None: it may).
    pub(super) fn fence_gate(&mut self) -> Option<NotStarted> {
        if let Some(why) = self.fenced_now() {
            return Some(NotStarted {
                reason: FENCED.into(),
                event: FENCED.into(),
                message: why,
            });
        }
        (self.fenceable() && self.ctx.fence.lapsed(Instant::now())).then(|| NotStarted {
            reason: LEASE_LAPSED.into(),
            event: LEASE_LAPSED.into(),
            message: "waiting for an acknowledged heartbeat: this pod is stopped whenever its node is cut off from the control plane".into(),
        })
    }

    /// Whether the pod is fenced, also when the watchdog did it (its mark).
    pub(super) fn fenced_now(&mut self) -> Option<String> {
        if self.fenced.is_none() && fencing::pod_policy(&self.pod) == Policy::Replace {
            if let Some(why) = self.ctx.fence.fenced(&self.uid) {
                tracing::warn!("{why}");
                self.event(Severity::Warning, FENCED, why.clone(), None);
                self.fenced = Some(why);
            }
        }
        self.fenced.clone()
    }

    /// When the running pod must be fenced (None: it need not be).
    pub(super) fn fence_due(&self) -> Option<Instant> {
        if self.fenced.is_some() || !self.fenceable() || self.running_pids().is_empty() {
            return None;
        }
        Some(self.ctx.fence.deadline().unwrap_or_else(Instant::now))
    }

    /// Fences the pod if its lease has lapsed: mark, event, SIGTERM, the fence grace,
    /// SIGKILL; it is never started again.
    pub(super) async fn fence_if_lapsed(&mut self) {
        if self.fence_due().is_none() || !self.ctx.fence.lapsed(Instant::now()) {
            return;
        }
        let why = format!(
            "no acknowledged heartbeat for {}: stopped, so that the control plane may run it on another node",
            fencing::short_duration(self.ctx.fence.after())
        );
        self.ctx.fence.mark(&self.uid, &why);
        tracing::warn!("fencing: {why}");
        self.event(Severity::Warning, FENCED, why.clone(), None);
        self.fenced = Some(why);
        let grace = self.ctx.fence.grace();
        self.terminate(grace, true).await;
        tracing::warn!("fenced: every container stopped");
    }

    fn running_pids(&self) -> Vec<u32> {
        self.containers.iter().filter_map(|c| c.pid()).collect()
    }

    /// Keeps `fence/pods/<uid>` (the watchdog's list) equal to the running process
    /// groups of a fenceable pod; removes it when the pod is not fenceable.
    pub(super) fn sync_fence_files(&mut self) {
        let want: Option<Vec<ProcId>> = (self.fenceable() && self.fenced.is_none()).then(|| {
            self.containers
                .iter()
                .filter_map(|c| {
                    let pid = c.pid()?;
                    ProcId::of(i32::try_from(pid).ok()?)
                })
                .collect()
        });
        if want == self.fence_recorded {
            return;
        }
        match &want {
            Some(procs) => self.ctx.fence.record_processes(&self.uid, procs),
            None if self.fenced.is_none() => self.ctx.fence.forget(&self.uid),
            // A fenced pod keeps its mark; the watchdog drops the list once it is dead.
            None => {}
        }
        self.fence_recorded = want;
    }

    /// What fencing adds to the status: the armed condition, or phase Failed with
    /// reason `Fenced`.
    pub(super) fn fence_status(&self, status: &mut v1::PodStatus, now: &str) {
        if let Some(why) = &self.fenced {
            status.phase = "Failed".into();
            status.reason = FENCED.into();
            status.message = why.clone();
            return;
        }
        if let Some(within) = self.ctx.fence.within().filter(|_| self.fenceable()) {
            let mut cond = fencing::armed_condition(within, now);
            if let Some(prev) = self
                .conditions
                .iter()
                .find(|c| c.r#type == fencing::FENCE_CONDITION && c.status == "True")
            {
                cond.last_transition_time = prev.last_transition_time.clone();
            }
            status.conditions.push(cond);
        }
    }
}
