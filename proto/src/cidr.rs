//! The one IPv4 CIDR type both sides use: the control plane cuts the cluster range
//! into per-node blocks with it, and the agent hands out pod addresses from its
//! node's block. Built on `ipnet`; host bits are cleared on parse.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

/// A string that is not an IPv4 `ADDRESS/PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {input:?}: expected IPv4 ADDRESS/PREFIX, e.g. 10.0.0.0/24")]
pub struct CidrError {
    /// The text as given.
    pub input: String,
}

/// An IPv4 network (`a.b.c.d/n`, host bits cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(Ipv4Net);

impl Cidr {
    /// Parses `a.b.c.d/n` (surrounding blanks allowed); host bits are cleared.
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        s.trim()
            .parse::<Ipv4Net>()
            .map(|n| Cidr(n.trunc()))
            .map_err(|_| CidrError {
                input: s.to_string(),
            })
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.0.network()
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    /// How many addresses the network spans.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix()))
    }

    /// Whether `ip` lies in the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.0.contains(&ip)
    }

    /// The network cut into `/prefix` blocks, lowest first (none when `prefix` is
    /// shorter than this network's or longer than 32).
    pub fn subnets(&self, prefix: u8) -> impl Iterator<Item = Cidr> {
        self.0.subnets(prefix).into_iter().flatten().map(Cidr)
    }

    /// Whether `ip` may be given to a pod: in the network, and neither the network
    /// address, nor the first host (`.1`, the node's own by convention), nor the
    /// broadcast address.
    pub fn is_pod_address(&self, ip: Ipv4Addr) -> bool {
        let (n, i) = (
            u64::from(u32::from(self.network())),
            u64::from(u32::from(ip)),
        );
        i >= n + 2 && i < n + self.size() - 1
    }

    /// The addresses [`Cidr::is_pod_address`] allows, lowest first.
    pub fn pod_addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        let n = u64::from(u32::from(self.network()));
        let end = n + self.size() - 1;
        (n + 2..end)
            .filter_map(|i| u32::try_from(i).ok())
            .map(Ipv4Addr::from)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        Cidr::parse(s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_clears_host_bits() {
        let c = Cidr::parse(" 127.128.1.77/24").unwrap();
        assert_eq!(c.to_string(), "127.128.1.0/24");
        assert_eq!(c.network(), Ipv4Addr::new(127, 128, 1, 0));
        assert_eq!(c.prefix(), 24);
        assert_eq!(c.size(), 256);
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().size(), 1 << 32);
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "fd00::/64",
            "nonsense",
            "10.0.0/8",
        ] {
            let e = Cidr::parse(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains("expected IPv4 ADDRESS/PREFIX"));
        }
    }

    #[test]
    fn subnets_lowest_first() {
        let c = Cidr::parse("10.0.0.0/22").unwrap();
        let s: Vec<String> = c.subnets(24).map(|s| s.to_string()).collect();
        assert_eq!(
            s,
            ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]
        );
        assert_eq!(c.subnets(21).count(), 0);
        assert_eq!(c.subnets(33).count(), 0);
        assert!(c.contains(Ipv4Addr::new(10, 0, 3, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 4, 0)));
    }

    #[test]
    fn pod_addresses_skip_network_first_host_and_broadcast() {
        let c = Cidr::parse("10.1.2.0/24").unwrap();
        let all: Vec<_> = c.pod_addresses().collect();
        assert_eq!(all.first(), Some(&Ipv4Addr::new(10, 1, 2, 2)));
        assert_eq!(all.last(), Some(&Ipv4Addr::new(10, 1, 2, 254)));
        assert_eq!(all.len(), 253);
        assert!(!c.is_pod_address(Ipv4Addr::new(10, 1, 2, 1)));
        assert!(!c.is_pod_address(Ipv4Addr::new(10, 1, 2, 255)));
        assert!(!c.is_pod_address(Ipv4Addr::new(10, 1, 3, 2)));
        assert!(c.is_pod_address(Ipv4Addr::new(10, 1, 2, 2)));
        let last = Cidr::parse("255.255.255.0/24").unwrap();
        assert_eq!(last.pod_addresses().count(), 253);
    }
}
