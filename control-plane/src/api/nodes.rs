//! The `twinset.v1.Nodes` service: what node agents call. Register (with pod range
//! allocation), Heartbeat, WatchAssignments (the pods bound to the node: a snapshot,
//! then every change, tagged with store revisions) and ReportStatus.

use super::authz::{peer_key, require_node};
use super::bootstrap::{csr_key, sign_node};
use super::{parse_rv, status, Ctx};
use crate::controllers::node_lifecycle::{
    heartbeat_ready, mark_posting, mark_ready, ready_status, sync_unschedulable_taint,
};
use crate::events::{self, Source};
use crate::join::issued;
use crate::join::pin;
use crate::pki::ClusterCa;
use crate::podutil;
use crate::scheduler::decide::SELECTED_NODE_ANNOTATION;
use crate::store::{
    try_update_with_retry, update_with_retry, Change, Error as StoreError, EventType, Key, Next,
    Store, WatchEvent, WatchStream,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use twinset_proto::v1::nodes_server::Nodes;
use twinset_proto::v1::{
    Assignment, HeartbeatRequest, HeartbeatResponse, Node, Object, Pod, RegisterRequest,
    RegisterResponse, RenewCertificateRequest, RenewCertificateResponse, ReportStatusRequest,
    ReportStatusResponse, WatchAssignmentsRequest,
};
use twinset_proto::Kind;

/// The Nodes service.
pub struct NodesService {
    ctx: Ctx,
    /// The CA that renews node certificates, and their lifetime.
    signer: Option<(Arc<ClusterCa>, Duration)>,
}

impl NodesService {
    /// A service over the shared context.
    pub fn new(ctx: Ctx) -> Self {
        NodesService { ctx, signer: None }
    }

    /// Renews node certificates with `ca`, each valid for `ttl`.
    pub fn with_signer(mut self, ca: Arc<ClusterCa>, ttl: Duration) -> Self {
        self.signer = Some((ca, ttl));
        self
    }

    fn store(&self) -> &dyn Store {
        &*self.ctx.store
    }

    /// A heartbeat's answer: the pod ranges, unless the agent holds this version already.
    fn pod_ranges_reply(&self, held: &str) -> HeartbeatResponse {
        let ranges = self.ctx.pod_ranges.borrow().clone();
        let unchanged = !held.is_empty() && held == ranges.version;
        HeartbeatResponse {
            pod_ranges: if unchanged {
                Vec::new()
            } else {
                ranges.ranges.clone()
            },
            pod_ranges_version: ranges.version.clone(),
            pod_ranges_unchanged: unchanged,
            cluster_cidr: self.ctx.cluster_cidr.clone(),
        }
    }

    fn node_not_found(name: &str) -> Status {
        status(StoreError::not_found(Kind::Node, name))
    }

    /// Merges the registering node into the stored one (made when it joined), with its
    /// pod range. The node must still be pinned to `key_sha256`, the caller's key, at
    /// the write: a node deleted or re-joined meanwhile is not brought back by it.
    async fn register_node(&self, reported: Node, key_sha256: &str) -> Result<Node, Status> {
        let name = reported
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        if !twinset_proto::validate::is_dns1123_subdomain(&name) {
            return Err(Status::invalid_argument(format!(
                "Node {name:?} is invalid: metadata.name: a lowercase RFC 1123 subdomain is required"
            )));
        }
        let _lock = self.ctx.register_lock.lock().await;
        let store = self.store();
        let now = twinset_proto::time::now();
        // What every registration does: a pod range when the node has none, Ready, and
        // the cordon taint in step with spec.unschedulable.
        let finish = |mut node: Node| -> Result<Object, Status> {
            let spec = node.spec.get_or_insert_with(Default::default);
            if spec.pod_cidr.is_empty() {
                let used: BTreeSet<String> = store
                    .list(Kind::Node, None)
                    .0
                    .iter()
                    .filter_map(|o| {
                        o.as_node()
                            .and_then(|n| n.spec.as_ref())
                            .map(|s| s.pod_cidr.clone())
                    })
                    .filter(|c| !c.is_empty())
                    .collect();
                let cidr = self
                    .ctx
                    .ipam
                    .allocate(&used)
                    .map_err(|e| Status::resource_exhausted(e.to_string()))?;
                spec.pod_cidrs = vec![cidr.clone()];
                spec.pod_cidr = cidr;
            }
            mark_ready(&mut node, &now);
            sync_unschedulable_taint(&mut node);
            let mut obj = Object::from(node);
            obj.set_type_meta();
            Ok(obj)
        };
        let merge = |obj: &mut Object| {
            let Some(cur) = obj.as_node() else {
                return Err(Status::internal(format!(
                    "stored {} is not a node",
                    obj.describe()
                )));
            };
            if !pin::key_matches_pin(Some(cur), key_sha256) {
                return Err(Status::unauthenticated(format!(
                    "node {name:?} was joined again with another key meanwhile"
                )));
            }
            // The stored node keeps what users set (labels added, taints, cordon); the
            // agent's labels win on their own keys; status is the agent's.
            let mut n = cur.clone();
            let m = n.metadata.get_or_insert_with(Default::default);
            if let Some(rm) = &reported.metadata {
                m.labels.extend(rm.labels.clone());
            }
            // How soon the agent fences its pods is the agent's to say, each time.
            let fence = twinset_proto::fencing::FENCE_WITHIN_ANNOTATION;
            match reported
                .metadata
                .as_ref()
                .and_then(|rm| rm.annotations.get(fence))
            {
                Some(v) => {
                    m.annotations.insert(fence.into(), v.clone());
                }
                None => {
                    m.annotations.remove(fence);
                }
            }
            // A node that joined but never registered (no pod range yet) takes the
            // agent's own taints (`--taints`), as a first registration would.
            let first = cur.spec.as_ref().is_none_or(|s| s.pod_cidr.is_empty());
            if first {
                let reported_taints = reported
                    .spec
                    .as_ref()
                    .map(|s| s.taints.clone())
                    .unwrap_or_default();
                let spec = n.spec.get_or_insert_with(Default::default);
                for t in reported_taints {
                    if !spec
                        .taints
                        .iter()
                        .any(|x| x.key == t.key && x.effect == t.effect)
                    {
                        spec.taints.push(t);
                    }
                }
            }
            n.status = reported.status.clone();
            let reported_cidr = reported
                .spec
                .as_ref()
                .map(|s| s.pod_cidr.clone())
                .unwrap_or_default();
            if !reported_cidr.is_empty() {
                let spec = n.spec.get_or_insert_with(Default::default);
                spec.pod_cidr = reported_cidr.clone();
                spec.pod_cidrs = vec![reported_cidr];
            }
            *obj = finish(n)?;
            Ok(Change::Write)
        };
        let key = Key::new(Kind::Node, "", &name);
        let stored = try_update_with_retry(store, &key, merge)
            .await
            .map_err(|e: Status| match e.code() {
                tonic::Code::NotFound => Status::unauthenticated(format!(
                    "node {name:?} was deleted meanwhile (join again with a token from `twinset token create`)"
                )),
                _ => e,
            })?;
        self.ctx.heartbeats.beat(&name);
        stored
            .into_object()
            .into_node()
            .ok_or_else(|| Status::internal("stored node is not a node"))
    }
}

fn bound_to(pod: &Pod, node: &str) -> bool {
    podutil::node_name(pod) == node
}

/// True when `obj` is a claim whose volume lives on `node` (the scheduler records the
/// node in the selected-node annotation when it binds the claim).
fn claim_bound_to(obj: &Object, node: &str) -> bool {
    obj.as_persistent_volume_claim().is_some()
        && obj
            .meta()
            .annotations
            .get(SELECTED_NODE_ANNOTATION)
            .map(String::as_str)
            == Some(node)
}

/// Node `node` set claim `kept`'s old folder aside: an event on the claim says where,
/// and the node leaves the claim's `lost-on` list (the claim may be bound there again).
async fn volume_kept_aside(store: &dyn Store, node: &str, kept: &twinset_proto::v1::KeptVolume) {
    let key = Key::new(Kind::PersistentVolumeClaim, &kept.namespace, &kept.claim);
    let written = update_with_retry(store, &key, |obj| {
        let m = obj.meta_mut();
        let mut lost = twinset_proto::fencing::lost_on(&m.annotations);
        if !lost.iter().any(|n| n == node) {
            return Ok(Change::Keep);
        }
        lost.retain(|n| n != node);
        twinset_proto::fencing::set_lost_on(&mut m.annotations, lost);
        Ok(Change::Write)
    })
    .await;
    let claim = match written {
        Ok(outcome) if outcome.written() => outcome.into_object(),
        Ok(_) | Err(StoreError::NotFound { .. }) => return,
        Err(e) => {
            tracing::warn!(node, claim = %kept.claim, error = %e, "cannot record a kept-aside volume");
            return;
        }
    };
    let message = if kept.path.is_empty() {
        format!("node {node} is back and had no data of this claim from before it was lost")
    } else {
        format!(
            "node {node} is back: the data this claim had there before the node was lost is kept at {} on {node} (the claim now has a new volume)",
            kept.path
        )
    };
    tracing::warn!(node, namespace = %kept.namespace, claim = %kept.claim, "{message}");
    crate::events::record(
        store,
        &claim,
        "Warning",
        "VolumeKeptAside",
        &message,
        &crate::events::Source::component("node-controller"),
    )
    .await;
}

/// True when `obj` is a claim unbound from `node` when the node was lost, whose old
/// folder `node` has not yet said it set aside.
fn claim_lost_on(obj: &Object, node: &str) -> bool {
    obj.as_persistent_volume_claim().is_some()
        && !claim_bound_to(obj, node)
        && twinset_proto::fencing::lost_on(&obj.meta().annotations)
            .iter()
            .any(|n| n == node)
}

/// The reason of the event an agent records on a pod it fenced (kept even when the pod
/// was replaced meanwhile).
pub const FENCED_REASON: &str = "Fenced";

/// The most encoded bytes of pods one SNAPSHOT part carries (a part holds at least one
/// pod); far below any client's receive limit, so a node with many large pods resyncs.
pub const SNAPSHOT_PART_BYTES: usize = 1024 * 1024;

/// Splits `pods` into parts of at most `budget` encoded bytes (one pod per part when a
/// pod alone is larger); never no part, so an empty snapshot is still one message.
pub fn snapshot_parts(pods: Vec<Pod>, budget: usize) -> Vec<Vec<Pod>> {
    let mut parts = vec![Vec::new()];
    let mut bytes = 0usize;
    for pod in pods {
        let size = prost::Message::encoded_len(&pod);
        let current = parts.last_mut().expect("parts is never empty");
        if !current.is_empty() && bytes.saturating_add(size) > budget {
            parts.push(Vec::new());
            bytes = 0;
        }
        bytes = bytes.saturating_add(size);
        parts.last_mut().expect("parts is never empty").push(pod);
    }
    parts
}

/// The SNAPSHOT of the pods bound to `node` (in parts, see [`snapshot_parts`]) and the
/// CLAIMS whose volumes live there, at the revision the pods were listed at.
fn snapshot(store: &dyn Store, node: &str) -> (Vec<Assignment>, u64) {
    let (objs, at) = store.list(Kind::Pod, None);
    let pods: Vec<Pod> = objs
        .into_iter()
        .filter_map(Object::into_pod)
        .filter(|p| bound_to(p, node))
        .collect();
    tracing::debug!(pods = pods.len(), rev = at, "sending snapshot");
    let parts = snapshot_parts(pods, SNAPSHOT_PART_BYTES);
    let last = parts.len() - 1;
    let mut out: Vec<Assignment> = parts
        .into_iter()
        .enumerate()
        .map(|(i, pods)| Assignment {
            r#type: "SNAPSHOT".into(),
            pods,
            resource_version: at.to_string(),
            claims: Vec::new(),
            more: i < last,
            lost_claims: Vec::new(),
        })
        .collect();
    // The claims bound here: the agent keeps their volume directories and may remove
    // the others.
    let (claims, _) = store.list(Kind::PersistentVolumeClaim, None);
    let claims = Assignment {
        r#type: "CLAIMS".into(),
        pods: Vec::new(),
        resource_version: at.to_string(),
        claims: claims
            .iter()
            .filter(|c| claim_bound_to(c, node))
            .map(|c| format!("{}/{}", c.namespace(), c.name()))
            .collect(),
        more: false,
        // Claims this node was lost with: their folders are set aside, never deleted.
        lost_claims: claims
            .iter()
            .filter(|c| claim_lost_on(c, node))
            .map(|c| format!("{}/{}", c.namespace(), c.name()))
            .collect(),
    };
    out.push(claims);
    (out, at)
}

/// What one store change means to the agent of `node`, if anything.
fn assignment(ev: WatchEvent, node: &str) -> Option<Assignment> {
    if ev.r#type == EventType::Deleted && claim_bound_to(&ev.object, node) {
        return Some(Assignment {
            r#type: "CLAIM_DELETED".into(),
            pods: Vec::new(),
            resource_version: ev.rev.to_string(),
            claims: vec![format!("{}/{}", ev.object.namespace(), ev.object.name())],
            more: false,
            lost_claims: Vec::new(),
        });
    }
    if ev.r#type != EventType::Deleted && claim_lost_on(&ev.object, node) {
        return Some(Assignment {
            r#type: "CLAIM_LOST".into(),
            pods: Vec::new(),
            resource_version: ev.rev.to_string(),
            claims: vec![format!("{}/{}", ev.object.namespace(), ev.object.name())],
            more: false,
            lost_claims: Vec::new(),
        });
    }
    let pod = ev.object.into_pod()?;
    if !bound_to(&pod, node) {
        return None;
    }
    Some(Assignment {
        r#type: ev.r#type.as_str().into(),
        pods: vec![pod],
        resource_version: ev.rev.to_string(),
        claims: Vec::new(),
        more: false,
        lost_claims: Vec::new(),
    })
}

