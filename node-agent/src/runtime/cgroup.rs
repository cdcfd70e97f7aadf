//! Per-pod cgroups that enforce `resources.limits` (memory, cpu) and tell an OOM kill
//! apart from any other SIGKILL.
//!
//! Layout: `<controller root>/twinset/<pod-uid>` holds the pod (its memory/cpu limit is
//! the sum of its containers' limits when every container has one) and
//! `<...>/<pod-uid>/<container>` each container with its own limits, so an OOM kill is
//! attributed to the right container. cgroup v1 (`memory` and `cpu` hierarchies) and
//! v2 (one unified tree) are both supported; which one is used is decided at start-up
//! from what the machine has mounted. Everything takes its roots as paths, so the
//! logic is tested against a temporary directory.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use twinset_proto::v1::ResourceRequirements;

/// The folder under each controller root that holds Twinset's pods.
pub const PREFIX: &str = "twinset";
/// The CFS period Twinset uses (the Kubernetes value).
pub const CFS_PERIOD_US: u64 = 100_000;
/// The smallest CFS quota the kernel accepts.
const MIN_CFS_QUOTA_US: u64 = 1_000;

/// A cgroup operation that failed, with the path it touched.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file or directory could not be created, written or read.
    #[error("cgroup {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The machine offers no usable cgroup hierarchy (or the agent may not write it).
    #[error("cgroups unavailable: {0}")]
    Unavailable(String),
    /// A limit value in the pod spec cannot be used.
    #[error("invalid resource limit {name}={value}: {reason}")]
    InvalidLimit {
        /// Resource name (`memory`, `cpu`).
        name: String,
        /// The quantity as written.
        value: String,
        /// Why it is unusable.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The limits of one container (or a pod: the sum of its containers').
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// `resources.limits.memory` in bytes.
    pub memory_bytes: Option<u64>,
    /// `resources.limits.cpu` in millicores.
    pub cpu_millis: Option<u64>,
}

impl Limits {
    /// Reads `resources.limits` (memory and cpu; other resources are ignored).
    pub fn from_resources(resources: Option<&ResourceRequirements>) -> Result<Limits, CgroupError> {
        let mut out = Limits::default();
        let Some(r) = resources else { return Ok(out) };
        let bad = |name: &str, value: &str, reason: String| CgroupError::InvalidLimit {
            name: name.to_string(),
            value: value.to_string(),
            reason,
        };
        if let Some(v) = r.limits.get("memory") {
            let q =
                twinset_proto::quantity::parse(v).map_err(|e| bad("memory", v, e.to_string()))?;
            let bytes =
                u64::try_from(q.value()).map_err(|_| bad("memory", v, "out of range".into()))?;
            if bytes == 0 {
                return Err(bad("memory", v, "must be positive".into()));
            }
            out.memory_bytes = Some(bytes);
        }
        if let Some(v) = r.limits.get("cpu") {
            let q = twinset_proto::quantity::parse(v).map_err(|e| bad("cpu", v, e.to_string()))?;
            let m = u64::try_from(q.millis()).map_err(|_| bad("cpu", v, "out of range".into()))?;
            if m == 0 {
                return Err(bad("cpu", v, "must be positive".into()));
            }
            out.cpu_millis = Some(m);
        }
        Ok(out)
    }

    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        self.memory_bytes.is_none() && self.cpu_millis.is_none()
    }

    /// The pod-level limits: for each resource, the sum over containers when every
    /// container sets it (a container without a limit makes the pod unbounded).
    pub fn pod_total(containers: &[Limits]) -> Limits {
        let sum = |f: fn(&Limits) -> Option<u64>| -> Option<u64> {
            if containers.is_empty() {
                return None;
            }
            containers
                .iter()
                .map(f)
                .try_fold(0u64, |acc, v| v.map(|v| acc.saturating_add(v)))
        };
        Limits {
            memory_bytes: sum(|l| l.memory_bytes),
            cpu_millis: sum(|l| l.cpu_millis),
        }
    }
}

/// The CFS quota for a cpu limit in millicores (100m → 10000 µs per 100 ms period).
pub fn cfs_quota_us(millis: u64) -> u64 {
    (millis.saturating_mul(CFS_PERIOD_US) / 1000).max(MIN_CFS_QUOTA_US)
}

