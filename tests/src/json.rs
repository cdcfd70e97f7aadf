//! Reading `get -o json` output (the Kubernetes shape) with serde_json.

use serde_json::Value;

/// The objects of a `get -o json` answer: `items` of a `kind: List`, or the one object.
pub fn items(v: &Value) -> Vec<Value> {
    match v.get("items") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) => Vec::new(),
        _ if v.get("kind").and_then(Value::as_str) == Some("List") => Vec::new(),
        _ => vec![v.clone()],
    }
}

/// A string at a `/`-separated JSON pointer, or "" when absent.
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// An integer at a JSON pointer (numbers or decimal strings), or `None`.
pub fn int_at(v: &Value, pointer: &str) -> Option<i64> {
    match v.pointer(pointer)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The interesting parts of a pod, read from its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// metadata.name
    pub name: String,
    /// metadata.namespace
    pub namespace: String,
    /// metadata.uid
    pub uid: String,
    /// spec.nodeName
    pub node: String,
    /// status.phase
    pub phase: String,
    /// status.podIP
    pub ip: String,
    /// metadata.deletionTimestamp is set.
    pub terminating: bool,
    /// The Ready condition is True.
    pub ready: bool,
    /// Sum of `containerStatuses[*].restartCount`.
    pub restarts: i64,
    /// Kinds and names of the owner references ("DaemonSet/node-monitor").
    pub owners: Vec<String>,
    /// metadata.labels
    pub labels: serde_json::Map<String, Value>,
    /// The raw object.
    pub raw: Value,
}

impl PodView {
    /// Reads a pod object.
    pub fn from_json(v: &Value) -> PodView {
        let ready = v
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True");
        let restarts = v
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| int_at(c, "/restartCount").unwrap_or(0))
            .sum();
        let owners = v
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|o| format!("{}/{}", str_at(o, "/kind"), str_at(o, "/name")))
            .collect();
        PodView {
            name: str_at(v, "/metadata/name").to_string(),
            namespace: str_at(v, "/metadata/namespace").to_string(),
            uid: str_at(v, "/metadata/uid").to_string(),
            node: str_at(v, "/spec/nodeName").to_string(),
            phase: str_at(v, "/status/phase").to_string(),
            ip: str_at(v, "/status/podIP").to_string(),
            terminating: !str_at(v, "/metadata/deletionTimestamp").is_empty(),
            ready,
            restarts,
            owners,
            labels: v
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            raw: v.clone(),
        }
    }

    /// Running, Ready and not being deleted.
    pub fn is_running_ready(&self) -> bool {
        self.phase == "Running" && self.ready && !self.terminating
    }

    /// The first container's `state.terminated.reason` or `lastState.terminated.reason`.
    pub fn terminated_reason(&self) -> Option<String> {
        let cs = self.raw.pointer("/status/containerStatuses/0")?;
        for p in ["/state/terminated/reason", "/lastState/terminated/reason"] {
            let r = str_at(cs, p);
            if !r.is_empty() {
                return Some(r.to_string());
            }
        }
        None
    }
}

/// One line per pod, for failure messages.
pub fn summary(pods: &[PodView]) -> String {
    if pods.is_empty() {
        return "no pods".into();
    }
    pods.iter()
        .map(|p| {
            format!(
                "{} node={} phase={} ready={} ip={} restarts={}{}",
                p.name,
                p.node,
                p.phase,
                p.ready,
                p.ip,
                p.restarts,
                if p.terminating { " terminating" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
