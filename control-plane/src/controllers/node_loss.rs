//! What becomes of the pods of a node that stopped posting status.
//!
//! - Once the node is Unknown, its pods are not Ready (Kubernetes' node lifecycle
//!   controller does the same): the Ready condition turns False with reason
//!   `NodeNotReady`, so the cluster DNS stops answering with them and the sets' ready
//!   counts drop. Its agent reports the truth again once it is back.
//! - A replica of a StatefulSet annotated `twinset.io/on-node-lost: Replace` whose node
//!   has been silent for longer than `--replace-after` is replaced: its claims are
//!   unbound (the node is remembered in the claim's `twinset.io/lost-on`, so the claim is
//!   bound elsewhere, to a new empty folder) and the pod object is removed, so the
//!   StatefulSet controller recreates it and the scheduler places it on another node.
//!   Only a pod whose agent said it fences it (the `twinset.io/NodeLossFence` pod
//!   condition) on a node that fences sooner than `--replace-after` (its
//!   `twinset.io/fence-within-ms` annotation) is replaced: by then its processes are gone,
//!   so at most one pod per identity runs.
//!
//! The decisions are pure ([`not_ready`], [`replacement`]); [`tend`] does the writes.

use crate::events::{self, Source};
use crate::scheduler::decide::{pod_claims, selected_node, SELECTED_NODE_ANNOTATION};
use crate::store::{update_with_retry, Change, Error as StoreError, Key, Store};
use std::time::Duration;
use twinset_proto::fencing::{self, Policy};
use twinset_proto::v1::{Node, Object, Pod, PodCondition, StatefulSet};
use twinset_proto::Kind;

/// The reason of a pod's Ready=False while its node is not posting status.
pub const NOT_READY_REASON: &str = "NodeNotReady";

const COMPONENT: &str = "node-controller";

/// Turns the pod's Ready condition False (reason [`NOT_READY_REASON`]) when it is True;
/// returns whether it changed anything.
pub fn not_ready(pod: &mut Pod, node: &str, now: &str) -> bool {
    let Some(status) = pod.status.as_mut() else {
        return false;
    };
    let Some(ready) = status
        .conditions
        .iter_mut()
        .find(|c| c.r#type == "Ready" && c.status == "True")
    else {
        return false;
    };
    *ready = PodCondition {
        r#type: "Ready".into(),
        status: "False".into(),
        reason: NOT_READY_REASON.into(),
        message: format!("node {node:?} stopped posting status"),
        last_transition_time: now.into(),
        ..Default::default()
    };
    true
}

/// Why a pod on a lost node is kept rather than replaced; `None` from [`replacement`]
/// means replace it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Not silent long enough yet.
    NotYet,
    /// Not a replica of a StatefulSet (DaemonSet pods and others stay, as in Kubernetes).
    NotAReplica,
    /// Its set's policy (or the pod's copy of it) is Wait.
    Wait,
    /// Its agent never said it fences this pod.
    NotFenced,
    /// The node fences later than the control plane would replace (or never said when).
    FencesTooLate(Option<Duration>),
}

/// Whether pod `pod` on `node`, silent for `silent_for`, is replaced now; `set` is the
/// StatefulSet that controls it (if it still exists).
pub fn replacement(
    pod: &Pod,
    set: Option<&StatefulSet>,
    node: &Node,
    silent_for: Duration,
    replace_after: Duration,
) -> Option<Keep> {
    if silent_for <= replace_after {
        return Some(Keep::NotYet);
    }
    let Some(set) = set else {
        return Some(Keep::NotAReplica);
    };
    let controller_uid = pod
        .metadata
        .as_ref()
        .and_then(|m| m.controller())
        .filter(|c| c.kind == "StatefulSet")
        .map(|c| c.uid.as_str());
    let set_meta = set.metadata.clone().unwrap_or_default();
    if controller_uid != Some(set_meta.uid.as_str()) {
        return Some(Keep::NotAReplica);
    }
    if Policy::of(&set_meta.annotations) != Policy::Replace
        || fencing::pod_policy(pod) != Policy::Replace
    {
        return Some(Keep::Wait);
    }
    if !fencing::fence_armed(pod) {
        return Some(Keep::NotFenced);
    }
    let within = node
        .metadata
        .as_ref()
        .and_then(|m| fencing::fence_within(&m.annotations));
    match within {
        Some(w) if w < replace_after => None,
        other => Some(Keep::FencesTooLate(other)),
    }
}

