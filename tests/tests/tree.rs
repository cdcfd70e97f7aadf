//! `twinset tree`: the guide's "Example Architecture (Text View)" drawn from a live
//! cluster. The guide's DaemonSet and StatefulSet (real MariaDB replicas) are drawn with
//! their real pod, node and claim names, line by line as the guide draws them; a
//! StatefulSet whose replica cannot be scheduled shows it pending with its pending claim;
//! an empty namespace gets kubectl's one line; piped output carries no escape codes and
//! a terminal's (a pseudo-terminal from `script`) is coloured unless NO_COLOR is set.

use std::process::Command;
use std::time::Duration;

use twinset_e2e::cluster::run_command_with;
use twinset_e2e::json::{self, str_at, PodView};
use twinset_e2e::{sql, timeout, wait_for, Cluster, DATA_CLAIM_TAIL, GUIDE_STATEFULSET};

/// The guide's narrowest box inside.
const MIN_WIDTH: usize = 60;

/// The box the guide draws around `body`, titled "Twinset Cluster": as wide as the
/// longest line plus a space each side, at least the guide's 60 columns inside.
fn guide_box(body: &[String]) -> Vec<String> {
    let title = "Twinset Cluster";
    let width = body
        .iter()
        .map(|l| l.len() + 2)
        .max()
        .unwrap_or(0)
        .max(MIN_WIDTH);
    let rule = "-".repeat(width);
    let left = (width - title.len()) / 2;
    let mut lines = vec![
        format!("+{rule}+"),
        format!(
            "|{}{title}{}|",
            " ".repeat(left),
            " ".repeat(width - left - title.len())
        ),
        format!("|{rule}|"),
    ];
    lines.extend(body.iter().map(|l| format!("| {l:<w$}|", w = width - 1)));
    lines.push(format!("+{rule}+"));
    lines
}

/// Asserts `got` is `want`, line by line (so a failure names the first line that differs).
fn assert_lines(got: &str, want: &[String]) {
    let got: Vec<&str> = got.lines().collect();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g,
            w,
            "line {} differs; got:\n{}\nwant:\n{}",
            i + 1,
            got.join("\n"),
            want.join("\n")
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "got:\n{}\nwant:\n{}",
        got.join("\n"),
        want.join("\n")
    );
}

/// `twinset tree ARGS`, piped: succeeds, says nothing on stderr, and has no escapes.
fn tree(c: &Cluster, args: &[&str]) -> String {
    let mut full = vec!["tree"];
    full.extend(args);
    let out = c.run(&full);
    let stdout = out.ok().to_string();
    assert_eq!(out.stderr, "", "{out}");
    assert!(
        !stdout.contains('\x1b'),
        "piped `tree` printed escape codes:\n{stdout:?}"
    );
    stdout
}

