//! The restart back-off as the kubelet's, with shortened flags: a crashing container's
//! restarts wait 1×, 2×, 4× the base, then the max; a run as long as the reset period
//! brings the wait back to the base; meanwhile `get pods` shows `CrashLoopBackOff` and
//! RESTARTS as kubectl prints it, `N (Xs ago)`. And the restart policies of bare pods:
//! Never and OnFailure end a pod Succeeded or Failed instead of restarting it.
//!
//! The container writes the time of each start and end (in nanoseconds, `date +%s%N`) to
//! files in a hostPath directory mounted at its own path, so the test reads them whether
//! or not the agent can isolate mounts. A wait is measured from one run's end to the next
//! run's start: never shorter than the agent's delay, and at most a second longer under
//! load (the tolerance: at least 0.9× the expected delay, at most 1 s over it).

use std::path::Path;
use std::time::Duration;

use twinset_e2e::{holds_for, shell_pod, timeout, wait_for, Cluster, Options};

const BASE_MS: u64 = 400;
const MAX_MS: u64 = 1600;
const RESET_MS: u64 = 2000;
/// The start (1-based) whose run outlasts the reset period.
const LONG_RUN_AT: usize = 6;
/// How long that run sleeps: longer than the reset period.
const LONG_RUN_SECS: u64 = 3;

fn cluster() -> Cluster {
    let flags = [
        ("--restart-backoff-base", BASE_MS),
        ("--restart-backoff-max", MAX_MS),
        ("--restart-backoff-reset", RESET_MS),
    ];
    Cluster::start_with(
        1,
        Options {
            agent_flags: flags
                .iter()
                .flat_map(|(f, ms)| [f.to_string(), format!("{ms}ms")])
                .collect(),
            ..Options::default()
        },
    )
}

/// A bare pod on node1 running `script` under `policy`, with the hostPath `dir` mounted
/// at the same path.
fn pod(name: &str, policy: &str, dir: &Path, script: &str) -> String {
    let dir = dir.display();
    format!(
        "{}    volumeMounts:
    - name: times
      mountPath: {dir}
  restartPolicy: {policy}
  volumes:
  - name: times
    hostPath:
      path: {dir}
      type: DirectoryOrCreate
",
        shell_pod(name, "node1", script)
    )
}

/// The nanosecond times written to `file`, one a line (none while it is missing).
fn times(file: &Path) -> Vec<u128> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The STATUS and RESTARTS cells of pod `name` in `get pods`.
fn status_and_restarts(c: &Cluster, name: &str) -> Result<(String, String), String> {
    let t = c.table(&["get", "pods", "-n", "default"]);
    let row = t.row(name).ok_or_else(|| format!("no row {name}"))?;
    Ok((
        t.cell(row, "STATUS").to_string(),
        t.cell(row, "RESTARTS").to_string(),
    ))
}

/// Whether `cell` is kubectl's RESTARTS with the age of the last restart, `N (Xs ago)`
/// for an age under two minutes, with N > 0.
fn restarts_with_age(cell: &str) -> bool {
    let Some((n, age)) = cell.split_once(" (") else {
        return false;
    };
    let secs = age.strip_suffix("s ago)").unwrap_or("");
    n.parse::<u32>().is_ok_and(|n| n > 0)
        && !secs.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
}

