//! `get` tables: one set of columns per kind, as kubectl prints them
//! (printers.go), laid out by the tab writer with kubectl's padding.
use super::format::{self, NONE};
use super::status;
use super::tabwriter::TabWriter;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::{Container, Object, PodTemplateSpec};

/// How `get` was asked to print.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    /// `-o wide`: the extra columns.
    pub wide: bool,
    /// `-A`: a NAMESPACE column first (namespaced kinds only).
    pub all_namespaces: bool,
    /// `--show-labels`: a LABELS column last.
    pub show_labels: bool,
    /// `--no-headers`.
    pub no_headers: bool,
}

/// Renders `objects` (all of `kind`) as kubectl's table for that kind.
pub fn render(kind: Kind, objects: &[Object], opts: TableOptions) -> String {
    let mut w = TabWriter::table();
    write(&mut w, kind, objects, opts);
    w.finish()
}

/// Writes the header (unless `no_headers`) and one row per object into `w`.
pub fn write(w: &mut TabWriter, kind: Kind, objects: &[Object], opts: TableOptions) {
    let (base, wide) = headers(kind);
    let namespace_column = opts.all_namespaces && kind.namespaced();
    if !opts.no_headers {
        let mut cells: Vec<&str> = Vec::new();
        if namespace_column {
            cells.push("NAMESPACE");
        }
        cells.extend_from_slice(base);
        if opts.wide {
            cells.extend_from_slice(wide);
        }
        if opts.show_labels {
            cells.push("LABELS");
        }
        w.write(&cells.join("\t"));
        w.write("\n");
    }
    for obj in objects {
        let (base, wide) = row(kind, obj);
        let mut cells: Vec<String> = Vec::new();
        if namespace_column {
            cells.push(obj.namespace().to_string());
        }
        cells.extend(base);
        if opts.wide {
            cells.extend(wide);
        }
        if opts.show_labels {
            cells.push(format::labels(&obj.meta().labels));
        }
        w.write(&cells.join("\t"));
        w.write("\n");
    }
}

