//! The DaemonSet controller: on the shared [`Shell`], it also watches Nodes (a change
//! to labels, taints, cordon or readiness queues every DaemonSet) and its
//! ControllerRevisions, and carries out what [`decide::decide`] returns — revisions
//! first, then pods, then the status, then history trimming — holding back
//! replacements of failed pods per node.

pub mod decide;

use super::shell::{self, Shell, Workload};
use super::Requeue;
use crate::deletion;
use crate::events;
use crate::store::{Error as StoreError, EventType, Store, WatchEvent};
use decide::{Action, DeleteReason, Snapshot};
use futures::future::{BoxFuture, FutureExt};
use prost::Message;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use twinset_proto::v1::{DaemonSet, Node, Object};
use twinset_proto::Kind;

/// The name events show under "From".
pub const COMPONENT: &str = "daemonset-controller";
/// First delay before replacing a failed daemon pod on a node; doubles up to [`FAILED_BACKOFF_MAX`].
const FAILED_BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest delay before replacing a failed daemon pod.
const FAILED_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Runs the controller until `token` is cancelled.
pub async fn run(store: Arc<dyn Store>, token: CancellationToken) {
    shell::run(DaemonSets::default(), store, token).await;
}

/// What the DaemonSet controller adds to the shared [`Shell`].
#[derive(Default)]
struct DaemonSets {
    /// Per (DaemonSet uid, node): when a failed pod may next be replaced, and the next delay.
    failed: Mutex<HashMap<(String, String), (Instant, Duration)>>,
    /// Per node: what about it matters to DaemonSets, to tell relevant changes.
    nodes: Mutex<HashMap<String, Vec<u8>>>,
}

/// What about a node matters to DaemonSets: labels, spec (taints, unschedulable), and
/// whether it is Ready (an unreachable node's rollout waits for it to come back).
fn node_fingerprint(node: &Node) -> Vec<u8> {
    let mut b = node
        .spec
        .as_ref()
        .map(Message::encode_to_vec)
        .unwrap_or_default();
    b.extend_from_slice(super::node_lifecycle::ready_status(node).as_bytes());
    b.push(0);
    if let Some(m) = &node.metadata {
        for (k, v) in &m.labels {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
    }
    b
}

impl Workload for DaemonSets {
    const KIND: Kind = Kind::DaemonSet;
    const COMPONENT: &'static str = COMPONENT;
    type Set = DaemonSet;

    fn typed(obj: &Object) -> Option<DaemonSet> {
        obj.as_daemon_set().cloned()
    }

    fn on_resync(&self, shell: &Shell<Self>) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.clear();
        for n in shell.store.list(Kind::Node, None).0 {
            if let Some(node) = n.as_node() {
                nodes.insert(n.name().to_string(), node_fingerprint(node));
            }
        }
    }

    fn on_other(&self, shell: &Shell<Self>, ev: &WatchEvent) {
        let obj = &ev.object;
        if obj.kind() == Kind::ControllerRevision {
            shell.enqueue_owners(obj);
            return;
        }
        if obj.kind() != Kind::Node {
            return;
        }
        let fp = obj.as_node().map(node_fingerprint).unwrap_or_default();
        let changed = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            match ev.r#type {
                EventType::Deleted => {
                    nodes.remove(obj.name());
                    true
                }
                _ => nodes.insert(obj.name().to_string(), fp.clone()).as_ref() != Some(&fp),
            }
        };
        if changed {
            shell.enqueue_all(None);
        }
    }

    fn reconcile<'a>(
        &'a self,
        shell: &'a Shell<Self>,
        obj: &'a Object,
        ds: DaemonSet,
    ) -> BoxFuture<'a, Result<Requeue, StoreError>> {
        self.round(shell, obj, ds).boxed()
    }
}

