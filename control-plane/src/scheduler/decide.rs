//! The scheduler's brain: where each pod without a node goes, or why it goes nowhere.
//! Pure: no I/O, no clock.
//!
//! Filters, in Kubernetes' order, each giving its reason when a node fails it:
//! cordoned ("node(s) were unschedulable"), taints ("node(s) had untolerated taint
//! {key: value}"), readiness ("node(s) were not ready"), nodeSelector and required node
//! affinity ("node(s) didn't match Pod's node affinity/selector"), host ports ("node(s)
//! didn't have free ports for the requested pod ports"), resources ("Too many pods",
//! "Insufficient cpu", "Insufficient memory") and claims bound to another node
//! ("node(s) had volume node affinity conflict"). Requests must fit the node's
//! allocatable (else capacity) minus what the pods already on it request; a resource the
//! node reports neither way is not limited. Among the nodes that pass, the one with the
//! fewest pods of the same set wins (then the fewest pods, then the name).
//!
//! A pod that fits nowhere gets Kubernetes' message, reasons counted per node and
//! sorted: `0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector,
//! 2 Insufficient memory.`
//!
//! Claim binding is recorded on the claim: the annotation
//! [`SELECTED_NODE_ANNOTATION`] names the node (as Kubernetes' volume scheduling does);
//! a claim carrying it pins every pod that uses it to that node.

use crate::controllers::placement::{self, taint_keys, NO_EXECUTE, NO_SCHEDULE};
use crate::podutil;
use std::collections::{BTreeMap, HashMap};
use twinset_proto::fencing;
use twinset_proto::v1::{Node, PersistentVolumeClaim, Pod, PodSpec, Taint};

/// The claim annotation naming the node its volume lives on.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// The scheduler name pods ask for (empty means the same).
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Everything the scheduler looks at.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot<'a> {
    /// Every node.
    pub nodes: &'a [Node],
    /// Every pod, bound or not (all namespaces).
    pub pods: &'a [Pod],
    /// Every claim (all namespaces).
    pub claims: &'a [PersistentVolumeClaim],
}

/// What happens to one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Bind it to `node`, binding its still unbound `claims` there first.
    Bind {
        /// The chosen node.
        node: String,
        /// Names of the pod's claims that are not bound to a node yet.
        claims: Vec<String>,
    },
    /// It fits nowhere now.
    Unschedulable {
        /// Why, as Kubernetes' FailedScheduling message says it.
        message: String,
    },
}

/// A decision about one pending pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// Where it goes.
    pub decision: Decision,
}

/// The pod waits for this scheduler: no node, not terminating, not finished, and its
/// schedulerName is ours (or empty).
pub fn needs_scheduling(pod: &Pod) -> bool {
    let (node, scheduler) = pod
        .spec
        .as_ref()
        .map(|s| (s.node_name.as_str(), s.scheduler_name.as_str()))
        .unwrap_or_default();
    node.is_empty()
        && (scheduler.is_empty() || scheduler == SCHEDULER_NAME)
        && !podutil::is_terminating(pod)
        && !matches!(podutil::phase(pod), "Succeeded" | "Failed")
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata
        .as_ref()
        .map(|m| m.namespace.as_str())
        .unwrap_or("")
}

/// The node a claim is bound to ("" when none).
pub fn selected_node(claim: &PersistentVolumeClaim) -> &str {
    claim
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.get(SELECTED_NODE_ANNOTATION))
        .map(String::as_str)
        .unwrap_or("")
}

