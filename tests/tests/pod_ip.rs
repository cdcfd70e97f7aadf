//! Loopback pod addresses never collide with what else runs on the host: with a process
//! already bound to the next free pod address of a node, a new pod still starts, on
//! another address, and an event says which address was skipped.

use std::net::{Ipv4Addr, TcpListener};
use twinset_e2e::{json, timeout, wait_for, Cluster};

#[test]
fn a_pod_address_held_by_another_process_is_skipped() {
    let c = Cluster::start(1);
    let node = c.get_json(&["node", "node1"]).expect("node1");
    let cidr: twinset_proto::Cidr = json::str_at(&node, "/spec/podCIDR")
        .parse()
        .expect("node1 has a pod range");
    let first: Ipv4Addr = match cidr.pod_addresses().next() {
        Some(ip) => ip,
        None => panic!("no pod address in {cidr}"),
    };
    // A leftover process (this test) holds the address the next pod would get.
    let squatter = TcpListener::bind((first, 0)).expect("bind the first pod address");

    c.apply(&twinset_e2e::shell_pod(
        "newcomer",
        "node1",
        "exec sleep 3600",
    ))
    .ok();
    let pods = c.wait_running("default", "newcomer", 1);
    let ip: Ipv4Addr = pods[0].ip.parse().expect("a pod IP");
    assert_ne!(ip, first, "the pod got the held address");
    assert!(cidr.contains(ip), "{ip} is not in {cidr}");
    let want = format!("skipped pod IP {first} held by another process on the node; using {ip}");
    wait_for("the PodIPInUse event", timeout(), || {
        let events = c.events("default")?;
        events
            .iter()
            .any(|e| {
                json::str_at(e, "/reason") == "PodIPInUse" && json::str_at(e, "/message") == want
            })
            .then_some(())
            .ok_or_else(|| format!("no PodIPInUse event {want:?} in {events:?}"))
    });
    drop(squatter);
}
