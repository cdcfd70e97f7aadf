use super::*;
use crate::controllers::placement::taint_keys;
use twinset_proto::v1::{
    Affinity, DaemonSetSpec, DaemonSetUpdateStrategy, IntOrString, LabelSelector, NodeAffinity,
    NodeCondition, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus,
    PodCondition, RollingUpdateDaemonSet, Taint, Toleration,
};

const UID: &str = "ds-uid";

fn ds() -> DaemonSet {
    let labels: BTreeMap<String, String> = [("app".to_string(), "node-monitor".to_string())].into();
    DaemonSet {
        metadata: Some(ObjectMeta {
            name: "node-monitor".into(),
            namespace: "kube-system".into(),
            uid: UID.into(),
            generation: 3,
            ..Default::default()
        }),
        spec: Some(DaemonSetSpec {
            selector: Some(LabelSelector {
                match_labels: labels.clone(),
                ..Default::default()
            }),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(PodSpec::default()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_spec(mut ds: DaemonSet, f: impl FnOnce(&mut PodSpec)) -> DaemonSet {
    let spec = ds
        .spec
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .spec
        .as_mut()
        .unwrap();
    f(spec);
    ds
}

fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
    Node {
        metadata: Some(ObjectMeta {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            taints: taints
                .iter()
                .map(|(k, e)| Taint {
                    key: k.to_string(),
                    effect: e.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            conditions: vec![NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `n` with its Ready condition at `status` (False: NotReady, Unknown: silent agent).
fn not_ready(mut n: Node, status: &str) -> Node {
    n.status.as_mut().unwrap().conditions[0].status = status.into();
    n
}

fn nodes(names: &[&str]) -> Vec<Node> {
    names.iter().map(|n| node(n, &[], &[])).collect()
}

/// A pod of the set on `node`, created at `created` seconds, current template, Running+Ready.
fn pod(name: &str, node: &str, created: u64) -> Pod {
    let mut p = build_pod(&ds(), &hash(&ds()), node, "xxxxx");
    let m = p.metadata.as_mut().unwrap();
    m.name = name.into();
    m.creation_timestamp = twinset_proto::time::format(
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(created),
    );
    p.status = Some(PodStatus {
        phase: "Running".into(),
        conditions: vec![PodCondition {
            r#type: "Ready".into(),
            status: "True".into(),
            last_transition_time: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    p
}

fn phase(mut p: Pod, phase: &str) -> Pod {
    let s = p.status.as_mut().unwrap();
    s.phase = phase.into();
    s.conditions.clear();
    p
}

fn terminating(mut p: Pod) -> Pod {
    p.metadata.as_mut().unwrap().deletion_timestamp = "2026-01-01T00:00:00Z".into();
    p
}

fn outdated(mut p: Pod) -> Pod {
    p.metadata
        .as_mut()
        .unwrap()
        .labels
        .insert(REVISION_HASH_LABEL.into(), "old".into());
    p
}

fn now() -> SystemTime {
    twinset_proto::time::parse("2026-06-01T00:00:00Z").unwrap()
}

/// The revision the controller stored for `ds`'s template (on its first round).
fn stored(ds: &DaemonSet) -> ControllerRevision {
    history::resolve(&history_owner(ds), &[])
        .create
        .expect("a first revision")
}

/// The template hash pods of `ds`'s template carry.
fn hash(ds: &DaemonSet) -> String {
    history::resolve(&history_owner(ds), &[])
        .update
        .hash(&meta(ds).name)
        .to_string()
}

/// One round with the set's revision already stored.
fn run(ds: &DaemonSet, nodes: &[Node], pods: &[Pod]) -> Vec<Action> {
    decide(Snapshot {
        ds,
        nodes,
        pods,
        revisions: &[stored(ds)],
        now: now(),
    })
}

fn creates(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CreatePod { node, .. } => Some(node.as_str()),
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

fn status(actions: &[Action]) -> DaemonSetStatus {
    actions
        .iter()
        .find_map(|a| match a {
            Action::UpdateStatus { status } => Some(status.clone()),
            _ => None,
        })
        .expect("a status update")
}

/// (desired, current, misscheduled, ready, available, updated, unavailable)
fn counts(s: &DaemonSetStatus) -> (i32, i32, i32, i32, i32, i32, i32) {
    (
        s.desired_number_scheduled,
        s.current_number_scheduled,
        s.number_misscheduled,
        s.number_ready,
        s.number_available,
        s.updated_number_scheduled,
        s.number_unavailable,
    )
}

#[test]
fn creates_one_pod_per_node() {
    let a = run(&ds(), &nodes(&["n1", "n2", "n3"]), &[]);
    assert_eq!(creates(&a), vec!["n1", "n2", "n3"]);
    let s = status(&a);
    assert_eq!(counts(&s), (3, 0, 0, 0, 0, 0, 3));
    assert_eq!(s.observed_generation, 3);
}

#[test]
fn steady_state_does_nothing() {
    let pods = vec![pod("a", "n1", 1), pod("b", "n2", 1)];
    let mut d = ds();
    let a = run(&d, &nodes(&["n1", "n2"]), &pods);
    assert!(creates(&a).is_empty() && deletes(&a).is_empty());
    assert_eq!(counts(&status(&a)), (2, 2, 0, 2, 2, 2, 0));
    d.status = Some(status(&a));
    assert!(
        run(&d, &nodes(&["n1", "n2"]), &pods).is_empty(),
        "no write when the status is unchanged"
    );
}

#[test]
fn node_selector_picks_nodes() {
    let d = with_spec(ds(), |s| {
        s.node_selector.insert("disk".into(), "ssd".into());
    });
    let ns = vec![
        node("n1", &[("disk", "ssd")], &[]),
        node("n2", &[("disk", "hdd")], &[]),
        node("n3", &[], &[]),
    ];
    let a = run(&d, &ns, &[]);
    assert_eq!(creates(&a), vec!["n1"]);
    assert_eq!(status(&a).desired_number_scheduled, 1);
}

#[test]
fn relabelled_node_loses_its_pod() {
    let d = with_spec(ds(), |s| {
        s.node_selector.insert("disk".into(), "ssd".into());
    });
    let ns = vec![node("n1", &[("disk", "hdd")], &[])];
    let a = run(&d, &ns, &[pod("a", "n1", 1)]);
    assert_eq!(deletes(&a), vec![("a", DeleteReason::NodeUnfit)]);
    assert_eq!(counts(&status(&a)), (0, 0, 1, 0, 0, 0, 0));
}

#[test]
fn required_node_affinity() {
    let d = with_spec(ds(), |s| {
        s.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: vec![NodeSelectorRequirement {
                            key: "zone".into(),
                            operator: "NotIn".into(),
                            values: vec!["b".into()],
                        }],
                        match_fields: vec![NodeSelectorRequirement {
                            key: "metadata.name".into(),
                            operator: "In".into(),
                            values: vec!["n1".into(), "n2".into()],
                        }],
                    }],
                }),
                ..Default::default()
            }),
        });
    });
    let ns = vec![
        node("n1", &[("zone", "a")], &[]),
        node("n2", &[("zone", "b")], &[]),
        node("n3", &[], &[]),
    ];
    assert_eq!(creates(&run(&d, &ns, &[])), vec!["n1"]);
}

#[test]
fn untolerated_no_schedule_taint_blocks_new_pods_but_keeps_old_ones() {
    let ns = vec![
        node("n1", &[], &[("dedicated", "NoSchedule")]),
        node("n2", &[], &[("dedicated", "NoSchedule")]),
    ];
    let a = run(&ds(), &ns, &[pod("a", "n1", 1)]);
    assert!(creates(&a).is_empty(), "no new pod on n2");
    assert!(deletes(&a).is_empty(), "the pod on n1 stays");
    assert_eq!(
        counts(&status(&a)),
        (0, 0, 1, 0, 0, 0, 0),
        "counted as misscheduled"
    );
}

#[test]
fn untolerated_no_execute_taint_evicts() {
    let ns = vec![node("n1", &[], &[("dedicated", "NoExecute")])];
    let a = run(&ds(), &ns, &[pod("a", "n1", 1)]);
    assert_eq!(deletes(&a), vec![("a", DeleteReason::NodeUnfit)]);
    assert!(creates(&a).is_empty());
}

#[test]
fn tolerations_let_pods_onto_tainted_nodes() {
    let d = with_spec(ds(), |s| {
        s.tolerations.push(Toleration {
            key: "dedicated".into(),
            operator: "Exists".into(),
            ..Default::default()
        })
    });
    let ns = vec![
        node("n1", &[], &[("dedicated", "NoSchedule")]),
        node("n2", &[], &[("dedicated", "NoExecute")]),
    ];
    assert_eq!(creates(&run(&d, &ns, &[])), vec!["n1", "n2"]);
}

#[test]
fn automatic_tolerations_cover_cordoned_unreachable_and_pressured_nodes() {
    let ns = vec![
        node(
            "cordoned",
            &[],
            &[(taint_keys::UNSCHEDULABLE, "NoSchedule")],
        ),
        node(
            "lost",
            &[],
            &[
                (taint_keys::UNREACHABLE, "NoExecute"),
                (taint_keys::UNREACHABLE, "NoSchedule"),
            ],
        ),
        node("notready", &[], &[(taint_keys::NOT_READY, "NoExecute")]),
        node(
            "full",
            &[],
            &[
                (taint_keys::DISK_PRESSURE, "NoSchedule"),
                (taint_keys::MEMORY_PRESSURE, "NoSchedule"),
            ],
        ),
        node("pids", &[], &[(taint_keys::PID_PRESSURE, "NoSchedule")]),
        node(
            "nonet",
            &[],
            &[(taint_keys::NETWORK_UNAVAILABLE, "NoSchedule")],
        ),
    ];
    let a = run(&ds(), &ns, &[]);
    // An unreachable node (tainted NoSchedule as well as NoExecute by node lifecycle) gets no
    // new pod, as in Kubernetes: only the NoExecute half is tolerated automatically.
    assert_eq!(creates(&a), vec!["cordoned", "notready", "full", "pids"]);
    // An existing pod on an unreachable node is never evicted for it.
    let lost = vec![node("lost", &[], &[(taint_keys::UNREACHABLE, "NoExecute")])];
    assert!(deletes(&run(&ds(), &lost, &[pod("a", "lost", 1)])).is_empty());
    // hostNetwork pods tolerate network-unavailable too.
    let host = with_spec(ds(), |s| s.host_network = true);
    assert_eq!(creates(&run(&host, &ns, &[])).len(), 5);
}

#[test]
fn built_pods_carry_name_labels_owner_node_and_tolerations() {
    let d = ds();
    let p = build_pod(&d, &hash(&d), "n1", "abcde");
    let m = p.metadata.as_ref().unwrap();
    assert_eq!(m.name, "node-monitor-abcde");
    assert_eq!(m.namespace, "kube-system");
    assert_eq!(
        m.labels.get("app").map(String::as_str),
        Some("node-monitor")
    );
    assert_eq!(m.labels.get(REVISION_HASH_LABEL), Some(&hash(&d)));
    let owner = &m.owner_references[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("DaemonSet", UID, Some(true))
    );
    let spec = p.spec.as_ref().unwrap();
    assert_eq!(spec.node_name, "n1");
    let keys: Vec<&str> = spec.tolerations.iter().map(|t| t.key.as_str()).collect();
    assert!(keys.contains(&taint_keys::UNREACHABLE) && keys.contains(&taint_keys::UNSCHEDULABLE));
    assert!(!keys.contains(&taint_keys::NETWORK_UNAVAILABLE));
    let long = DaemonSet {
        metadata: Some(ObjectMeta {
            name: "x".repeat(80),
            ..Default::default()
        }),
        ..ds()
    };
    assert_eq!(
        build_pod(&long, "h", "n1", "abcde")
            .metadata
            .unwrap()
            .name
            .len(),
        63
    );
}

#[test]
fn failed_pods_are_deleted_then_replaced() {
    let ns = nodes(&["n1"]);
    let a = run(&ds(), &ns, &[phase(pod("a", "n1", 1), "Failed")]);
    assert_eq!(deletes(&a), vec![("a", DeleteReason::Failed)]);
    assert!(
        creates(&a).is_empty(),
        "the replacement waits for the failed pod to go"
    );
    let a = run(
        &ds(),
        &ns,
        &[terminating(phase(pod("a", "n1", 1), "Failed"))],
    );
    assert!(
        deletes(&a).is_empty() && creates(&a).is_empty(),
        "still terminating"
    );
    let a = run(&ds(), &ns, &[]);
    assert_eq!(creates(&a), vec!["n1"]);
}

#[test]
fn duplicates_keep_the_oldest() {
    let pods = vec![
        pod("young", "n1", 50),
        pod("old", "n1", 10),
        pod("mid", "n1", 20),
    ];
    let a = run(&ds(), &nodes(&["n1"]), &pods);
    assert_eq!(
        deletes(&a),
        vec![
            ("mid", DeleteReason::Duplicate),
            ("young", DeleteReason::Duplicate)
        ]
    );
    assert_eq!(counts(&status(&a)), (1, 1, 0, 1, 1, 1, 0));
}

#[test]
fn pods_of_deleted_or_no_nodes_are_removed() {
    let mut unbound = pod("unbound", "", 1);
    unbound.spec.as_mut().unwrap().node_name.clear();
    let pods = vec![pod("a", "n1", 1), pod("gone", "n9", 1), unbound];
    let a = run(&ds(), &nodes(&["n1"]), &pods);
    assert_eq!(
        deletes(&a),
        vec![
            ("gone", DeleteReason::NodeGone),
            ("unbound", DeleteReason::NodeGone)
        ]
    );
}

#[test]
fn other_controllers_pods_are_left_alone_and_orphans_adopted() {
    let mut foreign = pod("foreign", "n1", 1);
    foreign.metadata.as_mut().unwrap().owner_references[0].uid = "other".into();
    let mut orphan = pod("orphan", "n2", 1);
    orphan.metadata.as_mut().unwrap().owner_references.clear();
    let mut stranger = pod("stranger", "n3", 1);
    let sm = stranger.metadata.as_mut().unwrap();
    sm.owner_references.clear();
    sm.labels = [("app".to_string(), "other".to_string())].into();
    let a = run(
        &ds(),
        &nodes(&["n1", "n2", "n3"]),
        &[foreign, orphan, stranger],
    );
    assert!(a.contains(&Action::AdoptPod {
        name: "orphan".into()
    }));
    assert_eq!(creates(&a), vec!["n1", "n3"]);
    assert!(deletes(&a).is_empty());
}

#[test]
fn terminating_pods_block_a_replacement_on_their_node() {
    let a = run(&ds(), &nodes(&["n1"]), &[terminating(pod("a", "n1", 1))]);
    assert!(creates(&a).is_empty());
    assert_eq!(counts(&status(&a)), (1, 1, 0, 0, 0, 0, 1));
}

#[test]
fn readiness_and_availability_counts() {
    let mut d = ds();
    d.spec.as_mut().unwrap().min_ready_seconds = 30;
    let mut fresh = pod("fresh", "n2", 1);
    fresh.status.as_mut().unwrap().conditions[0].last_transition_time =
        "2026-05-31T23:59:50Z".into();
    let pods = vec![
        pod("ready", "n1", 1),
        fresh,
        phase(pod("pending", "n3", 1), "Pending"),
    ];
    let a = run(&d, &nodes(&["n1", "n2", "n3"]), &pods);
    assert_eq!(counts(&status(&a)), (3, 3, 0, 2, 1, 3, 2));
}

#[test]
fn template_change_rolls_one_node_at_a_time() {
    let ns = nodes(&["n1", "n2", "n3"]);
    let pods = vec![
        outdated(pod("a", "n1", 1)),
        outdated(pod("b", "n2", 1)),
        outdated(pod("c", "n3", 1)),
    ];
    let a = run(&ds(), &ns, &pods);
    assert_eq!(deletes(&a), vec![("a", DeleteReason::Outdated)]);
    assert_eq!(status(&a).updated_number_scheduled, 0);
    // While n1's replacement is not available, nothing else goes.
    let pods2 = vec![
        phase(pod("a2", "n1", 5), "Pending"),
        outdated(pod("b", "n2", 1)),
        outdated(pod("c", "n3", 1)),
    ];
    assert!(deletes(&run(&ds(), &ns, &pods2)).is_empty());
    // Outdated pods that are unavailable anyway are replaced at once.
    let pods3 = vec![
        phase(outdated(pod("a", "n1", 1)), "Pending"),
        phase(outdated(pod("b", "n2", 1)), "Pending"),
    ];
    assert_eq!(deletes(&run(&ds(), &ns[..2], &pods3)).len(), 2);
}

#[test]
fn max_unavailable_percent_and_on_delete() {
    let ns = nodes(&["n1", "n2", "n3", "n4"]);
    let pods: Vec<Pod> = ["n1", "n2", "n3", "n4"]
        .iter()
        .map(|n| outdated(pod(&format!("p-{n}"), n, 1)))
        .collect();
    let mut d = ds();
    d.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        r#type: "RollingUpdate".into(),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::string("50%")),
            max_surge: None,
        }),
    });
    assert_eq!(deletes(&run(&d, &ns, &pods)).len(), 2);
    d.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        r#type: "OnDelete".into(),
        rolling_update: None,
    });
    let a = run(&d, &ns, &pods);
    assert!(deletes(&a).is_empty(), "OnDelete leaves old pods");
    assert_eq!(status(&a).updated_number_scheduled, 0);
}

#[test]
fn removed_node_changes_desired_count() {
    let pods = vec![pod("a", "n1", 1), pod("b", "n2", 1)];
    let a = run(&ds(), &nodes(&["n1"]), &pods);
    assert_eq!(deletes(&a), vec![("b", DeleteReason::NodeGone)]);
    assert_eq!(counts(&status(&a)), (1, 1, 0, 1, 1, 1, 0));
}

/// The set with a RollingUpdate of maxUnavailable 0 and this maxSurge.
fn surge_ds(max_surge: IntOrString) -> DaemonSet {
    let mut d = ds();
    d.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        r#type: "RollingUpdate".into(),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::int(0)),
            max_surge: Some(max_surge),
        }),
    });
    d
}