/// The kernel seam for cgroups, injected into the process runtime.
pub trait Cgroups: Send + Sync {
    /// Creates the container's cgroup (and its pod's) with the given limits and opens
    /// the `cgroup.procs` files the child writes itself into before it execs.
    fn prepare(
        &self,
        pod_uid: &str,
        pod_limits: &Limits,
        container: &str,
        limits: &Limits,
    ) -> Result<Vec<File>, CgroupError>;
    /// How many OOM kills the container's cgroup has seen so far (0 when unknown).
    fn oom_kills(&self, pod_uid: &str, container: &str) -> u64;
    /// Pids still inside the pod's cgroups.
    fn pids(&self, pod_uid: &str) -> Vec<i32>;
    /// Removes the pod's cgroup directories (its processes must be gone).
    fn remove_pod(&self, pod_uid: &str) -> Result<(), CgroupError>;
    /// One line saying what is in use, for the agent's start-up log.
    fn describe(&self) -> String;
    /// Whether limits are enforced at all.
    fn available(&self) -> bool;
}

/// Which cgroup hierarchy is used, with its roots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Separate `memory` and `cpu` hierarchies.
    V1 {
        /// Root of the memory controller (`/sys/fs/cgroup/memory`).
        memory: PathBuf,
        /// Root of the cpu controller (`/sys/fs/cgroup/cpu`).
        cpu: PathBuf,
    },
    /// The unified hierarchy.
    V2 {
        /// Its root (`/sys/fs/cgroup`).
        root: PathBuf,
    },
}

/// Cgroups through the cgroup filesystem.
#[derive(Debug)]
pub struct CgroupFs {
    layout: Layout,
}

impl CgroupFs {
    /// Uses the given layout as is (tests point it at a temporary directory).
    pub fn new(layout: Layout) -> Self {
        CgroupFs { layout }
    }

    /// The directories (one per hierarchy) of a pod, or of one of its containers.
    pub fn dirs(&self, pod_uid: &str, container: Option<&str>) -> Vec<PathBuf> {
        let roots: Vec<&PathBuf> = match &self.layout {
            Layout::V1 { memory, cpu } => vec![memory, cpu],
            Layout::V2 { root } => vec![root],
        };
        roots
            .into_iter()
            .map(|r| {
                let p = r.join(PREFIX).join(pod_uid);
                match container {
                    Some(c) => p.join(c),
                    None => p,
                }
            })
            .collect()
    }

    fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
        fs::write(path, value).map_err(io_err(path))
    }

    fn mkdir(path: &Path) -> Result<(), CgroupError> {
        match fs::create_dir(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(CgroupError::Io {
                path: path.to_path_buf(),
                source: e,
            }),
        }
    }

    fn apply_v1(memory_dir: &Path, cpu_dir: &Path, l: &Limits) -> Result<(), CgroupError> {
        if let Some(bytes) = l.memory_bytes {
            Self::write(
                &memory_dir.join("memory.limit_in_bytes"),
                &bytes.to_string(),
            )?;
            // With swap on, the limit must cover memory+swap too or the process swaps
            // instead of being OOM-killed. The file is absent without swap accounting.
            let memsw = memory_dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                Self::write(&memsw, &bytes.to_string())?;
            }
        }
        if let Some(m) = l.cpu_millis {
            Self::write(
                &cpu_dir.join("cpu.cfs_period_us"),
                &CFS_PERIOD_US.to_string(),
            )?;
            Self::write(
                &cpu_dir.join("cpu.cfs_quota_us"),
                &cfs_quota_us(m).to_string(),
            )?;
        }
        Ok(())
    }

    fn apply_v2(dir: &Path, l: &Limits) -> Result<(), CgroupError> {
        if let Some(bytes) = l.memory_bytes {
            Self::write(&dir.join("memory.max"), &bytes.to_string())?;
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                Self::write(&swap, "0")?;
            }
        }
        if let Some(m) = l.cpu_millis {
            Self::write(
                &dir.join("cpu.max"),
                &format!("{} {}", cfs_quota_us(m), CFS_PERIOD_US),
            )?;
        }
        Ok(())
    }

    /// v2: lets the children of `dir` use the memory and cpu controllers.
    fn enable_v2_controllers(dir: &Path) -> Result<(), CgroupError> {
        Self::write(&dir.join("cgroup.subtree_control"), "+memory +cpu")
    }

    fn open_procs(dir: &Path) -> Result<File, CgroupError> {
        let path = dir.join("cgroup.procs");
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))
    }
}

