//! Gone connections: with the control plane killed the pods keep running; when it
//! comes back the agents reconnect by themselves and nothing was restarted.

use std::collections::BTreeMap;
use std::time::Duration;

use twinset_e2e::json;
use twinset_e2e::{holds_for, timeout, wait_for, Cluster, ProcId};

const NS: &str = "kube-system";

#[test]
fn pods_keep_running_without_the_control_plane_and_agents_reconnect() {
    let mut c = Cluster::start(3);
    let pods = c.run_guide_daemonset(3);
    let procs: BTreeMap<String, ProcId> = pods
        .iter()
        .map(|p| (p.name.clone(), c.wait_pod_process(NS, &p.name)))
        .collect();
    let agents: Vec<ProcId> = ["node1", "node2", "node3"]
        .iter()
        .map(|n| ProcId::of(c.agent_pid(n).expect("agent pid")).expect("agent alive"))
        .collect();

    c.kill_control_plane();

    // The CLI says, in one line, that it cannot reach the server.
    let out = c.run(&["get", "pods", "-n", NS]);
    let err = out.failed().trim().to_string();
    assert_eq!(err.lines().count(), 1, "{out}");

    // Pods and agents keep running while the agents retry (heartbeat every 200ms).
    holds_for(
        "pods and agents survive the control plane's death",
        Duration::from_secs(2),
        || {
            if let Some((name, _)) = procs.iter().find(|(_, p)| !p.is_alive()) {
                return Err(format!("the process of {name} died"));
            }
            if agents.iter().any(|a| !a.is_alive()) {
                return Err("an agent exited".into());
            }
            Ok(())
        },
    );

    c.restart_control_plane();
    c.wait_nodes_ready(&["node1".into(), "node2".into(), "node3".into()]);
    let after = c.wait_running(NS, "node-monitor-", 3);
    for p in &after {
        let before = pods.iter().find(|q| q.name == p.name);
        assert!(
            before.is_some_and(|b| b.uid == p.uid && b.node == p.node && b.ip == p.ip),
            "{} is new: {}",
            p.name,
            json::summary(&after)
        );
        assert_eq!(p.restarts, 0, "{} restarted", p.name);
    }
    for (name, p) in &procs {
        assert!(p.is_alive(), "the process of {name} was replaced");
        assert_eq!(
            c.pod_process(NS, name).as_ref(),
            Ok(p),
            "{name} runs under another process now"
        );
    }
    assert!(
        agents.iter().all(ProcId::is_alive),
        "an agent was restarted"
    );

    // The assignment streams are live again: a new pod for node2 starts.
    let out = c.apply(
        "apiVersion: v1
kind: Pod
metadata:
  name: after-reconnect
  namespace: default
spec:
  nodeName: node2
  containers:
  - name: main
    image: busybox
    command: [\"sleep\", \"3600\"]
",
    );
    assert_eq!(out.ok().trim(), "pod/after-reconnect created");
    let p = c.wait_running("default", "after-reconnect", 1);
    assert_eq!(p[0].node, "node2");
    // Status reports flow again too: the DaemonSet counts its pods.
    wait_for("ds status 3 ready after the restart", timeout(), || {
        let v = c.get_json(&["ds", "node-monitor", "-n", NS])?;
        match json::int_at(&v, "/status/numberReady") {
            Some(3) => Ok(()),
            n => Err(format!("numberReady {n:?}")),
        }
    });
}