/// Outdated, Running and Ready pods `old-<node>` on each node.
fn old_pods(names: &[&str]) -> Vec<Pod> {
    names
        .iter()
        .map(|n| outdated(pod(&format!("old-{n}"), n, 1)))
        .collect()
}

#[test]
fn surge_starts_new_pods_beside_old_ones_up_to_max_surge() {
    let names = ["n1", "n2", "n3", "n4"];
    let a = run(
        &surge_ds(IntOrString::int(2)),
        &nodes(&names),
        &old_pods(&names),
    );
    assert_eq!(creates(&a), vec!["n1", "n2"]);
    assert!(
        deletes(&a).is_empty(),
        "no old pod stops before its successor"
    );
    // The status speaks of the old pods until they are gone.
    assert_eq!(counts(&status(&a)), (4, 4, 0, 4, 4, 0, 0));
}

#[test]
fn surge_percent_rounds_up_against_desired_nodes() {
    let names = ["n1", "n2", "n3"];
    let run_with = |v: &str| {
        creates(&run(
            &surge_ds(IntOrString::string(v)),
            &nodes(&names),
            &old_pods(&names),
        ))
        .len()
    };
    assert_eq!(run_with("10%"), 1, "0.3 rounds up to 1");
    assert_eq!(run_with("50%"), 2, "1.5 rounds up to 2");
    assert_eq!(run_with("100%"), 3);
}

