//! Apply and Update: validation, server defaults, the created/configured/unchanged
//! outcome, missing namespaces, immutable fields, and which fields the server keeps.
//! What a kind's controller adds to an apply lives with it (see
//! [`crate::controllers::after_apply`]).

use super::status;
use crate::controllers::node_lifecycle::sync_unschedulable_taint;
use crate::store::{create_or_update, Change, Error as StoreError, Key, Outcome, Store};
use prost::Message;
use tonic::Status;
use twinset_proto::v1::{object::Kind as Variant, Namespace, NamespaceStatus, Object, ObjectMeta};
use twinset_proto::Kind;

/// The result of one apply.
#[derive(Debug)]
pub struct Applied {
    /// The object as stored (or as it would be, for a dry run).
    pub object: Object,
    /// "created", "configured" or "unchanged".
    pub outcome: &'static str,
    /// Side effects, e.g. "namespace/database created".
    pub notes: Vec<String>,
}

/// Fills namespace and defaults, then validates what would be stored, with the same
/// checks (and messages) as the CLI's, so a client that skips them gains nothing.
/// Returns the kind.
pub fn prepare(obj: &mut Object) -> Result<Kind, Status> {
    let kind = obj
        .kind_opt()
        .ok_or_else(|| Status::invalid_argument("the object has no kind"))?;
    if !kind.served() {
        return Err(super::not_served(kind.as_str()));
    }
    if kind.namespaced() && obj.namespace().is_empty() {
        obj.meta_mut().namespace = "default".into();
    }
    check_type_meta(obj, kind)?;
    twinset_proto::defaults::apply(obj);
    twinset_proto::validate::validate(obj).map_err(|e| Status::invalid_argument(e.to_string()))?;
    obj.set_type_meta();
    match &mut obj.kind {
        Some(Variant::Node(n)) => sync_unschedulable_taint(n),
        Some(Variant::Namespace(n)) => {
            let st = n.status.get_or_insert_with(Default::default);
            if st.phase.is_empty() {
                st.phase = "Active".into();
            }
        }
        _ => {}
    }
    Ok(kind)
}

/// Refuses an apiVersion or kind string the object's variant does not serve, as a
/// manifest with them is refused (a client that leaves them empty gets them filled).
fn check_type_meta(obj: &Object, kind: Kind) -> Result<(), Status> {
    let (api_version, kind_name) = match &obj.kind {
        Some(Variant::Namespace(o)) => (&o.api_version, &o.kind),
        Some(Variant::Node(o)) => (&o.api_version, &o.kind),
        Some(Variant::Pod(o)) => (&o.api_version, &o.kind),
        Some(Variant::DaemonSet(o)) => (&o.api_version, &o.kind),
        Some(Variant::StatefulSet(o)) => (&o.api_version, &o.kind),
        Some(Variant::Service(o)) => (&o.api_version, &o.kind),
        Some(Variant::PersistentVolumeClaim(o)) => (&o.api_version, &o.kind),
        Some(Variant::ControllerRevision(o)) => (&o.api_version, &o.kind),
        Some(Variant::Event(o)) => (&o.api_version, &o.kind),
        Some(Variant::BootstrapToken(o)) => (&o.api_version, &o.kind),
        None => return Ok(()),
    };
    let kind_name = if kind_name.is_empty() {
        kind.as_str()
    } else {
        kind_name.as_str()
    };
    if kind_name != kind.as_str() {
        return Err(Status::invalid_argument(format!(
            "kind {kind_name:?} does not match the object's type {}",
            kind.as_str()
        )));
    }
    if !api_version.is_empty() && api_version != kind.api_version() {
        return Err(Status::invalid_argument(format!(
            "no matches for kind {kind_name:?} in version {api_version:?} (use apiVersion: {})",
            kind.api_version()
        )));
    }
    Ok(())
}

/// Creates namespace `ns` when missing; true when it was (or, dry, would be) created.
pub async fn ensure_namespace(store: &dyn Store, ns: &str, dry_run: bool) -> Result<bool, Status> {
    if store.get(Kind::Namespace, "", ns).is_some() {
        return Ok(false);
    }
    if dry_run {
        return Ok(true);
    }
    let obj = Object::from(Namespace {
        metadata: Some(ObjectMeta {
            name: ns.into(),
            ..Default::default()
        }),
        status: Some(NamespaceStatus {
            phase: "Active".into(),
        }),
        ..Default::default()
    });
    match store.create(obj).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(status(e)),
    }
}

