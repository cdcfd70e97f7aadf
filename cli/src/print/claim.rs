//! What kubectl's describe shows of a PersistentVolumeClaim beyond its table cells
//! (describe.go printPersistentVolumeClaim): the pods that use it. The cells and the
//! [`Claim`] reading live in [`twinset_proto::columns::claim`].
use twinset_proto::v1::{PersistentVolumeClaim, Pod};

pub use twinset_proto::columns::claim::{storage_class, Claim};

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
        ObjectMeta, OwnerReference, PersistentVolumeClaimVolumeSource, PodSpec, Volume,
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
