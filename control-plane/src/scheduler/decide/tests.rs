use super::*;
use twinset_proto::v1::{
    Container, ContainerPort, NodeCondition, NodeSpec, NodeStatus, ObjectMeta, OwnerReference,
    PersistentVolumeClaimVolumeSource, PodStatus, ResourceRequirements, Toleration, Volume,
};

fn node(name: &str, cpu: &str, memory: &str) -> Node {
    let capacity: BTreeMap<String, String> = [
        ("cpu".to_string(), cpu.to_string()),
        ("memory".to_string(), memory.to_string()),
        ("pods".to_string(), "110".to_string()),
    ]
    .into();
    Node {
        metadata: Some(ObjectMeta {
            name: name.into(),
            labels: [("kubernetes.io/hostname".to_string(), name.to_string())].into(),
            ..Default::default()
        }),
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            capacity,
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

fn nodes3() -> Vec<Node> {
    ["n1", "n2", "n3"]
        .iter()
        .map(|n| node(n, "4", "8Gi"))
        .collect()
}

fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
    let mut requests = BTreeMap::new();
    if !cpu.is_empty() {
        requests.insert("cpu".to_string(), cpu.to_string());
    }
    if !memory.is_empty() {
        requests.insert("memory".to_string(), memory.to_string());
    }
    Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "ns".into(),
            creation_timestamp: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: "Pending".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn owned(mut p: Pod, uid: &str) -> Pod {
    p.metadata.as_mut().unwrap().owner_references = vec![OwnerReference {
        kind: "StatefulSet".into(),
        uid: uid.into(),
        controller: Some(true),
        ..Default::default()
    }];
    p
}

fn on(mut p: Pod, node: &str) -> Pod {
    p.spec.as_mut().unwrap().node_name = node.into();
    p.status.as_mut().unwrap().phase = "Running".into();
    p
}

fn with_claim(mut p: Pod, claim: &str) -> Pod {
    p.spec.as_mut().unwrap().volumes.push(Volume {
        name: "data".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: false,
        }),
        ..Default::default()
    });
    p
}

