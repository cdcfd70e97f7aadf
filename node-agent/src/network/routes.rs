//! The route decisions of bridge mode, pure: which host-gw routes this machine wants
//! ([`desired`]), what to change to get there ([`plan`]), and the names of the links
//! the agent makes ([`bridge_name`], [`veth_name`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};
use twinset_proto::Cidr;

use super::{NodeRange, Route, RouteChanges};

/// The routes this machine wants: every node's range via its node IP, except the nodes
/// whose node IP is an address of this machine (`local`, or any `127.0.0.0/8` address:
/// agents on one machine need no routes to each other), plus an `unreachable` route for
/// the whole `cluster` range when one is given, so a pod packet for an address of no
/// node never leaves by the default route. A range claimed by two nodes belongs to the
/// one with the lowest name (the others' claims are ignored, also when that node is
/// local). Sorted, without duplicates.
pub fn desired(
    local: &BTreeSet<Ipv4Addr>,
    ranges: &[NodeRange],
    cluster: Option<Cidr>,
) -> Vec<Route> {
    // The owner of each range: the node with the lowest name.
    let mut owners: BTreeMap<Cidr, &NodeRange> = BTreeMap::new();
    for r in ranges {
        owners
            .entry(r.range)
            .and_modify(|o| {
                if (&r.node, r.node_ip) < (&o.node, o.node_ip) {
                    *o = r;
                }
            })
            .or_insert(r);
    }
    let mut out: BTreeSet<Route> = owners
        .values()
        .filter(|r| !is_local(local, r.node_ip))
        .map(|r| Route {
            dest: r.range,
            via: Some(r.node_ip),
        })
        .collect();
    if let Some(cluster) = cluster {
        out.insert(Route {
            dest: cluster,
            via: None,
        });
    }
    out.into_iter().collect()
}

/// Whether `ip` is an address of this machine: one of `local`, or a loopback address.
fn is_local(local: &BTreeSet<Ipv4Addr>, ip: Ipv4Addr) -> bool {
    ip.is_loopback() || local.contains(&ip)
}

/// What to change so that the twinset routes `installed` become `desired`: add the
/// missing, remove the installed ones no longer wanted. A route whose gateway changed
/// differs from the installed one, so it is one removal plus one addition. Both lists
/// sorted, without duplicates.
pub fn plan(desired: &[Route], installed: &[Route]) -> RouteChanges {
    let want: BTreeSet<Route> = desired.iter().copied().collect();
    let have: BTreeSet<Route> = installed.iter().copied().collect();
    RouteChanges {
        added: want.difference(&have).copied().collect(),
        removed: have.difference(&want).copied().collect(),
    }
}

/// The name of a node's bridge: `ts` + 10 hex digits of the SHA-256 of the node name
/// (12 bytes, within the kernel's 15-byte limit), so several agents on one machine each
/// have their own.
pub fn bridge_name(node: &str) -> String {
    format!("ts{}", hex_prefix(node, 10))
}

/// The name of a pod's host-side veth: `tv` + 12 hex digits of the SHA-256 of the pod
/// uid (14 bytes, within the kernel's 15-byte limit).
pub fn veth_name(uid: &str) -> String {
    format!("tv{}", hex_prefix(uid, 12))
}

