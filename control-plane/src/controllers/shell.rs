//! The one controller shell the workload controllers (DaemonSet, StatefulSet) share:
//! it follows the store and queues the set a change concerns (the set itself, a pod it
//! owns, an orphan pod it may adopt, whatever else the [`Workload`] names), runs the work
//! loop, and does the reconcile prologue (gone or being deleted: nothing to do), adoption,
//! events and the status write the same way for both. What differs (the snapshot, the
//! pure `decide`, carrying out its actions) is the [`Workload`]'s.

use super::{follow, work, Observed, Queue, Requeue};
use crate::events;
use crate::store::{
    update_with_retry, Change, Error as StoreError, EventType, Key, Store, WatchEvent,
};
use futures::future::BoxFuture;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use twinset_proto::v1::{ControllerRevision, Object, OwnerReference};
use twinset_proto::Kind;

/// What a workload controller adds to the shell.
pub trait Workload: Send + Sync + Sized + 'static {
    /// The kind it controls.
    const KIND: Kind;
    /// The name its events show under "From".
    const COMPONENT: &'static str;
    /// The typed object (DaemonSet, StatefulSet).
    type Set: Send + Sync;

    /// The typed object inside a stored one.
    fn typed(obj: &Object) -> Option<Self::Set>;

    /// Changes to other kinds than the set's and pods (nodes, claims, revisions): queue
    /// what they concern through `shell`. Called in revision order.
    fn on_other(&self, shell: &Shell<Self>, ev: &WatchEvent);

    /// A resync is about to queue every set (history ran out, or the first start).
    fn on_resync(&self, _shell: &Shell<Self>) {}

    /// One round for a set that exists and is not being deleted.
    fn reconcile<'a>(
        &'a self,
        shell: &'a Shell<Self>,
        obj: &'a Object,
        set: Self::Set,
    ) -> BoxFuture<'a, Result<Requeue, StoreError>>;
}

/// The shared half of a workload controller.
pub struct Shell<W> {
    /// The object store.
    pub store: Arc<dyn Store>,
    queue: Arc<Queue>,
    workload: W,
}

/// Runs the controller of `workload` until `token` is cancelled.
pub async fn run<W: Workload>(workload: W, store: Arc<dyn Store>, token: CancellationToken) {
    let shell = Arc::new(Shell {
        store: store.clone(),
        queue: Arc::new(Queue::named(W::COMPONENT)),
        workload,
    });
    let watcher = {
        let (shell, token) = (shell.clone(), token.clone());
        tokio::spawn(async move {
            let s = shell.clone();
            follow(store, token, move |change| s.on_change(change)).await;
        })
    };
    let queue = shell.queue.clone();
    work(queue, token, move |key| {
        let shell = shell.clone();
        async move { shell.reconcile(&key).await }
    })
    .await;
    watcher.abort();
}

impl<W: Workload> Shell<W> {
    /// Queues the set `namespace/name`.
    pub fn enqueue(&self, namespace: &str, name: &str) {
        self.queue.add(Key::new(W::KIND, namespace, name));
    }

    /// Queues every set (in one namespace, or all).
    pub fn enqueue_all(&self, namespace: Option<&str>) {
        for s in self.store.list(W::KIND, namespace).0 {
            self.enqueue(s.namespace(), s.name());
        }
    }

    /// Queues every set that owns `obj`; false when none does.
    pub fn enqueue_owners(&self, obj: &Object) -> bool {
        let mut found = false;
        for r in &obj.meta().owner_references {
            if r.kind == W::KIND.as_str() {
                self.enqueue(obj.namespace(), &r.name);
                found = true;
            }
        }
        found
    }

