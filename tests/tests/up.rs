//! `twinset up`: a local cluster of separate processes; Ctrl-C (SIGINT) stops every
//! one of them and every pod process. `up -d` + `down` for a detached cluster.

use std::collections::BTreeSet;

use nix::sys::signal::Signal;
use twinset_e2e::json::{self, str_at, PodView};
use twinset_e2e::procs::{self, ProcId};
use twinset_e2e::{free_port, repo_root, timeout, wait_for, Sandbox, GUIDE_DAEMONSET};

fn ready_nodes(s: &Sandbox) -> Result<BTreeSet<String>, String> {
    let out = s.run(&["get", "nodes", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.result()?).map_err(|e| e.to_string())?;
    Ok(json::items(&v)
        .iter()
        .filter(|n| {
            n.pointer("/status/conditions")
                .and_then(|c| c.as_array())
                .into_iter()
                .flatten()
                .any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True")
        })
        .map(|n| str_at(n, "/metadata/name").to_string())
        .collect())
}

fn wait_ready(s: &Sandbox, n: usize) {
    let want: BTreeSet<String> = (1..=n).map(|i| format!("node{i}")).collect();
    wait_for(
        &format!("`twinset up` to have {n} Ready nodes"),
        timeout(),
        || {
            let ready = ready_nodes(s)?;
            if ready == want {
                Ok(())
            } else {
                Err(format!("ready: {ready:?}"))
            }
        },
    );
}

fn monitor_pods(s: &Sandbox, n: usize) -> Vec<PodView> {
    wait_for(&format!("{n} node-monitor pods Running"), timeout(), || {
        let out = s.run(&["get", "pods", "-n", "kube-system", "-o", "json"]);
        let v: serde_json::Value =
            serde_json::from_str(out.result()?).map_err(|e| e.to_string())?;
        let pods: Vec<PodView> = json::items(&v).iter().map(PodView::from_json).collect();
        if pods.len() == n && pods.iter().all(PodView::is_running_ready) {
            Ok(pods)
        } else {
            Err(json::summary(&pods))
        }
    })
}

/// Live processes whose POD_NAME is one of `names` (any namespace).
fn pod_processes(names: &[String]) -> Vec<ProcId> {
    procs::all()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            procs::environ(p.pid)
                .get("POD_NAME")
                .is_some_and(|n| names.contains(n))
        })
        .map(|p| p.id())
        .collect()
}

/// Every live process that uses the sandbox dir (cwd, command line, open files).
fn processes_in(dir: &std::path::Path) -> Vec<ProcId> {
    let me = std::process::id() as i32;
    procs::all()
        .into_iter()
        .filter(|p| p.pid != me && p.state != 'Z' && procs::references_dir(p.pid, dir))
        .map(|p| p.id())
        .collect()
}

fn wait_all_gone(what: &str, ids: &[ProcId]) {
    wait_for(what, timeout(), || {
        let alive: Vec<String> = ids
            .iter()
            .filter(|p| p.is_alive())
            .map(|p| format!("{} {:?}", p.pid, procs::cmdline(p.pid)))
            .collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!("still alive: {alive:?}"))
        }
    });
}

