//! Pod IP allocation from the node's `spec.podCIDR`: the network address and the
//! first host (`.1`, the node's own by convention) and the broadcast address are never
//! handed out; a pod keeps its address (by uid) for as long as it exists, also across
//! agent restarts, because allocations are kept in the agent's journal ([`crate::state`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use twinset_proto::Cidr;

use crate::state::{Journal, StateError};

/// Errors of the allocator.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The CIDR is not an IPv4 network with a prefix of at most /30.
    #[error("invalid pod CIDR {cidr:?}: {reason}")]
    BadCidr {
        /// The CIDR as given.
        cidr: String,
        /// Why it is unusable.
        reason: &'static str,
    },
    /// Every address of the range is taken.
    #[error("pod CIDR {0} has no free address")]
    Exhausted(String),
    /// The node has no pod range.
    #[error("the node has no pod CIDR")]
    NoCidr,
    /// The journal could not be written.
    #[error("ipam state {path}: {message}")]
    Persist {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// The allocator; one per agent, its allocations kept in the agent's journal.
#[derive(Debug)]
pub struct Ipam {
    journal: Journal,
    cidr: Option<Cidr>,
    allocations: BTreeMap<String, Ipv4Addr>,
}

fn persist(e: StateError) -> IpamError {
    IpamError::Persist {
        path: e.path,
        message: e.message,
    }
}

/// Parses a node's pod range: an IPv4 CIDR of at most /30.
pub fn parse_pod_cidr(s: &str) -> Result<Cidr, IpamError> {
    let c = Cidr::parse(s).map_err(|_| IpamError::BadCidr {
        cidr: s.to_string(),
        reason: "expected IPv4 ADDRESS/PREFIX",
    })?;
    if c.prefix() > 30 {
        return Err(IpamError::BadCidr {
            cidr: s.to_string(),
            reason: "prefix must be at most /30",
        });
    }
    Ok(c)
}

impl Ipam {
    /// The allocator whose state is in `journal`.
    pub fn open(journal: Journal) -> Result<Ipam, IpamError> {
        let snap = journal.snapshot();
        let cidr = snap.cidr.as_deref().and_then(|c| parse_pod_cidr(c).ok());
        Ok(Ipam {
            journal,
            cidr,
            allocations: snap.ips,
        })
    }

    /// Sets the node's range (from registration). Allocations outside it are dropped.
    pub fn set_cidr(&mut self, cidr: &str) -> Result<(), IpamError> {
        let c = parse_pod_cidr(cidr)?;
        let outside: Vec<String> = self
            .allocations
            .iter()
            .filter(|(_, ip)| !c.is_pod_address(**ip))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in outside {
            self.allocations.remove(&uid);
            self.journal.release_ip(&uid).map_err(persist)?;
        }
        self.cidr = Some(c);
        self.journal.set_cidr(&c.to_string()).map_err(persist)
    }

    /// The range in use.
    pub fn cidr(&self) -> Option<Cidr> {
        self.cidr
    }

    /// The pod's address: the one it already has, else the lowest one that is neither
    /// allocated nor `held` by some other process on the host. Returns it with the free
    /// addresses skipped because they were held.
    pub fn allocate(
        &mut self,
        uid: &str,
        held: &std::collections::BTreeSet<Ipv4Addr>,
    ) -> Result<(Ipv4Addr, Vec<Ipv4Addr>), IpamError> {
        let cidr = self.cidr.ok_or(IpamError::NoCidr)?;
        if let Some(ip) = self.allocations.get(uid) {
            return Ok((*ip, Vec::new()));
        }
        let used: std::collections::HashSet<Ipv4Addr> =
            self.allocations.values().copied().collect();
        let mut skipped = Vec::new();
        let ip = cidr
            .pod_addresses()
            .filter(|ip| !used.contains(ip))
            .find(|ip| {
                let taken = held.contains(ip);
                if taken {
                    skipped.push(*ip);
                }
                !taken
            })
            .ok_or_else(|| IpamError::Exhausted(cidr.to_string()))?;
        self.journal.set_ip(uid, ip).map_err(persist)?;
        self.allocations.insert(uid.to_string(), ip);
        Ok((ip, skipped))
    }

    /// The pod's address, if it has one.
    pub fn get(&self, uid: &str) -> Option<Ipv4Addr> {
        self.allocations.get(uid).copied()
    }

    /// Frees the pod's address.
    pub fn release(&mut self, uid: &str) -> Result<(), IpamError> {
        if self.allocations.remove(uid).is_some() {
            self.journal.release_ip(uid).map_err(persist)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn none() -> BTreeSet<Ipv4Addr> {
        BTreeSet::new()
    }

    #[test]
    fn addresses_held_on_the_host_are_skipped_and_named() {
        let t = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(Journal::open(t.path()).unwrap()).unwrap();
        ipam.set_cidr("127.128.3.0/24").unwrap();
        let ip = |d| Ipv4Addr::new(127, 128, 3, d);
        let held: BTreeSet<_> = [ip(2), ip(3), ip(9)].into();
        assert_eq!(
            ipam.allocate("a", &held).unwrap(),
            (ip(4), vec![ip(2), ip(3)])
        );
        assert_eq!(
            ipam.allocate("b", &held).unwrap(),
            (ip(5), vec![ip(2), ip(3)])
        );
        // A pod keeps its address even when something holds it (its own process).
        let all: BTreeSet<_> = [ip(4)].into();
        assert_eq!(ipam.allocate("a", &all).unwrap(), (ip(4), vec![]));
        // Once free, the lowest address is used again.
        assert_eq!(ipam.allocate("c", &none()).unwrap(), (ip(2), vec![]));
    }

    #[test]
    fn pod_cidr_must_be_ipv4_and_at_most_slash_30() {
        assert_eq!(
            parse_pod_cidr("127.128.1.77/24").unwrap().to_string(),
            "127.128.1.0/24"
        );
        assert!(parse_pod_cidr("10.0.0.0").is_err());
        assert!(parse_pod_cidr("fd00::/64").is_err());
        let e = parse_pod_cidr("10.0.0.0/31").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid pod CIDR \"10.0.0.0/31\": prefix must be at most /30"
        );
    }

    #[test]
    fn stable_per_uid_persisted_and_released() {
        let t = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(Journal::open(t.path()).unwrap()).unwrap();
        assert!(matches!(
            ipam.allocate("a", &none()).map(|(ip, _)| ip),
            Err(IpamError::NoCidr)
        ));
        ipam.set_cidr("127.128.3.0/24").unwrap();
        let a = ipam.allocate("a", &none()).map(|(ip, _)| ip).unwrap();
        let b = ipam.allocate("b", &none()).map(|(ip, _)| ip).unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 128, 3, 2));
        assert_eq!(b, Ipv4Addr::new(127, 128, 3, 3));
        assert_eq!(ipam.allocate("a", &none()).map(|(ip, _)| ip).unwrap(), a);
        drop(ipam);
        let mut reopened = Ipam::open(Journal::open(t.path()).unwrap()).unwrap();
        assert_eq!(reopened.cidr().unwrap().to_string(), "127.128.3.0/24");
        assert_eq!(
            reopened.allocate("b", &none()).map(|(ip, _)| ip).unwrap(),
            b
        );
        reopened.release("a").unwrap();
        assert_eq!(
            reopened.allocate("c", &none()).map(|(ip, _)| ip).unwrap(),
            a
        );
        assert_eq!(reopened.get("a"), None);
        // A new range drops the allocations outside it, also in the journal.
        reopened.set_cidr("10.9.0.0/24").unwrap();
        assert_eq!(reopened.get("b"), None);
        drop(reopened);
        let again = Ipam::open(Journal::open(t.path()).unwrap()).unwrap();
        assert_eq!(again.get("b"), None);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(Journal::open(t.path()).unwrap()).unwrap();
        ipam.set_cidr("10.0.0.0/30").unwrap();
        ipam.allocate("a", &none()).map(|(ip, _)| ip).unwrap();
        assert!(matches!(
            ipam.allocate("b", &none()).map(|(ip, _)| ip),
            Err(IpamError::Exhausted(_))
        ));
    }
}
