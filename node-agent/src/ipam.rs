//! Pod IP allocation from the node's `spec.podCIDR`: the network address and the
//! first host (`.1`, the node's own by convention) and the broadcast address are never
//! handed out; a pod keeps its address (by uid) for as long as it exists, also across
//! agent restarts, because allocations are persisted under the data dir.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// The allocation file could not be read or written.
    #[error("ipam state {path}: {message}")]
    Persist {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// An IPv4 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub network: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`; host bits are cleared.
    pub fn parse(s: &str) -> Result<Cidr, IpamError> {
        let bad = |reason| IpamError::BadCidr {
            cidr: s.to_string(),
            reason,
        };
        let (ip, prefix) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| bad("bad prefix length"))?;
        if prefix > 30 {
            return Err(bad("prefix must be at most /30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// Whether `ip` is an assignable pod address of this range.
    pub fn is_pod_address(&self, ip: Ipv4Addr) -> bool {
        let (n, i) = (u64::from(u32::from(self.network)), u64::from(u32::from(ip)));
        i >= n + 2 && i < n + self.size() - 1
    }

    /// Assignable addresses, lowest first.
    pub fn pod_addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        let n = u64::from(u32::from(self.network));
        let end = n + self.size() - 1;
        (n + 2..end)
            .filter_map(|i| u32::try_from(i).ok())
            .map(Ipv4Addr::from)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Persisted {
    #[serde(default)]
    cidr: String,
    #[serde(default)]
    allocations: BTreeMap<String, Ipv4Addr>,
}

/// The allocator; one per agent, persisted in `<data_dir>/ipam.json`.
#[derive(Debug)]
pub struct Ipam {
    path: PathBuf,
    cidr: Option<Cidr>,
    allocations: BTreeMap<String, Ipv4Addr>,
}

impl Ipam {
    /// Opens the allocator state at `path` (empty when the file does not exist).
    pub fn open(path: &Path) -> Result<Ipam, IpamError> {
        let err = |message: String| IpamError::Persist {
            path: path.to_path_buf(),
            message,
        };
        let persisted: Persisted = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(err(e.to_string())),
        };
        let cidr = if persisted.cidr.is_empty() {
            None
        } else {
            Cidr::parse(&persisted.cidr).ok()
        };
        Ok(Ipam {
            path: path.to_path_buf(),
            cidr,
            allocations: persisted.allocations,
        })
    }

    /// Sets the node's range (from registration). Allocations outside it are dropped.
    pub fn set_cidr(&mut self, cidr: &str) -> Result<(), IpamError> {
        let c = Cidr::parse(cidr)?;
        self.allocations.retain(|_, ip| c.is_pod_address(*ip));
        self.cidr = Some(c);
        self.save()
    }

    /// The range in use.
    pub fn cidr(&self) -> Option<Cidr> {
        self.cidr
    }

    /// The pod's address: the one it already has, else the lowest free one.
    pub fn allocate(&mut self, uid: &str) -> Result<Ipv4Addr, IpamError> {
        let cidr = self.cidr.ok_or(IpamError::NoCidr)?;
        if let Some(ip) = self.allocations.get(uid) {
            return Ok(*ip);
        }
        let used: std::collections::HashSet<Ipv4Addr> =
            self.allocations.values().copied().collect();
        let ip = cidr
            .pod_addresses()
            .find(|ip| !used.contains(ip))
            .ok_or_else(|| IpamError::Exhausted(cidr.to_string()))?;
        self.allocations.insert(uid.to_string(), ip);
        self.save()?;
        Ok(ip)
    }

    /// The pod's address, if it has one.
    pub fn get(&self, uid: &str) -> Option<Ipv4Addr> {
        self.allocations.get(uid).copied()
    }

    /// Frees the pod's address.
    pub fn release(&mut self, uid: &str) -> Result<(), IpamError> {
        if self.allocations.remove(uid).is_some() {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), IpamError> {
        let p = Persisted {
            cidr: self.cidr.map(|c| c.to_string()).unwrap_or_default(),
            allocations: self.allocations.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&p).map_err(|e| IpamError::Persist {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        crate::state::write_atomic(&self.path, &bytes).map_err(|e| IpamError::Persist {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_clears_host_bits() {
        let c = Cidr::parse("127.128.1.77/24").unwrap();
        assert_eq!(c.to_string(), "127.128.1.0/24");
        assert!(Cidr::parse("10.0.0.0").is_err());
        assert!(Cidr::parse("10.0.0.0/31").is_err());
        assert!(Cidr::parse("fd00::/64").is_err());
    }

    #[test]
    fn skips_network_first_host_and_broadcast() {
        let c = Cidr::parse("10.1.2.0/24").unwrap();
        let all: Vec<_> = c.pod_addresses().collect();
        assert_eq!(all.first(), Some(&Ipv4Addr::new(10, 1, 2, 2)));
        assert_eq!(all.last(), Some(&Ipv4Addr::new(10, 1, 2, 254)));
        assert_eq!(all.len(), 253);
        assert!(!c.is_pod_address(Ipv4Addr::new(10, 1, 2, 1)));
    }

    #[test]
    fn stable_per_uid_persisted_and_released() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("ipam.json");
        let mut ipam = Ipam::open(&path).unwrap();
        assert!(matches!(ipam.allocate("a"), Err(IpamError::NoCidr)));
        ipam.set_cidr("127.128.3.0/24").unwrap();
        let a = ipam.allocate("a").unwrap();
        let b = ipam.allocate("b").unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 128, 3, 2));
        assert_eq!(b, Ipv4Addr::new(127, 128, 3, 3));
        assert_eq!(ipam.allocate("a").unwrap(), a);
        let mut reopened = Ipam::open(&path).unwrap();
        assert_eq!(reopened.allocate("b").unwrap(), b);
        reopened.release("a").unwrap();
        assert_eq!(reopened.allocate("c").unwrap(), a);
        assert_eq!(reopened.get("a"), None);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(&t.path().join("i.json")).unwrap();
        ipam.set_cidr("10.0.0.0/30").unwrap();
        ipam.allocate("a").unwrap();
        assert!(matches!(ipam.allocate("b"), Err(IpamError::Exhausted(_))));
    }
}
