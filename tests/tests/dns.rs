//! Stable network identity through the control plane's DNS server (`--dns-listen`),
//! with cheap pods (`twinset/sleep:latest`): `<pod>.<svc>.<ns>.svc.cluster.local` is the
//! pod's IP while it is Running and Ready, `<svc>.<ns>.svc.cluster.local` is all of them,
//! names follow scale-down, and (a test of its own, root only) each pod resolves them
//! itself through its own `/etc/resolv.conf` and finds its own name in its `/etc/hosts`
//! and UTS hostname.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use twinset_e2e::cluster::run_command_with;
use twinset_e2e::dns::{self, a_records};
use twinset_e2e::json::{self, str_at};
use twinset_e2e::{require_root, timeout, wait_for, Cluster, Options};

const NS: &str = "names";

fn set(name: &str, replicas: u32, pod_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
  namespace: {NS}
spec:
  serviceName: nginx
  replicas: {replicas}
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
{pod_spec}      terminationGracePeriodSeconds: 5
      containers:
      - name: sleep
        image: twinset/sleep:latest
"
    )
}

fn fqdn(pod: &str) -> String {
    format!("{pod}.nginx.{NS}.svc.cluster.local")
}

const SERVICE: &str = "nginx.names.svc.cluster.local";

/// Waits until `name` resolves (A, over UDP) to exactly `want`.
fn wait_resolves(server: SocketAddr, name: &str, want: &[String]) {
    let mut want: Vec<String> = want.to_vec();
    want.sort();
    wait_for(
        &format!("{name} to resolve to {want:?} at {server}"),
        timeout(),
        || {
            let got = a_records(server, name)?;
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
}

fn nxdomain(server: SocketAddr, name: &str) -> Result<(), String> {
    let a = dns::query(server, name, "A", false)?;
    if a.status == "NXDOMAIN" && a.records.is_empty() {
        Ok(())
    } else {
        Err(a.raw)
    }
}

/// Runs `nsenter -t PID <namespaces> -- ARGS` (root only) and returns stdout.
fn in_pod(pid: i32, namespaces: &[&str], args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &pid.to_string()])
        .args(namespaces)
        .arg("--")
        .args(args);
    let line = format!(
        "nsenter -t {pid} {} -- {}",
        namespaces.join(" "),
        args.join(" ")
    );
    let out = run_command_with(cmd, &line, None, Duration::from_secs(20));
    out.result().map(str::to_string)
}

