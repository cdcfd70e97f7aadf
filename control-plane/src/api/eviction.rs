//! Eviction: the gRPC `Evict` and the REST `pods/NAME/eviction` subresource (both call
//! [`evict`]), what `twinset drain` and `kubectl drain` use. An eviction is the graceful
//! delete of the pod ([`crate::deletion::delete_pod`]) under an implicit disruption budget:
//! a pod of an OrderedReady StatefulSet is evicted only while no other pod of that set is
//! Terminating; otherwise it is refused as kube-apiserver refuses a PodDisruptionBudget
//! violation (RESOURCE_EXHAUSTED here, 429 TooManyRequests over REST), and the client
//! retries. Parallel StatefulSets and other pods have no budget.

use super::{namespace_for, status};
use crate::deletion;
use crate::store::{Error as StoreError, Store};
use tonic::Status;
use twinset_proto::v1::{EvictRequest, Object, Pod, StatefulSet};
use twinset_proto::Kind;

/// kube-apiserver's message when an eviction would violate a disruption budget.
pub const BUDGET_REFUSAL: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

/// What the implicit budget says about evicting one pod now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Budget {
    /// The pod may go.
    Allowed,
    /// Another pod of the pod's OrderedReady StatefulSet `set` is Terminating (`terminating`).
    Blocked {
        /// The StatefulSet.
        set: String,
        /// The pod of the set that is still terminating.
        terminating: String,
    },
}

/// The budget decision (pure). `set` is the StatefulSet that controls `pod` (None: no
/// StatefulSet controls it); `set_pods` are the pods of the namespace it controls.
/// As upstream, a pod that is finished, Pending or already Terminating is never held back.
pub fn decide(pod: &Pod, set: Option<&StatefulSet>, set_pods: &[Pod]) -> Budget {
    use crate::podutil::{is_terminating, name, phase};
    if matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || is_terminating(pod) {
        return Budget::Allowed;
    }
    let Some(set) = set else {
        return Budget::Allowed;
    };
    let parallel = set
        .spec
        .as_ref()
        .is_some_and(|s| s.pod_management_policy == "Parallel");
    if parallel {
        return Budget::Allowed;
    }
    let meta = set.metadata.clone().unwrap_or_default();
    let other = set_pods.iter().find(|p| {
        name(p) != name(pod)
            && is_terminating(p)
            && p.metadata
                .as_ref()
                .is_some_and(|m| m.is_controlled_by(&meta.uid))
    });
    match other {
        Some(p) => Budget::Blocked {
            set: meta.name,
            terminating: name(p).to_string(),
        },
        None => Budget::Allowed,
    }
}

/// The StatefulSet that controls `pod` (by its controller reference's name and uid).
fn controlling_set(store: &dyn Store, namespace: &str, pod: &Pod) -> Option<StatefulSet> {
    let owner = pod.metadata.as_ref()?.controller()?;
    if owner.kind != Kind::StatefulSet.as_str() {
        return None;
    }
    store
        .get(Kind::StatefulSet, namespace, &owner.name)
        .and_then(Object::into_stateful_set)
        .filter(|s| s.metadata.as_ref().is_some_and(|m| m.uid == owner.uid))
}

