//! `describe` layouts for DaemonSets, StatefulSets, pods and nodes, written the
//! way kubectl's describe.go writes them (the same lines, tabs and indentation
//! levels), so the tab writer aligns them exactly as kubectl does.
use super::format::{self, NONE};
use super::tabwriter::TabWriter;
use super::{claim, service};
use std::collections::BTreeMap;
use twinset_proto::columns;
use twinset_proto::quantity::{self, Quantity};
use twinset_proto::v1::{
    Container, ContainerState, ContainerStatus, DaemonSet, Event, Node, PersistentVolumeClaim, Pod,
    PodTemplateSpec, Probe, Service, StatefulSet, Taint, Toleration, Volume,
};

const LEVEL_1: usize = 1;
const LEVEL_2: usize = 2;
const LEVEL_3: usize = 3;
const MAX_ANNOTATION_LEN: usize = 140;

/// Pod counts by phase for a controller's `Pods Status:` line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PodCounts {
    /// Pods in phase Running.
    pub running: usize,
    /// Pods in phase Pending.
    pub waiting: usize,
    /// Pods in phase Succeeded.
    pub succeeded: usize,
    /// Pods in phase Failed.
    pub failed: usize,
}

impl PodCounts {
    /// Counts `pods` by phase, as kubectl's getPodStatusForController does.
    pub fn of(pods: &[Pod]) -> Self {
        let mut c = Self::default();
        for p in pods {
            match p.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("") {
                "Running" => c.running += 1,
                "Pending" | "" => c.waiting += 1,
                "Succeeded" => c.succeeded += 1,
                "Failed" => c.failed += 1,
                _ => {}
            }
        }
        c
    }

    fn line(&self) -> String {
        format!(
            "{} Running / {} Waiting / {} Succeeded / {} Failed",
            self.running, self.waiting, self.succeeded, self.failed
        )
    }
}

struct Writer {
    w: TabWriter,
    /// Hand the text back as written, tabs and all (kubectl's PrefixWriter straight
    /// onto a buffer, as `rollout history --revision` prints a template).
    unaligned: bool,
}

impl Writer {
    fn new() -> Self {
        Self {
            w: TabWriter::describe(),
            unaligned: false,
        }
    }

    fn write(&mut self, level: usize, text: &str) {
        self.w.line(level, text);
    }

    fn kv(&mut self, level: usize, key: &str, value: &str) {
        self.w.line(level, &format!("{key}:\t{value}\n"));
    }

    /// printLabelsMultilineWithIndent: `Title:\tk=v`, further labels on `\tk=v` lines.
    fn labels(&mut self, initial: &str, title: &str, labels: &BTreeMap<String, String>) {
        self.multiline(
            initial,
            title,
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        );
    }

    fn multiline(&mut self, initial: &str, title: &str, items: Vec<String>) {
        self.write(0, &format!("{initial}{title}:\t"));
        if items.is_empty() {
            self.write(0, "<none>\n");
            return;
        }
        for (i, item) in items.iter().enumerate() {
            if i != 0 {
                self.write(0, &format!("{initial}\t"));
            }
            self.write(0, &format!("{item}\n"));
        }
    }

    fn annotations(&mut self, initial: &str, title: &str, annotations: &BTreeMap<String, String>) {
        self.write(0, &format!("{initial}{title}:\t"));
        let keys: Vec<&String> = annotations
            .keys()
            .filter(|k| k.as_str() != "kubectl.kubernetes.io/last-applied-configuration")
            .collect();
        if keys.is_empty() {
            self.write(0, "<none>\n");
            return;
        }
        let indented = format!("{initial}\t");
        for (i, key) in keys.iter().enumerate() {
            if i != 0 {
                self.write(0, &indented);
            }
            let value = annotations[*key].trim_end_matches('\n');
            if value.len() + key.len() + 2 > MAX_ANNOTATION_LEN || value.contains('\n') {
                self.write(0, &format!("{key}:\n"));
                for s in value.split('\n') {
                    self.write(
                        0,
                        &format!("{indented}  {}\n", shorten(s, MAX_ANNOTATION_LEN - 2)),
                    );
                }
            } else {
                self.write(0, &format!("{key}: {value}\n"));
            }
        }
    }

