//! Pod volumes on the node.
//!
//! - `persistentVolumeClaim`: `<data dir>/volumes/<namespace>/<claim>/`, created before
//!   the pod starts and kept across container restarts, pod recreation (same claim,
//!   new uid), scale-down and agent restarts. It goes only when the control plane says
//!   the claim is gone ([`Claims::delete`], [`Claims::retain`]); a claim still used by
//!   a pod on this node is removed once its last pod's processes are gone.
//! - `emptyDir`: `<pod dir>/volumes/<name>/`, removed with the pod.
//! - `hostPath`: the path as is (created as a directory when missing, unless its
//!   `type` asks for an existing one).
//!
//! [`mounts_for`] turns a container's volumeMounts into [`PlannedMount`]s (pure), and
//! [`mount_env`] gives their paths in the environment, which is how a container finds
//! its volumes when the agent cannot isolate it (see the variables' docs there).

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use twinset_proto::v1::{Container, Pod};

/// The folder, under the volumes root, where claim folders wait for removal.
const DELETING: &str = ".deleting";

/// Errors preparing a pod's volumes.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A volumeMount names a volume the pod does not declare.
    #[error("volumeMount {mount_path}: the pod has no volume named {name:?}")]
    UnknownVolume {
        /// The volume name.
        name: String,
        /// Where it was to be mounted.
        mount_path: String,
    },
    /// The volume has no source this agent supports.
    #[error(
        "volume {0:?}: only persistentVolumeClaim, emptyDir and hostPath volumes are supported"
    )]
    Unsupported(String),
    /// A name or path in the spec cannot be used safely.
    #[error("volume {volume:?}: {message}")]
    Invalid {
        /// The volume name.
        volume: String,
        /// What is wrong.
        message: String,
    },
    /// A hostPath of type Directory or File does not exist (or is the wrong kind).
    #[error("volume {volume:?}: hostPath {path} is not an existing {kind}")]
    HostPathMissing {
        /// The volume name.
        volume: String,
        /// The path.
        path: PathBuf,
        /// "directory" or "file".
        kind: &'static str,
    },
    /// A volume directory could not be created.
    #[error("volume {volume:?}: cannot create {path}: {source}")]
    Io {
        /// The volume name.
        volume: String,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A claim, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClaimKey {
    /// The claim's namespace.
    pub namespace: String,
    /// The claim's name.
    pub name: String,
}

impl ClaimKey {
    /// A key, if both parts are valid Kubernetes names (a label and a subdomain), so
    /// that they are safe as path components.
    pub fn new(namespace: &str, name: &str) -> Option<ClaimKey> {
        (twinset_proto::validate::is_dns1123_label(namespace)
            && twinset_proto::validate::is_dns1123_subdomain(name))
        .then(|| ClaimKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// Parses `namespace/name` (the form the assignment stream uses).
    pub fn parse(s: &str) -> Option<ClaimKey> {
        let (ns, name) = s.split_once('/')?;
        ClaimKey::new(ns, name)
    }
}

impl std::fmt::Display for ClaimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `<data dir>/volumes`, the root of the claims' folders.
pub fn claims_root(data_dir: &Path) -> PathBuf {
    data_dir.join("volumes")
}

/// `<data dir>/volumes/<namespace>/<claim>`.
pub fn claim_dir(data_dir: &Path, key: &ClaimKey) -> PathBuf {
    claims_root(data_dir).join(&key.namespace).join(&key.name)
}

/// `<pod dir>/volumes/<name>`, an emptyDir.
pub fn empty_dir(pod_dir: &Path, volume: &str) -> PathBuf {
    pod_dir.join("volumes").join(volume)
}

/// The claims a pod's volumes refer to (valid names only; an invalid one is reported
/// when its container starts).
pub fn pod_claims(pod: &Pod) -> BTreeSet<ClaimKey> {
    let ns = pod
        .metadata
        .as_ref()
        .map(|m| m.namespace.as_str())
        .unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| &s.volumes)
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .filter_map(|c| ClaimKey::new(ns, &c.claim_name))
        .collect()
}

/// What backs a planned mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// A claim's folder.
    Claim(ClaimKey),
    /// The pod's emptyDir folder.
    EmptyDir,
    /// A path on the node; `kind` is the hostPath `type`.
    HostPath {
        /// `""`, `Directory`, `DirectoryOrCreate`, `File`, `FileOrCreate`, ...
        kind: String,
    },
}

/// One volumeMount of a container, resolved to a path on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedMount {
    /// The volume's name.
    pub volume: String,
    /// The volume's folder (or file) on the node.
    pub volume_path: PathBuf,
    /// What is mounted: `volume_path`, or `volume_path/<subPath>`.
    pub source: PathBuf,
    /// `mountPath`.
    pub target: PathBuf,
    /// Mounted read-only (the mount's or the claim source's readOnly).
    pub read_only: bool,
    /// What backs it.
    pub backing: Backing,
}

