//! Small network helpers: free loopback ports and IPv4 CIDR membership.

use std::net::{Ipv4Addr, TcpListener};

/// A loopback port that was free a moment ago (bind to port 0, read it, release it).
/// Only for commands that need a fixed port (`twinset up --port`); the harness's
/// own control planes bind port 0 themselves and report the address.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// True when `ip` (dotted IPv4) lies inside `cidr` (`a.b.c.d/len`).
pub fn ip_in_cidr(ip: &str, cidr: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(ip), Ok(net), Ok(len)) = (
        ip.parse::<Ipv4Addr>(),
        net.parse::<Ipv4Addr>(),
        len.parse::<u32>(),
    ) else {
        return false;
    };
    if len > 32 {
        return false;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (u32::from(ip) & mask) == (u32::from(net) & mask)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cidr_membership() {
        assert!(super::ip_in_cidr("127.128.3.2", "127.128.3.0/24"));
        assert!(!super::ip_in_cidr("127.128.4.2", "127.128.3.0/24"));
        assert!(super::ip_in_cidr("127.200.0.1", "127.128.0.0/9"));
        assert!(!super::ip_in_cidr("x", "127.128.0.0/9"));
    }
}
