//! What the agent reads about processes from `/proc`, and how it waits for a process
//! that is not its child (one adopted after an agent restart).

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// How often liveness is polled when pidfds are not available.
const POLL: Duration = Duration::from_millis(500);

/// The process start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot)
/// and whether the process is a zombie. Together with the pid it identifies a process
/// across pid reuse.
pub fn stat(pid: u32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/<pid>/stat`: (start ticks, zombie). The command name may contain
/// spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<(u64, bool)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    let state = *fields.first()?;
    let start = fields.get(22 - 3)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

/// The start time of `pid`, if it is alive (not a zombie).
pub fn start_ticks(pid: u32) -> Option<u64> {
    match stat(pid) {
        Some((t, false)) => Some(t),
        _ => None,
    }
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

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    let fd = i32::try_from(fd).ok()?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Resolves once the process `pid` that started at `ticks` has exited. Uses a pidfd
/// (readable on exit) when the kernel has them, else polls `/proc`.
pub async fn wait_gone(pid: u32, ticks: u64) {
    if let Some(fd) = pidfd_open(pid) {
        // The pid may have been reused between the check and pidfd_open.
        if !is_same_alive(pid, ticks) {
            return;
        }
        // SAFETY: the OwnedFd is moved into the AsyncFd, which owns it (and keeps it
        // open, unchanged) for its whole lifetime.
        let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
        if let Ok(afd) = registered {
            let _ = afd.readable().await;
            return;
        }
    }
    while is_same_alive(pid, ticks) {
        tokio::time::sleep(POLL).await;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
            "123 (a (b) c) S 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(line), Some((98765, false)));
        let z = "7 (x) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0";
        assert_eq!(parse_stat(z), Some((55, true)));
        assert_eq!(parse_stat("garbage"), None);
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

    #[tokio::test]
    async fn wait_gone_returns_when_a_process_exits() {
        let mut child = tokio::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let ticks = start_ticks(pid).unwrap();
        // Reap in the background so the process does not stay a zombie.
        let reaper = tokio::spawn(async move { child.wait().await });
        tokio::time::timeout(Duration::from_secs(10), wait_gone(pid, ticks))
            .await
            .unwrap();
        reaper.await.unwrap().unwrap();
    }
}
