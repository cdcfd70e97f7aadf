//! Small questions about pods that several controllers ask: ready, available,
//! terminating, failed, age order.

use std::cmp::Ordering;
use std::time::{Duration, SystemTime};
use twinset_proto::v1::Pod;

/// The pod's metadata name ("" when missing).
pub fn name(pod: &Pod) -> &str {
    pod.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("")
}

/// The node the pod is bound to ("" when unbound).
pub fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .map(|s| s.node_name.as_str())
        .unwrap_or("")
}

/// The pod's phase ("" before the agent reported any).
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("")
}

/// Deletion was requested (the pod is terminating).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty())
}

/// The Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the Ready condition last became True (None when not ready; UNIX_EPOCH when ready
/// with no transition time recorded).
pub fn ready_since(pod: &Pod) -> Option<SystemTime> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == "Ready" && c.status == "True")?;
    Some(twinset_proto::time::parse(&cond.last_transition_time).unwrap_or(SystemTime::UNIX_EPOCH))
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: SystemTime) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + Duration::from_secs(min_ready_seconds as u64) <= now,
    }
}

/// Oldest first: creation time, then name (Kubernetes keeps the oldest of duplicates).
pub fn by_age(a: &Pod, b: &Pod) -> Ordering {
    let created = |p: &Pod| {
        p.metadata
            .as_ref()
            .and_then(|m| twinset_proto::time::parse(&m.creation_timestamp))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    created(a)
        .cmp(&created(b))
        .then_with(|| name(a).cmp(name(b)))
}
