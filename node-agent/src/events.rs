//! Events the agent records about its pods (sent with the next status report).

use std::sync::atomic::{AtomicU64, Ordering};

use twinset_proto::v1;

/// The component name in the events' source.
pub const COMPONENT: &str = "twinset-agent";

/// Event reason when a pod's limits cannot be enforced (no cgroup privilege).
pub const RESOURCE_LIMITS_NOT_ENFORCED: &str = "ResourceLimitsNotEnforced";

/// Event reason when a pod's volume mounts cannot be isolated (no namespace
/// privilege): the container finds its volumes through `TWINSET_MOUNT_*` variables.
pub const MOUNT_NOT_ISOLATED: &str = "MountNotIsolated";

/// Event reason when a container's volumes cannot be prepared.
pub const FAILED_MOUNT: &str = "FailedMount";

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Something expected happened.
    Normal,
    /// Something the user should look at.
    Warning,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// An event about pod `meta` (optionally about one of its containers).
pub fn pod_event(
    meta: &v1::ObjectMeta,
    node: &str,
    severity: Severity,
    reason: &str,
    message: String,
    container: Option<&str>,
) -> v1::Event {
    let now = twinset_proto::time::now();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    v1::Event {
        api_version: "v1".into(),
        kind: "Event".into(),
        metadata: Some(v1::ObjectMeta {
            name: format!("{}.{:x}{:x}", meta.name, nanos, seq),
            namespace: meta.namespace.clone(),
            ..Default::default()
        }),
        involved_object: Some(v1::ObjectReference {
            kind: "Pod".into(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            api_version: "v1".into(),
            resource_version: String::new(),
            field_path: container
                .map(|c| format!("spec.containers{{{c}}}"))
                .unwrap_or_default(),
        }),
        reason: reason.to_string(),
        message,
        source: Some(v1::EventSource {
            component: COMPONENT.into(),
            host: node.to_string(),
        }),
        first_timestamp: now.clone(),
        last_timestamp: now,
        count: 1,
        r#type: match severity {
            Severity::Normal => "Normal".into(),
            Severity::Warning => "Warning".into(),
        },
        reporting_component: COMPONENT.into(),
        reporting_instance: node.to_string(),
    }
}
