//! Recording Events: what `describe` shows under "Events" (Type, Reason, Age, From,
//! Message). Best effort: a failed event write is logged, never fails the caller.

use crate::store::Store;
use std::time::{SystemTime, UNIX_EPOCH};
use twinset_proto::v1::{Event, EventSource, Object, ObjectMeta, ObjectReference};

/// Normal events (the usual outcome).
pub const NORMAL: &str = "Normal";
/// Warning events (something went wrong).
pub const WARNING: &str = "Warning";

/// Who reports an event: the component ("daemonset-controller", "kubelet") and host.
#[derive(Clone, Debug)]
pub struct Source {
    /// The "From" column.
    pub component: String,
    /// The node, for agent events.
    pub host: String,
}

impl Source {
    /// A control-plane component (no host).
    pub fn component(name: &str) -> Source {
        Source {
            component: name.to_string(),
            host: String::new(),
        }
    }
}

/// Builds the Event object for `involved` (not yet stored).
pub fn build(
    involved: &Object,
    r#type: &str,
    reason: &str,
    message: &str,
    source: &Source,
) -> Event {
    let m = involved.meta();
    let now = twinset_proto::time::now();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let namespace = if m.namespace.is_empty() {
        "default".to_string()
    } else {
        m.namespace.clone()
    };
    Event {
        api_version: "v1".into(),
        kind: "Event".into(),
        metadata: Some(ObjectMeta {
            name: format!("{}.{nanos:x}", m.name),
            namespace,
            ..Default::default()
        }),
        involved_object: Some(ObjectReference {
            kind: involved.kind().as_str().into(),
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            uid: m.uid.clone(),
            api_version: involved.kind().api_version().into(),
            resource_version: m.resource_version.clone(),
            field_path: String::new(),
        }),
        reason: reason.into(),
        message: message.into(),
        source: Some(EventSource {
            component: source.component.clone(),
            host: source.host.clone(),
        }),
        first_timestamp: now.clone(),
        last_timestamp: now,
        count: 1,
        r#type: r#type.into(),
        reporting_component: source.component.clone(),
        reporting_instance: source.host.clone(),
    }
}

/// Records an event about `involved`.
pub async fn record(
    store: &dyn Store,
    involved: &Object,
    r#type: &str,
    reason: &str,
    message: &str,
    source: &Source,
) {
    let event = build(involved, r#type, reason, message, source);
    if let Err(e) = store.create(Object::from(event)).await {
        tracing::warn!(object = %involved.describe(), reason, error = %e, "cannot record event");
    }
}

/// Records an event in the background, without waiting for it: controllers' events are
/// best effort and must not slow down or fail a reconcile.
pub fn record_later(
    store: &std::sync::Arc<dyn Store>,
    involved: &Object,
    r#type: &'static str,
    reason: &'static str,
    message: String,
    component: &'static str,
) {
    let (store, involved) = (store.clone(), involved.clone());
    tokio::spawn(async move {
        record(
            &*store,
            &involved,
            r#type,
            reason,
            &message,
            &Source::component(component),
        )
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use twinset_proto::v1::DaemonSet;
    use twinset_proto::Kind;

    #[tokio::test]
    async fn records_an_event_next_to_its_object() {
        let store = MemoryStore::new(10);
        let ds = Object::from(DaemonSet {
            metadata: Some(ObjectMeta {
                name: "node-monitor".into(),
                namespace: "kube-system".into(),
                uid: "u".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        record(
            &store,
            &ds,
            NORMAL,
            "SuccessfulCreate",
            "Created pod: node-monitor-abcde",
            &Source::component("daemonset-controller"),
        )
        .await;
        let (events, _) = store.list(Kind::Event, Some("kube-system"));
        let ev = events[0].as_event().unwrap();
        assert!(ev
            .metadata
            .as_ref()
            .unwrap()
            .name
            .starts_with("node-monitor."));
        assert_eq!(ev.involved_object.as_ref().unwrap().kind, "DaemonSet");
        assert_eq!(ev.involved_object.as_ref().unwrap().uid, "u");
        assert_eq!(
            ev.source.as_ref().unwrap().component,
            "daemonset-controller"
        );
        assert_eq!(
            (ev.reason.as_str(), ev.count, ev.r#type.as_str()),
            ("SuccessfulCreate", 1, "Normal")
        );
    }
}
