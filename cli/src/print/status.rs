//! What kubectl computes for the READY, STATUS and RESTARTS columns of pods and
//! the STATUS and ROLES columns of nodes (printers.go printPod / printNode).
use super::format;
use twinset_proto::v1::{ContainerState, Node, Pod};

/// The derived columns of one pod row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    /// `ready/total` containers.
    pub ready: String,
    /// The STATUS column: a container reason, `Terminating`, or the phase.
    pub status: String,
    /// Total restarts of the pod's containers.
    pub restarts: i64,
    /// When the last restarted container last finished (RFC 3339), if known.
    pub last_restart: Option<String>,
}

impl PodSummary {
    /// The RESTARTS column: `2 (5m ago)` when the last restart time is known.
    pub fn restarts_column(&self) -> String {
        match &self.last_restart {
            Some(t) if self.restarts != 0 => {
                format!("{} ({} ago)", self.restarts, format::age(t))
            }
            _ => self.restarts.to_string(),
        }
    }
}

/// Computes READY, STATUS and RESTARTS exactly as kubectl's printPod does.
pub fn pod_summary(pod: &Pod) -> PodSummary {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let meta = pod.metadata.clone().unwrap_or_default();
    let total = spec.containers.len();
    let mut ready = 0usize;
    let mut restarts: i64 = 0;
    let mut last_restart: Option<String> = None;
    let mut note_restart = |state: Option<&ContainerState>| {
        if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            if !t.finished_at.is_empty()
                && last_restart
                    .as_deref()
                    .is_none_or(|cur| later(&t.finished_at, cur))
            {
                last_restart = Some(t.finished_at.clone());
            }
        }
    };

    let mut reason = if status.reason.is_empty() {
        status.phase.clone()
    } else {
        status.reason.clone()
    };

    let mut initializing = false;
    for (i, c) in status.init_container_statuses.iter().enumerate() {
        restarts += i64::from(c.restart_count);
        note_restart(c.last_state.as_ref());
        let state = c.state.clone().unwrap_or_default();
        match (&state.terminated, &state.waiting) {
            (Some(t), _) if t.exit_code == 0 => continue,
            (Some(t), _) => {
                reason = if !t.reason.is_empty() {
                    format!("Init:{}", t.reason)
                } else if t.signal != 0 {
                    format!("Init:Signal:{}", t.signal)
                } else {
                    format!("Init:ExitCode:{}", t.exit_code)
                };
            }
            (None, Some(w)) if !w.reason.is_empty() && w.reason != "PodInitializing" => {
                reason = format!("Init:{}", w.reason);
            }
            _ => reason = format!("Init:{}/{}", i, spec.init_containers.len()),
        }
        initializing = true;
        break;
    }

    let initialized = status
        .conditions
        .iter()
        .any(|c| c.r#type == "Initialized" && c.status == "True");
    if !initializing || initialized {
        restarts = 0;
        let mut has_running = false;
        for c in status.container_statuses.iter().rev() {
            restarts += i64::from(c.restart_count);
            note_restart(c.last_state.as_ref());
            let state = c.state.clone().unwrap_or_default();
            if let Some(w) = state.waiting.as_ref().filter(|w| !w.reason.is_empty()) {
                reason = w.reason.clone();
            } else if let Some(t) = &state.terminated {
                reason = if !t.reason.is_empty() {
                    t.reason.clone()
                } else if t.signal != 0 {
                    format!("Signal:{}", t.signal)
                } else {
                    format!("ExitCode:{}", t.exit_code)
                };
            } else if c.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = status
                .conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    if !meta.deletion_timestamp.is_empty() {
        if status.reason == "NodeLost" {
            reason = "Unknown".to_string();
        } else if status.phase != "Succeeded" && status.phase != "Failed" {
            reason = "Terminating".to_string();
        }
    }
    if reason.is_empty() {
        reason = "Pending".to_string();
    }

    PodSummary {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
        last_restart,
    }
}

fn later(a: &str, b: &str) -> bool {
    match (twinset_proto::time::parse(a), twinset_proto::time::parse(b)) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

/// The STATUS column of a node: `Ready`, `NotReady` or `Unknown`, plus `,SchedulingDisabled` when cordoned.
pub fn node_status(node: &Node) -> String {
    let status = node.status.clone().unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(c) = status.conditions.iter().find(|c| c.r#type == "Ready") {
        parts.push(if c.status == "True" {
            "Ready".to_string()
        } else {
            "NotReady".to_string()
        });
    }
    if parts.is_empty() {
        parts.push("Unknown".to_string());
    }
    if node.spec.as_ref().is_some_and(|s| s.unschedulable) {
        parts.push("SchedulingDisabled".to_string());
    }
    parts.join(",")
}

/// The ROLES column of a node: from `node-role.kubernetes.io/<role>` and `kubernetes.io/role` labels.
pub fn node_roles(node: &Node) -> String {
    let mut roles: Vec<String> = Vec::new();
    if let Some(meta) = &node.metadata {
        for (k, v) in &meta.labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role" && !v.is_empty() {
                roles.push(v.clone());
            }
        }
    }
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        format::NONE.to_string()
    } else {
        roles.join(",")
    }
}

