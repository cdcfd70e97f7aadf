//! A node whose agent cannot sync its pod assignments is NotReady saying why, not Ready;
//! once it syncs again it is Ready again.
//!
//! The failure is real: node1's agent runs with a receive limit (64 KiB, the hidden
//! `--assignment-receive-limit`) below the size of one pod of a DaemonSet (~200 KiB of
//! environment), so the assignment that carries that pod can never be received. Deleting
//! the set and its stuck pod lets the agent's next fresh snapshot through.

use serde_json::Value;
use twinset_e2e::{json, timeout, wait_for, Cluster};

const NS: &str = "kube-system";

/// A DaemonSet of `twinset/sleep` pods whose container carries `pad_kib` KiB of
/// environment in two values.
fn daemonset(name: &str, pad_kib: usize) -> String {
    let pad = "p".repeat(pad_kib * 1024 / 2);
    let env = format!(
        "        - name: PAD_A\n          value: \"{pad}\"\n        - name: PAD_B\n          value: \"{pad}\"\n"
    );
    twinset_e2e::sleep_daemonset(name, NS, &env)
}

/// The Ready condition of `node`: (status, reason, message).
fn ready(c: &Cluster, node: &str) -> Result<(String, String, String), String> {
    let n = c.get_json(&["node", node])?;
    n.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| json::str_at(c, "/type") == "Ready")
        .map(|c| {
            (
                json::str_at(c, "/status").to_string(),
                json::str_at(c, "/reason").to_string(),
                json::str_at(c, "/message").to_string(),
            )
        })
        .ok_or_else(|| format!("node {node} has no Ready condition"))
}

/// The STATUS column of `get nodes` for `node`.
fn status_column(c: &Cluster, node: &str) -> String {
    let t = c.table(&["get", "nodes"]);
    t.row(node)
        .map(|r| t.cell(r, "STATUS").to_string())
        .unwrap_or_else(|| panic!("no row for {node} in get nodes"))
}

#[test]
fn a_node_that_cannot_sync_its_assignments_is_not_ready_until_it_syncs() {
    let mut c = Cluster::control_plane_only();
    c.add_agent(
        "node1",
        &["--assignment-receive-limit", "64Ki", "--sync-grace", "2s"],
    );
    c.add_agent("node2", &["--sync-grace", "2s"]);

    let out = c.apply(&daemonset("big", 200));
    assert!(out.stdout.contains("created"), "{out}");
    // node2 receives and runs its pod; node1 cannot receive its own.
    wait_for("big's pod Running on node2", timeout(), || {
        let pods = c.pods_named(NS, "big")?;
        if pods
            .iter()
            .any(|p| p.node == "node2" && p.is_running_ready())
        {
            Ok(())
        } else {
            Err(json::summary(&pods))
        }
    });

    wait_for(
        "node1 NotReady because it cannot sync",
        timeout(),
        || match ready(&c, "node1")? {
            (s, r, m) if s == "False" && r == "AssignmentsNotSynced" => Ok(m),
            other => Err(format!("Ready is {other:?}")),
        },
    );
    let (_, _, message) = ready(&c, "node1").unwrap();
    assert!(
        message.starts_with("node agent cannot sync its pod assignments: an assignment of ")
            && message.ends_with("bytes is over the agent's receive limit of 65536 bytes"),
        "{message}"
    );
    assert_eq!(status_column(&c, "node1"), "NotReady");
    assert_eq!(status_column(&c, "node2"), "Ready");
    assert_eq!(ready(&c, "node2").unwrap().0, "True");
    let described = c.run_ok(&["describe", "node", "node1"]);
    assert!(
        described.contains("AssignmentsNotSynced") && described.contains(&message),
        "{described}"
    );
    // Heartbeats still come: the node is NotReady, not Unknown.
    assert!(!described.contains("NodeStatusUnknown"), "{described}");

    // Remove what cannot be received: the set, and node1's pod (which node1's agent
    // will never stop and report, since it never got it).
    c.run_ok(&["delete", "ds", "big", "-n", NS, "--wait=false"]);
    let stuck: Vec<String> = c
        .pods_named(NS, "big")
        .unwrap()
        .into_iter()
        .filter(|p| p.node == "node1")
        .map(|p| p.name)
        .collect();
    assert_eq!(stuck.len(), 1, "node1's pod: {stuck:?}");
    c.run_ok(&[
        "delete",
        "pod",
        &stuck[0],
        "-n",
        NS,
        "--grace-period=0",
        "--force",
        "--wait=false",
    ]);

    wait_for("node1 Ready again", timeout(), || {
        match ready(&c, "node1")? {
            (s, r, _) if s == "True" && r == "KubeletReady" => Ok(()),
            other => Err(format!("Ready is {other:?}")),
        }
    });
    assert_eq!(status_column(&c, "node1"), "Ready");
    // And it is in sync for real: a new set's pod runs there.
    let out = c.apply(&daemonset("small", 1));
    assert!(out.stdout.contains("created"), "{out}");
    let pods = c.wait_running(NS, "small", 2);
    assert!(pods.iter().any(|p| p.node == "node1"), "{pods:?}");
}