    fn finish(self) -> String {
        if self.unaligned {
            self.w.into_unaligned()
        } else {
            self.w.finish()
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    } else {
        s.to_string()
    }
}

/// `kubectl describe ds`.
pub fn daemon_set(ds: &DaemonSet, pods: &PodCounts, events: &[Event]) -> String {
    let meta = ds.metadata.clone().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let st = ds.status.clone().unwrap_or_default();
    let template = spec.template.clone().unwrap_or_default();
    let mut w = Writer::new();
    w.kv(0, "Name", &meta.name);
    w.kv(0, "Namespace", &meta.namespace);
    w.kv(
        0,
        "Selector",
        &format::label_selector(spec.selector.as_ref()),
    );
    let node_selector = template
        .spec
        .as_ref()
        .map(|s| format::labels(&s.node_selector))
        .unwrap_or_else(|| NONE.to_string());
    w.kv(0, "Node-Selector", &node_selector);
    w.labels("", "Labels", &meta.labels);
    w.annotations("", "Annotations", &meta.annotations);
    w.write(
        0,
        &format!(
            "Desired Number of Nodes Scheduled: {}\n",
            st.desired_number_scheduled
        ),
    );
    w.write(
        0,
        &format!(
            "Current Number of Nodes Scheduled: {}\n",
            st.current_number_scheduled
        ),
    );
    w.write(
        0,
        &format!(
            "Number of Nodes Scheduled with Up-to-date Pods: {}\n",
            st.updated_number_scheduled
        ),
    );
    w.write(
        0,
        &format!(
            "Number of Nodes Scheduled with Available Pods: {}\n",
            st.number_available
        ),
    );
    w.write(
        0,
        &format!("Number of Nodes Misscheduled: {}\n", st.number_misscheduled),
    );
    w.kv(0, "Pods Status", &pods.line());
    // Twinset's addition: nodes an unreachable agent keeps out of the rollout.
    if let Some(waiting) = twinset_proto::rollout::waiting_nodes(&st) {
        w.kv(0, "Nodes Waiting", &waiting.message);
    }
    pod_template(&mut w, &template);
    describe_events(&mut w, events);
    w.finish()
}

/// `kubectl describe sts`.
pub fn stateful_set(sts: &StatefulSet, pods: &PodCounts, events: &[Event]) -> String {
    let meta = sts.metadata.clone().unwrap_or_default();
    let spec = sts.spec.clone().unwrap_or_default();
    let st = sts.status.clone().unwrap_or_default();
    let mut w = Writer::new();
    w.kv(0, "Name", &meta.name);
    w.kv(0, "Namespace", &meta.namespace);
    w.kv(
        0,
        "CreationTimestamp",
        &format::rfc1123z(&meta.creation_timestamp),
    );
    w.kv(
        0,
        "Selector",
        &format::label_selector(spec.selector.as_ref()),
    );
    w.labels("", "Labels", &meta.labels);
    w.annotations("", "Annotations", &meta.annotations);
    w.kv(
        0,
        "Replicas",
        &format!(
            "{} desired | {} total",
            spec.replicas.unwrap_or(1),
            st.replicas
        ),
    );
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let ty = if strategy.r#type.is_empty() {
        "RollingUpdate".to_string()
    } else {
        strategy.r#type.clone()
    };
    w.kv(0, "Update Strategy", &ty);
    if ty == "RollingUpdate" {
        let ru = strategy.rolling_update.clone().unwrap_or_default();
        w.kv(LEVEL_1, "Partition", &ru.partition.unwrap_or(0).to_string());
        if let Some(mu) = ru.max_unavailable.as_ref().and_then(int_or_string) {
            w.kv(LEVEL_1, "MaxUnavailable", &mu);
        }
    }
    w.kv(0, "Pods Status", &pods.line());
    pod_template(&mut w, &spec.template.clone().unwrap_or_default());
    if spec.volume_claim_templates.is_empty() {
        w.kv(0, "Volume Claims", NONE);
    } else {
        w.write(0, "Volume Claims:\n");
        for t in &spec.volume_claim_templates {
            let tm = t.metadata.clone().unwrap_or_default();
            let ts = t.spec.clone().unwrap_or_default();
            w.kv(LEVEL_1, "Name", &tm.name);
            w.kv(
                LEVEL_1,
                "StorageClass",
                &claim::storage_class(&tm.annotations, &ts),
            );
            w.labels("  ", "Labels", &tm.labels);
            w.labels("  ", "Annotations", &tm.annotations);
            let capacity = ts
                .resources
                .as_ref()
                .and_then(|r| r.requests.get("storage").cloned())
                .unwrap_or_else(|| "<default>".to_string());
            w.kv(LEVEL_1, "Capacity", &capacity);
            w.kv(
                LEVEL_1,
                "Access Modes",
                &format!("[{}]", ts.access_modes.join(" ")),
            );
        }
    }
    describe_events(&mut w, events);
    w.finish()
}

/// `kubectl describe pvc`; `pods` are the pods of the claim's namespace (those that use
/// it are listed under `Used By`). Twinset adds `Node:`, the node the claim is bound to.
pub fn persistent_volume_claim(
    pvc: &PersistentVolumeClaim,
    pods: &[Pod],
    events: &[Event],
) -> String {
    let meta = pvc.metadata.clone().unwrap_or_default();
    let c = claim::Claim::of(pvc);
    let mut w = Writer::new();
    w.kv(0, "Name", &meta.name);
    w.kv(0, "Namespace", &meta.namespace);
    w.kv(0, "StorageClass", &c.storage_class);
    if c.terminating {
        w.kv(
            0,
            "Status",
            &format!(
                "Terminating (lasts {})",
                format::age(&meta.deletion_timestamp)
            ),
        );
    } else {
        w.kv(0, "Status", &c.phase);
    }
    w.kv(0, "Volume", &c.volume);
    w.labels("", "Labels", &meta.labels);
    w.annotations("", "Annotations", &meta.annotations);
    w.kv(0, "Finalizers", &format!("[{}]", meta.finalizers.join(" ")));
    w.kv(0, "Capacity", &c.capacity);
    w.kv(0, "Access Modes", &c.access_modes);
    if let Some(mode) = &c.volume_mode {
        w.kv(0, "VolumeMode", mode);
    }
    w.multiline("", "Used By", claim::used_by(pvc, pods));
    w.kv(0, "Node", &format::or_none(&c.node));
    describe_events(&mut w, events);
    w.finish()
}

/// `kubectl describe svc`; `pods` are the pods its selector matches (their ready
/// addresses are the endpoints). Twinset services are IPv4 single-stack.
pub fn service(svc: &Service, pods: &[Pod], events: &[Event]) -> String {
    let meta = svc.metadata.clone().unwrap_or_default();
    let spec = svc.spec.clone().unwrap_or_default();
    let mut w = Writer::new();
    w.kv(0, "Name", &meta.name);
    w.kv(0, "Namespace", &meta.namespace);
    w.labels("", "Labels", &meta.labels);
    w.annotations("", "Annotations", &meta.annotations);
    w.kv(0, "Selector", &format::labels(&spec.selector));
    w.kv(0, "Type", &service::type_of(&spec));
    w.kv(0, "IP Family Policy", "SingleStack");
    w.kv(0, "IP Families", "IPv4");
    w.kv(0, "IP", &spec.cluster_ip);
    let ips = service::cluster_ips(&spec);
    w.kv(
        0,
        "IPs",
        &if ips.is_empty() {
            NONE.to_string()
        } else {
            ips.join(",")
        },
    );
    for p in &spec.ports {
        let name = if p.name.is_empty() {
            "<unset>"
        } else {
            &p.name
        };
        let proto = if p.protocol.is_empty() {
            "TCP"
        } else {
            &p.protocol
        };
        w.write(0, &format!("Port:\t{name}\t{}/{proto}\n", p.port));
        w.kv(0, "TargetPort", &service::target_port(p));
        if p.node_port != 0 {
            w.write(0, &format!("NodePort:\t{name}\t{}/{proto}\n", p.node_port));
        }
        w.kv(0, "Endpoints", &service::endpoints(&spec, Some(p), pods));
    }
    if spec.ports.is_empty() {
        w.kv(0, "Endpoints", &service::endpoints(&spec, None, pods));
    }
    w.kv(0, "Session Affinity", "None");
    describe_events(&mut w, events);
    w.finish()
}

