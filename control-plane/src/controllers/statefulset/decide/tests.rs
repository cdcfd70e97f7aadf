use super::*;
use crate::controllers::revision::REVISION_HASH_LABEL;
use crate::controllers::statefulset::claims::set_reference;
use crate::controllers::statefulset::identity::{POD_INDEX_LABEL, POD_NAME_LABEL};
use std::collections::BTreeMap;
use twinset_proto::v1::{
    IntOrString, LabelSelector, ObjectMeta, PersistentVolumeClaimSpec,
    PersistentVolumeClaimTemplate, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
    ResourceRequirements, RollingUpdateStatefulSetStrategy, StatefulSetOrdinals,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetUpdateStrategy,
};

const UID: &str = "set-uid";

fn now() -> SystemTime {
    twinset_proto::time::parse("2026-06-01T00:00:00Z").unwrap()
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: [("app".to_string(), "web".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![twinset_proto::v1::Container {
                name: "c".into(),
                image: image.into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn set(replicas: i32, policy: &str) -> StatefulSet {
    StatefulSet {
        metadata: Some(ObjectMeta {
            name: "web".into(),
            namespace: "ns".into(),
            uid: UID.into(),
            generation: 2,
            ..Default::default()
        }),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            selector: Some(LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            template: Some(template("a")),
            volume_claim_templates: vec![PersistentVolumeClaimTemplate {
                metadata: Some(ObjectMeta {
                    name: "data".into(),
                    ..Default::default()
                }),
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: vec!["ReadWriteOnce".into()],
                    resources: Some(ResourceRequirements {
                        requests: [("storage".to_string(), "1Gi".to_string())].into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            service_name: "web-svc".into(),
            pod_management_policy: policy.into(),
            ..Default::default()
        }),
        status: None,
        ..Default::default()
    }
}

fn spec_mut(s: &mut StatefulSet) -> &mut StatefulSetSpec {
    s.spec.as_mut().unwrap()
}

fn with_image(mut s: StatefulSet, image: &str) -> StatefulSet {
    spec_mut(&mut s).template = Some(template(image));
    s
}

fn retention(mut s: StatefulSet, when_deleted: &str, when_scaled: &str) -> StatefulSet {
    spec_mut(&mut s).persistent_volume_claim_retention_policy =
        Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: when_deleted.into(),
            when_scaled: when_scaled.into(),
        });
    s
}

fn strategy(
    mut s: StatefulSet,
    kind: &str,
    partition: i32,
    max_unavailable: Option<i32>,
) -> StatefulSet {
    spec_mut(&mut s).update_strategy = Some(StatefulSetUpdateStrategy {
        r#type: kind.into(),
        rolling_update: Some(RollingUpdateStatefulSetStrategy {
            partition: Some(partition),
            max_unavailable: max_unavailable.map(IntOrString::int),
        }),
    });
    s
}

/// The revision object of image `image` for `s` (as the controller would have stored it).
fn revision(s: &StatefulSet, image: &str, number: i64) -> ControllerRevision {
    let mut r = history::resolve(&history_owner(&with_image(s.clone(), image)), &[])
        .create
        .unwrap();
    r.revision = number;
    r
}

fn rev_name(r: &ControllerRevision) -> String {
    r.metadata.as_ref().unwrap().name.clone()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum St {
    Pending,
    Running,
    Ready,
    Failed,
    Succeeded,
}

/// Replica `ord` of `s` made from `rev`, in state `st` (Ready since long ago).
fn pod_at(s: &StatefulSet, rev: &ControllerRevision, ord: i32, st: St) -> Pod {
    let mut p = build_pod(s, rev.data.as_ref().unwrap(), &rev_name(rev), ord);
    p.metadata.as_mut().unwrap().uid = format!("pod-uid-{ord}");
    let (phase, ready) = match st {
        St::Pending => ("Pending", false),
        St::Running => ("Running", false),
        St::Ready => ("Running", true),
        St::Failed => ("Failed", false),
        St::Succeeded => ("Succeeded", false),
    };
    p.status = Some(PodStatus {
        phase: phase.into(),
        conditions: if ready {
            vec![PodCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                last_transition_time: "2026-01-01T00:00:00Z".into(),
                ..Default::default()
            }]
        } else {
            vec![]
        },
        ..Default::default()
    });
    p
}

fn terminating(mut p: Pod) -> Pod {
    p.metadata.as_mut().unwrap().deletion_timestamp = "2026-06-01T00:00:00Z".into();
    p
}

fn claim(s: &StatefulSet, ord: i32) -> PersistentVolumeClaim {
    let t = &s.spec.as_ref().unwrap().volume_claim_templates[0];
    let mut c = build_claim(s, t, ord, vec![]);
    c.metadata.as_mut().unwrap().resource_version = "7".into();
    c
}

fn claims(s: &StatefulSet, ords: &[i32]) -> Vec<PersistentVolumeClaim> {
    ords.iter().map(|o| claim(s, *o)).collect()
}

struct World {
    set: StatefulSet,
    revs: Vec<ControllerRevision>,
}

/// A set whose revision for image "a" is stored (number 1).
fn world(replicas: i32, policy: &str) -> World {
    let s = set(replicas, policy);
    let r = revision(&s, "a", 1);
    World {
        set: s,
        revs: vec![r],
    }
}

impl World {
    fn rev(&self) -> &ControllerRevision {
        &self.revs[0]
    }

    fn pods(&self, states: &[(i32, St)]) -> Vec<Pod> {
        states
            .iter()
            .map(|(o, st)| pod_at(&self.set, self.rev(), *o, *st))
            .collect()
    }

    fn run(&self, pods: &[Pod], claims: &[PersistentVolumeClaim]) -> Vec<Action> {
        decide(Snapshot {
            set: &self.set,
            pods,
            claims,
            revisions: &self.revs,
            now: now(),
        })
    }
}

fn creates(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CreatePod { pod } => Some(podutil::name(pod)),
            _ => None,
        })
        .collect()
}

fn created<'a>(actions: &'a [Action], name: &str) -> &'a Pod {
    actions
        .iter()
        .find_map(|a| match a {
            Action::CreatePod { pod } if podutil::name(pod) == name => Some(pod),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{name} is created: {actions:#?}"))
}

fn claim_creates(actions: &[Action]) -> Vec<(&str, &str)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateClaim { claim, pod } => {
                Some((claim.metadata.as_ref().unwrap().name.as_str(), pod.as_str()))
            }
            _ => None,
        })
        .collect()
}

fn deletes(actions: &[Action]) -> Vec<(&str, DeleteReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::DeletePod { name, reason } => Some((name.as_str(), *reason)),
            _ => None,
        })
        .collect()
}

