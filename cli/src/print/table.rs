//! `get` tables: the shared columns of each kind ([`twinset_proto::columns`]) laid
//! out as kubectl prints them, by the tab writer with kubectl's padding, plus the
//! columns only the client adds (NAMESPACE for `-A`, LABELS for `--show-labels`).
use super::tabwriter::TabWriter;
use twinset_proto::columns;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::Object;

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
    /// `--show-managed-fields` (for -o yaml/json).
    pub show_managed_fields: bool,
}

/// Renders `objects` (all of `kind`) as kubectl's table for that kind.
pub fn render(kind: Kind, objects: &[Object], opts: TableOptions) -> String {
    let mut w = TabWriter::table();
    write(&mut w, kind, objects, opts);
    w.finish()
}

/// Writes the header (unless `no_headers`) and one row per object into `w`: the
/// shared columns of `kind` (wide ones only with `-o wide`), their names upper-cased
/// as kubectl prints them.
pub fn write(w: &mut TabWriter, kind: Kind, objects: &[Object], opts: TableOptions) {
    let cols = columns::columns(kind);
    let shown = |c: &columns::Column| opts.wide || !c.is_wide();
    let namespace_column = opts.all_namespaces && kind.namespaced();
    if !opts.no_headers {
        let mut cells: Vec<String> = Vec::new();
        if namespace_column {
            cells.push("NAMESPACE".to_string());
        }
        cells.extend(cols.iter().filter(|c| shown(c)).map(|c| c.header()));
        if opts.show_labels {
            cells.push("LABELS".to_string());
        }
        w.write(&cells.join("\t"));
        w.write("\n");
    }
    for obj in objects {
        let mut cells: Vec<String> = Vec::new();
        if namespace_column {
            cells.push(obj.namespace().to_string());
        }
        cells.extend(
            columns::cells(kind, obj)
                .into_iter()
                .zip(&cols)
                .filter(|(_, c)| shown(c))
                .map(|(cell, _)| cell),
        );
        if opts.show_labels {
            cells.push(columns::format::labels(&obj.meta().labels));
        }
        w.write(&cells.join("\t"));
        w.write("\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{
        Container, DaemonSet, DaemonSetSpec, DaemonSetStatus, LabelSelector, Namespace,
        NamespaceStatus, ObjectMeta, PodSpec, PodTemplateSpec,
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