/// `kubectl describe pod`.
pub fn pod(pod: &Pod, events: &[Event]) -> String {
    let meta = pod.metadata.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let st = pod.status.clone().unwrap_or_default();
    let mut w = Writer::new();
    w.kv(0, "Name", &meta.name);
    w.kv(0, "Namespace", &meta.namespace);
    if !spec.service_account_name.is_empty() {
        w.kv(0, "Service Account", &spec.service_account_name);
    }
    if spec.node_name.is_empty() {
        w.kv(0, "Node", NONE);
    } else if st.host_ip.is_empty() {
        w.kv(0, "Node", &spec.node_name);
    } else {
        w.kv(0, "Node", &format!("{}/{}", spec.node_name, st.host_ip));
    }
    if !st.start_time.is_empty() {
        w.kv(0, "Start Time", &format::rfc1123z(&st.start_time));
    }
    w.labels("", "Labels", &meta.labels);
    w.annotations("", "Annotations", &meta.annotations);
    if !meta.deletion_timestamp.is_empty() {
        w.kv(
            0,
            "Status",
            &format!(
                "Terminating (lasts {})",
                format::age(&meta.deletion_timestamp)
            ),
        );
        if let Some(g) = meta.deletion_grace_period_seconds {
            w.kv(0, "Termination Grace Period", &format!("{g}s"));
        }
    } else {
        w.kv(0, "Status", &st.phase);
    }
    if !st.reason.is_empty() {
        w.kv(0, "Reason", &st.reason);
    }
    if !st.message.is_empty() {
        w.kv(0, "Message", &st.message);
    }
    w.kv(0, "IP", &st.pod_ip);
    if st.pod_ips.is_empty() {
        w.kv(0, "IPs", NONE);
    } else {
        w.write(0, "IPs:\n");
        for ip in &st.pod_ips {
            w.kv(LEVEL_1, "IP", &ip.ip);
        }
    }
    if let Some(owner) = meta
        .owner_references
        .iter()
        .find(|r| r.controller == Some(true))
    {
        w.kv(
            0,
            "Controlled By",
            &format!("{}/{}", owner.kind, owner.name),
        );
    }
    if !st.nominated_node_name.is_empty() {
        w.kv(0, "NominatedNodeName", &st.nominated_node_name);
    }
    if !spec.init_containers.is_empty() {
        containers(
            &mut w,
            "Init Containers",
            &spec.init_containers,
            Some(&st.init_container_statuses),
            "",
        );
    }
    containers(
        &mut w,
        "Containers",
        &spec.containers,
        Some(&st.container_statuses),
        "",
    );
    if st.conditions.is_empty() {
        w.kv(0, "Conditions", NONE);
    } else {
        w.write(0, "Conditions:\n");
        w.write(LEVEL_1, "Type\tStatus\n");
        for c in &st.conditions {
            w.write(LEVEL_1, &format!("{} \t{} \n", c.r#type, c.status));
        }
    }
    volumes(&mut w, &spec.volumes, "");
    if !st.qos_class.is_empty() {
        w.kv(0, "QoS Class", &st.qos_class);
    }
    w.labels("", "Node-Selectors", &spec.node_selector);
    w.multiline(
        "",
        "Tolerations",
        spec.tolerations.iter().map(toleration).collect(),
    );
    describe_events(&mut w, events);
    w.finish()
}

/// `kubectl describe node`; `pods` are the pods bound to it.
pub fn node(node: &Node, pods: &[Pod], events: &[Event]) -> String {
    let meta = node.metadata.clone().unwrap_or_default();
    let spec = node.spec.clone().unwrap_or_default();
    let st = node.status.clone().unwrap_or_default();
    let mut w = Writer::new();
    w.kv(0, "Name", &meta.name);
    w.kv(0, "Roles", &columns::node::roles(node));
    w.labels("", "Labels", &meta.labels);
    w.annotations("", "Annotations", &meta.annotations);
    w.kv(
        0,
        "CreationTimestamp",
        &format::rfc1123z(&meta.creation_timestamp),
    );
    w.multiline("", "Taints", spec.taints.iter().map(taint).collect());
    w.kv(0, "Unschedulable", &spec.unschedulable.to_string());
    if st.conditions.is_empty() {
        w.kv(0, "Conditions", NONE);
    } else {
        w.write(0, "Conditions:\n");
        w.write(
            LEVEL_1,
            "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n",
        );
        w.write(
            LEVEL_1,
            "----\t------\t-----------------\t------------------\t------\t-------\n",
        );
        for c in &st.conditions {
            w.write(
                LEVEL_1,
                &format!(
                    "{} \t{} \t{} \t{} \t{} \t{}\n",
                    c.r#type,
                    c.status,
                    format::rfc1123z(&c.last_heartbeat_time),
                    format::rfc1123z(&c.last_transition_time),
                    c.reason,
                    c.message
                ),
            );
        }
    }
    w.write(0, "Addresses:\n");
    for a in &st.addresses {
        w.kv(LEVEL_1, &a.r#type, &a.address);
    }
    resource_list(&mut w, "Capacity", &st.capacity);
    resource_list(&mut w, "Allocatable", &st.allocatable);
    let info = st.node_info.clone().unwrap_or_default();
    w.write(0, "System Info:\n");
    w.kv(LEVEL_1, "Machine ID", &info.machine_id);
    w.kv(LEVEL_1, "Boot ID", &info.boot_id);
    w.kv(LEVEL_1, "Kernel Version", &info.kernel_version);
    w.kv(LEVEL_1, "OS Image", &info.os_image);
    w.kv(LEVEL_1, "Operating System", &info.operating_system);
    w.kv(LEVEL_1, "Architecture", &info.architecture);
    w.kv(
        LEVEL_1,
        "Container Runtime Version",
        &info.container_runtime_version,
    );
    w.kv(LEVEL_1, "Kubelet Version", &info.kubelet_version);
    if !spec.pod_cidr.is_empty() {
        w.kv(0, "PodCIDR", &spec.pod_cidr);
        let cidrs = if spec.pod_cidrs.is_empty() {
            spec.pod_cidr.clone()
        } else {
            spec.pod_cidrs.join(",")
        };
        w.kv(0, "PodCIDRs", &cidrs);
    }
    let active: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            let phase = p.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
            phase != "Succeeded" && phase != "Failed"
        })
        .collect();
    w.kv(
        0,
        "Non-terminated Pods",
        &format!("({} in total)", active.len()),
    );
    let cpu_alloc = resource(&st.allocatable, "cpu");
    let mem_alloc = resource(&st.allocatable, "memory");
    if !active.is_empty() {
        w.write(
            LEVEL_1,
            "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n",
        );
        w.write(
            LEVEL_1,
            "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n",
        );
        for p in &active {
            let pm = p.metadata.clone().unwrap_or_default();
            let one = std::slice::from_ref(*p);
            w.write(
                LEVEL_1,
                &format!(
                    "{}\t{}\t\t{}\t{}\t{}\t{}\t{}\n",
                    pm.namespace,
                    pm.name,
                    share(pod_total(one, Requests, "cpu"), cpu_alloc, true),
                    share(pod_total(one, Limits, "cpu"), cpu_alloc, true),
                    share(pod_total(one, Requests, "memory"), mem_alloc, false),
                    share(pod_total(one, Limits, "memory"), mem_alloc, false),
                    format::age(&pm.creation_timestamp)
                ),
            );
        }
    }
    let active: Vec<Pod> = active.into_iter().cloned().collect();
    w.write(
        0,
        "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n",
    );
    w.write(LEVEL_1, "Resource\tRequests\tLimits\n");
    w.write(LEVEL_1, "--------\t--------\t------\n");
    w.write(
        LEVEL_1,
        &format!(
            "cpu\t{}\t{}\n",
            share(pod_total(&active, Requests, "cpu"), cpu_alloc, true),
            share(pod_total(&active, Limits, "cpu"), cpu_alloc, true)
        ),
    );
    w.write(
        LEVEL_1,
        &format!(
            "memory\t{}\t{}\n",
            share(pod_total(&active, Requests, "memory"), mem_alloc, false),
            share(pod_total(&active, Limits, "memory"), mem_alloc, false)
        ),
    );
    describe_events(&mut w, events);
    w.finish()
}

#[derive(Clone, Copy)]
enum Which {
    Requests,
    Limits,
}
use Which::{Limits, Requests};

fn resource(list: &BTreeMap<String, String>, name: &str) -> Quantity {
    list.get(name)
        .and_then(|v| quantity::parse(v).ok())
        .unwrap_or_default()
}

/// The sum of one resource over the containers of `pods` (requests or limits).
fn pod_total(pods: &[Pod], which: Which, name: &str) -> Quantity {
    let mut total = Quantity::default();
    for p in pods {
        for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
            if let Some(r) = &c.resources {
                let list = match which {
                    Requests => &r.requests,
                    Limits => &r.limits,
                };
                total = total + resource(list, name);
            }
        }
    }
    total
}

