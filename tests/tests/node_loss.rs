//! A node lost: its pods turn not Ready; a `twinset.io/on-node-lost: Replace`
//! StatefulSet's replica is fenced on its node (by the agent, or by the fence watchdog
//! when the agent is dead) and recreated elsewhere with a new, empty volume; the old
//! data is set aside when the node returns. The default (Wait) replaces nothing.
//!
//! Timings are shortened by flags: node grace 2 s, replace-after 3.5 s, fence-after
//! 1.5 s plus a 1 s kill grace (2.5 s, below replace-after), heartbeats every 200 ms.

use std::time::{Duration, Instant};

use serde_json::Value;
use twinset_e2e::cluster::Options;
use twinset_e2e::proxy::Proxy;
use twinset_e2e::wait::{timeout, try_wait_for, wait_for};
use twinset_e2e::Cluster;

const NS: &str = "lost";
const GRACE: Duration = Duration::from_secs(2);
const REPLACE_AFTER: Duration = Duration::from_millis(3500);
const AGENT_FLAGS: [&str; 4] = ["--fence-after", "1500ms", "--fence-grace", "1s"];

fn options() -> Options {
    Options {
        control_plane_flags: vec![
            "--node-grace".into(),
            "2s".into(),
            "--replace-after".into(),
            "3500ms".into(),
        ],
        agent_flags: AGENT_FLAGS.iter().map(|s| s.to_string()).collect(),
        dns: true,
        ..Options::default()
    }
}

/// The replica's name in the cluster DNS.
const DB_0: &str = "db-0.db.lost.svc.cluster.local";

/// The A records of db-0 the cluster DNS gives.
fn dns_db_0(c: &Cluster) -> Result<Vec<String>, String> {
    let server = c.dns_addr().ok_or("the cluster has no DNS server")?;
    twinset_e2e::dns::a_records(server, DB_0)
}

/// READY of `get sts db` (`1/1`).
fn sts_ready(c: &Cluster) -> Result<String, String> {
    let sts = c.get_json(&["sts", "db", "-n", NS])?;
    Ok(format!(
        "{}/{}",
        sts["status"]["readyReplicas"].as_i64().unwrap_or(0),
        sts["spec"]["replicas"].as_i64().unwrap_or(0)
    ))
}

/// The replica's command: it notes whether its volume held data already, then writes
/// its node's name there.
const COMMAND: &str = "if [ -f /data/marker ]; then echo found > /data/seen; fi; echo \"$$NODE_NAME\" > /data/marker; exec sleep 100000";

/// [`COMMAND`], but the replica takes 2 s to shut down on SIGTERM, as a database does,
/// and holds `/data/running` while it runs: one that starts while another still holds
/// it writes `/data/overlap`.
const SLOW_STOP: &str = "if [ -f /data/marker ]; then echo found > /data/seen; fi; if [ -f /data/running ]; then echo overlap > /data/overlap; fi; touch /data/running; echo \"$$NODE_NAME\" > /data/marker; trap \"sleep 2; rm -f /data/running; exit 0\" TERM; sleep 100000 & wait";

/// One replica with a claim; its container notes whether it found old data.
fn sts(policy: Option<&str>) -> String {
    sts_running(policy, COMMAND)
}

/// The test's StatefulSet (one replica with a claim) whose container runs `command`.
fn sts_running(policy: Option<&str>, command: &str) -> String {
    let annotations = match policy {
        Some(p) => format!("  annotations:\n    twinset.io/on-node-lost: {p}\n"),
        None => String::new(),
    };
    format!(
        "apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: {NS}
{annotations}spec:
  serviceName: db
  replicas: 1
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      terminationGracePeriodSeconds: 30
      containers:
      - name: db
        image: busybox
        command: [sh, -c, '{command}']
        env:
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Mi
"
    )
}

fn pod(c: &Cluster) -> Result<Value, String> {
    c.get_json(&["pod", "db-0", "-n", NS])
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

fn condition<'a>(pod: &'a Value, kind: &str) -> Option<&'a Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Waits until db-0's Ready condition is False.
fn wait_not_ready(c: &Cluster) {
    wait_for("db-0 not Ready", timeout(), || {
        let p = pod(c)?;
        match condition(&p, "Ready") {
            Some(r) if r["status"] == "False" => Ok(()),
            _ => Err(format!("{}", p["status"])),
        }
    });
}

