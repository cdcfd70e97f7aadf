//! Issue 10's acceptance on a lab of network namespaces ([`NetLab`]): "machines" on one
//! LAN bridge with no default route, the control plane in machine 0 and an agent in
//! each other machine, joined with a token. The bridge-mode tests start agents with
//! `--pod-network bridge --node-ip <LAN IP>`: each pod its own network namespace, pod
//! ranges routed between machines (host-gw, route protocol 116).

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use twinset_e2e::cluster::run_command;
use twinset_e2e::netlab::{self, fetch, file_inode, in_netns, mounts_under, netns_inode, try_bind};
use twinset_e2e::{
    dns, ip_in_cidr, json, shell_pod, sql, timeout, wait_for, Cluster, LabOptions, NetLab, PodView,
    Sandbox, GUIDE_STATEFULSET,
};

/// The port the responder pods listen on.
const PORT: u16 = 8080;

fn require_socat() {
    assert!(
        dns::which("socat").is_some(),
        "socat not found: the responder pods run it (apt-get install socat)"
    );
}

fn bridge() -> LabOptions {
    LabOptions {
        bridge: true,
        ..LabOptions::default()
    }
}

/// A pod bound to `node` that answers every TCP connection on port 8080 with its own
/// name and closes it.
fn responder_pod(name: &str, node: &str) -> String {
    shell_pod(
        name,
        node,
        &format!("exec socat TCP-LISTEN:{PORT},fork,reuseaddr SYSTEM:'echo $POD_NAME'"),
    )
}

/// A pod bound to `node` that sleeps until it is stopped.
fn sleep_pod(name: &str, node: &str) -> String {
    shell_pod(name, node, "exec sleep 3600")
}

/// The node's `spec.podCIDR`.
fn pod_cidr(c: &Cluster, node: &str) -> String {
    let n = c
        .get_json(&["node", node])
        .unwrap_or_else(|e| panic!("get node {node}: {e}"));
    let cidr = json::str_at(&n, "/spec/podCIDR").to_string();
    assert!(!cidr.is_empty(), "node {node} has no podCIDR: {n}");
    cidr
}

/// The node's InternalIP address from its status.
fn internal_ip(c: &Cluster, node: &str) -> String {
    let n = c
        .get_json(&["node", node])
        .unwrap_or_else(|e| panic!("get node {node}: {e}"));
    n.pointer("/status/addresses")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .find(|a| json::str_at(a, "/type") == "InternalIP")
        .map(|a| json::str_at(a, "/address").to_string())
        .unwrap_or_else(|| panic!("node {node} has no InternalIP address: {n}"))
}