/// `100m (5%)`: a quantity and its share of what the node can allocate.
fn share(q: Quantity, allocatable: Quantity, millis: bool) -> String {
    let (part, whole) = if millis {
        (q.millis(), allocatable.millis())
    } else {
        (q.value(), allocatable.value())
    };
    let percent = if whole > 0 { part * 100 / whole } else { 0 };
    format!("{q} ({percent}%)")
}

fn resource_list(w: &mut Writer, title: &str, list: &BTreeMap<String, String>) {
    if list.is_empty() {
        return;
    }
    w.write(0, &format!("{title}:\n"));
    for (k, v) in list {
        w.kv(LEVEL_1, k, v);
    }
}

/// A pod template as `kubectl rollout history --revision N` prints it: kubectl's
/// DescribePodTemplate written with no tab writer, so its tabs are left as they are.
pub fn pod_template_unaligned(template: &PodTemplateSpec) -> String {
    let mut w = Writer {
        unaligned: true,
        ..Writer::new()
    };
    pod_template(&mut w, template);
    w.finish()
}

/// DescribePodTemplate.
fn pod_template(w: &mut Writer, template: &PodTemplateSpec) {
    let meta = template.metadata.clone().unwrap_or_default();
    let spec = template.spec.clone().unwrap_or_default();
    w.write(0, "Pod Template:\n");
    w.labels("  ", "Labels", &meta.labels);
    if !meta.annotations.is_empty() {
        w.annotations("  ", "Annotations", &meta.annotations);
    }
    if !spec.service_account_name.is_empty() {
        w.kv(LEVEL_1, "Service Account", &spec.service_account_name);
    }
    if !spec.init_containers.is_empty() {
        containers(w, "Init Containers", &spec.init_containers, None, "  ");
    }
    containers(w, "Containers", &spec.containers, None, "  ");
    volumes(w, &spec.volumes, "  ");
    w.labels("  ", "Node-Selectors", &spec.node_selector);
    w.multiline(
        "  ",
        "Tolerations",
        spec.tolerations.iter().map(toleration).collect(),
    );
}