fn node_ready(c: &Cluster, node: &str) -> String {
    c.get_json(&["node", node])
        .ok()
        .and_then(|n| {
            n["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .map(|c| c["status"].as_str().unwrap_or("").to_string())
        })
        .unwrap_or_default()
}

/// Starts the set and waits for db-0 Running and Ready, armed when `armed`: (uid, node).
fn start(c: &Cluster, policy: Option<&str>, armed: bool) -> (String, String) {
    start_manifest(c, &sts(policy), armed)
}

/// Applies `manifest` and waits for db-0 Running and Ready, its fence armed or not as
/// `armed` says; its uid and node.
fn start_manifest(c: &Cluster, manifest: &str, armed: bool) -> (String, String) {
    c.apply(manifest).ok();
    wait_for("db-0 Running and Ready", timeout(), || {
        let p = pod(c)?;
        let ready = condition(&p, "Ready").is_some_and(|c| c["status"] == "True");
        let fence =
            condition(&p, "twinset.io/NodeLossFence").is_some_and(|c| c["status"] == "True");
        if s(&p, &["status", "phase"]) == "Running" && ready && fence == armed {
            Ok((
                s(&p, &["metadata", "uid"]).to_string(),
                s(&p, &["spec", "nodeName"]).to_string(),
            ))
        } else {
            Err(format!("{}", p["status"]))
        }
    })
}

/// Milliseconds of CLOCK_BOOTTIME now, the clock /proc start times count in.
fn boot_ms() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).expect("boottime");
    t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000
}

fn start_ms(start_ticks: u64) -> u64 {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    start_ticks * 1000 / hz
}

/// Asserts that `old` (watched by `dead`, [`watch_death`]) was gone before `new`
/// started; when it was gone (boot-clock ms).
#[track_caller]
fn gone_before(
    old: twinset_e2e::ProcId,
    dead: std::thread::JoinHandle<u64>,
    new: twinset_e2e::ProcId,
) -> u64 {
    let dead_at = dead.join().expect("death watcher");
    assert!(!old.is_alive(), "the old process still runs");
    assert!(
        dead_at < start_ms(new.start_time),
        "the old process (gone by {dead_at} ms after boot) was not gone before the new one started ({} ms)",
        start_ms(new.start_time)
    );
    dead_at
}

/// Polls `alive` every 10 ms on a thread of its own; the handle gives the boot-clock
/// milliseconds at which it was first seen false.
fn watch_death(alive: impl Fn() -> bool + Send + 'static) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        boot_ms()
    })
}