fn claim(name: &str, node: &str) -> PersistentVolumeClaim {
    let mut annotations = BTreeMap::new();
    if !node.is_empty() {
        annotations.insert(SELECTED_NODE_ANNOTATION.to_string(), node.to_string());
    }
    PersistentVolumeClaim {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "ns".into(),
            annotations,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn run(nodes: &[Node], pods: &[Pod], claims: &[PersistentVolumeClaim]) -> Vec<Placement> {
    schedule(Snapshot {
        nodes,
        pods,
        claims,
    })
}

fn bound(ps: &[Placement]) -> Vec<(&str, &str)> {
    ps.iter()
        .filter_map(|p| match &p.decision {
            Decision::Bind { node, .. } => Some((p.pod.as_str(), node.as_str())),
            _ => None,
        })
        .collect()
}

fn message(ps: &[Placement], pod: &str) -> String {
    ps.iter()
        .find_map(|p| match &p.decision {
            Decision::Unschedulable { message } if p.pod == pod => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{pod} is unschedulable: {ps:#?}"))
}

#[test]
fn only_pods_waiting_for_this_scheduler_are_placed() {
    let mut other = pod("other", "", "");
    other.spec.as_mut().unwrap().scheduler_name = "my-scheduler".into();
    let mut finished = pod("done", "", "");
    finished.status.as_mut().unwrap().phase = "Succeeded".into();
    let mut leaving = pod("leaving", "", "");
    leaving.metadata.as_mut().unwrap().deletion_timestamp = "t".into();
    let mut ours = pod("ours", "", "");
    ours.spec.as_mut().unwrap().scheduler_name = SCHEDULER_NAME.into();
    let pods = vec![
        other,
        finished,
        leaving,
        on(pod("placed", "", ""), "n1"),
        ours,
        pod("plain", "", ""),
    ];
    assert!(!needs_scheduling(&pods[0]) && !needs_scheduling(&pods[1]));
    let ps = run(&nodes3(), &pods, &[]);
    let names: Vec<&str> = ps.iter().map(|p| p.pod.as_str()).collect();
    assert_eq!(names, vec!["ours", "plain"]);
}

#[test]
fn fewest_pods_of_the_same_set_then_fewest_pods_then_name() {
    let pods = vec![
        owned(on(pod("a-0", "", ""), "n1"), "set-a"),
        on(pod("x", "", ""), "n2"),
        on(pod("y", "", ""), "n2"),
        owned(pod("a-1", "", ""), "set-a"),
    ];
    // n1 has a pod of the set; n2 and n3 none; n3 has fewer pods.
    assert_eq!(bound(&run(&nodes3(), &pods, &[])), vec![("a-1", "n3")]);
    // All equal: by name.
    assert_eq!(
        bound(&run(&nodes3(), &[pod("p", "", "")], &[])),
        vec![("p", "n1")]
    );
}

#[test]
fn a_batch_spreads_over_the_nodes() {
    let pods: Vec<Pod> = (0..6)
        .map(|i| owned(pod(&format!("web-{i}"), "100m", "128Mi"), "set"))
        .collect();
    let ps = run(&nodes3(), &pods, &[]);
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, n) in bound(&ps) {
        *per_node.entry(n).or_default() += 1;
    }
    assert_eq!(per_node, [("n1", 2), ("n2", 2), ("n3", 2)].into());
}

#[test]
fn insufficient_memory_everywhere() {
    let ps = run(&nodes3(), &[pod("big", "", "64Gi")], &[]);
    assert_eq!(
        message(&ps, "big"),
        "0/3 nodes are available: 3 Insufficient memory."
    );
}

#[test]
fn reasons_are_counted_and_sorted() {
    let mut n = nodes3();
    n[0].metadata.as_mut().unwrap().labels.clear();
    let mut p = pod("p", "", "16Gi");
    p.spec
        .as_mut()
        .unwrap()
        .node_selector
        .insert("kubernetes.io/hostname".into(), "n2".into());
    // n1: no label (selector), n2: matches but too small, n3: selector.
    let ps = run(&n, &[p], &[]);
    assert_eq!(
        message(&ps, "p"),
        "0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't match Pod's node affinity/selector."
    );
    // The brief's example: one node filtered by selector, two short of memory.
    let mut q = pod("q", "", "16Gi");
    q.spec
        .as_mut()
        .unwrap()
        .node_selector
        .insert("disk".into(), "ssd".into());
    let mut n = nodes3();
    for x in n.iter_mut().skip(1) {
        x.metadata
            .as_mut()
            .unwrap()
            .labels
            .insert("disk".into(), "ssd".into());
    }
    assert_eq!(
        message(&run(&n, &[q], &[]), "q"),
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient memory."
    );
}

#[test]
fn cpu_and_memory_both_short_on_one_node() {
    let ps = run(&[node("n1", "1", "1Gi")], &[pod("p", "2", "2Gi")], &[]);
    assert_eq!(
        message(&ps, "p"),
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
    );
}

#[test]
fn requests_add_up_against_allocatable() {
    let mut n1 = node("n1", "2", "4Gi");
    n1.status
        .as_mut()
        .unwrap()
        .allocatable
        .insert("memory".into(), "3Gi".into());
    let mut done = on(pod("done", "", "3Gi"), "n1");
    done.status.as_mut().unwrap().phase = "Failed".into();
    let pods = vec![
        on(pod("a", "500m", "2Gi"), "n1"),
        done,
        pod("p", "1500m", "1Gi"),
    ];
    assert_eq!(
        bound(&run(&[n1.clone()], &pods, &[])),
        vec![("p", "n1")],
        "fits exactly"
    );
    let pods = vec![
        on(pod("a", "500m", "2Gi"), "n1"),
        pod("p", "1500m", "1025Mi"),
    ];
    assert_eq!(
        message(&run(&[n1.clone()], &pods, &[]), "p"),
        "0/1 nodes are available: 1 Insufficient memory.",
        "allocatable (3Gi) wins over capacity (4Gi)"
    );
    // A node reporting no resources does not limit them; a pod without requests fits anywhere.
    let mut bare = node("bare", "", "");
    bare.status.as_mut().unwrap().capacity.clear();
    assert_eq!(
        bound(&run(&[bare], &[pod("p", "64", "1Ti")], &[])),
        vec![("p", "bare")]
    );
    assert_eq!(
        bound(&run(&[node("n", "1", "1Gi")], &[pod("p", "", "")], &[])),
        vec![("p", "n")]
    );
}

#[test]
fn init_containers_count_at_their_largest() {
    let mut p = pod("p", "100m", "1Gi");
    p.spec.as_mut().unwrap().init_containers = vec![Container {
        name: "init".into(),
        resources: Some(ResourceRequirements {
            requests: [("memory".to_string(), "3Gi".to_string())].into(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let r = requests(p.spec.as_ref().unwrap());
    assert_eq!((r.cpu, r.memory), (100, 3 * 1024 * 1024 * 1024));
}

#[test]
fn too_many_pods() {
    let mut n = node("n1", "4", "8Gi");
    n.status
        .as_mut()
        .unwrap()
        .capacity
        .insert("pods".into(), "1".into());
    let ps = run(&[n], &[on(pod("a", "", ""), "n1"), pod("p", "", "")], &[]);
    assert_eq!(
        message(&ps, "p"),
        "0/1 nodes are available: 1 Too many pods."
    );
}

#[test]
fn taints_cordons_and_readiness() {
    let mut n = nodes3();
    n[0].spec.as_mut().unwrap().unschedulable = true;
    n[0].spec.as_mut().unwrap().taints.push(Taint {
        key: taint_keys::UNSCHEDULABLE.into(),
        effect: NO_SCHEDULE.into(),
        ..Default::default()
    });
    n[1].spec.as_mut().unwrap().taints.push(Taint {
        key: "dedicated".into(),
        value: "db".into(),
        effect: NO_SCHEDULE.into(),
        ..Default::default()
    });
    n[2].status.as_mut().unwrap().conditions[0].status = "Unknown".into();
    let ps = run(&n, &[pod("p", "", "")], &[]);
    assert_eq!(
        message(&ps, "p"),
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) were not ready, 1 node(s) were unschedulable."
    );
    // PreferNoSchedule does not filter; a toleration lets the pod onto n2.
    n[1].spec.as_mut().unwrap().taints[0].effect = "PreferNoSchedule".into();
    assert_eq!(bound(&run(&n, &[pod("p", "", "")], &[])), vec![("p", "n2")]);
    n[1].spec.as_mut().unwrap().taints[0].effect = NO_SCHEDULE.into();
    let mut tolerant = pod("t", "", "");
    tolerant
        .spec
        .as_mut()
        .unwrap()
        .tolerations
        .push(Toleration {
            key: "dedicated".into(),
            operator: "Equal".into(),
            value: "db".into(),
            effect: NO_SCHEDULE.into(),
            ..Default::default()
        });
    assert_eq!(bound(&run(&n, &[tolerant], &[])), vec![("t", "n2")]);
}

#[test]
fn host_ports_must_be_free() {
    let with_port = |name: &str, port: i32, host_network: bool| {
        let mut p = pod(name, "", "");
        let spec = p.spec.as_mut().unwrap();
        spec.host_network = host_network;
        spec.containers[0].ports.push(ContainerPort {
            container_port: port,
            host_port: if host_network { 0 } else { port },
            protocol: "TCP".into(),
            ..Default::default()
        });
        p
    };
    let n = vec![node("n1", "4", "8Gi"), node("n2", "4", "8Gi")];
    let pods = vec![
        on(with_port("a", 8080, false), "n1"),
        on(with_port("b", 8080, true), "n2"),
        with_port("p", 8080, false),
    ];
    assert_eq!(
        message(&run(&n, &pods, &[]), "p"),
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
    );
    let pods = vec![
        on(with_port("a", 8080, false), "n1"),
        with_port("p", 8080, false),
    ];
    assert_eq!(bound(&run(&n, &pods, &[])), vec![("p", "n2")]);
    // Two pods of one batch do not both get the port.
    let pods = vec![
        with_port("p", 9000, false),
        with_port("q", 9000, false),
        with_port("r", 9000, false),
    ];
    let ps = run(&n, &pods, &[]);
    assert_eq!(bound(&ps).len(), 2);
    assert!(message(&ps, "r").contains("free ports"));
}

#[test]
fn a_bound_claim_pins_its_pod() {
    let p = with_claim(pod("web-1", "", ""), "data-web-1");
    let ps = run(
        &nodes3(),
        std::slice::from_ref(&p),
        &[claim("data-web-1", "n2")],
    );
    assert_eq!(
        ps[0].decision,
        Decision::Bind {
            node: "n2".into(),
            claims: vec![]
        }
    );
    // That node is full: the pod waits rather than go elsewhere.
    let mut big = p.clone();
    big.spec.as_mut().unwrap().containers[0]
        .resources
        .as_mut()
        .unwrap()
        .requests
        .insert("memory".into(), "6Gi".into());
    let pods = vec![big, on(pod("hog", "", "4Gi"), "n2")];
    assert_eq!(
        message(&run(&nodes3(), &pods, &[claim("data-web-1", "n2")]), "web-1"),
        "0/3 nodes are available: 1 Insufficient memory, 2 node(s) had volume node affinity conflict."
    );
    // Its node was deleted: nowhere to go.
    assert_eq!(
        message(
            &run(
                &nodes3(),
                std::slice::from_ref(&p),
                &[claim("data-web-1", "gone")]
            ),
            "web-1"
        ),
        "0/3 nodes are available: 3 node(s) had volume node affinity conflict."
    );
}

#[test]
fn unbound_claims_are_bound_with_the_pod() {
    let p = with_claim(owned(pod("web-0", "", ""), "s"), "data-web-0");
    let ps = run(&nodes3(), &[p], &[claim("data-web-0", "")]);
    assert_eq!(
        ps[0].decision,
        Decision::Bind {
            node: "n1".into(),
            claims: vec!["data-web-0".into()]
        }
    );
    // Two pods sharing an unbound claim in one pass land together.
    let a = with_claim(pod("a", "", ""), "shared");
    let mut b = with_claim(pod("b", "", ""), "shared");
    b.metadata.as_mut().unwrap().creation_timestamp = "2026-01-01T00:00:01Z".into();
    let pods = vec![on(pod("x", "", ""), "n1"), a, b];
    let ps = run(&nodes3(), &pods, &[claim("shared", "")]);
    assert_eq!(bound(&ps), vec![("a", "n2"), ("b", "n2")]);
}

#[test]
fn missing_claims_and_missing_nodes() {
    let p = with_claim(pod("web-0", "", ""), "data-web-0");
    assert_eq!(
        message(&run(&nodes3(), std::slice::from_ref(&p), &[]), "web-0"),
        "0/3 nodes are available: persistentvolumeclaim \"data-web-0\" not found."
    );
    let mut going = claim("data-web-0", "");
    going.metadata.as_mut().unwrap().deletion_timestamp = "t".into();
    assert_eq!(
        message(&run(&nodes3(), &[p], &[going]), "web-0"),
        "0/3 nodes are available: persistentvolumeclaim \"data-web-0\" is being deleted."
    );
    assert_eq!(
        message(&run(&[], &[pod("p", "", "")], &[]), "p"),
        "no nodes available to schedule pods"
    );
}

#[test]
fn claims_of_bound_pods_are_pinned_to_their_node() {
    let pods = vec![
        with_claim(on(pod("a", "", ""), "n2"), "c1"),
        with_claim(on(pod("b", "", ""), "n3"), "c2"),
        with_claim(pod("c", "", ""), "c3"),
    ];
    let claims = vec![claim("c1", ""), claim("c2", "n3"), claim("c3", "")];
    assert_eq!(
        claims_to_pin(Snapshot {
            nodes: &nodes3(),
            pods: &pods,
            claims: &claims
        }),
        vec![("ns".to_string(), "c1".to_string(), "n2".to_string())]
    );
}

/// A claim unbound from a lost node (`twinset.io/lost-on`) is neither pinned back there by
/// the old pod still recorded on that node nor bound there for the replacement.
#[test]
fn a_claim_lost_with_a_node_stays_off_it() {
    let mut c = claim("c1", "");
    c.metadata.as_mut().unwrap().annotations.insert(
        twinset_proto::fencing::LOST_ON_ANNOTATION.into(),
        "n1".into(),
    );
    let old = with_claim(on(pod("old", "", ""), "n1"), "c1");
    assert!(
        claims_to_pin(Snapshot {
            nodes: &nodes3(),
            pods: std::slice::from_ref(&old),
            claims: std::slice::from_ref(&c),
        })
        .is_empty(),
        "pinned back to the node it was lost with"
    );
    let new = with_claim(pod("new", "", ""), "c1");
    // n1 would be the first choice (nodes by name); the claim keeps it off.
    assert_eq!(
        bound(&run(
            &nodes3(),
            std::slice::from_ref(&new),
            std::slice::from_ref(&c)
        )),
        vec![("new", "n2")]
    );
    // Only n1 is left: the replica waits, saying why.
    let only_n1: Vec<Node> = nodes3().into_iter().take(1).collect();
    assert_eq!(
        message(&run(&only_n1, &[new], &[c]), "new"),
        "0/1 nodes are available: 1 node(s) still held a claim's old data from before they were lost."
    );
}