/// describeContainers: one block per container, with its state when statuses are given.
fn containers(
    w: &mut Writer,
    label: &str,
    containers: &[Container],
    statuses: Option<&Vec<ContainerStatus>>,
    space: &str,
) {
    if containers.is_empty() {
        w.write(0, &format!("{space}{label}: <none>\n"));
        return;
    }
    w.write(0, &format!("{space}{label}:\n"));
    let name_indent = if space.is_empty() { "" } else { " " };
    for c in containers {
        let status = statuses.and_then(|s| s.iter().find(|s| s.name == c.name));
        w.write(LEVEL_1, &format!("{name_indent}{}:\n", c.name));
        if let Some(s) = status {
            w.kv(LEVEL_2, "Container ID", &s.container_id);
        }
        w.kv(LEVEL_2, "Image", &c.image);
        if let Some(s) = status {
            w.kv(LEVEL_2, "Image ID", &s.image_id);
        }
        let ports: Vec<String> = c
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.container_port, protocol(&p.protocol)))
            .collect();
        let host_ports: Vec<String> = c
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.host_port, protocol(&p.protocol)))
            .collect();
        if ports.len() > 1 {
            w.kv(LEVEL_2, "Ports", &ports.join(", "));
            w.kv(LEVEL_2, "Host Ports", &host_ports.join(", "));
        } else {
            w.kv(LEVEL_2, "Port", &format::or_none(&ports.join("")));
            w.kv(LEVEL_2, "Host Port", &format::or_none(&host_ports.join("")));
        }
        if !c.command.is_empty() {
            w.write(LEVEL_2, "Command:\n");
            for part in &c.command {
                for line in part.split('\n') {
                    w.write(LEVEL_3, &format!("{line}\n"));
                }
            }
        }
        if !c.args.is_empty() {
            w.write(LEVEL_2, "Args:\n");
            for part in &c.args {
                for line in part.split('\n') {
                    w.write(LEVEL_3, &format!("{line}\n"));
                }
            }
        }
        if let Some(s) = status {
            container_state(w, "State", s.state.as_ref());
            if s.last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some())
            {
                container_state(w, "Last State", s.last_state.as_ref());
            }
            w.kv(LEVEL_2, "Ready", if s.ready { "True" } else { "False" });
            w.kv(LEVEL_2, "Restart Count", &s.restart_count.to_string());
        }
        if let Some(r) = &c.resources {
            if !r.limits.is_empty() {
                w.write(LEVEL_2, "Limits:\n");
                for (k, v) in &r.limits {
                    w.kv(LEVEL_3, k, v);
                }
            }
            if !r.requests.is_empty() {
                w.write(LEVEL_2, "Requests:\n");
                for (k, v) in &r.requests {
                    w.kv(LEVEL_3, k, v);
                }
            }
        }
        if let Some(p) = &c.liveness_probe {
            w.kv(LEVEL_2, "Liveness", &probe(p));
        }
        if let Some(p) = &c.readiness_probe {
            w.kv(LEVEL_2, "Readiness", &probe(p));
        }
        if let Some(p) = &c.startup_probe {
            w.kv(LEVEL_2, "Startup", &probe(p));
        }
        if c.env.is_empty() {
            w.write(LEVEL_2, "Environment:\t<none>\n");
        } else {
            w.write(LEVEL_2, "Environment:\n");
            for e in &c.env {
                match e.value_from.as_ref().and_then(|v| v.field_ref.as_ref()) {
                    Some(f) => {
                        let api = if f.api_version.is_empty() {
                            "v1"
                        } else {
                            &f.api_version
                        };
                        w.kv(LEVEL_3, &e.name, &format!(" ({api}:{})", f.field_path));
                    }
                    None => {
                        for (i, line) in e.value.split('\n').enumerate() {
                            if i == 0 {
                                w.kv(LEVEL_3, &e.name, line);
                            } else {
                                w.write(LEVEL_3, &format!("\t{line}\n"));
                            }
                        }
                    }
                }
            }
        }
        if c.volume_mounts.is_empty() {
            w.write(LEVEL_2, "Mounts:\t<none>\n");
        } else {
            w.write(LEVEL_2, "Mounts:\n");
            let mut mounts = c.volume_mounts.clone();
            mounts.sort_by(|a, b| a.mount_path.cmp(&b.mount_path));
            for m in mounts {
                let mut flags = vec![if m.read_only {
                    "ro".to_string()
                } else {
                    "rw".to_string()
                }];
                if !m.sub_path.is_empty() {
                    flags.push(format!("path={:?}", m.sub_path));
                }
                w.write(
                    LEVEL_3,
                    &format!("{} from {} ({})\n", m.mount_path, m.name, flags.join(",")),
                );
            }
        }
    }
}

fn protocol(p: &str) -> &str {
    if p.is_empty() {
        "TCP"
    } else {
        p
    }
}

fn container_state(w: &mut Writer, name: &str, state: Option<&ContainerState>) {
    let state = state.cloned().unwrap_or_default();
    if let Some(r) = &state.running {
        w.kv(LEVEL_2, name, "Running");
        w.kv(LEVEL_3, "Started", &format::rfc1123z(&r.started_at));
    } else if let Some(wt) = &state.waiting {
        w.kv(LEVEL_2, name, "Waiting");
        if !wt.reason.is_empty() {
            w.kv(LEVEL_3, "Reason", &wt.reason);
        }
        if !wt.message.is_empty() {
            w.kv(LEVEL_3, "Message", &wt.message);
        }
    } else if let Some(t) = &state.terminated {
        w.kv(LEVEL_2, name, "Terminated");
        if !t.reason.is_empty() {
            w.kv(LEVEL_3, "Reason", &t.reason);
        }
        if !t.message.is_empty() {
            w.kv(LEVEL_3, "Message", &t.message);
        }
        w.kv(LEVEL_3, "Exit Code", &t.exit_code.to_string());
        if t.signal > 0 {
            w.kv(LEVEL_3, "Signal", &t.signal.to_string());
        }
        w.kv(LEVEL_3, "Started", &format::rfc1123z(&t.started_at));
        w.kv(LEVEL_3, "Finished", &format::rfc1123z(&t.finished_at));
    } else {
        w.kv(LEVEL_2, name, "Waiting");
    }
}

fn volumes(w: &mut Writer, volumes: &[Volume], space: &str) {
    if volumes.is_empty() {
        w.write(0, &format!("{space}Volumes:\t<none>\n"));
        return;
    }
    w.write(0, &format!("{space}Volumes:\n"));
    let name_indent = if space.is_empty() { "" } else { " " };
    for v in volumes {
        w.write(LEVEL_1, &format!("{name_indent}{}:\n", v.name));
        if let Some(h) = &v.host_path {
            w.kv(LEVEL_2, "Type", "HostPath (bare host directory volume)");
            w.kv(LEVEL_2, "Path", &h.path);
            w.kv(LEVEL_2, "HostPathType", &h.r#type);
        } else if let Some(e) = &v.empty_dir {
            w.kv(
                LEVEL_2,
                "Type",
                "EmptyDir (a temporary directory that shares a pod's lifetime)",
            );
            w.kv(LEVEL_2, "Medium", &e.medium);
            w.kv(
                LEVEL_2,
                "SizeLimit",
                &format::or_none(&e.size_limit).replace(NONE, "<unset>"),
            );
        } else if let Some(c) = &v.persistent_volume_claim {
            w.kv(
                LEVEL_2,
                "Type",
                "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
            );
            w.kv(LEVEL_2, "ClaimName", &c.claim_name);
            w.kv(LEVEL_2, "ReadOnly", &c.read_only.to_string());
        } else {
            w.write(LEVEL_2, "<unknown>\n");
        }
    }
}

fn probe(p: &Probe) -> String {
    let attrs = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        p.initial_delay_seconds,
        if p.timeout_seconds == 0 {
            1
        } else {
            p.timeout_seconds
        },
        if p.period_seconds == 0 {
            10
        } else {
            p.period_seconds
        },
        if p.success_threshold == 0 {
            1
        } else {
            p.success_threshold
        },
        if p.failure_threshold == 0 {
            3
        } else {
            p.failure_threshold
        },
    );
    if let Some(e) = &p.exec {
        format!("exec [{}] {attrs}", e.command.join(" "))
    } else if let Some(h) = &p.http_get {
        let scheme = if h.scheme.is_empty() {
            "http"
        } else {
            &h.scheme
        }
        .to_lowercase();
        let port = h.port.as_ref().and_then(int_or_string).unwrap_or_default();
        format!("http-get {scheme}://{}:{port}{} {attrs}", h.host, h.path)
    } else if let Some(t) = &p.tcp_socket {
        let port = t.port.as_ref().and_then(int_or_string).unwrap_or_default();
        format!("tcp-socket {}:{port} {attrs}", t.host)
    } else {
        format!("unknown {attrs}")
    }
}

