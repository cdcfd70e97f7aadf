//! The README's two commands: the first (the quickstart script) is run here against
//! the debug binary, the second is what `.ci/run` runs, verbatim. And the guide's
//! manifests ship in deploy/examples exactly as the guide prints them.

use std::process::Command;

use twinset_e2e::{dns, free_port, repo_root, twinset_bin, Sandbox};

/// The guide's DaemonSet block, byte for byte.
const GUIDE_DS: &str = r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-monitor
  namespace: kube-system
spec:
  selector:
    matchLabels:
      app: node-monitor
  template:
    metadata:
      labels:
        app: node-monitor
    spec:
      containers:
      - name: monitor
        image: datadog/agent:latest
        resources:
          limits:
            cpu: "100m"
            memory: "128Mi"
"#;

/// The guide's StatefulSet block, byte for byte.
const GUIDE_STS: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: mysql-db
  namespace: database
spec:
  serviceName: "mysql"
  replicas: 3
  selector:
    matchLabels:
      app: mysql
  template:
    metadata:
      labels:
        app: mysql
    spec:
      containers:
      - name: mysql
        image: mysql:8
        ports:
        - containerPort: 3306
        volumeMounts:
        - name: mysql-storage
          mountPath: /var/lib/mysql
  volumeClaimTemplates:
  - metadata:
      name: mysql-storage
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1Gi
"#;

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The command lines of the README's first fenced block.
fn readme_commands() -> Vec<String> {
    let readme = read("README.md");
    let mut lines = readme.lines();
    let mut cmds = Vec::new();
    // Only a title may come before the block.
    for l in lines.by_ref() {
        if l.starts_with("```") {
            break;
        }
        assert!(
            l.is_empty() || l.starts_with("# "),
            "README does not open with the commands: {l:?}"
        );
    }
    for l in lines {
        if l.starts_with("```") {
            break;
        }
        let l = l.trim();
        if !l.is_empty() && !l.starts_with('#') {
            cmds.push(l.to_string());
        }
    }
    cmds
}

#[test]
fn readme_opens_with_the_two_commands_and_ci_runs_the_test_command() {
    let cmds = readme_commands();
    assert_eq!(cmds.len(), 2, "README's first block: {cmds:?}");
    assert_eq!(cmds[0], "./deploy/quickstart.sh");
    assert!(
        cmds[1].contains("cargo build -p twinset"),
        "the test command must build the binary first: {}",
        cmds[1]
    );
    let ci = read(".ci/run");
    let ci_lines: Vec<&str> = ci.lines().map(str::trim).collect();
    assert!(
        ci_lines.contains(&cmds[1].as_str()),
        ".ci/run does not run the README's test command {:?} verbatim",
        cmds[1]
    );
    assert!(
        ci_lines.contains(&cmds[0].as_str()),
        ".ci/run does not run the README's first command"
    );
    assert!(ci_lines.contains(&"cargo fmt --all -- --check"));
    assert!(ci_lines.contains(&"cargo clippy --workspace --all-targets -- -D warnings"));
    for script in [".ci/run", "deploy/quickstart.sh"] {
        let mode = std::fs::metadata(repo_root().join(script))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
        assert!(
            mode.is_ok_and(|m| m & 0o111 != 0),
            "{script} is not executable"
        );
    }
}

#[test]
fn examples_are_the_guides_manifests_byte_for_byte() {
    assert_eq!(read("deploy/examples/daemonset.yaml"), GUIDE_DS);
    assert_eq!(read("deploy/examples/statefulset.yaml"), GUIDE_STS);
    // When the guide itself is at hand (the project's shared seed), compare with it too.
    let guide = std::env::var("TWINSET_GUIDE")
        .unwrap_or_else(|_| "/work/shared/seed/daemonset-vs-statefulset.md".into());
    if let Ok(text) = std::fs::read_to_string(&guide) {
        let blocks: Vec<&str> = text
            .split("```yaml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .collect();
        assert_eq!(
            blocks,
            [GUIDE_DS, GUIDE_STS],
            "the guide's YAML blocks changed"
        );
    }
    // Both decode into the API's objects.
    for (text, kind, name) in [
        (GUIDE_DS, "DaemonSet", "node-monitor"),
        (GUIDE_STS, "StatefulSet", "mysql-db"),
    ] {
        let objs = twinset_proto::manifest::decode(text).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].kind().as_str(), kind);
        assert_eq!(objs[0].name(), name);
    }
}

#[test]
fn quickstart_script_runs_the_guide_daemonset_and_statefulset() {
    let s = Sandbox::new();
    let mut cmd = Command::new(repo_root().join("deploy").join("quickstart.sh"));
    cmd.env("TWINSET_BIN", twinset_bin())
        .env("TWINSET_DATA_DIR", s.dir().join("cluster"))
        .env("TWINSET_PORT", free_port().to_string())
        // An address of the test's own, through the script's TWINSET_DNS_LISTEN.
        .env("TWINSET_DNS_LISTEN", dns::pick_listen_addr().to_string())
        .env_remove("TWINSET_SERVER")
        .env_remove("TWINSET_CONFIG");
    let out = s.run_program(
        cmd,
        "deploy/quickstart.sh",
        std::time::Duration::from_secs(240),
    );
    assert!(out.success(), "{out}");
    for want in [
        "daemonset.apps/node-monitor created",
        "Pods Status:  3 Running / 0 Waiting / 0 Succeeded / 0 Failed",
        "daemonset.apps \"node-monitor\" deleted",
        "statefulset.apps/mysql-db created",
        "$ twinset describe sts mysql-db -n database",
        "statefulset.apps/mysql-db scaled",
        "$ twinset rollout status sts/mysql-db -n database",
        "mysql-db-3",
        "+short mysql-db-0.mysql.database.svc.cluster.local",
        "quickstart: OK",
    ] {
        assert!(
            out.stdout.contains(want),
            "quickstart output lacks {want:?}:\n{out}"
        );
    }
}
