//! An installed `twinset` (copied out of the checkout, run from elsewhere, no
//! TWINSET_IMAGE_TABLE) still runs the guide: it uses the image table built into the
//! binary, says so, and the guide's DaemonSet reaches Running.

use std::collections::BTreeSet;
use std::process::Command;

use twinset_e2e::json::{self, PodView};
use twinset_e2e::{free_port, repo_root, timeout, wait_for, Sandbox, GUIDE_DAEMONSET};

#[test]
fn a_copied_binary_runs_the_guides_daemonset_with_the_built_in_table() {
    let s = Sandbox::new();
    // The binary, installed outside the checkout.
    let install = s.dir().join("usr-local-bin");
    std::fs::create_dir_all(&install).unwrap();
    let bin = install.join("twinset");
    std::fs::copy(s.bin(), &bin).unwrap();
    let elsewhere = s.dir().join("somewhere-else");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let manifest = elsewhere.join("daemonset.yaml");
    std::fs::copy(repo_root().join(GUIDE_DAEMONSET), &manifest).unwrap();
    assert!(
        !bin.ancestors()
            .any(|d| d.join("deploy/images.yaml").is_file()),
        "the copy must be outside any checkout"
    );

    let data = s.dir().join("cluster");
    let d = data.to_string_lossy().into_owned();
    let port = free_port().to_string();
    let installed = |args: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.current_dir(&elsewhere)
            .env_remove("TWINSET_IMAGE_TABLE")
            .env_remove("TWINSET_SERVER")
            .env_remove("TWINSET_CONFIG")
            .env("NO_COLOR", "1")
            .args(args);
        s.run_program(
            cmd,
            &format!("installed twinset {}", args.join(" ")),
            timeout(),
        )
    };
    let up = installed(&[
        "up",
        "-d",
        "--nodes",
        "2",
        "--data-dir",
        &d,
        "--port",
        &port,
    ]);
    assert!(up.success(), "up -d: {up}");
    let said = format!("{}{}", up.stdout, up.stderr);
    assert!(
        said.contains("Image table: built into this binary"),
        "up does not say which table it uses: {up}"
    );
    // The table's helper scripts are where the agents can run them.
    for node in ["node1", "node2"] {
        let script = data.join(node).join("builtin-images/images/mysql.sh");
        assert!(script.is_file(), "{} is missing", script.display());
    }

    let out = installed(&["apply", "-f", "daemonset.yaml"]);
    assert_eq!(out.ok().trim(), "daemonset.apps/node-monitor created");
    let pods = wait_for("2 node-monitor pods Running", timeout(), || {
        let out = installed(&["get", "pods", "-n", "kube-system", "-o", "json"]);
        let v: serde_json::Value =
            serde_json::from_str(out.result()?).map_err(|e| e.to_string())?;
        let pods: Vec<PodView> = json::items(&v).iter().map(PodView::from_json).collect();
        if pods.len() == 2 && pods.iter().all(PodView::is_running_ready) {
            Ok(pods)
        } else {
            Err(json::summary(&pods))
        }
    });
    let nodes: BTreeSet<&str> = pods.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(nodes, BTreeSet::from(["node1", "node2"]));

    let out = installed(&["down", "--data-dir", &d]);
    assert!(out.success(), "down: {out}");
}
