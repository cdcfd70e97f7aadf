//! Nodes joining, leaving, relabelled, tainted and cordoned: the DaemonSet follows.

use std::collections::BTreeSet;
use std::time::Duration;

use twinset_e2e::json::{self, int_at, PodView};
use twinset_e2e::{holds_for, timeout, wait_for, Cluster, ProcId};

const NS: &str = "kube-system";

/// A DaemonSet of `sleep` processes in `default`, optionally with a nodeSelector line.
fn sleeper_ds(name: &str, node_selector: Option<(&str, &str)>) -> String {
    let selector = node_selector
        .map(|(k, v)| format!("      nodeSelector:\n        {k}: \"{v}\"\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
  namespace: default
spec:
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
{selector}      terminationGracePeriodSeconds: 5
      containers:
      - name: main
        image: busybox
        command: [\"sleep\", \"3600\"]
"
    )
}

fn on_node<'a>(pods: &'a [PodView], node: &str) -> &'a PodView {
    pods.iter()
        .find(|p| p.node == node)
        .unwrap_or_else(|| panic!("no pod on {node}: {}", json::summary(pods)))
}

/// Waits until the live (not terminating) pods `prefix*` in `ns` are Running+Ready on
/// exactly `nodes`, and returns them.
fn wait_on_nodes(c: &Cluster, ns: &str, prefix: &str, nodes: &[&str]) -> Vec<PodView> {
    let want: BTreeSet<&str> = nodes.iter().copied().collect();
    wait_for(
        &format!("{prefix}* pods on exactly {nodes:?}"),
        timeout(),
        || {
            let pods = c.pods_named(ns, prefix)?;
            let on: Vec<&str> = pods.iter().map(|p| p.node.as_str()).collect();
            let set: BTreeSet<&str> = on.iter().copied().collect();
            if on.len() == want.len() && set == want && pods.iter().all(PodView::is_running_ready) {
                Ok(pods)
            } else {
                Err(json::summary(&pods))
            }
        },
    )
}

fn wait_gone(what: &str, p: ProcId) {
    wait_for(
        &format!("process {} ({what}) to exit", p.pid),
        timeout(),
        || {
            if p.is_alive() {
                Err("still alive".into())
            } else {
                Ok(())
            }
        },
    );
}

fn ds_status(c: &Cluster, ns: &str, name: &str) -> Result<(i64, i64, i64, i64), String> {
    let v = c.get_json(&["ds", name, "-n", ns])?;
    let f = |k: &str| int_at(&v, &format!("/status/{k}")).unwrap_or(0);
    Ok((
        f("desiredNumberScheduled"),
        f("currentNumberScheduled"),
        f("numberReady"),
        f("numberMisscheduled"),
    ))
}

#[test]
fn a_joining_node_gets_its_daemon_pod() {
    let mut c = Cluster::start(3);
    c.run_guide_daemonset(3);
    c.add_agent("node4", &[]);
    let pods = wait_on_nodes(
        &c,
        NS,
        "node-monitor-",
        &["node1", "node2", "node3", "node4"],
    );
    let p4 = on_node(&pods, "node4");
    let proc4 = c.wait_pod_process(NS, &p4.name);
    assert!(proc4.is_alive());
    let ips: BTreeSet<&str> = pods.iter().map(|p| p.ip.as_str()).collect();
    assert_eq!(
        ips.len(),
        4,
        "pod IPs not distinct: {}",
        json::summary(&pods)
    );
    wait_for("get ds to count 4", timeout(), || {
        match ds_status(&c, NS, "node-monitor")? {
            (4, 4, 4, 0) => Ok(()),
            s => Err(format!("{s:?}")),
        }
    });
}

#[test]
fn a_deleted_node_loses_its_pod() {
    let c = Cluster::start(3);
    let pods = c.run_guide_daemonset(3);
    let procs: Vec<(String, ProcId)> = pods
        .iter()
        .map(|p| (p.node.clone(), c.wait_pod_process(NS, &p.name)))
        .collect();
    let out = c.run(&["delete", "node", "node2"]);
    assert_eq!(out.ok().trim(), "node \"node2\" deleted");
    let after = wait_on_nodes(&c, NS, "node-monitor-", &["node1", "node3"]);
    for (node, p) in &procs {
        if node == "node2" {
            wait_gone("node2's monitor", *p);
        } else {
            assert!(p.is_alive(), "the monitor on {node} died");
        }
    }
    // The survivors are the same pods.
    for p in &after {
        assert!(
            pods.iter().any(|q| q.uid == p.uid),
            "{} was replaced",
            p.name
        );
    }
    let nodes: Vec<String> = c
        .nodes()
        .expect("nodes")
        .iter()
        .map(|n| json::str_at(n, "/metadata/name").to_string())
        .collect();
    assert!(
        !nodes.contains(&"node2".to_string()),
        "node2 still listed: {nodes:?}"
    );
}

