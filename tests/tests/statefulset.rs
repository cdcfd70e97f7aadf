//! The guide's StatefulSet (`deploy/examples/statefulset.yaml`, unchanged) on a 3-node
//! local cluster, walked through in the guide's order with real MariaDB replicas:
//! ordered creation, `get sts -A`, SQL at each pod IP, DNS names, a deleted replica
//! coming back with its name, node and data, scaling up and down in order, and the old
//! claim and data coming back on scale-up. One test, because each replica is a real
//! database server (~1 s to start, tens of MB): the steps share one cluster.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use twinset_e2e::cluster::run_command_with;
use twinset_e2e::dns::{self, a_records};
use twinset_e2e::json::{self, str_at, PodView};
use twinset_e2e::{sql, timeout, wait_for, Cluster, Options, Table, GUIDE_STATEFULSET};

const NS: &str = "database";
const SET: &str = "mysql-db";

fn claim(pod: &str) -> String {
    format!("mysql-storage-{pod}")
}

fn fqdn(pod: &str) -> String {
    format!("{pod}.mysql.{NS}.svc.cluster.local")
}

/// Runs SQL at a pod's IP, waiting until the server answers.
fn sql_ok(pod: &PodView, query: &str) -> String {
    wait_for(
        &format!("MariaDB in {} ({}:3306) to run {query:?}", pod.name, pod.ip),
        timeout(),
        || sql::query(&pod.ip, query),
    )
}