/// The routes twinset installed in machine `i` (`ip -n M route show proto 116`), one
/// per line.
fn twinset_routes(lab: &NetLab, i: usize) -> Vec<String> {
    lab.ip_in(i, &["route", "show", "proto", "116"])
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The `tv*` links (host ends of pod veths) of machine `i`.
fn pod_veths(lab: &NetLab, i: usize) -> Vec<String> {
    lab.links(i)
        .into_iter()
        .filter(|l| l.starts_with("tv"))
        .collect()
}

fn ipv4(s: &str) -> Ipv4Addr {
    s.parse()
        .unwrap_or_else(|e| panic!("pod IP {s:?} is not an IPv4 address: {e}"))
}

/// What the pod's process's network namespace is (`/proc/<pid>/ns/net`).
fn pod_netns(c: &Cluster, pod: &str) -> std::path::PathBuf {
    let p = c.wait_pod_process("default", pod);
    std::path::PathBuf::from(format!("/proc/{}/ns/net", p.pid))
}

#[test]
fn root_lab_machines_have_no_default_route_and_agents_join_over_the_lan() {
    let id;
    {
        let lab = NetLab::start_with(4, LabOptions::default());
        id = lab.id().to_string();
        for (i, m) in lab.machines().iter().enumerate() {
            let default = lab.ip_in(i, &["route", "show", "default"]);
            assert!(default.trim().is_empty(), "{} routes: {default}", m.netns);
            let addrs = lab.ip_in(i, &["-4", "-o", "addr", "show", "dev", "eth0"]);
            assert!(
                addrs.contains(&format!("{}/24", m.ip)),
                "{}: {addrs}",
                m.netns
            );
        }
        // Machine 1 reaches machine 0 over the LAN (its agent joined through it).
        let reached = lab.in_machine(1, || {
            TcpStream::connect_timeout(
                &lab.cluster().addr().parse().expect("control plane address"),
                Duration::from_secs(3),
            )
            .map(drop)
        });
        reached.unwrap_or_else(|e| panic!("machine 1 cannot reach the control plane: {e}"));

        let monitors = lab.cluster().run_guide_daemonset(3);
        let on: Vec<&str> = monitors.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(
            on,
            ["node1", "node2", "node3"],
            "one node-monitor per machine"
        );
    }
    // Dropping the lab removed every namespace it made.
    let left = NetLab::namespaces_left(&id);
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn root_lab_sweeps_the_namespaces_of_dead_test_processes() {
    twinset_e2e::require_root("network namespaces");
    // A pid that ran and is gone (reaped): what a killed test process leaves.
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let dead = child.id();
    child.wait().expect("reap true");
    let leftover = format!("tsl-{dead}-0-m0");
    let add = std::process::Command::new("ip")
        .args(["netns", "add", &leftover])
        .status()
        .expect("run ip");
    assert!(add.success(), "ip netns add {leftover}: {add}");
    NetLab::sweep_leftovers();
    let left = NetLab::namespaces_left(&format!("tsl-{dead}-0"));
    assert!(left.is_empty(), "not swept: {left:?}");
    // A live test's namespaces are not touched.
    let lab = NetLab::build(1);
    NetLab::sweep_leftovers();
    let kept = NetLab::namespaces_left(lab.id());
    assert_eq!(kept.len(), 2, "the live lab lost namespaces: {kept:?}");
}

#[test]
fn root_bridge_pods_reach_each_other_across_machines_and_a_deleted_nodes_routes_go() {
    require_socat();
    let lab = NetLab::start_with(4, bridge());
    let c = lab.cluster();
    let cidrs: Vec<String> = (0..4)
        .map(|i| {
            if i == 0 {
                String::new()
            } else {
                pod_cidr(c, &netlab::node_name(i))
            }
        })
        .collect();
    for (i, cidr) in cidrs.iter().enumerate().skip(1) {
        let node = netlab::node_name(i);
        assert_eq!(
            internal_ip(c, &node),
            lab.ip(i).to_string(),
            "{node}'s InternalIP is its --node-ip"
        );
        let net = cidr.split('/').next().unwrap_or_default();
        assert!(
            ip_in_cidr(net, lab.cluster_cidr()),
            "{node}'s range {cidr} is outside the cluster range {}",
            lab.cluster_cidr()
        );
    }

    // The guide's DaemonSet: one pod per machine, each with an IP of its node's range.
    let monitors = c.run_guide_daemonset(3);
    for (i, p) in monitors.iter().enumerate() {
        assert_eq!(
            p.node,
            netlab::node_name(i + 1),
            "{}",
            json::summary(&monitors)
        );
        assert!(
            ip_in_cidr(&p.ip, &cidrs[i + 1]),
            "{} on {} has IP {} outside {}",
            p.name,
            p.node,
            p.ip,
            cidrs[i + 1]
        );
    }

    // Machine 1 reaches pods on machine 3 by their pod IPs: the daemon pod's own network
    // stack refuses a closed port (so the packet got there), a listening pod answers.
    let monitor3: SocketAddr = (ipv4(&monitors[2].ip), 1).into();
    lab.in_machine(1, || {
        wait_for(
            &format!("{monitor3} (node-monitor on machine 3) to refuse a connection"),
            timeout(),
            || match TcpStream::connect_timeout(&monitor3, Duration::from_secs(2)) {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
    });
    c.apply(&responder_pod("echo-3", "node3")).ok();
    let echo = c.wait_running("default", "echo-3", 1).remove(0);
    assert!(ip_in_cidr(&echo.ip, &cidrs[3]), "{}", echo.ip);
    let addr: SocketAddr = (ipv4(&echo.ip), PORT).into();
    let answer = lab.in_machine(1, || {
        wait_for(
            &format!("echo-3 at {addr} from machine 1"),
            timeout(),
            || fetch(addr),
        )
    });
    assert_eq!(answer.trim(), "echo-3");

    // Each agent routes the other nodes' ranges via their LAN IPs, and the whole cluster
    // range is unreachable otherwise; it forwards the pods' packets.
    for i in 1..4 {
        let forward = lab.run_in(i, "cat", &["/proc/sys/net/ipv4/ip_forward"]);
        assert_eq!(
            forward.ok().trim(),
            "1",
            "machine {i} does not forward IPv4"
        );
        let want: Vec<String> = (1..4)
            .filter(|j| *j != i)
            .map(|j| format!("{} via {} ", cidrs[j], lab.ip(j)))
            .collect();
        let routes = wait_for(
            &format!("machine {i}'s routes to the other nodes"),
            timeout(),
            || {
                let routes = twinset_routes(&lab, i);
                let has = |p: &str| routes.iter().any(|r| format!("{r} ").starts_with(p));
                let unreachable = format!("unreachable {} ", lab.cluster_cidr());
                if want.iter().all(|w| has(w)) && has(&unreachable) {
                    Ok(routes)
                } else {
                    Err(format!("{routes:?}"))
                }
            },
        );
        assert!(
            !routes
                .iter()
                .any(|r| r.starts_with(&format!("{} ", cidrs[i]))),
            "machine {i} routes its own range elsewhere: {routes:?}"
        );
    }

    // A deleted node's range is no longer routed by the others.
    c.run_ok(&["delete", "node", "node3"]);
    for i in [1, 2] {
        wait_for(
            &format!("machine {i}'s route to node3's range {} to go", cidrs[3]),
            timeout(),
            || {
                let routes = twinset_routes(&lab, i);
                if routes
                    .iter()
                    .any(|r| r.starts_with(&format!("{} ", cidrs[3])))
                {
                    Err(format!("{routes:?}"))
                } else {
                    Ok(())
                }
            },
        );
        let other = if i == 1 { 2 } else { 1 };
        let routes = twinset_routes(&lab, i);
        let keep = format!("{} via {} ", cidrs[other], lab.ip(other));
        assert!(
            routes.iter().any(|r| format!("{r} ").starts_with(&keep)),
            "machine {i} lost its route to node{other}: {routes:?}"
        );
    }
}

#[test]
fn root_bridge_two_pods_on_one_node_each_reach_their_own_port_and_not_the_others_ip() {
    require_socat();
    let lab = NetLab::start_with(2, bridge());
    let c = lab.cluster();
    c.apply(&format!(
        "{}---\n{}",
        responder_pod("iso-a", "node1"),
        responder_pod("iso-b", "node1")
    ))
    .ok();
    let pods = c.wait_running("default", "iso-", 2);
    let mut pods: Vec<PodView> = pods;
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    let machine_ns = netns_inode_of(&Path::new("/run/netns").join(lab.netns(1)));
    let mut seen = Vec::new();
    for (me, other) in [(&pods[0], &pods[1]), (&pods[1], &pods[0])] {
        let ns = pod_netns(c, &me.name);
        let inode = netns_inode_of(&ns);
        assert_ne!(inode, machine_ns, "{} shares the node's namespace", me.name);
        seen.push(inode);
        let local: SocketAddr = (Ipv4Addr::LOCALHOST, PORT).into();
        let (got, own, others) = in_netns(&ns, || {
            let got = wait_for(
                &format!("{} to answer at {local} in its own namespace", me.name),
                timeout(),
                || fetch(local),
            );
            (got, try_bind(ipv4(&me.ip), 0), try_bind(ipv4(&other.ip), 0))
        });
        assert_eq!(got.trim(), me.name, "{} reached the wrong pod", me.name);
        own.unwrap_or_else(|e| panic!("{} cannot bind its own IP {}: {e}", me.name, me.ip));
        match others {
            Err(e) if e.kind() == ErrorKind::AddrNotAvailable => {}
            got => panic!(
                "{} binding {}'s IP {}: {got:?} (want: address not available)",
                me.name, other.name, other.ip
            ),
        }
    }
    assert_ne!(seen[0], seen[1], "the two pods share a network namespace");
}

fn netns_inode_of(path: &Path) -> u64 {
    file_inode(path).unwrap_or_else(|| panic!("{} does not exist", path.display()))
}

#[test]
fn root_bridge_agent_sigkill_keeps_pod_namespaces_ips_and_pids_and_a_container_restart_keeps_the_ip(
) {
    let mut lab = NetLab::start_with(2, bridge());
    let names = ["keep-0", "keep-1"];
    let manifest: Vec<String> = names.iter().map(|n| sleep_pod(n, "node1")).collect();
    lab.cluster().apply(&manifest.join("---\n")).ok();
    lab.cluster().wait_running("default", "keep-", 2);
    let before: Vec<(PodView, twinset_e2e::ProcId, u64)> =
        names.iter().map(|n| snapshot(lab.cluster(), n)).collect();

    lab.kill_agent(1);
    // While it is down, a pod it never recorded leaves a pinned namespace behind (a crash
    // between the pin and the record): the next agent removes it at start.
    let stale = lab.node_dir(1).join("netns").join("stale-pod-uid");
    std::fs::write(&stale, b"").unwrap();
    let pinned = std::process::Command::new("unshare")
        .args(["--net", "mount", "--bind", "/proc/self/ns/net"])
        .arg(&stale)
        .status()
        .expect("unshare (util-linux)");
    assert!(pinned.success(), "pinning a stale namespace: {pinned}");
    assert_eq!(mounts_under(&stale), std::slice::from_ref(&stale));
    lab.spawn_agent(1);
    wait_for("the stale namespace to be removed", timeout(), || {
        if stale.exists() || !mounts_under(&stale).is_empty() {
            Err(format!("{} is still there", stale.display()))
        } else {
            Ok(())
        }
    });
    // The new agent works: it starts a new pod ...
    lab.cluster().apply(&sleep_pod("after", "node1")).ok();
    lab.cluster().wait_running("default", "after", 1);
    // ... and adopted the old ones as they were.
    for (pod, pid, inode) in &before {
        let (now, now_pid, now_inode) = snapshot(lab.cluster(), &pod.name);
        assert_eq!(now.uid, pod.uid, "{} was replaced", pod.name);
        assert_eq!(now.ip, pod.ip, "{} changed IP", pod.name);
        assert_eq!(now_pid, *pid, "{} has another process", pod.name);
        assert_eq!(now_inode, *inode, "{} has another namespace", pod.name);
        assert!(now.is_running_ready(), "{}", json::summary(&[now]));
    }

    // A container restart keeps the pod's IP and namespace.
    let (pod, pid, inode) = &before[0];
    netlab_kill(pid.pid);
    let c = lab.cluster();
    let restarted = wait_for(
        &format!("{} to run a new container", pod.name),
        timeout(),
        || {
            let p = c.pod_process("default", &pod.name)?;
            let v = c
                .pods_named("default", &pod.name)?
                .into_iter()
                .next()
                .ok_or("gone")?;
            if p != *pid && v.restarts >= 1 && v.is_running_ready() {
                Ok((v, p))
            } else {
                Err(json::summary(&[v]))
            }
        },
    );
    assert_eq!(
        restarted.0.ip, pod.ip,
        "the container restart changed the IP"
    );
    assert_eq!(
        netns_inode(restarted.1.pid),
        Some(*inode),
        "the container restart changed the namespace"
    );
}

fn netlab_kill(pid: i32) {
    twinset_e2e::procs::signal(pid, nix::sys::signal::Signal::SIGKILL)
        .unwrap_or_else(|e| panic!("kill {pid}: {e}"));
}

/// The pod, its main process and the inode of its network namespace.
fn snapshot(c: &Cluster, name: &str) -> (PodView, twinset_e2e::ProcId, u64) {
    let pod = c
        .pods_named("default", name)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pod {name}"));
    let p = c.wait_pod_process("default", name);
    let inode = netns_inode(p.pid).unwrap_or_else(|| panic!("no /proc/{}/ns/net", p.pid));
    (pod, p, inode)
}

#[test]
fn root_bridge_100_pods_created_and_deleted_leave_no_veth_mount_or_ip() {
    const PODS: usize = 100;
    let mut lab = NetLab::start_with(2, bridge());
    let c = lab.cluster();
    let manifest: Vec<String> = (0..PODS)
        .map(|i| sleep_pod(&format!("many-{i:03}"), "node1"))
        .collect();
    let file = c.write_manifest(&manifest.join("---\n"));
    c.run_ok(&["apply", "-f", &file.to_string_lossy()]);
    let netns_dir = lab.node_dir(1).join("netns");
    let long = timeout() * 4;
    wait_for(&format!("{PODS} pods Running"), long, || {
        let pods = c.pods_named("default", "many-")?;
        let running = pods.iter().filter(|p| p.is_running_ready()).count();
        (running == PODS)
            .then_some(())
            .ok_or_else(|| format!("{running} of {PODS} running"))
    });
    let veths = pod_veths(&lab, 1);
    assert_eq!(veths.len(), PODS, "one veth per pod: {veths:?}");
    let pins = mounts_under(&netns_dir);
    assert_eq!(pins.len(), PODS, "one namespace pin per pod: {pins:?}");

    c.run_ok(&["delete", "-f", &file.to_string_lossy()]);
    wait_for("every pod, veth and namespace pin to go", long, || {
        let pods = c.pods_named("default", "many-")?;
        let veths = pod_veths(&lab, 1);
        let pins = mounts_under(&netns_dir);
        if pods.is_empty() && veths.is_empty() && pins.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} pods, veths {veths:?}, pins {pins:?}",
                pods.len()
            ))
        }
    });
    // No IP is still allocated: the agent's journal (read once it is stopped) holds none.
    lab.kill_agent(1);
    let journal = twinset_node_agent::state::Journal::open(&lab.node_dir(1))
        .unwrap_or_else(|e| panic!("open node1's journal: {e}"));
    let ips = journal.snapshot().ips;
    assert!(ips.is_empty(), "IPs still allocated: {ips:?}");
    let left: Vec<String> = std::fs::read_dir(&netns_dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "namespace pins left in {netns_dir:?}: {left:?}"
    );
}