fn int_or_string(v: &twinset_proto::v1::IntOrString) -> Option<String> {
    use twinset_proto::v1::int_or_string::Value;
    match v.value.as_ref()? {
        Value::IntVal(i) => Some(i.to_string()),
        Value::StrVal(s) => Some(s.clone()),
    }
}

/// A taint as kubectl prints it: `key=value:Effect` or `key:Effect`.
pub fn taint(t: &Taint) -> String {
    if t.value.is_empty() {
        format!("{}:{}", t.key, t.effect)
    } else {
        format!("{}={}:{}", t.key, t.value, t.effect)
    }
}

/// A toleration as kubectl's describe prints it.
fn toleration(t: &Toleration) -> String {
    let mut s = t.key.clone();
    if !t.value.is_empty() {
        s.push('=');
        s.push_str(&t.value);
    }
    if !t.effect.is_empty() {
        s.push(':');
        s.push_str(&t.effect);
    }
    if t.operator == "Exists" && t.value.is_empty() {
        if !t.key.is_empty() || !t.effect.is_empty() {
            s.push_str(" op=Exists");
        } else {
            s.push_str("op=Exists");
        }
    }
    if let Some(secs) = t.toleration_seconds {
        s.push_str(&format!(" for {secs}s"));
    }
    s
}