    fn on_change(&self, change: Observed) {
        let ev = match change {
            Observed::Resync => {
                self.workload.on_resync(self);
                return self.enqueue_all(None);
            }
            Observed::Event(ev) => ev,
        };
        let obj = &ev.object;
        match obj.kind() {
            k if k == W::KIND => self.enqueue(obj.namespace(), obj.name()),
            Kind::Pod => {
                let owned = self.enqueue_owners(obj);
                // A pod with no controller may be one to adopt.
                if !owned && obj.meta().controller().is_none() && ev.r#type != EventType::Deleted {
                    self.enqueue_all(Some(obj.namespace()));
                }
            }
            _ => self.workload.on_other(self, &ev),
        }
    }

    /// The prologue: a set that is gone or being deleted needs nothing.
    async fn reconcile(&self, key: &Key) -> Result<Requeue, StoreError> {
        let Some(obj) = self.store.get(key.kind, &key.namespace, &key.name) else {
            return Ok(Requeue::NEVER);
        };
        if !obj.meta().deletion_timestamp.is_empty() {
            return Ok(Requeue::NEVER);
        }
        let Some(set) = W::typed(&obj) else {
            return Ok(Requeue::NEVER);
        };
        self.workload.reconcile(self, &obj, set).await
    }

    /// Records an event on `obj` without waiting for it (events are best effort).
    pub fn event(&self, obj: &Object, r#type: &'static str, reason: &'static str, message: String) {
        events::record_later(&self.store, obj, r#type, reason, message, W::COMPONENT);
    }

    /// Adopts pod `namespace/pod`: adds `owner` to its owner references, unless it has a
    /// controller by now (or is gone).
    pub async fn adopt(
        &self,
        namespace: &str,
        pod: &str,
        owner: OwnerReference,
    ) -> Result<(), StoreError> {
        self.adopt_object(Kind::Pod, namespace, pod, owner).await
    }

    /// Adopts `kind` `namespace/name` (a pod, a revision) as [`Shell::adopt`] does.
    pub async fn adopt_object(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        owner: OwnerReference,
    ) -> Result<(), StoreError> {
        let key = Key::new(kind, namespace, name);
        let adopted = update_with_retry(&*self.store, &key, |obj| {
            if obj.meta().controller().is_some() {
                return Ok(Change::Keep);
            }
            obj.meta_mut().owner_references.push(owner.clone());
            Ok(Change::Write)
        })
        .await;
        match adopted {
            Ok(outcome) if outcome.written() => {
                tracing::info!(kind = kind.as_str(), name, "adopted");
                Ok(())
            }
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stores a new revision of a set's template (one made meanwhile counts as made).
    pub async fn create_revision(&self, revision: ControllerRevision) -> Result<(), StoreError> {
        match self.store.create(Object::from(revision)).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Gives a revision a new number (a rollback made an old template current again).
    pub async fn renumber_revision(
        &self,
        namespace: &str,
        name: &str,
        number: i64,
    ) -> Result<(), StoreError> {
        let key = Key::new(Kind::ControllerRevision, namespace, name);
        let renumbered = update_with_retry(&*self.store, &key, |obj| {
            match obj.as_controller_revision_mut() {
                Some(r) if r.revision != number => r.revision = number,
                _ => return Ok(Change::Keep),
            }
            Ok(Change::Write)
        })
        .await;
        match renumbered {
            Ok(outcome) => {
                if outcome.written() {
                    tracing::info!(revision = %name, number, "renumbered revision");
                }
                Ok(())
            }
            Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes an old revision (history limit); one already gone counts as deleted.
    pub async fn delete_revision(&self, namespace: &str, name: &str) -> Result<(), StoreError> {
        match self
            .store
            .delete(Kind::ControllerRevision, namespace, name, None)
            .await
        {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes a set's status, compare-and-swap on the set as the round read it: a
    /// conflict fails the round, which runs again on a fresh read.
    pub async fn write_status(
        &self,
        obj: &Object,
        set_status: impl FnOnce(&mut Object),
    ) -> Result<(), StoreError> {
        let mut updated = obj.clone();
        set_status(&mut updated);
        self.store
            .update(updated, Some(obj.resource_version()))
            .await?;
        Ok(())
    }
}

/// Runs a group of writes concurrently (so they share the store's group commits); the
/// first error, after all have finished.
pub async fn all(group: Vec<BoxFuture<'_, Result<(), StoreError>>>) -> Result<(), StoreError> {
    futures::future::join_all(group)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, StoreError>>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use futures::FutureExt;
    use std::time::Duration;
    use twinset_proto::v1::{DaemonSet, ObjectMeta, Pod};

    /// A workload that only routes: every reconcile is a no-op.
    struct Probe;

    impl Workload for Probe {
        const KIND: Kind = Kind::DaemonSet;
        const COMPONENT: &'static str = "probe";
        type Set = DaemonSet;
        fn typed(obj: &Object) -> Option<DaemonSet> {
            obj.as_daemon_set().cloned()
        }
        fn on_other(&self, _: &Shell<Self>, _: &WatchEvent) {}
        fn reconcile<'a>(
            &'a self,
            _: &'a Shell<Self>,
            _: &'a Object,
            _: DaemonSet,
        ) -> BoxFuture<'a, Result<Requeue, StoreError>> {
            async { Ok(Requeue::NEVER) }.boxed()
        }
    }

    fn ds(name: &str) -> Object {
        Object::from(DaemonSet {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn pod(name: &str, owner: Option<OwnerReference>) -> Object {
        Object::from(Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                owner_references: owner.into_iter().collect(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn owner(kind: &str, name: &str) -> OwnerReference {
        OwnerReference {
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller: Some(true),
            ..Default::default()
        }
    }

    async fn drained(q: &Queue) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(k) = tokio::time::timeout(Duration::from_millis(10), q.next()).await {
            out.push(k.name);
        }
        out.sort();
        out
    }

    fn event(r#type: EventType, object: Object) -> Observed {
        Observed::Event(Box::new(WatchEvent {
            r#type,
            object,
            rev: 1,
        }))
    }

    #[tokio::test]
    async fn routes_pods_to_their_owner_and_orphans_to_every_set_of_the_namespace() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
        store.create(ds("a")).await.unwrap();
        store.create(ds("b")).await.unwrap();
        let shell = Shell {
            store: store.clone(),
            queue: Arc::new(Queue::default()),
            workload: Probe,
        };
        shell.on_change(event(
            EventType::Modified,
            pod("p", Some(owner("DaemonSet", "a"))),
        ));
        assert_eq!(drained(&shell.queue).await, ["a"]);
        shell.on_change(event(EventType::Added, pod("p", None)));
        assert_eq!(
            drained(&shell.queue).await,
            ["a", "b"],
            "an orphan may be adopted"
        );
        shell.on_change(event(EventType::Deleted, pod("p", None)));
        shell.on_change(event(
            EventType::Added,
            pod("p", Some(owner("StatefulSet", "s"))),
        ));
        assert!(drained(&shell.queue).await.is_empty(), "not ours");
        shell.on_change(event(EventType::Modified, ds("b")));
        shell.on_change(Observed::Resync);
        assert_eq!(drained(&shell.queue).await, ["a", "b"]);
    }

    #[tokio::test]
    async fn adoption_takes_an_orphan_and_leaves_a_controlled_pod_alone() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
        store.create(pod("orphan", None)).await.unwrap();
        store
            .create(pod("taken", Some(owner("StatefulSet", "s"))))
            .await
            .unwrap();
        let shell = Shell {
            store: store.clone(),
            queue: Arc::new(Queue::default()),
            workload: Probe,
        };
        shell
            .adopt("default", "orphan", owner("DaemonSet", "a"))
            .await
            .unwrap();
        shell
            .adopt("default", "taken", owner("DaemonSet", "a"))
            .await
            .unwrap();
        shell
            .adopt("default", "gone", owner("DaemonSet", "a"))
            .await
            .unwrap();
        let controller = |name: &str| {
            store
                .get(Kind::Pod, "default", name)
                .and_then(|p| p.meta().controller().map(|c| c.kind.clone()))
        };
        assert_eq!(controller("orphan").as_deref(), Some("DaemonSet"));
        assert_eq!(controller("taken").as_deref(), Some("StatefulSet"));
    }
}
