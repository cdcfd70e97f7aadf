//! Deleting the DaemonSet: cascading (every monitor process stops, pods gone) and
//! `--cascade=orphan` (pods stay and keep running); `delete -f`; deleting a pod.

use std::time::Duration;

use twinset_e2e::json::{self, PodView};
use twinset_e2e::{holds_for, timeout, wait_for, Cluster, ProcId, GUIDE_DAEMONSET};

const NS: &str = "kube-system";

fn processes(c: &Cluster, pods: &[PodView]) -> Vec<(String, ProcId)> {
    pods.iter()
        .map(|p| (p.name.clone(), c.wait_pod_process(NS, &p.name)))
        .collect()
}

fn no_resources(c: &Cluster, args: &[&str], ns: &str) {
    let out = c.run(args);
    assert!(out.success(), "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains(&format!("No resources found in {ns} namespace.")),
        "{out}"
    );
}

#[test]
fn delete_ds_stops_every_monitor_process_and_removes_the_pods() {
    let c = Cluster::start(3);
    let pods = c.run_guide_daemonset(3);
    let procs = processes(&c, &pods);

    let out = c.run(&["delete", "ds", "node-monitor", "-n", NS]);
    assert_eq!(out.ok().trim(), "daemonset.apps \"node-monitor\" deleted");

    wait_for("every monitor process to exit", timeout(), || {
        let alive: Vec<&String> = procs
            .iter()
            .filter(|(_, p)| p.is_alive())
            .map(|(n, _)| n)
            .collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!("alive: {alive:?}"))
        }
    });
    wait_for("the monitor pods to be gone", timeout(), || {
        let left = c.pods_named(NS, "node-monitor-")?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(json::summary(&left))
        }
    });
    no_resources(&c, &["get", "ds", "-n", NS], NS);
    no_resources(&c, &["get", "pods", "-o", "wide", "-n", NS], NS);
    let missing = c.run(&["get", "ds", "node-monitor", "-n", NS]);
    let err = missing.failed();
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): daemonsets.apps \"node-monitor\" not found",
        "{missing}"
    );
}

#[test]
fn delete_ds_with_cascade_orphan_keeps_the_pods_running() {
    let c = Cluster::start(3);
    let pods = c.run_guide_daemonset(3);
    let procs = processes(&c, &pods);

    let out = c.run(&["delete", "ds", "node-monitor", "-n", NS, "--cascade=orphan"]);
    assert_eq!(out.ok().trim(), "daemonset.apps \"node-monitor\" deleted");
    wait_for("the DaemonSet to be gone", timeout(), || {
        let out = c.run(&["get", "ds", "node-monitor", "-n", NS]);
        if out.success() {
            Err("still there".into())
        } else {
            Ok(())
        }
    });
    holds_for(
        "the orphaned pods keep running",
        Duration::from_secs(2),
        || {
            let now = c.pods_named(NS, "node-monitor-")?;
            for p in &pods {
                let Some(q) = now.iter().find(|q| q.uid == p.uid) else {
                    return Err(format!("{} was deleted: {}", p.name, json::summary(&now)));
                };
                if !q.is_running_ready() {
                    return Err(format!(
                        "{} is no longer Running: {}",
                        p.name,
                        json::summary(&now)
                    ));
                }
            }
            match procs.iter().find(|(_, p)| !p.is_alive()) {
                Some((name, _)) => Err(format!("process of {name} exited")),
                None => Ok(()),
            }
        },
    );

    // The orphans can still be deleted one by one; their processes stop.
    let (name, p) = &procs[0];
    let out = c.run(&["delete", "pod", name, "-n", NS]);
    assert_eq!(out.ok().trim(), format!("pod \"{name}\" deleted"));
    wait_for("the deleted pod's process to exit", timeout(), || {
        if p.is_alive() {
            Err("alive".into())
        } else {
            Ok(())
        }
    });
    wait_for("the deleted pod to be gone", timeout(), || {
        let now = c.pods_named(NS, "node-monitor-")?;
        if now.iter().any(|q| &q.name == name) {
            Err(json::summary(&now))
        } else {
            Ok(())
        }
    });
    assert!(
        procs[1].1.is_alive() && procs[2].1.is_alive(),
        "other orphans were stopped"
    );
}

#[test]
fn delete_f_removes_what_the_file_describes() {
    let c = Cluster::start(1);
    let pods = c.run_guide_daemonset(1);
    let procs = processes(&c, &pods);
    let file = twinset_e2e::repo_root().join(GUIDE_DAEMONSET);
    let out = c.run(&["delete", "-f", &file.to_string_lossy()]);
    assert_eq!(out.ok().trim(), "daemonset.apps \"node-monitor\" deleted");
    wait_for("the monitor process to exit", timeout(), || {
        if procs[0].1.is_alive() {
            Err("alive".into())
        } else {
            Ok(())
        }
    });
    wait_for("the monitor pod to be gone", timeout(), || {
        let left = c.pods_named(NS, "node-monitor-")?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(json::summary(&left))
        }
    });
    // Deleting what does not exist is a one-line NotFound error.
    let again = c.run(&["delete", "ds", "node-monitor", "-n", NS]);
    let err = again.failed();
    assert_eq!(err.trim().lines().count(), 1, "{again}");
    assert!(err.contains("not found"), "{again}");
}

#[test]
fn a_pod_ignoring_sigterm_is_killed_after_its_grace_period() {
    let c = Cluster::start(1);
    let out = c.apply(
        "apiVersion: v1
kind: Pod
metadata:
  name: stubborn
  namespace: default
spec:
  nodeName: node1
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox
    command: [\"sh\", \"-c\", \"trap '' TERM; while :; do sleep 1; done\"]
",
    );
    assert_eq!(out.ok().trim(), "pod/stubborn created");
    c.wait_running("default", "stubborn", 1);
    let p = c.wait_pod_process("default", "stubborn");
    let t0 = std::time::Instant::now();
    let out = c.run(&["delete", "pod", "stubborn"]);
    assert_eq!(out.ok().trim(), "pod \"stubborn\" deleted");
    // While the grace period runs the pod shows Terminating (unless it is already gone).
    let t = twinset_e2e::Table::parse(&c.run_ok(&["get", "pods"]));
    if let Some(row) = t.row("stubborn") {
        assert_eq!(t.cell(row, "STATUS"), "Terminating", "{t:?}");
    }
    wait_for("the stubborn process to be killed", timeout(), || {
        if p.is_alive() {
            Err("alive".into())
        } else {
            Ok(())
        }
    });
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500),
        "SIGKILL came {elapsed:?} after delete, before the 2s grace period"
    );
    wait_for("the pod object to be removed", timeout(), || {
        let left = c.pods_named("default", "stubborn")?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(json::summary(&left))
        }
    });
}