#[test]
fn root_mariadb_bridge_statefulset_answers_by_name_from_another_machine() {
    assert!(
        sql::server_installed() && dns::which("mariadb").is_some(),
        "MariaDB not found: apt-get install mariadb-server mariadb-client"
    );
    let lab = NetLab::start_with(
        4,
        LabOptions {
            bridge: true,
            dns: true,
            ..LabOptions::default()
        },
    );
    let c = lab.cluster();
    let out = c.apply_repo_file(GUIDE_STATEFULSET);
    assert!(
        out.ok().contains("statefulset.apps/mysql-db created"),
        "{out}"
    );
    let pods = c.wait_sts_ready("database", "mysql-db", 3);
    let db2 = pods
        .iter()
        .find(|p| p.name == "mysql-db-2")
        .unwrap_or_else(|| panic!("no mysql-db-2: {}", json::summary(&pods)))
        .clone();

    // A client pod on machine 1 asks the replica by its DNS name, in a loop.
    let name = "mysql-db-2.mysql.database.svc.cluster.local";
    c.apply(&shell_pod(
        "sql-client",
        "node1",
        &format!(
            "while :; do mariadb -h {name} -u root --connect-timeout=3 -N -B \
             -e 'select @@hostname' 2>&1; sleep 1; done"
        ),
    ))
    .ok();
    c.wait_running("default", "sql-client", 1);
    let answered = |after: usize| {
        wait_for(
            &format!("sql-client on node1 to print mysql-db-2 (after line {after})"),
            timeout() * 2,
            || {
                let out = c.run(&["logs", "sql-client"]);
                let text = out.result()?.to_string();
                let lines: Vec<&str> = text.lines().collect();
                if lines.iter().skip(after).any(|l| l.trim() == "mysql-db-2") {
                    Ok(lines.len())
                } else {
                    Err(format!(
                        "last lines: {:?}",
                        &lines[lines.len().saturating_sub(3)..]
                    ))
                }
            },
        )
    };
    answered(0);

    // A row written before the replica is deleted is there after.
    let write = "create database if not exists lab; \
                 create table if not exists lab.t (v varchar(20)); \
                 insert into lab.t values ('kept')";
    let from_m1 = |ip: &str, sql: &str| -> Result<String, String> {
        let out = lab.run_in(
            1,
            "mariadb",
            &[
                "-h",
                ip,
                "-u",
                "root",
                "--connect-timeout=3",
                "-N",
                "-B",
                "-e",
                sql,
            ],
        );
        out.result().map(|s| s.trim().to_string())
    };
    wait_for("the row to be written from machine 1", timeout(), || {
        from_m1(&db2.ip, write)
    });
    c.run_ok(&["delete", "pod", "mysql-db-2", "-n", "database"]);
    let new = wait_for("a new mysql-db-2 to be Ready", timeout() * 2, || {
        let p = c
            .pods_named("database", "mysql-db-2")?
            .into_iter()
            .next()
            .ok_or("no mysql-db-2")?;
        if p.uid != db2.uid && p.is_running_ready() {
            Ok(p)
        } else {
            Err(json::summary(&[p]))
        }
    });
    let lines_then = c.run(&["logs", "sql-client"]).stdout.lines().count();
    answered(lines_then);
    let row = wait_for("the row from the new mysql-db-2", timeout(), || {
        from_m1(&new.ip, "select v from lab.t")
    });
    assert_eq!(row, "kept", "the row written before the delete");
}