/// The claims a pod mounts, by name.
pub fn pod_claims(pod: &Pod) -> Vec<&str> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.volumes
                .iter()
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .map(|c| c.claim_name.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Claims used by pods already bound to a node but not bound themselves (a bind that
/// half failed, or a pod created with nodeName): (namespace, claim, node).
pub fn claims_to_pin(snap: Snapshot<'_>) -> Vec<(String, String, String)> {
    let claims = index_claims(snap.claims);
    let mut out = Vec::new();
    for pod in snap.pods {
        let node = podutil::node_name(pod);
        if node.is_empty() || matches!(podutil::phase(pod), "Succeeded" | "Failed") {
            continue;
        }
        for name in pod_claims(pod) {
            let key = (namespace(pod), name);
            // A claim unbound from a lost node is not pinned back by the pod still
            // recorded there (it is being replaced).
            if claims.get(&key).is_some_and(|c| {
                selected_node(c).is_empty()
                    && !c
                        .metadata
                        .as_ref()
                        .is_some_and(|m| fencing::lost_on(&m.annotations).iter().any(|n| n == node))
            }) {
                let entry = (key.0.to_string(), name.to_string(), node.to_string());
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
    }
    out
}

fn index_claims(claims: &[PersistentVolumeClaim]) -> HashMap<(&str, &str), &PersistentVolumeClaim> {
    claims
        .iter()
        .filter_map(|c| {
            c.metadata
                .as_ref()
                .map(|m| ((m.namespace.as_str(), m.name.as_str()), c))
        })
        .collect()
}

/// What a pod asks of a node: cpu in millicores, memory in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// Millicores.
    pub cpu: i128,
    /// Bytes.
    pub memory: i128,
}

fn quantity(map: &BTreeMap<String, String>, key: &str, millis: bool) -> Option<i128> {
    let q = twinset_proto::quantity::parse(map.get(key)?).ok()?;
    Some(if millis { q.millis() } else { q.value() })
}

/// The pod's requests: the sum over its containers, or the largest init container's
/// when that is more (init containers run one at a time, before the others).
pub fn requests(spec: &PodSpec) -> Requests {
    let of = |c: &twinset_proto::v1::Container| match c.resources.as_ref() {
        Some(r) => Requests {
            cpu: quantity(&r.requests, "cpu", true).unwrap_or(0),
            memory: quantity(&r.requests, "memory", false).unwrap_or(0),
        },
        None => Requests::default(),
    };
    let mut total = Requests::default();
    for c in &spec.containers {
        let r = of(c);
        total.cpu += r.cpu;
        total.memory += r.memory;
    }
    for c in &spec.init_containers {
        let r = of(c);
        total.cpu = total.cpu.max(r.cpu);
        total.memory = total.memory.max(r.memory);
    }
    total
}

/// A host port a pod takes: (host IP, protocol, port).
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPort {
    ip: String,
    protocol: String,
    port: i32,
}

impl HostPort {
    fn conflicts(&self, other: &HostPort) -> bool {
        let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (any(&self.ip) || any(&other.ip) || self.ip == other.ip)
    }
}

/// Host ports: hostPort when set; with hostNetwork every containerPort is one.
fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .filter_map(|p| {
            let port = if p.host_port > 0 {
                p.host_port
            } else if spec.host_network {
                p.container_port
            } else {
                0
            };
            (port > 0).then(|| HostPort {
                ip: p.host_ip.clone(),
                protocol: if p.protocol.is_empty() {
                    "TCP".into()
                } else {
                    p.protocol.clone()
                },
                port,
            })
        })
        .collect()
}

fn owner_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .as_ref()
        .and_then(|m| m.controller())
        .map(|c| c.uid.as_str())
}

/// One node and what is already placed on it.
struct NodeInfo<'a> {
    node: &'a Node,
    name: &'a str,
    used: Requests,
    pods: i64,
    ports: Vec<HostPort>,
    by_owner: HashMap<String, i64>,
}

impl<'a> NodeInfo<'a> {
    fn new(node: &'a Node) -> Self {
        NodeInfo {
            node,
            name: node
                .metadata
                .as_ref()
                .map(|m| m.name.as_str())
                .unwrap_or(""),
            used: Requests::default(),
            pods: 0,
            ports: Vec::new(),
            by_owner: HashMap::new(),
        }
    }

    fn add(&mut self, pod: &Pod) {
        if let Some(spec) = pod.spec.as_ref() {
            let r = requests(spec);
            self.used.cpu += r.cpu;
            self.used.memory += r.memory;
            self.ports.extend(host_ports(spec));
        }
        self.pods += 1;
        if let Some(uid) = owner_uid(pod) {
            *self.by_owner.entry(uid.to_string()).or_insert(0) += 1;
        }
    }

