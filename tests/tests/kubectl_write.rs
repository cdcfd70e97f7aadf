//! kubectl's writes against the REST API (issue 11): `kubectl apply` of an edited manifest
//! (a strategic merge patch) rolls out, server-side apply with field managers and
//! conflicts, `kubectl patch` (merge and strategic), replace with compare-and-swap, and
//! bad input refused with kubectl's usual lines while the store does not move. Runs the
//! real kubectl; see tests/tests/kubectl.rs for reads.

use std::path::Path;
use std::process::Command;

use twinset_e2e::kubectl::{kubectl_as, kubectl_bin, kubectl_with};
use twinset_e2e::{timeout, wait_for, Cluster, Output};

fn kubectl(c: &Cluster, args: &[&str]) -> Output {
    kubectl_as(c, None, args)
}

/// A DaemonSet `web` in default with `image`, extra container lines (indented for the
/// container) and its env.
fn web(image: &str, extra: &str, env: &[(&str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: web\n  namespace: default\nspec:\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: {image}\n{extra}"
    );
    if !env.is_empty() {
        s.push_str("        env:\n");
        for (k, v) in env {
            s.push_str(&format!("        - name: {k}\n          value: \"{v}\"\n"));
        }
    }
    s
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn jsonpath(c: &Cluster, what: &[&str], expr: &str) -> String {
    let mut args = vec!["get"];
    args.extend(what);
    let expr = format!("jsonpath={expr}");
    args.extend(["-o", &expr]);
    kubectl(c, &args).ok().trim().to_string()
}

#[test]
fn kubectl_apply_of_an_edited_manifest_patches_and_rolls_out() {
    let c = Cluster::start(2);
    let v1 = c.write_manifest(&web("twinset/sleep:latest", "", &[("A", "1")]));
    let out = kubectl(&c, &["apply", "-f", &path(&v1)]);
    assert_eq!(out.ok().trim(), "daemonset.apps/web created");
    let first = c.wait_running("default", "web-", 2);
    // The edit: another image (with its args) and one more env var.
    let v2 = c.write_manifest(&web(
        "busybox:latest",
        "        args: [\"-c\", \"exec sleep 3600\"]\n",
        &[("A", "1"), ("B", "2")],
    ));
    let out = kubectl(&c, &["apply", "-f", &path(&v2)]);
    assert_eq!(out.ok().trim(), "daemonset.apps/web configured");
    assert_eq!(
        jsonpath(
            &c,
            &["ds", "web"],
            "{.spec.template.spec.containers[0].env[*].name}"
        ),
        "A B"
    );
    let out = kubectl(&c, &["rollout", "status", "ds/web", "--timeout=120s"]);
    assert!(
        out.ok()
            .contains("daemon set \"web\" successfully rolled out"),
        "{out}"
    );
    wait_for("every pod to run the new image", timeout(), || {
        let images = jsonpath(
            &c,
            &["pods", "-l", "app=web"],
            "{.items[*].spec.containers[0].image}",
        );
        if images == "busybox:latest busybox:latest" {
            Ok(())
        } else {
            Err(images)
        }
    });
    let now = c.wait_running("default", "web-", 2);
    for p in &now {
        assert!(
            first.iter().all(|f| f.name != p.name),
            "pod {} was not replaced",
            p.name
        );
    }
    // The same manifest again: nothing to patch.
    let before = c.store_revision();
    let out = kubectl(&c, &["apply", "-f", &path(&v2)]);
    assert_eq!(out.ok().trim(), "daemonset.apps/web unchanged");
    assert_eq!(c.store_revision(), before);

    // What `get -o yaml` prints applies back with the spec unchanged. kubectl itself says
    // "configured" (as against kube-apiserver): its last-applied annotation becomes the
    // printed object, status and all, and that is the only change.
    let generation = jsonpath(&c, &["ds", "web"], "{.metadata.generation}");
    let yaml = kubectl(&c, &["get", "ds", "web", "-o", "yaml"]);
    let again = c.write_manifest(yaml.ok());
    let out = kubectl(&c, &["apply", "-f", &path(&again)]);
    assert_eq!(out.ok().trim(), "daemonset.apps/web configured");
    assert_eq!(
        jsonpath(&c, &["ds", "web"], "{.metadata.generation}"),
        generation,
        "the spec did not change"
    );
    let before = c.store_revision();

    // Bad input through kubectl: an immutable field, and nothing moves.
    let moved = c.write_manifest(
        &web("busybox:latest", "", &[]).replace("{app: web}", "{app: web, tier: x}"),
    );
    let out = kubectl(&c, &["apply", "-f", &path(&moved)]);
    assert!(
        out.stderr
            .contains("The DaemonSet \"web\" is invalid: spec.selector")
            && out.stderr.contains("field is immutable"),
        "{out}"
    );
    assert_eq!(
        c.store_revision(),
        before,
        "a refused patch changes nothing"
    );
}

#[test]
fn server_side_apply_owns_fields_and_refuses_conflicts_unless_forced() {
    let c = Cluster::start(1);
    let v1 = c.write_manifest(&web("twinset/sleep:latest", "", &[]));
    let out = kubectl(&c, &["apply", "--server-side", "-f", &path(&v1)]);
    assert_eq!(out.ok().trim(), "daemonset.apps/web serverside-applied");
    c.wait_running("default", "web-", 1);
    let managers = jsonpath(
        &c,
        &["ds", "web", "--show-managed-fields"],
        "{.metadata.managedFields[*].manager}",
    );
    assert_eq!(managers, "kubectl");
    // Another manager sets the image to another value: a conflict, nothing written.
    let other = web("busybox:latest", "", &[]);
    let other = c.write_manifest(&other);
    let before = c.store_revision();
    let out = kubectl(
        &c,
        &[
            "apply",
            "--server-side",
            "--field-manager=deployer",
            "-f",
            &path(&other),
        ],
    );
    assert!(
        out.stderr
            .contains("Apply failed with 1 conflict: conflict with \"kubectl\"")
            && out
                .stderr
                .contains(".spec.template.spec.containers[name=\"c\"].image"),
        "{out}"
    );
    assert_eq!(c.store_revision(), before, "a conflict changes nothing");
    // Forced, the field changes hands.
    let out = kubectl(
        &c,
        &[
            "apply",
            "--server-side",
            "--field-manager=deployer",
            "--force-conflicts",
            "-f",
            &path(&other),
        ],
    );
    assert_eq!(out.ok().trim(), "daemonset.apps/web serverside-applied");
    assert_eq!(
        jsonpath(
            &c,
            &["ds", "web"],
            "{.spec.template.spec.containers[0].image}"
        ),
        "busybox:latest"
    );
    // A manager that stops applying a label removes it.
    let labelled = c.write_manifest(
        &web("busybox:latest", "", &[])
            .replace("  name: web\n", "  name: web\n  labels: {team: a}\n"),
    );
    let ssa = |file: &Path| {
        kubectl(
            &c,
            &[
                "apply",
                "--server-side",
                "--field-manager=deployer",
                "-f",
                &path(file),
            ],
        )
    };
    ssa(&labelled).ok();
    assert_eq!(jsonpath(&c, &["ds", "web"], "{.metadata.labels.team}"), "a");
    ssa(&other).ok();
    assert_eq!(jsonpath(&c, &["ds", "web"], "{.metadata.labels}"), "");
}

#[test]
fn kubectl_patch_replace_and_bad_writes() {
    let c = Cluster::start(1);
    let v1 = c.write_manifest(&web("twinset/sleep:latest", "", &[("A", "1")]));
    kubectl(&c, &["create", "-f", &path(&v1)]).ok();
    // Strategic merge: the env list merges by name.
    let out = kubectl(
        &c,
        &[
            "patch",
            "ds",
            "web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","env":[{"name":"B","value":"2"}]}]}}}}"#,
        ],
    );
    assert_eq!(out.ok().trim(), "daemonset.apps/web patched");
    assert_eq!(
        jsonpath(
            &c,
            &["ds", "web"],
            "{.spec.template.spec.containers[0].env[*].name}"
        ),
        "A B"
    );
    // Merge patch: a label added, then removed with null.
    let out = kubectl(
        &c,
        &[
            "patch",
            "ds",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"x":"y"}}}"#,
        ],
    );
    assert_eq!(out.ok().trim(), "daemonset.apps/web patched");
    assert_eq!(jsonpath(&c, &["ds", "web"], "{.metadata.labels.x}"), "y");
    kubectl(
        &c,
        &[
            "patch",
            "ds",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"x":null}}}"#,
        ],
    )
    .ok();
    assert_eq!(jsonpath(&c, &["ds", "web"], "{.metadata.labels}"), "");
    // Replace with a stale resourceVersion: 409 Conflict, nothing written.
    let got = kubectl(&c, &["get", "ds", "web", "-o", "json"]);
    let mut obj: serde_json::Value = serde_json::from_str(got.ok()).unwrap();
    obj["metadata"]["resourceVersion"] = serde_json::json!("1");
    obj["metadata"]["labels"] = serde_json::json!({"stale": "yes"});
    let stale = c.write_manifest(&obj.to_string());
    let before = c.store_revision();
    let out = kubectl(&c, &["replace", "-f", &path(&stale)]);
    assert!(
        out.stderr.contains("Error from server (Conflict)")
            && out.stderr.contains("the object has been modified"),
        "{out}"
    );
    assert_eq!(c.store_revision(), before);
    // The current resourceVersion: replaced.
    let got = kubectl(&c, &["get", "ds", "web", "-o", "json"]);
    let mut obj: serde_json::Value = serde_json::from_str(got.ok()).unwrap();
    obj["metadata"]["labels"] = serde_json::json!({"fresh": "yes"});
    let fresh = c.write_manifest(&obj.to_string());
    let out = kubectl(&c, &["replace", "-f", &path(&fresh)]);
    assert_eq!(out.ok().trim(), "daemonset.apps/web replaced");
    assert_eq!(
        jsonpath(&c, &["ds", "web"], "{.metadata.labels.fresh}"),
        "yes"
    );
    // JSON patch: a label removed; a failed test operation changes nothing.
    let out = kubectl(
        &c,
        &[
            "patch",
            "ds",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/labels/fresh"}]"#,
        ],
    );
    assert_eq!(out.ok().trim(), "daemonset.apps/web patched");
    assert_eq!(jsonpath(&c, &["ds", "web"], "{.metadata.labels}"), "");
    let before = c.store_revision();
    let out = kubectl(
        &c,
        &[
            "patch",
            "ds",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/template/spec/containers/0/image","value":"nginx"}]"#,
        ],
    );
    assert!(
        out.stderr
            .contains("operation 0: test failed at /spec/template/spec/containers/0/image"),
        "{out}"
    );
    // A patch to a missing object is NotFound.
    let out = kubectl(
        &c,
        &[
            "patch",
            "ds",
            "nope",
            "-p",
            r#"{"metadata":{"labels":{"a":"b"}}}"#,
        ],
    );
    assert!(
        out.stderr
            .contains("Error from server (NotFound): daemonsets.apps \"nope\" not found"),
        "{out}"
    );
    // Negative replicas on a StatefulSet, through kubectl: Invalid, nothing written.
    let sts = c.write_manifest(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n  namespace: default\nspec:\n  replicas: -1\n  serviceName: db\n  selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n      - name: c\n        image: twinset/sleep:latest\n",
    );
    let out = kubectl(&c, &["apply", "-f", &path(&sts)]);
    assert!(
        out.stderr
            .contains("The StatefulSet \"db\" is invalid: spec.replicas"),
        "{out}"
    );
    assert_eq!(c.store_revision(), before, "refused writes change nothing");
    // The scale subresource takes a JSON patch too.
    let sts = c.write_manifest(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n  namespace: default\nspec:\n  replicas: 0\n  serviceName: db\n  selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n      - name: c\n        image: twinset/sleep:latest\n",
    );
    kubectl(&c, &["apply", "-f", &path(&sts)]).ok();
    let out = kubectl(
        &c,
        &[
            "patch",
            "sts",
            "db",
            "--subresource=scale",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":1}]"#,
        ],
    );
    assert_eq!(out.ok().trim(), "scale.autoscaling/db patched");
    assert_eq!(jsonpath(&c, &["sts", "db"], "{.spec.replicas}"), "1");
}

