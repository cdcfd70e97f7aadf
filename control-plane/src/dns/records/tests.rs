use super::*;
use std::collections::BTreeMap;
use twinset_proto::v1::{ObjectMeta, PodCondition, PodIp, PodSpec, PodStatus, ServiceSpec};

const DOMAIN: &str = "cluster.local";

/// A pod as the StatefulSet controller makes it (hostname = name, subdomain = service),
/// Running and Ready with one IP.
fn sts_pod(ns: &str, name: &str, service: &str, ip: &str) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: ns.into(),
            labels: BTreeMap::from([("app".to_string(), service.to_string())]),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            hostname: name.into(),
            subdomain: service.into(),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: "Running".into(),
            pod_ip: ip.into(),
            pod_ips: vec![PodIp { ip: ip.into() }],
            conditions: vec![ready_condition("True")],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ready_condition(status: &str) -> PodCondition {
    PodCondition {
        r#type: "Ready".into(),
        status: status.into(),
        ..Default::default()
    }
}

/// A headless Service selecting `app=<name>`.
fn service(ns: &str, name: &str) -> Service {
    Service {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: ns.into(),
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            cluster_ip: "None".into(),
            selector: BTreeMap::from([("app".to_string(), name.to_string())]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn set_ready(pod: &mut Pod, status: &str) {
    pod.status.as_mut().unwrap().conditions = vec![ready_condition(status)];
}

fn set_phase(pod: &mut Pod, phase: &str) {
    pod.status.as_mut().unwrap().phase = phase.into();
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn found(list: &[&str]) -> Answer {
    Answer::Exists {
        addresses: ips(list),
        apex: false,
    }
}

fn empty() -> Answer {
    found(&[])
}

/// The guide's three MySQL replicas in namespace `database`, behind Service `mysql`.
fn mysql() -> (Vec<Service>, Vec<Pod>) {
    (
        vec![service("database", "mysql")],
        vec![
            sts_pod("database", "mysql-db-0", "mysql", "127.128.0.2"),
            sts_pod("database", "mysql-db-1", "mysql", "127.128.1.2"),
            sts_pod("database", "mysql-db-2", "mysql", "127.128.2.2"),
        ],
    )
}

fn zone(services: &[Service], pods: &[Pod]) -> Zone {
    Zone::build(DOMAIN, services, pods).unwrap()
}

#[test]
fn ready_pods_get_their_own_name_and_the_service_name_lists_them_all() {
    let (svcs, pods) = mysql();
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql-db-1.mysql.database.svc.cluster.local"),
        found(&["127.128.1.2"])
    );
    assert_eq!(
        z.lookup("mysql-db-0.mysql.database.svc.cluster.local"),
        found(&["127.128.0.2"])
    );
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        found(&["127.128.0.2", "127.128.1.2", "127.128.2.2"])
    );
}

#[test]
fn names_are_case_insensitive_and_may_end_with_a_dot() {
    let (svcs, pods) = mysql();
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("MySQL-DB-1.Mysql.DATABASE.svc.Cluster.Local."),
        found(&["127.128.1.2"])
    );
    assert_eq!(
        z.lookup_labels(&["mysql", "database", "SVC", "cluster", "LOCAL"]),
        found(&["127.128.0.2", "127.128.1.2", "127.128.2.2"])
    );
}

#[test]
fn a_pod_that_is_not_ready_has_no_record_and_leaves_the_service_list() {
    let (svcs, mut pods) = mysql();
    set_ready(&mut pods[1], "False");
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql-db-1.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        found(&["127.128.0.2", "127.128.2.2"])
    );
}

#[test]
fn a_pod_without_a_ready_condition_is_not_ready() {
    let (svcs, mut pods) = mysql();
    pods[0].status.as_mut().unwrap().conditions.clear();
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql-db-0.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
}

#[test]
fn only_running_pods_are_published() {
    for phase in ["Pending", "Succeeded", "Failed", "Unknown", ""] {
        let (svcs, mut pods) = mysql();
        set_phase(&mut pods[2], phase);
        let z = zone(&svcs, &pods);
        assert_eq!(
            z.lookup("mysql-db-2.mysql.database.svc.cluster.local"),
            Answer::NxDomain,
            "phase {phase:?}"
        );
        assert_eq!(
            z.lookup("mysql.database.svc.cluster.local"),
            found(&["127.128.0.2", "127.128.1.2"]),
            "phase {phase:?}"
        );
    }
}

