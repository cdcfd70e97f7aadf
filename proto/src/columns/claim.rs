//! The PersistentVolumeClaim columns and what kubectl shows of a claim (printers.go
//! printPersistentVolumeClaim), plus Twinset's extra: the node the claim's volume
//! lives on.
use super::format;
use super::{Column, AGE, NAME};
use crate::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// The claim annotation in which the control plane records the node a claim is bound to
/// (the scheduler writes it when the claim's first pod lands; Kubernetes' volume
/// scheduling uses the same key).
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";

/// The legacy storage class annotation, which wins over `spec.storageClassName`
/// (storageutil.GetPersistentVolumeClaimClass).
pub const STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// Claim columns: NAME, STATUS, VOLUME, CAPACITY, ACCESS MODES, STORAGECLASS, AGE |
/// wide: VOLUMEMODE, NODE (Twinset's: the node the local volume lives on).
pub const COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "Status",
        "The claim's phase, or Terminating once it is being deleted.",
    ),
    Column::string("Volume", "The volume bound to the claim."),
    Column::string("Capacity", "The bound volume's capacity."),
    Column::string("Access Modes", "The bound volume's access modes."),
    Column::string("StorageClass", "The claim's storage class."),
    AGE,
    Column::string(
        "VolumeMode",
        "Whether the volume is a filesystem or a raw block device.",
    )
    .wide(),
    Column::string("Node", "The node the claim's volume lives on.").wide(),
];

/// The cells of one claim, matching [`COLUMNS`].
pub fn cells(pvc: &PersistentVolumeClaim, now: SystemTime) -> Vec<String> {
    let meta = pvc.metadata.clone().unwrap_or_default();
    let c = Claim::of(pvc);
    vec![
        meta.name,
        c.status_column(),
        c.volume,
        c.capacity,
        c.access_modes,
        c.storage_class,
        format::age_at(&meta.creation_timestamp, now),
        c.volume_mode.unwrap_or_else(|| "<unset>".to_string()),
        format::or_none(&c.node),
    ]
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{ObjectMeta, PersistentVolumeClaimStatus};

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
                resources: Some(crate::v1::ResourceRequirements {
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
        assert_eq!(
            cells(&pvc, SystemTime::now()),
            [
                "c",
                "Pending",
                "",
                "",
                "",
                "local",
                "<unknown>",
                "<unset>",
                "<none>"
            ]
        );
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
}
