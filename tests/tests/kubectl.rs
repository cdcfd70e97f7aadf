//! kubectl itself against the control plane's REST API (issue 11): the admin kubeconfig the
//! control plane writes works as KUBECONFIG; discovery, get, list and watch answer as
//! kube-apiserver does; errors are Kubernetes Status objects; callers without the admin's
//! certificate are refused. Runs the real `kubectl` (a dispatcher over bundled versions,
//! chosen by the server's /version), and pins the oldest and newest bundled versions.

use std::process::Command;

use twinset_e2e::kubectl::{kubectl_bin, kubectl_with};
use twinset_e2e::{timeout, wait_for, Cluster, Output, GUIDE_DAEMONSET};

fn kubectl(c: &Cluster, args: &[&str]) -> Output {
    kubectl_with(&kubectl_bin(None), &c.kubeconfig(), c.dir(), args)
}

#[test]
fn kubectl_reads_the_guides_daemonset_and_its_pods() {
    let c = Cluster::start(2);
    let out = kubectl(&c, &["version"]);
    assert!(out.ok().contains("Server Version: v1.31.0"), "{out}");
    let nodes = kubectl(&c, &["get", "nodes", "-o", "name"])
        .ok()
        .to_string();
    assert_eq!(
        nodes.lines().collect::<Vec<_>>(),
        ["node/node1", "node/node2"]
    );
    c.apply_repo_file(GUIDE_DAEMONSET).ok();
    c.wait_running("kube-system", "node-monitor-", 2);
    let out = kubectl(&c, &["get", "ds", "-A"]);
    let text = out.ok();
    assert!(
        text.contains("kube-system") && text.contains("node-monitor"),
        "{text}"
    );
    let out = kubectl(
        &c,
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "app=node-monitor",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.spec.nodeName}{\"\\n\"}{end}",
        ],
    );
    let lines: Vec<String> = out.ok().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in &lines {
        let f: Vec<&str> = l.split(' ').collect();
        assert!(
            f[0].starts_with("node-monitor-") && f[1] == "Running",
            "{l}"
        );
    }
    // A field selector, as `kubectl get --field-selector` sends it.
    let out = kubectl(
        &c,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "spec.nodeName=node1",
            "-o",
            "name",
        ],
    );
    assert_eq!(out.ok().lines().count(), 1, "{out}");
    // One object as YAML round-trips the fields twinset stores.
    let out = kubectl(
        &c,
        &[
            "get",
            "ds",
            "node-monitor",
            "-n",
            "kube-system",
            "-o",
            "yaml",
        ],
    );
    let yaml = out.ok();
    assert!(
        yaml.contains("kind: DaemonSet") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    // Errors are kubectl's usual lines.
    let out = kubectl(&c, &["get", "ds", "nope", "-n", "kube-system"]);
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("Error from server (NotFound): daemonsets.apps \"nope\" not found"),
        "{out}"
    );
    // api-resources lists the kinds with their short names.
    let out = kubectl(&c, &["api-resources", "--no-headers"]);
    let text = out.ok();
    for (name, short) in [
        ("daemonsets", "ds"),
        ("statefulsets", "sts"),
        ("pods", "po"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().take(2).eq([name, short])),
            "{name} {short} in {text}"
        );
    }
}