#[test]
fn up_then_sigint_leaves_no_process_behind() {
    let mut s = Sandbox::new();
    let port = free_port();
    let data = s.dir().join("cluster");
    let up = s.spawn(
        "up",
        &[
            "up",
            "--nodes",
            "3",
            "--data-dir",
            &data.to_string_lossy(),
            "--port",
            &port.to_string(),
        ],
    );
    wait_ready(&s, 3);

    // The client found the cluster through $HOME/.twinset/config: a kubeconfig with
    // the https:// server and the admin's certificate, readable by its owner only.
    let path = s.home().join(".twinset").join("config");
    let text = std::fs::read_to_string(&path).expect("$HOME/.twinset/config");
    let config = twinset_proto::kubeconfig::Kubeconfig::parse(&text).expect("a kubeconfig");
    assert_eq!(config.server, format!("https://127.0.0.1:{port}"));
    assert!(
        config.credentials.identity.is_some(),
        "an admin certificate"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path)
        .expect("config")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the config holds a key");
    assert!(
        data.join("cluster.json").is_file(),
        "up did not write {}/cluster.json",
        data.display()
    );

    // Separate OS processes of the same executable: a control plane and 3 agents.
    let family = procs::descendants(&[up]);
    let bin = std::fs::canonicalize(s.bin()).expect("canonical binary path");
    let twinsets: Vec<&procs::Stat> = family
        .iter()
        .filter(|p| std::fs::read_link(format!("/proc/{}/exe", p.pid)).is_ok_and(|e| e == bin))
        .collect();
    let roles: Vec<String> = twinsets
        .iter()
        .filter_map(|p| procs::cmdline(p.pid).get(1).cloned())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| *r == "control-plane").count(),
        1,
        "roles: {roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| *r == "agent").count(),
        3,
        "roles: {roles:?}"
    );

    let out = s.run(&[
        "apply",
        "-f",
        &repo_root().join(GUIDE_DAEMONSET).to_string_lossy(),
    ]);
    assert_eq!(out.ok().trim(), "daemonset.apps/node-monitor created");
    let pods = monitor_pods(&s, 3);
    let names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
    let pod_procs = wait_for("the 3 monitor processes", timeout(), || {
        let p = pod_processes(&names);
        let distinct: BTreeSet<String> = p
            .iter()
            .filter_map(|id| procs::environ(id.pid).get("POD_NAME").cloned())
            .collect();
        if distinct.len() == 3 {
            Ok(p)
        } else {
            Err(format!("found processes of {distinct:?}"))
        }
    });

    let mut everything: Vec<ProcId> = procs::descendants(&[up]).iter().map(|p| p.id()).collect();
    everything.extend(pod_procs.iter().copied());
    everything.extend(ProcId::of(up));
    s.remember(everything.iter().copied());

    procs::signal(up, Signal::SIGINT).expect("send SIGINT to twinset up");
    let status = wait_for("`twinset up` to exit after SIGINT", timeout(), || {
        s.try_wait(up).ok_or("running".to_string())
    });
    wait_all_gone("every twinset and pod process to exit", &everything);
    let left = processes_in(s.dir());
    assert!(
        left.is_empty(),
        "processes still use {}: {left:?}",
        s.dir().display()
    );
    assert!(
        status.success() || status.code() == Some(130),
        "twinset up exited with {status} after SIGINT"
    );
}

#[test]
fn up_detached_then_down() {
    let mut s = Sandbox::new();
    let port = free_port();
    let data = s.dir().join("cluster");
    let d = data.to_string_lossy().into_owned();
    let out = s.run(&[
        "up",
        "-d",
        "--nodes",
        "2",
        "--data-dir",
        &d,
        "--port",
        &port.to_string(),
    ]);
    assert!(out.success(), "up -d: {out}");
    // `up -d` returns once the nodes are Ready.
    let ready = ready_nodes(&s).expect("get nodes");
    assert_eq!(
        ready,
        BTreeSet::from(["node1".to_string(), "node2".to_string()]),
        "{out}"
    );
    let cluster: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("cluster.json")).expect("cluster.json"),
    )
    .expect("JSON");
    assert_eq!(
        str_at(&cluster, "/server"),
        format!("https://127.0.0.1:{port}"),
        "{cluster}"
    );

    let out = s.run(&[
        "apply",
        "-f",
        &repo_root().join(GUIDE_DAEMONSET).to_string_lossy(),
    ]);
    out.ok();
    let pods = monitor_pods(&s, 2);
    let names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
    let mut everything = processes_in(s.dir());
    everything.extend(pod_processes(&names));
    assert!(
        everything.len() >= 5,
        "expected a control plane, 2 agents and 2 pods: {everything:?}"
    );
    s.remember(everything.iter().copied());

    let out = s.run(&["down", "--data-dir", &d]);
    assert!(out.success(), "down: {out}");
    wait_all_gone("every process of the detached cluster to exit", &everything);
    // Nothing answers any more.
    let out = s.run(&["get", "nodes"]);
    assert!(
        !out.success(),
        "the cluster still answers after down: {out}"
    );
}