/// Why an open assignment stream must end: the node's name was joined again with
/// another key (a new Node pinned to it), so the certificate the stream was opened with
/// no longer speaks for the node and must not receive the new node's pods. A deleted
/// node's stream goes on: it carries the deletions that stop the old node's pods, and
/// nothing can be bound to a name that no node holds.
fn revoked(ev: &WatchEvent, node: &str, key_sha256: &str) -> Option<Status> {
    let n = ev.object.as_node()?;
    if ev.r#type == EventType::Deleted
        || ev.object.name() != node
        || pin::key_matches_pin(Some(n), key_sha256)
    {
        return None;
    }
    Some(Status::unauthenticated(format!(
        "the certificate of \"system:node:{node}\" is no longer valid: node \"{node}\" is \
         joined with another key"
    )))
}

/// The assignment stream of one node: snapshot, then changes; resumes from the agent's
/// revision when the history still holds it, else (and whenever the history runs out)
/// starts with a fresh snapshot. It ends when the node is joined again with a key other
/// than `key_sha256`, the one of the certificate it was opened with ([`revoked`]).
async fn assignments(
    ctx: Ctx,
    node: String,
    key_sha256: String,
    from: Option<u64>,
    tx: mpsc::Sender<Result<Assignment, Status>>,
) {
    let listed_node = node.clone();
    let mut stream = WatchStream::resume(ctx.store.clone(), from, move |store| {
        snapshot(store, &listed_node)
    });
    loop {
        let next = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tx.closed() => return,
            next = stream.next() => next,
        };
        let out: Vec<Assignment> = match next {
            Ok(Next::Listed(snapshot)) => snapshot,
            Ok(Next::Event(ev)) => {
                if let Some(refused) = revoked(&ev, &node, &key_sha256) {
                    tracing::warn!(node, "assignment stream ended: {}", refused.message());
                    let _ = tx.send(Err(refused)).await;
                    return;
                }
                assignment(*ev, &node).into_iter().collect()
            }
            Err(e) => {
                let _ = tx.send(Err(status(e))).await;
                return;
            }
        };
        for a in out {
            if tx.send(Ok(a)).await.is_err() {
                return;
            }
        }
    }
}