#[test]
fn kubectl_watch_streams_changes_from_a_resource_version() {
    let c = Cluster::start(1);
    let list = kubectl(&c, &["get", "--raw", "/api/v1/namespaces/default/pods"]);
    let v: serde_json::Value = serde_json::from_str(list.ok()).unwrap();
    assert_eq!(v["kind"], "PodList", "{v}");
    let rv = v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(rv.parse::<u64>().is_ok(), "list resourceVersion {rv:?}");
    // `kubectl get -w` lists, then watches from the list's revision; it prints each change.
    let mut cmd = Command::new(kubectl_bin(None));
    cmd.env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir())
        .args(["get", "pods", "-n", "default", "-w", "-o", "name"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("kubectl get -w");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    c.apply(&twinset_e2e::shell_pod("watched", "node1", "sleep 3600"))
        .ok();
    let seen = wait_for(
        "kubectl get -w to print the new pod",
        timeout(),
        || match rx.try_recv() {
            Ok(line) if line == "pod/watched" => Ok(line),
            Ok(other) => Err(format!("got {other:?}")),
            Err(e) => Err(e.to_string()),
        },
    );
    assert_eq!(seen, "pod/watched");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn callers_without_the_admin_certificate_are_refused() {
    let c = Cluster::start(1);
    // The admin kubeconfig without its client certificate (a bearer token instead, which
    // this server does not take): anonymous.
    let admin = std::fs::read_to_string(c.kubeconfig()).unwrap();
    let config = twinset_proto::kubeconfig::Kubeconfig::parse(&admin).unwrap();
    let ca = std::fs::canonicalize(c.dir())
        .unwrap()
        .join("anonymous-ca.crt");
    std::fs::write(&ca, &config.credentials.ca_pem).unwrap();
    let anonymous = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: nobody\n  user: {{token: not-a-credential}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: nobody}}\ncurrent-context: c\n",
        config.server,
        ca.display()
    );
    let path = c.dir().join("anonymous.kubeconfig");
    std::fs::write(&path, anonymous).unwrap();
    let bin = kubectl_bin(None);
    let out = kubectl_with(&bin, &path, c.dir(), &["get", "pods"]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains("error: You must be logged in to the server"),
        "an anonymous caller is not authenticated: {out}"
    );
    // /version and the health paths are open to anyone.
    let out = kubectl_with(&bin, &path, c.dir(), &["get", "--raw", "/healthz"]);
    assert_eq!(out.ok().trim(), "ok");
    let out = kubectl_with(&bin, &path, c.dir(), &["get", "--raw", "/version"]);
    assert!(out.ok().contains("\"gitVersion\":\"v1.31.0\""), "{out}");
}

#[test]
fn the_oldest_and_newest_bundled_kubectl_read_the_cluster() {
    let c = Cluster::start(1);
    for v in ["1.27", "1.33"] {
        let bin = kubectl_bin(Some(v));
        let out = kubectl_with(
            &bin,
            &c.kubeconfig(),
            c.dir(),
            &["get", "nodes", "-o", "name"],
        );
        assert_eq!(out.ok().trim(), "node/node1", "kubectl {v}: {out}");
        let out = kubectl_with(&bin, &c.kubeconfig(), c.dir(), &["get", "ns", "nope"]);
        assert!(
            out.stderr
                .contains("Error from server (NotFound): namespaces \"nope\" not found"),
            "kubectl {v}: {out}"
        );
    }
}