/// The claims a pod's volumes name, in volume order, from its JSON.
fn claims_of(p: &PodView) -> Vec<String> {
    p.raw
        .pointer("/spec/volumes")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .map(|v| str_at(v, "/persistentVolumeClaim/claimName").to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

/// Waits until DaemonSet `ns/name` reports `ready` ready of `ready` desired pods.
fn wait_ds_status(c: &Cluster, ns: &str, name: &str, ready: i64) {
    wait_for(
        &format!("DaemonSet {ns}/{name} status {ready}/{ready} ready"),
        timeout(),
        || {
            let ds = c.get_json(&["ds", name, "-n", ns])?;
            let have = json::int_at(&ds, "/status/numberReady").unwrap_or(0);
            let want = json::int_at(&ds, "/status/desiredNumberScheduled").unwrap_or(0);
            if have == ready && want == ready {
                Ok(())
            } else {
                Err(format!("{have}/{want}"))
            }
        },
    );
}

/// The guide's DaemonSet section: heading and one line per pod, by node name.
fn daemon_set_lines(heading: &str, monitors: &[PodView]) -> Vec<String> {
    let mut lines = vec![format!("DaemonSet: {heading} (3/3 ready)")];
    lines.extend(
        monitors
            .iter()
            .map(|p| format!("  -> Pod: {} (runs on {}) Running 1/1", p.name, p.node)),
    );
    lines
}

#[test]
fn mariadb_tree_draws_the_guides_two_sets_with_live_names() {
    assert!(
        sql::server_installed(),
        "mariadbd not found: install Debian's mariadb-server (apt-get install mariadb-server mariadb-client)"
    );
    let c = Cluster::start(3);
    // Sorted by node name, the order `tree` draws DaemonSet pods in.
    let monitors = c.run_guide_daemonset(3);
    let out = c.apply_repo_file(GUIDE_STATEFULSET);
    assert!(
        out.ok().contains("statefulset.apps/mysql-db created"),
        "{out}"
    );
    // Sorted by name: mysql-db-0, -1, -2 are also the ordinal order.
    let replicas = c.wait_sts_ready("database", "mysql-db", 3);
    wait_ds_status(&c, "kube-system", "node-monitor", 3);

    // The claims, as the API lists them: each replica's one claim, Bound.
    let pvcs = json::items(
        &c.get_json(&["pvc", "-n", "database"])
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let mut body = daemon_set_lines("kube-system/node-monitor", &monitors);
    body.push(String::new());
    body.push("StatefulSet: database/mysql-db (3/3 ready)".to_string());
    for p in &replicas {
        let claims = claims_of(p);
        assert_eq!(claims.len(), 1, "{} names claims {claims:?}", p.name);
        let pvc = pvcs
            .iter()
            .find(|o| str_at(o, "/metadata/name") == claims[0])
            .unwrap_or_else(|| panic!("no claim {} of {}", claims[0], p.name));
        assert_eq!(str_at(pvc, "/status/phase"), "Bound", "{pvc}");
        body.push(format!(
            "  -> Pod: {} (with PVC {}, runs on {}) Running 1/1",
            p.name, claims[0], p.node
        ));
    }
    let names: Vec<&str> = replicas.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["mysql-db-0", "mysql-db-1", "mysql-db-2"]);

    let got = tree(&c, &["-A"]);
    let want = guide_box(&body);
    assert_lines(&got, &want);
    // The pod lines are longer than the guide's, so the box grew to fit them.
    assert!(want[0].len() > MIN_WIDTH + 2, "{}", want[0]);

    // One namespace: the same section without the namespace prefix.
    let got = tree(&c, &["-n", "database"]);
    let mut sts_body = body[monitors.len() + 3..].to_vec();
    sts_body.insert(0, "StatefulSet: mysql-db (3/3 ready)".to_string());
    assert_lines(&got, &guide_box(&sts_body));
}

/// A StatefulSet shaped like the guide's (3 replicas, a claim template), with a cheap
/// container and a node selector no node matches: its first replica stays Pending.
fn unschedulable_set() -> String {
    format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: mysql-db
  namespace: waiting
spec:
  serviceName: mysql
  replicas: 3
  selector:
    matchLabels:
      app: mysql
  template:
    metadata:
      labels:
        app: mysql
    spec:
      nodeSelector:
        disk: none-has-it
      containers:
      - name: sleep
        image: twinset/sleep:latest
{DATA_CLAIM_TAIL}"
    )
}

/// `twinset tree ARGS` on a pseudo-terminal (util-linux `script`), with NO_COLOR as
/// given; returns what the terminal showed.
fn tree_on_terminal(c: &Cluster, args: &str, no_color: Option<&str>) -> String {
    // The CLI's own command line and environment (server, config, test id), then
    // NO_COLOR as asked.
    let cli = c.cli_command();
    let mut line: Vec<String> = std::iter::once(cli.get_program())
        .chain(cli.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    line.push(format!("tree {args}"));
    let mut cmd = Command::new("script");
    for (k, v) in cli.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    cmd.args(["-q", "-e", "-c", &line.join(" "), "/dev/null"]);
    let out = run_command_with(cmd, "script twinset tree", None, Duration::from_secs(30));
    out.ok().to_string()
}

#[test]
fn tree_shows_pending_replicas_says_when_empty_and_colours_only_terminals() {
    let c = Cluster::start(2);
    // Nothing yet: kubectl's line, on stderr, and a success.
    for (args, line) in [
        (vec!["tree", "-A"], "No resources found"),
        (
            vec!["tree", "-n", "nothing-here"],
            "No resources found in nothing-here namespace.",
        ),
        (vec!["tree"], "No resources found in default namespace."),
    ] {
        let out = c.run(&args);
        assert_eq!(out.ok(), "", "{out}");
        assert_eq!(out.stderr.trim_end(), line, "{out}");
    }

    let monitors = c.run_guide_daemonset(2);
    let out = c.apply(&unschedulable_set());
    assert!(
        out.ok().contains("statefulset.apps/mysql-db created"),
        "{out}"
    );
    let pending = wait_for("mysql-db-0 to exist, Pending", timeout(), || {
        let pods = c.pods_named("waiting", "mysql-db-")?;
        match pods.as_slice() {
            [p] if p.phase == "Pending" && p.node.is_empty() => Ok(p.clone()),
            _ => Err(json::summary(&pods)),
        }
    });
    wait_ds_status(&c, "kube-system", "node-monitor", 2);
    let claims = claims_of(&pending);
    assert_eq!(claims, ["data-mysql-db-0"]);

    let mut body: Vec<String> = vec!["DaemonSet: kube-system/node-monitor (2/2 ready)".into()];
    body.extend(
        monitors
            .iter()
            .map(|p| format!("  -> Pod: {} (runs on {}) Running 1/1", p.name, p.node)),
    );
    body.push(String::new());
    body.push("StatefulSet: waiting/mysql-db (0/3 ready)".into());
    body.push(format!(
        "  -> Pod: mysql-db-0 (with PVC {} (Pending), not scheduled) Pending 0/1",
        claims[0]
    ));
    let got = tree(&c, &["-A"]);
    assert_lines(&got, &guide_box(&body));

    // One namespace, short lines: no prefix, and the guide's 60 columns inside.
    let got = tree(&c, &["-n", "kube-system"]);
    let mut ds_body = body[..monitors.len() + 1].to_vec();
    ds_body[0] = "DaemonSet: node-monitor (2/2 ready)".into();
    let want = guide_box(&ds_body);
    assert_lines(&got, &want);
    assert_eq!(want[0].len(), MIN_WIDTH + 2);

    // On a terminal the marks are coloured; NO_COLOR turns that off.
    let shown = tree_on_terminal(&c, "-n kube-system", None);
    assert!(
        shown.contains("\x1b[32mRunning 1/1\x1b[0m") && shown.contains("\x1b[32m(2/2 ready)"),
        "no green marks on a terminal: {shown:?}"
    );
    let shown = tree_on_terminal(&c, "-n kube-system", Some("1"));
    assert!(
        !shown.contains('\x1b'),
        "NO_COLOR=1 still coloured: {shown:?}"
    );
    assert!(
        shown.contains("DaemonSet: node-monitor (2/2 ready)"),
        "{shown:?}"
    );
}
