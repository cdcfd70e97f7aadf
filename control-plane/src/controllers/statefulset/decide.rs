//! The StatefulSet controller's brain: from one StatefulSet and the pods, claims and
//! revisions of its namespace, the next safe steps. Pure: no I/O, no clock, no
//! randomness. Follows Kubernetes' stateful_set_control.go:
//!
//! 1. every missing replica in `[start, start+replicas)` is created (claims first) at
//!    the current revision below the partition and the update revision from it; a
//!    Failed or Succeeded replica is deleted and comes back under the same name once
//!    its object is gone; a name still held by any pod (Terminating included) is never
//!    reused, so there is at most one pod per identity;
//! 2. condemned replicas (ordinals out of range) are deleted, highest first;
//! 3. RollingUpdate replaces outdated replicas from the highest ordinal down to the
//!    partition, one at a time (or maxUnavailable at a time), each after the previous
//!    replacement is Running, Ready and available; OnDelete waits for the user.
//!
//! Under OrderedReady each step waits for every lower replica to be Running, Ready and
//! available (minReadySeconds), scaling down waits for each pod to be gone before the
//! next, and scaling takes precedence over updates. Parallel does not wait.
//!
//! Where Twinset differs: a replica that is not Running and Ready and still runs an
//! outdated revision (at or above the partition, RollingUpdate) is replaced at once
//! under OrderedReady instead of blocking the rollout forever (Kubernetes #67250:
//! reverting a broken template is then enough). A condemned replica may go while
//! lower condemned replicas are unhealthy (Kubernetes can wedge there).

use super::claims::{self, build_claim, desired_owners, is_stale};
use super::identity::{build_pod, history_owner, meta, parse_ordinal, pod_name, pod_revision};
use crate::controllers::history::{self, Revision};
use crate::podutil;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};
use twinset_proto::selector::label_selector_matches;
use twinset_proto::v1::{
    ControllerRevision, OwnerReference, PersistentVolumeClaim, Pod, StatefulSet, StatefulSetSpec,
    StatefulSetStatus,
};

/// One step the shell carries out.
#[derive(Clone, Debug, PartialEq)]
#[must_use = "an action the shell drops is never carried out"]
pub enum Action {
    /// Store a new revision of the set's template.
    CreateRevision {
        /// The revision object.
        revision: ControllerRevision,
    },
    /// Give an older revision the next number (the template went back to it).
    RenumberRevision {
        /// The revision's name.
        name: String,
        /// Its new number.
        revision: i64,
    },
    /// Take over an orphan pod that matches the selector and is named like a replica.
    AdoptPod {
        /// The pod's name.
        name: String,
    },
    /// Create a replica's claim (before its pod).
    CreateClaim {
        /// The claim.
        claim: PersistentVolumeClaim,
        /// The pod it is for (for the event).
        pod: String,
    },
    /// Replace a claim's owner references (retention policy).
    SetClaimOwners {
        /// The claim's name.
        name: String,
        /// The claim's resourceVersion the change is based on (compare-and-swap).
        resource_version: u64,
        /// The owner references it should carry.
        owners: Vec<OwnerReference>,
    },
    /// Create a replica's pod (its claims exist or are created in the same round, first).
    CreatePod {
        /// The pod.
        pod: Pod,
    },
    /// Delete a pod (gracefully when its node is alive).
    DeletePod {
        /// The pod's name.
        name: String,
        /// Why, for the log.
        reason: DeleteReason,
    },
    /// Write the set's status.
    UpdateStatus {
        /// The new status.
        status: StatefulSetStatus,
    },
    /// Take over a revision a deleted set of the same name left behind.
    AdoptRevision {
        /// The revision's name.
        name: String,
    },
    /// Delete an old revision nothing uses (history limit).
    DeleteRevision {
        /// The revision's name.
        name: String,
    },
    /// Look again after this long (a Ready pod becomes available after minReadySeconds).
    RequeueAfter {
        /// How long.
        after: Duration,
    },
}

/// Why a replica's pod is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// It ended (Failed or Succeeded); it comes back under the same name.
    Finished,
    /// Its ordinal is out of range (scale down).
    ScaleDown,
    /// It runs an outdated revision (rolling update).
    Update,
}

/// Everything decide() looks at.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot<'a> {
    /// The StatefulSet (with uid, generation and status, as stored).
    pub set: &'a StatefulSet,
    /// Pods of the set's namespace (others' included: their names are taken too).
    pub pods: &'a [Pod],
    /// Claims of the set's namespace.
    pub claims: &'a [PersistentVolumeClaim],
    /// ControllerRevisions of the set's namespace.
    pub revisions: &'a [ControllerRevision],
    /// The time, for minReadySeconds.
    pub now: SystemTime,
}