#[test]
fn surge_waits_while_max_surge_nodes_have_unavailable_new_pods() {
    let names = ["n1", "n2", "n3"];
    let mut pods = old_pods(&names);
    pods.push(phase(pod("new-n1", "n1", 5), "Pending"));
    let a = run(&surge_ds(IntOrString::int(1)), &nodes(&names), &pods);
    assert!(creates(&a).is_empty(), "n1 uses the one surge slot");
    assert!(
        deletes(&a).is_empty(),
        "n1's old pod stays until the new one is available"
    );
    // With two slots, one more node starts.
    let a = run(&surge_ds(IntOrString::int(2)), &nodes(&names), &pods);
    assert_eq!(creates(&a), vec!["n2"]);
}

#[test]
fn surge_deletes_the_old_pod_once_the_new_one_is_available() {
    let names = ["n1", "n2"];
    let mut pods = old_pods(&names);
    pods.push(pod("new-n1", "n1", 5));
    let a = run(&surge_ds(IntOrString::int(1)), &nodes(&names), &pods);
    assert_eq!(deletes(&a), vec![("old-n1", DeleteReason::Outdated)]);
    // n1 no longer holds a surge slot: n2 starts in the same step.
    assert_eq!(creates(&a), vec!["n2"]);
}

#[test]
fn surge_respects_min_ready_seconds() {
    let names = ["n1", "n2"];
    let mut d = surge_ds(IntOrString::int(1));
    d.spec.as_mut().unwrap().min_ready_seconds = 30;
    let mut pods = old_pods(&names);
    let mut fresh = pod("new-n1", "n1", 5);
    fresh.status.as_mut().unwrap().conditions[0].last_transition_time =
        "2026-05-31T23:59:50Z".into();
    pods.push(fresh.clone());
    let a = run(&d, &nodes(&names), &pods);
    assert!(
        deletes(&a).is_empty(),
        "Ready for 10 s of 30: not yet available"
    );
    assert!(creates(&a).is_empty(), "n1 still holds the slot");
    fresh.status.as_mut().unwrap().conditions[0].last_transition_time =
        "2026-05-31T23:59:00Z".into();
    pods.pop();
    pods.push(fresh);
    let a = run(&d, &nodes(&names), &pods);
    assert_eq!(deletes(&a), vec![("old-n1", DeleteReason::Outdated)]);
}

