//! DaemonSet rolling updates a user can follow and that do not stall: the guide's
//! DaemonSet updated one node at a time with kubectl's `rollout status` lines; with
//! maxSurge every new pod is Ready before its old one stops (by the pods' own pids and
//! clocks); a node whose agent died does not hold the rollout back, and its pod is
//! updated once the agent returns, without another apply.

use std::collections::{BTreeMap, BTreeSet};
use twinset_e2e::{timeout, wait_for, Cluster, PodState, PodView};

const GUIDE_NS: &str = "kube-system";
const NODES: [&str; 4] = ["node1", "node2", "node3", "node4"];

/// The guide's DaemonSet manifest with its image replaced.
fn guide_with_image(image: &str) -> String {
    let path = twinset_e2e::repo_root().join("deploy/examples/daemonset.yaml");
    let text = std::fs::read_to_string(&path).expect("the guide's DaemonSet manifest");
    assert!(text.contains("image: datadog/agent:latest"), "{text}");
    text.replace("image: datadog/agent:latest", &format!("image: {image}"))
}

/// The controller-revision-hash label of a pod.
fn hash(p: &PodView) -> String {
    p.labels
        .get("controller-revision-hash")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// The image of a pod's first container.
fn image(p: &PodView) -> String {
    p.raw
        .pointer("/spec/containers/0/image")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// Nodes without a Running, Ready pod of the set at each revision of the history.
fn max_nodes_without_a_serving_pod(
    initial: &[PodState],
    events: &[twinset_e2e::PodEvent],
    namespace: &str,
    prefix: &str,
) -> usize {
    let mut live: BTreeMap<String, PodState> = initial
        .iter()
        .filter(|p| p.namespace == namespace && p.name.starts_with(prefix))
        .map(|p| (p.uid.clone(), p.clone()))
        .collect();
    let mut worst = 0;
    for ev in events {
        if ev.kind == "DELETED" {
            live.remove(&ev.pod.uid);
        } else {
            live.insert(ev.pod.uid.clone(), ev.pod.clone());
        }
        let serving: BTreeSet<&str> = live
            .values()
            .filter(|p| p.is_running_ready())
            .map(|p| p.node.as_str())
            .collect();
        worst = worst.max(NODES.iter().filter(|n| !serving.contains(**n)).count());
    }
    worst
}

#[test]
fn the_guides_daemonset_rolls_one_node_at_a_time_with_kubectls_status_lines() {
    let c = Cluster::start(4);
    let old = c.run_guide_daemonset(4);
    let old_uids: BTreeSet<String> = old.iter().map(|p| p.uid.clone()).collect();
    let watch = c.watch_pods();
    let out = c.apply(&guide_with_image("datadog/agent:7"));
    assert_eq!(out.ok().trim(), "daemonset.apps/node-monitor configured");
    let status = c.run(&[
        "rollout",
        "status",
        "ds/node-monitor",
        "-n",
        GUIDE_NS,
        "--timeout",
        "120s",
    ]);
    let text = status.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last().copied(),
        Some("daemon set \"node-monitor\" successfully rolled out"),
        "{text}"
    );
    // Every earlier line is one of kubectl's DaemonSet progress lines.
    let progress = regex_free_progress(&lines[..lines.len() - 1]);
    assert!(progress.is_ok(), "{}\n{text}", progress.unwrap_err());

    let pods = c.wait_running(GUIDE_NS, "node-monitor-", 4);
    let nodes: BTreeSet<&str> = pods.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(nodes, NODES.into_iter().collect(), "{pods:?}");
    for p in &pods {
        assert!(!old_uids.contains(&p.uid), "{} was not replaced", p.name);
        assert_eq!(image(p), "datadog/agent:7", "{}", p.name);
    }
    watch.healthy().unwrap_or_else(|e| panic!("{e}"));
    // maxUnavailable 1 (the default): never more than one node without a serving pod.
    let worst = max_nodes_without_a_serving_pod(
        &watch.initial(),
        &watch.events_of(GUIDE_NS, "node-monitor-"),
        GUIDE_NS,
        "node-monitor-",
    );
    assert_eq!(
        worst,
        1,
        "pods are replaced one node at a time:\n{}",
        watch.dump(GUIDE_NS, "node-monitor-")
    );

    // Both templates are revisions of the set; the pods carry the newest one's hash.
    let revs = c
        .get_json(&["controllerrevisions", "-n", GUIDE_NS])
        .expect("revisions");
    let items = revs["items"].as_array().cloned().unwrap_or_default();
    let mut numbered: Vec<(i64, String)> = items
        .iter()
        .map(|r| {
            (
                r["revision"].as_i64().unwrap_or(0),
                r["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    numbered.sort();
    assert_eq!(
        numbered.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2],
        "{revs}"
    );
    for p in &pods {
        assert_eq!(
            format!("node-monitor-{}", hash(p)),
            numbered[1].1,
            "{} runs the newest revision",
            p.name
        );
    }
}

/// Checks that each line is kubectl's: "Waiting for daemon set spec update to be
/// observed...", "... N out of M new pods have been updated..." or "... N of M updated
/// pods are available...".
fn regex_free_progress(lines: &[&str]) -> Result<(), String> {
    const PREFIX: &str = "Waiting for daemon set \"node-monitor\" rollout to finish: ";
    for line in lines {
        if *line == "Waiting for daemon set spec update to be observed..." {
            continue;
        }
        let Some(rest) = line.strip_prefix(PREFIX) else {
            return Err(format!("not kubectl's line: {line:?}"));
        };
        let words: Vec<&str> = rest.split(' ').collect();
        let ok = match words.as_slice() {
            [n, "out", "of", "4", "new", "pods", "have", "been", "updated..."]
            | [n, "of", "4", "updated", "pods", "are", "available..."] => n.parse::<u32>().is_ok(),
            _ => false,
        };
        if !ok {
            return Err(format!("not kubectl's line: {line:?}"));
        }
    }
    Ok(())
}

/// A DaemonSet whose container writes `start|stop <pod> <pid> <ns since epoch>` lines
/// into `<log>/<node>` (a hostPath) and is Ready once its start line is there, with
/// maxSurge 1 and maxUnavailable 0.
fn surge_logger(version: &str, log: &std::path::Path) -> String {
    // `$$$$` is the shell's `$$` after Kubernetes' `$$` escape in commands.
    // Mounted at its own path, so the script and the probe see it whether or not the
    // pod's mounts are isolated.
    let script = r#"echo "start $POD_NAME $$$$ $(date +%s%N)" >> "LOG/$NODE_NAME"
trap 'echo "stop $POD_NAME $$$$ $(date +%s%N)" >> "LOG/$NODE_NAME"; exit 0' TERM
while :; do sleep 0.2 & wait $!; done"#
        .replace("LOG", &log.display().to_string());
    let probe = format!("grep -q \"start $POD_NAME \" {}/$NODE_NAME", log.display());
    format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: logger
  namespace: default
spec:
  selector:
    matchLabels:
      app: logger
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: logger
    spec:
      terminationGracePeriodSeconds: 5
      volumes:
      - name: log
        hostPath:
          path: {log}
      containers:
      - name: main
        image: busybox
        command: [\"sh\", \"-c\", {script:?}]
        # Ready once its start line is written (a pod without a probe is Ready as soon as
        # its process exists, before the script has run a line).
        readinessProbe:
          exec:
            command: [\"sh\", \"-c\", {probe:?}]
          periodSeconds: 1
        env:
        - name: VERSION
          value: \"{version}\"
        volumeMounts:
        - name: log
          mountPath: {log}
",
        log = log.display()
    )
}

/// One line of the logger's file.
#[derive(Debug, Clone)]
struct Mark {
    stop: bool,
    pod: String,
    pid: u32,
    at_ns: u128,
}

fn marks(log: &std::path::Path, node: &str) -> Vec<Mark> {
    std::fs::read_to_string(log.join(node))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                [kind, pod, pid, at] => Some(Mark {
                    stop: *kind == "stop",
                    pod: pod.to_string(),
                    pid: pid.parse().ok()?,
                    at_ns: at.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn with_max_surge_each_new_pod_is_ready_before_its_old_one_stops() {
    let c = Cluster::start(4);
    let log = c.dir().join("surge-log");
    std::fs::create_dir_all(&log).expect("log dir");
    assert_eq!(
        c.apply(&surge_logger("1", &log)).ok().trim(),
        "daemonset.apps/logger created"
    );
    let old: BTreeMap<String, String> = c
        .wait_running("default", "logger-", 4)
        .into_iter()
        .map(|p| (p.node.clone(), p.name.clone()))
        .collect();
    let watch = c.watch_pods();
    assert_eq!(
        c.apply(&surge_logger("2", &log)).ok().trim(),
        "daemonset.apps/logger configured"
    );
    let status = c.run(&["rollout", "status", "ds/logger", "--timeout", "120s"]);
    assert!(
        status
            .ok()
            .trim_end()
            .ends_with("daemon set \"logger\" successfully rolled out"),
        "{status}"
    );
    let new: BTreeMap<String, String> = c
        .wait_running("default", "logger-", 4)
        .into_iter()
        .map(|p| (p.node.clone(), p.name.clone()))
        .collect();
    // Every old pod's stop line is written before its pod is gone.
    wait_for("every old pod to log its stop", timeout(), || {
        let missing: Vec<&String> = old
            .iter()
            .filter(|(node, pod)| !marks(&log, node).iter().any(|m| m.stop && &m.pod == *pod))
            .map(|(_, pod)| pod)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            let logs: Vec<String> = NODES
                .iter()
                .map(|n| std::fs::read_to_string(log.join(n)).unwrap_or_default())
                .collect();
            Err(format!("no stop line yet for {missing:?}; logs: {logs:?}"))
        }
    });
    let events = watch.events_of("default", "logger-");
    for node in NODES {
        let (old_pod, new_pod) = (&old[node], &new[node]);
        let m = marks(&log, node);
        let started = m
            .iter()
            .find(|x| !x.stop && &x.pod == new_pod)
            .unwrap_or_else(|| panic!("{node}: no start of {new_pod}: {m:?}"));
        let stopped = m
            .iter()
            .find(|x| x.stop && &x.pod == old_pod)
            .unwrap_or_else(|| panic!("{node}: no stop of {old_pod}: {m:?}"));
        assert_ne!(started.pid, stopped.pid, "{node}: two processes");
        assert!(
            started.at_ns < stopped.at_ns,
            "{node}: the new pod's process ({}) started before the old one's ({}) stopped",
            started.pid,
            stopped.pid
        );
        assert!(
            !m.iter().any(|x| x.stop && x.pid == started.pid),
            "{node}: the new process still runs"
        );
        // By the store's order: the new pod was Ready before the old one's deletion began.
        let ready_rev = events
            .iter()
            .find(|e| &e.pod.name == new_pod && e.pod.is_running_ready())
            .map(|e| e.rev)
            .unwrap_or_else(|| panic!("{node}: {new_pod} never Ready in the watch"));
        let deleting_rev = events
            .iter()
            .find(|e| &e.pod.name == old_pod && (e.pod.terminating || e.kind == "DELETED"))
            .map(|e| e.rev)
            .unwrap_or_else(|| panic!("{node}: {old_pod} never deleted in the watch"));
        assert!(
            ready_rev < deleting_rev,
            "{node}: {new_pod} Ready at revision {ready_rev}, {old_pod} deleted from {deleting_rev}:\n{}",
            watch.dump("default", "logger-")
        );
    }
}

#[test]
fn a_dead_agent_does_not_stall_the_rollout_and_its_node_catches_up_when_it_returns() {
    let mut c = Cluster::start(4);
    let v1 = twinset_e2e::sleep_daemonset(
        "web",
        "default",
        "        - name: V\n          value: \"1\"\n",
    );
    assert_eq!(c.apply(&v1).ok().trim(), "daemonset.apps/web created");
    let before = c.wait_running("default", "web-", 4);
    let old_hash = hash(&before[0]);
    c.kill_agent("node4");
    wait_for("node4 to be Unknown", timeout(), || {
        let t = c.table(&["get", "nodes"]);
        let row = t.row("node4").ok_or("no node4")?;
        match t.cell(row, "STATUS") {
            s if s.starts_with("NotReady") => Ok(()),
            s => Err(format!("node4 is {s}")),
        }
    });
    let v2 = v1.replace("value: \"1\"", "value: \"2\"");
    assert_eq!(c.apply(&v2).ok().trim(), "daemonset.apps/web configured");
    let status = c.run(&["rollout", "status", "ds/web", "--timeout", "120s"]);
    assert_eq!(
        status.ok().lines().last(),
        Some(
            "daemon set \"web\" successfully rolled out on every reachable node; \
             1 unreachable node waits for the update: node4"
        ),
        "{status}"
    );
    let pods = c.pods_named("default", "web-").expect("pods");
    for p in pods.iter().filter(|p| !p.terminating) {
        if p.node == "node4" {
            assert_eq!(hash(p), old_hash, "node4's pod is left as it was");
        } else {
            assert!(p.is_running_ready(), "{p:?}");
            assert_ne!(hash(p), old_hash, "{} on {} is updated", p.name, p.node);
        }
    }
    let describe = c.run_ok(&["describe", "ds", "web"]);
    assert!(
        describe.lines().any(|l| l.starts_with("Nodes Waiting:")
            && l.ends_with("1 unreachable node waits for the update: node4")),
        "{describe}"
    );

    // The agent returns: its pod is replaced without another apply.
    c.spawn_agent("node4", &[]);
    wait_for("node4's pod to be updated", timeout(), || {
        let pods = c.pods_named("default", "web-")?;
        let done = pods.len() == 4
            && pods
                .iter()
                .all(|p| p.is_running_ready() && hash(p) != old_hash);
        if done {
            Ok(())
        } else {
            Err(format!("{pods:?}"))
        }
    });
    let status = c.run(&["rollout", "status", "ds/web", "--watch=false"]);
    assert_eq!(
        status.ok().trim(),
        "daemon set \"web\" successfully rolled out"
    );
}

#[test]
fn a_set_deleted_with_its_pods_orphaned_is_recreated_with_its_history() {
    let c = Cluster::start(2);
    let v1 = twinset_e2e::sleep_daemonset(
        "web",
        "default",
        "        - name: V\n          value: \"1\"\n",
    );
    let v2 = v1.replace("value: \"1\"", "value: \"2\"");
    assert_eq!(c.apply(&v1).ok().trim(), "daemonset.apps/web created");
    c.wait_running("default", "web-", 2);
    assert_eq!(c.apply(&v2).ok().trim(), "daemonset.apps/web configured");
    let status = c.run(&["rollout", "status", "ds/web", "--timeout", "120s"]);
    assert!(
        status.ok().trim_end().ends_with("successfully rolled out"),
        "{status}"
    );
    let pods: BTreeSet<String> = c
        .wait_running("default", "web-", 2)
        .into_iter()
        .map(|p| p.uid)
        .collect();
    let revisions = |c: &Cluster| -> Vec<(i64, String)> {
        let list = c.get_json(&["controllerrevisions"]).expect("revisions");
        let mut out: Vec<(i64, String)> = list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let owner = r["metadata"]["ownerReferences"][0]["uid"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                (r["revision"].as_i64().unwrap_or(0), owner)
            })
            .collect();
        out.sort();
        out
    };
    let before = revisions(&c);
    assert_eq!(before.len(), 2, "{before:?}");

    let out = c.run(&["delete", "ds", "web", "--cascade=orphan"]);
    assert_eq!(out.ok().trim(), "daemonset.apps \"web\" deleted");
    wait_for(
        "the revisions to be orphaned",
        timeout(),
        || match revisions(&c) {
            r if r.iter().all(|(_, owner)| owner.is_empty()) => Ok(()),
            r => Err(format!("{r:?}")),
        },
    );

    // The same set again: it adopts the pods and the history, and numbers on from it.
    assert_eq!(c.apply(&v2).ok().trim(), "daemonset.apps/web created");
    let uid = c.get_json(&["ds", "web"]).expect("ds")["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    wait_for(
        "the new set to own both revisions",
        timeout(),
        || match revisions(&c) {
            r if r.len() == 2
                && r.iter().map(|x| x.0).collect::<Vec<_>>() == [1, 2]
                && r.iter().all(|(_, owner)| *owner == uid) =>
            {
                Ok(())
            }
            r => Err(format!("{r:?}")),
        },
    );
    let history = c.run_ok(&["rollout", "history", "ds/web"]);
    let numbers: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(numbers, ["1", "2"], "{history}");
    // The running pods (already of revision 2) were adopted, not replaced.
    let now: BTreeSet<String> = c
        .wait_running("default", "web-", 2)
        .into_iter()
        .map(|p| p.uid)
        .collect();
    assert_eq!(now, pods, "the adopted pods keep running");
}
