//! The StatefulSet controller's shell: watches StatefulSets, their pods, claims and
//! revisions, queues the affected sets and carries out what [`decide::decide`] returns.
//!
//! A round's writes go out in dependency order, each group concurrently (so they share
//! the store's group commits): revisions and adoptions, then claims (created and
//! re-owned), then pods (created and deleted), then the status, then history trimming.
//! A failure stops the round before anything that depends on it and retries with
//! backoff: a pod is never created unless its claims exist.

pub mod claims;
pub mod decide;
pub mod history;
pub mod identity;
pub mod service;

use super::{follow, Change, Queue};
use crate::deletion;
use crate::events;
use crate::store::{Error as StoreError, EventType, Store};
use decide::{Action, Snapshot};
use futures::future::{BoxFuture, FutureExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use twinset_proto::v1::{Object, OwnerReference, PersistentVolumeClaim, Pod, StatefulSet};
use twinset_proto::Kind;

/// The name events show under "From".
pub const COMPONENT: &str = "statefulset-controller";

/// Runs the controller until `token` is cancelled.
pub async fn run(store: Arc<dyn Store>, token: CancellationToken) {
    let ctl = Arc::new(Controller {
        store: store.clone(),
        queue: Arc::new(Queue::default()),
    });
    let watcher = {
        let ctl = ctl.clone();
        let token = token.clone();
        tokio::spawn(async move {
            follow(store, token, move |change| ctl.on_change(change)).await;
        })
    };
    let queue = ctl.queue.clone();
    let reconciler = ctl.clone();
    super::work("StatefulSet", queue, token, move |ns, name| {
        let ctl = reconciler.clone();
        async move { ctl.reconcile(&ns, &name).await }
    })
    .await;
    watcher.abort();
}

struct Controller {
    store: Arc<dyn Store>,
    queue: Arc<Queue>,
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl Controller {
    fn enqueue_namespace(&self, namespace: Option<&str>) {
        for s in self.store.list(Kind::StatefulSet, namespace).0 {
            self.queue.add(key(s.namespace(), s.name()));
        }
    }

    /// Queues the StatefulSet owning `obj` (its controller, or any StatefulSet owner).
    fn enqueue_owner(&self, obj: &Object) -> bool {
        let mut found = false;
        for r in &obj.meta().owner_references {
            if r.kind == "StatefulSet" {
                self.queue.add(key(obj.namespace(), &r.name));
                found = true;
            }
        }
        found
    }

    fn on_pod(&self, pod: &Object, r#type: EventType) {
        let owned = self.enqueue_owner(pod);
        // A pod with no controller may be one to adopt.
        if !owned && pod.meta().controller().is_none() && r#type != EventType::Deleted {
            self.enqueue_namespace(Some(pod.namespace()));
        }
    }

    fn on_change(&self, change: Change) {
        let ev = match change {
            Change::Resync => return self.enqueue_namespace(None),
            Change::Event(ev) => ev,
        };
        let obj = &ev.object;
        match obj.kind() {
            Kind::StatefulSet => self.queue.add(key(obj.namespace(), obj.name())),
            Kind::Pod => self.on_pod(obj, ev.r#type),
            Kind::ControllerRevision => {
                self.enqueue_owner(obj);
            }
            // A claim that went may unblock a replica waiting for it, or need making again.
            Kind::PersistentVolumeClaim if ev.r#type == EventType::Deleted => {
                self.enqueue_namespace(Some(obj.namespace()))
            }
            _ => {}
        }
    }

    /// One reconcile; Ok(Some(d)) asks to look again after `d`.
    async fn reconcile(&self, ns: &str, name: &str) -> Result<Option<Duration>, StoreError> {
        let Some(obj) = self.store.get(Kind::StatefulSet, ns, name) else {
            return Ok(None);
        };
        if !obj.meta().deletion_timestamp.is_empty() {
            return Ok(None);
        }
        let Some(set) = obj.as_stateful_set().cloned() else {
            return Ok(None);
        };
        let pods: Vec<Pod> =
            crate::store::list_typed(&*self.store, Kind::Pod, Some(ns), Object::into_pod);
        let claims: Vec<PersistentVolumeClaim> = crate::store::list_typed(
            &*self.store,
            Kind::PersistentVolumeClaim,
            Some(ns),
            Object::into_persistent_volume_claim,
        );
        let revisions: Vec<_> = crate::store::list_typed(
            &*self.store,
            Kind::ControllerRevision,
            Some(ns),
            Object::into_controller_revision,
        );
        let actions = decide::decide(Snapshot {
            set: &set,
            pods: &pods,
            claims: &claims,
            revisions: &revisions,
            now: SystemTime::now(),
        });

        let mut first: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::new();
        let mut claim_ops: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::new();
        let mut pod_ops: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::new();
        let mut trims: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::new();
        let mut new_status = None;
        let mut requeue = None;
        for action in actions {
            match action {
                Action::CreateRevision { revision } => first.push(
                    async move {
                        match self.store.create(Object::from(revision)).await {
                            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
                            Err(e) => Err(e),
                        }
                    }
                    .boxed(),
                ),
                Action::RenumberRevision { name, revision } => {
                    first.push(self.renumber(ns, name, revision).boxed())
                }
                Action::AdoptPod { name: pod } => first.push(self.adopt(&set, ns, pod).boxed()),
                Action::CreateClaim { claim, pod } => {
                    claim_ops.push(self.create_claim(&obj, claim, pod).boxed())
                }
                Action::SetClaimOwners {
                    name,
                    resource_version,
                    owners,
                } => claim_ops.push(
                    self.set_claim_owners(ns, name, resource_version, owners)
                        .boxed(),
                ),
                Action::CreatePod { pod } => pod_ops.push(self.create_pod(&obj, pod).boxed()),
                Action::DeletePod { name: pod, reason } => {
                    pod_ops.push(self.delete_pod(&obj, pod, reason).boxed())
                }
                Action::UpdateStatus { status } => new_status = Some(status),
                Action::DeleteRevision { name } => trims.push(
                    async move {
                        match self
                            .store
                            .delete(Kind::ControllerRevision, ns, &name, None)
                            .await
                        {
                            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
                            Err(e) => Err(e),
                        }
                    }
                    .boxed(),
                ),
                Action::RequeueAfter { after } => requeue = Some(after),
            }
        }
        for group in [first, claim_ops, pod_ops] {
            futures::future::join_all(group)
                .await
                .into_iter()
                .collect::<Result<Vec<()>, StoreError>>()?;
        }
        if let Some(status) = new_status {
            let mut updated = obj.clone();
            if let Some(s) = updated.as_stateful_set_mut() {
                s.status = Some(status);
            }
            self.store
                .update(updated, Some(obj.resource_version()))
                .await?;
        }
        futures::future::join_all(trims)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, StoreError>>()?;
        Ok(requeue)
    }

    /// Records an event on the set without waiting for it (events are best effort).
    fn event(&self, obj: &Object, r#type: &'static str, reason: &'static str, message: String) {
        events::record_later(&self.store, obj, r#type, reason, message, COMPONENT);
    }

    async fn create_claim(
        &self,
        obj: &Object,
        claim: PersistentVolumeClaim,
        pod: String,
    ) -> Result<(), StoreError> {
        let name = claim
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        match self.store.create(Object::from(claim)).await {
            Ok(_) => {
                tracing::info!(claim = %name, pod = %pod, "created claim");
                self.event(
                    obj,
                    events::NORMAL,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {name} Pod {pod} in StatefulSet {} success",
                        obj.name()
                    ),
                );
                Ok(())
            }
            // Made meanwhile (a concurrent round, or a user): it is there, which is what counts.
            Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => {
                self.event(
                    obj,
                    events::WARNING,
                    "FailedCreate",
                    format!(
                        "create Claim {name} for Pod {pod} in StatefulSet {} failed error: {e}",
                        obj.name()
                    ),
                );
                Err(e)
            }
        }
    }

    async fn set_claim_owners(
        &self,
        ns: &str,
        name: String,
        rv: u64,
        owners: Vec<OwnerReference>,
    ) -> Result<(), StoreError> {
        let Some(mut claim) = self.store.get(Kind::PersistentVolumeClaim, ns, &name) else {
            return Ok(());
        };
        claim.meta_mut().owner_references = owners;
        // Stale snapshot: the conflict retries the round with a fresh one.
        self.store.update(claim, Some(rv)).await?;
        tracing::debug!(claim = %name, "claim owners follow the retention policy");
        Ok(())
    }

    async fn create_pod(&self, obj: &Object, pod: Pod) -> Result<(), StoreError> {
        let name = crate::podutil::name(&pod).to_string();
        match self.store.create(Object::from(pod)).await {
            Ok(_) => {
                tracing::info!(pod = %name, "created pod");
                self.event(
                    obj,
                    events::NORMAL,
                    "SuccessfulCreate",
                    format!("create Pod {name} in StatefulSet {} successful", obj.name()),
                );
                Ok(())
            }
            Err(e) => {
                self.event(
                    obj,
                    events::WARNING,
                    "FailedCreate",
                    format!(
                        "create Pod {name} in StatefulSet {} failed error: {e}",
                        obj.name()
                    ),
                );
                Err(e)
            }
        }
    }

    async fn delete_pod(
        &self,
        obj: &Object,
        pod: String,
        reason: decide::DeleteReason,
    ) -> Result<(), StoreError> {
        match deletion::delete_pod(&*self.store, obj.namespace(), &pod, None).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => {
                self.event(
                    obj,
                    events::WARNING,
                    "FailedDelete",
                    format!(
                        "delete Pod {pod} in StatefulSet {} failed error: {e}",
                        obj.name()
                    ),
                );
                return Err(e);
            }
        }
        tracing::info!(pod = %pod, ?reason, "deleted pod");
        self.event(
            obj,
            events::NORMAL,
            "SuccessfulDelete",
            format!("delete Pod {pod} in StatefulSet {} successful", obj.name()),
        );
        Ok(())
    }

    async fn renumber(&self, ns: &str, name: String, revision: i64) -> Result<(), StoreError> {
        let Some(mut obj) = self.store.get(Kind::ControllerRevision, ns, &name) else {
            return Ok(());
        };
        let rv = obj.resource_version();
        if let Some(r) = obj.as_controller_revision_mut() {
            r.revision = revision;
        }
        self.store.update(obj, Some(rv)).await?;
        tracing::info!(revision = %name, number = revision, "renumbered revision");
        Ok(())
    }

    async fn adopt(&self, set: &StatefulSet, ns: &str, pod: String) -> Result<(), StoreError> {
        let Some(mut obj) = self.store.get(Kind::Pod, ns, &pod) else {
            return Ok(());
        };
        if obj.meta().controller().is_some() {
            return Ok(());
        }
        let rv = obj.resource_version();
        obj.meta_mut()
            .owner_references
            .push(identity::owner_reference(set));
        self.store.update(obj, Some(rv)).await?;
        tracing::info!(pod = %pod, "adopted pod");
        Ok(())
    }
}