#[test]
fn a_node_relabelled_out_of_the_node_selector_loses_its_pod() {
    let mut c = Cluster::control_plane_only();
    let names: Vec<String> = (1..=3).map(|i| format!("node{i}")).collect();
    for n in &names {
        c.spawn_agent(n, &["--labels", "monitor=true,rack=r1"]);
    }
    c.wait_nodes_ready(&names);
    let node = c.get_json(&["node", "node1"]).expect("get node");
    assert_eq!(
        json::str_at(&node, "/metadata/labels/monitor"),
        "true",
        "--labels did not label the node"
    );
    assert_eq!(
        json::str_at(&node, "/metadata/labels/kubernetes.io~1hostname"),
        "node1"
    );

    let out = c.apply(&sleeper_ds("selected", Some(("monitor", "true"))));
    assert_eq!(out.ok().trim(), "daemonset.apps/selected created");
    let pods = wait_on_nodes(&c, "default", "selected-", &["node1", "node2", "node3"]);
    let p2 = c.wait_pod_process("default", &on_node(&pods, "node2").name);
    let p3 = c.wait_pod_process("default", &on_node(&pods, "node3").name);

    // Without --overwrite an existing label is refused.
    let refused = c.run(&["label", "node", "node2", "monitor=false"]);
    let err = refused.failed();
    assert!(err.contains("--overwrite"), "{refused}");

    let out = c.run(&["label", "node", "node2", "monitor=false", "--overwrite"]);
    assert_eq!(out.ok().trim(), "node/node2 labeled");
    wait_on_nodes(&c, "default", "selected-", &["node1", "node3"]);
    wait_gone("node2's pod", p2);

    let out = c.run(&["label", "node", "node3", "monitor-"]);
    assert_eq!(out.ok().trim(), "node/node3 unlabeled");
    wait_on_nodes(&c, "default", "selected-", &["node1"]);
    wait_gone("node3's pod", p3);

    // Relabelled back in: the pod comes back.
    c.run_ok(&["label", "node", "node2", "monitor=true", "--overwrite"]);
    wait_on_nodes(&c, "default", "selected-", &["node1", "node2"]);
    wait_for("ds status desired 2", timeout(), || {
        match ds_status(&c, "default", "selected")? {
            (2, 2, 2, 0) => Ok(()),
            s => Err(format!("{s:?}")),
        }
    });
}

#[test]
fn a_node_tainted_noschedule_gets_no_new_daemon_pod() {
    let mut c = Cluster::start(3);
    let out = c.run(&["taint", "node", "node3", "dedicated=db:NoSchedule"]);
    assert_eq!(out.ok().trim(), "node/node3 tainted");
    let node3 = c.get_json(&["node", "node3"]).expect("get node3");
    let taints = node3
        .pointer("/spec/taints")
        .and_then(|t| t.as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        taints.iter().any(|t| json::str_at(t, "/key") == "dedicated"
            && json::str_at(t, "/effect") == "NoSchedule"),
        "node3 taints: {taints:?}"
    );

    c.run_guide_daemonset(2);
    wait_for("ds status desired 2", timeout(), || {
        match ds_status(&c, NS, "node-monitor")? {
            (2, 2, 2, 0) => Ok(()),
            s => Err(format!("{s:?}")),
        }
    });
    let pods = wait_on_nodes(&c, NS, "node-monitor-", &["node1", "node2"]);
    holds_for(
        "no daemon pod on the tainted node3",
        Duration::from_secs(1),
        || {
            let pods = c.pods_named(NS, "node-monitor-")?;
            match pods.iter().find(|p| p.node == "node3") {
                Some(p) => Err(format!("{} was created on node3", p.name)),
                None => Ok(()),
            }
        },
    );

    // An agent that joins with the taint (--taints) gets none either.
    c.add_agent("node4", &["--taints", "dedicated=db:NoSchedule"]);
    // A fifth, untainted node is the barrier: once it has its pod, node4's decision was made.
    c.add_agent("node5", &[]);
    wait_on_nodes(&c, NS, "node-monitor-", &["node1", "node2", "node5"]);
    wait_for("ds status desired 3", timeout(), || {
        match ds_status(&c, NS, "node-monitor")? {
            (3, 3, 3, _) => Ok(()),
            s => Err(format!("{s:?}")),
        }
    });

    // A NoSchedule taint on a node that already runs the pod leaves it (misscheduled).
    let p1 = c.wait_pod_process(NS, &on_node(&pods, "node1").name);
    c.run_ok(&["taint", "node", "node1", "dedicated=db:NoSchedule"]);
    wait_for(
        "ds status: node1 no longer desired, counted misscheduled",
        timeout(),
        || match ds_status(&c, NS, "node-monitor")? {
            (2, _, _, 1) => Ok(()),
            s => Err(format!("{s:?}")),
        },
    );
    assert!(
        p1.is_alive(),
        "a NoSchedule taint evicted node1's running daemon pod"
    );
    assert!(c
        .pods_named(NS, "node-monitor-")
        .expect("pods")
        .iter()
        .any(|p| p.node == "node1"));

    // Removing the taint lets node3 get its pod.
    let out = c.run(&["taint", "node", "node3", "dedicated=db:NoSchedule-"]);
    assert_eq!(out.ok().trim(), "node/node3 untainted");
    wait_on_nodes(
        &c,
        NS,
        "node-monitor-",
        &["node1", "node2", "node3", "node5"],
    );
}