/// Parses `<key> <number>` out of `memory.oom_control` (v1) or `memory.events` (v2).
pub fn parse_counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

impl Cgroups for CgroupFs {
    fn prepare(
        &self,
        pod_uid: &str,
        pod_limits: &Limits,
        container: &str,
        limits: &Limits,
    ) -> Result<Vec<File>, CgroupError> {
        match &self.layout {
            Layout::V1 { memory, cpu } => {
                for root in [memory, cpu] {
                    Self::mkdir(&root.join(PREFIX))?;
                    Self::mkdir(&root.join(PREFIX).join(pod_uid))?;
                    Self::mkdir(&root.join(PREFIX).join(pod_uid).join(container))?;
                }
                let pod_mem = memory.join(PREFIX).join(pod_uid);
                let pod_cpu = cpu.join(PREFIX).join(pod_uid);
                Self::apply_v1(&pod_mem, &pod_cpu, pod_limits)?;
                let (cm, cc) = (pod_mem.join(container), pod_cpu.join(container));
                Self::apply_v1(&cm, &cc, limits)?;
                Ok(vec![Self::open_procs(&cm)?, Self::open_procs(&cc)?])
            }
            Layout::V2 { root } => {
                let base = root.join(PREFIX);
                let pod = base.join(pod_uid);
                let leaf = pod.join(container);
                Self::enable_v2_controllers(root)?;
                Self::mkdir(&base)?;
                Self::enable_v2_controllers(&base)?;
                Self::mkdir(&pod)?;
                Self::enable_v2_controllers(&pod)?;
                Self::mkdir(&leaf)?;
                Self::apply_v2(&pod, pod_limits)?;
                Self::apply_v2(&leaf, limits)?;
                Ok(vec![Self::open_procs(&leaf)?])
            }
        }
    }

    fn oom_kills(&self, pod_uid: &str, container: &str) -> u64 {
        let (file, dir) = match &self.layout {
            Layout::V1 { memory, .. } => ("memory.oom_control", memory),
            Layout::V2 { root } => ("memory.events", root),
        };
        let path = dir.join(PREFIX).join(pod_uid).join(container).join(file);
        fs::read_to_string(path)
            .ok()
            .and_then(|t| parse_counter(&t, "oom_kill"))
            .unwrap_or(0)
    }