/// `twinset ARGS` run inside machine `i` of `lab`, as the sandbox `s` runs it (its HOME,
/// so the CLI finds the cluster `up` made).
fn twinset_in(lab: &NetLab, s: &Sandbox, i: usize, args: &[&str]) -> twinset_e2e::Output {
    let base = s.command();
    let mut cmd = std::process::Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", lab.netns(i)))
        .arg(base.get_program())
        .envs(
            base.get_envs()
                .filter_map(|(k, v)| Some((k.to_os_string(), v?.to_os_string()))),
        )
        .args(args);
    run_command(cmd, args, None)
}

/// Unmounts whatever a failed run left pinned under the sandbox (before its dir goes).
struct UnpinOnDrop(std::path::PathBuf);

impl Drop for UnpinOnDrop {
    fn drop(&mut self) {
        for m in mounts_under(&self.0) {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[test]
fn root_up_with_the_bridge_network_gives_pods_namespaces_and_cluster_names_through_the_relay() {
    // One "machine" (a namespace without a default route) holds the whole local cluster.
    let lab = NetLab::build(1);
    let s = Sandbox::new();
    let _unpin = UnpinOnDrop(s.dir().to_path_buf());
    let data = s.dir().join("cluster");
    let d = data.to_string_lossy().into_owned();
    let out = twinset_in(
        &lab,
        &s,
        0,
        &[
            "up",
            "-d",
            "--nodes",
            "2",
            "--data-dir",
            &d,
            "--port",
            "6443",
            "--pod-network",
            "bridge",
        ],
    );
    assert!(out.success(), "up -d --pod-network bridge: {out}");
    let manifest = s.dir().join("web.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: default}
spec:
  serviceName: web
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: busybox
        command: [sleep, '3600']
",
    )
    .unwrap();
    twinset_in(&lab, &s, 0, &["apply", "-f", &manifest.to_string_lossy()]).ok();
    let running = |n: usize| {
        wait_for(&format!("{n} pods Running"), timeout(), || {
            let out = twinset_in(&lab, &s, 0, &["get", "pods", "-o", "json"]);
            let v: serde_json::Value =
                serde_json::from_str(out.result()?).map_err(|e| e.to_string())?;
            let pods: Vec<PodView> = json::items(&v).iter().map(PodView::from_json).collect();
            if pods.len() == n && pods.iter().all(PodView::is_running_ready) {
                Ok(pods)
            } else {
                Err(json::summary(&pods))
            }
        })
    };
    let web0 = running(1).remove(0);
    // A client on the other node asks for web-0 by name, in a loop.
    let other = if web0.node == "node1" {
        "node2"
    } else {
        "node1"
    };
    let client = s.dir().join("client.yaml");
    std::fs::write(
        &client,
        shell_pod(
            "client",
            other,
            "while :; do getent hosts web-0.web.default.svc.cluster.local; sleep 1; done",
        ),
    )
    .unwrap();
    twinset_in(&lab, &s, 0, &["apply", "-f", &client.to_string_lossy()]).ok();
    let pods = running(2);
    for p in &pods {
        assert!(
            ip_in_cidr(&p.ip, "198.18.0.0/15"),
            "{} has IP {} outside up's bridge range",
            p.name,
            p.ip
        );
    }
    // The client resolves web-0's name through its node's DNS relay (the cluster DNS
    // listens on a loopback address the pods cannot reach themselves).
    let line = web0.ip.clone();
    wait_for(
        "the client to resolve web-0's name to its IP",
        timeout(),
        || {
            let out = twinset_in(&lab, &s, 0, &["logs", "client"]);
            let text = out.result()?.to_string();
            if text
                .lines()
                .any(|l| l.starts_with(&line) && l.contains("web-0.web.default.svc.cluster.local"))
            {
                Ok(())
            } else {
                Err(format!("logs: {text:?}"))
            }
        },
    );
    let out = twinset_in(&lab, &s, 0, &["down", "--data-dir", &d]);
    assert!(out.success(), "down: {out}");
    assert_eq!(
        mounts_under(s.dir()),
        Vec::<std::path::PathBuf>::new(),
        "down leaves no pod network namespace pinned"
    );
}