#[test]
fn surge_replaces_unavailable_old_pods_at_once() {
    let names = ["n1", "n2", "n3"];
    let mut pods = old_pods(&names);
    // n1 surges already (the one slot); n2's old pod is not Ready: it is replaced anyway.
    pods.push(phase(pod("new-n1", "n1", 5), "Pending"));
    pods[1] = phase(outdated(pod("old-n2", "n2", 1)), "Running");
    let a = run(&surge_ds(IntOrString::int(1)), &nodes(&names), &pods);
    assert_eq!(creates(&a), vec!["n2"]);
    assert!(deletes(&a).is_empty());
    // Once its successor exists, an old pod that is not Ready goes without waiting.
    pods.push(phase(pod("new-n2", "n2", 6), "Pending"));
    let a = run(&surge_ds(IntOrString::int(1)), &nodes(&names), &pods);
    assert_eq!(deletes(&a), vec![("old-n2", DeleteReason::Outdated)]);
    assert!(creates(&a).is_empty(), "two nodes surge: no slot for n3");
}

#[test]
fn surge_keeps_one_old_and_one_new_pod_per_node() {
    let pods = vec![
        outdated(pod("old-a", "n1", 1)),
        outdated(pod("old-b", "n1", 2)),
        phase(pod("new-a", "n1", 3), "Pending"),
        phase(pod("new-b", "n1", 4), "Pending"),
    ];
    let a = run(&surge_ds(IntOrString::int(1)), &nodes(&["n1"]), &pods);
    assert_eq!(
        deletes(&a),
        vec![
            ("old-b", DeleteReason::Duplicate),
            ("new-b", DeleteReason::Duplicate)
        ]
    );
    assert!(creates(&a).is_empty());
}

