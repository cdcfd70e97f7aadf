//! A replica's claims: one PersistentVolumeClaim per claim template and ordinal, named
//! `<template>-<set>-<ordinal>`, and the owner references that carry the set's
//! `persistentVolumeClaimRetentionPolicy` (Kubernetes' way: the garbage collector deletes
//! a claim once every owner is gone). Pure functions.
//!
//! - whenDeleted: Delete → the claim is owned by the set, so deleting the set deletes it.
//! - whenScaled: Delete → the claim of a condemned replica (ordinal out of range) is owned
//!   by that replica's pod, so it goes once the pod has gone.
//! - Retain (the default for both) → no owner: the claim, and its data, stay.

use super::identity::{meta, pod_name};
use twinset_proto::v1::{
    ObjectMeta, OwnerReference, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeClaimTemplate, Pod, StatefulSet,
};

/// The retention policy value that deletes claims.
pub const DELETE: &str = "Delete";

/// The name of a claim template.
pub fn template_name(t: &PersistentVolumeClaimTemplate) -> &str {
    t.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("")
}

/// `<template>-<set>-<ordinal>`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{}", pod_name(set, ordinal))
}

/// The set's retention policy as (whenDeleted is Delete, whenScaled is Delete).
pub fn retention(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    (
        p.is_some_and(|p| p.when_deleted == DELETE),
        p.is_some_and(|p| p.when_scaled == DELETE),
    )
}

/// The (non-controller) owner reference a claim gets to its set.
pub fn set_reference(set: &StatefulSet) -> OwnerReference {
    let m = meta(set);
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: m.name.clone(),
        uid: m.uid.clone(),
        controller: None,
        block_owner_deletion: None,
    }
}

fn pod_reference(pod: &Pod) -> OwnerReference {
    let m = pod.metadata.clone().unwrap_or_default();
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: m.name,
        uid: m.uid,
        controller: None,
        block_owner_deletion: None,
    }
}

/// The owner references a claim of replica `ordinal` should carry: the ones it has that
/// are not about this set or this replica's pod, plus the set (whenDeleted: Delete,
/// unless the replica is condemned and whenScaled: Delete) and the pod (condemned,
/// whenScaled: Delete, pod still there) — Kubernetes' matrix.
pub fn desired_owners(
    set: &StatefulSet,
    existing: &[OwnerReference],
    ordinal: i32,
    in_range: bool,
    pod: Option<&Pod>,
) -> Vec<OwnerReference> {
    let m = meta(set);
    let pod_name = pod_name(&m.name, ordinal);
    let (when_deleted, when_scaled) = retention(set);
    let mut owners: Vec<OwnerReference> = existing
        .iter()
        .filter(|r| r.uid != m.uid && !(r.kind == "Pod" && r.name == pod_name))
        .cloned()
        .collect();
    let condemned_delete = !in_range && when_scaled;
    if when_deleted && !condemned_delete {
        owners.push(set_reference(set));
    }
    if condemned_delete {
        if let Some(p) = pod {
            owners.push(pod_reference(p));
        }
    }
    owners
}

/// A claim that is on its way out: being deleted, or owned only by things that are gone
/// (an earlier pod of its replica, or an earlier set of the same name deleted with
/// whenDeleted: Delete), so the garbage collector takes it. A new pod must wait for it to
/// go rather than start on data that is about to vanish.
pub fn is_stale(claim: &PersistentVolumeClaim, set: &StatefulSet, pod_name: &str) -> bool {
    let Some(m) = claim.metadata.as_ref() else {
        return false;
    };
    if !m.deletion_timestamp.is_empty() {
        return true;
    }
    let set_meta = meta(set);
    !m.owner_references.is_empty()
        && m.owner_references.iter().all(|r| {
            (r.kind == "Pod" && r.name == pod_name)
                || (r.kind == "StatefulSet" && r.name == set_meta.name && r.uid != set_meta.uid)
        })
}