#[tonic::async_trait]
impl Nodes for NodesService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let name = request
            .get_ref()
            .node
            .as_ref()
            .and_then(|n| n.metadata.as_ref())
            .map(|m| m.name.clone())
            .unwrap_or_default();
        // A node registers only itself.
        require_node(&request, self.store(), &name, "register")?;
        let key = peer_key(&request).unwrap_or_default();
        let reported = request
            .into_inner()
            .node
            .ok_or_else(|| Status::invalid_argument("node is required"))?;
        let node = self
            .register_node(reported, &key)
            .instrument(tracing::info_span!("register", node = %name))
            .await?;
        tracing::info!(node = %name, pod_cidr = %node.spec.as_ref().map(|s| s.pod_cidr.as_str()).unwrap_or(""), "node registered");
        if let Some(warning) =
            crate::controllers::node_loss::fence_warning(&node, self.ctx.replace_after)
        {
            tracing::warn!(node = %name, "{warning}");
            events::record(
                self.store(),
                &Object::from(node.clone()),
                "Warning",
                "FencesTooLate",
                &warning,
                &Source::component("node-controller"),
            )
            .await;
        }
        Ok(Response::new(RegisterResponse { node: Some(node) }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        require_node(
            &request,
            self.store(),
            &request.get_ref().node_name,
            "post a heartbeat",
        )?;
        let HeartbeatRequest {
            node_name: name,
            assignments_not_synced,
            pod_ranges_version,
            kept_aside,
        } = request.into_inner();
        for kept in kept_aside
            .iter()
            .take(twinset_proto::fencing::MAX_KEPT_PER_HEARTBEAT)
        {
            volume_kept_aside(self.store(), &name, kept).await;
        }
        // require_node found the node; a deletion since is caught by the update below.
        let store = self.store();
        self.ctx.heartbeats.beat(&name);
        let interval = self.ctx.status_write_interval;
        let ready = heartbeat_ready(&assignments_not_synced);
        let mut was_ready = true;
        let mut was_shown = true;
        let written = update_with_retry(store, &Key::new(Kind::Node, "", &name), |obj| {
            let Some(node) = obj.as_node_mut() else {
                return Err(StoreError::not_found(Kind::Node, &name));
            };
            let last_written = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
                .and_then(|c| twinset_proto::time::parse(&c.last_heartbeat_time));
            let stale = last_written.is_none_or(|t| t.elapsed().unwrap_or_default() >= interval);
            was_ready = ready_status(node) == "True";
            was_shown = ready.is_stored_in(node);
            if was_shown && !stale {
                return Ok(Change::Keep);
            }
            mark_posting(node, &twinset_proto::time::now(), &ready);
            Ok(Change::Write)
        })
        .await;
        match written {
            Ok(outcome) if outcome.written() && !was_shown => {
                if ready.status == "True" {
                    if !was_ready {
                        tracing::info!(node = %name, "node is posting status again: Ready");
                    }
                } else {
                    tracing::warn!(node = %name, reason = ready.reason, message = %ready.message, "node is NotReady");
                }
            }
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => return Err(Self::node_not_found(&name)),
            // The node keeps changing: the heartbeat is noted; the status catches up next time.
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(status(e)),
        }
        Ok(Response::new(self.pod_ranges_reply(&pod_ranges_version)))
    }

    type WatchAssignmentsStream = ReceiverStream<Result<Assignment, Status>>;

    async fn watch_assignments(
        &self,
        request: Request<WatchAssignmentsRequest>,
    ) -> Result<Response<Self::WatchAssignmentsStream>, Status> {
        require_node(
            &request,
            self.store(),
            &request.get_ref().node_name,
            "watch assignments",
        )?;
        let key = peer_key(&request).unwrap_or_default();
        let r = request.into_inner();
        let from = parse_rv(&r.resource_version)?;
        let (tx, rx) = mpsc::channel(256);
        let span = tracing::info_span!("assignments", node = %r.node_name);
        tokio::spawn(assignments(self.ctx.clone(), r.node_name, key, from, tx).instrument(span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn renew_certificate(
        &self,
        request: Request<RenewCertificateRequest>,
    ) -> Result<Response<RenewCertificateResponse>, Status> {
        let node = request.get_ref().node_name.clone();
        require_node(&request, self.store(), &node, "renew the certificate")?;
        let key = peer_key(&request).unwrap_or_default();
        let r = request.into_inner();
        let Some((ca, ttl)) = &self.signer else {
            return Err(Status::unimplemented(
                "this control plane has no CA to renew certificates with",
            ));
        };
        let csr_key = csr_key(&r.csr_der)?;
        // The node's identity is its key (pinned at join): a renewal certifies that key
        // again. Changing keys is a re-join (delete the node, join with a token).
        if !twinset_proto::token::hashes_equal(&csr_key, &key) {
            tracing::warn!(node, "refused: renewal for another key");
            return Err(Status::permission_denied(format!(
                "User \"system:node:{node}\" cannot renew the certificate for another key: a \
                 renewal keeps the key the node joined with"
            )));
        }
        let certs = sign_node(ca, &r.csr_der, &node, *ttl)?;
        issued::record(self.store(), &node, &certs)
            .await
            .map_err(status)?;
        tracing::info!(
            node,
            serial = %certs.client.serial,
            not_after = %issued::rfc3339(certs.client.not_after.unix_timestamp()),
            "node certificate renewed"
        );
        Ok(Response::new(RenewCertificateResponse {
            certificate_pem: certs.client.cert_pem,
            ca_pem: ca.cert_pem().to_string(),
            serving_certificate_pem: certs.serving.cert_pem,
        }))
    }

    async fn report_status(
        &self,
        request: Request<ReportStatusRequest>,
    ) -> Result<Response<ReportStatusResponse>, Status> {
        // Only for itself; the pod must then be bound to it (checked below).
        require_node(
            &request,
            self.store(),
            &request.get_ref().node_name,
            "report pod status",
        )?;
        let user = super::authz::identity(&request).user();
        let r = request.into_inner();
        let ns = if r.namespace.is_empty() {
            "default".to_string()
        } else {
            r.namespace.clone()
        };
        let store = self.store();
        let span =
            tracing::info_span!("report", node = %r.node_name, namespace = %ns, name = %r.pod_name);
        let source = Source {
            component: "kubelet".into(),
            host: r.node_name.clone(),
        };
        async {
            let current = store
                .get(Kind::Pod, &ns, &r.pod_name)
                .filter(|o| r.pod_uid.is_empty() || o.meta().uid == r.pod_uid);
            if current.is_none() {
                // A pod replaced while its node was cut off: its agent's word that it
                // fenced it is still news (the only events kept of a pod that is gone).
                let earlier = Object::from(Pod {
                    metadata: Some(twinset_proto::v1::ObjectMeta {
                        name: r.pod_name.clone(),
                        namespace: ns.clone(),
                        uid: r.pod_uid.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                for ev in r.events.iter().filter(|e| e.reason == FENCED_REASON) {
                    events::record(store, &earlier, &ev.r#type, &ev.reason, &ev.message, &source)
                        .await;
                }
            }
            let Some(obj) = store.get(Kind::Pod, &ns, &r.pod_name) else {
                // Already gone: a terminated report is then simply done.
                return if r.terminated {
                    Ok(Response::new(ReportStatusResponse {}))
                } else {
                    Err(status(StoreError::not_found(Kind::Pod, &r.pod_name)))
                };
            };
            if !r.pod_uid.is_empty() && obj.meta().uid != r.pod_uid {
                // A report about an earlier pod of the same name: nothing to do.
                return Ok(Response::new(ReportStatusResponse {}));
            }
            let bound_elsewhere = |pod: &Object| {
                let node = pod.as_pod().map(podutil::node_name).unwrap_or("");
                (node != r.node_name).then(|| {
                    tracing::warn!(%user, node, "refused: status report for a pod of another node");
                    Status::permission_denied(format!(
                        "User \"{user}\" cannot report status for pod {ns}/{}: it is bound to node {node:?}, not {:?}",
                        r.pod_name, r.node_name
                    ))
                })
            };
            if let Some(refused) = bound_elsewhere(&obj) {
                return Err(refused);
            }
            for ev in &r.events {
                events::record(store, &obj, &ev.r#type, &ev.reason, &ev.message, &source).await;
            }
            let key = Key::new(Kind::Pod, &ns, &r.pod_name);
            let written = try_update_with_retry(store, &key, |cur: &mut Object| {
                if !r.pod_uid.is_empty() && cur.meta().uid != r.pod_uid {
                    return Ok(Change::Keep);
                }
                if let Some(refused) = bound_elsewhere(cur) {
                    return Err(refused);
                }
                if r.terminated {
                    return Ok(Change::Delete);
                }
                let (Some(new_status), Some(pod)) = (r.status.clone(), cur.as_pod_mut()) else {
                    return Ok(Change::Keep);
                };
                if pod.status.as_ref() == Some(&new_status) {
                    return Ok(Change::Keep);
                }
                pod.status = Some(new_status);
                Ok(Change::Write)
            })
            .await;
            match written {
                Ok(_) => Ok(Response::new(ReportStatusResponse {})),
                Err(e) if r.terminated && e.code() == tonic::Code::NotFound => {
                    Ok(Response::new(ReportStatusResponse {}))
                }
                Err(e) => Err(e),
            }
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::authz::as_node;
    use crate::controllers::node_lifecycle::Heartbeats;
    use crate::store::memory::MemoryStore;
    use tokio_util::sync::CancellationToken;
    use twinset_proto::v1::{NodeSpec, ObjectMeta, Taint};

    fn pod_of(bytes: usize) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                annotations: [("a".to_string(), "x".repeat(bytes))].into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_stream_ends_when_its_node_is_joined_again_with_another_key() {
        let ev = |t: EventType, name: &str, key: &str| WatchEvent {
            r#type: t,
            object: Object::from(pin::joined_node(name, key, "2026-12-01T00:00:00Z")),
            rev: 7,
        };
        // The same key (a heartbeat, a registration): the stream goes on.
        assert!(revoked(&ev(EventType::Modified, "n1", "k1"), "n1", "k1").is_none());
        // Another node, or a deletion (whose pod removals must still reach the agent).
        assert!(revoked(&ev(EventType::Added, "n2", "k2"), "n1", "k1").is_none());
        assert!(revoked(&ev(EventType::Deleted, "n1", "k1"), "n1", "k1").is_none());
        // The name joined again with another key: the old certificate's stream ends.
        let s = revoked(&ev(EventType::Added, "n1", "k2"), "n1", "k1").unwrap();
        assert_eq!(s.code(), tonic::Code::Unauthenticated);
        assert_eq!(
            s.message(),
            "the certificate of \"system:node:n1\" is no longer valid: node \"n1\" is joined \
             with another key"
        );
        // A pod event is no node event.
        let pod = WatchEvent {
            r#type: EventType::Added,
            object: Object::from(pod_of(1)),
            rev: 8,
        };
        assert!(revoked(&pod, "n1", "k1").is_none());
    }

    #[test]
    fn snapshots_split_into_parts_within_the_budget() {
        use prost::Message;
        let pods: Vec<Pod> = (0..10).map(|_| pod_of(300)).collect();
        let one = pods[0].encoded_len();
        let parts = snapshot_parts(pods, 3 * one);
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
        for p in &parts {
            assert!(p.iter().map(Message::encoded_len).sum::<usize>() <= 3 * one);
        }
        // A pod larger than the budget goes alone; nothing is dropped.
        let parts = snapshot_parts(vec![pod_of(10), pod_of(5000), pod_of(10)], 1000);
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
        // No pods: still one (empty) part, so the agent hears of the empty node.
        assert_eq!(snapshot_parts(Vec::new(), 1000), vec![Vec::<Pod>::new()]);
    }

    fn service() -> NodesService {
        NodesService::new(Ctx {
            store: Arc::new(MemoryStore::new(100)),
            shutdown: CancellationToken::new(),
            heartbeats: Arc::new(Heartbeats::default()),
            ipam: crate::ipam::Ipam::new("10.0.0.0/16", 24).unwrap(),
            register_lock: Arc::default(),
            status_write_interval: Duration::from_secs(30),
            max_request_bytes: crate::api::DEFAULT_MAX_REQUEST_BYTES,
            watch_slots: crate::api::slots::WatchSlots::new(10, 10, 10),
            pod_ranges: crate::pod_ranges::cell(),
            cluster_cidr: "10.0.0.0/16".into(),
            replace_after: Duration::from_secs(6),
        })
    }

    fn node(name: &str, label: (&str, &str)) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                labels: [(label.0.to_string(), label.1.to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The key every test node joined with.
    const KEY: &str = "test-key";

    /// Registers `n` as its agent would: joined (pinned to [`KEY`]) first when new.
    async fn register(svc: &NodesService, n: Node) -> Node {
        let name = n
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        if svc.store().get(Kind::Node, "", &name).is_none() {
            let now = twinset_proto::time::now();
            let mut joined = Object::from(pin::joined_node(&name, KEY, &now));
            joined.set_type_meta();
            svc.store().create(joined).await.unwrap();
        }
        svc.register(as_node(&name, KEY, RegisterRequest { node: Some(n) }))
            .await
            .unwrap()
            .into_inner()
            .node
            .unwrap()
    }

    #[tokio::test]
    async fn reregistration_keeps_range_user_labels_and_taints() {
        let svc = service();
        let first = register(&svc, node("n1", ("a", "1"))).await;
        assert_eq!(first.spec.as_ref().unwrap().pod_cidr, "10.0.0.0/24");
        assert_eq!(ready_status(&first), "True");
        assert_eq!(
            register(&svc, node("n2", ("a", "1")))
                .await
                .spec
                .unwrap()
                .pod_cidr,
            "10.0.1.0/24"
        );

        // A user labels and taints n1; the agent registers again with a new label value.
        let mut edited = first.clone();
        edited
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .insert("disk".into(), "ssd".into());
        edited
            .spec
            .get_or_insert_with(NodeSpec::default)
            .taints
            .push(Taint {
                key: "k".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        let rv = edited
            .metadata
            .as_ref()
            .unwrap()
            .resource_version
            .parse()
            .ok();
        svc.store().update(Object::from(edited), rv).await.unwrap();
        let again = register(&svc, node("n1", ("a", "2"))).await;
        let labels = &again.metadata.as_ref().unwrap().labels;
        assert_eq!(
            (labels["a"].as_str(), labels["disk"].as_str()),
            ("2", "ssd")
        );
        assert_eq!(again.spec.as_ref().unwrap().pod_cidr, "10.0.0.0/24");
        assert_eq!(again.spec.as_ref().unwrap().taints.len(), 1);

        // An operator-given range wins.
        let mut lab = node("n3", ("a", "1"));
        lab.spec = Some(NodeSpec {
            pod_cidr: "192.168.5.0/24".into(),
            ..Default::default()
        });
        assert_eq!(
            register(&svc, lab).await.spec.unwrap().pod_cidr,
            "192.168.5.0/24"
        );

        let bad = svc
            .register(as_node(
                "Bad_Name",
                KEY,
                RegisterRequest {
                    node: Some(node("Bad_Name", ("a", "1"))),
                },
            ))
            .await;
        // No node of that name ever joined: nothing may speak for it.
        assert_eq!(bad.unwrap_err().code(), tonic::Code::Unauthenticated);
        let err = svc
            .heartbeat(as_node(
                "nope",
                KEY,
                HeartbeatRequest {
                    node_name: "nope".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }

    #[tokio::test]
    async fn heartbeats_say_whether_the_agent_can_sync() {
        let svc = service();
        register(&svc, node("n1", ("a", "1"))).await;
        let beat = |error: &str| {
            svc.heartbeat(as_node(
                "n1",
                KEY,
                HeartbeatRequest {
                    node_name: "n1".into(),
                    assignments_not_synced: error.into(),
                    ..Default::default()
                },
            ))
        };
        let ready = || {
            let n = svc
                .store()
                .get(Kind::Node, "", "n1")
                .and_then(Object::into_node)
                .unwrap();
            let c = n
                .status
                .unwrap()
                .conditions
                .into_iter()
                .find(|c| c.r#type == "Ready")
                .unwrap();
            (c.status, c.reason, c.message)
        };
        beat("").await.unwrap();
        assert_eq!(ready().0, "True");
        beat("decoded message length too large").await.unwrap();
        assert_eq!(
            ready(),
            (
                "False".to_string(),
                "AssignmentsNotSynced".to_string(),
                "node agent cannot sync its pod assignments: decoded message length too large"
                    .to_string()
            )
        );
        beat("").await.unwrap();
        assert_eq!(ready().0, "True");
        assert_eq!(ready().1, "KubeletReady");
    }

    #[tokio::test]
    async fn heartbeats_carry_the_pod_ranges_until_the_agent_holds_them() {
        let svc = service();
        register(&svc, node("n1", ("a", "1"))).await;
        let mut stored = svc
            .store()
            .get(Kind::Node, "", "n1")
            .and_then(Object::into_node)
            .unwrap();
        stored.status.get_or_insert_with(Default::default).addresses =
            vec![twinset_proto::v1::NodeAddress {
                r#type: "InternalIP".into(),
                address: "192.168.50.11".into(),
            }];
        let ranges = crate::pod_ranges::PodRanges::of([&stored]);
        svc.ctx.pod_ranges.send_replace(Arc::new(ranges.clone()));
        let beat = |version: &str| {
            svc.heartbeat(as_node(
                "n1",
                KEY,
                HeartbeatRequest {
                    node_name: "n1".into(),
                    pod_ranges_version: version.into(),
                    ..Default::default()
                },
            ))
        };
        let first = beat("").await.unwrap().into_inner();
        assert!(!first.pod_ranges_unchanged);
        assert_eq!(first.cluster_cidr, "10.0.0.0/16");
        assert_eq!(first.pod_ranges.len(), 1);
        let r = &first.pod_ranges[0];
        let cidr = stored.spec.as_ref().unwrap().pod_cidr.clone();
        assert!(cidr.starts_with("10.0."), "{cidr}");
        assert_eq!(
            (
                r.node_name.as_str(),
                r.pod_cidr.as_str(),
                r.node_ip.as_str()
            ),
            ("n1", cidr.as_str(), "192.168.50.11")
        );
        assert_eq!(first.pod_ranges_version, ranges.version);
        let again = beat(&first.pod_ranges_version).await.unwrap().into_inner();
        assert!(
            again.pod_ranges_unchanged,
            "an agent holding them gets none"
        );
        assert!(again.pod_ranges.is_empty());
        let stale = beat("0000").await.unwrap().into_inner();
        assert_eq!(
            stale.pod_ranges, first.pod_ranges,
            "an old version gets them all"
        );
    }
}
