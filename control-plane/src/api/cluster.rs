//! The `twinset.v1.Cluster` service: what `twinset` (and any gRPC client) calls.

use super::{apply, eviction, logs, namespace_for, parse_kind, parse_rv, status, tokens, Ctx};
use crate::deletion::{self, Propagation};
use crate::store::{try_update_with_retry, Change, Error as StoreError, Key, Store, WatchStream};
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};
use twinset_proto::fields::FieldSelector;
use twinset_proto::selector::Selector;
use twinset_proto::tls::server::AgentDialer;
use twinset_proto::v1::cluster_server::Cluster;
use twinset_proto::v1::{
    ApplyRequest, ApplyResponse, CreateTokenRequest, CreateTokenResponse, DeleteRequest,
    DeleteResponse, DeleteTokenRequest, DeleteTokenResponse, EvictRequest, EvictResponse,
    GetRequest, GetResponse, ListCertificatesRequest, ListCertificatesResponse, ListRequest,
    ListResponse, ListTokensRequest, ListTokensResponse, LogsRequest, Object, ObjectKey,
    ScaleRequest, ScaleResponse, UpdateRequest, UpdateResponse, WatchEvent, WatchRequest,
};
use twinset_proto::Kind;

/// Namespaces that exist from the start and cannot be deleted.
pub const SYSTEM_NAMESPACES: [&str; 2] = ["default", "kube-system"];

/// The Cluster service.
pub struct ClusterService {
    ctx: Ctx,
    /// The SHA-256 of the cluster CA that new join tokens pin (None: no CA, so no tokens).
    ca_hash: Option<String>,
    /// The certificates `certs check` lists (None: no TLS, nothing to list).
    certs: Option<Arc<crate::certs::OwnCerts>>,
    /// How agents are called for logs (None: no TLS identity, so no logs).
    agents: Option<AgentDialer>,
    /// Held while an eviction decides and deletes, so concurrent evictions never pass
    /// the same disruption budget twice.
    evictions: tokio::sync::Mutex<()>,
}

impl ClusterService {
    /// A service over the shared context.
    pub fn new(ctx: Ctx) -> Self {
        ClusterService {
            ctx,
            ca_hash: None,
            certs: None,
            agents: None,
            evictions: tokio::sync::Mutex::new(()),
        }
    }

    /// The same service making join tokens for the CA whose hash is `ca_hash`
    /// ([`crate::pki::ClusterCa::hash`]); without it CreateToken is refused.
    pub fn with_ca_hash(mut self, ca_hash: String) -> Self {
        self.ca_hash = Some(ca_hash);
        self
    }

    /// Lists the control plane's certificates (and the nodes') from `certs`.
    pub fn with_certificates(mut self, certs: Arc<crate::certs::OwnCerts>) -> Self {
        self.certs = Some(certs);
        self
    }

    /// The same service calling agents (for Logs) with `agents`; without it Logs is
    /// refused.
    pub fn with_agent_dialer(mut self, agents: AgentDialer) -> Self {
        self.agents = Some(agents);
        self
    }

    /// The largest write request users are told about (`--max-request-bytes`).
    pub(crate) fn max_request_bytes(&self) -> usize {
        self.ctx.max_request_bytes
    }

    /// The store the service reads and writes.
    pub(crate) fn store(&self) -> &dyn Store {
        &*self.ctx.store
    }

    /// One write as `opts` says (the REST API's create, replace, patch and server-side
    /// apply; the gRPC Apply is the same with default options).
    pub async fn write(
        &self,
        obj: Object,
        opts: &apply::WriteOptions,
    ) -> Result<apply::Applied, Status> {
        let span = tracing::info_span!("write", kind = %obj.kind(), namespace = obj.namespace(), name = obj.name());
        tracing::Instrument::instrument(apply::write(self.store(), obj, opts), span).await
    }
}

fn required<T>(v: Option<T>, what: &str) -> Result<T, Status> {
    v.ok_or_else(|| Status::invalid_argument(format!("{what} is required")))
}

fn key_parts(key: Option<ObjectKey>) -> Result<(Kind, String, String), Status> {
    let key = required(key, "key")?;
    let kind = parse_kind(&key.kind)?;
    if key.name.is_empty() {
        return Err(Status::invalid_argument("resource name may not be empty"));
    }
    Ok((kind, namespace_for(kind, &key.namespace), key.name))
}