/// How one write is made: what the REST verbs and the gRPC Apply differ in.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Validate and report what would happen, write nothing.
    pub dry_run: bool,
    /// Refuse (ALREADY_EXISTS) an object that exists: kubectl create, a REST POST.
    pub create_only: bool,
    /// Refuse (NOT_FOUND) an object that does not exist: a REST PUT or PATCH.
    pub update_only: bool,
    /// Compare-and-swap: ABORTED (409 Conflict) unless the stored object is at this
    /// resourceVersion.
    pub resource_version: Option<u64>,
    /// Who writes: it owns the fields the write changes (metadata.managedFields).
    pub field_manager: String,
    /// A server-side apply of a configuration instead of the object's full state.
    pub server_side: Option<ServerSide>,
}

/// A server-side apply: the configuration as sent (fields it leaves out are not its
/// concern) and whether it takes fields other managers own.
#[derive(Clone, Debug)]
pub struct ServerSide {
    /// The applied configuration in its JSON shape.
    pub config: serde_json::Value,
    /// Take conflicting fields instead of refusing.
    pub force: bool,
}

/// The field manager of writes that name none (the twinset CLI's apply over gRPC).
pub const DEFAULT_MANAGER: &str = "twinset";

/// Creates the object or brings the stored one in line with it, then runs what its
/// kind's controller does after an apply ([`crate::controllers::after_apply`]).
pub async fn apply(store: &dyn Store, obj: Object, dry_run: bool) -> Result<Applied, Status> {
    apply_as(store, obj, dry_run, false).await
}

/// [`apply`], or with `create_only` a create that refuses an object that exists
/// (ALREADY_EXISTS), as kubectl create and a REST POST do.
pub async fn apply_as(
    store: &dyn Store,
    obj: Object,
    dry_run: bool,
    create_only: bool,
) -> Result<Applied, Status> {
    let opts = WriteOptions {
        dry_run,
        create_only,
        ..Default::default()
    };
    write(store, obj, &opts).await
}

/// One write as `opts` says: create, apply, replace, patch result or server-side apply.
/// `obj` is the object to write (for a server-side apply, the configuration decoded:
/// only its kind, namespace and name are used).
pub async fn write(store: &dyn Store, obj: Object, opts: &WriteOptions) -> Result<Applied, Status> {
    if opts.create_only {
        let mut probe = obj.clone();
        let kind = prepare(&mut probe)?;
        if store.get(kind, probe.namespace(), probe.name()).is_some() {
            return Err(status(StoreError::AlreadyExists {
                resource: kind.group_resource(),
                name: probe.name().to_string(),
            }));
        }
    }
    let mut applied = apply_object(store, obj, opts).await?;
    let notes = crate::controllers::after_apply(store, &applied.object, opts.dry_run).await?;
    applied.notes.extend(notes);
    Ok(applied)
}

/// The object a write asks for, given what is stored (`current`): the request's object,
/// or the result of a server-side apply; prepared, and with its managed fields.
fn desired(
    kind: Kind,
    obj: &Object,
    current: Option<&Object>,
    opts: &WriteOptions,
) -> Result<Object, Status> {
    let manager = if opts.field_manager.is_empty() {
        DEFAULT_MANAGER
    } else {
        opts.field_manager.as_str()
    };
    let now = twinset_proto::time::now();
    let writer = twinset_proto::managed::Writer {
        manager,
        api_version: kind.api_version(),
        time: &now,
    };
    let current_json = current.map(twinset_proto::manifest::to_value);
    let entries = current
        .map(|c| c.meta().managed_fields.clone())
        .unwrap_or_default();
    match &opts.server_side {
        None => {
            let mut o = obj.clone();
            let new_json = twinset_proto::manifest::to_value(&o);
            o.meta_mut().managed_fields = twinset_proto::managed::record_update(
                &kind,
                &entries,
                writer,
                current_json.as_ref(),
                &new_json,
            );
            Ok(o)
        }
        Some(ss) => {
            let empty = serde_json::Value::Object(Default::default());
            let r = twinset_proto::managed::apply(
                &kind,
                current_json.as_ref().unwrap_or(&empty),
                &entries,
                writer,
                &ss.config,
                ss.force,
            )
            .map_err(|e| match e {
                // 409 Conflict over REST, with kube-apiserver's message.
                twinset_proto::managed::ApplyError::Conflicts { message, .. } => {
                    Status::aborted(message)
                }
                other => Status::invalid_argument(other.to_string()),
            })?;
            let mut o = twinset_proto::manifest::decode_json(r.object)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            o.meta_mut().managed_fields = r.entries;
            prepare(&mut o)?;
            Ok(o)
        }
    }
}

