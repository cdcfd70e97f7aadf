//! The guide's DaemonSet on a 3-node local cluster: pods, IPs, processes, logs,
//! `get ds -A`, `describe ds`, and `get -o yaml` re-applying unchanged.

use std::collections::BTreeSet;

use twinset_e2e::json::{self, str_at};
use twinset_e2e::{ip_in_cidr, timeout, wait_for, Cluster, Table};

const NS: &str = "kube-system";

fn is_age(s: &str) -> bool {
    // kubectl ages: 5s, 3m20s, 4m, 2h5m, 3d ...
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_digit() || "smhdy".contains(c))
}

#[test]
fn guide_daemonset_runs_one_pod_per_node_with_its_own_ip() {
    let c = Cluster::start(3);
    let pods = c.run_guide_daemonset(3);

    // One per node.
    let nodes: BTreeSet<&str> = pods.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["node1", "node2", "node3"]),
        "{}",
        json::summary(&pods)
    );

    // Names, owners, labels.
    for p in &pods {
        let suffix = p.name.strip_prefix("node-monitor-").unwrap_or("");
        assert!(
            suffix.len() == 5
                && suffix
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit()),
            "pod name {} is not node-monitor-<5 random chars>",
            p.name
        );
        assert_eq!(
            p.owners,
            vec!["DaemonSet/node-monitor".to_string()],
            "owner references of {}",
            p.name
        );
        assert_eq!(
            p.labels.get("app").and_then(|v| v.as_str()),
            Some("node-monitor")
        );
        assert!(
            p.labels.contains_key("controller-revision-hash"),
            "labels of {}: {:?}",
            p.name,
            p.labels
        );
        assert_eq!(p.restarts, 0, "{} restarted", p.name);
    }

    // Distinct IPs, each inside its node's pod range.
    let ips: BTreeSet<&str> = pods.iter().map(|p| p.ip.as_str()).collect();
    assert_eq!(
        ips.len(),
        3,
        "pod IPs are not distinct: {}",
        json::summary(&pods)
    );
    let node_objs = c.nodes().expect("get nodes");
    for p in &pods {
        let node = node_objs
            .iter()
            .find(|n| str_at(n, "/metadata/name") == p.node)
            .expect("node object");
        let cidr = str_at(node, "/spec/podCIDR");
        assert!(
            ip_in_cidr(&p.ip, cidr),
            "pod {} IP {} is not in {}'s podCIDR {cidr:?}",
            p.name,
            p.ip,
            p.node
        );
        let host_ip = str_at(&p.raw, "/status/hostIP");
        assert!(!host_ip.is_empty(), "pod {} has no status.hostIP", p.name);
    }

    // `get pods -o wide`, as the guide runs it.
    let t = c.table(&["get", "pods", "-o", "wide", "-n", NS]);
    assert_eq!(
        t.header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ],
        "header of get pods -o wide"
    );
    assert_eq!(t.rows.len(), 3, "{t:?}");
    for p in &pods {
        let row = t
            .row(&p.name)
            .unwrap_or_else(|| panic!("no row for {} in {t:?}", p.name));
        assert_eq!(t.cell(row, "READY"), "1/1");
        assert_eq!(t.cell(row, "STATUS"), "Running");
        assert_eq!(t.cell(row, "RESTARTS"), "0");
        assert!(is_age(t.cell(row, "AGE")), "AGE {:?}", t.cell(row, "AGE"));
        assert_eq!(t.cell(row, "IP"), p.ip);
        assert_eq!(t.cell(row, "NODE"), p.node);
        assert_eq!(t.cell(row, "NOMINATED NODE"), "<none>");
        assert_eq!(t.cell(row, "READINESS GATES"), "<none>");
    }

    // Their processes run, with the pod's identity in the environment.
    for p in &pods {
        let proc_ = c.wait_pod_process(NS, &p.name);
        assert!(proc_.is_alive());
        let env = c.environ(proc_);
        assert_eq!(
            env.get("NODE_NAME").map(String::as_str),
            Some(p.node.as_str()),
            "NODE_NAME of {}",
            p.name
        );
        assert_eq!(
            env.get("POD_IP").map(String::as_str),
            Some(p.ip.as_str()),
            "POD_IP of {}",
            p.name
        );
        assert_eq!(env.get("POD_NAMESPACE").map(String::as_str), Some(NS));
        assert_eq!(
            env.get("HOSTNAME").map(String::as_str),
            Some(p.name.as_str()),
            "HOSTNAME of {}",
            p.name
        );
    }

    // `twinset logs` shows the monitor's lines.
    for p in &pods {
        let text = wait_for(
            &format!("monitor output in `twinset logs {}`", p.name),
            timeout(),
            || {
                let out = c.run(&["logs", &p.name, "-n", NS]);
                let stdout = out.result()?;
                if stdout.lines().any(|l| !l.trim().is_empty()) {
                    Ok(stdout.to_string())
                } else {
                    Err("empty log".into())
                }
            },
        );
        let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        assert!(
            line.to_ascii_lowercase().contains("load") || line.to_ascii_lowercase().contains("mem"),
            "the monitor's log line does not report load or memory: {line:?}"
        );
    }
    // `logs -c monitor` names the container explicitly.
    c.run_ok(&["logs", &pods[0].name, "-c", "monitor", "-n", NS]);
}