#[test]
fn a_nodes_certificate_reads_only_what_the_node_authorizer_allows() {
    let c = Cluster::start(2);
    c.apply(&twinset_e2e::shell_pod("on-one", "node1", "sleep 3600"))
        .ok();
    c.apply(&twinset_e2e::shell_pod("on-two", "node2", "sleep 3600"))
        .ok();
    // kubectl with node1's own client certificate.
    let admin = std::fs::read_to_string(c.kubeconfig()).unwrap();
    let config = twinset_proto::kubeconfig::Kubeconfig::parse(&admin).unwrap();
    let pki = std::fs::canonicalize(c.dir()).unwrap().join("node1/pki");
    let node_config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: node-user\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: node-user}}\ncurrent-context: c\n",
        config.server,
        pki.join("ca.crt").display(),
        pki.join("node.crt").display(),
        pki.join("node.key").display(),
    );
    let kc = c.dir().join("node1.kubeconfig");
    std::fs::write(&kc, node_config).unwrap();
    let as_node = |args: &[&str]| kubectl_with(&kubectl_bin(None), &kc, c.dir(), args);
    let out = as_node(&["get", "nodes", "-o", "name"]);
    assert_eq!(out.ok().trim(), "node/node1\nnode/node2");
    let out = as_node(&[
        "get",
        "pods",
        "-A",
        "--field-selector=spec.nodeName=node1",
        "-o",
        "name",
    ]);
    assert_eq!(out.ok().trim(), "pod/on-one");
    let out = as_node(&["get", "pod", "on-one", "-o", "name"]);
    assert_eq!(out.ok().trim(), "pod/on-one");
    let out = as_node(&["get", "pod", "on-two"]);
    assert!(
        out.stderr.contains("Error from server (Forbidden): pods \"on-two\" is forbidden: User \"system:node:node1\" cannot get resource \"pods\"")
            && out.stderr.contains("no relationship found between node 'node1' and this object"),
        "{out}"
    );
    let out = as_node(&["get", "pods", "-A"]);
    assert!(
        out.stderr.contains("Error from server (Forbidden): pods is forbidden: User \"system:node:node1\" cannot list resource \"pods\""),
        "{out}"
    );
    let before = c.store_revision();
    let out = as_node(&["delete", "node", "node2"]);
    assert!(
        out.stderr.contains("Error from server (Forbidden)"),
        "{out}"
    );
    let out = as_node(&["get", "ds", "-A"]);
    assert!(
        out.stderr.contains("Error from server (Forbidden)"),
        "{out}"
    );
    assert_eq!(
        c.store_revision(),
        before,
        "a node's refused write changes nothing"
    );
}