#[test]
fn a_cordoned_node_still_gets_a_daemon_pod() {
    let c = Cluster::start(3);
    let out = c.run(&["cordon", "node2"]);
    assert_eq!(out.ok().trim(), "node/node2 cordoned");
    let node2 = c.get_json(&["node", "node2"]).expect("get node2");
    assert_eq!(
        node2
            .pointer("/spec/unschedulable")
            .and_then(|v| v.as_bool()),
        Some(true),
        "{node2}"
    );
    let t = c.table(&["get", "nodes"]);
    assert_eq!(t.header, ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    let row = t.row("node2").expect("node2 row").clone();
    assert_eq!(t.cell(&row, "STATUS"), "Ready,SchedulingDisabled");

    let pods = c.run_guide_daemonset(3);
    let nodes: BTreeSet<&str> = pods.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(nodes, BTreeSet::from(["node1", "node2", "node3"]));
    // The automatic toleration is on the pod.
    let p2 = on_node(&pods, "node2");
    let tolerations = p2
        .raw
        .pointer("/spec/tolerations")
        .and_then(|t| t.as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        tolerations
            .iter()
            .any(|t| json::str_at(t, "/key") == "node.kubernetes.io/unschedulable"),
        "daemon pod lacks the unschedulable toleration: {tolerations:?}"
    );
    assert!(c.wait_pod_process(NS, &p2.name).is_alive());

    let out = c.run(&["uncordon", "node2"]);
    assert_eq!(out.ok().trim(), "node/node2 uncordoned");
    let t = c.table(&["get", "nodes"]);
    assert_eq!(
        t.cell(t.row("node2").expect("node2 row"), "STATUS"),
        "Ready"
    );
}

#[test]
fn a_silent_node_becomes_not_ready_and_keeps_its_daemon_pod() {
    let mut c = Cluster::start(2);
    let pods = c.run_guide_daemonset(2);
    let p2 = on_node(&pods, "node2").clone();
    let proc2 = c.wait_pod_process(NS, &p2.name);
    // The agent dies; its pod process keeps running (it is its own process group).
    c.kill_agent("node2");
    // --node-grace 2s: the node goes Unknown and gets the unreachable taints.
    let node = wait_for("node2 to be marked unreachable", timeout(), || {
        let n = c.get_json(&["node", "node2"])?;
        let ready = n
            .pointer("/status/conditions")
            .and_then(|v| v.as_array())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| json::str_at(c, "/type") == "Ready")
                    .cloned()
            })
            .unwrap_or_default();
        if json::str_at(&ready, "/status") == "Unknown" {
            Ok(n)
        } else {
            Err(format!("Ready condition {ready}"))
        }
    });
    let taints = node
        .pointer("/spec/taints")
        .and_then(|t| t.as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        taints.iter().any(
            |t| json::str_at(t, "/key") == "node.kubernetes.io/unreachable"
                && json::str_at(t, "/effect") == "NoExecute"
        ),
        "node2 taints: {taints:?}"
    );
    let t = c.table(&["get", "nodes"]);
    assert_eq!(
        t.cell(t.row("node2").expect("node2 row"), "STATUS"),
        "NotReady"
    );
    // Daemon pods tolerate unreachable:NoExecute: the pod object stays.
    holds_for("node2's daemon pod stays", Duration::from_secs(1), || {
        let now = c.pods_named(NS, "node-monitor-")?;
        if now.iter().any(|p| p.uid == p2.uid) {
            Ok(())
        } else {
            Err(json::summary(&now))
        }
    });
    assert!(
        proc2.is_alive(),
        "the orphaned pod process died with its agent"
    );
    // node1 is unaffected.
    let t = c.table(&["get", "nodes"]);
    assert_eq!(
        t.cell(t.row("node1").expect("node1 row"), "STATUS"),
        "Ready"
    );
}
