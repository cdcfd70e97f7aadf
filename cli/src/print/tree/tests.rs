use super::*;
use twinset_proto::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateWaiting, ContainerStatus,
    DaemonSetStatus, NodeCondition, NodeSpec, NodeStatus, OwnerReference,
    PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource, PodSpec, PodStatus,
    StatefulSetSpec, StatefulSetStatus, Volume,
};

fn meta(ns: &str, name: &str, uid: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        namespace: ns.into(),
        name: name.into(),
        uid: uid.into(),
        ..Default::default()
    })
}

fn node(name: &str, ready: &str) -> Node {
    Node {
        metadata: meta("", name, &format!("node-{name}")),
        status: Some(NodeStatus {
            conditions: vec![NodeCondition {
                r#type: "Ready".into(),
                status: ready.into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ready_nodes(names: &[&str]) -> Vec<Node> {
    names.iter().map(|n| node(n, "True")).collect()
}

fn ds(ns: &str, name: &str, uid: &str, ready: i32, desired: i32) -> DaemonSet {
    DaemonSet {
        metadata: meta(ns, name, uid),
        status: Some(DaemonSetStatus {
            number_ready: ready,
            desired_number_scheduled: desired,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sts(ns: &str, name: &str, uid: &str, ready: i32, replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: meta(ns, name, uid),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            ..Default::default()
        }),
        status: Some(StatefulSetStatus {
            ready_replicas: ready,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What a pod's one container is doing.
#[derive(Clone, Copy)]
enum Run {
    /// Running and ready.
    Ready,
    /// Running, not ready.
    NotReady,
    /// Phase Pending, no container status.
    Pending,
    /// Waiting with this reason.
    Waiting(&'static str),
}

/// A pod in `ns` controlled by the object with `owner` (uid), on `node` ("" for none),
/// with claim volumes `claims`.
fn pod(ns: &str, name: &str, owner: &str, node: &str, run: Run, claims: &[&str]) -> Pod {
    let mut m = meta(ns, name, &format!("pod-{name}")).unwrap_or_default();
    m.owner_references = vec![OwnerReference {
        kind: "Whatever".into(),
        name: "owner".into(),
        uid: owner.into(),
        controller: Some(true),
        ..Default::default()
    }];
    let (phase, statuses) = match run {
        Run::Pending => ("Pending", vec![]),
        Run::Ready | Run::NotReady => (
            "Running",
            vec![ContainerStatus {
                name: "c".into(),
                ready: matches!(run, Run::Ready),
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning::default()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        ),
        Run::Waiting(reason) => (
            "Running",
            vec![ContainerStatus {
                name: "c".into(),
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: reason.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        ),
    };
    Pod {
        metadata: Some(m),
        spec: Some(PodSpec {
            node_name: node.into(),
            containers: vec![Container {
                name: "c".into(),
                ..Default::default()
            }],
            volumes: claims
                .iter()
                .map(|c| Volume {
                    name: format!("v-{c}"),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: (*c).into(),
                        read_only: false,
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: phase.into(),
            container_statuses: statuses,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn claim(ns: &str, name: &str, phase: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(ns, name, &format!("pvc-{name}")),
        status: Some(PersistentVolumeClaimStatus {
            phase: phase.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[derive(Default)]
struct Fixture {
    nodes: Vec<Node>,
    daemon_sets: Vec<DaemonSet>,
    stateful_sets: Vec<StatefulSet>,
    pods: Vec<Pod>,
    claims: Vec<PersistentVolumeClaim>,
}

impl Fixture {
    fn render(&self, opts: Options) -> String {
        render(
            &Objects {
                nodes: &self.nodes,
                daemon_sets: &self.daemon_sets,
                stateful_sets: &self.stateful_sets,
                pods: &self.pods,
                claims: &self.claims,
            },
            opts,
        )
    }

    fn plain(&self) -> String {
        self.render(Options::default())
    }
}

/// The guide's two sets, listed in no particular order.
fn guide() -> Fixture {
    let mut f = Fixture {
        nodes: ready_nodes(&["node3", "node1", "node2"]),
        daemon_sets: vec![ds("kube-system", "node-monitor", "ds-uid", 3, 3)],
        stateful_sets: vec![sts("database", "mysql-db", "sts-uid", 3, 3)],
        ..Default::default()
    };
    for (name, node) in [
        ("node-monitor-q9z2", "node3"),
        ("node-monitor-x7k2", "node1"),
        ("node-monitor-b4m1", "node2"),
    ] {
        f.pods
            .push(pod("kube-system", name, "ds-uid", node, Run::Ready, &[]));
    }
    for (i, node) in [(2, "node1"), (0, "node2"), (1, "node3")] {
        let c = format!("mysql-storage-mysql-db-{i}");
        f.pods.push(pod(
            "database",
            &format!("mysql-db-{i}"),
            "sts-uid",
            node,
            Run::Ready,
            &[&c],
        ));
        f.claims.push(claim("database", &c, "Bound"));
    }
    f
}

/// The first `n` lines inside the box, below the title, without their padding and
/// right bar.
fn body_lines(text: &str, n: usize) -> Vec<String> {
    text.lines()
        .skip(3)
        .take(n)
        .map(|l| l.trim_end_matches('|').trim_end().to_string())
        .collect()
}

/// Every line of `text` has the same printed width and sits between bars.
fn assert_boxed(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let width = lines[0].chars().count();
    for l in &lines {
        assert_eq!(l.chars().count(), width, "ragged line {l:?} in\n{text}");
        assert!(
            (l.starts_with('|') && l.ends_with('|')) || (l.starts_with('+') && l.ends_with('+')),
            "{l:?}"
        );
    }
    width
}

#[test]
fn the_guides_two_sets_draw_the_guides_box() {
    let want = "\
+-------------------------------------------------------------------------------------+
|                                   Twinset Cluster                                   |
|-------------------------------------------------------------------------------------|
| DaemonSet: kube-system/node-monitor (3/3 ready)                                     |
|   -> Pod: node-monitor-x7k2 (runs on node1) Running 1/1                             |
|   -> Pod: node-monitor-b4m1 (runs on node2) Running 1/1                             |
|   -> Pod: node-monitor-q9z2 (runs on node3) Running 1/1                             |
|                                                                                     |
| StatefulSet: database/mysql-db (3/3 ready)                                          |
|   -> Pod: mysql-db-0 (with PVC mysql-storage-mysql-db-0, runs on node2) Running 1/1 |
|   -> Pod: mysql-db-1 (with PVC mysql-storage-mysql-db-1, runs on node3) Running 1/1 |
|   -> Pod: mysql-db-2 (with PVC mysql-storage-mysql-db-2, runs on node1) Running 1/1 |
+-------------------------------------------------------------------------------------+
";
    let got = guide().render(Options {
        show_namespace: true,
        colour: false,
    });
    assert_eq!(got, want, "\n{got}");
    assert_boxed(&got);
}

#[test]
fn one_namespace_drops_the_prefix_and_short_lines_keep_the_guides_width() {
    let mut f = Fixture {
        nodes: ready_nodes(&["node1", "node2"]),
        daemon_sets: vec![ds("kube-system", "node-monitor", "u", 2, 2)],
        ..Default::default()
    };
    f.pods
        .push(pod("kube-system", "nm-b", "u", "node2", Run::Ready, &[]));
    f.pods
        .push(pod("kube-system", "nm-a", "u", "node1", Run::Ready, &[]));
    let want = "\
+------------------------------------------------------------+
|                      Twinset Cluster                       |
|------------------------------------------------------------|
| DaemonSet: node-monitor (2/2 ready)                        |
|   -> Pod: nm-a (runs on node1) Running 1/1                 |
|   -> Pod: nm-b (runs on node2) Running 1/1                 |
+------------------------------------------------------------+
";
    assert_eq!(f.plain(), want, "\n{}", f.plain());
    assert_eq!(assert_boxed(want), MIN_WIDTH + 2);
}

#[test]
fn a_long_name_widens_the_box_to_fit_with_one_space_before_the_bar() {
    let long = format!("a{}", "b".repeat(90));
    let mut f = Fixture {
        nodes: ready_nodes(&["node1"]),
        daemon_sets: vec![ds("default", &long, "u", 1, 1)],
        ..Default::default()
    };
    f.pods.push(pod(
        "default",
        &format!("{long}-x"),
        "u",
        "node1",
        Run::Ready,
        &[],
    ));
    let got = f.plain();
    let width = assert_boxed(&got);
    let pod_line = format!("|   -> Pod: {long}-x (runs on node1) Running 1/1 |");
    assert!(got.lines().any(|l| l == pod_line), "{got}");
    assert_eq!(width, pod_line.len());
}

#[test]
fn pods_are_ordered_by_node_for_daemon_sets_and_by_ordinal_for_stateful_sets() {
    let mut f = Fixture {
        nodes: ready_nodes(&["a", "b", "c"]),
        daemon_sets: vec![ds("ns", "d", "du", 2, 3)],
        stateful_sets: vec![sts("ns", "web", "su", 3, 12)],
        ..Default::default()
    };
    // Pod names sort the other way from their nodes; one pod has no node yet.
    f.pods.push(pod("ns", "d-1", "du", "c", Run::Ready, &[]));
    f.pods.push(pod("ns", "d-0", "du", "", Run::Pending, &[]));
    f.pods.push(pod("ns", "d-2", "du", "a", Run::Ready, &[]));
    for i in [10, 2, 0, 1] {
        f.pods
            .push(pod("ns", &format!("web-{i}"), "su", "b", Run::Ready, &[]));
    }
    let got = f.plain();
    let pods: Vec<&str> = got
        .lines()
        .filter_map(|l| l.strip_prefix("|   -> Pod: "))
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(
        pods,
        ["d-2", "d-1", "d-0", "web-0", "web-1", "web-2", "web-10"],
        "{got}"
    );
    assert!(
        got.contains("|   -> Pod: d-0 (not scheduled) Pending 0/1 "),
        "{got}"
    );
    assert!(got.contains("| StatefulSet: web (3/12 ready) "), "{got}");
}

#[test]
fn pending_pods_claims_missing_lost_and_several_per_pod() {
    let mut f = Fixture {
        nodes: ready_nodes(&["node1"]),
        stateful_sets: vec![sts("db", "m", "u", 1, 4)],
        claims: vec![
            claim("db", "data-m-0", "Bound"),
            claim("db", "logs-m-0", "Bound"),
            claim("db", "data-m-1", "Pending"),
            claim("db", "data-m-2", "Lost"),
            // The same name in another namespace is not m-3's claim.
            claim("other", "data-m-3", "Bound"),
        ],
        ..Default::default()
    };
    f.pods.push(pod(
        "db",
        "m-0",
        "u",
        "node1",
        Run::Ready,
        &["data-m-0", "logs-m-0"],
    ));
    f.pods
        .push(pod("db", "m-1", "u", "", Run::Pending, &["data-m-1"]));
    f.pods.push(pod(
        "db",
        "m-2",
        "u",
        "node1",
        Run::Waiting("ContainerCreating"),
        &["data-m-2"],
    ));
    f.pods
        .push(pod("db", "m-3", "u", "", Run::Pending, &["data-m-3"]));
    let got = f.plain();
    assert_eq!(
        body_lines(&got, 5),
        [
            "| StatefulSet: m (1/4 ready)",
            "|   -> Pod: m-0 (with PVC data-m-0, logs-m-0, runs on node1) Running 1/1",
            "|   -> Pod: m-1 (with PVC data-m-1 (Pending), not scheduled) Pending 0/1",
            "|   -> Pod: m-2 (with PVC data-m-2 (Lost), runs on node1) ContainerCreating 0/1",
            "|   -> Pod: m-3 (with PVC data-m-3 (missing), not scheduled) Pending 0/1",
        ],
        "{got}"
    );
}

#[test]
fn only_pods_the_set_controls_in_its_namespace_belong_to_it() {
    let mut f = Fixture {
        nodes: ready_nodes(&["n"]),
        daemon_sets: vec![ds("ns", "d", "du", 0, 0)],
        stateful_sets: vec![sts("ns", "s", "su", 0, 2)],
        ..Default::default()
    };
    // Another uid, another namespace, and an owner that is not the controller.
    f.pods
        .push(pod("ns", "s-0", "old-uid", "n", Run::Ready, &[]));
    f.pods
        .push(pod("elsewhere", "s-1", "su", "n", Run::Ready, &[]));
    let mut not_controller = pod("ns", "d-x", "du", "n", Run::Ready, &[]);
    if let Some(m) = not_controller.metadata.as_mut() {
        m.owner_references[0].controller = Some(false);
    }
    f.pods.push(not_controller);
    let got = f.plain();
    assert_eq!(
        body_lines(&got, 5),
        [
            "| DaemonSet: d (0/0 ready)",
            "|   (no pods)",
            "|",
            "| StatefulSet: s (0/2 ready)",
            "|   (no pods)",
        ],
        "{got}"
    );
    // A set without a uid (never returned by the API) owns nothing.
    if let Some(m) = f.stateful_sets[0].metadata.as_mut() {
        m.uid.clear();
    }
    f.pods.push(pod("ns", "s-9", "", "n", Run::Ready, &[]));
    assert!(!f.plain().contains("s-9"));
}

#[test]
fn several_namespaces_are_sorted_and_named_daemon_sets_first() {
    let f = Fixture {
        nodes: ready_nodes(&["n"]),
        daemon_sets: vec![ds("zeta", "a", "1", 0, 0), ds("alpha", "z", "2", 0, 0)],
        stateful_sets: vec![sts("beta", "b", "3", 0, 0), sts("alpha", "c", "4", 0, 0)],
        ..Default::default()
    };
    let got = f.render(Options {
        show_namespace: true,
        colour: false,
    });
    let heads: Vec<&str> = got
        .lines()
        .filter(|l| l.contains("Set: "))
        .map(|l| l.trim_start_matches("| ").split(" (").next().unwrap_or(""))
        .collect();
    assert_eq!(
        heads,
        [
            "DaemonSet: alpha/z",
            "DaemonSet: zeta/a",
            "StatefulSet: alpha/c",
            "StatefulSet: beta/b",
        ]
    );
    // One blank line between sets, none after the last.
    let blank = format!("|{}|", " ".repeat(MIN_WIDTH));
    assert_eq!(got.lines().filter(|l| *l == blank).count(), 3, "{got}");
    assert_ne!(got.lines().rev().nth(1), Some(blank.as_str()));
}

#[test]
fn node_marks_say_when_a_node_is_not_ready_cordoned_or_gone() {
    let mut cordoned = node("c", "True");
    cordoned.spec = Some(NodeSpec {
        unschedulable: true,
        ..Default::default()
    });
    let mut f = Fixture {
        nodes: vec![node("a", "True"), node("b", "Unknown"), cordoned],
        daemon_sets: vec![ds("ns", "d", "u", 4, 4)],
        ..Default::default()
    };
    for n in ["a", "b", "c", "gone"] {
        f.pods
            .push(pod("ns", &format!("d-{n}"), "u", n, Run::Ready, &[]));
    }
    let got = f.plain();
    for want in [
        "(runs on a) Running 1/1",
        "(runs on b, node NotReady) Running 1/1",
        "(runs on c, node Ready,SchedulingDisabled) Running 1/1",
        "(runs on gone, node not found) Running 1/1",
    ] {
        assert!(got.contains(want), "{want} not in\n{got}");
    }
}

#[test]
fn statuses_are_the_ones_get_pods_prints() {
    let mut terminating = pod("ns", "d-t", "u", "n", Run::Ready, &[]);
    if let Some(m) = terminating.metadata.as_mut() {
        m.deletion_timestamp = "2024-01-01T00:00:00Z".into();
    }
    let mut f = Fixture {
        nodes: ready_nodes(&["n"]),
        daemon_sets: vec![ds("ns", "d", "u", 1, 4)],
        ..Default::default()
    };
    f.pods.extend([
        pod("ns", "d-c", "u", "n", Run::Waiting("CrashLoopBackOff"), &[]),
        pod("ns", "d-r", "u", "n", Run::NotReady, &[]),
        terminating,
    ]);
    let got = f.plain();
    for want in [
        "d-c (runs on n) CrashLoopBackOff 0/1",
        "d-r (runs on n) Running 0/1",
        "d-t (runs on n) Terminating 1/1",
    ] {
        assert!(got.contains(want), "{want} not in\n{got}");
    }
}

/// `text` without its ANSI colour escapes.
fn strip_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('\x1b') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let end = after.find('m').map_or(after.len(), |e| e + 1);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn colour_marks_status_only_and_keeps_the_layout() {
    let mut f = guide();
    f.nodes.push(node("node4", "False"));
    f.daemon_sets[0].status = Some(DaemonSetStatus {
        number_ready: 3,
        desired_number_scheduled: 4,
        ..Default::default()
    });
    f.pods.push(pod(
        "kube-system",
        "node-monitor-zz",
        "ds-uid",
        "node4",
        Run::Waiting("CrashLoopBackOff"),
        &[],
    ));
    f.stateful_sets[0].status = Some(StatefulSetStatus {
        ready_replicas: 2,
        ..Default::default()
    });
    f.pods.push(pod(
        "database",
        "mysql-db-3",
        "sts-uid",
        "",
        Run::Pending,
        &["mysql-storage-mysql-db-3"],
    ));
    f.claims
        .push(claim("database", "mysql-storage-mysql-db-3", "Pending"));
    let opts = Options {
        show_namespace: true,
        colour: true,
    };
    let coloured = f.render(opts);
    let plain = f.render(Options {
        colour: false,
        ..opts
    });
    assert!(!plain.contains('\x1b'));
    assert_eq!(strip_escapes(&coloured), plain);
    let (green, yellow, red) = ("\x1b[32m", "\x1b[33m", "\x1b[31m");
    for want in [
        format!("{green}Running 1/1{RESET}"),
        format!("{red}CrashLoopBackOff 0/1{RESET}"),
        format!("{red}node NotReady{RESET}"),
        // A set with a failed pod is red; one still on its way yellow.
        format!("node-monitor {red}(3/4 ready){RESET}"),
        format!("mysql-db {yellow}(2/3 ready){RESET}"),
        format!("{yellow}(Pending){RESET}"),
        format!("{yellow}not scheduled{RESET}"),
        format!("{yellow}Pending 0/1{RESET}"),
    ] {
        assert!(coloured.contains(&want), "{want:?} not in\n{coloured}");
    }
    // Names, arrows and bars stay plain.
    for line in coloured.lines() {
        assert!(line.starts_with(['|', '+']) && !line.starts_with("|\x1b"));
    }
    assert!(guide()
        .render(opts)
        .contains(&format!("mysql-db {green}(3/3 ready){RESET}")));
}

#[test]
fn failures_are_red_waits_yellow_and_ready_running_green() {
    let tone = |status: &str, ready: &str| {
        pod_tone(&pod::PodSummary {
            ready: ready.into(),
            status: status.into(),
            restarts: 0,
            last_restart: None,
        })
    };
    assert_eq!(tone("Running", "2/2"), Tone::Good);
    for (s, r) in [
        ("Running", "1/2"),
        ("Running", "0/0"),
        ("Pending", "0/1"),
        ("ContainerCreating", "0/1"),
        ("Terminating", "1/1"),
        ("NotReady", "0/1"),
        ("Completed", "0/1"),
        ("Init:0/1", "0/1"),
    ] {
        assert_eq!(tone(s, r), Tone::Warn, "{s}");
    }
    for s in [
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "Error",
        "StartError",
        "CreateContainerConfigError",
        "Failed",
        "OOMKilled",
        "ImageNotInTable",
        "ExitCode:3",
        "Signal:9",
        "Init:Error",
        "Init:CrashLoopBackOff",
        "Unknown",
    ] {
        assert_eq!(tone(s, "0/1"), Tone::Bad, "{s}");
    }
}

#[test]
fn colour_only_on_a_terminal_without_no_color() {
    assert!(use_colour(true, None));
    assert!(use_colour(true, Some(OsStr::new(""))));
    assert!(!use_colour(true, Some(OsStr::new("1"))));
    assert!(!use_colour(false, None));
    assert!(!use_colour(false, Some(OsStr::new("1"))));
}
