//! The one reader of `/proc` for the agent, the CLI and the test harness: the fields
//! of `/proc/<pid>/stat` (state, parent, process group, session, start time), a
//! process's identity across pid reuse (pid + start time), its environment, and the
//! machine facts the node reports. Reading only: the agent signals and waits for
//! processes through its [`crate::runtime::Runtime`].

use std::collections::{BTreeMap, BTreeSet};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The fields of `/proc/<pid>/stat` Twinset uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Process id.
    pub pid: i32,
    /// State letter (R, S, D, Z, X, ...).
    pub state: char,
    /// Parent process id.
    pub ppid: i32,
    /// Process group id.
    pub pgid: i32,
    /// Session id.
    pub session: i32,
    /// Start time in clock ticks since boot (field 22): with the pid, it names a
    /// process uniquely.
    pub start_time: u64,
}

impl Stat {
    /// Exited but not reaped yet (zombie, or dead).
    pub fn zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }

    /// This process as a [`ProcId`].
    pub fn id(&self) -> ProcId {
        ProcId {
            pid: self.pid,
            start_time: self.start_time,
        }
    }
}

/// Parses the text of `/proc/<pid>/stat`. The command name may contain spaces and
/// parentheses, so fields are counted after the last `)`.
pub fn parse_stat(pid: i32, text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // `rest` starts at field 3 (state); field n is at index n - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        pid,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        session: f.get(3)?.parse().ok()?,
        start_time: f.get(22 - 3)?.parse().ok()?,
    })
}

/// Reads `/proc/<pid>/stat`; None when the process does not exist.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
}

/// Every process visible in `/proc`.
pub fn all() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// Every live (not zombie) descendant of `roots` (children, grandchildren, ...),
/// not including the roots.
pub fn descendants(roots: &[i32]) -> Vec<Stat> {
    let mut children: BTreeMap<i32, Vec<Stat>> = BTreeMap::new();
    for p in all() {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut queue: Vec<i32> = roots.to_vec();
    let mut seen: BTreeSet<i32> = roots.iter().copied().collect();
    while let Some(pid) = queue.pop() {
        for c in children.get(&pid).into_iter().flatten() {
            if seen.insert(c.pid) {
                if !c.zombie() {
                    out.push(*c);
                }
                queue.push(c.pid);
            }
        }
    }
    out
}

/// One process, identified by pid and start time, so a reused pid is never mistaken
/// for the original process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId {
    /// The process id.
    pub pid: i32,
    /// Its start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcId {
    /// The process currently running with `pid`, if any (zombies count as gone).
    pub fn of(pid: i32) -> Option<ProcId> {
        stat(pid).filter(|s| !s.zombie()).map(|s| s.id())
    }

    /// True while this very process exists and is not a zombie.
    pub fn is_alive(&self) -> bool {
        ProcId::of(self.pid).is_some_and(|p| p.start_time == self.start_time)
    }

    /// SIGKILL to the process if it is still this process (for the CLI and the test
    /// harness; the agent signals its containers through its runtime).
    pub fn kill(&self) {
        if self.is_alive() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
    }
}

/// The start time of `pid`, if it is alive (not a zombie).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let pid = i32::try_from(pid).ok()?;
    ProcId::of(pid).map(|p| p.start_time)
}

/// Whether `pid` is alive and is the process that started at `ticks`.
pub fn is_same_alive(pid: u32, ticks: u64) -> bool {
    start_ticks(pid) == Some(ticks)
}

/// The environment `pid` was started with (`/proc/<pid>/environ`), e.g. to run an
/// exec probe in a container adopted after an agent restart.
pub fn environ(pid: u32) -> Option<Vec<(String, String)>> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(parse_environ(&bytes))
}

/// The command line of `pid` (`/proc/<pid>/cmdline`; empty when unreadable).
pub fn cmdline(pid: i32) -> Vec<String> {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return Vec::new();
    };
    raw.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Parses NUL-separated `KEY=value` entries (entries without `=` are skipped).
