//! A node whose pods add up to more than a gRPC message's default limit (4 MiB) still
//! resyncs: after a control-plane SIGKILL and restart (no watch history left, so every
//! agent needs a fresh snapshot) new pods run and deleted ones go.

use twinset_e2e::{timeout, wait_for, Cluster};

const NS: &str = "kube-system";

/// A DaemonSet of `twinset/sleep` pods whose container has `env` (YAML list items).
fn daemonset(name: &str, env: &str) -> String {
    twinset_e2e::sleep_daemonset(name, NS, env)
}

/// A DaemonSet whose pod template carries 14 environment values of 100 KiB each
/// (~1.4 MiB: under the 1.5 MiB request limit; each value under the kernel's 128 KiB
/// per-string bound of exec).
fn big_daemonset(name: &str) -> String {
    let mut env = String::new();
    for i in 0..14 {
        env.push_str(&format!(
            "        - name: PAD_{i}\n          value: \"{}\"\n",
            "p".repeat(100 * 1024)
        ));
    }
    daemonset(name, &env)
}

fn small_daemonset(name: &str) -> String {
    daemonset(name, "        - name: SMALL\n          value: \"1\"\n")
}

#[test]
fn nodes_with_more_than_four_mib_of_pods_resync_after_a_control_plane_restart() {
    let mut c = Cluster::start(2);
    for name in ["big-a", "big-b", "big-c"] {
        let out = c.apply(&big_daemonset(name));
        assert!(out.stdout.contains("created"), "{out}");
    }
    for name in ["big-a", "big-b", "big-c"] {
        c.wait_running(NS, name, 2);
    }

    c.kill_control_plane();
    c.restart_control_plane();

    // A new set's pods run on both nodes: both agents have their stream again.
    let out = c.apply(&small_daemonset("after-restart"));
    assert!(out.stdout.contains("created"), "{out}");
    let pods = c.wait_running(NS, "after-restart", 2);
    let mut nodes: Vec<_> = pods.iter().map(|p| p.node.clone()).collect();
    nodes.sort();
    assert_eq!(nodes, ["node1", "node2"]);

    // A deleted set's pods go: the agents stopped them and reported it.
    c.run_ok(&["delete", "ds", "big-b", "-n", NS]);
    wait_for("big-b's pods gone", timeout(), || {
        let left = c.pods_named(NS, "big-b")?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{} left", left.len()))
        }
    });
    // The others keep running.
    assert_eq!(c.wait_running(NS, "big-a", 2).len(), 2);
}
