//! The agent's journal: what it runs (each container's pid and process start time, so
//! that a restarted agent adopts the processes that are still alive instead of
//! starting them again) and the pod IPs it handed out, in one append-only file per
//! agent, `<data_dir>/agent.journal`.
//!
//! Each change is one JSON line appended with one `write(2)`: no temporary files,
//! renames or directories per pod. A torn last line (the agent died mid-write) is
//! ignored and cut off when the journal is opened. When the file holds many more
//! lines than live entries it is compacted: the live state is written to a new file
//! which replaces the old one by a rename, so a crash leaves one or the other whole.
//! Appends are not fsynced: they survive the agent's crash (the page cache keeps them),
//! and a machine crash takes the pods' processes with it anyway.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The journal's file name under the data dir.
pub const JOURNAL_FILE: &str = "agent.journal";
/// Compaction starts once the file has this many lines ...
const COMPACT_MIN_LINES: usize = 1024;
/// ... and this many times more lines than live entries.
const COMPACT_FACTOR: usize = 4;

/// Errors reading or writing the journal.
#[derive(Debug, thiserror::Error)]
#[error("agent journal {path}: {message}")]
pub struct StateError {
    /// The file.
    pub path: PathBuf,
    /// What failed.
    pub message: String,
}

/// One running container as recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Its pid (and process group id).
    pub pid: u32,
    /// Start time of that pid in clock ticks (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its restart count at that time.
    pub restart_count: i32,
}

/// One pod as recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// The pod's uid.
    pub uid: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Running containers by name.
    #[serde(default)]
    pub containers: BTreeMap<String, ContainerRecord>,
}

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Entry {
    /// A pod's record (replaces an earlier one of the same uid).
    Pod { record: PodRecord },
    /// The pod is gone.
    Forget { uid: String },
    /// The node's pod range.
    Cidr { cidr: String },
    /// A pod's IP.
    Ip { uid: String, ip: Ipv4Addr },
    /// The pod's IP is free again.
    Release { uid: String },
}

/// What the journal says now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Recorded pods by uid.
    pub pods: BTreeMap<String, PodRecord>,
    /// The node's pod range, if one was recorded.
    pub cidr: Option<String>,
    /// Pod IPs by pod uid.
    pub ips: BTreeMap<String, Ipv4Addr>,
}

impl Snapshot {
    fn apply(&mut self, e: Entry) {
        match e {
            Entry::Pod { record } => {
                self.pods.insert(record.uid.clone(), record);
            }
            Entry::Forget { uid } => {
                self.pods.remove(&uid);
            }
            Entry::Cidr { cidr } => self.cidr = Some(cidr),
            Entry::Ip { uid, ip } => {
                self.ips.insert(uid, ip);
            }
            Entry::Release { uid } => {
                self.ips.remove(&uid);
            }
        }
    }

    fn entries(&self) -> Vec<Entry> {
        let cidr = self.cidr.iter().map(|c| Entry::Cidr { cidr: c.clone() });
        let ips = self.ips.iter().map(|(uid, ip)| Entry::Ip {
            uid: uid.clone(),
            ip: *ip,
        });
        let pods = self.pods.values().map(|r| Entry::Pod { record: r.clone() });
        cidr.chain(ips).chain(pods).collect()
    }

    fn live(&self) -> usize {
        self.pods.len() + self.ips.len() + 1
    }
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: File,
    state: Snapshot,
    lines: usize,
}

/// The agent's journal (cheap to clone: every clone appends to the same file).
#[derive(Clone, Debug)]
pub struct Journal {
    inner: Arc<Mutex<Inner>>,
}

/// The pod-record side of the journal, under its former name.
pub type StateDir = Journal;

