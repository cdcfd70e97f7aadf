//! The node columns and what kubectl computes for their STATUS and ROLES cells
//! (printers.go printNode).
use super::format::{self, NONE};
use super::{Column, AGE, NAME};
use crate::v1::Node;
use std::time::SystemTime;

/// Node columns: NAME, STATUS, ROLES, AGE, VERSION | wide: INTERNAL-IP, EXTERNAL-IP,
/// OS-IMAGE, KERNEL-VERSION, CONTAINER-RUNTIME.
pub const COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "Status",
        "Whether the node is ready, and whether it is cordoned.",
    ),
    Column::string("Roles", "The node's roles, from its node-role labels."),
    AGE,
    Column::string("Version", "The node agent's version."),
    Column::string("Internal-IP", "The node's internal address.").wide(),
    Column::string("External-IP", "The node's external address.").wide(),
    Column::string("OS-Image", "The operating system the node reports.").wide(),
    Column::string("Kernel-Version", "The node's kernel version.").wide(),
    Column::string(
        "Container-Runtime",
        "The node's container runtime and its version.",
    )
    .wide(),
];

/// The cells of one node, matching [`COLUMNS`].
pub fn cells(node: &Node, now: SystemTime) -> Vec<String> {
    let meta = node.metadata.clone().unwrap_or_default();
    let info = node
        .status
        .as_ref()
        .and_then(|s| s.node_info.clone())
        .unwrap_or_default();
    vec![
        meta.name,
        status(node),
        roles(node),
        format::age_at(&meta.creation_timestamp, now),
        info.kubelet_version,
        address(node, "InternalIP"),
        address(node, "ExternalIP"),
        format::or_none(&info.os_image),
        format::or_none(&info.kernel_version),
        format::or_none(&info.container_runtime_version),
    ]
}

/// The STATUS column of a node: `Ready`, `NotReady` or `Unknown`, plus `,SchedulingDisabled` when cordoned.
pub fn status(node: &Node) -> String {
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
pub fn roles(node: &Node) -> String {
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
        NONE.to_string()
    } else {
        roles.join(",")
    }
}

/// The node's address of the given type (`InternalIP`, `ExternalIP`, `Hostname`), or `<none>`.
pub fn address(node: &Node, kind: &str) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.iter().find(|a| a.r#type == kind))
        .map(|a| a.address.clone())
        .unwrap_or_else(|| NONE.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, ObjectMeta};

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
        assert_eq!(status(&n), "Ready");
        n.spec = Some(NodeSpec {
            unschedulable: true,
            ..Default::default()
        });
        assert_eq!(status(&n), "Ready,SchedulingDisabled");
        if let Some(s) = n.status.as_mut() {
            s.conditions[0].status = "Unknown".into();
        }
        assert_eq!(status(&n), "NotReady,SchedulingDisabled");
        assert_eq!(status(&Node::default()), "Unknown");
    }

    #[test]
    fn node_roles_column() {
        let mut n = Node::default();
        assert_eq!(roles(&n), "<none>");
        let mut meta = ObjectMeta::default();
        meta.labels.insert(
            "node-role.kubernetes.io/control-plane".into(),
            String::new(),
        );
        n.metadata = Some(meta);
        assert_eq!(roles(&n), "control-plane");
    }

    #[test]
    fn cells_of_a_ready_node() {
        let n = Node {
            metadata: Some(ObjectMeta {
                name: "node1".into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: vec![NodeCondition {
                    r#type: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                addresses: vec![NodeAddress {
                    r#type: "InternalIP".into(),
                    address: "127.0.0.1".into(),
                }],
                node_info: Some(NodeSystemInfo {
                    kubelet_version: "v0.1.0".into(),
                    kernel_version: "6.1.0".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            cells(&n, SystemTime::now()),
            [
                "node1",
                "Ready",
                "<none>",
                "<unknown>",
                "v0.1.0",
                "127.0.0.1",
                "<none>",
                "<none>",
                "6.1.0",
                "<none>"
            ]
        );
    }
}