/// The warning a node deserves at registration when it fences later than the control
/// plane replaces (`replace_after`): its `Replace` replicas would then never be replaced
/// when it is lost. None when it fences in time or says nothing (no watchdog: its
/// replicas simply wait, as `Wait` ones do).
pub fn fence_warning(node: &Node, replace_after: Duration) -> Option<String> {
    let m = node.metadata.as_ref()?;
    let within = fencing::fence_within(&m.annotations)?;
    (within >= replace_after).then(|| {
        format!(
            "node {} fences its pods within {} of its last acknowledged heartbeat, not sooner \
             than the control plane's replace-after ({}): its on-node-lost: Replace replicas \
             will wait for it instead of being replaced; start the agent with a smaller \
             --fence-after/--fence-grace or the control plane with a larger --replace-after",
            m.name,
            fencing::short_duration(within),
            fencing::short_duration(replace_after),
        )
    })
}

/// Writes `policy` into a replica's annotations: Replace as the annotation, Wait as its
/// absence (the default).
pub fn set_pod_policy(
    annotations: &mut std::collections::BTreeMap<String, String>,
    policy: Policy,
) {
    match policy {
        Policy::Replace => {
            annotations.insert(
                fencing::ON_NODE_LOST_ANNOTATION.into(),
                policy.as_str().into(),
            );
        }
        Policy::Wait => {
            annotations.remove(fencing::ON_NODE_LOST_ANNOTATION);
        }
    }
}

/// The set's policy when replica `pod` carries another one (its annotation is brought
/// in step, and its fence condition dropped until its agent arms it again).
pub fn policy_drift(set: &StatefulSet, pod: &Pod) -> Option<Policy> {
    let want = set
        .metadata
        .as_ref()
        .map(|m| Policy::of(&m.annotations))
        .unwrap_or_default();
    (fencing::pod_policy(pod) != want).then_some(want)
}

/// `pod` with `policy` written and no fence condition (pure part of the drift fix).
pub fn apply_policy(pod: &mut Pod, policy: Policy) {
    set_pod_policy(
        &mut pod
            .metadata
            .get_or_insert_with(Default::default)
            .annotations,
        policy,
    );
    if let Some(st) = pod.status.as_mut() {
        st.conditions
            .retain(|c| c.r#type != fencing::FENCE_CONDITION);
    }
}

/// Timings of [`tend`].
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// A node silent longer than this is Unknown and its pods not Ready.
    pub grace: Duration,
    /// A node silent longer than this has its fenced `Replace` replicas replaced.
    pub replace_after: Duration,
}

/// Acts on the pods of `node` (silent for `silent_for`, already marked Unknown): not
/// Ready, and replaced when [`replacement`] says so.
pub async fn tend(store: &dyn Store, node: &Node, silent_for: Duration, timing: Timing) {
    let name = node
        .metadata
        .as_ref()
        .map(|m| m.name.as_str())
        .unwrap_or("");
    if name.is_empty() || silent_for <= timing.grace {
        return;
    }
    // Only a Replace replica past replace-after can be replaced ([`replacement`]).
    let replaceable =
        |p: &Pod| silent_for > timing.replace_after && fencing::pod_policy(p) == Policy::Replace;
    // Tested in place: only the pods of this node with something left to do are copied
    // (none, once they are not Ready and none can be replaced), at every look.
    let pods = store.list_where(Kind::Pod, None, &|o| {
        o.as_pod().is_some_and(|p| {
            crate::podutil::node_name(p) == name && (crate::podutil::is_ready(p) || replaceable(p))
        })
    });
    for obj in pods {
        let Some(pod) = obj.as_pod() else { continue };
        if crate::podutil::is_ready(pod) {
            mark_not_ready(store, &obj, name).await;
        }
        if !replaceable(pod) {
            continue;
        }
        let set = controlling_set(store, &obj);
        match replacement(pod, set.as_ref(), node, silent_for, timing.replace_after) {
            None => replace(store, &obj, set.as_ref(), name, silent_for).await,
            Some(Keep::FencesTooLate(within)) => tracing::debug!(
                pod = obj.name(), node = name, ?within, replace_after = ?timing.replace_after,
                "not replacing: the node does not fence before replace-after"
            ),
            Some(_) => {}
        }
    }
}

