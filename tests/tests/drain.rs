//! `twinset drain` and the real `kubectl drain` (issue 13): cordon, DaemonSet pods left,
//! emptyDir pods refused, an OrderedReady StatefulSet's pods evicted one at a time
//! (never two of the set Terminating at once — the server's implicit disruption budget
//! refuses the second with kubectl's 429, which kubectl retries every 5 s) and running
//! elsewhere afterwards, `--timeout` expiring, `uncordon` restoring scheduling. Both
//! tools' output is compared with kubectl's words, line for line.

use std::collections::{BTreeMap, BTreeSet};

use twinset_e2e::json::{str_at, PodView};
use twinset_e2e::kubectl::kubectl_as;
use twinset_e2e::{
    shell_pod, sleep_daemonset, sleep_statefulset, sleep_statefulset_with_claim, timeout, wait_for,
    Cluster, Output, PodEvent,
};

const RETRY_429: &str =
    "(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.";

/// The newest bundled kubectl.
const NEWEST: &str = "1.33";

fn kubectl(c: &Cluster, args: &[&str]) -> Output {
    kubectl_as(c, Some(NEWEST), args)
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

/// The most pods Terminating at the same moment, over the events.
fn most_terminating_at_once(events: &[PodEvent]) -> usize {
    let mut terminating: BTreeMap<String, bool> = BTreeMap::new();
    let mut most = 0;
    for e in events {
        if e.kind == "DELETED" {
            terminating.remove(&e.pod.uid);
        } else {
            terminating.insert(e.pod.uid.clone(), e.pod.terminating);
        }
        most = most.max(terminating.values().filter(|t| **t).count());
    }
    most
}

fn node_of(c: &Cluster, ns: &str, pod: &str) -> String {
    let v = c.get_json(&["pod", pod, "-n", ns]).expect("get pod");
    str_at(&v, "/spec/nodeName").to_string()
}

fn pods_on(c: &Cluster, ns: &str, prefix: &str, node: &str) -> Vec<PodView> {
    c.pods_named(ns, prefix)
        .expect("list pods")
        .into_iter()
        .filter(|p| p.node == node)
        .collect()
}

/// A StatefulSet `name` of 3 whose pods all run on `node` (the others cordoned while
/// it starts).
fn set_on(c: &Cluster, name: &str, node: &str) {
    for n in ["node1", "node2", "node3"] {
        let verb = if n == node { "uncordon" } else { "cordon" };
        c.run_ok(&[verb, n]);
    }
    c.apply(&sleep_statefulset(name, "default", 3)).ok();
    let pods = c.wait_sts_ready("default", name, 3);
    assert!(pods.iter().all(|p| p.node == node), "{pods:?}");
}

/// What both tools print on stdout for a drain of `node` that evicts `set`'s pods
/// `ordinals` (in that order).
fn expected_stdout(node: &str, set: &str, ordinals: &[u32]) -> Vec<String> {
    let mut out = vec![format!("node/{node} cordoned")];
    for i in ordinals {
        out.push(format!("evicting pod default/{set}-{i}"));
        out.push(format!("pod/{set}-{i} evicted"));
    }
    out.push(format!("node/{node} drained"));
    out
}

#[test]
fn drain_evicts_a_statefulset_one_pod_at_a_time_and_kubectl_drain_says_the_same() {
    let c = Cluster::start(3);
    c.apply(&sleep_daemonset(
        "mon",
        "default",
        "        - name: ROLE\n          value: monitor\n",
    ))
    .ok();
    c.wait_running("default", "mon-", 3);
    set_on(&c, "web", "node2");
    set_on(&c, "db", "node3");
    for n in ["node1", "node2"] {
        c.run_ok(&["uncordon", n]);
    }
    let mon2 = pods_on(&c, "default", "mon-", "node2").remove(0).name;
    let mon3 = pods_on(&c, "default", "mon-", "node3").remove(0).name;

    // A pod with emptyDir data on node2: both tools refuse without --delete-emptydir-data,
    // in the same words.
    let scratch = shell_pod("scratch", "node2", "sleep 3600").replace(
        "  containers:\n",
        "  volumes:\n  - name: tmp\n    emptyDir: {}\n  containers:\n",
    );
    c.apply(&scratch).ok();
    c.wait_running("default", "scratch", 1);
    let refused = c.run(&["drain", "node2", "--ignore-daemonsets"]);
    assert!(!refused.success(), "{refused}");
    let why = "cannot delete Pods with local storage (use --delete-emptydir-data to override): default/scratch";
    assert_eq!(lines(&refused.stdout), ["node/node2 cordoned"], "{refused}");
    assert_eq!(
        lines(&refused.stderr),
        [
            format!(
                "error: unable to drain node \"node2\" due to error: {why}, continuing command..."
            ),
            "There are pending nodes to be drained:".to_string(),
            " node2".to_string(),
            why.to_string(),
        ],
        "{refused}"
    );
    c.run_ok(&["uncordon", "node2"]);
    let by_kubectl = kubectl(&c, &["drain", "node2", "--ignore-daemonsets"]);
    assert!(!by_kubectl.success(), "{by_kubectl}");
    assert_eq!(by_kubectl.stdout, refused.stdout, "{by_kubectl}");
    assert_eq!(by_kubectl.stderr, refused.stderr, "{by_kubectl}");
    c.run_ok(&["uncordon", "node2"]);
    c.run_ok(&["delete", "pod", "scratch", "--grace-period=0"]);

    // Dry runs change nothing: twinset's and kubectl's client-side ones print the same;
    // kubectl's server-side one goes through the eviction subresource with dryRun=All.
    let dry = c.run(&["drain", "node2", "--ignore-daemonsets", "--dry-run=client"]);
    assert!(dry.success(), "{dry}");
    let mut want = vec!["node/node2 cordoned (dry run)".to_string()];
    want.extend((0..3).map(|i| format!("evicting pod default/web-{i} (dry run)")));
    want.push("node/node2 drained (dry run)".to_string());
    assert_eq!(lines(&dry.stdout), want, "{dry}");
    let warning = format!("Warning: ignoring DaemonSet-managed Pods: default/{mon2}");
    assert_eq!(lines(&dry.stderr), std::slice::from_ref(&warning), "{dry}");
    let by_kubectl = kubectl(
        &c,
        &["drain", "node2", "--ignore-daemonsets", "--dry-run=client"],
    );
    assert_eq!(
        (&by_kubectl.stdout, &by_kubectl.stderr),
        (&dry.stdout, &dry.stderr)
    );
    let server = kubectl(
        &c,
        &["drain", "node2", "--ignore-daemonsets", "--dry-run=server"],
    );
    assert!(server.success(), "{server}");
    let printed: BTreeSet<String> = lines(&server.stdout).into_iter().collect();
    let want: BTreeSet<String> = want
        .iter()
        .map(|l| l.replace("(dry run)", "(server dry run)"))
        .collect();
    assert_eq!(printed, want, "{server}");
    let refused = c.run(&["drain", "node2", "--dry-run=server"]);
    assert!(!refused.success(), "{refused}");
    assert_eq!(lines(&refused.stderr).len(), 1, "{refused}");
    let node = c.get_json(&["node", "node2"]).expect("get node");
    assert!(
        node["spec"]["unschedulable"].is_null(),
        "dry runs cordon nothing: {node}"
    );
    let web = c.wait_sts_ready("default", "web", 3);
    assert!(
        web.iter().all(|p| p.node == "node2"),
        "dry runs evict nothing: {web:?}"
    );

    // twinset drain node2: web's pods go one at a time, highest ordinal first, to node1
    // (node3 cordoned, so that kubectl's drain of node3 below moves db's pods only).
    c.run_ok(&["cordon", "node3"]);
    let watch = c.watch_pods();
    let out = c.run(&["drain", "node2", "--ignore-daemonsets"]);
    assert!(out.success(), "{out}");
    assert_eq!(
        lines(&out.stdout),
        expected_stdout("node2", "web", &[2, 1, 0]),
        "{out}"
    );
    assert_eq!(
        lines(&out.stderr),
        [format!(
            "Warning: ignoring DaemonSet-managed Pods: default/{mon2}"
        )],
        "{out}"
    );
    let node = c.get_json(&["node", "node2"]).expect("get node");
    assert_eq!(node["spec"]["unschedulable"], true, "{node}");
    let taints = node["spec"]["taints"].to_string();
    assert!(
        taints.contains("node.kubernetes.io/unschedulable"),
        "{taints}"
    );
    let web = c.wait_sts_ready("default", "web", 3);
    assert!(web.iter().all(|p| p.node == "node1"), "{web:?}");
    assert_eq!(
        node_of(&c, "default", &mon2),
        "node2",
        "the DaemonSet pod stays"
    );
    let events = watch.events_of("default", "web-");
    assert_eq!(
        most_terminating_at_once(&events),
        1,
        "{}",
        watch.dump("default", "web-")
    );

    // uncordon: node2 takes pods again (the new replica goes to the node with the
    // fewest of the set, node2).
    assert_eq!(
        c.run_ok(&["uncordon", "node2"]).trim(),
        "node/node2 uncordoned"
    );
    c.run_ok(&["scale", "sts", "web", "--replicas=4"]);
    c.wait_sts_ready("default", "web", 4);
    assert_eq!(node_of(&c, "default", "web-3"), "node2");
    c.run_ok(&["uncordon", "node3"]);

    // kubectl drain node3: evicts db's three pods at once; the server lets one go at a
    // time (429 to the others, which kubectl retries), and prints what twinset prints.
    let watch = c.watch_pods();
    let out = kubectl(&c, &["drain", "node3", "--ignore-daemonsets"]);
    assert!(out.success(), "{out}");
    let printed: BTreeSet<String> = lines(&out.stdout).into_iter().collect();
    let want: BTreeSet<String> = expected_stdout("node3", "db", &[2, 1, 0])
        .into_iter()
        .collect();
    assert_eq!(printed, want, "{out}");
    let stderr = lines(&out.stderr);
    assert_eq!(
        stderr[0],
        format!("Warning: ignoring DaemonSet-managed Pods: default/{mon3}"),
        "{out}"
    );
    let retries = &stderr[1..];
    assert!(!retries.is_empty(), "kubectl was never refused: {out}");
    for r in retries {
        let ok = (0..3).any(|i| {
            *r == format!("error when evicting pods/\"db-{i}\" -n \"default\" {RETRY_429}")
        });
        assert!(ok, "{r:?} in {out}");
    }
    let events = watch.events_of("default", "db-");
    assert_eq!(
        most_terminating_at_once(&events),
        1,
        "{}",
        watch.dump("default", "db-")
    );
    let db = c.wait_sts_ready("default", "db", 3);
    assert!(db.iter().all(|p| p.node != "node3"), "{db:?}");
    assert_eq!(
        node_of(&c, "default", &mon3),
        "node3",
        "the DaemonSet pod stays"
    );
    assert_eq!(
        kubectl(&c, &["uncordon", "node3"]).ok().trim(),
        "node/node3 uncordoned"
    );
}

/// A set of 2 whose pods ignore SIGTERM for 120 s: slow-0 on node1, slow-1 on node2.
const SLOW_SET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: slow
  namespace: default
spec:
  serviceName: slow
  replicas: 1
  selector:
    matchLabels:
      app: slow
  template:
    metadata:
      labels:
        app: slow
    spec:
      terminationGracePeriodSeconds: 120
      containers:
      - name: main
        image: busybox
        command: [\"sh\", \"-c\", \"trap '' TERM; while true; do sleep 1; done\"]
";

#[test]
fn drain_timeout_expires_with_kubectls_error() {
    let c = Cluster::start(2);
    c.run_ok(&["cordon", "node2"]);
    c.apply(SLOW_SET).ok();
    c.wait_sts_ready("default", "slow", 1);
    c.run_ok(&["uncordon", "node2"]);
    c.run_ok(&["cordon", "node1"]);
    c.run_ok(&["scale", "sts", "slow", "--replicas=2"]);
    c.wait_sts_ready("default", "slow", 2);
    c.run_ok(&["uncordon", "node1"]);
    assert_eq!(node_of(&c, "default", "slow-0"), "node1");
    assert_eq!(node_of(&c, "default", "slow-1"), "node2");
    // slow-0 terminates for 120 s: slow-1 may not go meanwhile.
    c.run_ok(&["delete", "pod", "slow-0", "--wait=false"]);
    wait_for("slow-0 to be Terminating", timeout(), || {
        let p = c.pods_named("default", "slow-0")?;
        if p.iter().any(|p| p.terminating) {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    let reached = "error when evicting pods/\"slow-1\" -n \"default\": global timeout reached: 2s";
    let want_stdout = [
        "node/node2 cordoned",
        "evicting pod default/slow-1",
        "evicting pod default/slow-1",
    ];
    let want_stderr = [
        format!("error when evicting pods/\"slow-1\" -n \"default\" {RETRY_429}"),
        format!("There are pending pods in node \"node2\" when an error occurred: {reached}"),
        "pod/slow-1".to_string(),
        format!(
            "error: unable to drain node \"node2\" due to error: {reached}, continuing command..."
        ),
        "There are pending nodes to be drained:".to_string(),
        " node2".to_string(),
        reached.to_string(),
    ];
    let out = c.run(&["drain", "node2", "--timeout=2s"]);
    assert!(!out.success(), "{out}");
    assert_eq!(lines(&out.stdout), want_stdout, "{out}");
    assert_eq!(lines(&out.stderr), want_stderr, "{out}");
    // The oldest bundled kubectl, the one the dispatcher picks for the server's version,
    // and the newest all say the same (before 1.31 kubectl left out one space).
    for version in [Some("1.27"), None, Some(NEWEST)] {
        c.run_ok(&["uncordon", "node2"]);
        let by_kubectl = kubectl_as(&c, version, &["drain", "node2", "--timeout=2s"]);
        assert!(!by_kubectl.success(), "{by_kubectl}");
        assert_eq!(lines(&by_kubectl.stdout), want_stdout, "{by_kubectl}");
        let mut want = want_stderr.clone();
        if version == Some("1.27") {
            want[3] = want[3].replace("due to error: ", "due to error:");
        }
        assert_eq!(lines(&by_kubectl.stderr), want, "{by_kubectl}");
    }
    // Still there, not evicted.
    assert_eq!(node_of(&c, "default", "slow-1"), "node2");
}

#[test]
fn a_replica_whose_claim_lives_on_the_drained_node_waits_for_uncordon() {
    let c = Cluster::start(2);
    c.run_ok(&["cordon", "node1"]);
    c.apply(&sleep_statefulset_with_claim("kept", "default", 1))
        .ok();
    c.wait_sts_ready("default", "kept", 1);
    c.run_ok(&["uncordon", "node1"]);
    assert_eq!(node_of(&c, "default", "kept-0"), "node2");
    let out = c.run(&["drain", "node2"]);
    assert!(out.success(), "{out}");
    assert_eq!(
        lines(&out.stdout),
        expected_stdout("node2", "kept", &[0]),
        "{out}"
    );
    // Recreated, but its volume is on node2: Pending, with the scheduler's reason.
    let why = "0/2 nodes are available: 1 node(s) had volume node affinity conflict, 1 node(s) were unschedulable.";
    wait_for("kept-0 to wait for its node", timeout(), || {
        let described = c.run(&["describe", "pod", "kept-0"]);
        let pods = c.pods_named("default", "kept-0")?;
        let pending = pods
            .iter()
            .any(|p| p.phase == "Pending" && p.node.is_empty());
        if pending && described.stdout.contains(why) {
            Ok(())
        } else {
            Err(format!("{pods:?}\n{described}"))
        }
    });
    c.run_ok(&["uncordon", "node2"]);
    let pods = c.wait_sts_ready("default", "kept", 1);
    assert_eq!(pods[0].node, "node2");
}