/// Running with the Ready condition True.
pub fn running_ready(p: &Pod) -> bool {
    podutil::phase(p) == "Running" && podutil::is_ready(p)
}

fn available(p: &Pod, min_ready: i32, now: SystemTime) -> bool {
    running_ready(p) && podutil::is_available(p, min_ready, now)
}

/// Running, Ready, available and not terminating.
fn healthy(p: &Pod, min_ready: i32, now: SystemTime) -> bool {
    available(p, min_ready, now) && !podutil::is_terminating(p)
}

fn finished(p: &Pod) -> bool {
    matches!(podutil::phase(p), "Failed" | "Succeeded")
}

fn rolling(spec: &StatefulSetSpec) -> bool {
    spec.update_strategy
        .as_ref()
        .is_none_or(|s| s.r#type.is_empty() || s.r#type == "RollingUpdate")
}

fn partition(spec: &StatefulSetSpec) -> i32 {
    spec.update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0)
}

/// maxUnavailable when given (int, or % of replicas rounded down), at least 1.
fn max_unavailable(spec: &StatefulSetSpec, replicas: i32) -> Option<i32> {
    let m = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.as_ref())?;
    Some(m.scaled(replicas, false).unwrap_or(1).max(1))
}

/// The working state of one decide() call.
struct Plan<'a> {
    snap: Snapshot<'a>,
    spec: StatefulSetSpec,
    set_name: String,
    start: i32,
    end: i32,
    monotonic: bool,
    min_ready: i32,
    history: history::History,
    /// In-range replicas by ordinal.
    replicas: BTreeMap<i32, &'a Pod>,
    /// Out-of-range replicas, highest ordinal first.
    condemned: Vec<(i32, &'a Pod)>,
    /// Every pod name in the namespace.
    taken: BTreeSet<&'a str>,
    claims: HashMap<&'a str, &'a PersistentVolumeClaim>,
    actions: Vec<Action>,
}

/// Whether a loop over replicas must stop (OrderedReady waits, or a step was taken).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

impl<'a> Plan<'a> {
    fn in_range(&self, ord: i32) -> bool {
        (self.start..self.end).contains(&ord)
    }

    /// The revision a new pod of `ord` is made from: the current one below the partition.
    fn revision_for(&self, ord: i32) -> &Revision {
        if rolling(&self.spec) && ord - self.start < partition(&self.spec) {
            &self.history.current
        } else {
            &self.history.update
        }
    }

