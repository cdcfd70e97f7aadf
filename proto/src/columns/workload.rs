//! The columns of the workload controllers' objects: DaemonSets, StatefulSets and
//! their ControllerRevisions (printers.go printDaemonSet, printStatefulSet,
//! printControllerRevision).
use super::format::{self, NONE};
use super::{Column, AGE, NAME};
use crate::kinds::Kind;
use crate::v1::{ControllerRevision, DaemonSet, PodTemplateSpec, StatefulSet};
use std::time::SystemTime;

const CONTAINERS: Column =
    Column::string("Containers", "The names of the pod template's containers.").wide();
const IMAGES: Column =
    Column::string("Images", "The images of the pod template's containers.").wide();

/// DaemonSet columns: NAME, DESIRED, CURRENT, READY, UP-TO-DATE, AVAILABLE, NODE SELECTOR,
/// AGE | wide: CONTAINERS, IMAGES, SELECTOR.
pub const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    Column::integer("Desired", "How many nodes should run the daemon pod."),
    Column::integer("Current", "How many nodes run at least one daemon pod."),
    Column::integer("Ready", "How many nodes run a ready daemon pod."),
    Column::integer("Up-to-date", "How many nodes run the current pod template."),
    Column::integer("Available", "How many nodes run an available daemon pod."),
    Column::string(
        "Node Selector",
        "The labels a node must have to run the pod.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::string("Selector", "The label selector of the DaemonSet's pods.").wide(),
];

/// StatefulSet columns: NAME, READY, AGE | wide: CONTAINERS, IMAGES.
pub const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Ready", "Ready replicas, of how many are wanted."),
    AGE,
    CONTAINERS,
    IMAGES,
];

/// ControllerRevision columns: NAME, CONTROLLER, REVISION, AGE.
pub const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Controller", "The object that owns the revision."),
    Column::integer("Revision", "The revision number."),
    AGE,
];

/// The cells of one DaemonSet, matching [`DAEMON_SET_COLUMNS`].
pub fn daemon_set_cells(ds: &DaemonSet, now: SystemTime) -> Vec<String> {
    let meta = ds.metadata.clone().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let st = ds.status.clone().unwrap_or_default();
    let node_selector = spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .map(|s| format::labels(&s.node_selector))
        .unwrap_or_else(|| NONE.to_string());
    let (containers, images) = containers_images(spec.template.as_ref());
    vec![
        meta.name,
        st.desired_number_scheduled.to_string(),
        st.current_number_scheduled.to_string(),
        st.number_ready.to_string(),
        st.updated_number_scheduled.to_string(),
        st.number_available.to_string(),
        node_selector,
        format::age_at(&meta.creation_timestamp, now),
        containers,
        images,
        format::label_selector(spec.selector.as_ref()),
    ]
}

/// The cells of one StatefulSet, matching [`STATEFUL_SET_COLUMNS`].
pub fn stateful_set_cells(sts: &StatefulSet, now: SystemTime) -> Vec<String> {
    let meta = sts.metadata.clone().unwrap_or_default();
    let spec = sts.spec.clone().unwrap_or_default();
    let st = sts.status.clone().unwrap_or_default();
    let (containers, images) = containers_images(spec.template.as_ref());
    vec![
        meta.name,
        format!("{}/{}", st.ready_replicas, spec.replicas.unwrap_or(1)),
        format::age_at(&meta.creation_timestamp, now),
        containers,
        images,
    ]
}

/// The cells of one ControllerRevision, matching [`CONTROLLER_REVISION_COLUMNS`]:
/// the controller as `kind.group/name`, from the controlling owner (else the first one).
pub fn controller_revision_cells(cr: &ControllerRevision, now: SystemTime) -> Vec<String> {
    let meta = cr.metadata.clone().unwrap_or_default();
    let controller = meta
        .owner_references
        .iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| meta.owner_references.first())
        .map(|r| {
            let qualified = Kind::parse(&r.kind)
                .map(|k| k.qualified().to_string())
                .unwrap_or_else(|| r.kind.to_lowercase());
            format!("{qualified}/{}", r.name)
        })
        .unwrap_or_else(|| NONE.to_string());
    vec![
        meta.name.clone(),
        controller,
        cr.revision.to_string(),
        format::age_at(&meta.creation_timestamp, now),
    ]
}

/// The CONTAINERS and IMAGES cells of a pod template: names and images, comma-joined.
fn containers_images(template: Option<&PodTemplateSpec>) -> (String, String) {
    let containers = template
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers.iter().map(|c| c.image.as_str()).collect();
    (names.join(","), images.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Container, ObjectMeta, OwnerReference, PodSpec};

    #[test]
    fn controller_revision_names_its_controller() {
        let cr = ControllerRevision {
            metadata: Some(ObjectMeta {
                name: "web-5d4f".into(),
                owner_references: vec![OwnerReference {
                    kind: "StatefulSet".into(),
                    name: "web".into(),
                    controller: Some(true),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            revision: 2,
            ..Default::default()
        };
        assert_eq!(
            controller_revision_cells(&cr, SystemTime::now()),
            ["web-5d4f", "statefulset.apps/web", "2", "<unknown>"]
        );
        assert_eq!(
            controller_revision_cells(&ControllerRevision::default(), SystemTime::now())[1],
            "<none>"
        );
    }

    #[test]
    fn containers_and_images_comma_joined() {
        let t = PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![
                    Container {
                        name: "a".into(),
                        image: "x:1".into(),
                        ..Default::default()
                    },
                    Container {
                        name: "b".into(),
                        image: "y:2".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
        };
        assert_eq!(
            containers_images(Some(&t)),
            ("a,b".to_string(), "x:1,y:2".to_string())
        );
        assert_eq!(containers_images(None), (String::new(), String::new()));
    }
}
