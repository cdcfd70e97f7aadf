//! The StatefulSet controller: on the shared [`Shell`], it also watches claims and
//! revisions, and carries out what [`decide::decide`] returns. A set's headless Service,
//! made when an apply finds it missing, is [`service`]'s.
//!
//! A round's writes go out in dependency order, each group concurrently (so they share
//! the store's group commits): revisions and adoptions, then claims (created and
//! re-owned), then pods (created and deleted), then the status, then history trimming.
//! A failure stops the round before anything that depends on it and retries with
//! backoff: a pod is never created unless its claims exist.

pub mod claims;
pub mod decide;
pub mod identity;
pub mod service;

use super::node_loss;
use super::shell::{self, Shell, Workload};
use super::Requeue;
use crate::deletion;
use crate::events;
use crate::store::{
    update_with_retry, Change, Error as StoreError, EventType, Key, Store, WatchEvent,
};
use decide::{Action, Snapshot};
use futures::future::{BoxFuture, FutureExt};
use std::sync::Arc;
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;
use twinset_proto::v1::{Object, OwnerReference, PersistentVolumeClaim, Pod, StatefulSet};
use twinset_proto::Kind;

/// The name events show under "From".
pub const COMPONENT: &str = "statefulset-controller";

/// Runs the controller until `token` is cancelled.
pub async fn run(store: Arc<dyn Store>, token: CancellationToken) {
    shell::run(StatefulSets, store, token).await;
}

/// What the StatefulSet controller adds to the shared [`Shell`].
struct StatefulSets;

impl Workload for StatefulSets {
    const KIND: Kind = Kind::StatefulSet;
    const COMPONENT: &'static str = COMPONENT;
    type Set = StatefulSet;

    fn typed(obj: &Object) -> Option<StatefulSet> {
        obj.as_stateful_set().cloned()
    }

    fn on_other(&self, shell: &Shell<Self>, ev: &WatchEvent) {
        let obj = &ev.object;
        match obj.kind() {
            Kind::ControllerRevision => {
                shell.enqueue_owners(obj);
            }
            // A claim that went may unblock a replica waiting for it, or need making again.
            Kind::PersistentVolumeClaim if ev.r#type == EventType::Deleted => {
                shell.enqueue_all(Some(obj.namespace()))
            }
            _ => {}
        }
    }

    fn reconcile<'a>(
        &'a self,
        shell: &'a Shell<Self>,
        obj: &'a Object,
        set: StatefulSet,
    ) -> BoxFuture<'a, Result<Requeue, StoreError>> {
        round(shell, obj, set).boxed()
    }
}

/// The shell this controller runs on.
type Shl = Shell<StatefulSets>;

