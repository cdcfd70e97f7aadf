//! A DaemonSet rolling update with `maxSurge` (Kubernetes' semantics): on each node the
//! new pod starts before the old one is stopped, at most maxSurge nodes wait for their
//! new pod at a time, and every node keeps a Running and Ready pod throughout. The
//! history is read from the gRPC watch, so every store revision is checked.

use std::collections::{BTreeMap, BTreeSet};
use twinset_e2e::{timeout, wait_for, Cluster, PodState, PodWatch};

const NS: &str = "default";

fn daemon_set(version: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: web
  namespace: {NS}
spec:
  selector:
    matchLabels:
      app: web
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: twinset/sleep:latest
        env:
        - name: VERSION
          value: \"{version}\"
"
    )
}

#[test]
fn max_surge_starts_each_new_pod_before_its_old_one_stops() {
    let c = Cluster::start(3);
    assert_eq!(
        c.apply(&daemon_set("1")).ok().trim(),
        "daemonset.apps/web created"
    );
    let old: BTreeSet<String> = c
        .wait_running(NS, "web-", 3)
        .into_iter()
        .map(|p| p.name)
        .collect();

    let watch = PodWatch::start(&c.target());
    assert_eq!(
        c.apply(&daemon_set("2")).ok().trim(),
        "daemonset.apps/web configured"
    );
    wait_for("every node to run only a new pod", timeout(), || {
        let pods = c.pods_named(NS, "web-")?;
        let names: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
        let nodes: BTreeSet<&str> = pods.iter().map(|p| p.node.as_str()).collect();
        if pods.len() == 3
            && nodes.len() == 3
            && names.is_disjoint(&old)
            && pods.iter().all(|p| p.phase == "Running" && p.ready)
        {
            Ok(())
        } else {
            Err(format!("{pods:?}"))
        }
    });
    watch.healthy().unwrap_or_else(|e| panic!("{e}"));

    // Replay the history revision by revision.
    let mut live: BTreeMap<String, PodState> = watch
        .initial()
        .into_iter()
        .filter(|p| p.namespace == NS && p.name.starts_with("web-"))
        .map(|p| (p.uid.clone(), p))
        .collect();
    let mut max_pods_on_a_node = 0;
    for ev in watch.events_of(NS, "web-") {
        if ev.kind == "DELETED" {
            live.remove(&ev.pod.uid);
        } else {
            live.insert(ev.pod.uid.clone(), ev.pod.clone());
        }
        let mut by_node: BTreeMap<&str, Vec<&PodState>> = BTreeMap::new();
        for p in live.values() {
            by_node.entry(p.node.as_str()).or_default().push(p);
        }
        for node in ["node1", "node2", "node3"] {
            let pods = by_node.get(node).cloned().unwrap_or_default();
            assert!(
                pods.iter().any(|p| p.is_running_ready()),
                "revision {}: {node} has no Running and Ready pod: {pods:?}",
                ev.rev
            );
            max_pods_on_a_node = max_pods_on_a_node.max(pods.len());
            assert!(pods.len() <= 2, "revision {}: {node}: {pods:?}", ev.rev);
        }
        // Nodes waiting for a new pod to become Ready beside a serving one: maxSurge.
        let waiting = by_node
            .values()
            .filter(|pods| {
                pods.iter().filter(|p| !p.terminating).count() == 2
                    && pods.iter().any(|p| !p.terminating && !p.ready)
            })
            .count();
        assert!(waiting <= 1, "revision {}: {by_node:?}", ev.rev);
    }
    assert_eq!(
        max_pods_on_a_node, 2,
        "no node ever ran its new pod beside the old one"
    );
}