/// The list's field selector for `kind` (unknown fields refused as Kubernetes does).
fn field_selector(kind: Kind, s: &str) -> Result<FieldSelector, Status> {
    FieldSelector::parse(kind, s).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// Refuses to delete a claim that a pod on a node still mounts (Kubernetes keeps such a
/// claim Terminating until the pod is gone; Twinset says no and why, so data is never
/// pulled from under a running pod). Finished pods and pods not yet placed (e.g. one
/// waiting for a node its claim is pinned to) do not count.
fn claim_not_in_use(store: &dyn Store, ns: &str, name: &str) -> Result<(), Status> {
    let user = store
        .list(Kind::Pod, Some(ns))
        .0
        .into_iter()
        .filter_map(Object::into_pod)
        .filter(|p| !crate::podutil::node_name(p).is_empty())
        .filter(|p| !matches!(crate::podutil::phase(p), "Succeeded" | "Failed"))
        .find(|p| crate::scheduler::decide::pod_claims(p).contains(&name));
    match user {
        Some(p) => Err(Status::failed_precondition(format!(
            "persistentvolumeclaims {name:?} is in use by pod {:?}: delete the pod (or scale its StatefulSet down) first",
            crate::podutil::name(&p)
        ))),
        None => Ok(()),
    }
}

/// Which changes a Cluster Watch passes on: kind, namespace and labels.
struct WatchFilter {
    kind: Option<Kind>,
    namespace: String,
    labels: Selector,
}

impl WatchFilter {
    /// Internal kinds (join tokens) never pass, whatever the filter names.
    fn matches(&self, o: &Object) -> bool {
        o.kind().served()
            && self.kind.is_none_or(|k| k == o.kind())
            && (self.namespace.is_empty() || self.namespace == o.namespace())
            && self.labels.matches(&o.meta().labels)
    }
}

fn label_selector(s: &str) -> Result<Selector, Status> {
    Selector::parse(s)
        .map_err(|e| Status::invalid_argument(format!("invalid label selector {s:?}: {e}")))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        super::check_request_size(request.get_ref(), self.ctx.max_request_bytes)?;
        let r = request.into_inner();
        let obj = required(r.object, "object")?;
        let span = tracing::info_span!("apply", kind = %obj.kind(), namespace = obj.namespace(), name = obj.name());
        let applied = tracing::Instrument::instrument(
            apply::apply_as(self.store(), obj, r.dry_run, r.create_only),
            span,
        )
        .await?;
        Ok(Response::new(ApplyResponse {
            object: Some(applied.object),
            outcome: applied.outcome.to_string(),
            notes: applied.notes,
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        super::check_request_size(request.get_ref(), self.ctx.max_request_bytes)?;
        let obj = required(request.into_inner().object, "object")?;
        let object = apply::update(self.store(), obj).await?;
        Ok(Response::new(UpdateResponse {
            object: Some(object),
        }))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let (kind, ns, name) = key_parts(request.into_inner().key)?;
        let object = self
            .store()
            .get(kind, &ns, &name)
            .ok_or_else(|| status(StoreError::not_found(kind, &name)))?;
        Ok(Response::new(GetResponse {
            object: Some(object),
        }))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let r = request.into_inner();
        let kind = parse_kind(&r.kind)?;
        let labels = label_selector(&r.label_selector)?;
        let fields = field_selector(kind, &r.field_selector)?;
        let ns = (kind.namespaced() && !r.namespace.is_empty()).then_some(r.namespace.as_str());
        let (items, rev) = self.store().list(kind, ns);
        let items = items
            .into_iter()
            .filter(|o| labels.matches(&o.meta().labels) && fields.matches(o))
            .collect();
        Ok(Response::new(ListResponse {
            items,
            resource_version: rev.to_string(),
        }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // The stream holds its slot for as long as it lives.
        let slot = self.ctx.watch_slots.acquire(
            super::authz::peer_addr(&request),
            &super::authz::identity(&request).user(),
        )?;
        let r = request.into_inner();
        let kind = if r.kind.is_empty() {
            None
        } else {
            Some(parse_kind(&r.kind)?)
        };
        let filter = Arc::new(WatchFilter {
            kind,
            namespace: r.namespace,
            labels: label_selector(&r.label_selector)?,
        });
        let store = self.ctx.store.clone();
        let from = parse_rv(&r.resource_version)?.unwrap_or_else(|| store.current_revision());
        // The store tests the filter before it queues a change for this stream.
        let mut stream = WatchStream::watch_from(store, from)
            .filtered(Arc::new(move |ev| filter.matches(&ev.object)));
        // A revision the history no longer holds fails the call itself.
        stream.open().map_err(status)?;
        // Pulled, not pushed: the transport asks for the next change only when the client
        // has room for it (HTTP/2 flow control), so a client that stops reading leaves its
        // changes in the store's bounded, shared queue and nothing is copied for it.
        // One change per poll: after each change the stream is Pending once, so the
        // encoder hands each message to the transport on its own instead of batching
        // up to its 32 KiB threshold (which a stalled stream would then hold, per stream).
        let token = self.ctx.shutdown.clone();
        let events = futures::stream::unfold(Some((stream, slot, false)), move |state| {
            let token = token.clone();
            async move {
                let (mut stream, slot, sent) = state?;
                if sent {
                    tokio::task::yield_now().await;
                }
                let ev = tokio::select! {
                    _ = token.cancelled() => return None,
                    ev = stream.next_event() => ev,
                };
                match ev {
                    Ok(ev) => {
                        let out = WatchEvent {
                            r#type: ev.r#type.as_str().to_string(),
                            resource_version: ev.rev.to_string(),
                            object: Some(ev.object),
                        };
                        Some((Ok(out), Some((stream, slot, true))))
                    }
                    // The stream fell behind or the history ran out (the client relists),
                    // or the store is closing: the last item, then the end.
                    Err(e) => Some((Err(status(e)), None)),
                }
            }
        });
        Ok(Response::new(Box::pin(events)))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let r = request.into_inner();
        let (kind, ns, name) = key_parts(r.key)?;
        let propagation =
            match r.propagation_policy.as_str() {
                "" | "Background" => Propagation::Background,
                "Orphan" => Propagation::Orphan,
                "Foreground" => return Err(Status::unimplemented(
                    "propagationPolicy Foreground is not supported yet; use Background or Orphan",
                )),
                other => {
                    return Err(Status::invalid_argument(format!(
                        "invalid propagationPolicy {other:?}: expected Background or Orphan"
                    )))
                }
            };
        if r.grace_period_seconds.is_some_and(|g| g < 0) {
            return Err(Status::invalid_argument(
                "gracePeriodSeconds must be 0 or greater",
            ));
        }
        let store = self.store();
        if kind == Kind::PersistentVolumeClaim {
            claim_not_in_use(store, &ns, &name)?;
        }
        let span =
            tracing::info_span!("delete", kind = kind.as_str(), namespace = %ns, name = %name);
        let work = async {
            match kind {
                Kind::Pod => deletion::delete_pod(store, &ns, &name, r.grace_period_seconds).await,
                Kind::Node => {
                    let res = deletion::delete_node(store, &name).await;
                    self.ctx.heartbeats.forget(&name);
                    res
                }
                _ => deletion::delete_owner(store, kind, &ns, &name, propagation).await,
            }
        };
        if kind == Kind::Namespace {
            return self.delete_namespace(&name).await;
        }
        let object = tracing::Instrument::instrument(work, span)
            .await
            .map_err(status)?;
        Ok(Response::new(DeleteResponse {
            object: Some(object),
        }))
    }

    async fn scale(
        &self,
        request: Request<ScaleRequest>,
    ) -> Result<Response<ScaleResponse>, Status> {
        let r = request.into_inner();
        let (kind, ns, name) = key_parts(r.key)?;
        twinset_proto::validate::validate_replicas(kind, &name, r.replicas)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let store = self.store();
        // A missing object is NotFound before the kind is judged (as before).
        if store.get(kind, &ns, &name).is_none() {
            return Err(status(StoreError::not_found(kind, &name)));
        }
        match kind {
            Kind::StatefulSet => {}
            Kind::DaemonSet => {
                return Err(Status::invalid_argument(format!(
                    "daemonsets.apps {name:?} cannot be scaled: a DaemonSet runs one pod on each eligible node \
                     (choose the nodes with a nodeSelector instead)"
                )))
            }
            other => return Err(Status::invalid_argument(format!("{} {name:?} cannot be scaled", other.group_resource()))),
        }
        let scaled = try_update_with_retry(store, &Key::new(kind, &ns, &name), |obj| {
            if let Some(sts) = obj.as_stateful_set_mut() {
                sts.spec.get_or_insert_with(Default::default).replicas = Some(r.replicas);
            }
            // The scaled object passes the same validation as an applied one.
            twinset_proto::validate::validate(obj)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            Ok::<_, Status>(Change::Write)
        })
        .await?;
        Ok(Response::new(ScaleResponse {
            object: Some(scaled.into_object()),
        }))
    }

    async fn evict(
        &self,
        request: Request<EvictRequest>,
    ) -> Result<Response<EvictResponse>, Status> {
        let r = request.into_inner();
        let span = tracing::info_span!("evict", namespace = %r.namespace, name = %r.name);
        let object = tracing::Instrument::instrument(
            eviction::evict(self.store(), &self.evictions, r),
            span,
        )
        .await?;
        Ok(Response::new(EvictResponse {
            object: Some(object),
        }))
    }

    type LogsStream = logs::LogStream;

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let agents = self.agents.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this control plane has no certificate to call agents with, so it cannot show logs",
            )
        })?;
        let stream = logs::proxy(
            self.store(),
            agents,
            request.into_inner(),
            self.ctx.shutdown.clone(),
        )
        .await?;
        Ok(Response::new(stream))
    }

    // ---- join tokens (issue 9): see api/tokens.rs

    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let ca_hash = self.ca_hash.as_deref().ok_or_else(|| {
            Status::failed_precondition(
                "this control plane has no cluster CA, so it cannot make join tokens",
            )
        })?;
        let r = request.into_inner();
        tokens::create_token(self.store(), ca_hash, r, std::time::SystemTime::now())
            .await
            .map(Response::new)
    }

    async fn list_certificates(
        &self,
        _request: Request<ListCertificatesRequest>,
    ) -> Result<Response<ListCertificatesResponse>, Status> {
        let certs = self.certs.as_ref().ok_or_else(|| {
            Status::unimplemented("this control plane holds no certificates (no TLS)")
        })?;
        Ok(Response::new(ListCertificatesResponse {
            certificates: certs.list(self.store()),
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        Ok(Response::new(tokens::list_tokens(
            self.store(),
            request.into_inner(),
        )))
    }

    async fn delete_token(
        &self,
        request: Request<DeleteTokenRequest>,
    ) -> Result<Response<DeleteTokenResponse>, Status> {
        tokens::delete_token(self.store(), request.into_inner())
            .await
            .map(Response::new)
    }
}

impl ClusterService {
    /// Deletes an empty namespace; cascading namespace deletion is not implemented.
    async fn delete_namespace(&self, name: &str) -> Result<Response<DeleteResponse>, Status> {
        if SYSTEM_NAMESPACES.contains(&name) {
            return Err(Status::permission_denied(format!(
                "namespaces {name:?} is forbidden: this namespace may not be deleted"
            )));
        }
        let store = self.store();
        if store.get(Kind::Namespace, "", name).is_none() {
            return Err(status(StoreError::not_found(Kind::Namespace, name)));
        }
        let busy: Vec<String> = Kind::ALL
            .into_iter()
            .filter(|k| k.namespaced() && *k != Kind::Event)
            .filter_map(|k| {
                let n = store.list(k, Some(name)).0.len();
                (n > 0).then(|| format!("{n} {}", k.resource()))
            })
            .collect();
        if !busy.is_empty() {
            return Err(Status::failed_precondition(format!(
                "namespace {name:?} is not empty (it holds {}): delete those first; deleting a namespace with its contents is not implemented yet",
                busy.join(", ")
            )));
        }
        for ev in store.list(Kind::Event, Some(name)).0 {
            match store.delete(Kind::Event, name, ev.name(), None).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(status(e)),
            }
        }
        let object = store
            .delete(Kind::Namespace, "", name, None)
            .await
            .map_err(status)?;
        Ok(Response::new(DeleteResponse {
            object: Some(object),
        }))
    }
}