impl DaemonSets {
    /// One round: snapshot, decide, carry out.
    async fn round(
        &self,
        shell: &Shell<Self>,
        obj: &Object,
        ds: DaemonSet,
    ) -> Result<Requeue, StoreError> {
        let store = &*shell.store;
        let ns = obj.namespace();
        let nodes: Vec<Node> = crate::store::list_typed(store, Kind::Node, None, Object::into_node);
        let pods: Vec<_> = crate::store::list_typed(store, Kind::Pod, Some(ns), Object::into_pod);
        let revisions: Vec<_> = crate::store::list_typed(
            store,
            Kind::ControllerRevision,
            Some(ns),
            Object::into_controller_revision,
        );
        let actions = decide::decide(Snapshot {
            ds: &ds,
            nodes: &nodes,
            pods: &pods,
            revisions: &revisions,
            now: SystemTime::now(),
        });
        let mut requeue = Requeue::NEVER;
        let mut first: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::new();
        let mut pod_ops: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::new();
        let mut trims: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::new();
        let mut new_status = None;
        for action in actions {
            match action {
                Action::AdoptPod { name: pod } => {
                    shell.adopt(ns, &pod, decide::owner_reference(&ds)).await?
                }
                Action::CreateRevision { revision } => {
                    first.push(shell.create_revision(*revision).boxed())
                }
                Action::RenumberRevision { name, revision } => first.push(
                    async move { shell.renumber_revision(ns, &name, revision).await }.boxed(),
                ),
                Action::AdoptRevision { name } => {
                    let owner = decide::owner_reference(&ds);
                    first.push(
                        async move {
                            shell
                                .adopt_object(Kind::ControllerRevision, ns, &name, owner)
                                .await
                        }
                        .boxed(),
                    )
                }
                Action::DeleteRevision { name } => {
                    trims.push(async move { shell.delete_revision(ns, &name).await }.boxed())
                }
                Action::CreatePod { node, hash } => match self.failed_wait(&ds, &node) {
                    Some(wait) => requeue = requeue.sooner(wait),
                    None => pod_ops.push(self.create_on(shell, obj, &ds, hash, node).boxed()),
                },
                Action::DeletePod { name: pod, reason } => {
                    pod_ops.push(self.delete_one(shell, obj, &ds, pod, reason).boxed())
                }
                Action::UpdateStatus { status } => new_status = Some(status),
            }
        }
        // A pod is made from a stored revision. Creates and deletes go out together, so
        // they share the store's group commits.
        shell::all(first).await?;
        shell::all(pod_ops).await?;
        if let Some(status) = new_status {
            shell
                .write_status(obj, |o| {
                    if let Some(d) = o.as_daemon_set_mut() {
                        d.status = Some(status);
                    }
                })
                .await?;
        }
        shell::all(trims).await?;
        // Availability after minReadySeconds is a matter of time, not of a change.
        let min_ready = ds.spec.as_ref().map(|s| s.min_ready_seconds).unwrap_or(0);
        if min_ready > 0 {
            requeue = requeue.sooner(Duration::from_secs(min_ready as u64));
        }
        Ok(requeue)
    }

    async fn create_on(
        &self,
        shell: &Shell<Self>,
        obj: &Object,
        ds: &DaemonSet,
        hash: String,
        node: String,
    ) -> Result<(), StoreError> {
        match create_pod(&*shell.store, ds, &hash, &node).await {
            Ok(pod) => {
                tracing::info!(pod = pod.name(), node = %node, "created daemon pod");
                shell.event(
                    obj,
                    events::NORMAL,
                    "SuccessfulCreate",
                    format!("Created pod: {}", pod.name()),
                );
                Ok(())
            }
            Err(e) => {
                shell.event(
                    obj,
                    events::WARNING,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                );
                Err(e)
            }
        }
    }

    async fn delete_one(
        &self,
        shell: &Shell<Self>,
        obj: &Object,
        ds: &DaemonSet,
        pod: String,
        reason: DeleteReason,
    ) -> Result<(), StoreError> {
        let ns = obj.namespace();
        let node = shell
            .store
            .get(Kind::Pod, ns, &pod)
            .and_then(|p| p.into_pod())
            .map(|p| crate::podutil::node_name(&p).to_string());
        match deletion::delete_pod(&*shell.store, ns, &pod, None).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        tracing::info!(pod = %pod, node = node.as_deref().unwrap_or(""), ?reason, "deleted daemon pod");
        if reason == DeleteReason::Failed {
            if let Some(node) = &node {
                self.note_failure(ds, node);
            }
            shell.event(
                obj,
                events::WARNING,
                "FailedDaemonPod",
                format!(
                    "Found failed daemon pod {ns}/{pod} on node {}, will try to kill it",
                    node.as_deref().unwrap_or("")
                ),
            );
        }
        shell.event(
            obj,
            events::NORMAL,
            "SuccessfulDelete",
            format!("Deleted pod: {pod}"),
        );
        Ok(())
    }

    fn ds_uid(ds: &DaemonSet) -> String {
        ds.metadata
            .as_ref()
            .map(|m| m.uid.clone())
            .unwrap_or_default()
    }

    fn note_failure(&self, ds: &DaemonSet, node: &str) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        failed.retain(|_, (until, _)| now.duration_since(*until) < FAILED_BACKOFF_MAX * 2);
        let entry = failed
            .entry((Self::ds_uid(ds), node.to_string()))
            .or_insert((now, FAILED_BACKOFF_START / 2));
        let delay = (entry.1 * 2).min(FAILED_BACKOFF_MAX);
        *entry = (now + delay, delay);
    }

    fn failed_wait(&self, ds: &DaemonSet, node: &str) -> Option<Duration> {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let (until, _) = failed.get(&(Self::ds_uid(ds), node.to_string()))?;
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }
}

/// Creates the daemon pod of `ds` on `node` (a new random suffix when the name is taken).
async fn create_pod(
    store: &dyn Store,
    ds: &DaemonSet,
    hash: &str,
    node: &str,
) -> Result<Object, StoreError> {
    let mut last = None;
    for _ in 0..3 {
        let pod = decide::build_pod(ds, hash, node, &super::revision::random_suffix(5));
        match store.create(Object::from(pod)).await {
            Err(e @ StoreError::AlreadyExists { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or(StoreError::Closed))
}
