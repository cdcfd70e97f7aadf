//! Server-side defaults, as the Kubernetes API server fills them in.
//!
//! The control plane applies them before storing an object, and before comparing
//! an applied manifest with the stored object, so re-applying `get -o yaml`
//! output (defaults included) or the original file (defaults omitted) both
//! report `unchanged`.

use crate::v1::*;
use crate::IntOrString;

/// Fills the defaults of every kind that has any.
pub fn apply(obj: &mut Object) {
    match &mut obj.kind {
        Some(object::Kind::Pod(p)) => pod_spec(p.spec.get_or_insert_with(Default::default)),
        Some(object::Kind::DaemonSet(d)) => daemon_set(d.spec.get_or_insert_with(Default::default)),
        Some(object::Kind::StatefulSet(s)) => {
            stateful_set(s.spec.get_or_insert_with(Default::default))
        }
        Some(object::Kind::Service(s)) => {
            let spec = s.spec.get_or_insert_with(Default::default);
            if spec.r#type.is_empty() {
                spec.r#type = "ClusterIP".into();
            }
            for p in &mut spec.ports {
                if p.protocol.is_empty() {
                    p.protocol = "TCP".into();
                }
                if p.target_port.is_none() {
                    p.target_port = Some(IntOrString::int(p.port));
                }
            }
        }
        Some(object::Kind::PersistentVolumeClaim(c)) => {
            claim_spec(c.spec.get_or_insert_with(Default::default))
        }
        _ => {}
    }
}

fn claim_spec(spec: &mut PersistentVolumeClaimSpec) {
    if spec.volume_mode.is_empty() {
        spec.volume_mode = "Filesystem".into();
    }
}

/// Defaults of a pod spec (also used inside set templates).
pub fn pod_spec(spec: &mut PodSpec) {
    if spec.restart_policy.is_empty() {
        spec.restart_policy = "Always".into();
    }
    if spec.termination_grace_period_seconds.is_none() {
        spec.termination_grace_period_seconds = Some(30);
    }
    if spec.dns_policy.is_empty() {
        spec.dns_policy = "ClusterFirst".into();
    }
    if spec.scheduler_name.is_empty() {
        spec.scheduler_name = "default-scheduler".into();
    }
    for c in spec
        .init_containers
        .iter_mut()
        .chain(spec.containers.iter_mut())
    {
        if c.image_pull_policy.is_empty() {
            let latest = c.image.ends_with(":latest")
                || !c.image.rsplit('/').next().unwrap_or("").contains(':');
            c.image_pull_policy = if latest { "Always" } else { "IfNotPresent" }.into();
        }
        if c.termination_message_path.is_empty() {
            c.termination_message_path = "/dev/termination-log".into();
        }
        for p in &mut c.ports {
            if p.protocol.is_empty() {
                p.protocol = "TCP".into();
            }
        }
        // Empty resources are none: Kubernetes' ResourceRequirements is a struct, where
        // `resources: {}` (what Go clients write, e.g. kubectl's `rollout undo` patch)
        // and no resources are one template.
        if c.resources == Some(Default::default()) {
            c.resources = None;
        }
        // A container with limits and no requests requests its limits (Kubernetes' rule).
        if let Some(r) = &mut c.resources {
            for (k, v) in r.limits.clone() {
                r.requests.entry(k).or_insert(v);
            }
        }
    }
}

fn template(t: &mut Option<PodTemplateSpec>) {
    let t = t.get_or_insert_with(Default::default);
    pod_spec(t.spec.get_or_insert_with(Default::default));
}

fn daemon_set(spec: &mut DaemonSetSpec) {
    template(&mut spec.template);
    let u = spec.update_strategy.get_or_insert_with(Default::default);
    if u.r#type.is_empty() {
        u.r#type = "RollingUpdate".into();
    }
    if u.r#type == "RollingUpdate" {
        let ru = u.rolling_update.get_or_insert_with(Default::default);
        ru.max_unavailable
            .get_or_insert_with(|| IntOrString::int(1));
        ru.max_surge.get_or_insert_with(|| IntOrString::int(0));
    }
    spec.revision_history_limit.get_or_insert(10);
}

fn stateful_set(spec: &mut StatefulSetSpec) {
    template(&mut spec.template);
    spec.replicas.get_or_insert(1);
    if spec.pod_management_policy.is_empty() {
        spec.pod_management_policy = "OrderedReady".into();
    }
    let u = spec.update_strategy.get_or_insert_with(Default::default);
    if u.r#type.is_empty() {
        u.r#type = "RollingUpdate".into();
    }
    if u.r#type == "RollingUpdate" {
        u.rolling_update
            .get_or_insert_with(Default::default)
            .partition
            .get_or_insert(0);
    }
    spec.revision_history_limit.get_or_insert(10);
    let p = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(Default::default);
    if p.when_deleted.is_empty() {
        p.when_deleted = "Retain".into();
    }
    if p.when_scaled.is_empty() {
        p.when_scaled = "Retain".into();
    }
    for t in &mut spec.volume_claim_templates {
        claim_spec(t.spec.get_or_insert_with(Default::default));
        if t.api_version.is_empty() {
            t.api_version = "v1".into();
            t.kind = "PersistentVolumeClaim".into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{decode, to_yaml};

    #[test]
    fn empty_resources_are_no_resources() {
        let mut spec = PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(Default::default()),
                ..Default::default()
            }],
            ..Default::default()
        };
        pod_spec(&mut spec);
        assert_eq!(spec.containers[0].resources, None);
    }

    #[test]
    fn defaults_are_idempotent_and_survive_a_round_trip() {
        let text = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: s\nspec:\n  selector:\n    matchLabels:\n      app: a\n  template:\n    metadata:\n      labels:\n        app: a\n    spec:\n      containers:\n      - name: c\n        image: mysql:8\n        resources:\n          limits:\n            memory: 1Gi\n";
        let mut o = decode(text).unwrap().remove(0);
        apply(&mut o);
        let once = o.clone();
        apply(&mut o);
        assert_eq!(once, o);
        let spec = o.as_stateful_set().unwrap().spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.pod_management_policy, "OrderedReady");
        let c = &spec
            .template
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        assert_eq!(c.image_pull_policy, "IfNotPresent");
        assert_eq!(c.resources.as_ref().unwrap().requests["memory"], "1Gi");
        let back = decode(&to_yaml(&o)).unwrap().remove(0);
        assert_eq!(back, o);
    }
}