    /// allocatable[key], else capacity[key]; None when the node reports neither.
    fn allocatable(&self, key: &str, millis: bool) -> Option<i128> {
        let st = self.node.status.as_ref()?;
        quantity(&st.allocatable, key, millis).or_else(|| quantity(&st.capacity, key, millis))
    }

    fn ready(&self) -> bool {
        crate::controllers::node_lifecycle::ready_status(self.node) == "True"
    }

    /// Why a pod with `spec` (claims pinned to `pins`, unbound claims kept off `avoid`)
    /// cannot go here (empty: it can).
    fn reasons(&self, spec: &PodSpec, pins: &[&str], avoid: &[&str]) -> Vec<String> {
        static NO_SPEC: std::sync::OnceLock<twinset_proto::v1::NodeSpec> =
            std::sync::OnceLock::new();
        let node_spec = self
            .node
            .spec
            .as_ref()
            .unwrap_or_else(|| NO_SPEC.get_or_init(Default::default));
        let unschedulable_taint = Taint {
            key: taint_keys::UNSCHEDULABLE.into(),
            effect: NO_SCHEDULE.into(),
            ..Default::default()
        };
        if node_spec.unschedulable
            && !spec
                .tolerations
                .iter()
                .any(|t| placement::tolerates(t, &unschedulable_taint))
        {
            return vec!["node(s) were unschedulable".into()];
        }
        if let Some(t) = node_spec.taints.iter().find(|t| {
            (t.effect == NO_SCHEDULE || t.effect == NO_EXECUTE)
                && !spec
                    .tolerations
                    .iter()
                    .any(|tol| placement::tolerates(tol, t))
        }) {
            return vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key, t.value
            )];
        }
        if !self.ready() {
            return vec!["node(s) were not ready".into()];
        }
        if !placement::selector_matches(spec, self.node) {
            return vec!["node(s) didn't match Pod's node affinity/selector".into()];
        }
        let wanted = host_ports(spec);
        if wanted
            .iter()
            .any(|w| self.ports.iter().any(|used| used.conflicts(w)))
        {
            return vec!["node(s) didn't have free ports for the requested pod ports".into()];
        }
        let mut short = Vec::new();
        if let Some(max) = self.allocatable("pods", false) {
            if i128::from(self.pods) + 1 > max {
                short.push("Too many pods".to_string());
            }
        }
        let r = requests(spec);
        if r.cpu > 0
            && self
                .allocatable("cpu", true)
                .is_some_and(|a| self.used.cpu + r.cpu > a)
        {
            short.push("Insufficient cpu".into());
        }
        if r.memory > 0
            && self
                .allocatable("memory", false)
                .is_some_and(|a| self.used.memory + r.memory > a)
        {
            short.push("Insufficient memory".into());
        }
        if !short.is_empty() {
            return short;
        }
        if pins.iter().any(|n| *n != self.name) {
            return vec!["node(s) had volume node affinity conflict".into()];
        }
        if avoid.contains(&self.name) {
            return vec!["node(s) still held a claim's old data from before they were lost".into()];
        }
        Vec::new()
    }
}

/// Kubernetes' FitError message.
fn fit_error(nodes: usize, reasons: &BTreeMap<String, usize>) -> String {
    if nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!("0/{nodes} nodes are available: {}.", parts.join(", "))
}

