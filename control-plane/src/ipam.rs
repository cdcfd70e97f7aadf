//! Node pod ranges (Kubernetes' node IPAM): the cluster CIDR cut into equal blocks,
//! one per node, the lowest free block first. The block is stored in the Node's
//! spec.podCIDR, so it stays with the node for as long as the node exists.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// IPAM errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The cluster CIDR does not parse.
    #[error("invalid cluster CIDR {0:?}: expected IPv4 ADDRESS/PREFIX, e.g. 127.128.0.0/9")]
    BadCidr(String),
    /// The node prefix does not fit inside the cluster CIDR.
    #[error("node CIDR prefix /{node} must be between the cluster prefix /{cluster} and /30")]
    BadPrefix {
        /// The cluster prefix length.
        cluster: u8,
        /// The node prefix length.
        node: u8,
    },
    /// Every block is taken.
    #[error("no free pod range left in {0}: every block is assigned to a node")]
    Exhausted(String),
}

/// The allocator for one cluster CIDR.
#[derive(Clone, Debug)]
pub struct Ipam {
    base: u32,
    cluster_prefix: u8,
    node_prefix: u8,
}

/// Parses "A.B.C.D/N" into (network address, prefix length).
pub fn parse_cidr(s: &str) -> Option<(u32, u8)> {
    let (addr, len) = s.trim().split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(addr) & mask, len))
}

impl Ipam {
    /// An allocator cutting `cluster_cidr` into `/node_prefix` blocks.
    pub fn new(cluster_cidr: &str, node_prefix: u8) -> Result<Ipam, Error> {
        let (base, cluster_prefix) =
            parse_cidr(cluster_cidr).ok_or_else(|| Error::BadCidr(cluster_cidr.into()))?;
        if node_prefix < cluster_prefix || node_prefix > 30 {
            return Err(Error::BadPrefix {
                cluster: cluster_prefix,
                node: node_prefix,
            });
        }
        Ok(Ipam {
            base,
            cluster_prefix,
            node_prefix,
        })
    }

    fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.cluster_prefix)
    }

    /// The lowest block not in `used` (CIDR strings as stored in nodes).
    pub fn allocate(&self, used: &BTreeSet<String>) -> Result<String, Error> {
        let used: BTreeSet<u32> = used
            .iter()
            .filter_map(|c| parse_cidr(c))
            .filter(|(_, len)| *len == self.node_prefix)
            .map(|(addr, _)| addr)
            .collect();
        let blocks: u64 = 1u64 << (self.node_prefix - self.cluster_prefix);
        let size: u64 = 1u64 << (32 - self.node_prefix);
        (0..blocks)
            .map(|i| (u64::from(self.base) + i * size) as u32)
            .find(|addr| !used.contains(addr))
            .map(|addr| format!("{}/{}", Ipv4Addr::from(addr), self.node_prefix))
            .ok_or_else(|| Error::Exhausted(self.cidr()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_block() {
        let ipam = Ipam::new("127.128.0.0/9", 24).unwrap();
        let mut used = BTreeSet::new();
        let a = ipam.allocate(&used).unwrap();
        assert_eq!(a, "127.128.0.0/24");
        used.insert(a);
        used.insert("127.128.2.0/24".into());
        assert_eq!(ipam.allocate(&used).unwrap(), "127.128.1.0/24");
        used.insert("127.128.1.0/24".into());
        assert_eq!(ipam.allocate(&used).unwrap(), "127.128.3.0/24");
    }

    #[test]
    fn refuses_bad_input_and_reports_exhaustion() {
        assert!(matches!(Ipam::new("nonsense", 24), Err(Error::BadCidr(_))));
        assert!(matches!(
            Ipam::new("10.0.0.0/24", 16),
            Err(Error::BadPrefix { .. })
        ));
        let ipam = Ipam::new("10.0.0.0/23", 24).unwrap();
        let used: BTreeSet<String> = ["10.0.0.0/24".to_string(), "10.0.1.0/24".to_string()].into();
        assert_eq!(
            ipam.allocate(&used).unwrap_err().to_string(),
            "no free pod range left in 10.0.0.0/23: every block is assigned to a node"
        );
        assert_eq!(
            parse_cidr("10.1.2.3/8"),
            Some((u32::from(Ipv4Addr::new(10, 0, 0, 0)), 8))
        );
    }
}