#[test]
fn get_ds_all_namespaces_prints_the_kubectl_columns() {
    let c = Cluster::start(3);
    c.run_guide_daemonset(3);
    let expected_header = [
        "NAMESPACE",
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "NODE SELECTOR",
        "AGE",
    ];
    let (t, row) = wait_for("get ds -A to show 3 3 3 3 3", timeout(), || {
        let t = Table::parse(c.run(&["get", "ds", "-A"]).result()?);
        if t.header != expected_header {
            return Err(format!("header {:?}", t.header));
        }
        let row = t
            .rows
            .iter()
            .find(|r| r.get(1).map(String::as_str) == Some("node-monitor"))
            .cloned();
        let row = row.ok_or_else(|| format!("no node-monitor row: {t:?}"))?;
        let counts: Vec<&str> = row[2..7].iter().map(String::as_str).collect();
        if counts == ["3", "3", "3", "3", "3"] {
            Ok((t, row))
        } else {
            Err(format!("row {row:?}"))
        }
    });
    assert_eq!(t.rows.len(), 1, "{t:?}");
    assert_eq!(t.cell(&row, "NAMESPACE"), NS);
    assert_eq!(t.cell(&row, "NODE SELECTOR"), "<none>");
    assert!(is_age(t.cell(&row, "AGE")), "AGE {:?}", t.cell(&row, "AGE"));

    // Short and long kind names and -n give the same set.
    for kind in ["ds", "daemonset", "daemonsets", "daemonset.apps"] {
        let t = c.table(&["get", kind, "-n", NS]);
        assert_eq!(t.header[0], "NAME", "get {kind} -n {NS}");
        assert!(t.row("node-monitor").is_some(), "get {kind}: {t:?}");
    }
    let names = c.run_ok(&["get", "ds", "-n", NS, "-o", "name"]);
    assert_eq!(names.trim(), "daemonset.apps/node-monitor");
    // The default namespace has none.
    let out = c.run(&["get", "ds"]);
    assert!(out.success(), "{out}");
    assert!(
        format!("{}{}", out.stdout, out.stderr)
            .contains("No resources found in default namespace."),
        "{out}"
    );
}

