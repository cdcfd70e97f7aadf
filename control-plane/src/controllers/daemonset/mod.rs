//! The DaemonSet controller's shell: watches DaemonSets, Nodes and Pods, queues the
//! affected DaemonSets and carries out what [`decide::decide`] returns.

pub mod decide;

use super::{follow, Change, Queue};
use crate::deletion;
use crate::events;
use crate::store::{Error as StoreError, Store};
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
    let ctl = Arc::new(Controller {
        store: store.clone(),
        queue: Arc::new(Queue::default()),
        failed: Mutex::default(),
    });
    let watcher = {
        let ctl = ctl.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let mut nodes: HashMap<String, Vec<u8>> = HashMap::new();
            follow(store, token, move |change| {
                ctl.on_change(change, &mut nodes)
            })
            .await;
        })
    };
    let queue = ctl.queue.clone();
    let reconciler = ctl.clone();
    super::work("DaemonSet", queue, token, move |ns, name| {
        let ctl = reconciler.clone();
        async move { ctl.reconcile(&ns, &name).await }
    })
    .await;
    watcher.abort();
}

struct Controller {
    store: Arc<dyn Store>,
    queue: Arc<Queue>,
    /// Per (DaemonSet uid, node): when a failed pod may next be replaced, and the next delay.
    failed: Mutex<HashMap<(String, String), (Instant, Duration)>>,
}

