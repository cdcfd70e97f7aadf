//! The cluster DNS server as a test sees it: a unique loopback address for each test
//! cluster's `--dns-listen`, and queries through `dig` (Debian's dnsutils).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::time::Duration;

use crate::cluster::run_command_with;
use crate::net::free_port;

/// The first two bytes of every test DNS address: `127.54.X.Y`. `twinset up` takes its
/// default DNS address from 127.53.0.0/16 (`127.53.H.L` from its API port), and pods
/// take theirs from 127.128.0.0/9 (test clusters: 127.64.0.0/10), so a test cluster's
/// server never meets either.
pub const TEST_DNS_PREFIX: [u8; 2] = [127, 54];

/// How long one `dig` may take (it retries nothing: `+tries=1`).
const DIG_TIMEOUT: Duration = Duration::from_secs(10);

/// True when this process may bind port 53 (resolv.conf cannot name another port, so
/// the agents only point pods at the server when it listens there).
pub fn can_bind_port_53() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A loopback address for one test cluster's DNS server: `127.54.X.Y` with X and Y taken
/// from a free port number (so concurrent tests get different addresses), on port 53
/// when running as root, else on a free port of that address. Both UDP and TCP were
/// free there a moment ago.
pub fn pick_listen_addr() -> SocketAddr {
    for _ in 0..200 {
        let p = free_port();
        let [hi, lo] = p.to_be_bytes();
        if lo == 0 || lo == 255 {
            continue;
        }
        let [a, b] = TEST_DNS_PREFIX;
        let ip = Ipv4Addr::new(a, b, hi, lo);
        let port = if can_bind_port_53() {
            53
        } else {
            match UdpSocket::bind((ip, 0)).and_then(|s| s.local_addr()) {
                Ok(a) => a.port(),
                Err(_) => continue,
            }
        };
        let addr = SocketAddr::from((ip, port));
        let udp = UdpSocket::bind(addr);
        let tcp = TcpListener::bind(addr);
        if udp.is_ok() && tcp.is_ok() {
            return addr;
        }
    }
    panic!("no free loopback address 127.54.x.y for a test DNS server");
}

/// What `dig` answered for one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response code from the header: NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...
    pub status: String,
    /// The answer section's records of the asked type (their data, e.g. IPs), sorted.
    pub records: Vec<String>,
    /// dig's whole output, for failure messages.
    pub raw: String,
}

/// Asks `server` for `name`'s records of type `rtype` (A, AAAA, SRV, ...) over UDP,
/// or over TCP when `tcp`. `Err` when dig cannot run or gets no answer at all.
pub fn query(server: SocketAddr, name: &str, rtype: &str, tcp: bool) -> Result<Answer, String> {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+time=2", "+tries=1", "+noall", "+comments", "+answer"]);
    if tcp {
        cmd.arg("+tcp");
    }
    cmd.args([name, rtype]);
    let line = format!(
        "dig @{} -p {} {}{name} {rtype}",
        server.ip(),
        server.port(),
        if tcp { "+tcp " } else { "" }
    );
    if which("dig").is_none() {
        panic!("dig not found: install Debian's dnsutils (apt-get install dnsutils)");
    }
    let out = run_command_with(cmd, &line, None, DIG_TIMEOUT);
    let raw = format!("{}{}", out.stdout, out.stderr);
    if !out.success() {
        return Err(format!("`{line}` failed: {raw}"));
    }
    let status = raw
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("status: ")?;
            Some(rest.split(',').next()?.trim().to_string())
        })
        .ok_or_else(|| format!("`{line}`: no response header in {raw:?}"))?;
    let mut records: Vec<String> = raw
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| {
            // NAME TTL CLASS TYPE DATA...
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 5 && f[3].eq_ignore_ascii_case(rtype)).then(|| f[4..].join(" "))
        })
        .collect();
    records.sort();
    Ok(Answer {
        status,
        records,
        raw,
    })
}

/// The A records of `name` (sorted IPs; empty for NXDOMAIN or no data).
pub fn a_records(server: SocketAddr, name: &str) -> Result<Vec<String>, String> {
    Ok(query(server, name, "A", false)?.records)
}

/// The first directory of PATH holding an executable `prog`.
pub fn which(prog: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}