fn status(actions: &[Action]) -> StatefulSetStatus {
    actions
        .iter()
        .find_map(|a| match a {
            Action::UpdateStatus { status } => Some(status.clone()),
            _ => None,
        })
        .expect("a status update")
}

/// (replicas, ready, available, current, updated)
fn counts(s: &StatefulSetStatus) -> (i32, i32, i32, i32, i32) {
    (
        s.replicas,
        s.ready_replicas,
        s.available_replicas,
        s.current_replicas,
        s.updated_replicas,
    )
}

#[test]
fn first_reconcile_makes_revision_claim_and_replica_zero_only() {
    let s = set(3, "OrderedReady");
    let a = decide(Snapshot {
        set: &s,
        pods: &[],
        claims: &[],
        revisions: &[],
        now: now(),
    });
    let rev = match &a[0] {
        Action::CreateRevision { revision } => revision.clone(),
        other => panic!("the revision comes first: {other:?}"),
    };
    assert_eq!(claim_creates(&a), vec![("data-web-0", "web-0")]);
    assert_eq!(creates(&a), vec!["web-0"]);
    let claim_at = a
        .iter()
        .position(|x| matches!(x, Action::CreateClaim { .. }))
        .unwrap();
    let pod_at = a
        .iter()
        .position(|x| matches!(x, Action::CreatePod { .. }))
        .unwrap();
    assert!(claim_at < pod_at, "the claim is created before its pod");
    let pod = created(&a, "web-0");
    let m = pod.metadata.as_ref().unwrap();
    assert_eq!(m.labels[REVISION_HASH_LABEL], rev_name(&rev));
    assert_eq!(m.labels[POD_NAME_LABEL], "web-0");
    assert_eq!(m.labels[POD_INDEX_LABEL], "0");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(
        (spec.hostname.as_str(), spec.subdomain.as_str()),
        ("web-0", "web-svc")
    );
    assert!(spec.node_name.is_empty());
    let st = status(&a);
    assert_eq!(counts(&st), (0, 0, 0, 0, 0));
    assert_eq!(st.observed_generation, 2);
    assert_eq!(
        (st.current_revision.clone(), st.update_revision.clone()),
        (rev_name(&rev), rev_name(&rev))
    );
    // Retain (default): the claim has no owner.
    let c = a
        .iter()
        .find_map(|x| match x {
            Action::CreateClaim { claim, .. } => Some(claim),
            _ => None,
        })
        .unwrap();
    assert!(c.metadata.as_ref().unwrap().owner_references.is_empty());
    assert_eq!(c.metadata.as_ref().unwrap().labels["app"], "web");
}