fn controlling_set(store: &dyn Store, pod: &Object) -> Option<StatefulSet> {
    let c = pod.meta().controller()?;
    if c.kind != "StatefulSet" {
        return None;
    }
    store
        .get(Kind::StatefulSet, pod.namespace(), &c.name)
        .and_then(Object::into_stateful_set)
}

async fn mark_not_ready(store: &dyn Store, obj: &Object, node: &str) {
    let uid = obj.meta().uid.clone();
    let written = update_with_retry(store, &Key::of(obj), |o| {
        if o.meta().uid != uid {
            return Ok(Change::Keep);
        }
        let Some(p) = o.as_pod_mut() else {
            return Ok(Change::Keep);
        };
        Ok(if not_ready(p, node, &twinset_proto::time::now()) {
            Change::Write
        } else {
            Change::Keep
        })
    })
    .await;
    match written {
        Ok(outcome) if outcome.written() => {
            tracing::info!(
                pod = obj.name(),
                namespace = obj.namespace(),
                node,
                "pod not ready: its node stopped posting status"
            );
            events::record(
                store,
                obj,
                "Warning",
                NOT_READY_REASON,
                "Node is not ready",
                &Source::component(COMPONENT),
            )
            .await;
        }
        Ok(_) | Err(StoreError::NotFound { .. }) | Err(StoreError::Conflict { .. }) => {}
        Err(e) => tracing::warn!(pod = obj.name(), error = %e, "cannot mark pod not ready"),
    }
}

/// Unbinds the pod's claims from `node` (remembering it in `lost-on`), then removes the
/// pod (the same uid only), so its controller recreates it elsewhere.
async fn replace(
    store: &dyn Store,
    obj: &Object,
    set: Option<&StatefulSet>,
    node: &str,
    silent_for: Duration,
) {
    let Some(pod) = obj.as_pod() else { return };
    let ns = obj.namespace().to_string();
    let mut moved = Vec::new();
    for claim in pod_claims(pod) {
        match unbind_claim(store, &ns, claim, node).await {
            Ok(true) => moved.push(claim.to_string()),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(claim, node, error = %e, "cannot unbind claim; pod replaced later");
                return;
            }
        }
    }
    let uid = obj.meta().uid.clone();
    let deleted = update_with_retry(store, &Key::of(obj), |o| {
        Ok(if o.meta().uid == uid {
            Change::Delete
        } else {
            Change::Keep
        })
    })
    .await;
    match deleted {
        Ok(outcome) if outcome.written() => {}
        Ok(_) | Err(StoreError::NotFound { .. }) => return,
        Err(e) => {
            tracing::warn!(pod = obj.name(), error = %e, "cannot replace pod");
            return;
        }
    }
    let claims = if moved.is_empty() {
        String::new()
    } else {
        format!(
            "; claim {} re-bound to a new empty volume (the old data stays on {node})",
            moved.join(", ")
        )
    };
    let message =
        format!(
        "pod {} on node {node} (silent for {}) deleted to be replaced: its node fences it{claims}",
        obj.name(),
        fencing::short_duration(Duration::from_millis(silent_for.as_millis() as u64 / 100 * 100)),
    );
    tracing::warn!(pod = obj.name(), namespace = %ns, node, "{message}");
    let involved = match set {
        Some(s) => Object::from(s.clone()),
        None => obj.clone(),
    };
    events::record(
        store,
        &involved,
        "Warning",
        "NodeLost",
        &message,
        &Source::component(COMPONENT),
    )
    .await;
}