#[test]
fn a_terminating_pod_is_not_published() {
    let (svcs, mut pods) = mysql();
    pods[0].metadata.as_mut().unwrap().deletion_timestamp = "2026-11-01T00:00:00Z".into();
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql-db-0.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        found(&["127.128.1.2", "127.128.2.2"])
    );
}

#[test]
fn a_pod_without_an_ip_contributes_nothing() {
    let (svcs, mut pods) = mysql();
    let st = pods[1].status.as_mut().unwrap();
    st.pod_ip.clear();
    st.pod_ips.clear();
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql-db-1.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        found(&["127.128.0.2", "127.128.2.2"])
    );
}

#[test]
fn text_that_is_not_an_ip_is_skipped() {
    let (svcs, mut pods) = mysql();
    let st = pods[1].status.as_mut().unwrap();
    st.pod_ip = "not-an-ip".into();
    st.pod_ips = vec![PodIp {
        ip: "127.128.1.999".into(),
    }];
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql-db-1.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
}

#[test]
fn pod_ip_and_pod_ips_are_merged_without_duplicates_and_ipv6_is_kept() {
    let (svcs, mut pods) = mysql();
    let st = pods[0].status.as_mut().unwrap();
    st.pod_ips = vec![
        PodIp {
            ip: "127.128.0.2".into(),
        },
        PodIp {
            ip: "fd00::2".into(),
        },
    ];
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql-db-0.mysql.database.svc.cluster.local"),
        found(&["127.128.0.2", "fd00::2"])
    );
}

#[test]
fn pods_of_one_ip_listed_once_in_the_service() {
    // Two pods reporting the same IP (hostNetwork pods on one node) give one address.
    let (svcs, mut pods) = mysql();
    let ip = "127.128.0.2".to_string();
    pods[1].status.as_mut().unwrap().pod_ip = ip.clone();
    pods[1].status.as_mut().unwrap().pod_ips = vec![PodIp { ip }];
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        found(&["127.128.0.2", "127.128.2.2"])
    );
}

#[test]
fn a_service_without_ready_pods_exists_with_no_address() {
    let (svcs, mut pods) = mysql();
    for p in &mut pods {
        set_ready(p, "False");
    }
    let z = zone(&svcs, &pods);
    assert_eq!(z.lookup("mysql.database.svc.cluster.local"), empty());
    assert_eq!(z.lookup("database.svc.cluster.local"), empty());
    let z = zone(&svcs, &[]);
    assert_eq!(z.lookup("mysql.database.svc.cluster.local"), empty());
}

