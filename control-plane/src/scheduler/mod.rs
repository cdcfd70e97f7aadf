//! The scheduler: binds pods that have no node (StatefulSet replicas, bare pods) to one
//! that fits, as [`decide::schedule`] chooses, and binds their claims to the same node.
//!
//! Watch-driven: any change to a pod waiting for a node, a pod's arrival or departure
//! (resources and ports freed), a node or a claim wakes one pass over every waiting pod
//! (changes arriving during a pass coalesce into the next). A pass writes concurrently,
//! so its writes share the store's group commits:
//! - a placed pod gets `spec.nodeName` and PodScheduled=True (compare-and-swap on the
//!   pod as read), then each of its unbound claims is bound to that node: the
//!   [`decide::SELECTED_NODE_ANNOTATION`] annotation, `spec.volumeName` `pvc-<claim uid>`,
//!   `status.phase` Bound, capacity = the requested storage; a Normal `Scheduled` event;
//! - a pod that fits nowhere stays Pending with PodScheduled=False (reason
//!   Unschedulable) and a Warning `FailedScheduling` event, both written only when the
//!   message changes.
//!
//! A failed write retries the pass with backoff.

pub mod decide;

use crate::controllers::{follow, Observed};
use crate::events::{self, Source};
use crate::podutil;
use crate::store::{update_with_retry, Change, Error as StoreError, EventType, Key, Store};
use decide::{Decision, Snapshot, SELECTED_NODE_ANNOTATION};
use futures::future::{BoxFuture, FutureExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use twinset_proto::v1::{Object, PersistentVolumeClaim, Pod, PodCondition};
use twinset_proto::Kind;

/// The name events show under "From".
pub const COMPONENT: &str = decide::SCHEDULER_NAME;
/// First delay before retrying a pass whose writes failed; doubles up to [`RETRY_MAX`].
const RETRY_START: Duration = Duration::from_millis(10);
/// Longest delay before retrying a failed pass.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Runs the scheduler until `token` is cancelled.
pub async fn run(store: Arc<dyn Store>, token: CancellationToken) {
    let wake = Arc::new(Notify::new());
    let watcher = {
        let (store, token, wake) = (store.clone(), token.clone(), wake.clone());
        tokio::spawn(async move {
            follow(store, token, move |change| {
                if relevant(&change) {
                    wake.notify_one();
                }
            })
            .await;
        })
    };
    let mut retry: Option<Duration> = None;
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(retry.unwrap_or_default()), if retry.is_some() => {}
        }
        match pass(&*store)
            .instrument(tracing::debug_span!("schedule"))
            .await
        {
            Ok(()) => retry = None,
            Err(e) => {
                let delay = retry.map_or(RETRY_START, |d| (d * 2).min(RETRY_MAX));
                tracing::warn!(error = %e, retry_in = ?delay, "scheduling pass failed");
                retry = Some(delay);
            }
        }
    }
    watcher.abort();
}

/// Whether a change can alter where pods go.
fn relevant(change: &Observed) -> bool {
    let ev = match change {
        Observed::Resync => return true,
        Observed::Event(ev) => ev,
    };
    match &ev.object.kind() {
        Kind::Node | Kind::PersistentVolumeClaim => true,
        Kind::Pod => {
            let Some(pod) = ev.object.as_pod() else {
                return false;
            };
            // Status reports of running pods change nothing; arrivals, departures,
            // finished pods and pods still waiting do.
            ev.r#type != EventType::Modified
                || decide::needs_scheduling(pod)
                || matches!(podutil::phase(pod), "Succeeded" | "Failed")
        }
        _ => false,
    }
}

/// One pass: place every waiting pod and pin the claims of bound pods.
async fn pass(store: &dyn Store) -> Result<(), StoreError> {
    let nodes: Vec<_> = crate::store::list_typed(store, Kind::Node, None, Object::into_node);
    let pods: Vec<Pod> = crate::store::list_typed(store, Kind::Pod, None, Object::into_pod);
    if !pods.iter().any(decide::needs_scheduling)
        && !pods.iter().any(|p| !decide::pod_claims(p).is_empty())
    {
        return Ok(());
    }
    let claims: Vec<PersistentVolumeClaim> = crate::store::list_typed(
        store,
        Kind::PersistentVolumeClaim,
        None,
        Object::into_persistent_volume_claim,
    );
    let snap = Snapshot {
        nodes: &nodes,
        pods: &pods,
        claims: &claims,
    };
    let placements = decide::schedule(snap);
    let pins = decide::claims_to_pin(snap);
    let by_key: HashMap<(&str, &str), &Pod> = pods
        .iter()
        .map(|p| ((pod_ns(p), podutil::name(p)), p))
        .collect();
    let mut ops: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::new();
    for p in placements {
        let Some(pod) = by_key.get(&(p.namespace.as_str(), p.pod.as_str())).copied() else {
            continue;
        };
        match p.decision {
            Decision::Bind { node, claims } => ops.push(bind(store, pod, node, claims).boxed()),
            Decision::Unschedulable { message } => {
                ops.push(mark_unschedulable(store, pod, message).boxed())
            }
        }
    }
    for (ns, claim, node) in pins {
        ops.push(async move { bind_claim(store, &ns, &claim, &node).await }.boxed());
    }
    futures::future::join_all(ops)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, StoreError>>()?;
    Ok(())
}