fn invalid(volume: &str, message: String) -> VolumeError {
    VolumeError::Invalid {
        volume: volume.to_string(),
        message,
    }
}

fn is_plain_relative(p: &Path) -> bool {
    p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Resolves the container's volumeMounts against the pod's volumes.
pub fn mounts_for(
    pod: &Pod,
    container: &Container,
    data_dir: &Path,
    pod_dir: &Path,
) -> Result<Vec<PlannedMount>, VolumeError> {
    let ns = pod
        .metadata
        .as_ref()
        .map(|m| m.namespace.as_str())
        .unwrap_or_default();
    let volumes = pod
        .spec
        .as_ref()
        .map(|s| s.volumes.as_slice())
        .unwrap_or(&[]);
    let mut out = Vec::with_capacity(container.volume_mounts.len());
    for vm in &container.volume_mounts {
        let Some(v) = volumes.iter().find(|v| v.name == vm.name) else {
            return Err(VolumeError::UnknownVolume {
                name: vm.name.clone(),
                mount_path: vm.mount_path.clone(),
            });
        };
        let target = PathBuf::from(&vm.mount_path);
        if !target.is_absolute() || target.components().any(|c| c == Component::ParentDir) {
            return Err(invalid(
                &v.name,
                format!(
                    "mountPath {:?} must be an absolute path without '..'",
                    vm.mount_path
                ),
            ));
        }
        let (volume_path, backing, source_ro) = if let Some(c) = &v.persistent_volume_claim {
            let key = ClaimKey::new(ns, &c.claim_name).ok_or_else(|| {
                invalid(&v.name, format!("invalid claim name {:?}", c.claim_name))
            })?;
            (claim_dir(data_dir, &key), Backing::Claim(key), c.read_only)
        } else if v.empty_dir.is_some() {
            if !is_plain_relative(Path::new(&v.name)) || v.name.is_empty() {
                return Err(invalid(&v.name, "invalid volume name".into()));
            }
            (empty_dir(pod_dir, &v.name), Backing::EmptyDir, false)
        } else if let Some(h) = &v.host_path {
            let p = PathBuf::from(&h.path);
            if !p.is_absolute() {
                return Err(invalid(
                    &v.name,
                    format!("hostPath {:?} must be absolute", h.path),
                ));
            }
            let kind = h.r#type.clone();
            (p, Backing::HostPath { kind }, false)
        } else {
            return Err(VolumeError::Unsupported(v.name.clone()));
        };
        let source = if vm.sub_path.is_empty() {
            volume_path.clone()
        } else {
            let sp = Path::new(&vm.sub_path);
            if !is_plain_relative(sp) {
                return Err(invalid(
                    &v.name,
                    format!(
                        "subPath {:?} must be a relative path without '..'",
                        vm.sub_path
                    ),
                ));
            }
            volume_path.join(sp)
        };
        out.push(PlannedMount {
            volume: v.name.clone(),
            volume_path,
            source,
            target,
            read_only: vm.read_only || source_ro,
            backing,
        });
    }
    Ok(out)
}

fn create_dir(volume: &str, path: &Path) -> Result<(), VolumeError> {
    std::fs::create_dir_all(path).map_err(|source| VolumeError::Io {
        volume: volume.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

/// Makes sure every planned mount's source exists: claim and emptyDir folders (and
/// subPath folders) are created; a hostPath is created as a directory when missing
/// and its type allows it (`""`, `DirectoryOrCreate`; `FileOrCreate` makes an empty
/// file), else it must exist. Runs off the async worker ([`crate::blocking`]).
pub fn prepare(mounts: &[PlannedMount]) -> Result<(), VolumeError> {
    crate::blocking::file_work(|| prepare_now(mounts))
}

fn prepare_now(mounts: &[PlannedMount]) -> Result<(), VolumeError> {
    for m in mounts {
        match &m.backing {
            Backing::Claim(_) | Backing::EmptyDir => create_dir(&m.volume, &m.volume_path)?,
            Backing::HostPath { kind } => match kind.as_str() {
                "Directory" if !m.volume_path.is_dir() => {
                    return Err(VolumeError::HostPathMissing {
                        volume: m.volume.clone(),
                        path: m.volume_path.clone(),
                        kind: "directory",
                    })
                }
                "File" if !m.volume_path.is_file() => {
                    return Err(VolumeError::HostPathMissing {
                        volume: m.volume.clone(),
                        path: m.volume_path.clone(),
                        kind: "file",
                    })
                }
                "FileOrCreate" if !m.volume_path.exists() => {
                    if let Some(parent) = m.volume_path.parent() {
                        create_dir(&m.volume, parent)?;
                    }
                    std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(&m.volume_path)
                        .map_err(|source| VolumeError::Io {
                            volume: m.volume.clone(),
                            path: m.volume_path.clone(),
                            source,
                        })?;
                }
                "" | "DirectoryOrCreate" if !m.volume_path.exists() => {
                    create_dir(&m.volume, &m.volume_path)?
                }
                _ => {}
            },
        }
        if m.source != m.volume_path && !m.source.exists() {
            create_dir(&m.volume, &m.source)?;
        }
    }
    Ok(())
}

/// `TWINSET_VOLUME_<NAME>`: the variable holding a volume's folder on the node
/// (name upper-cased, every character other than A-Z and 0-9 replaced by `_`).
pub fn volume_var(volume: &str) -> String {
    format!("TWINSET_VOLUME_{}", env_suffix(volume))
}

/// `TWINSET_MOUNT_<PATH>`: the variable holding where the container finds what is
/// mounted at `mountPath` (leading `/` dropped, upper-cased, other characters `_`):
/// `/var/lib/mysql` gives `TWINSET_MOUNT_VAR_LIB_MYSQL`.
pub fn mount_var(mount_path: &Path) -> String {
    let s = mount_path.to_string_lossy();
    format!("TWINSET_MOUNT_{}", env_suffix(s.trim_start_matches('/')))
}

fn env_suffix(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The volume variables of a container, set whether or not it is isolated so that a
/// program can use them either way:
/// - `TWINSET_VOLUME_<NAME>` = the volume's folder on the node;
/// - `TWINSET_MOUNT_<PATH>` = where the container finds its mount at that path: the
///   `mountPath` itself when isolated (the bind mount is there), else the source
///   folder on the node (nothing is mounted at `mountPath`).
pub fn mount_env(mounts: &[PlannedMount], isolated: bool) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |k: String, v: &Path| {
        let v = v.to_string_lossy().into_owned();
        match out.iter_mut().find(|(n, _)| *n == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    };
    for m in mounts {
        set(volume_var(&m.volume), &m.volume_path);
        let seen_at = if isolated { &m.target } else { &m.source };
        set(mount_var(&m.target), seen_at);
    }
    out
}

#[derive(Default)]
struct ClaimState {
    /// Pods on this node using each claim.
    users: HashMap<ClaimKey, usize>,
    /// Deleted claims whose folders go when their last user is gone.
    doomed: BTreeSet<ClaimKey>,
    /// Claims this node was lost with, whose folders are set aside when their last
    /// user is gone.
    lost: BTreeSet<ClaimKey>,
    /// Folders set aside, not yet told to the control plane (at most [`MAX_KEPT`]).
    kept: Vec<Kept>,
}

/// The folder, under the volumes root, where the old data of claims this node was lost
/// with is kept: `<root>/.kept/<namespace>/<claim>-<time>`. Never removed by the agent.
pub const KEPT: &str = ".kept";

/// The most set-aside folders held for telling the control plane (the oldest go; the
/// folders themselves stay).
pub const MAX_KEPT: usize = 1024;

/// A claim's old folder set aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// The claim.
    pub claim: ClaimKey,
    /// Where its data now is (None: there was no folder).
    pub path: Option<PathBuf>,
}

/// The claims' folders on this node: which pods use them, and removal once the
/// control plane says a claim is deleted (deferred while a pod still uses it).
pub struct Claims {
    root: PathBuf,
    state: Mutex<ClaimState>,
}

/// A pod's hold on its claims; dropping it (once the pod's processes are gone)
/// releases them, removing any that were deleted meanwhile.
pub struct ClaimUse {
    claims: Arc<Claims>,
    keys: Vec<ClaimKey>,
}

impl Drop for ClaimUse {
    fn drop(&mut self) {
        for k in std::mem::take(&mut self.keys) {
            self.claims.release(&k);
        }
    }
}

impl Claims {
    /// The claims under `root` (`<data dir>/volumes`); finishes removals an earlier
    /// agent started.
    pub fn open(root: &Path) -> Arc<Claims> {
        let claims = Arc::new(Claims {
            root: root.to_path_buf(),
            state: Mutex::default(),
        });
        let pending = root.join(DELETING);
        if pending.exists() {
            if let Err(e) = std::fs::remove_dir_all(&pending) {
                tracing::warn!(path = %pending.display(), error = %e, "cannot finish removing deleted claims");
            }
        }
        claims
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClaimState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A claim's folder.
    pub fn dir(&self, key: &ClaimKey) -> PathBuf {
        self.root.join(&key.namespace).join(&key.name)
    }

    /// Marks `keys` as used by one more pod until the returned hold is dropped.
    pub fn acquire(self: &Arc<Self>, keys: impl IntoIterator<Item = ClaimKey>) -> ClaimUse {
        let keys: Vec<ClaimKey> = keys.into_iter().collect();
        let mut st = self.lock();
        for k in &keys {
            *st.users.entry(k.clone()).or_default() += 1;
            if st.doomed.remove(k) {
                tracing::warn!(claim = %k, "a pod uses a claim that was deleted; keeping its folder");
            }
            if st.lost.remove(k) {
                tracing::warn!(claim = %k, "a pod uses a claim this node was lost with; keeping its folder in place");
            }
        }
        ClaimUse {
            claims: Arc::clone(self),
            keys,
        }
    }

    fn release(&self, key: &ClaimKey) {
        let (remove, set_aside) = {
            let mut st = self.lock();
            let n = st.users.get(key).copied().unwrap_or(0);
            if n <= 1 {
                st.users.remove(key);
                (st.doomed.remove(key), st.lost.remove(key))
            } else {
                st.users.insert(key.clone(), n - 1);
                (false, false)
            }
        };
        if remove {
            self.remove_now(key);
        } else if set_aside {
            self.set_aside_now(key);
        }
    }

    /// This node was lost while the claim was bound to it, and the claim now has a new
    /// volume elsewhere: its folder is set aside (renamed under [`KEPT`], never
    /// deleted) now, or when the last pod using it is gone.
    pub fn lost(&self, key: &ClaimKey) {
        let now = {
            let mut st = self.lock();
            if st.users.contains_key(key) {
                tracing::info!(claim = %key, "claim lost with this node; its folder is set aside when its pod is gone");
                st.lost.insert(key.clone());
                false
            } else {
                true
            }
        };
        if now {
            self.set_aside_now(key);
        }
    }

    /// Renames the claim's folder to `<root>/.kept/<ns>/<claim>-<UTC time>` and notes it
    /// for the control plane (also when there was no folder, so the claim is freed).
    fn set_aside_now(&self, key: &ClaimKey) {
        let dir = self.dir(key);
        let path = if dir.exists() {
            let stamp = twinset_proto::time::now().replace([':', '-'], "");
            let target = self
                .root
                .join(KEPT)
                .join(&key.namespace)
                .join(format!("{}-{stamp}", key.name));
            let moved = target
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|_| std::fs::rename(&dir, &target));
            match moved {
                Ok(()) => {
                    tracing::warn!(claim = %key, path = %target.display(), "the claim's data from before this node was lost is kept aside");
                    let _ = std::fs::remove_dir(self.root.join(&key.namespace));
                    Some(target)
                }
                Err(e) => {
                    // Left in place: never deleted; told again at the next reconnect.
                    tracing::error!(claim = %key, error = %e, "cannot set the claim's old folder aside; leaving it in place");
                    return;
                }
            }
        } else {
            None
        };
        let mut st = self.lock();
        if st.kept.len() >= MAX_KEPT {
            st.kept.remove(0);
        }
        st.kept.push(Kept {
            claim: key.clone(),
            path,
        });
    }

    /// Up to `limit` set-aside folders not yet told to the control plane, oldest first
    /// (handed over; give back with [`Claims::untold`] when the telling failed).
    pub fn take_kept(&self, limit: usize) -> Vec<Kept> {
        let mut st = self.lock();
        let n = limit.min(st.kept.len());
        st.kept.drain(..n).collect()
    }

    /// Gives back folders whose telling failed, ahead of newer ones.
    pub fn untold(&self, mut kept: Vec<Kept>) {
        let mut st = self.lock();
        kept.append(&mut st.kept);
        let over = kept.len().saturating_sub(MAX_KEPT);
        kept.drain(..over);
        st.kept = kept;
    }

    /// Whether a pod on this node uses the claim.
    pub fn in_use(&self, key: &ClaimKey) -> bool {
        self.lock().users.contains_key(key)
    }

    /// The claim was deleted: its folder goes now, or when the last pod using it is
    /// gone.
    pub fn delete(&self, key: &ClaimKey) {
        let now = {
            let mut st = self.lock();
            if st.users.contains_key(key) {
                tracing::info!(claim = %key, "claim deleted; its folder goes when its pod is gone");
                st.doomed.insert(key.clone());
                false
            } else {
                true
            }
        };
        if now {
            self.remove_now(key);
        }
    }

    /// `bound` lists every claim bound to this node and `lost` those this node was lost
    /// with: the folders of `lost` are set aside ([`Claims::lost`]), those of all others
    /// deleted (see [`Claims::delete`]).
    pub fn retain(&self, bound: &BTreeSet<ClaimKey>, lost: &BTreeSet<ClaimKey>) {
        for key in lost {
            self.lost(key);
        }
        for key in self.on_disk() {
            if !bound.contains(&key) && !lost.contains(&key) {
                self.delete(&key);
            }
        }
    }

    /// The claims that have a folder here.
    pub fn on_disk(&self) -> Vec<ClaimKey> {
        let mut out = Vec::new();
        let Ok(namespaces) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for ns in namespaces.flatten() {
            let ns_name = ns.file_name().to_string_lossy().into_owned();
            if ns_name.starts_with('.') {
                continue;
            }
            let Ok(claims) = std::fs::read_dir(ns.path()) else {
                continue;
            };
            for c in claims.flatten() {
                let name = c.file_name().to_string_lossy().into_owned();
                if let Some(k) = ClaimKey::new(&ns_name, &name) {
                    out.push(k);
                }
            }
        }
        out.sort();
        out
    }

    /// Renames the folder out of the way (so a claim recreated under the same name
    /// starts empty) and removes it.
    fn remove_now(&self, key: &ClaimKey) {
        let dir = self.dir(key);
        if !dir.exists() {
            return;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let pending = self.root.join(DELETING);
        let moved = pending.join(format!("{}_{}_{nanos}", key.namespace, key.name));
        let target = match std::fs::create_dir_all(&pending)
            .and_then(|_| std::fs::rename(&dir, &moved))
        {
            Ok(()) => moved,
            Err(e) => {
                tracing::warn!(claim = %key, error = %e, "cannot move the claim's folder aside; removing it in place");
                dir
            }
        };
        let claim = key.to_string();
        let remove = move || match std::fs::remove_dir_all(&target) {
            Ok(()) => tracing::info!(%claim, "deleted claim's folder removed"),
            Err(e) => {
                tracing::warn!(%claim, path = %target.display(), error = %e, "cannot remove a deleted claim's folder")
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(remove);
            }
            Err(_) => remove(),
        }
        let ns_dir = self.root.join(&key.namespace);
        // Leave no empty namespace folders behind (fails harmlessly when not empty).
        let _ = std::fs::remove_dir(ns_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{
        EmptyDirVolumeSource, HostPathVolumeSource, ObjectMeta, PersistentVolumeClaimVolumeSource,
        PodSpec, Volume, VolumeMount,
    };

    fn pod(volumes: Vec<Volume>) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "mysql-db-0".into(),
                namespace: "database".into(),
                uid: "u0".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                volumes,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn claim(name: &str, claim: &str) -> Volume {
        Volume {
            name: name.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: false,
            }),
            ..Default::default()
        }
    }

    fn mount(name: &str, path: &str, sub: &str, ro: bool) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            read_only: ro,
            sub_path: sub.into(),
        }
    }

    fn container(mounts: Vec<VolumeMount>) -> Container {
        Container {
            name: "mysql".into(),
            volume_mounts: mounts,
            ..Default::default()
        }
    }

    #[test]
    fn mount_plan_from_claims_empty_dirs_and_host_paths() {
        let p = pod(vec![
            claim("mysql-storage", "mysql-storage-mysql-db-0"),
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
            Volume {
                name: "logs".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/var/log".into(),
                    r#type: String::new(),
                }),
                ..Default::default()
            },
        ]);
        let c = container(vec![
            mount("mysql-storage", "/var/lib/mysql", "", false),
            mount("scratch", "/tmp/scratch", "", false),
            mount("logs", "/host/log", "mysql", true),
        ]);
        let m = mounts_for(&p, &c, Path::new("/data"), Path::new("/data/pods/x")).unwrap();
        let key = ClaimKey::new("database", "mysql-storage-mysql-db-0").unwrap();
        assert_eq!(
            m[0],
            PlannedMount {
                volume: "mysql-storage".into(),
                volume_path: "/data/volumes/database/mysql-storage-mysql-db-0".into(),
                source: "/data/volumes/database/mysql-storage-mysql-db-0".into(),
                target: "/var/lib/mysql".into(),
                read_only: false,
                backing: Backing::Claim(key.clone()),
            }
        );
        assert_eq!(m[1].source, Path::new("/data/pods/x/volumes/scratch"));
        assert_eq!(m[1].backing, Backing::EmptyDir);
        assert_eq!(m[2].source, Path::new("/var/log/mysql"));
        assert_eq!(m[2].volume_path, Path::new("/var/log"));
        assert!(m[2].read_only);
        assert_eq!(pod_claims(&p).into_iter().collect::<Vec<_>>(), vec![key]);
    }

    #[test]
    fn bad_mounts_are_errors() {
        let p = pod(vec![claim("v", "c"), claim("bad", "../../etc")]);
        let e = mounts_for(
            &p,
            &container(vec![mount("nope", "/x", "", false)]),
            Path::new("/d"),
            Path::new("/p"),
        );
        assert!(matches!(e, Err(VolumeError::UnknownVolume { .. })));
        for (m, want) in [
            (mount("v", "relative", "", false), "absolute"),
            (mount("v", "/a/../b", "", false), "absolute"),
            (mount("v", "/a", "../x", false), "subPath"),
            (mount("v", "/a", "/abs", false), "subPath"),
            (mount("bad", "/a", "", false), "invalid claim name"),
        ] {
            let e =
                mounts_for(&p, &container(vec![m]), Path::new("/d"), Path::new("/p")).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        let none = pod(vec![Volume {
            name: "cfg".into(),
            ..Default::default()
        }]);
        let e = mounts_for(
            &none,
            &container(vec![mount("cfg", "/etc/cfg", "", false)]),
            Path::new("/d"),
            Path::new("/p"),
        );
        assert!(matches!(e, Err(VolumeError::Unsupported(_))));
    }

    #[test]
    fn env_gives_paths_isolated_or_not() {
        let p = pod(vec![claim("mysql-storage", "mysql-storage-mysql-db-0")]);
        let c = container(vec![mount("mysql-storage", "/var/lib/mysql", "", false)]);
        let m = mounts_for(&p, &c, Path::new("/d"), Path::new("/p")).unwrap();
        let dir = "/d/volumes/database/mysql-storage-mysql-db-0".to_string();
        assert_eq!(
            mount_env(&m, false),
            vec![
                ("TWINSET_VOLUME_MYSQL_STORAGE".to_string(), dir.clone()),
                ("TWINSET_MOUNT_VAR_LIB_MYSQL".to_string(), dir.clone()),
            ]
        );
        assert_eq!(
            mount_env(&m, true),
            vec![
                ("TWINSET_VOLUME_MYSQL_STORAGE".to_string(), dir),
                (
                    "TWINSET_MOUNT_VAR_LIB_MYSQL".to_string(),
                    "/var/lib/mysql".to_string()
                ),
            ]
        );
        assert_eq!(mount_var(Path::new("/data")), "TWINSET_MOUNT_DATA");
        assert_eq!(volume_var("my.vol-1"), "TWINSET_VOLUME_MY_VOL_1");
    }

    #[test]
    fn prepare_creates_what_is_missing_and_checks_typed_host_paths() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        let p = pod(vec![
            claim("v", "c-0"),
            Volume {
                name: "h".into(),
                host_path: Some(HostPathVolumeSource {
                    path: t.path().join("host/must").to_string_lossy().into_owned(),
                    r#type: "Directory".into(),
                }),
                ..Default::default()
            },
        ]);
        let c = container(vec![mount("v", "/data", "sub/dir", false)]);
        let m = mounts_for(&p, &c, &data, &t.path().join("pod")).unwrap();
        prepare(&m).unwrap();
        assert!(data.join("volumes/database/c-0/sub/dir").is_dir());
        let c = container(vec![mount("h", "/h", "", false)]);
        let m = mounts_for(&p, &c, &data, &t.path().join("pod")).unwrap();
        assert!(matches!(
            prepare(&m),
            Err(VolumeError::HostPathMissing { .. })
        ));
    }

    fn wait_gone(p: &Path) {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while p.exists() {
            assert!(
                std::time::Instant::now() < end,
                "{} still there",
                p.display()
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn claim_folders_go_only_when_deleted_and_unused() {
        let t = tempfile::tempdir().unwrap();
        let claims = Claims::open(&t.path().join("volumes"));
        let a = ClaimKey::parse("database/data-0").unwrap();
        let b = ClaimKey::parse("database/data-1").unwrap();
        let other = ClaimKey::parse("web/cache").unwrap();
        for k in [&a, &b, &other] {
            std::fs::create_dir_all(claims.dir(k)).unwrap();
            std::fs::write(claims.dir(k).join("f"), "x").unwrap();
        }
        assert_eq!(claims.on_disk(), vec![a.clone(), b.clone(), other.clone()]);

        // Two pods (an old one terminating, its replacement) hold claim a.
        let old = claims.acquire([a.clone()]);
        let new = claims.acquire([a.clone()]);
        claims.delete(&a);
        drop(old);
        assert!(
            claims.dir(&a).join("f").exists(),
            "still used by the new pod"
        );
        drop(new);
        wait_gone(&claims.dir(&a));

        // A snapshot of bound claims removes the others, never what is listed.
        let bound: BTreeSet<ClaimKey> = [other.clone()].into_iter().collect();
        claims.retain(&bound, &BTreeSet::new());
        wait_gone(&claims.dir(&b));
        assert!(claims.dir(&other).join("f").exists());
        assert!(
            !t.path().join("volumes/database").exists(),
            "empty namespace folder removed"
        );

        // Deleting a claim with no folder is a no-op; invalid names are not keys.
        claims.delete(&a);
        assert!(ClaimKey::parse("../etc").is_none());
        assert!(ClaimKey::parse("ns/a/b").is_none());
        assert!(ClaimKey::parse("noslash").is_none());
    }

    #[test]
    fn a_deleted_claim_reused_by_a_new_pod_is_kept() {
        let t = tempfile::tempdir().unwrap();
        let claims = Claims::open(&t.path().join("volumes"));
        let a = ClaimKey::parse("ns/c").unwrap();
        std::fs::create_dir_all(claims.dir(&a)).unwrap();
        let hold = claims.acquire([a.clone()]);
        claims.delete(&a);
        let again = claims.acquire([a.clone()]);
        drop(hold);
        drop(again);
        assert!(claims.dir(&a).exists());
        assert!(!claims.in_use(&a));
    }
}
