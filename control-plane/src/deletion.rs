//! Deleting objects the way the API promises: pods gracefully (the agent stops them
//! and then the object goes), owners with their dependents (Background) or without
//! them (Orphan), nodes with the pods bound to them.

use crate::store::{update_with_retry, Change, Error, Key, Result, Store};
use twinset_proto::v1::Object;
use twinset_proto::Kind;

/// The grace period when neither the request nor the pod gives one.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// What happens to the dependents of a deleted owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are deleted too (the default).
    Background,
    /// Dependents stay; their owner references are removed.
    Orphan,
}

/// Deletes a pod. Bound to a node that exists: marks it (deletionTimestamp plus grace
/// period) so its agent stops it and reports back; unbound, on a node that is gone, or
/// with grace 0: removes it at once. Returns the pod as it now stands.
pub async fn delete_pod(
    store: &dyn Store,
    namespace: &str,
    name: &str,
    grace: Option<i64>,
) -> Result<Object> {
    let key = Key::new(Kind::Pod, namespace, name);
    let outcome = update_with_retry(store, &key, |pod: &mut Object| {
        let p = pod.as_pod().cloned().unwrap_or_default();
        let node = p.spec.as_ref().map(|s| s.node_name.as_str()).unwrap_or("");
        let node_alive = !node.is_empty() && store.get(Kind::Node, "", node).is_some();
        if !node_alive || grace == Some(0) {
            return Ok(Change::Delete);
        }
        let pod_grace = p
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds);
        let grace = grace.or(pod_grace).unwrap_or(DEFAULT_GRACE_SECONDS).max(0);
        let m = pod.meta_mut();
        if !m.deletion_timestamp.is_empty() {
            // Already terminating: only a shorter grace period changes anything.
            if m.deletion_grace_period_seconds.is_some_and(|g| g <= grace) {
                return Ok(Change::Keep);
            }
        } else {
            m.deletion_timestamp = twinset_proto::time::now();
        }
        m.deletion_grace_period_seconds = Some(grace);
        Ok(Change::Write)
    })
    .await?;
    Ok(outcome.into_object())
}

/// Objects in `namespace` that `owner_uid` owns (pods, controller revisions, and claims
/// a StatefulSet's retention policy gave it).
pub fn dependents(store: &dyn Store, namespace: &str, owner_uid: &str) -> Vec<Object> {
    [
        Kind::Pod,
        Kind::ControllerRevision,
        Kind::PersistentVolumeClaim,
    ]
    .into_iter()
    .flat_map(|k| store.list(k, Some(namespace)).0)
    .filter(|o| o.meta().is_owned_by(owner_uid))
    .collect()
}

/// Deletes one dependent: pods gracefully, anything else at once. NotFound is success.
pub async fn delete_dependent(store: &dyn Store, dep: &Object) -> Result<()> {
    let res = match dep.kind() {
        Kind::Pod => delete_pod(store, dep.namespace(), dep.name(), None)
            .await
            .map(drop),
        k => store
            .delete(k, dep.namespace(), dep.name(), None)
            .await
            .map(drop),
    };
    match res {
        Err(Error::NotFound { .. }) => Ok(()),
        other => other,
    }
}