    fn pids(&self, pod_uid: &str) -> Vec<i32> {
        let mut out = Vec::new();
        for pod_dir in self.dirs(pod_uid, None) {
            let Ok(entries) = fs::read_dir(&pod_dir) else {
                continue;
            };
            let mut dirs = vec![pod_dir.clone()];
            dirs.extend(
                entries
                    .flatten()
                    // The type from the listing: no stat of each control file.
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
            for d in dirs {
                if let Ok(text) = fs::read_to_string(d.join("cgroup.procs")) {
                    out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    fn remove_pod(&self, pod_uid: &str) -> Result<(), CgroupError> {
        for pod_dir in self.dirs(pod_uid, None) {
            let entries = match fs::read_dir(&pod_dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(CgroupError::Io {
                        path: pod_dir,
                        source: e,
                    })
                }
            };
            // The entry's type from the directory listing: no stat of each of the
            // cgroup's control files.
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let p = e.path();
                    fs::remove_dir(&p).map_err(io_err(&p))?;
                }
            }
            fs::remove_dir(&pod_dir).map_err(io_err(&pod_dir))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match &self.layout {
            Layout::V1 { memory, cpu } => {
                format!(
                    "cgroup v1 (memory {}, cpu {})",
                    memory.display(),
                    cpu.display()
                )
            }
            Layout::V2 { root } => format!("cgroup v2 ({})", root.display()),
        }
    }

    fn available(&self) -> bool {
        true
    }
}

/// No usable cgroups: every `prepare` fails with the reason, so the caller can say
/// that limits are not enforced.
#[derive(Debug)]
pub struct NoCgroups {
    reason: String,
}

impl NoCgroups {
    /// Cgroups are unavailable for `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        NoCgroups {
            reason: reason.into(),
        }
    }
}

impl Cgroups for NoCgroups {
    fn prepare(&self, _: &str, _: &Limits, _: &str, _: &Limits) -> Result<Vec<File>, CgroupError> {
        Err(CgroupError::Unavailable(self.reason.clone()))
    }
    fn oom_kills(&self, _: &str, _: &str) -> u64 {
        0
    }
    fn pids(&self, _: &str) -> Vec<i32> {
        Vec::new()
    }
    fn remove_pod(&self, _: &str) -> Result<(), CgroupError> {
        Ok(())
    }
    fn describe(&self) -> String {
        format!("no cgroups ({})", self.reason)
    }
    fn available(&self) -> bool {
        false
    }
}

/// Picks what the machine offers under `root` (normally `/sys/fs/cgroup`): v2 when the
/// unified hierarchy is mounted there with the memory controller, else the v1 memory
/// and cpu hierarchies; checks that the agent may create its folder.
pub fn detect(root: &Path) -> Box<dyn Cgroups> {
    let layout = if fs::read_to_string(root.join("cgroup.controllers"))
        .map(|c| c.split_whitespace().any(|w| w == "memory"))
        .unwrap_or(false)
    {
        Layout::V2 {
            root: root.to_path_buf(),
        }
    } else if root.join("memory").join("cgroup.procs").exists() {
        let cpu = ["cpu", "cpu,cpuacct"]
            .iter()
            .map(|n| root.join(n))
            .find(|p| p.join("cgroup.procs").exists());
        match cpu {
            Some(cpu) => Layout::V1 {
                memory: root.join("memory"),
                cpu,
            },
            None => return Box::new(NoCgroups::new("no cgroup v1 cpu hierarchy")),
        }
    } else {
        return Box::new(NoCgroups::new(format!(
            "no cgroup v2 memory controller or v1 memory hierarchy under {}",
            root.display()
        )));
    };
    let roots: Vec<PathBuf> = match &layout {
        Layout::V1 { memory, cpu } => vec![memory.join(PREFIX), cpu.join(PREFIX)],
        Layout::V2 { root } => vec![root.join(PREFIX)],
    };
    for r in roots {
        if let Err(e) = CgroupFs::mkdir(&r) {
            return Box::new(NoCgroups::new(format!("not permitted: {e}")));
        }
    }
    Box::new(CgroupFs::new(layout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn res(mem: Option<&str>, cpu: Option<&str>) -> ResourceRequirements {
        let mut limits = BTreeMap::new();
        if let Some(m) = mem {
            limits.insert("memory".to_string(), m.to_string());
        }
        if let Some(c) = cpu {
            limits.insert("cpu".to_string(), c.to_string());
        }
        ResourceRequirements {
            limits,
            requests: BTreeMap::new(),
        }
    }

    #[test]
    fn limits_parse_quantities() {
        let l = Limits::from_resources(Some(&res(Some("128Mi"), Some("100m")))).unwrap();
        assert_eq!(
            l,
            Limits {
                memory_bytes: Some(134_217_728),
                cpu_millis: Some(100)
            }
        );
        assert!(Limits::from_resources(None).unwrap().is_empty());
        assert!(Limits::from_resources(Some(&res(Some("lots"), None))).is_err());
        assert!(Limits::from_resources(Some(&res(None, Some("0")))).is_err());
    }

    #[test]
    fn pod_total_needs_every_container() {
        let a = Limits {
            memory_bytes: Some(10),
            cpu_millis: Some(100),
        };
        let b = Limits {
            memory_bytes: Some(5),
            cpu_millis: None,
        };
        assert_eq!(
            Limits::pod_total(&[a, b]),
            Limits {
                memory_bytes: Some(15),
                cpu_millis: None
            }
        );
        assert_eq!(Limits::pod_total(&[]), Limits::default());
    }

    #[test]
    fn quota_is_millis_times_100_with_kernel_minimum() {
        assert_eq!(cfs_quota_us(100), 10_000);
        assert_eq!(cfs_quota_us(1500), 150_000);
        assert_eq!(cfs_quota_us(1), 1_000);
    }

    #[test]
    fn counters_parse() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_counter(v1, "oom_kill"), Some(2));
        let v2 = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_counter(v2, "oom_kill"), Some(1));
        assert_eq!(parse_counter(v2, "missing"), None);
    }

