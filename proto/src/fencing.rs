//! The words the control plane and the agents share about a node that is lost: a
//! StatefulSet's policy for its replicas on such a node, the pod condition by which an
//! agent says it will stop (fence) a replica when cut off, the node annotation saying
//! how soon it does so, and the claim annotation naming nodes that may still hold a
//! claim's old data.

use crate::v1::{Pod, PodCondition, PodStatus};
use std::time::Duration;

/// The StatefulSet (and pod) annotation choosing what happens to a replica whose node is
/// lost: [`Policy::Wait`] (the default, as Kubernetes) or [`Policy::Replace`].
pub const ON_NODE_LOST_ANNOTATION: &str = "twinset.io/on-node-lost";

/// The pod condition an agent sets True on a pod it will stop when it has had no
/// acknowledged heartbeat for its fence period; the control plane replaces only such pods.
pub const FENCE_CONDITION: &str = "twinset.io/NodeLossFence";

/// The reason of [`FENCE_CONDITION`] while armed.
pub const FENCE_ARMED_REASON: &str = "FenceArmed";

/// The Node annotation (written by its agent at registration) giving, in milliseconds,
/// how long after its last acknowledged heartbeat every fenced pod is stopped
/// (`--fence-after` plus the kill grace).
pub const FENCE_WITHIN_ANNOTATION: &str = "twinset.io/fence-within-ms";

/// The claim annotation listing (comma-separated) nodes that were lost while the claim
/// was bound to them and have not yet said they set its old folder aside; the
/// scheduler does not bind the claim to them meanwhile.
pub const LOST_ON_ANNOTATION: &str = "twinset.io/lost-on";

/// At most this many nodes are kept in [`LOST_ON_ANNOTATION`] (the oldest go first).
pub const MAX_LOST_ON: usize = 16;

/// The most set-aside claim folders one heartbeat tells (`HeartbeatRequest.kept_aside`);
/// the control plane acts on no more, the agent keeps the rest for later heartbeats.
pub const MAX_KEPT_PER_HEARTBEAT: usize = 64;

/// A StatefulSet's policy for replicas on a lost node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// The replica stays until its node returns, the node is deleted, or a user
    /// force-deletes the pod (Kubernetes' behaviour).
    #[default]
    Wait,
    /// The replica's node fences it; after `--replace-after` the control plane
    /// recreates it on another node with new, empty volumes.
    Replace,
}

impl Policy {
    /// The annotation's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Wait => "Wait",
            Policy::Replace => "Replace",
        }
    }

    /// Parses the annotation's value (exact, as Kubernetes enums).
    pub fn parse(value: &str) -> Result<Policy, String> {
        match value {
            "Wait" => Ok(Policy::Wait),
            "Replace" => Ok(Policy::Replace),
            other => Err(format!(
                "Unsupported value: {other:?}: supported values: \"Replace\", \"Wait\""
            )),
        }
    }

    /// The policy `annotations` give (Wait when absent or unreadable: validation refuses
    /// a bad value before it is stored).
    pub fn of(annotations: &std::collections::BTreeMap<String, String>) -> Policy {
        annotations
            .get(ON_NODE_LOST_ANNOTATION)
            .and_then(|v| Policy::parse(v).ok())
            .unwrap_or_default()
    }
}

/// The policy a pod carries (its own annotation, copied from its set).
pub fn pod_policy(pod: &Pod) -> Policy {
    pod.metadata
        .as_ref()
        .map(|m| Policy::of(&m.annotations))
        .unwrap_or_default()
}

/// True when the pod's agent has said it fences this pod.
pub fn fence_armed(pod: &Pod) -> bool {
    armed_in(pod.status.as_ref())
}

/// Whether `status` carries the armed [`FENCE_CONDITION`] (an agent's report, before it
/// is a stored pod).
pub fn armed_in(status: Option<&PodStatus>) -> bool {
    status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == FENCE_CONDITION && c.status == "True")
    })
}

/// The condition an agent reports on a pod it fences, fenced within `within` of its last
/// acknowledged heartbeat.
pub fn armed_condition(within: Duration, now: &str) -> PodCondition {
    PodCondition {
        r#type: FENCE_CONDITION.into(),
        status: "True".into(),
        reason: FENCE_ARMED_REASON.into(),
        message: format!(
            "the node stops this pod when cut off from the control plane for {}",
            short_duration(within)
        ),
        last_transition_time: now.into(),
        ..Default::default()
    }
}

/// `3s`, or `2500ms` when not a whole number of seconds (flags in tests are short).
pub fn short_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Reads [`FENCE_WITHIN_ANNOTATION`].
pub fn fence_within(annotations: &std::collections::BTreeMap<String, String>) -> Option<Duration> {
    annotations
        .get(FENCE_WITHIN_ANNOTATION)
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis)
}

/// The nodes of [`LOST_ON_ANNOTATION`].
pub fn lost_on(annotations: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    annotations
        .get(LOST_ON_ANNOTATION)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Writes [`LOST_ON_ANNOTATION`] (removed when empty), keeping the newest
/// [`MAX_LOST_ON`] nodes.
pub fn set_lost_on(
    annotations: &mut std::collections::BTreeMap<String, String>,
    mut nodes: Vec<String>,
) {
    if nodes.len() > MAX_LOST_ON {
        nodes.drain(..nodes.len() - MAX_LOST_ON);
    }
    if nodes.is_empty() {
        annotations.remove(LOST_ON_ANNOTATION);
    } else {
        annotations.insert(LOST_ON_ANNOTATION.into(), nodes.join(","));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn policy_values_are_exact() {
        assert_eq!(Policy::parse("Replace"), Ok(Policy::Replace));
        assert_eq!(Policy::parse("Wait"), Ok(Policy::Wait));
        assert!(Policy::parse("replace").is_err());
        let mut a = BTreeMap::new();
        assert_eq!(Policy::of(&a), Policy::Wait);
        a.insert(ON_NODE_LOST_ANNOTATION.into(), "Replace".into());
        assert_eq!(Policy::of(&a), Policy::Replace);
    }

    #[test]
    fn lost_on_is_a_bounded_list() {
        let mut a = BTreeMap::new();
        set_lost_on(&mut a, vec!["n1".into(), "n2".into()]);
        assert_eq!(a[LOST_ON_ANNOTATION], "n1,n2");
        assert_eq!(lost_on(&a), vec!["n1", "n2"]);
        set_lost_on(&mut a, (0..20).map(|i| format!("n{i}")).collect());
        let kept = lost_on(&a);
        assert_eq!(kept.len(), MAX_LOST_ON);
        assert_eq!(kept[0], "n4", "the oldest go first");
        set_lost_on(&mut a, vec![]);
        assert!(!a.contains_key(LOST_ON_ANNOTATION));
    }

    #[test]
    fn fence_within_reads_milliseconds() {
        let mut a = BTreeMap::new();
        assert_eq!(fence_within(&a), None);
        a.insert(FENCE_WITHIN_ANNOTATION.into(), "5000".into());
        assert_eq!(fence_within(&a), Some(Duration::from_secs(5)));
        a.insert(FENCE_WITHIN_ANNOTATION.into(), "5s".into());
        assert_eq!(fence_within(&a), None);
    }
}