#[test]
fn ordered_ready_waits_for_each_replica_to_be_running_and_ready() {
    let w = world(3, "OrderedReady");
    let cl = claims(&w.set, &[0]);
    for st in [St::Pending, St::Running] {
        let a = w.run(&w.pods(&[(0, st)]), &cl);
        assert!(creates(&a).is_empty(), "{st:?} blocks web-1");
        assert!(claim_creates(&a).is_empty());
    }
    let a = w.run(&w.pods(&[(0, St::Ready)]), &cl);
    assert_eq!(creates(&a), vec!["web-1"]);
    assert_eq!(claim_creates(&a), vec![("data-web-1", "web-1")]);
    let a = w.run(
        &w.pods(&[(0, St::Ready), (1, St::Ready)]),
        &claims(&w.set, &[0, 1]),
    );
    assert_eq!(creates(&a), vec!["web-2"]);
    // A lower replica that stops being ready holds the higher ones back.
    let a = w.run(
        &w.pods(&[(0, St::Running), (1, St::Ready)]),
        &claims(&w.set, &[0, 1]),
    );
    assert!(creates(&a).is_empty());
}

#[test]
fn steady_state_writes_nothing() {
    let mut w = world(2, "OrderedReady");
    let pods = w.pods(&[(0, St::Ready), (1, St::Ready)]);
    let cl = claims(&w.set, &[0, 1]);
    let a = w.run(&pods, &cl);
    assert_eq!(a.len(), 1, "{a:#?}");
    let st = status(&a);
    assert_eq!(counts(&st), (2, 2, 2, 2, 2));
    w.set.status = Some(st);
    assert!(w.run(&pods, &cl).is_empty());
}

#[test]
fn min_ready_seconds_delays_the_next_replica_and_requeues() {
    let mut w = world(2, "OrderedReady");
    spec_mut(&mut w.set).min_ready_seconds = 10;
    let mut p0 = w.pods(&[(0, St::Ready)]).remove(0);
    p0.status.as_mut().unwrap().conditions[0].last_transition_time = "2026-05-31T23:59:55Z".into();
    let a = w.run(&[p0.clone()], &claims(&w.set, &[0]));
    assert!(creates(&a).is_empty());
    assert!(a.contains(&Action::RequeueAfter {
        after: Duration::from_secs(5)
    }));
    assert_eq!(counts(&status(&a)), (1, 1, 0, 1, 1));
    p0.status.as_mut().unwrap().conditions[0].last_transition_time = "2026-05-31T23:59:50Z".into();
    let a = w.run(&[p0], &claims(&w.set, &[0]));
    assert_eq!(creates(&a), vec!["web-1"]);
    assert!(!a.iter().any(|x| matches!(x, Action::RequeueAfter { .. })));
}

#[test]
fn finished_replicas_are_deleted_then_recreated_under_the_same_name() {
    let w = world(3, "OrderedReady");
    let cl = claims(&w.set, &[0, 1]);
    for st in [St::Failed, St::Succeeded] {
        let a = w.run(&w.pods(&[(0, St::Ready), (1, st)]), &cl);
        assert_eq!(deletes(&a), vec![("web-1", DeleteReason::Finished)]);
        assert!(
            creates(&a).is_empty(),
            "no new web-1 while the old one exists, no web-2"
        );
    }
    let mut pods = w.pods(&[(0, St::Ready), (1, St::Failed)]);
    pods[1] = terminating(pods[1].clone());
    let a = w.run(&pods, &cl);
    assert!(
        deletes(&a).is_empty() && creates(&a).is_empty(),
        "waits for the object to go"
    );
    let a = w.run(&w.pods(&[(0, St::Ready)]), &cl);
    assert_eq!(creates(&a), vec!["web-1"]);
    assert!(claim_creates(&a).is_empty(), "its claim is still there");
}

#[test]
fn a_name_still_held_is_never_reused() {
    let w = world(3, "Parallel");
    let cl = claims(&w.set, &[0, 1, 2]);
    // web-1 is Terminating (e.g. on a lost node, or deleted by a user).
    let mut pods = w.pods(&[(0, St::Ready), (1, St::Ready)]);
    pods[1] = terminating(pods[1].clone());
    let a = w.run(&pods, &cl);
    assert_eq!(creates(&a), vec!["web-2"]);
    // A pod of another owner (or none, not matching the selector) holds web-2.
    let mut stranger = pod_at(&w.set, w.rev(), 2, St::Ready);
    let sm = stranger.metadata.as_mut().unwrap();
    sm.owner_references.clear();
    sm.labels.insert("app".into(), "other".into());
    let pods = vec![pod_at(&w.set, w.rev(), 0, St::Ready), stranger];
    let a = w.run(&pods, &cl);
    assert_eq!(creates(&a), vec!["web-1"]);
    assert!(!a.iter().any(|x| matches!(x, Action::AdoptPod { .. })));
    assert_eq!(status(&a).replicas, 1, "the stranger is not counted");
}

