//! `get` tables: one set of columns per kind, as kubectl prints them
//! (printers.go), laid out by the tab writer with kubectl's padding.
use super::format::{self, NONE};
use super::tabwriter::TabWriter;
use super::{claim, service, status};
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
            &["VOLUMEMODE", "NODE"],
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
        // Not served by `get` (see `twinset token list`); named for completeness.
        Kind::BootstrapToken => (&["NAME", "AGE"], &[]),
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
            let c = claim::Claim::of(&pvc);
            (
                vec![
                    name,
                    c.status_column(),
                    c.volume,
                    c.capacity,
                    c.access_modes,
                    c.storage_class,
                    age,
                ],
                vec![
                    c.volume_mode.unwrap_or_else(|| "<unset>".to_string()),
                    format::or_none(&c.node),
                ],
            )
        }
        Kind::Service => {
            let svc = obj.as_service().cloned().unwrap_or_default();
            let spec = svc.spec.unwrap_or_default();
            (
                vec![
                    name,
                    service::type_of(&spec),
                    service::cluster_ip_column(&spec),
                    service::external_ip_column(&spec),
                    service::ports_column(&spec),
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
        Kind::BootstrapToken => (vec![name, age], vec![]),
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

    fn sts(name: &str, ns: &str, replicas: i32, ready: i32) -> Object {
        use twinset_proto::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
        Object::from(StatefulSet {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: ns.into(),
                ..Default::default()
            }),
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                template: Some(PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![
                            Container {
                                name: "mysql".into(),
                                image: "mysql:8".into(),
                                ..Default::default()
                            },
                            Container {
                                name: "sidecar".into(),
                                image: "busybox:latest".into(),
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                replicas,
                ready_replicas: ready,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn statefulset_table() {
        let objs = [
            sts("mysql-db", "database", 3, 3),
            sts("web", "default", 4, 1),
        ];
        assert_eq!(
            render(Kind::StatefulSet, &objs, TableOptions::default()),
            "NAME       READY   AGE\n\
             mysql-db   3/3     <unknown>\n\
             web        1/4     <unknown>\n"
        );
        assert_eq!(
            render(
                Kind::StatefulSet,
                &objs,
                TableOptions {
                    all_namespaces: true,
                    ..Default::default()
                }
            ),
            "NAMESPACE   NAME       READY   AGE\n\
             database    mysql-db   3/3     <unknown>\n\
             default     web        1/4     <unknown>\n"
        );
        assert_eq!(
            render(
                Kind::StatefulSet,
                &objs[..1],
                TableOptions {
                    wide: true,
                    ..Default::default()
                }
            ),
            "NAME       READY   AGE         CONTAINERS      IMAGES\n\
             mysql-db   3/3     <unknown>   mysql,sidecar   mysql:8,busybox:latest\n"
        );
    }

    fn pvc(name: &str, bound_to: Option<&str>) -> Object {
        use twinset_proto::v1::{
            PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
        };
        let mut meta = ObjectMeta {
            name: name.into(),
            namespace: "database".into(),
            uid: "0b5e".into(),
            ..Default::default()
        };
        let mut spec = PersistentVolumeClaimSpec {
            access_modes: vec!["ReadWriteOnce".into()],
            volume_mode: "Filesystem".into(),
            ..Default::default()
        };
        let mut status = PersistentVolumeClaimStatus {
            phase: "Pending".into(),
            ..Default::default()
        };
        if let Some(node) = bound_to {
            meta.annotations
                .insert("volume.kubernetes.io/selected-node".into(), node.into());
            spec.volume_name = "pvc-0b5e".into();
            status.phase = "Bound".into();
            status.access_modes = vec!["ReadWriteOnce".into(), "ReadWriteOncePod".into()];
            status.capacity.insert("storage".into(), "1Gi".into());
        }
        Object::from(PersistentVolumeClaim {
            metadata: Some(meta),
            spec: Some(spec),
            status: Some(status),
            ..Default::default()
        })
    }

    #[test]
    fn pvc_table() {
        let objs = [
            pvc("mysql-storage-mysql-db-0", Some("node2")),
            pvc("mysql-storage-mysql-db-1", None),
        ];
        assert_eq!(
            render(Kind::PersistentVolumeClaim, &objs, TableOptions::default()),
            "NAME                       STATUS    VOLUME     CAPACITY   ACCESS MODES   STORAGECLASS   AGE\n\
             mysql-storage-mysql-db-0   Bound     pvc-0b5e   1Gi        RWO,RWOP                      <unknown>\n\
             mysql-storage-mysql-db-1   Pending                                                       <unknown>\n"
        );
        let mut deleting = pvc("data-web-0", None);
        deleting.meta_mut().deletion_timestamp = "2024-03-05T07:08:09Z".into();
        if let Some(spec) = deleting
            .as_persistent_volume_claim_mut()
            .and_then(|c| c.spec.as_mut())
        {
            spec.volume_mode.clear();
        }
        assert_eq!(
            render(
                Kind::PersistentVolumeClaim,
                &[objs[0].clone(), deleting],
                TableOptions {
                    wide: true,
                    ..Default::default()
                }
            ),
            "NAME                       STATUS        VOLUME     CAPACITY   ACCESS MODES   STORAGECLASS   AGE         VOLUMEMODE   NODE\n\
             mysql-storage-mysql-db-0   Bound         pvc-0b5e   1Gi        RWO,RWOP                      <unknown>   Filesystem   node2\n\
             data-web-0                 Terminating                                                       <unknown>   <unset>      <none>\n"
        );
    }

    fn svc(name: &str, cluster_ip: &str, ports: &[(i32, i32)]) -> Object {
        use twinset_proto::v1::{Service, ServicePort, ServiceSpec};
        let mut spec = ServiceSpec {
            cluster_ip: cluster_ip.into(),
            r#type: "ClusterIP".into(),
            ports: ports
                .iter()
                .map(|(port, node_port)| ServicePort {
                    port: *port,
                    node_port: *node_port,
                    protocol: "TCP".into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        spec.selector.insert("app".into(), name.into());
        Object::from(Service {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "database".into(),
                ..Default::default()
            }),
            spec: Some(spec),
            ..Default::default()
        })
    }

    #[test]
    fn service_table() {
        let objs = [
            svc("mysql", "None", &[(3306, 0)]),
            svc("headless", "None", &[]),
            svc("web", "10.96.0.10", &[(80, 30080), (443, 0)]),
        ];
        assert_eq!(
            render(Kind::Service, &objs, TableOptions::default()),
            "NAME       TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)                AGE\n\
             mysql      ClusterIP   None         <none>        3306/TCP               <unknown>\n\
             headless   ClusterIP   None         <none>        <none>                 <unknown>\n\
             web        ClusterIP   10.96.0.10   <none>        80:30080/TCP,443/TCP   <unknown>\n"
        );
        assert_eq!(
            render(
                Kind::Service,
                &objs[..1],
                TableOptions {
                    wide: true,
                    ..Default::default()
                }
            ),
            "NAME    TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)    AGE         SELECTOR\n\
             mysql   ClusterIP   None         <none>        3306/TCP   <unknown>   app=mysql\n"
        );
    }

    #[test]
    fn statefulset_pods_wide() {
        use twinset_proto::v1::{
            ContainerState, ContainerStateRunning, ContainerStatus, Pod, PodStatus,
        };
        let pod = Object::from(Pod {
            metadata: Some(ObjectMeta {
                name: "mysql-db-1".into(),
                namespace: "database".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: "node2".into(),
                containers: vec![Container {
                    name: "mysql".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: "Running".into(),
                pod_ip: "127.128.1.2".into(),
                container_statuses: vec![ContainerStatus {
                    name: "mysql".into(),
                    ready: true,
                    state: Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: "2024-03-05T07:08:09Z".into(),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            render(
                Kind::Pod,
                &[pod],
                TableOptions {
                    wide: true,
                    ..Default::default()
                }
            ),
            "NAME         READY   STATUS    RESTARTS   AGE         IP            NODE    NOMINATED NODE   READINESS GATES\n\
             mysql-db-1   1/1     Running   0          <unknown>   127.128.1.2   node2   <none>           <none>\n"
        );
    }
}