/// One round: snapshot, decide, carry out in dependency order.
async fn round(shell: &Shl, obj: &Object, set: StatefulSet) -> Result<Requeue, StoreError> {
    let store = &*shell.store;
    let ns = obj.namespace();
    let pods: Vec<Pod> = crate::store::list_typed(store, Kind::Pod, Some(ns), Object::into_pod);
    let claims: Vec<PersistentVolumeClaim> = crate::store::list_typed(
        store,
        Kind::PersistentVolumeClaim,
        Some(ns),
        Object::into_persistent_volume_claim,
    );
    let revisions: Vec<_> = crate::store::list_typed(
        store,
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
    let mut requeue = Requeue::NEVER;
    for action in actions {
        match action {
            Action::CreateRevision { revision } => {
                first.push(shell.create_revision(revision).boxed())
            }
            Action::RenumberRevision { name, revision } => first
                .push(async move { shell.renumber_revision(ns, &name, revision).await }.boxed()),
            Action::AdoptRevision { name } => {
                let owner = identity::owner_reference(&set);
                first.push(
                    async move {
                        shell
                            .adopt_object(Kind::ControllerRevision, ns, &name, owner)
                            .await
                    }
                    .boxed(),
                )
            }
            Action::AdoptPod { name: pod } => {
                let owner = identity::owner_reference(&set);
                first.push(async move { shell.adopt(ns, &pod, owner).await }.boxed())
            }
            Action::CreateClaim { claim, pod } => {
                claim_ops.push(create_claim(shell, obj, claim, pod).boxed())
            }
            Action::SetClaimOwners {
                name,
                resource_version,
                owners,
            } => {
                claim_ops.push(set_claim_owners(store, ns, name, resource_version, owners).boxed())
            }
            Action::CreatePod { pod } => pod_ops.push(create_pod(shell, obj, pod).boxed()),
            Action::DeletePod { name: pod, reason } => {
                pod_ops.push(delete_pod(shell, obj, pod, reason).boxed())
            }
            Action::UpdateStatus { status } => new_status = Some(status),
            Action::DeleteRevision { name } => {
                trims.push(async move { shell.delete_revision(ns, &name).await }.boxed())
            }
            Action::RequeueAfter { after } => requeue = Requeue::after(after),
        }
    }
    // Replicas carry the set's node-loss policy, which their agents act on.
    let set_uid = identity::meta(&set).uid.clone();
    for pod in &pods {
        let owned = pod
            .metadata
            .as_ref()
            .and_then(|m| m.controller())
            .is_some_and(|c| c.uid == set_uid);
        if let Some(policy) = owned.then(|| node_loss::policy_drift(&set, pod)).flatten() {
            let name = crate::podutil::name(pod).to_string();
            pod_ops.push(set_pod_policy(store, ns, name, set_uid.clone(), policy).boxed());
        }
    }
    for group in [first, claim_ops, pod_ops] {
        shell::all(group).await?;
    }
    if let Some(status) = new_status {
        shell
            .write_status(obj, |o| {
                if let Some(s) = o.as_stateful_set_mut() {
                    s.status = Some(status);
                }
            })
            .await?;
    }
    shell::all(trims).await?;
    Ok(requeue)
}

/// Brings replica `name`'s node-loss policy in step with its set's.
async fn set_pod_policy(
    store: &dyn Store,
    ns: &str,
    name: String,
    set_uid: String,
    policy: twinset_proto::fencing::Policy,
) -> Result<(), StoreError> {
    let key = Key::new(Kind::Pod, ns, &name);
    let written = update_with_retry(store, &key, |o| {
        let owned = o.meta().controller().is_some_and(|c| c.uid == set_uid);
        let Some(p) = o.as_pod_mut().filter(|_| owned) else {
            return Ok(Change::Keep);
        };
        if twinset_proto::fencing::pod_policy(p) == policy {
            return Ok(Change::Keep);
        }
        node_loss::apply_policy(p, policy);
        Ok(Change::Write)
    })
    .await;
    match written {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates a replica's claim (one that exists already counts as made).
async fn create_claim(
    shell: &Shl,
    obj: &Object,
    claim: PersistentVolumeClaim,
    pod: String,
) -> Result<(), StoreError> {
    let name = claim
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    match shell.store.create(Object::from(claim)).await {
        Ok(_) => {
            tracing::info!(claim = %name, pod = %pod, "created claim");
            shell.event(
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
            shell.event(
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

/// Sets a claim's owners as the retention policy says, on the claim as the round read it.
async fn set_claim_owners(
    store: &dyn Store,
    ns: &str,
    name: String,
    rv: u64,
    owners: Vec<OwnerReference>,
) -> Result<(), StoreError> {
    let Some(mut claim) = store.get(Kind::PersistentVolumeClaim, ns, &name) else {
        return Ok(());
    };
    claim.meta_mut().owner_references = owners;
    // Stale snapshot: the conflict retries the round with a fresh one.
    store.update(claim, Some(rv)).await?;
    tracing::debug!(claim = %name, "claim owners follow the retention policy");
    Ok(())
}

/// Creates a replica's pod, with an event either way.
async fn create_pod(shell: &Shl, obj: &Object, pod: Pod) -> Result<(), StoreError> {
    let name = crate::podutil::name(&pod).to_string();
    match shell.store.create(Object::from(pod)).await {
        Ok(_) => {
            tracing::info!(pod = %name, "created pod");
            shell.event(
                obj,
                events::NORMAL,
                "SuccessfulCreate",
                format!("create Pod {name} in StatefulSet {} successful", obj.name()),
            );
            Ok(())
        }
        Err(e) => {
            shell.event(
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

/// Deletes a replica's pod (gracefully), with an event either way.
async fn delete_pod(
    shell: &Shl,
    obj: &Object,
    pod: String,
    reason: decide::DeleteReason,
) -> Result<(), StoreError> {
    match deletion::delete_pod(&*shell.store, obj.namespace(), &pod, None).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        Err(e) => {
            shell.event(
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
    shell.event(
        obj,
        events::NORMAL,
        "SuccessfulDelete",
        format!("delete Pod {pod} in StatefulSet {} successful", obj.name()),
    );
    Ok(())
}