#[test]
fn restarts_back_off_doubling_to_the_max_and_reset_after_a_long_run() {
    let c = cluster();
    let dir = c.dir().join("crasher-times");
    let (starts, ends) = (dir.join("starts"), dir.join("ends"));
    let script = format!(
        "date +%s%N >> {s}; n=$(wc -l < {s}); if [ \"$n\" -eq {LONG_RUN_AT} ]; then sleep {LONG_RUN_SECS}; fi; date +%s%N >> {e}; exit 1",
        s = starts.display(),
        e = ends.display(),
    );
    let out = c.apply(&pod("crasher", "Always", &dir, &script));
    assert_eq!(out.ok().trim(), "pod/crasher created");

    // While it crash-loops, `get pods` shows it backing off, and kubectl's RESTARTS.
    let (status, restarts) = wait_for(
        "get pods to show crasher in CrashLoopBackOff with restarts",
        timeout(),
        || match status_and_restarts(&c, "crasher")? {
            (s, r) if s == "CrashLoopBackOff" && restarts_with_age(&r) => Ok((s, r)),
            seen => Err(format!("{seen:?}")),
        },
    );
    eprintln!("get pods: STATUS {status}, RESTARTS {restarts}");

    // Eight starts: five quick crashes, the long run, two more quick crashes.
    let want = LONG_RUN_AT + 2;
    let (starts, ends) = wait_for(&format!("{want} starts"), timeout(), || {
        let (s, e) = (times(&starts), times(&ends));
        if s.len() >= want && e.len() >= want - 1 {
            Ok((s, e))
        } else {
            Err(format!("{} starts, {} ends", s.len(), e.len()))
        }
    });
    // The wait before start i+1 (0-based): from run i's end to start i+1.
    let waits: Vec<Duration> = (0..want - 1)
        .map(|i| {
            let ns = starts[i + 1]
                .checked_sub(ends[i])
                .unwrap_or_else(|| panic!("start {} before end {i}: {starts:?} {ends:?}", i + 1));
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        })
        .collect();
    let long_run = Duration::from_nanos(
        u64::try_from(ends[LONG_RUN_AT - 1] - starts[LONG_RUN_AT - 1]).unwrap_or(u64::MAX),
    );
    eprintln!("waits between runs: {waits:?}; the long run lasted {long_run:?}");
    assert!(
        long_run >= Duration::from_millis(RESET_MS),
        "run {LONG_RUN_AT} lasted {long_run:?}, not the reset period"
    );
    let ms = Duration::from_millis;
    // 1×, 2×, 4× the base, capped at the max (twice), then after the long run the base
    // again and its double.
    let expected = [
        ms(BASE_MS),
        ms(2 * BASE_MS),
        ms(4 * BASE_MS).min(ms(MAX_MS)),
        ms(8 * BASE_MS).min(ms(MAX_MS)),
        ms(16 * BASE_MS).min(ms(MAX_MS)),
        ms(BASE_MS),
        ms(2 * BASE_MS),
    ];
    assert_eq!(expected.len(), waits.len());
    for (i, (got, want)) in waits.iter().zip(expected).enumerate() {
        assert!(
            *got >= want.mul_f64(0.9) && *got <= want + Duration::from_secs(1),
            "wait {} before start {}: {got:?}, expected {want:?} (waits {waits:?})",
            i + 1,
            i + 2
        );
    }

    // After all that, RESTARTS still counts them with the age of the last.
    let (_, restarts) = wait_for("RESTARTS of 7 or more", timeout(), || {
        let (s, r) = status_and_restarts(&c, "crasher")?;
        let n: u32 = r
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if n >= 7 && restarts_with_age(&r) {
            Ok((s, r))
        } else {
            Err(format!("{s} {r}"))
        }
    });
    eprintln!("get pods: RESTARTS {restarts}");
    c.run_ok(&["delete", "pod", "crasher"]);
}

#[test]
fn never_and_on_failure_end_bare_pods_instead_of_restarting_them() {
    let c = cluster();
    let dir = c.dir().join("policy-runs");
    let runs = |name: &str| dir.join(name);
    // Each pod counts its runs in a file of its own, then exits as its case says.
    let cases = [
        // (name, policy, exit code of the first run, of later runs)
        ("never-fails", "Never", 1, 1),
        ("never-succeeds", "Never", 0, 0),
        ("on-failure-retries", "OnFailure", 1, 0),
    ];
    for (name, policy, first, later) in cases {
        let f = runs(name);
        let script = format!(
            "echo run >> {f}; if [ $(wc -l < {f}) -eq 1 ]; then exit {first}; fi; exit {later}",
            f = f.display()
        );
        let out = c.apply(&pod(name, policy, &dir, &script));
        assert_eq!(out.ok().trim(), format!("pod/{name} created"));
    }
    // Phase, STATUS and restart count as the kubelet and kubectl have them.
    let want = [
        ("never-fails", "Failed", "Error", 0),
        ("never-succeeds", "Succeeded", "Completed", 0),
        ("on-failure-retries", "Succeeded", "Completed", 1),
    ];
    for (name, phase, status, restarts) in want {
        wait_for(&format!("pod {name} {phase}"), timeout(), || {
            let pods = c.pods_named("default", name)?;
            let p = pods.first().ok_or_else(|| "no pod".to_string())?;
            let (s, _) = status_and_restarts(&c, name)?;
            if p.phase == phase && s == status && p.restarts == restarts {
                Ok(())
            } else {
                Err(format!(
                    "phase {} STATUS {s} restarts {}",
                    p.phase, p.restarts
                ))
            }
        });
    }
    // None runs again, though several back-offs (400 ms, 800 ms) would have passed.
    holds_for(
        "no further runs of ended pods",
        Duration::from_millis(3 * BASE_MS + 2 * BASE_MS),
        || {
            let counts: Vec<usize> = ["never-fails", "never-succeeds", "on-failure-retries"]
                .iter()
                .map(|n| times_lines(&runs(n)))
                .collect();
            if counts == [1, 1, 2] {
                Ok(())
            } else {
                Err(format!("runs: {counts:?}"))
            }
        },
    );
}

/// Lines in `file` (0 while it is missing).
fn times_lines(file: &Path) -> usize {
    std::fs::read_to_string(file)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}