/// The column headers of `kind`: the default ones and those `-o wide` adds.
pub fn headers(kind: Kind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        Kind::DaemonSet => (
            &[
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE SELECTOR",
                "AGE",
            ],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::StatefulSet => (&["NAME", "READY", "AGE"], &["CONTAINERS", "IMAGES"]),
        Kind::Pod => (
            &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            &["IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
        ),
        Kind::Node => (
            &["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
            &[
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
            ],
        ),
        Kind::Namespace => (&["NAME", "STATUS", "AGE"], &[]),
        Kind::PersistentVolumeClaim => (
            &[
                "NAME",
                "STATUS",
                "VOLUME",
                "CAPACITY",
                "ACCESS MODES",
                "STORAGECLASS",
                "AGE",
            ],
            &["VOLUMEMODE"],
        ),
        Kind::Service => (
            &[
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
            &["SELECTOR"],
        ),
        Kind::ControllerRevision => (&["NAME", "CONTROLLER", "REVISION", "AGE"], &[]),
        Kind::Event => (
            &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
            &["SUBOBJECT", "SOURCE", "FIRST SEEN", "COUNT", "NAME"],
        ),
    }
}

/// The cells of one object: default columns and `-o wide` columns.
pub fn row(kind: Kind, obj: &Object) -> (Vec<String>, Vec<String>) {
    let meta = obj.meta();
    let name = meta.name.clone();
    let age = format::age(&meta.creation_timestamp);
    match kind {
        Kind::DaemonSet => {
            let ds = obj.as_daemon_set().cloned().unwrap_or_default();
            let spec = ds.spec.unwrap_or_default();
            let st = ds.status.unwrap_or_default();
            let node_selector = spec
                .template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .map(|s| format::labels(&s.node_selector))
                .unwrap_or_else(|| NONE.to_string());
            let (containers, images) = containers_images(spec.template.as_ref());
            (
                vec![
                    name,
                    st.desired_number_scheduled.to_string(),
                    st.current_number_scheduled.to_string(),
                    st.number_ready.to_string(),
                    st.updated_number_scheduled.to_string(),
                    st.number_available.to_string(),
                    node_selector,
                    age,
                ],
                vec![
                    containers,
                    images,
                    format::label_selector(spec.selector.as_ref()),
                ],
            )
        }
        Kind::StatefulSet => {
            let sts = obj.as_stateful_set().cloned().unwrap_or_default();
            let spec = sts.spec.unwrap_or_default();
            let st = sts.status.unwrap_or_default();
            let (containers, images) = containers_images(spec.template.as_ref());
            (
                vec![
                    name,
                    format!("{}/{}", st.ready_replicas, spec.replicas.unwrap_or(1)),
                    age,
                ],
                vec![containers, images],
            )
        }
        Kind::Pod => {
            let pod = obj.as_pod().cloned().unwrap_or_default();
            let summary = status::pod_summary(&pod);
            let spec = pod.spec.unwrap_or_default();
            let st = pod.status.unwrap_or_default();
            (
                vec![
                    name,
                    summary.ready.clone(),
                    summary.status.clone(),
                    summary.restarts_column(),
                    age,
                ],
                vec![
                    format::or_none(&st.pod_ip),
                    format::or_none(&spec.node_name),
                    format::or_none(&st.nominated_node_name),
                    NONE.to_string(),
                ],
            )
        }
        Kind::Node => {
            let node = obj.as_node().cloned().unwrap_or_default();
            let info = node
                .status
                .as_ref()
                .and_then(|s| s.node_info.clone())
                .unwrap_or_default();
            (
                vec![
                    name,
                    status::node_status(&node),
                    status::node_roles(&node),
                    age,
                    info.kubelet_version.clone(),
                ],
                vec![
                    status::node_address(&node, "InternalIP"),
                    status::node_address(&node, "ExternalIP"),
                    format::or_none(&info.os_image),
                    format::or_none(&info.kernel_version),
                    format::or_none(&info.container_runtime_version),
                ],
            )
        }
        Kind::Namespace => {
            let ns = obj.as_namespace().cloned().unwrap_or_default();
            let phase = ns.status.map(|s| s.phase).unwrap_or_default();
            (vec![name, phase, age], vec![])
        }
        Kind::PersistentVolumeClaim => {
            let pvc = obj
                .as_persistent_volume_claim()
                .cloned()
                .unwrap_or_default();
            let spec = pvc.spec.unwrap_or_default();
            let st = pvc.status.unwrap_or_default();
            let capacity = st.capacity.get("storage").cloned().unwrap_or_default();
            let class = spec
                .storage_class_name
                .clone()
                .unwrap_or_else(|| "<unset>".to_string());
            let mode = if spec.volume_mode.is_empty() {
                "Filesystem".to_string()
            } else {
                spec.volume_mode.clone()
            };
            (
                vec![
                    name,
                    st.phase.clone(),
                    spec.volume_name.clone(),
                    capacity,
                    format::access_modes(&st.access_modes),
                    class,
                    age,
                ],
                vec![mode],
            )
        }
        Kind::Service => {
            let svc = obj.as_service().cloned().unwrap_or_default();
            let spec = svc.spec.unwrap_or_default();
            let ty = if spec.r#type.is_empty() {
                "ClusterIP".to_string()
            } else {
                spec.r#type.clone()
            };
            let ports: Vec<String> = spec
                .ports
                .iter()
                .map(|p| {
                    let proto = if p.protocol.is_empty() {
                        "TCP"
                    } else {
                        &p.protocol
                    };
                    if p.node_port != 0 {
                        format!("{}:{}/{proto}", p.port, p.node_port)
                    } else {
                        format!("{}/{proto}", p.port)
                    }
                })
                .collect();
            let ports = if ports.is_empty() {
                NONE.to_string()
            } else {
                ports.join(",")
            };
            (
                vec![
                    name,
                    ty,
                    format::or_none(&spec.cluster_ip),
                    NONE.to_string(),
                    ports,
                    age,
                ],
                vec![format::labels(&spec.selector)],
            )
        }
        Kind::ControllerRevision => {
            let cr = obj.as_controller_revision().cloned().unwrap_or_default();
            let controller = meta
                .owner_references
                .iter()
                .find(|r| r.controller == Some(true))
                .or_else(|| meta.owner_references.first())
                .map(|r| {
                    let qualified = Kind::parse(&r.kind)
                        .map(|k| k.qualified().to_string())
                        .unwrap_or_else(|| r.kind.to_lowercase());
                    format!("{qualified}/{}", r.name)
                })
                .unwrap_or_else(|| NONE.to_string());
            (vec![name, controller, cr.revision.to_string(), age], vec![])
        }
        Kind::Event => {
            let ev = obj.as_event().cloned().unwrap_or_default();
            let last = event_last_seen(&ev);
            let involved = ev.involved_object.clone().unwrap_or_default();
            let object = format!("{}/{}", involved.kind.to_lowercase(), involved.name);
            let source = ev
                .source
                .as_ref()
                .map(|s| {
                    if s.host.is_empty() {
                        s.component.clone()
                    } else {
                        format!("{}, {}", s.component, s.host)
                    }
                })
                .unwrap_or_default();
            let first = if ev.first_timestamp.is_empty() {
                meta.creation_timestamp.clone()
            } else {
                ev.first_timestamp.clone()
            };
            (
                vec![
                    format::age(&last),
                    ev.r#type.clone(),
                    ev.reason.clone(),
                    object,
                    ev.message.trim().to_string(),
                ],
                vec![
                    involved.field_path.clone(),
                    source,
                    format::age(&first),
                    ev.count.max(1).to_string(),
                    name,
                ],
            )
        }
    }
}

/// When an event was last seen: lastTimestamp, else firstTimestamp, else its creation.
pub fn event_last_seen(ev: &twinset_proto::v1::Event) -> String {
    if !ev.last_timestamp.is_empty() {
        ev.last_timestamp.clone()
    } else if !ev.first_timestamp.is_empty() {
        ev.first_timestamp.clone()
    } else {
        ev.metadata
            .as_ref()
            .map(|m| m.creation_timestamp.clone())
            .unwrap_or_default()
    }
}

fn containers_images(template: Option<&PodTemplateSpec>) -> (String, String) {
    let containers: &[Container] = template
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers.iter().map(|c| c.image.as_str()).collect();
    (names.join(","), images.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{
        DaemonSet, DaemonSetSpec, DaemonSetStatus, LabelSelector, Namespace, NamespaceStatus,
        ObjectMeta, PodSpec,
    };

    fn ds(name: &str, ns: &str) -> Object {
        let mut sel = LabelSelector::default();
        sel.match_labels.insert("app".into(), name.into());
        Object::from(DaemonSet {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: ns.into(),
                ..Default::default()
            }),
            spec: Some(DaemonSetSpec {
                selector: Some(sel),
                template: Some(PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "monitor".into(),
                            image: "datadog/agent:latest".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: Some(DaemonSetStatus {
                desired_number_scheduled: 3,
                current_number_scheduled: 3,
                number_ready: 3,
                updated_number_scheduled: 3,
                number_available: 3,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn daemonset_table_all_namespaces() {
        let out = render(
            Kind::DaemonSet,
            &[ds("node-monitor", "kube-system")],
            TableOptions {
                all_namespaces: true,
                ..Default::default()
            },
        );
        assert_eq!(
            out,
            "NAMESPACE     NAME           DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR   AGE\n\
             kube-system   node-monitor   3         3         3       3            3           <none>          <unknown>\n"
        );
    }

    #[test]
    fn daemonset_table_wide() {
        let out = render(
            Kind::DaemonSet,
            &[ds("node-monitor", "kube-system")],
            TableOptions {
                wide: true,
                ..Default::default()
            },
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].ends_with("AGE         CONTAINERS   IMAGES                 SELECTOR"));
        assert!(
            lines[1].ends_with("<unknown>   monitor      datadog/agent:latest   app=node-monitor")
        );
    }

    #[test]
    fn namespace_table_ignores_all_namespaces() {
        let ns = Object::from(Namespace {
            metadata: Some(ObjectMeta {
                name: "default".into(),
                ..Default::default()
            }),
            status: Some(NamespaceStatus {
                phase: "Active".into(),
            }),
            ..Default::default()
        });
        let out = render(
            Kind::Namespace,
            &[ns],
            TableOptions {
                all_namespaces: true,
                ..Default::default()
            },
        );
        assert_eq!(
            out,
            "NAME      STATUS   AGE\ndefault   Active   <unknown>\n"
        );
    }

    #[test]
    fn no_headers_and_labels() {
        let mut obj = ds("a", "default");
        obj.meta_mut().labels.insert("k".into(), "v".into());
        let out = render(Kind::StatefulSet, &[], TableOptions::default());
        assert_eq!(out, "NAME   READY   AGE\n");
        let out = render(
            Kind::DaemonSet,
            &[obj],
            TableOptions {
                no_headers: true,
                show_labels: true,
                ..Default::default()
            },
        );
        assert!(out.starts_with("a     3"), "{out}");
        assert!(out.trim_end().ends_with("k=v"));
    }
}