#[test]
fn parallel_creates_every_missing_replica_at_once() {
    let w = world(4, "Parallel");
    let a = w.run(&[], &[]);
    assert_eq!(creates(&a), vec!["web-0", "web-1", "web-2", "web-3"]);
    assert_eq!(claim_creates(&a).len(), 4);
    // Even with a failed and an unready replica.
    let a = w.run(
        &w.pods(&[(0, St::Pending), (1, St::Failed)]),
        &claims(&w.set, &[0, 1]),
    );
    assert_eq!(deletes(&a), vec![("web-1", DeleteReason::Finished)]);
    assert_eq!(creates(&a), vec!["web-2", "web-3"]);
}

#[test]
fn ordered_scale_down_goes_from_the_top_one_at_a_time() {
    let w = world(1, "OrderedReady");
    let cl = claims(&w.set, &[0, 1, 2]);
    let all = w.pods(&[(0, St::Ready), (1, St::Ready), (2, St::Ready)]);
    let a = w.run(&all, &cl);
    assert_eq!(deletes(&a), vec![("web-2", DeleteReason::ScaleDown)]);
    assert_eq!(counts(&status(&a)), (3, 3, 3, 3, 3));
    // web-2 terminating: web-1 waits until it is gone.
    let mut pods = all.clone();
    pods[2] = terminating(pods[2].clone());
    assert!(deletes(&w.run(&pods, &cl)).is_empty());
    let a = w.run(&all[..2], &cl);
    assert_eq!(deletes(&a), vec![("web-1", DeleteReason::ScaleDown)]);
    // Only while the remaining replicas are healthy.
    let pods = w.pods(&[(0, St::Running), (1, St::Ready)]);
    assert!(deletes(&w.run(&pods, &cl)).is_empty());
    // An unhealthy condemned replica itself may go (and a lower condemned one does not block).
    let pods = w.pods(&[(0, St::Ready), (1, St::Running), (2, St::Pending)]);
    assert_eq!(
        deletes(&w.run(&pods, &cl)),
        vec![("web-2", DeleteReason::ScaleDown)]
    );
    // The claims stay (Retain).
    assert!(!w
        .run(&all, &cl)
        .iter()
        .any(|x| matches!(x, Action::SetClaimOwners { .. })));
}

#[test]
fn scaling_up_comes_before_scaling_down() {
    let w = world(2, "OrderedReady");
    let pods = w.pods(&[(0, St::Ready), (2, St::Ready)]);
    let a = w.run(&pods, &claims(&w.set, &[0, 1, 2]));
    assert_eq!(creates(&a), vec!["web-1"]);
    assert!(deletes(&a).is_empty());
}

#[test]
fn parallel_scale_down_deletes_all_condemned_at_once() {
    let w = world(1, "Parallel");
    let pods = w.pods(&[
        (0, St::Pending),
        (1, St::Ready),
        (2, St::Ready),
        (3, St::Running),
    ]);
    let a = w.run(&pods, &claims(&w.set, &[0, 1, 2, 3]));
    assert_eq!(
        deletes(&a),
        vec![
            ("web-3", DeleteReason::ScaleDown),
            ("web-2", DeleteReason::ScaleDown),
            ("web-1", DeleteReason::ScaleDown)
        ]
    );
}

#[test]
fn ordinals_start_shifts_the_range() {
    let mut w = world(2, "OrderedReady");
    spec_mut(&mut w.set).ordinals = Some(StatefulSetOrdinals { start: 5 });
    let a = w.run(&[], &[]);
    assert_eq!(creates(&a), vec!["web-5"]);
    assert_eq!(claim_creates(&a), vec![("data-web-5", "web-5")]);
    // Old replicas below the new start are condemned once the range is healthy.
    let pods = w.pods(&[(0, St::Ready), (5, St::Ready), (6, St::Ready)]);
    let a = w.run(&pods, &claims(&w.set, &[0, 5, 6]));
    assert_eq!(deletes(&a), vec![("web-0", DeleteReason::ScaleDown)]);
}

#[test]
fn stale_claims_hold_their_pod_back_and_missing_ones_are_made_again() {
    let w = world(2, "OrderedReady");
    let mut cl = claims(&w.set, &[0]);
    cl[0].metadata.as_mut().unwrap().owner_references = vec![OwnerReference {
        kind: "Pod".into(),
        name: "web-0".into(),
        uid: "old".into(),
        ..Default::default()
    }];
    let a = w.run(&[], &cl);
    assert!(creates(&a).is_empty() && claim_creates(&a).is_empty());
    // A Pending pod whose claim vanished gets it back; a running one does not.
    let a = w.run(&w.pods(&[(0, St::Pending)]), &[]);
    assert_eq!(claim_creates(&a), vec![("data-web-0", "web-0")]);
    let a = w.run(&w.pods(&[(0, St::Running)]), &[]);
    assert!(claim_creates(&a).is_empty());
}

