//! Node pod ranges (Kubernetes' node IPAM): the cluster CIDR cut into equal blocks,
//! one per node, the lowest free block first. The block is stored in the Node's
//! spec.podCIDR, so it stays with the node for as long as the node exists.

use std::collections::BTreeSet;

use twinset_proto::Cidr;

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
    cluster: Cidr,
    node_prefix: u8,
}

impl Ipam {
    /// An allocator cutting `cluster_cidr` into `/node_prefix` blocks.
    pub fn new(cluster_cidr: &str, node_prefix: u8) -> Result<Ipam, Error> {
        let cluster = Cidr::parse(cluster_cidr).map_err(|_| Error::BadCidr(cluster_cidr.into()))?;
        if node_prefix < cluster.prefix() || node_prefix > 30 {
            return Err(Error::BadPrefix {
                cluster: cluster.prefix(),
                node: node_prefix,
            });
        }
        Ok(Ipam {
            cluster,
            node_prefix,
        })
    }

    /// The lowest block not in `used` (CIDR strings as stored in nodes).
    pub fn allocate(&self, used: &BTreeSet<String>) -> Result<String, Error> {
        let used: BTreeSet<Cidr> = used
            .iter()
            .filter_map(|c| Cidr::parse(c).ok())
            .filter(|c| c.prefix() == self.node_prefix)
            .collect();
        self.cluster
            .subnets(self.node_prefix)
            .find(|block| !used.contains(block))
            .map(|block| block.to_string())
            .ok_or_else(|| Error::Exhausted(self.cluster.to_string()))
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
        // Host bits of the cluster CIDR are cleared.
        let ipam = Ipam::new("10.1.2.3/8", 24).unwrap();
        assert_eq!(ipam.allocate(&BTreeSet::new()).unwrap(), "10.0.0.0/24");
    }
}