fn encode(e: &Entry) -> Vec<u8> {
    let mut line = serde_json::to_vec(e).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Parses journal text: complete lines only (a torn last line is ignored). Returns
/// the state, the number of lines and the length of the valid prefix.
fn replay(bytes: &[u8], path: &Path) -> (Snapshot, usize, usize) {
    let mut state = Snapshot::default();
    let mut lines = 0;
    let mut valid = 0;
    let mut start = 0;
    while let Some(nl) = bytes[start..].iter().position(|b| *b == b'\n') {
        let line = &bytes[start..start + nl];
        match serde_json::from_slice::<Entry>(line) {
            Ok(e) => state.apply(e),
            Err(e) => {
                tracing::warn!(path = %path.display(), line = lines + 1, error = %e, "skipping an unreadable journal record")
            }
        }
        lines += 1;
        start += nl + 1;
        valid = start;
    }
    if valid < bytes.len() {
        tracing::warn!(path = %path.display(), bytes = bytes.len() - valid, "ignoring a torn last journal record");
    }
    (state, lines, valid)
}

/// Writes `entries` to a new file beside `path` and renames it over `path`.
fn write_compacted(path: &Path, entries: &[Entry]) -> std::io::Result<File> {
    let tmp = path.with_extension("compact");
    {
        let mut f = File::create(&tmp)?;
        let bytes: Vec<u8> = entries.iter().flat_map(encode).collect();
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    OpenOptions::new().append(true).open(path)
}

/// The state of the files earlier agents kept (`ipam.json`, `state/<uid>.json`),
/// read once when there is no journal yet; the files are removed once it exists.
fn legacy(data_dir: &Path) -> (Snapshot, Vec<PathBuf>) {
    #[derive(Deserialize)]
    struct Ipam {
        #[serde(default)]
        cidr: String,
        #[serde(default)]
        allocations: BTreeMap<String, Ipv4Addr>,
    }
    let mut snap = Snapshot::default();
    let mut old = Vec::new();
    let ipam = data_dir.join("ipam.json");
    if let Some(p) = std::fs::read(&ipam)
        .ok()
        .and_then(|b| serde_json::from_slice::<Ipam>(&b).ok())
    {
        snap.cidr = Some(p.cidr).filter(|c| !c.is_empty());
        snap.ips = p.allocations;
        old.push(ipam);
    }
    let dir = data_dir.join("state");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let p = e.path();
            if let Some(r) = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<PodRecord>(&b).ok())
            {
                snap.pods.insert(r.uid.clone(), r);
            }
            old.push(p);
        }
        old.push(dir);
    }
    (snap, old)
}