#[test]
fn surge_status_and_finished_nodes() {
    // n1: the old pod is going, the new one serves; n2: only the new pod.
    let pods = vec![
        terminating(outdated(pod("old-n1", "n1", 1))),
        pod("new-n1", "n1", 5),
        pod("new-n2", "n2", 5),
    ];
    let a = run(&surge_ds(IntOrString::int(1)), &nodes(&["n1", "n2"]), &pods);
    assert!(creates(&a).is_empty() && deletes(&a).is_empty());
    assert_eq!(counts(&status(&a)), (2, 2, 0, 2, 2, 2, 0));
}

#[test]
fn surge_needs_a_rolling_update() {
    let names = ["n1", "n2"];
    let mut d = surge_ds(IntOrString::int(1));
    d.spec
        .as_mut()
        .unwrap()
        .update_strategy
        .as_mut()
        .unwrap()
        .r#type = "OnDelete".into();
    let a = run(&d, &nodes(&names), &old_pods(&names));
    assert!(creates(&a).is_empty() && deletes(&a).is_empty());
    // Without surge a second pod on a node is a duplicate, whatever its template.
    let mut pods = old_pods(&["n1"]);
    pods.push(pod("new-n1", "n1", 5));
    let a = run(&d, &nodes(&["n1"]), &pods);
    assert_eq!(deletes(&a), vec![("new-n1", DeleteReason::Duplicate)]);
}