fn pod_ns(pod: &Pod) -> &str {
    pod.metadata
        .as_ref()
        .map(|m| m.namespace.as_str())
        .unwrap_or("")
}

fn pod_rv(pod: &Pod) -> u64 {
    pod.metadata
        .as_ref()
        .and_then(|m| m.resource_version.parse().ok())
        .unwrap_or(0)
}

/// Ok(true) when a pod write went through; Ok(false) when the pod changed or went since
/// the pass read it (its change wakes the next pass, which sees it as it is now).
fn went_through(written: Result<Object, StoreError>, pod: &Pod) -> Result<bool, StoreError> {
    match written {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
            tracing::debug!(
                namespace = pod_ns(pod),
                pod = podutil::name(pod),
                "pod changed while being scheduled; the next pass sees it anew"
            );
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Sets (or replaces) the PodScheduled condition; false when it is already so.
fn set_scheduled(pod: &mut Pod, status: &str, reason: &str, message: &str) -> bool {
    let st = pod.status.get_or_insert_with(Default::default);
    if st.phase.is_empty() {
        st.phase = "Pending".into();
    }
    let cond = PodCondition {
        r#type: "PodScheduled".into(),
        status: status.into(),
        last_probe_time: String::new(),
        last_transition_time: twinset_proto::time::now(),
        reason: reason.into(),
        message: message.into(),
    };
    match st
        .conditions
        .iter_mut()
        .find(|c| c.r#type == "PodScheduled")
    {
        Some(c) if c.status == status && c.reason == reason && c.message == message => false,
        Some(c) => {
            *c = cond;
            true
        }
        None => {
            st.conditions.push(cond);
            true
        }
    }
}

/// Records an event about a pod (best effort: a failure is logged).
async fn record(store: &dyn Store, pod: &Pod, r#type: &str, reason: &str, message: &str) {
    events::record(
        store,
        &Object::from(pod.clone()),
        r#type,
        reason,
        message,
        &Source::component(COMPONENT),
    )
    .await;
}

async fn bind(
    store: &dyn Store,
    pod: &Pod,
    node: String,
    claims: Vec<String>,
) -> Result<(), StoreError> {
    let (ns, name) = (pod_ns(pod), podutil::name(pod));
    let mut bound = pod.clone();
    bound.spec.get_or_insert_with(Default::default).node_name = node.clone();
    set_scheduled(&mut bound, "True", "", "");
    let written = store
        .update(Object::from(bound.clone()), Some(pod_rv(pod)))
        .await;
    if !went_through(written, pod)? {
        return Ok(());
    }
    tracing::info!(namespace = ns, pod = name, node = %node, "bound pod");
    let message = format!("Successfully assigned {ns}/{name} to {node}");
    let claim_writes = claims.iter().map(|c| bind_claim(store, ns, c, &node));
    let (results, ()) = futures::join!(
        futures::future::join_all(claim_writes),
        record(store, &bound, events::NORMAL, "Scheduled", &message)
    );
    results
        .into_iter()
        .collect::<Result<Vec<()>, StoreError>>()?;
    Ok(())
}

async fn mark_unschedulable(
    store: &dyn Store,
    pod: &Pod,
    message: String,
) -> Result<(), StoreError> {
    let mut marked = pod.clone();
    if !set_scheduled(&mut marked, "False", "Unschedulable", &message) {
        return Ok(());
    }
    let written = store
        .update(Object::from(marked.clone()), Some(pod_rv(pod)))
        .await;
    if !went_through(written, pod)? {
        return Ok(());
    }
    tracing::info!(namespace = pod_ns(pod), pod = podutil::name(pod), %message, "pod is unschedulable");
    record(
        store,
        &marked,
        events::WARNING,
        "FailedScheduling",
        &message,
    )
    .await;
    Ok(())
}

/// Binds claim `ns/name` to `node` (read-modify-write): annotation, volume name, phase
/// Bound, capacity = request. A claim that is gone or already bound is left as it is.
pub async fn bind_claim(
    store: &dyn Store,
    ns: &str,
    name: &str,
    node: &str,
) -> Result<(), StoreError> {
    let key = Key::new(Kind::PersistentVolumeClaim, ns, name);
    let written = update_with_retry(store, &key, |obj| {
        let uid = obj.meta().uid.clone();
        let Some(c) = obj.as_persistent_volume_claim_mut() else {
            return Ok(Change::Keep);
        };
        match decide::selected_node(c) {
            "" => {}
            n if n == node => return Ok(Change::Keep),
            other => {
                tracing::warn!(
                    claim = name,
                    bound = other,
                    wanted = node,
                    "claim already bound to another node"
                );
                return Ok(Change::Keep);
            }
        }
        let m = c.metadata.get_or_insert_with(Default::default);
        m.annotations
            .insert(SELECTED_NODE_ANNOTATION.into(), node.to_string());
        let spec = c.spec.get_or_insert_with(Default::default);
        spec.volume_name = format!("pvc-{uid}");
        let capacity = spec
            .resources
            .as_ref()
            .map(|r| r.requests.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k == "storage")
            .collect();
        let access_modes = spec.access_modes.clone();
        let st = c.status.get_or_insert_with(Default::default);
        st.phase = "Bound".into();
        st.access_modes = access_modes;
        st.capacity = capacity;
        Ok(Change::Write)
    })
    .await;
    match written {
        Ok(outcome) => {
            if outcome.written() {
                tracing::info!(namespace = ns, claim = name, node, "bound claim");
            }
            Ok(())
        }
        Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