/// The first `n` hex digits of the SHA-256 of `s`.
fn hex_prefix(s: &str, n: usize) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex.truncate(n);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn node(name: &str, range: &str, node_ip: &str) -> NodeRange {
        NodeRange {
            node: name.to_string(),
            range: cidr(range),
            node_ip: ip(node_ip),
        }
    }

    fn via(dest: &str, gw: &str) -> Route {
        Route {
            dest: cidr(dest),
            via: Some(ip(gw)),
        }
    }

    fn unreachable(dest: &str) -> Route {
        Route {
            dest: cidr(dest),
            via: None,
        }
    }

    fn local(ips: &[&str]) -> BTreeSet<Ipv4Addr> {
        ips.iter().map(|s| ip(s)).collect()
    }

    #[test]
    fn desired_routes_other_nodes_ranges_via_their_ips_and_the_cluster_unreachable() {
        let ranges = [
            node("m3", "10.244.3.0/24", "192.168.50.13"),
            node("m1", "10.244.1.0/24", "192.168.50.11"),
            node("m2", "10.244.2.0/24", "192.168.50.12"),
        ];
        let got = desired(
            &local(&["192.168.50.11", "127.0.0.1"]),
            &ranges,
            Some(cidr("10.244.0.0/16")),
        );
        assert_eq!(
            got,
            [
                unreachable("10.244.0.0/16"),
                via("10.244.2.0/24", "192.168.50.12"),
                via("10.244.3.0/24", "192.168.50.13"),
            ]
        );
    }

    #[test]
    fn desired_without_cluster_has_no_unreachable_route() {
        let ranges = [node("m2", "10.244.2.0/24", "192.168.50.12")];
        assert_eq!(
            desired(&local(&[]), &ranges, None),
            [via("10.244.2.0/24", "192.168.50.12")]
        );
        assert_eq!(desired(&local(&[]), &[], None), []);
        assert_eq!(
            desired(&local(&[]), &[], Some(cidr("10.244.0.0/16"))),
            [unreachable("10.244.0.0/16")]
        );
    }

    #[test]
    fn desired_needs_no_routes_between_agents_of_one_machine() {
        // A local cluster: every agent uses a loopback address or one of this machine's.
        let ranges = [
            node("a", "10.244.1.0/24", "127.0.0.1"),
            node("b", "10.244.2.0/24", "127.0.0.2"),
            node("c", "10.244.3.0/24", "127.255.255.254"),
            node("d", "10.244.4.0/24", "10.0.0.5"),
        ];
        assert_eq!(
            desired(&local(&["10.0.0.5"]), &ranges, Some(cidr("10.244.0.0/16"))),
            [unreachable("10.244.0.0/16")]
        );
        // Loopback addresses are local even when the list of addresses is empty.
        assert_eq!(desired(&local(&[]), &ranges[..3], None), []);
    }

    #[test]
    fn desired_keeps_ranges_outside_the_cluster_range() {
        let ranges = [node("m2", "172.16.0.0/24", "192.168.50.12")];
        assert_eq!(
            desired(&local(&[]), &ranges, Some(cidr("10.244.0.0/16"))),
            [
                unreachable("10.244.0.0/16"),
                via("172.16.0.0/24", "192.168.50.12"),
            ]
        );
    }

    #[test]
    fn desired_gives_a_range_claimed_twice_to_the_lowest_node_name() {
        let ranges = [
            node("zeta", "10.244.2.0/24", "192.168.50.30"),
            node("beta", "10.244.2.0/24", "192.168.50.20"),
            node("gamma", "10.244.2.0/24", "192.168.50.10"),
        ];
        let want = [via("10.244.2.0/24", "192.168.50.20")];
        assert_eq!(desired(&local(&[]), &ranges, None), want);
        // The input order does not matter.
        let mut reversed = ranges.clone();
        reversed.reverse();
        assert_eq!(desired(&local(&[]), &reversed, None), want);
        // When the owner is this machine, no route: its pods are on the local bridge.
        assert_eq!(desired(&local(&["192.168.50.20"]), &ranges, None), []);
    }

    #[test]
    fn desired_drops_duplicates() {
        let ranges = [
            node("m2", "10.244.2.0/24", "192.168.50.12"),
            node("m2", "10.244.2.0/24", "192.168.50.12"),
        ];
        assert_eq!(
            desired(&local(&[]), &ranges, Some(cidr("10.244.0.0/16"))),
            [
                unreachable("10.244.0.0/16"),
                via("10.244.2.0/24", "192.168.50.12"),
            ]
        );
    }

    #[test]
    fn plan_adds_the_missing_and_removes_the_unwanted() {
        let desired = [
            unreachable("10.244.0.0/16"),
            via("10.244.2.0/24", "192.168.50.12"),
            via("10.244.3.0/24", "192.168.50.13"),
        ];
        let installed = [
            via("10.244.4.0/24", "192.168.50.14"),
            via("10.244.2.0/24", "192.168.50.12"),
        ];
        assert_eq!(
            plan(&desired, &installed),
            RouteChanges {
                added: vec![
                    unreachable("10.244.0.0/16"),
                    via("10.244.3.0/24", "192.168.50.13"),
                ],
                removed: vec![via("10.244.4.0/24", "192.168.50.14")],
            }
        );
    }

    #[test]
    fn plan_replaces_a_route_whose_gateway_changed() {
        let changes = plan(
            &[via("10.244.2.0/24", "192.168.50.22")],
            &[via("10.244.2.0/24", "192.168.50.12")],
        );
        assert_eq!(changes.added, [via("10.244.2.0/24", "192.168.50.22")]);
        assert_eq!(changes.removed, [via("10.244.2.0/24", "192.168.50.12")]);
        // An unreachable route that became a gateway route, and back.
        let changes = plan(
            &[unreachable("10.244.0.0/16")],
            &[via("10.244.0.0/16", "192.168.50.12")],
        );
        assert_eq!(changes.added, [unreachable("10.244.0.0/16")]);
        assert_eq!(changes.removed, [via("10.244.0.0/16", "192.168.50.12")]);
    }

    #[test]
    fn plan_of_what_is_there_is_empty() {
        let routes = [
            unreachable("10.244.0.0/16"),
            via("10.244.2.0/24", "192.168.50.12"),
        ];
        assert_eq!(plan(&routes, &routes), RouteChanges::default());
        assert_eq!(plan(&[], &[]), RouteChanges::default());
        // Duplicates in what is installed are removed once.
        let r = via("10.244.2.0/24", "192.168.50.12");
        assert_eq!(plan(&[], &[r, r]).removed, [r]);
        // Everything goes when nothing is wanted.
        assert_eq!(plan(&[], &routes).removed, routes);
    }

    #[test]
    fn link_names_are_short_stable_and_distinct() {
        let b = bridge_name("machine-1");
        assert_eq!(b.len(), 12);
        assert!(b.starts_with("ts"));
        assert!(b[2..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(b, bridge_name("machine-1"));
        assert_ne!(b, bridge_name("machine-2"));
        // sha256("machine-1") starts with these digits.
        assert_eq!(b, format!("ts{}", &sha_hex("machine-1")[..10]));

        let uid = "2b0c6d1e-8f1a-4c3e-9d4f-0a1b2c3d4e5f";
        let v = veth_name(uid);
        assert_eq!(v.len(), 14);
        assert!(v.starts_with("tv"));
        assert_eq!(v, veth_name(uid));
        assert_eq!(v, format!("tv{}", &sha_hex(uid)[..12]));
        assert_ne!(v, veth_name("another-uid"));
        // Within IFNAMSIZ (16 bytes with the terminating NUL) for any input.
        let long = "x".repeat(1000);
        assert!(bridge_name(&long).len() <= 15);
        assert!(veth_name(&long).len() <= 15);
        assert!(veth_name("").len() <= 15);
        // A known digest: sha256("") = e3b0c442 98fc1c14 ...
        assert_eq!(veth_name(""), "tve3b0c44298fc");
        assert_eq!(bridge_name(""), "tse3b0c44298");
    }

    fn sha_hex(s: &str) -> String {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