#[test]
fn pods_without_their_service_have_no_names() {
    let (_, pods) = mysql();
    let z = zone(&[], &pods);
    assert_eq!(
        z.lookup("mysql-db-0.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
    assert_eq!(z.lookup("database.svc.cluster.local"), Answer::NxDomain);
    assert_eq!(z.lookup("svc.cluster.local"), Answer::NxDomain);
}

#[test]
fn a_pod_without_hostname_is_in_the_service_list_only() {
    let (svcs, mut pods) = mysql();
    pods[2].spec.as_mut().unwrap().hostname.clear();
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql-db-2.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        found(&["127.128.0.2", "127.128.1.2", "127.128.2.2"])
    );
}

#[test]
fn the_hostname_not_the_pod_name_makes_the_record() {
    let (svcs, mut pods) = mysql();
    pods[2].spec.as_mut().unwrap().hostname = "Primary".into();
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql-db-2.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
    // Not a DNS-1123 label (upper case): Kubernetes would refuse it; no record.
    assert_eq!(
        z.lookup("primary.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
    pods[2].spec.as_mut().unwrap().hostname = "primary".into();
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("primary.mysql.database.svc.cluster.local"),
        found(&["127.128.2.2"])
    );
}

#[test]
fn a_hostname_that_is_not_a_label_makes_no_record() {
    let (svcs, mut pods) = mysql();
    pods[0].spec.as_mut().unwrap().hostname = "a.b".into();
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("a.b.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
    assert_eq!(
        z.lookup("b.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
}

#[test]
fn a_pod_of_another_subdomain_is_listed_by_the_service_but_has_no_name_under_it() {
    let (svcs, mut pods) = mysql();
    pods[1].spec.as_mut().unwrap().subdomain = "other".into();
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql-db-1.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        found(&["127.128.0.2", "127.128.1.2", "127.128.2.2"])
    );
}

#[test]
fn a_pod_the_selector_does_not_match_gets_no_name_even_with_the_subdomain() {
    let (svcs, mut pods) = mysql();
    pods[1].metadata.as_mut().unwrap().labels =
        BTreeMap::from([("app".to_string(), "web".to_string())]);
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql-db-1.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        found(&["127.128.0.2", "127.128.2.2"])
    );
}

#[test]
fn every_selector_label_must_match() {
    let (mut svcs, mut pods) = mysql();
    svcs[0]
        .spec
        .as_mut()
        .unwrap()
        .selector
        .insert("tier".into(), "db".into());
    pods[0]
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .insert("tier".into(), "db".into());
    pods[1]
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .insert("tier".into(), "cache".into());
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        found(&["127.128.0.2"])
    );
}

#[test]
fn an_empty_selector_takes_the_pods_of_its_subdomain() {
    let (mut svcs, mut pods) = mysql();
    svcs[0].spec.as_mut().unwrap().selector.clear();
    pods[2].spec.as_mut().unwrap().subdomain = "other".into();
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        found(&["127.128.0.2", "127.128.1.2"])
    );
    assert_eq!(
        z.lookup("mysql-db-0.mysql.database.svc.cluster.local"),
        found(&["127.128.0.2"])
    );
    assert_eq!(
        z.lookup("mysql-db-2.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
    // A Service with no spec at all behaves the same.
    svcs[0].spec = None;
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        found(&["127.128.0.2", "127.128.1.2"])
    );
}

#[test]
fn namespaces_are_kept_apart() {
    let (mut svcs, mut pods) = mysql();
    svcs.push(service("staging", "mysql"));
    pods.push(sts_pod("staging", "mysql-db-0", "mysql", "127.128.9.9"));
    // Same labels, other namespace: not selected by database/mysql.
    pods.push(sts_pod("default", "mysql-db-7", "mysql", "127.128.7.7"));
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql-db-0.mysql.staging.svc.cluster.local"),
        found(&["127.128.9.9"])
    );
    assert_eq!(
        z.lookup("mysql.staging.svc.cluster.local"),
        found(&["127.128.9.9"])
    );
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        found(&["127.128.0.2", "127.128.1.2", "127.128.2.2"])
    );
    assert_eq!(
        z.lookup("mysql-db-7.mysql.default.svc.cluster.local"),
        Answer::NxDomain
    );
    assert_eq!(
        z.lookup("mysql.default.svc.cluster.local"),
        Answer::NxDomain
    );
}

#[test]
fn namespace_records_ignore_objects_of_other_namespaces() {
    let (svcs, pods) = mysql();
    let other = service("staging", "web");
    let r = NamespaceRecords::build("database", svcs.iter().chain([&other]), &pods);
    assert_eq!(r.services.keys().collect::<Vec<_>>(), ["mysql"]);
    let r = NamespaceRecords::build("staging", &svcs, &pods);
    assert!(r.is_empty());
}

#[test]
fn publish_not_ready_addresses_publishes_every_pod_that_has_not_ended() {
    let (mut svcs, mut pods) = mysql();
    svcs[0].spec.as_mut().unwrap().publish_not_ready_addresses = true;
    set_ready(&mut pods[0], "False");
    set_phase(&mut pods[1], "Pending");
    pods[1].status.as_mut().unwrap().conditions.clear();
    set_phase(&mut pods[2], "Failed");
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("mysql-db-0.mysql.database.svc.cluster.local"),
        found(&["127.128.0.2"])
    );
    assert_eq!(
        z.lookup("mysql-db-1.mysql.database.svc.cluster.local"),
        found(&["127.128.1.2"])
    );
    assert_eq!(
        z.lookup("mysql-db-2.mysql.database.svc.cluster.local"),
        Answer::NxDomain
    );
    assert_eq!(
        z.lookup("mysql.database.svc.cluster.local"),
        found(&["127.128.0.2", "127.128.1.2"])
    );
}