/// Reads the journal of the agent whose data dir is `data_dir` without changing it
/// (for tools and tests; a running agent may be appending).
pub fn read(data_dir: &Path) -> Result<Snapshot, StateError> {
    let path = data_dir.join(JOURNAL_FILE);
    let bytes = std::fs::read(&path).map_err(|e| StateError {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok(replay(&bytes, &path).0)
}

impl Journal {
    /// Opens (creating) the journal of the agent whose data dir is `data_dir`, cuts off
    /// a torn last record, and compacts it.
    pub fn open(data_dir: &Path) -> Result<Journal, StateError> {
        let path = data_dir.join(JOURNAL_FILE);
        let err = |e: std::io::Error| StateError {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut bytes = Vec::new();
        let (state, old) = match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(err)?;
                (replay(&bytes, &path).0, Vec::new())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => legacy(data_dir),
            Err(e) => return Err(err(e)),
        };
        let entries = state.entries();
        let file = write_compacted(&path, &entries).map_err(err)?;
        for p in old {
            let _ = if p.is_dir() {
                std::fs::remove_dir(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
        Ok(Journal {
            inner: Arc::new(Mutex::new(Inner {
                path,
                file,
                state,
                lines: entries.len(),
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one change (and compacts when the file has grown enough).
    fn append(&self, e: Entry) -> Result<(), StateError> {
        let mut inner = self.lock();
        let line = encode(&e);
        inner.state.apply(e);
        let written = inner.file.write_all(&line);
        if let Err(e) = written {
            return Err(StateError {
                path: inner.path.clone(),
                message: e.to_string(),
            });
        }
        inner.lines += 1;
        if inner.lines >= COMPACT_MIN_LINES && inner.lines >= COMPACT_FACTOR * inner.state.live() {
            let entries = inner.state.entries();
            let path = inner.path.clone();
            match crate::blocking::file_work(|| write_compacted(&path, &entries)) {
                Ok(f) => {
                    inner.file = f;
                    inner.lines = entries.len();
                }
                Err(e) => {
                    tracing::warn!(path = %inner.path.display(), error = %e, "journal compaction failed; appending on")
                }
            }
        }
        Ok(())
    }

    /// What the journal holds now.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().state.clone()
    }

    /// Every recorded pod.
    pub fn load_all(&self) -> Vec<PodRecord> {
        self.lock().state.pods.values().cloned().collect()
    }

    /// The uid of a recorded pod that satisfies `keep`, tested in place (no copies).
    pub fn find_uid(&self, keep: impl Fn(&PodRecord) -> bool) -> Option<String> {
        self.lock()
            .state
            .pods
            .values()
            .find(|r| keep(r))
            .map(|r| r.uid.clone())
    }

    /// Records a pod.
    pub fn save(&self, record: &PodRecord) -> Result<(), StateError> {
        self.append(Entry::Pod {
            record: record.clone(),
        })
    }

    /// Forgets a pod.
    pub fn remove(&self, uid: &str) -> Result<(), StateError> {
        if !self.lock().state.pods.contains_key(uid) {
            return Ok(());
        }
        self.append(Entry::Forget { uid: uid.into() })
    }

    /// Records the node's pod range.
    pub fn set_cidr(&self, cidr: &str) -> Result<(), StateError> {
        if self.lock().state.cidr.as_deref() == Some(cidr) {
            return Ok(());
        }
        self.append(Entry::Cidr { cidr: cidr.into() })
    }

    /// Records a pod's IP.
    pub fn set_ip(&self, uid: &str, ip: Ipv4Addr) -> Result<(), StateError> {
        self.append(Entry::Ip {
            uid: uid.into(),
            ip,
        })
    }

    /// Frees a pod's IP.
    pub fn release_ip(&self, uid: &str) -> Result<(), StateError> {
        if !self.lock().state.ips.contains_key(uid) {
            return Ok(());
        }
        self.append(Entry::Release { uid: uid.into() })
    }

    /// Lines in the file now (for tests of compaction).
    pub fn lines(&self) -> usize {
        self.lock().lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(uid: &str, pid: u32) -> PodRecord {
        let mut r = PodRecord {
            uid: uid.into(),
            namespace: "ns".into(),
            name: "p".into(),
            ..Default::default()
        };
        r.containers.insert(
            "c".into(),
            ContainerRecord {
                pid,
                start_ticks: 7,
                started_at: "2026-01-01T00:00:00Z".into(),
                restart_count: 1,
            },
        );
        r
    }

    #[test]
    fn save_load_remove_across_reopen() {
        let t = tempfile::tempdir().unwrap();
        let j = Journal::open(t.path()).unwrap();
        j.save(&record("u1", 1)).unwrap();
        j.save(&record("u1", 42)).unwrap();
        j.save(&record("u2", 5)).unwrap();
        j.set_cidr("10.0.0.0/24").unwrap();
        j.set_ip("u1", Ipv4Addr::new(10, 0, 0, 2)).unwrap();
        j.remove("u2").unwrap();
        j.remove("u2").unwrap();
        assert_eq!(j.load_all(), vec![record("u1", 42)]);
        drop(j);
        let j = Journal::open(t.path()).unwrap();
        assert_eq!(j.load_all(), vec![record("u1", 42)]);
        let s = j.snapshot();
        assert_eq!(s.cidr.as_deref(), Some("10.0.0.0/24"));
        assert_eq!(s.ips.get("u1"), Some(&Ipv4Addr::new(10, 0, 0, 2)));
        // Opening compacts: one line per live entry.
        assert_eq!(j.lines(), 3);
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_cut() {
        let t = tempfile::tempdir().unwrap();
        let j = Journal::open(t.path()).unwrap();
        j.save(&record("u1", 1)).unwrap();
        drop(j);
        let path = t.path().join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"op":"pod","record":{"uid":"u2","names"#)
            .unwrap();
        drop(f);
        let j = Journal::open(t.path()).unwrap();
        assert_eq!(j.load_all(), vec![record("u1", 1)]);
        j.save(&record("u3", 3)).unwrap();
        drop(j);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'));
        assert!(!text.contains("u2"));
        assert_eq!(Journal::open(t.path()).unwrap().load_all().len(), 2);
    }

    #[test]
    fn compacts_when_mostly_dead() {
        let t = tempfile::tempdir().unwrap();
        let j = Journal::open(t.path()).unwrap();
        for i in 0..3000u32 {
            let uid = format!("u{}", i % 10);
            j.save(&record(&uid, i)).unwrap();
            j.set_ip(&uid, Ipv4Addr::from(i)).unwrap();
            j.release_ip(&uid).unwrap();
            j.remove(&uid).unwrap();
        }
        assert!(j.lines() < COMPACT_MIN_LINES, "{} lines", j.lines());
        assert!(j.load_all().is_empty());
        let size = std::fs::metadata(t.path().join(JOURNAL_FILE))
            .unwrap()
            .len();
        assert!(size < 200 * 1024, "{size} bytes");
    }

    #[test]
    fn imports_the_files_of_earlier_agents() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("ipam.json"),
            r#"{"cidr":"10.1.0.0/24","allocations":{"u1":"10.1.0.2"}}"#,
        )
        .unwrap();
        std::fs::create_dir(t.path().join("state")).unwrap();
        std::fs::write(
            t.path().join("state/u1.json"),
            serde_json::to_vec(&record("u1", 9)).unwrap(),
        )
        .unwrap();
        let j = Journal::open(t.path()).unwrap();
        assert_eq!(j.load_all(), vec![record("u1", 9)]);
        assert_eq!(j.snapshot().cidr.as_deref(), Some("10.1.0.0/24"));
        assert!(!t.path().join("ipam.json").exists());
        assert!(!t.path().join("state").exists());
    }
}