#[test]
fn when_deleted_delete_makes_the_set_own_its_claims() {
    let mut w = world(2, "OrderedReady");
    w.set = retention(w.set, "Delete", "Retain");
    let a = w.run(&w.pods(&[(0, St::Ready)]), &claims(&w.set, &[0]));
    let created_claim = a
        .iter()
        .find_map(|x| match x {
            Action::CreateClaim { claim, .. } => Some(claim.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        created_claim.metadata.unwrap().owner_references,
        vec![set_reference(&w.set)]
    );
    // The ownerless claim of web-0 (made under Retain) is brought in line.
    assert!(a.contains(&Action::SetClaimOwners {
        name: "data-web-0".into(),
        resource_version: 7,
        owners: vec![set_reference(&w.set)],
    }));
}

#[test]
fn when_scaled_delete_hands_condemned_claims_to_their_pod_before_deleting_it() {
    let mut w = world(1, "OrderedReady");
    w.set = retention(w.set, "Retain", "Delete");
    let pods = w.pods(&[(0, St::Ready), (1, St::Ready)]);
    let a = w.run(&pods, &claims(&w.set, &[0, 1]));
    let own = a
        .iter()
        .position(|x| matches!(x, Action::SetClaimOwners { name, .. } if name == "data-web-1"))
        .expect("the condemned claim gets its pod as owner");
    let del = a
        .iter()
        .position(|x| matches!(x, Action::DeletePod { .. }))
        .unwrap();
    assert!(own < del);
    match &a[own] {
        Action::SetClaimOwners { owners, .. } => {
            assert_eq!(
                (owners[0].kind.as_str(), owners[0].uid.as_str()),
                ("Pod", "pod-uid-1")
            )
        }
        _ => unreachable!(),
    }
    assert_eq!(deletes(&a), vec![("web-1", DeleteReason::ScaleDown)]);
    assert_eq!(
        a.iter()
            .filter(|x| matches!(x, Action::SetClaimOwners { .. }))
            .count(),
        1
    );
}

#[test]
fn orphans_named_like_replicas_are_adopted() {
    let w = world(2, "OrderedReady");
    let mut orphan = pod_at(&w.set, w.rev(), 0, St::Ready);
    orphan.metadata.as_mut().unwrap().owner_references.clear();
    let a = w.run(&[orphan.clone()], &claims(&w.set, &[0]));
    assert_eq!(
        a[0],
        Action::AdoptPod {
            name: "web-0".into()
        }
    );
    assert_eq!(
        creates(&a),
        vec!["web-1"],
        "the adopted replica counts as ready"
    );
    // Not named like a replica: left alone.
    orphan.metadata.as_mut().unwrap().name = "web-x".into();
    let a = w.run(&[orphan], &[]);
    assert!(!a.iter().any(|x| matches!(x, Action::AdoptPod { .. })));
}

/// A set at image "b" whose pods run image "a" (revision 1); revision 2 is stored.
fn rolled(replicas: i32, policy: &str) -> (World, ControllerRevision, ControllerRevision) {
    let w = world(replicas, policy);
    let a = w.revs[0].clone();
    let b = revision(&w.set, "b", 2);
    let mut s = with_image(w.set.clone(), "b");
    s.status = Some(StatefulSetStatus {
        current_revision: rev_name(&a),
        ..Default::default()
    });
    (
        World {
            set: s,
            revs: vec![a.clone(), b.clone()],
        },
        a,
        b,
    )
}

fn pods_at(w: &World, states: &[(i32, &ControllerRevision, St)]) -> Vec<Pod> {
    states
        .iter()
        .map(|(o, r, st)| pod_at(&w.set, r, *o, *st))
        .collect()
}

#[test]
fn new_template_makes_a_revision() {
    let w = world(1, "OrderedReady");
    let s = with_image(w.set.clone(), "b");
    let a = decide(Snapshot {
        set: &s,
        pods: &w.pods(&[(0, St::Ready)]),
        claims: &claims(&s, &[0]),
        revisions: &w.revs,
        now: now(),
    });
    match &a[0] {
        Action::CreateRevision { revision } => assert_eq!(revision.revision, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rolling_update_replaces_from_the_top_one_at_a_time() {
    let (w, a, b) = rolled(3, "OrderedReady");
    let cl = claims(&w.set, &[0, 1, 2]);
    let all_a = pods_at(
        &w,
        &[(0, &a, St::Ready), (1, &a, St::Ready), (2, &a, St::Ready)],
    );
    let acts = w.run(&all_a, &cl);
    assert_eq!(deletes(&acts), vec![("web-2", DeleteReason::Update)]);
    let st = status(&acts);
    assert_eq!(counts(&st), (3, 3, 3, 3, 0));
    assert_eq!(
        (st.current_revision, st.update_revision),
        (rev_name(&a), rev_name(&b))
    );

    // web-2 gone: it comes back at b.
    let acts = w.run(&all_a[..2], &cl);
    let p = created(&acts, "web-2");
    assert_eq!(pod_revision(p), rev_name(&b));
    assert!(deletes(&acts).is_empty());

    // Waits for the replacement to be Ready before the next.
    let pods = pods_at(
        &w,
        &[(0, &a, St::Ready), (1, &a, St::Ready), (2, &b, St::Running)],
    );
    assert!(deletes(&w.run(&pods, &cl)).is_empty());
    let pods = pods_at(
        &w,
        &[(0, &a, St::Ready), (1, &a, St::Ready), (2, &b, St::Ready)],
    );
    assert_eq!(
        deletes(&w.run(&pods, &cl)),
        vec![("web-1", DeleteReason::Update)]
    );

    // Done: the update revision becomes current.
    let pods = pods_at(
        &w,
        &[(0, &b, St::Ready), (1, &b, St::Ready), (2, &b, St::Ready)],
    );
    let acts = w.run(&pods, &cl);
    assert!(deletes(&acts).is_empty());
    let st = status(&acts);
    assert_eq!(counts(&st), (3, 3, 3, 3, 3));
    assert_eq!(st.current_revision, rev_name(&b));
}

#[test]
fn partition_keeps_lower_ordinals_on_the_current_revision() {
    let (mut w, a, b) = rolled(3, "OrderedReady");
    w.set = strategy(w.set, "RollingUpdate", 2, None);
    let cl = claims(&w.set, &[0, 1, 2]);
    let pods = pods_at(
        &w,
        &[(0, &a, St::Ready), (1, &a, St::Ready), (2, &b, St::Ready)],
    );
    let acts = w.run(&pods, &cl);
    assert!(deletes(&acts).is_empty(), "web-1 is below the partition");
    assert_eq!(counts(&status(&acts)), (3, 3, 3, 2, 1));
    // A replica below the partition that is recreated stays on a.
    let acts = w.run(&[pods[0].clone(), pods[2].clone()], &cl);
    assert_eq!(pod_revision(created(&acts, "web-1")), rev_name(&a));
}

#[test]
fn on_delete_waits_for_the_user() {
    let (mut w, a, b) = rolled(2, "OrderedReady");
    w.set = strategy(w.set, "OnDelete", 0, None);
    let cl = claims(&w.set, &[0, 1]);
    let pods = pods_at(&w, &[(0, &a, St::Ready), (1, &a, St::Ready)]);
    assert!(deletes(&w.run(&pods, &cl)).is_empty());
    // The user deleted web-1: it comes back at the new revision.
    let acts = w.run(&pods[..1], &cl);
    assert_eq!(pod_revision(created(&acts, "web-1")), rev_name(&b));
}

#[test]
fn max_unavailable_replaces_several_at_once() {
    let (mut w, a, _) = rolled(4, "Parallel");
    w.set = strategy(w.set, "RollingUpdate", 0, Some(2));
    let cl = claims(&w.set, &[0, 1, 2, 3]);
    let pods = pods_at(
        &w,
        &[
            (0, &a, St::Ready),
            (1, &a, St::Ready),
            (2, &a, St::Ready),
            (3, &a, St::Ready),
        ],
    );
    assert_eq!(
        deletes(&w.run(&pods, &cl)),
        vec![
            ("web-3", DeleteReason::Update),
            ("web-2", DeleteReason::Update)
        ]
    );
    // One already unavailable: only one more goes.
    let mut p = pods.clone();
    p[0] = pod_at(&w.set, &a, 0, St::Running);
    assert_eq!(
        deletes(&w.run(&p, &cl)),
        vec![("web-3", DeleteReason::Update)]
    );
}

#[test]
fn a_broken_outdated_replica_is_replaced_instead_of_wedging_the_rollout() {
    // Kubernetes #67250: the template was reverted to a good one (b) while web-1 runs a
    // broken revision (a) that never gets Ready.
    let (w, a, b) = rolled(3, "OrderedReady");
    let cl = claims(&w.set, &[0, 1, 2]);
    let pods = pods_at(&w, &[(0, &b, St::Ready), (1, &a, St::Running)]);
    let acts = w.run(&pods, &cl);
    assert_eq!(deletes(&acts), vec![("web-1", DeleteReason::Update)]);
    assert!(creates(&acts).is_empty());
    // Up to date but not ready: nothing to do but wait.
    let pods = pods_at(&w, &[(0, &b, St::Ready), (1, &b, St::Running)]);
    assert!(deletes(&w.run(&pods, &cl)).is_empty());
}

#[test]
fn a_set_being_deleted_only_reports_status() {
    let mut w = world(3, "OrderedReady");
    w.set.metadata.as_mut().unwrap().deletion_timestamp = "2026-06-01T00:00:00Z".into();
    let mut orphan = pod_at(&w.set, w.rev(), 1, St::Ready);
    orphan.metadata.as_mut().unwrap().owner_references.clear();
    let pods = vec![pod_at(&w.set, w.rev(), 0, St::Failed), orphan];
    let a = w.run(&pods, &[]);
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(status(&a).replicas, 1);
}

#[test]
fn old_revisions_are_trimmed_to_the_history_limit() {
    let (mut w, a, b) = rolled(1, "OrderedReady");
    spec_mut(&mut w.set).revision_history_limit = Some(1);
    let c = revision(&w.set, "c", 3);
    let d = revision(&w.set, "d", 4);
    // Set at d; the pod runs b; a and c are history, one of which may stay.
    let mut s = with_image(w.set.clone(), "d");
    s.status = Some(StatefulSetStatus {
        current_revision: rev_name(&d),
        ..Default::default()
    });
    let w = World {
        set: s,
        revs: vec![a.clone(), b.clone(), c.clone(), d],
    };
    let acts = w.run(&pods_at(&w, &[(0, &b, St::Ready)]), &claims(&w.set, &[0]));
    let trimmed: Vec<&str> = acts
        .iter()
        .filter_map(|x| match x {
            Action::DeleteRevision { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(trimmed, vec![rev_name(&a)]);
}

// ---------------------------------------------------------------- simulation

/// A small cluster: decide()'s actions are applied as the shell would, and a fake
/// kubelet makes pods Ready and finishes terminations; invariants are checked on
/// every step.
struct Sim {
    set: StatefulSet,
    pods: BTreeMap<String, Pod>,
    claims: BTreeMap<String, PersistentVolumeClaim>,
    revs: Vec<ControllerRevision>,
    /// Pod names in creation order.
    created: Vec<String>,
    /// Pod names in deletion-request order.
    deleted: Vec<String>,
    uid: u32,
}

impl Sim {
    fn new(s: StatefulSet) -> Sim {
        Sim {
            set: s,
            pods: BTreeMap::new(),
            claims: BTreeMap::new(),
            revs: Vec::new(),
            created: Vec::new(),
            deleted: Vec::new(),
            uid: 0,
        }
    }

    fn monotonic(&self) -> bool {
        self.set.spec.as_ref().unwrap().pod_management_policy != "Parallel"
    }

    /// One reconcile; returns whether anything but a status write happened.
    fn reconcile(&mut self) -> bool {
        let pods: Vec<Pod> = self.pods.values().cloned().collect();
        let claims: Vec<PersistentVolumeClaim> = self.claims.values().cloned().collect();
        let actions = decide(Snapshot {
            set: &self.set,
            pods: &pods,
            claims: &claims,
            revisions: &self.revs,
            now: now(),
        });
        let mut busy = false;
        for a in actions {
            match a {
                Action::CreateRevision { revision } => {
                    self.revs.push(revision);
                    busy = true;
                }
                Action::RenumberRevision { name, revision } => {
                    for r in &mut self.revs {
                        if r.metadata.as_ref().unwrap().name == name {
                            r.revision = revision;
                        }
                    }
                    busy = true;
                }
                Action::CreateClaim { claim, .. } => {
                    let name = claim.metadata.as_ref().unwrap().name.clone();
                    assert!(self.claims.insert(name, claim).is_none());
                    busy = true;
                }
                Action::SetClaimOwners { name, owners, .. } => {
                    self.claims
                        .get_mut(&name)
                        .unwrap()
                        .metadata
                        .as_mut()
                        .unwrap()
                        .owner_references = owners;
                    busy = true;
                }
                Action::CreatePod { mut pod } => {
                    let name = podutil::name(&pod).to_string();
                    assert!(!self.pods.contains_key(&name), "{name} created twice");
                    for v in &pod.spec.as_ref().unwrap().volumes {
                        if let Some(c) = &v.persistent_volume_claim {
                            assert!(self.claims.contains_key(&c.claim_name), "claim before pod");
                        }
                    }
                    if self.monotonic() {
                        let ord = parse_ordinal("web", &name).unwrap();
                        for (other, p) in &self.pods {
                            let o = parse_ordinal("web", other).unwrap();
                            if o < ord {
                                assert!(
                                    running_ready(p),
                                    "{name} created while {other} is not ready"
                                );
                            }
                        }
                    }
                    self.uid += 1;
                    pod.metadata.as_mut().unwrap().uid = format!("u{}", self.uid);
                    self.pods.insert(name.clone(), pod);
                    self.created.push(name);
                    busy = true;
                }
                Action::DeletePod { name, .. } => {
                    if self.monotonic() {
                        assert!(
                            !self.pods.values().any(podutil::is_terminating),
                            "{name} deleted while another pod terminates"
                        );
                    }
                    let p = self.pods.get_mut(&name).unwrap();
                    p.metadata.as_mut().unwrap().deletion_timestamp = "t".into();
                    self.deleted.push(name);
                    busy = true;
                }
                Action::UpdateStatus { status } => self.set.status = Some(status),
                Action::DeleteRevision { name } => {
                    self.revs
                        .retain(|r| r.metadata.as_ref().unwrap().name != name);
                }
                Action::AdoptPod { .. }
                | Action::AdoptRevision { .. }
                | Action::RequeueAfter { .. } => {}
            }
        }
        busy
    }

    /// The kubelet: terminating pods go, others become Running and Ready.
    fn kubelet(&mut self) {
        self.pods.retain(|_, p| !podutil::is_terminating(p));
        for p in self.pods.values_mut() {
            if !running_ready(p) && podutil::phase(p) != "Failed" {
                p.status = pod_at(&self.set, &self.revs[0], 0, St::Ready).status;
            }
        }
    }

    /// Reconciles (and lets the kubelet act after each) until nothing more happens.
    fn settle(&mut self) {
        for _ in 0..200 {
            let busy = self.reconcile();
            self.kubelet();
            if !busy && !self.reconcile() {
                return;
            }
        }
        panic!("never settled");
    }

    fn names(&self) -> Vec<&str> {
        self.pods.keys().map(String::as_str).collect()
    }

    fn revisions_of_pods(&self) -> BTreeSet<&str> {
        self.pods.values().map(pod_revision).collect()
    }
}

#[test]
fn simulated_scale_up_down_and_update() {
    for policy in ["OrderedReady", "Parallel"] {
        let mut sim = Sim::new(set(5, policy));
        sim.settle();
        assert_eq!(
            sim.names(),
            vec!["web-0", "web-1", "web-2", "web-3", "web-4"]
        );
        assert_eq!(
            sim.created,
            vec!["web-0", "web-1", "web-2", "web-3", "web-4"]
        );
        assert_eq!(sim.claims.len(), 5);
        let st = sim.set.status.clone().unwrap();
        assert_eq!(counts(&st), (5, 5, 5, 5, 5));

        spec_mut(&mut sim.set).replicas = Some(2);
        sim.settle();
        assert_eq!(sim.names(), vec!["web-0", "web-1"]);
        if policy == "OrderedReady" {
            assert_eq!(sim.deleted, vec!["web-4", "web-3", "web-2"]);
        }
        assert_eq!(sim.claims.len(), 5, "claims are retained");

        spec_mut(&mut sim.set).replicas = Some(3);
        sim.settle();
        assert_eq!(sim.names(), vec!["web-0", "web-1", "web-2"]);

        sim.deleted.clear();
        sim.set = with_image(sim.set.clone(), "b");
        sim.settle();
        assert_eq!(
            sim.deleted,
            vec!["web-2", "web-1", "web-0"],
            "{policy}: reverse ordinal order"
        );
        let st = sim.set.status.clone().unwrap();
        assert_eq!(st.current_revision, st.update_revision);
        assert_eq!(
            sim.revisions_of_pods(),
            [st.update_revision.as_str()].into()
        );
        assert_eq!(sim.revs.len(), 2);

        // Back to a: the old revision is renumbered, not duplicated.
        sim.set = with_image(sim.set.clone(), "a");
        sim.settle();
        assert_eq!(sim.revs.len(), 2);
        let a_rev = sim
            .revs
            .iter()
            .find(|r| r.data == Some(template("a")))
            .unwrap();
        assert_eq!(a_rev.revision, 3);
    }
}

#[test]
fn simulated_retention_policies() {
    let mut sim = Sim::new(retention(set(3, "OrderedReady"), "Delete", "Delete"));
    sim.settle();
    for c in sim.claims.values() {
        assert_eq!(
            c.metadata.as_ref().unwrap().owner_references,
            vec![set_reference(&sim.set)]
        );
    }
    spec_mut(&mut sim.set).replicas = Some(1);
    // Before each condemned pod goes, its claim is handed to it (and only to it).
    let pods_before: BTreeMap<String, String> = sim
        .pods
        .iter()
        .map(|(n, p)| (n.clone(), p.metadata.as_ref().unwrap().uid.clone()))
        .collect();
    sim.reconcile();
    let c2 = &sim.claims["data-web-2"];
    let owners = &c2.metadata.as_ref().unwrap().owner_references;
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (owners[0].kind.as_str(), owners[0].uid.as_str()),
        ("Pod", pods_before["web-2"].as_str())
    );
    assert_eq!(
        sim.claims["data-web-0"]
            .metadata
            .as_ref()
            .unwrap()
            .owner_references,
        vec![set_reference(&sim.set)]
    );
}