/// The claim of replica `ordinal` from template `t`: the template's labels plus the set's
/// selector labels, the template's annotations and spec, Pending, with `owners`.
pub fn build_claim(
    set: &StatefulSet,
    t: &PersistentVolumeClaimTemplate,
    ordinal: i32,
    owners: Vec<OwnerReference>,
) -> PersistentVolumeClaim {
    let m = meta(set);
    let tmeta = t.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels;
    if let Some(sel) = set.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        labels.extend(sel.match_labels.clone());
    }
    PersistentVolumeClaim {
        api_version: "v1".into(),
        kind: "PersistentVolumeClaim".into(),
        metadata: Some(ObjectMeta {
            name: claim_name(&tmeta.name, &m.name, ordinal),
            namespace: m.namespace.clone(),
            labels,
            annotations: tmeta.annotations,
            owner_references: owners,
            ..Default::default()
        }),
        spec: t.spec.clone(),
        status: Some(PersistentVolumeClaimStatus {
            phase: "Pending".into(),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{
        LabelSelector, PersistentVolumeClaimSpec, StatefulSetPersistentVolumeClaimRetentionPolicy,
        StatefulSetSpec,
    };

    fn set(when_deleted: &str, when_scaled: &str) -> StatefulSet {
        StatefulSet {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                namespace: "ns".into(),
                uid: "set-uid".into(),
                ..Default::default()
            }),
            spec: Some(StatefulSetSpec {
                selector: Some(LabelSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
                persistent_volume_claim_retention_policy: Some(
                    StatefulSetPersistentVolumeClaimRetentionPolicy {
                        when_deleted: when_deleted.into(),
                        when_scaled: when_scaled.into(),
                    },
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(uid: &str) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "web-3".into(),
                uid: uid.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn kinds(owners: &[OwnerReference]) -> Vec<(&str, &str)> {
        owners
            .iter()
            .map(|r| (r.kind.as_str(), r.uid.as_str()))
            .collect()
    }

    #[test]
    fn retention_matrix() {
        let p = pod("pod-uid");
        let other = OwnerReference {
            kind: "Thing".into(),
            uid: "other".into(),
            ..Default::default()
        };
        let cases = [
            // (whenDeleted, whenScaled, in range, expected owners besides `other`)
            ("Retain", "Retain", true, vec![]),
            ("Retain", "Retain", false, vec![]),
            ("Delete", "Retain", true, vec![("StatefulSet", "set-uid")]),
            ("Delete", "Retain", false, vec![("StatefulSet", "set-uid")]),
            ("Retain", "Delete", true, vec![]),
            ("Retain", "Delete", false, vec![("Pod", "pod-uid")]),
            ("Delete", "Delete", true, vec![("StatefulSet", "set-uid")]),
            ("Delete", "Delete", false, vec![("Pod", "pod-uid")]),
        ];
        for (wd, ws, in_range, want) in cases {
            let s = set(wd, ws);
            // Whatever the claim carried about this set and pod before is replaced.
            let stale_pod = OwnerReference {
                kind: "Pod".into(),
                name: "web-3".into(),
                uid: "old-pod".into(),
                ..Default::default()
            };
            let existing = vec![other.clone(), set_reference(&s), stale_pod];
            let got = desired_owners(&s, &existing, 3, in_range, Some(&p));
            let mut expected = vec![("Thing", "other")];
            expected.extend(want);
            assert_eq!(kinds(&got), expected, "{wd}/{ws} in range {in_range}");
        }
        // A condemned replica whose pod is gone gets no pod owner.
        let s = set("Retain", "Delete");
        assert!(desired_owners(&s, &[], 3, false, None).is_empty());
    }

    #[test]
    fn stale_claims() {
        let s = set("Retain", "Retain");
        let is_stale = |c: &PersistentVolumeClaim, pod: &str| is_stale(c, &s, pod);
        let mut c = build_claim(&s, &PersistentVolumeClaimTemplate::default(), 3, vec![]);
        assert!(!is_stale(&c, "web-3"), "ownerless claims are kept");
        c.metadata.as_mut().unwrap().owner_references = vec![OwnerReference {
            kind: "Pod".into(),
            name: "web-3".into(),
            uid: "gone".into(),
            ..Default::default()
        }];
        assert!(
            is_stale(&c, "web-3"),
            "only an old pod owns it: collected soon"
        );
        c.metadata
            .as_mut()
            .unwrap()
            .owner_references
            .push(set_reference(&set("Delete", "Delete")));
        assert!(!is_stale(&c, "web-3"), "the set still owns it");
        // Owned by an earlier set of the same name (deleted, whenDeleted: Delete).
        let mut earlier = set_reference(&s);
        earlier.uid = "earlier-uid".into();
        c.metadata.as_mut().unwrap().owner_references = vec![earlier];
        assert!(is_stale(&c, "web-3"));
        c.metadata.as_mut().unwrap().owner_references.clear();
        c.metadata.as_mut().unwrap().deletion_timestamp = "2026-01-01T00:00:00Z".into();
        assert!(is_stale(&c, "web-3"));
    }

    #[test]
    fn claim_has_name_labels_and_spec_of_its_template() {
        let t = PersistentVolumeClaimTemplate {
            metadata: Some(ObjectMeta {
                name: "data".into(),
                labels: [("tier".to_string(), "db".to_string())].into(),
                ..Default::default()
            }),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: vec!["ReadWriteOnce".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = set("Delete", "Retain");
        let c = build_claim(&s, &t, 4, vec![set_reference(&s)]);
        let m = c.metadata.as_ref().unwrap();
        assert_eq!(
            (m.name.as_str(), m.namespace.as_str()),
            ("data-web-4", "ns")
        );
        assert_eq!(m.labels.len(), 2);
        assert_eq!(
            (m.labels["tier"].as_str(), m.labels["app"].as_str()),
            ("db", "web")
        );
        assert_eq!(kinds(&m.owner_references), vec![("StatefulSet", "set-uid")]);
        assert_eq!(c.spec, t.spec);
        assert_eq!(c.status.unwrap().phase, "Pending");
        assert_eq!(
            claim_name("mysql-storage", "mysql-db", 0),
            "mysql-storage-mysql-db-0"
        );
    }
}