#[test]
fn describe_ds_prints_the_kubectl_layout() {
    let c = Cluster::start(3);
    c.run_guide_daemonset(3);
    let pods_status = "Pods Status:  3 Running / 0 Waiting / 0 Succeeded / 0 Failed";
    let text = wait_for("describe ds to report 3 Running pods", timeout(), || {
        let out = c.run(&["describe", "ds", "node-monitor", "-n", NS]);
        let s = out.result()?;
        if s.lines().any(|l| l.trim_end() == pods_status)
            && s.contains("Number of Nodes Scheduled with Available Pods: 3")
        {
            Ok(s.to_string())
        } else {
            Err(s.to_string())
        }
    });
    let lines: Vec<&str> = text.lines().collect();
    let field = |key: &str| -> Option<(usize, String)> {
        lines.iter().enumerate().find_map(|(i, l)| {
            let (k, v) = l.split_once(':')?;
            (k == key).then(|| (i, v.trim().to_string()))
        })
    };
    let exact = |want: &str| -> usize {
        lines
            .iter()
            .position(|l| l.trim_end() == want)
            .unwrap_or_else(|| panic!("describe ds lacks the line {want:?}:\n{text}"))
    };
    let mut order = Vec::new();
    for (key, value) in [
        ("Name", Some("node-monitor")),
        ("Selector", Some("app=node-monitor")),
        ("Node-Selector", Some("<none>")),
    ] {
        let (i, v) = field(key).unwrap_or_else(|| panic!("describe ds lacks {key}:\n{text}"));
        if let Some(value) = value {
            assert_eq!(v, value, "describe ds {key}:\n{text}");
        }
        order.push(i);
    }
    order.push(
        field("Labels")
            .unwrap_or_else(|| panic!("no Labels:\n{text}"))
            .0,
    );
    order.push(
        field("Annotations")
            .unwrap_or_else(|| panic!("no Annotations:\n{text}"))
            .0,
    );
    order.push(exact("Desired Number of Nodes Scheduled: 3"));
    order.push(exact("Current Number of Nodes Scheduled: 3"));
    order.push(exact("Number of Nodes Scheduled with Up-to-date Pods: 3"));
    order.push(exact("Number of Nodes Scheduled with Available Pods: 3"));
    order.push(exact("Number of Nodes Misscheduled: 0"));
    order.push(exact(pods_status));
    order.push(exact("Pod Template:"));
    let template = order[order.len() - 1];
    let events = lines
        .iter()
        .position(|l| l.starts_with("Events:"))
        .unwrap_or_else(|| panic!("describe ds lacks Events:\n{text}"));
    order.push(events);
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "describe ds sections are out of order:\n{text}"
    );

    // The pod template: labels, the container, its image and limits.
    let tmpl: Vec<String> = lines[template..events]
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for want in [
        "Labels: app=node-monitor",
        "Containers:",
        "monitor:",
        "Image: datadog/agent:latest",
        "Limits:",
        "cpu: 100m",
        "memory: 128Mi",
    ] {
        assert!(
            tmpl.iter().any(|l| l == want),
            "pod template lacks {want:?}:\n{text}"
        );
    }
    // Pod template lines are indented under "Pod Template:".
    assert!(
        lines[template + 1].starts_with("  "),
        "pod template is not indented:\n{text}"
    );
}

#[test]
fn get_ds_yaml_reapplies_unchanged() {
    // No nodes: the DaemonSet's status stays put, so its resourceVersion is stable.
    let c = Cluster::start(0);
    let out = c.apply_repo_file(twinset_e2e::GUIDE_DAEMONSET);
    assert_eq!(out.ok().trim(), "daemonset.apps/node-monitor created");
    let yaml = c.run_ok(&["get", "ds", "node-monitor", "-n", NS, "-o", "yaml"]);
    assert!(
        yaml.contains("apiVersion: apps/v1") && yaml.contains("kind: DaemonSet"),
        "{yaml}"
    );
    assert!(
        yaml.contains("memory: 128Mi") && yaml.contains("cpu: 100m"),
        "quantities keep their form:\n{yaml}"
    );
    let before = c.store_revision();
    let again = c.run_with_stdin(&["apply", "-f", "-"], Some(&yaml));
    assert_eq!(
        again.ok().trim(),
        "daemonset.apps/node-monitor unchanged",
        "{again}"
    );
    assert_eq!(
        c.store_revision(),
        before,
        "re-applying get -o yaml wrote to the store"
    );
    // Applying the original file again is also unchanged.
    let out = c.apply_repo_file(twinset_e2e::GUIDE_DAEMONSET);
    assert_eq!(out.ok().trim(), "daemonset.apps/node-monitor unchanged");
    // JSON is the same object.
    let v = c
        .get_json(&["ds", "node-monitor", "-n", NS])
        .expect("get -o json");
    assert_eq!(str_at(&v, "/kind"), "DaemonSet");
    assert_eq!(
        str_at(
            &v,
            "/spec/template/spec/containers/0/resources/limits/memory"
        ),
        "128Mi"
    );
    let list = c.get_json(&["ds", "-A"]).expect("get ds -A -o json");
    assert_eq!(str_at(&list, "/kind"), "List");
    assert_eq!(json::items(&list).len(), 1);
}