/// Unbinds claim `ns/name` from `node`: no selected node, no volume, phase Pending, and
/// `node` added to its `lost-on` list. Returns whether it was bound there.
async fn unbind_claim(
    store: &dyn Store,
    ns: &str,
    name: &str,
    node: &str,
) -> Result<bool, StoreError> {
    let key = Key::new(Kind::PersistentVolumeClaim, ns, name);
    let written = update_with_retry(store, &key, |obj| {
        let Some(c) = obj.as_persistent_volume_claim_mut() else {
            return Ok(Change::Keep);
        };
        if selected_node(c) != node {
            return Ok(Change::Keep);
        }
        unbind(c, node);
        Ok(Change::Write)
    })
    .await;
    match written {
        Ok(outcome) => Ok(outcome.written()),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The claim unbound from `node` (pure part of [`unbind_claim`]).
pub fn unbind(c: &mut twinset_proto::v1::PersistentVolumeClaim, node: &str) {
    let m = c.metadata.get_or_insert_with(Default::default);
    m.annotations.remove(SELECTED_NODE_ANNOTATION);
    let mut lost = fencing::lost_on(&m.annotations);
    lost.retain(|n| n != node);
    lost.push(node.to_string());
    fencing::set_lost_on(&mut m.annotations, lost);
    if let Some(spec) = c.spec.as_mut() {
        spec.volume_name.clear();
    }
    let st = c.status.get_or_insert_with(Default::default);
    st.phase = "Pending".into();
    st.capacity.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{
        ObjectMeta, OwnerReference, PersistentVolumeClaim, PersistentVolumeClaimSpec,
        PersistentVolumeClaimStatus, PodStatus,
    };

    fn ready_pod() -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: "Running".into(),
                conditions: vec![
                    PodCondition {
                        r#type: "ContainersReady".into(),
                        status: "True".into(),
                        ..Default::default()
                    },
                    PodCondition {
                        r#type: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: "t0".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_ready_pod_turns_not_ready_once() {
        let mut p = ready_pod();
        assert!(not_ready(&mut p, "n2", "t1"));
        let c = &p.status.as_ref().unwrap().conditions;
        let ready = c.iter().find(|c| c.r#type == "Ready").unwrap();
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_str(),
                ready.last_transition_time.as_str()
            ),
            ("False", NOT_READY_REASON, "t1")
        );
        assert_eq!(ready.message, "node \"n2\" stopped posting status");
        assert_eq!(
            c.iter()
                .find(|c| c.r#type == "ContainersReady")
                .unwrap()
                .status,
            "True"
        );
        assert_eq!(
            p.status.as_ref().unwrap().phase,
            "Running",
            "the phase stays"
        );
        assert!(
            !not_ready(&mut p, "n2", "t2"),
            "already not ready: no write"
        );
        assert!(!not_ready(&mut Pod::default(), "n2", "t1"));
    }

    fn set(policy: Option<&str>) -> StatefulSet {
        let mut m = ObjectMeta {
            name: "db".into(),
            namespace: "ns".into(),
            uid: "set-uid".into(),
            ..Default::default()
        };
        if let Some(p) = policy {
            m.annotations
                .insert(fencing::ON_NODE_LOST_ANNOTATION.into(), p.into());
        }
        StatefulSet {
            metadata: Some(m),
            ..Default::default()
        }
    }

    fn replica(policy: Option<&str>, armed: bool) -> Pod {
        let mut p = ready_pod();
        let mut m = ObjectMeta {
            name: "db-0".into(),
            namespace: "ns".into(),
            owner_references: vec![OwnerReference {
                kind: "StatefulSet".into(),
                name: "db".into(),
                uid: "set-uid".into(),
                controller: Some(true),
                ..Default::default()
            }],
            ..Default::default()
        };
        if let Some(v) = policy {
            m.annotations
                .insert(fencing::ON_NODE_LOST_ANNOTATION.into(), v.into());
        }
        p.metadata = Some(m);
        if armed {
            p.status
                .as_mut()
                .unwrap()
                .conditions
                .push(fencing::armed_condition(Duration::from_secs(5), "t0"));
        }
        p
    }

    fn node(within_ms: Option<&str>) -> Node {
        let mut m = ObjectMeta {
            name: "n2".into(),
            ..Default::default()
        };
        if let Some(w) = within_ms {
            m.annotations
                .insert(fencing::FENCE_WITHIN_ANNOTATION.into(), w.into());
        }
        Node {
            metadata: Some(m),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_that_fences_too_late_is_warned_about_once_it_registers() {
        let after = Duration::from_secs(6);
        assert_eq!(fence_warning(&node(Some("5000")), after), None);
        assert_eq!(fence_warning(&node(None), after), None);
        assert_eq!(fence_warning(&node(Some("not a number")), after), None);
        let w = fence_warning(&node(Some("6000")), after).expect("6 s is not sooner");
        assert!(w.starts_with("node n2 fences its pods within 6s"), "{w}");
        assert!(w.contains("replace-after (6s)"), "{w}");
        assert!(fence_warning(&node(Some("9500")), after).is_some());
    }

    #[test]
    fn only_fenced_replace_replicas_past_the_deadline_are_replaced() {
        let after = Duration::from_secs(6);
        let late = Duration::from_millis(6001);
        let s = set(Some("Replace"));
        let n = node(Some("5000"));
        let p = replica(Some("Replace"), true);
        assert_eq!(replacement(&p, Some(&s), &n, late, after), None);
        assert_eq!(
            replacement(&p, Some(&s), &n, after, after),
            Some(Keep::NotYet),
            "exactly replace-after is not past it"
        );
        assert_eq!(
            replacement(&p, None, &n, late, after),
            Some(Keep::NotAReplica),
            "the set is gone"
        );
        let mut other = s.clone();
        other.metadata.as_mut().unwrap().uid = "other".into();
        assert_eq!(
            replacement(&p, Some(&other), &n, late, after),
            Some(Keep::NotAReplica),
            "a set of the same name that does not own it"
        );
        assert_eq!(
            replacement(&p, Some(&set(None)), &n, late, after),
            Some(Keep::Wait),
            "the default is Wait"
        );
        assert_eq!(
            replacement(&p, Some(&set(Some("Wait"))), &n, late, after),
            Some(Keep::Wait)
        );
        assert_eq!(
            replacement(&replica(Some("Wait"), true), Some(&s), &n, late, after),
            Some(Keep::Wait),
            "the set says Replace but the pod (what its agent was told) says Wait"
        );
        assert_eq!(
            replacement(&replica(Some("Replace"), false), Some(&s), &n, late, after),
            Some(Keep::NotFenced)
        );
        assert_eq!(
            replacement(&p, Some(&s), &node(None), late, after),
            Some(Keep::FencesTooLate(None))
        );
        assert_eq!(
            replacement(&p, Some(&s), &node(Some("6000")), late, after),
            Some(Keep::FencesTooLate(Some(after))),
            "fencing no sooner than replace-after is too late"
        );
    }

    /// `tend` over a store: at the grace a silent node's pods turn not Ready (and no
    /// other node's); past replace-after only its fenced Replace replica is removed,
    /// after its claim is unbound and remembers the node; a Wait pod stays.
    #[tokio::test]
    async fn tend_marks_not_ready_then_replaces_only_the_fenced_replace_replica() {
        use crate::store::memory::MemoryStore;
        use twinset_proto::v1::{PersistentVolumeClaimVolumeSource, PodSpec, Volume};
        let store = MemoryStore::new(100);
        let mut n = Object::from(node(Some("5000")));
        n.set_type_meta();
        let n = store.create(n).await.unwrap().into_node().unwrap();
        let s = store
            .create(Object::from(set(Some("Replace"))))
            .await
            .unwrap();
        let mut claim = PersistentVolumeClaim {
            metadata: Some(ObjectMeta {
                name: "data-db-0".into(),
                namespace: "ns".into(),
                annotations: [(SELECTED_NODE_ANNOTATION.to_string(), "n2".to_string())].into(),
                ..Default::default()
            }),
            spec: Some(PersistentVolumeClaimSpec {
                volume_name: "pvc-1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        claim.status.get_or_insert_with(Default::default).phase = "Bound".into();
        store.create(Object::from(claim)).await.unwrap();
        let on = |mut p: Pod, name: &str, node: &str| {
            let m = p.metadata.as_mut().unwrap();
            m.name = name.into();
            m.namespace = "ns".into();
            for o in &mut m.owner_references {
                o.uid = s.meta().uid.clone();
            }
            p.spec = Some(PodSpec {
                node_name: node.into(),
                volumes: vec![Volume {
                    name: "data".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: format!("data-{name}"),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            });
            Object::from(p)
        };
        let mut waiting = ready_pod();
        waiting.metadata = Some(ObjectMeta::default());
        for p in [
            on(replica(Some("Replace"), true), "db-0", "n2"),
            on(waiting.clone(), "web", "n2"),
            on(waiting, "elsewhere", "n1"),
        ] {
            store.create(p).await.unwrap();
        }
        let ready = |name: &str| {
            let p = store.get(Kind::Pod, "ns", name).and_then(Object::into_pod);
            p.map(|p| crate::podutil::is_ready(&p))
        };
        let timing = Timing {
            grace: Duration::from_secs(2),
            replace_after: Duration::from_secs(6),
        };

        tend(&store, &n, Duration::from_secs(2), timing).await;
        assert_eq!(ready("web"), Some(true), "not past the grace yet");
        tend(&store, &n, Duration::from_secs(4), timing).await;
        assert_eq!(
            (ready("db-0"), ready("web"), ready("elsewhere")),
            (Some(false), Some(false), Some(true))
        );
        tend(&store, &n, Duration::from_secs(6), timing).await;
        assert_eq!(ready("db-0"), Some(false), "replace-after is not past yet");

        tend(&store, &n, Duration::from_millis(6500), timing).await;
        assert_eq!(ready("db-0"), None, "the fenced Replace replica is removed");
        assert_eq!(ready("web"), Some(false), "a Wait pod stays");
        let c = store
            .get(Kind::PersistentVolumeClaim, "ns", "data-db-0")
            .and_then(Object::into_persistent_volume_claim)
            .unwrap();
        assert_eq!(selected_node(&c), "");
        assert_eq!(
            fencing::lost_on(&c.metadata.as_ref().unwrap().annotations),
            vec!["n2"]
        );
        let (events, _) = store.list(Kind::Event, Some("ns"));
        let reasons: Vec<String> = events
            .iter()
            .filter_map(|e| e.as_event().map(|e| e.reason.clone()))
            .collect();
        assert!(reasons.iter().any(|r| r == "NodeLost"), "{reasons:?}");
        assert!(reasons.iter().any(|r| r == NOT_READY_REASON), "{reasons:?}");
    }

    #[test]
    fn an_unbound_claim_remembers_the_lost_node() {
        let mut c = PersistentVolumeClaim {
            metadata: Some(ObjectMeta {
                name: "data-db-0".into(),
                annotations: [
                    (SELECTED_NODE_ANNOTATION.to_string(), "n2".to_string()),
                    (fencing::LOST_ON_ANNOTATION.to_string(), "n2,n1".to_string()),
                ]
                .into(),
                ..Default::default()
            }),
            spec: Some(PersistentVolumeClaimSpec {
                volume_name: "pvc-1".into(),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: "Bound".into(),
                capacity: [("storage".to_string(), "1Gi".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        unbind(&mut c, "n2");
        assert_eq!(selected_node(&c), "");
        let m = c.metadata.as_ref().unwrap();
        assert_eq!(fencing::lost_on(&m.annotations), vec!["n1", "n2"]);
        assert_eq!(c.spec.as_ref().unwrap().volume_name, "");
        assert_eq!(c.status.as_ref().unwrap().phase, "Pending");
        assert!(c.status.as_ref().unwrap().capacity.is_empty());
    }
}
