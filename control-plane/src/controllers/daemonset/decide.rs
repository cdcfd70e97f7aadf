//! The DaemonSet controller's brain: from one DaemonSet, the nodes, and the pods and
//! revisions of its namespace, the next safe steps. Pure: no I/O, no clock, no
//! randomness.
//!
//! A rolling update replaces pods within maxUnavailable (or beside the old ones within
//! maxSurge), counted over the nodes that are Ready. A node that is not Ready (NotReady,
//! or Unknown because its agent is silent) neither uses the budget nor holds the healthy
//! nodes back: its pod is left as it is, the status names the node as waiting
//! ([`twinset_proto::rollout`]), and its pod is updated once it is Ready again.

use crate::controllers::history::{self, History};
use crate::controllers::node_lifecycle::ready_status;
use crate::controllers::placement::{self, Fit};
use crate::controllers::revision::REVISION_HASH_LABEL;
use crate::podutil;
use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;
use twinset_proto::rollout;
use twinset_proto::selector::label_selector_matches;
use twinset_proto::v1::{
    ControllerRevision, DaemonSet, DaemonSetSpec, DaemonSetStatus, IntOrString, LabelSelector,
    Node, ObjectMeta, OwnerReference, Pod, PodSpec, PodStatus, PodTemplateSpec,
    RollingUpdateDaemonSet,
};

/// One step the shell carries out.
#[derive(Clone, Debug, PartialEq)]
#[must_use = "an action the shell drops is never carried out"]
pub enum Action {
    /// Create a daemon pod bound to this node (see [`build_pod`]).
    CreatePod {
        /// The node to bind the pod to.
        node: String,
        /// The template hash of the update revision, for its controller-revision-hash.
        hash: String,
    },
    /// Delete this pod (gracefully when its node is alive).
    DeletePod {
        /// The pod's name.
        name: String,
        /// Why, for the log and the event.
        reason: DeleteReason,
    },
    /// Take over a pod that matches the selector and has no controller.
    AdoptPod {
        /// The pod's name.
        name: String,
    },
    /// Store a new revision of the set's template.
    CreateRevision {
        /// The revision object (boxed: it dwarfs the other actions).
        revision: Box<ControllerRevision>,
    },
    /// Give an older revision the next number (the template went back to it).
    RenumberRevision {
        /// The revision's name.
        name: String,
        /// Its new number.
        revision: i64,
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
    /// Write the DaemonSet's status.
    UpdateStatus {
        /// The new status.
        status: DaemonSetStatus,
    },
}

/// Why a daemon pod is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// Its node no longer exists (or it was never bound).
    NodeGone,
    /// The node no longer fits (selector, affinity, untolerated NoExecute taint).
    NodeUnfit,
    /// The pod failed; a new one replaces it.
    Failed,
    /// Another pod of the set runs on the same node; the oldest stays.
    Duplicate,
    /// Made from an older template (rolling update).
    Outdated,
}

/// Everything decide() looks at.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot<'a> {
    /// The DaemonSet (with uid and generation, as stored).
    pub ds: &'a DaemonSet,
    /// Every node.
    pub nodes: &'a [Node],
    /// Pods of the DaemonSet's namespace (others' included: decide picks its own).
    pub pods: &'a [Pod],
    /// ControllerRevisions of the DaemonSet's namespace.
    pub revisions: &'a [ControllerRevision],
    /// The time, for minReadySeconds.
    pub now: SystemTime,
}

/// The pod spec daemon pods get: the template's, plus the automatic tolerations.
pub fn effective_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = template(ds)
        .and_then(|t| t.spec.clone())
        .unwrap_or_default();
    placement::add_daemon_tolerations(&mut spec);
    spec
}

fn template(ds: &DaemonSet) -> Option<&twinset_proto::v1::PodTemplateSpec> {
    ds.spec.as_ref().and_then(|s| s.template.as_ref())
}