/// A whole rollout, step by step: new pods become Ready one step after they are
/// created and deleted pods vanish one step after they are marked. Every node keeps an
/// available pod throughout, at most maxSurge nodes run two pods, and the rollout ends
/// with one current pod per node.
#[test]
fn surge_rollout_keeps_every_node_serving() {
    let names = ["n1", "n2", "n3", "n4", "n5"];
    let ns = nodes(&names);
    let d = surge_ds(IntOrString::int(2));
    let mut pods = old_pods(&names);
    let mut serial = 0u64;
    for step in 0..20 {
        let a = run(&d, &ns, &pods);
        // Deleted pods are gone, pending ones turn Ready (the agent's work between steps).
        pods.retain(|p| !podutil::is_terminating(p));
        for p in pods.iter_mut() {
            if podutil::phase(p) == "Pending" {
                let name = podutil::name(p).to_string();
                let node = podutil::node_name(p).to_string();
                *p = pod(&name, &node, 10 + step);
            }
        }
        for action in &a {
            match action {
                Action::CreatePod { node, .. } => {
                    serial += 1;
                    pods.push(phase(
                        pod(&format!("new-{serial}"), node, 10 + step),
                        "Pending",
                    ));
                }
                Action::DeletePod { name, .. } => {
                    let p = pods.iter_mut().find(|p| podutil::name(p) == name).unwrap();
                    *p = terminating(p.clone());
                }
                _ => {}
            }
        }
        for n in names {
            let on: Vec<&Pod> = pods.iter().filter(|p| podutil::node_name(p) == n).collect();
            assert!(
                on.iter()
                    .any(|p| !podutil::is_terminating(p) && podutil::is_ready(p)),
                "step {step}: node {n} has no serving pod"
            );
            assert!(on.len() <= 2, "step {step}: node {n} has {} pods", on.len());
        }
        let doubled = names
            .iter()
            .filter(|n| {
                pods.iter()
                    .filter(|p| podutil::node_name(p) == **n && !podutil::is_terminating(p))
                    .count()
                    == 2
            })
            .count();
        assert!(doubled <= 2, "step {step}: {doubled} nodes surge");
        if pods.len() == names.len() && pods.iter().all(|p| pod_hash(p) != Some("old")) {
            let a = run(&d, &ns, &pods);
            assert!(creates(&a).is_empty() && deletes(&a).is_empty());
            assert_eq!(counts(&status(&a)), (5, 5, 0, 5, 5, 5, 0));
            return;
        }
    }
    panic!("the rollout did not finish in 20 steps: {pods:#?}");
}

fn revision_actions(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateRevision { revision } => Some(format!(
                "create {} #{}",
                revision.metadata.as_ref().unwrap().name,
                revision.revision
            )),
            Action::RenumberRevision { name, revision } => {
                Some(format!("renumber {name} #{revision}"))
            }
            Action::AdoptRevision { name } => Some(format!("adopt {name}")),
            Action::DeleteRevision { name } => Some(format!("delete {name}")),
            _ => None,
        })
        .collect()
}

/// `ds()` with its container's image set (a new template).
fn image(image: &str) -> DaemonSet {
    with_spec(ds(), |s| {
        s.containers = vec![twinset_proto::v1::Container {
            name: "c".into(),
            image: image.into(),
            ..Default::default()
        }]
    })
}