fn pod(pods: &[PodView], name: &str) -> PodView {
    pods.iter()
        .find(|p| p.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no pod {name}: {}", json::summary(pods)))
}

/// The claim objects of the set, by name.
fn claims(c: &Cluster) -> Vec<serde_json::Value> {
    json::items(
        &c.get_json(&["pvc", "-n", NS])
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

fn claim_obj(c: &Cluster, name: &str) -> serde_json::Value {
    claims(c)
        .into_iter()
        .find(|o| str_at(o, "/metadata/name") == name)
        .unwrap_or_else(|| panic!("no claim {name}"))
}

fn wait_resolves(server: std::net::SocketAddr, name: &str, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    wait_for(
        &format!(
            "`dig @{} -p {} {name}` to answer {want:?}",
            server.ip(),
            server.port()
        ),
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

/// The pod's mount namespace sees its claim's directory at /var/lib/mysql (root only).
fn assert_mounted(c: &Cluster, p: &PodView) {
    let pid = c.wait_pod_process(NS, &p.name).pid;
    let mut cmd = Command::new("nsenter");
    cmd.args([
        "-t",
        &pid.to_string(),
        "-m",
        "--",
        "stat",
        "-c",
        "%d:%i",
        "/var/lib/mysql",
    ]);
    let out = run_command_with(
        cmd,
        "nsenter stat /var/lib/mysql",
        None,
        Duration::from_secs(20),
    );
    let inside = out.ok().trim().to_string();
    let dir = c.volume_dir(&p.node, NS, &claim(&p.name));
    let meta = std::fs::metadata(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    // stat's %d is the device number in decimal, as st_dev.
    assert_eq!(
        inside,
        format!("{}:{}", meta.dev(), meta.ino()),
        "/var/lib/mysql in {} is not {}",
        p.name,
        dir.display()
    );
}

#[test]
fn the_guides_mysql_statefulset_end_to_end() {
    assert!(
        sql::server_installed(),
        "mariadbd not found: install Debian's mariadb-server (apt-get install mariadb-server mariadb-client)"
    );
    let c = Cluster::start_with(3, Options::with_dns());
    let server = c.dns_addr().expect("the cluster has a DNS server");
    let w = c.watch_pods();

    // ---- apply the guide's file: mysql-db-0, then -1, then -2, each after the one before is Ready.
    let out = c.apply_repo_file(GUIDE_STATEFULSET);
    let printed = out.ok();
    assert!(
        printed.contains("statefulset.apps/mysql-db created"),
        "{out}"
    );
    assert!(
        format!("{printed}{}", out.stderr).contains("service/mysql"),
        "apply does not say it created the headless service mysql: {out}"
    );
    let pods = c.wait_sts_ready(NS, SET, 3);
    w.assert_ordered_creation(NS, SET, 0, 0, &[0, 1, 2]);

    // Spread over the three nodes (fewest pods of the set first), distinct IPs.
    let nodes: BTreeSet<&str> = pods.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(nodes.len(), 3, "{}", json::summary(&pods));
    let ips: BTreeSet<&str> = pods.iter().map(|p| p.ip.as_str()).collect();
    assert_eq!(ips.len(), 3, "{}", json::summary(&pods));

    // ---- the guide's commands.
    let t = wait_for("`get sts -A` to show 3/3", timeout(), || {
        let t = Table::parse(c.run(&["get", "sts", "-A"]).result()?);
        match t
            .rows
            .iter()
            .find(|r| r.get(1).map(String::as_str) == Some(SET))
        {
            Some(r) if t.cell(r, "READY") == "3/3" => Ok(t.clone()),
            _ => Err(format!("{t:?}")),
        }
    });
    assert_eq!(t.header, ["NAMESPACE", "NAME", "READY", "AGE"], "{t:?}");
    let wide = c.table(&["get", "pods", "-o", "wide", "-n", NS]);
    for p in &pods {
        let row = wide
            .row(&p.name)
            .unwrap_or_else(|| panic!("no {} in get pods -o wide: {wide:?}", p.name));
        assert_eq!(wide.cell(row, "IP"), p.ip);
        assert_eq!(wide.cell(row, "NODE"), p.node);
        assert_eq!(wide.cell(row, "STATUS"), "Running");
    }
    let described = c.run_ok(&["describe", "sts", SET, "-n", NS]);
    for want in [
        "Replicas:",
        "Volume Claims:",
        "mysql-storage",
        "create Pod mysql-db-2 in StatefulSet mysql-db successful",
        "create Claim mysql-storage-mysql-db-0 Pod mysql-db-0 in StatefulSet mysql-db success",
    ] {
        assert!(
            described.contains(want),
            "describe sts lacks {want:?}:\n{described}"
        );
    }
    let status = c.run(&[
        "rollout",
        "status",
        "sts/mysql-db",
        "-n",
        NS,
        "--timeout",
        "30s",
    ]);
    assert!(status.success(), "{status}");

    // ---- claims: one per replica, Bound to the pod's node, a directory there.
    for p in &pods {
        let cl = claim_obj(&c, &claim(&p.name));
        assert_eq!(str_at(&cl, "/status/phase"), "Bound", "{cl}");
        assert_eq!(
            str_at(
                &cl,
                "/metadata/annotations/volume.kubernetes.io~1selected-node"
            ),
            p.node,
            "claim of {} is not bound to its node",
            p.name
        );
        let dir = c.volume_dir(&p.node, NS, &claim(&p.name));
        assert!(dir.is_dir(), "no volume directory {}", dir.display());
    }

    // ---- each replica is a real MariaDB at its pod IP, with its data in its claim.
    for p in &pods {
        assert_eq!(sql_ok(p, "select 1"), "1", "select 1 at {}", p.name);
        let dir = c.volume_dir(&p.node, NS, &claim(&p.name));
        assert!(
            dir.join("mysql").is_dir(),
            "MariaDB's data directory is not in the claim {}",
            dir.display()
        );
        // As root the pod has its own UTS and mount namespaces.
        if dns::can_bind_port_53() {
            let host = sql_ok(p, "select @@hostname");
            assert_eq!(host, p.name, "@@hostname of {}", p.name);
            assert_mounted(&c, p);
        }
    }

    // ---- stable network identity through Twinset's DNS.
    let p0 = pod(&pods, "mysql-db-0");
    let p1 = pod(&pods, "mysql-db-1");
    let p2 = pod(&pods, "mysql-db-2");
    wait_resolves(server, &fqdn("mysql-db-1"), &[&p1.ip]);
    wait_resolves(server, &fqdn("mysql-db-0"), &[&p0.ip]);
    wait_resolves(
        server,
        &format!("mysql.{NS}.svc.cluster.local"),
        &[&p0.ip, &p1.ip, &p2.ip],
    );

    // ---- a row in mysql-db-1 survives deleting the pod.
    sql_ok(
        &p1,
        "create database guide; create table guide.t (id int primary key, v varchar(64)); \
         insert into guide.t values (1, 'written to mysql-db-1')",
    );
    let old_proc = c.wait_pod_process(NS, "mysql-db-1");
    let out = c.run(&["delete", "pod", "mysql-db-1", "-n", NS]);
    assert_eq!(out.ok().trim(), "pod \"mysql-db-1\" deleted");
    let back = wait_for("mysql-db-1 to come back Running+Ready", timeout(), || {
        let pods = c.pods_named(NS, "mysql-db-1")?;
        match pods.as_slice() {
            [p] if p.uid != p1.uid && p.is_running_ready() => Ok(p.clone()),
            _ => Err(json::summary(&pods)),
        }
    });
    assert!(!old_proc.is_alive(), "the old mysql-db-1 server still runs");
    assert_eq!(back.node, p1.node, "mysql-db-1 came back on another node");
    let vols = back
        .raw
        .pointer("/spec/volumes")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        vols.iter()
            .any(|v| str_at(v, "/persistentVolumeClaim/claimName") == claim("mysql-db-1")),
        "mysql-db-1 came back without its claim: {vols:?}"
    );
    assert_eq!(
        sql_ok(&back, "select v from guide.t where id = 1"),
        "written to mysql-db-1",
        "the row written before the delete"
    );
    wait_resolves(server, &fqdn("mysql-db-1"), &[&back.ip]);

    // ---- scale to 4: mysql-db-3 after the others are Ready.
    let since = c.store_revision();
    let out = c.run(&["scale", "sts", SET, "-n", NS, "--replicas=4"]);
    assert_eq!(out.ok().trim(), "statefulset.apps/mysql-db scaled");
    let pods = c.wait_sts_ready(NS, SET, 4);
    w.assert_ordered_creation(NS, SET, 0, since, &[3]);
    let p2 = pod(&pods, "mysql-db-2");
    let p3 = pod(&pods, "mysql-db-3");
    assert_eq!(sql_ok(&p3, "select 1"), "1");
    sql_ok(
        &p2,
        "create database keep; create table keep.m (v varchar(64)); \
         insert into keep.m values ('mysql-db-2 before scale-down')",
    );
    let claim2 = str_at(&claim_obj(&c, &claim("mysql-db-2")), "/metadata/uid").to_string();

    // ---- scale to 2: mysql-db-3 goes, then mysql-db-2; claims and directories stay.
    let since = c.store_revision();
    c.run_ok(&["scale", "sts", SET, "-n", NS, "--replicas=2"]);
    c.wait_sts_ready(NS, SET, 2);
    w.assert_ordered_removal(NS, SET, &[3, 2], since);
    for p in [&p2, &p3] {
        let cl = claim_obj(&c, &claim(&p.name));
        assert_eq!(str_at(&cl, "/status/phase"), "Bound", "{cl}");
        let dir = c.volume_dir(&p.node, NS, &claim(&p.name));
        assert!(
            dir.join("mysql").is_dir(),
            "{} lost its data directory on scale-down",
            dir.display()
        );
    }
    let t = c.table(&["get", "pvc", "-n", NS]);
    assert_eq!(t.rows.len(), 4, "get pvc after scale-down: {t:?}");

    // ---- scale to 3: mysql-db-2 returns on its old claim, node and data.
    c.run_ok(&["scale", "sts", SET, "-n", NS, "--replicas=3"]);
    let pods = c.wait_sts_ready(NS, SET, 3);
    let again = pod(&pods, "mysql-db-2");
    assert_ne!(again.uid, p2.uid);
    assert_eq!(again.node, p2.node, "mysql-db-2 came back on another node");
    assert_eq!(
        str_at(&claim_obj(&c, &claim("mysql-db-2")), "/metadata/uid"),
        claim2,
        "mysql-db-2's claim was replaced"
    );
    assert_eq!(
        sql_ok(&again, "select v from keep.m"),
        "mysql-db-2 before scale-down"
    );
    wait_resolves(
        server,
        &format!("mysql.{NS}.svc.cluster.local"),
        &pods.iter().map(|p| p.ip.as_str()).collect::<Vec<_>>(),
    );

    // ---- never two live pods with one name, through all of it.
    w.assert_identities_unique();
}