/// ABORTED (409 Conflict) unless `current` is at the revision `opts` expects.
fn check_revision(current: &Object, opts: &WriteOptions) -> Result<(), Status> {
    match opts.resource_version {
        Some(expected) if expected != current.resource_version() => {
            Err(status(StoreError::Conflict {
                resource: current.kind().group_resource(),
                name: current.name().to_string(),
                expected,
                actual: current.resource_version(),
            }))
        }
        _ => Ok(()),
    }
}

async fn apply_object(
    store: &dyn Store,
    mut obj: Object,
    opts: &WriteOptions,
) -> Result<Applied, Status> {
    let kind = if opts.server_side.is_some() {
        // A configuration need not be a whole object: it is validated once merged.
        let kind = obj
            .kind_opt()
            .ok_or_else(|| Status::invalid_argument("the object has no kind"))?;
        if kind.namespaced() && obj.namespace().is_empty() {
            obj.meta_mut().namespace = "default".into();
        }
        kind
    } else {
        prepare(&mut obj)?
    };
    let mut notes = Vec::new();
    if kind.namespaced() && ensure_namespace(store, obj.namespace(), opts.dry_run).await? {
        notes.push(format!("namespace/{} created", obj.namespace()));
    }
    let missing = || status(StoreError::not_found(kind, obj.name()));
    if opts.dry_run {
        let (object, outcome) = match store.get(kind, obj.namespace(), obj.name()) {
            None if opts.update_only => return Err(missing()),
            None => (desired(kind, &obj, None, opts)?, "created"),
            Some(current) => {
                check_revision(&current, opts)?;
                let want = desired(kind, &obj, Some(&current), opts)?;
                if user_view(&current) == user_view(&want) {
                    (current, "unchanged")
                } else {
                    (merge(&current, &want)?, "configured")
                }
            }
        };
        return Ok(Applied {
            object,
            outcome,
            notes,
        });
    }
    let create = || {
        if opts.update_only {
            return Err(missing());
        }
        let mut fresh = desired(kind, &obj, None, opts)?;
        clear_server_fields(fresh.meta_mut());
        Ok::<_, Status>(fresh)
    };
    let edit = |current: &mut Object| {
        if opts.create_only {
            // Made by someone else between the check above and the write.
            return Err(status(StoreError::AlreadyExists {
                resource: current.kind().group_resource(),
                name: current.name().to_string(),
            }));
        }
        check_revision(current, opts)?;
        let want = desired(kind, &obj, Some(current), opts)?;
        if user_view(current) == user_view(&want)
            && current.meta().managed_fields == want.meta().managed_fields
        {
            return Ok(Change::Keep);
        }
        let managed = want.meta().managed_fields.clone();
        *current = merge(current, &want)?;
        current.meta_mut().managed_fields = managed;
        Ok(Change::Write)
    };
    let (object, outcome) = match create_or_update(store, &Key::of(&obj), create, edit).await? {
        Outcome::Created(o) => (o, "created"),
        Outcome::Updated(o) => (o, "configured"),
        Outcome::Unchanged(o) => (o, "unchanged"),
        Outcome::Deleted(o) => {
            return Err(Status::internal(format!(
                "apply deleted {}: this is a bug",
                o.describe()
            )))
        }
    };
    Ok(Applied {
        object,
        outcome,
        notes,
    })
}

/// Replaces an object; a resourceVersion in it makes the write a compare-and-swap.
pub async fn update(store: &dyn Store, mut obj: Object) -> Result<Object, Status> {
    let expected = super::parse_rv(&obj.meta().resource_version)?;
    let kind = prepare(&mut obj)?;
    let current = store
        .get(kind, obj.namespace(), obj.name())
        .ok_or_else(|| status(StoreError::not_found(kind, obj.name())))?;
    check_immutable(&current, &obj)?;
    let cm = current.meta();
    let (deleted, grace) = (
        cm.deletion_timestamp.clone(),
        cm.deletion_grace_period_seconds,
    );
    if !deleted.is_empty() {
        // Deletion, once requested, cannot be taken back.
        let m = obj.meta_mut();
        m.deletion_timestamp = deleted;
        m.deletion_grace_period_seconds = grace;
    }
    keep_pod_cidr(&current, &mut obj);
    store.update(obj, expected).await.map_err(status)
}