/// DescribeEvents: a table of the events, oldest first, or `Events: <none>`.
fn describe_events(w: &mut Writer, events: &[Event]) {
    if events.is_empty() {
        w.write(0, "Events:\t<none>\n");
        return;
    }
    w.w.flush();
    let mut events = events.to_vec();
    events.sort_by_key(|e| {
        let t = columns::event::last_seen(e);
        twinset_proto::time::parse(&t)
    });
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    w.write(LEVEL_1, "----\t------\t----\t----\t-------\n");
    for e in &events {
        let first = if e.first_timestamp.is_empty() {
            e.metadata
                .as_ref()
                .map(|m| m.creation_timestamp.clone())
                .unwrap_or_default()
        } else {
            e.first_timestamp.clone()
        };
        let interval = if e.count > 1 {
            format!(
                "{} (x{} over {})",
                format::age(&columns::event::last_seen(e)),
                e.count,
                format::age(&first)
            )
        } else {
            format::age(&first)
        };
        let mut source = e
            .source
            .as_ref()
            .map(|s| s.component.clone())
            .unwrap_or_default();
        if source.is_empty() {
            source = e.reporting_component.clone();
        }
        w.write(
            LEVEL_1,
            &format!(
                "{}\t{}\t{}\t{}\t{}\n",
                e.r#type,
                e.reason,
                interval,
                source,
                e.message.trim()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{
        DaemonSetSpec, DaemonSetStatus, EventSource, LabelSelector, ObjectMeta, PodSpec, PodStatus,
        ResourceRequirements,
    };

    fn guide_ds() -> DaemonSet {
        let mut sel = LabelSelector::default();
        sel.match_labels.insert("app".into(), "node-monitor".into());
        let mut tmeta = ObjectMeta::default();
        tmeta.labels.insert("app".into(), "node-monitor".into());
        let mut limits = BTreeMap::new();
        limits.insert("cpu".to_string(), "100m".to_string());
        limits.insert("memory".to_string(), "128Mi".to_string());
        DaemonSet {
            metadata: Some(ObjectMeta {
                name: "node-monitor".into(),
                namespace: "kube-system".into(),
                ..Default::default()
            }),
            spec: Some(DaemonSetSpec {
                selector: Some(sel),
                template: Some(PodTemplateSpec {
                    metadata: Some(tmeta),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "monitor".into(),
                            image: "datadog/agent:latest".into(),
                            resources: Some(ResourceRequirements {
                                limits,
                                requests: BTreeMap::new(),
                            }),
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
        }
    }

    fn running_pod() -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: "Running".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn daemon_set_layout_matches_kubectl() {
        let pods = vec![running_pod(), running_pod(), running_pod()];
        let out = daemon_set(&guide_ds(), &PodCounts::of(&pods), &[]);
        let expected = "\
Name:           node-monitor
Namespace:      kube-system
Selector:       app=node-monitor
Node-Selector:  <none>
Labels:         <none>
Annotations:    <none>
Desired Number of Nodes Scheduled: 3
Current Number of Nodes Scheduled: 3
Number of Nodes Scheduled with Up-to-date Pods: 3
Number of Nodes Scheduled with Available Pods: 3
Number of Nodes Misscheduled: 0
Pods Status:  3 Running / 0 Waiting / 0 Succeeded / 0 Failed
Pod Template:
  Labels:  app=node-monitor
  Containers:
   monitor:
    Image:      datadog/agent:latest
    Port:       <none>
    Host Port:  <none>
    Limits:
      cpu:         100m
      memory:      128Mi
    Environment:   <none>
    Mounts:        <none>
  Volumes:         <none>
  Node-Selectors:  <none>
  Tolerations:     <none>
Events:            <none>
";
        assert_eq!(out, expected);
    }

    #[test]
    fn daemon_set_names_the_nodes_its_rollout_waits_for() {
        let mut ds = guide_ds();
        if let Some(st) = ds.status.as_mut() {
            st.conditions = vec![twinset_proto::rollout::waiting_condition(
                &["node3".to_string()],
                true,
                None,
                "t",
            )];
        }
        let out = daemon_set(&ds, &PodCounts::default(), &[]);
        let line = out
            .lines()
            .find(|l| l.starts_with("Nodes Waiting:"))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(
            line.ends_with(": 1 unreachable node waits for the update: node3")
                || line.ends_with("  1 unreachable node waits for the update: node3"),
            "{line}"
        );
    }

    #[test]
    fn events_table_is_aligned_on_its_own() {
        let ev = Event {
            metadata: Some(ObjectMeta {
                name: "e1".into(),
                ..Default::default()
            }),
            reason: "SuccessfulCreate".into(),
            message: "Created pod: node-monitor-abcde".into(),
            r#type: "Normal".into(),
            source: Some(EventSource {
                component: "daemonset-controller".into(),
                host: String::new(),
            }),
            count: 1,
            ..Default::default()
        };
        let out = daemon_set(&guide_ds(), &PodCounts::default(), &[ev]);
        assert!(out.ends_with(
            "Events:\n  Type    Reason            Age        From                  Message\n  \
             ----    ------            ----       ----                  -------\n  \
             Normal  SuccessfulCreate  <unknown>  daemonset-controller  Created pod: node-monitor-abcde\n"
        ), "{out}");
        assert!(out.contains("  Tolerations:     <none>\n"), "{out}");
    }

    #[test]
    fn stateful_set_layout_matches_kubectl() {
        use twinset_proto::v1::{
            ContainerPort, PersistentVolumeClaimSpec, PersistentVolumeClaimTemplate,
            StatefulSetSpec, VolumeMount,
        };
        let mut sel = LabelSelector::default();
        sel.match_labels.insert("app".into(), "mysql".into());
        let mut tmeta = ObjectMeta::default();
        tmeta.labels.insert("app".into(), "mysql".into());
        let mut requests = BTreeMap::new();
        requests.insert("storage".to_string(), "1Gi".to_string());
        let sts = StatefulSet {
            metadata: Some(ObjectMeta {
                name: "mysql-db".into(),
                namespace: "database".into(),
                creation_timestamp: "2024-03-05T07:08:09Z".into(),
                ..Default::default()
            }),
            spec: Some(StatefulSetSpec {
                replicas: Some(3),
                selector: Some(sel),
                template: Some(PodTemplateSpec {
                    metadata: Some(tmeta),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "mysql".into(),
                            image: "mysql:8".into(),
                            ports: vec![ContainerPort {
                                container_port: 3306,
                                ..Default::default()
                            }],
                            volume_mounts: vec![VolumeMount {
                                name: "mysql-storage".into(),
                                mount_path: "/var/lib/mysql".into(),
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                volume_claim_templates: vec![PersistentVolumeClaimTemplate {
                    metadata: Some(ObjectMeta {
                        name: "mysql-storage".into(),
                        ..Default::default()
                    }),
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: vec!["ReadWriteOnce".into()],
                        resources: Some(ResourceRequirements {
                            limits: BTreeMap::new(),
                            requests,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let pods = vec![running_pod(), running_pod(), running_pod()];
        let out = stateful_set(&sts, &PodCounts::of(&pods), &[]);
        let expected = "\
Name:               mysql-db
Namespace:          database
CreationTimestamp:  Tue, 05 Mar 2024 07:08:09 +0000
Selector:           app=mysql
Labels:             <none>
Annotations:        <none>
Replicas:           3 desired | 0 total
Update Strategy:    RollingUpdate
  Partition:        0
Pods Status:        3 Running / 0 Waiting / 0 Succeeded / 0 Failed
Pod Template:
  Labels:  app=mysql
  Containers:
   mysql:
    Image:        mysql:8
    Port:         3306/TCP
    Host Port:    0/TCP
    Environment:  <none>
    Mounts:
      /var/lib/mysql from mysql-storage (rw)
  Volumes:         <none>
  Node-Selectors:  <none>
  Tolerations:     <none>
Volume Claims:
  Name:          mysql-storage
  StorageClass:  
  Labels:        <none>
  Annotations:   <none>
  Capacity:      1Gi
  Access Modes:  [ReadWriteOnce]
Events:          <none>
";
        assert_eq!(out, expected);
    }

    #[test]
    fn pod_counts_by_phase() {
        let mut pending = running_pod();
        if let Some(s) = pending.status.as_mut() {
            s.phase = "Pending".into();
        }
        let c = PodCounts::of(&[running_pod(), pending]);
        assert_eq!(c.line(), "1 Running / 1 Waiting / 0 Succeeded / 0 Failed");
    }

    #[test]
    fn taints_and_tolerations() {
        let t = Taint {
            key: "dedicated".into(),
            value: "db".into(),
            effect: "NoSchedule".into(),
            time_added: String::new(),
        };
        assert_eq!(taint(&t), "dedicated=db:NoSchedule");
        let tol = Toleration {
            key: "node.kubernetes.io/unreachable".into(),
            operator: "Exists".into(),
            effect: "NoExecute".into(),
            toleration_seconds: Some(300),
            ..Default::default()
        };
        assert_eq!(
            toleration(&tol),
            "node.kubernetes.io/unreachable:NoExecute op=Exists for 300s"
        );
        assert_eq!(
            toleration(&Toleration {
                operator: "Exists".into(),
                ..Default::default()
            }),
            "op=Exists"
        );
    }

    fn controller_event(message: &str) -> Event {
        Event {
            metadata: Some(ObjectMeta {
                name: "e".into(),
                ..Default::default()
            }),
            reason: "SuccessfulCreate".into(),
            message: message.into(),
            r#type: "Normal".into(),
            source: Some(EventSource {
                component: "statefulset-controller".into(),
                host: String::new(),
            }),
            count: 1,
            ..Default::default()
        }
    }

    #[test]
    fn persistent_volume_claim_layout() {
        use twinset_proto::v1::{
            PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
            PersistentVolumeClaimVolumeSource,
        };
        let mut meta = ObjectMeta {
            name: "mysql-storage-mysql-db-0".into(),
            namespace: "database".into(),
            finalizers: vec!["kubernetes.io/pvc-protection".into()],
            ..Default::default()
        };
        meta.labels.insert("app".into(), "mysql".into());
        meta.annotations
            .insert("volume.kubernetes.io/selected-node".into(), "node2".into());
        let mut capacity = BTreeMap::new();
        capacity.insert("storage".to_string(), "1Gi".to_string());
        let pvc = PersistentVolumeClaim {
            metadata: Some(meta),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: vec!["ReadWriteOnce".into()],
                volume_name: "pvc-0b5e".into(),
                volume_mode: "Filesystem".into(),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: "Bound".into(),
                access_modes: vec!["ReadWriteOnce".into()],
                capacity,
            }),
            ..Default::default()
        };
        let user = |name: &str, claim: &str| Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "database".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                volumes: vec![Volume {
                    name: "mysql-storage".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim.into(),
                        read_only: false,
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let pods = vec![
            user("mysql-db-1", "mysql-storage-mysql-db-1"),
            user("mysql-db-0", "mysql-storage-mysql-db-0"),
        ];
        let ev = controller_event(
            "create Claim mysql-storage-mysql-db-0 Pod mysql-db-0 in StatefulSet mysql-db success",
        );
        let out = persistent_volume_claim(&pvc, &pods, &[ev]);
        let expected = "\
Name:          mysql-storage-mysql-db-0
Namespace:     database
StorageClass:  
Status:        Bound
Volume:        pvc-0b5e
Labels:        app=mysql
Annotations:   volume.kubernetes.io/selected-node: node2
Finalizers:    [kubernetes.io/pvc-protection]
Capacity:      1Gi
Access Modes:  RWO
VolumeMode:    Filesystem
Used By:       mysql-db-0
Node:          node2
Events:
  Type    Reason            Age        From                    Message
  ----    ------            ----       ----                    -------
  Normal  SuccessfulCreate  <unknown>  statefulset-controller  create Claim mysql-storage-mysql-db-0 Pod mysql-db-0 in StatefulSet mysql-db success
";
        assert_eq!(out, expected);

        // Not bound yet: no capacity, access modes, users or node.
        let pending = PersistentVolumeClaim {
            metadata: Some(ObjectMeta {
                name: "data-web-0".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: vec!["ReadWriteOnce".into()],
                storage_class_name: Some("local".into()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: "Pending".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let expected = "\
Name:          data-web-0
Namespace:     default
StorageClass:  local
Status:        Pending
Volume:        
Labels:        <none>
Annotations:   <none>
Finalizers:    []
Capacity:      
Access Modes:  
Used By:       <none>
Node:          <none>
Events:        <none>
";
        assert_eq!(persistent_volume_claim(&pending, &[], &[]), expected);
    }

    #[test]
    fn service_layout() {
        use twinset_proto::v1::{
            ContainerState, ContainerStateRunning, PodCondition, ServicePort, ServiceSpec,
        };
        use twinset_proto::IntOrString;
        let mut spec = ServiceSpec {
            cluster_ip: "None".into(),
            r#type: "ClusterIP".into(),
            ports: vec![ServicePort {
                port: 3306,
                protocol: "TCP".into(),
                target_port: Some(IntOrString::int(3306)),
                ..Default::default()
            }],
            ..Default::default()
        };
        spec.selector.insert("app".into(), "mysql".into());
        let mut labels = BTreeMap::new();
        labels.insert("app".to_string(), "mysql".to_string());
        labels.insert("tier".to_string(), "db".to_string());
        let svc = Service {
            metadata: Some(ObjectMeta {
                name: "mysql".into(),
                namespace: "database".into(),
                labels,
                ..Default::default()
            }),
            spec: Some(spec),
            ..Default::default()
        };
        let pod = |ip: &str, ready: &str| Pod {
            status: Some(PodStatus {
                phase: "Running".into(),
                pod_ip: ip.into(),
                conditions: vec![PodCondition {
                    r#type: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }],
                container_statuses: vec![ContainerStatus {
                    state: Some(ContainerState {
                        running: Some(ContainerStateRunning::default()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let pods = vec![
            pod("127.128.2.2", "True"),
            pod("127.128.0.2", "True"),
            pod("127.128.1.2", "False"),
        ];
        let expected = "\
Name:              mysql
Namespace:         database
Labels:            app=mysql
                   tier=db
Annotations:       <none>
Selector:          app=mysql
Type:              ClusterIP
IP Family Policy:  SingleStack
IP Families:       IPv4
IP:                None
IPs:               None
Port:              <unset>  3306/TCP
TargetPort:        3306/TCP
Endpoints:         127.128.0.2:3306,127.128.2.2:3306
Session Affinity:  None
Events:            <none>
";
        assert_eq!(service(&svc, &pods, &[]), expected);
    }

    #[test]
    fn stateful_set_with_partition_events_and_claim_labels() {
        use twinset_proto::v1::{
            PersistentVolumeClaimSpec, PersistentVolumeClaimTemplate,
            RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetStatus,
            StatefulSetUpdateStrategy,
        };
        let mut sel = LabelSelector::default();
        sel.match_labels.insert("app".into(), "web".into());
        let mut tmeta = ObjectMeta {
            name: "data".into(),
            ..Default::default()
        };
        tmeta.labels.insert("tier".into(), "db".into());
        tmeta.annotations.insert(
            "volume.beta.kubernetes.io/storage-class".into(),
            "local".into(),
        );
        let sts = StatefulSet {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                namespace: "default".into(),
                creation_timestamp: "2024-03-05T07:08:09Z".into(),
                ..Default::default()
            }),
            spec: Some(StatefulSetSpec {
                replicas: Some(2),
                selector: Some(sel),
                update_strategy: Some(StatefulSetUpdateStrategy {
                    r#type: "RollingUpdate".into(),
                    rolling_update: Some(RollingUpdateStatefulSetStrategy {
                        partition: Some(1),
                        max_unavailable: Some(twinset_proto::IntOrString::int(1)),
                    }),
                }),
                template: Some(PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "sleep".into(),
                            image: "twinset/sleep:latest".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                volume_claim_templates: vec![PersistentVolumeClaimTemplate {
                    metadata: Some(tmeta),
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: vec!["ReadWriteOnce".into(), "ReadOnlyMany".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                replicas: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut pending = running_pod();
        if let Some(s) = pending.status.as_mut() {
            s.phase = "Pending".into();
        }
        let out = stateful_set(
            &sts,
            &PodCounts::of(&[running_pod(), pending]),
            &[controller_event(
                "create Pod web-0 in StatefulSet web successful",
            )],
        );
        let expected = "\
Name:               web
Namespace:          default
CreationTimestamp:  Tue, 05 Mar 2024 07:08:09 +0000
Selector:           app=web
Labels:             <none>
Annotations:        <none>
Replicas:           2 desired | 1 total
Update Strategy:    RollingUpdate
  Partition:        1
  MaxUnavailable:   1
Pods Status:        1 Running / 1 Waiting / 0 Succeeded / 0 Failed
Pod Template:
  Labels:  <none>
  Containers:
   sleep:
    Image:         twinset/sleep:latest
    Port:          <none>
    Host Port:     <none>
    Environment:   <none>
    Mounts:        <none>
  Volumes:         <none>
  Node-Selectors:  <none>
  Tolerations:     <none>
Volume Claims:
  Name:          data
  StorageClass:  local
  Labels:        tier=db
  Annotations:   volume.beta.kubernetes.io/storage-class=local
  Capacity:      <default>
  Access Modes:  [ReadWriteOnce ReadOnlyMany]
Events:
  Type    Reason            Age        From                    Message
  ----    ------            ----       ----                    -------
  Normal  SuccessfulCreate  <unknown>  statefulset-controller  create Pod web-0 in StatefulSet web successful
";
        assert_eq!(out, expected);
    }
}
