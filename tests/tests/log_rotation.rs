//! Container logs rotate as the kubelet's do (`--container-log-max-size`,
//! `--container-log-max-files`): a container that writes 50 MiB keeps at most
//! max-size × max-files per run on disk, `logs` shows its latest lines across the
//! rotated files, and `logs --previous` shows the run before.

use std::path::{Path, PathBuf};

use twinset_e2e::{timeout, wait_for, Cluster, Options};

const MAX_SIZE: u64 = 1024 * 1024;
const MAX_FILES: u64 = 3;

/// A pod on node1 whose container `main` runs `script` with sh.
fn pod(name: &str, script: &str) -> String {
    twinset_e2e::shell_pod(name, "node1", script)
}

/// Each run writes 50 MiB and a last line naming the run; the first run then exits
/// (and restarts), the second stays.
const NOISY: &str = r#"n=$(cat "$TMPDIR/run" 2>/dev/null || echo 0)
echo $((n + 1)) > "$TMPDIR/run"
yes "run $n: filler filler filler filler filler filler filler filler filler" | head -c 52428800
echo
echo "end of run $n"
if [ "$n" = 0 ]; then exit 1; fi
exec sleep 3600"#;

/// The pod's log folder on node1.
fn pod_dir(c: &Cluster, name: &str) -> PathBuf {
    let pods = c.node_dir("node1").join("pods");
    let prefix = format!("default_{name}_");
    wait_for(&format!("the log folder of pod {name}"), timeout(), || {
        std::fs::read_dir(&pods)
            .map_err(|e| format!("{}: {e}", pods.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.starts_with(&prefix))
            })
            .ok_or_else(|| format!("no {prefix}* in {}", pods.display()))
    })
}

/// Bytes on disk of container `main`'s log files of run `n` (`main_<n>.log*`).
fn run_bytes(dir: &Path, n: u32) -> u64 {
    let prefix = format!("main_{n}.log");
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|f| f.starts_with(&prefix))
        })
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn fifty_mib_of_output_rotates_and_previous_shows_the_run_before() {
    let c = Cluster::start_with(
        1,
        Options {
            agent_flags: vec![
                "--container-log-max-size".into(),
                "1Mi".into(),
                "--container-log-max-files".into(),
                MAX_FILES.to_string(),
            ],
            ..Options::default()
        },
    );

    // A container that has run once has no previous instance: kubectl's error.
    c.apply(&pod("once", "echo hello; exec sleep 3600")).ok();
    wait_for("`logs once` to show its line", timeout(), || {
        let out = c.run(&["logs", "once"]);
        match out.result()? {
            "hello\n" => Ok(()),
            other => Err(format!("logs: {other:?}")),
        }
    });
    let err = c.run(&["logs", "once", "--previous"]);
    assert!(
        err.failed()
            .contains("previous terminated container \"main\" in pod \"once\" not found"),
        "{err}"
    );

    c.apply(&pod("noisy", NOISY)).ok();
    wait_for("the second run to finish its 50 MiB", timeout() * 4, || {
        let out = c.run(&["logs", "noisy", "--tail", "1"]);
        match out.result()? {
            "end of run 1\n" => Ok(()),
            other => Err(format!("last line: {other:?}")),
        }
    });
    let prev = c.run(&["logs", "noisy", "-p", "--tail", "1"]);
    assert_eq!(prev.ok(), "end of run 0\n");

    // All of `logs`: the latest lines of the current run, read across its rotated
    // files, no more than the files keep.
    let cur = c.run(&["logs", "noisy"]);
    let text = cur.ok();
    assert!(
        text.ends_with("\nend of run 1\n"),
        "{}",
        &text[text.len().saturating_sub(200)..]
    );
    assert!(
        text.len() as u64 <= MAX_SIZE * MAX_FILES,
        "{} bytes",
        text.len()
    );
    assert!(
        text.len() as u64 > MAX_SIZE * (MAX_FILES - 1),
        "{} bytes",
        text.len()
    );
    assert!(
        !text.contains("run 0"),
        "the current run's log has the previous run's lines"
    );
    let prev = c.run(&["logs", "noisy", "--previous"]);
    let ptext = prev.ok();
    assert!(ptext.ends_with("\nend of run 0\n"));
    assert!(
        ptext.len() as u64 <= MAX_SIZE * MAX_FILES,
        "{} bytes",
        ptext.len()
    );
    assert!(!ptext.contains("run 1"));

    // On disk: each run at most max-size × max-files; only the two runs are kept.
    let dir = pod_dir(&c, "noisy");
    for n in [0, 1] {
        let bytes = run_bytes(&dir, n);
        assert!(
            bytes <= MAX_SIZE * MAX_FILES,
            "run {n} keeps {bytes} bytes in {}",
            dir.display()
        );
        assert!(bytes > 0, "run {n} has no log in {}", dir.display());
    }
    let logs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|f| f.starts_with("main_"))
        .collect();
    assert!(
        logs.iter()
            .all(|f| f.starts_with("main_0.") || f.starts_with("main_1.")),
        "{logs:?}"
    );
    assert!(
        logs.iter().filter(|f| f.contains(".log")).count() as u64 <= 2 * MAX_FILES,
        "{logs:?}"
    );
}