/// Evicts the pod `r` names: NotFound when it does not exist, RESOURCE_EXHAUSTED
/// ([`BUDGET_REFUSAL`]) when the budget holds it back, else the graceful delete (nothing
/// with `dry_run`). `lock` serialises evictions, so two concurrent ones never both pass
/// the same budget. Returns the pod as it now stands.
pub async fn evict(
    store: &dyn Store,
    lock: &tokio::sync::Mutex<()>,
    r: EvictRequest,
) -> Result<Object, Status> {
    if r.name.is_empty() {
        return Err(Status::invalid_argument("resource name may not be empty"));
    }
    if r.grace_period_seconds.is_some_and(|g| g < 0) {
        return Err(Status::invalid_argument(
            "gracePeriodSeconds must be 0 or greater",
        ));
    }
    let ns = namespace_for(Kind::Pod, &r.namespace);
    let _one_at_a_time = lock.lock().await;
    let obj = store
        .get(Kind::Pod, &ns, &r.name)
        .ok_or_else(|| status(StoreError::not_found(Kind::Pod, &r.name)))?;
    let pod = obj.as_pod().cloned().unwrap_or_default();
    let set = controlling_set(store, &ns, &pod);
    let set_pods: Vec<Pod> = match &set {
        Some(_) => store
            .list(Kind::Pod, Some(&ns))
            .0
            .into_iter()
            .filter_map(Object::into_pod)
            .collect(),
        None => Vec::new(),
    };
    if let Budget::Blocked { set, terminating } = decide(&pod, set.as_ref(), &set_pods) {
        tracing::info!(
            pod = %r.name,
            namespace = %ns,
            statefulset = %set,
            terminating = %terminating,
            "eviction refused: the OrderedReady StatefulSet has a pod terminating"
        );
        return Err(Status::resource_exhausted(BUDGET_REFUSAL));
    }
    if r.dry_run {
        return Ok(obj);
    }
    deletion::delete_pod(store, &ns, &r.name, r.grace_period_seconds)
        .await
        .map_err(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{ObjectMeta, OwnerReference, PodStatus, StatefulSetSpec};

    fn set(policy: &str) -> StatefulSet {
        StatefulSet {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                uid: "set-uid".into(),
                ..Default::default()
            }),
            spec: Some(StatefulSetSpec {
                pod_management_policy: policy.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(name: &str, owner_uid: &str, phase: &str, terminating: bool) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                deletion_timestamp: if terminating {
                    "2026-01-01T00:00:00Z".into()
                } else {
                    String::new()
                },
                owner_references: vec![OwnerReference {
                    kind: "StatefulSet".into(),
                    name: "web".into(),
                    uid: owner_uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: phase.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_ordered_ready_set_loses_one_pod_at_a_time() {
        let s = set("");
        let web2 = pod("web-2", "set-uid", "Running", false);
        let calm = [pod("web-0", "set-uid", "Running", false), web2.clone()];
        assert_eq!(decide(&web2, Some(&s), &calm), Budget::Allowed);
        let busy = [pod("web-0", "set-uid", "Running", true), web2.clone()];
        assert_eq!(
            decide(&web2, Some(&s), &busy),
            Budget::Blocked {
                set: "web".into(),
                terminating: "web-0".into()
            }
        );
        // The same with OrderedReady spelled out.
        assert!(matches!(
            decide(&web2, Some(&set("OrderedReady")), &busy),
            Budget::Blocked { .. }
        ));
        // A terminating pod of another owner (same name prefix) does not count.
        let stranger = [pod("web-0", "other-uid", "Running", true)];
        assert_eq!(decide(&web2, Some(&s), &stranger), Budget::Allowed);
    }

    #[tokio::test]
    async fn evict_deletes_gracefully_refuses_over_budget_and_knows_missing_pods() {
        use crate::store::memory::MemoryStore;
        use twinset_proto::v1::{Node, PodSpec};
        let store = MemoryStore::new(100);
        let meta = |name: &str| ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        };
        let mut node = Object::from(Node {
            metadata: Some(ObjectMeta {
                name: "n1".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        node.set_type_meta();
        store.create(node).await.unwrap();
        let set = store
            .create(Object::from(StatefulSet {
                metadata: Some(meta("web")),
                ..Default::default()
            }))
            .await
            .unwrap();
        for name in ["web-0", "web-1"] {
            let mut p = pod(name, &set.meta().uid, "Running", false);
            p.metadata.as_mut().unwrap().namespace = "default".into();
            p.spec = Some(PodSpec {
                node_name: "n1".into(),
                ..Default::default()
            });
            store.create(Object::from(p)).await.unwrap();
        }
        let lock = tokio::sync::Mutex::new(());
        let ask = |name: &str, dry_run: bool| EvictRequest {
            namespace: "default".into(),
            name: name.into(),
            grace_period_seconds: None,
            dry_run,
        };
        let terminating = |name: &str| {
            !store
                .get(Kind::Pod, "default", name)
                .unwrap()
                .meta()
                .deletion_timestamp
                .is_empty()
        };
        evict(&store, &lock, ask("web-1", true)).await.unwrap();
        assert!(!terminating("web-1"), "a dry run changes nothing");
        let gone = evict(&store, &lock, ask("web-1", false)).await.unwrap();
        assert!(!gone.meta().deletion_timestamp.is_empty());
        assert_eq!(gone.meta().deletion_grace_period_seconds, Some(30));
        let e = evict(&store, &lock, ask("web-0", false)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(e.message(), BUDGET_REFUSAL);
        assert!(!terminating("web-0"));
        // Evicting the pod that is already terminating again is allowed.
        evict(&store, &lock, ask("web-1", false)).await.unwrap();
        let e = evict(&store, &lock, ask("web-9", false)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert_eq!(e.message(), "pods \"web-9\" not found");
    }

    #[test]
    fn parallel_sets_other_pods_and_pods_already_down_have_no_budget() {
        let busy = [pod("web-0", "set-uid", "Running", true)];
        let web2 = pod("web-2", "set-uid", "Running", false);
        assert_eq!(
            decide(&web2, Some(&set("Parallel")), &busy),
            Budget::Allowed
        );
        assert_eq!(decide(&web2, None, &busy), Budget::Allowed);
        for (phase, terminating) in [
            ("Succeeded", false),
            ("Failed", false),
            ("Pending", false),
            ("Running", true),
        ] {
            let p = pod("web-2", "set-uid", phase, terminating);
            assert_eq!(
                decide(&p, Some(&set("")), &busy),
                Budget::Allowed,
                "{phase}"
            );
        }
    }
}