#[test]
fn the_first_round_stores_revision_one_and_pods_carry_its_hash() {
    let d = ds();
    let a = decide(Snapshot {
        ds: &d,
        nodes: &nodes(&["n1"]),
        pods: &[],
        revisions: &[],
        now: now(),
    });
    let name = format!("node-monitor-{}", hash(&d));
    assert_eq!(revision_actions(&a), vec![format!("create {name} #1")]);
    assert_eq!(
        a.iter()
            .position(|x| matches!(x, Action::CreateRevision { .. })),
        Some(0),
        "the revision goes first"
    );
    let Some(Action::CreatePod { hash: h, .. }) =
        a.iter().find(|x| matches!(x, Action::CreatePod { .. }))
    else {
        panic!("a pod: {a:?}")
    };
    assert_eq!(h, &hash(&d));
    let r = stored(&d);
    let m = r.metadata.as_ref().unwrap();
    assert_eq!(m.labels.get(REVISION_HASH_LABEL), Some(&hash(&d)));
    assert_eq!(
        m.labels.get("app").map(String::as_str),
        Some("node-monitor")
    );
    assert_eq!(m.owner_references[0].kind, "DaemonSet");
    assert_eq!(r.data.as_ref(), d.spec.as_ref().unwrap().template.as_ref());
}

#[test]
fn a_new_template_is_revision_two_and_the_old_one_reapplied_is_renumbered() {
    let (v1, v2) = (image("a:1"), image("a:2"));
    let r1 = stored(&v1);
    let snap = |d: &DaemonSet, revs: &[ControllerRevision]| {
        revision_actions(&decide(Snapshot {
            ds: d,
            nodes: &nodes(&["n1"]),
            pods: &[],
            revisions: revs,
            now: now(),
        }))
    };
    let h2 = hash(&v2);
    assert_eq!(
        snap(&v2, std::slice::from_ref(&r1)),
        vec![format!("create node-monitor-{h2} #2")]
    );
    let mut r2 = stored(&v2);
    r2.revision = 2;
    // Back to v1: revision 1 is renumbered 3; no new revision.
    assert_eq!(
        snap(&v1, &[r1.clone(), r2.clone()]),
        vec![format!("renumber node-monitor-{} #3", hash(&v1))]
    );
}

#[test]
fn history_is_trimmed_to_the_limit_keeping_what_pods_run() {
    let mut d = image("a:4");
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let revs: Vec<ControllerRevision> = (1..=4)
        .map(|i| {
            let mut r = stored(&image(&format!("a:{i}")));
            r.revision = i;
            r
        })
        .collect();
    // n1 still runs a:2's pod.
    let mut on_two = pod("p1", "n1", 1);
    on_two
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .insert(REVISION_HASH_LABEL.into(), hash(&image("a:2")));
    let a = decide(Snapshot {
        ds: &d,
        nodes: &nodes(&["n1"]),
        pods: &[on_two],
        revisions: &revs,
        now: now(),
    });
    // Kept: a:4 (update), a:2 (live), and one of history (a:3). a:1 goes.
    assert_eq!(
        revision_actions(&a),
        vec![format!("delete node-monitor-{}", hash(&image("a:1")))]
    );
}

#[test]
fn orphaned_revisions_of_the_same_name_are_adopted() {
    let d = ds();
    let mut orphan = stored(&d);
    orphan.metadata.as_mut().unwrap().owner_references.clear();
    let a = decide(Snapshot {
        ds: &d,
        nodes: &nodes(&["n1"]),
        pods: &[],
        revisions: &[orphan],
        now: now(),
    });
    assert_eq!(
        revision_actions(&a),
        vec![format!("adopt node-monitor-{}", hash(&d))]
    );
}