/// Removes `owner_uid` from a dependent's owner references (read-modify-write with retries).
pub async fn orphan(store: &dyn Store, dep: &Object, owner_uid: &str) -> Result<()> {
    let res = update_with_retry(store, &Key::of(dep), |cur: &mut Object| {
        if cur.meta().uid != dep.meta().uid || !cur.meta().is_owned_by(owner_uid) {
            return Ok(Change::Keep);
        }
        cur.meta_mut()
            .owner_references
            .retain(|r| r.uid != owner_uid);
        Ok(Change::Write)
    })
    .await;
    match res {
        Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes an owner (a DaemonSet or StatefulSet) with the given propagation.
///
/// Orphan first marks the owner as being deleted (so its controller stops adopting),
/// then strips the owner reference from every dependent, then removes the owner.
/// Background removes the owner, then deletes its dependents (the garbage collector
/// finishes anything missed).
pub async fn delete_owner(
    store: &dyn Store,
    kind: Kind,
    namespace: &str,
    name: &str,
    propagation: Propagation,
) -> Result<Object> {
    let owner = store
        .get(kind, namespace, name)
        .ok_or_else(|| Error::not_found(kind, name))?;
    let uid = owner.meta().uid.clone();
    match propagation {
        Propagation::Background => {
            let gone = store.delete(kind, namespace, name, None).await?;
            for dep in dependents(store, namespace, &uid) {
                if let Err(e) = delete_dependent(store, &dep).await {
                    tracing::warn!(dependent = %dep.describe(), error = %e, "cannot delete dependent; the garbage collector retries");
                }
            }
            Ok(gone)
        }
        Propagation::Orphan => {
            // Mark the owner as being deleted, so that its controller stops adopting; a
            // controller's status write may get in first, so re-read and try again.
            // (Unchanged when someone else marked it first.)
            let _marked = update_with_retry(store, &Key::of(&owner), |cur: &mut Object| {
                let m = cur.meta_mut();
                if !m.deletion_timestamp.is_empty() {
                    return Ok(Change::Keep);
                }
                m.deletion_timestamp = twinset_proto::time::now();
                Ok(Change::Write)
            })
            .await?;
            for dep in dependents(store, namespace, &uid) {
                orphan(store, &dep, &uid).await?;
            }
            store.delete(kind, namespace, name, None).await
        }
    }
}

/// Deletes a node and, at once, every pod bound to it (nothing is left to stop them).
pub async fn delete_node(store: &dyn Store, name: &str) -> Result<Object> {
    let gone = store.delete(Kind::Node, "", name, None).await?;
    let (pods, _) = store.list(Kind::Pod, None);
    for pod in pods {
        let bound = pod
            .as_pod()
            .and_then(|p| p.spec.as_ref())
            .is_some_and(|s| s.node_name == name);
        if bound {
            match store
                .delete(Kind::Pod, pod.namespace(), pod.name(), None)
                .await
            {
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use twinset_proto::v1::{DaemonSet, Node, ObjectMeta, OwnerReference, Pod, PodSpec};

    fn meta(name: &str, ns: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: name.into(),
            namespace: ns.into(),
            ..Default::default()
        })
    }

    async fn node(store: &MemoryStore, name: &str) {
        store
            .create(Object::from(Node {
                metadata: meta(name, ""),
                ..Default::default()
            }))
            .await
            .unwrap();
    }

    async fn pod(store: &MemoryStore, name: &str, node: &str, owner: Option<&Object>) -> Object {
        let mut m = meta(name, "default").unwrap();
        if let Some(o) = owner {
            m.owner_references.push(OwnerReference {
                kind: "DaemonSet".into(),
                name: o.name().into(),
                uid: o.meta().uid.clone(),
                controller: Some(true),
                ..Default::default()
            });
        }
        let spec = PodSpec {
            node_name: node.into(),
            termination_grace_period_seconds: Some(7),
            ..Default::default()
        };
        store
            .create(Object::from(Pod {
                metadata: Some(m),
                spec: Some(spec),
                ..Default::default()
            }))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn pods_on_live_nodes_terminate_gracefully() {
        let store = MemoryStore::new(100);
        node(&store, "n1").await;
        pod(&store, "p", "n1", None).await;
        let marked = delete_pod(&store, "default", "p", None).await.unwrap();
        assert!(!marked.meta().deletion_timestamp.is_empty());
        assert_eq!(marked.meta().deletion_grace_period_seconds, Some(7));
        let again = delete_pod(&store, "default", "p", Some(2)).await.unwrap();
        assert_eq!(
            again.meta().deletion_grace_period_seconds,
            Some(2),
            "a shorter grace wins"
        );
        delete_pod(&store, "default", "p", Some(0)).await.unwrap();
        assert!(
            store.get(Kind::Pod, "default", "p").is_none(),
            "grace 0 removes at once"
        );
    }

    #[tokio::test]
    async fn pods_without_a_live_node_go_at_once() {
        let store = MemoryStore::new(100);
        pod(&store, "unbound", "", None).await;
        pod(&store, "lost", "gone", None).await;
        delete_pod(&store, "default", "unbound", None)
            .await
            .unwrap();
        delete_pod(&store, "default", "lost", None).await.unwrap();
        assert!(store.list(Kind::Pod, None).0.is_empty());
        let err = delete_pod(&store, "default", "nope", None)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "pods \"nope\" not found");
    }

    #[tokio::test]
    async fn owner_deletion_background_and_orphan() {
        let store = MemoryStore::new(100);
        let ds = store
            .create(Object::from(DaemonSet {
                metadata: meta("ds", "default"),
                ..Default::default()
            }))
            .await
            .unwrap();
        pod(&store, "a", "", Some(&ds)).await;
        pod(&store, "b", "", None).await;
        delete_owner(
            &store,
            Kind::DaemonSet,
            "default",
            "ds",
            Propagation::Background,
        )
        .await
        .unwrap();
        let left: Vec<String> = store
            .list(Kind::Pod, None)
            .0
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        assert_eq!(left, vec!["b"]);

        let ds = store
            .create(Object::from(DaemonSet {
                metadata: meta("ds", "default"),
                ..Default::default()
            }))
            .await
            .unwrap();
        pod(&store, "c", "", Some(&ds)).await;
        delete_owner(
            &store,
            Kind::DaemonSet,
            "default",
            "ds",
            Propagation::Orphan,
        )
        .await
        .unwrap();
        let c = store.get(Kind::Pod, "default", "c").unwrap();
        assert!(c.meta().owner_references.is_empty());
        assert!(store.get(Kind::DaemonSet, "default", "ds").is_none());
    }

    #[tokio::test]
    async fn node_deletion_removes_its_pods_at_once() {
        let store = MemoryStore::new(100);
        node(&store, "n1").await;
        node(&store, "n2").await;
        pod(&store, "a", "n1", None).await;
        pod(&store, "b", "n2", None).await;
        delete_node(&store, "n1").await.unwrap();
        let left: Vec<String> = store
            .list(Kind::Pod, None)
            .0
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        assert_eq!(left, vec!["b"]);
    }
}