#[test]
fn the_guides_commands_run_verbatim_with_kubectl() {
    let c = Cluster::start(3);
    // The guide's manifests, applied by kubectl itself (validation on, as a user runs it).
    let ds = twinset_e2e::repo_root().join(GUIDE_DAEMONSET);
    let out = kubectl(&c, &["apply", "-f", &ds.to_string_lossy()]);
    assert_eq!(out.ok().trim(), "daemonset.apps/node-monitor created");
    let sts = twinset_e2e::repo_root().join(twinset_e2e::GUIDE_STATEFULSET);
    let out = kubectl(&c, &["apply", "-f", &sts.to_string_lossy()]);
    assert_eq!(out.ok().trim(), "statefulset.apps/mysql-db created");
    let pods = c.wait_running("kube-system", "node-monitor-", 3);
    c.wait_sts_ready("database", "mysql-db", 3);

    let out = kubectl(&c, &["get", "ds", "-A"]);
    let table = out.ok();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE",
            "SELECTOR",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..7],
        ["kube-system", "node-monitor", "3", "3", "3", "3", "3"],
        "{table}"
    );
    let out = kubectl(&c, &["get", "pods", "-o", "wide", "-n", "kube-system"]);
    let wide = out.ok();
    assert!(wide.starts_with("NAME "), "{wide}");
    assert!(
        wide.lines().next().unwrap().contains("NOMINATED NODE"),
        "{wide}"
    );
    assert_eq!(
        wide.lines().filter(|l| l.contains("Running")).count(),
        3,
        "{wide}"
    );
    let out = kubectl(&c, &["describe", "ds", "node-monitor", "-n", "kube-system"]);
    assert!(
        out.ok().contains("Desired Number of Nodes Scheduled: 3"),
        "{out}"
    );
    let out = kubectl(
        &c,
        &["logs", &pods[0].name, "-n", "kube-system", "--tail=1"],
    );
    assert!(out.ok().starts_with("node-monitor node="), "{out}");
    let out = kubectl(&c, &["get", "sts", "-A"]);
    assert!(out.ok().contains("mysql-db   3/3"), "{out}");
    let out = kubectl(&c, &["describe", "sts", "mysql-db", "-n", "database"]);
    assert!(out.ok().contains("Replicas:"), "{out}");
    let out = kubectl(
        &c,
        &["scale", "sts", "mysql-db", "--replicas=4", "-n", "database"],
    );
    assert_eq!(out.ok().trim(), "statefulset.apps/mysql-db scaled");
    let out = kubectl(
        &c,
        &[
            "rollout",
            "status",
            "sts/mysql-db",
            "-n",
            "database",
            "--timeout=120s",
        ],
    );
    assert!(out.ok().contains("roll out complete: 4 new pods"), "{out}");
    let out = kubectl(&c, &["get", "pvc", "-n", "database", "--no-headers"]);
    assert_eq!(
        out.ok().lines().filter(|l| l.contains("Bound")).count(),
        4,
        "{out}"
    );
    let out = kubectl(&c, &["delete", "pod", "mysql-db-1", "-n", "database"]);
    assert_eq!(out.ok().trim(), "pod \"mysql-db-1\" deleted");
    c.wait_sts_ready("database", "mysql-db", 4);
    let out = kubectl(&c, &["delete", "ds", "node-monitor", "-n", "kube-system"]);
    assert_eq!(out.ok().trim(), "daemonset.apps \"node-monitor\" deleted");
    wait_for("the daemon pods to be gone", timeout(), || {
        let left = c.pods_named("kube-system", "node-monitor-")?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{} left", left.len()))
        }
    });
}

#[test]
fn kubectl_create_and_a_first_apply_create_and_an_existing_object_is_refused() {
    let c = Cluster::start(2);
    let ds = twinset_e2e::repo_root().join(GUIDE_DAEMONSET);
    let ds = ds.to_string_lossy();
    let out = kubectl(&c, &["apply", "-f", &ds]);
    assert_eq!(out.ok().trim(), "daemonset.apps/node-monitor created");
    c.wait_running("kube-system", "node-monitor-", 2);
    let out = kubectl(&c, &["apply", "-f", &ds]);
    assert_eq!(out.ok().trim(), "daemonset.apps/node-monitor unchanged");
    let before = c.store_revision();
    let out = kubectl(&c, &["create", "-f", &ds]);
    assert!(
        out.stderr
            .contains("Error from server (AlreadyExists): error when creating \"")
            && out
                .stderr
                .contains("daemonsets.apps \"node-monitor\" already exists"),
        "{out}"
    );
    assert_eq!(
        c.store_revision(),
        before,
        "a refused create changes nothing"
    );
    // Bad input is refused with the server's validation, and nothing is stored.
    let bad = c.write_manifest(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: Bad_Name\n  namespace: default\nspec:\n  selector:\n    matchLabels: {app: x}\n  template:\n    metadata:\n      labels: {app: x}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n",
    );
    let out = kubectl(&c, &["create", "-f", &bad.to_string_lossy()]);
    assert!(
        out.stderr.starts_with(
            "The DaemonSet \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
        ),
        "{out}"
    );
    assert_eq!(
        c.store_revision(),
        before,
        "an invalid create changes nothing"
    );
}