#[test]
fn an_unreachable_node_neither_uses_the_budget_nor_blocks_the_rollout() {
    // n3 is Unknown with an outdated pod whose status is stale (still Ready); n4 is
    // NotReady and its outdated pod is being deleted and cannot finish.
    // The node lifecycle controller's taints come with the silence.
    let ns = vec![
        node("n1", &[], &[]),
        node("n2", &[], &[]),
        not_ready(
            node(
                "n3",
                &[],
                &[
                    (taint_keys::UNREACHABLE, "NoSchedule"),
                    (taint_keys::UNREACHABLE, "NoExecute"),
                ],
            ),
            "Unknown",
        ),
        not_ready(
            node(
                "n4",
                &[],
                &[
                    (taint_keys::NOT_READY, "NoSchedule"),
                    (taint_keys::NOT_READY, "NoExecute"),
                ],
            ),
            "False",
        ),
    ];
    let pods = vec![
        outdated(pod("a", "n1", 1)),
        outdated(pod("b", "n2", 1)),
        outdated(pod("c", "n3", 1)),
        terminating(outdated(pod("d", "n4", 1))),
    ];
    let a = run(&ds(), &ns, &pods);
    assert_eq!(
        deletes(&a),
        vec![("a", DeleteReason::Outdated)],
        "n4's stuck deletion does not use the one unavailable slot; n3 is left"
    );
    let st = status(&a);
    let w = twinset_proto::rollout::waiting_nodes(&st).expect("waiting nodes");
    assert_eq!(
        (w.count, w.names, w.reachable_done),
        (2, vec!["n3".to_string(), "n4".to_string()], false)
    );
    // The healthy nodes finish: n1 and n2 updated; the rollout waits only for n3, n4.
    let pods = vec![
        pod("a2", "n1", 5),
        pod("b2", "n2", 5),
        outdated(pod("c", "n3", 1)),
        terminating(outdated(pod("d", "n4", 1))),
    ];
    let a = run(&ds(), &ns, &pods);
    assert!(deletes(&a).is_empty() && creates(&a).is_empty(), "{a:?}");
    let st = status(&a);
    assert_eq!(counts(&st), (4, 4, 0, 3, 3, 2, 1));
    assert_eq!(st.conditions.len(), 1);
    assert_eq!(
        st.conditions[0].r#type,
        twinset_proto::rollout::NODES_WAITING
    );
    assert_eq!(
        st.conditions[0].message,
        "2 unreachable nodes wait for the update: n3, n4"
    );
    assert_eq!(
        st.conditions[0].reason,
        twinset_proto::rollout::REACHABLE_NODES_UPDATED
    );
    // n3 comes back: its pod is replaced; the condition names n4 only.
    let ns = vec![
        node("n1", &[], &[]),
        node("n2", &[], &[]),
        node("n3", &[], &[]),
        not_ready(node("n4", &[], &[]), "False"),
    ];
    let a = run(&ds(), &ns, &pods);
    assert_eq!(deletes(&a), vec![("c", DeleteReason::Outdated)]);
    let w = twinset_proto::rollout::waiting_nodes(&status(&a)).expect("waiting nodes");
    assert_eq!(
        (w.count, w.names, w.reachable_done),
        (1, vec!["n4".to_string()], false)
    );
    // Every node updated: no condition.
    let ns = nodes(&["n1", "n2"]);
    let a = run(&ds(), &ns, &pods[..2]);
    assert!(a
        .iter()
        .all(|x| !matches!(x, Action::UpdateStatus { status } if !status.conditions.is_empty())));
}

#[test]
fn an_unreachable_node_without_a_pod_gets_one_and_waits() {
    let ns = vec![
        node("n1", &[], &[]),
        not_ready(node("n2", &[], &[]), "Unknown"),
    ];
    let a = run(&ds(), &ns, &[pod("a", "n1", 1)]);
    assert_eq!(
        creates(&a),
        vec!["n2"],
        "bound now, started when it returns"
    );
    let w = twinset_proto::rollout::waiting_nodes(&status(&a)).expect("waiting nodes");
    assert_eq!(
        (w.count, w.names, w.reachable_done),
        (1, vec!["n2".to_string()], true)
    );
    // OnDelete has no rollout to wait for.
    let mut d = ds();
    d.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        r#type: "OnDelete".into(),
        rolling_update: None,
    });
    assert!(status(&run(&d, &ns, &[pod("a", "n1", 1)]))
        .conditions
        .is_empty());
}

#[test]
fn surge_skips_unreachable_nodes_and_their_slots() {
    let names = ["n1", "n2", "n3"];
    let ns = vec![
        not_ready(node("n1", &[], &[]), "Unknown"),
        node("n2", &[], &[]),
        node("n3", &[], &[]),
    ];
    let mut pods = old_pods(&names);
    // n1 surged before it went silent; its new pod will never report Ready meanwhile.
    pods.push(phase(pod("new-n1", "n1", 5), "Pending"));
    let a = run(&surge_ds(IntOrString::int(1)), &ns, &pods);
    assert_eq!(creates(&a), vec!["n2"], "n1 holds no surge slot");
    assert!(deletes(&a).is_empty());
}

#[test]
fn a_node_waiting_for_its_new_pod_uses_the_budget() {
    // n1's old pod is gone and its replacement not made yet: n1 is unavailable, so n2's
    // old pod stays (maxUnavailable 1).
    let ns = nodes(&["n1", "n2"]);
    let a = run(&ds(), &ns, &[outdated(pod("b", "n2", 1))]);
    assert_eq!(creates(&a), vec!["n1"]);
    assert!(deletes(&a).is_empty(), "{a:?}");
}

#[test]
fn a_node_that_just_joined_gets_no_pod_until_it_registers() {
    // A join makes the node Ready Unknown, tainted not-ready: not a silent node of the set.
    let joined = not_ready(
        node("n2", &[], &[(taint_keys::NOT_READY, "NoSchedule")]),
        "Unknown",
    );
    let a = run(&ds(), &[node("n1", &[], &[]), joined], &[pod("a", "n1", 1)]);
    assert!(creates(&a).is_empty(), "{a:?}");
    let st = status(&a);
    assert_eq!(st.desired_number_scheduled, 1);
    assert!(st.conditions.is_empty());
}