#[test]
fn a_killed_agents_replace_replica_runs_elsewhere_once_its_processes_are_gone() {
    let mut c = Cluster::start_with(3, options());
    let (old_uid, lost) = start(&c, Some("Replace"), true);
    let old = c.wait_pod_process(NS, "db-0");
    let old_dir = c.volume_dir(&lost, NS, "data-db-0");
    assert!(
        old_dir.join("marker").exists(),
        "the replica wrote its data"
    );
    let watch = c.watch_pods();

    c.kill_agent(&lost);
    let killed = Instant::now();
    let dead = watch_death(move || old.is_alive());

    // The node goes Unknown within the grace (+1 s), and its pod not Ready.
    wait_for("the killed node Unknown", timeout(), || {
        match node_ready(&c, &lost).as_str() {
            "Unknown" => Ok(()),
            other => Err(other.to_string()),
        }
    });
    let unknown_after = killed.elapsed();
    let not_ready = wait_for("db-0 not Ready on the lost node", timeout(), || {
        let p = pod(&c)?;
        match condition(&p, "Ready") {
            Some(r) if r["status"] == "False" && s(&p, &["metadata", "uid"]) == old_uid => {
                Ok(r.clone())
            }
            _ => Err(format!("{}", p["status"])),
        }
    });
    assert_eq!(not_ready["reason"], "NodeNotReady", "{not_ready}");

    // The replica comes back on another node, Running and Ready.
    let (new_node, new_uid) = wait_for("db-0 Running elsewhere", timeout(), || {
        let p = pod(&c)?;
        let ready = condition(&p, "Ready").is_some_and(|c| c["status"] == "True");
        let node = s(&p, &["spec", "nodeName"]);
        if s(&p, &["metadata", "uid"]) != old_uid && !node.is_empty() && ready {
            Ok((node.to_string(), s(&p, &["metadata", "uid"]).to_string()))
        } else {
            Err(format!("{} on {node:?}", p["status"]))
        }
    });
    let running_after = killed.elapsed();
    assert_ne!(new_node, lost);
    let new = c.wait_pod_process(NS, "db-0");
    let dead_at = gone_before(old, dead, new);
    eprintln!(
        "node Unknown after {unknown_after:?}, replica Ready on {new_node} after {running_after:?}; old process gone {} ms before the new one started",
        start_ms(new.start_time) - dead_at
    );
    assert!(
        unknown_after <= GRACE + Duration::from_secs(1),
        "Unknown after {unknown_after:?}"
    );
    assert!(
        running_after <= REPLACE_AFTER + Duration::from_secs(1),
        "Running elsewhere after {running_after:?}"
    );

    // A new, empty volume there; the claim remembers the lost node.
    let new_dir = c.volume_dir(&new_node, NS, "data-db-0");
    assert!(new_dir.join("marker").exists());
    assert!(
        !new_dir.join("seen").exists(),
        "the new volume was not empty"
    );
    let claim = c.get_json(&["pvc", "data-db-0", "-n", NS]).expect("claim");
    assert_eq!(
        s(
            &claim,
            &[
                "metadata",
                "annotations",
                "volume.kubernetes.io/selected-node"
            ]
        ),
        new_node
    );
    assert_eq!(
        s(&claim, &["metadata", "annotations", "twinset.io/lost-on"]),
        lost
    );
    let events = c.events(NS).expect("events");
    assert!(
        events.iter().any(|e| e["reason"] == "NodeLost"
            && e["message"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("on node {lost}"))),
        "no NodeLost event: {events:#?}"
    );
    let fenced = std::fs::read_to_string(c.node_dir(&lost).join("fence/fenced").join(&old_uid))
        .expect("the watchdog's mark of the fenced pod");
    assert!(fenced.contains("watchdog"), "{fenced}");

    // The lost node returns: its old folder is set aside, never deleted, and an event
    // says where; the claim is free of it again.
    c.spawn_agent(&lost, &AGENT_FLAGS);
    c.wait_nodes_ready(std::slice::from_ref(&lost));
    let kept = wait_for("the old folder set aside", timeout(), || {
        let root = c.node_dir(&lost).join("volumes/.kept").join(NS);
        let found: Vec<_> = std::fs::read_dir(&root)
            .map_err(|e| format!("{}: {e}", root.display()))?
            .flatten()
            .map(|e| e.path())
            .collect();
        match found.as_slice() {
            [one] => Ok(one.clone()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(
        std::fs::read_to_string(kept.join("marker")).unwrap().trim(),
        lost,
        "the set-aside folder holds the old data"
    );
    assert!(
        !old_dir.exists(),
        "the old folder is still under the claim's name"
    );
    wait_for("the VolumeKeptAside event", timeout(), || {
        let events = c.events(NS)?;
        events
            .iter()
            .find(|e| e["reason"] == "VolumeKeptAside")
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .filter(|m| m.contains(&kept.display().to_string()))
            .ok_or_else(|| format!("{events:?}"))
    });
    wait_for(
        "the claim no longer kept off the returned node",
        timeout(),
        || {
            let claim = c.get_json(&["pvc", "data-db-0", "-n", NS])?;
            match claim["metadata"]["annotations"].get("twinset.io/lost-on") {
                None => Ok(()),
                Some(v) => Err(v.to_string()),
            }
        },
    );
    // The returned agent stopped the replaced pod for good: nothing of it is left for
    // its fence watchdog to guard.
    wait_for(
        "the fence records of the replaced pod gone",
        timeout(),
        || {
            let left: Vec<String> = ["fence/pods", "fence/fenced"]
                .iter()
                .flat_map(|sub| {
                    std::fs::read_dir(c.node_dir(&lost).join(sub))
                        .into_iter()
                        .flatten()
                })
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(&old_uid))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    );
    // One pod per identity throughout; the replacement kept running.
    watch.assert_identities_unique();
    let p = pod(&c).expect("db-0");
    assert_eq!(s(&p, &["metadata", "uid"]), new_uid);
}

#[test]
fn with_the_default_policy_a_lost_replica_waits_for_its_node() {
    let mut c = Cluster::start_with(3, options());
    let (uid, node) = start(&c, None, false);
    let proc_before = c.wait_pod_process(NS, "db-0");
    let ip = wait_for("db-0 in the cluster DNS", timeout(), || {
        match dns_db_0(&c)? {
            ips if ips.len() == 1 => Ok(ips[0].clone()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(sts_ready(&c).as_deref(), Ok("1/1"));
    c.kill_agent(&node);
    wait_not_ready(&c);
    // The set counts it out and the DNS stops answering with the dead replica's address.
    wait_for("get sts db READY 0/1", timeout(), || {
        match sts_ready(&c)?.as_str() {
            "0/1" => Ok(()),
            other => Err(other.to_string()),
        }
    });
    wait_for(
        "the DNS no longer answering for db-0",
        timeout(),
        || match dns_db_0(&c)? {
            ips if ips.is_empty() => Ok(()),
            other => Err(format!("still {other:?} (was {ip})")),
        },
    );
    // Past replace-after (and well past fence-after): nothing moves, nothing stops.
    let moved = try_wait_for(REPLACE_AFTER + Duration::from_secs(2), || {
        let p = pod(&c).map_err(|e| e.to_string());
        match p {
            Ok(p) if s(&p, &["metadata", "uid"]) == uid => Err("same pod".to_string()),
            other => Ok(format!("{other:?}")),
        }
    });
    assert!(moved.is_err(), "the replica was replaced: {moved:?}");
    assert!(proc_before.is_alive(), "a Wait replica was stopped");
    // The node returns: the same pod, the same process, Ready again.
    c.spawn_agent(&node, &AGENT_FLAGS);
    wait_for("db-0 Ready again", timeout(), || {
        let p = pod(&c)?;
        let ready = condition(&p, "Ready").is_some_and(|c| c["status"] == "True");
        if ready && s(&p, &["metadata", "uid"]) == uid {
            Ok(())
        } else {
            Err(format!("{}", p["status"]))
        }
    });
    assert!(proc_before.is_alive(), "the adopted replica was restarted");
}

#[test]
fn a_partitioned_agent_fences_in_time_and_after_healing_one_pod_per_identity() {
    let mut c = Cluster::start_with(2, options());
    let proxy = Proxy::start(c.addr().parse().expect("control plane address"));
    let server = format!("https://{}", proxy.addr());
    // node3 reaches the control plane only through the proxy; the others are cordoned
    // so the replica lands there.
    c.spawn_agent_via("node3", &server, &AGENT_FLAGS);
    c.wait_nodes_ready(&["node3".to_string()]);
    for n in ["node1", "node2"] {
        c.run_ok(&["cordon", n]);
    }
    let (old_uid, node) = start(&c, Some("Replace"), true);
    assert_eq!(node, "node3");
    for n in ["node1", "node2"] {
        c.run_ok(&["uncordon", n]);
    }
    let old = c.wait_pod_process(NS, "db-0");
    let watch = c.watch_pods();
    let agent = c.agent_pid("node3").expect("node3's agent");

    proxy.cut();
    let cut = Instant::now();
    let dead = watch_death(move || old.is_alive());
    let dead_at = dead.join().expect("death watcher");
    let fenced_after = cut.elapsed();
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent), None).is_ok(),
        "the partitioned agent died"
    );
    // The replacement starts elsewhere only after the old process is gone.
    let new_node = wait_for("db-0 Running elsewhere", timeout(), || {
        let p = pod(&c)?;
        let ready = condition(&p, "Ready").is_some_and(|c| c["status"] == "True");
        let node = s(&p, &["spec", "nodeName"]);
        if s(&p, &["metadata", "uid"]) != old_uid && ready {
            Ok(node.to_string())
        } else {
            Err(format!("{} on {node:?}", p["status"]))
        }
    });
    assert_ne!(new_node, "node3");
    let new = c.wait_pod_process(NS, "db-0");
    assert!(
        dead_at < start_ms(new.start_time),
        "the old process outlived the new one's start"
    );
    eprintln!("fenced {fenced_after:?} after the cut; replica Running on {new_node}");
    // Fenced within fence-after + grace of the cut (the lease counts from the last
    // acknowledged heartbeat's send time, before the cut).
    assert!(
        fenced_after <= Duration::from_millis(2500) + Duration::from_secs(1),
        "fenced after {fenced_after:?}"
    );
    let log = std::fs::read_to_string(c.dir().join("logs/agent-node3.stderr")).unwrap_or_default();
    assert!(
        log.contains("fencing: no acknowledged heartbeat"),
        "the agent does not say it fenced"
    );

    proxy.heal();
    c.wait_nodes_ready(&["node3".to_string()]);
    wait_for("the old folder set aside on node3", timeout(), || {
        let root = c.node_dir("node3").join("volumes/.kept").join(NS);
        match std::fs::read_dir(&root) {
            Ok(d) => match d.flatten().count() {
                1 => Ok(()),
                n => Err(format!("{n} folders")),
            },
            Err(e) => Err(e.to_string()),
        }
    });
    wait_for("a Fenced event from node3", timeout(), || {
        let events = c.events(NS)?;
        events
            .iter()
            .find(|e| e["reason"] == "Fenced")
            .map(|_| ())
            .ok_or_else(|| format!("{events:?}"))
    });
    // The control plane's view wins: one db-0, on the new node, still the same uid.
    let p = pod(&c).expect("db-0");
    assert_eq!(s(&p, &["spec", "nodeName"]), new_node);
    assert!(!old.is_alive());
    watch.assert_identities_unique();
    let running: Vec<_> = c
        .pods(NS)
        .expect("pods")
        .into_iter()
        .filter(|p| p.name == "db-0")
        .collect();
    assert_eq!(running.len(), 1, "{running:?}");
}

/// A process of the pod's that left its process group (setsid) still dies with the
/// fence: the watchdog finds it in the pod's cgroup (root: the agent makes the cgroups).
#[test]
fn root_a_killed_agents_fenced_pod_loses_even_the_process_that_left_its_group() {
    twinset_e2e::require_root(
        "pod cgroups, through which the fence watchdog finds a process that left its group",
    );
    let mut c = Cluster::start_with(2, options());
    let escaping = "setsid sleep 100001 & echo $$! > /data/escaped; exec sleep 100000";
    let (_, lost) = start_manifest(&c, &sts_running(Some("Replace"), escaping), true);
    let main = c.wait_pod_process(NS, "db-0");
    let dir = c.volume_dir(&lost, NS, "data-db-0");
    let escaped = wait_for("the escaped process", timeout(), || {
        let text = std::fs::read_to_string(dir.join("escaped")).map_err(|e| e.to_string())?;
        let pid: i32 = text.trim().parse().map_err(|e| format!("{text:?}: {e}"))?;
        twinset_e2e::ProcId::of(pid).ok_or_else(|| format!("pid {pid} is not running"))
    });
    // Killed whatever happens below: it is in no group the harness knows.
    struct Kill(twinset_e2e::ProcId);
    impl Drop for Kill {
        fn drop(&mut self) {
            self.0.kill();
        }
    }
    let _kill = Kill(escaped);
    let group = |pid: i32| nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))).ok();
    assert_ne!(
        group(escaped.pid),
        group(main.pid),
        "the escaped process is still in the container's process group"
    );

    c.kill_agent(&lost);
    // The watchdog's log has a bound: grown past 1 MiB meanwhile, it is set aside as
    // watchdog.log.1 when the watchdog next writes, and the fence's lines go to a new one.
    let log = c.node_dir(&lost).join("fence/watchdog.log");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("the watchdog's log");
    std::io::Write::write_all(&mut f, &b"padding the log past its bound\n".repeat(40_000))
        .expect("padding the watchdog's log");
    drop(f);
    wait_for(
        "the escaped process stopped by the fence",
        timeout(),
        || {
            if escaped.is_alive() {
                Err(format!("pid {} still runs", escaped.pid))
            } else {
                Ok(())
            }
        },
    );
    assert!(!main.is_alive(), "the container's own process still runs");
    let older = std::fs::metadata(log.with_extension("log.1")).expect("watchdog.log.1");
    assert!(
        older.len() >= 1 << 20,
        "watchdog.log.1 holds {} bytes",
        older.len()
    );
    let now = std::fs::read_to_string(&log).expect("the new watchdog.log");
    assert!(
        now.contains("lease lapsed: SIGTERM to pod") && !now.contains("padding"),
        "the new log: {now}"
    );
}

/// The default policy's way out, as in Kubernetes: a user force-deletes the replica of a
/// lost node. kubectl's warning and words; the new replica waits, Pending, for the node
/// its claim (and data) lives on; when the node returns its agent stops the old process
/// before the new replica starts there, on the old data.
#[test]
fn a_force_deleted_wait_replica_returns_with_its_node_and_its_data() {
    let mut c = Cluster::start_with(3, options());
    let (old_uid, node) = start_manifest(&c, &sts_running(None, SLOW_STOP), false);
    let old = c.wait_pod_process(NS, "db-0");
    let watch = c.watch_pods();
    c.kill_agent(&node);
    wait_not_ready(&c);

    let out = c.run(&[
        "delete",
        "pod",
        "db-0",
        "-n",
        NS,
        "--force",
        "--grace-period=0",
    ]);
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, "pod \"db-0\" force deleted\n", "{out}");
    assert!(
        out.stderr
            .contains("Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated."),
        "{out}"
    );
    // Recreated, but its claim is bound to the lost node: Pending, as in Kubernetes.
    wait_for("db-0 Pending, kept off by its claim", timeout(), || {
        let p = pod(&c)?;
        let events = c.events(NS)?;
        let conflict = events.iter().any(|e| {
            e["reason"] == "FailedScheduling"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("volume node affinity conflict"))
        });
        if s(&p, &["metadata", "uid"]) != old_uid
            && s(&p, &["status", "phase"]) == "Pending"
            && s(&p, &["spec", "nodeName"]).is_empty()
            && conflict
        {
            Ok(())
        } else {
            Err(format!(
                "{} on {:?}",
                p["status"],
                s(&p, &["spec", "nodeName"])
            ))
        }
    });
    assert!(
        old.is_alive(),
        "nothing stops the old process while its node is away (kubectl's warning says so)"
    );

    // The old replica's 2 s shutdown is over before the new one starts: the new one
    // finds no /data/running (its start time against a /proc poll of the old one's
    // death would only be known to within a clock tick).
    c.spawn_agent(&node, &AGENT_FLAGS);
    wait_for("the new replica's process", timeout(), || {
        match c.pod_process(NS, "db-0")? {
            p if p == old => Err("only the old process".to_string()),
            _ => Ok(()),
        }
    });
    assert!(!old.is_alive(), "the old process still runs");
    let dir = c.volume_dir(&node, NS, "data-db-0");
    wait_for("the new replica's start", timeout(), || {
        if dir.join("running").exists() || dir.join("overlap").exists() {
            Ok(())
        } else {
            Err("no /data/running".to_string())
        }
    });
    assert!(
        !dir.join("overlap").exists(),
        "the new replica started while the old one was still shutting down"
    );
    let p = pod(&c).expect("db-0");
    assert_eq!(s(&p, &["spec", "nodeName"]), node);
    wait_for("the new replica on the old data", timeout(), || {
        std::fs::read_to_string(dir.join("seen"))
            .map(|t| t.trim().to_string())
            .map_err(|e| e.to_string())
            .and_then(|t| if t == "found" { Ok(()) } else { Err(t) })
    });
    watch.assert_identities_unique();
}