    #[test]
    fn v1_writes_limits_into_pod_and_container_dirs() {
        let t = tempfile::tempdir().unwrap();
        let (mem, cpu) = (t.path().join("memory"), t.path().join("cpu"));
        fs::create_dir_all(&mem).unwrap();
        fs::create_dir_all(&cpu).unwrap();
        let cg = CgroupFs::new(Layout::V1 {
            memory: mem.clone(),
            cpu: cpu.clone(),
        });
        let l = Limits {
            memory_bytes: Some(134_217_728),
            cpu_millis: Some(250),
        };
        let files = cg.prepare("uid-1", &l, "app", &l).unwrap();
        assert_eq!(files.len(), 2);
        let read = |p: PathBuf| fs::read_to_string(p).unwrap();
        assert_eq!(
            read(mem.join("twinset/uid-1/memory.limit_in_bytes")),
            "134217728"
        );
        assert_eq!(
            read(mem.join("twinset/uid-1/app/memory.limit_in_bytes")),
            "134217728"
        );
        assert_eq!(
            read(cpu.join("twinset/uid-1/app/cpu.cfs_quota_us")),
            "25000"
        );
        assert_eq!(
            read(cpu.join("twinset/uid-1/app/cpu.cfs_period_us")),
            "100000"
        );
        assert!(mem.join("twinset/uid-1/app/cgroup.procs").exists());
        assert_eq!(cg.oom_kills("uid-1", "app"), 0);
        fs::write(
            mem.join("twinset/uid-1/app/memory.oom_control"),
            "oom_kill 1\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills("uid-1", "app"), 1);
        fs::write(mem.join("twinset/uid-1/app/cgroup.procs"), "42\n43\n").unwrap();
        assert_eq!(cg.pids("uid-1"), vec![42, 43]);
        assert_eq!(
            cg.dirs("uid-1", Some("app")),
            vec![mem.join("twinset/uid-1/app"), cpu.join("twinset/uid-1/app")]
        );
    }

    #[test]
    fn v2_writes_max_files_and_enables_controllers() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        let cg = CgroupFs::new(Layout::V2 { root: root.clone() });
        let l = Limits {
            memory_bytes: Some(1 << 20),
            cpu_millis: Some(500),
        };
        let files = cg.prepare("u", &Limits::default(), "c", &l).unwrap();
        assert_eq!(files.len(), 1);
        let read = |p: PathBuf| fs::read_to_string(p).unwrap();
        assert_eq!(read(root.join("twinset/u/c/memory.max")), "1048576");
        assert_eq!(read(root.join("twinset/u/c/cpu.max")), "50000 100000");
        assert_eq!(
            read(root.join("twinset/u/cgroup.subtree_control")),
            "+memory +cpu"
        );
        assert!(!root.join("twinset/u/memory.max").exists());
        fs::write(
            root.join("twinset/u/c/memory.events"),
            "oom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills("u", "c"), 1);
    }

    #[test]
    fn detect_without_hierarchies_is_unavailable() {
        let t = tempfile::tempdir().unwrap();
        let cg = detect(t.path());
        assert!(!cg.available());
        assert!(cg
            .prepare("u", &Limits::default(), "c", &Limits::default())
            .is_err());
    }

    #[test]
    fn detect_finds_v1_in_a_fake_tree() {
        let t = tempfile::tempdir().unwrap();
        for c in ["memory", "cpu"] {
            fs::create_dir_all(t.path().join(c)).unwrap();
            fs::write(t.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        let cg = detect(t.path());
        assert!(cg.available(), "{}", cg.describe());
        assert!(t.path().join("memory/twinset").is_dir());
    }
}