#[test]
fn applying_into_a_missing_namespace_creates_it_and_says_so() {
    let c = Cluster::start(0);
    let out = c.apply_repo_file("deploy/examples/statefulset.yaml");
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(
        lines,
        [
            "namespace/database created",
            // The set names a headless service that does not exist: it is made and said.
            "service/mysql created",
            "statefulset.apps/mysql-db created"
        ],
        "{out}"
    );
    let ns = c
        .get_json(&["ns", "database"])
        .expect("the namespace exists");
    assert_eq!(str_at(&ns, "/metadata/name"), "database");
    let again = c.apply_repo_file("deploy/examples/statefulset.yaml");
    assert_eq!(
        again.ok().trim(),
        "statefulset.apps/mysql-db unchanged",
        "{again}"
    );
}

#[test]
fn a_killed_container_is_restarted_after_a_short_delay() {
    let c = Cluster::start(1);
    let pods = c.run_guide_daemonset(1);
    let name = pods[0].name.clone();
    let first = c.wait_pod_process(NS, &name);
    first.kill();
    let second = wait_for(
        "the monitor to be restarted in a new process",
        timeout(),
        || {
            let p = c.pod_process(NS, &name)?;
            if p == first {
                Err("the old process is still there".into())
            } else {
                Ok(p)
            }
        },
    );
    assert!(second.is_alive());
    let pod = wait_for("restartCount 1 and Running again", timeout(), || {
        let pods = c.pods_named(NS, &name)?;
        match pods.first() {
            Some(p) if p.restarts == 1 && p.is_running_ready() => Ok(p.clone()),
            _ => Err(json::summary(&pods)),
        }
    });
    assert_eq!(
        pod.uid, pods[0].uid,
        "the pod was replaced instead of its container restarted"
    );
    let t = c.table(&["get", "pods", "-n", NS]);
    let row = t.row(&name).expect("row");
    assert!(
        t.cell(row, "RESTARTS").starts_with('1'),
        "RESTARTS {:?}",
        t.cell(row, "RESTARTS")
    );
}

#[test]
fn a_crashing_container_is_not_restarted_in_a_tight_loop() {
    let c = Cluster::start(1);
    let out = c.apply(
        "apiVersion: v1
kind: Pod
metadata:
  name: crasher
  namespace: default
spec:
  nodeName: node1
  containers:
  - name: main
    image: busybox
    command: [\"sh\", \"-c\", \"exit 3\"]
",
    );
    assert_eq!(out.ok().trim(), "pod/crasher created");
    let restarts = |c: &Cluster| -> Result<i64, String> {
        let pods = c.pods_named("default", "crasher")?;
        pods.first()
            .map(|p| p.restarts)
            .ok_or_else(|| "no pod".to_string())
    };
    let start = wait_for(
        "the crasher to be restarted",
        timeout(),
        || match restarts(&c)? {
            n if n >= 1 => Ok(n),
            n => Err(format!("restartCount {n}")),
        },
    );
    let t0 = std::time::Instant::now();
    // Wait for three more restarts, then check the rate: the agent waits at least its
    // --restart-backoff-base (200ms) before each restart, and at least two whole delays lie
    // between the first observation and the third restart after it: >= 400ms.
    let end = wait_for("three more restarts", timeout(), || match restarts(&c)? {
        n if n >= start + 3 => Ok(n),
        n => Err(format!("restartCount {n}")),
    });
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(350),
        "{} restarts in {elapsed:?}: a tight loop",
        end - start
    );
    let pods = c.pods_named("default", "crasher").expect("pods");
    let cs = pods[0]
        .raw
        .pointer("/status/containerStatuses/0")
        .cloned()
        .unwrap_or_default();
    let last = str_at(&cs, "/lastState/terminated/reason");
    assert_eq!(
        last, "Error",
        "lastState of a container that exited 3: {cs}"
    );
    assert_eq!(
        json::int_at(&cs, "/lastState/terminated/exitCode"),
        Some(3),
        "{cs}"
    );
}
