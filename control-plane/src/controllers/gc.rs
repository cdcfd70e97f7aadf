//! Garbage collection by owner references: a pod, controller revision or claim whose
//! every owner is gone is deleted (claims carry owners only when a StatefulSet's
//! retention policy says Delete). Orphaned objects carry no owner reference and are left
//! alone. This is the safety net behind `delete`'s Background propagation: dependents
//! it missed, or that a controller created while its owner was being deleted.

use super::{follow, Observed, Queue};
use crate::deletion;
use crate::store::{EventType, Key, Store};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use twinset_proto::v1::Object;
use twinset_proto::Kind;

/// The collector's name in its metrics (kube-controller-manager's).
pub const COMPONENT: &str = "garbage-collector-controller";

/// Kinds whose objects may be dependents.
const DEPENDENT_KINDS: [Kind; 3] = [
    Kind::Pod,
    Kind::ControllerRevision,
    Kind::PersistentVolumeClaim,
];

/// Runs the collector until `token` is cancelled.
pub async fn run(store: Arc<dyn Store>, token: CancellationToken) {
    let queue = Arc::new(Queue::named(COMPONENT));
    let watcher = {
        let (store, queue, token) = (store.clone(), queue.clone(), token.clone());
        tokio::spawn(async move {
            let st = store.clone();
            follow(store, token, move |change| on_change(&*st, &queue, change)).await;
        })
    };
    loop {
        let key = tokio::select! {
            _ = token.cancelled() => break,
            key = queue.next() => key,
        };
        let Some(obj) = store.get(key.kind, &key.namespace, &key.name) else {
            continue;
        };
        let span = tracing::info_span!("collect", object = %key);
        let started = std::time::Instant::now();
        let collected = collect(&*store, &obj).instrument(span).await;
        queue.reconciled(started.elapsed());
        if let Err(e) = collected {
            tracing::warn!(object = %key, error = %e, "garbage collection failed; retrying");
            queue.add_after(key, std::time::Duration::from_secs(1));
        }
    }
    watcher.abort();
}

fn on_change(store: &dyn Store, queue: &Queue, change: Observed) {
    let key = Key::of;
    match change {
        Observed::Resync => {
            for kind in DEPENDENT_KINDS {
                for o in store.list_where(kind, None, &|o| !o.meta().owner_references.is_empty()) {
                    queue.add(key(&o));
                }
            }
        }
        Observed::Event(ev) => {
            let o = &ev.object;
            if ev.r#type == EventType::Deleted {
                // An owner went: look at whatever it owned (tested in place: deleting
                // many pods must not copy every pod of the namespace each time).
                let uid = &o.meta().uid;
                for kind in DEPENDENT_KINDS {
                    for dep in
                        store.list_where(kind, Some(o.namespace()), &|d| d.meta().is_owned_by(uid))
                    {
                        queue.add(key(&dep));
                    }
                }
            } else if DEPENDENT_KINDS.contains(&o.kind()) && !o.meta().owner_references.is_empty() {
                queue.add(key(o));
            }
        }
    }
}

/// True when the owner a reference names still exists with that uid (owners of kinds
/// this cluster does not serve count as alive: they cannot be checked).
fn owner_alive(store: &dyn Store, namespace: &str, r: &twinset_proto::v1::OwnerReference) -> bool {
    let Some(kind) = Kind::from_kind_name(&r.kind) else {
        return true;
    };
    let ns = if kind.namespaced() { namespace } else { "" };
    store
        .get(kind, ns, &r.name)
        .is_some_and(|o| o.meta().uid == r.uid)
}

/// Deletes `obj` when every one of its owners is gone.
pub async fn collect(store: &dyn Store, obj: &Object) -> crate::store::Result<()> {
    let m = obj.meta();
    if m.owner_references.is_empty() || !m.deletion_timestamp.is_empty() {
        return Ok(());
    }
    if m.owner_references
        .iter()
        .any(|r| owner_alive(store, obj.namespace(), r))
    {
        return Ok(());
    }
    tracing::info!(object = %obj.describe(), "deleting: its owner is gone");
    deletion::delete_dependent(store, obj).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use twinset_proto::v1::{DaemonSet, ObjectMeta, OwnerReference, Pod};

    #[tokio::test]
    async fn deletes_only_pods_whose_owner_is_gone() {
        let store = MemoryStore::new(100);
        let ds = store
            .create(Object::from(DaemonSet {
                metadata: Some(ObjectMeta {
                    name: "ds".into(),
                    namespace: "default".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }))
            .await
            .unwrap();
        let owned = |name: &str, uid: &str| {
            Object::from(Pod {
                metadata: Some(ObjectMeta {
                    name: name.into(),
                    namespace: "default".into(),
                    owner_references: vec![OwnerReference {
                        kind: "DaemonSet".into(),
                        name: "ds".into(),
                        uid: uid.into(),
                        controller: Some(true),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        let live = store.create(owned("live", &ds.meta().uid)).await.unwrap();
        let stale = store.create(owned("stale", "old-uid")).await.unwrap();
        let orphan = store
            .create(Object::from(Pod {
                metadata: Some(ObjectMeta {
                    name: "orphan".into(),
                    namespace: "default".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }))
            .await
            .unwrap();
        for o in [&live, &stale, &orphan] {
            collect(&store, o).await.unwrap();
        }
        let left: Vec<String> = store
            .list(Kind::Pod, None)
            .0
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        assert_eq!(left, vec!["live", "orphan"]);
    }
}
