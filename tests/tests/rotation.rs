//! Certificate rotation against the real binaries: with server and node certificates
//! that live a few seconds, a cluster runs for more than five lifetimes. Every
//! certificate is replaced again and again (serials change: the nodes' client and serving
//! certificates in their files, the server's in what it presents), nothing restarts (the agents and their pods keep their pids), the
//! assignment stream is never opened again (no resync), the nodes stay Ready, and
//! `certs check` shows the new expiries.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use twinset_e2e::cluster::Options;
use twinset_e2e::table::Table;
use twinset_e2e::wait::{timeout, wait_for};
use twinset_e2e::Cluster;
use twinset_proto::certs::facts;

/// Lifetime of the server and node certificates.
const LIFETIME: Duration = Duration::from_secs(6);
/// How many lifetimes the cluster must run through.
const LIFETIMES: u32 = 5;
const NS: &str = "default";

/// The serial of the certificate the control plane presents in a handshake now.
fn presented_serial(addr: &str, ca_pem: &str) -> Result<String, String> {
    let creds = twinset_proto::tls::ClientCredentials {
        ca_pem: ca_pem.to_string(),
        identity: None,
    };
    let config = creds.config().map_err(|e| e.to_string())?;
    let addr = addr.to_string();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(async move {
            let tcp = tokio::net::TcpStream::connect(&addr)
                .await
                .map_err(|e| e.to_string())?;
            let name = rustls_name("localhost")?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            let der = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .ok_or("no server certificate")?
                .to_vec();
            twinset_proto::certs::facts_der(&der).map(|f| f.serial)
        })
}

fn rustls_name(host: &str) -> Result<tokio_rustls::rustls::pki_types::ServerName<'static>, String> {
    tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| e.to_string())
}

/// `certs check`: (serial, notAfter) by certificate name.
fn certs_check(c: &Cluster) -> BTreeMap<String, (String, String)> {
    let t = Table::parse(&c.run_ok(&["certs", "check"]));
    t.rows
        .iter()
        .map(|r| {
            (
                t.cell(r, "CERTIFICATE").to_string(),
                (
                    t.cell(r, "SERIAL").to_string(),
                    t.cell(r, "EXPIRES").to_string(),
                ),
            )
        })
        .collect()
}

fn agent_log(c: &Cluster, node: &str) -> String {
    let path = c.dir().join("logs").join(format!("agent-{node}.stderr"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn certificates_rotate_for_five_lifetimes_with_nothing_restarted() {
    let ttl = format!("{}s", LIFETIME.as_secs());
    let options = Options {
        control_plane_flags: vec![
            "--server-cert-ttl".into(),
            ttl.clone(),
            "--node-cert-ttl".into(),
            ttl,
        ],
        ..Options::default()
    };
    let c = Cluster::start_with(2, options);
    let nodes = ["node1", "node2"];
    let env = "        - name: ROLE\n          value: sleeper\n";
    c.apply(&twinset_e2e::sleep_daemonset("sleeper", NS, env))
        .ok();
    let pods = c.wait_running(NS, "sleeper-", 2);
    let pod_pids: Vec<_> = pods
        .iter()
        .map(|p| (p.name.clone(), c.wait_pod_process(NS, &p.name)))
        .collect();
    let agent_pids: Vec<_> = nodes.iter().map(|n| c.agent_pid(n)).collect();
    let cp_pid = c.control_plane_pid();
    let ca_pem = std::fs::read_to_string(c.dir().join("cp").join("pki").join("ca.crt"))
        .expect("the cluster CA");
    let first = certs_check(&c);

    // Watch the serials: the node certificates in the agents' files, the server's in
    // what it presents, until five lifetimes have passed and each was replaced 5 times.
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let start = Instant::now();
    let run_for = LIFETIME * LIFETIMES;
    wait_for(
        "five lifetimes with every certificate replaced five times",
        run_for + timeout(),
        || {
            for n in nodes {
                for (file, key) in [
                    ("node.crt", n.to_string()),
                    ("node-serving.crt", format!("{n}/serving")),
                ] {
                    let path = c.node_dir(n).join("pki").join(file);
                    let pem = std::fs::read_to_string(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    let f = facts(&pem, file).map_err(|e| e.to_string())?;
                    seen.entry(key).or_default().insert(f.serial);
                }
            }
            seen.entry("server".into())
                .or_default()
                .insert(presented_serial(c.addr(), &ca_pem)?);
            let counts: Vec<usize> = seen.values().map(BTreeSet::len).collect();
            if start.elapsed() >= run_for && counts.iter().all(|n| *n > LIFETIMES as usize) {
                Ok(())
            } else {
                Err(format!(
                    "after {:?}: serials seen {:?}",
                    start.elapsed(),
                    seen.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
                ))
            }
        },
    );

    // Nothing restarted.
    assert_eq!(c.control_plane_pid(), cp_pid);
    for (n, pid) in nodes.iter().zip(&agent_pids) {
        assert_eq!(&c.agent_pid(n), pid, "agent {n} restarted");
        let pid = pid.expect("agent running");
        assert!(
            twinset_node_agent::procfs::ProcId::of(pid).is_some(),
            "agent {n} (pid {pid}) is gone"
        );
    }
    for (name, p) in &pod_pids {
        assert!(p.is_alive(), "pod {name}'s process {p:?} is gone");
        assert_eq!(&c.wait_pod_process(NS, name), p, "pod {name} restarted");
    }
    let t = c.table(&["get", "pods", "-n", NS]);
    for r in &t.rows {
        assert_eq!(t.cell(r, "RESTARTS"), "0", "{t:?}");
        assert_eq!(t.cell(r, "STATUS"), "Running", "{t:?}");
    }
    c.wait_nodes_ready(&nodes.map(String::from));
    // The control plane (renewed certificate) still reaches each agent (renewed serving
    // certificate) for logs.
    for (name, _) in &pod_pids {
        c.run_ok(&["logs", name, "-n", NS]);
    }

    // The assignment stream was opened once per agent and never again.
    for n in nodes {
        let log = agent_log(&c, n);
        let opened = log.matches("watching assignments").count();
        assert_eq!(
            opened, 1,
            "agent {n} opened its assignment stream {opened} times:\n{log}"
        );
        assert!(
            log.matches("node certificate renewed").count() >= LIFETIMES as usize,
            "agent {n} did not log its renewals:\n{log}"
        );
    }

    // `certs check` lists the new certificates, expiring later than the first ones.
    let now = certs_check(&c);
    for name in [
        "server",
        "node/node1",
        "node/node2",
        "node/node1/serving",
        "node/node2/serving",
    ] {
        let (s0, e0) = first
            .get(name)
            .unwrap_or_else(|| panic!("{name} in {first:?}"));
        let (s1, e1) = now.get(name).unwrap_or_else(|| panic!("{name} in {now:?}"));
        assert_ne!(s0, s1, "{name}: same serial");
        assert!(e1 > e0, "{name}: expiry {e1} not after {e0}");
    }
    for name in ["ca", "admin"] {
        assert!(now.contains_key(name), "certs check lists {name}: {now:?}");
    }
}