/// What about a node matters to DaemonSets: labels, spec (taints, unschedulable).
fn node_fingerprint(node: &Node) -> Vec<u8> {
    let mut b = node
        .spec
        .as_ref()
        .map(Message::encode_to_vec)
        .unwrap_or_default();
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

impl Controller {
    fn enqueue_all(&self, namespace: Option<&str>) {
        for ds in self.store.list(Kind::DaemonSet, namespace).0 {
            self.queue.add(format!("{}/{}", ds.namespace(), ds.name()));
        }
    }

    fn on_change(&self, change: Change, nodes: &mut HashMap<String, Vec<u8>>) {
        let ev = match change {
            Change::Resync => {
                nodes.clear();
                for n in self.store.list(Kind::Node, None).0 {
                    if let Some(node) = n.as_node() {
                        nodes.insert(n.name().to_string(), node_fingerprint(node));
                    }
                }
                self.enqueue_all(None);
                return;
            }
            Change::Event(ev) => ev,
        };
        let obj = &ev.object;
        match obj.kind() {
            Kind::DaemonSet => self
                .queue
                .add(format!("{}/{}", obj.namespace(), obj.name())),
            Kind::Node => {
                let fp = obj.as_node().map(node_fingerprint).unwrap_or_default();
                let changed = match ev.r#type {
                    crate::store::EventType::Deleted => {
                        nodes.remove(obj.name());
                        true
                    }
                    _ => nodes.insert(obj.name().to_string(), fp.clone()).as_ref() != Some(&fp),
                };
                if changed {
                    self.enqueue_all(None);
                }
            }
            Kind::Pod => match obj.meta().controller() {
                Some(c) if c.kind == "DaemonSet" => {
                    self.queue.add(format!("{}/{}", obj.namespace(), c.name))
                }
                Some(_) => {}
                // A pod with no controller may be one to adopt.
                None if ev.r#type != crate::store::EventType::Deleted => {
                    self.enqueue_all(Some(obj.namespace()))
                }
                None => {}
            },
            _ => {}
        }
    }

    /// One reconcile; Ok(Some(d)) asks to look again after `d`.
    async fn reconcile(&self, ns: &str, name: &str) -> Result<Option<Duration>, StoreError> {
        let Some(obj) = self.store.get(Kind::DaemonSet, ns, name) else {
            return Ok(None);
        };
        if !obj.meta().deletion_timestamp.is_empty() {
            return Ok(None);
        }
        let Some(ds) = obj.as_daemon_set().cloned() else {
            return Ok(None);
        };
        let nodes: Vec<Node> =
            crate::store::list_typed(&*self.store, Kind::Node, None, Object::into_node);
        let pods: Vec<_> =
            crate::store::list_typed(&*self.store, Kind::Pod, Some(ns), Object::into_pod);
        let actions = decide::decide(Snapshot {
            ds: &ds,
            nodes: &nodes,
            pods: &pods,
            now: SystemTime::now(),
        });
        let mut requeue: Option<Duration> = None;
        let mut sooner = |d: Duration| requeue = Some(requeue.map_or(d, |r: Duration| r.min(d)));
        let mut pod_ops: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::new();
        let mut new_status = None;
        for action in actions {
            match action {
                Action::AdoptPod { name: pod } => self.adopt(&ds, ns, &pod).await?,
                Action::CreatePod { node } => match self.failed_wait(&ds, &node) {
                    Some(wait) => sooner(wait),
                    None => pod_ops.push(self.create_on(&obj, &ds, node).boxed()),
                },
                Action::DeletePod { name: pod, reason } => {
                    pod_ops.push(self.delete_one(&obj, &ds, pod, reason).boxed())
                }
                Action::UpdateStatus { status } => new_status = Some(status),
            }
        }
        // Creates and deletes go out together, so they share the store's group commits.
        let results = futures::future::join_all(pod_ops).await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, StoreError>>()?;
        if let Some(status) = new_status {
            let mut updated = obj.clone();
            if let Some(d) = updated.as_daemon_set_mut() {
                d.status = Some(status);
            }
            self.store
                .update(updated, Some(obj.resource_version()))
                .await?;
        }
        // Availability after minReadySeconds is a matter of time, not of a change.
        let min_ready = ds.spec.as_ref().map(|s| s.min_ready_seconds).unwrap_or(0);
        if min_ready > 0 {
            sooner(Duration::from_secs(min_ready as u64));
        }
        Ok(requeue)
    }

    /// Records an event without waiting for it (events are best effort).
    fn event(&self, obj: &Object, r#type: &'static str, reason: &'static str, message: String) {
        events::record_later(&self.store, obj, r#type, reason, message, COMPONENT);
    }

    async fn create_on(
        &self,
        obj: &Object,
        ds: &DaemonSet,
        node: String,
    ) -> Result<(), StoreError> {
        match self.create_pod(ds, &node).await {
            Ok(pod) => {
                tracing::info!(pod = pod.name(), node = %node, "created daemon pod");
                self.event(
                    obj,
                    events::NORMAL,
                    "SuccessfulCreate",
                    format!("Created pod: {}", pod.name()),
                );
                Ok(())
            }
            Err(e) => {
                self.event(
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
        obj: &Object,
        ds: &DaemonSet,
        pod: String,
        reason: DeleteReason,
    ) -> Result<(), StoreError> {
        let ns = obj.namespace();
        let node = self
            .store
            .get(Kind::Pod, ns, &pod)
            .and_then(|p| p.into_pod())
            .map(|p| crate::podutil::node_name(&p).to_string());
        match deletion::delete_pod(&*self.store, ns, &pod, None).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        tracing::info!(pod = %pod, node = node.as_deref().unwrap_or(""), ?reason, "deleted daemon pod");
        if reason == DeleteReason::Failed {
            if let Some(node) = &node {
                self.note_failure(ds, node);
            }
            self.event(
                obj,
                events::WARNING,
                "FailedDaemonPod",
                format!(
                    "Found failed daemon pod {ns}/{pod} on node {}, will try to kill it",
                    node.as_deref().unwrap_or("")
                ),
            );
        }
        self.event(
            obj,
            events::NORMAL,
            "SuccessfulDelete",
            format!("Deleted pod: {pod}"),
        );
        Ok(())
    }

    async fn create_pod(&self, ds: &DaemonSet, node: &str) -> Result<Object, StoreError> {
        let mut last = None;
        for _ in 0..3 {
            let pod = decide::build_pod(ds, node, &super::revision::random_suffix(5));
            match self.store.create(Object::from(pod)).await {
                Err(e @ StoreError::AlreadyExists { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or(StoreError::Closed))
    }

    async fn adopt(&self, ds: &DaemonSet, ns: &str, pod: &str) -> Result<(), StoreError> {
        let Some(mut obj) = self.store.get(Kind::Pod, ns, pod) else {
            return Ok(());
        };
        if obj.meta().controller().is_some() {
            return Ok(());
        }
        let rv = obj.resource_version();
        obj.meta_mut()
            .owner_references
            .push(decide::owner_reference(ds));
        self.store.update(obj, Some(rv)).await?;
        tracing::info!(pod, "adopted pod");
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
