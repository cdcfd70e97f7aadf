//! A replica's identity: its ordinal, its name `<set>-<ordinal>`, the labels that say
//! which replica and revision it is, its hostname and subdomain, and the claim
//! volumes that tie it to its own storage. Pure functions.

use super::claims;
use crate::controllers::revision::REVISION_HASH_LABEL;
use crate::controllers::{history, node_loss};
use std::collections::BTreeMap;
use twinset_proto::fencing;
use twinset_proto::v1::{
    LabelSelector, ObjectMeta, OwnerReference, PersistentVolumeClaimVolumeSource, Pod, PodStatus,
    PodTemplateSpec, StatefulSet, Volume,
};

/// The label naming the pod of a replica (lets a Service pick one replica).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label carrying a replica's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The set's metadata (a shared empty one when missing).
pub fn meta(set: &StatefulSet) -> &ObjectMeta {
    static EMPTY: std::sync::OnceLock<ObjectMeta> = std::sync::OnceLock::new();
    set.metadata
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(ObjectMeta::default))
}

/// The name of the replica with `ordinal`.
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The ordinal of a pod named `<set>-<ordinal>` (canonical decimal, no sign or leading
/// zero), None for any other name.
pub fn parse_ordinal(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    let n: i32 = digits.parse().ok()?;
    (n >= 0 && n.to_string() == digits).then_some(n)
}

/// The controller reference replicas carry.
pub fn owner_reference(set: &StatefulSet) -> OwnerReference {
    let m = meta(set);
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: m.name.clone(),
        uid: m.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The set as its revision history sees it.
pub fn history_owner(set: &StatefulSet) -> history::Owner<'_> {
    static EMPTY_TEMPLATE: std::sync::OnceLock<PodTemplateSpec> = std::sync::OnceLock::new();
    static EMPTY_SELECTOR: std::sync::OnceLock<LabelSelector> = std::sync::OnceLock::new();
    let spec = set.spec.as_ref();
    history::Owner {
        meta: meta(set),
        reference: owner_reference(set),
        template: spec
            .and_then(|s| s.template.as_ref())
            .unwrap_or_else(|| EMPTY_TEMPLATE.get_or_init(PodTemplateSpec::default)),
        selector: spec
            .and_then(|s| s.selector.as_ref())
            .unwrap_or_else(|| EMPTY_SELECTOR.get_or_init(LabelSelector::default)),
        current_revision: set
            .status
            .as_ref()
            .map(|s| s.current_revision.as_str())
            .unwrap_or(""),
        collision_count: set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0),
        hash_label: history::HASH_LABEL,
    }
}

/// The revision (`<set>-<hash>`) a pod was made from, from its label.
pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .as_ref()
        .and_then(|m| m.labels.get(REVISION_HASH_LABEL))
        .map(String::as_str)
        .unwrap_or("")
}

/// The pod of replica `ordinal`, made from `template` (the spec of revision `revision`):
/// the template's labels plus pod-name, pod-index and controller-revision-hash; hostname
/// = pod name; subdomain = serviceName; one volume per claim template, named after the
/// template and pointing to the replica's claim (replacing a template volume of that
/// name). Created Pending and unbound: the scheduler places it.
pub fn build_pod(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    revision: &str,
    ordinal: i32,
) -> Pod {
    let m = meta(set);
    let name = pod_name(&m.name, ordinal);
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = tmeta.labels;
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_HASH_LABEL.into(), revision.to_string());
    let set_spec = set.spec.clone().unwrap_or_default();
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = name.clone();
    spec.subdomain = set_spec.service_name.clone();
    spec.node_name.clear();
    let mut volumes: Vec<Volume> = Vec::new();
    for t in &set_spec.volume_claim_templates {
        let tname = claims::template_name(t);
        volumes.push(Volume {
            name: tname.to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claims::claim_name(tname, &m.name, ordinal),
                read_only: false,
            }),
            ..Default::default()
        });
    }
    let own: Vec<String> = volumes.iter().map(|v| v.name.clone()).collect();
    volumes.extend(spec.volumes.drain(..).filter(|v| !own.contains(&v.name)));
    spec.volumes = volumes;
    let mut annotations = tmeta.annotations;
    node_loss::set_pod_policy(&mut annotations, fencing::Policy::of(&m.annotations));
    Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: Some(ObjectMeta {
            name,
            namespace: m.namespace.clone(),
            labels,
            annotations,
            owner_references: vec![owner_reference(set)],
            ..Default::default()
        }),
        spec: Some(spec),
        status: Some(PodStatus {
            phase: "Pending".into(),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{
        EmptyDirVolumeSource, PersistentVolumeClaimTemplate, PodSpec, StatefulSetSpec,
    };

    #[test]
    fn ordinals_parse_only_from_canonical_names() {
        assert_eq!(parse_ordinal("web", "web-0"), Some(0));
        assert_eq!(parse_ordinal("web", "web-12"), Some(12));
        assert_eq!(parse_ordinal("my-db", "my-db-3"), Some(3));
        for bad in [
            "web",
            "web-",
            "web-01",
            "web--1",
            "web-+1",
            "web-a",
            "webx-1",
            "other-1",
            "web-1-2",
            "web-99999999999",
        ] {
            assert_eq!(parse_ordinal("web", bad), None, "{bad}");
        }
        assert_eq!(pod_name("web", 7), "web-7");
    }

    #[test]
    fn pod_carries_identity_labels_hostname_and_claim_volumes() {
        let set = StatefulSet {
            metadata: Some(ObjectMeta {
                name: "mysql-db".into(),
                namespace: "database".into(),
                uid: "u1".into(),
                ..Default::default()
            }),
            spec: Some(StatefulSetSpec {
                service_name: "mysql".into(),
                volume_claim_templates: vec![PersistentVolumeClaimTemplate {
                    metadata: Some(ObjectMeta {
                        name: "mysql-storage".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: [("app".to_string(), "mysql".to_string())].into(),
                annotations: [("a".to_string(), "b".to_string())].into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: "sneaky".into(),
                volumes: vec![
                    Volume {
                        name: "mysql-storage".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    },
                    Volume {
                        name: "scratch".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
        };
        let pod = build_pod(&set, &template, "mysql-db-abc", 2);
        let m = pod.metadata.as_ref().unwrap();
        assert_eq!(
            (m.name.as_str(), m.namespace.as_str()),
            ("mysql-db-2", "database")
        );
        assert_eq!(m.labels["app"], "mysql");
        assert_eq!(m.labels[POD_NAME_LABEL], "mysql-db-2");
        assert_eq!(m.labels[POD_INDEX_LABEL], "2");
        assert_eq!(m.labels[REVISION_HASH_LABEL], "mysql-db-abc");
        assert_eq!(m.annotations["a"], "b");
        assert_eq!(m.owner_references, vec![owner_reference(&set)]);
        assert_eq!(m.owner_references[0].controller, Some(true));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            (spec.hostname.as_str(), spec.subdomain.as_str()),
            ("mysql-db-2", "mysql")
        );
        assert!(spec.node_name.is_empty(), "the scheduler places replicas");
        let vols: Vec<(&str, Option<&str>)> = spec
            .volumes
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.persistent_volume_claim
                        .as_ref()
                        .map(|c| c.claim_name.as_str()),
                )
            })
            .collect();
        assert_eq!(
            vols,
            vec![
                ("mysql-storage", Some("mysql-storage-mysql-db-2")),
                ("scratch", None)
            ]
        );
        assert_eq!(pod_revision(&pod), "mysql-db-abc");
        assert_eq!(pod.status.as_ref().unwrap().phase, "Pending");
    }
}