/// The node's address of the given type (`InternalIP`, `ExternalIP`, `Hostname`), or `<none>`.
pub fn node_address(node: &Node, kind: &str) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.iter().find(|a| a.r#type == kind))
        .map(|a| a.address.clone())
        .unwrap_or_else(|| format::NONE.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{
        Container, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        ContainerStatus, NodeCondition, NodeSpec, NodeStatus, ObjectMeta, PodCondition, PodSpec,
        PodStatus,
    };

    fn pod(phase: &str, statuses: Vec<ContainerStatus>) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: phase.into(),
                container_statuses: statuses,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running(ready: bool, restarts: i32) -> ContainerStatus {
        ContainerStatus {
            name: "c".into(),
            ready,
            restart_count: restarts,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: "2024-01-01T00:00:00Z".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn running_ready_pod() {
        let s = pod_summary(&pod("Running", vec![running(true, 0)]));
        assert_eq!(s.ready, "1/1");
        assert_eq!(s.status, "Running");
        assert_eq!(s.restarts_column(), "0");
    }

    #[test]
    fn waiting_reason_wins_over_phase() {
        let st = ContainerStatus {
            name: "c".into(),
            restart_count: 3,
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: "CrashLoopBackOff".into(),
                    message: String::new(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = pod_summary(&pod("Running", vec![st]));
        assert_eq!(s.status, "CrashLoopBackOff");
        assert_eq!(s.ready, "0/1");
        assert_eq!(s.restarts, 3);
        assert_eq!(s.restarts_column(), "3");
    }

    #[test]
    fn terminated_without_reason_shows_exit_code_or_signal() {
        let term = |code, signal| ContainerStatus {
            name: "c".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    signal,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            pod_summary(&pod("Failed", vec![term(2, 0)])).status,
            "ExitCode:2"
        );
        assert_eq!(
            pod_summary(&pod("Failed", vec![term(137, 9)])).status,
            "Signal:9"
        );
        let mut oom = term(137, 9);
        if let Some(t) = oom.state.as_mut().and_then(|s| s.terminated.as_mut()) {
            t.reason = "OOMKilled".into();
        }
        assert_eq!(pod_summary(&pod("Running", vec![oom])).status, "OOMKilled");
    }

    #[test]
    fn deletion_timestamp_means_terminating() {
        let mut p = pod("Running", vec![running(true, 0)]);
        if let Some(m) = p.metadata.as_mut() {
            m.deletion_timestamp = "2024-01-01T00:00:00Z".into();
        }
        assert_eq!(pod_summary(&p).status, "Terminating");
        if let Some(s) = p.status.as_mut() {
            s.reason = "NodeLost".into();
        }
        assert_eq!(pod_summary(&p).status, "Unknown");
    }

    #[test]
    fn completed_with_running_sibling_is_running_or_not_ready() {
        let mut p = pod("Running", vec![]);
        if let Some(spec) = p.spec.as_mut() {
            spec.containers.push(Container {
                name: "d".into(),
                ..Default::default()
            });
        }
        let done = ContainerStatus {
            name: "d".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    reason: "Completed".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(s) = p.status.as_mut() {
            s.container_statuses = vec![running(true, 0), done];
        }
        assert_eq!(pod_summary(&p).status, "NotReady");
        if let Some(s) = p.status.as_mut() {
            s.conditions.push(PodCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            });
        }
        let s = pod_summary(&p);
        assert_eq!(s.status, "Running");
        assert_eq!(s.ready, "1/2");
    }

    #[test]
    fn init_container_states() {
        let mut p = pod("Pending", vec![]);
        if let Some(spec) = p.spec.as_mut() {
            spec.init_containers = vec![Container::default(), Container::default()];
        }
        let waiting = ContainerStatus {
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: "PodInitializing".into(),
                    message: String::new(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(s) = p.status.as_mut() {
            s.init_container_statuses = vec![waiting];
        }
        assert_eq!(pod_summary(&p).status, "Init:0/2");
    }

    #[test]
    fn empty_pod_is_pending() {
        let p = Pod::default();
        let s = pod_summary(&p);
        assert_eq!(s.status, "Pending");
        assert_eq!(s.ready, "0/0");
    }

    #[test]
    fn node_status_column() {
        let mut n = Node {
            status: Some(NodeStatus {
                conditions: vec![NodeCondition {
                    r#type: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(node_status(&n), "Ready");
        n.spec = Some(NodeSpec {
            unschedulable: true,
            ..Default::default()
        });
        assert_eq!(node_status(&n), "Ready,SchedulingDisabled");
        if let Some(s) = n.status.as_mut() {
            s.conditions[0].status = "Unknown".into();
        }
        assert_eq!(node_status(&n), "NotReady,SchedulingDisabled");
        assert_eq!(node_status(&Node::default()), "Unknown");
    }

    #[test]
    fn node_roles_column() {
        let mut n = Node::default();
        assert_eq!(node_roles(&n), "<none>");
        let mut meta = ObjectMeta::default();
        meta.labels.insert(
            "node-role.kubernetes.io/control-plane".into(),
            String::new(),
        );
        n.metadata = Some(meta);
        assert_eq!(node_roles(&n), "control-plane");
    }
}