fn clear_server_fields(m: &mut ObjectMeta) {
    m.uid.clear();
    m.resource_version.clear();
    m.generation = 0;
    m.creation_timestamp.clear();
    m.deletion_timestamp.clear();
    m.deletion_grace_period_seconds = None;
}

/// What a user's manifest controls: spec (and the like), labels, annotations.
fn user_view(o: &Object) -> Vec<u8> {
    let mut v = o.clone();
    set_status(&mut v, None);
    let m = o.meta();
    *v.meta_mut() = ObjectMeta {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        labels: m.labels.clone(),
        annotations: m.annotations.clone(),
        ..Default::default()
    };
    v.encode_to_vec()
}

/// The stored object with the applied one's spec, labels and annotations.
fn merge(current: &Object, applied: &Object) -> Result<Object, Status> {
    check_immutable(current, applied)?;
    if !current.meta().deletion_timestamp.is_empty() {
        return Err(Status::aborted(format!(
            "{} {:?} is being deleted; apply again once it is gone",
            current.kind().group_resource(),
            current.name()
        )));
    }
    let mut merged = applied.clone();
    set_status(&mut merged, Some(current));
    let am = applied.meta();
    let mut meta = current.meta().clone();
    meta.labels = am.labels.clone();
    meta.annotations = am.annotations.clone();
    if !am.owner_references.is_empty() {
        meta.owner_references = am.owner_references.clone();
    }
    *merged.meta_mut() = meta;
    keep_pod_cidr(current, &mut merged);
    Ok(merged)
}

/// A node's pod range stays when an update omits it.
fn keep_pod_cidr(current: &Object, new: &mut Object) {
    if let (Some(cur), Some(n)) = (current.as_node(), new.as_node_mut()) {
        let cur_spec = cur.spec.clone().unwrap_or_default();
        let spec = n.spec.get_or_insert_with(Default::default);
        if spec.pod_cidr.is_empty() {
            spec.pod_cidr = cur_spec.pod_cidr;
            spec.pod_cidrs = cur_spec.pod_cidrs;
        }
    }
}

/// Copies the status of `from` into `to` (None: clears it).
fn set_status(to: &mut Object, from: Option<&Object>) {
    let f = from.and_then(|f| f.kind.as_ref());
    match &mut to.kind {
        Some(Variant::Namespace(t)) => {
            t.status = f.and_then(|f| {
                if let Variant::Namespace(x) = f {
                    x.status.clone()
                } else {
                    None
                }
            })
        }
        Some(Variant::Node(t)) => {
            t.status = f.and_then(|f| {
                if let Variant::Node(x) = f {
                    x.status.clone()
                } else {
                    None
                }
            })
        }
        Some(Variant::Pod(t)) => {
            t.status = f.and_then(|f| {
                if let Variant::Pod(x) = f {
                    x.status.clone()
                } else {
                    None
                }
            })
        }
        Some(Variant::DaemonSet(t)) => {
            t.status = f.and_then(|f| {
                if let Variant::DaemonSet(x) = f {
                    x.status.clone()
                } else {
                    None
                }
            })
        }
        Some(Variant::StatefulSet(t)) => {
            t.status = f.and_then(|f| {
                if let Variant::StatefulSet(x) = f {
                    x.status.clone()
                } else {
                    None
                }
            })
        }
        Some(Variant::Service(t)) => {
            t.status = f.and_then(|f| {
                if let Variant::Service(x) = f {
                    x.status
                } else {
                    None
                }
            })
        }
        Some(Variant::PersistentVolumeClaim(t)) => {
            t.status = f.and_then(|f| {
                if let Variant::PersistentVolumeClaim(x) = f {
                    x.status.clone()
                } else {
                    None
                }
            })
        }
        _ => {}
    }
}

fn invalid(o: &Object, field: &str, reason: &str) -> Status {
    Status::invalid_argument(format!(
        "{} {:?} is invalid: {field}: {reason}",
        o.kind().as_str(),
        o.name()
    ))
}