#[test]
fn watches_that_allow_bookmarks_get_them_with_the_delivered_revision() {
    let c = Cluster::start_with(
        1,
        twinset_e2e::cluster::Options {
            control_plane_flags: vec!["--watch-bookmark-interval".into(), "1s".into()],
            ..Default::default()
        },
    );
    let mut cmd = Command::new(kubectl_bin(None));
    cmd.env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir())
        .args([
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods?watch=1&allowWatchBookmarks=true",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("kubectl get --raw (watch)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let Ok(v) = serde_json::from_str(&line) else {
                continue;
            };
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    c.apply(&twinset_e2e::shell_pod("marked", "node1", "sleep 3600"))
        .ok();
    // The pod's ADDED, then a bookmark at (at least) its revision.
    let added_rv: u64 = wait_for("the pod's ADDED event", timeout(), || match rx.try_recv() {
        Ok(v) if v["type"] == "ADDED" && v["object"]["metadata"]["name"] == "marked" => v["object"]
            ["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no resourceVersion in {v}")),
        Ok(v) => Err(format!("got {v}")),
        Err(e) => Err(e.to_string()),
    });
    let mark = wait_for("a BOOKMARK", timeout(), || match rx.try_recv() {
        Ok(v) if v["type"] == "BOOKMARK" => Ok(v),
        Ok(v) => Err(format!("got {v}")),
        Err(e) => Err(e.to_string()),
    });
    assert_eq!(mark["object"]["kind"], "Pod", "{mark}");
    let rv: u64 = mark["object"]["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    assert!(
        rv >= added_rv,
        "bookmark {rv} before the delivered {added_rv}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
