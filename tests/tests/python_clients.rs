//! Clients in another language against a real cluster: Python grpcio that speaks only
//! `grpc.reflection.v1alpha` lists the gRPC services (and is refused without a client
//! certificate), and the official Python `kubernetes` client lists pods, scales a
//! StatefulSet through `statefulsets/scale` and watches it until the new replicas are
//! ready. The scripts live in tests/python/; their pinned packages in
//! tests/python/requirements.txt (.ci/run installs them).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use twinset_e2e::cluster::run_command_with;
use twinset_e2e::{dns, repo_root, sleep_statefulset, timeout, Cluster, Output};

/// What to run when the Python packages are missing.
const INSTALL: &str = "pip install -r tests/python/requirements.txt";

/// The Python interpreter, with the scripts' packages importable; panics naming what to
/// install otherwise.
fn python() -> PathBuf {
    let python = dns::which("python3").unwrap_or_else(|| {
        panic!("python3 not found on PATH: these tests run Python clients (then `{INSTALL}`)")
    });
    let mut check = Command::new(&python);
    check.args([
        "-c",
        "import grpc, grpc_reflection.v1alpha.reflection_pb2_grpc, kubernetes",
    ]);
    let out = run_command_with(check, "python3 -c import …", None, timeout());
    assert!(
        out.success(),
        "the Python packages these tests use are missing: run `{INSTALL}` ({})",
        out.stderr.trim()
    );
    python
}

/// `python3 tests/python/SCRIPT ARGS`, with no kubeconfig but the one given on the
/// command line.
fn run_script(script: &str, args: &[&str], limit: Duration) -> Output {
    let mut cmd = Command::new(python());
    cmd.env_remove("KUBECONFIG")
        .arg(repo_root().join("tests/python").join(script))
        .args(args);
    run_command_with(cmd, &format!("{script} {}", args.join(" ")), None, limit)
}

#[test]
fn grpcio_with_reflection_v1alpha_only_lists_the_services() {
    let c = Cluster::control_plane_only();
    let kubeconfig = c.kubeconfig();
    let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
    let out = run_script(
        "grpc_reflection_v1alpha.py",
        &["--kubeconfig", kubeconfig],
        timeout(),
    );
    let lines: Vec<&str> = out.ok().lines().collect();
    for wanted in [
        "service twinset.v1.Cluster",
        "service twinset.v1.Nodes",
        "service twinset.v1.Bootstrap",
        "service grpc.reflection.v1alpha.ServerReflection",
        // The file reflection gave for the symbol describes the service's methods.
        "method twinset.v1.Cluster/Apply",
        "method twinset.v1.Cluster/List",
        "method twinset.v1.Cluster/Watch",
        "method twinset.v1.Cluster/Scale",
    ] {
        assert!(lines.contains(&wanted), "{wanted} missing from {lines:?}");
    }
    // Reflection is for administrators, in v1alpha as in v1.
    let out = run_script(
        "grpc_reflection_v1alpha.py",
        &["--kubeconfig", kubeconfig, "--without-client-certificate"],
        timeout(),
    );
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(
            "error: UNAUTHENTICATED: a client certificate of the cluster CA is required to call \
             grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ),
        "{out}"
    );
}

#[test]
fn python_kubernetes_client_lists_pods_scales_and_watches_a_statefulset() {
    let c = Cluster::start(2);
    let (ns, set) = ("pyclient", "web");
    c.apply(&sleep_statefulset(set, ns, 1)).ok();
    c.wait_sts_ready(ns, set, 1);

    let kubeconfig = c.kubeconfig();
    let wait = timeout().as_secs().to_string();
    let out = run_script(
        "kube_client.py",
        &[
            "--kubeconfig",
            kubeconfig.to_str().expect("a UTF-8 path"),
            "-n",
            ns,
            "--statefulset",
            set,
            "--replicas",
            "3",
            "--timeout",
            &wait,
        ],
        timeout() * 2,
    );
    let lines: Vec<&str> = out.ok().lines().collect();
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("{line:?} missing from {lines:?}"))
    };
    // The nodes, with their Ready condition (the client's strict node model decodes).
    at("node node1 True");
    // Before the scale: the one replica, Running.
    let listed = at("pod pyclient/web-0 Running");
    let scaled = at("scaled pyclient/web to 3");
    let ready = at("ready pyclient/web 3/3");
    assert!(listed < scaled && scaled < ready, "{lines:?}");
    // The watch saw the scale-up happen: from the new desired count on (a status write of
    // the controller from before the scale may come first), one replica ready, then all three.
    let events: Vec<&str> = lines[scaled + 1..ready]
        .iter()
        .copied()
        .skip_while(|l| l.starts_with("event MODIFIED pyclient/web desired=1 "))
        .collect();
    assert!(
        events
            .iter()
            .all(|l| l.starts_with("event MODIFIED pyclient/web desired=3 ")),
        "{events:?}"
    );
    assert!(
        events
            .first()
            .is_some_and(|l| l.ends_with(" replicas=1 ready=1")),
        "{events:?}"
    );
    assert!(
        events
            .last()
            .is_some_and(|l| l.ends_with(" replicas=3 ready=3")),
        "{events:?}"
    );
    // After: the listing holds all three replicas, Running.
    for pod in ["web-0", "web-1", "web-2"] {
        let line = format!("pod pyclient/{pod} Running");
        assert!(
            lines[ready..].contains(&line.as_str()),
            "{line} missing from {lines:?}"
        );
    }
    // The cluster agrees.
    c.wait_sts_ready(ns, set, 3);
}