/// The DaemonSet as its revision history sees it (it keeps no current revision).
pub fn history_owner(ds: &DaemonSet) -> history::Owner<'_> {
    static EMPTY_TEMPLATE: std::sync::OnceLock<PodTemplateSpec> = std::sync::OnceLock::new();
    static EMPTY_SELECTOR: std::sync::OnceLock<LabelSelector> = std::sync::OnceLock::new();
    let spec = ds.spec.as_ref();
    history::Owner {
        meta: meta(ds),
        reference: owner_reference(ds),
        template: template(ds)
            .unwrap_or_else(|| EMPTY_TEMPLATE.get_or_init(PodTemplateSpec::default)),
        selector: spec
            .and_then(|s| s.selector.as_ref())
            .unwrap_or_else(|| EMPTY_SELECTOR.get_or_init(LabelSelector::default)),
        current_revision: "",
        collision_count: ds
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0),
        // As Kubernetes: a DaemonSet's revisions carry the hash under the pods' label.
        hash_label: REVISION_HASH_LABEL,
    }
}

fn meta(ds: &DaemonSet) -> &ObjectMeta {
    static EMPTY: std::sync::OnceLock<ObjectMeta> = std::sync::OnceLock::new();
    ds.metadata
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(ObjectMeta::default))
}

/// The owner reference daemon pods carry.
pub fn owner_reference(ds: &DaemonSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: meta(ds).name.clone(),
        uid: meta(ds).uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The pod to create on `node`, named `<ds>-<suffix>`, labelled with the update
/// revision's template `hash`.
pub fn build_pod(ds: &DaemonSet, hash: &str, node: &str, suffix: &str) -> Pod {
    let m = meta(ds);
    let t = template(ds);
    let tmeta = t.and_then(|t| t.metadata.as_ref());
    let mut labels = tmeta.map(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.to_string());
    // Like Kubernetes' generateName: the base is cut so the name stays a valid label.
    let base: String = m.name.chars().take(57).collect();
    let mut spec = effective_spec(ds);
    spec.node_name = node.to_string();
    Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: Some(ObjectMeta {
            name: format!("{base}-{suffix}"),
            generate_name: format!("{base}-"),
            namespace: m.namespace.clone(),
            labels,
            annotations: tmeta.map(|m| m.annotations.clone()).unwrap_or_default(),
            owner_references: vec![owner_reference(ds)],
            ..Default::default()
        }),
        spec: Some(spec),
        status: Some(PodStatus {
            phase: "Pending".into(),
            ..Default::default()
        }),
    }
}