/// Refuses changes Kubernetes forbids after creation.
pub fn check_immutable(current: &Object, new: &Object) -> Result<(), Status> {
    match (&current.kind, &new.kind) {
        (Some(Variant::DaemonSet(c)), Some(Variant::DaemonSet(n))) => {
            let sel =
                |d: &twinset_proto::v1::DaemonSet| d.spec.as_ref().and_then(|s| s.selector.clone());
            if sel(c) != sel(n) {
                return Err(invalid(
                    new,
                    "spec.selector",
                    "Invalid value: field is immutable",
                ));
            }
        }
        (Some(Variant::StatefulSet(c)), Some(Variant::StatefulSet(n))) => {
            let frozen = |s: &twinset_proto::v1::StatefulSet| {
                let mut spec = s.spec.clone().unwrap_or_default();
                spec.replicas = None;
                spec.ordinals = None;
                spec.template = None;
                spec.update_strategy = None;
                spec.persistent_volume_claim_retention_policy = None;
                spec.min_ready_seconds = 0;
                spec.encode_to_vec()
            };
            if frozen(c) != frozen(n) {
                return Err(invalid(
                    new,
                    "spec",
                    "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', \
                     'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
        (Some(Variant::Pod(c)), Some(Variant::Pod(n))) => {
            let frozen = |p: &twinset_proto::v1::Pod| {
                let mut spec = p.spec.clone().unwrap_or_default();
                for ctr in spec
                    .containers
                    .iter_mut()
                    .chain(spec.init_containers.iter_mut())
                {
                    ctr.image.clear();
                }
                spec.active_deadline_seconds = None;
                spec.tolerations.clear();
                spec.encode_to_vec()
            };
            if frozen(c) != frozen(n) {
                return Err(invalid(
                    new,
                    "spec",
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, \
                     `spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` (only additions to existing tolerations)",
                ));
            }
        }
        (Some(Variant::PersistentVolumeClaim(c)), Some(Variant::PersistentVolumeClaim(n))) => {
            let frozen = |p: &twinset_proto::v1::PersistentVolumeClaim| {
                let mut spec = p.spec.clone().unwrap_or_default();
                spec.resources = None;
                spec.volume_name.clear();
                spec.encode_to_vec()
            };
            if frozen(c) != frozen(n) {
                return Err(invalid(
                    new,
                    "spec",
                    "Forbidden: spec is immutable after creation except resources.requests",
                ));
            }
        }
        (Some(Variant::Node(c)), Some(Variant::Node(n))) => {
            let cidr = |x: &twinset_proto::v1::Node| {
                x.spec
                    .as_ref()
                    .map(|s| s.pod_cidr.clone())
                    .unwrap_or_default()
            };
            if !cidr(c).is_empty() && !cidr(n).is_empty() && cidr(c) != cidr(n) {
                return Err(invalid(
                    new,
                    "spec.podCIDR",
                    "Forbidden: node updates may not change podCIDR except from \"\" to valid",
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use tonic::Code;

    fn manifest(text: &str) -> Object {
        twinset_proto::manifest::decode(text).unwrap().remove(0)
    }

    const DS: &str = include_str!("../../../deploy/examples/daemonset.yaml");

    #[tokio::test]
    async fn created_unchanged_configured() {
        let store = MemoryStore::new(100);
        let a = apply(&store, manifest(DS), false).await.unwrap();
        assert_eq!(a.outcome, "created");
        assert_eq!(a.notes, vec!["namespace/kube-system created"]);
        let ds = a.object.as_daemon_set().unwrap();
        assert_eq!(
            (ds.api_version.as_str(), ds.kind.as_str()),
            ("apps/v1", "DaemonSet")
        );
        let rev = store.current_revision();
        let b = apply(&store, manifest(DS), false).await.unwrap();
        assert_eq!((b.outcome, b.notes.len()), ("unchanged", 0));
        assert_eq!(store.current_revision(), rev, "unchanged writes nothing");
        // Re-applying the stored form (server fields and status included) is unchanged too.
        let yaml = twinset_proto::manifest::to_yaml(&b.object);
        assert_eq!(
            apply(&store, manifest(&yaml), false).await.unwrap().outcome,
            "unchanged"
        );
        let changed = DS.replace("datadog/agent:latest", "datadog/agent:7");
        let c = apply(&store, manifest(&changed), false).await.unwrap();
        assert_eq!(c.outcome, "configured");
        assert_eq!(c.object.meta().generation, 2);
        assert_eq!(c.object.meta().uid, a.object.meta().uid);
    }

    #[tokio::test]
    async fn selector_is_immutable_and_dry_run_writes_nothing() {
        let store = MemoryStore::new(100);
        let d = apply(&store, manifest(DS), true).await.unwrap();
        assert_eq!(d.outcome, "created");
        assert_eq!(store.current_revision(), 0);
        apply(&store, manifest(DS), false).await.unwrap();
        let other = DS.replace("app: node-monitor", "app: other");
        let err = apply(&store, manifest(&other), false).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("spec.selector"), "{}", err.message());
    }

    const STS: &str = include_str!("../../../deploy/examples/statefulset.yaml");

    #[tokio::test]
    async fn statefulset_immutable_fields_are_refused() {
        let store = MemoryStore::new(100);
        apply(&store, manifest(STS), false).await.unwrap();
        let forbidden = "StatefulSet \"mysql-db\" is invalid: spec: Forbidden: updates to statefulset spec for fields \
             other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' \
             and 'minReadySeconds' are forbidden";
        let changes = [
            ("serviceName: \"mysql\"", "serviceName: \"other\""),
            ("storage: 1Gi", "storage: 2Gi"),
            (
                "replicas: 3",
                "replicas: 3\n  podManagementPolicy: Parallel",
            ),
            ("app: mysql", "app: db"),
        ];
        for (from, to) in changes {
            let rev = store.current_revision();
            let err = apply(&store, manifest(&STS.replace(from, to)), false)
                .await
                .unwrap_err();
            assert_eq!(
                (err.code(), err.message()),
                (Code::InvalidArgument, forbidden),
                "{to}"
            );
            assert_eq!(store.current_revision(), rev, "{to}: nothing written");
        }
        // The mutable ones go through.
        for (from, to) in [
            ("replicas: 3", "replicas: 5"),
            ("image: mysql:8", "image: mysql:8.4"),
            ("replicas: 5", "replicas: 5\n  minReadySeconds: 3"),
        ] {
            let current = store
                .get(Kind::StatefulSet, "database", "mysql-db")
                .map(|o| twinset_proto::manifest::to_yaml(&o))
                .unwrap();
            let changed = current.replace(from, to);
            assert_ne!(changed, current, "{from}");
            let a = apply(&store, manifest(&changed), false).await.unwrap();
            assert_eq!(a.outcome, "configured", "{to}");
        }
    }

    #[tokio::test]
    async fn update_is_compare_and_swap() {
        let store = MemoryStore::new(100);
        let a = apply(&store, manifest(DS), false).await.unwrap().object;
        let mut stale = a.clone();
        stale.meta_mut().labels.insert("x".into(), "1".into());
        update(&store, stale.clone()).await.unwrap();
        let err = update(&store, stale).await.unwrap_err();
        assert_eq!(err.code(), Code::Aborted);
        let mut bad = a.clone();
        bad.meta_mut().resource_version = "abc".into();
        assert_eq!(
            update(&store, bad).await.unwrap_err().code(),
            Code::InvalidArgument
        );
        let mut missing = a;
        missing.meta_mut().name = "nope".into();
        missing.meta_mut().resource_version.clear();
        let err = update(&store, missing).await.unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::NotFound, "daemonsets.apps \"nope\" not found")
        );
    }

    /// What a gRPC client sends unchecked is validated after the defaults: a limit the
    /// defaults copy into the request, and an apiVersion the kind is not served in.
    #[tokio::test]
    async fn apply_validates_what_would_be_stored() {
        let store = MemoryStore::new(100);
        let mut obj = manifest(DS);
        let ds = obj.as_daemon_set_mut().unwrap();
        let c = &mut ds.spec.as_mut().unwrap().template.as_mut().unwrap();
        let r = c.spec.as_mut().unwrap().containers[0]
            .resources
            .as_mut()
            .unwrap();
        r.limits.insert("memory".into(), "12Qi".into());
        let err = apply(&store, obj.clone(), false).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().starts_with("DaemonSet \"node-monitor\" is invalid: spec.template.spec.containers[0].resources.limits[memory]: Invalid value: \"12Qi\""),
            "{}",
            err.message()
        );
        let err = update(&store, obj).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        let mut obj = manifest(DS);
        obj.as_daemon_set_mut().unwrap().api_version = "apps/v2".into();
        let err = apply(&store, obj, false).await.unwrap_err();
        assert_eq!(
            err.message(),
            "no matches for kind \"DaemonSet\" in version \"apps/v2\" (use apiVersion: apps/v1)"
        );
        assert_eq!(store.current_revision(), 0, "nothing written");
    }
}
