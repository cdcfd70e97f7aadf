//! What kubectl shows of a PersistentVolumeClaim (printers.go printPersistentVolumeClaim
//! and describe.go printPersistentVolumeClaim), plus Twinset's extra: the node the
//! claim's volume lives on.
use super::format;
use std::collections::BTreeMap;
use twinset_proto::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod};

/// The claim annotation in which the control plane records the node a claim is bound to
/// (the scheduler writes it when the claim's first pod lands; Kubernetes' volume
/// scheduling uses the same key).
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";

/// The legacy storage class annotation, which wins over `spec.storageClassName`
/// (storageutil.GetPersistentVolumeClaimClass).
pub const STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// The printable fields of one claim, computed as kubectl computes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// `status.phase` (Pending, Bound, Lost).
    pub phase: String,
    /// Whether deletion was requested (kubectl then shows `Terminating`).
    pub terminating: bool,
    /// `spec.volumeName` ("" while unbound).
    pub volume: String,
    /// The bound capacity (`status.capacity.storage`); "" while no volume is bound.
    pub capacity: String,
    /// Short access modes (`RWO`, ...) of the bound volume; "" while no volume is bound.
    pub access_modes: String,
    /// The storage class: the legacy annotation, else `spec.storageClassName`, else "".
    pub storage_class: String,
    /// `spec.volumeMode`, when set.
    pub volume_mode: Option<String>,
    /// The node the claim is bound to ("" when not yet bound).
    pub node: String,
}

impl Claim {
    /// Reads `pvc` the way kubectl's printers do: capacity and access modes only once
    /// a volume is bound (they come from the status, not from the request).
    pub fn of(pvc: &PersistentVolumeClaim) -> Self {
        let meta = pvc.metadata.clone().unwrap_or_default();
        let spec = pvc.spec.clone().unwrap_or_default();
        let st = pvc.status.clone().unwrap_or_default();
        let (capacity, access_modes) = if spec.volume_name.is_empty() {
            (String::new(), String::new())
        } else {
            (
                st.capacity.get("storage").cloned().unwrap_or_default(),
                format::access_modes(&st.access_modes),
            )
        };
        Self {
            phase: st.phase,
            terminating: !meta.deletion_timestamp.is_empty(),
            volume: spec.volume_name.clone(),
            capacity,
            access_modes,
            storage_class: storage_class(&meta.annotations, &spec),
            volume_mode: Some(spec.volume_mode.clone()).filter(|m| !m.is_empty()),
            node: meta
                .annotations
                .get(SELECTED_NODE_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// The STATUS column: `Terminating` once deletion was requested, else the phase.
    pub fn status_column(&self) -> String {
        if self.terminating {
            "Terminating".to_string()
        } else {
            self.phase.clone()
        }
    }
}

/// storageutil.GetPersistentVolumeClaimClass: the legacy annotation, else the spec's class, else "".
pub fn storage_class(
    annotations: &BTreeMap<String, String>,
    spec: &PersistentVolumeClaimSpec,
) -> String {
    if let Some(class) = annotations.get(STORAGE_CLASS_ANNOTATION) {
        return class.clone();
    }
    spec.storage_class_name.clone().unwrap_or_default()
}

/// The names of the pods that use claim `claim` (kubectl's getPodsForPVC): pods in the
/// claim's namespace with a volume naming it, plus pods listed as the claim's owners;
/// sorted by name, each once.
pub fn used_by(pvc: &PersistentVolumeClaim, pods: &[Pod]) -> Vec<String> {
    let meta = pvc.metadata.clone().unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    for pod in pods {
        let pm = pod.metadata.clone().unwrap_or_default();
        if pm.namespace != meta.namespace {
            continue;
        }
        let uses = pod.spec.iter().flat_map(|s| s.volumes.iter()).any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == meta.name)
        });
        let owns = meta
            .owner_references
            .iter()
            .any(|r| r.kind == "Pod" && !r.uid.is_empty() && r.uid == pm.uid);
        if uses || owns {
            names.push(pm.name);
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{
        ObjectMeta, OwnerReference, PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource,
        PodSpec, Volume,
    };

    fn pod(name: &str, ns: &str, uid: &str, claim: Option<&str>) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: ns.into(),
                uid: uid.into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                volumes: claim
                    .map(|c| Volume {
                        name: "data".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: c.into(),
                            read_only: false,
                        }),
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn unbound_claim_shows_no_capacity_and_spec_class() {
        let mut requests = BTreeMap::new();
        requests.insert("storage".to_string(), "1Gi".to_string());
        let pvc = PersistentVolumeClaim {
            metadata: Some(ObjectMeta {
                name: "c".into(),
                ..Default::default()
            }),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: vec!["ReadWriteOnce".into()],
                storage_class_name: Some("local".into()),
                resources: Some(twinset_proto::v1::ResourceRequirements {
                    requests,
                    limits: BTreeMap::new(),
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: "Pending".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Claim::of(&pvc);
        assert_eq!(c.capacity, "");
        assert_eq!(c.access_modes, "");
        assert_eq!(c.storage_class, "local");
        assert_eq!(c.volume_mode, None);
        assert_eq!(c.status_column(), "Pending");
    }

    #[test]
    fn annotation_class_wins() {
        let mut ann = BTreeMap::new();
        ann.insert(STORAGE_CLASS_ANNOTATION.to_string(), "legacy".to_string());
        let spec = PersistentVolumeClaimSpec {
            storage_class_name: Some("new".into()),
            ..Default::default()
        };
        assert_eq!(storage_class(&ann, &spec), "legacy");
        assert_eq!(
            storage_class(&BTreeMap::new(), &PersistentVolumeClaimSpec::default()),
            ""
        );
    }

    #[test]
    fn used_by_volume_or_owner_in_same_namespace() {
        let pvc = PersistentVolumeClaim {
            metadata: Some(ObjectMeta {
                name: "data-web-0".into(),
                namespace: "ns".into(),
                owner_references: vec![OwnerReference {
                    kind: "Pod".into(),
                    name: "owner".into(),
                    uid: "u-owner".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let pods = vec![
            pod("web-0", "ns", "u0", Some("data-web-0")),
            pod("web-1", "ns", "u1", Some("data-web-1")),
            pod("web-0", "other", "u2", Some("data-web-0")),
            pod("owner", "ns", "u-owner", None),
        ];
        assert_eq!(
            used_by(&pvc, &pods),
            vec!["owner".to_string(), "web-0".to_string()]
        );
    }
}