#[test]
fn pod_and_service_names_resolve_to_ready_pods() {
    let c = Cluster::start_with(2, Options::with_dns());
    let server = c.dns_addr().expect("the cluster has a DNS server");
    let out = c.apply(&set("web", 3, ""));
    let printed = format!("{}{}", out.ok(), out.stderr);
    assert!(
        printed.contains("service/nginx"),
        "apply does not say that it created the headless service nginx: {out}"
    );
    // The implicit Service is headless and selects the set's pods.
    let svc = c
        .get_json(&["svc", "nginx", "-n", NS])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(str_at(&svc, "/spec/clusterIP"), "None", "{svc}");

    let pods = c.wait_sts_ready(NS, "web", 3);
    for p in &pods {
        wait_resolves(server, &fqdn(&p.name), std::slice::from_ref(&p.ip));
    }
    let ips: Vec<String> = pods.iter().map(|p| p.ip.clone()).collect();
    assert_eq!(
        ips.iter().collect::<BTreeSet<_>>().len(),
        3,
        "{}",
        json::summary(&pods)
    );
    wait_resolves(server, SERVICE, &ips);

    // TCP answers the same; names are case-insensitive; unknown names are NXDOMAIN.
    let tcp = dns::query(server, &fqdn("web-1"), "A", true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tcp.records, [pods[1].ip.clone()], "{}", tcp.raw);
    let upper = a_records(server, &fqdn("WEB-2").to_uppercase()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(upper, [pods[2].ip.clone()], "upper-case query");
    nxdomain(server, &fqdn("web-7")).unwrap_or_else(|e| panic!("web-7 should not exist: {e}"));
    nxdomain(server, "nothing.names.svc.cluster.local")
        .unwrap_or_else(|e| panic!("an unknown service should not exist: {e}"));

    // A pod that is not Running+Ready gets no record, and the service leaves it out.
    c.apply(&set(
        "stuck",
        1,
        "      nodeSelector:\n        disk: none-such\n",
    ))
    .ok();
    wait_for("stuck-0 to exist", timeout(), || {
        let p = c.pods_named(NS, "stuck-")?;
        if p.len() == 1 {
            Ok(())
        } else {
            Err(json::summary(&p))
        }
    });
    nxdomain(server, &fqdn("stuck-0"))
        .unwrap_or_else(|e| panic!("a Pending pod has a DNS record: {e}"));
    assert_eq!(
        a_records(server, SERVICE).unwrap_or_else(|e| panic!("{e}")),
        {
            let mut v = ips.clone();
            v.sort();
            v
        }
    );

    // Scale down: the removed pods' names go, the service keeps the rest.
    c.run_ok(&["scale", "sts", "web", "-n", NS, "--replicas=1"]);
    let left = c.wait_sts_ready(NS, "web", 1);
    wait_for("web-1 and web-2 to leave DNS", timeout(), || {
        nxdomain(server, &fqdn("web-1"))?;
        nxdomain(server, &fqdn("web-2"))
    });
    wait_resolves(server, SERVICE, std::slice::from_ref(&left[0].ip));
    wait_resolves(server, &fqdn("web-0"), std::slice::from_ref(&left[0].ip));
}

/// As root, each pod resolves the names itself (its own resolv.conf points at the
/// server) and knows its own name (hosts file and UTS hostname).
#[test]
fn root_pods_resolve_names_through_their_own_resolv_conf() {
    require_root(
        "pods get their own mount and UTS namespaces, so their own resolv.conf, /etc/hosts and hostname, only as root",
    );
    let c = Cluster::start_with(2, Options::with_dns());
    let server = c.dns_addr().expect("the cluster has a DNS server");
    c.apply(&set("web", 3, "")).ok();
    let pods = c.wait_sts_ready(NS, "web", 3);
    for p in &pods {
        wait_resolves(server, &fqdn(&p.name), std::slice::from_ref(&p.ip));
    }
    for p in &pods {
        let pid = c.wait_pod_process(NS, &p.name).pid;
        let hostname = in_pod(pid, &["-u"], &["uname", "-n"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hostname.trim(), p.name, "hostname inside {}", p.name);
        let resolv =
            in_pod(pid, &["-m"], &["cat", "/etc/resolv.conf"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            resolv
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["nameserver", &server.ip().to_string()]),
            "{}'s /etc/resolv.conf does not name {}:\n{resolv}",
            p.name,
            server.ip()
        );
        assert!(
            resolv.contains(&format!("{NS}.svc.cluster.local")),
            "{}'s /etc/resolv.conf has no search domain {NS}.svc.cluster.local:\n{resolv}",
            p.name
        );
        let hosts = in_pod(pid, &["-m"], &["cat", "/etc/hosts"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            hosts.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(&p.ip.as_str()) && f.contains(&p.name.as_str())
            }),
            "{}'s /etc/hosts has no line `{} ... {}`:\n{hosts}",
            p.name,
            p.ip,
            p.name
        );
        // The host's own files are untouched.
        let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        assert!(
            !host_hosts.contains(&fqdn(&p.name)),
            "the host's /etc/hosts changed"
        );
        // A neighbour's name, through the pod's resolver.
        let other = &pods[(pods.iter().position(|q| q.name == p.name).unwrap_or(0) + 1) % 3];
        let got = wait_for(
            &format!("{} to resolve {} itself", p.name, other.name),
            timeout(),
            || in_pod(pid, &["-m"], &["getent", "ahostsv4", &fqdn(&other.name)]),
        );
        assert!(
            got.lines()
                .any(|l| l.starts_with(&format!("{} ", other.ip))),
            "{} resolved {} to something else:\n{got}",
            p.name,
            other.name
        );
    }
}
