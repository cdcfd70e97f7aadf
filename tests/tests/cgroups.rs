//! As root: a pod's resources.limits are enforced by its cgroup, and a container
//! that allocates past its memory limit is OOM-killed and reported as OOMKilled.

use twinset_e2e::json::{int_at, PodView};
use twinset_e2e::procs::cgroup_file;
use twinset_e2e::{require_root, timeout, wait_for, Cluster, Table};

fn pod(name: &str, command: &str, memory: &str, cpu: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
spec:
  nodeName: node1
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox
    command: [\"sh\", \"-c\", {command:?}]
    resources:
      limits:
        memory: \"{memory}\"
        cpu: \"{cpu}\"
"
    )
}

#[test]
fn root_a_pod_with_a_128mi_limit_runs_in_a_cgroup_with_that_limit() {
    require_root("cgroup limits are only enforced as root");
    let c = Cluster::start(1);
    let out = c.apply(&pod("limited", "exec sleep 3600", "128Mi", "100m"));
    assert_eq!(out.ok().trim(), "pod/limited created");
    c.wait_running("default", "limited", 1);
    let p = c.wait_pod_process("default", "limited");

    let mem =
        cgroup_file(p.pid, "memory", "memory.limit_in_bytes", "memory.max").unwrap_or_else(|| {
            panic!(
                "pod process {} is in no memory cgroup: {:?}",
                p.pid,
                twinset_e2e::procs::cgroups(p.pid)
            )
        });
    let limit = std::fs::read_to_string(&mem).unwrap_or_default();
    assert_eq!(
        limit.trim(),
        "134217728",
        "{} holds {limit:?}",
        mem.display()
    );

    // 100m of CPU: a 10 ms quota per 100 ms period.
    if let Some(quota) = cgroup_file(p.pid, "cpu", "cpu.cfs_quota_us", "cpu.max") {
        let text = std::fs::read_to_string(&quota).unwrap_or_default();
        let ok = match quota.file_name().and_then(|f| f.to_str()) {
            Some("cpu.max") => text.trim() == "10000 100000",
            _ => text.trim() == "10000",
        };
        assert!(ok, "{} holds {text:?}, want a 100m quota", quota.display());
    } else {
        panic!(
            "pod process {} is in no cpu cgroup: {:?}",
            p.pid,
            twinset_e2e::procs::cgroups(p.pid)
        );
    }
    // The cgroup is the pod's own, not the agent's.
    let agent = c.agent_pid("node1").expect("agent pid");
    let agent_mem = cgroup_file(agent, "memory", "memory.limit_in_bytes", "memory.max");
    assert_ne!(
        agent_mem,
        Some(mem),
        "the pod shares the agent's memory cgroup"
    );

    // Deleting the pod stops the process.
    let out = c.run(&["delete", "pod", "limited"]);
    assert_eq!(out.ok().trim(), "pod \"limited\" deleted");
    wait_for("the limited pod's process to exit", timeout(), || {
        if p.is_alive() {
            Err("alive".into())
        } else {
            Ok(())
        }
    });
}

#[test]
fn root_a_container_allocating_past_its_memory_limit_is_oomkilled() {
    require_root("cgroup limits are only enforced as root");
    let c = Cluster::start(1);
    // dash keeps the whole command substitution in its own memory: ~300 MB in the
    // container's main process, well past 128Mi. Bounded, in case the limit is not enforced.
    let hog = "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived ${#x}";
    let out = c.apply(&pod("hog", hog, "128Mi", "500m"));
    assert_eq!(out.ok().trim(), "pod/hog created");

    let pod = wait_for("the hog pod to be reported OOMKilled", timeout(), || {
        let pods = c.pods_named("default", "hog")?;
        let p: &PodView = pods.first().ok_or("no hog pod")?;
        match p.terminated_reason() {
            Some(r) if r == "OOMKilled" => Ok(p.clone()),
            other => Err(format!(
                "phase={} terminated reason={other:?} status={}",
                p.phase,
                p.raw
                    .pointer("/status/containerStatuses")
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            )),
        }
    });
    assert_eq!(
        pod.phase, "Failed",
        "restartPolicy Never: the pod ends Failed"
    );
    let state = pod
        .raw
        .pointer("/status/containerStatuses/0/state/terminated")
        .expect("terminated state");
    assert_eq!(
        int_at(state, "/exitCode"),
        Some(137),
        "exit code of an OOM kill: {state}"
    );

    let t = Table::parse(&c.run_ok(&["get", "pod", "hog"]));
    let row = t.row("hog").expect("hog row");
    assert_eq!(t.cell(row, "STATUS"), "OOMKilled", "{t:?}");
    assert_eq!(t.cell(row, "READY"), "0/1");

    let logs = c.run(&["logs", "hog"]);
    assert!(
        !logs.stdout.contains("survived"),
        "the hog finished its allocation: {logs}"
    );
}