#[test]
fn names_outside_the_domain_are_refused() {
    let (svcs, pods) = mysql();
    let z = zone(&svcs, &pods);
    for name in [
        "example.com",
        "local",
        "",
        ".",
        "mysql.database.svc.cluster.localhost",
        "mysql.database.svc.cluster.local.example.com",
        "mysql.database.svc.xcluster.local",
    ] {
        assert_eq!(z.lookup(name), Answer::Refused, "{name:?}");
    }
}

#[test]
fn the_apex_and_the_names_above_records_exist() {
    let (svcs, pods) = mysql();
    let z = zone(&svcs, &pods);
    assert_eq!(
        z.lookup("cluster.local"),
        Answer::Exists {
            addresses: vec![],
            apex: true
        }
    );
    assert_eq!(z.lookup("svc.cluster.local"), empty());
    assert_eq!(z.lookup("database.svc.cluster.local"), empty());
    // The apex exists even in an empty zone.
    let z = zone(&[], &[]);
    assert_eq!(
        z.lookup("CLUSTER.LOCAL."),
        Answer::Exists {
            addresses: vec![],
            apex: true
        }
    );
}

#[test]
fn unknown_names_under_the_domain_do_not_exist() {
    let (svcs, pods) = mysql();
    let z = zone(&svcs, &pods);
    for name in [
        "mysql-db-3.mysql.database.svc.cluster.local",
        "web.database.svc.cluster.local",
        "default.svc.cluster.local",
        "mysql.database.cluster.local",
        "127-128-0-2.database.pod.cluster.local",
        "pod.cluster.local",
        "x.mysql-db-0.mysql.database.svc.cluster.local",
        "mysql-db-0.mysql.database.svc.svc.cluster.local",
        "mysql-db-0.mysql.database.cluster.local",
    ] {
        assert_eq!(z.lookup(name), Answer::NxDomain, "{name:?}");
    }
}

#[test]
fn another_domain_can_be_served() {
    let (svcs, pods) = mysql();
    let z = Zone::build("Lab.Example.", &svcs, &pods).unwrap();
    assert_eq!(z.domain(), "lab.example");
    assert_eq!(
        z.lookup("mysql-db-1.mysql.database.svc.lab.example"),
        found(&["127.128.1.2"])
    );
    assert_eq!(
        z.lookup("mysql-db-1.mysql.database.svc.cluster.local"),
        Answer::Refused
    );
}

#[test]
fn a_domain_that_is_not_a_dns_name_is_refused() {
    for bad in [
        "",
        ".",
        "-x.local",
        "a..b",
        "with space.local",
        "UPPER_score.local",
    ] {
        assert_eq!(
            Zone::new(bad),
            Err(InvalidDomain(bad.to_string())),
            "{bad:?}"
        );
    }
    assert!(Zone::new("local").is_ok());
}

#[test]
fn set_namespace_reports_changes_and_bumps_the_serial() {
    let (svcs, pods) = mysql();
    let mut z = Zone::new(DOMAIN).unwrap();
    let s0 = z.serial();
    let records = NamespaceRecords::build("database", &svcs, &pods);
    assert!(z.set_namespace("database", records.clone()));
    let s1 = z.serial();
    assert_ne!(s0, s1);
    assert!(!z.set_namespace("database", records));
    assert_eq!(z.serial(), s1);
    assert_eq!(z, zone(&svcs, &pods).with_serial(s1));
    // An empty namespace is dropped: its names go.
    assert!(z.set_namespace("database", NamespaceRecords::default()));
    assert!(z.namespace("database").is_none());
    assert_eq!(z.lookup("database.svc.cluster.local"), Answer::NxDomain);
    assert!(!z.set_namespace("database", NamespaceRecords::default()));
}

#[test]
fn incremental_updates_match_a_full_build() {
    let (svcs, mut pods) = mysql();
    let mut z = zone(&svcs, &pods);
    set_ready(&mut pods[1], "False");
    let ns_pods: Vec<&Pod> = pods.iter().collect();
    z.set_namespace(
        "database",
        NamespaceRecords::build("database", &svcs, ns_pods),
    );
    let full = zone(&svcs, &pods);
    assert_eq!(z.namespace("database"), full.namespace("database"));
}

impl Zone {
    fn with_serial(mut self, serial: u32) -> Zone {
        self.serial = serial;
        self
    }
}
