use super::*;
use crate::v1::{
    BootstrapToken, ControllerRevision, DaemonSet, Event, Namespace, Node, ObjectMeta,
    PersistentVolumeClaim, Pod, PodSpec, PodStatus, Service, StatefulSet,
};
use std::time::Duration;

/// Every kind, served or not.
fn every_kind() -> impl Iterator<Item = Kind> {
    Kind::ALL.into_iter().chain(Kind::INTERNAL)
}

fn meta(name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: name.into(),
        creation_timestamp: "2024-03-05T07:00:00Z".into(),
        ..Default::default()
    })
}

/// An object of `kind` named `x`, created at 07:00.
fn named(kind: Kind) -> Object {
    match kind {
        Kind::Namespace => Object::from(Namespace {
            metadata: meta("x"),
            ..Default::default()
        }),
        Kind::Node => Object::from(Node {
            metadata: meta("x"),
            ..Default::default()
        }),
        Kind::Pod => Object::from(Pod {
            metadata: meta("x"),
            ..Default::default()
        }),
        Kind::DaemonSet => Object::from(DaemonSet {
            metadata: meta("x"),
            ..Default::default()
        }),
        Kind::StatefulSet => Object::from(StatefulSet {
            metadata: meta("x"),
            ..Default::default()
        }),
        Kind::Service => Object::from(Service {
            metadata: meta("x"),
            ..Default::default()
        }),
        Kind::PersistentVolumeClaim => Object::from(PersistentVolumeClaim {
            metadata: meta("x"),
            ..Default::default()
        }),
        Kind::ControllerRevision => Object::from(ControllerRevision {
            metadata: meta("x"),
            ..Default::default()
        }),
        Kind::Event => Object::from(Event {
            metadata: meta("x"),
            ..Default::default()
        }),
        Kind::BootstrapToken => Object::from(BootstrapToken {
            metadata: meta("x"),
            ..Default::default()
        }),
    }
}

fn headers(kind: Kind, wide: bool) -> Vec<String> {
    columns(kind)
        .iter()
        .filter(|c| c.is_wide() == wide)
        .map(Column::header)
        .collect()
}

#[test]
fn every_kind_has_one_cell_per_column() {
    let now = crate::time::parse("2024-03-05T07:10:00Z").unwrap();
    for kind in every_kind() {
        let cols = columns(kind);
        let cells = cells_at(kind, &named(kind), now);
        assert_eq!(cells.len(), cols.len(), "{kind:?}: {cells:?}");
        for (col, cell) in cols.iter().zip(&cells) {
            match (col.name, col.format) {
                (_, "name") => assert_eq!(cell, "x", "{kind:?}"),
                ("Age", _) => assert_eq!(cell, "10m", "{kind:?}"),
                _ => {}
            }
            if col.r#type == "integer" {
                assert!(cell.parse::<i64>().is_ok(), "{kind:?} {}: {cell}", col.name);
            }
        }
        // An object of another kind reads as an empty one: still one cell a column.
        let other = named(Kind::Namespace);
        if kind != Kind::Namespace {
            assert_eq!(cells_at(kind, &other, now).len(), cols.len(), "{kind:?}");
        }
    }
}

#[test]
fn default_columns_first_then_wide_ones() {
    for kind in every_kind() {
        let cols = columns(kind);
        assert!(
            cols.windows(2).all(|w| w[0].priority <= w[1].priority),
            "{kind:?}"
        );
        assert!(cols.iter().all(|c| c.priority == 0 || c.priority == 1));
        assert!(cols
            .iter()
            .all(|c| c.r#type == "string" || c.r#type == "integer"));
        assert!(cols.iter().all(|c| !c.description.is_empty()));
        assert_eq!(
            cols.iter().filter(|c| c.format == "name").count(),
            1,
            "{kind:?}: one column names the object"
        );
        assert!(cols
            .iter()
            .all(|c| c.format.is_empty() || c.format == "name"));
    }
}

#[test]
fn headers_are_kubectls() {
    assert_eq!(
        headers(Kind::Pod, false),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert_eq!(
        headers(Kind::Pod, true),
        ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    );
    assert_eq!(
        headers(Kind::Node, false),
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    );
    assert_eq!(
        headers(Kind::Node, true),
        [
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ]
    );
    assert_eq!(
        headers(Kind::DaemonSet, false),
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE"
        ]
    );
    assert_eq!(
        headers(Kind::DaemonSet, true),
        ["CONTAINERS", "IMAGES", "SELECTOR"]
    );
    assert_eq!(headers(Kind::StatefulSet, false), ["NAME", "READY", "AGE"]);
    assert_eq!(headers(Kind::StatefulSet, true), ["CONTAINERS", "IMAGES"]);
    assert_eq!(
        headers(Kind::Service, false),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert_eq!(headers(Kind::Service, true), ["SELECTOR"]);
    assert_eq!(
        headers(Kind::PersistentVolumeClaim, false),
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "AGE"
        ]
    );
    assert_eq!(
        headers(Kind::PersistentVolumeClaim, true),
        ["VOLUMEMODE", "NODE"]
    );
    assert_eq!(
        headers(Kind::Event, false),
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert_eq!(
        headers(Kind::Event, true),
        ["SUBOBJECT", "SOURCE", "FIRST SEEN", "COUNT", "NAME"]
    );
    assert_eq!(headers(Kind::Namespace, false), ["NAME", "STATUS", "AGE"]);
    assert!(headers(Kind::Namespace, true).is_empty());
    assert_eq!(
        headers(Kind::ControllerRevision, false),
        ["NAME", "CONTROLLER", "REVISION", "AGE"]
    );
}

#[test]
fn kube_apiserver_names_and_types() {
    let ds = columns(Kind::DaemonSet);
    assert_eq!(ds[0].name, "Name");
    assert_eq!(ds[0].format, "name");
    assert_eq!(ds[4].name, "Up-to-date");
    assert_eq!(ds[1].r#type, "integer");
    assert_eq!(ds[6].r#type, "string");
    let pods = columns(Kind::Pod);
    assert_eq!(pods[3].name, "Restarts");
    assert_eq!(pods[3].r#type, "string", "RESTARTS carries `(5m ago)`");
    assert_eq!(pods[5].priority, 1);
    let events = columns(Kind::Event);
    assert_eq!(events[9].format, "name");
    assert_eq!(events[9].priority, 1);
}

#[test]
fn pod_status_cell() {
    let now = crate::time::parse("2024-03-05T07:00:30Z").unwrap();
    let mut pod = Pod {
        metadata: meta("web-0"),
        spec: Some(PodSpec {
            node_name: "node1".into(),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: "Running".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cells = cells_at(Kind::Pod, &Object::from(pod.clone()), now);
    assert_eq!(
        cells,
        ["web-0", "0/0", "Running", "0", "30s", "<none>", "node1", "<none>", "<none>"]
    );
    if let Some(m) = pod.metadata.as_mut() {
        m.deletion_timestamp = "2024-03-05T07:00:20Z".into();
    }
    let cells = cells_at(Kind::Pod, &Object::from(pod), now + Duration::from_secs(90));
    assert_eq!(cells[2], "Terminating");
    assert_eq!(cells[4], "2m");
}

#[test]
fn integer_cells_are_json_numbers() {
    let ds = columns(Kind::DaemonSet);
    assert_eq!(ds[1].json_cell("3".into()), serde_json::json!(3));
    assert_eq!(ds[0].json_cell("3".into()), serde_json::json!("3"));
    assert_eq!(ds[1].json_cell("x".into()), serde_json::json!("x"));
}
