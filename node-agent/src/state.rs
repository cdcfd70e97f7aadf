//! What the agent runs, persisted under `<data_dir>/state/<pod-uid>.json`: each
//! container's pid and process start time, so that a restarted agent adopts the
//! processes that are still alive instead of starting them again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors reading or writing state files.
#[derive(Debug, thiserror::Error)]
#[error("agent state {path}: {message}")]
pub struct StateError {
    /// The file or directory.
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

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash never
/// leaves a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
    }
    std::fs::rename(&tmp, path)
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating) `dir`.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| StateError {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    fn file(&self, uid: &str) -> PathBuf {
        self.dir.join(format!("{uid}.json"))
    }

    /// Every recorded pod; unreadable files are logged and skipped.
    pub fn load_all(&self) -> Vec<PodRecord> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<PodRecord>(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "skipping unreadable pod state")
                }
            }
        }
        out
    }

    /// Records a pod.
    pub fn save(&self, record: &PodRecord) -> Result<(), StateError> {
        let path = self.file(&record.uid);
        let err = |message: String| StateError {
            path: path.clone(),
            message,
        };
        let bytes = serde_json::to_vec(record).map_err(|e| err(e.to_string()))?;
        write_atomic(&path, &bytes).map_err(|e| err(e.to_string()))
    }

    /// Forgets a pod.
    pub fn remove(&self, uid: &str) -> Result<(), StateError> {
        let path = self.file(uid);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError {
                path,
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_remove() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(&t.path().join("state")).unwrap();
        let mut r = PodRecord {
            uid: "u1".into(),
            namespace: "ns".into(),
            name: "p".into(),
            ..Default::default()
        };
        r.containers.insert(
            "c".into(),
            ContainerRecord {
                pid: 42,
                start_ticks: 7,
                started_at: "2026-01-01T00:00:00Z".into(),
                restart_count: 1,
            },
        );
        s.save(&r).unwrap();
        std::fs::write(t.path().join("state/broken.json"), b"{").unwrap();
        assert_eq!(s.load_all(), vec![r]);
        s.remove("u1").unwrap();
        s.remove("u1").unwrap();
        assert!(s.load_all().is_empty());
    }
}
