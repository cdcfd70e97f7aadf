//! The files a local cluster leaves behind: `<data-dir>/cluster.json` (server and
//! process ids, for `down`) and the client config (`~/.twinset/config`).
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The control plane's name in cluster.json.
pub const CONTROL_PLANE: &str = "control-plane";

/// `<data-dir>/cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterFile {
    /// The control plane address, `http://127.0.0.1:PORT`.
    pub server: String,
    /// The cluster's data dir.
    pub data_dir: PathBuf,
    /// Every process `up` started, control plane first.
    pub processes: Vec<ProcessEntry>,
}

/// One process of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessEntry {
    /// `control-plane`, `node1`, ...
    pub name: String,
    /// Process id, also its process group id.
    pub pid: i32,
    /// Start time from /proc (clock ticks since boot), to tell a reused pid apart.
    pub start_time: u64,
    /// Its log file.
    pub log: PathBuf,
}

/// `$HOME/.twinset/cluster`.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?;
    Ok(PathBuf::from(home).join(".twinset").join("cluster"))
}

/// Path of cluster.json in `data_dir`.
pub fn cluster_file_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster.json")
}

/// Writes `contents` to `path` (its directory made when missing) through a temporary
/// file created with `mode` and a rename.
pub fn write_atomic(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    twinset_proto::files::write_atomic(path, contents, mode)
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes cluster.json.
pub fn write_cluster_file(file: &ClusterFile) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(file)?;
    write_atomic(
        &cluster_file_path(&file.data_dir),
        &format!("{text}\n"),
        0o644,
    )
}

/// Reads cluster.json; None when there is none.
pub fn read_cluster_file(data_dir: &Path) -> anyhow::Result<Option<ClusterFile>> {
    let path = cluster_file_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the client config (a kubeconfig with the admin certificate, mode 0600) so that
/// client verbs find this cluster; returns its path.
pub fn write_client_config(target: &crate::client::Target) -> anyhow::Result<PathBuf> {
    let path = crate::client::config_path(None).context("HOME is not set")?;
    let text = twinset_proto::kubeconfig::Kubeconfig {
        server: target.server.clone(),
        credentials: target.credentials.clone(),
    }
    .to_yaml("twinset");
    // It holds the admin's key.
    write_atomic(&path, &text, 0o600)?;
    Ok(path)
}

/// Removes the client config if it still points at `server`.
pub fn remove_client_config_for(server: &str) {
    let Some(path) = crate::client::config_path(None) else {
        return;
    };
    let Ok(k) = crate::client::read_kubeconfig(&path) else {
        return;
    };
    if crate::client::https(&k.server) == crate::client::https(server) {
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "removing client config");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_file_round_trips() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = ClusterFile {
            server: "http://127.0.0.1:6443".into(),
            data_dir: dir.path().to_path_buf(),
            processes: vec![ProcessEntry {
                name: CONTROL_PLANE.into(),
                pid: 42,
                start_time: 7,
                log: dir.path().join("logs/control-plane.log"),
            }],
        };
        write_cluster_file(&file)?;
        assert_eq!(read_cluster_file(dir.path())?, Some(file));
        assert_eq!(read_cluster_file(&dir.path().join("none"))?, None);
        Ok(())
    }
}