/// Places every pending pod (oldest first), counting each placement against its node
/// before the next pod is looked at.
pub fn schedule(snap: Snapshot<'_>) -> Vec<Placement> {
    let mut infos: Vec<NodeInfo<'_>> = snap.nodes.iter().map(NodeInfo::new).collect();
    infos.sort_by(|a, b| a.name.cmp(b.name));
    let index: HashMap<&str, usize> = infos.iter().enumerate().map(|(i, n)| (n.name, i)).collect();
    for pod in snap.pods {
        let node = podutil::node_name(pod);
        if node.is_empty() || matches!(podutil::phase(pod), "Succeeded" | "Failed") {
            continue;
        }
        if let Some(i) = index.get(node) {
            infos[*i].add(pod);
        }
    }
    let claims = index_claims(snap.claims);
    // Claims bound during this pass: (namespace, claim) → node.
    let mut pinned: HashMap<(String, String), String> = HashMap::new();

    let mut pending: Vec<&Pod> = snap.pods.iter().filter(|p| needs_scheduling(p)).collect();
    pending.sort_by(|a, b| podutil::by_age(a, b).then_with(|| namespace(a).cmp(namespace(b))));
    let mut out = Vec::new();
    for pod in pending {
        let ns = namespace(pod).to_string();
        let name = podutil::name(pod).to_string();
        let no_spec = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&no_spec);
        let place = |decision| Placement {
            namespace: ns.clone(),
            pod: name.clone(),
            decision,
        };

        // Claims: all must exist; those bound pin the pod to their node.
        let mut pins: Vec<String> = Vec::new();
        let mut unbound: Vec<String> = Vec::new();
        // Nodes lost while an unbound claim was bound to them: their old folder of it
        // is not yet set aside, so the claim is not bound there meanwhile.
        let mut avoid: Vec<String> = Vec::new();
        let mut problem = None;
        for claim in pod_claims(pod) {
            match claims.get(&(ns.as_str(), claim)) {
                None => {
                    problem = Some(format!("persistentvolumeclaim \"{claim}\" not found"));
                    break;
                }
                Some(c)
                    if c.metadata
                        .as_ref()
                        .is_some_and(|m| !m.deletion_timestamp.is_empty()) =>
                {
                    problem = Some(format!(
                        "persistentvolumeclaim \"{claim}\" is being deleted"
                    ));
                    break;
                }
                Some(c) => {
                    let node = match selected_node(c) {
                        "" => pinned.get(&(ns.clone(), claim.to_string())).cloned(),
                        n => Some(n.to_string()),
                    };
                    match node {
                        Some(n) => pins.push(n),
                        None => {
                            if !unbound.iter().any(|u| u == claim) {
                                unbound.push(claim.to_string());
                            }
                            if let Some(m) = c.metadata.as_ref() {
                                avoid.extend(fencing::lost_on(&m.annotations));
                            }
                        }
                    }
                }
            }
        }
        if let Some(p) = problem {
            let message = if infos.is_empty() {
                fit_error(0, &BTreeMap::new())
            } else {
                format!("0/{} nodes are available: {p}.", infos.len())
            };
            out.push(place(Decision::Unschedulable { message }));
            continue;
        }

        let pin_refs: Vec<&str> = pins.iter().map(String::as_str).collect();
        let avoid_refs: Vec<&str> = avoid.iter().map(String::as_str).collect();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<(i64, i64, usize)> = None;
        for (i, info) in infos.iter().enumerate() {
            let why = info.reasons(spec, &pin_refs, &avoid_refs);
            if why.is_empty() {
                let same = owner_uid(pod)
                    .and_then(|u| info.by_owner.get(u).copied())
                    .unwrap_or(0);
                // Nodes are sorted by name, so a strict improvement keeps the first name.
                if best.is_none_or(|(s, p, _)| (same, info.pods) < (s, p)) {
                    best = Some((same, info.pods, i));
                }
            } else {
                for r in why {
                    *reasons.entry(r).or_insert(0) += 1;
                }
            }
        }
        match best {
            Some((_, _, i)) => {
                let node = infos[i].name.to_string();
                infos[i].add(pod);
                for c in &unbound {
                    pinned.insert((ns.clone(), c.clone()), node.clone());
                }
                out.push(place(Decision::Bind {
                    node,
                    claims: unbound,
                }));
            }
            None => out.push(place(Decision::Unschedulable {
                message: fit_error(infos.len(), &reasons),
            })),
        }
    }
    out
}

#[cfg(test)]
mod tests;