/// The next steps for one DaemonSet.
#[must_use = "the actions are what the round must carry out"]
pub fn decide(snap: Snapshot<'_>) -> Vec<Action> {
    let ds = snap.ds;
    let uid = meta(ds).uid.as_str();
    let spec = ds.spec.clone().unwrap_or_default();
    let selector = spec.selector.clone().unwrap_or_default();
    let history = history::resolve(&history_owner(ds), snap.revisions);
    let hash = history.update.hash(&meta(ds).name).to_string();
    let pod_spec = effective_spec(ds);
    let unreachable_spec = placement::tolerating_silence(&pod_spec);
    let mut actions = revision_writes(&history);
    let create = |node: &str| Action::CreatePod {
        node: node.to_string(),
        hash: hash.clone(),
    };

    // The set's pods: those it controls, plus orphans it adopts.
    let mut mine: Vec<&Pod> = Vec::new();
    for pod in snap.pods {
        let Some(pm) = pod.metadata.as_ref() else {
            continue;
        };
        match pm.controller() {
            Some(c) if c.uid == uid => mine.push(pod),
            Some(_) => {}
            None => {
                if !podutil::is_terminating(pod) && label_selector_matches(&selector, &pm.labels) {
                    actions.push(Action::AdoptPod {
                        name: pm.name.clone(),
                    });
                    mine.push(pod);
                }
            }
        }
    }

    let node_names: BTreeSet<&str> = snap
        .nodes
        .iter()
        .filter_map(|n| n.metadata.as_ref())
        .map(|m| m.name.as_str())
        .collect();
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for pod in mine {
        let node = podutil::node_name(pod);
        if node_names.contains(node) {
            by_node.entry(node).or_default().push(pod);
        } else {
            // Bound to a node that is gone, or never bound: daemon pods are always bound.
            actions.push(Action::DeletePod {
                name: podutil::name(pod).to_string(),
                reason: DeleteReason::NodeGone,
            });
        }
    }

    let old_status = ds.status.clone().unwrap_or_default();
    let mut status = DaemonSetStatus {
        observed_generation: meta(ds).generation,
        collision_count: (history.collision_count != 0 || old_status.collision_count.is_some())
            .then_some(history.collision_count),
        conditions: old_status
            .conditions
            .iter()
            .filter(|c| c.r#type != rollout::NODES_WAITING)
            .cloned()
            .collect(),
        ..Default::default()
    };
    let rolling = rolling_update(&spec);
    // maxSurge > 0: new pods start next to the old ones (Kubernetes' AllowsSurge).
    let surge = rolling && max_surge(&spec, 1) > 0;
    // Nodes whose available old pod waits for a surge slot, and nodes surging now.
    let mut surge_candidates: Vec<String> = Vec::new();
    let mut surging = 0;
    // Nodes whose single kept pod is outdated, split by availability (rolling update input).
    let mut outdated_unavailable = Vec::new();
    let mut outdated_available = Vec::new();
    let mut unavailable_now = 0;
    // Nodes that are not Ready and whose pod is not updated and available yet.
    let mut waiting: Vec<String> = Vec::new();
    // Whether some Ready node still lacks an updated, available pod.
    let mut reachable_pending = false;
    // Revisions the pods use (kept whatever the history limit).
    let mut live: BTreeSet<String> = BTreeSet::from([history.update.name.clone()]);

    for node in snap.nodes {
        let Some(node_name) = node.metadata.as_ref().map(|m| m.name.as_str()) else {
            continue;
        };
        // An unreachable node's pods cannot be stopped or reported on: the rollout goes
        // on without it. A node that runs a pod of the set stays one the set runs on: the
        // NoSchedule taints its silence brings (not-ready, unreachable) do not take it
        // out of the desired count. (A node that never was Ready, just joined, has no
        // pod of the set and gets none until it registers.)
        let reachable = ready_status(node) == "True";
        let mut pods = by_node.remove(node_name).unwrap_or_default();
        let fit: Fit = if reachable || pods.is_empty() {
            placement::fit(&pod_spec, node)
        } else {
            placement::fit(&unreachable_spec, node)
        };
        for p in &pods {
            if let Some(h) = pod_hash(p) {
                live.insert(format!("{}-{h}", meta(ds).name));
            }
        }
        pods.sort_by(|a, b| podutil::by_age(a, b));
        let scheduled = !pods.is_empty();
        let terminating = pods.iter().any(|p| podutil::is_terminating(p));
        let mut live: Vec<&Pod> = Vec::new();
        let mut failed = false;
        for p in pods.iter().filter(|p| !podutil::is_terminating(p)) {
            if podutil::phase(p) == "Failed" && fit.may_continue {
                failed = true;
                actions.push(Action::DeletePod {
                    name: podutil::name(p).to_string(),
                    reason: DeleteReason::Failed,
                });
            } else {
                live.push(p);
            }
        }
        if !fit.may_continue {
            for p in &live {
                actions.push(Action::DeletePod {
                    name: podutil::name(p).to_string(),
                    reason: DeleteReason::NodeUnfit,
                });
            }
            live.clear();
        }
        // At most one pod per node; while surging, one old and one new (see `pair`).
        let (pair, extras) = if surge {
            pair(&live, &hash)
        } else {
            (Pair::default(), live.iter().skip(1).copied().collect())
        };
        for extra in extras {
            actions.push(Action::DeletePod {
                name: podutil::name(extra).to_string(),
                reason: DeleteReason::Duplicate,
            });
        }
        if let (Some(old), Some(new)) = (pair.old, pair.new) {
            let new_available = podutil::is_available(new, spec.min_ready_seconds, snap.now);
            if !new_available && reachable {
                surging += 1;
            }
            // The old pod goes once the new one is available, or at once when it is not
            // Ready itself.
            if new_available || !podutil::is_ready(old) {
                actions.push(Action::DeletePod {
                    name: podutil::name(old).to_string(),
                    reason: DeleteReason::Outdated,
                });
            }
        }
        // The status speaks of the oldest pod the node keeps, as Kubernetes' does.
        let kept = if surge {
            pair.oldest()
        } else {
            live.first().copied()
        };

        if fit.should_run {
            status.desired_number_scheduled += 1;
            if scheduled {
                status.current_number_scheduled += 1;
            }
            match kept {
                // Wait until the old or failed pod is gone: at most one daemon pod per node.
                None if !terminating && !failed => {
                    if reachable {
                        // A node without its pod is unavailable (the budget counts it).
                        unavailable_now += 1;
                        reachable_pending = true;
                    } else {
                        waiting.push(node_name.to_string());
                    }
                    actions.push(create(node_name))
                }
                None if !reachable => waiting.push(node_name.to_string()),
                None => {
                    unavailable_now += 1;
                    reachable_pending = true;
                }
                Some(p) => {
                    let ready = podutil::is_ready(p);
                    let available = podutil::is_available(p, spec.min_ready_seconds, snap.now);
                    let updated = pod_hash(p) == Some(hash.as_str());
                    status.number_ready += i32::from(ready);
                    status.number_available += i32::from(available);
                    status.updated_number_scheduled += i32::from(updated);
                    if !reachable {
                        if !(updated && available) {
                            waiting.push(node_name.to_string());
                        }
                    } else {
                        reachable_pending |= !(updated && available);
                        if !available {
                            unavailable_now += 1;
                        }
                    }
                    if !updated && !surge && reachable {
                        let name = podutil::name(p).to_string();
                        if available {
                            outdated_available.push(name);
                        } else {
                            outdated_unavailable.push(name);
                        }
                    }
                }
            }
            if let (true, true, Some(old), None) = (surge, reachable, pair.old, pair.new) {
                if podutil::is_available(old, spec.min_ready_seconds, snap.now) {
                    surge_candidates.push(node_name.to_string());
                } else {
                    // Not serving anyway: its replacement starts at once.
                    actions.push(create(node_name));
                }
            }
        } else if scheduled {
            status.number_misscheduled += 1;
        }
    }
    status.number_unavailable = status.desired_number_scheduled - status.number_available;

    if surge {
        // New pods on nodes whose old pod still serves, while fewer than maxSurge nodes
        // wait for their new pod to become available.
        let slots = max_surge(&spec, status.desired_number_scheduled) - surging;
        for node in surge_candidates
            .into_iter()
            .take(usize::try_from(slots).unwrap_or(0))
        {
            actions.push(create(&node));
        }
    } else if rolling {
        // Old pods that are not available anyway go at once; available ones only while the
        // number of unavailable nodes stays under maxUnavailable (maxSurge 0).
        for name in outdated_unavailable {
            actions.push(Action::DeletePod {
                name,
                reason: DeleteReason::Outdated,
            });
        }
        let budget = max_unavailable(&spec, status.desired_number_scheduled);
        for name in outdated_available {
            if unavailable_now >= budget {
                break;
            }
            unavailable_now += 1;
            actions.push(Action::DeletePod {
                name,
                reason: DeleteReason::Outdated,
            });
        }
    }

    if rolling && !waiting.is_empty() {
        let previous = old_status
            .conditions
            .iter()
            .find(|c| c.r#type == rollout::NODES_WAITING);
        let now = twinset_proto::time::format(snap.now);
        status.conditions.push(rollout::waiting_condition(
            &waiting,
            !reachable_pending,
            previous,
            &now,
        ));
    }

    if ds.status.as_ref() != Some(&status) {
        actions.push(Action::UpdateStatus { status });
    }
    let live: BTreeSet<&str> = live.iter().map(String::as_str).collect();
    let limit = spec.revision_history_limit.unwrap_or(10);
    actions.extend(
        history::trim(&history_owner(ds), snap.revisions, &live, limit)
            .into_iter()
            .map(|name| Action::DeleteRevision { name }),
    );
    actions
}

/// The revision writes `history` asks for, which go before any pod is made from it.
fn revision_writes(history: &History) -> Vec<Action> {
    let mut out = Vec::new();
    if let Some(revision) = history.create.clone() {
        out.push(Action::CreateRevision {
            revision: Box::new(revision),
        });
    }
    if let Some((name, revision)) = history.renumber.clone() {
        out.push(Action::RenumberRevision { name, revision });
    }
    out.extend(
        history
            .adopt
            .iter()
            .map(|name| Action::AdoptRevision { name: name.clone() }),
    );
    out
}

fn pod_hash(p: &Pod) -> Option<&str> {
    p.metadata
        .as_ref()
        .and_then(|m| m.labels.get(REVISION_HASH_LABEL))
        .map(String::as_str)
}

fn rolling_update(spec: &DaemonSetSpec) -> bool {
    spec.update_strategy
        .as_ref()
        .is_none_or(|s| s.r#type.is_empty() || s.r#type == "RollingUpdate")
}

/// maxSurge resolved against the desired count (percentages round up); 0 when unset or
/// not a rolling update.
fn max_surge(spec: &DaemonSetSpec, desired: i32) -> i32 {
    if !rolling_update(spec) {
        return 0;
    }
    rolling_value(spec, |r| r.max_surge.as_ref(), desired)
        .unwrap_or(0)
        .max(0)
}

/// One IntOrString of the rolling update, resolved against the desired count as
/// Kubernetes does (percentages round up); `None` when unset.
fn rolling_value(
    spec: &DaemonSetSpec,
    field: fn(&RollingUpdateDaemonSet) -> Option<&IntOrString>,
    desired: i32,
) -> Option<i32> {
    spec.update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(field)
        .and_then(|m| m.scaled(desired, true).ok())
}

/// A node's pods while surging: the oldest outdated one and the oldest current one.
#[derive(Clone, Copy, Default)]
struct Pair<'a> {
    old: Option<&'a Pod>,
    new: Option<&'a Pod>,
}

impl<'a> Pair<'a> {
    /// The older of the two.
    fn oldest(self) -> Option<&'a Pod> {
        match (self.old, self.new) {
            (Some(old), Some(new)) if podutil::by_age(new, old).is_lt() => Some(new),
            (old, new) => old.or(new),
        }
    }
}

/// Splits a node's live pods (oldest first) into the [`Pair`] it keeps and the rest,
/// which are duplicates. An old pod and a new one may run side by side only while the
/// old one is Ready (Kubernetes' podsShouldBeOnNode with surge).
fn pair<'a>(live: &[&'a Pod], hash: &str) -> (Pair<'a>, Vec<&'a Pod>) {
    let mut kept = Pair::default();
    let mut extras = Vec::new();
    for &p in live {
        let slot = if pod_hash(p) == Some(hash) {
            &mut kept.new
        } else {
            &mut kept.old
        };
        if slot.is_none() {
            *slot = Some(p);
        } else {
            extras.push(p);
        }
    }
    (kept, extras)
}

/// maxUnavailable resolved against the desired count (percentages round up), at least 1.
fn max_unavailable(spec: &DaemonSetSpec, desired: i32) -> i32 {
    rolling_value(spec, |r| r.max_unavailable.as_ref(), desired)
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests;