pub fn parse_environ(bytes: &[u8]) -> Vec<(String, String)> {
    bytes
        .split(|b| *b == 0)
        .filter_map(|e| {
            let e = String::from_utf8_lossy(e);
            let (k, v) = e.split_once('=')?;
            (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// A `Key: <n> kB` line of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:` ...), in KiB.
pub fn status_kib(pid: i32, key: &str) -> Option<u64> {
    let t = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    machine::parse_meminfo(&t, key)
}

/// Machine facts from `/proc` used for the node's capacity.
pub mod machine {
    /// Number of CPUs listed in `/proc/cpuinfo` (falls back to the scheduler's view).
    pub fn cpus() -> usize {
        let n = std::fs::read_to_string("/proc/cpuinfo")
            .map(|t| t.lines().filter(|l| l.starts_with("processor")).count())
            .unwrap_or(0);
        if n > 0 {
            n
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }

    /// `MemTotal` from `/proc/meminfo`, in KiB.
    pub fn memory_kib() -> Option<u64> {
        let t = std::fs::read_to_string("/proc/meminfo").ok()?;
        parse_meminfo(&t, "MemTotal:")
    }

    /// A `Key: <n> kB` value of `/proc/meminfo`.
    pub fn parse_meminfo(text: &str, key: &str) -> Option<u64> {
        text.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next()? == key).then(|| it.next()?.parse().ok())?
        })
    }

    /// A one-line file under `/proc` or `/etc`, trimmed; empty when unreadable.
    pub fn read_trimmed(path: &str) -> String {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// `PRETTY_NAME` from `/etc/os-release`.
    pub fn os_image() -> String {
        let t = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        t.lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".to_string())
    }
}

/// The local IPv4 addresses of the sockets in a `/proc/net/{tcp,udp}` table (a
/// listening, bound or connected socket holds its address).
pub fn parse_net_locals(text: &str) -> Vec<std::net::Ipv4Addr> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let local = l.split_whitespace().nth(1)?;
            let (ip, _port) = local.split_once(':')?;
            // The address is the kernel's u32 in host byte order, printed as hex.
            let raw = u32::from_str_radix(ip, 16).ok()?;
            Some(std::net::Ipv4Addr::from(raw.to_ne_bytes()))
        })
        .collect()
}

/// The IPv4 addresses some socket in this network namespace holds (TCP and UDP).
pub fn bound_ipv4() -> BTreeSet<std::net::Ipv4Addr> {
    ["/proc/net/tcp", "/proc/net/udp"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| parse_net_locals(&t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_tables_give_the_local_addresses() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 0 0 0 0 0
   1: 0500807F:0CEA 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 0 0 0 0 0
";
        // As a little-endian machine (this one) prints them.
        assert_eq!(
            parse_net_locals(text),
            vec![
                std::net::Ipv4Addr::new(127, 0, 0, 1),
                std::net::Ipv4Addr::new(127, 128, 0, 5)
            ]
        );
        assert!(parse_net_locals("header only\n").is_empty());
        assert!(parse_net_locals("h\n 0: zz:1 x\n").is_empty());
    }

    #[test]
    fn a_socket_of_this_process_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(
            bound_ipv4().contains(&std::net::Ipv4Addr::LOCALHOST),
            "{l:?}"
        );
    }

    #[test]
    fn environ_parses_entries() {
        assert_eq!(
            parse_environ(b"PATH=/bin\0A=b=c\0junk\0\0"),
            vec![("PATH".into(), "/bin".into()), ("A".into(), "b=c".into())]
        );
        let mine = environ(std::process::id()).unwrap();
        assert!(mine.iter().any(|(k, _)| k == "PATH"));
    }

    #[test]
    fn stat_parses_names_with_spaces_and_parens() {
        let line =
            "123 (a (b) c) S 1 123 120 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(
            parse_stat(123, line),
            Some(Stat {
                pid: 123,
                state: 'S',
                ppid: 1,
                pgid: 123,
                session: 120,
                start_time: 98765
            })
        );
        let z = parse_stat(7, "7 (x) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0").unwrap();
        assert!(z.zombie());
        assert_eq!(z.start_time, 55);
        assert_eq!(parse_stat(1, "garbage"), None);
        assert_eq!(parse_stat(1, "1 (short) S 1 1"), None);
    }

    #[test]
    fn own_process_and_its_children_are_found() {
        let me = std::process::id() as i32;
        let own = stat(me).expect("own stat");
        assert_eq!(own.session, nix::unistd::getsid(None).unwrap().as_raw());
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let found = descendants(&[me]).iter().any(|p| p.pid == pid);
        let id = ProcId::of(pid).unwrap();
        assert!(id.is_alive());
        id.kill();
        child.wait().unwrap();
        assert!(found);
        assert!(!id.is_alive());
    }

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let me = std::process::id();
        let t = start_ticks(me).expect("own stat");
        assert!(is_same_alive(me, t));
        assert!(!is_same_alive(me, t + 1));
    }

    #[test]
    fn meminfo_values() {
        let t = "MemTotal:       24576000 kB\nMemAvailable:   1000 kB\n";
        assert_eq!(machine::parse_meminfo(t, "MemTotal:"), Some(24_576_000));
        assert_eq!(machine::parse_meminfo(t, "MemAvailable:"), Some(1000));
        assert!(machine::cpus() >= 1);
    }
}