    /// Under OrderedReady a blocked replica stops everything after it.
    fn wait(&self) -> Flow {
        if self.monotonic {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// CreateClaim actions for the claims of `ord` that do not exist; None when one of
    /// them is on its way out (the pod must wait).
    fn missing_claims(&self, ord: i32) -> Option<Vec<Action>> {
        let pod = pod_name(&self.set_name, ord);
        let mut out = Vec::new();
        for t in &self.spec.volume_claim_templates {
            let name = claims::claim_name(claims::template_name(t), &self.set_name, ord);
            match self.claims.get(name.as_str()) {
                Some(c) if is_stale(c, self.snap.set, &pod) => return None,
                Some(_) => {}
                None => {
                    let owners = desired_owners(self.snap.set, &[], ord, true, None);
                    out.push(Action::CreateClaim {
                        claim: build_claim(self.snap.set, t, ord, owners),
                        pod: pod.clone(),
                    });
                }
            }
        }
        Some(out)
    }

    /// Replica `ord`: create it, replace it when finished, or wait for it.
    fn replica(&mut self, ord: i32) -> Flow {
        let now = self.snap.now;
        let Some(pod) = self.replicas.get(&ord).copied() else {
            let name = pod_name(&self.set_name, ord);
            if self.taken.contains(name.as_str()) {
                // Another owner's pod holds the name: never two pods with one identity.
                return self.wait();
            }
            let Some(claims) = self.missing_claims(ord) else {
                return self.wait();
            };
            self.actions.extend(claims);
            let rev = self.revision_for(ord);
            let pod = build_pod(self.snap.set, &rev.template, &rev.name, ord);
            self.actions.push(Action::CreatePod { pod });
            return self.wait();
        };
        let name = podutil::name(pod).to_string();
        if finished(pod) {
            if !podutil::is_terminating(pod) {
                self.actions.push(Action::DeletePod {
                    name,
                    reason: DeleteReason::Finished,
                });
            }
            return self.wait();
        }
        if podutil::is_terminating(pod) {
            return self.wait();
        }
        if matches!(podutil::phase(pod), "" | "Pending") {
            // A claim deleted under a pod that has not started yet is made again.
            if let Some(claims) = self.missing_claims(ord) {
                self.actions.extend(claims);
            }
        }
        if self.monotonic && !running_ready(pod) {
            let outdated = pod_revision(pod) != self.history.update.name;
            if rolling(&self.spec) && outdated && ord - self.start >= partition(&self.spec) {
                self.actions.push(Action::DeletePod {
                    name,
                    reason: DeleteReason::Update,
                });
            }
            return Flow::Stop;
        }
        if self.monotonic && !available(pod, self.min_ready, now) {
            return Flow::Stop;
        }
        Flow::Continue
    }

    /// Condemned replica: deleted; under OrderedReady one at a time, each once the one
    /// above is gone.
    fn condemned(&mut self, pod: &Pod) -> Flow {
        if podutil::is_terminating(pod) {
            return self.wait();
        }
        self.actions.push(Action::DeletePod {
            name: podutil::name(pod).to_string(),
            reason: DeleteReason::ScaleDown,
        });
        self.wait()
    }

    /// Claims of existing replicas whose owners do not follow the retention policy.
    fn fix_claim_owners(&mut self) {
        let pods: Vec<(i32, &Pod)> = self
            .replicas
            .iter()
            .map(|(o, p)| (*o, *p))
            .chain(self.condemned.iter().copied())
            .collect();
        for (ord, pod) in pods {
            for t in &self.spec.volume_claim_templates {
                let name = claims::claim_name(claims::template_name(t), &self.set_name, ord);
                let Some(claim) = self.claims.get(name.as_str()) else {
                    continue;
                };
                let cm = claim.metadata.clone().unwrap_or_default();
                let owners = desired_owners(
                    self.snap.set,
                    &cm.owner_references,
                    ord,
                    self.in_range(ord),
                    Some(pod),
                );
                if owners != cm.owner_references {
                    self.actions.push(Action::SetClaimOwners {
                        name,
                        resource_version: cm.resource_version.parse().unwrap_or(0),
                        owners,
                    });
                }
            }
        }
    }

    /// RollingUpdate: the highest outdated replica at or above the partition goes, once
    /// every replica above it runs the update revision and is healthy.
    fn rolling_update(&mut self) {
        let now = self.snap.now;
        let from = self.start.saturating_add(partition(&self.spec));
        let targets: Vec<i32> = (from.max(self.start)..self.end).rev().collect();
        let update = self.history.update.name.clone();
        let outdated = |p: &Pod| pod_revision(p) != update && !podutil::is_terminating(p);
        match max_unavailable(&self.spec, self.end - self.start) {
            None => {
                for ord in targets {
                    let Some(pod) = self.replicas.get(&ord).copied() else {
                        return;
                    };
                    if outdated(pod) {
                        self.actions.push(Action::DeletePod {
                            name: podutil::name(pod).to_string(),
                            reason: DeleteReason::Update,
                        });
                        return;
                    }
                    if !healthy(pod, self.min_ready, now) {
                        return;
                    }
                }
            }
            Some(max) => {
                let unavailable = (self.start..self.end)
                    .filter(|o| {
                        self.replicas
                            .get(o)
                            .is_none_or(|p| !healthy(p, self.min_ready, now))
                    })
                    .count() as i32;
                let mut budget = max - unavailable;
                for ord in targets {
                    if budget <= 0 {
                        break;
                    }
                    if let Some(pod) = self.replicas.get(&ord).copied().filter(|p| outdated(p)) {
                        self.actions.push(Action::DeletePod {
                            name: podutil::name(pod).to_string(),
                            reason: DeleteReason::Update,
                        });
                        budget -= 1;
                    }
                }
            }
        }
    }

    fn status(&self) -> StatefulSetStatus {
        let now = self.snap.now;
        let old = self.snap.set.status.clone().unwrap_or_default();
        let mut st = StatefulSetStatus {
            observed_generation: meta(self.snap.set).generation,
            current_revision: self.history.current.name.clone(),
            update_revision: self.history.update.name.clone(),
            collision_count: (self.history.collision_count != 0 || old.collision_count.is_some())
                .then_some(self.history.collision_count),
            conditions: old.conditions,
            ..Default::default()
        };
        let all = self
            .replicas
            .values()
            .copied()
            .chain(self.condemned.iter().map(|(_, p)| *p));
        for p in all {
            st.replicas += 1;
            if running_ready(p) {
                st.ready_replicas += 1;
                st.available_replicas += i32::from(available(p, self.min_ready, now));
            }
            if !podutil::is_terminating(p) {
                let rev = pod_revision(p);
                st.current_replicas += i32::from(rev == self.history.current.name);
                st.updated_replicas += i32::from(rev == self.history.update.name);
            }
        }
        if rolling(&self.spec)
            && st.updated_replicas == st.replicas
            && st.ready_replicas == st.replicas
        {
            // The rollout is complete: the update revision becomes current.
            st.current_replicas = st.updated_replicas;
            st.current_revision = st.update_revision.clone();
        }
        st
    }

    /// The soonest a Ready pod becomes available (minReadySeconds).
    fn next_availability(&self) -> Option<Duration> {
        if self.min_ready <= 0 {
            return None;
        }
        self.replicas
            .values()
            .filter(|p| running_ready(p) && !available(p, self.min_ready, self.snap.now))
            .filter_map(|p| podutil::ready_since(p))
            .map(|since| {
                (since + Duration::from_secs(self.min_ready as u64))
                    .duration_since(self.snap.now)
                    .unwrap_or_default()
                    .max(Duration::from_millis(1))
            })
            .min()
    }
}

/// The next steps for one StatefulSet.
#[must_use = "the actions are what the round must carry out"]
pub fn decide(snap: Snapshot<'_>) -> Vec<Action> {
    let set = snap.set;
    let m = meta(set);
    let spec = set.spec.clone().unwrap_or_default();
    let count = spec.replicas.unwrap_or(1).max(0);
    let start = spec.ordinals.as_ref().map(|o| o.start).unwrap_or(0).max(0);
    let history = history::resolve(&history_owner(set), snap.revisions);
    let mut plan = Plan {
        snap,
        set_name: m.name.clone(),
        start,
        end: start.saturating_add(count),
        monotonic: spec.pod_management_policy != "Parallel",
        min_ready: spec.min_ready_seconds,
        history,
        replicas: BTreeMap::new(),
        condemned: Vec::new(),
        taken: snap.pods.iter().map(podutil::name).collect(),
        claims: snap
            .claims
            .iter()
            .filter_map(|c| c.metadata.as_ref().map(|cm| (cm.name.as_str(), c)))
            .collect(),
        actions: Vec::new(),
        spec,
    };
    if let Some(revision) = plan.history.create.clone() {
        plan.actions.push(Action::CreateRevision { revision });
    }
    if let Some((name, revision)) = plan.history.renumber.clone() {
        plan.actions
            .push(Action::RenumberRevision { name, revision });
    }
    for name in plan.history.adopt.clone() {
        plan.actions.push(Action::AdoptRevision { name });
    }
    let deleting = !m.deletion_timestamp.is_empty();

    // The set's pods: those it controls, plus orphans named like replicas it adopts.
    let selector = plan.spec.selector.clone().unwrap_or_default();
    for pod in snap.pods {
        let Some(pm) = pod.metadata.as_ref() else {
            continue;
        };
        let Some(ord) = parse_ordinal(&m.name, &pm.name) else {
            continue;
        };
        let mine = match pm.controller() {
            Some(c) => c.uid == m.uid,
            None if !deleting
                && !podutil::is_terminating(pod)
                && label_selector_matches(&selector, &pm.labels) =>
            {
                plan.actions.push(Action::AdoptPod {
                    name: pm.name.clone(),
                });
                true
            }
            None => false,
        };
        if !mine {
            continue;
        }
        if plan.in_range(ord) {
            plan.replicas.insert(ord, pod);
        } else {
            plan.condemned.push((ord, pod));
        }
    }
    plan.condemned.sort_by_key(|c| std::cmp::Reverse(c.0));

    if !deleting {
        plan.fix_claim_owners();
        let mut flow = Flow::Continue;
        for ord in plan.start..plan.end {
            flow = plan.replica(ord);
            if flow == Flow::Stop {
                break;
            }
        }
        if flow == Flow::Continue {
            for (_, pod) in plan.condemned.clone() {
                flow = plan.condemned(pod);
                if flow == Flow::Stop {
                    break;
                }
            }
        }
        if flow == Flow::Continue && rolling(&plan.spec) {
            plan.rolling_update();
        }
    }

    let status = plan.status();
    let live: BTreeSet<&str> = [
        plan.history.current.name.as_str(),
        plan.history.update.name.as_str(),
    ]
    .into_iter()
    .chain(plan.replicas.values().map(|p| pod_revision(p)))
    .chain(plan.condemned.iter().map(|(_, p)| pod_revision(p)))
    .collect();
    let limit = plan.spec.revision_history_limit.unwrap_or(10);
    let trimmed = history::trim(&history_owner(set), snap.revisions, &live, limit);
    let requeue = plan.next_availability();
    let mut actions = plan.actions;
    if set.status.as_ref() != Some(&status) {
        actions.push(Action::UpdateStatus { status });
    }
    actions.extend(
        trimmed
            .into_iter()
            .map(|name| Action::DeleteRevision { name }),
    );
    if let Some(after) = requeue {
        actions.push(Action::RequeueAfter { after });
    }
    actions
}

#[cfg(test)]
mod tests;
