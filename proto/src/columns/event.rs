//! The Event columns (printers.go printEvent), in `twinset get`'s order: the default
//! ones, then those `-o wide` adds.
use super::format;
use super::Column;
use crate::v1::Event;
use std::time::SystemTime;

/// Event columns: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE | wide: SUBOBJECT, SOURCE,
/// FIRST SEEN, COUNT, NAME.
pub const COLUMNS: &[Column] = &[
    Column::string("Last Seen", "How long ago the event last happened."),
    Column::string("Type", "Normal or Warning."),
    Column::string("Reason", "Why the event happened, in one word."),
    Column::string("Object", "The object the event is about, as kind/name."),
    Column::string("Message", "What happened, for people."),
    Column::string("Subobject", "The part of the object the event is about.").wide(),
    Column::string(
        "Source",
        "The component (and host) that reported the event.",
    )
    .wide(),
    Column::string("First Seen", "How long ago the event first happened.").wide(),
    Column::string("Count", "How often the event happened.").wide(),
    super::NAME.wide(),
];

/// The cells of one event, matching [`COLUMNS`].
pub fn cells(ev: &Event, now: SystemTime) -> Vec<String> {
    let meta = ev.metadata.clone().unwrap_or_default();
    let involved = ev.involved_object.clone().unwrap_or_default();
    let object = format!("{}/{}", involved.kind.to_lowercase(), involved.name);
    let source = ev
        .source
        .as_ref()
        .map(|s| {
            if s.host.is_empty() {
                s.component.clone()
            } else {
                format!("{}, {}", s.component, s.host)
            }
        })
        .unwrap_or_default();
    let first = if ev.first_timestamp.is_empty() {
        meta.creation_timestamp.clone()
    } else {
        ev.first_timestamp.clone()
    };
    vec![
        format::age_at(&last_seen(ev), now),
        ev.r#type.clone(),
        ev.reason.clone(),
        object,
        ev.message.trim().to_string(),
        involved.field_path,
        source,
        format::age_at(&first, now),
        ev.count.max(1).to_string(),
        meta.name,
    ]
}

/// When an event was last seen: lastTimestamp, else firstTimestamp, else its creation.
pub fn last_seen(ev: &Event) -> String {
    if !ev.last_timestamp.is_empty() {
        ev.last_timestamp.clone()
    } else if !ev.first_timestamp.is_empty() {
        ev.first_timestamp.clone()
    } else {
        ev.metadata
            .as_ref()
            .map(|m| m.creation_timestamp.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{EventSource, ObjectMeta, ObjectReference};

    #[test]
    fn cells_of_a_repeated_event() {
        let ev = Event {
            metadata: Some(ObjectMeta {
                name: "web-0.17a".into(),
                creation_timestamp: "2024-03-05T07:00:00Z".into(),
                ..Default::default()
            }),
            involved_object: Some(ObjectReference {
                kind: "Pod".into(),
                name: "web-0".into(),
                field_path: "spec.containers{web}".into(),
                ..Default::default()
            }),
            reason: "BackOff".into(),
            message: "Back-off restarting failed container\n".into(),
            r#type: "Warning".into(),
            last_timestamp: "2024-03-05T07:04:00Z".into(),
            count: 5,
            source: Some(EventSource {
                component: "agent".into(),
                host: "node1".into(),
            }),
            ..Default::default()
        };
        let now = crate::time::parse("2024-03-05T07:05:00Z").unwrap();
        assert_eq!(
            cells(&ev, now),
            [
                "60s",
                "Warning",
                "BackOff",
                "pod/web-0",
                "Back-off restarting failed container",
                "spec.containers{web}",
                "agent, node1",
                "5m",
                "5",
                "web-0.17a"
            ]
        );
        let mut bare = ev.clone();
        bare.last_timestamp.clear();
        assert_eq!(last_seen(&bare), "2024-03-05T07:00:00Z");
        bare.first_timestamp = "2024-03-05T07:01:00Z".into();
        assert_eq!(last_seen(&bare), "2024-03-05T07:01:00Z");
        assert_eq!(cells(&bare, now)[7], "4m");
    }
}
